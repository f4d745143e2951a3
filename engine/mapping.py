"""Field mappings between a vendor's records and a unified model, used in both directions.

Built once from `mappings/<crm>.yaml`; `read` turns a vendor record into a unified one (and
`read_columns` does the same for a whole page, column-wise, for landing), `write` turns a unified
payload into the vendor's nested shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine import convert
from engine.associations import Association, Link, link_reader
from engine.errors import InputError
from engine.extract import (
    ExpressionFailed,
    Getter,
    compile_getter,
    compile_keys,
    plain_keys,
    read_paths,
)
from engine.models import Model
from engine.normalize import DERIVATIONS, FORMATS
from engine.templates import Template


@dataclass(frozen=True)
class Lookup:
    """A value found in another model's landed rows (this connection's): the row whose `by`
    field equals the value read, and `value` (jmespath) over that unified row."""

    model: str
    by: str
    value: Getter
    expression: str  # `value`'s source, naming the lookup in caches and messages


@dataclass
class ReadContext:
    """What reading needs besides the records, per connection and run: custom-field names,
    other models' rows for lookups, the account's facts, and whether to keep raw records."""

    custom_names: dict[str, str] | None = None
    custom_options: dict[str, dict[str, Any]] | None = None  # vendor key -> option id -> label
    references: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by model
    account: dict[str, Any] = field(default_factory=dict)  # e.g. default_currency
    raw: bool = False  # keep each vendor record as it came, in the `raw` column
    phone_region: str | None = None  # where numbers written without a country code are
    _indexes: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    _option_labels: dict[str, dict[str, Any]] | None = None

    def option_labels(self) -> dict[str, dict[str, Any]]:
        """Choice fields' labels by the key they have in `custom` (vendor key, and name where
        the field list names it), built once per run, not per page."""
        if self._option_labels is None:
            options, names = self.custom_options or {}, self.custom_names or {}
            self._option_labels = {**options, **{names[k]: v for k, v in options.items()
                                                 if k in names}}
        return self._option_labels

    def index(self, lookup: Lookup) -> dict[str, Any]:
        """Lookup key -> value, built once per run (a deal page reads it thousands of times)."""
        key = (lookup.model, lookup.by, lookup.expression)
        index = self._indexes.get(key)
        if index is None:
            index = {}
            for row in self.references.get(lookup.model, ()):
                found = row.get(lookup.by)
                if found is not None:
                    index.setdefault(str(found), lookup.value(row))
            self._indexes[key] = index
        return index


@dataclass
class FieldMapping:
    name: str  # unified field
    path: tuple[str, ...] | None  # where the value lives in the vendor record (write target)
    get: Getter | None  # how to read it (None: write-only)
    read: convert.Converter
    write: convert.Converter | None  # None: read-only
    write_template: Template | None  # builds a vendor value from `value` (e.g. a list)
    default: Any = None
    read_keys: tuple[str, ...] | None = None  # the read path as plain keys, when it is one
    plain_string: bool = False  # a string with no translation: read without a converter call
    known_values: frozenset[str] | None = None  # strict: vendor values that read as themselves
    label: str | None = None  # a custom field by its label; its key comes per account
    under: tuple[str, ...] | None = None  # with label: the object holding custom fields
    lookup: Lookup | None = None  # the value read is a key into another model's rows
    fallback: str | None = None  # an account fact used where the record has no value
    read_paths: frozenset[tuple[str, ...]] = frozenset()  # vendor key paths the read uses

    @property
    def read_roots(self) -> frozenset[str]:
        """The vendor keys the read uses at the top of the record."""
        return frozenset(p[0] for p in self.read_paths)

    def unknown(self, raw: Any) -> bool:
        """Whether a strict field met a vendor value it does not know (kept in custom)."""
        return (self.known_values is not None and raw is not None and raw != ""
                and (raw if isinstance(raw, str) else str(raw)) not in self.known_values)

    @property
    def custom_key(self) -> str:
        """Where an unknown vendor value is kept in `custom`."""
        return self.path[-1] if self.path else self.name


_MISSING = object()


def _option_labels(customs: list[dict[str, Any]], by_key: dict[str, dict[str, Any]]) -> None:
    """Choice fields' option ids in `custom` replaced by their labels, in place: one id (an
    enum field) by its label, several (a set field: a list, or ids joined by commas) by a list
    of labels. Values the definitions do not list stay as they came."""
    for custom in customs:
        for key in by_key.keys() & custom.keys():
            labels, value = by_key[key], custom[key]
            if isinstance(value, list):
                custom[key] = [labels.get(str(v), v) for v in value]
            elif isinstance(value, str) and "," in value:
                parts = value.split(",")
                if all(p in labels for p in parts):
                    custom[key] = [labels[p] for p in parts]
            elif value is not None:
                custom[key] = labels.get(str(value), value)


_CUT_EMPTY = object()  # what `_without` gives for an object that held only the cut one


def _without(value: Any, keys: tuple[str, ...]) -> Any:
    """`value` without the object at `keys` inside it: a copy (the record is never changed),
    or `value` itself where no object is there (nothing was merged from it)."""
    if value.__class__ is not dict or keys[0] not in value:
        return value
    inner = value[keys[0]]
    if len(keys) > 1:
        cut = _without(inner, keys[1:])
    else:  # the merged object itself; a value that is not an object was not merged
        cut = _CUT_EMPTY if inner.__class__ is dict else inner
    if cut is inner:
        return value
    rest = {k: v for k, v in value.items() if k != keys[0]}
    if cut is not _CUT_EMPTY:
        rest[keys[0]] = cut
    return rest or _CUT_EMPTY


class ModelMapping:
    def __init__(self, model: Model, fields: list[FieldMapping],
                 custom_path: tuple[str, ...] | None, custom_exclude: Iterable[str] = (),
                 custom_exclude_prefixes: Iterable[str] = (),
                 custom_merge: Iterable[tuple[str, ...]] = (),
                 associations: list[Association] | None = None):
        self.model = model
        # None: the mapping declares no links, and landing leaves the associations table be.
        self._links = link_reader(associations) if associations is not None else None
        self.fields = {f.name: f for f in fields}
        self.custom_path = custom_path
        self._lookups = [f for f in fields if f.lookup is not None and f.get is not None]
        direct = [f for f in fields if f.lookup is None]
        self._readers = [(f.name, f.get, f.read) for f in direct if f.get is not None]
        self._labelled = [f for f in fields if f.label is not None]
        self._fallbacks = [f for f in fields if f.fallback is not None]
        self._derived = [(f.name, f.derive.source, DERIVATIONS[f.derive.kind])
                         for f in model.derived if f.derive is not None]
        read_names = ({name for name, _, _ in self._readers} | {f.name for f in self._labelled}
                      | {f.name for f in self._lookups} | {name for name, _, _ in self._derived})
        self._unread = [name for name in model.fields if name not in read_names]
        self._plan_columns(direct)
        # (A looked-up field reads a key, not a value: its result is checked instead.)
        self._strict = [f for f in direct if f.known_values is not None and f.get is not None]
        self._merges = [(keys, compile_keys(keys)) for keys in custom_merge]
        # Keys under the custom root (and in merged objects) that the mapping reads are not
        # custom: a mapped field never appears twice.
        depth = len(custom_path) if custom_path is not None else 0
        # A merged object inside the custom root is not custom itself, its fields are: one
        # right under the root is left out like a mapped key; one deeper is cut out of the
        # object holding it (the rest of that object stays custom).
        inside = [keys[depth:] for keys in custom_merge
                  if custom_path is not None and keys[:depth] == custom_path]
        mapped_at_root = set(custom_exclude) | {keys[0] for keys in inside if len(keys) == 1}
        self._merged_deeper = [keys for keys in inside if len(keys) > 1]
        merged_mapped: set[str] = set()
        for f in fields:
            under_root = custom_path is not None and f.path and f.path[:depth] == custom_path
            if under_root and len(f.path) > depth:
                mapped_at_root.add(f.path[depth])
            if custom_path == () and f.get is not None:
                mapped_at_root |= f.read_roots
            for keys in custom_merge:
                if f.path and len(f.path) > len(keys) and f.path[:len(keys)] == keys:
                    merged_mapped.add(f.path[len(keys)])
        self._custom_exclude = frozenset(mapped_at_root)
        self._merge_exclude = frozenset(merged_mapped)
        self._custom_prefixes = tuple(custom_exclude_prefixes)
        self._custom_get = (compile_getter(".".join(custom_path) or "@")
                            if custom_path is not None else None)

    def _plan_columns(self, fields: list[FieldMapping]) -> None:
        """Group plainly-pathed fields by their parent object, so a page is read one column at
        a time with list comprehensions: the hot path of every sync."""
        groups: dict[tuple[str, ...], list[tuple[str, str, convert.Converter, bool]]] = {}
        self._complex_readers = []
        for f in fields:
            if f.get is None:
                continue
            if f.read_keys is None:
                self._complex_readers.append((f.name, f.get, f.read))
                continue
            parent, key = f.read_keys[:-1], f.read_keys[-1]
            groups.setdefault(parent, []).append((key, f.name, f.read, f.plain_string))
        self._column_groups = [
            (compile_getter(".".join(parent)) if parent else None, leaves)
            for parent, leaves in groups.items()
        ]

    # -- reading -------------------------------------------------------------------------
    def _customs(self, records: list[Any]) -> list[dict[str, Any]]:
        """The unmapped vendor fields of each record (the hot path: comprehensions)."""
        if self._custom_get is None:
            return [{} for _ in records]
        sources = records if not self.custom_path else [self._custom_get(r) for r in records]
        exclude, prefixes = self._custom_exclude, self._custom_prefixes
        if prefixes:
            return [{k: v for k, v in s.items() if k not in exclude and not k.startswith(prefixes)}
                    if s.__class__ is dict else {} for s in sources]
        out: list[dict[str, Any]] = []
        for source in sources:
            if source.__class__ is not dict:
                out.append({})
                continue
            # Copy, then drop the few mapped keys: three times faster than filtering each key.
            custom = source.copy()
            for key in exclude:
                custom.pop(key, None)
            out.append(custom)
        return out

    def _merge_nested(self, records: list[Any], customs: list[dict[str, Any]],
                      names: dict[str, str] | None) -> None:
        """Add the fields of the merged objects (custom fields kept apart from the standard
        ones) to each record's custom, under their names; a name that a standard field
        already uses keeps the vendor key."""
        exclude = self._merge_exclude
        for _, get in self._merges:
            for record, custom in zip(records, customs, strict=True):
                nested = get(record)
                if nested.__class__ is not dict:
                    continue
                for key, value in nested.items():
                    if key in exclude:
                        continue
                    name = names.get(key, key) if names else key
                    custom[name if name not in custom else key] = value
        for keys in self._merged_deeper:
            for custom in customs:
                if keys[0] in custom:
                    rest = _without(custom[keys[0]], keys[1:])
                    if rest is _CUT_EMPTY:
                        del custom[keys[0]]
                    else:
                        custom[keys[0]] = rest

    def read(self, record: Any, custom_names: dict[str, str] | None = None,
             context: ReadContext | None = None) -> dict[str, Any]:
        """One vendor record as a unified dict (fields the mapping does not name -> custom,
        renamed by `custom_names` where given)."""
        columns = self.model.empty_columns()
        self.read_columns([record], columns, custom_names=custom_names, context=context)
        return {name: values[0] for name, values in columns.items()}

    def read_columns(self, records: list[Any], columns: dict[str, list[Any]],
                     custom_names: dict[str, str] | None = None,
                     context: ReadContext | None = None) -> None:
        """Append each record's unified values to `columns` (one list per unified field);
        `custom_names` renames custom keys (vendor key -> field name); `context` serves
        lookups, account facts and raw records."""
        if context is not None and custom_names is None:
            custom_names = context.custom_names
        count = len(records)
        for parent_get, leaves in self._column_groups:
            parents = records if parent_get is None else [parent_get(r) for r in records]
            parents = [p if p.__class__ is dict else _EMPTY for p in parents]
            for key, name, conv, plain_string in leaves:
                raw = [p.get(key) for p in parents]
                if plain_string:
                    columns[name].extend([
                        v if v.__class__ is str and v else None if v is None or v == "" else str(v)
                        for v in raw])
                else:
                    columns[name].extend([None if v is None else conv(v) for v in raw])
        for name, get, conv in self._complex_readers:
            columns[name].extend([None if v is None else conv(v) for v in map(get, records)])
        for name in self._unread:
            columns[name].extend([None] * count)
        if "is_deleted" in columns:  # never null: a record the CRM lists is not deleted
            flags = columns["is_deleted"]
            for i in range(len(flags) - count, len(flags)):
                if flags[i] is None:
                    flags[i] = False
        for f in self._lookups:
            self._read_lookup(f, records, columns[f.name], context)
        for f in self._fallbacks:
            self._fill_fallback(f, columns[f.name], count, context)
        region = context.phone_region if context is not None else None
        for name, source, derive in self._derived:
            values = columns[source][len(columns[source]) - count:]
            columns[name].extend([None if v is None else derive(v, region) for v in values])
        labelled = self._label_keys(custom_names)
        for f, key, holder in labelled:
            containers = [holder(r) for r in records] if key else [None] * count
            columns[f.name].extend([
                None if (raw := c.get(key) if c.__class__ is dict else None) is None
                else f.read(raw) for c in containers])
        if context is not None and context.raw:
            columns.setdefault("raw", []).extend(records)
        if "custom" not in columns:
            return
        customs = self._customs(records)
        if self._merges:
            self._merge_nested(records, customs, custom_names)
        for f, key, _ in labelled:  # a custom field the mapping names is not `custom`
            if key and self._custom_holds(f):
                assert custom_names is not None  # the key was found through them
                for custom in customs:
                    custom.pop(key, None)
                    if self._merges:  # merged objects are keyed by name already
                        custom.pop(custom_names[key], None)
        for f in self._strict:  # an unknown vendor value: null in the column, kept in custom
            for i, raw in enumerate(map(f.get, records)):  # type: ignore[arg-type]
                if f.unknown(raw):
                    customs[i][f.custom_key] = raw
        if custom_names and not self._merges:
            customs = [{custom_names.get(k, k): v for k, v in c.items()} for c in customs]
        if context is not None and context.custom_options:
            _option_labels(customs, context.option_labels())
        columns["custom"].extend(customs)

    def _read_lookup(self, f: FieldMapping, records: list[Any], out: list[Any],
                     context: ReadContext | None) -> None:
        lookup = f.lookup
        assert lookup is not None and f.get is not None
        index = context.index(lookup) if context is not None else {}
        where = f"{self.model.name}.{f.name}"
        for raw in map(f.get, records):
            if raw is None or raw == "":
                out.append(None)
                continue
            value = index.get(raw if raw.__class__ is str else str(raw), _MISSING)
            if value is _MISSING:
                convert.warn_once(where, f"{where}: no {lookup.model} with {lookup.by} "
                                         f"{raw!r} among this connection's; stored null")
                value = None
            out.append(None if value is None else f.read(value))

    def _fill_fallback(self, f: FieldMapping, out: list[Any], count: int,
                       context: ReadContext | None) -> None:
        value = context.account.get(f.fallback) if context is not None else None  # type: ignore[arg-type]
        if value is None:
            return
        value = f.read(value)
        for i in range(len(out) - count, len(out)):
            if out[i] is None:
                out[i] = value

    def read_links(self, records: list[Any]) -> list[list[Link]] | None:
        """Each record's links (to_model, to_id, label), or None if the mapping declares none."""
        return self._links(records) if self._links is not None else None

    def record_id(self, record: Any) -> str | None:
        """A vendor record's unified id, as its row has it."""
        f = self.fields["id"]
        value = f.read(f.get(record)) if f.get is not None else None
        return None if value is None else str(value)

    def vendor_fields(self, prefix: str = "", full: bool = False) -> list[str]:
        """Vendor fields the mapping reads or writes, below `prefix`: their first key (for
        `properties=` lists), or with `full` their whole dotted path (for `SELECT
        Account.Name`). A field counts its path and the paths its read expression reads (`$`
        keys, record metadata, are never asked for)."""
        prefix_keys = tuple(prefix.split(".")) if prefix else ()
        names: list[str] = []
        for f in self.fields.values():
            if f.get is None:
                continue
            paths = [*([f.path] if f.path else []),
                     *sorted(p for p in f.read_paths if p != f.path and not p[0].startswith("$"))]
            for path in paths:
                if path[: len(prefix_keys)] != prefix_keys:
                    continue
                rest = path[len(prefix_keys):]
                name = ".".join(rest) if full else rest[0] if rest else None
                if name and name not in names:
                    names.append(name)
        return names

    def _label_keys(self, custom_names: dict[str, str] | None
                    ) -> list[tuple[FieldMapping, str | None, Getter]]:
        """(field, its key in this account or None, reader of its container) for each field
        named by a label; `custom_names` maps key -> label, from the field definitions."""
        if not self._labelled:
            return []
        by_label = {label: key for key, label in (custom_names or {}).items()}
        out = []
        for f in self._labelled:
            key = by_label.get(f.label)  # type: ignore[arg-type]
            if key is None:
                convert.warn_once(f"{self.model.name}.{f.name}.label",
                                  f"{self.model.name}.{f.name}: no custom field labelled "
                                  f"{f.label!r} in this account; stored null")
            out.append((f, key, self._holder(f)))
        return out

    def _container(self, f: FieldMapping) -> tuple[str, ...] | None:
        """Where a labelled field's custom fields live: `under`, else the first merged
        object, else the custom root."""
        if f.under is not None:
            return f.under
        return self._merges[0][0] if self._merges else self.custom_path

    def _holder(self, f: FieldMapping) -> Getter:
        keys = self._container(f) or ()
        return compile_keys(keys) if keys else (lambda record: record)

    def _custom_holds(self, f: FieldMapping) -> bool:
        """Whether a labelled field's container is where `custom` comes from."""
        container = self._container(f)
        return container == self.custom_path or any(container == k for k, _ in self._merges)

    # -- writing -------------------------------------------------------------------------
    def write(self, payload: dict[str, Any], *, apply_defaults: bool,
              custom_names: dict[str, str] | None = None) -> dict[str, Any]:
        """A unified payload (already validated and typed) in the vendor's nested shape.

        Only fields present in the payload are written, so an update sends just what changed;
        `apply_defaults` (creates) fills in the mapping's defaults for absent fields. Fields
        named by a label are written under this account's key for it (`custom_names`)."""
        out: dict[str, Any] = {}
        by_label = {label: key for key, label in (custom_names or {}).items()}
        for name, f in self.fields.items():
            if f.lookup is not None and name in payload:
                keyed = [k for k, g in self.fields.items() if g.path == f.path and g.write]
                instead = f": write {keyed[0]} instead" if keyed else ""
                raise InputError(name, f"is read from the {f.lookup.model}s table, not "
                                       f"written{instead}")
            if f.label is not None and name in payload and f.write is not None:
                key = by_label.get(f.label)
                if key is None:
                    raise InputError(name, f"this account has no custom field labelled "
                                           f"{f.label!r}")
                under = self._container(f) or ()
                _put(out, (*under, key), f.write(payload[name]))
                continue
            if f.write is None or f.path is None:
                continue
            if name in payload:
                value = f.write(payload[name])
                if f.write_template is not None and value is not None:
                    value = f.write_template.render({"value": value})
            elif apply_defaults and f.default is not None:
                value = f.default  # already a vendor value
            else:
                continue
            _put(out, f.path, value)
        custom = payload.get("custom")
        if custom:
            target = out
            for key in self.custom_path or ():
                target = target.setdefault(key, {})
            for key, value in custom.items():
                target.setdefault(key, value)
        return out


_EMPTY: dict[str, Any] = {}


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def build_field(model: Model, name: str, spec: str | dict[str, Any]) -> FieldMapping:
    """One field's mapping from its YAML (a dotted path, or a dict with options)."""
    if isinstance(spec, str):
        spec = {"path": spec}
    type_ = model.fields[name].type
    formats = spec.get("format", ())
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    values = spec.get("values")
    read_values = None
    if values:
        # Reading reverses the translation; the first unified value wins for shared vendor values.
        read_values = {}
        for unified, vendor in values.items():
            read_values.setdefault(str(vendor), unified)
    # A value outside an enum can never be right: enum fields are always strict.
    strict = bool(read_values) and (spec.get("strict", False)
                                    or model.fields[name].enum is not None)
    raw_path = spec.get("path")
    path = (tuple(raw_path) if isinstance(raw_path, list)  # keys that may contain dots
            else tuple(raw_path.split(".")) if raw_path else None)
    read_expr = spec.get("read") or (None if isinstance(raw_path, list) else raw_path)
    label = spec.get("label")
    lookup = _lookup(spec["lookup"]) if "lookup" in spec else None
    writable = (spec.get("write", True) is not False and lookup is None
                and (path is not None or label is not None))
    write_template = spec.get("write") if isinstance(spec.get("write"), str) else None
    read_keys = (path if isinstance(raw_path, list) and "read" not in spec
                 else plain_keys(read_expr) if read_expr else None)
    enum = model.fields[name].enum
    if enum is not None and not values:
        # Read as is (or looked up), an enum column still only ever holds its declared values.
        read_values, strict = {v: v for v in enum}, True
    read = convert.reader(type_, formats, spec.get("scale"), read_values,
                          f"{model.name}.{name}", strict)
    normalize = FORMATS.get(model.fields[name].format or "")
    if normalize is not None and type_ == "string" and not values:
        read = _normalized(normalize)
    return FieldMapping(
        read_keys=read_keys,
        plain_string=type_ == "string" and not read_values and normalize is None,
        name=name,
        path=path,
        get=compile_keys(read_keys) if read_keys else
        _lenient(compile_getter(read_expr), f"{model.name}.{name}", read_expr)
        if read_expr else None,
        read=read,
        lookup=lookup,
        fallback=(spec.get("fallback") or {}).get("account"),
        read_paths=(frozenset({path}) if isinstance(raw_path, list) and "read" not in spec
                    else read_paths(read_expr) if read_expr else frozenset()),
        write=convert.writer(type_, formats, spec.get("scale"), values,
                             spec.get("integer", False)) if writable else None,
        known_values=frozenset(read_values) if strict and read_values else None,
        label=label,
        under=tuple(spec["under"].split(".")) if "under" in spec else None,
        write_template=Template(write_template) if write_template else None,
        default=spec.get("default"),
    )


def _lookup(spec: dict[str, Any]) -> Lookup:
    value = spec["value"]
    return Lookup(spec["model"], spec.get("by", "id"), compile_getter(value), value)


def _normalized(normalize: convert.Converter) -> convert.Converter:
    """A string field's reader that also normalizes (the model's `format`)."""
    return lambda v: None if v is None or v == "" else normalize(v if v.__class__ is str
                                                                 else str(v))


def _lenient(get: Getter, field_name: str, expression: str) -> Getter:
    """A read expression that fails on one record (`join` over a missing list) reads as null
    and says so once, like a malformed value: one odd record must not stop a sync."""
    def read(record: Any) -> Any:
        try:
            return get(record)
        except ExpressionFailed as exc:
            convert.warn_once(field_name, f"cannot read {field_name} by `{expression}` "
                                          f"({exc}); storing null")
            return None

    return read

