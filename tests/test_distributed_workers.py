"""The distributed mode end to end: three `crm-engine worker` processes on a private Redis
sync 50 connections (each its own account: its own emulator) from `crm-engine enqueue --all`
into DuckLake; one worker is killed with SIGKILL in the middle of a unit. The DuckLake tables
equal a single-process `crm-engine sync --all` of the same connections into a DuckDB file,
with no duplicate and no gap; no emulator answered a 429; the connection whose token expires
mid-run refreshed it once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

import sandbox
from engine import Engine
from engine.cli import main as cli
from sandbox.demo import connect_oauth
from tests.redis_service import redis_server
from tests.test_ducklake import LakeReader, table_rows

ROOT = Path(__file__).resolve().parent.parent
DATA = {"contacts": 250, "companies": 60, "deals": 60}
# Each vendor's own limit, tightened (the YAML's are the documented ones, above these): the
# budget learns these from the rate-limit headers, and three workers share it.
TIGHT = {"hubspot": {"rate_limit": (10, 1.0)}, "pipedrive": {"rate_limit": (10, 2.0)}}
PLAN = [("hubspot", 18), ("pipedrive", 17), ("salesforce", 7), ("zoho", 7)]
EXPIRING = "pipedrive-expiring"  # its token expires while its streams sync
WORKERS, THREADS = 3, 2
TABLES = ("contacts", "companies", "deals")


def start_emulator(vendor: str, latency_ms: float):
    cls = sandbox.EMULATORS[vendor]
    options = {**cls.DEMO_OPTIONS, **TIGHT.get(vendor, {})}
    emulator = cls(**DATA, **options, latency_ms=latency_ms)
    return emulator, emulator.start()


def wait_for(what: str, done, timeout: float, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


@pytest.fixture
def accounts(tmp_path, monkeypatch, pg_dsn, services):
    """50 emulated accounts, each connected through its vendor's OAuth flow, and two project
    files naming them: landing in a DuckDB file, and in DuckLake. Yields (emulators by
    connection, the file's project, the lake's project, home)."""
    home = tmp_path / "home"
    monkeypatch.setenv("CRM_ENGINE_HOME", str(home))
    monkeypatch.setenv("CRM_ENGINE_PG_PASSWORD", services["CRM_ENGINE_PG_PASSWORD"])
    emulators, running = {}, []
    engine = Engine(home=home)
    plan = [(EXPIRING, "pipedrive", 60.0)] + [
        (f"{vendor}-{i:02d}", vendor, 5.0) for vendor, n in PLAN for i in range(n)]
    assert len(plan) == 50
    try:
        for name, vendor, latency in plan:
            emulator, served = start_emulator(vendor, latency)
            running.append(served)
            connect_oauth(engine, vendor, emulator, served.url, name)
            emulators[name] = emulator
        connections = "connections:\n" + "".join(
            f"  {name}: {{connector: {vendor}, streams: [{', '.join(TABLES)}]}}\n"
            for name, vendor, _ in plan)
        single = tmp_path / "single.yaml"
        single.write_text("database: single.duckdb\n" + connections)
        lake = tmp_path / "lake.yaml"
        lake.write_text(textwrap.dedent(f"""\
            target:
              ducklake:
                catalog: "postgres:{pg_dsn}"
                password: {{env: CRM_ENGINE_PG_PASSWORD}}
                data_path: lake
            """) + connections)
        yield emulators, single, lake, home
    finally:
        engine.close()
        for served in running:
            served.close()


def test_three_workers_one_killed_land_what_one_process_lands(accounts, tmp_path, pg_dsn,
                                                              services):
    emulators, single, project, home = accounts
    # The single-process sync the workers must equal.
    started = time.monotonic()
    assert cli(["sync", "--all", "--project", str(single), "-q", "--max-concurrency", "4"]) == 0
    for emulator in emulators.values():
        emulator.app.stats.reset()
    print(f"single process: {time.monotonic() - started:.1f}s")
    started = time.monotonic()

    with redis_server(tmp_path / "redis") as redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
        env = {**os.environ, "CRM_ENGINE_REDIS_URL": redis_url, "CRM_ENGINE_HOME": str(home),
               "CRM_ENGINE_VISIBILITY_TIMEOUT": "10", "CRM_ENGINE_UNIT_LEASE": "5",
               "CRM_ENGINE_PG_PASSWORD": services["CRM_ENGINE_PG_PASSWORD"],
               "PYTHONPATH": str(ROOT)}
        logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(WORKERS)]  # noqa: SIM115
        # The first worker, to be killed, syncs one unit at a time: what its log shows after
        # it took a unit's lock is that unit's progress.
        workers = [subprocess.Popen(
            [sys.executable, "-m", "engine", "worker", "--project", str(project),
             "--concurrency", str(1 if i == 0 else THREADS), "-v"],
            env=env, stdout=logs[i], stderr=subprocess.STDOUT, cwd=tmp_path)
            for i in range(WORKERS)]
        try:
            enqueued = subprocess.run(
                [sys.executable, "-m", "engine", "enqueue", "--all", "--project", str(project)],
                env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
            assert enqueued.returncode == 0, enqueued.stderr
            assert enqueued.stdout.strip() == "enqueued 150 units of 50 connections"

            # The expiring connection's token expires once its streams are under way.
            expiring = emulators[EXPIRING]
            wait_for("the expiring connection's first requests",
                     lambda: expiring.app.stats.requests_served >= 4, 60, 0.01)
            expiring.expire_all_tokens()
            # The kill waits for the refresh to be stored: Pipedrive rotates refresh tokens, so
            # a worker killed between the vendor's answer and storing it takes the only live
            # refresh token with it (the connection must then be connected again, and says so:
            # nothing can keep a token the vendor sent to a process that died).
            credentials = Engine(home=home).credentials
            wait_for("the rotated refresh token, stored", lambda: (
                expiring.app.stats.count("oauth.token") == 1
                and expiring.oauth.refresh_token_info(
                    credentials.load(EXPIRING).credentials.refresh_token) is not None), 60, 0.05)

            # Kill the first worker in the middle of a unit: it holds the unit's lock (whose
            # value names the holder) and has sent that unit's requests since taking it.
            victim = workers[0]
            held: list[bytes] = []

            def victims_lock() -> bytes | None:
                return next((value for key in client.scan_iter("crm-engine:unit:*")
                             if f":{victim.pid}:".encode() in (value := client.get(key) or b"")),
                            None)

            def requests_sent() -> int:
                return (tmp_path / "worker0.log").read_text().count("HTTP Request")

            def mid_unit() -> bool:
                lock = victims_lock()
                if lock is None:
                    return False
                if not held or held[0] != lock:
                    held[:] = [lock, requests_sent()]
                    return False
                return requests_sent() >= held[1] + 2

            wait_for("the first worker to be in the middle of a unit", mid_unit, 60, 0.01)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            victims_log = (tmp_path / "worker0.log").read_text()
            taken = set(re.findall(r"sync_unit\[([0-9a-f-]+)\] received", victims_log))
            unfinished = taken - set(re.findall(r"sync_unit\[([0-9a-f-]+)\] succeeded",
                                                victims_log))
            assert unfinished  # the task it was running, never acknowledged

            wait_for("every unit to be done",
                     lambda: sum(1 for _ in client.scan_iter("crm-engine:done:*")) >= 150,
                     300, 0.25)
            print(f"three workers, one killed: {time.monotonic() - started:.1f}s")
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
            for log in logs:
                log.close()
            client.close()

    # No vendor refused a request for its rate limit, across three workers.
    statuses = {name: e.app.stats.statuses for name, e in emulators.items()}
    assert sum(s[429] for s in statuses.values()) == 0, statuses
    assert {n for n, s in statuses.items() if any(k >= 400 for k in s)} <= {EXPIRING}
    # One refresh for the one expiry, whichever worker noticed it first; the rotated refresh
    # token is the one stored.
    assert statuses[EXPIRING][401] >= 1  # the expiry was noticed (by each unit under way)
    assert expiring.app.stats.count("oauth.token") == 1
    stored = Engine(home=home).credentials.load(EXPIRING)
    assert expiring.oauth.refresh_token_info(stored.credentials.refresh_token) is not None

    lake = LakeReader(pg_dsn, services["CRM_ENGINE_PG_PASSWORD"])
    runs = lake("SELECT connection, stream, status, count(*) FROM sync_runs GROUP BY ALL")
    succeeded = {(c, s) for c, s, status, _ in runs if status == "succeeded"}
    assert succeeded >= {(name, table) for name in emulators for table in TABLES}
    # Deals units also land the reference streams their stage labels are looked up in.
    assert {s for _, s in succeeded} - set(TABLES) <= {"owners", "pipelines", "stages"}
    assert {status for *_, status, _ in runs} <= {"succeeded", "abandoned"}, runs
    # The SIGKILL hit a unit (its run was left `running`), and another worker finished it.
    assert sum(n for *_, status, n in runs if status == "abandoned") >= 1, runs
    survivors = (tmp_path / "worker1.log").read_text() + (tmp_path / "worker2.log").read_text()
    for task in unfinished:  # redelivered to another worker, which finished it
        assert f"sync_unit[{task}] succeeded" in survivors, task

    with duckdb.connect(str(tmp_path / "single.duckdb"), read_only=True) as con:
        for table in TABLES:
            expected = table_rows(lambda sql: con.execute(sql).fetchall(), table)
            assert {r[1] for r in expected} == set(emulators), table  # every connection
            landed = table_rows(lake, table)
            keys = [(r[1], r[2]) for r in landed]
            assert len(keys) == len(set(keys)), f"{table}: duplicates"
            assert landed == expected, table
    lake.con.close()
