"""`crm-engine worker`, `crm-engine enqueue` and `crm-engine beat` (entry points in
pyproject.toml; engine/cli.py describes the protocol). Registering imports neither Celery nor
Redis: only running one of these commands does."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from engine.engine import Engine
from engine.errors import InputError
from engine.project import Project, find_project, load_project

EXTRA_HINT = "the distributed mode needs its extra: pip install 'crm-engine[distributed]'"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", metavar="FILE", default=argparse.SUPPRESS,
                        help="project file (default: ./crm-engine.yaml when present)")
    parser.add_argument("--connectors-dir", help="directory of connector YAML files")


def register_worker(commands: Any) -> None:
    p = commands.add_parser("worker", help="run a Celery worker that syncs the units its "
                                           "Redis broker hands out into the project's "
                                           "DuckLake target")
    p.add_argument("--concurrency", type=int, default=4, metavar="N",
                   help="units synced at once by this worker (threads; default 4)")
    _common(p)
    p.set_defaults(handler=cmd_worker)


def register_enqueue(commands: Any) -> None:
    p = commands.add_parser("enqueue", help="send one sync task per (connection, stream) of "
                                            "the project file to the Redis broker")
    p.add_argument("names", nargs="*", metavar="CONNECTION", help="connections of the project")
    p.add_argument("--all", action="store_true", help="every connection of the project file")
    p.add_argument("--streams", help="comma-separated stream names (default: each "
                                     "connection's)")
    p.add_argument("--full-refresh", action="store_true",
                   help="read the streams again from scratch, forgetting their cursors")
    _common(p)
    p.set_defaults(handler=cmd_enqueue)


def register_beat(commands: Any) -> None:
    p = commands.add_parser("beat", help="send the project's scheduled syncs to the Redis "
                                         "broker on their cron schedules (run one beat)")
    p.add_argument("--schedule-file", help="where beat keeps its last run times (default: "
                                           ".crm-engine-beat beside the project file)")
    _common(p)
    p.set_defaults(handler=cmd_beat)


def _project_path(args: argparse.Namespace) -> Path:
    """The project file (a usage error without one, whatever is installed)."""
    path = find_project(getattr(args, "project", None))
    if path is None:
        raise InputError("--project", "the distributed mode syncs a project file: create "
                                      "./crm-engine.yaml or pass --project FILE")
    return path


def _load(args: argparse.Namespace) -> tuple[Project, Engine]:
    """The project, which must land in DuckLake (all three commands serve its workers)."""
    _, units, _ = _distributed()
    engine = Engine(connectors_dir=args.connectors_dir)
    project = load_project(_project_path(args), engine)
    units.require_lake(project)
    return project, engine


def _distributed() -> tuple[Any, Any, Any]:
    """The modules that import Celery and Redis, or a one-line error without them."""
    try:
        from engine.distributed import settings, units, worker
    except ImportError as exc:
        raise InputError("distributed", f"{EXTRA_HINT} ({exc})") from None
    return settings, units, worker


def _loglevel(args: argparse.Namespace) -> str:
    return "WARNING" if args.quiet else "INFO"


def cmd_worker(args: argparse.Namespace) -> int:
    _project_path(args)
    settings, units, worker = _distributed()
    if args.concurrency < 1:
        raise InputError("--concurrency", "must be at least 1")
    project, _ = _load(args)
    runtime = units.Runtime(project, settings.Settings.from_env(),
                            connectors_dir=args.connectors_dir)
    logging.getLogger("crm_engine").setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        worker.serve(runtime, concurrency=args.concurrency, loglevel=_loglevel(args))
    finally:
        runtime.close()
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    _project_path(args)
    settings, units, worker = _distributed()
    if args.all == bool(args.names):
        raise InputError("--all", "give --all or connection names (one of them)")
    project, engine = _load(args)
    streams = [s.strip() for s in args.streams.split(",") if s.strip()] if args.streams \
        else None
    chosen = units.units(project, engine, args.names or None, streams)
    try:
        ids = worker.enqueue(settings.Settings.from_env(), chosen,
                             full_refresh=args.full_refresh)
    except worker.BrokerUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"enqueued {len(ids)} units of {len({u.connection for u in chosen})} "
              f"connections")
    return 0


def cmd_beat(args: argparse.Namespace) -> int:
    _project_path(args)
    settings, units, worker = _distributed()
    project, engine = _load(args)
    schedule = worker.beat_schedule(project, units.units(project, engine))
    if not schedule:
        raise InputError("schedule", f"no connection of {project.file} has a schedule")
    schedule_file = args.schedule_file or str(Path(project.file).parent / ".crm-engine-beat")
    worker.run_beat(settings.Settings.from_env(), schedule, schedule_file,
                    loglevel=_loglevel(args))
    return 0
