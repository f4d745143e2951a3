"""Pipedrive error bodies (CONTRACTS 3.6).

API errors: ``{"success": false, "error": "<text>", "error_info": "<hint>", "errorCode"?: int,
"data": null?, "additional_data": null?}``. The OAuth server answers
``{"success": false, "message": "...", "error": "<oauth code>"}``
(oauth_error_invalid_grant_sdk_mock.json).
"""

from __future__ import annotations

from typing import Any

from sandbox.kit.core import Response
from sandbox.pipedrive.schema import ERROR_INFO

# fixtures/pipedrive/error_401_unauthorized.json, sent with the gateway header (CONTRACTS 3.6).
UNAUTHORIZED_BODY = {
    "success": False,
    "error": "unauthorized access",
    "errorCode": 401,
    "error_info": ERROR_INFO,
}
UNAUTHORIZED_HEADERS = {"x-401-by-gw": "true"}
# CONTRACTS 3.6/3.7: the 429 text is UNCONFIRMED; mocks use "Request over limit".
RATE_LIMITED_BODY = {"success": False, "error": "Request over limit", "errorCode": 429}
# Choice (UNCONFIRMED, CONTRACTS 3.7 records only the headers): the daily token budget 429.
DAILY_LIMIT_BODY = {
    "success": False,
    "error": "Daily API token budget exceeded",
    "errorCode": 429,
    "error_info": ERROR_INFO,
}


class PipedriveError(Exception):
    """Raised by handlers; rendered in the API error envelope."""

    def __init__(
        self, status: int, error: str, *, code: bool = False, extra: dict | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.code = code  # add errorCode (the 401/429 bodies carry it; v1 400/404s do not)
        self.extra = extra or {}

    def response(self) -> Response:
        body: dict[str, Any] = {"success": False, "error": self.error, "error_info": ERROR_INFO}
        if self.code:
            body["errorCode"] = self.status
        body.update({"data": None, "additional_data": None})
        body.update(self.extra)
        return Response(self.status, body)


def bad_request(error: str) -> PipedriveError:
    return PipedriveError(400, error)


def not_found(kind_singular: str) -> PipedriveError:
    # v1 answers e.g. "Person not found" (choice of wording where CONTRACTS is silent).
    return PipedriveError(404, f"{kind_singular} not found")


def gone(kind_singular: str) -> PipedriveError:
    # CONTRACTS 3.6: 410 "old resource permanently unavailable"/deleted.
    return PipedriveError(410, f"{kind_singular} is deleted", code=True)


def unauthorized() -> Response:
    return Response(401, dict(UNAUTHORIZED_BODY), dict(UNAUTHORIZED_HEADERS))


def rate_limited(headers: dict[str, str]) -> Response:
    return Response(429, dict(RATE_LIMITED_BODY), headers)


def daily_limit_exceeded(headers: dict[str, str]) -> Response:
    return Response(429, dict(DAILY_LIMIT_BODY), headers)


def for_status(status: int) -> Response:
    """Body for an injected fault or a crash, in the envelope Pipedrive uses for that status."""
    if status == 401:
        return unauthorized()
    if status == 429:
        return Response(429, dict(RATE_LIMITED_BODY), {"x-ratelimit-reset": "2"})
    messages = {
        400: "Bad request",
        402: "Company account is not open (possible reason: trial expired, payment details "
        "not entered)",
        403: "You do not have permissions to perform this action",
        404: "Not found",
        410: "Gone",
        415: "Feature is not enabled",
    }
    error = messages.get(status) or ("Internal server error" if status >= 500 else "Error")
    return PipedriveError(status, error, code=True).response()


def oauth_error(status: int, error: str, message: str) -> Response:
    """OAuth server error (oauth_error_invalid_grant_sdk_mock.json)."""
    return Response(status, {"success": False, "message": message, "error": error})
