"""The `crm-engine` command line as a user runs it: `python -m engine ...` in a subprocess,
against emulators served in this process on 127.0.0.1, with a private CRM_ENGINE_HOME."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
import httpx
import pytest

import sandbox
from sandbox.demo import follow_without_browser

COMMON_ACTIONS = {"create_contact", "get_contact", "update_contact", "search_contact_by_email",
                  "create_deal", "get_deal", "update_deal", "create_task", "log_call",
                  "create_note"}
EXTRA_ACTIONS = {"salesforce": {"log_activity", "search_records"},
                 "pipedrive": {"create_activity", "update_activity", "create_company"}}
CLIENT_SECRET_CANARY = "cli-test-client-secret-canary"


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The parent's environment without any CRM_ENGINE_* setting, plus a private home; and
    without PYTHONUNBUFFERED, so output reaches a pipe only when the CLI flushes it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CRM_ENGINE_") and k != "PYTHONUNBUFFERED"}
    return {**env, "CRM_ENGINE_HOME": str(home), **extra}


def run(*args: str, env: dict[str, str], cwd: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class Lines:
    """A subprocess's stdout, read line by line on a thread, so reads can time out."""

    def __init__(self, process: subprocess.Popen[str]):
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._ended = False
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                self._queue.put(line)
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s; "
                                     f"got {self.seen}") from None
            if line is None:
                self._ended = True
                raise AssertionError(f"output ended before {pattern!r}; got {self.seen}")
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def all(self, timeout: float = 30) -> str:
        """Everything the process wrote, once its stdout is closed."""
        while not self._ended:
            line = self._queue.get(timeout=timeout)
            if line is None:
                self._ended = True
            else:
                self.seen.append(line)
        return "".join(self.seen)


def config_args(config: dict) -> list[str]:
    args = []
    for key, value in config.items():
        text = ",".join(value) if isinstance(value, list) else str(value)
        args += ["--config", f"{key}={text}"]
    return args


# -- connectors ------------------------------------------------------------------------------


def test_connectors_lists_auth_streams_and_actions(tmp_path):
    result = run("connectors", env=cli_env(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    blocks = {}
    for block in re.split(r"\n(?=\S)", result.stdout.strip()):  # one per connector
        head, *rows = block.splitlines()
        fields = dict(row.strip().split(":", 1) for row in rows)
        blocks[head.split()[0]] = {k: [v.strip() for v in value.split(",")]
                                   for k, value in fields.items()}
    assert set(blocks) == {"hubspot", "salesforce", "pipedrive", "zoho"}
    for name, block in blocks.items():
        assert {"contacts -> contacts", "companies -> companies", "deals -> deals"} <= set(
            block["streams"]), name
        # The README's actions (aliases such as Pipedrive's create_person may come on top).
        assert set(block["actions"]) >= COMMON_ACTIONS | EXTRA_ACTIONS.get(name, set()), name
        assert any(method.endswith("(oauth2)") for method in block["auth"]), name
    assert "api_token (api_key)" in blocks["pipedrive"]["auth"]  # the API-key alternative


# -- sandbox ---------------------------------------------------------------------------------


def test_sandbox_serves_until_stopped(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "sandbox", "hubspot", "--port", "0", "--contacts", "7"],
        env=cli_env(tmp_path / "home"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True)
    try:
        match = Lines(process).until(r"^hubspot: (http://127\.0\.0\.1:\d+)\s.*token=(\S+)")
        url, token = match.groups()
        response = httpx.get(f"{url}/crm/v3/objects/contacts", params={"limit": 100},
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 200
        assert len(response.json()["results"]) == 7 and "paging" not in response.json()
    finally:
        process.terminate()
        process.wait(timeout=10)
    with pytest.raises(httpx.ConnectError):  # stopped means stopped
        httpx.get(f"{url}/crm/v3/objects/contacts", timeout=2)


# -- demo ------------------------------------------------------------------------------------


def test_demo_syncs_every_sandbox_into_the_database(tmp_path):
    db = tmp_path / "out" / "demo.duckdb"
    result = run("demo", "--contacts", "200", "--db", str(db), env=cli_env(tmp_path / "home"),
                 cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("demo succeeded")
    connectors = sorted(sandbox.EMULATORS)
    with duckdb.connect(str(db), read_only=True) as con:
        # The demo seeds `contacts`, a tenth as many companies and a fifth as many deals.
        for table, count in (("contacts", 200), ("companies", 20), ("deals", 40)):
            rows = con.execute(f"SELECT connector, count(*), count(DISTINCT id) FROM {table} "
                               f"GROUP BY connector ORDER BY connector").fetchall()
            assert rows == [(name, count, count) for name in connectors], table
        runs = con.execute("SELECT connector, stream, status FROM sync_runs "
                           "ORDER BY connector, stream").fetchall()
        assert runs == [(name, stream, "succeeded") for name in connectors
                        for stream in ("calls", "companies", "contacts", "deals", "meetings",
                                       "notes", "owners", "pipelines", "stages", "tasks")]
        failed = con.execute("SELECT count(*) FROM action_log WHERE status <> 'succeeded'")
        assert failed.fetchone()[0] == 0
        per_connector = dict(con.execute(
            "SELECT connector, count(*) FROM action_log GROUP BY connector").fetchall())
        assert set(per_connector) == set(connectors)
        assert all(n >= len(COMMON_ACTIONS) for n in per_connector.values())


# -- connect: OAuth from the command line ----------------------------------------------------


@pytest.fixture(params=sorted(sandbox.EMULATORS))
def emulator(request):
    with sandbox.start(request.param, contacts=20, companies=5, deals=5) as running:
        yield request.param, running


def test_connect_with_no_browser_takes_the_client_from_the_environment(emulator, tmp_path):
    name, running = emulator
    vendor = running.emulator
    assert vendor.client_secret != CLIENT_SECRET_CANARY
    prefix = f"CRM_ENGINE_{name.upper()}"
    # BROWSER=true: a "browser" that opens nothing and reports success, so only --no-browser
    # makes the URL appear (and no real browser pops up if it is ignored).
    env = cli_env(tmp_path / "home", BROWSER="true",
                  **{f"{prefix}_CLIENT_ID": vendor.client_id,
                     f"{prefix}_CLIENT_SECRET": vendor.client_secret})
    argv = [sys.executable, "-m", "engine", "connect", name, "--connection", f"{name}-cli",
            "--no-browser", "--redirect-uri", "http://127.0.0.1:0/callback", "--timeout", "30",
            *config_args(vendor.connection_config(running.url))]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True)
    try:
        lines = Lines(process)
        lines.until(r"Open this URL to authorize")
        url = lines.until(r"^\s+(http\S+)").group(1)
        # The secret reached the process through its environment, not its argv.
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
        assert vendor.client_secret not in cmdline and vendor.client_id not in cmdline
        query = parse_qs(urlsplit(url).query)
        assert query["client_id"] == [vendor.client_id] and "client_secret" not in query
        follow_without_browser(url)  # the emulator consents at once, redirects to the loopback
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stdout, stderr = lines.all(), process.stderr.read()
    assert process.returncode == 0, stdout + stderr
    assert f"connected {name}-cli" in stdout
    assert vendor.client_secret not in stdout and vendor.client_secret not in stderr

    stored = json.loads((tmp_path / "home" / "connections" / f"{name}-cli.json").read_text())
    assert (stored["connector"], stored["auth_method"]) == (name, "oauth2")
    assert stored["credentials"]["client_id"] == vendor.client_id
    # The stored connection works for a later command, without the client in the environment.
    synced = run("sync", name, "--connection", f"{name}-cli", "--streams", "companies",
                 "--db", str(tmp_path / "cli.duckdb"), env=cli_env(tmp_path / "home"))
    assert synced.returncode == 0, synced.stdout + synced.stderr
    with duckdb.connect(str(tmp_path / "cli.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM companies").fetchone()[0] == 5


def test_there_is_no_flag_for_the_client_secret(tmp_path):
    result = run("connect", "hubspot", "--client-id", "some-client", "--client-secret",
                 CLIENT_SECRET_CANARY, "--no-browser", env=cli_env(tmp_path / "home"))
    assert result.returncode == 2
    assert "unrecognized arguments: --client-secret" in result.stderr
    assert not list((tmp_path / "home").glob("connections/*.json"))


def test_connect_without_the_secret_in_the_environment_asks_nothing_and_stores_nothing(
        tmp_path):
    env = cli_env(tmp_path / "home", CRM_ENGINE_HUBSPOT_CLIENT_ID="some-client")
    result = run("connect", "hubspot", "--no-browser", "--redirect-uri",
                 "http://127.0.0.1:0/callback", env=env, timeout=30)
    assert result.returncode != 0
    assert "CRM_ENGINE_HUBSPOT_CLIENT_SECRET" in result.stderr  # says where it is looked for
    assert "Open this URL" not in result.stdout  # no flow was started without a secret
    assert not list((tmp_path / "home").glob("connections/*.json"))
