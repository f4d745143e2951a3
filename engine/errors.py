"""The error types users see.

Three kinds, each with one job:
- `SpecError`: a connector or mapping file is wrong; says file, line and YAML path.
- `InputError`: a caller's payload does not fit the unified model; names the field.
- `CrmError`: a request to a CRM failed; the one normalized runtime error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One problem in one spec file, located as precisely as we can."""

    file: str
    line: int | None
    path: str  # YAML path such as `streams.contacts.paginate.cursor`
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        at = f" at {self.path}" if self.path else ""
        return f"{where}{at}: {self.message}"


class SpecError(Exception):
    """One or more problems in connector or mapping files."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class InputError(ValueError):
    """A unified payload that does not fit its model; `field` names the offending value."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


# How an error behaves; the YAML's error rules choose one per response.
ERROR_KINDS = (
    "auth_expired",  # refresh the token once, then retry once
    "auth_revoked",  # the authorization is gone (a refresh was refused): connect again
    "rate_limited",  # back off (Retry-After, reset headers) and retry
    "transient",  # server trouble: retry a bounded number of times
    "quota_exhausted",  # a budget that will not recover soon: stop with a clear error
    "fatal",  # the request itself is wrong: never retry
)


@dataclass
class CrmError(Exception):
    """A failed CRM request, normalized from the vendor's error envelope."""

    connector: str
    operation: str
    message: str
    status: int | None = None
    code: str | None = None
    kind: str = "fatal"
    retryable: bool = False
    raw_body: Any = field(default=None, repr=False)
    outcome_unknown: bool = False  # a non-idempotent request may or may not have been applied
    retry_after: float | None = None  # seconds the server asked us to wait, when it said

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        status = f" HTTP {self.status}" if self.status is not None else ""
        code = f" [{self.code}]" if self.code else ""
        return f"{self.connector}.{self.operation}:{status}{code} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "connector": self.connector,
            "operation": self.operation,
            "status": self.status,
            "code": self.code,
            "kind": self.kind,
            "retryable": self.retryable,
            "outcome_unknown": self.outcome_unknown,
            "message": self.message,
        }


class Cancelled(KeyboardInterrupt):
    """A sync stopped because its Engine was cancelled (another thread got Ctrl-C or SIGTERM):
    handled like an interrupt, what was read is landed and the run is `interrupted`."""
