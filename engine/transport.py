"""Sending requests to a CRM: budget, auth, retries, and one normalized error.

One `Session` per connection holds one keep-alive httpx client. `send` spends the rate budget,
sends, feeds the rate-limit headers back, classifies failures with the YAML's error rules and
retries what may be retried (`retry_delay` says how long to wait, or not to):

- `rate_limited` and `transient` failures, with backoff 1, 2, 4, 8 s (+ jitter), or the
  server's `Retry-After` / reset header when it gives one;
- a 2xx whose body is not the JSON it should be (empty, cut short, a proxy's HTML page): the
  request is treated as failed in transit, never as an empty answer;
- connection failures before the request was sent;
- never a non-idempotent request (a create) after an ambiguous failure (timeout after sending,
  reset mid-response, a 5xx, a corrupt 2xx): that fails with `outcome_unknown`, so it is never
  sent twice blindly. It is resent only after a response that an error rule marks
  `not_processed` (the vendor's contract says such a request was refused before it was
  applied), or when the request carries an idempotency key the vendor honours.
"""

from __future__ import annotations

import email.utils
import functools
import html
import logging
import random
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from engine import secrets
from engine.clock import Clock
from engine.errors import CrmError
from engine.extract import ExpressionFailed
from engine.ratelimit import Budget
from engine.spec import Connector, ErrorSpec, RetrySpec

log = logging.getLogger("crm_engine.http")

_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Requests that cannot succeed however often they are sent.
_HOPELESS_ERRORS = (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError)
_NO_CONTENT = frozenset({204, 205, 304})
EXCERPT_CHARS = 200


@functools.cache
def _tls_context() -> Any:
    """One TLS context for every session: building one loads the CA bundle (about 40 ms and
    a few MB each), which hundreds of connections syncing at once would pay each."""
    return httpx.create_ssl_context()


@dataclass
class Call:
    """One HTTP request, fully rendered."""

    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True
    budget: str | None = None  # a rate-limit group it spends besides the connection's


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: Any  # parsed JSON, or None for a response with no content (204, 304)


@dataclass
class Counters:
    requests: int = 0
    retries: int = 0


# The counters of the run in progress in this context (a stream's run sets its own), so that
# streams sharing one connection's session, concurrently, each count their own requests.
run_counters: ContextVar[Counters | None] = ContextVar("run_counters", default=None)


@contextmanager
def counting(counters: Counters) -> Iterator[Counters]:
    """Count the requests sent in this context (and threads started from a copy of it) in
    `counters` too."""
    token = run_counters.set(counters)
    try:
        yield counters
    finally:
        run_counters.reset(token)


@dataclass(frozen=True)
class Classified:
    """What an error response means, by the YAML's rules."""

    kind: str
    code: str | None = None
    message: str | None = None  # the rule's message, overriding the vendor's
    not_processed: bool = False  # the vendor did not act on it: safe to send again


def classify(errors: ErrorSpec, status: int, body: Any) -> Classified:
    """An error response classified by the YAML's rules first, then the defaults: 401
    auth_expired, 429 rate_limited, 408/5xx transient, anything else fatal."""
    code = _text(errors.code(body)) if errors.code and body is not None else None
    for rule in errors.rules:
        if rule.statuses is not None and status not in rule.statuses:
            continue
        if rule.codes is not None and code not in rule.codes:
            continue
        if rule.matches is not None and not (body is not None and rule.matches(body)):
            continue
        return Classified(rule.kind, code, rule.message, rule.not_processed)
    if status == 401:
        return Classified("auth_expired", code)
    if status == 429:
        return Classified("rate_limited", code)
    if status == 408 or status >= 500:
        return Classified("transient", code)
    return Classified("fatal", code)


def retry_delay(policy: RetrySpec, error: CrmError, attempt: int,
                rng: random.Random) -> float | None:
    """Seconds to wait before sending again after `error`, the `attempt`-th failure of its
    kind, or None to give up. Pure, so the rules are tested alone."""
    if not error.retryable:
        return None
    limit = policy.max_rate_limit_retries if error.kind == "rate_limited" else policy.max_retries
    if attempt > limit:
        return None
    if error.retry_after is not None:
        seconds = error.retry_after
    else:
        backoff = policy.backoff_seconds[min(attempt, len(policy.backoff_seconds)) - 1]
        seconds = backoff * (1 + policy.jitter * (2 * rng.random() - 1))
    return min(seconds, policy.max_wait_seconds)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


class NotJson(ValueError):
    """A body that should be JSON and is not."""


def parse_body(response: httpx.Response) -> Any:
    """The JSON body; None when there is none. Raises NotJson for a body that is not JSON."""
    content = response.content
    if not content or not content.strip():
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise NotJson(excerpt(response.text)) from None


def error_body(response: httpx.Response) -> Any:
    """An error response's body: its JSON, or an excerpt of its text (a proxy's HTML page)."""
    try:
        return parse_body(response)
    except NotJson as exc:
        return str(exc)


def is_auth_expired(errors: ErrorSpec, response: httpx.Response) -> bool:
    """Whether a response says the access token expired (refresh, then retry once)."""
    if response.status_code < 400:
        return False
    try:
        return classify(errors, response.status_code, error_body(response)).kind == "auth_expired"
    except ExpressionFailed:
        return response.status_code == 401


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SCRIPT = re.compile(r"<(script|style)[^>]*>.*?</\1>", re.IGNORECASE | re.DOTALL)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short, one-line excerpt of a body: an HTML page's title (or its text), never the
    whole page."""
    title = _TITLE.search(text)
    if title:
        text = title.group(1)
    elif "<" in text and ">" in text:
        text = _TAG.sub(" ", _SCRIPT.sub(" ", text))
    text = " ".join(html.unescape(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


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
                 headers: dict[str, str], budget: Budget | None, clock: Clock,
                 transport: httpx.BaseTransport | None = None, rng: random.Random | None = None,
                 auth_hint: str | None = None, groups: dict[str, Budget] | None = None):
        self.connector = connector
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self.groups = groups or {}  # endpoint groups limited apart, by name
        self.counters = Counters()
        self._clock = clock
        self._rng = rng or random.Random()
        self._client = httpx.Client(
            auth=auth, headers=headers, timeout=connector.timeout_seconds,
            transport=transport, follow_redirects=False, verify=_tls_context(),
            limits=httpx.Limits(max_keepalive_connections=8, keepalive_expiry=30),
        )
        self.auth = auth
        self.auth_hint = auth_hint  # what to do when the credentials are refused
        self.answers = 0  # requests answered so far: the credentials work (see Engine.sync)
        self._answered = threading.Condition()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Session(connector={self.connector.name!r}, base_url={self.base_url!r})"

    def wait_for_answer(self, after: int, timeout: float) -> bool:
        """Whether more than `after` requests have been answered, waiting up to `timeout`."""
        with self._answered:
            return self._answered.wait_for(lambda: self.answers > after, timeout)

    # -- sending ---------------------------------------------------------------------------
    def send(self, call: Call, operation: str) -> Reply:
        """Send `call`, retrying what may be retried; raises CrmError when it cannot succeed."""
        attempts: dict[str, int] = {}
        while True:
            try:
                reply = self._attempt(call, operation)
                with self._answered:
                    self.answers += 1
                    self._answered.notify_all()
                return reply
            except CrmError as error:
                attempts[error.kind] = attempts.get(error.kind, 0) + 1
                seconds = retry_delay(self.connector.retry, error, attempts[error.kind],
                                      self._rng)
                if seconds is None:
                    raise
                limited = self._group(call) or self.budget
                if error.kind == "rate_limited" and limited is not None:
                    limited.pause(seconds)  # other senders of the same budget wait too
                log.info("%s %s: %s; retrying in %.1fs", self.connector.name, operation,
                         error.message, seconds)
                self.counters.retries += 1
                if (counters := run_counters.get()) is not None:
                    counters.retries += 1
                self._clock.sleep(seconds)

    def _group(self, call: Call) -> Budget | None:
        """The budget of the endpoint group the call names, if it names one."""
        return self.groups.get(call.budget) if call.budget else None

    def _attempt(self, call: Call, operation: str) -> Reply:
        self._check_daily_budget(operation)
        budgets = [b for b in (self._group(call), self.budget) if b is not None]
        stamps = [budget.acquire() for budget in budgets]
        self.counters.requests += 1
        if (counters := run_counters.get()) is not None:
            counters.requests += 1
        try:
            response = self._client.request(
                call.method, call.url, params=call.params or None, json=call.json,
                headers=call.headers or None,
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._network_error(exc, call, operation) from None
        finally:
            for budget, stamp in zip(budgets, stamps, strict=True):
                budget.release(stamp)
        if self.budget is not None:
            self.budget.observe(response.headers)
        if response.status_code >= 400:
            raise self._http_error(response, error_body(response), call, operation)
        try:
            body = parse_body(response)
        except NotJson as exc:
            raise self._corrupt_reply(response, str(exc), call, operation) from None
        if body is None and response.status_code not in _NO_CONTENT:
            raise self._corrupt_reply(response, "an empty body", call, operation)
        self._raise_in_body_error(response, body, operation)
        return Reply(response.status_code, response.headers, body)

    # -- errors ----------------------------------------------------------------------------
    def _error(self, operation: str, message: str, **fields: Any) -> CrmError:
        if fields.get("code"):  # read from the response, which may echo what it was sent
            fields["code"] = secrets.redact(fields["code"])
        return CrmError(self.connector.name, operation, secrets.redact(message), **fields)

    def _ambiguous(self, call: Call, operation: str, what: str, **fields: Any) -> CrmError:
        """A failure after the request was sent: retried when sending again is safe, else
        reported as an unknown outcome."""
        if call.idempotent:
            return self._error(operation, what, kind="transient", retryable=True, **fields)
        return self._error(
            operation, f"{what} after the request was sent: the outcome is unknown (it may "
                       f"have been applied); check the CRM before sending it again",
            kind="transient", retryable=False, outcome_unknown=True, **fields)

    def _network_error(self, exc: Exception, call: Call, operation: str) -> CrmError:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, _HOPELESS_ERRORS):
            return self._error(operation, f"cannot send {call.method} {_safe_url(call.url)}: "
                                          f"{detail}", kind="fatal")
        if isinstance(exc, _NOT_SENT_ERRORS):
            return self._error(operation, f"could not connect: {detail}", kind="transient",
                               retryable=True)
        return self._ambiguous(call, operation, f"network failure ({detail})")

    def _corrupt_reply(self, response: httpx.Response, what: str, call: Call,
                       operation: str) -> CrmError:
        shown = what if what == "an empty body" else f"a body that is not JSON: {what!r}"
        return self._ambiguous(call, operation,
                               f"HTTP {response.status_code} with {shown}",
                               status=response.status_code)

    def _http_error(self, response: httpx.Response, body: Any, call: Call,
                    operation: str) -> CrmError:
        errors = self.connector.errors
        try:
            meaning = classify(errors, response.status_code, body)
            message = meaning.message or (
                _text(errors.message(body)) if errors.message and body is not None else None)
        except ExpressionFailed as exc:
            meaning, message = Classified("fatal"), f"cannot read the error response: {exc}"
        if not message:
            message = body if isinstance(body, str) and body else response.reason_phrase
        if response.status_code == 404:
            message = f"{message} ({call.method} {_safe_url(call.url)})"
        if meaning.kind == "auth_expired" and self.auth_hint:
            message = f"{message}: {self.auth_hint}"
        retryable = meaning.kind in ("rate_limited", "transient")
        outcome_unknown = False
        if retryable and not call.idempotent and not meaning.not_processed:
            retryable, outcome_unknown = False, True
            message = f"{message} (the outcome is unknown: it may have been applied)"
        error = self._error(
            operation, str(message), status=response.status_code, code=meaning.code,
            kind=meaning.kind, retryable=retryable, raw_body=secrets.redact_deep(body),
            outcome_unknown=outcome_unknown,
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
        if errors.in_body_when is None or body is None:
            return
        try:
            if not errors.in_body_when(body):
                return
            code = _text(errors.in_body_code(body)) if errors.in_body_code else None
            message = _text(errors.in_body_message(body)) if errors.in_body_message else None
        except ExpressionFailed as exc:
            raise self._error(operation, f"cannot read the response: {exc}",
                              status=response.status_code, kind="fatal") from None
        raise self._error(operation, message or "the CRM reported an error",
                          status=response.status_code, code=code, kind="fatal",
                          raw_body=secrets.redact_deep(body))

    def _check_daily_budget(self, operation: str) -> None:
        if self.budget is not None and self.budget.daily_remaining is not None \
                and self.budget.daily_remaining <= 0:
            raise self._error(operation, "the daily API budget is spent; stopping until it "
                                         "resets", kind="quota_exhausted")


def _safe_url(url: str) -> str:
    """A URL for messages: without its query string, which may carry a key."""
    return secrets.redact(url.split("?", 1)[0])
