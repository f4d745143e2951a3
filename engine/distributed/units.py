"""Units of work: one (connection, stream) of a project file, synced by whichever worker
takes its task. Running a unit is idempotent: its lock keeps a second delivery from running it
at the same time, a delivery already done is skipped, and the sync itself goes on from the
stream's last landed page (engine.sync.checkpoint), so a redelivered unit neither duplicates
nor skips rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.clock import Clock
from engine.distributed.settings import Settings
from engine.distributed.shared import SharedState
from engine.engine import Engine
from engine.errors import InputError
from engine.project import Project, ProjectConnection
from engine.ratelimit.redis_budget import RedisBudgets
from engine.store import SyncRun

log = logging.getLogger("crm_engine.distributed")


@dataclass(frozen=True)
class Unit:
    connection: str
    stream: str


class UnitBusy(Exception):
    """Another worker holds the unit's lock (it runs this unit now)."""


def units(project: Project, engine: Engine, names: list[str] | None = None,
          streams: list[str] | None = None) -> list[Unit]:
    """The units of the connections named (default: all), each with its streams: those given,
    else the connection's own list in the project file, else all of its connector's."""
    chosen = names or list(project.connections)
    unknown = [n for n in chosen if n not in project.connections]
    if unknown:
        raise InputError("CONNECTION", f"not connections of {project.file}: "
                                       f"{', '.join(unknown)}")
    out = []
    for name in chosen:
        conn = project.connections[name]
        connector = engine.connector(conn.connector)
        for stream in streams or conn.streams or list(connector.streams):
            if stream not in connector.streams:
                raise InputError("--streams", f"{connector.name} has no stream {stream!r} "
                                              f"(streams: {', '.join(connector.streams)})")
            out.append(Unit(name, stream))
    return out


def require_lake(project: Project) -> None:
    """Workers land in the project's DuckLake target: without one, nothing a worker could run
    is worth sending to the broker either."""
    if project.target is None:
        raise InputError("target", f"{project.file} has no DuckLake `target`: workers on "
                                   f"many machines land in DuckLake (a DuckDB file has one "
                                   f"writer: use `crm-engine sync` for it)")


class Runtime:
    """What one worker process holds: the project, one Engine landing in the project's
    DuckLake target (its threads share it), the shared state and the budgets."""

    def __init__(self, project: Project, settings: Settings, *,
                 connectors_dir: str | Path | None = None, shared: SharedState | None = None):
        require_lake(project)
        self.project = project
        self.settings = settings
        self.shared = shared or SharedState.connect(settings)
        self.engine = Engine(
            db=project.target, connectors_dir=connectors_dir,
            credentials=project.credentials.open() if project.credentials else None,
            budgets=RedisBudgets(self.shared.client, Clock()),
            refresh_lock=self.shared.refresh_lock)

    def close(self) -> None:
        self.engine.close()
        self.shared.client.close()

    def connection(self, name: str) -> ProjectConnection:
        if name not in self.project.connections:
            raise InputError("connection", f"not a connection of {self.project.file}: {name!r}")
        return self.project.connections[name]

    def run(self, unit: Unit, task_id: str, *, full_refresh: bool = False) -> SyncRun | None:
        """Sync the unit once; None when this delivery was done already. Raises UnitBusy
        while another worker runs it."""
        conn = self.connection(unit.connection)
        with self.shared.unit_lock(unit.connection, unit.stream) as held:
            if not held:
                raise UnitBusy(f"{unit.connection}/{unit.stream} is running on another worker")
            if self.shared.is_done(task_id):
                log.info("%s/%s: task %s was done already", unit.connection, unit.stream,
                         task_id)
                return None
            # A stream's first sync also syncs the reference streams it looks values up in.
            runs = self.engine.sync(conn.connector, conn.name, streams=[unit.stream],
                                    full_refresh=full_refresh, **conn.options())
            run = next(r for r in runs if r.stream == unit.stream)
            if run.status == "succeeded":
                self.shared.mark_done(task_id)
            return run


def run_summary(run: SyncRun) -> dict[str, Any]:
    return {"connection": run.connection, "stream": run.stream, "status": run.status,
            "mode": run.mode, "records": run.records, "pages": run.pages,
            "requests": run.requests, "error": run.error}
