"""The embedded default store: one DuckDB file.

Records land a batch at a time (one INSERT per batch, never per record: DuckDB reads the batch
as a JSON file of columns), and a batch, its sync state and its run counters commit in one
transaction: a crash or kill loses nothing, and a rerun upserts over what is there, neither
duplicating nor skipping.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import orjson

from engine.clock import utc_now
from engine.models import Model
from engine.store import Batch, Deletion, Landing, StoreError, SyncRun

_SQL_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "decimal": "DECIMAL(38, 6)",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}

BOOKKEEPING_DDL = """
CREATE TABLE IF NOT EXISTS sync_runs (
    run_id VARCHAR PRIMARY KEY,
    connector VARCHAR NOT NULL,
    connection VARCHAR NOT NULL,
    stream VARCHAR NOT NULL,
    mode VARCHAR NOT NULL,
    started TIMESTAMPTZ NOT NULL,
    finished TIMESTAMPTZ,
    status VARCHAR NOT NULL,
    records BIGINT NOT NULL DEFAULT 0,
    pages BIGINT NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0,
    retries BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT DEFAULT 0,
    error VARCHAR,
    api_usage VARCHAR,
    warnings JSON,
    process VARCHAR
);
CREATE TABLE IF NOT EXISTS sync_state (
    connection VARCHAR NOT NULL,
    stream VARCHAR NOT NULL,
    connector VARCHAR NOT NULL,
    state JSON,
    updated TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (connection, stream)
);
CREATE TABLE IF NOT EXISTS action_log (
    logged TIMESTAMPTZ NOT NULL,
    connector VARCHAR NOT NULL,
    connection VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    remote_id VARCHAR,
    duration_ms DOUBLE,
    error VARCHAR,
    payload JSON
);
"""


def _last_occurrences(ids: list[Any]) -> list[int] | None:
    """Indexes to keep so each id appears once (its last time), or None if all are unique."""
    if len(set(ids)) == len(ids):
        return None
    last = {record_id: i for i, record_id in enumerate(ids)}
    return sorted(last.values())


def _groups(landings: list[Landing]) -> list[list[Landing]]:
    """Batches that land in one INSERT: same table, all appended or all upserted."""
    groups: dict[tuple[str, bool], list[Landing]] = {}
    for landing in landings:
        if len(landing.batch):
            groups.setdefault((landing.batch.model.table, landing.append), []).append(landing)
    return list(groups.values())


def _struct_literal(types: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{name}': '{sql}'" for name, sql in types.items()) + "}"


# Identifies this process in `sync_runs.process`. DuckDB lets one process at a time open a file
# for writing, so a `running` row of another process, found when we open the file, is a run
# whose process died (kill -9, a crash, a lost machine): it is marked `abandoned`.
PROCESS = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


def connect(path: str) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file, turning its failures into one-line StoreErrors."""
    try:
        return duckdb.connect(path)
    except duckdb.Error as exc:
        text = str(exc).removeprefix("IO Error: ")
        holder = _LOCK_HOLDER.search(text)
        if holder:
            raise StoreError(f"{path} is in use by another process (PID {holder['pid']}, "
                             f"{Path(holder['program']).name}); wait for it to finish or "
                             f"choose another --db") from None
        if "not a valid DuckDB database file" in text:
            raise StoreError(f"{path} is not a DuckDB database file") from None
        raise StoreError(f"cannot open {path}: {text}") from None



class DuckDBStore:
    """One DuckDB file (the `Store` interface). Safe to share between threads: writes are
    serialized on one connection."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._con = connect(self.path)
        self._con.execute("SET TimeZone = 'UTC'")
        # DuckDB would otherwise cache up to 80% of RAM; a sync needs little, and memory must
        # stay flat however many records land. Spilled blocks are re-read from the file.
        memory = os.environ.get("CRM_ENGINE_DUCKDB_MEMORY", "128MB")
        self._con.execute(f"SET memory_limit = '{memory}'")
        # DuckDB draws a progress bar on stdout for slow statements: it would corrupt --json.
        self._con.execute("SET enable_progress_bar = false")
        self._lock = threading.Lock()
        self._ensured: set[str] = set()
        # Per table, the connections with rows (read once, then kept: rows are never removed).
        self._filled: dict[str, set[str]] = {}
        self._con.execute(BOOKKEEPING_DDL)
        # Files written by older versions gain the newer columns.
        for column in ("api_usage VARCHAR", "warnings JSON", "process VARCHAR",
                       "deleted BIGINT DEFAULT 0"):
            self._con.execute(f"ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS {column}")
        self._con.execute(
            "UPDATE sync_runs SET status = 'abandoned', finished = ?, error = coalesce(error, "
            "'its process ended without finishing (killed or crashed); a rerun repairs it') "
            "WHERE status = 'running' AND process IS DISTINCT FROM ?", [utc_now(), PROCESS])

    def close(self) -> None:
        self._con.close()

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            self._con.begin()
            try:
                yield self._con
            except duckdb.Error as exc:
                self._con.rollback()
                raise StoreError(f"{self.path}: {exc}") from exc
            except BaseException:
                self._con.rollback()
                raise
            self._con.commit()

    # -- unified tables --------------------------------------------------------------------
    def ensure_table(self, model: Model) -> None:
        if model.table in self._ensured:
            return
        columns = ["connector VARCHAR NOT NULL", "connection VARCHAR NOT NULL",
                   "id VARCHAR NOT NULL"]
        columns += [f"{name} {_SQL_TYPES[f.type]}" for name, f in model.fields.items()
                    if name != "id"]
        columns += ["custom JSON", "synced_at TIMESTAMPTZ NOT NULL", "PRIMARY KEY (connection, id)"]
        with self._lock:
            self._con.execute(f"CREATE TABLE IF NOT EXISTS {model.table} ({', '.join(columns)})")
            self._add_missing_columns(model)
        self._ensured.add(model.table)

    def _add_missing_columns(self, model: Model) -> None:
        """A newer engine may add unified fields; old files gain the columns, nothing is lost."""
        existing = {row[0] for row in self._con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
            [model.table]).fetchall()}
        for name, f in model.fields.items():
            if name not in existing:
                self._con.execute(
                    f"ALTER TABLE {model.table} ADD COLUMN {name} {_SQL_TYPES[f.type]}")

    def _batch_file(self, landings: list[Landing]) -> tuple[str, int, list[str]]:
        """Write batches of one model as one JSON object of columns (with each row's
        connector and connection); returns its path, size and the model's columns.

        DuckDB reads it in C++ with the GIL released, so landing overlaps the next batch's
        fetching and mapping. The last occurrence of a (connection, id) wins, as a later page
        would."""
        model = landings[0].batch.model
        names = [*model.fields, "custom"]
        data: dict[str, list[Any]] = {"connector": [], "connection": [], **{n: [] for n in names}}
        for landing in landings:
            count = len(landing.batch)
            data["connector"] += [landing.run.connector] * count
            data["connection"] += [landing.run.connection] * count
            for name in names:
                data[name] += landing.batch.columns[name]
        keep = _last_occurrences(list(zip(data["connection"], data["id"], strict=True)))
        if keep is not None:
            data = {name: [column[i] for i in keep] for name, column in data.items()}
        encoded = orjson.dumps(data, default=str)
        handle, path = tempfile.mkstemp(prefix="crm-engine-batch-", suffix=".json")
        with os.fdopen(handle, "wb") as out:
            out.write(encoded)
        return path, len(encoded), names

    def land(self, batch: Batch, run: SyncRun, *, state: dict[str, Any] | None = None,
             append: bool = False, sweep_before: dt.datetime | None = None) -> bool:
        """Upsert a batch, save the stream's state and the run's counters, atomically.

        `append` is a fast path for a connection with no rows in the table yet: a plain INSERT,
        cheaper than an upsert. If an id is already there after all (an earlier batch of the
        same run had it), the batch is upserted instead. Returns whether it was appended."""
        [appended] = self.land_many([Landing(batch, run, state, append, sweep_before)])
        return appended

    def land_many(self, landings: list[Landing]) -> list[bool]:
        """`land` for many batches (of many streams and connections) in one transaction: one
        commit, and one INSERT per table, however many streams land at once. If an appended
        id is there after all, each lands on its own instead."""
        try:
            with self._transaction() as con:
                for landing in landings:
                    if landing.starts:
                        self._insert_run(con, landing.run)
                for group in _groups(landings):
                    self._insert(con, group)
                    filled = self._filled.get(group[0].batch.model.table)
                    if filled is not None:
                        filled.update(landing.run.connection for landing in group)
                for landing in landings:
                    run = landing.run
                    if landing.sweep_before is not None:
                        run.deleted += con.execute(
                            f"UPDATE {landing.batch.model.table} SET is_deleted = true, "
                            f"deleted_at = ? WHERE connection = ? AND synced_at < ? AND "
                            f"is_deleted IS DISTINCT FROM true",
                            [utc_now(), run.connection, landing.sweep_before]).fetchone()[0]
                # One statement each for every landing's state and run counters.
                self._save_states(con, [(landing.run, landing.state) for landing in landings
                                        if landing.state is not None])
                self._save_runs(con, [landing.run for landing in landings])
        except StoreError as exc:
            appended = any(landing.append for landing in landings)
            if not (appended and isinstance(exc.__cause__, duckdb.ConstraintException)):
                raise
            if len(landings) > 1:
                return [self.land_many([landing])[0] for landing in landings]
            [landing] = landings
            return self.land_many([dataclasses.replace(landing, append=False)])
        return [landing.append for landing in landings]

    def _insert(self, con: duckdb.DuckDBPyConnection, landings: list[Landing]) -> None:
        """One INSERT of batches of one model, all appended or all upserted."""
        model = landings[0].batch.model
        self.ensure_table(model)
        path, size, names = self._batch_file(landings)
        # Decimals travel as text so no precision is lost; DuckDB casts them on insert.
        json_types = {"connector": "VARCHAR[]", "connection": "VARCHAR[]"}
        json_types |= {n: ("VARCHAR" if model.fields[n].type == "decimal"
                           else _SQL_TYPES[model.fields[n].type]) + "[]"
                       for n in names if n != "custom"}
        json_types["custom"] = "JSON[]"
        columns = ["connector", "connection", *names]
        unnest = ", ".join(f"unnest({n}) AS {n}" for n in columns)
        select = ", ".join(n if n in ("connector", "connection", "id", "custom") else
                           f"CAST({n} AS {_SQL_TYPES[model.fields[n].type]})" for n in columns)
        verb = "INSERT" if landings[0].append else "INSERT OR REPLACE"
        try:
            con.execute(
                f"{verb} INTO {model.table} ({', '.join(columns)}, synced_at) "
                f"SELECT {select}, ? FROM (SELECT {unnest} FROM read_json(?, "
                f"columns = {_struct_literal(json_types)}, "
                f"maximum_object_size = {size + 1024})) WHERE id IS NOT NULL",
                [utc_now(), path],
            )
        finally:
            os.unlink(path)

    def mark_deleted(self, model: Model, run: SyncRun, deletions: list[Deletion], *,
                     state: dict[str, Any] | None = None) -> int:
        self.ensure_table(model)
        marked = 0
        with self._transaction() as con:
            if deletions:
                con.execute("CREATE OR REPLACE TEMP TABLE deletions AS SELECT "
                            "unnest(?::VARCHAR[]) AS id, unnest(?::TIMESTAMPTZ[]) AS deleted_at",
                            [[d.id for d in deletions], [d.deleted_at for d in deletions]])
                marked = con.execute(
                    f"UPDATE {model.table} AS t SET is_deleted = true, "
                    f"deleted_at = coalesce(d.deleted_at, ?) FROM deletions AS d "
                    f"WHERE t.connection = ? AND t.id = d.id AND t.is_deleted IS DISTINCT FROM "
                    f"true", [utc_now(), run.connection]).fetchone()[0]
                # A row a full refresh swept has our time; the CRM's own time is better.
                con.execute(
                    f"UPDATE {model.table} AS t SET deleted_at = d.deleted_at FROM deletions "
                    f"AS d WHERE t.connection = ? AND t.id = d.id AND d.deleted_at IS NOT NULL "
                    f"AND t.deleted_at IS DISTINCT FROM d.deleted_at", [run.connection])
                con.execute("DROP TABLE deletions")
            run.deleted += marked
            if state is not None:
                self._save_states(con, [(run, state)])
            self._save_runs(con, [run])
        return marked

    def has_rows(self, model: Model, connection: str) -> bool:
        self.ensure_table(model)
        with self._lock:
            if model.table not in self._filled:
                self._filled[model.table] = {row[0] for row in self._con.execute(
                    f"SELECT DISTINCT connection FROM {model.table}").fetchall()}
            return connection in self._filled[model.table]

    # -- bookkeeping -----------------------------------------------------------------------
    def start_run(self, run: SyncRun) -> None:
        with self._transaction() as con:
            self._insert_run(con, run)

    @staticmethod
    def _insert_run(con: duckdb.DuckDBPyConnection, run: SyncRun) -> None:
        con.execute(
            "INSERT INTO sync_runs (run_id, connector, connection, stream, mode, started, "
            "status, process) VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
            [run.run_id, run.connector, run.connection, run.stream, run.mode, run.started,
             PROCESS],
        )

    def finish_run(self, run: SyncRun) -> None:
        with self._transaction() as con:
            self._save_runs(con, [run])

    @staticmethod
    def _save_runs(con: duckdb.DuckDBPyConnection, runs: list[SyncRun]) -> None:
        if not runs:
            return
        rows = ", ".join(["(?, ?, ?::TIMESTAMPTZ, ?, ?::BIGINT, ?::BIGINT, ?::BIGINT, "
                          "?::BIGINT, ?::BIGINT, ?, ?, ?)"] * len(runs))
        con.execute(
            f"UPDATE sync_runs AS r SET mode = v.mode, finished = v.finished, status = v.status, "
            f"records = v.records, pages = v.pages, requests = v.requests, retries = v.retries, "
            f"deleted = v.deleted, error = v.error, api_usage = v.api_usage, "
            f"warnings = v.warnings FROM (VALUES {rows}) AS v(run_id, mode, finished, status, "
            f"records, pages, requests, retries, deleted, error, api_usage, warnings) "
            f"WHERE r.run_id = v.run_id",
            [value for run in runs for value in (
                run.run_id, run.mode, run.finished, run.status, run.records, run.pages,
                run.requests, run.retries, run.deleted, run.error, run.api_usage,
                orjson.dumps(run.warnings).decode() if run.warnings else None)],
        )

    @staticmethod
    def _save_states(con: duckdb.DuckDBPyConnection,
                     states: list[tuple[SyncRun, dict[str, Any]]]) -> None:
        if not states:
            return
        rows = ", ".join(["(?, ?, ?, ?, ?::TIMESTAMPTZ)"] * len(states))
        now = utc_now()
        con.execute(
            f"INSERT OR REPLACE INTO sync_state (connection, stream, connector, state, updated) "
            f"VALUES {rows}",
            [value for run, state in states for value in (
                run.connection, run.stream, run.connector, orjson.dumps(state).decode(), now)],
        )

    def state(self, connection: str, stream: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._con.execute(
                "SELECT state FROM sync_state WHERE connection = ? AND stream = ?",
                [connection, stream]).fetchone()
        return orjson.loads(row[0]) if row and row[0] else None

    def stream_status(self, connector: str | None = None,
                      connection: str | None = None) -> list[dict[str, Any]]:
        """Per (connection, stream): the saved state and the last run, for `crm-engine status`."""
        sql = """
            WITH last AS (
                SELECT *, row_number() OVER (PARTITION BY connection, stream
                                             ORDER BY started DESC) AS n
                FROM sync_runs),
            totals AS (
                SELECT connection, stream, sum(deleted) AS deleted FROM sync_runs GROUP BY ALL)
            SELECT l.connector, l.connection, l.stream, s.state, l.mode, l.status, l.records,
                   l.requests, l.deleted, l.started, l.finished, l.error, t.deleted
            FROM last l JOIN totals t USING (connection, stream)
            LEFT JOIN sync_state s USING (connection, stream)
            WHERE l.n = 1 AND (? IS NULL OR l.connector = ?) AND (? IS NULL OR l.connection = ?)
            ORDER BY l.connection, l.stream"""
        columns = ("connector", "connection", "stream", "state", "mode", "status", "records",
                   "requests", "deleted", "started", "finished", "error", "deleted_total")
        rows = self.query(sql, [connector, connector, connection, connection])
        out = []
        for row in rows:
            item = dict(zip(columns, row, strict=True))
            item["state"] = orjson.loads(item["state"]) if item["state"] else None
            out.append(item)
        return out

    def log_action(self, *, connector: str, connection: str, action: str, status: str,
                   remote_id: str | None, duration_ms: float, error: str | None,
                   payload: Any = None) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT INTO action_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [utc_now(), connector, connection, action, status, remote_id, duration_ms, error,
                 orjson.dumps(payload, default=str).decode() if payload is not None else None],
            )

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._con.execute(sql, params or []).fetchall()


