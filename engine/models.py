"""The unified models (engine/models.yaml): field types, table names, input JSON Schemas."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

FIELD_TYPES = ("string", "integer", "number", "decimal", "boolean", "date", "timestamp")

# Every model has these besides its own fields (PRODUCT.md, "DuckDB output").
SYSTEM_FIELDS: dict[str, str] = {
    "id": "string",
    "created_at": "timestamp",
    "updated_at": "timestamp",
    "is_deleted": "boolean",
    "deleted_at": "timestamp",
}

_JSON_TYPES = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    # Money travels as a number or a numeric string so no precision is lost on the way in.
    "decimal": {"type": ["number", "string"], "pattern": r"^-?\d+(\.\d+)?$"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string"},  # parsed by engine.convert, which names the field on failure
    "timestamp": {"type": "string"},
}


@dataclass(frozen=True)
class Derivation:
    """A read-only field computed from another field of the same record."""

    source: str  # the field it is computed from
    kind: str  # how (engine.normalize.DERIVATIONS)


@dataclass(frozen=True)
class ModelField:
    name: str
    type: str
    enum: tuple[str, ...] | None = None
    extra_schema: dict[str, Any] = field(default_factory=dict)
    format: str | None = None  # values are normalized on reading (engine.normalize.FORMATS)
    derive: Derivation | None = None


@dataclass(frozen=True)
class Model:
    name: str
    table: str
    fields: dict[str, ModelField]  # system fields first, then the model's own
    required_on_create: tuple[str, ...] = ()

    @property
    def data_fields(self) -> list[str]:
        """The model's own fields that a payload may set (not id, timestamps, is_deleted,
        nor derived fields)."""
        return [n for n, f in self.fields.items()
                if n not in SYSTEM_FIELDS and f.derive is None]

    @property
    def derived(self) -> list[ModelField]:
        return [f for f in self.fields.values() if f.derive is not None]

    def empty_columns(self) -> dict[str, list[Any]]:
        """A list per column a mapping reads records into: every field, then `custom`."""
        columns: dict[str, list[Any]] = {name: [] for name in self.fields}
        columns["custom"] = []
        return columns

    def input_schema(self, *, allowed: list[str], required: list[str]) -> dict[str, Any]:
        """JSON Schema for an action payload: only `allowed` fields, `required` ones present."""
        properties: dict[str, Any] = {}
        for name in allowed:
            if name == "custom":
                properties[name] = {"type": "object"}
                continue
            f = self.fields[name]
            prop = dict(_JSON_TYPES[f.type])
            prop.update(f.extra_schema)
            if f.enum:
                prop["enum"] = list(f.enum)
            # null means "clear this field" on update; a required field may not be null.
            if name not in required:
                prop = {"anyOf": [prop, {"type": "null"}]}
            properties[name] = prop
        return {
            "type": "object",
            "properties": properties,
            "required": list(required),
            "additionalProperties": False,
        }


def _load(path: Path) -> dict[str, Model]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    models: dict[str, Model] = {}
    for name, spec in raw.items():
        fields = {n: ModelField(n, t) for n, t in SYSTEM_FIELDS.items()}
        for fname, fspec in spec["fields"].items():
            extra = {k: v for k, v in fspec.items() if k not in ("type", "enum", "derive")}
            enum = tuple(fspec["enum"]) if "enum" in fspec else None
            derive = (Derivation(fspec["derive"]["from"], fspec["derive"]["as"])
                      if "derive" in fspec else None)
            fields[fname] = ModelField(fname, fspec["type"], enum, extra, fspec.get("format"),
                                       derive)
        models[name] = Model(name, spec["table"], fields, tuple(spec.get("required_on_create", ())))
    return models


@cache
def unified_models() -> dict[str, Model]:
    return _load(Path(__file__).with_name("models.yaml"))
