"""HubSpot CRM search (``POST /crm/v3/objects/{type}/search``, CONTRACTS 1.5).

filterGroups are OR'ed, the filters inside a group AND'ed; results page by a numeric offset.
The matching ids of a query are cached per store version, so paging through one query scans the
records once rather than once per page.

Incremental syncs send one shape of query again and again: a range on the last-modified
property (GTE a cursor, maybe LT/LTE an upper bound or EQ one instant) plus ``hs_object_id``
bounds, sorted by the last-modified property or by ``hs_object_id``. Those skip the scan: a
sorted (last-modified, id) index of each object type, built once per store version, gives the
candidates by bisection (see RangeQuery), so a burst of 12,000 records behind a 100,000-record
portal costs a slice, not a scan.
"""

from __future__ import annotations

import itertools
import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from sandbox.hubspot.schema import DATETIME, NUMBER, ObjectSchema, to_property_value
from sandbox.hubspot.seed import iso_ms
from sandbox.hubspot.store import Record, Store
from sandbox.kit.core import LruCache, encode_json

MAX_LIMIT = 200  # CONTRACTS 1.5: page max 200 is UNCONFIRMED; we answer 400 above it
RESULT_CAP = 10_000  # CONTRACTS 1.5: paging past 10,000 results -> 400
MAX_GROUPS = 5  # CONTRACTS 1.5 (changelog 2024-08-26)
MAX_FILTERS_PER_GROUP = 10
MAX_FILTERS = 25
DEFAULT_LIMIT = 10
# Sorts per request. HubSpot's docs and SDKs show one sort rule per search and third-party
# schemas cap `sorts` at one item; a second sort is not known to work. Choice (UNCONFIRMED):
# more than max_sorts (default 1) is a 400 VALIDATION_ERROR.
MAX_SORTS = 1
ID_PROPERTY = "hs_object_id"

Predicate = Callable[[dict[str, str]], bool]


class SearchError(Exception):
    """A request HubSpot would refuse with 400 VALIDATION_ERROR."""


@dataclass(frozen=True)
class SearchRequest:
    match: Predicate | None
    sorts: tuple[tuple[str, bool], ...]  # (property, descending)
    properties: tuple[str, ...] | None  # None: the object's default properties
    limit: int
    offset: int
    cache_key: bytes
    ranged: RangeQuery | None = None  # set when the query can use the (modified, id) index


@dataclass(frozen=True)
class RangeQuery:
    """A query that only bounds the last-modified property and hs_object_id (one filter group,
    no free text): ``low``/``high`` are inclusive epoch-ms bounds of the last-modified value,
    ``ids`` tests an id."""

    low: int | None
    high: int | None
    ids: Callable[[int], bool] | None


_RANGE_OPERATORS = frozenset({"EQ", "GT", "GTE", "LT", "LTE", "BETWEEN"})


def _range_query(schema: ObjectSchema, groups: list, query: object) -> RangeQuery | None:
    """The RangeQuery of a body, or None when it filters on anything else."""
    if query or len(groups) > 1:
        return None
    filters = ((groups[0] or {}).get("filters") or []) if groups else []
    low: float = -math.inf
    high: float = math.inf
    id_tests: list[Callable[[int], bool]] = []
    modified = schema.modified_property
    for spec in filters:
        name, operator = spec.get("propertyName"), spec.get("operator")
        if name not in (modified, ID_PROPERTY) or operator not in _RANGE_OPERATORS:
            return None
        kind = DATETIME if name == modified else NUMBER
        value = comparable(kind, spec.get("value"))
        other = comparable(kind, spec.get("highValue")) if operator == "BETWEEN" else value
        if not isinstance(value, float) or not isinstance(other, float):
            return None
        if name == modified:  # stored times are whole milliseconds: make the bounds inclusive
            if operator in ("GTE", "EQ", "BETWEEN"):
                low = max(low, math.ceil(value))
            if operator == "GT":
                low = max(low, math.floor(value) + 1)
            if operator in ("LTE", "EQ", "BETWEEN"):
                high = min(high, math.floor(other))
            if operator == "LT":
                high = min(high, math.ceil(value) - 1)
        else:
            id_tests.append(_id_test(operator, value, other))
    ids = None
    if id_tests:
        ids = id_tests[0] if len(id_tests) == 1 else (lambda i: all(t(i) for t in id_tests))
    return RangeQuery(
        None if low == -math.inf else int(low), None if high == math.inf else int(high), ids
    )


def _id_test(operator: str, value: float, other: float) -> Callable[[int], bool]:
    return {
        "EQ": lambda i: i == value,
        "GT": lambda i: i > value,
        "GTE": lambda i: i >= value,
        "LT": lambda i: i < value,
        "LTE": lambda i: i <= value,
        "BETWEEN": lambda i: value <= i <= other,
    }[operator]


def parse_search(
    schema: ObjectSchema, body: object, *, max_sorts: int = MAX_SORTS
) -> SearchRequest:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise SearchError("Request body must be a JSON object")
    groups = body.get("filterGroups") or []
    if len(groups) > MAX_GROUPS:
        raise SearchError(f"Too many filter groups ({len(groups)}); the maximum is {MAX_GROUPS}")
    group_predicates: list[list[Predicate]] = []
    total_filters = 0
    for group in groups:
        filters = (group or {}).get("filters") or []
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise SearchError(
                f"Too many filters in a group ({len(filters)}); "
                f"the maximum is {MAX_FILTERS_PER_GROUP}"
            )
        total_filters += len(filters)
        group_predicates.append([_compile_filter(schema, item) for item in filters])
    if total_filters > MAX_FILTERS:
        raise SearchError(f"Too many filters ({total_filters}); the maximum is {MAX_FILTERS}")
    match = _combine(group_predicates, _compile_query(schema, body.get("query")))
    sorts = tuple(_parse_sort(schema, item) for item in body.get("sorts") or [])
    if len(sorts) > max_sorts:
        raise SearchError(
            f"Too many sorts ({len(sorts)}); a search accepts at most {max_sorts} sort"
        )
    limit = _int_field(body, "limit", DEFAULT_LIMIT)
    if not 0 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit must be between 0 and {MAX_LIMIT}")
    offset = _int_field(body, "after", 0)
    if offset < 0:
        raise SearchError("after must be a non-negative offset")
    if offset >= RESULT_CAP:
        raise SearchError(
            f"Cannot page past {RESULT_CAP} results; narrow the query (e.g. by lastmodifieddate)"
        )
    properties = body.get("properties")
    if properties is not None and not isinstance(properties, list):
        raise SearchError("properties must be a list of property names")
    key = encode_json([schema.name, groups, body.get("sorts") or [], body.get("query")])
    return SearchRequest(
        match,
        sorts,
        tuple(properties) if properties else None,
        limit,
        offset,
        key,
        _range_query(schema, groups, body.get("query")),
    )


def _int_field(body: dict, name: str, default: int) -> int:
    raw = body.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise SearchError(f"{name} must be an integer, got {raw!r}") from None


def _combine(groups: list[list[Predicate]], query: Predicate | None) -> Predicate | None:
    if not groups or all(not group for group in groups):
        return query
    alternatives = [group for group in groups if group]

    def match(values: dict[str, str]) -> bool:
        return any(all(test(values) for test in group) for group in alternatives)

    if query is None:
        return match
    return lambda values: query(values) and match(values)


# -- value comparison ------------------------------------------------------------------------


def to_epoch_ms(raw: str) -> float | None:
    """Timestamps compare as times whether written as epoch ms or ISO-8601."""
    text = raw.strip()
    if text.lstrip("-").isdigit():
        return float(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp() * 1000


def _to_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# Stored value (a non-empty string) -> comparable. Strings compare case-insensitively
# (EQ/IN/sorts), as HubSpot's search does.
_PARSERS: dict[str, Callable[[str], float | str | None]] = {
    NUMBER: _to_number,
    DATETIME: to_epoch_ms,
}


def comparable(kind: str, raw: object) -> float | str | None:
    """A filter value or stored property value in the form it is compared in (None: no value)."""
    value = to_property_value(raw)
    if not value:
        return None
    return _PARSERS.get(kind, str.lower)(value)


_TOKEN_SPLIT = re.compile(r"[^\w*]+")


def _tokens(text: str) -> list[str]:
    return [token for token in _TOKEN_SPLIT.split(text.lower()) if token]


def _contains_tokens(value: str, wanted: list[str]) -> bool:
    have = _tokens(value)
    return all(any(fnmatchcase(token, pattern) for token in have) for pattern in wanted)


# -- filters ---------------------------------------------------------------------------------


def _compile_filter(schema: ObjectSchema, spec: object) -> Predicate:
    if not isinstance(spec, dict):
        raise SearchError("Each filter must be an object")
    name, operator = spec.get("propertyName"), spec.get("operator")
    if name not in schema.properties:
        raise SearchError(f"Property {name!r} does not exist on {schema.name}")
    kind = schema.properties[name]

    parse = _PARSERS.get(kind, str.lower)

    def get(values: dict[str, str]) -> float | str | None:
        value = values.get(name)  # stored values are already strings
        return parse(value) if value else None

    if operator == "HAS_PROPERTY":
        return lambda values: values.get(name) not in (None, "")
    if operator == "NOT_HAS_PROPERTY":
        return lambda values: values.get(name) in (None, "")
    if operator in ("IN", "NOT_IN"):
        options = spec.get("values")
        if not isinstance(options, list) or not options:
            raise SearchError(f"{operator} needs a non-empty 'values' list")
        wanted = {comparable(kind, option) for option in options}
        if operator == "IN":
            return lambda values: get(values) in wanted
        return lambda values: get(values) not in wanted
    if "value" not in spec:
        raise SearchError(f"{operator} needs a 'value'")
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        patterns = _tokens(str(to_property_value(spec["value"]) or ""))
        contains = operator == "CONTAINS_TOKEN"
        return lambda values: (
            (values.get(name) is not None and _contains_tokens(values[name], patterns)) == contains
        )
    target = comparable(kind, spec["value"])
    if target is None:
        raise SearchError(f"Filter value {spec['value']!r} is not valid for {name}")
    if operator == "EQ":
        return lambda values: get(values) == target
    if operator == "NEQ":
        # Choice (UNCONFIRMED): records without a value count as "not equal".
        return lambda values: get(values) != target
    if operator == "BETWEEN":
        high = comparable(kind, spec.get("highValue"))
        if high is None:
            raise SearchError("BETWEEN needs a 'highValue'")
        return lambda values: _ordered(target, get(values), high)
    comparisons = {
        "GT": lambda a: a > target,
        "GTE": lambda a: a >= target,
        "LT": lambda a: a < target,
        "LTE": lambda a: a <= target,
    }
    if operator not in comparisons:
        raise SearchError(f"Unknown operator {operator!r}")
    compare = comparisons[operator]

    def check(values: dict[str, str]) -> bool:
        actual = get(values)
        return actual is not None and type(actual) is type(target) and compare(actual)

    return check


def _ordered(*items: float | str | None) -> bool:
    """True when no item is null, all share a type and they are in non-decreasing order."""
    if any(item is None for item in items) or len({type(item) for item in items}) > 1:
        return False
    return all(a <= b for a, b in itertools.pairwise(items))


def _compile_query(schema: ObjectSchema, query: object) -> Predicate | None:
    """Free-text ``query``: every word must prefix a word of a default text property."""
    if not query:
        return None
    words = _tokens(str(query))
    searched = [name for name in (*schema.defaults, "email", "phone") if name in schema.properties]

    def match(values: dict[str, str]) -> bool:
        have = [token for name in searched for token in _tokens(values.get(name) or "")]
        return all(any(token.startswith(word) for token in have) for word in words)

    return match


def _parse_sort(schema: ObjectSchema, spec: object) -> tuple[str, bool]:
    # The spec types sorts as strings ("-createdate"); the docs show objects. Accept both.
    if isinstance(spec, str):
        name, descending = spec.lstrip("-"), spec.startswith("-")
    elif isinstance(spec, dict):
        name = spec.get("propertyName")
        descending = str(spec.get("direction", "ASCENDING")).upper() == "DESCENDING"
    else:
        raise SearchError("Each sort must be an object or a property name")
    if name not in schema.properties:
        raise SearchError(f"Cannot sort by unknown property {name!r}")
    return name, descending


# -- execution -------------------------------------------------------------------------------


class Searcher:
    """Runs searches against a Store, caching matching ids per query and store version."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache = LruCache(16)
        # object type -> (store version, ascending (last-modified ISO, id) of active records)
        self._indexes: dict[str, tuple[int, list[tuple[str, int]]]] = {}

    def run(self, schema: ObjectSchema, search: SearchRequest) -> tuple[int, list[Record]]:
        """(total matches, the records of the requested page)."""
        ids = self._matching_ids(schema, search)
        records = self._store.tables[schema.name].records
        page = ids[search.offset : search.offset + search.limit]
        return len(ids), [records[record_id] for record_id in page]

    def _matching_ids(self, schema: ObjectSchema, search: SearchRequest) -> list[int]:
        key = (search.cache_key, self._store.version)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if search.ranged is not None:
            ids = self._ranged_ids(schema, search)
        else:
            records = list(self._store.active_records(schema.name))
            if search.match is not None:
                records = [record for record in records if search.match(record.properties)]
            ids = [record.id for record in self._sort(schema, records, search.sorts)]
        self._cache.put(key, ids)
        return ids

    def _ranged_ids(self, schema: ObjectSchema, search: SearchRequest) -> list[int]:
        ranged = search.ranged
        assert ranged is not None
        index = self._index(schema.name)
        start = 0 if ranged.low is None else bisect_left(index, (iso_ms(ranged.low),))
        end = len(index)
        if ranged.high is not None:
            end = bisect_right(index, (iso_ms(ranged.high), math.inf))
        window = index[start:end]  # ordered by (last-modified, id)
        test = ranged.ids
        if test is not None:
            window = [key for key in window if test(key[1])]
        modified = schema.modified_property
        if search.sorts == ((modified, False),):
            return [record_id for _, record_id in window]  # already in this order
        ids = sorted(record_id for _, record_id in window)
        if not search.sorts or search.sorts == ((ID_PROPERTY, False),):
            return ids
        records = self._store.tables[schema.name].records
        ordered = self._sort(schema, [records[record_id] for record_id in ids], search.sorts)
        return [record.id for record in ordered]

    def _index(self, object_type: str) -> list[tuple[str, int]]:
        version = self._store.version
        built = self._indexes.get(object_type)
        if built is not None and built[0] == version:
            return built[1]
        table = self._store.tables[object_type]
        modified = table.schema.modified_property
        with self._store.lock:
            version = self._store.version
            records = table.records
            index = sorted(
                (records[record_id].properties[modified], record_id) for record_id in table.active
            )
        self._indexes[object_type] = (version, index)
        return index

    @staticmethod
    def _sort(
        schema: ObjectSchema, records: list[Record], sorts: tuple[tuple[str, bool], ...]
    ) -> list[Record]:
        """Records in id order, sorted by ``sorts`` (stable: ties stay in id order)."""
        for name, descending in reversed(sorts):  # stable sorts, last key first
            records = _sorted(records, schema.properties[name], name, descending)
        return records


def _sorted(records: list[Record], kind: str, name: str, descending: bool) -> list[Record]:
    # Choice (UNCONFIRMED): records without a value sort last in both directions; ties keep id
    # order (HubSpot's order among equal values is not documented).
    keyed = [(comparable(kind, record.properties.get(name)), record) for record in records]
    present = [(value, record) for value, record in keyed if value is not None]
    missing = [record for value, record in keyed if value is None]
    present.sort(key=lambda pair: pair[0], reverse=descending)
    return [record for _, record in present] + missing
