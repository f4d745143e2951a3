"""A stream's position, saved in the same transaction as the rows it follows.

Three things are kept per (connection, stream), as JSON in `sync_state`:

- `cursor`: every change up to this modification time is landed. The next incremental run
  reads from here, less the stream's lookback.
- `window`: an incremental run in progress: the query it goes on with after a kill.
- `resume`: a full refresh in progress: its next request, and when it started (rows it has not
  landed since then are marked deleted when it completes).

State never runs ahead of the rows: it is written with each batch, and a batch holds whole
pages, so a rerun after a kill at any moment goes on from the last landed page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

from engine import secrets
from engine.convert import format_timestamp, parse_timestamp
from engine.transport import Call


def _time(value: str | None) -> dt.datetime | None:
    return parse_timestamp(value) if value else None


def _text(value: dt.datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


@dataclass(frozen=True)
class Window:
    """One incremental query: records whose cursor is at least `since`; with `slice`, only
    those at exactly `since`, by tie-breaker id, after `after_id`."""

    since: dt.datetime
    slice: bool = False
    after_id: str | None = None

    def as_template(self) -> dict[str, Any]:
        return {"since": self.since, "slice": self.slice, "after_id": self.after_id}

    def to_json(self) -> dict[str, Any]:
        return {"since": _text(self.since), "slice": self.slice, "after_id": self.after_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        return cls(parse_timestamp(data["since"]), bool(data.get("slice")), data.get("after_id"))


@dataclass(frozen=True)
class Resume:
    """Where a full refresh goes on: the request after the last landed page."""

    call: Call | None  # None: paged by offsets, which shift; the full refresh starts again
    pages: int  # pages read so far (paginators that count pages need it)
    started: dt.datetime  # when this full refresh began (our clock)
    high: dt.datetime | None = None  # the highest cursor value read so far
    server_started: dt.datetime | None = None  # the CRM's clock then (its first `Date`)

    def to_json(self) -> dict[str, Any]:
        c = self.call
        return {"call": None if c is None else {
                    "method": c.method, "url": c.url, "params": c.params, "json": c.json,
                    "headers": c.headers, "idempotent": c.idempotent, "budget": c.budget},
                "pages": self.pages, "started": _text(self.started), "high": _text(self.high),
                "server_started": _text(self.server_started)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Resume:
        return cls(Call(**data["call"]) if data.get("call") else None, int(data["pages"]),
                   parse_timestamp(data["started"]),
                   _time(data.get("high")), _time(data.get("server_started")))


@dataclass(frozen=True)
class Checkpoint:
    cursor: dt.datetime | None = None
    window: Window | None = None
    resume: Resume | None = None
    deletes_cursor: dt.datetime | None = None
    last_full_refresh: dt.datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys a newer engine wrote; kept

    def to_json(self) -> dict[str, Any]:
        data = {**self.extra,
                "cursor": _text(self.cursor),
                "window": self.window.to_json() if self.window else None,
                "resume": self.resume.to_json() if self.resume else None,
                "deletes_cursor": _text(self.deletes_cursor),
                "last_full_refresh": _text(self.last_full_refresh)}
        if data["resume"] is not None and secrets.redact(str(data["resume"])) != \
                str(data["resume"]):
            data["resume"] = None  # never store a secret; the full refresh then starts over
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Checkpoint:
        if not data:
            return cls()
        known = {"cursor", "window", "resume", "deletes_cursor", "last_full_refresh"}
        return cls(
            cursor=_time(data.get("cursor")),
            window=Window.from_json(data["window"]) if data.get("window") else None,
            resume=Resume.from_json(data["resume"]) if data.get("resume") else None,
            deletes_cursor=_time(data.get("deletes_cursor")),
            last_full_refresh=_time(data.get("last_full_refresh")),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def restarted(self) -> Checkpoint:
        """For `--full-refresh`: forget the cursor and any run in progress."""
        return replace(self, cursor=None, window=None, resume=None, deletes_cursor=None)
