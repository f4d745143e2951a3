"""SOQL execution: type-checks a parsed query against the schema, filters and sorts records,
and serves the result in pages behind query locators (CONTRACTS 2.3).

Cost model: the first request of a query does the O(N) filter and sort once; the matching
record list is cached per (SOQL text, store version) and shared by every locator opened on it.
A page is then a slice plus per-record JSON fragments (rendered once per selection and API
version, see Store.fragments) joined into the body: no per-page work beyond the page itself.
"""

from __future__ import annotations

import calendar
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.kit.core import Clock, LruCache
from sandbox.salesforce.errors import bad_request
from sandbox.salesforce.ids import make_id, normalize_id
from sandbox.salesforce.schema import (
    CHILD_RELATIONSHIPS,
    ID_TYPES,
    NUMBER_TYPES,
    SCHEMAS,
    STRING_TYPES,
    Field,
    ObjectSchema,
    schema_for,
)
from sandbox.salesforce.soql import (
    Comparison,
    Condition,
    FieldRef,
    Literal,
    Logical,
    Negation,
    Query,
    SoqlError,
    StringValue,
    SubQuery,
    parse,
)
from sandbox.salesforce.store import Child, FieldPath, PathError, Record, Selection, Store
from sandbox.salesforce.values import format_datetime, parse_date, parse_datetime

# System fields every record has: sorting on them needs no null handling.
NEVER_NULL = frozenset(
    {"Id", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp"}
)
DEFAULT_BATCH = 2000  # CONTRACTS 2.3: 2,000 records a page
MIN_BATCH, MAX_BATCH = 200, 2000  # Sforce-Query-Options: batchSize (Salesforce REST docs)
LONG_TEXT_BATCH = 1000  # CONTRACTS 2.3: 1,000 observed for a query selecting a long text field
MAX_OFFSET = 2000  # SOQL: "Maximum SOQL offset allowed is 2000"
CURSOR_IDLE_SECONDS = 15 * 60  # query locators expire after 15 minutes of inactivity
# Open locators kept (oldest dropped first). Salesforce documents 10 per user; the sandbox keeps
# more so parallel syncs and tests never trip over it (our choice).
MAX_CURSORS = 256

Predicate = Callable[[Record], bool]

_MISSING_FIELD = (
    "No such column '{name}' on entity '{entity}'. If you are attempting to use a custom field, "
    "be sure to append the '__c' after the custom field name. Please reference your WSDL or the "
    "describe call for the appropriate names."
)
_BAD_RELATIONSHIP = (
    "Didn't understand relationship '{name}' in field path. If you are attempting to use a "
    "custom relationship, be sure to append the '__r' after the custom relationship name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)
_BAD_TYPE = (
    "sObject type '{name}' is not supported. If you are attempting to use a custom object, be "
    "sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
    "call for the appropriate names."
)


@dataclass
class Plan:
    schema: ObjectSchema
    selection: Selection | None  # None for SELECT COUNT()
    predicate: Predicate | None
    # (key, descending, nulls first); nulls first is None for fields that are never null
    order: list[tuple[Callable[[Record], Any], bool, bool | None]]
    limit: int | None
    offset: int
    batch_cap: int
    cacheable: bool  # False when relative date literals make results depend on the day


@dataclass
class Cursor:
    records: list[Record]
    selection: Selection
    batch: int
    last_used: float


def field_error(message: str, position: int) -> SoqlError:
    return SoqlError("INVALID_FIELD", message, position)


class QueryEngine:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._plans = LruCache(256)
        self._results = LruCache(64)
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._cursor_lock = threading.Lock()
        self._next_locator = 0

    # -- entry points ----------------------------------------------------------------------

    def query(self, soql: str, *, all_rows: bool, version: str, batch_size: int) -> bytes:
        """The first page of ``soql`` (query or queryAll) as a response body."""
        plan = self.plan(soql)
        records = self._execute(soql, plan, all_rows)
        if plan.selection is None:  # SELECT COUNT(): the count is totalSize, no records
            return b'{"totalSize":%d,"done":true,"records":[]}' % len(records)
        batch = min(batch_size, plan.batch_cap)
        cursor = Cursor(records, plan.selection, batch, self.clock.now())
        return self._page(cursor, 0, version)

    def select(self, soql: str, *, all_rows: bool = False, version: str = "59.0") -> list[dict]:
        """Test helper: every matching record as the API renders it, without paging (raises
        SalesforceError like the endpoint would; COUNT() gives an empty list)."""
        plan = self.plan(soql)
        records = self._execute(soql, plan, all_rows)
        if plan.selection is None:
            return []
        return [plan.selection.render(record, version) for record in records]

    def more(self, locator: str, *, version: str) -> bytes:
        """A follow-up page: ``locator`` is ``<id>-<offset>`` from nextRecordsUrl."""
        cursor_id, _, offset_text = locator.partition("-")
        with self._cursor_lock:
            cursor = self._cursors.get(cursor_id)
            now = self.clock.now()
            if cursor is not None and now - cursor.last_used > CURSOR_IDLE_SECONDS:
                del self._cursors[cursor_id]
                cursor = None
            if cursor is not None:
                cursor.last_used = now
                self._cursors.move_to_end(cursor_id)
        offset = int(offset_text) if offset_text.isdigit() else 0 if not offset_text else -1
        if cursor is None or not 0 <= offset <= len(cursor.records):
            raise bad_request("INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(cursor, offset, version, cursor_id)

    # -- planning --------------------------------------------------------------------------

    def plan(self, soql: str) -> Plan:
        plan = self._plans.get(soql)
        if plan is None:
            try:
                plan = Compiler(self.store, self.clock, soql).compile()
            except SoqlError as error:
                raise bad_request(error.code, error.render(soql)) from None
            if plan.cacheable:
                self._plans.put(soql, plan)
        return plan

    def _execute(self, soql: str, plan: Plan, all_rows: bool) -> list[Record]:
        key = (soql, all_rows)
        version = self.store.version
        if plan.cacheable:
            cached = self._results.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
        candidates = self.store.records(plan.schema.name, include_deleted=all_rows)
        predicate = plan.predicate
        rows = [r for r in candidates if predicate(r)] if predicate else list(candidates)
        for key_function, descending, nulls_first in reversed(plan.order):
            rows.sort(key=_sort_key(key_function, descending, nulls_first), reverse=descending)
        start = plan.offset
        end = None if plan.limit is None else start + plan.limit
        if start or end is not None:
            rows = rows[start:end]
        if plan.cacheable:
            self._results.put(key, (version, rows))
        return rows

    # -- paging ----------------------------------------------------------------------------

    def _page(
        self, cursor: Cursor, offset: int, version: str, cursor_id: str | None = None
    ) -> bytes:
        records = cursor.records
        total = len(records)
        end = min(offset + cursor.batch, total)
        chunk = records[offset:end]
        selection = cursor.selection
        if selection.has_relationships:  # related records may change: render every time
            fragments = selection.fragments(chunk, version)
        else:
            cache = self.store.fragments((selection.schema.name, selection.key, version))
            get = cache.get
            fragments = [get(record) for record in chunk]
            if None in fragments:
                positions = [i for i, fragment in enumerate(fragments) if fragment is None]
                missing = [chunk[i] for i in positions]
                revs = [record.rev for record in missing]
                rendered = selection.fragments(missing, version)
                for position, fragment in zip(positions, rendered, strict=True):
                    fragments[position] = fragment
                self.store.keep_fragments(cache, missing, revs, rendered)
        head = b'{"totalSize":%d,"done":' % total
        if end < total:
            if cursor_id is None:
                cursor_id = self._open(cursor)
            # CONTRACTS 2.3: path-absolute, includes the version; "<locator>-<next offset>".
            # A queryAll locator is named under /query/ too (Salesforce REST docs, "QueryAll
            # More Results"); both resources serve every locator.
            url = f"/services/data/v{version}/query/{cursor_id}-{end}"
            head += b'false,"nextRecordsUrl":"' + url.encode() + b'"'
        else:
            head += b"true"
        return head + b',"records":[' + b",".join(fragments) + b"]}"

    def _open(self, cursor: Cursor) -> str:
        with self._cursor_lock:
            self._next_locator += 1
            # Query locators are ids with key prefix 01g (query_page_not_done_wiremock.json).
            cursor_id = make_id("01g", 1_000_000 + self._next_locator)
            self._cursors[cursor_id] = cursor
            while len(self._cursors) > MAX_CURSORS:
                self._cursors.popitem(last=False)
            return cursor_id


def _sort_key(
    key_function: Callable[[Record], Any], descending: bool, nulls_first: bool | None
) -> Callable[[Record], Any]:
    if nulls_first is None:  # the field is never null
        return key_function
    # With reverse=True the larger flag comes first, so the flag that puts nulls where asked
    # depends on the direction. Non-null values are only ever compared with each other.
    null_flag = 0 if nulls_first != descending else 1
    value_flag = 1 - null_flag

    def sort_key(record: Record) -> tuple:
        value = key_function(record)
        return (null_flag, 0) if value is None else (value_flag, value)

    return sort_key


class Compiler:
    """Type-checks a parsed query and turns it into a Plan of Python closures."""

    def __init__(self, store: Store, clock: Clock, soql: str) -> None:
        self.store = store
        self.clock = clock
        self.soql = soql

    def compile(self) -> Plan:
        query = parse(self.soql)
        assert query.object_name is not None
        schema = schema_for(query.object_name.name)
        if schema is None:
            raise SoqlError(
                "INVALID_TYPE",
                _BAD_TYPE.format(name=query.object_name.name),
                query.object_name.position,
            )
        self.schema = schema
        if query.offset is not None and query.offset > MAX_OFFSET:
            raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")
        selection = None if query.count_only else self._selection(query)
        predicate = self._condition(query.where) if query.where is not None else None
        order = []
        for item in query.order_by:
            path = self.resolve(item.field)
            if not path.field.sortable:
                raise field_error(
                    f"field '{path.field.name}' can not be sorted in a query call",
                    item.field.position,
                )
            nulls_first = True if item.nulls_first is None else item.nulls_first
            key = _comparable(path)
            if not path.hops and (path.field.name in NEVER_NULL or path.field.type == "boolean"):
                nulls_first = None  # never null: sort on the value alone (the common case)
            order.append((key, item.descending, nulls_first))
        long_text = selection is not None and any(
            p.field.type == "textarea" and p.field.length > 255 for p in selection.paths
        )
        return Plan(
            schema,
            selection,
            predicate,
            order,
            query.limit,
            query.offset or 0,
            LONG_TEXT_BATCH if long_text else MAX_BATCH,
            not query.relative_dates,
        )

    def resolve(self, ref: FieldRef) -> FieldPath:
        try:
            return self.store.resolve(self.schema, ref.name)
        except PathError as error:
            template = _MISSING_FIELD if error.kind == "column" else _BAD_RELATIONSHIP
            raise field_error(
                template.format(name=error.name, entity=error.entity), ref.position
            ) from None

    def _selection(self, query: Query) -> Selection:
        refs = list(query.fields)
        if query.fields_function is not None:
            kind, position = query.fields_function
            if kind != "STANDARD" and (query.limit is None or query.limit > 200):
                raise SoqlError(
                    "MALFORMED_QUERY",
                    "The SOQL FIELDS function must have a LIMIT of at most 200",
                    position,
                )
            refs += [
                FieldRef(f.name, position)
                for f in self.schema.fields
                if kind == "ALL" or (kind == "CUSTOM") == f.custom
            ]
        paths = []
        seen = set()
        for ref in refs:
            path = self.resolve(ref)
            key = path.dotted.lower()
            if key in seen:
                if query.fields_function is not None:
                    continue  # FIELDS() may overlap with listed fields
                # Choice (UNCONFIRMED code): Salesforce rejects duplicates with this message.
                raise field_error(f"duplicate field selected: {path.dotted}", ref.position)
            seen.add(key)
            paths.append(path)
        return Selection(self.store, self.schema, paths,
                         tuple(self._child(sub) for sub in query.subqueries))

    def _child(self, sub: SubQuery) -> Child:
        found = CHILD_RELATIONSHIPS.get((self.schema.name, sub.relationship.name.lower()))
        if found is None:
            # Choice (UNCONFIRMED wording): what Salesforce says for an unknown relationship.
            raise field_error(f"Didn't understand relationship '{sub.relationship.name}' in "
                              f"FROM part of query call.", sub.relationship.position)
        name, child_object, lookup = found
        child_schema = SCHEMAS[child_object]
        paths = []
        for ref in sub.fields:
            try:
                paths.append(self.store.resolve(child_schema, ref.name))
            except PathError as error:
                template = _MISSING_FIELD if error.kind == "column" else _BAD_RELATIONSHIP
                raise field_error(template.format(name=error.name, entity=error.entity),
                                  ref.position) from None
        return Child(name, Selection(self.store, child_schema, paths), lookup)

    # -- WHERE -----------------------------------------------------------------------------

    def _condition(self, condition: Condition) -> Predicate:
        if isinstance(condition, Logical):
            parts = [self._condition(item) for item in condition.items]
            if condition.operator == "AND":
                return lambda record: all(part(record) for part in parts)
            return lambda record: any(part(record) for part in parts)
        if isinstance(condition, Negation):
            inner = self._condition(condition.item)
            return lambda record: not inner(record)
        return self._comparison(condition)

    def _comparison(self, comparison: Comparison) -> Predicate:
        path = self.resolve(comparison.field)
        field = path.field
        position = comparison.field.position
        if not field.filterable:
            raise field_error(f"field '{field.name}' can not be filtered in a query call", position)
        operator = comparison.operator
        getter = _comparable(path)
        if operator == "LIKE":
            return self._like(field, getter, comparison)
        if operator in ("IN", "NOT IN"):
            assert isinstance(comparison.value, tuple)
            values = [self._value(field, literal, position) for literal in comparison.value]
            match = _in_predicate(getter, values)
            return match if operator == "IN" else (lambda record: not match(record))
        assert isinstance(comparison.value, Literal)
        value = self._value(field, comparison.value, position)
        if isinstance(value, _Range):
            return _range_predicate(getter, operator, value)
        if operator == "=":
            return _equals(getter, value)
        if operator == "!=":
            # SOQL != also matches records where the field is null (unlike SQL).
            equal = _equals(getter, value)
            return lambda record: not equal(record)
        if value is None or field.type == "boolean":
            return lambda record: False
        compare = _ORDERINGS[operator]

        def ordered(record: Record) -> bool:
            current = getter(record)
            return current is not None and compare(current, value)

        return ordered

    def _like(self, field: Field, getter: Callable, comparison: Comparison) -> Predicate:
        literal = comparison.value
        if field.type not in STRING_TYPES:
            raise SoqlError(
                "INVALID_QUERY_FILTER_OPERATOR",
                f"invalid operator on {field.type} field",  # our wording
                comparison.field.position,
            )
        if not isinstance(literal, Literal) or literal.kind != "string":
            raise self._type_error(field, comparison.field.position)
        assert isinstance(literal.value, StringValue)
        # LIKE is case-insensitive; % and _ are wildcards unless escaped (CONTRACTS 2.5).
        pattern = re.compile(literal.value.like_pattern, re.IGNORECASE | re.DOTALL)
        fullmatch = pattern.fullmatch

        def like(record: Record) -> bool:
            current = getter(record)
            return current is not None and fullmatch(current) is not None

        return like

    def _value(self, field: Field, literal: Literal, position: int) -> Any:
        """The literal as a value comparable with the field's stored (normalised) values."""
        kind = literal.kind
        if kind == "null":
            return None
        if kind == "string":
            text_value = literal.value
            assert isinstance(text_value, StringValue)
            if text_value.like_escapes:
                sequence = "\\%" if "\\%" in literal.text else "\\_"
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"Invalid string literal {literal.text}. Illegal character sequence "
                    f"'{sequence}' in string literal.",
                    literal.position,
                )
            text = text_value.text
            if field.type in STRING_TYPES:
                return text.lower() or None  # '' means null: Salesforce stores no empty text
            if field.type in ID_TYPES:
                if text == "":
                    return None
                canonical = normalize_id(text)
                if canonical is None:
                    raise SoqlError(
                        "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {text}", position
                    )
                return canonical
            raise self._type_error(field, position)
        if field.type in STRING_TYPES or field.type in ID_TYPES:
            raise self._type_error(field, position)
        if field.type == "boolean" and kind == "boolean":
            return literal.value
        if field.type in NUMBER_TYPES and kind == "number":
            return float(literal.value)  # type: ignore[arg-type]
        if field.type == "date":
            if kind == "date":
                parsed = parse_date(literal.text)
                if parsed is None:
                    raise SoqlError("MALFORMED_QUERY", f"unexpected token: {literal.text}",
                                    literal.position)  # fmt: skip
                return parsed
            if kind == "date_literal":
                return self._range(literal, dates=True)
        if field.type == "datetime":
            if kind == "datetime":
                # CONTRACTS 2.3: unquoted ISO-8601 with Z or an offset; compared as instants.
                parsed = parse_datetime(literal.text)
                if parsed is None or not re.search(r"(Z|[+-]\d{2}:?\d{2})$", literal.text):
                    raise SoqlError("MALFORMED_QUERY", f"unexpected token: {literal.text}",
                                    literal.position)  # fmt: skip
                return parsed
            if kind == "date_literal":
                return self._range(literal, dates=False)
        raise self._type_error(field, position)

    def _type_error(self, field: Field, position: int) -> SoqlError:
        if field.type in STRING_TYPES:
            wanted, quoted = "string", True
        elif field.type in ID_TYPES:
            wanted, quoted = "id", True
        else:
            wanted = {"int": "int", "date": "date", "datetime": "dateTime", "boolean": "boolean"}
            wanted, quoted = wanted.get(field.type, "double"), False
        should = "should" if quoted else "should not"
        return field_error(
            f"value of filter criterion for field '{field.name}' must be of type {wanted} "
            f"and {should} be enclosed in quotes",
            position,
        )

    def _range(self, literal: Literal, *, dates: bool) -> _Range:
        name, amount = literal.value  # type: ignore[misc]
        start, end = relative_range(name, amount, self.clock.now())
        if dates:
            return _Range(start.isoformat(), end.isoformat())
        return _Range(_midnight(start), _midnight(end))


@dataclass(frozen=True)
class _Range:
    """A relative date literal: [start, end) in the field's string form."""

    start: str
    end: str


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _comparable(path: FieldPath) -> Callable[[Record], Any]:
    """Getter of the value as compared and sorted: text lower-cased (SOQL is case-insensitive
    for text), numbers as floats, everything else as stored."""
    getter = path.getter
    if path.field.type in STRING_TYPES:

        def lowered(record: Record) -> Any:
            value = getter(record)
            return value.lower() if value is not None else None

        return lowered
    if path.field.type in NUMBER_TYPES:

        def numeric(record: Record) -> Any:
            value = getter(record)
            return float(value) if value is not None else None

        return numeric
    return getter


def _equals(getter: Callable[[Record], Any], value: Any) -> Predicate:
    if value is None:
        return lambda record: getter(record) is None
    return lambda record: getter(record) == value


def _in_predicate(getter: Callable[[Record], Any], values: list[Any]) -> Predicate:
    ranges = [value for value in values if isinstance(value, _Range)]
    plain = {value for value in values if not isinstance(value, _Range)}
    if not ranges:
        return lambda record: getter(record) in plain
    checks = [_range_predicate(getter, "=", value) for value in ranges]
    return lambda record: getter(record) in plain or any(check(record) for check in checks)


def _range_predicate(getter: Callable[[Record], Any], operator: str, span: _Range) -> Predicate:
    start, end = span.start, span.end
    tests: dict[str, Callable[[Any], bool]] = {
        "=": lambda v: start <= v < end,
        "!=": lambda v: not start <= v < end,
        "<": lambda v: v < start,
        "<=": lambda v: v < end,
        ">": lambda v: v >= end,
        ">=": lambda v: v >= start,
    }
    test = tests[operator]
    if operator == "!=":
        return lambda record: (value := getter(record)) is None or test(value)
    return lambda record: (value := getter(record)) is not None and test(value)


def _midnight(day: date) -> str:
    return format_datetime(calendar.timegm(day.timetuple()))


def relative_range(name: str, amount: int | None, now: float) -> tuple[date, date]:
    """[start, end) days of a relative date literal, in UTC (the sandbox org's time zone)."""
    today = datetime.fromtimestamp(now, UTC).date()
    day = timedelta(days=1)
    n = amount or 0
    if name == "TODAY":
        return today, today + day
    if name == "YESTERDAY":
        return today - day, today
    if name == "TOMORROW":
        return today + day, today + 2 * day
    if name == "LAST_N_DAYS":  # today and the n days before it
        return today - n * day, today + day
    if name == "NEXT_N_DAYS":  # from tomorrow, n days
        return today + day, today + (n + 1) * day
    if name == "N_DAYS_AGO":
        return today - n * day, today - (n - 1) * day
    if name == "LAST_90_DAYS":
        return today - 90 * day, today + day
    if name == "NEXT_90_DAYS":
        return today + day, today + 91 * day
    month = today.replace(day=1)
    if name == "THIS_MONTH":
        return month, _add_months(month, 1)
    if name == "LAST_MONTH":
        return _add_months(month, -1), month
    if name == "NEXT_MONTH":
        return _add_months(month, 1), _add_months(month, 2)
    year = today.replace(month=1, day=1)
    offset = {"THIS_YEAR": 0, "LAST_YEAR": -1, "NEXT_YEAR": 1}[name]
    start = year.replace(year=year.year + offset)
    return start, start.replace(year=start.year + 1)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return day.replace(year=index // 12, month=index % 12 + 1)


def batch_size_from(header: str | None, default: int) -> int:
    """``Sforce-Query-Options: batchSize=N``, clamped to 200..2000 (Salesforce treats the
    number as a preference; out-of-range values are clamped here, our choice)."""
    if header:
        match = re.search(r"batchSize\s*=\s*(\d+)", header, re.IGNORECASE)
        if match:
            return max(MIN_BATCH, min(MAX_BATCH, int(match.group(1))))
    return default
