"""Check a YAML document against one of the shipped JSON Schemas, with located, readable errors."""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from engine.errors import Problem
from engine.yamlsource import SAFE_LOADER, Locator

SCHEMA_DIR = Path(__file__).with_name("schemas")


@cache
def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema for `connector`, `mapping` or `project` files."""
    text = (SCHEMA_DIR / f"{kind}.schema.yaml").read_text(encoding="utf-8")
    return yaml.load(text, Loader=SAFE_LOADER)


@cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(schema(kind))


def check(kind: str, data: Any, loc: Locator) -> list[Problem]:
    problems: list[Problem] = []
    for error in sorted(_validator(kind).iter_errors(data), key=lambda e: list(map(str, e.path))):
        problems.extend(_explain(error, loc))
    # One problem per location is enough; the first is the most specific.
    unique: dict[tuple[str, str], Problem] = {}
    for p in problems:
        unique.setdefault((p.path, p.message), p)
    return list(unique.values())


def _explain(error: jsonschema.ValidationError, loc: Locator) -> list[Problem]:
    path = tuple(error.absolute_path)
    custom = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    if custom and error.validator != "additionalProperties":
        # A schema's own wording (and never the offending value, which may be a secret).
        return [loc.problem(path, custom)]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        out = []
        for key in error.instance:
            if key in allowed:
                continue
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            known = f"; known keys: {', '.join(allowed)}" if allowed and not hint else ""
            out.append(loc.problem(path + (key,), f"unknown key {key!r}{suggestion}{known}"))
        return out
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Report the branch that got furthest: its errors are deepest in the document.
        deepest = max(error.context, key=lambda e: (len(e.absolute_path), -len(e.schema_path)))
        if len(deepest.absolute_path) > len(error.absolute_path):
            return _explain(deepest, loc)
        return [loc.problem(path, _oneof_message(error))]
    if error.validator == "oneOf":  # valid under more than one branch: keys that exclude
        return [loc.problem(path, _oneof_message(error))]  # each other, both given
    if error.validator == "required":
        return [loc.problem(path, error.message.replace("is a required property", "is required"))]
    if error.validator == "enum":
        options = ", ".join(repr(v) for v in error.validator_value)
        return [loc.problem(path, f"{error.instance!r} is not one of {options}")]
    if error.validator == "not":
        return [loc.problem(path, "this combination of keys is not allowed here")]
    return [loc.problem(path, error.message)]


def _oneof_message(error: jsonschema.ValidationError) -> str:
    wanted = []
    for sub in error.validator_value:
        if "required" in sub:
            wanted.append(" + ".join(sub["required"]))
        elif "type" in sub:
            wanted.append(str(sub["type"]))
        elif "enum" in sub:
            wanted.append(" | ".join(map(str, sub["enum"])))
        elif "const" in sub:
            wanted.append(repr(sub["const"]))
    if wanted:
        return f"expected exactly one of: {'; '.join(wanted)}"
    return error.message
