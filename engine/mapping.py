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
from engine.extract import Getter, compile_getter, plain_keys
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


class ModelMapping:
    def __init__(self, model: Model, fields: list[FieldMapping],
                 custom_path: tuple[str, ...] | None, custom_exclude: Iterable[str] = (),
                 custom_exclude_prefixes: Iterable[str] = ()):
        self.model = model
        self.fields = {f.name: f for f in fields}
        self.custom_path = custom_path
        self._readers = [(f.name, f.get, f.read) for f in fields if f.get is not None]
        read_names = {name for name, _, _ in self._readers}
        self._unread = [name for name in model.fields if name not in read_names]
        self._plan_columns(fields)
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
        custom = self._custom(record)
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
        if "custom" in columns and self._custom_get is not None:
            customs = self._customs(records)
            if custom_names:
                customs = [None if c is None else {custom_names.get(k, k): v for k, v in c.items()}
                           for c in customs]
            columns["custom"].extend(customs)
        elif "custom" in columns:
            columns["custom"].extend([None] * len(records))

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

    # -- writing -------------------------------------------------------------------------
    def write(self, payload: dict[str, Any], *, apply_defaults: bool) -> dict[str, Any]:
        """A unified payload (already validated and typed) in the vendor's nested shape.

        Only fields present in the payload are written, so an update sends just what changed;
        `apply_defaults` (creates) fills in the mapping's defaults for absent fields."""
        out: dict[str, Any] = {}
        for name, f in self.fields.items():
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
    path = tuple(spec["path"].split(".")) if "path" in spec else None
    read_expr = spec.get("read", spec.get("path"))
    writable = spec.get("write", True) is not False and path is not None
    write_template = spec.get("write") if isinstance(spec.get("write"), str) else None
    read_keys = plain_keys(read_expr) if read_expr else None
    return FieldMapping(
        read_keys=read_keys,
        plain_string=type_ == "string" and not values,
        name=name,
        type=type_,
        path=path,
        get=compile_getter(read_expr) if read_expr else None,
        read=convert.reader(type_, formats, spec.get("scale"), read_values,
                            f"{model.name}.{name}"),
        write=convert.writer(type_, formats, spec.get("scale"), values) if writable else None,
        write_template=Template(write_template) if write_template else None,
        default=spec.get("default"),
    )

