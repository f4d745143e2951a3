"""Field mappings between a vendor's records and a unified model, used in both directions.

Built once from `mappings/<crm>.yaml`; `read` turns a vendor record into a unified one (and
`read_columns` does the same for a whole page, column-wise, for landing), `write` turns a unified
payload into the vendor's nested shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine import convert
from engine.errors import InputError
from engine.extract import ExpressionFailed, Getter, compile_getter, compile_keys, plain_keys
from engine.models import Model
from engine.templates import Template


@dataclass
class FieldMapping:
    name: str  # unified field
    type: str
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

    def unknown(self, raw: Any) -> bool:
        """Whether a strict field met a vendor value it does not know (kept in custom)."""
        return (self.known_values is not None and raw is not None and raw != ""
                and (raw if isinstance(raw, str) else str(raw)) not in self.known_values)

    @property
    def custom_key(self) -> str:
        """Where an unknown vendor value is kept in `custom`."""
        return self.path[-1] if self.path else self.name


class ModelMapping:
    def __init__(self, model: Model, fields: list[FieldMapping],
                 custom_path: tuple[str, ...] | None, custom_exclude: Iterable[str] = (),
                 custom_exclude_prefixes: Iterable[str] = ()):
        self.model = model
        self.fields = {f.name: f for f in fields}
        self.custom_path = custom_path
        self._readers = [(f.name, f.get, f.read) for f in fields if f.get is not None]
        self._labelled = [f for f in fields if f.label is not None]
        read_names = {name for name, _, _ in self._readers} | {f.name for f in self._labelled}
        self._unread = [name for name in model.fields if name not in read_names]
        self._plan_columns(fields)
        self._strict = [f for f in fields if f.known_values is not None and f.get is not None]
        # Keys under the custom root that the mapping names are not custom.
        mapped_at_root = set(custom_exclude)
        depth = len(custom_path) if custom_path is not None else 0
        for f in fields:
            under_root = custom_path is not None and f.path and f.path[:depth] == custom_path
            if under_root and len(f.path) > depth:
                mapped_at_root.add(f.path[depth])
        self._custom_exclude = frozenset(mapped_at_root)
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
    def _custom(self, record: Any) -> dict[str, Any] | None:
        if self._custom_get is None:
            return None
        source = self._custom_get(record) if self.custom_path else record
        if not isinstance(source, dict):
            return None
        exclude, prefixes = self._custom_exclude, self._custom_prefixes
        if prefixes:
            return {k: v for k, v in source.items()
                    if k not in exclude and not k.startswith(prefixes)}
        return {k: v for k, v in source.items() if k not in exclude}

    def _customs(self, records: list[Any]) -> list[dict[str, Any] | None]:
        """`_custom` for a whole page, in comprehensions (the hot path)."""
        sources = records if not self.custom_path else [self._custom_get(r) for r in records]
        exclude, prefixes = self._custom_exclude, self._custom_prefixes
        if prefixes:
            return [{k: v for k, v in s.items() if k not in exclude and not k.startswith(prefixes)}
                    if s.__class__ is dict else None for s in sources]
        out: list[dict[str, Any] | None] = []
        for source in sources:
            if source.__class__ is not dict:
                out.append(None)
                continue
            # Copy, then drop the few mapped keys: three times faster than filtering each key.
            custom = source.copy()
            for key in exclude:
                custom.pop(key, None)
            out.append(custom)
        return out

    def read(self, record: Any, custom_names: dict[str, str] | None = None) -> dict[str, Any]:
        """One vendor record as a unified dict (fields the mapping does not name -> custom,
        renamed by `custom_names` where given)."""
        out: dict[str, Any] = dict.fromkeys(self._unread)
        for name, get, conv in self._readers:
            value = get(record)
            out[name] = conv(value) if value is not None else None
        if "is_deleted" in out and out["is_deleted"] is None:
            out["is_deleted"] = False
        custom = self._custom(record)
        for f, key, holder in self._label_keys(custom_names):
            container = holder(record)
            raw = container.get(key) if isinstance(container, dict) and key else None
            out[f.name] = None if raw is None else f.read(raw)
            if custom is not None and key and self._custom_holds(f):
                custom.pop(key, None)
        for f in self._strict:  # an unknown vendor value: null in the column, kept in custom
            raw = f.get(record)  # type: ignore[misc]
            if f.unknown(raw):
                custom = {**(custom or {}), f.custom_key: raw}
        if custom is not None:
            out["custom"] = ({custom_names.get(k, k): v for k, v in custom.items()}
                             if custom_names else custom)
        return out

    def read_columns(self, records: list[Any], columns: dict[str, list[Any]],
                     custom_names: dict[str, str] | None = None) -> None:
        """Append each record's unified values to `columns` (one list per unified field);
        `custom_names` renames custom keys (vendor key -> field name)."""
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
            columns[name].extend([None] * len(records))
        if "is_deleted" in columns:  # never null: a record the CRM lists is not deleted
            flags = columns["is_deleted"]
            for i in range(len(flags) - len(records), len(flags)):
                if flags[i] is None:
                    flags[i] = False
        labelled = self._label_keys(custom_names)
        for f, key, holder in labelled:
            containers = [holder(r) for r in records] if key else [None] * len(records)
            columns[f.name].extend([
                None if (raw := c.get(key) if c.__class__ is dict else None) is None
                else f.read(raw) for c in containers])
        if "custom" not in columns:
            return
        customs = (self._customs(records) if self._custom_get is not None
                   else [None] * len(records))
        for f, key, _ in labelled:  # a custom field the mapping names is not `custom`
            if key and self._custom_holds(f):
                for custom in customs:
                    if custom is not None:
                        custom.pop(key, None)
        for f in self._strict:  # an unknown vendor value: null in the column, kept in custom
            for i, raw in enumerate(map(f.get, records)):  # type: ignore[arg-type]
                if f.unknown(raw):
                    customs[i] = {**(customs[i] or {}), f.custom_key: raw}
        if custom_names:
            customs = [None if c is None else {custom_names.get(k, k): v for k, v in c.items()}
                       for c in customs]
        columns["custom"].extend(customs)

    def vendor_fields(self, prefix: str = "", full: bool = False) -> list[str]:
        """Vendor fields the mapping reads, below `prefix`: their first key (for `properties=`
        lists), or with `full` their whole dotted path (for `SELECT Account.Name`)."""
        prefix_keys = tuple(prefix.split(".")) if prefix else ()
        names: list[str] = []
        for f in self.fields.values():
            if f.get is None or not f.path or f.path[: len(prefix_keys)] != prefix_keys:
                continue
            rest = f.path[len(prefix_keys):]
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

    def _holder(self, f: FieldMapping) -> Getter:
        keys = f.under if f.under is not None else self.custom_path or ()
        return compile_keys(keys) if keys else (lambda record: record)

    def _custom_holds(self, f: FieldMapping) -> bool:
        """Whether a labelled field's container is where `custom` comes from."""
        return (f.under if f.under is not None else self.custom_path) == self.custom_path

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
            if f.label is not None and name in payload and f.write is not None:
                key = by_label.get(f.label)
                if key is None:
                    raise InputError(name, f"this account has no custom field labelled "
                                           f"{f.label!r}")
                under = f.under if f.under is not None else self.custom_path or ()
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
    writable = spec.get("write", True) is not False and (path is not None or label is not None)
    write_template = spec.get("write") if isinstance(spec.get("write"), str) else None
    read_keys = (path if isinstance(raw_path, list) and "read" not in spec
                 else plain_keys(read_expr) if read_expr else None)
    return FieldMapping(
        read_keys=read_keys,
        plain_string=type_ == "string" and not values,
        name=name,
        type=type_,
        path=path,
        get=compile_keys(read_keys) if read_keys else
        _lenient(compile_getter(read_expr), f"{model.name}.{name}", read_expr)
        if read_expr else None,
        read=convert.reader(type_, formats, spec.get("scale"), read_values,
                            f"{model.name}.{name}", strict),
        write=convert.writer(type_, formats, spec.get("scale"), values,
                             spec.get("integer", False)) if writable else None,
        known_values=frozenset(read_values) if strict and read_values else None,
        label=label,
        under=tuple(spec["under"].split(".")) if "under" in spec else None,
        write_template=Template(write_template) if write_template else None,
        default=spec.get("default"),
    )


def _lenient(get: Getter, field_name: str, expression: str) -> Getter:
    """A read expression that fails on one record (`join` over a missing list) reads as null
    and says so once, like a malformed value: one odd record must not stop a sync."""
    def read(record: Any) -> Any:
        try:
            return get(record)
        except ExpressionFailed as exc:
            convert.warn_once(field_name, f"cannot read {field_name} ({exc}); storing null")
            return None

    return read

