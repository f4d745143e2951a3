"""The fault proxy itself (tests/faultproxy.py), checked with a plain HTTP client so that the
fault suite's verdicts on the engine rest on faults that really look the way they claim."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.faultproxy import ALL_FAULTS, Fault, FaultPlan, FaultProxy

RECORDS = [{"id": str(i), "name": f"Record {i}"} for i in range(40)]


class _Upstream(BaseHTTPRequestHandler):
    """Answers every request with a JSON page that links to itself by absolute URL, as some
    APIs' paging links and every create's Location header do."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        origin = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
        body = json.dumps({"results": RECORDS, "next": f"{origin}/records?after=40"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Location", f"{origin}/records/1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def only(fault: Fault) -> FaultPlan:
    """Every response gets `fault`; hangs last just past the client timeout used here."""
    return FaultPlan(rate=1.0, kinds=(fault,), hang_seconds=1.0)


def test_a_clean_response_is_the_upstreams_with_links_pointing_at_the_proxy(upstream):
    with FaultProxy(upstream, FaultPlan(rate=0.0)) as proxy:
        response = httpx.get(f"{proxy.url}/records", timeout=5)
        assert response.status_code == 200
        assert response.json()["results"] == RECORDS
        assert response.json()["next"] == f"{proxy.url}/records?after=40"
        assert response.headers["location"] == f"{proxy.url}/records/1"
        assert (proxy.requests, proxy.upstream, proxy.faulted) == (1, 1, 0)


@pytest.mark.parametrize("fault", [Fault.RESET_BEFORE, Fault.RESET_AFTER, Fault.TRUNCATED,
                                   Fault.HANG])
def test_network_faults_leave_the_client_without_a_complete_response(upstream, fault):
    with FaultProxy(upstream, only(fault)) as proxy:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{proxy.url}/records", timeout=0.3).raise_for_status()
        forwarded = fault in (Fault.RESET_AFTER, Fault.TRUNCATED)
        assert (proxy.upstream, proxy.counts[fault]) == (int(forwarded), 1)


@pytest.mark.parametrize(("fault", "status"), [
    (Fault.HTTP_500, 500), (Fault.HTTP_502, 502), (Fault.HTTP_503, 503), (Fault.HTTP_504, 504),
    (Fault.RATE_LIMITED, 429), (Fault.RATE_LIMITED_BARE, 429)])
def test_error_statuses_come_from_the_proxy_as_html(upstream, fault, status):
    with FaultProxy(upstream, only(fault)) as proxy:
        response = httpx.get(f"{proxy.url}/records", timeout=5)
        assert response.status_code == status
        assert response.headers["content-type"] == "text/html"
        assert response.text.startswith("<html>")
        assert ("retry-after" in response.headers) == (fault is Fault.RATE_LIMITED)
        assert proxy.upstream == 0


@pytest.mark.parametrize("fault", [Fault.MALFORMED_JSON, Fault.EMPTY_200, Fault.HTML_200])
def test_corrupt_200s_are_answered_after_the_upstream_acted(upstream, fault):
    with FaultProxy(upstream, only(fault)) as proxy:
        response = httpx.get(f"{proxy.url}/records", timeout=5)
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()
        assert proxy.upstream == 1
        if fault is Fault.HTML_200:
            assert response.headers["content-type"].startswith("text/html")


def test_faults_are_seeded_and_every_kind_comes_within_one_deck(upstream):
    def fault_sequence(seed: int) -> list[Fault | None]:
        plan = FaultPlan(rate=1.0, kinds=tuple(k for k in ALL_FAULTS if k is not Fault.HANG))
        with FaultProxy(upstream, plan, seed=seed) as proxy, httpx.Client(timeout=5) as client:
            for _ in range(len(plan.kinds)):
                with contextlib.suppress(httpx.TransportError):
                    client.get(f"{proxy.url}/records")
            return [e.fault for e in proxy.exchanges]

    first = fault_sequence(3)
    assert first == fault_sequence(3)
    assert set(first) == set(ALL_FAULTS) - {Fault.HANG}
    assert first != fault_sequence(4)


def test_methods_limit_which_requests_may_be_faulted(upstream):
    plan = FaultPlan(rate=1.0, kinds=(Fault.HTTP_500,), methods=frozenset({"POST"}))
    with FaultProxy(upstream, plan) as proxy:
        assert httpx.get(f"{proxy.url}/records", timeout=5).status_code == 200
        assert proxy.faulted == 0
