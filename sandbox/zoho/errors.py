"""Zoho CRM error bodies (CONTRACTS 4.6, fixtures/zoho/error_*.json, zoho/crm-oas examples).

Request-level errors are ``{code, details, message, status:"error"}`` (all four always
present); per-record failures of a write are the same four keys inside ``data[]``.
"""

from __future__ import annotations

from typing import Any

from sandbox.kit.core import Response


class ZohoError(Exception):
    """Raised by handlers; rendered as the API_Exception envelope."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)

    def response(self) -> Response:
        return Response(self.status, self.body())


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    # Key order of the recorded bodies: code, details, message, status.
    return {"code": code, "details": details or {}, "message": message, "status": "error"}


# -- auth (401) -------------------------------------------------------------------------------


def invalid_token() -> ZohoError:
    # fixtures/zoho/error_401_invalid_token.json: an expired, revoked or unknown token.
    return ZohoError(401, "INVALID_TOKEN", "invalid oauth token")


def authentication_failure() -> ZohoError:
    # CONTRACTS 4.6: no usable token reached the request (no header, or not Zoho-oauthtoken);
    # message from the crm-oas example.
    return ZohoError(401, "AUTHENTICATION_FAILURE", "Authentication failed")


def scope_mismatch() -> ZohoError:
    # CONTRACTS 4.6: OAUTH_SCOPE_MISMATCH. The crm-oas example says "Unauthorized"; we use the
    # wording live Zoho answers (UNCONFIRMED here).
    return ZohoError(401, "OAUTH_SCOPE_MISMATCH", "invalid oauth scope to access this URL")


# -- request errors (400/404) -----------------------------------------------------------------


def invalid_module() -> ZohoError:
    return ZohoError(
        400,
        "INVALID_MODULE",
        "the module name given seems to be invalid",
        {"resource_path_index": 0},
    )


def invalid_url_pattern() -> ZohoError:
    # CONTRACTS 4.6 (crm-oas v8.0 record.json code/message enums).
    return ZohoError(
        404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one"
    )


def invalid_request_method() -> ZohoError:
    # crm-oas example response-400-invalidrequestmethod (400, not 405).
    return ZohoError(
        400, "INVALID_REQUEST_METHOD", "The http request method type is not a valid one"
    )


def required_param_missing(param: str) -> ZohoError:
    # crm-oas getRecords example: fields missing in v3+.
    return ZohoError(
        400, "REQUIRED_PARAM_MISSING", "required param is missing", {"param_name": param}
    )


def invalid_param(param: str, **extra: Any) -> ZohoError:
    return ZohoError(400, "INVALID_DATA", "invalid data", {"param_name": param, **extra})


def limit_exceeded(param: str, limit: int) -> ZohoError:
    # crm-oas example: more than 50 API names in `fields`.
    return ZohoError(400, "LIMIT_EXCEEDED", "limit exceeded", {"limit": limit, "param_name": param})


def discrete_pagination_limit(message: str | None = None) -> ZohoError:
    # fixtures/zoho/error_400_discrete_pagination_limit_exceeded.json
    return ZohoError(
        400,
        "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
        message or "You can only get the first 2000 records without using page_token param",
        {"limit": 2000},
    )


def pagination_limit() -> ZohoError:
    # crm-oas example: page tokens reach at most 100,000 records.
    return ZohoError(
        400,
        "PAGINATION_LIMIT_EXCEEDED",
        "You can only get upto 100000 records using page_token param",
        {"param_name": "page_token"},
    )


def ambiguity(*params: str) -> ZohoError:
    # CONTRACTS 4.3: page together with page_token -> AMBIGUITY_DURING_PROCESSING [UNCONFIRMED
    # there]; the crm-oas schema gives details.ambiguity_due_to[{param_name}]. The message is
    # our wording (UNCONFIRMED).
    return ZohoError(
        400,
        "AMBIGUITY_DURING_PROCESSING",
        "ambiguity while processing the request",
        {"ambiguity_due_to": [{"param_name": name} for name in params]},
    )


def expired_page_token() -> ZohoError:
    # crm-oas example response-400-expiredvalue.
    return ZohoError(
        400,
        "EXPIRED_VALUE",
        "Page token expired",
        {"api_name": "page_token", "json_path": "$.query.page_token"},
    )


def token_mismatch() -> ZohoError:
    # crm-oas example response-400-tokenbounddatamismatch: also used for a garbled token.
    return ZohoError(
        400,
        "TOKEN_BOUND_DATA_MISMATCH",
        "The page_token given seems to be invalid or input param is added or altered or deleted",
        {"param_name": "page_token"},
    )


def invalid_query(reason: str, **extra: Any) -> ZohoError:
    # Search criteria that do not parse. Code INVALID_QUERY per Zoho's search docs; the details
    # layout and message are our wording (UNCONFIRMED).
    return ZohoError(400, "INVALID_QUERY", "invalid query formed", {"reason": reason, **extra})


def body_error(code: str, message: str, details: dict[str, Any]) -> ZohoError:
    return ZohoError(400, code, message, details)


def too_many_requests() -> Response:
    # fixtures/zoho/error_429_too_many_requests.json (credits or concurrency exhausted).
    # Choice: no Retry-After header; CONTRACTS 4.7 marks it UNCONFIRMED and documents no rate
    # headers for CRM.
    return Response(
        429,
        error_body("TOO_MANY_REQUESTS", "too many requests. please try again after some time"),
    )


def for_status(status: int) -> Response:
    """The body of an injected fault or a handler crash, in Zoho's envelope."""
    if status == 429:
        return too_many_requests()
    known = {
        400: ZohoError(400, "INVALID_DATA", "invalid data"),
        401: invalid_token(),
        403: ZohoError(
            403,
            "NO_PERMISSION",
            "permission denied",
            {"permissions": ["Crm_Implied_View_Contacts"]},
        ),
        404: invalid_url_pattern(),
    }
    error = known.get(status) or ZohoError(
        status, "INTERNAL_ERROR", "Internal server error occurred."
    )
    response = error.response()
    response.status = status
    return response


# -- per-record entries inside data[] ---------------------------------------------------------


def record_error(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return error_body(code, message, details)


def mandatory_not_found(api_name: str, json_path: str) -> dict[str, Any]:
    # fixtures/zoho/error_400_mandatory_not_found_in_data.json
    return record_error(
        "MANDATORY_NOT_FOUND",
        "required field not found",
        {"api_name": api_name, "json_path": json_path},
    )


def invalid_data(api_name: str, json_path: str, **extra: Any) -> dict[str, Any]:
    # crm-oas createRecords examples: {expected_data_type?, api_name, json_path}.
    return record_error(
        "INVALID_DATA", "invalid data", {**extra, "api_name": api_name, "json_path": json_path}
    )


def invalid_related_id(api_name: str, json_path: str) -> dict[str, Any]:
    return record_error(
        "INVALID_DATA",
        "the related id given seems to be invalid",
        {"api_name": api_name, "json_path": json_path},
    )


def duplicate_data(
    api_name: str, json_path: str, existing_id: str, module: str, owner: dict
) -> dict[str, Any]:
    # crm-oas example response-400-duplicatedataerror.
    return record_error(
        "DUPLICATE_DATA",
        "duplicate data",
        {
            "api_name": api_name,
            "duplicate_record": {
                "Owner": {"name": owner["name"], "id": owner["id"]},
                "module": {"api_name": module},
                "id": existing_id,
            },
            "json_path": json_path,
            "id": existing_id,
            "more_records": False,
        },
    )
