"""Load connector and mapping files into compiled, checked spec objects (engine.spec).

`load_connector` is the entry point: it checks the file against its JSON Schema, loads and
checks its mapping, then compiles every template and jmespath expression and checks that every
name they use resolves. All problems are collected and raised together as one `SpecError`,
each with file, line and YAML path. Nothing is compiled later, on the per-record path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from engine import schema_check
from engine.associations import Association
from engine.convert import DURATION_FORMATS
from engine.errors import Problem, SpecError
from engine.extract import ExpressionProblem, Getter, compile_getter
from engine.mapping import ModelMapping, build_field
from engine.models import FIELD_TYPES, Model, unified_models
from engine.normalize import PHONE_REGIONS
from engine.spec import (
    AccountFact,
    ActionCase,
    ActionSpec,
    ChunkSpec,
    ConfigSetting,
    Connector,
    DeletesSpec,
    EnrichSpec,
    ErrorRule,
    ErrorSpec,
    FieldListSpec,
    HeaderValue,
    IncrementalSpec,
    OptionsSpec,
    Pages,
    PaginationSpec,
    RateLimitSpec,
    RequestSpec,
    ResultSpec,
    RetrySpec,
    StreamSpec,
)
from engine.templates import (
    PATH_ENV,
    TEXT_ENV,
    Expression,
    Structure,
    Template,
    TemplateSyntaxProblem,
    referenced_names,
    template_strings,
    unsafe_attributes,
)
from engine.yamlsource import Locator, YamlPath, load, read_text

if TYPE_CHECKING:
    from engine.authkinds import AuthMethod

# What stream request templates see of the sync's position (engine.sync.incremental).
CURSOR_NAMES = {"since", "slice", "after_id"}


class _Checker:
    """Collects located problems while compiling one file."""

    def __init__(self, loc: Locator):
        self.loc = loc
        self.problems: list[Problem] = []
        self.budget_groups: set[str] = set()  # rate_limit.groups, which requests may name

    def add(self, path: YamlPath, message: str) -> None:
        self.problems.append(self.loc.problem(path, message))

    def getter(self, path: YamlPath, expression: str) -> Getter | None:
        try:
            return compile_getter(expression)
        except ExpressionProblem as exc:
            self.add(path, str(exc))
            return None

    def template(self, path: YamlPath, source: str, roots: dict[str, set[str] | None],
                 env: Any = TEXT_ENV) -> Template | None:
        try:
            compiled = Template(source, env)
            self.names(path, source, roots, env)
            return compiled
        except TemplateSyntaxProblem as exc:
            self.add(path, str(exc))
            return None

    def expression(self, path: YamlPath, source: str,
                   roots: dict[str, set[str] | None]) -> Expression | None:
        try:
            compiled = Expression(source)
            self.names(path, compiled.as_template, roots)
            return compiled
        except TemplateSyntaxProblem as exc:
            self.add(path, str(exc))
            return None

    def structure(self, path: YamlPath, value: Any, roots: dict[str, set[str] | None],
                  env: Any = TEXT_ENV) -> Structure | None:
        ok = True
        for sub_path, source in template_strings(value):
            try:
                Template(source, env)
                self.names(path + sub_path, source, roots, env)
            except TemplateSyntaxProblem as exc:
                self.add(path + sub_path, str(exc))
                ok = False
        return Structure(value, env) if ok else None

    def names(self, path: YamlPath, source: str, roots: dict[str, set[str] | None],
              env: Any = TEXT_ENV) -> None:
        """Every variable a template reads must exist: its root, and its first attribute where
        the root's attributes are known (config settings, input fields, ...). No attribute
        the sandbox refuses (`__class__`, `mro`) may be read: that fails at run time."""
        for attribute in unsafe_attributes(source, env):
            self.add(path, f"the template reads {attribute!r}, which the template sandbox "
                           f"refuses")
        for chain in referenced_names(source, env):
            root = chain[0]
            if root in env.globals and root not in roots:  # dict(), range(), ...
                continue
            if root not in roots:
                known = ", ".join(sorted(roots)) or "none"
                self.add(path, f"undefined variable {root!r} in template (available: {known})")
                continue
            attrs = roots[root]
            if attrs is not None and len(chain) > 1 and chain[1] not in attrs:
                known = ", ".join(sorted(attrs)) or "none"
                self.add(path, f"undefined variable '{root}.{chain[1]}' (known: {known})")


# Settings every connector's connections have, whatever its file declares.
EVERY_CONNECTOR = (
    ConfigSetting("raw_records", "boolean", False, description=(
        "Also land each vendor record as the CRM sent it, in the tables' `raw` JSON column.")),
    ConfigSetting("phone_region", "string", None, enum=list(PHONE_REGIONS), description=(
        "Where phone numbers written without a country code are (ISO 3166 code, e.g. US): "
        "phone_e164 reads them as numbers there.")),
)


def load_mapping(path: str | Path, text: str | None = None
                 ) -> tuple[dict[str, ModelMapping], list[Problem]]:
    """Load one mapping file (or `text`, read from it before); returns its model mappings and
    any problems."""
    data, loc = load(path, text)
    problems = schema_check.check("mapping", data, loc)
    if problems:
        return {}, problems
    checker = _Checker(loc)
    models = unified_models()
    out: dict[str, ModelMapping] = {}
    for key, spec in data["models"].items():
        base = ("models", key)
        model_name = spec.get("model", key)
        model = models.get(model_name)
        if model is None:
            where = base + ("model",) if "model" in spec else base
            checker.add(where, f"unknown unified model {model_name!r} "
                               f"(known: {', '.join(models)})")
            continue
        fields = []
        for fname, fspec in spec["fields"].items():
            fpath = base + ("fields", fname)
            if fname not in model.fields:
                known = ", ".join(model.fields)
                checker.add(fpath, f"{model_name} has no field {fname!r} (fields: {known})")
                continue
            derive = model.fields[fname].derive
            if derive is not None:
                checker.add(fpath, f"{model_name}.{fname} is computed from {derive.source}; "
                                   f"a mapping does not name it")
                continue
            if not _check_field(checker, fpath, model, fname, fspec, models):
                continue
            try:
                fields.append(build_field(model, fname, fspec))
            except (TemplateSyntaxProblem, ExpressionProblem) as exc:
                checker.add(fpath, str(exc))
        custom = spec.get("custom")
        custom_from, exclude, prefixes, merge = None, (), (), ()
        if isinstance(custom, str):
            custom_from = custom
        elif isinstance(custom, dict):
            custom_from = custom["from"]
            exclude, prefixes = custom.get("exclude", ()), custom.get("exclude_prefixes", ())
            merge = tuple(tuple(m.split(".")) for m in custom.get("merge", ()))
        custom_path = None
        if custom_from is not None:
            custom_path = () if custom_from == "@" else tuple(custom_from.split("."))
        associations = None
        if "associations" in spec:
            associations = _associations(checker, base + ("associations",), model_name,
                                         spec["associations"], models)
        out[key] = ModelMapping(model, fields, custom_path, exclude, prefixes, merge,
                                associations)
    return out, checker.problems


def _associations(checker: _Checker, path: YamlPath, model_name: str, entries: list[Any],
                  models: dict[str, Model]) -> list[Association]:
    """A mapping's `associations:` entries, checked: `to` names a unified model, and every
    expression compiles."""
    out = []
    for i, entry in enumerate(entries):
        where = path + (i,)
        if entry["to"] not in models:
            checker.add(where + ("to",), f"unknown unified model {entry['to']!r} "
                                         f"(known: {', '.join(models)})")
            continue
        getters = {key: checker.getter(where + (key,), entry[key])
                   for key in ("id", "each", "label") if key in entry}
        if None in getters.values():
            continue
        out.append(Association(entry["to"], getters["id"], getters.get("each"),
                               getters.get("label"), f"{model_name}.associations[{i}]"))
    return out


def _check_field(checker: _Checker, path: YamlPath, model: Model, name: str, spec: Any,
                 models: dict[str, Model]) -> bool:
    if isinstance(spec, str):
        spec = {"path": spec}
    type_ = model.fields[name].type
    ok = True
    lookup = spec.get("lookup")
    if lookup is not None:
        target = models.get(lookup["model"])
        if target is None:
            checker.add(path + ("lookup", "model"), f"unknown unified model {lookup['model']!r} "
                                                    f"(known: {', '.join(models)})")
            ok = False
        elif lookup.get("by", "id") not in target.fields:
            checker.add(path + ("lookup", "by"), f"{target.name} has no field "
                                                 f"{lookup['by']!r} (fields: "
                                                 f"{', '.join(target.fields)})")
            ok = False
        if checker.getter(path + ("lookup", "value"), lookup["value"]) is None:
            ok = False
        if isinstance(spec.get("write"), str):
            checker.add(path + ("write",), "a looked-up field is read-only: write the field "
                                           "that holds the key instead")
            ok = False
    if isinstance(spec.get("path"), str) and not re.fullmatch(
            r"[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*", spec["path"]):
        checker.add(path + ("path",), f"path must be dotted keys (use `read:` for jmespath): "
                                      f"{spec['path']!r}")
        ok = False
    if "read" in spec and checker.getter(path + ("read",), spec["read"]) is None:
        ok = False
    formats = spec.get("format", [])
    formats = [formats] if isinstance(formats, str) else formats
    durations = [f for f in formats if f in DURATION_FORMATS]
    if durations and (type_ != "integer" or len(formats) != 1):
        checker.add(path + ("format",), f"a duration format ({', '.join(DURATION_FORMATS)}) "
                                        f"applies alone, to an integer field of seconds")
        ok = False
    elif formats and not durations and type_ not in ("date", "timestamp"):
        checker.add(path + ("format",), f"format applies to date and timestamp fields "
                                        f"(or a duration to integers); {name} is {type_}")
        ok = False
    if "scale" in spec and type_ not in ("integer", "number", "decimal"):
        checker.add(path + ("scale",), f"scale applies to numeric fields; {name} is {type_}")
        ok = False
    enum = model.fields[name].enum
    for unified in (spec.get("values") or {}):
        if enum and unified not in enum:
            checker.add(path + ("values", unified),
                        f"{unified!r} is not a value of {model.name}.{name} "
                        f"(allowed: {', '.join(enum)})")
            ok = False
    if isinstance(spec.get("write"), str):
        checker.template(path + ("write",), spec["write"], {"value": None})
    assert type_ in FIELD_TYPES
    return ok


def default_mapping_path(connector_file: Path, name: str, declared: str | None) -> Path:
    if declared:
        return (connector_file.parent / declared).resolve()
    return connector_file.parent.parent / "mappings" / f"{name}.yaml"


def load_connector(path: str | Path) -> Connector:
    """Load, check and compile a connector file and its mapping. Raises SpecError."""
    path = Path(path)
    data, loc = load(path)
    problems = schema_check.check("connector", data, loc)
    if problems:
        raise SpecError(problems)
    mapping_path = default_mapping_path(path, data["name"], data.get("mapping"))
    if not mapping_path.exists():
        where = ("mapping",) if "mapping" in data else ("name",)
        raise SpecError([loc.problem(where, f"mapping file not found: {mapping_path}")])
    # The text is kept: a mapping process compiles the very mapping this one did, whatever
    # becomes of the file during a sync.
    mapping_text = read_text(mapping_path)
    mappings, mapping_problems = load_mapping(mapping_path, mapping_text)
    if mapping_problems:
        raise SpecError(mapping_problems)
    checker = _Checker(loc)
    checker.budget_groups = set((data.get("rate_limit") or {}).get("groups") or {})
    connector = _compile_connector(checker, data, str(path), mappings, str(mapping_path))
    if checker.problems:
        raise SpecError(checker.problems)
    assert connector is not None
    connector.mapping_text = mapping_text
    return connector


def _compile_connector(c: _Checker, data: dict[str, Any], file: str,
                       mappings: dict[str, ModelMapping], mapping_file: str) -> Connector | None:
    config = {
        name: ConfigSetting(name, s.get("type", "string"), s.get("default"),
                            s.get("required", False), s.get("description", ""), s.get("enum"),
                            s.get("minimum"), s.get("maximum"))
        for name, s in (data.get("config") or {}).items()
    }
    for name, setting in config.items():
        problem = setting.problem(setting.default)
        if problem:
            c.add(("config", name, "default"), problem)
    for setting in EVERY_CONNECTOR:
        if setting.name in config:
            c.add(("config", setting.name), f"{setting.name} is a setting of every "
                                            f"connector; choose another name")
        config[setting.name] = setting
    settings = {s for m in data["auth"].values()
                for s in [*(m.get("settings") or {}), *(m.get("callback_settings") or {})]}
    constants = data.get("constants") or {}
    escapes = data.get("escapes") or {}
    base_roots: dict[str, set[str] | None] = {
        "config": set(config), "credentials": settings, "constants": set(constants),
        "escapes": set(escapes)}

    auth = {}
    for name, spec in data["auth"].items():
        auth[name] = _compile_auth(c, ("auth", name), name, spec, base_roots)

    http = data.get("http") or {}
    headers = {k: c.template(("http", "headers", k), v, base_roots)
               for k, v in (http.get("headers") or {}).items()}

    streams = {}
    for name, spec in (data.get("streams") or {}).items():
        streams[name] = _compile_stream(c, ("streams", name), name, spec, mappings,
                                        {**base_roots, "cursor": CURSOR_NAMES,
                                         "stream": {"name"}})
    tables = [s.table for s in streams.values() if s is not None]
    for stream in streams.values():
        if stream is not None:  # another stream's rows in the same table are not ours to sweep
            stream.sweeps = tables.count(stream.table) == 1

    account = {}
    for name, spec in (data.get("account") or {}).items():
        request = _compile_request(c, ("account", name, "request"), spec["request"], base_roots)
        value = c.getter(("account", name, "value"), spec["value"])
        if request is not None and value is not None:
            account[name] = AccountFact(request, value)
    for key, mapping in mappings.items():
        for f in mapping.fields.values():
            if f.fallback is not None and f.fallback not in (data.get("account") or {}):
                c.add(("account",) if "account" in data else ("name",),
                      f"mapping {key}.{f.name} falls back on the account fact {f.fallback!r}, "
                      f"which this connector's `account:` does not declare")

    actions = {}
    for name, spec in (data.get("actions") or {}).items():
        actions[name] = _compile_action(c, ("actions", name), name, spec, mappings, base_roots)
    _check_read_backs(c, data.get("actions") or {}, actions)

    return Connector(
        name=data["name"],
        title=data["title"],
        constants=constants,
        escapes=escapes,
        file=file,
        description=data.get("description", ""),
        config=config,
        base_url=c.template(("base_url",), data["base_url"], base_roots),  # type: ignore[arg-type]
        timeout_seconds=float(http.get("timeout_seconds", 30)),
        headers=headers,  # type: ignore[arg-type]
        auth=auth,  # type: ignore[arg-type]
        rate_limit=_compile_rate_limit(c, data.get("rate_limit")),
        retry=_compile_retry(data.get("retry") or {}),
        errors=_compile_errors(c, data.get("errors") or {}),
        streams=streams,  # type: ignore[arg-type]
        actions=actions,  # type: ignore[arg-type]
        mappings=mappings,
        mapping_file=mapping_file,
        check=_compile_request(c, ("check", "request"), data["check"]["request"], base_roots)
        if "check" in data else None,
        account=account,
    )


def _compile_auth(c: _Checker, path: YamlPath, name: str, spec: dict[str, Any],
                  roots: dict[str, set[str] | None]) -> AuthMethod | None:
    """One auth method, compiled by its kind (engine.authkinds: imported here, as the auth
    kinds bring the HTTP client, which a mapping process loading a mapping file never uses)."""
    from engine.authkinds import AUTH_KINDS

    return AUTH_KINDS[spec["type"]].compile(c, path, name, spec, roots)


def _compile_request(c: _Checker, path: YamlPath, spec: dict[str, Any],
                     roots: dict[str, set[str] | None]) -> RequestSpec | None:
    method = spec["method"]
    compiled_path = c.template(path + ("path",), spec["path"], roots, PATH_ENV)
    params = c.structure(path + ("params",), spec.get("params") or {}, roots)
    headers = {k: c.template(path + ("headers", k), v, roots)
               for k, v in (spec.get("headers") or {}).items()}
    body = c.structure(path + ("body",), spec["body"], roots) if "body" in spec else None
    if compiled_path is None or params is None:
        return None
    key_header = (spec.get("idempotency_key") or {}).get("header")
    budget = spec.get("budget")
    if budget is not None and budget not in c.budget_groups:
        known = ", ".join(sorted(c.budget_groups)) or "none declared in rate_limit.groups"
        c.add(path + ("budget",), f"unknown budget group {budget!r} (known: {known})")
    return RequestSpec(method, compiled_path, params, headers, body,  # type: ignore[arg-type]
                       spec.get("idempotent", method != "POST") or key_header is not None,
                       key_header, budget)


def _mapping_for(c: _Checker, path: YamlPath, name: str,
                 mappings: dict[str, ModelMapping]) -> ModelMapping | None:
    if name not in mappings:
        c.add(path, f"model {name!r} is not in the mapping file "
                    f"(mapped: {', '.join(mappings) or 'none'})")
        return None
    return mappings[name]


def _compile_stream(c: _Checker, path: YamlPath, name: str, spec: dict[str, Any],
                    mappings: dict[str, ModelMapping],
                    roots: dict[str, set[str] | None]) -> StreamSpec | None:
    mapping = _mapping_for(c, path + ("model",), spec["model"], mappings)
    request = _compile_request(c, path + ("request",), spec["request"],
                               {**roots, **_FIELD_ROOTS})
    records = c.getter(path + ("records",), spec["records"])
    paginate = _compile_pagination(c, path + ("paginate",),
                                   spec.get("paginate") or {"style": "none"})
    fields = None
    if "fields" in spec:
        fields = _compile_field_list(c, path + ("fields",), spec["fields"], roots,
                                     paginate.style if paginate else None)
    if mapping is None or request is None or records is None or paginate is None:
        return None
    stream = StreamSpec(name, mapping, request, records, paginate, spec.get("description", ""),
                        fields)
    if "where" in spec:
        stream.where = c.getter(path + ("where",), spec["where"])
    enrich = [_compile_enrich(c, path + ("enrich", i), step, roots)
              for i, step in enumerate(spec.get("enrich") or [])]
    stream.enrich = [step for step in enrich if step is not None]
    if "incremental" in spec:
        stream.incremental = _compile_incremental(c, path + ("incremental",), spec["incremental"],
                                                  stream, roots)
    if "deletes" in spec:
        stream.deletes = _compile_deletes(c, path + ("deletes",), spec["deletes"], roots)
    return stream


def _compile_pages(c: _Checker, path: YamlPath, spec: dict[str, Any],
                   roots: dict[str, set[str] | None], default: Pages | None = None) -> Pages | None:
    """A request with its records and paging; what is not given comes from `default`."""
    request = (_compile_request(c, path + ("request",), spec["request"], roots)
               if "request" in spec else default.request if default else None)
    records = (c.getter(path + ("records",), spec["records"])
               if "records" in spec else default.records if default else None)
    paginate = (_compile_pagination(c, path + ("paginate",), spec["paginate"])
                if "paginate" in spec else default.paginate if default
                else _compile_pagination(c, path + ("paginate",), {"style": "none"}))
    if request is None or records is None or paginate is None:
        return None
    return Pages(request, records, paginate)


def _compile_incremental(c: _Checker, path: YamlPath, spec: dict[str, Any], stream: StreamSpec,
                         roots: dict[str, set[str] | None]) -> IncrementalSpec | None:
    cursor = c.getter(path + ("cursor",), spec["cursor"])
    tie_breaker = (c.getter(path + ("tie_breaker",), spec["tie_breaker"])
                   if "tie_breaker" in spec else None)
    pages = _compile_pages(c, path, spec, {**roots, **_FIELD_ROOTS}, stream.pages)
    enrich = [_compile_enrich(c, path + ("enrich", i), step, roots)
              for i, step in enumerate(spec.get("enrich") or [])]
    if cursor is None or pages is None or None in enrich:
        return None
    lookback = spec.get("lookback_seconds", 0)
    if isinstance(lookback, str):
        lookback = c.template(path + ("lookback_seconds",), lookback, roots)
    return IncrementalSpec(cursor, pages, lookback if lookback is not None else 0.0,
                           float(spec.get("resolution_seconds", 0.001)), spec.get("result_cap"),
                           tie_breaker, enrich,  # type: ignore[arg-type]
                           spec.get("requery_each_page", False))


def _compile_enrich(c: _Checker, path: YamlPath, spec: dict[str, Any],
                    roots: dict[str, set[str] | None]) -> EnrichSpec | None:
    each = spec.get("each", False)
    # One request per record, or per page (and again for the records whose results go on).
    sees = {"record": None} if each else {"ids": None, "after": None}
    for key in ("key", "more"):
        if each and key in spec:
            c.add(path + (key,), f"a step with `each` sets all its results into its own "
                                 f"record: no `{key}`")
            return None
    pages = _compile_pages(c, path, spec, {**roots, **sees})
    named = {k: spec[k] for k in ("key", "value", "when", "more") if k in spec}
    named["id"] = spec.get("id", "id")
    getters = {k: c.getter(path + (k,), v) for k, v in named.items()}
    enabled = c.expression(path + ("if",), spec["if"], roots) if "if" in spec else None
    if pages is None or None in getters.values() or ("if" in spec and enabled is None):
        return None
    return EnrichSpec(pages, getters.get("key"), getters["value"], tuple(spec["into"].split(".")),
                      getters["id"], getters.get("when"), enabled, getters.get("more"))


def _compile_deletes(c: _Checker, path: YamlPath, spec: dict[str, Any],
                     roots: dict[str, set[str] | None]) -> DeletesSpec | None:
    pages = _compile_pages(c, path, spec, roots)
    record_id = c.getter(path + ("id",), spec["id"])
    deleted_at = c.getter(path + ("deleted_at",), spec["deleted_at"]) \
        if "deleted_at" in spec else None
    if pages is None or record_id is None:
        return None
    return DeletesSpec(pages, record_id, deleted_at)


# What a stream's page requests may read besides the connector's roots: the fields the mapping
# names, and those the CRM's field list adds (engine.sync.fieldlist).
_FIELD_ROOTS: dict[str, set[str] | None] = {"vendor_fields": None, "discovered_fields": None}


def _compile_field_list(c: _Checker, path: YamlPath, spec: dict[str, Any],
                        roots: dict[str, set[str] | None],
                        page_style: str | None) -> FieldListSpec | None:
    request = _compile_request(c, path + ("request",), spec["request"],
                               {**roots, "vendor_fields": None})
    getters = {key: c.getter(path + (key,), spec[key]) if key in spec else None
               for key in ("records", "key", "name", "select")}
    paginate = _compile_pagination(c, path + ("paginate",),
                                   spec.get("paginate") or {"style": "none"})
    chunk = None
    if "chunk" in spec:
        raw = spec["chunk"]
        if page_style == "next_url":
            # The next page is a URL the CRM made for the first chunk's field list: the other
            # chunks cannot ask for that same page.
            c.add(path + ("chunk",), "a stream whose pages follow next_url cannot chunk its "
                                     "field list")
        if "max_fields" in raw and "param" not in raw:
            c.add(path + ("chunk",), "max_fields needs `param`, the parameter it counts")
        chunk_id = c.getter(path + ("chunk", "id"), raw.get("id", "id"))
        if chunk_id is not None:
            chunk = ChunkSpec(chunk_id, raw.get("max_fields"), raw.get("param"),
                              raw.get("max_url_length"))
    options = None
    if "options" in spec:
        found = {key: c.getter(path + ("options", key), spec["options"][key])
                 for key in ("records", "key", "name")}
        if all(found.values()):
            options = OptionsSpec(found["records"], found["key"], found["name"])  # type: ignore[arg-type]
    if (request is None or paginate is None or getters["records"] is None
            or getters["key"] is None or ("chunk" in spec and chunk is None)
            or ("options" in spec and options is None)):
        return None
    return FieldListSpec(request, getters["records"], getters["key"],  # type: ignore[arg-type]
                         paginate, getters["name"], getters["select"], chunk, options)


_PAGINATION_EXPRESSIONS = ("cursor", "next_url", "next_offset", "more", "stop_when")


def _compile_pagination(c: _Checker, path: YamlPath, spec: dict[str, Any]) -> PaginationSpec | None:
    getters: dict[str, Getter] = {}
    ok = True
    for key in _PAGINATION_EXPRESSIONS:
        if key in spec:
            getter = c.getter(path + (key,), spec[key])
            ok = ok and getter is not None
            if getter:
                getters[key] = getter
    if "token" in spec:
        getter = c.getter(path + ("token", "value"), spec["token"]["value"])
        ok = ok and getter is not None
        if getter:
            getters["token"] = getter
    if spec["style"] == "page" and "token" in spec and "size" not in spec:
        c.add(path, "a page token switch needs `size` to know when the cap is reached")
        ok = False
    options = {k: v for k, v in spec.items() if k not in _PAGINATION_EXPRESSIONS}
    return PaginationSpec(spec["style"], options, getters) if ok else None


def _input_fields(model: Model, spec: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    """(mode, allowed fields, required fields) of an action's payload."""
    mode = spec["input"]
    data_fields = model.data_fields
    extra_required = list(spec.get("required", []))
    if mode == "create":
        return "create", data_fields + ["custom"], sorted(
            set(model.required_on_create) | set(extra_required))
    if mode == "update":
        return "update", ["id"] + data_fields + ["custom"], ["id"] + extra_required
    if mode == "id":
        return "id", ["id"], ["id"]
    fields = list(mode["fields"])
    return "fields", fields, list(mode.get("required", fields))


def _own_input_schema(c: _Checker, path: YamlPath, schema: dict[str, Any]) -> list[str] | None:
    """Check an action's own input JSON Schema; returns its property names."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        c.add(path + tuple(exc.absolute_path), f"invalid JSON Schema: {exc.message}")
        return None
    return list((schema.get("properties") or {}).keys())


def _compile_action(c: _Checker, path: YamlPath, name: str, spec: dict[str, Any],
                    mappings: dict[str, ModelMapping],
                    roots: dict[str, set[str] | None]) -> ActionSpec | None:
    own_schema = spec["input"].get("schema") if isinstance(spec["input"], dict) else None
    base_mapping, model = None, None
    if "model" in spec:
        base_mapping = _mapping_for(c, path + ("model",), spec["model"], mappings)
        if base_mapping is None:
            return None
        model = base_mapping.model
    elif own_schema is None:
        c.add(path, "an action needs a `model`, unless its input has a `schema` of its own")
        return None
    if own_schema is not None:
        names = _own_input_schema(c, path + ("input", "schema"), own_schema)
        if names is None:
            return None
        mode, allowed, required = "schema", names, list(own_schema.get("required", []))
    else:
        assert model is not None
        mode, allowed, required = _input_fields(model, spec)
        for i, fname in enumerate(allowed + required):
            if fname not in model.fields and fname != "custom":
                key = "input" if i < len(allowed) else "required"
                c.add(path + (key,), f"{model.name} has no field {fname!r}")
                return None
    input_roots = {**roots, "input": set(allowed), "now": None}
    if "read_first" in spec:
        input_roots["current"] = None  # the record as it is, read before writing
        if "id" not in allowed:
            c.add(path + ("read_first",), "reading first needs the record's id in the input")
    raw_cases = spec.get("cases") or [{key: spec[key] for key in ("request", "result", "paginate")
                                       if key in spec}]
    cases_path = path + ("cases",) if "cases" in spec else path
    cases = []
    for i, case in enumerate(raw_cases):
        cpath = cases_path + (i,) if "cases" in spec else path
        mapping = base_mapping
        if "model" in case:
            mapping = _mapping_for(c, cpath + ("model",), case["model"], mappings)
            if mapping is None:
                continue
        when = None
        if "when" in case:
            when = c.expression(cpath + ("when",), case["when"], input_roots)
        request_roots = {**input_roots, "vendor_fields": None}
        if mapping is not None:
            request_roots["record"] = None
        request = _compile_request(c, cpath + ("request",), case["request"], request_roots)
        result = _compile_result(c, cpath + ("result",), case.get("result") or {}, input_roots)
        paginate = None
        if "paginate" in case:
            paginate = _compile_pagination(c, cpath + ("paginate",), case["paginate"])
        if request is None or result is None:
            continue
        if mapping is None and (result.record or result.records) and not result.raw:
            c.add(cpath + ("result",), "without a model, records can only be returned `raw`")
            continue
        cases.append(ActionCase(when, mapping, request, result, paginate))
    example = None
    if "example" in spec:
        example = c.structure(path + ("example",), spec["example"], {"results": None})
    action = ActionSpec(name, model, mode, allowed, required, cases, example,
                        spec.get("description", ""), read_first=spec.get("read_first"))
    if own_schema is not None:
        action.input_schema = own_schema
    else:
        assert model is not None
        action.input_schema = model.input_schema(allowed=allowed, required=required)
    action.validator = jsonschema.Draft202012Validator(action.input_schema)
    return action


def _check_read_backs(c: _Checker, raw: dict[str, Any],
                      actions: dict[str, ActionSpec | None]) -> None:
    """`result.then` and `read_first` must name an action that takes just an id."""
    for name, action in actions.items():
        target = action.read_first if action else None
        if target is not None and (actions.get(target) is None
                                   or actions[target].input_mode != "id"):  # type: ignore[union-attr]
            c.add(("actions", name, "read_first"),
                  f"read_first needs an action of this connector that takes `input: id`, "
                  f"not {target!r}")
        for i, case in enumerate(action.cases if action else []):
            target = case.result.then
            if target is None:
                continue
            where = (("actions", name, "cases", i) if "cases" in raw[name]
                     else ("actions", name)) + ("result", "then")
            if actions.get(target) is None:
                c.add(where, f"no action {target!r} to run after {name}")
            elif actions[target].input_mode != "id":  # type: ignore[union-attr]
                c.add(where, f"{target} must take `input: id` to read back {name}'s result")


def _compile_result(c: _Checker, path: YamlPath, spec: dict[str, Any],
                    input_roots: dict[str, set[str] | None]) -> ResultSpec | None:
    result = ResultSpec(raw=spec.get("raw", False), max_records=spec.get("max_records", 10_000),
                        then=spec.get("then"))
    for key in ("record", "records"):
        if key in spec:
            setattr(result, key, c.getter(path + (key,), spec[key]))
    if "id" in spec:
        result.id = c.template(path + ("id",), spec["id"],
                               {**input_roots, "response": None, "headers": None})
    if "filter" in spec:
        result.filter = c.expression(path + ("filter",), spec["filter"],
                                     {**input_roots, "record": None})
    return result


def _compile_rate_limit(c: _Checker, spec: dict[str, Any] | None) -> RateLimitSpec | None:
    if not spec:
        return None
    feedback = {}
    for key, hv in (spec.get("feedback") or {}).items():
        pattern = None
        if "pattern" in hv:
            try:
                pattern = re.compile(hv["pattern"])
            except re.error as exc:
                c.add(("rate_limit", "feedback", key, "pattern"), f"invalid regex: {exc}")
        if key == "daily_usage" and (pattern is None or pattern.groups != 2):
            c.add(("rate_limit", "feedback", key, "pattern"),
                  "daily_usage needs a pattern with two groups: used and allowed")
        names = hv["header"] if isinstance(hv["header"], list) else [hv["header"]]
        feedback[key] = HeaderValue(tuple(names), pattern, hv.get("unit", "s"))
    if "daily_limit" in feedback and "daily_remaining" not in feedback:
        c.add(("rate_limit", "feedback", "daily_limit"),
              "daily_limit needs daily_remaining: the day's use is the one less the other")
    groups = {name: RateLimitSpec(g["requests"], float(g["per_seconds"]), g.get("max_concurrent"))
              for name, g in (spec.get("groups") or {}).items()}
    return RateLimitSpec(spec["requests"], float(spec["per_seconds"]),
                         spec.get("max_concurrent"), feedback, groups)


def _compile_retry(spec: dict[str, Any]) -> RetrySpec:
    defaults = RetrySpec()
    return RetrySpec(
        max_retries=spec.get("max_retries", defaults.max_retries),
        max_rate_limit_retries=spec.get("max_rate_limit_retries", defaults.max_rate_limit_retries),
        backoff_seconds=tuple(spec.get("backoff_seconds", defaults.backoff_seconds)),
        jitter=spec.get("jitter", defaults.jitter),
        max_wait_seconds=spec.get("max_wait_seconds", defaults.max_wait_seconds),
    )


def _as_set(value: Any, kind: Callable[[Any], Any]) -> frozenset[Any] | None:
    if value is None:
        return None
    return frozenset(kind(v) for v in (value if isinstance(value, list) else [value]))


def _compile_errors(c: _Checker, spec: dict[str, Any]) -> ErrorSpec:
    out = ErrorSpec()
    if "code" in spec:
        out.code = c.getter(("errors", "code"), spec["code"])
    if "message" in spec:
        out.message = c.getter(("errors", "message"), spec["message"])
    in_body = spec.get("in_body")
    if in_body:
        out.in_body_when = c.getter(("errors", "in_body", "when"), in_body["when"])
        for key in ("code", "message"):
            if key in in_body:
                setattr(out, f"in_body_{key}", c.getter(("errors", "in_body", key), in_body[key]))
    for i, rule in enumerate(spec.get("rules") or []):
        matches = None
        if "matches" in rule:
            matches = c.getter(("errors", "rules", i, "matches"), rule["matches"])
        out.rules.append(ErrorRule(_as_set(rule.get("status"), int), _as_set(rule.get("code"), str),
                                   matches, rule["kind"], rule.get("message"),
                                   rule.get("not_processed", False)))
    return out

