"""Running one action: validate the unified payload, build the request, map the result back."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import jsonschema

from engine.convert import ConversionError, format_timestamp, unified_value
from engine.errors import InputError
from engine.render import render_call
from engine.spec import ActionCase, ActionSpec
from engine.transport import Reply, Session


def validate_payload(action: ActionSpec, payload: Any) -> dict[str, Any]:
    """The payload checked against the model's JSON Schema and converted to unified types.
    Raises InputError naming the field, before anything is sent."""
    if not isinstance(payload, dict):
        raise InputError("", f"the payload must be a JSON object, not {type(payload).__name__}")
    validator = jsonschema.Draft202012Validator(action.input_schema)
    errors = sorted(validator.iter_errors(payload), key=lambda e: list(map(str, e.path)))
    if errors:
        error = errors[0]
        if error.validator == "additionalProperties":
            extra = sorted(set(payload) - set(action.input_schema["properties"]))
            allowed = ", ".join(action.allowed)
            raise InputError(extra[0], f"unknown field for {action.name} (allowed: {allowed})")
        if error.validator == "required":
            missing = error.message.split("'")[1]
            raise InputError(missing, f"is required by {action.name}")
        field = ".".join(map(str, error.absolute_path)) or ""
        message = error.message
        if error.validator == "anyOf" and error.context:
            message = error.context[0].message
        raise InputError(field, message)
    typed: dict[str, Any] = {}
    for name, value in payload.items():
        if name == "custom":
            typed[name] = value
            continue
        try:
            typed[name] = unified_value(action.model.fields[name].type, value)
        except ConversionError as exc:
            raise InputError(name, str(exc)) from None
    return typed


def choose_case(action: ActionSpec, context: dict[str, Any]) -> ActionCase:
    for case in action.cases:
        if case.when is None or case.when.render(context):
            return case
    conditions = ", ".join(c.when.source for c in action.cases if c.when)
    raise InputError("", f"{action.name}: no case matches this payload (conditions: {conditions})")


def run_action(session: Session, action: ActionSpec, payload: Any,
               base_context: dict[str, Any]) -> dict[str, Any]:
    typed = validate_payload(action, payload)
    full_input = {name: typed.get(name) for name in action.allowed}
    context = {**base_context, "input": full_input,
               "now": format_timestamp(dt.datetime.now(dt.UTC))}
    case = choose_case(action, context)
    writable = {k: v for k, v in typed.items() if k != "id"}
    context["record"] = case.mapping.write(writable, apply_defaults=action.input_mode == "create")
    context["vendor_fields"] = case.mapping.vendor_fields
    call = render_call(case.request, session.base_url, context)
    reply = session.send(call, f"action.{action.name}")
    return _result(case, reply, context)


def _result(case: ActionCase, reply: Reply, context: dict[str, Any]) -> dict[str, Any]:
    spec = case.result
    out: dict[str, Any] = {}
    body = reply.body
    if spec.records is not None:
        records = spec.records(body) if body is not None else None
        out["records"] = [jsonable(case.mapping.read(r)) for r in (records or [])]
        out["id"] = out["records"][0].get("id") if out["records"] else None
    if spec.record is not None and body is not None:
        record = spec.record(body)
        if record is not None:
            out["record"] = jsonable(case.mapping.read(record))
            out["id"] = out["record"].get("id")
    if spec.id is not None:
        rendered = spec.id.render({**context, "response": body, "headers": dict(reply.headers)})
        out["id"] = None if rendered in (None, "") else str(rendered)
    out.setdefault("id", None)
    return out


def jsonable(value: Any) -> Any:
    """Unified values as JSON: timestamps and dates as ISO 8601, decimals as strings."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return value
