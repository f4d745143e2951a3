"""Pages mapped in mapping processes (`Engine(map_processes=N)`, `sync --map-processes N`):
the same rows, links, lookups, raw records and warnings as mapping in one process; a mapping
process that dies fails its read loudly, and a rerun lands every record."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.engine import PROJECT_ROOT
from sandbox.hubspot import HubSpotSandbox
from tests.support import ItemsServer, connector_yaml, write_specs

CONNECTORS = PROJECT_ROOT / "connectors"
TOKEN = "sandbox-private-app-token"


@pytest.fixture(scope="module")
def hubspot():
    # Activities of every kind, more than a page each: they too map in a mapping process.
    emulator = HubSpotSandbox(contacts=230, companies=30, deals=90, tasks=90, calls=90,
                              notes=50, meetings=50, rate_limit=(100_000, 10.0))
    # A value the mapping cannot read, on a deals page past the first (40 a page): its
    # warning comes back from the mapping process.
    list(emulator.store.active_records("deals"))[60].properties["closedate"] = "not a date"
    with emulator.start() as running:
        yield emulator, running


def sync(engine, url: str, streams: list[str] | None, connection: str = "acct"):
    return engine.sync("hubspot", connection, streams=streams, token=TOKEN, base_url=url,
                       # 40 a page: several pages a read, the first mapped here, the rest not
                       config={"page_size": 40, "raw_records": True})


def landed(engine, table: str) -> list[tuple]:
    columns = [name for (name,) in engine.store.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "AND column_name != 'synced_at' ORDER BY ordinal_position", [table])]
    return sorted(engine.store.query(f"SELECT {', '.join(columns)} FROM {table}"), key=repr)


def test_a_mapping_process_lands_what_one_process_lands(make_engine, hubspot, caplog, capfd):
    emulator, running = hubspot
    here = make_engine(CONNECTORS, db="here.duckdb")
    pooled = make_engine(CONNECTORS, db="pooled.duckdb", map_processes=2)
    runs_here = sync(here, running.url, None)
    caplog.clear()
    with caplog.at_level("WARNING", logger="crm_engine"):
        runs_pooled = sync(pooled, running.url, None)
    # The mapping process's log goes to the engine's (its format, its -q), not to stderr.
    assert [r for r in caplog.records if "close_date" in r.getMessage()]
    assert "close_date" not in capfd.readouterr().err
    summary = [(r.stream, r.status, r.records, r.pages, r.warnings) for r in runs_here]
    assert summary == [(r.stream, r.status, r.records, r.pages, r.warnings) for r in runs_pooled]
    by_stream = {r.stream: r for r in runs_pooled}
    assert all(r.status == "succeeded" for r in runs_pooled), summary
    assert by_stream["contacts"].records == emulator.store.count("contacts") == 230
    assert by_stream["contacts"].pages == 6
    assert [w for w in by_stream["deals"].warnings if "close_date" in w], by_stream["deals"]
    # Every table: deals look up their stages, activities keep their kind, contacts and deals
    # carry links; raw records everywhere.
    tables = [t for (t,) in pooled.store.query(
        "SELECT table_name FROM information_schema.tables WHERE table_name NOT IN "
        "('sync_runs', 'sync_state', 'action_log') ORDER BY 1")]
    for table in tables:
        assert landed(pooled, table) == landed(here, table), table
    for table in ("contacts", "companies", "deals", "stages", "associations"):
        assert landed(pooled, table), table
    for table, seeded in (("tasks", 90), ("calls", 90), ("notes", 50), ("meetings", 50)):
        assert len(landed(pooled, table)) == seeded, table
    assert pooled.store.query("SELECT count(*) FROM contacts WHERE raw IS NULL") == [(0,)]


def test_a_killed_mapping_process_fails_the_read_and_a_rerun_lands_everything(make_engine,
                                                                           hubspot):
    emulator, running = hubspot
    engine = make_engine(CONNECTORS, map_processes=1)

    class KillAtThirdPage:
        def stream_started(self, run): pass
        def stream_finished(self, run): pass

        def page_read(self, run):
            if run.pages == 3:
                for pid in engine.mapping_pool.pids():
                    os.kill(pid, signal.SIGKILL)

    [failed] = engine.sync("hubspot", "acct", streams=["contacts"], token=TOKEN,
                           base_url=running.url, config={"page_size": 40},
                           progress=KillAtThirdPage())
    assert failed.status == "failed" and "mapping process stopped" in failed.error
    # What was read and mapped before the kill is not landed as if the read had gone on.
    assert engine.store.query("SELECT count(*) FROM contacts")[0][0] < failed.fetched
    [rerun] = sync(engine, running.url, ["contacts"])
    assert rerun.status == "succeeded", rerun.error
    assert engine.store.query("SELECT count(DISTINCT id) FROM contacts WHERE NOT is_deleted") \
        == [(emulator.store.count("contacts"),)]


def test_a_mapping_process_gets_none_of_the_secrets_in_the_environment(make_engine, hubspot,
                                                                        monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_HUBSPOT_TOKEN", "secret-token-value")
    monkeypatch.setenv("ACME_HUBSPOT_TOKEN", "another-secret-value")
    engine = make_engine(CONNECTORS, map_processes=1)
    engine.mapping_pool.start()
    [pid] = engine.mapping_pool.pids()
    environment = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"secret-token-value" not in environment
    assert b"another-secret-value" not in environment
    assert b"PYTHONPATH=" in environment


def test_a_mapping_file_edited_during_a_sync_changes_nothing_mapped_elsewhere(
        tmp_path, make_engine, hubspot):
    """The processes compile the mapping the engine loaded, not the file as it is by then (a
    deploy, an editor): one sync's pages all map alike, as in one process."""
    _, running = hubspot
    connectors = tmp_path / "connectors"
    connectors.mkdir()
    shutil.copy(CONNECTORS / "hubspot.yaml", connectors)
    shutil.copytree(CONNECTORS.parent / "mappings", tmp_path / "mappings")
    here = make_engine(connectors, db="here.duckdb")
    pooled = make_engine(connectors, db="pooled.duckdb", map_processes=1)
    [run_here] = sync(here, running.url, ["contacts"])
    pooled.connector("hubspot")  # loaded, as a sync loads it first
    mapping = tmp_path / "mappings" / "hubspot.yaml"
    edited = mapping.read_text().replace("last_name: properties.lastname",
                                         "last_name: properties.firstname")
    assert edited != mapping.read_text()
    mapping.write_text(edited)
    [run_pooled] = sync(pooled, running.url, ["contacts"])
    assert run_pooled.status == "succeeded" and run_pooled.pages == run_here.pages > 1
    assert landed(pooled, "contacts") == landed(here, "contacts")


def test_a_mapping_process_loads_neither_duckdb_nor_the_http_client(make_engine, hubspot):
    """Each costs a mapping process memory it never uses (DuckDB 30 MB; httpx and TLS 7 MB)."""
    _, running = hubspot
    engine = make_engine(CONNECTORS, map_processes=1)
    [run] = sync(engine, running.url, ["contacts"])
    assert run.status == "succeeded" and run.pages > 1  # pages were mapped over there
    [pid] = engine.mapping_pool.pids()
    libraries = Path(f"/proc/{pid}/maps").read_text()
    assert "_ssl" not in libraries and "libssl" not in libraries
    assert "duckdb" not in libraries


def test_a_script_without_a_main_guard_can_use_mapping_processes(tmp_path, hubspot):
    # multiprocessing's spawn would run this script again in each process; ours do not.
    _, running = hubspot
    script = tmp_path / "sync.py"
    script.write_text(textwrap.dedent(f"""
        from engine import Engine
        with Engine(db={str(tmp_path / "s.duckdb")!r}, home={str(tmp_path / "home")!r},
                    map_processes=1) as engine:
            [run] = engine.sync("hubspot", streams=["contacts"], token={TOKEN!r},
                                base_url={running.url!r}, config={{"page_size": 40}})
        print(run.status, run.records)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["succeeded", "230"]


def test_map_processes_below_zero_is_a_one_line_error(tmp_path, capsys):
    from engine.cli import main
    assert main(["sync", "hubspot", "--map-processes", "-1", "--db",
                 str(tmp_path / "x.duckdb")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--map-processes" in err and "0 or more" in err


def test_an_id_read_twice_keeps_its_last_record_mapped_in_either_process(tmp_path,
                                                                          make_engine):
    streams = """
        items:
          model: contact
          request: {method: GET, path: /cursor}
          records: items
          paginate: {style: cursor, cursor: next.after, param: after}
    """
    connectors = write_specs(tmp_path, connector_yaml(streams))
    with ItemsServer(30) as server:  # 10 a page: the first mapped here, the others not
        # Records that moved while the list was read: an id on the first page and the third,
        # and one on the second and the third. The later one is the record now.
        server.records[25] = {**server.records[5], "name": "moved from page 1"}
        server.records[28] = {**server.records[12], "name": "moved from page 2"}
        rows = []
        for processes in (0, 1):
            engine = make_engine(connectors, db=f"items-{processes}.duckdb",
                                 map_processes=processes)
            [run] = engine.sync("acme", streams=["items"], token="t", base_url=server.url)
            assert run.status == "succeeded", run.error
            rows.append(engine.store.query(
                "SELECT id, first_name, email FROM contacts ORDER BY id"))
    assert rows[0] == rows[1]
    by_id = {row[0]: row[1] for row in rows[1]}
    assert len(by_id) == 28
    assert by_id["00005"] == "moved from page 1" and by_id["00012"] == "moved from page 2"


def test_the_project_file_sets_mapping_processes_and_the_option_overrides_it(tmp_path,
                                                                             hubspot):
    _, running = hubspot
    (tmp_path / "crm-engine.yaml").write_text(textwrap.dedent(f"""\
        database: crm.duckdb
        map_processes: 1
        connections:
          acct:
            connector: hubspot
            secrets: {{token: {{env: ACCT_TOKEN}}}}
            base_url: {running.url}
            config: {{page_size: 40}}
            streams: [contacts]
        """))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CRM_ENGINE_")},
           "CRM_ENGINE_HOME": str(tmp_path / "home"), "ACCT_TOKEN": TOKEN}

    def sync_all(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", "sync", "--all", "-v",
                               *options], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)

    pooled = sync_all()
    assert pooled.returncode == 0, pooled.stderr[-2000:]
    assert "started a mapping process" in pooled.stderr
    here = sync_all("--map-processes", "0")
    assert here.returncode == 0, here.stderr[-2000:]
    assert "mapping process" not in here.stderr


def test_map_processes_in_the_project_file_is_checked_where_it_is(tmp_path):
    from engine.errors import SpecError
    from engine.project import load_project
    path = tmp_path / "crm-engine.yaml"
    path.write_text("database: crm.duckdb\nmap_processes: -1\nconnections:\n"
                    "  a: {connector: hubspot}\n")
    with pytest.raises(SpecError) as caught:
        load_project(path)
    [problem] = [str(p) for p in caught.value.problems]
    assert "crm-engine.yaml:2" in problem and "map_processes" in problem, problem
