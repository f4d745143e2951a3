"""Command-line conventions: --version, -v/-q after the command, JSON logs and output, and the
check and connections commands. Real subprocesses against a local emulator."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading

import pytest

import sandbox
from engine import Engine
from engine.cli import build_parser
from engine.engine import PROJECT_ROOT as ROOT
from engine.progress import LogProgress
from engine.store import SyncRun


@pytest.fixture(scope="module")
def hubspot():
    with sandbox.start("hubspot", contacts=30, companies=5, deals=5) as running:
        yield running


def crm(tmp_path, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRM_ENGINE_HOME": str(tmp_path / "home")}
    env.pop("CRM_ENGINE_HUBSPOT_TOKEN", None)
    if token:
        env["CRM_ENGINE_HUBSPOT_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "engine", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_version(tmp_path):
    result = crm(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.startswith("crm-engine 0.")


def test_check_says_whether_credentials_work(tmp_path, hubspot):
    good = crm(tmp_path, "check", "hubspot", "--base-url", hubspot.url, "--json",
               token=hubspot.emulator.static_token)
    [result] = json.loads(good.stdout)
    assert good.returncode == 0 and result["ok"] and result["status"] == 200
    bad = crm(tmp_path, "check", "hubspot", "--base-url", hubspot.url, token="wrong-token")
    assert bad.returncode == 1 and "FAILED" in bad.stdout and "401" in bad.stdout


def test_check_without_a_check_request_reads_the_first_page_as_a_sync_would(tmp_path, hubspot):
    # A connector that declares no `check` is checked with its first stream's first page,
    # whose template here reads the mapping's fields and the discovered ones (none yet).
    connectors, mappings = tmp_path / "connectors", tmp_path / "mappings"
    connectors.mkdir()
    mappings.mkdir()
    spec = (ROOT / "connectors" / "hubspot.yaml").read_text()
    start = spec.index("\ncheck:\n")
    (connectors / "hubspot.yaml").write_text(spec[:start] + spec[spec.index("\n\n", start):])
    (mappings / "hubspot.yaml").write_text((ROOT / "mappings" / "hubspot.yaml").read_text())
    engine = Engine(connectors_dir=connectors, home=tmp_path / "home")
    assert engine.connector("hubspot").check is None
    assert next(iter(engine.connector("hubspot").streams)) == "contacts"
    assert "discovered_fields" in spec[spec.index("\n  contacts:"):]
    hubspot.app.stats.reset()
    result = engine.check("hubspot", token=hubspot.emulator.static_token, base_url=hubspot.url)
    assert (result["ok"], result["status"], result["error"]) == (True, 200, None)
    assert hubspot.app.stats.per_route == {"objects.list": 1}


def test_connections_lists_stored_ones_with_their_last_sync(tmp_path, hubspot):
    env_token = hubspot.emulator.static_token
    stored = subprocess.run(
        [sys.executable, "-m", "engine", "connect", "hubspot", "--auth", "private_app",
         "--connection", "acme", "--config", f"api_url={hubspot.url}"],
        env={**os.environ, "CRM_ENGINE_HOME": str(tmp_path / "home"),
             "CRM_ENGINE_HUBSPOT_TOKEN": env_token}, capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL)
    assert stored.returncode == 0, stored.stderr
    synced = crm(tmp_path, "sync", "hubspot", "--connection", "acme", "--streams", "contacts",
                 "--db", "crm.duckdb", "-q", "--json")
    [run] = json.loads(synced.stdout)
    assert synced.returncode == 0 and run["status"] == "succeeded" and run["records"] == 30
    assert synced.stderr == ""  # -q after the command: no progress lines
    listed = crm(tmp_path, "connections", "--db", "crm.duckdb", "--json")
    [row] = json.loads(listed.stdout)
    assert (row["connection"], row["connector"], row["auth_kind"]) == ("acme", "hubspot",
                                                                        "bearer")
    assert row["last_status"] == "succeeded" and row["last_sync"]
    checked = crm(tmp_path, "check", "--json")  # every stored connection
    assert [r["connection"] for r in json.loads(checked.stdout)] == ["acme"]


def test_log_lines_as_json(tmp_path):
    result = crm(tmp_path, "sync", "hubspot", "--base-url", "http://127.0.0.1:9", "--db",
                 "x.duckdb", "--streams", "contacts", "-v", "--log-format", "json",
                 token="t0ken-value")
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines and {"time", "level", "logger", "message"} <= set(lines[0])
    assert any("retrying" in line["message"] for line in lines)


def test_progress_lines_are_json_too_with_log_format_json(tmp_path, hubspot):
    """A log collector reading stderr gets JSON objects only, the progress lines included,
    with the run's fields beside the message."""
    result = crm(tmp_path, "sync", "hubspot", "--base-url", hubspot.url, "--db", "x.duckdb",
                 "--streams", "contacts,companies", "--log-format", "json",
                 token=hubspot.emulator.static_token)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    finished = {line["stream"]: line for line in lines if line.get("event") == "finished"}
    assert set(finished) == {"contacts", "companies"}
    contacts = finished["contacts"]
    assert (contacts["logger"], contacts["status"], contacts["records"], contacts["connection"]
            ) == ("crm_engine.progress", "succeeded", 30, "hubspot")


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_output_to_a_closed_pipe_ends_quietly(tmp_path, unbuffered):
    """`crm-engine validate | head -1`: the reader goes away; no traceback, SIGPIPE's code."""
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    process = subprocess.Popen([sys.executable, "-m", "engine", "validate"], env=env,
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before anything is written: the first write (or flush) fails
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 128 + 13, stderr
    assert stderr == ""


class _Writes:
    """A stream that keeps each write apart and lets other threads run between two."""

    def __init__(self):
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        threading.Event().wait(0.001)  # another thread's line would come here
        return len(text)

    def flush(self) -> None:
        pass


def test_progress_lines_of_concurrent_streams_are_never_interleaved():
    out = _Writes()
    progress = LogProgress(out)
    runs = [SyncRun(run_id=f"r{i}", connector="hubspot", connection=f"c{i}", stream="contacts")
            for i in range(8)]

    def one(run: SyncRun) -> None:
        progress.stream_started(run)
        run.status = "succeeded"
        progress.stream_finished(run)

    threads = [threading.Thread(target=one, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(text.endswith("\n") and text.count("\n") == 1 for text in out.writes), out.writes
    lines = "".join(out.writes).splitlines()
    assert sorted(line for line in lines if line.endswith("started")) == [
        f"sync c{i}/contacts: started" for i in range(8)]
    assert sum(" succeeded, 0 records, 0 pages, " in line for line in lines) == 8


def test_every_argument_of_every_command_has_help():
    """Subcommands added by entry points (demo, sandbox, worker, ...) included."""
    missing = []

    def walk(parser: argparse.ArgumentParser, command: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{command} {name}")
            elif not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{command}: {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "crm-engine")
    assert missing == []
