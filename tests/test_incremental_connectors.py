"""Incremental syncs of the four bundled connectors, end to end against their emulators.

Each emulator serves the vendor API on 127.0.0.1 in this process, plus its test-control
endpoints (sandbox/kit/control.py): `POST /__sandbox/mutate` creates, updates and deletes
records between syncs and `GET /__sandbox/truth` says what the CRM holds. Every test checks the
DuckDB tables against that truth.

- test_incremental_sync_matches_truth: full sync, then two rounds of upstream changes each
  followed by an incremental sync, then a sync with nothing changed: the rows equal the truth,
  the runs are incremental and read only what changed (plus the records sharing the cursor's
  value, which an inclusive lower bound reads again), in few requests; at the end the rows
  equal those of a clean full sync.
- test_full_refresh_sweeps_rows_it_did_not_see: `full_refresh=True` marks rows deleted that it
  no longer reads, with no deletes API; a later incremental run puts the CRM's deletion time on
  them.
- test_killed_sync_resumes_and_converges: `python -m engine sync` SIGKILLed at random requests
  (a full refresh, then incremental windows with changes in between), then run to completion:
  each rerun goes on from the saved request, and the tables equal a clean sync.
- test_live_rows_say_is_deleted_false, test_full_refresh_resumed_after_upstream_deletes,
  test_changes_during_an_incremental_read_are_kept, test_full_refresh_resumes_on_a_moved_api_host:
  narrower cases, some of which expose engine bugs (marked xfail, strict, with the reason).

Incremental runs use `lookback_seconds=0`, so a run re-reads only the records whose cursor
value equals the saved cursor (lower bounds are inclusive). Salesforce, Pipedrive and Zoho
stamp whole seconds, and a mutation stamps up to 1,000 records within one second: there the
"boundary" is every record of the cursor's second.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import httpx
import pytest

import sandbox
from engine import Engine
from engine.engine import PROJECT_ROOT
from engine.store import SyncRun
from engine.sync import stream as sync_stream
from engine.sync.checkpoint import Checkpoint
from sandbox.kit import RunningSandbox
from tests.faultproxy import FaultPlan, FaultProxy

CONNECTORS = PROJECT_ROOT / "connectors"
STREAMS = ("contacts", "companies", "deals")


# -- the four vendors ------------------------------------------------------------------------

@dataclass(frozen=True)
class Vendor:
    """An emulator and how a connection to it is configured here.

    `page`: records per incremental page; `list_page`: per full-refresh page; `resolution`: the
    smallest cursor step the vendor shows (seconds); `per_page`: requests an incremental page
    of the stream costs (`list_per_page`: a full-refresh page, where it differs); `fixed`: what
    an incremental run of the stream costs besides its pages, given the deletions since the last
    check, all deleted records, and the changed records."""

    name: str
    options: dict[str, Any]
    config: dict[str, Any]
    page: int
    list_page: int
    resolution: float
    per_page: Callable[[str], int]
    fixed: Callable[[str, int, int, int], int]
    list_per_page: Callable[[str], int] | None = None

    @property
    def token(self) -> str:
        return {"hubspot": "sandbox-private-app-token", "salesforce": "sandbox-session-id",
                "pipedrive": "sandbox-api-token", "zoho": "1000.sandbox-static-token"}[self.name]

    def cli_config(self) -> list[str]:
        args = ["--config", "lookback_seconds=0"]
        for key, value in self.config.items():
            args += ["--config", f"{key}={value}"]
        return args


def _pages(records: int, size: int) -> int:
    return max(1, math.ceil(records / size))


VENDORS = [
    # HubSpot: list pages of 100 (config page_size), search pages of 200 (fixed in the YAML).
    # An emulator rate limit far above the YAML's 100 per 10 s: the engine paces itself by the
    # X-HubSpot-RateLimit-* headers, so syncs run at full speed.
    # Per search page: + 1 for contacts, + 2 for deals (the v4 association batch reads:
    # companies; companies and contacts); a list page sends none (its links say which is
    # primary, and none here has a custom label or more links than a list names). Besides
    # pages: the archived list (100 a page), which has no time filter, so it reads every
    # archived record each run.
    Vendor("hubspot", {"rate_limit": (100_000, 10.0), "search_rate_limit": None,
                       "daily_limit": None},
           {"page_size": 100}, page=200, list_page=100, resolution=0.001,
           per_page=lambda stream: {"contacts": 2, "deals": 3}.get(stream, 1),
           fixed=lambda stream, deleted, archived, changed: _pages(archived, 100),
           list_per_page=lambda stream: 1),
    # Salesforce: query pages of batch_size=200 (its minimum). Besides pages: one queryAll for
    # the rows deleted since the last check (200 a page).
    Vendor("salesforce", {"leads": 0, "batch_size": 200}, {"batch_size": 200}, page=200,
           list_page=200, resolution=1.0, per_page=lambda stream: 1,
           fixed=lambda stream, deleted, archived, changed: _pages(deleted, 200)),
    # Pipedrive: v2 pages of page_size=200. Besides pages: the custom-field definitions (read
    # every run, one page) and the deletions (v1 recents for persons and organizations, 500 a
    # page, which list every change since the check; deleted deals, page_size a page).
    Vendor("pipedrive", {"rate_limit": (100_000, 2.0), "daily_token_budget": None},
           {"page_size": 200}, page=200, list_page=200, resolution=1.0,
           per_page=lambda stream: 1,
           fixed=lambda stream, deleted, archived, changed: 1 + (
               _pages(deleted, 200) if stream == "deals" else _pages(deleted + changed, 500))),
    # Zoho: pages of 200 (fixed in the YAML). Besides pages: the deleted records (200 a page).
    Vendor("zoho", {}, {}, page=200, list_page=200, resolution=1.0, per_page=lambda stream: 1,
           fixed=lambda stream, deleted, archived, changed: _pages(deleted, 200)),
]
BY_NAME = {v.name: v for v in VENDORS}
vendors = pytest.mark.parametrize("vendor", VENDORS, ids=[v.name for v in VENDORS])


def instant(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def floor_to(value: dt.datetime, resolution: float) -> dt.datetime:
    """`value` at the vendor's resolution (what its cursor filters compare)."""
    micros = round(resolution * 1_000_000)
    since_epoch = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    total = since_epoch // dt.timedelta(microseconds=1)
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        microseconds=total - total % micros)


# -- an emulator and its control endpoints ---------------------------------------------------

class Emulated:
    def __init__(self, vendor: Vendor, running: RunningSandbox, client: httpx.Client):
        self.vendor = vendor
        self.running = running
        self.client = client

    @property
    def url(self) -> str:
        return self.running.url

    def mutate(self, stream: str, create: int = 0, update: int = 0,
               delete: int = 0) -> dict[str, Any]:
        response = self.client.post("/__sandbox/mutate", json={
            "stream": stream, "create": create, "update": update, "delete": delete})
        assert response.status_code == 200, response.text
        return response.json()

    def truth(self, stream: str) -> dict[str, dict[str, Any]]:
        response = self.client.get("/__sandbox/truth", params={"stream": stream})
        assert response.status_code == 200, response.text
        return {row["id"]: row for row in response.json()["records"]}


@contextmanager
def emulator(vendor: Vendor, **seeds: int) -> Iterator[Emulated]:
    with sandbox.start(vendor.name, **vendor.options, **seeds) as running, \
            httpx.Client(base_url=running.url, timeout=30) as client:
        yield Emulated(vendor, running, client)


def open_engine(path: Path) -> Engine:
    return Engine(db=path / "crm.duckdb", connectors_dir=CONNECTORS, home=path / "home")


def sync(engine: Engine, emu: Emulated, streams: tuple[str, ...] | list[str], *,
         full_refresh: bool = False) -> dict[str, SyncRun]:
    runs = engine.sync(emu.vendor.name, streams=list(streams), full_refresh=full_refresh,
                       token=emu.vendor.token, base_url=emu.url,
                       config={"lookback_seconds": 0, **emu.vendor.config})
    return {run.stream: run for run in runs}


# -- rows ------------------------------------------------------------------------------------

Query = Callable[[str, list[Any] | None], list[tuple[Any, ...]]]


def table_rows(query: Query, table: str) -> dict[str, dict[str, Any]]:
    """The table's rows by id, every column but synced_at (which says when, not what)."""
    names = [r[0] for r in query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", [table])]
    rows = query(f"SELECT * FROM {table}", None)
    out = {}
    for values in rows:
        row = dict(zip(names, values, strict=True))
        row.pop("synced_at")
        if isinstance(row.get("custom"), str):
            row["custom"] = json.loads(row["custom"])
        out[row["id"]] = row
    return out


def engine_query(engine: Engine) -> Query:
    assert engine.store is not None
    return lambda sql, params: engine.store.query(sql, params or [])


@contextmanager
def file_query(path: Path) -> Iterator[Query]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield lambda sql, params: con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def duplicate_keys(query: Query, table: str) -> list[tuple[Any, ...]]:
    return query(f"SELECT connection, id, count(*) FROM {table} GROUP BY connection, id "
                 f"HAVING count(*) > 1", None)


def check_against_truth(rows: dict[str, dict[str, Any]], truth: dict[str, dict[str, Any]],
                        label: str, *, swept: tuple[dt.datetime, dt.datetime] | None = None
                        ) -> None:
    """Live records: a row each, not deleted, with the CRM's updated_at. Deleted records we had:
    is_deleted and deleted_at (the CRM's deletion time; with `swept`, our clock between the
    two times given, as a full refresh's sweep stamps them). Nothing else."""
    live = {i for i, t in truth.items() if not t["deleted"]}
    invented = set(rows) - set(truth)
    assert not invented, f"{label}: rows the CRM never had: {sorted(invented)[:5]}"
    landed_live = {i for i, r in rows.items() if r["is_deleted"] is False}
    assert landed_live == live, (
        f"{label}: live records missing {sorted(live - landed_live)[:5]} "
        f"({len(live - landed_live)}), deleted ones not marked "
        f"{sorted(landed_live - live)[:5]} ({len(landed_live - live)})")
    stale = [(i, rows[i]["updated_at"], truth[i]["updated_at"]) for i in sorted(live)
             if rows[i]["updated_at"] != instant(truth[i]["updated_at"])]
    assert not stale, f"{label}: {len(stale)} rows with another updated_at, e.g. {stale[:3]}"
    for record_id in set(rows) - live:
        row, deleted_at = rows[record_id], instant(truth[record_id]["deleted_at"])
        assert row["is_deleted"] is True, (label, record_id, row["is_deleted"])
        assert row["deleted_at"] is not None, (label, record_id)
        if swept is None:
            assert row["deleted_at"] == deleted_at, (label, record_id, row["deleted_at"],
                                                     deleted_at)
        else:
            assert swept[0] <= row["deleted_at"] <= swept[1], (label, record_id,
                                                                row["deleted_at"], swept)


def saved_state(engine: Engine, stream: str, connection: str) -> Checkpoint:
    assert engine.store is not None
    return Checkpoint.from_json(engine.store.state(connection, stream))


def matched_since(truth: dict[str, dict[str, Any]], cursor: dt.datetime,
                  resolution: float) -> set[str]:
    """The live records an incremental query from `cursor` (inclusive) returns: those whose
    modification time, at the vendor's resolution, is at or after it."""
    return {i for i, t in truth.items() if not t["deleted"]
            and floor_to(instant(t["updated_at"]), resolution) >= cursor}


def deleted_since(truth: dict[str, dict[str, Any]], cursor: dt.datetime | None,
                  resolution: float) -> int:
    return sum(1 for t in truth.values() if t["deleted"] and (
        cursor is None or floor_to(instant(t["deleted_at"]), resolution) >= cursor))


def request_bound(vendor: Vendor, stream: str, matched: int, truth: dict[str, dict[str, Any]],
                  deletes_cursor: dt.datetime | None) -> int:
    """At most: the pages of what the window matches (one request for an empty answer), each
    costing `per_page` requests, plus the vendor's fixed requests (see VENDORS)."""
    archived = sum(1 for t in truth.values() if t["deleted"])
    # Deals fall back on the account's default currency: one request per sync reads it.
    account_facts = 1 if stream == "deals" else 0
    # Each run reads the stream's field list once (Pipedrive's is among its fixed requests).
    field_list = 0 if vendor.name == "pipedrive" else 1
    return (account_facts + field_list + vendor.per_page(stream) * _pages(matched, vendor.page)
            + vendor.fixed(stream, deleted_since(truth, deletes_cursor, vendor.resolution),
                           archived, matched))


# -- 1. incremental correctness ---------------------------------------------------------------

SEEDED = 450
OTHERS = 20  # records of the streams not under test (deals refer to contacts and companies)
# (create, update, delete): the first round spans several incremental pages everywhere.
ROUNDS = [(150, 200, 40), (5, 7, 3)]


@pytest.mark.parametrize("stream", STREAMS)
@vendors
def test_incremental_sync_matches_truth(vendor: Vendor, stream: str, tmp_path: Path) -> None:
    seeds = {s: OTHERS for s in STREAMS} | {stream: SEEDED}
    with emulator(vendor, **seeds) as emu, open_engine(tmp_path) as engine:
        query = engine_query(engine)
        first = sync(engine, emu, [stream])[stream]
        assert (first.mode, first.status, first.error) == ("full_refresh", "succeeded", None)
        assert first.records == SEEDED
        check_against_truth(table_rows(query, stream), emu.truth(stream), "full sync")

        for number, (create, update, delete) in enumerate(ROUNDS, 1):
            label = f"{vendor.name} {stream} round {number}"
            before = saved_state(engine, stream, vendor.name)
            assert before.cursor is not None and before.resume is None and before.window is None
            changed = emu.mutate(stream, create=create, update=update, delete=delete)
            truth = emu.truth(stream)
            matched = matched_since(truth, before.cursor, vendor.resolution)
            assert set(changed["created"]) | set(changed["updated"]) <= matched
            run = sync(engine, emu, [stream])[stream]
            assert (run.mode, run.status, run.error) == ("incremental", "succeeded", None), label
            # What the window matches (what changed, and the boundary re-reads); where each
            # page is a new query from the last value read (the next page being an offset),
            # also the records at that value, again, at each page boundary.
            reread = 0
            if engine.connector(vendor.name).streams[stream].incremental.requery_each_page:
                reread = (run.pages - 1) * (1 if vendor.resolution < 1 else vendor.page)
            assert len(matched) <= run.records <= len(matched) + reread, (
                label, run.records, len(matched), reread)
            assert run.deleted == delete, label
            bound = request_bound(vendor, stream, run.records, truth, before.deletes_cursor)
            assert run.requests <= bound, (label, run.requests, bound)
            rows = table_rows(query, stream)
            check_against_truth(rows, truth, label)
            assert not duplicate_keys(query, stream)

        # Nothing changed: only the boundary is read again. HubSpot (milliseconds): the one
        # record at the cursor. Whole-second vendors: every live record of the cursor's second,
        # here those of the last mutation.
        before = saved_state(engine, stream, vendor.name)
        truth = emu.truth(stream)
        boundary = matched_since(truth, before.cursor, vendor.resolution)
        last_round = set(changed["created"]) | set(changed["updated"])
        if vendor.resolution < 1:
            assert len(boundary) == 1 and boundary <= last_round
        else:
            assert boundary >= last_round
        rows_before = table_rows(query, stream)
        run = sync(engine, emu, [stream])[stream]
        assert (run.mode, run.status, run.error) == ("incremental", "succeeded", None)
        assert run.records == len(boundary) and run.deleted == 0
        assert run.requests <= request_bound(vendor, stream, len(boundary), truth,
                                             before.deletes_cursor)
        assert table_rows(query, stream) == rows_before
        after = saved_state(engine, stream, vendor.name)
        assert after.cursor == before.cursor and after.window is None

        # A clean full sync of the same CRM into a new file lands the same live rows, in every
        # column (incremental reads may use another endpoint: HubSpot search, plus association
        # reads for deals).
        with open_engine(tmp_path / "clean") as clean_engine:
            assert sync(clean_engine, emu, [stream])[stream].status == "succeeded"
            clean = table_rows(engine_query(clean_engine), stream)
        assert_same_rows(table_rows(query, stream), clean)


def assert_same_rows(synced: dict[str, dict[str, Any]], clean: dict[str, dict[str, Any]]) -> None:
    """`synced` has the rows of `clean` (a clean full sync), equal in every column; the rows
    only it has are deleted ones (a clean sync never saw those records)."""
    live = {i: r for i, r in synced.items() if r["is_deleted"] is not True}
    assert set(live) == set(clean), (sorted(set(live) - set(clean))[:5],
                                     sorted(set(clean) - set(live))[:5])
    differing = [(i, {k: (v, clean[i].get(k)) for k, v in live[i].items() if v != clean[i].get(k)})
                 for i in sorted(live) if live[i] != clean[i]]
    assert not differing, f"{len(differing)} rows differ from a clean sync, e.g. {differing[:2]}"


# Some mappings do not map is_deleted (Zoho; Pipedrive persons and organizations): the
# engine lands false for a listed record, so `WHERE NOT is_deleted` keeps every live row.
@pytest.mark.parametrize("stream", STREAMS)
@vendors
def test_live_rows_say_is_deleted_false(vendor: Vendor, stream: str, tmp_path: Path,
                                        request: pytest.FixtureRequest) -> None:
    with emulator(vendor, **{s: OTHERS for s in STREAMS}) as emu, \
            open_engine(tmp_path) as engine:
        sync(engine, emu, [stream])
        emu.mutate(stream, create=2, update=2, delete=2)
        assert sync(engine, emu, [stream])[stream].mode == "incremental"
        counts = dict(engine.store.query(
            f"SELECT coalesce(is_deleted::VARCHAR, 'NULL'), count(*) FROM {stream} GROUP BY 1"))
    assert counts == {"false": OTHERS, "true": 2}, counts


# -- 2. kill -9 at random requests -----------------------------------------------------------

KILL_CONTACTS = 12_000  # three batches of BATCH_RECORDS (5,000): 5,000, 5,000 and 2,000
FULL_KILLS = 5  # the last one at the deletes request, once the read is complete
INCREMENTAL_KILLS = 5
# Upstream changes (create, update, delete) before the run of that number (1-based), in either
# phase. The one before the first incremental run makes it match more than two batches, and
# more than HubSpot's 10,000 search results (so its windows split).
KILL_MUTATIONS = {3: (30, 60, 20), 6: (2_000, 9_000, 300), 8: (100, 300, 40)}
# Each request waits this long in the emulator (real APIs take 100s of ms): a batch then lands
# (0.1-0.2 s here) within LANDED_PAGES pages of being complete.
LATENCY_MS = 10
LANDED_PAGES = 30
PROCESS_SECONDS = 60  # no single run may take longer


@dataclass
class Seen:
    """A request as the emulator received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class Killer:
    """Logs the API requests the emulator receives, per sync process; when armed, SIGKILLs the
    process at the request `kill_when` picks, before answering it."""

    def __init__(self, running: RunningSandbox):
        self._dispatch = running.app.dispatch
        running.app.dispatch = self.dispatch  # an instance attribute: the server looks it up
        self.runs: list[list[Seen]] = []
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._kill_when: Callable[[list[Seen]], bool] | None = None
        self.killed = False

    def arm(self, kill_when: Callable[[list[Seen]], bool] | None) -> None:
        with self._lock:
            self.runs.append([])
            self._process, self._kill_when, self.killed = None, kill_when, False

    def started(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._process = process

    def dispatch(self, request: Any) -> Any:
        if request.path.startswith("/__sandbox/"):
            return self._dispatch(request)
        deadline = time.monotonic() + 10
        while True:
            with self._lock:
                if self._process is not None or self._kill_when is None:
                    break
            assert time.monotonic() < deadline, "a request came before its process started"
            time.sleep(0.01)
        with self._lock:
            seen = self.runs[-1]
            seen.append(Seen(request.method, request.path, dict(request.query),
                             dict(request.headers), request.body or b""))
            if not self.killed and self._kill_when is not None and self._kill_when(seen):
                assert self._process is not None
                os.kill(self._process.pid, signal.SIGKILL)
                self.killed = True
            if self.killed:
                return None  # the process is gone: close the connection without a reply
        return self._dispatch(request)


# Per vendor, for the contacts stream: which requests read records (a full refresh's pages or
# an incremental window's), which read deletions, and the lower bound an incremental one sent.
def _hubspot_since(seen: Seen) -> dt.datetime:
    value = json.loads(seen.body)["filterGroups"][0]["filters"][0]["value"]
    return dt.datetime.fromtimestamp(int(value) / 1000, dt.UTC)


def _salesforce_since(seen: Seen) -> dt.datetime:
    found = re.search(r"SystemModstamp >= (\S+)", seen.query["q"][0])
    assert found, seen.query
    return instant(found[1])


READS: dict[str, dict[str, Any]] = {
    "hubspot": {
        "records": lambda s: s.path in ("/crm/v3/objects/contacts/search",
                                        "/crm/v3/objects/contacts")
        and s.query.get("archived") != ["true"],
        "deletes": lambda s: s.path == "/crm/v3/objects/contacts"
        and s.query.get("archived") == ["true"],
        "since": _hubspot_since,
    },
    "salesforce": {
        "records": lambda s: bool(re.fullmatch(r"/services/data/v[\d.]+/query(/.+)?", s.path)),
        "deletes": lambda s: "/queryAll" in s.path,
        "since": _salesforce_since,
    },
    "pipedrive": {
        "records": lambda s: s.path == "/api/v2/persons",
        "deletes": lambda s: s.path == "/api/v1/recents",
        "since": lambda s: instant(s.query["updated_since"][0]),
    },
    "zoho": {
        "records": lambda s: s.path == "/crm/v3/Contacts",
        "deletes": lambda s: s.path == "/crm/v3/Contacts/deleted",
        "since": lambda s: instant(s.headers["if-modified-since"]),
    },
}


def lower_bound(checkpoint: Checkpoint) -> dt.datetime:
    """Where an incremental run reads from (lookback 0): its window in progress, or the
    cursor."""
    assert checkpoint.cursor is not None
    return checkpoint.window.since if checkpoint.window else checkpoint.cursor


def is_first_page(seen: Seen) -> bool:
    """A full refresh's first request: no page cursor, offset or query locator."""
    paging = {"after", "cursor", "page_token"} & set(seen.query)
    return (not paging and seen.query.get("page", ["1"]) == ["1"]
            and not re.search(r"/query/.+", seen.path))


def is_saved_call(seen: Seen, checkpoint: Checkpoint) -> bool:
    """`seen` is the request a full refresh saved to go on with (saved relative to the API
    base, which may move before the rerun)."""
    assert checkpoint.resume is not None
    call = checkpoint.resume.call
    if call is None:  # paged by offsets: the full refresh starts again, from page 1
        return True
    if not seen.path.endswith(urlsplit(call.url).path):
        return False
    return all(seen.query.get(k) == [str(v)] for k, v in call.params.items()
               if v not in (None, ""))


def read_state(path: Path) -> tuple[Checkpoint, list[tuple[str, str]]]:
    """The contacts checkpoint and the (mode, status) of every run, in order."""
    if not path.exists():
        return Checkpoint(), []
    with file_query(path) as query:
        state = query("SELECT state FROM sync_state WHERE stream = 'contacts'", None)
        runs = query("SELECT mode, status FROM sync_runs ORDER BY started", None)
    return Checkpoint.from_json(json.loads(state[0][0]) if state else None), runs


def run_cli(vendor: Vendor, emu: Emulated, db: Path, tmp_path: Path, killer: Killer,
            kill_when: Callable[[list[Seen]], bool] | None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_ENGINE_")}
    env |= {"CRM_ENGINE_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"),
            f"CRM_ENGINE_{vendor.name.upper()}_TOKEN": vendor.token}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    killer.arm(kill_when)
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "sync", vendor.name, "--base-url", emu.url,
         "--db", str(db), "--streams", "contacts", *vendor.cli_config()],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killer.started(process)
    try:
        _, stderr = process.communicate(timeout=PROCESS_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    if process.returncode not in (0, -signal.SIGKILL):
        pytest.fail(f"sync exited {process.returncode}: {stderr.decode()[-2000:]}")
    return process.returncode


def batch_pages(vendor: Vendor, phase: str) -> int:
    """Pages per landed batch."""
    page = vendor.page if phase == "incremental" else vendor.list_page
    return math.ceil(sync_stream.BATCH_RECORDS / page)


@vendors
def test_killed_sync_resumes_and_converges(vendor: Vendor, tmp_path: Path) -> None:
    """Kill points are random pages of the read in progress (seeded): odd runs anywhere in
    it, even runs past the next batch boundary (so some progress is saved), the last
    full-refresh run at its deletes request (the read complete, the deletions not)."""
    rng = random.Random(f"kill-9-{vendor.name}")
    reads = READS[vendor.name]
    db = tmp_path / "killed.duckdb"
    with emulator(vendor, contacts=KILL_CONTACTS, companies=5, deals=5,
                  latency_ms=LATENCY_MS) as emu:
        killer = Killer(emu.running)
        progress: list[tuple[str, Checkpoint]] = []  # each run's phase and checkpoint before it
        pages_read = {"full_refresh": 0, "incremental": 0}
        truth = emu.truth("contacts")
        first_cursor: dt.datetime | None = None
        for number in range(1, FULL_KILLS + INCREMENTAL_KILLS + 1):
            if number in KILL_MUTATIONS:
                create, update, delete = KILL_MUTATIONS[number]
                emu.mutate("contacts", create=create, update=update, delete=delete)
                truth = emu.truth("contacts")
            before, _ = read_state(db)
            if before.cursor is None or before.resume is not None:
                phase = "full_refresh"
                live = sum(1 for t in truth.values() if not t["deleted"])
                # Pages still to read, less one or two (a Salesforce query locator reads the
                # records as they were when the full refresh began).
                remaining = (live - 50) // vendor.list_page - (
                    before.resume.pages if before.resume else 0)
            else:
                phase = "incremental"
                first_cursor = first_cursor or before.cursor
                remaining = _pages(len(matched_since(truth, lower_bound(before),
                                                     vendor.resolution)), vendor.page)
            assert remaining >= 1
            if number == FULL_KILLS:
                assert phase == "full_refresh"
                at = sys.maxsize  # only the deletes request
            elif number % 2:
                at = rng.randint(1, remaining)
            else:
                at = rng.randint(min(remaining, batch_pages(vendor, phase) + LANDED_PAGES),
                                 remaining)
            code = run_cli(vendor, emu, db, tmp_path, killer, lambda seen, at=at: (
                reads["deletes"](seen[-1]) or sum(map(reads["records"], seen)) >= at))
            assert code == -signal.SIGKILL and killer.killed, f"run {number} was not killed"
            record_reads = [s for s in killer.runs[-1] if reads["records"](s)]
            pages_read[phase] += len(record_reads)
            # Resumed, not restarted: the first read is the one the checkpoint saved.
            first = record_reads[0]
            if phase == "full_refresh" and before.resume is not None:
                assert is_saved_call(first, before), (number, first, before.resume.call)
            elif phase == "full_refresh":
                assert is_first_page(first), (number, first)
            else:
                assert reads["since"](first) == lower_bound(before), (number, before)
            progress.append((phase, before))

        # The last run goes to the end, from where the last kill left it.
        before, _ = read_state(db)
        assert before.cursor is not None and before.resume is None
        assert run_cli(vendor, emu, db, tmp_path, killer, None) == 0
        final_reads = [s for s in killer.runs[-1] if reads["records"](s)]
        assert reads["since"](final_reads[0]) == lower_bound(before)
        pages_read["incremental"] += len(final_reads)
        truth = emu.truth("contacts")

        # A clean sync of the same CRM into a new file (in this process, at full speed).
        emu.running.app.faults.latency_ms = 0
        with open_engine(tmp_path / "clean") as engine:
            clean_run = sync(engine, emu, ["contacts"])["contacts"]
            assert clean_run.status == "succeeded"
            clean_rows = table_rows(engine_query(engine), "contacts")

    phases = [phase for phase, _ in progress]
    assert phases == ["full_refresh"] * FULL_KILLS + ["incremental"] * INCREMENTAL_KILLS
    _, runs = read_state(db)
    assert runs == [(phase, "abandoned") for phase in phases] + [("incremental", "succeeded")]

    # Saved progress only went forward: a full refresh's page, then the incremental lower bound.
    full = [c.resume.pages if c.resume else 0 for phase, c in progress if phase == "full_refresh"]
    assert full == sorted(full) and full[-1] > 0, full
    bounds = [lower_bound(c) for phase, c in progress if phase == "incremental"]
    assert bounds == sorted(bounds) and bounds[-1] > bounds[0], bounds

    # A kill costs at most the pages read since the last landed batch: those of the batch being
    # built, the one read ahead and the one requested, and those of a batch whose landing the
    # kill interrupted; incremental reruns also read again the rest of the second they resume
    # in (up to 1,000 records of one mutation).
    assert pages_read["full_refresh"] <= (math.ceil(KILL_CONTACTS / vendor.list_page)
                                          + FULL_KILLS * (2 * batch_pages(vendor, "full") + 2))
    needed = _pages(len(matched_since(truth, first_cursor, vendor.resolution)), vendor.page)
    assert pages_read["incremental"] <= needed + INCREMENTAL_KILLS * (
        2 * batch_pages(vendor, "incremental") + 2 + math.ceil(1000 / vendor.page))

    with file_query(db) as query:
        killed_rows = table_rows(query, "contacts")
        assert not duplicate_keys(query, "contacts")
    check_against_truth(killed_rows, truth, "after the kills")
    assert_same_rows(killed_rows, clean_rows)
    print(f"\n{vendor.name}: {len(progress)} kills; pages read {pages_read}; "
          f"an uninterrupted full refresh {clean_run.pages} pages, incremental {needed}")


# -- 3. the sweep of a full refresh ----------------------------------------------------------

@vendors
def test_full_refresh_sweeps_rows_it_did_not_see(vendor: Vendor, tmp_path: Path) -> None:
    seeds = {"contacts": 250, "companies": 120, "deals": 120}
    with emulator(vendor, **seeds) as emu:
        with open_engine(tmp_path) as engine:
            assert all(r.status == "succeeded" for r in sync(engine, emu, STREAMS).values())
            deleted = {s: set(emu.mutate(s, create=4, update=6, delete=9)["deleted"])
                       for s in STREAMS}
            # No deletes API: what marks the rows deleted is the sweep alone.
            spec = engine.connector(vendor.name)
            for stream in STREAMS:
                spec.streams[stream].deletes = None
            started = dt.datetime.now(dt.UTC)
            runs = sync(engine, emu, STREAMS, full_refresh=True)
            finished = dt.datetime.now(dt.UTC)
            query = engine_query(engine)
            for stream, run in runs.items():
                assert (run.mode, run.status, run.error) == ("full_refresh", "succeeded", None)
                assert run.records == seeds[stream] + 4 - 9
                assert run.deleted == 9, stream
                # Only pages (with their association reads) were requested, the stream's field
                # list, and for deals the account's default currency.
                per_page = vendor.list_per_page or vendor.per_page
                expected = run.pages * per_page(stream) + 1 + (stream == "deals")
                assert run.requests == expected, stream
                rows = table_rows(query, stream)
                assert {i for i, r in rows.items() if r["is_deleted"] is True} == deleted[stream]
                check_against_truth(rows, emu.truth(stream), f"{stream} swept",
                                    swept=(started, finished))
                state = saved_state(engine, stream, vendor.name)
                assert state.cursor is not None and state.resume is None
                assert not duplicate_keys(query, stream)
            # A second full refresh sweeps nothing more.
            again = sync(engine, emu, STREAMS, full_refresh=True)
            assert [r.deleted for r in again.values()] == [0, 0, 0]

        # With the deletes API back (the YAML as it is), an incremental run marks nothing new
        # but puts the CRM's deletion time on the swept rows in place of ours.
        with open_engine(tmp_path) as engine:
            runs = sync(engine, emu, STREAMS)
            for stream, run in runs.items():
                assert (run.mode, run.status, run.deleted) == ("incremental", "succeeded", 0)
                check_against_truth(table_rows(engine_query(engine), stream),
                                    emu.truth(stream), f"{stream} after the deletes check")


# -- reads interrupted or overtaken by changes ------------------------------------------------

@contextmanager
def on_read(emu: Emulated, number: int, action: Callable[[], Any]) -> Iterator[None]:
    """Before the emulator answers the `number`th request reading contacts, run `action`; if it
    returns a response, that is the answer."""
    app, reads = emu.running.app, READS[emu.vendor.name]
    dispatch, count = app.dispatch, [0]

    def hooked(request: Any) -> Any:
        seen = Seen(request.method, request.path, dict(request.query), dict(request.headers),
                    request.body or b"")
        if reads["records"](seen):
            count[0] += 1
            if count[0] == number:
                response = action()
                if response is not None:
                    return response
        return dispatch(request)

    app.dispatch = hooked
    try:
        yield
    finally:
        app.dispatch = dispatch


def upstream(emu: Emulated, change: str, ids: list[str]) -> None:
    """Update or delete these records, as /__sandbox/mutate does with the ones it picks."""
    emulator_ = emu.running.emulator
    native = emulator_.controller.streams()["contacts"]
    emulator_.advance_time(1.0)
    base = math.floor(emulator_.clock.now())
    stamps = [base + i * 0.001 for i in range(len(ids))]
    getattr(emulator_, f"control_{change}")(native, ids, stamps)
    emulator_.advance_time(0.1)


def refused(emu: Emulated) -> Callable[[], Any]:
    return lambda: emu.running.app.error_response(400)  # a fatal error: the run stops


@vendors
def test_full_refresh_resumed_after_upstream_deletes(vendor: Vendor, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    """A full refresh fails at its 4th page (the pages before it land, with the request to go
    on with); records on those pages are deleted upstream; the rerun completes it. No live
    record may be skipped, nor swept as deleted."""
    with emulator(vendor, contacts=1_500, companies=5, deals=5) as emu, \
            open_engine(tmp_path) as engine:
        assert sync(engine, emu, ["contacts"])["contacts"].status == "succeeded"
        with on_read(emu, 4, refused(emu)):
            failed = sync(engine, emu, ["contacts"], full_refresh=True)["contacts"]
        assert failed.status == "failed" and failed.records == 3 * vendor.list_page
        assert saved_state(engine, "contacts", vendor.name).resume is not None
        landed = [r[0] for r in engine.store.query(
            "SELECT id FROM contacts WHERE synced_at >= ? ORDER BY id", [failed.started])]
        upstream(emu, "delete", landed[10:15])
        run = sync(engine, emu, ["contacts"])["contacts"]
        assert (run.mode, run.status) == ("full_refresh", "succeeded")
        check_against_truth(table_rows(engine_query(engine), "contacts"), emu.truth("contacts"),
                            "resumed full refresh")


# What the emulators do with records changed while a read pages through them: HubSpot search
# and Zoho lists page by offset (a record changed again moves to the end, and the records after
# it move up by one: one is skipped); Pipedrive pages from the last key; a Salesforce query
# locator keeps its rows in order but shows their values as they are now.
CHANGED_DURING_READ = {
    "salesforce": "engine: the run fails ('records are not sorted by their cursor') when a "
                  "query locator's later page shows a record changed since the query (the "
                  "emulator shows current values, as queryMore is believed to: UNCONFIRMED)",
}


@vendors
def test_changes_during_an_incremental_read_are_kept(vendor: Vendor, tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    """Three pages of changes; before the second page is served, 50 records of the first page
    change again. The run succeeds, and after it and one more run every row is current."""
    if vendor.name in CHANGED_DURING_READ:
        request.applymarker(pytest.mark.xfail(strict=True,
                                              reason=CHANGED_DURING_READ[vendor.name]))
    with emulator(vendor, contacts=2_000, companies=5, deals=5) as emu, \
            open_engine(tmp_path) as engine:
        sync(engine, emu, ["contacts"])
        window = emu.mutate("contacts", update=3 * vendor.page)["updated"]  # in cursor order
        with on_read(emu, 2, lambda: upstream(emu, "update", window[:50])):
            run = sync(engine, emu, ["contacts"])["contacts"]
        assert (run.mode, run.status, run.error) == ("incremental", "succeeded", None)
        assert sync(engine, emu, ["contacts"])["contacts"].status == "succeeded"
        check_against_truth(table_rows(engine_query(engine), "contacts"), emu.truth("contacts"),
                            "changed during the read")


@vendors
def test_full_refresh_resumes_on_a_moved_api_host(vendor: Vendor, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    """A full refresh fails at its 4th page, read through one address of the API (a proxy
    here); the rerun is given another (a Salesforce instance_url from a token refresh, a
    changed --base-url). It must go on there, not at the old address."""
    with emulator(vendor, contacts=1_000, companies=5, deals=5) as emu, \
            open_engine(tmp_path) as engine, FaultProxy(emu.url, FaultPlan(rate=0.0)) as proxy:
        with on_read(emu, 4, refused(emu)):
            failed = engine.sync(vendor.name, streams=["contacts"], token=vendor.token,
                                 base_url=proxy.url,
                                 config={"lookback_seconds": 0, **vendor.config})[0]
        assert failed.status == "failed" and failed.records == 3 * vendor.list_page
        through_proxy = proxy.requests
        run = sync(engine, emu, ["contacts"])["contacts"]
        assert (run.status, run.error) == ("succeeded", None)
        assert proxy.requests == through_proxy, "the rerun read from the old address"
        check_against_truth(table_rows(engine_query(engine), "contacts"), emu.truth("contacts"),
                            "resumed on another host")
