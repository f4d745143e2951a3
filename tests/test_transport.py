"""Retries, backoff, ambiguous failures, error normalization and secret redaction, over real
HTTP to a local test server, with a fake clock: nothing here really sleeps."""

from __future__ import annotations

import email.utils
import logging
import random
import socket
import time

import httpx
import orjson
import pytest

from engine.auth import StaticAuth
from engine.clock import FakeClock
from engine.errors import CrmError
from engine.extract import compile_getter
from engine.ratelimit import RateBudget
from engine.spec import ErrorRule, ErrorSpec, RateLimitSpec
from engine.transport import (
    Call,
    Classified,
    Counters,
    Session,
    classify,
    counting,
    excerpt,
    is_auth_expired,
    retry_after_seconds,
)
from tests.support import ItemsServer, Request, Response, connector_yaml, write_specs

STREAM = """
    items:
      model: contact
      request: {method: GET, path: /cursor}
      records: items
"""
ERRORS = """
errors:
  code: "code || [0].errorCode"
  message: "message || [0].message"
  in_body:
    when: "data[0].status == 'error'"
    code: "data[0].code"
    message: "data[0].message"
  rules:
    - {status: 429, matches: "policy == 'DAILY'", kind: quota_exhausted, message: daily limit spent}
    - {status: 429, kind: rate_limited, not_processed: true}
    - {status: 403, code: REQUEST_LIMIT_EXCEEDED, kind: rate_limited}
    - {status: 401, code: INVALID_SESSION_ID, kind: auth_expired}
"""
TOKEN = "s3cret-token-value"


@pytest.fixture
def server():
    with ItemsServer(30) as s:
        yield s


@pytest.fixture
def session(tmp_path, make_engine, server):
    engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM, extra=ERRORS)))
    sess, _, _ = engine.session("acme", token=TOKEN, base_url=server.url)
    return sess


def get(session, server, path="/cursor", method="GET", **kw):
    return session.send(Call(method, server.url + path, idempotent=method != "POST", **kw), "test")


def test_transient_errors_are_retried_with_exponential_backoff(session, server, clock):
    server.app.fail_next(3, 503)
    with counting(Counters()) as run:  # a stream's run counts its own requests too
        reply = get(session, server)
    assert reply.status == 200
    assert session.counters.requests == 4 and session.counters.retries == 3
    assert (run.requests, run.retries) == (4, 3)
    # One answer (the retries were not): a sync's other streams wait for the first one.
    assert session.answers == 1 and session.wait_for_answer(0, 0)
    get(session, server)
    assert session.answers == 2 and not session.wait_for_answer(2, 0)
    assert len(clock.sleeps) == 3
    for slept, base in zip(clock.sleeps, [1, 2, 4], strict=True):
        assert base * 0.75 <= slept <= base * 1.25  # 25% jitter around 1, 2, 4 s


def test_5xx_gives_up_after_three_retries(session, server, clock):
    server.app.fail_next(10, 500)
    with pytest.raises(CrmError) as info:
        get(session, server)
    assert info.value.status == 500 and info.value.kind == "transient" and info.value.retryable
    assert server.app.requests_served == 4  # one try + 3 retries
    assert len(clock.sleeps) == 3


def test_retry_after_seconds_is_honoured(session, server, clock):
    server.app.fail_next(1, 429, headers={"Retry-After": "7"})
    get(session, server)
    assert clock.sleeps == [7.0]


def test_retry_after_http_date_is_honoured(session, server, clock):
    when = email.utils.formatdate(clock.wall() + 30, usegmt=True)
    server.app.fail_next(1, 429, headers={"Retry-After": when})
    get(session, server)
    assert len(clock.sleeps) == 1 and 29 <= clock.sleeps[0] <= 31


def test_vendor_rate_limit_signalled_by_403_code_is_retried(session, server, clock):
    body = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    server.app.fail_next(2, 403, body=body)
    assert get(session, server).status == 200
    assert len(clock.sleeps) == 2


def test_quota_exhausted_is_not_retried_and_uses_the_rule_message(session, server, clock):
    server.app.fail_next(1, 429, body={"policy": "DAILY", "message": "You have reached..."})
    with pytest.raises(CrmError) as info:
        get(session, server)
    error = info.value
    assert (error.kind, error.retryable, error.message) == ("quota_exhausted", False,
                                                            "daily limit spent")
    assert clock.sleeps == [] and server.app.requests_served == 1


def test_post_is_not_resent_after_an_ambiguous_failure(session, server):
    server.app.drop_next(1, after_handling=True)
    with pytest.raises(CrmError) as info:
        get(session, server, "/search", method="POST", json={"limit": 1})
    assert info.value.outcome_unknown and not info.value.retryable
    assert "outcome is unknown" in info.value.message
    assert server.app.requests_served == 1


def test_post_is_not_resent_after_a_500(session, server):
    server.app.fail_next(1, 500)
    with pytest.raises(CrmError) as info:
        get(session, server, "/search", method="POST", json={"limit": 1})
    assert info.value.outcome_unknown and server.app.requests_served == 1


def test_post_is_resent_after_429_which_was_not_processed(session, server, clock):
    server.app.fail_next(1, 429)
    assert get(session, server, "/search", method="POST", json={"limit": 1}).status == 200
    assert server.app.requests_served == 2


def test_post_is_not_resent_after_a_503(session, server):
    # A load balancer may answer 503 after the backend acted: only a rule may say otherwise.
    server.app.fail_next(1, 503)
    with pytest.raises(CrmError) as info:
        get(session, server, "/search", method="POST", json={"limit": 1})
    assert info.value.outcome_unknown and server.app.requests_served == 1


def test_post_is_not_resent_after_a_429_no_rule_marks_unprocessed(tmp_path, make_engine, server):
    engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM)))
    session, _, _ = engine.session("acme", token=TOKEN, base_url=server.url)
    server.app.fail_next(1, 429)
    with pytest.raises(CrmError) as info:
        get(session, server, "/search", method="POST", json={"limit": 1})
    assert info.value.outcome_unknown and info.value.kind == "rate_limited"
    assert server.app.requests_served == 1


@pytest.mark.parametrize("body", [b"", b'{"items": [{"id": "1"', b"<html><body>oops</body></html>"],
                         ids=["empty", "cut-short", "html"])
def test_a_2xx_that_is_not_json_is_retried_like_a_5xx(session, server, clock, body):
    server.app.fail_next(2, 200, body=body)
    reply = get(session, server)
    assert reply.status == 200 and len(reply.body["items"]) == 10
    assert server.app.requests_served == 3 and len(clock.sleeps) == 2


def test_a_2xx_that_is_never_json_fails_loudly(session, server):
    server.app.fail_next(4, 200, body=b"<html><title>Gateway</title></html>")
    with pytest.raises(CrmError) as info:
        get(session, server)
    assert info.value.kind == "transient" and "not JSON" in info.value.message
    assert server.app.requests_served == 4  # the first try and three retries


@pytest.mark.parametrize("body", [b"", b'{"id": "7"', b"<html>proxy</html>"])
def test_a_write_answered_by_a_corrupt_2xx_has_an_unknown_outcome(session, server, body):
    server.app.fail_next(1, 200, body=body)
    with pytest.raises(CrmError) as info:
        get(session, server, "/search", method="POST", json={"limit": 1})
    assert info.value.outcome_unknown and not info.value.retryable
    assert server.app.requests_served == 1


def test_a_write_with_an_idempotency_key_is_resent_with_the_same_key(tmp_path, make_engine,
                                                                     server):
    keys = []
    server.app.add_route("POST", r"/keyed", lambda request: (
        keys.append(request.headers.get("Idempotency-Key")) or Response(200, {"id": "9"})))
    write_specs(tmp_path, connector_yaml(STREAM, extra="""
        actions:
          create_contact:
            model: contact
            input: create
            request:
              method: POST
              path: /keyed
              idempotency_key: {header: Idempotency-Key}
              body: {name: "{{ input.first_name }}"}
            result: {id: "{{ response.id }}"}
        """))
    engine = make_engine(tmp_path / "connectors")
    server.app.drop_next(1, after_handling=True)
    result = engine.action("acme", "create_contact", {"first_name": "Ada"}, token=TOKEN,
                           base_url=server.url)
    assert result["id"] == "9"
    assert len(keys) == 2 and keys[0] == keys[1] and len(keys[0]) == 32


def test_an_html_error_page_is_cut_to_its_title(session, server):
    page = "<html><head><title>502 Bad Gateway</title></head><body>" + "x" * 5000 + "</body>"
    server.app.fail_next(4, 502, body=page)
    with pytest.raises(CrmError) as info:
        get(session, server)
    assert info.value.message == "502 Bad Gateway" and info.value.status == 502
    assert len(str(info.value)) < 120


def test_a_404_names_the_url_without_its_query(session, server):
    with pytest.raises(CrmError) as info:
        get(session, server, "/retired", params={"api_key": TOKEN})
    assert info.value.status == 404 and f"GET {server.url}/retired" in info.value.message
    assert TOKEN not in str(info.value)


def test_an_invalid_url_is_not_retried(session, clock):
    with pytest.raises(CrmError) as info:
        session.send(Call("GET", "None/services/data/v59.0/query"), "test")
    assert info.value.kind == "fatal" and clock.sleeps == []
    assert "None/services/data/v59.0/query" in info.value.message


def test_an_error_rule_that_fails_on_the_body_is_a_crm_error(tmp_path, make_engine, server):
    rules = """
        errors:
          in_body:
            when: "length(data) > `0`"
        """
    engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM, extra=rules)))
    session, _, _ = engine.session("acme", token=TOKEN, base_url=server.url)
    with pytest.raises(CrmError) as info:
        get(session, server)  # the body has no `data`: length(null) is a type error
    assert "length(data)" in info.value.message and info.value.operation == "test"


def test_get_is_retried_after_a_dropped_connection(session, server):
    server.app.drop_next(1)
    assert get(session, server).status == 200


def test_connection_refused_is_retried_then_reported(tmp_path, make_engine, clock):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM)))
    sess, _, _ = engine.session("acme", token=TOKEN, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(CrmError, match="could not connect"):
        sess.send(Call("GET", f"http://127.0.0.1:{port}/cursor"), "test")
    assert sess.counters.requests == 4


def test_error_envelope_is_normalized(session, server):
    server.app.fail_next(1, 400, body=[{"message": "Required fields are missing: [Name]",
                                        "errorCode": "REQUIRED_FIELD_MISSING"}])
    with pytest.raises(CrmError) as info:
        get(session, server)
    e = info.value
    assert (e.connector, e.operation, e.status, e.code, e.kind, e.retryable) == (
        "acme", "test", 400, "REQUIRED_FIELD_MISSING", "fatal", False)
    assert e.message == "Required fields are missing: [Name]"
    assert e.raw_body[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_error_inside_a_2xx_body_is_a_failure(session, server):
    body = {"data": [{"code": "MANDATORY_NOT_FOUND", "status": "error",
                      "message": "required field not found"}]}
    server.app.fail_next(1, 201, body=body)
    with pytest.raises(CrmError) as info:
        get(session, server)
    assert (info.value.status, info.value.code) == (201, "MANDATORY_NOT_FOUND")


def test_secrets_never_reach_errors_or_logs(session, server, caplog):
    echo = {"message": f"bad token {TOKEN}", "code": "X", "echo": {"auth": f"Bearer {TOKEN}"}}
    server.app.fail_next(4, 500, body=echo)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CrmError) as info:
        get(session, server)
    rendered = [str(info.value), repr(info.value), str(info.value.raw_body),
                str(info.value.to_dict()), caplog.text, repr(session), repr(session.auth)]
    assert all(TOKEN not in text for text in rendered)
    assert "***" in str(info.value)


def test_an_error_code_that_echoes_the_token_is_redacted(session, server):
    server.app.fail_next(1, 400, body={"code": f"INVALID_KEY:{TOKEN}", "message": "refused"})
    with pytest.raises(CrmError) as info:
        get(session, server)
    assert (info.value.code, info.value.message) == ("INVALID_KEY:***", "refused")


USAGE = """
rate_limit:
  requests: 100
  per_seconds: 1
  feedback:
    daily_usage: {header: X-Usage, pattern: 'api-usage=(\\d+)/(\\d+)'}
"""


def test_daily_usage_is_recorded_and_a_spent_allocation_stops_before_sending(
        tmp_path, make_engine, server):
    engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM, extra=USAGE)))
    server.app.fail_next(1, 200, body={"items": []}, headers={"X-Usage": "api-usage=7/100"})
    [run] = engine.sync("acme", token=TOKEN, base_url=server.url)
    assert run.api_usage == "7/100"
    assert engine.store.query("SELECT api_usage FROM sync_runs")[0][0] == "7/100"
    server.app.fail_next(1, 200, body={"items": []}, headers={"X-Usage": "api-usage=100/100"})
    engine.sync("acme")
    served = server.app.requests_served
    [run] = engine.sync("acme")
    assert run.status == "failed" and "daily API budget is spent" in run.error
    assert server.app.requests_served == served  # nothing was sent


# -- the backoff schedule, jitter and the cap, observed on a fake clock ----------------------


class FixedDraws(random.Random):
    """A random source whose every draw is `value`: 0.0 is the shortest jitter, 0.5 none, and
    just under 1.0 the longest."""

    def __init__(self, value: float):
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.fixture
def session_with_draws(tmp_path, make_engine, server, clock):
    """A Session on the test connector whose jitter draws are fixed."""
    engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM, extra=ERRORS)))
    connector = engine.connector("acme")

    def make(value: float) -> Session:
        session = Session(connector, base_url=server.url,
                          auth=StaticAuth("token", {"Authorization": f"Bearer {TOKEN}"}, {}),
                          headers={},
                          budget=None, clock=clock, rng=FixedDraws(value))
        sessions.append(session)
        return session

    sessions: list[Session] = []
    yield make
    for session in sessions:
        session.close()


@pytest.mark.parametrize(("draw", "factor"), [(0.0, 0.75), (0.5, 1.0), (0.999, 1.2495)])
def test_backoff_is_1_2_4_s_jittered_by_a_quarter(session_with_draws, server, clock, draw,
                                                  factor):
    session = session_with_draws(draw)
    server.app.fail_next(3, 503)
    assert get(session, server).status == 200
    assert clock.sleeps == pytest.approx([1 * factor, 2 * factor, 4 * factor])


def test_backoff_reaches_8_s_and_stays_there(session_with_draws, server, clock):
    session = session_with_draws(0.5)  # no jitter: the schedule itself
    server.app.fail_next(5, 429)  # rate limited, no Retry-After: our own backoff
    assert get(session, server).status == 200
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert server.app.requests_served == 6


@pytest.mark.parametrize("retry_after", ["3600", "http-date"])
def test_a_server_wait_longer_than_120_s_is_capped(session_with_draws, server, clock,
                                                   retry_after):
    if retry_after == "http-date":
        retry_after = email.utils.formatdate(clock.wall() + 3600, usegmt=True)
    session = session_with_draws(0.5)
    server.app.fail_next(1, 429, headers={"Retry-After": retry_after})
    assert get(session, server).status == 200
    assert clock.sleeps == [120.0]


def test_our_own_backoff_is_capped_at_120_s_too(tmp_path, make_engine, server, clock):
    extra = ERRORS + "retry: {backoff_seconds: [300], jitter: 0}\n"
    engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM, extra=extra)))
    session, _, _ = engine.session("acme", token=TOKEN, base_url=server.url)
    server.app.fail_next(2, 503)
    assert get(session, server).status == 200
    assert clock.sleeps == [120.0, 120.0]


# -- a 429 holds back every sender on the connection -----------------------------------------

LIMITED = """
rate_limit: {requests: 1000, per_seconds: 1}
actions:
  first_item:
    input: {schema: {type: object}}
    request: {method: GET, path: /cursor, params: {limit: 1}}
    result: {records: items, raw: true}
"""


def test_a_429_pauses_the_other_senders_on_the_connection(tmp_path, make_engine, server, clock):
    """While a sync waits out a 429's Retry-After, an action on the same connection waits too
    instead of spending the vendor's patience."""
    engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM, extra=LIMITED)))
    engine.session("acme", token=TOKEN, base_url=server.url)
    other: dict[str, float] = {}
    sleep = clock.sleep

    def sleep_and_let_another_sender_in(seconds: float) -> None:
        if not other:  # the sync's wait after its 429: an action comes in meanwhile
            other["asked_at"] = clock.monotonic()
            result = engine.action("acme", "first_item", {})
            other["answered_at"] = clock.monotonic()
            other["records"] = len(result["records"])
        sleep(seconds)

    clock.sleep = sleep_and_let_another_sender_in
    server.app.fail_next(1, 429, headers={"Retry-After": "7"})
    [run] = engine.sync("acme")
    assert run.status == "succeeded" and run.retries == 1
    assert other["records"] == 1
    assert other["answered_at"] - other["asked_at"] == 7.0  # held until the pause ended


# -- a budget shared by the syncs and actions of a connection ---------------------------------

SLOW_BUDGET = LIMITED.replace("{requests: 1000, per_seconds: 1}", "{requests: 1, per_seconds: 10}")


def test_a_sync_and_an_action_spend_one_budget(tmp_path, make_engine, clock):
    with ItemsServer(5) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM, extra=SLOW_BUDGET)))
        [run] = engine.sync("acme", token=TOKEN, base_url=server.url)
        assert run.status == "succeeded" and clock.sleeps == []
        # The same connection, opened again (as a new --token or base URL would): one budget.
        engine.action("acme", "first_item", {}, token=TOKEN, base_url=server.url)
        assert clock.sleeps == [10.0]
        # Another connection has a budget of its own.
        engine.action("acme", "first_item", {}, "acme-2", token=TOKEN, base_url=server.url)
        assert clock.sleeps == [10.0]


# -- a timeout after a create was sent ---------------------------------------------------------

SLOW = """
http: {timeout_seconds: 0.3}
actions:
  create_item:
    model: contact
    input: create
    request: {method: POST, path: /slow, body: "{{ record }}"}
    result: {id: "{{ response.id }}"}
"""


class SlowServer(ItemsServer):
    """/slow answers after the client's timeout the first `slow_calls` times."""

    def __init__(self, slow_calls: int):
        super().__init__(1)
        self.slow_calls = slow_calls
        self.writes: list[object] = []
        self.app.add_route("POST", "/slow", self.slow)
        self.app.add_route("GET", "/slow", self.slow)

    def slow(self, request: Request) -> Response:
        self.writes.append(request.json() if request.method == "POST" else None)
        if len(self.writes) <= self.slow_calls:
            time.sleep(1.0)
        return Response(201, {"id": str(len(self.writes))})


def test_a_create_that_timed_out_after_sending_is_not_resent(tmp_path, make_engine, clock):
    with SlowServer(slow_calls=1) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM, extra=SLOW)))
        engine.session("acme", token=TOKEN, base_url=server.url)
        with pytest.raises(CrmError) as info:
            engine.action("acme", "create_item", {"first_name": "Ada"})
        error = info.value
        assert (error.kind, error.retryable, error.outcome_unknown) == ("transient", False, True)
        assert "outcome is unknown" in error.message and "Timeout" in error.message
        assert server.writes == [{"name": "Ada"}]  # sent once, never again
        assert clock.sleeps == []


def test_a_read_that_timed_out_is_retried(tmp_path, make_engine, clock):
    with SlowServer(slow_calls=1) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM, extra=SLOW)))
        session, _, _ = engine.session("acme", token=TOKEN, base_url=server.url)
        reply = session.send(Call("GET", server.url + "/slow"), "test")
        assert reply.body == {"id": "2"} and len(server.writes) == 2
        assert len(clock.sleeps) == 1


# -- exact messages and fields of each failure, on an in-process transport --------------------
# (found by `make mutation`: each of these pins what a person or a caller reads in an error)


@pytest.fixture
def mock_session(tmp_path, make_engine, clock):
    """A Session on the test connector whose every request is answered by `handler`."""
    sessions: list[Session] = []

    def make(handler, extra: str = ERRORS, auth_hint: str | None = None) -> Session:
        engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM, extra=extra)))
        connector = engine.connector("acme")
        session = Session(connector, base_url="http://127.0.0.1:9", clock=clock,
                          auth=StaticAuth("token", {"Authorization": f"Bearer {TOKEN}"}, {}),
                          headers={},
                          budget=None, transport=httpx.MockTransport(handler),
                          rng=FixedDraws(0.5), auth_hint=auth_hint)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def failing(exc: Exception):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc
    return handler


def answering(status: int, content: bytes = b"", headers: dict[str, str] | None = None):
    return lambda request: httpx.Response(status, content=content, headers=headers)


def send(session: Session, method: str = "GET", url: str = "http://127.0.0.1:9/items"):
    with pytest.raises(CrmError) as info:
        session.send(Call(method, url, idempotent=method != "POST"), "contacts.list")
    return info.value


def test_a_refused_connection_names_the_error_and_is_retried_as_transient(mock_session, clock):
    error = send(mock_session(failing(httpx.ConnectError("Connection refused"))))
    assert (error.operation, error.kind, error.retryable) == ("contacts.list", "transient", True)
    assert error.message == "could not connect: ConnectError: Connection refused"
    assert len(clock.sleeps) == 3


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_network_failure_without_text_is_named_by_its_type(mock_session, method):
    error = send(mock_session(failing(httpx.RemoteProtocolError(""))), method)
    assert error.operation == "contacts.list" and error.kind == "transient"
    if method == "GET":
        assert error.message == "network failure (RemoteProtocolError)"
    else:
        assert error.message.startswith("network failure (RemoteProtocolError) after the request "
                                        "was sent: the outcome is unknown")
        assert (error.retryable, error.outcome_unknown) == (False, True)


def test_a_url_that_cannot_work_is_fatal_and_names_the_url_without_its_query(mock_session):
    error = send(mock_session(failing(httpx.UnsupportedProtocol("no scheme"))),
                 url="ftp://127.0.0.1:9/items?api_key=k")
    assert (error.operation, error.kind, error.retryable) == ("contacts.list", "fatal", False)
    assert error.message == ("cannot send GET ftp://127.0.0.1:9/items: "
                             "UnsupportedProtocol: no scheme")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_empty_2xx_says_so_with_its_status(mock_session, method):
    error = send(mock_session(answering(200)), method)
    assert (error.operation, error.status) == ("contacts.list", 200)
    assert error.message.startswith("HTTP 200 with an empty body")
    assert error.outcome_unknown == (method == "POST")


def test_a_2xx_that_is_not_json_quotes_an_excerpt(mock_session):
    error = send(mock_session(answering(200, b"<html><title>Gateway</title></html>")))
    assert error.message == "HTTP 200 with a body that is not JSON: 'Gateway'"
    assert error.status == 200


def test_an_error_body_the_rules_cannot_read_is_a_fatal_crm_error(mock_session):
    session = mock_session(answering(400, b'{"errors": "not a list"}'),
                           extra="errors:\n  code: \"length(errors[0])\"\n")
    error = send(session)
    assert (error.kind, error.retryable, error.status) == ("fatal", False, 400)
    assert error.message.startswith("cannot read the error response: ")


def test_an_error_without_a_message_uses_the_reason_phrase(mock_session):
    error = send(mock_session(answering(400, b'{"detail": {"field": "email"}}')))
    assert error.message == "Bad Request"
    assert (error.kind, error.retryable, error.outcome_unknown) == ("fatal", False, False)
    assert error.to_dict()["outcome_unknown"] is False


def test_a_refused_token_says_what_to_do(mock_session):
    session = mock_session(answering(401, b'{"message": "bad token"}'), auth_hint="check it")
    error = send(session)
    assert (error.kind, error.message) == ("auth_expired", "bad token: check it")


def test_a_write_answered_by_a_500_says_its_outcome_is_unknown(mock_session):
    error = send(mock_session(answering(500, b'{"message": "boom"}')), "POST")
    assert error.message == "boom (the outcome is unknown: it may have been applied)"
    assert (error.retryable, error.outcome_unknown) == (False, True)


def test_a_404_message_drops_the_whole_query(mock_session):
    error = send(mock_session(answering(404, b'{"message": "gone"}')),
                 url="http://127.0.0.1:9/items?next=a?b&api_key=k")
    assert error.message == "gone (GET http://127.0.0.1:9/items)"


# -- the pure helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [
    ("<html><body><p>Service <b>down</b></p></body></html>", "Service down"),
    ("<html><script>var x = 1;</script><style>p {}</style><p>Down</p></html>", "Down"),
    ("<html><head><title>502 Bad\n Gateway</title></head><body>x</body></html>",
     "502 Bad Gateway"),
    ("1 < 2", "1 < 2"),  # not a tag: plain text stays as it is
    ("tom &amp; jerry\n\n  ran", "tom & jerry ran"),
])
def test_an_excerpt_is_one_line_of_readable_text(text, shown):
    assert excerpt(text) == shown


def test_an_excerpt_keeps_text_of_the_limit_and_cuts_longer_text_to_it():
    assert excerpt("x" * 200) == "x" * 200
    assert excerpt("x" * 201) == "x" * 199 + "\u2026"
    assert excerpt("abcdef", limit=4) == "abc\u2026"


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("2.5", 2.5), ("-3", 0.0),
                                                ("soon", None), ("", None)])
def test_retry_after_in_seconds(clock, value, seconds):
    assert retry_after_seconds(httpx.Headers({"Retry-After": value}), clock) == seconds


def test_retry_after_as_a_date_in_the_past_means_now(clock):
    past = email.utils.formatdate(clock.wall() - 60, usegmt=True)
    assert retry_after_seconds(httpx.Headers({"Retry-After": past}), clock) == 0.0
    future = email.utils.formatdate(clock.wall() + 60, usegmt=True)
    assert retry_after_seconds(httpx.Headers({"Retry-After": future}), clock) == 60.0


RESET_FEEDBACK = ERRORS + """
rate_limit:
  requests: 100
  per_seconds: 1
  feedback:
    reset: {header: X-RateLimit-Reset}
"""


def test_a_429_without_retry_after_waits_for_the_advertised_reset(mock_session, clock):
    """Pipedrive's 429s carry x-ratelimit-reset, seconds to the window's end (CONTRACTS 3.7)."""
    replies = [httpx.Response(429, headers={"X-RateLimit-Reset": "2"}),
               httpx.Response(200, json={"items": []})]
    session = mock_session(lambda request: replies.pop(0), extra=RESET_FEEDBACK)
    session.send(Call("GET", "http://127.0.0.1:9/items"), "test")
    assert clock.sleeps == [2.0]


def test_a_reset_header_on_a_5xx_does_not_replace_the_backoff(mock_session, clock):
    replies = [httpx.Response(503, headers={"X-RateLimit-Reset": "30"}),
               httpx.Response(200, json={"items": []})]
    session = mock_session(lambda request: replies.pop(0), extra=RESET_FEEDBACK)
    session.send(Call("GET", "http://127.0.0.1:9/items"), "test")
    assert clock.sleeps == [1.0]  # the first backoff step (the fixed draw has no jitter)


# -- classifying error responses by the YAML's rules, then the defaults ------------------------


def rules_spec(*rules: ErrorRule) -> ErrorSpec:
    return ErrorSpec(code=compile_getter("code"), rules=list(rules))


def rule(status: int, kind: str, code: str | None = None) -> ErrorRule:
    return ErrorRule(frozenset({status}), frozenset({code}) if code else None, None, kind, None)


def test_the_first_rule_that_matches_status_and_code_decides():
    spec = rules_spec(rule(403, "rate_limited", "REQUEST_LIMIT_EXCEEDED"),
                      rule(403, "quota_exhausted"))
    assert classify(spec, 403, {"code": "REQUEST_LIMIT_EXCEEDED"}).kind == "rate_limited"
    assert classify(spec, 403, {"code": "INSUFFICIENT_ACCESS"}) == Classified(
        "quota_exhausted", "INSUFFICIENT_ACCESS")


@pytest.mark.parametrize(("status", "kind"), [(401, "auth_expired"), (429, "rate_limited"),
                                              (408, "transient"), (500, "transient"),
                                              (503, "transient"), (409, "fatal"),
                                              (404, "fatal"), (400, "fatal")])
def test_without_a_rule_the_status_decides_and_the_code_is_kept(status, kind):
    assert classify(rules_spec(), status, {"code": "VENDOR_CODE"}) == Classified(
        kind, "VENDOR_CODE")


def response(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body)


def test_what_means_the_token_expired_is_read_from_the_rules():
    spec = rules_spec(rule(401, "fatal", "API_KEY_INVALID"), rule(400, "auth_expired", "EXPIRED"))
    assert is_auth_expired(spec, response(401, {"code": "TOKEN_EXPIRED"})) is True
    assert is_auth_expired(spec, response(401, {"code": "API_KEY_INVALID"})) is False
    assert is_auth_expired(spec, response(400, {"code": "EXPIRED"})) is True
    assert is_auth_expired(spec, response(200, {"code": "EXPIRED"})) is False


def test_an_unreadable_error_body_means_expired_only_on_a_401():
    spec = ErrorSpec(code=compile_getter("length(errors[0])"))
    assert is_auth_expired(spec, response(401, {"errors": "none"})) is True
    assert is_auth_expired(spec, response(403, {"errors": "none"})) is False


def replies(*answers: httpx.Response):
    queue = list(answers)
    return lambda request: queue.pop(0)


def test_each_kind_of_failure_has_its_own_retry_count_and_backoff(mock_session, clock):
    session = mock_session(replies(*[httpx.Response(503)] * 3, *[httpx.Response(429)] * 3,
                                   httpx.Response(200, json={"items": []})))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("crm_engine.http")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        reply = session.send(Call("GET", "http://127.0.0.1:9/items"), "contacts.list")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert reply.status == 200 and reply.body == {"items": []}
    assert clock.sleeps == [1.0, 2.0, 4.0, 1.0, 2.0, 4.0]
    assert (session.counters.requests, session.counters.retries) == (7, 6)
    assert records[0].getMessage() == ("acme contacts.list: Service Unavailable; retrying in "
                                       "1.0s")
    assert len(records) == 6


def test_an_error_inside_a_2xx_is_fatal_and_keeps_the_body(mock_session):
    body = {"data": [{"code": "MANDATORY_NOT_FOUND", "status": "error",
                      "message": "required field not found"}]}
    error = send(mock_session(answering(201, orjson.dumps(body))))
    assert (error.operation, error.status, error.code, error.kind, error.retryable) == (
        "contacts.list", 201, "MANDATORY_NOT_FOUND", "fatal", False)
    assert error.message == "required field not found" and error.raw_body == body
    ok = {"data": [{"code": "SUCCESS", "status": "success"}]}
    reply = mock_session(answering(201, orjson.dumps(ok))).send(
        Call("GET", "http://127.0.0.1:9/items"), "test")
    assert reply.body == ok
    assert mock_session(answering(204)).send(Call("GET", "http://127.0.0.1:9/items"),
                                             "test").body is None


def test_an_error_inside_a_2xx_without_a_message_says_so(mock_session):
    extra = "errors:\n  in_body: {when: \"status == 'error'\"}\n"
    error = send(mock_session(answering(200, b'{"status": "error"}'), extra=extra))
    assert (error.message, error.code, error.status, error.kind) == (
        "the CRM reported an error", None, 200, "fatal")


def test_an_unreadable_2xx_is_fatal_with_what_failed(mock_session):
    extra = "errors:\n  in_body: {when: \"length(data) > `0`\"}\n"
    error = send(mock_session(answering(200, b'{"items": []}'), extra=extra))
    assert (error.operation, error.status, error.kind) == ("contacts.list", 200, "fatal")
    assert error.message.startswith("cannot read the response: ")


def test_a_redirect_is_not_followed(mock_session):
    """Following it could carry the credentials to another host."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "http://elsewhere.invalid/items"})

    error = send(mock_session(handler))
    assert error.status == 302 and {r.url.host for r in seen} == {"127.0.0.1"}


def test_a_spent_daily_budget_stops_before_sending(mock_session):
    extra = ERRORS + USAGE
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": []})

    session = mock_session(handler, extra=extra)
    session.budget = RateBudget(session.connector.rate_limit, FakeClock())
    session.budget.daily_remaining = 1
    session.send(Call("GET", "http://127.0.0.1:9/items"), "test")  # one left: sent
    session.budget.daily_remaining = 0
    error = send(session)
    assert (error.operation, error.kind, error.retryable) == ("contacts.list",
                                                              "quota_exhausted", False)
    assert error.message == "the daily API budget is spent; stopping until it resets"
    assert len(seen) == 1


def test_a_session_joins_paths_to_its_base_url_without_a_double_slash(mock_session):
    session = mock_session(answering(200, b"{}"))
    for given, kept in (("http://127.0.0.1:9/api/", "http://127.0.0.1:9/api"),
                        ("http://127.0.0.1:9/EXPORTX/", "http://127.0.0.1:9/EXPORTX"),
                        ("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1")):
        assert Session(session.connector, base_url=given, auth=session.auth, headers={},
                       budget=None, clock=FakeClock()).base_url == kept


def test_a_whitespace_body_is_an_empty_body(mock_session):
    error = send(mock_session(answering(200, b" \r\n ")))
    assert error.message == "HTTP 200 with an empty body"


def test_a_body_that_is_not_json_fails_the_operation_that_sent_it(mock_session):
    error = send(mock_session(answering(200, b"{cut")))
    assert error.operation == "contacts.list" and error.status == 200


def test_the_connectors_headers_go_with_every_request(tmp_path, make_engine):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": []})

    extra = "http: {headers: {Accept-Language: en}}\n"
    engine = make_engine(write_specs(tmp_path, connector_yaml(STREAM, extra=extra)),
                         transport=httpx.MockTransport(handler))
    session, _, _ = engine.session("acme", token=TOKEN, base_url="http://127.0.0.1:9")
    session.send(Call("GET", "http://127.0.0.1:9/items"), "test")
    assert seen[0].headers["accept-language"] == "en"
    assert seen[0].headers["user-agent"] == "crm-engine"


def test_a_429_on_a_grouped_request_pauses_that_group_not_the_connection(mock_session, clock):
    """HubSpot's search has a budget of its own (4 a second); its 429 holds back searches,
    not every request (CONTRACTS 1.5)."""
    answers = [httpx.Response(429, headers={"Retry-After": "7"}),
               httpx.Response(200, json={"results": []}),
               httpx.Response(200, json={"items": []})]
    session = mock_session(replies(*answers))
    session.budget = RateBudget(RateLimitSpec(100, 10.0), clock)
    session.groups = {"search": RateBudget(RateLimitSpec(4, 1.0), clock)}
    session.send(Call("POST", "http://127.0.0.1:9/search", budget="search"), "search")
    assert clock.sleeps == [7.0]
    started = clock.monotonic()
    session.send(Call("GET", "http://127.0.0.1:9/items"), "list")  # the connection: no wait
    assert clock.monotonic() == started
    session.groups["search"].pause(0)  # (a pause only ever lengthens)
    assert session.groups["search"]._paused_until > session.budget._paused_until
