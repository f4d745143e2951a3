"""Turn a request spec plus a template context into a concrete `Call`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from engine.spec import RequestSpec
from engine.transport import Call


def render_call(spec: RequestSpec, base_url: str, context: Mapping[str, Any]) -> Call:
    path = spec.path.render(context)
    params = {k: _param(v) for k, v in spec.params.render(context).items() if v is not None}
    headers = {k: str(v) for k, v in ((k, t.render(context)) for k, t in spec.headers.items())
               if v is not None}  # a header whose value is null is left out, like a param
    body = spec.body.render(context) if spec.body is not None else None
    if spec.idempotency_header:  # one key per call: every retry of it carries the same one
        headers[spec.idempotency_header] = uuid.uuid4().hex
    return Call(spec.method, base_url.rstrip("/") + path, params, body, headers, spec.idempotent,
                spec.budget)


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
