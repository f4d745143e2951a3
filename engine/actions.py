"""Running one action: validate the payload, build the request, map the result back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import jsonschema

from engine.clock import utc_now
from engine.convert import ConversionError, format_timestamp, unified_value
from engine.errors import CrmError, InputError
from engine.extract import ExpressionFailed
from engine.mapping import ModelMapping, ReadContext
from engine.paginate import PaginationError, paginator_for, read_page
from engine.render import render_call
from engine.spec import ActionCase, ActionSpec
from engine.templates import TemplateFailed
from engine.transport import Call, Reply, Session


def validate_payload(action: ActionSpec, payload: Any) -> dict[str, Any]:
    """The payload checked against its JSON Schema and converted to unified types.
    Raises InputError naming the field, before anything is sent."""
    if not isinstance(payload, dict):
        raise InputError("", f"the payload must be a JSON object, not {type(payload).__name__}")
    errors = sorted(action.validator.iter_errors(payload), key=lambda e: list(map(str, e.path)))
    if errors:
        raise _input_error(action, payload, errors[0])
    if action.model is None:
        return dict(payload)  # the action's own schema: values stay as given
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


def _input_error(action: ActionSpec, payload: dict[str, Any],
                 error: jsonschema.ValidationError) -> InputError:
    if error.validator == "additionalProperties":
        extra = sorted(set(payload) - set(action.input_schema.get("properties", {})))
        allowed = ", ".join(action.allowed)
        return InputError(extra[0], f"unknown field for {action.name} (allowed: {allowed})")
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return InputError(missing, f"is required by {action.name}")
    field = ".".join(map(str, error.absolute_path))
    if error.validator == "anyOf" and error.context:
        error = error.context[0]
    # A schema's own description says what is expected better than a bare pattern does.
    described = error.schema.get("description") if isinstance(error.schema, dict) else None
    return InputError(field, f"{described} (got {error.instance!r})" if described
                      else error.message)


def choose_case(action: ActionSpec, context: dict[str, Any]) -> ActionCase:
    for case in action.cases:
        if case.when is None or case.when.render(context):
            return case
    conditions = ", ".join(c.when.source for c in action.cases if c.when)
    raise InputError("", f"{action.name}: no case matches this payload (conditions: {conditions})")


# What reading a mapping's records needs (custom-field names, reference rows for lookups), per
# connection: the Engine's.
ReadContexts = Callable[[ModelMapping], ReadContext | None]


def run_action(session: Session, action: ActionSpec, payload: Any,
               base_context: dict[str, Any], actions: dict[str, ActionSpec] | None = None,
               read_contexts: ReadContexts | None = None) -> dict[str, Any]:
    """Run `action`; `actions` (the connector's) serve a `result.then` read-back."""
    typed = validate_payload(action, payload)
    full_input = {name: typed.get(name) for name in action.allowed}
    context = {**base_context, "input": full_input,
               "now": format_timestamp(utc_now())}
    if action.read_first and actions:
        # The record as it is now, for writes that must resend what the payload leaves out
        # (a vendor storing one full name, when only the last name changes).
        context["current"] = run_action(session, actions[action.read_first],
                                        {"id": typed["id"]}, base_context, actions,
                                        read_contexts).get("record")
    case = choose_case(action, context)
    # Names first: writing needs them for fields mapped by label, and a lookup that failed
    # after a create was sent would hide that it was applied.
    reading = read_contexts(case.mapping) if read_contexts and case.mapping else None
    names = reading.custom_names if reading is not None else None
    if case.mapping is not None:
        writable = {k: v for k, v in typed.items() if k != "id"}
        context["record"] = case.mapping.write(
            writable, apply_defaults=action.input_mode == "create", custom_names=names)
        context["vendor_fields"] = case.mapping.vendor_fields
    else:
        context["vendor_fields"] = lambda prefix="": []
    call = render_call(case.request, session.base_url, context)
    operation = f"action.{action.name}"
    reply = session.send(call, operation)
    try:
        if case.paginate is not None:
            return _paginated_result(session, case, call, reply, operation, reading, context)
        result = _result(case, reply, context, reading)
    except (PaginationError, ExpressionFailed, TemplateFailed) as exc:
        raise _unreadable(session, call, reply, operation,
                          f"cannot read the response: {exc}") from None
    if result["id"] is None and not call.idempotent and case.result.names_id:
        raise _unreadable(session, call, reply, operation, "the response carries no record id")
    if case.result.then and actions and result["id"] is not None:
        return run_action(session, actions[case.result.then], {"id": result["id"]},
                          base_context, actions, read_contexts)
    return result


def _unreadable(session: Session, call: Call, reply: Reply, operation: str,
                problem: str) -> CrmError:
    """A success we cannot read. After a write the CRM may well have acted: that is an
    unknown outcome, never a result with a null id."""
    if call.idempotent:
        return CrmError(session.connector.name, operation, problem, status=reply.status)
    return CrmError(session.connector.name, operation,
                    f"HTTP {reply.status}, but {problem}: the outcome is unknown (it was probably "
                    f"applied); check the CRM before sending it again",
                    status=reply.status, kind="transient", outcome_unknown=True)


def _paginated_result(session: Session, case: ActionCase, call: Call, reply: Reply,
                      operation: str, reading: ReadContext | None,
                      context: dict[str, Any]) -> dict[str, Any]:
    """Follow the pages of a search, collecting up to `max_records` records."""
    assert case.paginate is not None and case.result.records is not None
    paginator = paginator_for(case.paginate)
    records: list[Any] = []
    number = 1
    while True:
        page = read_page(reply.body, case.result.records, number)
        records.extend(_records(case, page.records, reading, context))
        if len(records) >= case.result.max_records:
            del records[case.result.max_records:]
            break
        following = paginator.next(call, page)
        if following is None:
            break
        call = following
        reply = session.send(call, operation)
        number += 1
    return {"records": records, "id": _first_id(records)}


def _records(case: ActionCase, records: list[Any], reading: ReadContext | None,
             context: dict[str, Any]) -> list[Any]:
    if not (case.result.raw or case.mapping is None):
        records = [jsonable(case.mapping.read(r, context=reading)) for r in records]
    if case.result.filter is not None:  # near matches from the endpoint: keep the exact ones
        records = [r for r in records if case.result.filter.render({**context, "record": r})]
    return records


def _first_id(records: list[Any]) -> Any:
    first = records[0] if records else None
    return first.get("id") if isinstance(first, dict) else None


def _result(case: ActionCase, reply: Reply, context: dict[str, Any],
            reading: ReadContext | None = None) -> dict[str, Any]:
    spec = case.result
    out: dict[str, Any] = {}
    body = reply.body
    if spec.records is not None:
        records = spec.records(body) if body is not None else None
        out["records"] = _records(case, list(records or []), reading, context)
        out["id"] = _first_id(out["records"])
    if spec.record is not None and body is not None:
        record = spec.record(body)
        if record is not None:
            out["record"] = (record if spec.raw or case.mapping is None
                             else jsonable(case.mapping.read(record, context=reading)))
            out["id"] = out["record"].get("id") if isinstance(out["record"], dict) else None
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
