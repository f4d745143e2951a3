"""Landing batches on a background thread, each with the state that follows it.

One `Lander` per store lands the batches of every stream syncing into it: whatever is queued
when it is free lands in one transaction (one commit, one INSERT per table), so a hundred
throttled connections landing a few pages each cost a few transactions, not hundreds. DuckDB
releases the GIL while it inserts, so landing overlaps fetching and mapping.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable
from typing import Any

from engine.models import Model
from engine.store import Batch, Landing, Store, SyncRun

IDLE_SECONDS = 1.0  # a lander with nothing to land this long ends its thread
# Records per transaction, at most (one batch more is over it): DuckDB reads each INSERT's
# file whole, within its memory limit.
TRANSACTION_RECORDS = 20_000
# Records mapped and not yet landed, over every stream of a lander, before streams hand over
# their batches early: many streams at once then hold little each, whatever their number.
HELD_RECORDS = 15_000
Done = Callable[[bool | BaseException], None]


class Lander:
    """Lands what streams hand it, in order per stream, many streams per transaction."""

    def __init__(self, store: Store):
        self.store = store
        self._queue: queue.Queue[tuple[Landing, Done]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.held = 0  # records mapped into batches and not yet landed, over all streams

    def hold(self, records: int) -> None:
        with self._lock:
            self.held += records

    @property
    def crowded(self) -> bool:
        """Whether streams should hand over their batches now rather than grow them."""
        return self.held > HELD_RECORDS

    def submit(self, landing: Landing, done: Done) -> None:
        """Queue a landing; `done` gets whether it was appended, or the exception."""
        with self._lock:
            self._queue.put((landing, done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="lander", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            try:
                items = [self._queue.get(timeout=IDLE_SECONDS)]
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            records = len(items[0][0].batch)
            while records < TRANSACTION_RECORDS:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                records += len(items[-1][0].batch)
            try:
                results: list[bool | BaseException] = list(
                    self.store.land_many([landing for landing, _ in items]))
            except BaseException as exc:  # handed to each stream, which raises it
                results = [exc] * len(items)
            with self._lock:
                self.held -= sum(len(landing.batch) for landing, _ in items)
            for (_, done), result in zip(items, results, strict=True):
                done(result)


class BatchWriter:
    """One stream's batches, through the store's lander: at most one in flight, so never
    more than two batches of the stream in memory (one landing, one being built)."""

    def __init__(self, lander: Lander, run: SyncRun, model: Model):
        self._lander = lander
        self._run = run
        self._idle = threading.Semaphore(1)
        self.error: BaseException | None = None
        self.landed = 0  # records landed so far
        # A connection's first sync into a table appends; any later one upserts.
        self._append = not lander.store.has_rows(model, run.connection)

    def hold(self, records: int) -> None:
        """Records were mapped into the batch being built."""
        self._lander.hold(records)

    @property
    def crowded(self) -> bool:
        return self._lander.crowded

    def start(self, model: Model) -> None:
        """Add the run's row (with whatever other streams land meanwhile), and wait for it:
        a run killed at its first request is then still seen, and marked abandoned."""
        self.submit(Batch(model), None, starts=True)
        self.close()

    def finish(self, model: Model) -> None:
        """Save the run's final counters and status, and wait for everything to land."""
        self.submit(Batch(model), None)
        self.close()

    def submit(self, batch: Batch, state: dict[str, Any] | None,
               sweep_before: Any = None, starts: bool = False) -> None:
        """Queue a batch; the run's counters are saved with it as they are now."""
        self._idle.acquire()
        if self.error is not None:
            self._idle.release()
            raise self.error
        run = dataclasses.replace(self._run, warnings=list(self._run.warnings))
        count = len(batch)

        def done(result: bool | BaseException) -> None:
            if isinstance(result, BaseException):
                self.error = result
            else:
                self._append = result
                self.landed += count
                self._run.deleted = run.deleted  # a sweep counts on the run
            self._idle.release()

        self._lander.submit(Landing(batch, run, state, self._append, sweep_before, starts), done)

    def close(self) -> None:
        """Wait until everything queued has landed; re-raise a landing failure."""
        self._idle.acquire()
        self._idle.release()
        if self.error is not None:
            raise self.error

    @property
    def appending(self) -> bool:
        return self._append
