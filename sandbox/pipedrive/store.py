"""In-memory Pipedrive records, one store behind both API versions.

Each record is kept once, already in its v2 shape (plain integer ids, RFC 3339 times,
``emails``/``phones``, ``custom_fields{}``), so a v2 page is a slice of stored dicts handed to
orjson; v1 shapes are derived on the way out (shapes.py). Records are never mutated
in place: a write stores a new dict, so a page being encoded never sees half a write.

Indexes: active ids ascending, ``(update_time, id)`` and ``(add_time, id)`` ascending (cursor and
offset pages are a bisect plus a slice; ``updated_since`` is a bisect), ``(update_time, id)`` of
deleted records, person e-mails, and the active people count per organization. ``version``
counts writes so callers can cache views and rendered pages.
"""

from __future__ import annotations

import copy
import threading
from bisect import bisect_left, insort
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from sandbox.pipedrive.schema import KINDS

Record = dict[str, Any]


class Table:
    """One kind of record (persons, organizations, deals, activities, notes)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.records: dict[int, Record] = {}  # active and deleted
        self.ids: list[int] = []  # active ids, ascending
        self.by_update: list[tuple[str, int]] = []  # active (update_time, id), ascending
        self.by_add: list[tuple[str, int]] = []  # active (add_time, id), ascending
        # deleted (update_time = deletion time, id), ascending: v2 deals?status=deleted and
        # v1 /recents list them
        self.deleted_by_update: list[tuple[str, int]] = []
        self.next_id = 1

    def active(self, record_id: int) -> Record | None:
        record = self.records.get(record_id)
        if record is None or _is_deleted(record):
            return None
        return record


def _is_deleted(record: Record) -> bool:
    return record.get("is_deleted", False) or record.get("active_flag") is False


def _emails_of(record: Record) -> list[str]:
    values = (entry["value"].lower() for entry in record.get("emails") or () if entry.get("value"))
    return list(dict.fromkeys(values))


class Store:
    def __init__(self) -> None:
        self.tables = {kind: Table(kind) for kind in KINDS}
        self.version = 0  # bumped on every write
        self.lock = threading.RLock()
        self._emails: dict[str, list[int]] = {}  # lower-cased email -> active person ids
        self._people: dict[int, int] = {}  # organization id -> active persons
        self._views: dict[Hashable, tuple[int, Any]] = {}
        # A deal's participants (its own person first, UNCONFIRMED), in the order added:
        # {id, person_id, add_time}. Kept apart from the deal: adding one does not change the
        # deal's update_time (UNCONFIRMED: Pipedrive logs them in a changelog of their own).
        self.participants: dict[int, list[Record]] = {}
        self._next_participant = 1

    # -- reads -----------------------------------------------------------------------------

    def record(self, kind: str, record_id: int | str) -> Record | None:
        """The active record, or None (unknown, deleted or not an integer id)."""
        try:
            return self.tables[kind].active(int(record_id))
        except (TypeError, ValueError):
            return None

    def stored(self, kind: str, record_id: int | str) -> Record | None:
        """The record whether or not it is deleted."""
        try:
            return self.tables[kind].records.get(int(record_id))
        except (TypeError, ValueError):
            return None

    def get(self, kind: str, record_id: int | str, *, deleted: bool = False) -> Record | None:
        """Test helper: a copy of the record in its v2 shape (notes: v1 fields, v2 times)."""
        found = self.stored(kind, record_id)
        if found is None or _is_deleted(found) != deleted:
            return None
        return copy.deepcopy(found)

    def count(self, kind: str) -> int:
        return len(self.tables[kind].ids)

    def persons_by_email(self, email: str) -> list[int]:
        return self._emails.get(email.lower(), [])

    def people_count(self, org_id: int) -> int:
        return self._people.get(org_id, 0)

    def active_records(self, kind: str) -> Iterable[Record]:
        table = self.tables[kind]
        records = table.records
        return (records[record_id] for record_id in table.ids)

    def participants_of(self, deal_id: int) -> list[Record]:
        return self.participants.get(deal_id, [])

    def add_participant(self, deal_id: int, person_id: int, now: str) -> Record:
        with self.lock:
            participant = {"id": self._next_participant, "person_id": person_id, "add_time": now}
            self._next_participant += 1
            self.participants.setdefault(deal_id, []).append(participant)
            self.version += 1
            return participant

    def view(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """A derived structure (filtered/sorted id list, search result) cached until the next
        write. ``build`` runs without the lock; a racing write only costs a rebuild."""
        version = self.version
        cached = self._views.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        value = build()
        if len(self._views) > 256:
            self._views.clear()
        self._views[key] = (version, value)
        return value

    # -- writes ----------------------------------------------------------------------------

    def load(self, kind: str, records: list[Record]) -> None:
        """Bulk insert seed records in increasing id order (the fast path for 100,000)."""
        table = self.tables[kind]
        with self.lock:
            last_id = table.ids[-1] if table.ids else 0
            store_records, ids = table.records, table.ids
            by_update, by_add = table.by_update, table.by_add
            persons = kind == "persons"
            for record in records:
                record_id = record["id"]
                if record_id <= last_id:
                    raise ValueError(f"{kind} ids must increase: {record_id} <= {last_id}")
                last_id = record_id
                store_records[record_id] = record
                ids.append(record_id)
                by_update.append((record["update_time"], record_id))
                by_add.append((record["add_time"], record_id))
                if persons:
                    self._index(kind, record, 1)
            by_update.sort()
            by_add.sort()
            table.next_id = max(table.next_id, last_id + 1)
            self.version += 1

    def insert(self, kind: str, build: Callable[[int], Record]) -> Record:
        """Create a record under the next id: ``build(id)`` returns it."""
        table = self.tables[kind]
        with self.lock:
            record_id = table.next_id
            record = build(record_id)
            table.next_id += 1
            table.records[record_id] = record
            table.ids.append(record_id)  # the highest id so far
            insort(table.by_update, (record["update_time"], record_id))
            insort(table.by_add, (record["add_time"], record_id))
            self._index(kind, record, 1)
            self.version += 1
            return record

    def replace(self, kind: str, record: Record) -> None:
        """Store a new version of an active record (same id)."""
        table = self.tables[kind]
        with self.lock:
            old = table.records[record["id"]]
            self._index(kind, old, -1)
            _remove(table.by_update, (old["update_time"], old["id"]))
            table.records[record["id"]] = record
            insort(table.by_update, (record["update_time"], record["id"]))
            self._index(kind, record, 1)
            self.version += 1

    def delete(self, kind: str, record: Record, changes: Record) -> Record:
        """Mark a record deleted (``changes`` set is_deleted/active_flag and update_time); it
        leaves the active indexes but stays readable through :meth:`stored`."""
        table = self.tables[kind]
        with self.lock:
            self._index(kind, record, -1)
            _remove(table.ids, record["id"])
            _remove(table.by_update, (record["update_time"], record["id"]))
            _remove(table.by_add, (record["add_time"], record["id"]))
            deleted = {**record, **changes}
            table.records[record["id"]] = deleted
            insort(table.deleted_by_update, (deleted["update_time"], deleted["id"]))
            self.version += 1
            return deleted

    def _index(self, kind: str, record: Record, delta: int) -> None:
        if kind != "persons":
            return
        org_id = record["org_id"]
        if org_id is not None:
            self._people[org_id] = self._people.get(org_id, 0) + delta
        emails = record["emails"]
        if not emails:
            return
        for email in _emails_of(record) if len(emails) > 1 else (emails[0]["value"].lower(),):
            if not email:
                continue
            owners = self._emails.setdefault(email, [])
            if delta > 0:
                if not owners or owners[-1] < record["id"]:
                    owners.append(record["id"])
                else:
                    insort(owners, record["id"])
            else:
                _remove(owners, record["id"])
                if not owners:
                    del self._emails[email]


def _remove(items: list, item: Any) -> None:
    position = bisect_left(items, item)
    if position < len(items) and items[position] == item:
        del items[position]
