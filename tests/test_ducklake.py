"""Landing in DuckLake (PostgreSQL catalog, local data path): the same rows as the DuckDB file,
several writers at once, a killed sync resumed, compaction. Real PostgreSQL from
scripts/services.sh (CI starts it; a developer machine without it skips, saying so)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

import sandbox
from engine import Engine
from engine.store import Batch, SyncRun
from engine.store.ducklake import DuckLakeTarget, extension_directory
from engine.sync import stream as sync_stream

TOKEN = "acme-private-app-token"
TABLES = ("contacts", "companies", "deals", "owners", "pipelines", "stages")


def lake_target(pg_dsn: str, tmp_path: Path) -> DuckLakeTarget:
    return DuckLakeTarget(f"postgres:{pg_dsn}", str(tmp_path / "lake"), "CRM_ENGINE_PG_PASSWORD")


@pytest.fixture(autouse=True)
def catalog_password(services, monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_PG_PASSWORD", services["CRM_ENGINE_PG_PASSWORD"])


class LakeReader:
    """What any DuckDB sees with ATTACH 'ducklake:postgres:...': one connection of its own,
    attached on first use, which sees each new commit (a query starts on the latest
    snapshot)."""

    def __init__(self, pg_dsn: str, password: str):
        self.catalog = f"postgres:{pg_dsn} password={password}"
        self.con: duckdb.DuckDBPyConnection | None = None

    def __call__(self, sql: str) -> list[tuple[Any, ...]]:
        if self.con is None:
            con = duckdb.connect()
            try:
                con.execute("SET extension_directory = ?", [str(extension_directory())])
                con.execute("SET TimeZone = 'UTC'")
                con.execute(f"ATTACH 'ducklake:{self.catalog}' AS lake (READ_ONLY)")
                con.execute("USE lake")
            except duckdb.Error:
                con.close()
                raise
            self.con = con
        return self.con.execute(sql).fetchall()


@pytest.fixture
def lake_reader(pg_dsn, services):
    reader = LakeReader(pg_dsn, services["CRM_ENGINE_PG_PASSWORD"])
    yield reader
    if reader.con is not None:
        reader.con.close()


def table_rows(query, table: str) -> list[tuple[Any, ...]]:
    """Every row and column but the landing time, in key order."""
    return query(f"SELECT * EXCLUDE (synced_at) FROM {table} ORDER BY connection, id")


def test_ducklake_lands_row_for_row_what_the_duckdb_file_lands(pg_dsn, lake_reader, tmp_path,
                                                               monkeypatch):
    lake = lake_reader
    monkeypatch.setattr(sync_stream, "BATCH_RECORDS", 40)  # several batches: merges over merges
    # The lake's engine maps pages in a mapping process (all but each read's first): the rows
    # it sends back merge into the lake as the file's engine's land in the file.
    engines = [Engine(db=str(tmp_path / "crm.duckdb"), home=tmp_path / "home"),
               Engine(db=lake_target(pg_dsn, tmp_path), home=tmp_path / "home",
                      map_processes=1)]
    file_engine, lake_engine = engines
    try:
        with sandbox.start("hubspot", contacts=100, companies=8, deals=12,
                           static_tokens=(TOKEN,)) as running:
            for step in ("first", "changed", "full refresh"):
                if step == "changed":  # an incremental run: creates, updates and deletes
                    running.emulator.mutate("contacts", create=7, update=20, delete=5)
                    running.emulator.mutate("deals", update=4, delete=2)
                for engine in engines:
                    runs = engine.sync("hubspot", "acme", streams=TABLES,
                                       auth_method="private_app",
                                       base_url=running.url, secrets={"token": TOKEN},
                                       config={"page_size": 15},  # several pages a read
                                       full_refresh=step == "full refresh")
                    assert {r.status for r in runs} == {"succeeded"}, [r.error for r in runs]
                for table in TABLES:
                    landed = table_rows(lake, table)
                    assert landed == table_rows(file_engine.store.query, table), (step, table)
                    assert len({row[1:3] for row in landed}) == len(landed)  # no duplicate
                # The same streams hold a cursor (its value is the CRM's clock when each engine
                # read, so it differs by the moments between the two syncs).
                state = ("SELECT connection, stream, state->>'cursor' IS NOT NULL FROM sync_state "
                         "ORDER BY ALL")
                assert lake(state) == file_engine.store.query(state)
            truth = running.emulator.truth("contacts")
        live = sorted(str(r["id"]) for r in truth["records"] if not r["deleted"])
        assert len(live) == 100 + 7 - 5
        assert lake("SELECT id FROM contacts WHERE is_deleted IS NOT true ORDER BY id") == [
            (i,) for i in live]

        # Compaction merges the many small files each commit left, and changes no row.
        before = {t: table_rows(lake, t) for t in TABLES}
        done = lake_engine.store.compact()
        assert done["files_after"] < done["files_before"], done
        assert {t: table_rows(lake, t) for t in TABLES} == before
    finally:
        for engine in engines:
            engine.close()


def test_a_commit_that_loses_a_conflict_is_done_again_and_lands_once(pg_dsn, tmp_path):
    """Two stores (two processes' worth: each its own DuckDB and catalog connection) write the
    same stream's state; the one that commits second conflicts, and its whole transaction
    (batch, state, counters) is done again on top of the other's."""
    lake = lake_target(pg_dsn, tmp_path)
    first, second = lake.open(), lake.open()
    try:
        from engine.models import unified_models

        model = unified_models()["contact"]
        run = SyncRun("hubspot", "acme", "contacts")
        first.start_run(run)
        first.land(_batch(model, ["a", "b"]), run, state={"n": 0})
        attempts = []

        def work(con: duckdb.DuckDBPyConnection) -> None:
            attempts.append(len(attempts))
            first._save_states(con, [(run, {"n": 2})])
            if len(attempts) == 1:  # meanwhile another process commits the same row
                second.land(_batch(model, ["b", "c"]), run, state={"n": 1})

        first._write(work)
        assert len(attempts) == 2  # the conflict made it go again
        assert first.state("acme", "contacts") == {"n": 2}
        assert first.query("SELECT id FROM contacts ORDER BY id") == [("a",), ("b",), ("c",)]
        assert first.query("SELECT count(*) FROM sync_state") == [(1,)]
    finally:
        first.close()
        second.close()


def _batch(model, ids: list[str]) -> Batch:
    batch = Batch(model)
    for record_id in ids:
        for name, values in batch.columns.items():
            values.append(record_id if name == "id" else None)
    return batch


def write_project(tmp_path: Path, name: str, pg_dsn: str, connections: dict[str, str]) -> Path:
    entries = "".join(f"""
          {connection}:
            connector: hubspot
            auth: private_app
            secrets: {{token: {{env: HUBSPOT_TOKEN}}}}
            base_url: {url}
            config: {{page_size: 10}}
        """ for connection, url in connections.items())
    path = tmp_path / name
    path.write_text(textwrap.dedent(f"""\
        target:
          ducklake:
            catalog: "postgres:{pg_dsn}"
            password: {{env: CRM_ENGINE_PG_PASSWORD}}
            data_path: lake
        max_concurrency: 3
        connections:""") + textwrap.indent(textwrap.dedent(entries), "  "))
    return path


def cli_env(tmp_path: Path, services: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRM_ENGINE_")}
    return {**base, "CRM_ENGINE_HOME": str(tmp_path / "home"), "HUBSPOT_TOKEN": TOKEN,
            "CRM_ENGINE_PG_PASSWORD": services["CRM_ENGINE_PG_PASSWORD"]}


def test_two_processes_landing_at_once_lose_nothing(pg_dsn, services, lake_reader, tmp_path):
    with (sandbox.start("hubspot", contacts=90, companies=6, deals=8,
                        static_tokens=(TOKEN,)) as acme,
          sandbox.start("hubspot", contacts=70, companies=9, deals=5,
                        static_tokens=(TOKEN,)) as globex):
        first = write_project(tmp_path, "first.yaml", pg_dsn,
                              {"acme-1": acme.url, "globex-1": globex.url, "acme-2": acme.url})
        second = write_project(tmp_path, "second.yaml", pg_dsn,
                               {"globex-2": globex.url, "acme-3": acme.url,
                                "globex-3": globex.url})
        env = cli_env(tmp_path, services)
        processes = [subprocess.Popen([sys.executable, "-m", "engine", "-v", "--project",
                                       str(p), "sync", "--all", "--json"], cwd=tmp_path,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True) for p in (first, second)]
        outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    lake = lake_reader
    expected = {"contacts": (90, 70), "companies": (6, 9), "deals": (8, 5)}
    for table, (acme_count, globex_count) in expected.items():
        landed = dict(lake(f"SELECT connection, count(*) FROM {table} GROUP BY ALL"))
        assert landed == {"acme-1": acme_count, "acme-2": acme_count, "acme-3": acme_count,
                          "globex-1": globex_count, "globex-2": globex_count,
                          "globex-3": globex_count}, table
        assert lake(f"SELECT count(*) - count(DISTINCT (connection, id)) FROM {table}") == [
            (0,)]
    runs = lake("SELECT status, count(*) FROM sync_runs GROUP BY ALL")
    assert runs == [("succeeded", 6 * 10)]  # six connections of ten streams


# The CLI in a subprocess, with batches of 50 records (so a kill can come after a few landed).
SMALL_BATCHES = """
import sys
import engine.sync.stream
from engine.cli import main
engine.sync.stream.BATCH_RECORDS = 50
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_sync_resumes_from_its_last_landed_batch(pg_dsn, services, lake_reader,
                                                          tmp_path):
    """SIGKILL after the first batches of contacts landed: the rerun marks the dead run
    abandoned, reads on from the saved page (not from the start) and lands every record
    once."""
    contacts = 400
    with sandbox.start("hubspot", contacts=contacts, companies=2, deals=2, latency_ms=40,
                       static_tokens=(TOKEN,)) as running:
        write_project(tmp_path, "crm-engine.yaml", pg_dsn, {"acme": running.url})
        argv = [sys.executable, "-c", SMALL_BATCHES, "sync", "acme", "--streams", "contacts",
                "--json"]
        env = cli_env(tmp_path, services)
        process = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        landed = _wait_for_rows(process, lake_reader)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert 0 < landed < contacts
        served = running.app.requests_served
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        resumed_requests = running.app.requests_served - served
    assert done.returncode == 0, done.stderr[-3000:]
    runs = lake_reader("SELECT status, records FROM sync_runs ORDER BY started")
    assert [status for status, _ in runs] == ["abandoned", "succeeded"]
    # The rerun read on from the last landed page: it landed only what was missing, and
    # read no more pages than those (10 records a page, each with its v4 company-links read),
    # plus the deletes request.
    assert runs[1][1] <= contacts - landed
    assert resumed_requests <= 2 * ((contacts - landed) // 10 + 1) + 1, resumed_requests
    assert lake_reader("SELECT count(*), count(DISTINCT id) FROM contacts") == [
        (contacts, contacts)]

    # The project's target is where `status` and `compact` look too.
    status = subprocess.run([sys.executable, "-m", "engine", "status", "--json"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)
    assert (row["connection"], row["stream"], row["status"]) == ("acme", "contacts",
                                                                 "succeeded")
    compact = subprocess.run([sys.executable, "-m", "engine", "compact", "--keep-hours", "0"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert compact.returncode == 0, compact.stderr
    done = json.loads(compact.stdout)
    assert done["files_after"] < done["files_before"] and done["snapshots_expired"] > 0, done
    assert lake_reader("SELECT count(*), count(DISTINCT id) FROM contacts") == [
        (contacts, contacts)]


def test_status_shows_a_run_in_progress_as_running_not_stopped(pg_dsn, services, lake_reader,
                                                               tmp_path):
    """Other processes read a lake while it is written: a run in the middle of its read is
    `running`, not marked as one stopped there for the next run to go on from."""
    with sandbox.start("hubspot", contacts=300, companies=2, deals=2, latency_ms=150,
                       static_tokens=(TOKEN,)) as running:
        write_project(tmp_path, "crm-engine.yaml", pg_dsn, {"acme": running.url})
        env = cli_env(tmp_path, services)
        process = subprocess.Popen(
            [sys.executable, "-c", SMALL_BATCHES, "sync", "acme", "--streams", "contacts"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_rows(process, lake_reader)
            status = subprocess.run([sys.executable, "-m", "engine", "status"], cwd=tmp_path,
                                    env=env, capture_output=True, text=True, timeout=120)
            still_running = process.poll() is None
        finally:
            process.communicate(timeout=120)
    assert status.returncode == 0 and still_running, status.stderr
    [row] = [line for line in status.stdout.splitlines() if line.startswith("acme ")]
    assert " running " in row and "*" not in row, status.stdout
    assert "stopped in the middle" not in status.stdout


def _wait_for_rows(process: subprocess.Popen[str], lake_reader) -> int:
    """Rows of contacts, once some have landed (the first batch) and the sync is still
    running."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the sync ended before it was killed: {process.stderr.read()[-2000:]}")
        try:
            [(count,)] = lake_reader("SELECT count(*) FROM contacts")
        except (duckdb.CatalogException, duckdb.InvalidInputException):  # not created yet
            count = 0
        if count:
            return count
        time.sleep(0.2)
    pytest.fail("no batch landed within 120 s")


def test_the_store_reads_its_catalog_password_from_the_environment_only(pg_dsn, tmp_path,
                                                                        monkeypatch):
    monkeypatch.delenv("CRM_ENGINE_PG_PASSWORD")
    from engine.errors import InputError

    with pytest.raises(InputError, match="CRM_ENGINE_PG_PASSWORD: is not set"):
        lake_target(pg_dsn, tmp_path).open()
    monkeypatch.setenv("CRM_ENGINE_PG_PASSWORD", "not-the-password-1234")
    with pytest.raises(Exception) as failed:
        lake_target(pg_dsn, tmp_path).open()
    message = str(failed.value)
    assert "cannot open ducklake:postgres:" in message and "\n" not in message
    assert "not-the-password-1234" not in message


