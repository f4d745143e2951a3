"""The three ways a stream reads, each a sequence of `Position`s: a page and the checkpoint a
rerun goes on from once that page is landed.

- `full_refresh`: every record, in the API's own order, resuming from a saved request; when it
  completes, rows it did not land are marked deleted, and the cursor hands over to
  incremental runs.
- `incremental`: records changed since the cursor, sorted ascending by it, in windows. A window
  is one query from a lower bound (`cursor.since`, inclusive). Before a window reaches the
  API's result cap, the next one starts at the last cursor value read; when more records than
  the cap share one value, windows slice that value by id (`cursor.slice`, `cursor.after_id`),
  then go on one `resolution` step later. Each run starts `lookback` before the last cursor,
  for rows that become visible late.
- `deletes`: the records the CRM lists as deleted since the last check.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from engine.clock import utc_now
from engine.convert import ConversionError, parse_timestamp
from engine.errors import CrmError
from engine.extract import ExpressionFailed, truthy
from engine.paginate import Page, paginator_for
from engine.render import render_call
from engine.spec import EnrichSpec, IncrementalSpec, StreamSpec
from engine.store import Deletion
from engine.sync.checkpoint import Checkpoint, Resume, Window
from engine.sync.fieldlist import Chunks
from engine.sync.pages import StreamContext, fetch_pages, first_call, first_calls
from engine.templates import Expression, TemplateFailed
from engine.transport import Call

VendorFields = Callable[..., list[str]]
Warn = Callable[[str], None]


@dataclass
class Position:
    page: Page
    checkpoint: Checkpoint  # where a rerun goes on once this page is landed
    sweep_before: dt.datetime | None = None  # the last page of a full refresh: sweep from here


def _timestamp(value: Any, what: str, operation: str, ctx: StreamContext) -> dt.datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value)
    except (ConversionError, ValueError, TypeError, OverflowError):
        raise CrmError(ctx.session.connector.name, operation,
                       f"the {what} {value!r} is not a timestamp") from None


def _cursor_values(spec: IncrementalSpec, records: list[Any], operation: str,
                   ctx: StreamContext) -> list[dt.datetime | None]:
    try:
        return [_timestamp(spec.cursor(r), "cursor value", operation, ctx) for r in records]
    except ExpressionFailed as exc:
        raise CrmError(ctx.session.connector.name, operation, f"incremental.cursor: {exc}"
                       ) from None


def _latest(*values: dt.datetime | None) -> dt.datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _server_time(headers: Any) -> dt.datetime | None:
    try:
        return email.utils.parsedate_to_datetime(headers.get("date"))
    except (TypeError, ValueError):
        return None


# -- full refresh -------------------------------------------------------------------------------

def full_refresh(stream: StreamSpec, ctx: StreamContext, checkpoint: Checkpoint, operation: str,
                 vendor_fields: VendorFields, warn: Warn) -> Iterator[Position]:
    resume = checkpoint.resume
    if resume is not None and resume.call is not None:
        resume = replace(resume, call=_on_base(resume.call, ctx.session.base_url))
        chunks = first_calls(stream.pages, ctx, vendor_fields=vendor_fields)[1]
        pages = _full_refresh_from(stream, ctx, checkpoint, resume, operation, chunks)
        try:
            first = next(pages)
        except StopIteration:
            return
        except CrmError as exc:
            if exc.kind != "fatal":
                raise
            # A saved page cursor can expire (some query locators live minutes): start over.
            warn(f"could not resume the full refresh ({exc}); started it again")
        else:
            yield first
            yield from pages
            return
    call, chunks = first_calls(stream.pages, ctx, vendor_fields=vendor_fields)
    yield from _full_refresh_from(stream, ctx, checkpoint,
                                  Resume(call, 0, utc_now(), None), operation, chunks)


def _full_refresh_from(stream: StreamSpec, ctx: StreamContext, checkpoint: Checkpoint,
                       resume: Resume, operation: str,
                       chunks: Chunks | None) -> Iterator[Position]:
    high, server_started = resume.high, resume.server_started
    paginator = paginator_for(stream.paginate)
    assert resume.call is not None
    for fetched in fetch_pages(stream.pages, ctx, operation, resume.call, resume.pages, chunks):
        for step in stream.enrich:  # before landing, even a page followed by an error
            _enrich(step, fetched.page.records, ctx, f"{operation}.enrich")
        if fetched.error is not None:  # land the page, stay where we were, stop
            # A rerun reads this page again (its records land twice: upserts absorb that).
            here = Resume(_off_base(fetched.call, ctx.session.base_url)
                          if paginator.resumable(fetched.call) else None,
                          fetched.page.number - 1, resume.started, high, server_started)
            yield Position(fetched.page, replace(checkpoint, resume=here))
            raise fetched.error
        if server_started is None:
            server_started = _server_time(fetched.reply.headers) or resume.started
        if stream.incremental is not None:
            high = _latest(high, *_cursor_values(stream.incremental, fetched.page.records,
                                                 operation, ctx))
        if fetched.following is not None:
            # Page numbers and offsets shift when records are deleted meanwhile: a full refresh
            # paged by them starts again rather than resume (and maybe skip).
            going_on = (_off_base(fetched.following, ctx.session.base_url)
                        if paginator.resumable(fetched.following) else None)
            saved = Resume(going_on, fetched.page.number, resume.started, high, server_started)
            yield Position(fetched.page, replace(checkpoint, resume=saved))
            continue
        # Complete. Changes made while it ran carry times after it started, so the first
        # incremental run reads from the earlier of that and the newest value it saw.
        cursor = None
        if stream.incremental is not None:
            cursor = server_started if high is None else min(high, server_started)
        done = replace(checkpoint, cursor=cursor, window=None, resume=None,
                       deletes_cursor=checkpoint.deletes_cursor or cursor,
                       last_full_refresh=utc_now())
        yield Position(fetched.page, done, sweep_before=resume.started)


def _off_base(call: Call, base_url: str) -> Call:
    """A request to save: its URL relative to the API base, which may move (a new instance
    host after a refresh, another --base-url) before the run is resumed."""
    if call.url.startswith(base_url + "/"):
        return replace(call, url=call.url[len(base_url):])
    return call


def _on_base(call: Call, base_url: str) -> Call:
    """A saved request, on the API base of today."""
    if call.url.startswith("/"):
        return replace(call, url=base_url + call.url)
    return call


# -- incremental --------------------------------------------------------------------------------

def incremental(stream: StreamSpec, ctx: StreamContext, checkpoint: Checkpoint, operation: str,
                vendor_fields: VendorFields) -> Iterator[Position]:
    spec = stream.incremental
    assert spec is not None and checkpoint.cursor is not None
    window: Window | None = checkpoint.window or Window(
        checkpoint.cursor - dt.timedelta(seconds=spec.lookback(ctx.template_context)))
    high = _latest(checkpoint.cursor, window.since)
    while window is not None:
        last: tuple[dt.datetime, Any] | None = None  # (cursor, id) of the last record read
        in_window = 0
        call, chunks = first_calls(spec.pages, ctx, cursor=window.as_template(),
                                   vendor_fields=vendor_fields)
        for fetched in fetch_pages(spec.pages, ctx, operation, call, chunks=chunks):
            records = fetched.page.records
            for step in (*stream.enrich, *spec.enrich):  # before landing, even a page
                _enrich(step, records, ctx, f"{operation}.enrich")  # followed by an error
            if fetched.error is not None:  # land the page, stay where we were, stop
                yield Position(fetched.page, replace(checkpoint, window=window))
                raise fetched.error
            values = _cursor_values(spec, records, operation, ctx)
            last = _check_order(window, last, values, records, spec, operation, ctx)
            high = _latest(high, last[0] if last else None)
            in_window += len(records)
            if fetched.following is None:
                # A sliced value is read to its end; what follows starts one step later.
                following = Window(window.since + dt.timedelta(seconds=spec.resolution_seconds)
                                   ) if window.slice else None
            elif spec.result_cap and in_window + len(records) > spec.result_cap:
                following = _past_the_cap(window, last, spec, operation, ctx)
            elif spec.requery_each_page and _going_on(window, last) != window:
                # The next page is an offset: records changed meanwhile would shift it. A new
                # query from the last value read cannot skip any.
                following = _going_on(window, last)
            else:
                yield Position(fetched.page, replace(checkpoint,
                                                     window=_going_on(window, last)))
                continue
            if following is None:
                yield Position(fetched.page, replace(checkpoint, cursor=high, window=None))
            else:
                yield Position(fetched.page, replace(checkpoint, window=following))
            window = following
            break


def _enrich(step: EnrichSpec, records: list[Any], ctx: StreamContext, operation: str) -> None:
    """Set what more requests say about the page's records into them (in place): for the
    records its `when` picks, all by default; none picked, no request."""
    if step.enabled is not None and not truthy(_rendered(step.enabled, ctx, operation)):
        return
    try:
        if step.when is not None:
            records = [r for r in records if truthy(step.when(r))]
        if not records:
            return
        ids = [step.id(r) for r in records]
        if step.each:  # one request per record: its results are all its own
            found = {str(i): [step.value(r) for r in _results(step, ctx, operation,
                                                               {"record": record})]
                     for record, i in zip(records, ids, strict=True) if i is not None}
        else:
            found = _keyed_results(step, ctx, operation, [i for i in ids if i is not None])
    except ExpressionFailed as exc:
        raise CrmError(ctx.session.connector.name, operation, str(exc)) from None
    *parents, leaf = step.into
    for record, record_id in zip(records, ids, strict=True):
        if not isinstance(record, dict):
            continue
        target = record
        for key in parents:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                break
        else:
            target[leaf] = found.get(str(record_id))


def _keyed_results(step: EnrichSpec, ctx: StreamContext, operation: str,
                   ids: list[Any]) -> dict[str, Any]:
    """Each record's value from one request for the page's `ids`, and, with `more`, from one
    more for the records whose results go on, until none does (their lists joined)."""
    assert step.key is not None
    found: dict[str, Any] = {}
    sees: dict[str, Any] = {"ids": ids, "after": {}}
    asked: set[tuple[str, Any]] = set()
    while sees["ids"]:
        going_on: dict[str, Any] = {}
        for result in _results(step, ctx, operation, sees):
            key, value = str(step.key(result)), step.value(result)
            if key in sees["after"]:  # the next results of a record whose results went on
                if not isinstance(found.get(key), list) or not isinstance(value, list):
                    raise CrmError(ctx.session.connector.name, operation,
                                   f"the results for {key} go on (`more`), but their values "
                                   f"are not lists to join")
                value = [*found[key], *value]
            found[key] = value
            cursor = step.more(result) if step.more is not None else None
            if cursor is not None:
                if (key, cursor) in asked:  # a cursor given twice would never end
                    raise CrmError(ctx.session.connector.name, operation,
                                   f"the results for {key} go on from {cursor!r} again")
                asked.add((key, cursor))
                going_on[key] = cursor
        sees = {"ids": list(going_on), "after": going_on}
    return found


def _results(step: EnrichSpec, ctx: StreamContext, operation: str,
             sees: dict[str, Any]) -> Iterator[Any]:
    """The results of one enrich request, every page of them (none where the vendor sent
    none, or null for an empty list)."""
    call = render_call(step.pages.request, ctx.session.base_url,
                       {**ctx.template_context, **sees})
    for fetched in fetch_pages(step.pages, ctx, operation, call):
        if fetched.error is not None:
            raise fetched.error
        yield from fetched.page.records


def _rendered(condition: Expression, ctx: StreamContext, operation: str) -> Any:
    try:
        return condition.render(ctx.template_context)
    except TemplateFailed as exc:
        raise CrmError(ctx.session.connector.name, operation, str(exc)) from None


def _check_order(window: Window, last: tuple[dt.datetime, Any] | None,
                 values: list[dt.datetime | None], records: list[Any], spec: IncrementalSpec,
                 operation: str, ctx: StreamContext) -> tuple[dt.datetime, Any] | None:
    """The last (cursor, id) after this page, checking that cursors never go down: a window
    is resumed from its last value, which is only right for records sorted by it."""
    for value, record in zip(values, records, strict=True):
        if value is None:
            continue
        if last is not None and value < last[0]:
            raise CrmError(ctx.session.connector.name, operation,
                           f"records are not sorted by their cursor ({value.isoformat()} after "
                           f"{last[0].isoformat()}): an incremental request must sort ascending")
        last = (value, spec.tie_breaker(record) if spec.tie_breaker else None)
    return last


def _going_on(window: Window, last: tuple[dt.datetime, Any] | None) -> Window:
    """Where a rerun picks this window up after the page just landed."""
    if last is None:
        return window
    if window.slice:
        return replace(window, after_id=_text(last[1]))
    if last[0] > window.since:
        return Window(last[0])  # records at that very value are read again: upserts absorb them
    return window


def _past_the_cap(window: Window, last: tuple[dt.datetime, Any] | None, spec: IncrementalSpec,
                  operation: str, ctx: StreamContext) -> Window:
    """The next window, before this one pages past the API's result cap."""
    if last is None:
        return window
    if window.slice:
        return replace(window, after_id=_text(last[1]))
    if last[0] > window.since:
        return Window(last[0])
    if spec.tie_breaker is None:
        raise CrmError(ctx.session.connector.name, operation,
                       f"more than {spec.result_cap} records share the cursor value "
                       f"{window.since.isoformat()}; the stream needs a tie_breaker to read them")
    return Window(window.since, slice=True)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# -- deletes -----------------------------------------------------------------------------------

@dataclass
class DeletedPage:
    deletions: list[Deletion]
    checkpoint: Checkpoint


def deletes(stream: StreamSpec, ctx: StreamContext, checkpoint: Checkpoint,
            operation: str) -> Iterator[DeletedPage]:
    spec = stream.deletes
    assert spec is not None
    lookback = dt.timedelta(seconds=stream.incremental.lookback(ctx.template_context)
                            if stream.incremental else 0)
    since = checkpoint.deletes_cursor - lookback if checkpoint.deletes_cursor else None
    high = checkpoint.deletes_cursor
    server_started: dt.datetime | None = None
    call = first_call(spec.pages, ctx, cursor={"since": since, "slice": False, "after_id": None})
    for fetched in fetch_pages(spec.pages, ctx, operation, call):
        if fetched.error is not None:
            raise fetched.error
        server_started = server_started or _server_time(fetched.reply.headers) or utc_now()
        found = []
        try:
            for record in fetched.page.records:
                record_id = spec.id(record)
                if record_id is None:
                    continue
                when = _timestamp(spec.deleted_at(record), "deletion time", operation, ctx) \
                    if spec.deleted_at else None
                found.append(Deletion(str(record_id), when))
                high = _latest(high, when)
        except ExpressionFailed as exc:
            raise CrmError(ctx.session.connector.name, operation, f"deletes: {exc}") from None
        if fetched.following is None:
            # Deletion times may come in any order: the cursor moves only once all are read;
            # with none to go by, to when this check began.
            yield DeletedPage(found, replace(checkpoint, deletes_cursor=high or server_started))
        else:
            yield DeletedPage(found, checkpoint)
