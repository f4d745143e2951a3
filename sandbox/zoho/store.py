"""In-memory Zoho CRM records, indexed for position-based paging.

Each module keeps its records by id plus a sorted id list, so a page is a slice and a page
token (a sort key) is one bisect. Orderings by Created_Time / Modified_Time (and the
If-Modified-Since filter) are built on demand and cached per module version; every write
bumps the version so cached orderings and rendered pages go stale.

Record documents are sparse: only values that are set are stored, and rendering fills in nulls
and the module's constant ``$``-keys (CONTRACTS 4.3).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from sandbox.kit.core import decode_json, encode_json
from sandbox.zoho.schema import BOOLEAN, MODULE_ALIASES, MODULES, TAGS, Module

Key = Any  # an int id, or an (epoch, id) tuple for time orderings


class Record:
    __slots__ = ("created", "doc", "id", "modified")

    def __init__(self, record_id: int, doc: dict[str, Any], created: int, modified: int) -> None:
        self.id = record_id
        self.doc = doc  # the set values, in API form ("id" is the numeric string)
        self.created = created  # epoch seconds of Created_Time / Modified_Time
        self.modified = modified


class Table:
    """One module: records by id, sorted ids, unique-field indexes, the recycle bin."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.records: dict[int, Record] = {}
        self.ids: list[int] = []
        self.next_id = module.first_id
        self.version = 0
        self.unique: dict[str, dict[str, int]] = {name: {} for name in module.unique}
        self.deleted: list[dict[str, Any]] = []  # newest last
        self.deleted_at: list[int] = []  # epoch seconds of each recycle-bin entry (same order)
        self.defaults = _defaults(module)
        self._orders: dict[tuple, tuple[int, list, list[int]]] = {}

    def ordering(self, sort_by: str, since: int | None) -> tuple[list[Key], list[int]]:
        """(ascending sort keys, ids in that order) for a list request."""
        if sort_by == "id" and since is None:
            return self.ids, self.ids
        cache_key = (sort_by, since)
        cached = self._orders.get(cache_key)
        if cached is not None and cached[0] == self.version:
            return cached[1], cached[2]
        records = self.records
        chosen: Iterable[Record] = (records[i] for i in self.ids)
        if since is not None:
            chosen = [r for r in chosen if r.modified >= since]
        if sort_by == "id":
            keys: list[Key] = [r.id for r in chosen]
            ids = keys
        else:
            attribute = "created" if sort_by == "Created_Time" else "modified"
            keys = sorted((getattr(r, attribute), r.id) for r in chosen)
            ids = [key[1] for key in keys]
        if len(self._orders) > 32:
            self._orders.clear()
        self._orders[cache_key] = (self.version, keys, ids)
        return keys, ids


def _defaults(module: Module) -> dict[str, Any]:
    """What an unset key renders as: its $-key constant, false for booleans, [] for Tag."""
    defaults: dict[str, Any] = dict(module.system)
    for name, field in module.fields.items():
        if field.kind == BOOLEAN:
            defaults[name] = False
        elif field.kind == TAGS:
            defaults[name] = ()  # encodes as []; a tuple cannot be mutated by a caller
    return defaults


def canonical_module(name: str) -> str | None:
    return MODULE_ALIASES.get(name.lower())


class Store:
    """All modules. Writes go through here so indexes and versions stay consistent."""

    def __init__(self) -> None:
        self.tables = {name: Table(module) for name, module in MODULES.items()}
        self.lock = threading.RLock()

    def table(self, module: str) -> Table:
        name = canonical_module(module)
        if name is None:
            raise KeyError(f"unknown module {module!r}")
        return self.tables[name]

    # -- reads -------------------------------------------------------------------------------

    def record(self, module: str, record_id: int | str) -> Record | None:
        try:
            return self.table(module).records.get(int(record_id))
        except ValueError:
            return None

    def get(self, module: str, record_id: int | str) -> dict[str, Any] | None:
        """Test helper: a copy of the record as GET /crm/vN/{module}/{id} shows it."""
        found = self.record(module, record_id)
        if found is None:
            return None
        return decode_json(encode_json(render_full(self.table(module), found)))

    def count(self, module: str) -> int:
        return len(self.table(module).ids)

    def ids(self, module: str) -> list[str]:
        """Test helper: every record id of a module, ascending, as strings."""
        return [str(record_id) for record_id in self.table(module).ids]

    def find_unique(self, module: str, field: str, value: str) -> int | None:
        index = self.table(module).unique.get(field)
        return index.get(value.lower()) if index is not None else None

    def find_by_display_name(self, module: str, name: str) -> Record | None:
        """First record (lowest id) whose display field equals ``name`` case-insensitively."""
        table = self.table(module)
        field, wanted = table.module.display_field, name.lower()
        for record_id in table.ids:
            record = table.records[record_id]
            value = record.doc.get(field)
            if isinstance(value, str) and value.lower() == wanted:
                return record
        return None

    # -- writes ------------------------------------------------------------------------------

    def load(self, module: str, rows: Iterable[tuple[int, dict[str, Any], int, int]]) -> None:
        """Bulk insert seed rows (id, doc, created, modified) in increasing id order."""
        table = self.table(module)
        records, ids = table.records, table.ids
        unique = list(table.unique.items())
        with self.lock:
            last = ids[-1] if ids else 0
            for record_id, doc, created, modified in rows:
                if record_id <= last:
                    raise ValueError(f"{module} ids must increase: {record_id} <= {last}")
                last = record_id
                doc["id"] = str(record_id)
                records[record_id] = Record(record_id, doc, created, modified)
                ids.append(record_id)
                for field, index in unique:
                    value = doc.get(field)
                    if value:
                        index[value.lower()] = record_id
            table.next_id = max(table.next_id, last + 1)
            table.version += 1

    def insert(self, module: str, doc: dict[str, Any], created: int) -> Record:
        """A new record under the next id (above every existing one)."""
        table = self.table(module)
        with self.lock:
            record_id = table.next_id
            self.load(module, [(record_id, doc, created, created)])
            return table.records[record_id]

    def update(self, module: str, record: Record, changes: dict[str, Any], modified: int) -> None:
        """Apply changes (None clears a value) and stamp the modification."""
        table = self.table(module)
        with self.lock:
            doc = record.doc
            for field, index in table.unique.items():
                if field in changes:
                    old = doc.get(field)
                    if old and index.get(old.lower()) == record.id:
                        del index[old.lower()]
                    if changes[field]:
                        index[changes[field].lower()] = record.id
            for name, value in changes.items():
                if value is None:
                    doc.pop(name, None)
                else:
                    doc[name] = value
            record.modified = modified
            table.version += 1

    def delete(self, module: str, record: Record, entry: dict[str, Any], deleted_at: int) -> None:
        """Remove a record; ``entry`` is its recycle-bin row (GET /{module}/deleted), made at
        ``deleted_at`` (epoch seconds)."""
        table = self.table(module)
        with self.lock:
            del table.records[record.id]
            table.ids.pop(bisect_left(table.ids, record.id))
            for field, index in table.unique.items():
                value = record.doc.get(field)
                if value and index.get(value.lower()) == record.id:
                    del index[value.lower()]
            table.deleted.append(entry)
            table.deleted_at.append(deleted_at)
            table.version += 1


# -- rendering ----------------------------------------------------------------------------------


def render_full(table: Table, record: Record) -> dict[str, Any]:
    """Every field of the module (null when unset), the $-keys and id."""
    doc, defaults = record.doc, table.defaults
    return {key: doc.get(key, defaults.get(key)) for key in table.module.order}


def selection_pairs(table: Table, names: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """(key, default) pairs for a `fields` selection; id always comes back (CONTRACTS 4.3)."""
    keys = dict.fromkeys((*names, "id"))
    return tuple((key, table.defaults.get(key)) for key in keys)


def render_page(
    table: Table, ids: list[int], pairs: tuple[tuple[str, Any], ...] | None
) -> list[dict[str, Any]]:
    """The records of one page: the hot path of a sync (encoded by the caller in one call)."""
    records = table.records
    if pairs is None:
        return [render_full(table, records[i]) for i in ids]
    out = []
    for record_id in ids:
        get = records[record_id].doc.get
        out.append({key: get(key, default) for key, default in pairs})
    return out
