"""Reading pages: one request after another until the API says there are no more.

Everything a sync reads goes through `fetch_pages`: a stream's records, an incremental window,
deleted records, custom-field definitions. `prefetched` runs any such iterator one item ahead
in a worker thread, so the network wait for page n+1 overlaps the mapping and landing of page n.
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from engine.errors import Cancelled, CrmError
from engine.extract import ExpressionFailed
from engine.paginate import Page, PaginationError, paginator_for, read_page
from engine.spec import Pages
from engine.sync import fieldlist
from engine.sync.fieldlist import Chunks, FieldList, merge_records
from engine.transport import Call, Reply, Session

if TYPE_CHECKING:
    from engine.sync.mapping_pool import MappingPool

WORKER_GRACE_SECONDS = 0.5
IDLE_SECONDS = 0.2  # a wait this long for the next page: the consumer is idle
T = TypeVar("T")


@dataclass
class StreamContext:
    session: Session
    store: Any  # engine.store.Store; None where only reading (an action's field names)
    connection: str
    template_context: dict[str, Any]
    cancelled: threading.Event | None = None  # set: stop at the next page (the Engine's)
    lander: Any = None  # engine.sync.writer.Lander shared by the streams of a store, if any
    account: dict[str, Any] = field(default_factory=dict)  # facts read so far (context.py)
    fields: FieldList | None = None  # the stream's field list, this run (fieldlist.py)
    account_lock: threading.Lock = field(default_factory=threading.Lock)
    mapping_pool: MappingPool | None = None  # where a read maps its pages after the first

    def check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            raise Cancelled("the sync was cancelled")

    def of_stream(self, name: str) -> StreamContext:
        """This context for one stream's requests: their templates see `stream.name`."""
        return replace(self, template_context=stream_variables(self.template_context, name))


def stream_variables(context: dict[str, Any], name: str) -> dict[str, Any]:
    """Template variables with the stream's own (`stream.name`), so streams that differ only
    by an object's name in their paths share one YAML anchor."""
    return {**context, "stream": {"name": name}}


@dataclass
class Fetched:
    page: Page
    call: Call  # the request that read it
    following: Call | None  # the request for the next page; None: this was the last
    reply: Reply
    error: CrmError | None = None  # the page is good, but what follows it cannot be read


def first_call(pages: Pages, ctx: StreamContext, *, cursor: dict[str, Any] | None = None,
               vendor_fields: Callable[..., list[str]] | None = None) -> Call:
    """The request for a read's first page; templates see `cursor` (the sync's position)."""
    return first_calls(pages, ctx, cursor=cursor, vendor_fields=vendor_fields)[0]


def first_calls(pages: Pages, ctx: StreamContext, *, cursor: dict[str, Any] | None = None,
                vendor_fields: Callable[..., list[str]] | None = None
                ) -> tuple[Call, Chunks | None]:
    """A read's first request and, where the stream's field list is over the vendor's cap on
    one request, its chunks (engine.sync.fieldlist)."""
    return fieldlist.first_calls(pages, ctx, read_variables(
        ctx.template_context, cursor=cursor, vendor_fields=vendor_fields), ctx.fields)


def read_variables(context: dict[str, Any], *, cursor: dict[str, Any] | None = None,
                   vendor_fields: Callable[..., list[str]] | None = None) -> dict[str, Any]:
    """What a read's request templates see besides the connection's variables: the sync's
    position (`cursor`; none on a first read), the mapping's vendor fields and the discovered
    ones (none until the field list is read: engine.sync.fieldlist)."""
    variables = {**context, "cursor": cursor or {"since": None, "slice": False, "after_id": None},
                 "discovered_fields": []}
    if vendor_fields is not None:
        variables["vendor_fields"] = vendor_fields
    return variables


def fetch_pages(pages: Pages, ctx: StreamContext, operation: str, call: Call,
                pages_read: int = 0, chunks: Chunks | None = None) -> Iterator[Fetched]:
    """Send `call` and each request after it; `pages_read` is how many pages came before
    (a full refresh resuming from a saved request). With `chunks`, each page is requested
    once more per other chunk of the field list, and its records carry all the fields."""
    paginator = paginator_for(pages.paginate)
    number = pages_read
    following: Call | None = call
    while following is not None:
        call = following
        reply = ctx.session.send(call, operation)
        number += 1
        try:
            page = read_page(reply.body, pages.records, number)
            for other in chunks.others if chunks is not None else ():
                chunk_reply = ctx.session.send(chunks.same_page(call, other), operation)
                merge_records(page.records,
                              read_page(chunk_reply.body, pages.records, number).records,
                              chunks, lambda message: CrmError(
                                  ctx.session.connector.name, operation, message))
        except (PaginationError, ExpressionFailed) as exc:
            raise CrmError(ctx.session.connector.name, operation, str(exc),
                           status=reply.status) from None
        try:
            following = paginator.next(call, page)
        except (PaginationError, ExpressionFailed) as exc:
            # The records are good data: the reader lands them, then stops with the error.
            yield Fetched(page, call, None, reply, CrmError(
                ctx.session.connector.name, operation, str(exc), status=reply.status))
            return
        yield Fetched(page, call, following, reply)


_END = object()


def prefetched(items: Iterator[T], cancelled: threading.Event | None = None,
               on_idle: Callable[[], None] | None = None) -> Iterator[T]:
    """Iterate `items` in a worker thread, one item ahead of the consumer; stop waiting for it
    when `cancelled` is set (the worker may be asleep on a rate budget). `on_idle` is called
    in the consumer's thread each time it has waited a moment for the next item."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()
    # The worker reads the next item only once the consumer has taken the last one: two
    # pages per stream in memory at most (one mapped, one read), not three.
    taken = threading.Semaphore(1)

    def work() -> None:
        try:
            iterator = iter(items)
            while True:
                while not taken.acquire(timeout=IDLE_SECONDS):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                item = next(iterator, _END)
                if item is _END:
                    break
                handoff.put(("item", item))
            handoff.put(("done", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            handoff.put(("error", exc))

    # The worker runs in a copy of this context: its requests count on this run's counters.
    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(work,), name="page-fetcher",
                              daemon=True)
    worker.start()
    try:
        while True:
            try:
                kind, item = handoff.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                if cancelled is not None and cancelled.is_set():
                    raise Cancelled("the sync was cancelled") from None
                if on_idle is not None:
                    on_idle()
                continue
            if kind == "item":
                taken.release()
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        # Unblock a worker waiting to hand over an item. One stuck in a request or a
        # rate-budget wait is left behind (it is a daemon): an interrupted sync must stop
        # within seconds.
        stop.set()
        taken.release()
        deadline = time.monotonic() + WORKER_GRACE_SECONDS
        while worker.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.05)
