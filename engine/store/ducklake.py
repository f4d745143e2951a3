"""Landing in DuckLake: a catalog in PostgreSQL, the rows as Parquet files under a data path.

The same tables as the DuckDB file (unified tables, `sync_runs`, `sync_state`, `action_log`),
which any DuckDB reads with `ATTACH 'ducklake:postgres:...'`. Many processes, on many machines,
write at once: each write (a batch, its run counters and its stream's state) is one DuckLake
transaction, committed as one snapshot in the catalog. Two writers that changed the same data
file conflict at commit; the loser rolls back and does its whole transaction again on the new
snapshot, so nothing is lost and a batch still lands exactly once with its checkpoint.

DuckLake declares no primary keys: records are upserted with MERGE on (connection, id), and
one (connection, stream) has one writer at a time (the task that syncs it). Two writers of the
same stream would conflict on its `sync_state` row, whose update every batch carries.

DuckDB cannot download extensions here: the `duckdb-ext-ducklake` and `duckdb-ext-postgres`
packages (the `distributed` extra) ship them built for DuckDB 1.4.4, and they load from there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from engine import secrets
from engine.clock import utc_now
from engine.store import Landing, StoreError, SyncRun
from engine.store.duckdb_file import ABANDONED, DuckDBStore, one_line

log = logging.getLogger("crm_engine.sync")
T = TypeVar("T")
ALIAS = "lake"
EXTENSION_PACKAGES = {"ducklake": "duckdb-ext-ducklake", "postgres_scanner": "duckdb-ext-postgres",
                      "httpfs": "duckdb-ext-httpfs"}
MAX_ATTEMPTS = 30  # commits a write tries before failing loudly
DEFAULT_KEEP = dt.timedelta(hours=1)  # snapshots `compact` keeps, for readers still on them


@dataclass(frozen=True)
class DuckLakeTarget:
    """Where a project lands when its target is DuckLake: `catalog` is DuckLake's metadata
    database ("postgres:host=... dbname=... user=...", never a password), `password_env` the
    environment variable holding the catalog's password, `data_path` where Parquet files go."""

    catalog: str
    data_path: str
    password_env: str | None = None

    def open(self) -> DuckLakeStore:
        password = secrets.from_environment(self.password_env, "the DuckLake catalog's password")
        return DuckLakeStore(self.catalog, self.data_path, password=password)

    def __str__(self) -> str:
        return f"ducklake:{self.catalog} ({self.data_path})"


def extension_directory() -> Path:
    """The DuckDB extension directory the extension packages installed."""
    directory = None
    for package in EXTENSION_PACKAGES.values():
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise StoreError(f"DuckLake needs the {package} package: pip install -e "
                             f"'.[distributed]'") from None
        directory = Path(str(dist.locate_file("duckdb_ext/extensions")))
    assert directory is not None
    built = sorted(p.name for p in directory.glob("v*"))
    if f"v{duckdb.__version__}" not in built:
        raise StoreError(f"the DuckLake extensions installed are built for DuckDB "
                         f"{', '.join(built) or 'no version'}, this is DuckDB "
                         f"{duckdb.__version__}: install the versions pyproject.toml pins")
    return directory


def _is_conflict(exc: BaseException | None) -> bool:
    """A commit that lost to a concurrent one (its changes were rolled back)."""
    text = str(exc)
    return isinstance(exc, duckdb.Error) and ("conflict" in text.lower()
                                              or "Failed to commit DuckLake" in text)


class DuckLakeStore(DuckDBStore):
    """The `Store` interface over DuckLake (see the module's docstring)."""

    PRIMARY_KEYS = False
    LIVE_RUNS = False  # other processes read the catalog itself

    def __init__(self, catalog: str, data_path: str | Path, *, password: str | None = None):
        self.catalog = catalog
        self.data_path = str(data_path)
        self._password = password
        secrets.register(password)
        super().__init__(f"ducklake:{catalog}")

    def __str__(self) -> str:
        return f"ducklake:{self.catalog}"

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET extension_directory = ?", [str(extension_directory())])
            con.execute("SET autoinstall_known_extensions = false")
            con.execute("LOAD ducklake")
            con.execute("LOAD postgres")
            data_path = self.data_path
            if "://" in data_path:  # object storage: httpfs reads the AWS_* variables
                con.execute("LOAD httpfs")
            else:  # a local or mounted folder
                Path(data_path).mkdir(parents=True, exist_ok=True)
                data_path = str(Path(data_path).resolve()) + "/"
            catalog = self.catalog + (f" password={self._password}" if self._password else "")
            attach = (f"ATTACH 'ducklake:{_quoted(catalog)}' AS {ALIAS} "
                      f"(DATA_PATH '{_quoted(data_path)}')")
            for attempt in range(1, 6):
                try:
                    con.execute(attach)
                    break
                except duckdb.Error as exc:
                    # Two processes creating a new lake at once: one wins, the other attaches
                    # to what it created.
                    if "Failed to initialize DuckLake" not in str(exc) or attempt == 5:
                        raise
                    time.sleep(0.2 * attempt)
            con.execute(f"USE {ALIAS}")
        except duckdb.Error as exc:
            con.close()
            raise StoreError(f"cannot open {self}: {one_line(exc)}") from None
        return con

    def _abandon_dead_runs(self) -> None:
        """Other processes write here too, alive or not: a dead run is found when its stream
        starts again (see start_run)."""

    def _write(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return super()._write(work)
            except StoreError as exc:
                if not _is_conflict(exc.__cause__) or attempt == MAX_ATTEMPTS:
                    raise
                # Back off with jitter so the writers that collided do not collide again.
                time.sleep(random.uniform(0, min(1.0, 0.01 * 2 ** attempt)))
                log.info("%s: commit conflict, attempt %d again", self, attempt + 1)
        raise AssertionError("unreachable")

    def _upsert(self, table: str, key: list[str], columns: list[str], select: str) -> str:
        match = " AND ".join(f"t.{k} = s.{k}" for k in key)
        update = ", ".join(f"{c} = s.{c}" for c in columns if c not in key)
        values = ", ".join(f"s.{c}" for c in columns)
        return (f"MERGE INTO {table} AS t USING ({select}) AS s ON {match} "
                f"WHEN MATCHED THEN UPDATE SET {update} "
                f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) VALUES ({values})")

    def land_many(self, landings: list[Landing]) -> list[bool]:
        # No key constraint catches an id landed twice: every batch is merged.
        return super().land_many([dataclasses.replace(landing, append=False)
                                  for landing in landings])

    def _insert_run(self, con: duckdb.DuckDBPyConnection, run: SyncRun) -> None:
        """A `running` run of the same stream is one whose process died (a stream has one
        writer at a time): it is marked `abandoned` as this one starts."""
        con.execute(
            f"UPDATE sync_runs SET status = 'abandoned', finished = ?, error = "
            f"coalesce(error, '{ABANDONED}') WHERE connection = ? AND stream = ? AND "
            f"status = 'running'", [utc_now(), run.connection, run.stream])
        super()._insert_run(con, run)

    def compact(self, keep: dt.timedelta | None = None) -> dict[str, Any]:
        """Merge the small files each commit leaves into few large ones, rewrite files most of
        whose rows were replaced, expire snapshots older than `keep` and delete the files only
        they used, and files no commit references. Readers on a snapshot younger than `keep`
        are unaffected."""
        older_than = utc_now() - (DEFAULT_KEEP if keep is None else keep)
        with self._lock:
            before = self._live_files()
            self._con.execute(f"CALL ducklake_rewrite_data_files('{ALIAS}')")
            self._con.execute(f"CALL ducklake_merge_adjacent_files('{ALIAS}')")
            expired = self._con.execute(
                f"CALL ducklake_expire_snapshots('{ALIAS}', older_than => ?)",
                [older_than]).fetchall()
            deleted = self._con.execute(
                f"CALL ducklake_cleanup_old_files('{ALIAS}', older_than => ?)",
                [older_than]).fetchall()
            # Files a writer wrote but never committed (it was killed mid-commit).
            orphans = self._con.execute(
                f"CALL ducklake_delete_orphaned_files('{ALIAS}', older_than => ?)",
                [older_than]).fetchall()
            after = self._live_files()
        return {"store": str(self), "files_before": before, "files_after": after,
                "snapshots_expired": len(expired), "files_deleted": len(deleted),
                "orphans_deleted": len(orphans)}

    def _live_files(self) -> int:
        return self._con.execute(
            f"SELECT count(*) FROM __ducklake_metadata_{ALIAS}.ducklake_data_file "
            f"WHERE end_snapshot IS NULL").fetchone()[0]


def _quoted(text: str) -> str:
    return text.replace("'", "''")
