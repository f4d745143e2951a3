"""The compiled form of connector and mapping files: what the runtime works from.

Built once by engine.loader (which checks everything on the way); nothing here parses or
compiles, so the per-request and per-record paths only call what these objects hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.extract import Getter, truthy
from engine.mapping import ModelMapping
from engine.models import Model
from engine.templates import Expression, Structure, Template

if TYPE_CHECKING:
    from engine.authkinds import AuthMethod  # the auth kinds build httpx auth: not spec data

DEFAULT_BACKOFF = (1.0, 2.0, 4.0, 8.0)


@dataclass
class RequestSpec:
    method: str
    path: Template
    params: Structure
    headers: dict[str, Template]
    body: Structure | None
    idempotent: bool
    idempotency_header: str | None = None  # a fresh key per call, honoured by the vendor
    budget: str | None = None  # a rate-limit group this request spends too


@dataclass
class PaginationSpec:
    style: str
    options: dict[str, Any]  # plain values (param names, sizes)
    getters: dict[str, Getter]  # compiled jmespath (cursor, next_url, more, stop_when, ...)


@dataclass
class Pages:
    """A request and how to read its pages: the part every kind of read shares."""

    request: RequestSpec
    records: Getter
    paginate: PaginationSpec


@dataclass
class ChunkSpec:
    """The vendor's cap on one request's field list: past it, the same page is requested once
    per chunk of fields and the records are merged by `id`."""

    id: Getter  # in each record: its id, to merge the chunks' records
    max_fields: int | None = None  # items in the `param` list of one request
    param: str | None = None  # the query parameter holding the field list
    max_url_length: int | None = None  # characters of the whole URL, query string included


@dataclass
class FieldListSpec:
    """The CRM's field definitions for a stream: which fields its requests ask for (each
    definition's `key`; `select` keeps those a request may name), and, with `name`, the names
    custom fields land under in `custom` (vendor keys are often opaque)."""

    request: RequestSpec
    records: Getter
    key: Getter
    paginate: PaginationSpec
    name: Getter | None = None
    select: Getter | None = None  # true for a definition whose field a request may name
    chunk: ChunkSpec | None = None
    options: OptionsSpec | None = None  # a choice field's values: option id -> label

    @property
    def pages(self) -> Pages:
        return Pages(self.request, self.records, self.paginate)


@dataclass
class OptionsSpec:
    """In a field definition: its options, where the records hold an option's id (an enum
    field) or several (a set): `custom` shows their labels instead."""

    records: Getter
    key: Getter
    name: Getter


@dataclass
class EnrichSpec:
    """More requests for what a page's own request does not return (associations, a deal's
    participants). By default one per page: its templates see `ids`, the page's record ids,
    and each result is set into the record its `key` names. With `each`, one per record: its
    templates see `record`, and the values of all its results (every page of them) are set
    into that record as a list."""

    pages: Pages  # the request (and its pagination), and where its results are
    key: Getter | None  # one per page: in each result, the id of the record it belongs to
    value: Getter  # in each result: what to set
    into: tuple[str, ...]  # where in the record, as a key path
    id: Getter  # in each record: its id
    # In each record: whether it needs the request (default all). A page with none sends none;
    # the records left out keep what the vendor sent at `into`.
    when: Getter | None = None
    enabled: Expression | None = None  # `if`: false for this run (a setting), no request at all
    # In each result (one request per page): the cursor of its record's next results, which
    # the step is sent again for (templates see `after`: record id -> cursor).
    more: Getter | None = None

    @property
    def each(self) -> bool:
        """One request per record: such a step has no `key` (the loader sees to it)."""
        return self.key is None


@dataclass
class IncrementalSpec:
    """How a stream reads only what changed: records sorted ascending by `cursor`, from a
    lower bound the engine keeps (see engine.sync.incremental)."""

    cursor: Getter
    pages: Pages
    lookback_seconds: float | Template = 0.0  # a template reads it from the config
    resolution_seconds: float = 0.001
    result_cap: int | None = None
    tie_breaker: Getter | None = None
    enrich: list[EnrichSpec] = field(default_factory=list)
    requery_each_page: bool = False  # the next page is an offset: query again from the cursor

    def lookback(self, context: dict[str, Any]) -> float:
        value = self.lookback_seconds
        return float(value.render(context) if isinstance(value, Template) else value)


@dataclass
class AccountFact:
    """A fact about the account (its default currency), read once per connection and sync."""

    request: RequestSpec
    value: Getter


@dataclass
class DeletesSpec:
    pages: Pages
    id: Getter
    deleted_at: Getter | None = None


@dataclass
class StreamSpec:
    name: str
    mapping: ModelMapping
    request: RequestSpec
    records: Getter
    paginate: PaginationSpec
    description: str = ""
    fields: FieldListSpec | None = None  # the CRM's field list (discovered each run)
    incremental: IncrementalSpec | None = None
    deletes: DeletesSpec | None = None
    enrich: list[EnrichSpec] = field(default_factory=list)  # every page, whichever read
    sweeps: bool = True  # a full refresh may mark rows it did not see deleted (own table)
    where: Getter | None = None  # which of the records the stream keeps

    def split(self, records: list[Any]) -> tuple[list[Any], list[Any]]:
        """The records the stream keeps, and those `where` leaves out."""
        if self.where is None:
            return records, []
        kept: list[Any] = []
        left: list[Any] = []
        for record in records:
            (kept if truthy(self.where(record)) else left).append(record)
        return kept, left

    @property
    def pages(self) -> Pages:
        return Pages(self.request, self.records, self.paginate)

    @property
    def table(self) -> str:
        return self.mapping.model.table


@dataclass
class ResultSpec:
    record: Getter | None = None
    records: Getter | None = None
    id: Template | None = None
    raw: bool = False  # records as the CRM sent them, not mapped
    max_records: int = 10_000  # when paginating
    then: str | None = None  # an `id`-input action to run with the result's id (a read-back)
    filter: Expression | None = None  # keeps the records it is true for (over record, input)

    @property
    def names_id(self) -> bool:
        """Whether a successful response is expected to carry the record's id."""
        return self.id is not None or self.record is not None


@dataclass
class ActionCase:
    when: Expression | None
    mapping: ModelMapping | None  # None: the action's input is not a unified model
    request: RequestSpec
    result: ResultSpec
    paginate: PaginationSpec | None = None


@dataclass
class ActionSpec:
    name: str
    model: Model | None  # None with an input schema of the action's own
    input_mode: str  # create | update | id | fields | schema
    allowed: list[str]
    required: list[str]
    cases: list[ActionCase]
    example: Structure | None  # a sample payload; templates may use earlier `results`
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict)
    validator: Any = None  # the input schema's compiled jsonschema validator
    read_first: str | None = None  # an `input: id` action whose record templates see as current


@dataclass
class HeaderValue:
    """A number in a response header. `headers` lists the names it may come under (a current
    and a legacy name): the first one present wins."""

    headers: tuple[str, ...]
    pattern: re.Pattern[str] | None
    unit: str  # s | ms

    def __post_init__(self) -> None:
        if isinstance(self.headers, str):
            self.headers = (self.headers,)

    def raw(self, headers: Any) -> str | None:
        for name in self.headers:
            value = headers.get(name)
            if value is not None:
                return value
        return None

    def read(self, headers: Any) -> float | None:
        raw = self.raw(headers)
        if raw is None:
            return None
        if self.pattern is not None:
            match = self.pattern.search(raw)
            if not match:
                return None
            raw = match.group(1)
        try:
            value = float(raw)
        except ValueError:
            return None
        return value / 1000 if self.unit == "ms" else value

    def read_usage(self, headers: Any) -> tuple[int, int] | None:
        """(used, allowed) from a header whose pattern has two groups."""
        raw = self.raw(headers)
        match = self.pattern.search(raw) if raw is not None and self.pattern else None
        if match is None or match.re.groups < 2:
            return None
        return int(match.group(1)), int(match.group(2))


@dataclass
class RateLimitSpec:
    requests: int
    per_seconds: float
    max_concurrent: int | None = None
    feedback: dict[str, HeaderValue] = field(default_factory=dict)
    groups: dict[str, RateLimitSpec] = field(default_factory=dict)  # endpoint groups


@dataclass
class RetrySpec:
    max_retries: int = 3
    max_rate_limit_retries: int = 6
    backoff_seconds: tuple[float, ...] = DEFAULT_BACKOFF
    jitter: float = 0.25
    max_wait_seconds: float = 120.0


@dataclass
class ErrorRule:
    statuses: frozenset[int] | None
    codes: frozenset[str] | None
    matches: Getter | None
    kind: str
    message: str | None
    not_processed: bool = False  # the vendor refused it unprocessed: a create may be resent


@dataclass
class ErrorSpec:
    code: Getter | None = None
    message: Getter | None = None
    in_body_when: Getter | None = None
    in_body_code: Getter | None = None
    in_body_message: Getter | None = None
    rules: list[ErrorRule] = field(default_factory=list)


_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "list": (list,),
}


@dataclass
class ConfigSetting:
    name: str
    type: str = "string"
    default: Any = None
    required: bool = False
    description: str = ""
    enum: list[Any] | None = None
    minimum: float | None = None  # the vendor's own bounds, e.g. a page size of at most 100
    maximum: float | None = None

    def problem(self, value: Any) -> str | None:
        """Why `value` is not a valid value of this setting, or None if it is."""
        if value is None:
            return None
        kinds = _CONFIG_TYPES[self.type]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            return f"{value!r} is not a valid {self.type}"
        if self.enum and value not in self.enum:
            return f"{value!r} is not one of {', '.join(map(str, self.enum))}"
        if self.minimum is not None and value < self.minimum:
            return f"{value!r} is below the minimum, {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"{value!r} is above the maximum, {self.maximum:g}"
        return None


@dataclass
class Connector:
    name: str
    title: str
    constants: dict[str, Any]
    escapes: dict[str, dict[str, str]]
    file: str
    description: str
    config: dict[str, ConfigSetting]
    base_url: Template
    timeout_seconds: float
    headers: dict[str, Template]
    auth: dict[str, AuthMethod]
    rate_limit: RateLimitSpec | None
    retry: RetrySpec
    errors: ErrorSpec
    streams: dict[str, StreamSpec]
    actions: dict[str, ActionSpec]
    mappings: dict[str, ModelMapping]
    mapping_file: str
    check: RequestSpec | None = None  # a cheap request proving credentials and reachability
    account: dict[str, AccountFact] = field(default_factory=dict)
    mapping_text: str = field(default="", repr=False)  # the mapping file as it was loaded

    @property
    def credential_settings(self) -> set[str]:
        return {s for m in self.auth.values() for s in m.credential_settings}

    def template_context(self, config: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
        """What every template of this connector may read; unset settings are None."""
        credentials = dict.fromkeys(self.credential_settings)
        credentials.update(settings)
        return {"config": config, "credentials": credentials, "constants": self.constants,
                "escapes": self.escapes}


