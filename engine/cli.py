"""The `crm-engine` command line (also `python -m engine`).

Exit codes: 0 success; 1 a sync or action failed (the CRM, the network or the database);
2 bad input (arguments, payload, spec files); 3 a write's outcome is unknown (it may have been
applied: check the CRM before sending it again); 130 interrupted by Ctrl-C, 143 by SIGTERM.

Every subcommand is added the same way: a register function takes the subparsers object (what
``ArgumentParser.add_subparsers`` returns), adds its parser there and sets ``handler`` on it, a
callable taking the parsed arguments and returning the exit code:

    def register(commands):
        p = commands.add_parser("hello", help="say hello")
        p.add_argument("--name", default="world")
        p.set_defaults(handler=lambda args: print(f"hello {args.name}") or 0)

The engine's own commands are registered below. Other installed packages add commands by naming
their register functions in the ``crm_engine.commands`` entry-point group (by convention each
entry point is named after its command), e.g. in pyproject.toml:

    [project.entry-points."crm_engine.commands"]
    hello = "mypackage.cli:register"

Handlers get the same error handling and ``-v`` logging as the built-in commands.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import getpass
import json
import logging
import os
import re
import signal
import sys
import threading
import webbrowser
from concurrent.futures import ThreadPoolExecutor, wait
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import Any

from engine import oauth, secrets
from engine.connections import ConnectionStore
from engine.engine import CANCEL_GRACE_SECONDS, Engine
from engine.errors import CrmError, InputError, SpecError
from engine.loader import load_connector, load_mapping
from engine.progress import LogProgress, json_log_line, progress_for
from engine.project import (
    DEFAULT_MAX_CONCURRENCY,
    PROJECT_FILE,
    Project,
    ProjectConnection,
    find_project,
    load_project,
)
from engine.store import StoreBusy, StoreError, StoreTarget, SyncRun
from engine.sync.stream import Progress
from engine.templates import TemplateFailed

DEFAULT_DB = "crm.duckdb"
# How long a thread may hold the GIL while others wait (CPython's default is 5 ms). A sync runs
# two threads a stream plus a lander, hundreds with `sync --all`; each forced hand-over wakes
# another thread and cools the caches. 200 connections synced at once spent 41-52 s of CPU at
# 5 ms and 30-39 s at 50 ms (median wall of the evening's runs 46.9 s -> 43.0 s; see
# benchmarks/README.md); the threads' waits are on the network and rate budgets, far longer.
SWITCH_INTERVAL_SECONDS = 0.05
# When the cyclic garbage collector runs. CPython's (700, 10, 10) collects the youngest objects
# every 700 container allocations, and a sync allocates millions (parsed pages, rows) that
# reference counting frees anyway: 10,000 saves some 5% of a one-connection sync (paired runs,
# benchmarks/README.md). Not more: httpx binds each response and its stream to each other, so
# a page's bytes are freed by the collector only, and 50,000 (7%) held 60 MB more of them.
GC_THRESHOLDS = (10_000, 10, 10)
COMMANDS_GROUP = "crm_engine.commands"  # entry points adding subcommands; see the docstring
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_OUTCOME_UNKNOWN = 0, 1, 2, 3
# What Ctrl-C or SIGTERM leaves behind, per command (else just "interrupted").
INTERRUPTED_SYNC = "interrupted: what was read is saved; run the same command again to go on"


class Interrupted(KeyboardInterrupt):
    """SIGTERM (what cron, systemd and orchestrators send), handled like Ctrl-C: what was read
    is landed, the run is marked `interrupted`, and the process exits."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def _connection_options(parser: argparse.ArgumentParser, named: bool = True) -> None:
    if named:
        parser.add_argument("--connection",
                            help="connection name (default: the connector's name)")
    parser.add_argument("--base-url", help="API base URL, e.g. a local emulator or a regional host")
    parser.add_argument("--token", help="a ready access token or API key: the auth method's one "
                        "secret (better: CRM_ENGINE_<CONNECTOR>_TOKEN, which stays out of shell "
                        "history; a method with several reads CRM_ENGINE_<CONNECTOR>_<SECRET>)")
    parser.add_argument("--auth", dest="auth_method", help="auth method of the connector to use")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="connection setting (repeatable)")
    _connectors_dir_option(parser)


def _connectors_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connectors-dir", help="directory of connector YAML files (default: "
                                                 "$CRM_ENGINE_CONNECTORS, else the bundled ones)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm-engine", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version",
                        version=f"crm-engine {_version()}")
    _logging_options(parser, argparse.SUPPRESS)
    _project_option(parser)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("validate", help="check connector and mapping YAML files (and the "
                                             "project file)")
    p.add_argument("paths", nargs="*", help="files or directories (default: all connectors)")
    _connectors_dir_option(p)
    _project_option(p)
    p.set_defaults(handler=cmd_validate)

    p = commands.add_parser("connectors", help="list connectors, their streams and actions")
    _connectors_dir_option(p)
    p.set_defaults(handler=cmd_connectors)

    p = commands.add_parser("sync", help="sync streams into a DuckDB file")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="connections of the project file (run concurrently), or one connector")
    p.add_argument("--all", action="store_true", help="every connection of the project file")
    p.add_argument("--streams", help="comma-separated stream names (default: all)")
    p.add_argument("--full-refresh", action="store_true",
                   help="read the streams again from scratch, forgetting their cursors")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    _db_option(p)
    _concurrency_option(p)
    _connection_options(p)
    _project_option(p)
    p.set_defaults(handler=cmd_sync, interrupted=INTERRUPTED_SYNC)

    p = commands.add_parser("run-due", help="sync the project's connections whose schedule "
                                            "is due")
    p.add_argument("--now", help="ISO time to decide against (default: now)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    _db_option(p)
    _concurrency_option(p)
    _connectors_dir_option(p)
    _project_option(p)
    p.set_defaults(handler=cmd_run_due, interrupted=INTERRUPTED_SYNC)

    p = commands.add_parser("status", help="per stream: mode, cursor, last run, deletes")
    p.add_argument("connector", nargs="?", help="only this connector's streams")
    p.add_argument("--connection", help="only this connection")
    _db_option(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _connectors_dir_option(p)
    _project_option(p)
    p.set_defaults(handler=cmd_status)

    p = commands.add_parser("action", help="run one action and print its result as JSON")
    p.add_argument("connector", metavar="NAME",
                   help="a connection of the project file, or a connector")
    p.add_argument("action", help="its name in the connector (`crm-engine connectors` lists them)")
    p.add_argument("--data", required=True, help="JSON payload, or @file")
    p.add_argument("--db", default=os.environ.get("CRM_ENGINE_DB"),
                   help="log the action to this DuckDB file's action_log")
    p.add_argument("--log-payload", action="store_true", help="store the payload in action_log")
    _connection_options(p)
    _project_option(p)
    p.set_defaults(handler=cmd_action,
                   interrupted="interrupted: the request may have reached the CRM; check there "
                               "before running the action again (a create could be made twice)")

    p = commands.add_parser("connect", help="authorize a connection (OAuth 2.0), or store its "
                                            "secrets (an API key, a username and password)")
    p.add_argument("connector", help="the connector to connect (`crm-engine connectors`)")
    p.add_argument("--connection", help="connection name (default: the connector's name)")
    p.add_argument("--auth", dest="auth_method", help="auth method of the connector to use")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="connection setting (repeatable), e.g. a data centre or a test-org host")
    p.add_argument("--client-id", help="OAuth client id (else CRM_ENGINE_<CONNECTOR>_CLIENT_ID)")
    p.add_argument("--redirect-uri", default=oauth.DEFAULT_REDIRECT_URI,
                   help="loopback callback registered with the OAuth app")
    p.add_argument("--no-browser", action="store_true",
                   help="print the authorization URL instead of opening a browser (SSH)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the callback")
    _connectors_dir_option(p)
    p.set_defaults(handler=cmd_connect)

    p = commands.add_parser("disconnect", help="revoke a connection's tokens and forget them")
    p.add_argument("connector", help="the connection's connector")
    p.add_argument("--connection", help="connection name (default: the connector's name)")
    _connectors_dir_option(p)
    p.set_defaults(handler=cmd_disconnect)

    p = commands.add_parser("check", help="one cheap request per connection: credentials "
                                          "and reachability")
    p.add_argument("connections", nargs="*", metavar="CONNECTION",
                   help="connections of the project file, stored connections, or connector "
                        "names with a token in the environment (default: the project file's "
                        "connections, else every stored one)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _connection_options(p, named=False)
    _project_option(p)
    p.set_defaults(handler=cmd_check)

    p = commands.add_parser("connections", help="the project file's connections and the "
                                                "stored ones: auth, token expiry, last sync")
    _db_option(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _connectors_dir_option(p)
    _project_option(p)
    p.set_defaults(handler=cmd_connections)

    p = commands.add_parser("compact", help="merge the small files many commits leave and "
                                            "drop old snapshots (DuckLake; a DuckDB file "
                                            "checkpoints)")
    _db_option(p)
    p.add_argument("--keep-hours", type=float, default=1.0, metavar="H",
                   help="keep DuckLake snapshots this recent, for readers on them (default 1)")
    _connectors_dir_option(p)
    _project_option(p)
    p.set_defaults(handler=cmd_compact)

    p = commands.add_parser("rotate-key", help="re-encrypt the project's shared credentials "
                                               "with the first key of its key variable")
    _connectors_dir_option(p)
    _project_option(p)
    p.set_defaults(handler=cmd_rotate_key)

    _add_installed_commands(commands)
    for subparser in commands.choices.values():  # -v, -q after the command too
        _logging_options(subparser, argparse.SUPPRESS)
    return parser


def _project_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", metavar="FILE", default=argparse.SUPPRESS,
                        help=f"project file (default: ./{PROJECT_FILE} when present)")


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help=f"DuckDB file (default: $CRM_ENGINE_DB, else the project "
                                     f"file's database, else {DEFAULT_DB})")


def _concurrency_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-concurrency", type=int, metavar="N",
                        help="streams synced at once, over all connections (default: the "
                             f"project file's, else {DEFAULT_MAX_CONCURRENCY})")
    parser.add_argument("--map-processes", type=int, metavar="N",
                        help="processes beside this one that map each page of a read after "
                             "its first: faster where cores are spare, some 35 MB each "
                             "(default: the project file's map_processes, else 0: map here)")


def _map_processes(args: argparse.Namespace, project: Project | None) -> int:
    chosen = args.map_processes
    if chosen is None:
        return (project.map_processes if project else None) or 0
    if chosen < 0:
        raise InputError("--map-processes", "must be 0 or more")
    return chosen


def _version() -> str:
    try:
        return version("crm-engine")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _logging_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """-v, -q and --log-format, accepted before the command and after it. SUPPRESS keeps a
    subcommand's unset option from overwriting the value given before it."""
    if any("--log-format" in action.option_strings for action in parser._actions):
        return
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log requests, retries and progress details")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="print errors only")
    parser.add_argument("--log-format", choices=("text", "json"), default=default,
                        help="log lines as text (default) or as JSON objects")


def _add_installed_commands(commands: argparse._SubParsersAction) -> None:
    """The subcommands other installed packages register (``crm_engine.commands``)."""
    for entry_point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            register = entry_point.load()
        except Exception as exc:  # a broken extra must not take the engine's own commands down
            print(f"warning: command {entry_point.name!r} ({entry_point.value}) not loaded: "
                  f"{exc}", file=sys.stderr)
            continue
        register(commands)


def _config_values(pairs: list[str]) -> dict[str, Any]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InputError("--config", f"expected KEY=VALUE, got {pair!r}")
        values[key.strip()] = value
    return values


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.token:
        options["token"] = args.token
    if args.base_url:
        options["base_url"] = args.base_url
    if args.auth_method:
        options["auth_method"] = args.auth_method
    config = _config_values(args.config)
    if config:
        options["config"] = config
    return options


_TOP_LEVEL_MODELS = re.compile(r"^models\s*:", re.MULTILINE)
_TOP_LEVEL_CONNECTIONS = re.compile(r"^connections\s*:", re.MULTILINE)


def _file_kind(path: Path) -> str:
    """What a YAML file given to `validate` is, by its top-level keys (a file in `mappings/`
    is a mapping whatever it holds): `project`, `mapping` or `connector`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "connector"  # whose loader says what is wrong with it
    if path.parent.name == "mappings" or _TOP_LEVEL_MODELS.search(text):
        return "mapping"
    if path.name == PROJECT_FILE or _TOP_LEVEL_CONNECTIONS.search(text):
        return "project"
    return "connector"


def cmd_validate(args: argparse.Namespace) -> int:
    default = Engine(connectors_dir=args.connectors_dir).connectors_dir
    paths = [Path(p) for p in args.paths] or [default]
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    project = find_project(getattr(args, "project", None))
    if project is not None and not any(_same_file(project, file) for file in files):
        files.append(project)
    failed = 0
    for file in files:
        try:
            kind = _file_kind(file)
            if kind == "mapping":
                _, problems = load_mapping(file)
                if problems:
                    raise SpecError(problems)
                print(f"ok  {file}")
            elif kind == "project":
                loaded = load_project(file, Engine(connectors_dir=args.connectors_dir))
                print(f"ok  {file}: {len(loaded.connections)} connections")
            else:
                connector = load_connector(file)
                print(f"ok  {file} (+ {connector.mapping_file}): {len(connector.streams)} streams, "
                      f"{len(connector.actions)} actions")
        except SpecError as exc:
            failed += 1
            for problem in exc.problems:
                print(f"error  {problem}", file=sys.stderr)
    return 1 if failed else 0


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def cmd_connectors(args: argparse.Namespace) -> int:
    engine = Engine(connectors_dir=args.connectors_dir)
    for connector in engine.all_connectors():
        print(f"{connector.name}  ({connector.title})")
        print(f"  auth:    {', '.join(f'{m.name} ({m.type})' for m in connector.auth.values())}")
        print(f"  streams: {', '.join(f'{n} -> {s.table}' for n, s in connector.streams.items())}")
        print(f"  actions: {', '.join(connector.actions)}")
    return 0


def _project(args: argparse.Namespace, required: bool = False) -> Project | None:
    path = find_project(getattr(args, "project", None))
    if path is None:
        if required:
            raise InputError("--project", f"no project file: create ./{PROJECT_FILE} or pass "
                                          f"--project FILE")
        return None
    return load_project(path, Engine(connectors_dir=args.connectors_dir))


def _db(args: argparse.Namespace, project: Project | None) -> str | StoreTarget:
    """--db, else $CRM_ENGINE_DB, else the project's target or database, else crm.duckdb."""
    given = args.db or os.environ.get("CRM_ENGINE_DB")
    if given:
        return given
    if project is not None and project.target is not None:
        return project.target
    return (project.database if project else None) or DEFAULT_DB


def _exists(db: str | StoreTarget) -> bool:
    """Whether anything was synced there yet (a DuckLake target always answers)."""
    return not isinstance(db, str) or Path(db).exists()


def _credentials(project: Project | None) -> ConnectionStore | None:
    """The project's shared credential store, else None (files in $CRM_ENGINE_HOME)."""
    if project is None or project.credentials is None:
        return None
    return project.credentials.open()


def _project_credentials(args: argparse.Namespace) -> ConnectionStore | None:
    return _credentials(_project(args))


def cmd_sync(args: argparse.Namespace) -> int:
    streams = [s.strip() for s in args.streams.split(",")] if args.streams else None
    project = _project(args, required=args.all)
    if args.all or (project and args.names and all(n in project.connections
                                                   for n in args.names)):
        assert project is not None
        if args.all and args.names:
            raise InputError("--all", "give --all or connection names, not both")
        _no_connection_options(args)
        chosen = [project.connections[n] for n in (args.names or project.connections)]
        return _sync_project(args, project, chosen, streams)
    if len(args.names) != 1:
        unknown = [n for n in args.names if not project or n not in project.connections]
        raise InputError("NAME", "name one connector, or connections of the project file"
                         + (f" (not connections of it: {', '.join(unknown)})"
                            if project and unknown else "")
                         if args.names else "name a connector, or give --all")
    db = _db(args, project)
    with Engine(db=db, connectors_dir=args.connectors_dir, credentials=_credentials(project),
                map_processes=_map_processes(args, project)) as engine:
        connector, connection = _connector_or_stored(engine, args.names[0], args.connection,
                                                     project)
        runs = engine.sync(connector, connection, streams=streams,
                           full_refresh=args.full_refresh,
                           progress=_progress(args, many=False),
                           **_options(args))
        unstarted = _not_started(engine, connector, streams, runs)
    return _print_runs(args, runs, db, with_connection=False,
                       not_started={connection or connector: unstarted})


def _connector_or_stored(engine: Engine, name: str, connection: str | None,
                         project: Project | None) -> tuple[str, str | None]:
    """A NAME that is not one of the project's connections: a connector (its connection
    `--connection`, else its default), else a stored connection (`crm-engine connect ...
    --connection NAME`), as `check` takes them."""
    connectors = [path.stem for path in engine.connector_files()]
    if name in connectors:
        return name, connection
    stored = engine.credentials.load(name)
    if stored is not None and connection in (None, name):
        return stored.connector, name
    of_project = (f"a connection of {project.file} ({', '.join(project.connections)}), "
                  if project else "")
    raise InputError("NAME", f"{name!r} is neither {of_project}a stored connection "
                             f"(`crm-engine connections` lists them) nor a connector "
                             f"({', '.join(connectors)})")


def _progress(args: argparse.Namespace, many: bool) -> Progress | None:
    """How a sync shows its progress on stderr: nothing with -q; JSON lines with
    `--log-format json`; a line per stream's start and end for many connections or off a
    terminal; else a live line."""
    if args.quiet:
        return None
    if args.log_format == "json" or many:
        return LogProgress(sys.stderr, as_json=args.log_format == "json")
    return progress_for(sys.stderr)


def _not_started(engine: Engine, connector: str, streams: list[str] | None,
                 runs: list[SyncRun]) -> list[str]:
    """Streams asked for that did not start: a failure that every stream of the connection
    would meet (refused credentials, a spent quota) stops the others before they start."""
    ran = {run.stream for run in runs}
    return [s for s in streams or engine.connector(connector).streams if s not in ran]


def _print_runs(args: argparse.Namespace, runs: list[SyncRun], db: str | StoreTarget,
                with_connection: bool, not_started: dict[str, list[str]] | None = None) -> int:
    ok = all(r.status == "succeeded" for r in runs)
    if args.json:
        print(json.dumps([_run_json(r) for r in runs], indent=2, default=str))
        return EXIT_OK if ok else EXIT_FAILED
    first = f"{'connection':<20} " if with_connection else ""
    print(f"{first}{'stream':<14} {'status':<10} {'records':>9} {'pages':>7} {'requests':>9} "
          f"{'retries':>8}")
    for run in runs:
        first = f"{run.connection:<20} " if with_connection else ""
        print(f"{first}{run.stream:<14} {run.status:<10} {run.records:>9,} {run.pages:>7,} "
              f"{run.requests:>9,} {run.retries:>8,}")
        for warning in run.warnings:
            print(f"  warning: {warning}")
        if run.error:
            print(f"  error: {run.error}")
    unstarted = {name: streams for name, streams in (not_started or {}).items() if streams}
    if unstarted:
        listed = "; ".join(f"{name}: {', '.join(streams)}" if with_connection
                           else ', '.join(streams) for name, streams in unstarted.items())
        print(f"not started: {listed} (stopped by the failure above, which every stream of "
              f"the connection would meet; a rerun runs them)")
    print(f"database: {db}")
    return EXIT_OK if ok else EXIT_FAILED


def _sync_project(args: argparse.Namespace, project: Project, chosen: list[ProjectConnection],
                  streams: list[str] | None) -> int:
    """Sync connections of the project, and the streams of each, concurrently: at most
    `--max-concurrency` streams at once over all of them."""
    db = _db(args, project)
    workers = args.max_concurrency or project.max_concurrency or DEFAULT_MAX_CONCURRENCY
    if workers < 1:
        raise InputError("--max-concurrency", "must be at least 1")

    unstarted: dict[str, list[str]] = {}
    # Set on Ctrl-C: a connection whose thread had not yet begun its sync does not begin it
    # (the Engine's cancel stops the syncs running, and those started while they run).
    stopping = threading.Event()

    def one(conn: ProjectConnection) -> list[SyncRun]:
        progress = _progress(args, many=len(chosen) > 1)
        if stopping.is_set():
            return []
        try:
            runs = engine.sync(conn.connector, conn.name, streams=streams or conn.streams,
                               full_refresh=args.full_refresh, progress=progress,
                               **conn.options())
        except (InputError, SpecError, CrmError, StoreError, TemplateFailed) as exc:
            # Nothing ran (credentials, settings): one failed row says why, the others go on.
            run = SyncRun(conn.connector, conn.name, "-", status="failed", error=str(exc))
            if len(chosen) > 1 and isinstance(progress, LogProgress):
                progress.line(run, "failed", f"sync {conn.name}: failed: {exc}")
            return [run]
        unstarted[conn.name] = _not_started(engine, conn.connector, streams or conn.streams,
                                            runs)
        return runs

    with Engine(db=db, connectors_dir=args.connectors_dir, credentials=_credentials(project),
                max_concurrency=workers, map_processes=_map_processes(args, project)) as engine:
        engine.store  # noqa: B018 - open the database once, before the threads share it
        pool = ThreadPoolExecutor(max_workers=min(workers, len(chosen)),
                                  thread_name_prefix="sync")
        futures = [pool.submit(one, c) for c in chosen]
        try:
            results = [future.result() for future in futures]
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: connections not started never start; running ones land what
            # they read, mark their runs interrupted and stop at their next page.
            stopping.set()
            engine.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            wait(futures, timeout=CANCEL_GRACE_SECONDS)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    runs = [run for result in results for run in result]
    return _print_runs(args, runs, db, with_connection=True,
                       not_started={c.name: unstarted.get(c.name, []) for c in chosen})


def cmd_run_due(args: argparse.Namespace) -> int:
    project = _project(args, required=True)
    assert project is not None
    now = dt.datetime.now(dt.UTC)
    if args.now:
        try:
            now = dt.datetime.fromisoformat(args.now)
        except ValueError:
            raise InputError("--now", f"not an ISO time: {args.now!r}") from None
        now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    db = _db(args, project)
    last: dict[str, Any] = {}
    if _exists(db):
        try:
            with Engine(db=db, connectors_dir=args.connectors_dir) as engine:
                assert engine.store is not None
                last = dict(engine.store.query(
                    "SELECT connection, max(started) FROM sync_runs GROUP BY connection"))
        except StoreBusy as exc:
            # The previous run-due (or a sync by hand) is still at it: cron's next tick
            # starts what is due once it has ended. Held by anything else, it is an error.
            _held_by_sync(exc)
            print("[]" if args.json else f"{db} is being written by a sync (PID {exc.holder}): "
                  f"nothing started; what is due starts at the first run-due after it ends")
            return EXIT_OK
    due = [c for c in project.connections.values() if c.is_due(now, last.get(c.name))]
    if not due:
        if args.json:
            print("[]")
        else:
            print("nothing due")
        return EXIT_OK
    if not args.json:
        print(f"due: {', '.join(c.name for c in due)}", flush=True)
    args.full_refresh = False
    return _sync_project(args, project, due, None)


def cmd_compact(args: argparse.Namespace) -> int:
    db = _db(args, _project(args))
    if not _exists(db):
        raise InputError("--db", f"{db} does not exist (nothing has been synced into it)")
    with Engine(db=db, connectors_dir=args.connectors_dir) as engine:
        assert engine.store is not None
        if args.keep_hours < 0:
            raise InputError("--keep-hours", "must be 0 or more")
        done = engine.store.compact(dt.timedelta(hours=args.keep_hours))
    print(json.dumps(done, default=str))
    return EXIT_OK


def cmd_rotate_key(args: argparse.Namespace) -> int:
    project = _project(args, required=True)
    assert project is not None
    if project.credentials is None:
        raise InputError("credentials", f"{project.file} keeps no shared credentials (its "
                                        f"connections' are files in $CRM_ENGINE_HOME)")
    rotated = project.credentials.open().rotate()
    print(f"re-encrypted {rotated} connection(s) with the first key of "
          f"{project.credentials.key_env}")
    return EXIT_OK


def _run_json(run: Any) -> dict[str, Any]:
    return {key: getattr(run, key) for key in (
        "connector", "connection", "stream", "mode", "status", "records", "pages", "requests",
        "retries", "deleted", "started", "finished", "error", "warnings", "run_id")}


def cmd_check(args: argparse.Namespace) -> int:
    project = _project(args)
    declared = project.connections if project else {}
    with Engine(connectors_dir=args.connectors_dir,
                credentials=_credentials(project)) as engine:
        names = args.connections or list(declared) or engine.credentials.names()
        if not names:
            raise InputError("connections", "no connection to check: add them to "
                                            f"{PROJECT_FILE}, run `crm-engine connect`, or name "
                                            "a connector")
        if any(n in declared for n in names):
            _no_connection_options(args)
        results = [_check_one(engine, name, declared.get(name), args) for name in names]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            verdict = f"ok ({r['seconds']:.2f}s)" if r["ok"] else f"FAILED: {r['error']}"
            print(f"{r['connection']:<24} {r['connector']:<12} {verdict}")
    return EXIT_OK if all(r["ok"] for r in results) else EXIT_FAILED


def _check_one(engine: Engine, name: str, declared: ProjectConnection | None,
               args: argparse.Namespace) -> dict[str, Any]:
    """A project connection, a stored one, or a connector with secrets in the environment.
    Checking several, one that cannot even start (a secret not set) is a failed row."""
    try:
        if declared is not None:
            return engine.check(declared.connector, name, **declared.options())
        stored = engine.credentials.load(name)
        return engine.check(stored.connector if stored else name, name if stored else None,
                            **_options(args))
    except InputError as exc:
        if len(args.connections) == 1:
            raise
        return {"connector": declared.connector if declared else name, "connection": name,
                "ok": False, "status": None, "error": str(exc), "kind": "input", "seconds": 0.0}


def _no_connection_options(args: argparse.Namespace) -> None:
    given = [o for o, v in (("--connection", getattr(args, "connection", None)),
                            ("--token", args.token), ("--base-url", args.base_url),
                            ("--auth", args.auth_method), ("--config", args.config)) if v]
    if given:
        raise InputError(given[0], "is set per connection in the project file")


def cmd_connections(args: argparse.Namespace) -> int:
    project = _project(args)
    db = _db(args, project)
    declared = project.connections.values() if project else ()
    try:
        with Engine(db=db if _exists(db) else None, connectors_dir=args.connectors_dir,
                    credentials=_credentials(project)) as engine:
            rows = engine.connections(declared)
    except StoreBusy as exc:
        live = _held_by_sync(exc)
        # A sync in another process holds the file: its connections are running now; the
        # others' last sync cannot be read until it ends.
        with Engine(connectors_dir=args.connectors_dir,
                    credentials=_credentials(project)) as engine:
            rows = engine.connections(declared)
        for row in rows:
            started = [r["started"] for r in live["runs"] if r["connection"] == row["connection"]]
            row["last_sync"] = dt.datetime.fromisoformat(min(started)) if started else None
            row["last_status"] = "running" if started else "unknown (database in use)"
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return EXIT_OK
    if not rows:
        print(f"no connection: add them to {PROJECT_FILE}, or `crm-engine connect CONNECTOR`")
        return EXIT_OK
    print(f"{'connection':<24} {'connector':<12} {'from':<8} {'auth':<22} {'token expires':<26} "
          "last sync")
    for r in rows:
        auth = f"{r['auth_method']} ({r['auth_kind']})"
        expires = f"{r['token_expires']:%Y-%m-%d %H:%M:%S}" if r["token_expires"] else "-"
        synced = (f"{r['last_sync']:%Y-%m-%d %H:%M:%S} {r['last_status']}" if r["last_sync"]
                  else r["last_status"] or "never")
        print(f"{r['connection']:<24} {r['connector']:<12} {r['source']:<8} {auth:<22} "
              f"{expires:<26} {synced}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    db = _db(args, _project(args))
    if not _exists(db):
        raise InputError("--db", f"{db} does not exist (nothing has been synced into it)")
    try:
        with Engine(db=db, connectors_dir=args.connectors_dir) as engine:
            rows = engine.status(args.connector, args.connection)
    except StoreBusy as exc:
        return _print_live_runs(args, db, _held_by_sync(exc))
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return EXIT_OK
    if not rows:
        print("no stream has been synced yet")
        return EXIT_OK
    print(f"{'connection':<16} {'stream':<12} {'next run':<13} {'cursor':<25} {'last run':<12} "
          f"{'records':>9} {'requests':>9} {'deletes':>8}  when")
    for row in rows:
        # (A run still running is in the middle of its read too; it has not stopped there.)
        stopped = row["in_progress"] and row["status"] != "running"
        last = row["status"] + (" *" if stopped else "")
        when = row["finished"] or row["started"]
        print(f"{row['connection']:<16} {row['stream']:<12} {row['next_mode']:<13} "
              f"{row['cursor'] or '-':<25} {last:<12} {row['records']:>9,} "
              f"{row['requests']:>9,} {row['deleted_total']:>8,}  {when:%Y-%m-%d %H:%M:%S}")
    if any(row["in_progress"] and row["status"] != "running" for row in rows):
        print("* stopped in the middle of a read: the next run goes on from there")
    return EXIT_OK


def _held_by_sync(busy: StoreBusy) -> dict[str, Any]:
    """The runs in progress of the sync that holds the DuckDB file (engine.store.live);
    `busy` itself when what holds it is not a sync."""
    if busy.live is None:
        raise busy
    return busy.live


def _print_live_runs(args: argparse.Namespace, db: str | StoreTarget,
                     live: dict[str, Any]) -> int:
    """`status` while a sync in another process holds the DuckDB file: its runs in progress,
    as it last committed them (engine.store.live)."""
    runs = [r for r in live["runs"]
            if (not args.connector or r["connector"] == args.connector)
            and (not args.connection or r["connection"] == args.connection)]
    if args.json:
        print(json.dumps({"writer": live["pid"], "updated": live["updated"], "running": runs},
                         indent=2))
        return EXIT_OK
    updated = dt.datetime.fromisoformat(live["updated"])
    print(f"{db} is being written by a sync (PID {live['pid']}); its runs in progress as of "
          f"{updated:%H:%M:%S} UTC (the rest of the status once it ends):")
    print(f"{'connection':<16} {'stream':<12} {'mode':<13} {'records':>9} {'pages':>7} "
          f"{'requests':>9}  started")
    for run in runs:
        started = dt.datetime.fromisoformat(run["started"])
        print(f"{run['connection']:<16} {run['stream']:<12} {run['mode']:<13} "
              f"{run['records']:>9,} {run['pages']:>7,} {run['requests']:>9,}  "
              f"{started:%Y-%m-%d %H:%M:%S}")
    return EXIT_OK


def _payload(data: str) -> Any:
    text = data
    if data.startswith("@"):
        try:
            text = Path(data[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise InputError("--data", f"cannot read {data[1:]}: {reason}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError("--data", f"not valid JSON: {exc}") from None


def cmd_action(args: argparse.Namespace) -> int:
    payload = _payload(args.data)
    project = _project(args)
    declared = project.connections.get(args.connector) if project else None
    if declared is not None:  # its connector, secrets, base URL and settings are the file's
        _no_connection_options(args)
    options = declared.options() if declared is not None else _options(args)
    with Engine(db=args.db, connectors_dir=args.connectors_dir,
                credentials=_credentials(project)) as engine:
        connector, connection = (
            (declared.connector, declared.name) if declared is not None else
            _connector_or_stored(engine, args.connector, args.connection, project))
        result = engine.action(connector, args.action, payload, connection,
                               log_payload=args.log_payload, **options)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _secret_from_env_or_prompt(variables: list[str], prompt: str) -> str:
    """Secrets come from the environment or a no-echo prompt, never from argv."""
    for variable in variables:
        if os.environ.get(variable):
            return os.environ[variable]
    if not sys.stdin.isatty():
        raise InputError(variables[0], "is not set (and there is no terminal to ask on)")
    value = getpass.getpass(prompt)
    if not value:
        raise InputError(variables[0], "nothing was entered")
    return value


def cmd_connect(args: argparse.Namespace) -> int:
    engine = Engine(connectors_dir=args.connectors_dir, credentials=_project_credentials(args))
    connector = engine.connector(args.connector)
    prefix = f"CRM_ENGINE_{connector.name.upper()}"
    config = _config_values(args.config)
    method = engine.auth_method(connector, args.auth_method)
    variables = method.env_variables(connector.name)
    if not method.authorizes:  # the secrets are all there is: ask for each, store them
        values = {name: _secret_from_env_or_prompt(variables[name],
                                                   f"{connector.title} {description}: ")
                  for name, description in method.secrets.items()}
        conn = engine.store_secrets(connector.name, args.connection, secrets=values,
                                    config=config, auth_method=method.name)
        print(f"stored {conn.name}: {connector.title} via {method.name}")
        return 0
    client_id = args.client_id or os.environ.get(f"{prefix}_CLIENT_ID")
    if not client_id:
        raise InputError("--client-id", f"give the OAuth client id (or set {prefix}_CLIENT_ID)")
    secret = _secret_from_env_or_prompt(variables["client_secret"], "OAuth client secret: ")

    def show(url: str) -> None:
        if args.no_browser or not webbrowser.open(url):
            print(f"Open this URL to authorize crm-engine:\n  {url}", flush=True)
        else:
            print("Waiting for the authorization in your browser...", flush=True)

    conn = engine.connect(connector.name, args.connection, client_id=client_id,
                          client_secret=secret, config=config, auth_method=method.name,
                          redirect_uri=args.redirect_uri, open_url=show, timeout=args.timeout)
    settings = ", ".join(f"{k}={v}" for k, v in conn.credentials.settings.items())
    print(f"connected {conn.name}: {connector.title} via {method.name}"
          + (f" ({settings})" if settings else ""))
    return 0


def cmd_disconnect(args: argparse.Namespace) -> int:
    engine = Engine(connectors_dir=args.connectors_dir, credentials=_project_credentials(args))
    revoked = engine.disconnect(args.connector, args.connection)
    name = args.connection or args.connector
    print(f"disconnected {name}" + (" (tokens revoked)" if revoked else ""))
    return 0


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        return json_log_line(record.created, record.levelname, record.name, record.getMessage())


def _configure_logging(args: argparse.Namespace) -> None:
    level = (logging.ERROR if args.quiet else logging.INFO if args.verbose else logging.WARNING)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter() if args.log_format == "json"
                         else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    # A host that configured logging already (an embedding program, a test runner) keeps it.
    logging.basicConfig(level=level, handlers=[handler])


def tune_interpreter() -> None:
    """The process-wide settings of a process whose job is syncing (this command line, and the
    workers it starts): a library does not impose them on the program that imports it."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except BrokenPipeError:
        # Whoever read the output stopped (`crm-engine validate | head`): end quietly, as a
        # process killed by SIGPIPE would, and let the flush at exit write nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    for name, default in (("verbose", False), ("quiet", False), ("log_format", "text")):
        if not hasattr(args, name):
            setattr(args, name, default)
    _configure_logging(args)
    secrets.install_log_redaction()
    tune_interpreter()
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        return args.handler(args)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"error  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except (InputError, TemplateFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except CrmError as exc:
        print(json.dumps({"error": exc.to_dict()}, indent=2), file=sys.stderr)
        return EXIT_OUTCOME_UNKNOWN if exc.outcome_unknown else EXIT_FAILED
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        print(getattr(args, "interrupted", "interrupted"), file=sys.stderr)
        return 128 + signum
