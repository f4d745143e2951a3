"""What mapping a stream's records needs besides its pages: the account's facts (a default
currency), the rows of the reference tables its lookups read (stages, pipelines, owners), and
the order that lands those tables first."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from engine.clock import utc_now
from engine.errors import CrmError
from engine.extract import ExpressionFailed
from engine.mapping import ModelMapping, ReadContext
from engine.models import unified_models
from engine.render import render_call
from engine.spec import Connector, StreamSpec
from engine.store import Store, SyncRun
from engine.sync.fieldlist import FieldList
from engine.sync.pages import StreamContext, fetch_pages, first_call

log = logging.getLogger("crm_engine.sync")


def account_facts(mapping: ModelMapping, ctx: StreamContext, warn: Callable[[str], None], *,
                  strict: bool = True) -> dict[str, Any]:
    """The facts `mapping` falls back on, each read once per StreamContext.account (one
    connection's sync, or an Engine's actions on a connection): concurrent streams of the
    connection wait for the one read. A fact the account will not give (a 403 without the
    scope) leaves its fields null, with a warning; a passing failure fails the stream when
    `strict`, else (an action whose write already happened) is a warning too."""
    with ctx.account_lock:
        for name in sorted({f.fallback for f in mapping.fields.values() if f.fallback}):
            if name in ctx.account:
                continue
            fact = ctx.session.connector.account[name]
            call = render_call(fact.request, ctx.session.base_url, ctx.template_context)
            try:
                reply = ctx.session.send(call, f"sync.account.{name}")
                ctx.account[name] = fact.value(reply.body)
            except ExpressionFailed as exc:
                warn(f"account fact {name} unreadable, fields falling back on it stay null: "
                     f"{exc}")
                ctx.account[name] = None
            except CrmError as exc:
                if exc.kind != "fatal" and strict:
                    raise
                warn(f"account fact {name} unavailable, fields falling back on it stay null: "
                     f"{exc}")
                if exc.kind == "fatal":  # a passing failure is tried again next time
                    ctx.account[name] = None
    return ctx.account


def read_context(stream: StreamSpec, ctx: StreamContext, run: SyncRun,
                 fields: FieldList | None) -> ReadContext:
    models = unified_models()
    references = {name: ctx.store.rows(models[name], ctx.connection)
                  for name in referenced_models(stream)}
    config = ctx.template_context.get("config", {})
    return ReadContext(
        custom_names=fields.names if fields is not None else None,
        custom_options=fields.options if fields is not None else None,
        references=references,
        account=account_facts(stream.mapping, ctx, lambda message: _warn(run, message)),
        raw=bool(config.get("raw_records")),
        phone_region=config.get("phone_region"),
    )


def _warn(run: SyncRun, message: str) -> None:
    run.warn(message)
    log.warning("%s: %s", run.connection, message)


def referenced_models(stream: StreamSpec) -> set[str]:
    return {f.lookup.model for f in stream.mapping.fields.values() if f.lookup is not None}


def ordered(streams: dict[str, StreamSpec], names: Iterable[str],
            landed: Callable[[str], bool]) -> list[str]:
    """The streams to run for `names`: those whose tables others look into first, and, when
    such a table is not read yet for this connection (`landed(stream)` is false for a stream
    that lands it), that stream added to the run, so a first `sync --streams deals` still
    reads stage labels."""
    wanted = list(dict.fromkeys(names))
    providers: dict[str, list[str]] = {}
    for name, stream in streams.items():
        providers.setdefault(stream.mapping.model.name, []).append(name)
    out: list[str] = []

    def visit(name: str, seen: frozenset[str]) -> None:
        if name in out or name in seen:
            return
        for model in sorted(referenced_models(streams[name])):
            for provider in providers.get(model, ()):
                if provider in wanted or not landed(provider):
                    visit(provider, seen | {name})
        out.append(name)

    for name in wanted:
        visit(name, frozenset())
    return out


def reference_rows(connector: Connector, model: str, ctx: StreamContext) -> list[dict[str, Any]]:
    """This connection's rows of a reference model (stages, ...): the landed ones, else, for
    an action before any sync landed them, read from the CRM through the model's streams."""
    unified = unified_models()[model]
    if ctx.store is not None and ctx.store.has_rows(unified, ctx.connection):
        return ctx.store.rows(unified, ctx.connection)
    rows: list[dict[str, Any]] = []
    for stream in connector.streams.values():
        if stream.mapping.model.name != model:
            continue
        stream_ctx = ctx.of_stream(stream.name)
        call = first_call(stream.pages, stream_ctx, vendor_fields=stream.mapping.vendor_fields)
        for fetched in fetch_pages(stream.pages, stream_ctx, f"references.{stream.name}", call):
            if fetched.error is not None:
                raise fetched.error
            columns = unified.empty_columns()
            stream.mapping.read_columns(fetched.page.records, columns)
            rows += [dict(zip(columns, values, strict=True))
                     for values in zip(*columns.values(), strict=True)]
    return rows


def unread_references(streams: dict[str, StreamSpec], name: str,
                      runs: list[SyncRun]) -> list[str]:
    """The streams `name` looks into that failed earlier in this sync."""
    wanted = referenced_models(streams[name])
    return [run.stream for run in runs if run.status == "failed"
            and streams[run.stream].mapping.model.name in wanted]


def skipped(store: Store, run: SyncRun, reason: str) -> None:
    """Record a stream that was not run, as a failed run with the reason."""
    store.start_run(run)
    run.status, run.error, run.finished = "failed", reason, utc_now()
    store.finish_run(run)
