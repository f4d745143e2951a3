"""The vendor-neutral pieces of sandbox.kit.core: HTTP serving, faults, limits, OAuth state."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from sandbox.kit.core import (
    App,
    Clock,
    DailyCounter,
    Headers,
    LruCache,
    OAuthError,
    OAuthProvider,
    Request,
    Response,
    RunningSandbox,
    SlidingWindowLimiter,
    parse_query,
    serve,
)


@pytest.fixture
def echo() -> Iterator[RunningSandbox]:
    app = App(json_content_type="application/json;charset=utf-8")

    @app.route("POST", r"/echo/(?P<name>[^/]+)", name="echo")
    def echo_body(request: Request, name: str) -> Response:
        return Response(200, {"name": name, "size": len(request.body), "q": request.query})

    @app.route("GET", r"/token", name="token", group="oauth")
    def token(request: Request) -> Response:
        return Response(200, {"ok": True})

    @app.route("GET", r"/boom", name="boom")
    def boom(request: Request) -> Response:
        raise RuntimeError("handler bug")

    with serve(app) as running:
        yield running


def raw_exchange(running: RunningSandbox, payload: bytes, replies: int) -> bytes:
    """Send raw bytes on one connection and read until ``replies`` responses arrived."""
    with socket.create_connection((running.host, running.port), timeout=5) as conn:
        conn.sendall(payload)
        received = b""
        while received.count(b"HTTP/1.1 ") < replies or not received.endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_headers_and_query_parsing() -> None:
    headers = Headers({"content-type": "text/plain"})
    assert headers.get("Content-Type") == "text/plain" and "CONTENT-TYPE" in headers
    assert parse_query("a=1&a=2&b&c=x%2Cy+z") == {"a": ["1", "2"], "b": [""], "c": ["x,y z"]}


def test_keep_alive_serves_several_requests_on_one_connection(echo) -> None:
    request = b"POST /echo/one HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    received = raw_exchange(echo, request * 2, replies=2)
    assert received.count(b"HTTP/1.1 200 OK") == 2
    assert b"Content-Length: " in received and b"Connection: close" not in received
    assert echo.app.stats.count("echo") == 2 and echo.app.requests_served == 2


def test_chunked_body_and_bad_request(echo) -> None:
    chunked = (
        b"POST /echo/c?x=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n"
    )
    assert b'"size":6' in raw_exchange(echo, chunked, replies=1)
    with socket.create_connection((echo.host, echo.port), timeout=5) as conn:
        conn.sendall(b"NONSENSE\r\n\r\n")
        assert conn.recv(1024).startswith(b"HTTP/1.1 400 Bad Request")


def test_routing_404_crash_500_and_fault_groups(echo) -> None:
    with httpx.Client(base_url=echo.url) as client:
        assert client.get("/nowhere").status_code == 404
        assert client.get("/boom").status_code == 500
        echo.app.fail_next(1, 502)
        assert client.get("/token").status_code == 200  # "oauth" group: not faulted
        assert client.post("/echo/x").status_code == 502
        echo.app.faults.groups.add("oauth")
        echo.app.fail_next(1, 503)
        assert client.get("/token").status_code == 503
        echo.app.fail_next(5, 500)
        echo.app.faults.clear()
        assert client.post("/echo/x").status_code == 200
    echo.app.stats.reset()
    assert echo.app.requests_served == 0


def test_close_returns_with_an_idle_keep_alive_connection_open() -> None:
    running = serve(App())
    client = httpx.Client(base_url=running.url)
    client.get("/")  # leaves a pooled, idle connection
    started = time.monotonic()
    running.close()
    assert time.monotonic() - started < 2
    client.close()


def test_sliding_window_and_daily_counter_follow_the_clock() -> None:
    clock = Clock()
    window = SlidingWindowLimiter(2, 10.0, clock)
    assert [window.hit("t") for _ in range(3)] == [(True, 1), (True, 0), (False, 0)]
    assert window.hit("other") == (True, 1)  # keys are independent
    clock.advance(10)
    assert window.remaining("t") == 2
    daily = DailyCounter(1, clock)
    assert daily.hit("a") == (True, 0) and daily.hit("a") == (False, 0)
    clock.advance(86_400)
    assert daily.hit("a") == (True, 0)


def test_lru_cache_evicts_the_least_recently_used() -> None:
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_oauth_provider_state() -> None:
    clock = Clock()
    oauth = OAuthProvider(
        clients={"id": "secret"}, clock=clock, token_lifetime=60, static_tokens=["static"]
    )
    code = oauth.authorize("id", "http://cb", ["a"])
    with pytest.raises(OAuthError) as mismatch:
        oauth.exchange_code("id", "secret", code, "http://other")
    assert mismatch.value.reason == OAuthError.REDIRECT_MISMATCH
    grant = oauth.exchange_code("id", "secret", code, "http://cb")
    with pytest.raises(OAuthError) as reused:
        oauth.exchange_code("id", "secret", code, "http://cb")
    assert reused.value.reason == OAuthError.BAD_CODE
    assert oauth.check(grant.access_token).status == "valid"
    clock.advance(65)
    expired = oauth.check(grant.access_token)
    assert expired.status == "expired" and int(expired.expired_seconds_ago) == 5
    assert oauth.check("static").status == "valid"  # static tokens never expire
    again = oauth.refresh("id", "secret", grant.refresh_token)
    assert again.refresh_token == grant.refresh_token
    assert oauth.revoke_access_token(again.access_token)
    assert oauth.check(again.access_token).status == "unknown"
    with pytest.raises(OAuthError) as wrong_secret:
        oauth.refresh("id", "nope", grant.refresh_token)
    assert wrong_secret.value.reason == OAuthError.BAD_CLIENT_SECRET
    fresh = oauth.issue("id", ["a"])
    oauth.expire_all()
    assert oauth.check(fresh.access_token).status == "expired"
    assert oauth.check("static").status == "valid"
