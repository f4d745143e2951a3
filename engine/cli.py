"""The `crm-engine` command line (also `python -m engine`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from engine import secrets
from engine.engine import Engine
from engine.errors import CrmError, InputError, SpecError
from engine.progress import progress_for
from engine.spec import load_connector, load_mapping

DEFAULT_DB = "crm.duckdb"


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connection", help="connection name (default: the connector's name)")
    parser.add_argument("--base-url", help="API base URL, e.g. a sandbox or a regional host")
    parser.add_argument("--token", help="a ready access token or API key "
                        "(better: CRM_ENGINE_<CONNECTOR>_TOKEN, which stays out of shell history)")
    parser.add_argument("--auth", dest="auth_method", help="auth method of the connector to use")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="connection setting (repeatable)")
    parser.add_argument("--connectors-dir", help="directory of connector YAML files")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm-engine", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests and retries")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("validate", help="check connector and mapping YAML files")
    p.add_argument("paths", nargs="*", help="files or directories (default: all connectors)")
    p.add_argument("--connectors-dir")

    p = commands.add_parser("connectors", help="list connectors, their streams and actions")
    p.add_argument("--connectors-dir")

    p = commands.add_parser("sync", help="sync streams into a DuckDB file")
    p.add_argument("connector")
    p.add_argument("--streams", help="comma-separated stream names (default: all)")
    p.add_argument("--full-refresh", action="store_true", help="re-read everything")
    p.add_argument("--db", default=os.environ.get("CRM_ENGINE_DB", DEFAULT_DB))
    _connection_options(p)

    p = commands.add_parser("action", help="run one action and print its result as JSON")
    p.add_argument("connector")
    p.add_argument("action")
    p.add_argument("--data", required=True, help="JSON payload, or @file")
    p.add_argument("--db", default=os.environ.get("CRM_ENGINE_DB"),
                   help="log the action to this DuckDB file's action_log")
    p.add_argument("--log-payload", action="store_true", help="store the payload in action_log")
    _connection_options(p)

    p = commands.add_parser("sandbox", help="run local emulators of the vendors' APIs")
    p.add_argument("connectors", nargs="*", help="which ones (default: all)")
    p.add_argument("--port", type=int, default=8100, help="first port (one per emulator)")
    p.add_argument("--contacts", type=int, help="seed contacts per emulator")

    p = commands.add_parser("demo", help="sandboxes, OAuth, syncs, actions, summary")
    p.add_argument("--db", default="out/demo.duckdb")
    p.add_argument("--contacts", type=int, default=10_000)
    p.add_argument("--connectors", help="comma-separated (default: all with a sandbox)")
    return parser


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


def cmd_validate(args: argparse.Namespace) -> int:
    default = Engine(connectors_dir=args.connectors_dir).connectors_dir
    paths = [Path(p) for p in args.paths] or [default]
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    failed = 0
    for file in files:
        try:
            if file.parent.name == "mappings":
                _, problems = load_mapping(file)
                if problems:
                    raise SpecError(problems)
                print(f"ok  {file}")
            else:
                connector = load_connector(file)
                print(f"ok  {file} (+ {connector.mapping_file}): {len(connector.streams)} streams, "
                      f"{len(connector.actions)} actions")
        except SpecError as exc:
            failed += 1
            for problem in exc.problems:
                print(f"error  {problem}", file=sys.stderr)
    return 1 if failed else 0


def cmd_connectors(args: argparse.Namespace) -> int:
    engine = Engine(connectors_dir=args.connectors_dir)
    for connector in engine.all_connectors():
        print(f"{connector.name}  ({connector.title})")
        print(f"  auth:    {', '.join(f'{m.name} ({m.type})' for m in connector.auth.values())}")
        print(f"  streams: {', '.join(f'{n} -> {s.table}' for n, s in connector.streams.items())}")
        print(f"  actions: {', '.join(connector.actions)}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    streams = [s.strip() for s in args.streams.split(",")] if args.streams else None
    with Engine(db=args.db, connectors_dir=args.connectors_dir) as engine:
        runs = engine.sync(args.connector, args.connection, streams=streams,
                           full_refresh=args.full_refresh, progress=progress_for(sys.stderr),
                           **_options(args))
    print(f"{'stream':<14} {'status':<10} {'records':>9} {'pages':>7} {'requests':>9} "
          f"{'retries':>8}")
    for run in runs:
        print(f"{run.stream:<14} {run.status:<10} {run.records:>9,} {run.pages:>7,} "
              f"{run.requests:>9,} {run.retries:>8,}")
        if run.error:
            print(f"  error: {run.error}")
    print(f"database: {args.db}")
    return 0 if all(r.status == "succeeded" for r in runs) else 1


def _payload(data: str) -> Any:
    text = Path(data[1:]).read_text(encoding="utf-8") if data.startswith("@") else data
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError("--data", f"not valid JSON: {exc}") from None


def cmd_action(args: argparse.Namespace) -> int:
    payload = _payload(args.data)
    with Engine(db=args.db, connectors_dir=args.connectors_dir) as engine:
        result = engine.action(args.connector, args.action, payload, args.connection,
                               log_payload=args.log_payload, **_options(args))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from engine.demo import serve_sandboxes

    return serve_sandboxes(args.connectors, args.port, args.contacts)


def cmd_demo(args: argparse.Namespace) -> int:
    from engine.demo import run_demo

    only = [c.strip() for c in args.connectors.split(",")] if args.connectors else None
    return run_demo(args.db, contacts=args.contacts, only=only)


COMMANDS = {
    "validate": cmd_validate,
    "connectors": cmd_connectors,
    "sync": cmd_sync,
    "action": cmd_action,
    "sandbox": cmd_sandbox,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    secrets.install_log_redaction()
    try:
        return COMMANDS[args.command](args)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"error  {problem}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CrmError as exc:
        print(json.dumps({"error": exc.to_dict()}, indent=2), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
