"""Running one stream: fetch pages, map records, land them in batches.

Fetching runs one page ahead in a background thread, so the network wait for page n+1
overlaps the mapping and landing of page n. Memory stays flat: at most one batch and two pages
are held at a time, whatever the stream's size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from engine.clock import utc_now
from engine.errors import CrmError
from engine.extract import ExpressionFailed, Getter
from engine.models import Model
from engine.paginate import Page, PaginationError, paginator_for, read_page
from engine.render import render_call
from engine.spec import PaginationSpec, RequestSpec, StreamSpec
from engine.store import Batch, Store, StoreError, SyncRun
from engine.transport import Session

log = logging.getLogger("crm_engine.sync")
BATCH_RECORDS = 5000
WORKER_GRACE_SECONDS = 0.5


class Progress(Protocol):
    def stream_started(self, run: SyncRun) -> None: ...
    def page_read(self, run: SyncRun) -> None: ...
    def stream_finished(self, run: SyncRun) -> None: ...


class NoProgress:
    def stream_started(self, run: SyncRun) -> None: pass
    def page_read(self, run: SyncRun) -> None: pass
    def stream_finished(self, run: SyncRun) -> None: pass


@dataclass
class StreamContext:
    session: Session
    store: Store
    connection: str
    template_context: dict[str, Any]


def _pages(stream: StreamSpec, ctx: StreamContext) -> Iterator[Page]:
    return _request_pages(stream.request, stream.records, stream.paginate, ctx,
                          f"sync.{stream.name}", stream.mapping.vendor_fields)


def _request_pages(request: RequestSpec, records_at: Getter, paginate: PaginationSpec,
                   ctx: StreamContext, operation: str,
                   vendor_fields: Callable[..., list[str]]) -> Iterator[Page]:
    paginator = paginator_for(paginate)
    template_context = {**ctx.template_context, "vendor_fields": vendor_fields}
    call = paginator.first(render_call(request, ctx.session.base_url, template_context))
    number = 0
    while call is not None:
        reply = ctx.session.send(call, operation)
        number += 1
        try:
            page = read_page(reply.body, records_at, number)
            yield page
            call = paginator.next(call, page)
        except (PaginationError, ExpressionFailed) as exc:
            raise CrmError(ctx.session.connector.name, operation, str(exc),
                           status=reply.status) from None


def custom_field_names(stream: StreamSpec, ctx: StreamContext) -> dict[str, str] | None:
    """Vendor key -> name for the stream's custom fields, from its field definitions.
    Raises CrmError when the definitions cannot be read."""
    spec = stream.custom_names
    if spec is None:
        return None
    names: dict[str, str] = {}
    for page in _request_pages(spec.request, spec.records, spec.paginate, ctx,
                               f"sync.{stream.name}.field_names", stream.mapping.vendor_fields):
        for definition in page.records:
            key, name = spec.key(definition), spec.name(definition)
            if key is not None and name:
                names[str(key)] = str(name)
    return names


def _optional_field_names(stream: StreamSpec, ctx: StreamContext,
                          run: SyncRun) -> dict[str, str] | None:
    """Custom-field names are a nicety: where the definitions cannot be had at all (a 403
    without the scope, a 404 after the endpoint was retired), custom fields keep the vendor's
    keys, which beats landing nothing, and the run carries a warning. A passing failure (a 5xx
    that outlived its retries) fails the stream instead: a rerun then lands the same rows as
    ever, with their names."""
    try:
        return custom_field_names(stream, ctx)
    except CrmError as exc:
        if exc.kind != "fatal":
            raise
        run.warn(f"custom field names unavailable, custom fields keep vendor keys: {exc}")
        log.warning("%s: %s", run.connection, run.warnings[-1])
        return None


def _prefetched(pages: Iterator[Page]) -> Iterator[Page]:
    """Iterate `pages` in a worker thread, one page ahead of the consumer."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def work() -> None:
        try:
            for page in pages:
                if stop.is_set():
                    return
                handoff.put(("page", page))
            handoff.put(("done", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            handoff.put(("error", exc))

    worker = threading.Thread(target=work, name="page-fetcher", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = handoff.get()
            if kind == "page":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        # Unblock a worker waiting to hand over a page. One stuck in a request or a rate-budget
        # wait is left behind (it is a daemon): an interrupted sync must stop within seconds.
        stop.set()
        deadline = time.monotonic() + WORKER_GRACE_SECONDS
        while worker.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.05)


class _Writer:
    """Lands batches on a background thread, in order. DuckDB releases the GIL while it
    inserts, so landing one batch overlaps fetching and mapping the next."""

    def __init__(self, store: Store, run: SyncRun, model: Model):
        self._store = store
        self._run = run
        self._queue: queue.Queue[tuple[Batch, SyncRun, Any] | None] = queue.Queue()
        # One batch lands while the next is built: never more than two in memory.
        self._idle = threading.Semaphore(1)
        self.error: BaseException | None = None
        self.landed = 0  # records landed so far
        # A connection's first sync into a table appends; any later one upserts.
        self._append = not store.has_rows(model, run.connection)
        self._thread = threading.Thread(target=self._work, name="batch-writer", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch, state: Any = None) -> None:
        """Queue a batch; the run's counters are saved with it as they are now."""
        self._idle.acquire()
        if self.error is not None:
            self._idle.release()
            raise self.error
        self._queue.put((batch, dataclasses.replace(self._run, warnings=list(self._run.warnings)),
                         state))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            batch, run, state = item
            try:
                self._append = self._store.land(
                    batch, connector=run.connector, connection=run.connection,
                    stream=run.stream, run=run, state=state, append=self._append)
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


def run_stream(stream: StreamSpec, ctx: StreamContext, run: SyncRun,
               progress: Progress) -> SyncRun:
    """Sync one stream into the store. The run row records success or the error."""
    store, session = ctx.store, ctx.session
    store.ensure_table(stream.mapping.model)
    store.start_run(run)
    progress.stream_started(run)
    counters_before = (session.counters.requests, session.counters.retries)
    model = stream.mapping.model
    batch = Batch(model)
    mapping = stream.mapping
    writer = _Writer(store, run, model)

    def account() -> None:
        run.requests = session.counters.requests - counters_before[0]
        run.retries = session.counters.retries - counters_before[1]
        if session.budget is not None:
            run.api_usage = session.budget.usage

    try:
        names = _optional_field_names(stream, ctx, run)
        for page in _prefetched(_pages(stream, ctx)):
            mapping.read_columns(page.records, batch.columns, custom_names=names)
            run.fetched += len(page.records)
            run.pages += 1
            if len(batch) >= BATCH_RECORDS:
                run.records += len(batch)
                account()
                writer.submit(batch)
                batch = Batch(model)
            progress.page_read(run)
        run.records += len(batch)
        account()
        run.status = "succeeded"
        run.finished = utc_now()
        writer.submit(batch, state={"last_full_refresh": run.finished.isoformat()})
        writer.close()
    except BaseException as exc:
        # Pages read before the failure are good data: land them (the state is not advanced),
        # then record how far the run got and why it stopped.
        account()
        if isinstance(exc, KeyboardInterrupt):
            run.status, run.error = "interrupted", "interrupted (signal); a rerun continues"
        else:
            run.status, run.error = "failed", str(exc) or type(exc).__name__
        run.finished = utc_now()
        with contextlib.suppress(BaseException):
            writer.close()
        run.records = writer.landed
        if writer.error is None and not isinstance(exc, StoreError) and len(batch):
            run.records += len(batch)
            store.land(batch, connector=run.connector, connection=run.connection,
                       stream=stream.name, run=run)
        else:
            store.finish_run(run)
        progress.stream_finished(run)
        raise
    progress.stream_finished(run)
    return run

