"""Units of the distributed mode without Celery's processes: what `enqueue` and beat send, and
running one unit again (a duplicate delivery, or one while another worker runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sandbox
from engine import Engine
from engine.project import load_project
from tests.redis_service import redis_server
from tests.test_ducklake import LakeReader

TOKEN = "acme-private-app-token"


def write_project(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crm-engine.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def crm(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_ENGINE_")}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=tmp_path,
                          env={**env, "CRM_ENGINE_HOME": str(tmp_path / "home"),
                               "CRM_ENGINE_REDIS_URL": "redis://127.0.0.1:9/0"},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def project(tmp_path):
    return write_project(tmp_path, """\
        target:
          ducklake: {catalog: "postgres:host=127.0.0.1 port=9 dbname=lake", data_path: lake/}
        connections:
          acme:
            connector: hubspot
            secrets: {token: {env: ACME_TOKEN}}
            base_url: http://127.0.0.1:9
            streams: [contacts]
            schedule: "*/15 9-17 * * mon-fri"
          globex:
            connector: pipedrive
            secrets: {api_token: {env: GLOBEX_TOKEN}}
        """)


def test_units_are_each_connections_streams(project):
    pytest.importorskip("celery")
    from engine.distributed.units import Unit, units

    loaded = load_project(project)
    pipedrive = ("contacts", "companies", "deals", "owners", "pipelines", "stages", "tasks",
                 "calls", "meetings", "notes")  # connectors/pipedrive.yaml's streams, in order
    assert units(loaded, Engine()) == [
        Unit("acme", "contacts"), *(Unit("globex", stream) for stream in pipedrive)]
    assert units(loaded, Engine(), ["globex"], ["deals"]) == [Unit("globex", "deals")]


def test_beat_sends_each_unit_of_a_scheduled_connection_on_its_cron(project):
    pytest.importorskip("celery")
    from engine.distributed.units import units
    from engine.distributed.worker import SYNC_UNIT, beat_schedule

    loaded = load_project(project)
    schedule = beat_schedule(loaded, units(loaded, Engine()))
    assert list(schedule) == ["acme/contacts"]  # globex has no schedule
    entry = schedule["acme/contacts"]
    assert (entry["task"], entry["args"]) == (SYNC_UNIT, ["acme", "contacts"])
    cron = entry["schedule"]  # every quarter hour from 9:00 to 17:45, Monday to Friday
    assert (cron.minute, cron.hour, cron.day_of_week) == (
        {0, 15, 30, 45}, set(range(9, 18)), {1, 2, 3, 4, 5})


def test_a_cron_expression_celery_cannot_read_is_a_one_line_error(tmp_path):
    pytest.importorskip("celery")
    path = write_project(tmp_path, """\
        target:
          ducklake: {catalog: "postgres:host=127.0.0.1 port=9 dbname=lake", data_path: lake/}
        connections:
          acme: {connector: hubspot, schedule: "0 3 L * *"}
        """)
    result = crm(tmp_path, "beat", "--project", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: connections.acme.schedule: Celery cannot read cron expression "
        "'0 3 L * *': Invalid weekday literal 'L'."]


@pytest.mark.parametrize(("args", "message"), [
    (["enqueue"], "error: --all: give --all or connection names (one of them)"),
    (["enqueue", "--all", "acme"], "error: --all: give --all or connection names (one of them)"),
    (["enqueue", "initech"], "error: CONNECTION: not connections of {project}: initech"),
    (["enqueue", "acme", "--streams", "leads"],
     "error: --streams: hubspot has no stream 'leads' (streams: contacts, companies, deals, "
     "owners, pipelines, stages, tasks, calls, notes, meetings)"),
])
def test_enqueue_says_what_is_wrong_in_one_line(tmp_path, project, args, message):
    pytest.importorskip("celery")
    result = crm(tmp_path, *args, "--project", str(project))
    assert result.returncode == 2
    assert result.stderr.strip() == message.format(project=project)


def test_the_distributed_commands_need_a_project_file(tmp_path):
    for command in (["worker"], ["enqueue", "--all"], ["beat"]):
        result = crm(tmp_path, *command)
        assert result.returncode == 2
        assert result.stderr.strip().startswith("error: --project: the distributed mode "
                                                "syncs a project file"), result.stderr


def test_workers_enqueue_and_beat_need_a_ducklake_target(tmp_path):
    """Not only the worker: units sent for a DuckDB file would wait in the broker for a worker
    that cannot run them."""
    pytest.importorskip("celery")
    project = write_project(tmp_path, """\
        database: crm.duckdb
        connections:
          acme: {connector: hubspot, schedule: "0 * * * *"}
        """)
    for command in (["worker"], ["enqueue", "--all"], ["beat"]):
        result = crm(tmp_path, *command, "--project", str(project))
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.strip() == (
            f"error: target: {project} has no DuckLake `target`: workers on many machines land "
            f"in DuckLake (a DuckDB file has one writer: use `crm-engine sync` for it)")


def test_a_broker_that_cannot_be_reached_fails_enqueue_loudly(tmp_path, project):
    pytest.importorskip("celery")
    result = crm(tmp_path, "enqueue", "--all", "--project", str(project))
    assert result.returncode == 1
    assert "enqueued" not in result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the Redis broker at redis://127.0.0.1:9/0: ")


@pytest.fixture
def hubspot():
    with sandbox.start("hubspot", contacts=30, companies=3, deals=3,
                       static_tokens=(TOKEN,)) as running:
        yield running


def test_a_unit_runs_once_per_delivery_and_never_beside_itself(tmp_path, hubspot, monkeypatch,
                                                              pg_dsn, services):
    monkeypatch.setenv("CRM_ENGINE_PG_PASSWORD", services["CRM_ENGINE_PG_PASSWORD"])
    with redis_server(tmp_path / "redis") as redis_url:
        from engine.distributed.settings import Settings
        from engine.distributed.shared import SharedState
        from engine.distributed.units import Runtime, Unit, UnitBusy

        monkeypatch.setenv("ACME_TOKEN", TOKEN)
        path = write_project(tmp_path, f"""\
            target:
              ducklake:
                catalog: "postgres:{pg_dsn}"
                password: {{env: CRM_ENGINE_PG_PASSWORD}}
                data_path: lake
            connections:
              acme:
                connector: hubspot
                secrets: {{token: {{env: ACME_TOKEN}}}}
                base_url: {hubspot.url}
            """)
        settings = Settings(redis_url=redis_url, unit_lease=5)
        runtime = Runtime(load_project(path), settings)
        unit = Unit("acme", "contacts")
        served = hubspot.emulator.app.stats

        first = runtime.run(unit, "task-1")
        assert (first.status, first.records) == ("succeeded", 30)
        before = served.requests_served
        # The broker delivers the same task again (its acknowledgement was lost): acknowledged
        # without a request.
        assert runtime.run(unit, "task-1") is None
        assert served.requests_served == before
        # Another worker runs the unit: this delivery waits its turn, sending nothing.
        other = SharedState.connect(settings)
        with other.unit_lock("acme", "contacts") as held:
            assert held
            with pytest.raises(UnitBusy):
                runtime.run(unit, "task-2")
        assert served.requests_served == before
        # Its turn: a new task reads what changed since its cursor (within the lookback),
        # landing no duplicate.
        again = runtime.run(unit, "task-2")
        assert (again.status, again.mode) == ("succeeded", "incremental")
        runtime.close()
        other.client.close()
        lake = LakeReader(pg_dsn, services["CRM_ENGINE_PG_PASSWORD"])
        assert lake("SELECT count(*), count(DISTINCT id) FROM contacts") == [(30, 30)]
        lake.con.close()
