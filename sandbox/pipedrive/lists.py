"""List queries: v1 offset pages and v2 cursor pages over the store's indexes (CONTRACTS 3.3).

A query becomes an ascending list of sort keys (an id, or ``(time, id)``) called a view. The
unfiltered views are the store's own indexes; filtered ones are built once per store version
and cached, so every page is a bisect plus a slice. ``updated_since``/``updated_until`` narrow
the ``(update_time, id)`` index by bisection.
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sandbox.kit.core import Request
from sandbox.pipedrive.errors import bad_request
from sandbox.pipedrive.schema import ME
from sandbox.pipedrive.store import Record, Store, Table
from sandbox.pipedrive.times import ceil_stamp, is_date, parse_rfc3339, rfc3339

DEFAULT_LIMIT = 100  # CONTRACTS 3.3: v1 and v2
MAX_LIMIT = 500  # CONTRACTS 3.3: v1 [3P], v2 [V]
MAX_IDS = 100
# PD-NODE v2 deals-api.ts: "If set to deleted, deals that have been deleted up to 30 days ago
# will be included." The window is measured on the sandbox clock, in whole hours (so listings
# can be cached for an hour).
DELETED_RETENTION = 30 * 86_400
MAX_CUSTOM_FIELDS = 15
# The 400 message for an integer query parameter that is not one, per API version.
NOT_AN_INTEGER = {
    1: "Invalid value for {name}: {raw}",
    2: "Validation failed: {name}: must be integer",
}

Key = Any  # int id, or (sort value, id)
Filters = tuple[tuple[str, frozenset], ...]  # (record field, accepted values)


@dataclass(frozen=True)
class View:
    """What to list: ``sort`` is "id" or a record field; ``since``/``until`` bound update_time
    (``>=``/``<``); ``dates`` bound a date field (``(field, first, last)`` inclusive)."""

    kind: str
    sort: str = "id"
    filters: Filters = ()
    since: str | None = None
    until: str | None = None
    dates: tuple[str, str | None, str | None] | None = None
    ids: frozenset | None = None
    # Deleted records: deleted_since is the oldest deletion time still listed (None: no deleted
    # records); live=False lists deleted records only (v2 deals?status=deleted).
    deleted_since: str | None = None
    live: bool = True


def ordered_keys(store: Store, view: View) -> list[Key]:
    """Ascending sort keys of the records the view selects."""
    table = store.tables[view.kind]
    if view.sort == "id" and view == View(view.kind):
        return table.ids  # the live index: no copy
    if view.sort == "update_time" and view == View(view.kind, sort="update_time"):
        return table.by_update
    return store.view(("keys", view), lambda: _build_keys(table, view))


def _build_keys(table: Table, view: View) -> list[Key]:
    if view.deleted_since is not None or not view.live:
        return _build_keys_with_deleted(table, view)
    records, ids, keep = table.records, view.ids, _predicate(view)

    def wanted(record_id: int) -> bool:
        return (ids is None or record_id in ids) and (keep is None or keep(records[record_id]))

    window = table.by_update
    if view.since is not None or view.until is not None:
        # the update_time range is a bisect on the (update_time, id) index
        lo = bisect_left(window, (view.since,)) if view.since else 0
        hi = bisect_left(window, (view.until,)) if view.until else len(window)
        window = window[lo:hi]
        if view.sort != "update_time":
            candidates = sorted(record_id for _, record_id in window)
            if view.sort == "id":
                return [i for i in candidates if wanted(i)]
            return _sorted_by(records, candidates, view.sort, wanted)
    if view.sort == "update_time":
        return [key for key in window if wanted(key[1])]  # already in order
    if view.sort == "add_time":
        return [key for key in table.by_add if wanted(key[1])]
    candidates = sorted(i for i in ids if table.active(i)) if ids is not None else table.ids
    if view.sort == "id":
        return [i for i in candidates if wanted(i)]
    return _sorted_by(records, candidates, view.sort, wanted)


def _build_keys_with_deleted(table: Table, view: View) -> list[Key]:
    """Keys of a view that lists deleted records (alone or with live ones). Deleted records are
    not subject to the status filter (their stored status is the one they had)."""
    records, ids = table.records, view.ids
    keep_live = _predicate(view)
    keep_deleted = _predicate(replace(view, filters=tuple(f for f in view.filters
                                                          if f[0] != "status")))

    def in_range(stamp: str) -> bool:
        return (view.since is None or stamp >= view.since) and (
            view.until is None or stamp < view.until
        )

    chosen: list[tuple[str, int]] = []
    if view.live:
        chosen += [
            key
            for key in table.by_update
            if in_range(key[0])
            and (ids is None or key[1] in ids)
            and (keep_live is None or keep_live(records[key[1]]))
        ]
    if view.deleted_since is not None:
        chosen += [
            key
            for key in table.deleted_by_update
            if key[0] >= view.deleted_since
            and in_range(key[0])
            and (ids is None or key[1] in ids)
            and (keep_deleted is None or keep_deleted(records[key[1]]))
        ]
    if view.sort == "update_time":
        return sorted(chosen)
    if view.sort == "id":
        return sorted(record_id for _, record_id in chosen)
    return sorted((_sortable(records[i][view.sort], view.sort), i) for _, i in chosen)


def _sorted_by(
    records: dict[int, Record], ids: list[int], field: str, wanted: Callable[[int], bool]
) -> list[Key]:
    return sorted((_sortable(records[i][field], field), i) for i in ids if wanted(i))


TEXT_SORTS = frozenset(("name", "first_name", "last_name", "title", "subject"))


def _sortable(value: Any, field: str) -> Any:
    # None sorts first; names compare case-insensitively like Pipedrive's UI sort
    if value is None:
        return ""
    return value.lower() if field in TEXT_SORTS else value


def _predicate(view: View) -> Callable[[Record], bool] | None:
    checks: list[Callable[[Record], bool]] = []
    for field, accepted in view.filters:
        checks.append(lambda record, f=field, a=accepted: record.get(f) in a)
    if view.dates is not None:
        field, first, last = view.dates

        def in_range(record: Record, f: str = field, a: str | None = first, b: str | None = last):
            value = (record.get(f) or "")[:10]
            return bool(value) and (a is None or value >= a) and (b is None or value <= b)

        checks.append(in_range)
    if not checks:
        return None
    return lambda record: all(check(record) for check in checks)


def key_id(key: Key) -> int:
    return key if isinstance(key, int) else key[1]


# -- v2: cursor pages ------------------------------------------------------------------------


@dataclass(frozen=True)
class V2Page:
    view: View
    limit: int
    descending: bool
    after: Key | None  # the sort key of the previous page's last record
    custom_fields: tuple[str, ...] | None
    include: frozenset[str] = frozenset()  # include_fields the emulator serves


# v2 deals' `include_fields`: the values Pipedrive's v2 reference lists (dlt's Pipedrive v2
# source asks for all of them). The emulator computes only participants_count; the others
# are accepted and left out.
V2_INCLUDE_FIELDS = {
    "deals": frozenset((
        "next_activity_id", "last_activity_id", "first_won_time", "products_count",
        "files_count", "notes_count", "followers_count", "email_messages_count",
        "activities_count", "done_activities_count", "undone_activities_count",
        "participants_count", "last_incoming_mail_time", "last_outgoing_mail_time",
        "smart_bcc_email",
    )),
}
SERVED_INCLUDE_FIELDS = frozenset({"participants_count"})

V2_SORTS = {
    "persons": ("id", "update_time", "add_time"),
    "organizations": ("id", "update_time", "add_time"),
    "deals": ("id", "update_time", "add_time"),
    "activities": ("id", "update_time", "add_time", "due_date"),
}
V2_FILTERS = {  # query parameter -> record field (PD-NODE v2 *-api.ts list parameters)
    "persons": {"owner_id": "owner_id", "org_id": "org_id"},
    "organizations": {"owner_id": "owner_id"},
    "deals": {
        "owner_id": "owner_id",
        "person_id": "person_id",
        "org_id": "org_id",
        "pipeline_id": "pipeline_id",
        "stage_id": "stage_id",
    },
    "activities": {
        "owner_id": "owner_id",
        "deal_id": "deal_id",
        "person_id": "person_id",
        "org_id": "org_id",
    },
}


def parse_v2_page(request: Request, kind: str, now: float = 0.0) -> V2Page:
    """Validate a v2 list query strictly (v2 "significantly stricter input validation").
    ``now`` (the sandbox clock) dates the deleted-deals window."""
    limit = _int_arg(request, "limit", DEFAULT_LIMIT, version=2)
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"Validation failed: limit: must be between 1 and {MAX_LIMIT}")
    sort = request.arg("sort_by") or "id"
    if sort not in V2_SORTS[kind]:
        raise bad_request(f"Validation failed: sort_by: must be one of {', '.join(V2_SORTS[kind])}")
    direction = request.arg("sort_direction") or "asc"
    if direction not in ("asc", "desc"):
        raise bad_request("Validation failed: sort_direction: must be one of asc, desc")
    filters = []
    for param, field in V2_FILTERS[kind].items():
        if request.arg(param) not in (None, ""):
            filters.append((field, frozenset([_int_arg(request, param, 0, version=2)])))
    deleted_since, live = None, True
    if kind == "deals" and request.arg("status"):
        statuses = set(request.arg("status").split(","))
        if not statuses <= {"open", "won", "lost", "deleted"}:
            raise bad_request(
                "Validation failed: status: must be one of open, won, lost, deleted"
            )
        if "deleted" in statuses:
            # PD-NODE v2 deals-api.ts: deals deleted up to 30 days ago are included
            hour = int(now) // 3600 * 3600
            deleted_since = rfc3339(hour - DELETED_RETENTION)
            statuses.discard("deleted")
            live = bool(statuses)
        if statuses:
            filters.append(("status", frozenset(statuses)))
    if kind == "activities" and request.arg("done") not in (None, ""):
        done = request.arg("done")
        if done not in ("true", "false"):  # v2 booleans are true/false only
            raise bad_request("Validation failed: done: must be boolean")
        filters.append(("done", frozenset([done == "true"])))
    ids = None
    if request.arg("ids"):
        try:
            ids = frozenset(int(part) for part in request.arg("ids").split(","))
        except ValueError:
            raise bad_request("Validation failed: ids: must be a list of integers") from None
        if len(ids) > MAX_IDS:
            raise bad_request(f"Validation failed: ids: must have at most {MAX_IDS} items")
    custom = None
    if request.arg("custom_fields"):
        custom = tuple(k for k in request.arg("custom_fields").split(",") if k)
        if len(custom) > MAX_CUSTOM_FIELDS:
            raise bad_request(
                f"Validation failed: custom_fields: must have at most {MAX_CUSTOM_FIELDS} items"
            )
    view = View(
        kind,
        sort=sort,
        filters=tuple(sorted(filters)),
        since=_v2_time(request, "updated_since"),
        until=_v2_time(request, "updated_until"),
        ids=ids,
        deleted_since=deleted_since,
        live=live,
    )
    after = decode_cursor(request.arg("cursor"), sort, direction)
    return V2Page(view, limit, direction == "desc", after, custom, include_fields(request, kind))


def include_fields(request: Request, kind: str) -> frozenset[str]:
    """The `include_fields` asked for that the emulator serves; an unknown one is a 400."""
    asked = {part for part in (request.arg("include_fields") or "").split(",") if part}
    known = V2_INCLUDE_FIELDS.get(kind, frozenset())
    unknown = sorted(asked - known)
    if unknown:
        raise bad_request(f"Validation failed: include_fields: unknown value {unknown[0]!r}")
    return frozenset(asked) & SERVED_INCLUDE_FIELDS


def _int_arg(request: Request, name: str, default: int, *, version: int) -> int:
    """Query parameter ``name`` as an integer; ``default`` when absent or empty."""
    raw = request.arg(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_request(NOT_AN_INTEGER[version].format(name=name, raw=raw)) from None


def _v2_time(request: Request, name: str) -> str | None:
    raw = request.arg(name)
    if not raw:
        return None
    try:
        return ceil_stamp(parse_rfc3339(raw))
    except ValueError:
        raise bad_request(
            f"Validation failed: {name}: must be a valid RFC 3339 date-time (e.g. "
            "2025-01-01T10:20:00Z)"
        ) from None


def cursor_slice(keys: list[Key], after: Key | None, limit: int, descending: bool):
    """(page keys, the last key if another page follows)."""
    if descending:
        end = bisect_left(keys, after) if after is not None else len(keys)
        begin = max(0, end - limit)
        chunk = keys[begin:end][::-1]
        more = begin > 0
    else:
        start = bisect_right(keys, after) if after is not None else 0
        chunk = keys[start : start + limit]
        more = start + limit < len(keys)
    return chunk, (chunk[-1] if more and chunk else None)


def encode_cursor(key: Key, sort: str, direction: str) -> str:
    # Opaque, base64url JSON like Pipedrive's "eyJ..." cursors; unpadded so it needs no escaping.
    payload = json.dumps({"sort_by": sort, "dir": direction, "last": key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()


def decode_cursor(raw: str | None, sort: str, direction: str) -> Key | None:
    if not raw:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if payload["sort_by"] != sort or payload["dir"] != direction:
            raise ValueError("cursor made for another sort")
        last = payload["last"]
        if sort == "id":
            if not isinstance(last, int):
                raise ValueError("bad key")
            return last
        value, record_id = last
        return (value, int(record_id))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad_request("Validation failed: cursor: invalid cursor") from None


# -- v1: offset pages ------------------------------------------------------------------------


@dataclass(frozen=True)
class V1Page:
    view: View
    start: int
    limit: int
    descending: bool


V1_SORTS = {
    "persons": ("id", "add_time", "update_time", "name", "first_name", "last_name"),
    "organizations": ("id", "add_time", "update_time", "name"),
    "deals": ("id", "add_time", "update_time", "title", "value", "expected_close_date"),
    "activities": ("id", "add_time", "update_time", "subject", "due_date"),
    "notes": ("id", "add_time", "update_time"),
}
V1_STATUSES = {"open", "won", "lost", "all_not_deleted"}


def parse_v1_page(request: Request, kind: str, *, default_limit: int = DEFAULT_LIMIT) -> V1Page:
    start = _int_arg(request, "start", 0, version=1)
    limit = _int_arg(request, "limit", default_limit, version=1)
    if start < 0 or limit < 1:
        raise bad_request("Invalid pagination parameters: start must be >= 0 and limit >= 1")
    # Choice (CONTRACTS 3.3 gives max 500 [3P] without the over-limit behaviour): v1 clamps.
    limit = min(limit, MAX_LIMIT)
    sort, descending = "id", False
    if request.arg("sort"):
        # "field ASC|DESC"; only the first field of a comma list is honoured
        words = request.arg("sort").split(",")[0].split()
        if not words or words[0] not in V1_SORTS[kind] or len(words) > 2:
            raise bad_request(f"Invalid sort field: {request.arg('sort')}")
        if len(words) == 2 and words[1].upper() not in ("ASC", "DESC"):
            raise bad_request(f"Invalid sort direction: {words[1]}")
        sort, descending = words[0], len(words) == 2 and words[1].upper() == "DESC"
    filters: list[tuple[str, frozenset]] = []
    dates = None
    owner_field = "user_id" if kind == "notes" else "owner_id"
    user_id = request.arg("user_id")
    if kind == "activities" and user_id is None:
        # v1 /activities lists the authorised user's activities unless user_id is given;
        # user_id=0 lists everyone's (developers.pipedrive.com v1 Activities).
        filters.append((owner_field, frozenset([ME["id"]])))
    elif user_id not in (None, "", "0"):
        filters.append((owner_field, frozenset([_int_arg(request, "user_id", 0, version=1)])))
    if kind == "deals":
        status = request.arg("status") or "all_not_deleted"
        if status not in V1_STATUSES:
            raise bad_request(f"Invalid status: {status}")
        if status != "all_not_deleted":
            filters.append(("status", frozenset([status])))
        for param in ("stage_id", "pipeline_id", "person_id", "org_id"):
            if request.arg(param):
                filters.append((param, frozenset([_int_arg(request, param, 0, version=1)])))
    if kind == "activities":
        if request.arg("done") in ("0", "1"):
            filters.append(("done", frozenset([request.arg("done") == "1"])))
        if request.arg("type"):
            filters.append(("type", frozenset(request.arg("type").split(","))))
        dates = _v1_dates(request, "due_date")
    if kind == "notes":
        for param in ("deal_id", "person_id", "org_id"):
            if request.arg(param):
                filters.append((param, frozenset([_int_arg(request, param, 0, version=1)])))
        dates = _v1_dates(request, "add_time")
    view = View(kind, sort=sort, filters=tuple(sorted(filters)), dates=dates)
    return V1Page(view, start, limit, descending)


def _v1_dates(request: Request, field: str) -> tuple[str, str | None, str | None] | None:
    first, last = request.arg("start_date"), request.arg("end_date")
    for value in (first, last):
        if value and not is_date(value):
            raise bad_request(f"Invalid date: {value} (expected YYYY-MM-DD)")
    return (field, first, last) if first or last else None


def offset_slice(keys: list[Key], start: int, limit: int, descending: bool):
    """(page keys, more_items_in_collection)."""
    total = len(keys)
    if descending:
        end = max(0, total - start)
        chunk = keys[max(0, end - limit) : end][::-1]
    else:
        chunk = keys[start : start + limit]
    return chunk, start + limit < total


def v1_pagination(start: int, limit: int, more: bool) -> dict[str, Any]:
    # CONTRACTS 3.3: next_start only when more_items_in_collection is true
    pagination: dict[str, Any] = {
        "start": start,
        "limit": limit,
        "more_items_in_collection": more,
    }
    if more:
        pagination["next_start"] = start + limit
    return pagination
