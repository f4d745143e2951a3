"""The per-connection request budget, with a fake clock."""

from __future__ import annotations

import threading

import pytest

from engine.clock import FakeClock
from engine.errors import SpecError
from engine.loader import load_connector
from engine.ratelimit import RateBudget
from engine.ratelimit.feedback import DAILY_RECHECK_SECONDS
from engine.spec import HeaderValue, RateLimitSpec
from tests.support import ItemsServer, connector_yaml, write_specs


def budget(clock, requests=3, per=10.0, **feedback):
    spec = RateLimitSpec(requests, per, feedback={
        k: HeaderValue(h, None, unit) for k, (h, unit) in feedback.items()})
    return RateBudget(spec, clock)


def test_sliding_window_holds_the_request_that_would_exceed_the_limit():
    clock = FakeClock()
    b = budget(clock)
    start = clock.monotonic()
    for _ in range(3):
        b.acquire()
    assert clock.sleeps == []
    b.acquire()  # the 4th waits until the 1st leaves the 10 s window
    assert clock.monotonic() - start == 10.0
    clock.advance(3)
    b.acquire()
    b.acquire()
    assert clock.monotonic() - start == 13.0  # two more fit: the window moved on


def test_a_request_answered_after_its_window_counts_from_its_answer():
    """A slow request's send time leaves the window while it waits for its answer; once
    answered it counts again, from then."""
    clock = FakeClock()
    b = budget(clock, requests=2, per=10.0)
    slow = b.acquire()
    clock.advance(11)
    b.acquire()  # prunes the slow request's send time: it is out of the window
    b.release(slow)  # answered now, 11 s after it was sent
    start = clock.monotonic()
    b.acquire()  # two in the window (the answer and the second send): this one waits
    assert clock.monotonic() - start == 10.0


def test_headers_correct_limit_and_window():
    clock = FakeClock()
    b = budget(clock, limit=("X-Max", "s"), window=("X-Interval", "ms"))
    b.observe({"X-Max": "5", "X-Interval": "2000"})
    assert (b.capacity, b.window) == (5, 2.0)
    for _ in range(5):
        b.acquire()
    assert clock.sleeps == []
    b.acquire()
    assert clock.sleeps == [2.0]


def test_a_header_may_come_under_a_current_or_a_legacy_name():
    clock = FakeClock()
    b = budget(clock, requests=100, remaining=(("RateLimit-Remaining", "X-RateLimit-Remaining"),
                                               "s"), reset=("RateLimit-Reset", "s"))
    b.acquire()
    b.observe({"X-RateLimit-Remaining": "0", "RateLimit-Reset": "2"})  # the legacy name
    b.acquire()
    assert clock.sleeps == [2.0]
    # Both present: the first listed wins.
    b.observe({"RateLimit-Remaining": "5", "X-RateLimit-Remaining": "0", "RateLimit-Reset": "9"})
    b.acquire()
    assert clock.sleeps == [2.0]


def test_feedback_headers_load_as_a_list(tmp_path):
    extra = """
        rate_limit:
          requests: 10
          per_seconds: 1
          feedback:
            remaining: {header: [RateLimit-Remaining, X-RateLimit-Remaining]}
            limit: {header: X-Max}
    """
    stream = "items: {model: contact, request: {method: GET, path: /cursor}, records: items}"
    connectors = write_specs(tmp_path, connector_yaml(stream, extra=extra))
    feedback = load_connector(connectors / "acme.yaml").rate_limit.feedback
    assert feedback["remaining"].headers == ("RateLimit-Remaining", "X-RateLimit-Remaining")
    assert feedback["limit"].headers == ("X-Max",)
    assert feedback["remaining"].read({"X-RateLimit-Remaining": "4"}) == 4.0


def test_zero_remaining_pauses_until_reset():
    clock = FakeClock()
    b = budget(clock, requests=100, remaining=("X-Remaining", "s"), reset=("X-Reset", "s"))
    b.acquire()
    b.observe({"X-Remaining": "0", "X-Reset": "2"})
    b.acquire()
    assert clock.sleeps == [2.0]


def test_budget_is_shared_by_every_session_of_a_connection(tmp_path, make_engine, clock):
    extra = "rate_limit: {requests: 1, per_seconds: 10}\n"
    stream = """
        items: {model: contact, request: {method: GET, path: /cursor}, records: items}
    """
    with ItemsServer(3) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(stream, extra=extra)))
        engine.sync("acme", token="tok-1234", base_url=server.url)
        first, _, _ = engine.session("acme")
        engine.sync("acme", token="tok-1234", base_url=server.url)
        second, _, _ = engine.session("acme")
    assert first.budget is second.budget
    assert clock.sleeps == [10.0]  # the second sync's request waited for the first's window


GROUPED = """
rate_limit:
  requests: 100
  per_seconds: 10
  groups:
    search: {requests: 2, per_seconds: 1}
"""
SEARCH_AND_LIST = """
    found:
      model: contact
      request: {method: POST, path: /search, idempotent: true, budget: search, body: {limit: 1}}
      records: results
    listed:
      model: contact
      request: {method: GET, path: /cursor, params: {limit: 1}}
      records: items
"""


def test_a_request_naming_a_group_spends_that_groups_budget_too(tmp_path, make_engine, clock):
    with ItemsServer(5) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(SEARCH_AND_LIST,
                                                                  extra=GROUPED)))
        started = clock.monotonic()
        for _ in range(5):
            engine.sync("acme", streams=["listed"], token="t0ken", base_url=server.url)
        assert clock.monotonic() == started  # lists: 5 of the general 100 per 10 s
        for _ in range(5):
            engine.sync("acme", streams=["found"], token="t0ken", base_url=server.url)
    # Searches: 2 a second, so the 3rd and 5th waited for the window to move on.
    assert clock.monotonic() - started == 2.0


def test_a_budget_group_must_be_declared(tmp_path):
    connectors = write_specs(tmp_path, connector_yaml(SEARCH_AND_LIST))
    with pytest.raises(SpecError) as info:
        load_connector(connectors / "acme.yaml")
    [problem] = info.value.problems
    assert problem.path == "streams.found.request.budget"
    assert "unknown budget group 'search'" in problem.message


def test_the_advertised_limit_is_at_least_one_and_remaining_one_still_sends():
    clock = FakeClock()
    b = budget(clock, requests=100, limit=("X-Max", "s"), remaining=("X-Remaining", "s"))
    b.observe({"X-Max": "1", "X-Remaining": "1"})
    assert b.capacity == 1
    b.acquire()  # one left: sent at once
    assert clock.sleeps == []
    b.observe({"X-Max": "0"})
    assert b.capacity == 1  # a limit of 0 would never send again


def test_at_most_max_concurrent_requests_are_in_flight():
    """Zoho limits concurrent requests per app (CONTRACTS 4.7): `max_concurrent` holds the
    next sender until one in flight is done."""
    b = RateBudget(RateLimitSpec(100, 1.0, max_concurrent=1), FakeClock())
    b.acquire()
    entered = threading.Event()

    def second() -> None:
        b.acquire()
        entered.set()
        b.release()

    thread = threading.Thread(target=second)
    thread.start()
    assert not entered.wait(0.2)  # held while the first is in flight
    b.release()
    assert entered.wait(5)
    thread.join(5)


def test_no_usage_is_reported_until_the_vendor_reports_it():
    b = budget(FakeClock(), daily_usage=("X-Usage", "s"))
    assert b.usage is None


def test_zero_remaining_without_a_reset_pauses_for_the_window():
    """A vendor that says none are left but not when more come: wait out the window."""
    clock = FakeClock()
    b = budget(clock, requests=100, per=10.0, remaining=("X-Remaining", "s"),
               reset=("X-Reset", "s"))
    b.acquire()
    b.observe({"X-Remaining": "0"})
    b.acquire()
    assert clock.sleeps == [10.0]


def test_a_full_window_of_our_own_requests_waits_for_the_oldest_not_a_whole_window():
    """HubSpot names no reset: its window rolls. When the requests that filled it are all in
    the log, the next one goes as the oldest leaves; a whole window's pause at each full window
    doubled a throttled sync (200 connections of 21 requests: 35 s, not 20)."""
    clock = FakeClock()
    b = budget(clock, requests=3, per=10.0, remaining=("X-Remaining", "s"))
    for _ in range(3):
        b.release(b.acquire())
        clock.advance(1)
    b.observe({"X-Remaining": "0"})  # at 3 s: the vendor's window holds our three
    b.acquire()
    assert clock.sleeps == [7.0]  # the first (0 s) leaves at 10 s


def test_a_full_window_holding_requests_the_log_never_saw_counts_them_from_now():
    """Another client spent part of the window: its requests count as sent now, ours as they
    were."""
    clock = FakeClock()
    b = budget(clock, requests=5, per=10.0, remaining=("X-Remaining", "s"))
    start = clock.monotonic()
    for _ in range(2):  # ours, at 0 s and 1 s
        b.release(b.acquire())
        clock.advance(1)
    clock.advance(7)
    b.observe({"X-Remaining": "0"})  # at 9 s: three more the log never saw
    sent = []
    for _ in range(5):
        b.acquire()
        sent.append(clock.monotonic() - start)
    assert sent == [10.0, 11.0, 19.0, 19.0, 19.0]


def test_a_later_pause_never_shortens_an_earlier_one():
    clock = FakeClock()
    b = budget(clock, requests=100, remaining=("X-Remaining", "s"), reset=("X-Reset", "s"))
    b.pause(30)
    b.observe({"X-Remaining": "0", "X-Reset": "2"})
    b.pause(5)
    b.acquire()
    assert clock.sleeps == [30.0]


def test_the_daily_budget_left_comes_from_its_header():
    """Pipedrive's company-wide daily token budget (CONTRACTS 3.7)."""
    b = budget(FakeClock(), daily_remaining=("x-daily-ratelimit-token-remaining", "s"))
    b.observe({})
    assert b.daily_remaining is None
    b.observe({"x-daily-ratelimit-token-remaining": "147158"})
    assert b.daily_remaining == 147158
    b.observe({"x-daily-ratelimit-token-remaining": "0"})
    assert b.daily_remaining == 0


def test_a_days_limit_and_remaining_in_two_headers_make_its_usage():
    b = budget(FakeClock(), daily_remaining=("X-Daily-Remaining", "s"),
               daily_limit=("X-Daily", "s"))
    b.observe({"X-Daily-Remaining": "7"})  # the limit unsaid: no usage
    assert (b.usage, b.daily_remaining) == (None, 7)
    b.observe({"X-Daily": "10", "X-Daily-Remaining": "3"})
    assert (b.usage, b.daily_remaining) == ("7/10", 3)


def test_a_daily_limit_without_its_remaining_is_located(tmp_path):
    extra = ("rate_limit:\n  requests: 10\n  per_seconds: 1\n  feedback:\n"
             "    daily_limit: {header: X-Daily}\n")
    stream = "items: {model: contact, request: {method: GET, path: /cursor}, records: items}"
    connectors = write_specs(tmp_path, connector_yaml(stream, extra=extra))
    with pytest.raises(SpecError) as info:
        load_connector(connectors / "acme.yaml")
    [problem] = info.value.problems
    assert problem.path == "rate_limit.feedback.daily_limit" and problem.line is not None
    assert "needs daily_remaining" in problem.message


def test_a_spent_day_is_asked_about_again_after_a_quarter_of_an_hour():
    """No vendor says when its day resets: a long-lived process that stopped sending would
    never hear of it. A spent day's report lapses, and the next request asks again."""
    clock = FakeClock()
    b = budget(clock, daily_remaining=("x-daily-ratelimit-token-remaining", "s"))
    b.observe({"x-daily-ratelimit-token-remaining": "5"})
    clock.advance(DAILY_RECHECK_SECONDS * 2)
    assert b.daily_remaining == 5  # a day with calls left is as it was said
    b.observe({"x-daily-ratelimit-token-remaining": "0"})
    clock.advance(DAILY_RECHECK_SECONDS - 1)
    assert b.daily_remaining == 0
    clock.advance(1)
    assert b.daily_remaining is None  # not known: a request may go, and its answer says
    b.observe({"x-daily-ratelimit-token-remaining": "0"})  # still spent: another quarter
    assert b.daily_remaining == 0
