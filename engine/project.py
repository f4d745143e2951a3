"""The project file, `crm-engine.yaml`: the connections one installation syncs (connector, auth
method, config, secrets as environment-variable references), where they land (a DuckDB file, or
a DuckLake `target`), where their credentials are kept (`credentials`, when shared in
PostgreSQL) and their cron schedules. `load_project` checks it against
`schemas/project.schema.yaml`, then its meaning against the connectors, and reports every
problem with file, line and YAML path."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cronsim import CronSim, CronSimError

from engine import schema_check
from engine.errors import InputError, Problem, SpecError
from engine.shared_credentials import SharedCredentialsTarget
from engine.store.ducklake import DuckLakeTarget
from engine.yamlsource import Locator, load

if TYPE_CHECKING:
    from engine.engine import Engine

PROJECT_FILE = "crm-engine.yaml"
DEFAULT_MAX_CONCURRENCY = 4


@dataclass
class ProjectConnection:
    name: str
    connector: str
    auth: str | None = None
    secrets: dict[str, str] = field(default_factory=dict)  # secret name -> environment variable
    config: dict[str, Any] = field(default_factory=dict)
    base_url: str | None = None
    streams: list[str] | None = None
    schedule: str | None = None

    def secret_values(self) -> dict[str, str]:
        """The secrets, read from the environment now; an unset variable is an error naming it."""
        values = {}
        for name, variable in self.secrets.items():
            value = os.environ.get(variable)
            if not value:
                raise InputError(variable, f"is not set (secret {name!r} of connection "
                                           f"{self.name!r})")
            values[name] = value
        return values

    def options(self) -> dict[str, Any]:
        """Keyword arguments for `Engine.sync` / `Engine.session`."""
        options: dict[str, Any] = {}
        if self.secrets:
            options["secrets"] = self.secret_values()
            options["secrets_from"] = (f"{', '.join(self.secrets.values())} (the project "
                                       f"file's secrets of connection {self.name!r})")
        if self.auth:
            options["auth_method"] = self.auth
        if self.config:
            options["config"] = dict(self.config)
        if self.base_url:
            options["base_url"] = self.base_url
        return options

    def last_due(self, now: dt.datetime) -> dt.datetime | None:
        """The most recent scheduled time at or before `now` (None without a schedule)."""
        if not self.schedule:
            return None
        now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
        start = now.astimezone(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        return next(CronSim(self.schedule, start, reverse=True))  # strictly before start

    def is_due(self, now: dt.datetime, last_started: dt.datetime | None) -> bool:
        """Scheduled, and a scheduled time has come since its last sync started (or never)."""
        due = self.last_due(now)
        if due is None:
            return False
        if last_started is None:
            return True
        if last_started.tzinfo is None:
            last_started = last_started.replace(tzinfo=dt.UTC)
        return due > last_started


@dataclass
class Project:
    file: Path
    database: str | None
    max_concurrency: int | None
    connections: dict[str, ProjectConnection]
    target: DuckLakeTarget | None = None  # instead of `database`
    credentials: SharedCredentialsTarget | None = None  # instead of files in the home
    map_processes: int | None = None  # engine.sync.mapping_pool


def find_project(path: str | Path | None) -> Path | None:
    """`--project FILE` (which must exist), else ./crm-engine.yaml when there is one."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError("--project", f"{path} does not exist")
        return path
    default = Path(PROJECT_FILE)
    return default if default.is_file() else None


def load_project(path: str | Path, engine: Engine | None = None) -> Project:
    """Load and check a project file; raises SpecError with every problem found."""
    from engine.engine import Engine  # the engine imports nothing from here

    path = Path(path)
    data, loc = load(path)
    if data is None:
        raise SpecError([loc.problem((), "the project file is empty: it needs `connections`")])
    problems = schema_check.check("project", data, loc)
    if problems:
        raise SpecError(problems)
    engine = engine or Engine()
    connections = {}
    for name, spec in data["connections"].items():
        connections[name] = ProjectConnection(
            name=name, connector=spec["connector"], auth=spec.get("auth"),
            secrets={k: v["env"] for k, v in (spec.get("secrets") or {}).items()},
            config=dict(spec.get("config") or {}), base_url=spec.get("base_url"),
            streams=spec.get("streams"), schedule=spec.get("schedule"))
        problems.extend(_check_connection(connections[name], engine, loc))
    if problems:
        raise SpecError(problems)
    if "database" in data and "target" in data:
        raise SpecError([loc.problem(("target",), "give `database` (a DuckDB file) or `target`, "
                                                  "not both")])
    database = data.get("database")
    if database is not None:
        database = _relative(path, database)
    target = None
    if "target" in data:
        lake = data["target"]["ducklake"]
        data_path = lake["data_path"]
        target = DuckLakeTarget(lake["catalog"].removeprefix("ducklake:"),
                                data_path if "://" in data_path else _relative(path, data_path),
                                (lake.get("password") or {}).get("env"))
    credentials = None
    if "credentials" in data:
        shared = data["credentials"]
        credentials = SharedCredentialsTarget(shared["postgres"], shared["key"]["env"],
                                              (shared.get("password") or {}).get("env"))
    return Project(path, database, data.get("max_concurrency"), connections, target,
                   credentials, data.get("map_processes"))


def _relative(project_file: Path, path: str) -> str:
    """A path in the project file is relative to the file."""
    return str(project_file.parent / path) if project_file.parent != Path() else path


def _check_connection(conn: ProjectConnection, engine: Engine, loc: Locator) -> list[Problem]:
    from engine.engine import coerce_config

    at = ("connections", conn.name)
    problems: list[Problem] = []
    if conn.schedule is not None:
        try:
            CronSim(conn.schedule, dt.datetime.now(dt.UTC))
        except CronSimError as exc:
            problems.append(loc.problem(at + ("schedule",),
                                        f"not a valid cron expression: {exc}"))
    try:
        connector = engine.connector(conn.connector)
    except InputError as exc:
        return [*problems, loc.problem(at + ("connector",), exc.message)]
    except SpecError as exc:
        return [*problems, loc.problem(at + ("connector",), f"connector {conn.connector!r} has "
                                       f"{len(exc.problems)} problem(s): run `crm-engine "
                                       f"validate` ({exc.problems[0]})")]
    method = None
    if conn.auth is not None:
        method = connector.auth.get(conn.auth)
        if method is None:
            problems.append(loc.problem(at + ("auth",), f"{connector.name} has no auth method "
                                        f"{conn.auth!r} (known: {', '.join(connector.auth)})"))
    elif conn.secrets:
        method = next((m for m in connector.auth.values() if not m.authorizes), None)
    if conn.secrets and method is not None:
        if method.authorizes:
            problems.append(loc.problem(at + ("secrets",), (
                f"auth method {method.name!r} authorizes through a browser and takes no secrets "
                f"here: run `crm-engine connect {connector.name} --connection {conn.name}`")))
        else:
            for secret in conn.secrets:
                if secret not in method.secrets:
                    problems.append(loc.problem(at + ("secrets", secret), (
                        f"auth method {method.name!r} has no secret {secret!r} "
                        f"(its secrets: {', '.join(method.secrets) or 'none'})")))
            missing = [s for s in method.secrets if s not in conn.secrets]
            if missing:
                problems.append(loc.problem(at + ("secrets",), f"auth method {method.name!r} "
                                            f"also needs {', '.join(missing)}"))
    elif conn.secrets and conn.auth is None:
        problems.append(loc.problem(at + ("secrets",), f"{connector.name} has no auth method "
                                    "that takes secrets"))
    for i, stream in enumerate(conn.streams or []):
        if stream not in connector.streams:
            problems.append(loc.problem(at + ("streams", i), (
                f"{connector.name} has no stream {stream!r} "
                f"(streams: {', '.join(connector.streams)})")))
    for key, value in conn.config.items():  # one by one, so each problem has its own line
        try:
            coerce_config(connector, {key: value})
        except InputError as exc:
            if exc.field == f"config.{key}":
                problems.append(loc.problem(at + ("config", key), exc.message))
    try:
        coerce_config(connector, conn.config)
    except InputError as exc:  # a required setting not given
        if exc.field.removeprefix("config.") not in conn.config:
            problems.append(loc.problem(at + ("config",), f"{exc.field}: {exc.message}"))
    return problems
