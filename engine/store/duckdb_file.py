"""The embedded default store: one DuckDB file.

Records land a batch at a time (one INSERT per batch, never per record: DuckDB reads the batch
as a JSON file of columns), and a batch, its sync state and its run counters commit in one
transaction: a crash or kill loses nothing, and a rerun upserts over what is there, neither
duplicating nor skipping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import orjson

from engine import secrets
from engine.clock import utc_now
from engine.models import Model
from engine.store import Batch, Deletion, EncodedRows, Landing, StoreBusy, StoreError, SyncRun
from engine.store.live import LiveRuns, read_live_runs
from engine.store.pieces import row_pieces

log = logging.getLogger("crm_engine.sync")

_SQL_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "decimal": "DECIMAL(38, 6)",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}

_JSON_COLUMNS = ("custom", "raw")  # besides the model's fields
# DuckDB's memory limit (CRM_ENGINE_DUCKDB_MEMORY overrides it). A transaction that needs
# more (an upsert into a large table) is run again with four times as much (`_write`).
DUCKDB_MEMORY = "64MB"


def _times(size: str, factor: int) -> str:
    """A DuckDB memory size (`64MB`, `1GB`, `512KiB`) times `factor`."""
    number = re.match(r"\s*(\d+(?:\.\d+)?)\s*(.*)", size)
    if number is None:
        return size
    return f"{float(number[1]) * factor:g}{number[2]}"

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
-- Links between records (mappings' `associations:`): one row per link, landed with the record
-- it is from (`from_model`, `from_id`), which replaces its links each time it lands.
CREATE TABLE IF NOT EXISTS associations (
    connector VARCHAR NOT NULL,
    connection VARCHAR NOT NULL,
    from_model VARCHAR NOT NULL,
    from_id VARCHAR NOT NULL,
    to_model VARCHAR NOT NULL,
    to_id VARCHAR NOT NULL,
    label VARCHAR,
    synced_at TIMESTAMPTZ NOT NULL
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


def one_line(exc: BaseException) -> str:
    """A database error as one line, with any secret (a catalog password) masked."""
    return secrets.redact(" ".join(str(exc).split()))


def _pieces_file(data: dict[str, list[Any]],
                 encoded: Iterable[EncodedRows] = ()) -> tuple[str, int]:
    """`data`'s pieces (row_pieces), then those already encoded, in a temporary file: its
    path and its largest piece."""
    handle, path = tempfile.mkstemp(prefix="crm-engine-batch-", suffix=".json")
    largest = 0
    with os.fdopen(handle, "wb") as out:
        for piece in row_pieces(data):
            out.write(piece)
            largest = max(largest, len(piece))
        for rows in encoded:
            out.write(rows.pieces)
            largest = max(largest, rows.largest)
    return path, largest


def _json_file(data: dict[str, list[Any]]) -> tuple[str, int]:
    """Columns as one JSON object in a temporary file (its path and size), for read_json:
    DuckDB reads it in C++ with the GIL released, faster than Python lists as parameters."""
    encoded = orjson.dumps(data, default=str)
    handle, path = tempfile.mkstemp(prefix="crm-engine-batch-", suffix=".json")
    with os.fdopen(handle, "wb") as out:
        out.write(encoded)
    return path, len(encoded)


_LINK_COLUMNS = ("from_id", "to_model", "to_id", "label")
# The rows of sync_runs and sync_state that a landing saves, as JSON types (_json_rows).
_RUN_COUNTERS = {"run_id": "VARCHAR", "mode": "VARCHAR", "finished": "TIMESTAMPTZ",
                 "status": "VARCHAR", "records": "BIGINT", "pages": "BIGINT",
                 "requests": "BIGINT", "retries": "BIGINT", "deleted": "BIGINT",
                 "error": "VARCHAR", "api_usage": "VARCHAR", "warnings": "JSON"}
_STATE_ROW = {"connection": "VARCHAR", "stream": "VARCHAR", "connector": "VARCHAR",
              "state": "JSON", "updated": "TIMESTAMPTZ"}


def _json_rows(types: dict[str, str]) -> str:
    """A subquery of rows that arrive as one JSON parameter (`_json_param`): DuckDB's Python
    client pays a failed `import pandas` (a search of sys.path) for every parameter of a
    statement, which for hundreds of runs saved per transaction cost more than the landing."""
    shape = orjson.dumps([types]).decode()
    return f"(SELECT unnest(from_json(?, '{shape}'), recursive := true))"


def _json_param(rows: list[dict[str, Any]]) -> str:
    return orjson.dumps(rows).decode()


def _replace_links(con: duckdb.DuckDBPyConnection, batch: Batch, run: SyncRun,
                   first: bool) -> None:
    """The batch's records' links replace the links they had (a record landing again may have
    lost some); `first`: the connection has no rows of this model yet, so no links from them
    either. Within a batch, the last occurrence of an id wins, as for its columns."""
    assert batch.links is not None
    latest: dict[str, list[Any]] = {}
    for record_id, links in zip(batch.ids(), batch.links, strict=True):
        if record_id is not None:
            latest[str(record_id)] = links
    model = batch.model.name
    if latest and not first:
        con.execute("DELETE FROM associations WHERE connection = ? AND from_model = ? AND "
                    "from_id IN (SELECT unnest(?::VARCHAR[]))",
                    [run.connection, model, list(latest)])
    every = [link for links in latest.values() for link in links]
    if not every:
        return
    from_ids = [from_id for from_id, links in latest.items() for _ in links]
    to_models, to_ids, labels = map(list, zip(*every, strict=True))  # (each link is a triple)
    path, size = _json_file(dict(zip(_LINK_COLUMNS, [from_ids, to_models, to_ids, labels],
                                     strict=True)))
    try:
        con.execute(
            f"INSERT INTO associations SELECT ?, ?, ?, {', '.join(_LINK_COLUMNS)}, ? FROM "
            f"(SELECT {', '.join(f'unnest({c}) AS {c}' for c in _LINK_COLUMNS)} FROM read_json(?, "
            f"columns = {_struct_literal(dict.fromkeys(_LINK_COLUMNS, 'VARCHAR[]'))}, "
            f"maximum_object_size = {size + 1024}))",
            [run.connector, run.connection, model, utc_now(), path])
    finally:
        os.unlink(path)


def _mark_deleted(con: duckdb.DuckDBPyConnection, model: Model, connection: str,
                  deletions: list[Deletion]) -> int:
    """Mark the rows of `deletions` deleted (with the CRM's time, where it gave one); returns
    how many were not marked before."""
    if not deletions:
        return 0
    # Numbered parameters: DuckDB binds an UPDATE's FROM before its SET.
    found = ("(SELECT unnest($1::VARCHAR[]) AS id, unnest($2::TIMESTAMPTZ[]) AS "
             "deleted_at) AS d")
    listed = [[d.id for d in deletions], [d.deleted_at for d in deletions], connection]
    marked = con.execute(
        f"UPDATE {model.table} AS t SET is_deleted = true, "
        f"deleted_at = coalesce(d.deleted_at, $4) FROM {found} "
        f"WHERE t.connection = $3 AND t.id = d.id AND t.is_deleted IS DISTINCT FROM "
        f"true", [*listed, utc_now()]).fetchone()[0]
    # A row a full refresh swept has our time; the CRM's own time is better.
    con.execute(
        f"UPDATE {model.table} AS t SET deleted_at = d.deleted_at FROM {found} "
        f"WHERE t.connection = $3 AND t.id = d.id AND d.deleted_at IS NOT NULL "
        f"AND t.deleted_at IS DISTINCT FROM d.deleted_at", listed)
    if marked:
        _drop_links_of_deleted(con, model, connection)
    return marked


def _drop_links_of_deleted(con: duckdb.DuckDBPyConnection, model: Model,
                           connection: str) -> None:
    """A deleted record links nowhere, and nothing links to it any more (the CRMs drop both
    sides); its row stays, marked deleted."""
    deleted = (f"(SELECT id FROM {model.table} WHERE connection = $connection "
               f"AND is_deleted)")
    con.execute(f"DELETE FROM associations WHERE connection = $connection AND "
                f"((from_model = $model AND from_id IN {deleted}) OR "
                f"(to_model = $model AND to_id IN {deleted}))",
                {"connection": connection, "model": model.name})


def _groups(landings: list[Landing]) -> list[list[Landing]]:
    """Batches that land in one INSERT: same table, all appended or all upserted, all with
    raw records or all without."""
    groups: dict[tuple[str, bool, bool], list[Landing]] = {}
    for landing in landings:
        if len(landing.batch):
            key = (landing.batch.model.table, landing.append, landing.batch.has_raw)
            groups.setdefault(key, []).append(landing)
    return list(groups.values())


def _struct_literal(types: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{name}': '{sql}'" for name, sql in types.items()) + "}"


# Identifies this process in `sync_runs.process` (see DuckDBStore._abandon_dead_runs).
PROCESS = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
ABANDONED = "its process ended without finishing (killed or crashed); a rerun repairs it"
_PRIMARY_KEY = re.compile(r",\s*PRIMARY KEY \([^)]*\)| PRIMARY KEY")
T = TypeVar("T")
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


def connect(path: str) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file, turning its failures into one-line StoreErrors."""
    try:
        return duckdb.connect(path)
    except duckdb.Error as exc:
        text = str(exc).removeprefix("IO Error: ")
        holder = _LOCK_HOLDER.search(text)
        if holder:
            pid = int(holder["pid"])
            live = read_live_runs(path, pid)
            what = (f"a sync (PID {pid}); `crm-engine status` shows its progress" if live else
                    f"another process (PID {pid}, {Path(holder['program']).name})")
            raise StoreBusy(f"{path} is in use by {what}; wait for it to finish or choose "
                            f"another --db", pid, live) from None
        if "not a valid DuckDB database file" in text:
            raise StoreError(f"{path} is not a DuckDB database file") from None
        if "created with an newer version of DuckDB" in text:
            raise StoreError(f"{path} was written by a newer DuckDB than this one "
                             f"({duckdb.__version__}, which pyproject.toml pins): sync into "
                             f"another file, or export this one with the newer DuckDB") from None
        raise StoreError(f"cannot open {path}: {text.splitlines()[0]}") from None



class DuckDBStore:
    """One DuckDB file (the `Store` interface). Safe to share between threads: writes are
    serialized on one connection. `DuckLakeStore` (engine.store.ducklake) derives from it and
    overrides the hooks marked below: how to connect, the DDL, the upsert, the write retry."""

    # The DuckDB file enforces primary keys; a DuckLake table cannot (none are declared there).
    PRIMARY_KEYS = True
    # Other processes cannot open the file while this one has it: they read its runs in
    # progress from beside it (engine.store.live). DuckLake lets them read the catalog.
    LIVE_RUNS = True

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._con = self._connect()
        self._con.execute("SET TimeZone = 'UTC'")
        # DuckDB would otherwise cache up to 80% of RAM; a sync needs little, and memory must
        # stay flat however many records land. Spilled blocks are re-read from the file.
        self._memory = os.environ.get("CRM_ENGINE_DUCKDB_MEMORY", DUCKDB_MEMORY)
        self._con.execute(f"SET memory_limit = '{self._memory}'")
        # One thread: each of DuckDB's threads reading a batch file holds a 32 MB buffer, and
        # the engine's own threads keep the other core busy mapping the next batch.
        self._con.execute("SET threads = 1")
        # Memory a statement freed goes back to the system once 4 MB of it are waiting, not
        # 128 MB (DuckDB's default is the memory limit): peak RSS, not speed, is the bound.
        # The same for memory freed in bulk (a checkpoint's buffers): not once 512 MB are
        # (1,000,000 contacts: 9-14 MB less at the peak, paired, at the same speed).
        self._con.execute("SET allocator_flush_threshold = '4MB'")
        self._con.execute("SET allocator_bulk_deallocation_flush_threshold = '4MB'")
        # DuckDB draws a progress bar on stdout for slow statements: it would corrupt --json.
        self._con.execute("SET enable_progress_bar = false")
        self._lock = threading.Lock()
        self._ensured: set[str] = set()
        # Per table, the connections with rows (read once, then kept: rows are never removed).
        self._filled: dict[str, set[str]] = {}
        self._write(self._create_bookkeeping)
        self._abandon_dead_runs()
        # (A database in memory is this process's alone: no one else could ask.)
        self._live = (LiveRuns(self.path) if self.LIVE_RUNS and self.path != ":memory:"
                      else None)

    def _create_bookkeeping(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(self._ddl(BOOKKEEPING_DDL))
        # Files written by older versions gain the newer columns.
        for column in ("api_usage VARCHAR", "warnings JSON", "process VARCHAR",
                       "deleted BIGINT DEFAULT 0"):
            con.execute(f"ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS {column}")

    def __str__(self) -> str:
        return self.path

    # -- hooks (overridden by DuckLakeStore) -----------------------------------------------
    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return connect(self.path)

    def _ddl(self, sql: str) -> str:
        """CREATE TABLE statements as this store declares them."""
        return sql if self.PRIMARY_KEYS else _PRIMARY_KEY.sub("", sql)

    def _abandon_dead_runs(self) -> None:
        """One process at a time writes a DuckDB file, so a `running` row of another process,
        found when we open the file, is a run whose process died (kill -9, a crash, a lost
        machine): it is marked `abandoned`."""
        self._con.execute(
            f"UPDATE sync_runs SET status = 'abandoned', finished = ?, error = coalesce(error, "
            f"'{ABANDONED}') WHERE status = 'running' AND process IS DISTINCT FROM ?",
            [utc_now(), PROCESS])

    def _write(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `work` in one transaction and commit it (DuckLake retries it on a conflict, so
        `work` must set, not accumulate, what it changes outside the database)."""
        try:
            with self._transaction() as con:
                return work(con)
        except StoreError as exc:
            if not isinstance(exc.__cause__, duckdb.OutOfMemoryException):
                raise
        # A statement over the memory limit (an upsert into a large table): the transaction
        # was rolled back; it runs once more with four times the room, then the limit is back.
        log.info("%s: out of memory at %s, once more with %s", self, self._memory,
                 _times(self._memory, 4))
        try:
            with self._transaction() as con:
                con.execute(f"SET memory_limit = '{_times(self._memory, 4)}'")
                return work(con)
        finally:
            with self._lock:
                self._con.execute(f"SET memory_limit = '{self._memory}'")

    def _upsert(self, table: str, key: list[str], columns: list[str], select: str) -> str:
        """SQL inserting `select`'s rows (named `columns`) into `table`, replacing those whose
        `key` is there already."""
        return (f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) {select}")

    def close(self) -> None:
        # After the write in progress (a stream still landing after Ctrl-C's grace): DuckDB
        # aborts the process if its connection closes under a running statement.
        with self._lock:
            self._con.close()
        if self._live is not None:
            self._live.close()

    def _publish(self, runs: Iterable[SyncRun]) -> None:
        """Runs whose counters were just committed, for other processes (LIVE_RUNS)."""
        if self._live is not None:
            self._live.publish(runs)

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            self._con.begin()
            try:
                yield self._con
            except duckdb.Error as exc:
                self._rollback()
                raise StoreError(f"{self}: {one_line(exc)}") from exc
            except BaseException:
                self._rollback()
                raise
            try:
                self._con.commit()
            except duckdb.Error as exc:
                self._rollback()
                raise StoreError(f"{self}: {one_line(exc)}") from exc

    def _rollback(self) -> None:
        with contextlib.suppress(duckdb.Error):  # a failed commit has ended the transaction
            self._con.rollback()

    # -- unified tables --------------------------------------------------------------------
    def ensure_table(self, model: Model) -> None:
        if model.table in self._ensured:
            return
        columns = ["connector VARCHAR NOT NULL", "connection VARCHAR NOT NULL",
                   "id VARCHAR NOT NULL"]
        columns += [f"{name} {_SQL_TYPES[f.type]}" for name, f in model.fields.items()
                    if name != "id"]
        columns += ["custom JSON", "raw JSON", "synced_at TIMESTAMPTZ NOT NULL",
                    "PRIMARY KEY (connection, id)"]
        ddl = self._ddl(f"CREATE TABLE IF NOT EXISTS {model.table} ({', '.join(columns)})")

        def create(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(ddl)
            self._add_missing_columns(con, model)

        self._write(create)
        self._ensured.add(model.table)

    @staticmethod
    def _add_missing_columns(con: duckdb.DuckDBPyConnection, model: Model) -> None:
        """A newer engine may add unified fields; old files gain the columns, nothing is lost."""
        existing = {row[0] for row in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND table_catalog = current_database()", [model.table]).fetchall()}
        for name, f in model.fields.items():
            if name not in existing:
                con.execute(f"ALTER TABLE {model.table} ADD COLUMN {name} {_SQL_TYPES[f.type]}")
        if "raw" not in existing:
            con.execute(f"ALTER TABLE {model.table} ADD COLUMN raw JSON")

    def _batch_file(self, landings: list[Landing]) -> tuple[str, int, list[str]]:
        """Write batches of one model as a file of JSON pieces (with each row's connector and
        connection); returns its path, its largest piece (_pieces_file) and the columns besides
        those.

        DuckDB reads it in C++ with the GIL released, so landing overlaps the next batch's
        fetching and mapping, and a piece at a time, so its memory does not grow with the
        batch. The last occurrence of a (connection, id) wins, as a later page would."""
        first = landings[0].batch
        names = [*first.model.fields, "custom", *(["raw"] if first.has_raw else [])]
        data: dict[str, list[Any]] = {"connector": [], "connection": [], **{n: [] for n in names}}
        encoded = [rows for landing in landings for rows in landing.batch.encoded]
        one_connection = len({landing.run.connection for landing in landings}) == 1
        keys = [record_id if one_connection else (landing.run.connection, record_id)
                for landing in landings for record_id in landing.batch.ids()]
        if encoded and len(set(keys)) != len(keys):
            # An id twice (a record that moved between pages): rows mapped elsewhere come
            # back to columns, so that its last occurrence wins below.
            encoded = []
            for landing in landings:
                landing.batch.decode()
        for landing in landings:
            count = len(landing.batch.columns["id"])
            data["connector"] += [landing.run.connector] * count
            data["connection"] += [landing.run.connection] * count
            for name in names:
                data[name] += landing.batch.columns[name]
        if not encoded:
            keep = _last_occurrences(keys)
            if keep is not None:
                data = {name: [column[i] for i in keep] for name, column in data.items()}
        path, largest = _pieces_file(data, encoded)
        return path, largest, names

    def land(self, batch: Batch, run: SyncRun, *, state: dict[str, Any] | None = None,
             append: bool = False, sweep_before: dt.datetime | None = None) -> bool:
        """Land one batch of a stream and save the run's counters (and the stream's `state`,
        if given) in the same transaction, so a crash never leaves rows without their cursor.

        `append` is a fast path for a connection with no rows in the table yet: a plain INSERT,
        cheaper than an upsert. If an id is already there after all (an earlier batch of the
        same run had it), the batch is upserted instead. Returns whether it was appended."""
        [appended] = self.land_many([Landing(batch, run, state, append, sweep_before)])
        return appended

    def land_many(self, landings: list[Landing]) -> list[bool]:
        """`land` for many batches (of many streams and connections) in one transaction: one
        commit, and one INSERT per table, however many streams land at once. If an appended
        id is there after all, each lands on its own instead."""
        for landing in landings:
            self.ensure_table(landing.batch.model)
        groups = _groups(landings)
        # A sweep counts on its run; a retried transaction counts again from here.
        deleted_before = [landing.run.deleted for landing in landings]
        # Appended rows have no links to replace, unless another batch of the same
        # connection and table lands in this transaction too.
        sharing = Counter((landing.batch.model.table, landing.run.connection)
                          for landing in landings)

        def work(con: duckdb.DuckDBPyConnection) -> None:
            for landing in landings:
                if landing.starts:
                    self._insert_run(con, landing.run)
            for group in groups:
                self._insert(con, group)
            for landing, deleted in zip(landings, deleted_before, strict=True):
                batch, run = landing.batch, landing.run
                run.deleted = deleted
                if batch.links is not None and len(batch):
                    _replace_links(con, batch, run, first=landing.append and sharing[
                        (batch.model.table, run.connection)] == 1)
                run.deleted += _mark_deleted(con, batch.model, run.connection,
                                             list(batch.left.values()))
                if landing.sweep_before is not None:
                    swept = con.execute(
                        f"UPDATE {batch.model.table} SET is_deleted = true, deleted_at = ? "
                        f"WHERE connection = ? AND synced_at < ? AND is_deleted IS DISTINCT "
                        f"FROM true",
                        [utc_now(), run.connection, landing.sweep_before]).fetchone()[0]
                    run.deleted += swept
                    if swept:
                        _drop_links_of_deleted(con, batch.model, run.connection)
            # One statement each for every landing's state and run counters.
            self._save_states(con, [(landing.run, landing.state) for landing in landings
                                    if landing.state is not None])
            self._save_runs(con, [landing.run for landing in landings])

        try:
            self._write(work)
        except StoreError as exc:
            appended = any(landing.append for landing in landings)
            if not (appended and isinstance(exc.__cause__, duckdb.ConstraintException)):
                raise
            for landing, deleted in zip(landings, deleted_before, strict=True):
                landing.run.deleted = deleted
            if len(landings) > 1:
                return [self.land_many([landing])[0] for landing in landings]
            [landing] = landings
            return self.land_many([dataclasses.replace(landing, append=False)])
        with self._lock:
            for group in groups:
                filled = self._filled.get(group[0].batch.model.table)
                if filled is not None:
                    filled.update(landing.run.connection for landing in group)
        self._publish(landing.run for landing in landings)
        return [landing.append for landing in landings]

    def _insert(self, con: duckdb.DuckDBPyConnection, landings: list[Landing]) -> None:
        """One INSERT of batches of one model, all appended or all upserted."""
        model = landings[0].batch.model
        path, largest, names = self._batch_file(landings)
        # Decimals travel as text so no precision is lost; DuckDB casts them on insert.
        json_types = {"connector": "VARCHAR", "connection": "VARCHAR"}
        json_types |= {n: "JSON" if n in _JSON_COLUMNS else
                       ("VARCHAR" if model.fields[n].type == "decimal"
                        else _SQL_TYPES[model.fields[n].type])
                       for n in names}
        columns = ["connector", "connection", *names]
        select = ", ".join(n if n in ("connector", "connection", "id", *_JSON_COLUMNS) else
                           f"CAST({n} AS {_SQL_TYPES[model.fields[n].type]}) AS {n}"
                           for n in columns)
        pieces = (f"read_json(?, format = 'newline_delimited', "
                  f"columns = {_struct_literal({n: f'{t}[]' for n, t in json_types.items()})}, "
                  f"maximum_object_size = {max(largest + 1024, 2**20)})")
        rows = (f"SELECT {select}, ?::TIMESTAMPTZ AS synced_at FROM "
                f"(SELECT {', '.join(f'unnest({n}) AS {n}' for n in columns)} FROM {pieces}) "
                f"WHERE id IS NOT NULL")
        columns.append("synced_at")
        sql = (f"INSERT INTO {model.table} ({', '.join(columns)}) {rows}"
               if landings[0].append else
               self._upsert(model.table, ["connection", "id"], columns, rows))
        try:
            con.execute(sql, [utc_now(), path])
        finally:
            os.unlink(path)

    def mark_deleted(self, model: Model, run: SyncRun, deletions: list[Deletion], *,
                     state: dict[str, Any] | None = None) -> int:
        self.ensure_table(model)
        deleted_before = run.deleted

        def work(con: duckdb.DuckDBPyConnection) -> int:
            marked = _mark_deleted(con, model, run.connection, deletions)
            run.deleted = deleted_before + marked
            if state is not None:
                self._save_states(con, [(run, state)])
            self._save_runs(con, [run])
            return marked

        marked = self._write(work)
        self._publish([run])
        return marked

    def has_rows(self, model: Model, connection: str) -> bool:
        self.ensure_table(model)
        with self._lock:
            if model.table not in self._filled:
                self._filled[model.table] = {row[0] for row in self._con.execute(
                    f"SELECT DISTINCT connection FROM {model.table}").fetchall()}
            return connection in self._filled[model.table]

    def rows(self, model: Model, connection: str) -> list[dict[str, Any]]:
        self.ensure_table(model)
        names = list(model.fields)
        with self._lock:
            found = self._con.execute(
                f"SELECT {', '.join(names)} FROM {model.table} WHERE connection = ? "
                f"AND is_deleted IS DISTINCT FROM true ORDER BY id", [connection]).fetchall()
        return [dict(zip(names, row, strict=True)) for row in found]

    # -- bookkeeping -----------------------------------------------------------------------
    def start_run(self, run: SyncRun) -> None:
        self._write(lambda con: self._insert_run(con, run))
        self._publish([run])

    def _insert_run(self, con: duckdb.DuckDBPyConnection, run: SyncRun) -> None:
        """The run's row, `running` (a hook: DuckLake also marks dead runs of the stream)."""
        con.execute(
            "INSERT INTO sync_runs (run_id, connector, connection, stream, mode, started, "
            "status, process) VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
            [run.run_id, run.connector, run.connection, run.stream, run.mode, run.started,
             PROCESS],
        )

    def finish_run(self, run: SyncRun) -> None:
        self._write(lambda con: self._save_runs(con, [run]))
        self._publish([run])

    @staticmethod
    def _save_runs(con: duckdb.DuckDBPyConnection, runs: list[SyncRun]) -> None:
        if not runs:
            return
        con.execute(
            f"UPDATE sync_runs AS r SET mode = v.mode, finished = v.finished, status = v.status, "
            f"records = v.records, pages = v.pages, requests = v.requests, retries = v.retries, "
            f"deleted = v.deleted, error = v.error, api_usage = v.api_usage, "
            f"warnings = v.warnings FROM {_json_rows(_RUN_COUNTERS)} AS v "
            f"WHERE r.run_id = v.run_id",
            [_json_param([{
                "run_id": run.run_id, "mode": run.mode, "finished": run.finished,
                "status": run.status, "records": run.records, "pages": run.pages,
                "requests": run.requests, "retries": run.retries, "deleted": run.deleted,
                "error": run.error, "api_usage": run.api_usage,
                "warnings": run.warnings or None} for run in runs])],
        )

    def _save_states(self, con: duckdb.DuckDBPyConnection,
                     states: list[tuple[SyncRun, dict[str, Any]]]) -> None:
        # One row per stream: the last state given for it wins.
        latest = {(run.connection, run.stream): (run, state) for run, state in states}
        if not latest:
            return
        now = utc_now()
        con.execute(
            self._upsert("sync_state", ["connection", "stream"], list(_STATE_ROW),
                         f"SELECT {', '.join(_STATE_ROW)} FROM {_json_rows(_STATE_ROW)}"),
            [_json_param([{"connection": run.connection, "stream": run.stream,
                           "connector": run.connector, "state": state, "updated": now}
                          for run, state in latest.values()])],
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
        self._write(lambda con: con.execute(
            "INSERT INTO action_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [utc_now(), connector, connection, action, status, remote_id, duration_ms, error,
             orjson.dumps(payload, default=str).decode() if payload is not None else None]))

    def compact(self, keep: dt.timedelta | None = None) -> dict[str, Any]:
        """Reclaim space: a DuckDB file writes its WAL into the file and frees deleted blocks
        (DuckLake merges small files and expires snapshots older than `keep` instead)."""
        with self._lock:
            self._con.execute("FORCE CHECKPOINT")
        return {"store": str(self)}

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._con.execute(sql, params or []).fetchall()


