"""`crm-engine demo` and `crm-engine sandbox`: the embedded default, end to end.

The engine's CLI knows neither command: it finds them through this project's
``crm_engine.commands`` entry points (pyproject.toml), which name :func:`register_demo` and
:func:`register_sandbox` (see engine/cli.py for the protocol).

`demo`, for every connector that has a local emulator: start it, connect through its real OAuth
flow (the emulator consents at once; we read the redirect instead of opening a browser), sync
every stream into one DuckDB file, run each action once with the example payload from its YAML,
then print a summary and example SQL. `sandbox`: serve emulators until Ctrl-C.

Emulators come from the `sandbox` package's registry; each offers `client_id`,
`client_secret`, `static_token` and `connection_config(url)` (the connector settings that point
at it), so nothing here knows a vendor.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import httpx

import sandbox  # the package only: its EMULATORS load on first use, not when the CLI starts
from engine.connections import Connection
from engine.engine import Engine
from engine.errors import CrmError
from engine.models import unified_models
from engine.progress import progress_for
from engine.spec import Connector

README = Path(__file__).resolve().parent.parent / "README.md"
# Printed after the README's queries.
DEMO_SQL = [
    ("Activities and links per connection (links: the associations table)",
     "SELECT connector, (SELECT count(*) FROM tasks t WHERE t.connector = c.connector) AS tasks, "
     "(SELECT count(*) FROM calls t WHERE t.connector = c.connector) AS calls, "
     "(SELECT count(*) FROM meetings t WHERE t.connector = c.connector) AS meetings, "
     "(SELECT count(*) FROM notes t WHERE t.connector = c.connector) AS notes, "
     "(SELECT count(*) FROM associations t WHERE t.connector = c.connector) AS links "
     "FROM (SELECT DISTINCT connector FROM contacts) c ORDER BY 1"),
    ("Sync runs",
     "SELECT connection, stream, status, records, pages, requests, retries, "
     "round(epoch(finished) - epoch(started), 2) AS seconds FROM sync_runs ORDER BY started"),
    ("Action log", "SELECT connection, action, status, remote_id FROM action_log ORDER BY logged"),
]


def readme_queries() -> list[tuple[str, str]]:
    """(title, SQL) of each statement in the README's example SQL block (section "The DuckDB
    file"); the title is the comment line above it. tests/test_readme_sql.py checks each."""
    if not README.exists():  # an installed copy without the README: just the demo's own
        return []
    text = README.read_text(encoding="utf-8")
    block = text.split("## The DuckDB file", 1)[1].split("```sql\n", 1)[1].split("```", 1)[0]
    queries, title, lines = [], "", []
    for line in block.splitlines():
        if line.startswith("--"):
            title = line.removeprefix("--").strip()
            continue
        lines.append(line)
        if line.rstrip().endswith(";"):
            queries.append((title, "\n".join(lines).rstrip().removesuffix(";")))
            lines = []
    return queries


def _emulators(engine: Engine, only: list[str] | None) -> dict[str, type]:
    names = only or [n for n in sandbox.EMULATORS
                     if (engine.connectors_dir / f"{n}.yaml").exists()]
    unknown = [n for n in names if n not in sandbox.EMULATORS]
    if unknown:
        raise SystemExit(f"no sandbox for: {', '.join(unknown)} "
                         f"(sandboxes: {', '.join(sandbox.EMULATORS)})")
    return {n: sandbox.EMULATORS[n] for n in names}


def follow_without_browser(url: str) -> None:
    """Stand in for a person's browser: request the consent page and follow its redirect to
    the loopback callback (the emulators consent at once)."""
    with httpx.Client(timeout=30, follow_redirects=True) as client:
        client.get(url)


def connect_oauth(engine: Engine, connector: str, emulator: Any, url: str,
                  connection: str) -> Connection:
    """The real authorization-code flow against an emulator, loopback callback included."""
    return engine.connect(connector, connection, client_id=emulator.client_id,
                          client_secret=emulator.client_secret,
                          config=emulator.connection_config(url),
                          redirect_uri="http://127.0.0.1:0/callback",
                          open_url=follow_without_browser, timeout=30)


def run_actions(engine: Engine, connector: Connector, connection: str) -> list[tuple[str, str]]:
    results: dict[str, Any] = {}
    outcomes = []
    for name, action in connector.actions.items():
        if action.example is None:
            continue
        payload = action.example.render({"results": results})
        try:
            results[name] = engine.action(connector.name, name, payload, connection)
            outcomes.append((name, f"ok, id {results[name].get('id')}"))
        except CrmError as exc:
            outcomes.append((name, f"FAILED: {exc}"))
    return outcomes


def run_demo(db: str, *, contacts: int, only: list[str] | None = None) -> int:
    db_path = Path(db)
    if db_path.exists():
        db_path.unlink()  # the demo starts from an empty file each time
    home = db_path.parent / "demo-home"
    ok = True
    with Engine(db=db_path, home=home) as engine:
        for name, emulator_class in _emulators(engine, only).items():
            connector = engine.connector(name)
            emulator = emulator_class(contacts=contacts, companies=max(contacts // 10, 10),
                                      deals=max(contacts // 5, 10), **emulator_class.DEMO_OPTIONS)
            print(f"\n== {connector.title}: sandbox with {contacts:,} contacts")
            with emulator.start() as running:
                conn = connect_oauth(engine, name, emulator, running.url, f"{name}-demo")
                print(f"connected {conn.name} via OAuth ({conn.auth_method}) at {running.url}")
                started = time.perf_counter()
                runs = engine.sync(name, conn.name, progress=progress_for(sys.stdout))
                elapsed = time.perf_counter() - started
                total = sum(r.records for r in runs)
                print(f"synced {total:,} records in {elapsed:.1f}s ({total / elapsed:,.0f}/s)")
                ok = ok and all(r.status == "succeeded" for r in runs)
                for action, outcome in run_actions(engine, connector, conn.name):
                    print(f"  action {action:<24} {outcome}")
                    ok = ok and outcome.startswith("ok")
        print(f"\n== DuckDB file: {db_path}\n")
        assert engine.store is not None
        for model in unified_models().values():  # the queries name tables some CRMs lack
            engine.store.ensure_table(model)
        for title, sql in [*readme_queries(), *DEMO_SQL]:
            print(f"-- {title}\n{sql};")
            for row in engine.store.query(sql):
                print("   ", " | ".join("" if v is None else str(v) for v in row))
            print()
    print("demo " + ("succeeded" if ok else "FAILED"))
    return 0 if ok else 1


def try_commands(name: str, emulator: Any, url: str) -> list[str]:
    """Shell lines that sync from a running emulator and run one action against it. The
    token goes in the environment, never on a command line (where `ps` would show it)."""
    return [
        f"export CRM_ENGINE_{name.upper()}_TOKEN={emulator.static_token}",
        f"crm-engine sync {name} --base-url {url} --db {name}.duckdb",
        f"crm-engine action {name} search_contact_by_email --base-url {url} "
        f"--data '{{\"email\": \"nobody@example.com\"}}'",
    ]


def serve_sandboxes(names: list[str], first_port: int, contacts: int | None) -> int:
    chosen = names or list(sandbox.EMULATORS)
    running = []
    try:
        for offset, name in enumerate(chosen):
            options = {"contacts": contacts} if contacts else {}
            emulator = sandbox.EMULATORS[name](**options)
            server = emulator.start(port=first_port + offset)
            running.append(server)
            print(f"{name}: {server.url}  client_id={emulator.client_id} "
                  f"client_secret={emulator.client_secret} token={emulator.static_token}")
            print("  try:\n" + "".join(f"    {line}\n" for line in
                                        try_commands(name, emulator, server.url)), end="")
        print("Ctrl-C stops them.", flush=True)  # also when stdout is a pipe or a file
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        for server in running:
            server.close()


# The crm_engine.commands entry points (engine/cli.py describes the protocol).


def register_demo(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("demo", help="sandboxes, OAuth, syncs, actions, summary")
    p.add_argument("--db", default="out/demo.duckdb", help="DuckDB file to sync into "
                                                            "(default: out/demo.duckdb)")
    p.add_argument("--contacts", type=int, default=10_000,
                   help="seed contacts per emulator (default: 10,000)")
    p.add_argument("--connectors", help="comma-separated (default: all with a sandbox)")
    p.set_defaults(handler=_demo_command)


def _demo_command(args: argparse.Namespace) -> int:
    only = [c.strip() for c in args.connectors.split(",")] if args.connectors else None
    return run_demo(args.db, contacts=args.contacts, only=only)


def register_sandbox(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("sandbox", help="run local emulators of the vendors' APIs")
    p.add_argument("connectors", nargs="*", help="which ones (default: all)")
    p.add_argument("--port", type=int, default=8100, help="first port (one per emulator)")
    p.add_argument("--contacts", type=int, help="seed contacts per emulator")
    p.set_defaults(handler=_sandbox_command)


def _sandbox_command(args: argparse.Namespace) -> int:
    return serve_sandboxes(args.connectors, args.port, args.contacts)
