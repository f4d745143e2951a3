"""Sending requests to a CRM: budget, auth, retries, and one normalized error.

One `Session` per connection holds one keep-alive httpx client. `send` spends the rate budget,
sends, feeds the rate-limit headers back, classifies failures with the YAML's error rules and
retries (tenacity) what may be retried:

- `rate_limited` and `transient` failures, with backoff 1, 2, 4, 8 s (+ jitter), or the
  server's `Retry-After` / reset header when it gives one;
- connection failures before the request was sent;
- never a non-idempotent request (a create) after an ambiguous failure (timeout after sending,
  reset mid-response, a 5xx): that fails with `outcome_unknown`, so it is never sent twice blindly.
"""

from __future__ import annotations

import email.utils
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import tenacity

from engine import secrets
from engine.clock import Clock
from engine.errors import CrmError
from engine.ratelimit import RateBudget
from engine.spec import Connector, ErrorSpec

log = logging.getLogger("crm_engine.http")

# Not processed by the server, so safe to resend even when the request is not idempotent.
_NOT_PROCESSED_STATUSES = frozenset({429, 503})
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass
class Call:
    """One HTTP request, fully rendered."""

    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: Any  # parsed JSON, or None for an empty body (e.g. 204)


@dataclass
class Counters:
    requests: int = 0
    retries: int = 0


def classify(errors: ErrorSpec, status: int, body: Any) -> tuple[str, str | None, str | None]:
    """(kind, vendor code, message override) for an error response, by the YAML's rules
    first, then the defaults: 401 auth_expired, 429 rate_limited, 408/5xx transient."""
    code = _text(errors.code(body)) if errors.code and body is not None else None
    for rule in errors.rules:
        if rule.statuses is not None and status not in rule.statuses:
            continue
        if rule.codes is not None and code not in rule.codes:
            continue
        if rule.matches is not None and not (body is not None and rule.matches(body)):
            continue
        return rule.kind, code, rule.message
    if status == 401:
        return "auth_expired", code, None
    if status == 429:
        return "rate_limited", code, None
    if status == 408 or status >= 500:
        return "transient", code, None
    return "fatal", code, None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def parse_body(response: httpx.Response) -> Any:
    content = response.content
    if not content or not content.strip():
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return response.text


def retry_after_seconds(headers: httpx.Headers, clock: Clock) -> float | None:
    """`Retry-After` as seconds: either a number or an HTTP date."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - clock.wall())


class Session:
    """A connection's HTTP side. Thread-safe; share it between a sync's streams and actions."""

    def __init__(self, connector: Connector, *, base_url: str, auth: httpx.Auth,
                 headers: dict[str, str], budget: RateBudget | None, clock: Clock,
                 transport: httpx.BaseTransport | None = None, rng: random.Random | None = None):
        self.connector = connector
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self.counters = Counters()
        self._clock = clock
        self._rng = rng or random.Random()
        self._client = httpx.Client(
            auth=auth, headers=headers, timeout=connector.timeout_seconds,
            transport=transport, follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=8, keepalive_expiry=30),
        )
        self.auth = auth

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Session(connector={self.connector.name!r}, base_url={self.base_url!r})"

    # -- sending ---------------------------------------------------------------------------
    def send(self, call: Call, operation: str) -> Reply:
        retry = self.connector.retry
        attempts = {"transient": 0, "rate_limited": 0}

        def should_retry(state: tenacity.RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            if not isinstance(error, CrmError) or not error.retryable:
                return False
            attempts[error.kind] = attempts.get(error.kind, 0) + 1
            limit = (retry.max_rate_limit_retries if error.kind == "rate_limited"
                     else retry.max_retries)
            if attempts[error.kind] > limit:
                return False
            self.counters.retries += 1
            return True

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            assert isinstance(error, CrmError)
            attempt = attempts.get(error.kind, 1)
            if error.retry_after is not None:
                seconds = error.retry_after
            else:
                backoff = retry.backoff_seconds[min(attempt, len(retry.backoff_seconds)) - 1]
                seconds = backoff * (1 + retry.jitter * (2 * self._rng.random() - 1))
            seconds = min(seconds, retry.max_wait_seconds)
            if error.kind == "rate_limited" and self.budget is not None:
                self.budget.pause(seconds)  # other senders on this connection wait too
            log.info("%s %s: %s; retrying in %.1fs", self.connector.name, operation,
                     error.message, seconds)
            return seconds

        retrying = tenacity.Retrying(
            retry=should_retry, wait=wait, sleep=self._clock.sleep,
            stop=tenacity.stop_never, reraise=True,
        )
        return retrying(self._attempt, call, operation)

    def _attempt(self, call: Call, operation: str) -> Reply:
        self._check_daily_budget(operation)
        if self.budget is not None:
            self.budget.acquire()
        self.counters.requests += 1
        try:
            response = self._client.request(
                call.method, call.url, params=call.params or None, json=call.json,
                headers=call.headers or None,
            )
        except httpx.HTTPError as exc:
            raise self._network_error(exc, call, operation) from None
        finally:
            if self.budget is not None:
                self.budget.release()
        if self.budget is not None:
            self.budget.observe(response.headers)
        body = parse_body(response)
        if response.status_code >= 400:
            raise self._http_error(response, body, call, operation)
        self._raise_in_body_error(response, body, operation)
        return Reply(response.status_code, response.headers, body)

    # -- errors ----------------------------------------------------------------------------
    def _network_error(self, exc: httpx.HTTPError, call: Call, operation: str) -> CrmError:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, _NOT_SENT_ERRORS):
            return CrmError(self.connector.name, operation,
                            secrets.redact(f"could not connect: {detail}"),
                            kind="transient", retryable=True)
        if call.idempotent:
            return CrmError(self.connector.name, operation,
                            secrets.redact(f"network failure: {detail}"),
                            kind="transient", retryable=True)
        return CrmError(
            self.connector.name, operation,
            secrets.redact(f"{detail} after the request was sent: the outcome is unknown (it may "
                           f"have been applied); check the CRM before sending it again"),
            kind="transient", retryable=False, outcome_unknown=True,
        )

    def _http_error(self, response: httpx.Response, body: Any, call: Call,
                    operation: str) -> CrmError:
        errors = self.connector.errors
        kind, code, override = classify(errors, response.status_code, body)
        message = override or (_text(errors.message(body)) if errors.message and body is not None
                               else None)
        if not message:
            message = body if isinstance(body, str) and body else response.reason_phrase
        retryable = kind in ("rate_limited", "transient")
        outcome_unknown = False
        not_processed = kind == "rate_limited" or response.status_code in _NOT_PROCESSED_STATUSES
        if retryable and not call.idempotent and not not_processed:
            retryable, outcome_unknown = False, True
            message = f"{message} (the outcome is unknown: it may have been applied)"
        error = CrmError(
            self.connector.name, operation, secrets.redact(str(message)),
            status=response.status_code, code=code, kind=kind, retryable=retryable,
            raw_body=secrets.redact_deep(body), outcome_unknown=outcome_unknown,
        )
        if retryable:
            error.retry_after = self._wait_hint(response)
        return error

    def _wait_hint(self, response: httpx.Response) -> float | None:
        after = retry_after_seconds(response.headers, self._clock)
        if after is not None:
            return after
        feedback = self.connector.rate_limit.feedback if self.connector.rate_limit else {}
        if response.status_code == 429 and "reset" in feedback:
            return feedback["reset"].read(response.headers)
        return None

    def _raise_in_body_error(self, response: httpx.Response, body: Any, operation: str) -> None:
        errors = self.connector.errors
        if errors.in_body_when is None or body is None or not errors.in_body_when(body):
            return
        code = _text(errors.in_body_code(body)) if errors.in_body_code else None
        message = _text(errors.in_body_message(body)) if errors.in_body_message else None
        raise CrmError(self.connector.name, operation,
                       secrets.redact(message or "the CRM reported an error"),
                       status=response.status_code, code=code, kind="fatal",
                       raw_body=secrets.redact_deep(body))

    def _check_daily_budget(self, operation: str) -> None:
        if self.budget is not None and self.budget.daily_remaining is not None \
                and self.budget.daily_remaining <= 0:
            raise CrmError(self.connector.name, operation,
                           "the daily API budget is spent; stopping until it resets",
                           kind="quota_exhausted")
