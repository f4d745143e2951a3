"""Where synced records land: the `Store` interface, and what crosses it.

A store keeps the unified tables (one per model), `sync_runs`, `sync_state` and `action_log`.
Every call that changes records also saves the run's counters and, when given, the stream's
state, in one transaction: a kill at any moment leaves rows and state in step, so a rerun
neither duplicates nor skips. `DuckDBStore` (one DuckDB file) is the embedded default;
`engine.store.ducklake.DuckLakeStore` (DuckLake: a PostgreSQL catalog and Parquet files, many
writers) is the distributed one, imported only when a project targets it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from engine.associations import Link
from engine.clock import utc_now
from engine.models import Model, unified_models

if TYPE_CHECKING:
    from engine.store.duckdb_file import DuckDBStore as DuckDBStore

MAX_WARNINGS = 20


class StoreError(RuntimeError):
    """The store cannot be opened, or a write failed (its transaction was rolled back)."""


class StoreBusy(StoreError):
    """Another process holds the DuckDB file (DuckDB lets one open it at a time)."""

    def __init__(self, message: str, holder: int, live: dict[str, Any] | None = None):
        super().__init__(message)
        self.holder = holder  # its process id
        self.live = live  # its runs in progress, when it is a sync (engine.store.live)


@dataclass
class EncodedRows:
    """A page's rows mapped in another process (engine.sync.mapping_pool), already as the
    store lands them: JSON lines of column pieces (engine.store.duckdb_file.row_pieces), with
    `connector` and `connection` columns."""

    ids: list[Any]
    pieces: bytes
    largest: int  # bytes of its largest piece
    raw: bool  # whether its rows carry the `raw` column


@dataclass
class Batch:
    """Unified records of one model, column-wise, waiting to land."""

    model: Model
    columns: dict[str, list[Any]] = field(default_factory=dict)
    # Each record's links (to_model, to_id, label), beside its columns; None when the mapping
    # declares no associations (landing then leaves the associations table be).
    links: list[list[Link]] | None = None
    # Records read that no longer belong to the stream (a stream's `where`): their rows are
    # marked deleted as the batch lands, after its rows (an id read again since is not here).
    left: dict[str, Deletion] = field(default_factory=dict)
    # Pages mapped in another process, after the rows in `columns`.
    encoded: list[EncodedRows] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        # `raw` joins the columns when the mapping is asked to keep raw records.
        self.columns = self.model.empty_columns()
        self.links = None
        self.left = {}
        self.encoded = []
        self._encoded_rows = 0

    def add_encoded(self, rows: EncodedRows) -> None:
        """A page mapped elsewhere; its links follow with add_links."""
        self.encoded.append(rows)
        self._encoded_rows += len(rows.ids)

    def decode(self) -> None:
        """The encoded pages' rows back into the columns (a store that needs them there)."""
        for rows in self.encoded:
            for line in rows.pieces.splitlines():
                piece = orjson.loads(line)
                for name, values in piece.items():
                    if name not in ("connector", "connection"):
                        self.columns.setdefault(name, []).extend(values)
        self.encoded, self._encoded_rows = [], 0

    def ids(self) -> list[Any]:
        """Every record's id, in order."""
        if not self.encoded:
            return self.columns["id"]
        return [*self.columns["id"], *(i for rows in self.encoded for i in rows.ids)]

    @property
    def has_raw(self) -> bool:
        return "raw" in self.columns or any(rows.raw for rows in self.encoded)

    def add_links(self, links: list[list[Link]]) -> None:
        """The links of the records just added to the columns (one list per record)."""
        if self.links is None:
            self.links = []
        self.links.extend(links)

    def __len__(self) -> int:
        return len(self.columns["id"]) + self._encoded_rows


@dataclass
class SyncRun:
    """One run of one stream: a row of `sync_runs`."""

    connector: str
    connection: str
    stream: str
    mode: str = "full_refresh"  # or "incremental"
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: dt.datetime = field(default_factory=utc_now)
    finished: dt.datetime | None = None
    status: str = "running"  # succeeded, failed, interrupted; abandoned when its process died
    records: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    deleted: int = 0  # rows this run marked deleted
    error: str | None = None
    api_usage: str | None = None  # the vendor's "used/allowed" report, when it sends one
    warnings: list[str] = field(default_factory=list)  # what went wrong without failing the run
    fetched: int = 0  # records read so far, landed or not (for progress displays)

    def warn(self, message: str) -> None:
        add_warning(self.warnings, message)


def add_warning(warnings: list[str], message: str) -> None:
    """A run's warnings: each once, and at most MAX_WARNINGS (a column of bad values says the
    same thing a thousand times)."""
    if message not in warnings and len(warnings) < MAX_WARNINGS:
        warnings.append(message)


@dataclass(frozen=True)
class Landing:
    """One batch to land with its run's counters (as they were) and the stream's state."""

    batch: Batch
    run: SyncRun
    state: dict[str, Any] | None = None
    append: bool = False
    sweep_before: dt.datetime | None = None
    starts: bool = False  # the run's first: its row is added (`start_run`) in the same commit


@dataclass(frozen=True)
class Deletion:
    """A record the CRM reports deleted."""

    id: str
    deleted_at: dt.datetime | None = None


class Store(Protocol):
    def ensure_table(self, model: Model) -> None: ...

    def has_rows(self, model: Model, connection: str) -> bool: ...

    def rows(self, model: Model, connection: str) -> list[dict[str, Any]]:
        """The connection's live rows of a model's table, as unified dicts (for lookups into
        reference tables, which are small)."""
        ...

    def land(self, batch: Batch, run: SyncRun, *, state: dict[str, Any] | None = None,
             append: bool = False, sweep_before: dt.datetime | None = None) -> bool:
        """Upsert a batch, with the run's counters and the stream's state, in one transaction.
        `append`: the connection has no rows in the table yet, so a plain insert may do (the
        store falls back to an upsert if an id is there after all); returns whether it did.
        `sweep_before`: a full refresh ends here; rows of the connection it did not land since
        that moment are marked deleted. With `batch.links`, each landed record's links replace
        the ones it had; links from or to the rows a sweep marks deleted are dropped."""
        ...

    def land_many(self, landings: list[Landing]) -> list[bool]:
        """`land` for many batches, of any streams and connections, in one transaction;
        returns whether each was appended."""
        ...

    def mark_deleted(self, model: Model, run: SyncRun, deletions: list[Deletion], *,
                     state: dict[str, Any] | None = None) -> int:
        """Mark rows deleted (kept, with `is_deleted` and `deleted_at`), and drop the links
        from or to them, with the run and the state, in one transaction; returns how many rows
        were not marked before."""
        ...

    def start_run(self, run: SyncRun) -> None: ...

    def finish_run(self, run: SyncRun) -> None: ...

    def state(self, connection: str, stream: str) -> dict[str, Any] | None: ...

    def stream_status(self, connector: str | None = None,
                      connection: str | None = None) -> list[dict[str, Any]]:
        """Per (connection, stream): `state` and the last run's mode, status, records,
        requests, deleted, started, finished, error; `deleted_total` over every run."""
        ...

    def log_action(self, *, connector: str, connection: str, action: str, status: str,
                   remote_id: str | None, duration_ms: float, error: str | None,
                   payload: Any = None) -> None: ...

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]: ...

    def compact(self, keep: dt.timedelta | None = None) -> dict[str, Any]:
        """Merge small files, drop what no snapshot younger than `keep` needs; returns what it
        did."""
        ...

    def close(self) -> None: ...


class StoreTarget(Protocol):
    """Where a project lands, other than a DuckDB file (engine.store.ducklake.DuckLakeTarget)."""

    def open(self) -> Store: ...


def unified_tables() -> list[str]:
    return [m.table for m in unified_models().values()]


def __getattr__(name: str) -> Any:
    # The DuckDB store on first use: a mapping process (engine.sync.mapping_pool) uses the
    # batch types above and never DuckDB.
    if name == "DuckDBStore":
        from engine.store.duckdb_file import DuckDBStore

        return DuckDBStore
    raise AttributeError(f"module 'engine.store' has no attribute {name!r}")

__all__ = ["Batch", "Deletion", "DuckDBStore", "EncodedRows", "Landing", "Store", "StoreBusy",
           "StoreError", "StoreTarget", "SyncRun", "unified_tables"]
