"""Salesforce error bodies (CONTRACTS 2.6 and ``fixtures/salesforce/error_*.json``).

REST errors are a JSON **array** ``[{"message", "errorCode", "fields"?}]``; the OAuth endpoints
use the RFC 6749 object ``{"error", "error_description"}`` instead (CONTRACTS 2.1).
"""

from __future__ import annotations

from sandbox.kit.core import Response


class SalesforceError(Exception):
    """Raised by handlers and rendered as a one-element error array."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        fields: list[str] | None = None,
        *,
        code_first: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields
        self.code_first = code_first  # key order of the recorded NOT_FOUND body

    def body(self) -> dict:
        if self.code_first:
            entry = {"errorCode": self.error_code, "message": self.message}
        else:
            entry = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            entry["fields"] = self.fields
        return entry

    def response(self) -> Response:
        return Response(self.status, [self.body()])


def bad_request(error_code: str, message: str, fields: list[str] | None = None) -> SalesforceError:
    return SalesforceError(400, error_code, message, fields)


def invalid_session() -> SalesforceError:
    # fixtures/salesforce/error_401_invalid_session_id.json: missing, unknown, revoked, expired.
    return SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid")


def invalid_auth_header() -> SalesforceError:
    # error_401_invalid_auth_header.json; the status is UNCONFIRMED (401 chosen): sent when the
    # Authorization header uses a scheme other than Bearer/OAuth.
    return SalesforceError(401, "INVALID_AUTH_HEADER", "INVALID_HEADER_TYPE")


def request_limit_exceeded() -> SalesforceError:
    # CONTRACTS 2.6: the daily allocation is spent -> 403, never 429.
    return SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")


def not_found() -> SalesforceError:
    # error_404_not_found_unknown_sobject.json (errorCode first, as recorded).
    return SalesforceError(
        404, "NOT_FOUND", "The requested resource does not exist", code_first=True
    )


def entity_is_deleted() -> SalesforceError:
    # error_404_entity_is_deleted.json
    return SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted", [])


def malformed_id(value: str, label: str = "Record ID", field: str = "Id") -> SalesforceError:
    # error_400_malformed_id.json
    return bad_request("MALFORMED_ID", f"{label}: id value of incorrect type: {value}", [field])


def invalid_field_on_write(name: str, object_name: str) -> SalesforceError:
    # error_400_invalid_field_on_create.json
    return bad_request("INVALID_FIELD", f"No such column '{name}' on sobject of type {object_name}")


def required_fields_missing(names: list[str]) -> SalesforceError:
    # error_400_required_field_missing.json
    return bad_request(
        "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(names)}]", names
    )


def bad_picklist(label: str, name: str, value: object) -> SalesforceError:
    # error_400_invalid_restricted_picklist.json: "<label>: bad value for restricted picklist..."
    return bad_request(
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        f"{label}: bad value for restricted picklist field: {value}",
        [name],
    )


def json_parser_error(type_name: str, value: object) -> SalesforceError:
    kind = "VALUE_STRING" if isinstance(value, str) else "VALUE_NUMBER_INT"
    if isinstance(value, bool):
        kind = "VALUE_TRUE" if value else "VALUE_FALSE"
    elif isinstance(value, float):
        kind = "VALUE_NUMBER_FLOAT"
    elif isinstance(value, (list, dict)):
        kind = "START_ARRAY" if isinstance(value, list) else "START_OBJECT"
    return bad_request(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {type_name} from {kind} value {value} or request may "
        "be missing a required field at [line:1, column:1]",
    )


# Bodies for injected faults and handler crashes: the array shape with the code Salesforce
# uses for that status. 5xx codes are our choice (UNCONFIRMED wording).
_FOR_STATUS = {
    400: ("MALFORMED_QUERY", "unexpected token: <EOF>"),
    401: ("INVALID_SESSION_ID", "Session expired or invalid"),
    403: ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    404: ("NOT_FOUND", "The requested resource does not exist"),
    500: (
        "UNKNOWN_EXCEPTION",
        "An unexpected error occurred. Please include this ErrorId if you contact support: "
        "1450118462-19873 (-1259284162)",
    ),
    502: ("SERVER_UNAVAILABLE", "Bad gateway: the server is temporarily unavailable."),
    503: ("SERVER_UNAVAILABLE", "Server is temporarily unavailable. Please try again later."),
}


def for_status(status: int) -> Response:
    code, message = _FOR_STATUS.get(status, ("UNKNOWN_EXCEPTION", f"HTTP {status}"))
    return Response(status, [{"message": message, "errorCode": code}])


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    """CONTRACTS 2.1: the token endpoints answer RFC 6749 errors, not the REST array."""
    return Response(status, {"error": error, "error_description": description})
