"""What an operator meets: signals and dead processes, one-line errors, many threads on one
Engine, and the commands the CLI itself suggests. Real subprocesses, real DuckDB files."""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

import sandbox
from engine import Engine
from engine.cli import main
from engine.engine import api_base_url
from engine.store import DuckDBStore
from sandbox.demo import try_commands
from tests.support import ItemsServer, connector_yaml, write_specs

TOKEN = "t0ken-for-tests"
ITEMS = """
    items:
      model: contact
      request: {method: GET, path: /cursor, params: {limit: 10}}
      records: items
      paginate: {style: cursor, cursor: next.after, param: after}
"""
# Two requests a minute: the third page waits on the budget for most of a minute.
SLOW_BUDGET = "rate_limit: {requests: 2, per_seconds: 60}\n"


def sync_command(connectors: Path, server: ItemsServer, db: Path) -> list[str]:
    return [sys.executable, "-m", "engine", "sync", "acme", "--connectors-dir", str(connectors),
            "--base-url", server.url, "--db", str(db)]


def runs(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT status, records, error FROM sync_runs ORDER BY started"
                           ).fetchall()


def start_sync_and_wait_for_budget(connectors: Path, server: ItemsServer,
                                   db: Path) -> subprocess.Popen:
    env = {**os.environ, "CRM_ENGINE_ACME_TOKEN": TOKEN}
    process = subprocess.Popen(sync_command(connectors, server, db), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while server.app.requests_served < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.app.requests_served == 2, "the sync never reached its rate budget"
    time.sleep(0.5)  # now waiting on the budget for the third page
    return process


def test_sigterm_lands_what_was_read_and_exits_within_two_seconds(tmp_path):
    with ItemsServer(30) as server:
        connectors = write_specs(tmp_path, connector_yaml(ITEMS, extra=SLOW_BUDGET))
        db = tmp_path / "crm.duckdb"
        process = start_sync_and_wait_for_budget(connectors, server, db)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
        took = time.monotonic() - sent
    assert process.returncode == 128 + signal.SIGTERM and took < 2.0, (took, err)
    assert "Traceback" not in err and "interrupted" in err
    [(status, records, error)] = runs(db)
    assert (status, records) == ("interrupted", 20) and "rerun" in error
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM contacts").fetchone()[0] == 20


@pytest.mark.parametrize("streams", [["contacts"], ["contacts", "companies"]])
def test_ctrl_c_at_any_moment_lands_what_was_read_and_counts_it_once(tmp_path, streams):
    """SIGINT wherever a sync happens to be (mid-request, mid-mapping, waiting for a batch to
    land), with one stream or several: each run says `interrupted` (none is left `running`),
    its count is what landed, no traceback, and the rerun completes every table."""
    rng = random.Random(7)
    records = 10_000
    with sandbox.start("hubspot", contacts=records, companies=records, deals=2,
                       rate_limit=(1_000_000, 10.0)) as hubspot:
        env = {**os.environ, "CRM_ENGINE_HOME": str(tmp_path / "home"),
               "CRM_ENGINE_HUBSPOT_TOKEN": hubspot.emulator.static_token}
        for attempt in range(6):
            db = tmp_path / f"crm{attempt}.duckdb"
            command = [sys.executable, "-m", "engine", "sync", "hubspot", "--streams",
                       ",".join(streams), "--base-url", hubspot.url, "--db", str(db)]
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 30
            while not db.exists() and time.monotonic() < deadline:  # the sync has begun
                time.sleep(0.01)
            time.sleep(rng.uniform(0.05, 0.35))
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=20)
            assert "Traceback" not in err, err
            with duckdb.connect(str(db), read_only=True) as con:
                for stream in streams:
                    [(status, counted)] = con.execute(
                        "SELECT status, records FROM sync_runs WHERE stream = ?", [stream]
                    ).fetchall()
                    landed = con.execute(f"SELECT count(*) FROM {stream}").fetchone()[0]
                    assert (status, counted) in (("interrupted", landed),
                                                 ("succeeded", records)), (attempt, stream, err)
            rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
            assert rerun.returncode == 0, rerun.stderr
            with duckdb.connect(str(db), read_only=True) as con:
                for stream in streams:
                    assert con.execute(f"SELECT count(DISTINCT id) FROM {stream}").fetchone()[0] \
                        == records


def test_an_action_interrupted_mid_request_warns_that_it_may_have_been_applied(tmp_path):
    """Not the sync's "run it again": a create sent twice makes two records."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes the request, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        process = subprocess.Popen(
            [sys.executable, "-m", "engine", "action", "hubspot", "create_task", "--base-url", url,
             "--data", '{"subject": "Call Ada", "due_date": "2026-12-15"}'],
            env={**os.environ, "CRM_ENGINE_HUBSPOT_TOKEN": TOKEN,
                 "CRM_ENGINE_HOME": str(tmp_path / "home")},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        silent.settimeout(30)
        connection, _ = silent.accept()
        with connection:
            connection.recv(65536)  # the request is in
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=10)
    assert process.returncode == 130
    assert err.strip() == ("interrupted: the request may have reached the CRM; check there "
                           "before running the action again (a create could be made twice)")


def test_a_run_whose_process_was_killed_is_marked_abandoned_by_the_next(tmp_path):
    with ItemsServer(30) as server:
        connectors = write_specs(tmp_path, connector_yaml(ITEMS, extra=SLOW_BUDGET))
        db = tmp_path / "crm.duckdb"
        process = start_sync_and_wait_for_budget(connectors, server, db)
        process.kill()
        process.wait(timeout=10)
        assert [r[0] for r in runs(db)] == ["running"]  # as the dead process left it
        write_specs(tmp_path, connector_yaml(ITEMS))  # the next run has no slow budget
        rerun = subprocess.run(sync_command(connectors, server, db), capture_output=True,
                               text=True, env={**os.environ, "CRM_ENGINE_ACME_TOKEN": TOKEN},
                               timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    (first, _, why), (second, second_records, _) = runs(db)
    # The killed run landed its two pages while it waited on the budget: the rerun goes on.
    assert (first, second, second_records) == ("abandoned", "succeeded", 10)
    assert "ended without finishing" in why
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(DISTINCT id) FROM contacts").fetchone()[0] == 30


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=tmp_path, text=True,
                          capture_output=True, timeout=60,
                          env={**os.environ, "CRM_ENGINE_ACME_TOKEN": TOKEN,
                               "CRM_ENGINE_HOME": str(tmp_path / "home")})


def test_while_a_sync_holds_the_file_status_connections_and_run_due_still_answer(tmp_path):
    """DuckDB lets one process open the file: the others read the sync's runs in progress
    from beside it, and run-due (cron's next tick) starts nothing without failing."""
    with ItemsServer(30) as server:
        connectors = write_specs(tmp_path, connector_yaml(ITEMS, extra=SLOW_BUDGET))
        db = tmp_path / "crm.duckdb"
        (tmp_path / "crm-engine.yaml").write_text(
            "database: crm.duckdb\nconnections:\n  acme:\n    connector: acme\n"
            f"    secrets: {{token: {{env: CRM_ENGINE_ACME_TOKEN}}}}\n    base_url: {server.url}\n"
            "    schedule: '* * * * *'\n")
        process = start_sync_and_wait_for_budget(connectors, server, db)
        try:
            dirs = ("--connectors-dir", str(connectors))
            status = cli(tmp_path, "status", "--json", *dirs)
            assert status.returncode == 0, status.stderr
            live = json.loads(status.stdout)
            assert live["writer"] == process.pid
            [run] = live["running"]
            # The two pages read landed while the third waits on the budget.
            assert (run["connection"], run["stream"], run["records"], run["pages"]) == (
                "acme", "items", 20, 2)
            text = cli(tmp_path, "status", *dirs).stdout
            assert f"is being written by a sync (PID {process.pid})" in text
            listed = json.loads(cli(tmp_path, "connections", "--json", *dirs).stdout)
            assert [(r["connection"], r["last_status"]) for r in listed] == [("acme", "running")]
            due = cli(tmp_path, "run-due", *dirs)
            assert due.returncode == 0 and "nothing started" in due.stdout, due.stderr
            busy = cli(tmp_path, "sync", "acme", *dirs, "--db", str(db))
            assert busy.returncode == 1 and busy.stderr.strip() == (
                f"error: {db} is in use by a sync (PID {process.pid}); `crm-engine status` "
                "shows its progress; wait for it to finish or choose another --db")
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=10)
    assert not (tmp_path / "crm.duckdb.running.json").exists()  # gone with the sync
    after = cli(tmp_path, "status", "--json", "--connectors-dir", str(connectors))
    [row] = json.loads(after.stdout)
    assert (row["status"], row["records"]) == ("interrupted", 20)


def test_a_file_held_by_another_program_is_an_error_and_a_killed_syncs_note_is_ignored(
        tmp_path):
    db = tmp_path / "crm.duckdb"
    duckdb.connect(str(db)).close()
    # Left by a sync that was killed: it names a process that holds nothing.
    (tmp_path / "crm.duckdb.running.json").write_text(json.dumps(
        {"pid": 1, "updated": "2026-12-07T08:00:00+00:00", "runs": []}))
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect("
                               f"{str(db)!r}); print('open', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        project = write_project(tmp_path)
        for result in (cli(tmp_path, "status", "--db", str(db)),
                       cli(tmp_path, "run-due", "--db", str(db), "--project", str(project))):
            assert result.returncode == 1, result
            assert f"in use by another process (PID {holder.pid}, " in result.stderr
    finally:
        holder.communicate("", timeout=10)
    # Open again by a store, the killed sync's note is cleared.
    assert cli(tmp_path, "status", "--db", str(db)).returncode == 0
    assert not (tmp_path / "crm.duckdb.running.json").exists()


def write_project(tmp_path: Path) -> Path:
    path = tmp_path / "project.yaml"
    path.write_text("connections:\n  acme: {connector: hubspot, schedule: '* * * * *'}\n")
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line on stderr (progress lines may come before it); no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_a_database_held_by_another_process_is_named_in_one_line(tmp_path, capsys):
    db = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; held = duckdb.connect({str(db)!r}); "
                               "print('ready', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        connectors = write_specs(tmp_path, connector_yaml(ITEMS))
        code = main(["sync", "acme", "--connectors-dir", str(connectors), "--token", TOKEN,
                     "--base-url", "http://127.0.0.1:9", "--db", str(db)])
    finally:
        holder.kill()
        holder.wait()
    assert code == 1
    assert one_line_error(capsys).startswith(
        f"error: {db} is in use by another process (PID {holder.pid}, ")


def test_a_file_that_is_not_duckdb_is_named_in_one_line(tmp_path, capsys):
    db = tmp_path / "notes.txt"
    db.write_text("these are my notes, not a database\n" * 200)
    connectors = write_specs(tmp_path, connector_yaml(ITEMS))
    code = main(["sync", "acme", "--connectors-dir", str(connectors), "--token", TOKEN,
                 "--base-url", "http://127.0.0.1:9", "--db", str(db)])
    assert code == 1 and one_line_error(capsys) == f"error: {db} is not a DuckDB database file"


def test_a_missing_data_file_is_named_in_one_line(tmp_path, capsys):
    connectors = write_specs(tmp_path, connector_yaml(ITEMS))
    code = main(["action", "acme", "create_contact", "--connectors-dir", str(connectors),
                 "--token", TOKEN, "--data", f"@{tmp_path}/missing.json"])
    assert code == 2 and one_line_error(capsys) == (
        f"error: --data: cannot read {tmp_path}/missing.json: No such file or directory")


@pytest.mark.parametrize(("template", "reason"), [
    ("{{ [].append(1) }}", "unsafe"),  # refused by the sandbox while rendering
    ("{{ range(10000000) | length }}", "Range too big"),  # an overflow
])
def test_a_template_that_fails_at_run_time_is_one_line(tmp_path, capsys, template, reason):
    stream = ITEMS.replace("path: /cursor", f"path: '/c/{template}'")
    connectors = write_specs(tmp_path, connector_yaml(stream))
    code = main(["sync", "acme", "--connectors-dir", str(connectors), "--token", TOKEN,
                 "--base-url", "http://127.0.0.1:9", "--db", str(tmp_path / "x.duckdb")])
    line = one_line_error(capsys)
    assert code == 2 and line.startswith("error: template ") and reason in line


def test_a_refused_static_token_stops_the_sync_once_with_a_hint(tmp_path, capsys):
    three_streams = "\n".join(ITEMS.replace("items:", f"{name}:") for name in ("a", "b", "c"))
    with ItemsServer(30) as server:
        server.app.fail_next(10, 401, body={"message": "bad token"})
        connectors = write_specs(tmp_path, connector_yaml(three_streams))
        code = main(["sync", "acme", "--connectors-dir", str(connectors), "--token", TOKEN,
                     "--base-url", server.url, "--db", str(tmp_path / "x.duckdb")])
        assert server.app.requests_served == 1  # not once per stream
    out = capsys.readouterr().out
    assert code == 1 and out.count("error:") == 1
    assert ("the token was refused; check it (--token, CRM_ENGINE_ACME_TOKEN) or run "
            "`crm-engine connect acme`") in out
    # The streams it stopped are named, not left out of the summary.
    assert "\nnot started: b, c (stopped by the failure above," in out


def test_a_failed_custom_field_lookup_lands_records_with_vendor_keys_and_warns(tmp_path,
                                                                               make_engine):
    stream = ITEMS + """
      fields:
        request: {method: GET, path: /fields}
        records: data
        key: key
        name: name
    """
    with ItemsServer(25) as server:
        server.app.fail_next(1, 403, body={"message": "missing scope fields.read"})
        engine = make_engine(write_specs(tmp_path, connector_yaml(stream)))
        [run] = engine.sync("acme", token=TOKEN, base_url=server.url)
    assert run.status == "succeeded" and run.records == 25
    [(warnings, customs)] = engine.store.query(
        "SELECT any_value(r.warnings), count(DISTINCT c.custom->>'colour') FROM sync_runs r, "
        "contacts c")
    assert customs == 1  # the vendor's key, not the (unknown) label
    [warning] = json.loads(warnings)
    assert warning.startswith("field list unavailable") and "HTTP 403" in warning


def test_eight_threads_sync_eight_connections_through_one_engine(tmp_path, make_engine):
    with ItemsServer(2_000) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(
            ITEMS.replace("limit: 10", "limit: 100"))))
        results: dict[str, list] = {}
        start_together = threading.Barrier(8)  # all first touch the database at once

        def sync(name: str) -> None:
            start_together.wait()
            results[name] = engine.sync("acme", name, token=TOKEN, base_url=server.url)

        threads = [threading.Thread(target=sync, args=(f"conn{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert sorted(results) == [f"conn{i}" for i in range(8)]
    assert all(run.status == "succeeded" for runs_ in results.values() for run in runs_)
    counts = dict(engine.store.query(
        "SELECT connection, count(DISTINCT id) FROM contacts GROUP BY ALL"))
    assert counts == {f"conn{i}": 2_000 for i in range(8)}


# The API path each vendor's base URL carries (CONTRACTS 0): an origin keeps it.
API_PATHS = {"hubspot": "", "pipedrive": "", "salesforce": "/services/data/v",
             "zoho": "/crm/v"}


@pytest.mark.parametrize("name", sorted(API_PATHS))
def test_base_url_origin_keeps_the_connectors_path(name):
    connector = Engine().connector(name)
    config = {n: s.default for n, s in connector.config.items()}
    context = connector.template_context(config, {})
    origin = "http://127.0.0.1:8123"
    assert api_base_url(connector, context, origin).startswith(origin + API_PATHS[name])
    whole = "http://127.0.0.1:8123/custom/base"
    assert api_base_url(connector, context, whole) == whole


@pytest.mark.parametrize("name", sorted(API_PATHS))
def test_every_command_the_sandbox_suggests_works(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRM_ENGINE_HOME", str(tmp_path / "home"))
    with sandbox.start(name, contacts=30, companies=5, deals=5) as running:
        for line in try_commands(name, running.emulator, running.url):
            words = shlex.split(line)
            if words[0] == "export":
                variable, _, value = words[1].partition("=")
                monkeypatch.setenv(variable, value)
                continue
            assert words[0] == "crm-engine"
            code = main(words[1:])
            assert code == 0, (line, capsys.readouterr())
    landed = DuckDBStore(tmp_path / f"{name}.duckdb")
    assert landed.query("SELECT count(*) FROM contacts") == [(30,)]
