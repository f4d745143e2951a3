"""Streams of a connection sync concurrently: measured at the server (requests in flight at
once, requests per budget window), not by timing the client. Each stream keeps its own state,
a failing stream leaves the others alone, and a cancel interrupts them all."""

from __future__ import annotations

import contextvars
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from engine import Engine
from engine.slots import run_concurrently
from sandbox.kit import App, Request, Response, serve
from tests.support import connector_yaml, cursor_page, items, write_specs

TOKENS = ("token-one", "token-two")
STREAMS = ("a", "b", "c")
RECORDS = 30  # three pages of ten per stream
SERVE_SECONDS = 0.1  # each page takes this long: serial streams never overlap


class GaugedServer:
    """Serves /a, /b, /c (cursor pages of ten) and measures, per request: when it arrived and
    how many requests were being served at that moment. `/<stream>` answers `fail[stream]`
    instead, when set."""

    def __init__(self) -> None:
        self.app = App()
        self.records = {s: [{**r, "id": f"{s}{r['id']}"} for r in items(RECORDS)]
                        for s in STREAMS}
        self.fail: dict[str, int] = {}
        self.arrivals: list[tuple[float, str, str]] = []  # (monotonic time, token, stream)
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self.app.add_route("GET", r"/(?P<stream>[abc])", self.page)

    def page(self, request: Request, stream: str) -> Response:
        token = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        with self._lock:
            self.arrivals.append((time.monotonic(), token, stream))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(SERVE_SECONDS)
            if stream in self.fail:
                return Response(self.fail[stream], {"message": "no such collection"})
            return cursor_page(self.records[stream], request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def most_in_any_window(self, seconds: float, token: str) -> int:
        """The most requests of `token` that arrived within any `seconds`."""
        times = sorted(t for t, tok, _ in self.arrivals if tok == token)
        return max((sum(1 for u in times[i:] if u < t + seconds) for i, t in enumerate(times)),
                   default=0)


@pytest.fixture
def server():
    gauged = GaugedServer()
    running = serve(gauged.app)
    gauged.url = running.url
    yield gauged
    running.close()


def specs(tmp_path: Path, extra: str = "") -> Path:
    streams = "\n".join(f"""
    {s}:
      model: contact
      request: {{method: GET, path: /{s}, params: {{limit: 10}}}}
      records: items
      paginate: {{style: cursor, cursor: next, param: after}}
    """ for s in STREAMS)
    return write_specs(tmp_path, connector_yaml(streams, extra=extra))


def engine_for(tmp_path: Path, connectors: Path, **options: Any) -> Engine:
    return Engine(db=tmp_path / "crm.duckdb", connectors_dir=connectors, home=tmp_path / "home",
                  **options)


def landed(engine: Engine, connection: str) -> dict[str, int]:
    """Rows per stream (the id's first letter) of one connection."""
    rows = engine.store.query("SELECT left(id, 1), count(*), count(DISTINCT id) FROM contacts "
                              "WHERE connection = ? GROUP BY ALL", [connection])
    assert all(n == distinct for _, n, distinct in rows), "an id landed twice"
    return {stream: n for stream, n, _ in rows}


def states(engine: Engine, connection: str) -> dict[str, Any]:
    return {stream: engine.store.state(connection, stream) for stream in STREAMS}


def test_the_streams_of_a_connection_are_read_at_once(tmp_path, server):
    with engine_for(tmp_path, specs(tmp_path)) as engine:
        runs = engine.sync("acme", token=TOKENS[0], base_url=server.url)
        assert [(r.stream, r.status, r.records, r.pages) for r in runs] == [
            (s, "succeeded", RECORDS, 3) for s in STREAMS]
        assert landed(engine, "acme") == dict.fromkeys(STREAMS, RECORDS)
        # Each stream's checkpoint is its own, and says its read completed.
        assert all(state is not None and state["resume"] is None and
                   state["last_full_refresh"] for state in states(engine, "acme").values())
    assert server.most_in_flight >= 2  # one at a time if read in turn
    # Until the first answer only the first stream sent: the others' first requests came
    # after it was served (a refused token then fails one stream, not three at once).
    first, second = sorted(t for t, _, _ in server.arrivals)[:2]
    assert second - first >= SERVE_SECONDS * 0.9


@pytest.mark.parametrize("failing", ["a", "b"])
def test_a_failing_stream_leaves_the_others_to_finish(tmp_path, server, failing):
    """Whichever fails: the first stream failing before any answer came does not leave the
    others waiting for one."""
    server.fail[failing] = 404
    with engine_for(tmp_path, specs(tmp_path)) as engine:
        runs = engine.sync("acme", token=TOKENS[0], base_url=server.url)
        assert [(r.stream, r.status) for r in runs] == [
            (s, "failed" if s == failing else "succeeded") for s in STREAMS]
        [failed] = [r for r in runs if r.stream == failing]
        assert "404" in failed.error
        others = [s for s in STREAMS if s != failing]
        assert landed(engine, "acme") == dict.fromkeys(others, RECORDS)
        saved = states(engine, "acme")
        assert saved[failing] is None and saved[others[0]]["resume"] is None


def test_every_stream_of_a_connection_spends_its_one_budget(tmp_path, server):
    budget = "rate_limit: {requests: 4, per_seconds: 1}\n"
    with engine_for(tmp_path, specs(tmp_path, budget)) as engine:
        runs = engine.sync("acme", token=TOKENS[0], base_url=server.url)
        assert [r.status for r in runs] == ["succeeded"] * 3
        assert landed(engine, "acme") == dict.fromkeys(STREAMS, RECORDS)
    # Nine requests under four a second: never more than four in any second at the server
    # (each stream alone would have sent its three at once), and still overlapping.
    assert len(server.arrivals) == 9
    assert server.most_in_any_window(1.0, TOKENS[0]) <= 4
    assert server.most_in_flight >= 2


def test_max_concurrency_bounds_the_streams_in_flight_over_every_connection(tmp_path,
                                                                           server):
    connectors = specs(tmp_path)
    with engine_for(tmp_path, connectors, max_concurrency=2) as engine:
        engine.store  # noqa: B018 - opened once, before the threads share it
        results: dict[str, list] = {}
        threads = [threading.Thread(target=lambda t=token: results.setdefault(t, engine.sync(
            "acme", t, token=t, base_url=server.url))) for token in TOKENS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for token in TOKENS:
            assert [r.status for r in results[token]] == ["succeeded"] * 3
            assert landed(engine, token) == dict.fromkeys(STREAMS, RECORDS)
    assert server.most_in_flight == 2  # six streams, two at a time


def test_a_cancel_interrupts_every_stream_and_a_rerun_completes_them(tmp_path, server):
    # Two requests a minute: the first stream's first page, one more, then all three wait.
    slow = "rate_limit: {requests: 2, per_seconds: 60}\n"
    connectors = specs(tmp_path, slow)
    with engine_for(tmp_path, connectors) as engine:
        runs: list = []
        syncing = threading.Thread(target=lambda: runs.extend(_interrupted(engine, server)))
        syncing.start()
        deadline = time.monotonic() + 10
        while len(server.arrivals) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the pages read have been handed over; every stream now waits
        started = time.monotonic()
        engine.cancel()
        syncing.join(10)
        assert time.monotonic() - started < 2.0
        assert sorted(r.status for r in runs) == ["interrupted"] * 3
        assert sum(r.pages for r in runs) == 2 and sum(r.records for r in runs) == 2 * 10
        assert sum(landed(engine, "acme").values()) == 20
    write_specs(tmp_path, _plain(connectors))
    with engine_for(tmp_path, connectors) as engine:
        again = engine.sync("acme", token=TOKENS[0], base_url=server.url)
        assert [r.status for r in again] == ["succeeded"] * 3
        # Each went on from its own checkpoint: the pages read before are not read again.
        assert sum(r.pages for r in again) == 9 - 2
        assert landed(engine, "acme") == dict.fromkeys(STREAMS, RECORDS)


def test_after_a_cancel_the_same_engine_syncs_again(tmp_path, server):
    """As after Ctrl-C in a notebook: the interrupted sync raised; the next one runs."""
    with engine_for(tmp_path, specs(tmp_path)) as engine:
        runs: list = []
        syncing = threading.Thread(target=lambda: runs.extend(_interrupted(engine, server)))
        syncing.start()
        deadline = time.monotonic() + 10
        while not server.arrivals and time.monotonic() < deadline:
            time.sleep(0.01)
        engine.cancel()
        syncing.join(10)
        assert runs and all(r.status == "interrupted" for r in runs), runs
        again = engine.sync("acme", token=TOKENS[0], base_url=server.url)
        assert [r.status for r in again] == ["succeeded"] * 3
        assert landed(engine, "acme") == dict.fromkeys(STREAMS, RECORDS)


def _interrupted(engine: Engine, server: GaugedServer) -> list:
    """The runs of a sync that is cancelled (the cancel raises Cancelled out of it)."""
    from engine.errors import Cancelled

    try:
        return engine.sync("acme", token=TOKENS[0], base_url=server.url)
    except Cancelled:
        rows = engine.store.query("SELECT stream, status, pages, records FROM sync_runs")
        return [_Run(*row) for row in rows]


class _Run:
    def __init__(self, stream: str, status: str, pages: int, records: int):
        self.stream, self.status, self.pages, self.records = stream, status, pages, records


def _plain(connectors: Path) -> str:
    """The connector without its rate limit."""
    text = (connectors / "acme.yaml").read_text()
    return "\n".join(line for line in text.splitlines() if not line.startswith("rate_limit"))


def test_connections_land_into_one_file_without_mixing_checkpoints(tmp_path, server):
    with engine_for(tmp_path, specs(tmp_path), max_concurrency=6) as engine:
        engine.store  # noqa: B018
        threads = [threading.Thread(target=engine.sync, args=("acme", t),
                                    kwargs={"token": t, "base_url": server.url})
                   for t in TOKENS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for token in TOKENS:
            assert landed(engine, token) == dict.fromkeys(STREAMS, RECORDS)
    with duckdb.connect(str(tmp_path / "crm.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT (connection, stream)) FROM "
                           "sync_state").fetchone() == (6, 6)
        assert con.execute("SELECT count(*) FROM sync_runs WHERE status = 'succeeded'"
                           ).fetchone()[0] == 6
    assert server.most_in_flight >= 2


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def test_tasks_run_in_threads_of_their_own_with_the_callers_context():
    """One task as well as several: a caller's context (a request id its logs carry) reaches
    each sync's streams, and what a task sets stays its own."""
    def task() -> tuple[str, bool]:
        seen = REQUEST_ID.get()
        REQUEST_ID.set("changed by the task")
        return seen, threading.current_thread() is threading.main_thread()

    REQUEST_ID.set("req-42")
    for count in (1, 3):
        results = run_concurrently([task] * count, on_interrupt=lambda: None, grace_seconds=1)
        assert results == [("req-42", False)] * count
    assert REQUEST_ID.get() == "req-42"
