"""Landing batches on a background thread, in order, each with the state that follows it."""

from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Any

from engine.models import Model
from engine.store import Batch, Store, SyncRun


class BatchWriter:
    """DuckDB releases the GIL while it inserts, so landing one batch overlaps fetching and
    mapping the next. Never more than two batches in memory: one landing, one being built."""

    def __init__(self, store: Store, run: SyncRun, model: Model):
        self._store = store
        self._run = run
        self._queue: queue.Queue[tuple[Batch, SyncRun, Any] | None] = queue.Queue()
        self._idle = threading.Semaphore(1)
        self.error: BaseException | None = None
        self.landed = 0  # records landed so far
        # A connection's first sync into a table appends; any later one upserts.
        self._append = not store.has_rows(model, run.connection)
        self._thread = threading.Thread(target=self._work, name="batch-writer", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch, state: dict[str, Any] | None) -> None:
        """Queue a batch; the run's counters are saved with it as they are now."""
        self._idle.acquire()
        if self.error is not None:
            self._idle.release()
            raise self.error
        run = dataclasses.replace(self._run, warnings=list(self._run.warnings))
        self._queue.put((batch, run, state))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            batch, run, state = item
            try:
                self._append = self._store.land(batch, run, state=state, append=self._append)
                self.landed += len(batch)
            except BaseException as exc:
                self.error = exc
            finally:
                self._idle.release()

    def close(self) -> None:
        """Wait until everything queued has landed; re-raise a landing failure."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    @property
    def appending(self) -> bool:
        return self._append
