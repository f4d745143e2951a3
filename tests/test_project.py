"""The project file, crm-engine.yaml: its checks (file, line, YAML path), `sync --all`,
`sync NAME ...` and `run-due`, as subprocesses against two local HubSpot emulators."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

import sandbox
from engine.errors import SpecError
from engine.project import ProjectConnection, load_project

TOKENS = {"acme": "acme-private-app-token", "globex": "globex-private-app-token"}


@pytest.fixture(scope="module")
def emulators():
    with (sandbox.start("hubspot", contacts=7, companies=2, deals=3,
                        static_tokens=(TOKENS["acme"],)) as acme,
          sandbox.start("hubspot", contacts=11, companies=4, deals=5,
                        static_tokens=(TOKENS["globex"],)) as globex):
        yield {"acme": acme, "globex": globex}


def write(tmp_path: Path, text: str, name: str = "crm-engine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def crm(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRM_ENGINE_")}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=tmp_path,
                          env={**base, "CRM_ENGINE_HOME": str(tmp_path / "home"), **env},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_project(path)
    return [str(p) for p in caught.value.problems]


# -- checks ---------------------------------------------------------------------------------
def test_an_inline_secret_is_an_error_that_never_echoes_it(tmp_path):
    path = write(tmp_path, """\
        connections:
          acme:
            connector: hubspot
            auth: private_app
            secrets:
              token: pat-na1-very-secret-value
        """)
    [problem] = problems(path)
    assert problem.startswith(f"{path}:6 at connections.acme.secrets.token: ")
    assert "environment references" in problem and "very-secret" not in problem


def test_a_ducklake_target_takes_its_catalog_password_only_from_the_environment(tmp_path):
    path = write(tmp_path, """\
        target:
          ducklake:
            catalog: "postgres:host=db.internal dbname=lake user=crm password=hunter2-lake"
            data_path: lake
        credentials:
          postgres: "host=db.internal dbname=lake password=hunter2-creds"
          key: {env: CRM_KEY}
        connections:
          acme: {connector: hubspot}
        """)
    found = sorted(problems(path), key=lambda p: "credentials" in p)
    assert [p.split(": ", 1)[0] for p in found] == [
        f"{path}:3 at target.ducklake.catalog", f"{path}:6 at credentials.postgres"]
    assert "password: {env: VARIABLE}" in found[0] and not any("hunter2" in p for p in found)

    path = write(tmp_path, """\
        target:
          ducklake:
            catalog: "postgres:host=db.internal dbname=lake user=crm"
            password: {env: LAKE_PASSWORD}
            data_path: lake
        connections:
          acme: {connector: hubspot}
        """)
    target = load_project(path).target
    assert (target.catalog, target.data_path, target.password_env) == (
        "host=db.internal dbname=lake user=crm".join(["postgres:", ""]), str(tmp_path / "lake"),
        "LAKE_PASSWORD")
    both = write(tmp_path, path.read_text() + "database: crm.duckdb\n", name="both.yaml")
    assert problems(both) == [f"{both}:1 at target: give `database` (a DuckDB file) or "
                              f"`target`, not both"]


def test_a_misspelt_key_says_did_you_mean(tmp_path):
    path = write(tmp_path, """\
        database: crm.duckdb
        connections:
          acme:
            connector: hubspot
            shedule: "0 * * * *"
        """)
    assert problems(path) == [f"{path}:5 at connections.acme.shedule: unknown key 'shedule' "
                              "(did you mean 'schedule'?)"]


def test_meaning_problems_are_located(tmp_path):
    path = write(tmp_path, """\
        connections:
          nowhere:
            connector: hubspotty
          acme:
            connector: hubspot
            auth: api_key
          globex:
            connector: hubspot
            streams: [contacts, contcts]
            schedule: "61 * * * *"
            config: {page_size: 500, colour: blue}
        """)
    found = problems(path)
    expected = [
        (3, "connections.nowhere.connector", "unknown connector 'hubspotty'"),
        (6, "connections.acme.auth", "has no auth method 'api_key'"),
        (10, "connections.globex.schedule", "not a valid cron expression"),
        (9, "connections.globex.streams[1]", "has no stream 'contcts'"),
        (11, "connections.globex.config.page_size", "above the maximum"),
        (11, "connections.globex.config.colour", "unknown setting"),
    ]
    assert len(found) == len(expected), found
    for (line, where, words), problem in zip(expected, found, strict=True):
        assert problem.startswith(f"{path}:{line} at {where}: ") and words in problem, problem


def test_secrets_must_be_the_methods(tmp_path):
    path = write(tmp_path, """\
        connections:
          acme:
            connector: hubspot
            auth: private_app
            secrets: {tokn: {env: ACME_TOKEN}}
        """)
    found = problems(path)
    assert any(":5 at connections.acme.secrets.tokn: " in p and "no secret 'tokn'" in p
               for p in found), found


def test_validate_reports_the_project_file(tmp_path):
    write(tmp_path, """\
        connections:
          acme: {connector: hubspot, streams: [contacts, contcts]}
        """)
    result = crm(tmp_path, "validate")
    assert result.returncode == 1
    assert ("crm-engine.yaml:2 at connections.acme.streams[1]: hubspot has no stream 'contcts'"
            in result.stderr)
    write(tmp_path, "connections:\n  acme: {connector: hubspot}\n", name="other.yaml")
    result = crm(tmp_path, "validate", "--project", "other.yaml")
    assert result.returncode == 0 and "ok  other.yaml: 1 connections" in result.stdout


def test_validate_tells_a_project_file_from_a_connector_by_what_it_holds(tmp_path):
    """A project file named on the command line is checked as a project (not as a connector
    missing its `name`), once even when it is also ./crm-engine.yaml; a mapping file outside
    a `mappings/` directory is checked as a mapping."""
    write(tmp_path, "connections:\n  acme: {connector: hubspot, streams: [contcts]}\n")
    write(tmp_path, "connections:\n  acme: {connector: hubspot}\n", name="other.yaml")
    (tmp_path / "copy.yaml").write_text(
        (Path(__file__).resolve().parent.parent / "mappings" / "hubspot.yaml").read_text())
    result = crm(tmp_path, "validate", "crm-engine.yaml", "other.yaml", "copy.yaml")
    assert result.returncode == 1
    [problem] = result.stderr.splitlines()
    assert problem.startswith("error  crm-engine.yaml:2 at connections.acme.streams[0]: "
                              "hubspot has no stream 'contcts' (streams: contacts, "), problem
    assert result.stdout.splitlines() == ["ok  other.yaml: 1 connections", "ok  copy.yaml"]


def test_sync_of_an_unknown_name_says_what_it_could_have_been(tmp_path):
    write(tmp_path, "connections:\n  acme: {connector: hubspot}\n  globex: {connector: hubspot}\n")
    one = crm(tmp_path, "sync", "acmee")
    assert one.returncode == 2 and one.stderr.strip() == (
        "error: NAME: 'acmee' is neither a connection of crm-engine.yaml (acme, globex), a "
        "stored connection (`crm-engine connections` lists them) nor a connector (hubspot, "
        "pipedrive, salesforce, zoho)"), one.stderr
    two = crm(tmp_path, "sync", "acme", "globx")
    assert two.returncode == 2 and "(not connections of it: globx)" in two.stderr, two.stderr


def test_sync_and_action_take_a_stored_connections_name_as_check_does(tmp_path, emulators):
    stored = crm(tmp_path, "connect", "hubspot", "--connection", "initech", "--auth",
                 "private_app", CRM_ENGINE_HUBSPOT_TOKEN=TOKENS["globex"])
    assert stored.returncode == 0, stored.stderr
    db = str(tmp_path / "crm.duckdb")
    synced = crm(tmp_path, "sync", "initech", "--streams", "contacts", "--base-url",
                 emulators["globex"].url, "--db", db, "--json")
    assert synced.returncode == 0, synced.stderr
    [run] = json.loads(synced.stdout)
    assert (run["connector"], run["connection"], run["records"]) == ("hubspot", "initech", 11)
    found = crm(tmp_path, "action", "initech", "get_contact", "--data", json.dumps(
        {"id": rows_of(db, "contacts")[0]}), "--base-url", emulators["globex"].url)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["record"]["id"] == rows_of(db, "contacts")[0]


def rows_of(db: str, table: str) -> list[str]:
    with duckdb.connect(db, read_only=True) as con:
        return [row[0] for row in con.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]


def test_an_unset_variable_is_a_run_time_error_naming_it(tmp_path):
    path = write(tmp_path, """\
        connections:
          acme:
            connector: hubspot
            secrets: {token: {env: ACME_TOKEN_NOT_SET}}
        """)
    conn = load_project(path).connections["acme"]  # loads: the variable is read at run time
    assert conn.secrets == {"token": "ACME_TOKEN_NOT_SET"}
    os.environ.pop("ACME_TOKEN_NOT_SET", None)
    with pytest.raises(Exception, match="ACME_TOKEN_NOT_SET: is not set"):
        conn.options()


def test_due_is_the_latest_scheduled_time_after_the_last_start():
    hourly = ProjectConnection("a", "hubspot", schedule="0 * * * *")
    now = dt.datetime(2026, 3, 1, 10, 30, tzinfo=dt.UTC)
    assert hourly.last_due(now) == dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)
    assert hourly.last_due(now.replace(minute=0)) == now.replace(minute=0)  # at counts
    assert hourly.is_due(now, None)  # never synced
    assert hourly.is_due(now, now.replace(hour=9, minute=59))
    assert not hourly.is_due(now, now.replace(minute=1))
    assert not ProjectConnection("b", "hubspot").is_due(now, None)  # no schedule


# -- runs -----------------------------------------------------------------------------------
def project(tmp_path: Path, emulators, acme_schedule: str = "0 * * * *",
            globex_schedule: str = "0 * * * *") -> Path:
    return write(tmp_path, f"""\
        database: out/crm.duckdb
        max_concurrency: 2
        connections:
          acme:
            connector: hubspot
            auth: private_app
            secrets: {{token: {{env: ACME_HUBSPOT_TOKEN}}}}
            base_url: {emulators["acme"].url}
            config: {{page_size: 3}}
            schedule: "{acme_schedule}"
          globex:
            connector: hubspot
            secrets: {{token: {{env: GLOBEX_HUBSPOT_TOKEN}}}}
            base_url: {emulators["globex"].url}
            streams: [contacts, companies]
            schedule: "{globex_schedule}"
        """)


ENV = {"ACME_HUBSPOT_TOKEN": TOKENS["acme"], "GLOBEX_HUBSPOT_TOKEN": TOKENS["globex"]}


def rows(db: Path, table: str) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return dict(con.execute(f"SELECT connection, count(*) FROM {table} GROUP BY ALL")
                    .fetchall())


def test_sync_all_runs_every_connection_into_the_project_database(tmp_path, emulators):
    project(tmp_path, emulators)
    result = crm(tmp_path, "sync", "--all", **ENV)
    assert result.returncode == 0, result.stderr
    db = tmp_path / "out" / "crm.duckdb"
    assert rows(db, "contacts") == {"acme": 7, "globex": 11}
    assert rows(db, "companies") == {"acme": 2, "globex": 4}
    assert rows(db, "deals") == {"acme": 3}  # globex syncs only its streams
    assert result.stdout.splitlines()[0].split()[:2] == ["connection", "stream"]
    assert "sync acme/contacts: started" in result.stderr  # log lines, not the progress line
    assert "sync globex/contacts: started" in result.stderr


def test_sync_names_one_and_a_missing_secret_fails_only_it(tmp_path, emulators):
    project(tmp_path, emulators)
    result = crm(tmp_path, "sync", "globex", "--json", **ENV)
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert {(r["connection"], r["stream"]) for r in runs} == {("globex", "contacts"),
                                                              ("globex", "companies")}
    assert rows(tmp_path / "out" / "crm.duckdb", "contacts") == {"globex": 11}
    result = crm(tmp_path, "sync", "acme", "globex", "--json",
                 GLOBEX_HUBSPOT_TOKEN=TOKENS["globex"])
    assert result.returncode == 1
    failed = [r for r in json.loads(result.stdout) if r["status"] != "succeeded"]
    assert [(r["connection"], r["stream"]) for r in failed] == [("acme", "-")]
    assert "ACME_HUBSPOT_TOKEN: is not set" in failed[0]["error"]


def test_a_connector_name_keeps_todays_sync(tmp_path, emulators):
    project(tmp_path, emulators)
    result = crm(tmp_path, "sync", "hubspot", "--connection", "solo", "--streams", "contacts",
                 "--base-url", emulators["acme"].url, "--json",
                 CRM_ENGINE_HUBSPOT_TOKEN=TOKENS["acme"])
    assert result.returncode == 0, result.stderr
    assert rows(tmp_path / "out" / "crm.duckdb", "contacts") == {"solo": 7}  # project's db


def test_run_due_runs_what_is_due_then_nothing(tmp_path, emulators):
    project(tmp_path, emulators)
    first = crm(tmp_path, "sync", "acme", "--streams", "contacts", **ENV)
    assert first.returncode == 0, first.stderr
    db = tmp_path / "out" / "crm.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        [(started,)] = con.execute("SELECT max(started) FROM sync_runs").fetchall()
    now = started.astimezone(dt.UTC).isoformat()  # acme synced since its last scheduled time
    result = crm(tmp_path, "run-due", "--now", now, **ENV)
    assert result.returncode == 0, result.stderr
    assert "due: globex" in result.stdout and "acme" not in result.stdout
    assert rows(db, "contacts") == {"acme": 7, "globex": 11}
    again = crm(tmp_path, "run-due", "--now", now, **ENV)
    assert again.returncode == 0 and again.stdout.strip() == "nothing due"
    later = (started + dt.timedelta(hours=2)).isoformat()
    both = crm(tmp_path, "run-due", "--now", later, "--max-concurrency", "1", "--json", **ENV)
    assert both.returncode == 0, both.stderr
    assert {r["connection"] for r in json.loads(both.stdout)} == {"acme", "globex"}


def test_sigterm_stops_every_running_connection_within_two_seconds(tmp_path):
    """Two connections, each stuck on its rate budget (3 requests a minute, as the emulator's
    headers say): SIGTERM lands what each read and marks both runs interrupted."""
    import signal
    import time

    slow = {"rate_limit": (3, 60.0), "contacts": 300, "companies": 2, "deals": 3}
    with (sandbox.start("hubspot", static_tokens=(TOKENS["acme"],), **slow) as acme,
          sandbox.start("hubspot", static_tokens=(TOKENS["globex"],), **slow) as globex):
        write(tmp_path, f"""\
            database: crm.duckdb
            connections:
              acme:
                connector: hubspot
                auth: private_app
                secrets: {{token: {{env: ACME_TOKEN}}}}
                base_url: {acme.url}
                streams: [contacts]
              globex:
                connector: hubspot
                auth: private_app
                secrets: {{token: {{env: GLOBEX_TOKEN}}}}
                base_url: {globex.url}
                streams: [contacts]
            """)
        base = {k: v for k, v in os.environ.items() if not k.startswith("CRM_ENGINE_")}
        process = subprocess.Popen(
            [sys.executable, "-m", "engine", "sync", "--all"], cwd=tmp_path,
            env={**base, "CRM_ENGINE_HOME": str(tmp_path / "home"),
                 "ACME_TOKEN": TOKENS["acme"], "GLOBEX_TOKEN": TOKENS["globex"]},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while (acme.app.requests_served < 3 or globex.app.requests_served < 3) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        # Three requests: the contact properties and two pages of contacts (their links name
        # the primary company: no v4 read); both now wait on their budgets for the third page.
        time.sleep(0.5)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
        took = time.monotonic() - sent
    assert process.returncode == 128 + signal.SIGTERM and took < 2.0, (took, err)
    with duckdb.connect(str(tmp_path / "crm.duckdb"), read_only=True) as con:
        runs = con.execute("SELECT connection, status, records FROM sync_runs "
                           "ORDER BY connection").fetchall()
        landed = dict(con.execute("SELECT connection, count(*) FROM contacts GROUP BY ALL"
                                  ).fetchall())
    assert runs == [("acme", "interrupted", 200), ("globex", "interrupted", 200)], err
    assert landed == {"acme": 200, "globex": 200}


# -- check and connections --------------------------------------------------------------------
def test_an_action_names_a_connection_of_the_project(tmp_path, emulators):
    project(tmp_path, emulators)
    created = crm(tmp_path, "action", "globex", "create_contact", "--data",
                  '{"email": "ada@example.com", "first_name": "Ada"}', **ENV)
    assert created.returncode == 0, created.stderr
    found = crm(tmp_path, "action", "globex", "search_contact_by_email", "--data",
                '{"email": "ada@example.com"}', **ENV)
    assert found.returncode == 0, found.stderr
    # Through globex's own emulator and token (acme's knows nothing of it).
    assert json.loads(found.stdout)["id"] == json.loads(created.stdout)["record"]["id"]
    elsewhere = crm(tmp_path, "action", "acme", "search_contact_by_email", "--data",
                    '{"email": "ada@example.com"}', **ENV)
    assert json.loads(elsewhere.stdout) == {"records": [], "id": None}, elsewhere.stderr
    refused = crm(tmp_path, "action", "globex", "get_contact", "--data", '{"id": "1"}',
                  "--base-url", "http://127.0.0.1:9", **ENV)
    assert refused.returncode == 2 and "--base-url: is set per connection" in refused.stderr


def test_check_tries_every_connection_of_the_project(tmp_path, emulators):
    project(tmp_path, emulators)
    result = crm(tmp_path, "check", "--json", **ENV)
    assert result.returncode == 0, result.stderr
    checked = {r["connection"]: r for r in json.loads(result.stdout)}
    assert set(checked) == {"acme", "globex"}
    assert all(r["ok"] and r["status"] == 200 and r["connector"] == "hubspot"
               for r in checked.values())
    # A secret not set fails its connection only; a wrong one is refused by the emulator.
    result = crm(tmp_path, "check", "--json", ACME_HUBSPOT_TOKEN="not-the-token",
                 GLOBEX_HUBSPOT_TOKEN=TOKENS["globex"])
    assert result.returncode == 1
    checked = {r["connection"]: r for r in json.loads(result.stdout)}
    assert not checked["acme"]["ok"] and checked["acme"]["status"] == 401
    # What to check is the project file's variable, not the command line's --token.
    assert checked["acme"]["error"].endswith(
        ": the credentials were refused; check ACME_HUBSPOT_TOKEN (the project file's secrets "
        "of connection 'acme')"), checked["acme"]["error"]
    assert "not-the-token" not in result.stdout + result.stderr
    assert checked["globex"]["ok"]
    result = crm(tmp_path, "check", "acme", "globex", GLOBEX_HUBSPOT_TOKEN=TOKENS["globex"])
    assert result.returncode == 1 and "ACME_HUBSPOT_TOKEN: is not set" in result.stdout
    assert "globex" in result.stdout and "ok (" in result.stdout
    refused = crm(tmp_path, "check", "acme", "--token", "x", **ENV)
    assert refused.returncode == 2 and "--token: is set per connection" in refused.stderr


def test_connections_lists_the_project_and_the_stored_ones(tmp_path, emulators):
    project(tmp_path, emulators)
    synced = crm(tmp_path, "sync", "acme", "--streams", "contacts", "-q", **ENV)
    assert synced.returncode == 0, synced.stderr
    stored = crm(tmp_path, "connect", "hubspot", "--auth", "private_app", "--connection",
                 "initech", CRM_ENGINE_HUBSPOT_TOKEN=TOKENS["acme"])
    assert stored.returncode == 0, stored.stderr
    result = crm(tmp_path, "connections", "--json")  # the project's database, by default
    assert result.returncode == 0, result.stderr
    rows = {r["connection"]: r for r in json.loads(result.stdout)}
    assert [r["connection"] for r in json.loads(result.stdout)] == ["acme", "globex", "initech"]
    assert {n: (r["source"], r["auth_method"], r["auth_kind"]) for n, r in rows.items()} == {
        "acme": ("project", "private_app", "bearer"),
        "globex": ("project", "private_app", "bearer"),  # the method that takes its secret
        "initech": ("stored", "private_app", "bearer")}
    assert rows["acme"]["last_status"] == "succeeded" and rows["acme"]["last_sync"]
    assert rows["globex"]["last_sync"] is None and rows["initech"]["last_sync"] is None
    table = crm(tmp_path, "connections")
    assert table.returncode == 0 and "project" in table.stdout and "never" in table.stdout
