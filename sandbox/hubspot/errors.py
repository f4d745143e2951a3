"""HubSpot error bodies (CONTRACTS 1.6 and the ``fixtures/hubspot/error_*.json`` recordings).

API errors use ``{status:"error", message, correlationId, category, ...}``; rate limits use
``errorType``/``policyName`` instead of ``category``; the OAuth token endpoint answers
``{status:<CODE>, message}``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sandbox.kit.core import Response, encode_json


def new_correlation_id() -> str:
    return str(uuid.uuid4())


class HubSpotError(Exception):
    """Raised by handlers; rendered with the request's correlation id."""

    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.extra = extra

    def response(self, correlation_id: str) -> Response:
        body = {
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id,
            "category": self.category,
            **self.extra,
        }
        return Response(self.status, body)


def validation_error(message: str, errors: list[dict] | None = None) -> HubSpotError:
    extra = {"errors": errors} if errors else {}
    return HubSpotError(400, "VALIDATION_ERROR", message, **extra)


def property_validation_error(errors: list[dict]) -> HubSpotError:
    # Real bodies embed the per-property results as JSON text in the message and (newer)
    # list them in errors[].
    results = [
        {
            "isValid": False,
            "message": error["message"],
            "error": error["code"],
            "name": error["context"]["propertyName"][0],
        }
        for error in errors
    ]
    message = "Property values were not valid: " + encode_json(results).decode()
    return validation_error(message, errors)


def not_found(record_id: str | None = None) -> HubSpotError:
    if record_id is None:
        return HubSpotError(404, "OBJECT_NOT_FOUND", "Resource not found")
    return HubSpotError(
        404,
        "OBJECT_NOT_FOUND",
        "Object not found.  objectId are usually numeric.",
        context={"id": [record_id]},
    )


def invalid_authentication() -> HubSpotError:
    # CONTRACTS 1.6: message starts "Authentication credentials not found"; the tail is
    # UNCONFIRMED, this one points at the OAuth docs like HubSpot's v3 APIs do.
    return HubSpotError(
        401,
        "INVALID_AUTHENTICATION",
        "Authentication credentials not found. This API supports OAuth 2.0 authentication and "
        "you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
    )


def expired_authentication(seconds_ago: float, expired_at_iso: str) -> HubSpotError:
    # fixtures/hubspot/error_401_expired_authentication.json
    return HubSpotError(
        401,
        "EXPIRED_AUTHENTICATION",
        f"The OAuth token used to make this call expired {int(seconds_ago)} second(s) ago.",
        context={"expire time": [expired_at_iso]},
    )


def missing_scopes(scope: str) -> HubSpotError:
    # fixtures/hubspot/error_403_missing_scopes.json
    return HubSpotError(
        403,
        "MISSING_SCOPES",
        "This app hasn't been granted all required scopes to make this call.",
        errors=[
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": [scope]},
            }
        ],
    )


def conflict(message: str) -> HubSpotError:
    # fixtures/hubspot/error_409_conflict_contact_exists.json
    return HubSpotError(409, "CONFLICT", message)


def rate_limited(
    policy: str, correlation_id: str, headers: dict[str, str] | None = None
) -> Response:
    """CONTRACTS 1.6: 429 with errorType RATE_LIMIT and policyName naming the limit."""
    messages = {
        "DAILY": "You have reached your daily limit.",
        "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
        # Search limit (CONTRACTS 1.5): the SDK matches this message; the policyName is
        # UNCONFIRMED.
        "SECONDLY": "You have reached your secondly limit.",
    }
    body = {
        "status": "error",
        "message": messages[policy],
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id,
        "policyName": policy,
        "requestId": str(uuid.uuid4()),
    }
    # No Retry-After: CONTRACTS 1.6 marks it UNCONFIRMED and a client states HubSpot sends none.
    return Response(429, body, headers or {})


def for_status(status: int) -> Response:
    """Body for an injected fault or a crash: the envelope HubSpot uses for that status."""
    correlation_id = new_correlation_id()
    if status == 429:
        response = rate_limited("TEN_SECONDLY_ROLLING", correlation_id)
    else:
        known = {
            400: validation_error("Invalid input"),
            401: invalid_authentication(),
            403: missing_scopes("crm.objects.contacts.read"),
            404: not_found(),
            409: conflict("Conflict"),
        }
        error = known.get(status) or HubSpotError(status, "INTERNAL_ERROR", "internal error")
        response = error.response(correlation_id)
    response.headers["X-HubSpot-Correlation-Id"] = correlation_id
    return response


def token_endpoint_error(code: str, message: str) -> Response:
    """OAuth token endpoint errors: ``{status: <CODE>, message}`` (error_400_bad_refresh_token)."""
    return Response(400, {"status": code, "message": message})
