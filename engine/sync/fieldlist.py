"""A stream's field list: the CRM's field definitions, read once per stream run, say which
fields its page requests ask for (the template variable `discovered_fields`) and, where keys
are opaque, the names custom fields land under. Where the vendor caps one request's field list
(a count, a URL length), the same page is requested once per chunk of fields and the chunks'
records are merged by id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from engine.errors import CrmError
from engine.extract import ExpressionFailed
from engine.paginate import paginator_for
from engine.render import render_call
from engine.spec import ChunkSpec, FieldListSpec, Pages, StreamSpec
from engine.store import SyncRun
from engine.transport import Call

log = logging.getLogger("crm_engine.sync")


@dataclass
class FieldList:
    keys: list[str] = field(default_factory=list)  # fields a request may name, in CRM order
    names: dict[str, str] | None = None  # vendor key -> name, where the list names fields
    chunk: ChunkSpec | None = None
    options: dict[str, dict[str, Any]] | None = None  # vendor key -> option id -> label


def read_field_list(spec: FieldListSpec, ctx: Any, operation: str) -> FieldList:
    """The CRM's field list (ctx: a StreamContext). Raises CrmError when it cannot be read."""
    from engine.sync.pages import fetch_pages, first_call  # pages imports this module

    keys: list[str] = []
    names: dict[str, str] = {}
    options: dict[str, dict[str, Any]] = {}
    call = first_call(spec.pages, ctx)
    for fetched in fetch_pages(spec.pages, ctx, operation, call):
        if fetched.error is not None:
            raise fetched.error
        try:
            for definition in fetched.page.records:
                key = spec.key(definition)
                if key is None:
                    continue
                if spec.select is None or spec.select(definition):
                    keys.append(str(key))
                name = spec.name(definition) if spec.name is not None else None
                if name:
                    names[str(key)] = str(name)
                if spec.options is not None:
                    labels = {str(spec.options.key(o)): spec.options.name(o)
                              for o in spec.options.records(definition) or ()}
                    if labels:
                        options[str(key)] = labels
        except ExpressionFailed as exc:
            raise CrmError(ctx.session.connector.name, operation, f"fields: {exc}") from None
    return FieldList(list(dict.fromkeys(keys)), names if spec.name is not None else None,
                     spec.chunk, options if spec.options is not None else None)


def discover(stream: StreamSpec, ctx: Any, run: SyncRun) -> FieldList | None:
    """The stream's field list for this run. Where the CRM will not give it at all (a 403
    without the scope, a 404 after the endpoint was retired), requests ask for the mapping's
    fields only and custom fields keep the vendor's keys, with a warning on the run; a passing
    failure (a 5xx that outlived its retries) fails the stream, and a rerun lands it all."""
    if stream.fields is None:
        return None
    try:
        return read_field_list(stream.fields, ctx, f"sync.{stream.name}.fields")
    except CrmError as exc:
        if exc.kind != "fatal":
            raise
        run.warn(f"field list unavailable, only the mapping's fields are read and custom "
                 f"fields keep vendor keys: {exc}")
        log.warning("%s: %s", run.connection, run.warnings[-1])
        return None


# -- chunks -------------------------------------------------------------------------------------

@dataclass
class Chunks:
    """The first requests of a read whose field list is split: `first` reads the pages (its
    pagination leads), each of `others` the same pages with another part of the fields."""

    first: Call
    others: list[Call]
    id: Callable[[Any], Any]

    def same_page(self, call: Call, other: Call) -> Call:
        """`other`'s fields on the page `call` asks for: the parameters (and body keys) in which
        the chunks' first requests differ are `other`'s, the rest (the page position) `call`'s."""
        params = dict(call.params)
        for key in set(self.first.params) | set(other.params):
            if self.first.params.get(key) != other.params.get(key):
                params[key] = other.params.get(key)
        body = call.json
        if isinstance(body, dict) and isinstance(other.json, dict):
            body = dict(body)
            for key in set(self.first.json or {}) | set(other.json):
                if (self.first.json or {}).get(key) != other.json.get(key):
                    body[key] = other.json.get(key)
        return replace(call, params={k: v for k, v in params.items() if v is not None},
                       json=body)


def first_calls(pages: Pages, ctx: Any, context: dict[str, Any],
                fields: FieldList | None) -> tuple[Call, Chunks | None]:
    """A read's first request, and its chunks where the field list is over the vendor's cap."""
    paginator = paginator_for(pages.paginate)

    def render(keys: list[str]) -> Call:
        return paginator.first(render_call(pages.request, ctx.session.base_url,
                                           {**context, "discovered_fields": keys}))

    keys = fields.keys if fields is not None else []
    whole = render(keys)
    if fields is None or fields.chunk is None or _fits(whole, fields.chunk):
        return whole, None
    calls = _split(render, keys, fields.chunk, ctx)
    return calls[0], Chunks(calls[0], calls[1:], fields.chunk.id)


def _split(render: Callable[[list[str]], Call], keys: list[str], chunk: ChunkSpec,
           ctx: Any) -> list[Call]:
    """Requests, each with as many of `keys` as fit (the mapping's own fields go in each)."""
    if not _fits(render([]), chunk):
        raise CrmError(ctx.session.connector.name, "fields",
                       "the mapping's own fields are over the vendor's cap on one request")
    calls, rest = [], keys
    while rest:
        whole = render(rest)
        if _fits(whole, chunk):
            calls.append(whole)
            break
        low, high = 0, len(rest)  # rest[:low] fits, rest[:high] does not
        while high - low > 1:
            middle = (low + high) // 2
            if _fits(render(rest[:middle]), chunk):
                low = middle
            else:
                high = middle
        if low == 0:
            raise CrmError(ctx.session.connector.name, "fields",
                           f"the field {rest[0]!r} alone is over the vendor's cap on one request")
        calls.append(render(rest[:low]))
        rest = rest[low:]
    return calls


def _fits(call: Call, chunk: ChunkSpec) -> bool:
    if chunk.max_fields is not None and chunk.param is not None:
        value = call.params.get(chunk.param)
        items = value if isinstance(value, list) else str(value or "").split(",")
        if len([i for i in items if i]) > chunk.max_fields:
            return False
    if chunk.max_url_length is not None:
        url = httpx.URL(call.url, params=call.params) if call.params else httpx.URL(call.url)
        if len(str(url)) > chunk.max_url_length:
            return False
    return True


def merge_records(records: list[Any], others: list[Any], chunks: Chunks,
                  fail: Callable[[str], CrmError]) -> None:
    """Set the fields of another chunk's page into the page's records (in place), by id. The
    two must hold the same records: one changed between the requests fails the read (a rerun
    reads the page again) rather than land a record without some of its fields."""
    by_id = {}
    for other in others:
        by_id[str(chunks.id(other))] = other
    if len(by_id) != len(records):
        raise fail(f"a chunk of the field list read {len(by_id)} records where the page has "
                   f"{len(records)}: records changed between its requests")
    for record in records:
        other = by_id.get(str(chunks.id(record)))
        if other is None:
            raise fail(f"record {chunks.id(record)!r} is missing from a chunk of the field list: "
                       f"records changed between its requests")
        _merge(record, other)


def _merge(target: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        here = target.get(key)
        if isinstance(here, dict) and isinstance(value, dict):
            _merge(here, value)
        elif here is None:  # the first chunk's values (the mapped fields) lead
            target[key] = value
