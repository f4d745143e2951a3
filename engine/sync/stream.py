"""Running one stream: read pages, map records, land them in batches with their checkpoint.

Which read (engine.sync.reads): a stream with a cursor and nothing in progress reads
incrementally; otherwise it goes on with, or starts, a full refresh. Then the CRM's deleted
records are marked, where the stream lists them. Memory stays flat: at most one batch being
built, one landing and two pages are held, whatever the stream's size.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, Protocol

from engine import convert
from engine.clock import utc_now
from engine.convert import warnings_to
from engine.mapping import ReadContext
from engine.spec import StreamSpec
from engine.store import Batch, Deletion, StoreError, SyncRun
from engine.sync import reads
from engine.sync.checkpoint import Checkpoint
from engine.sync.context import read_context
from engine.sync.fieldlist import FieldList, discover, read_field_list
from engine.sync.mapping_pool import Mapped, MappingPool, PageReader, PageTask
from engine.sync.pages import StreamContext, prefetched
from engine.sync.writer import BatchWriter, Lander
from engine.transport import Counters, counting

log = logging.getLogger("crm_engine.sync")
BATCH_RECORDS = 5000
MAPPED_GRACE_SECONDS = 5.0  # a failed read's wait for its pages still being mapped


class Progress(Protocol):
    def stream_started(self, run: SyncRun) -> None: ...
    def page_read(self, run: SyncRun) -> None: ...
    def stream_finished(self, run: SyncRun) -> None: ...


class NoProgress:
    def stream_started(self, run: SyncRun) -> None: pass
    def page_read(self, run: SyncRun) -> None: pass
    def stream_finished(self, run: SyncRun) -> None: pass


def naming_field_list(stream: StreamSpec, ctx: StreamContext) -> FieldList | None:
    """The stream's field list where it names custom fields or labels options (None where it
    does neither). Raises CrmError when the list cannot be read."""
    spec = stream.fields
    if spec is None or (spec.name is None and spec.options is None):
        return None
    return read_field_list(spec, ctx.of_stream(stream.name), f"sync.{stream.name}.fields")


def _keep(stream: StreamSpec, records: list[Any], batch: Batch, incremental: bool) -> list[Any]:
    """The records of a page the stream keeps. On an incremental read, those it does not keep
    may have belonged to it before (an activity whose type changed): they join the batch's
    `left`, unless a later read of the same id is kept. A full refresh needs no such care:
    its sweep marks every row it did not see."""
    kept, left = stream.split(records)
    if not incremental or not (left or batch.left):
        return kept
    # Pages come in cursor order: an id's last record in the page says where it belongs now.
    keeping = {id(record) for record in kept}
    fates = {stream.mapping.record_id(record): id(record) in keeping for record in records}
    for record_id, kept_now in fates.items():
        if record_id is None:
            continue
        if kept_now:
            batch.left.pop(record_id, None)
        else:
            batch.left[record_id] = Deletion(record_id)
    return kept


def _page_task(stream: StreamSpec, ctx: StreamContext, context: ReadContext,
               run: SyncRun) -> PageTask:
    """What the mapping pool needs to map this read's pages: the mapping file as loaded."""
    connector = ctx.session.connector
    key = next(k for k, m in connector.mappings.items() if m is stream.mapping)
    return PageTask(connector.mapping_file, connector.mapping_text, key, context,
                    run.connector, run.connection)


def run_stream(stream: StreamSpec, ctx: StreamContext, run: SyncRun, progress: Progress, *,
               full_refresh: bool = False) -> SyncRun:
    """Sync one stream into the store. The run row records success or the error;
    `full_refresh` forgets the stream's cursor and any run in progress first."""
    counters = Counters()  # this run's requests, whatever else shares the session
    with counting(counters):
        return _run_stream(stream, ctx, run, progress, full_refresh, counters)


def _run_stream(stream: StreamSpec, ctx: StreamContext, run: SyncRun, progress: Progress,
                full_refresh: bool, counters: Counters) -> SyncRun:
    ctx = ctx.of_stream(stream.name)
    store, session = ctx.store, ctx.session
    model = stream.mapping.model
    store.ensure_table(model)
    checkpoint = Checkpoint.from_json(store.state(ctx.connection, stream.name))
    if full_refresh:
        checkpoint = checkpoint.restarted()
    incremental = (stream.incremental is not None and checkpoint.cursor is not None
                   and checkpoint.resume is None)
    run.mode = "incremental" if incremental else "full_refresh"
    writer = BatchWriter(ctx.lander or Lander(store), run, model)
    writer.start(model)  # the run's row lands with other streams' batches
    progress.stream_started(run)
    operation = f"sync.{stream.name}"
    batch = Batch(model)
    first_landing = writer.appending  # the connection has no rows in the table yet
    landed_state = checkpoint  # the state that goes with the batch being built
    sweep_before = None
    # A read of more than one page maps its later pages in the mapping pool, if the Engine has
    # one; they come back encoded, in the order sent, when the batch is handed over.
    pool: MappingPool | None = ctx.mapping_pool
    mapper: PageReader | None = None
    in_flight: deque[tuple[Future[Mapped], int]] = deque()  # each page's future and records
    in_flight_records = 0

    def take_mapped(timeout: float | None = None) -> None:
        nonlocal in_flight_records
        while in_flight:
            mapped = in_flight[0][0].result(timeout)
            batch.add_encoded(mapped.rows)
            if mapped.links is not None:
                batch.add_links(mapped.links)
            for message in mapped.warnings:
                run.warn(message)
            for message in mapped.logged:
                convert.log.warning("%s", message)
            in_flight_records -= in_flight.popleft()[1]

    def account() -> None:
        run.requests, run.retries = counters.requests, counters.retries
        if session.budget is not None:
            run.api_usage = session.budget.usage

    def hand_over() -> None:
        """Queue the batch to land, with the state that follows its last page (not the state
        that completes a full refresh: that one lands with its sweep, below)."""
        nonlocal batch
        take_mapped()
        if len(batch) and sweep_before is None:
            run.records += len(batch)
            account()
            writer.submit(batch, landed_state.to_json())
            batch = Batch(model)

    try:
        ctx = replace(ctx, fields=discover(stream, ctx, run))
        context = read_context(stream, ctx, run, ctx.fields)
        vendor_fields = stream.mapping.vendor_fields
        positions = (reads.incremental(stream, ctx, checkpoint, operation, vendor_fields)
                     if incremental else
                     reads.full_refresh(stream, ctx, checkpoint, operation, vendor_fields,
                                        run.warn))
        # Waiting for a page (a rate budget, a slow API), the batch lands early: memory does
        # not hold many throttled streams' records, and a kill loses less.
        for position in prefetched(positions, ctx.cancelled, on_idle=hand_over):
            ctx.check_cancelled()
            records = position.page.records
            if stream.where is not None:
                records = _keep(stream, records, batch, incremental)
            if mapper is None and pool is not None and run.pages:
                mapper = pool.reader(_page_task(stream, ctx, context, run))
            if mapper is not None:
                in_flight.append((mapper.submit(records), len(records)))
                in_flight_records += len(records)
            else:
                with warnings_to(run.warn):  # values that could not be read, on this run
                    stream.mapping.read_columns(records, batch.columns, context=context)
                    links = stream.mapping.read_links(records)
                if links is not None:
                    batch.add_links(links)
            writer.hold(len(position.page.records))
            run.fetched += len(position.page.records)
            run.pages += 1
            landed_state, sweep_before = position.checkpoint, position.sweep_before
            if len(batch) + in_flight_records >= BATCH_RECORDS or writer.crowded:
                hand_over()
            progress.page_read(run)
        # The last batch lands here, with the state that says the read is complete (and, for
        # a full refresh, the sweep of rows it did not see) in the same transaction.
        take_mapped()
        run.records += len(batch)
        account()
        # (A connection's first rows in the table: there is nothing older to sweep.)
        writer.submit(batch, landed_state.to_json(),
                      sweep_before=sweep_before if stream.sweeps and not first_landing
                      else None)
        batch = Batch(model)
        writer.close()
        # A connection's first full refresh into an empty table has no row the CRM's deleted
        # records could be: those deleted before it began were never listed to it, and those
        # deleted while it ran are after its deletes cursor (when it began), read next run.
        # Their list can be long (every record ever archived): it is not read now.
        first_read = first_landing and not incremental and sweep_before is not None
        if stream.deletes is not None and not first_read:
            for found in reads.deletes(stream, ctx, landed_state, f"{operation}.deletes"):
                account()
                store.mark_deleted(model, run, found.deletions, state=found.checkpoint.to_json())
                landed_state = found.checkpoint
        account()
        run.status = "succeeded"
        run.finished = utc_now()
        writer.finish(model)
    except BaseException as exc:
        # Pages read before the failure are good data: land them with the state that follows
        # them, so a rerun goes on from there; then record how far the run got and why.
        account()
        if isinstance(exc, KeyboardInterrupt):
            run.status, run.error = "interrupted", "interrupted (signal); a rerun continues"
        else:
            run.status, run.error = "failed", str(exc) or type(exc).__name__
        run.finished = utc_now()
        # What was read lands here, or not at all: the lander never sees it. Pages still
        # being mapped belong to it: if one cannot be had, none lands, as the state that goes
        # with the batch follows them all.
        writer.hold(-(len(batch) + in_flight_records))
        whole = True
        try:
            take_mapped(timeout=MAPPED_GRACE_SECONDS)
        except BaseException:
            whole = False
        with contextlib.suppress(BaseException):
            writer.close()
        if writer.error is not None:
            run.records = writer.landed
        if writer.error is None and not isinstance(exc, StoreError) and len(batch) and whole:
            run.records += len(batch)
            store.land(batch, run, state=landed_state.to_json(), append=writer.appending)
        else:
            store.finish_run(run)
        progress.stream_finished(run)
        raise
    finally:
        if mapper is not None:
            mapper.close()
    progress.stream_finished(run)
    return run
