"""In-memory Salesforce records, field-path resolution and record rendering.

Speed matters (a sync pages through tens of thousands of records at 2,000 a page): a record is
a ``__slots__`` object whose values sit in a tuple aligned with the schema's stored fields, so
rendering a selection of plain fields is one generated dict display per record and one orjson
call per page. Rendered JSON fragments are cached per (object, selection, API version) and
dropped for a record when it is written.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sandbox.kit.core import encode_json
from sandbox.salesforce.ids import make_id, normalize_id
from sandbox.salesforce.schema import (
    LATER_OBJECTS,
    PREFIXES,
    SCHEMAS,
    STAGE_INFO,
    Field,
    ObjectSchema,
)
from sandbox.salesforce.values import datetime_to_epoch, format_datetime

FRAGMENT_CACHES = 8  # (object, selection, version) caches kept (~45 MB per 100,000 contacts)


# Objects in the order their id counters were first laid out: ids of these never move when
# objects are added (they come after, in name order).
_FIRST_OBJECTS = ("Account", "Contact", "Event", "Lead", "Note", "Opportunity", "Task", "User")


def first_number(object_name: str) -> int:
    """Where an object's base-62 id counter starts: high enough for mixed-case ids like real
    ones, and different per object so ids of two objects never share their tail."""
    order = [*_FIRST_OBJECTS, *sorted(set(SCHEMAS) - set(_FIRST_OBJECTS) - set(LATER_OBJECTS)),
             *LATER_OBJECTS]
    return 48_000_000 + 7_919_000 * order.index(object_name)


class Record:
    __slots__ = ("deleted", "id", "rev", "values")

    def __init__(self, record_id: str, values: tuple) -> None:
        self.id = record_id
        # Aligned with ObjectSchema.stored_names; replaced, never mutated, on write. A tuple of
        # plain values is untracked by the cyclic GC, which keeps its passes over 100,000
        # records short.
        self.values = values
        self.deleted = False
        self.rev = 0  # bumped on every write (guards the fragment cache)


class Table:
    def __init__(self, schema: ObjectSchema) -> None:
        self.schema = schema
        self.records: list[Record] = []  # creation (= id) order, deleted ones included
        self.deleted = 0
        self.next_number = first_number(schema.name)


class PathError(Exception):
    """A field path that does not resolve: ``kind`` is "column" or "relationship"."""

    def __init__(self, kind: str, name: str, entity: str) -> None:
        super().__init__(name)
        self.kind = kind
        self.name = name
        self.entity = entity


# A polymorphic ("Name") relationship target: Who, What, Parent.
_NAME_FIELD_DEFS = {
    "id": Field("Id", "id", "Id", 18),
    "name": Field("Name", "string", "Name", 255),
    "type": Field("Type", "picklist", "Type", 40),
}


@dataclass(frozen=True)
class FieldPath:
    """A resolved SELECT/WHERE/ORDER BY field: ``names`` are the canonical API names."""

    names: tuple[str, ...]
    field: Field
    getter: Callable[[Record], Any]
    slot: int | None  # stored slot on the queried object (plain fields only)
    hops: tuple[tuple[Field, bool], ...]  # (reference field, polymorphic) per relationship

    @property
    def dotted(self) -> str:
        return ".".join(self.names)


class Store:
    """All records of the org plus the id index."""

    def __init__(self) -> None:
        self.tables = {name: Table(schema) for name, schema in SCHEMAS.items()}
        self.by_id: dict[str, Record] = {}
        self.version = 0  # bumped on every write; query results are cached per version
        self.lock = threading.RLock()
        self._fragments: OrderedDict[tuple, dict[Record, bytes]] = OrderedDict()

    # -- reads -----------------------------------------------------------------------------

    @staticmethod
    def object_of(record_id: str) -> str | None:
        return PREFIXES.get(record_id[:3])

    def record(self, record_id: str) -> Record | None:
        """A record by 15- or 18-character id (deleted ones included)."""
        canonical = normalize_id(record_id)
        return self.by_id.get(canonical) if canonical else None

    def live_object_of(self, record_id: str) -> str | None:
        """Object name of a live (not deleted) record, for reference checks."""
        found = self.by_id.get(record_id)
        return None if found is None or found.deleted else self.object_of(record_id)

    def value(self, record: Record, name: str) -> Any:
        schema = SCHEMAS[self.object_of(record.id)]
        return record.values[schema.index[name]]

    def as_dict(self, record: Record) -> dict[str, Any]:
        schema = SCHEMAS[self.object_of(record.id)]
        return dict(zip(schema.stored_names, record.values, strict=True))

    def get(self, object_name: str, record_id: str, *, deleted: bool = False) -> dict | None:
        """Test helper: the record as ``GET .../sobjects/{Type}/{id}`` shows it (every field)."""
        found = self.record(record_id)
        if found is None or found.deleted != deleted or self.object_of(found.id) != object_name:
            return None
        return self.selection(object_name, None).render(found, "59.0")

    def count(self, object_name: str, *, deleted: bool = False) -> int:
        """Live records, or with deleted=True the deleted (recycle bin) ones."""
        table = self.tables[object_name]
        return table.deleted if deleted else len(table.records) - table.deleted

    def records(self, object_name: str, *, include_deleted: bool = False) -> Iterator[Record]:
        """Live records (with include_deleted, the deleted ones too) in id order."""
        table = self.tables[object_name]
        if include_deleted or not table.deleted:
            return iter(table.records)
        return (record for record in table.records if not record.deleted)

    def find(self, object_name: str, field_name: str, value: str) -> list[Record]:
        """Live records whose field equals ``value`` case-insensitively (upsert lookups)."""
        slot = SCHEMAS[object_name].index[field_name]
        wanted = value.lower()
        return [
            record
            for record in self.records(object_name)
            if isinstance(record.values[slot], str) and record.values[slot].lower() == wanted
        ]

    # -- field paths -----------------------------------------------------------------------

    def resolve(self, schema: ObjectSchema, dotted: str) -> FieldPath:
        """``Email``, ``Account.Name``, ``Who.Name``, ``Account.Owner.Email`` -> FieldPath.

        Raises PathError naming the part that does not exist (case-insensitive lookups)."""
        parts = dotted.split(".")
        names: list[str] = []
        hops: list[tuple[Field, bool]] = []
        current: ObjectSchema | None = schema
        for part in parts[:-1]:
            if current is None:  # after a polymorphic hop only Id/Name/Type are known
                raise PathError("relationship", part, "Name")
            ref = current.relationships.get(part.lower())
            if ref is None:
                raise PathError("relationship", part, current.name)
            polymorphic = len(ref.reference_to) > 1
            hops.append((ref, polymorphic))
            names.append(ref.relationship or part)
            current = None if polymorphic else SCHEMAS[ref.reference_to[0]]
        leaf_name = parts[-1]
        if current is None:
            leaf = _NAME_FIELD_DEFS.get(leaf_name.lower())
            if leaf is None:
                raise PathError("column", leaf_name, "Name")
        else:
            leaf = current.field(leaf_name)
            if leaf is None:
                raise PathError("column", leaf_name, current.name)
        names.append(leaf.name)
        getter = self._leaf_getter(current, leaf)
        for ref, _ in reversed(hops):
            getter = self._hop(ref, getter)
        slot = schema.index.get(leaf.name) if not hops else None
        return FieldPath(tuple(names), leaf, getter, slot, tuple(hops))

    def _leaf_getter(self, schema: ObjectSchema | None, leaf: Field) -> Callable[[Record], Any]:
        if schema is None:  # polymorphic target: the slot depends on the record's object
            if leaf.name == "Id":
                return lambda record: record.id
            if leaf.name == "Type":
                return lambda record: PREFIXES[record.id[:3]]
            return lambda record: record.values[SCHEMAS[PREFIXES[record.id[:3]]].index["Name"]]
        if leaf.compound:
            slots = [schema.index[name] for name in leaf.compound]
            return lambda record: _address([record.values[slot] for slot in slots])
        slot = schema.index[leaf.name]
        return lambda record: record.values[slot]

    def _hop(self, ref: Field, inner: Callable[[Record], Any]) -> Callable[[Record], Any]:
        target = self.target_getter(ref)

        def follow(record: Record) -> Any:
            found = target(record)
            return None if found is None else inner(found)

        return follow

    def target_getter(self, ref: Field) -> Callable[[Record], Record | None]:
        """Record -> the live record its reference field points at (None when unset)."""
        by_id = self.by_id
        # The reference slot differs per source object only by schema, resolved lazily.
        slots: dict[str, int] = {}

        def target(record: Record) -> Record | None:
            object_name = PREFIXES[record.id[:3]]
            slot = slots.get(object_name)
            if slot is None:
                slot = slots[object_name] = SCHEMAS[object_name].index[ref.name]
            linked = record.values[slot]
            if linked is None:
                return None
            found = by_id.get(linked)
            return None if found is None or found.deleted else found

        return target

    # -- rendering -------------------------------------------------------------------------

    def selection(self, object_name: str, dotted: Iterable[str] | None) -> Selection:
        """A renderer for the given field paths (None: every field, as a GET returns)."""
        schema = SCHEMAS[object_name]
        names = [f.name for f in schema.fields] if dotted is None else list(dotted)
        return Selection(self, schema, [self.resolve(schema, name) for name in names])

    def fragments(self, key: tuple) -> dict[Record, bytes]:
        """The JSON fragment cache for (object, selection, API version): record -> bytes."""
        with self.lock:
            cache = self._fragments.get(key)
            if cache is None:
                cache = self._fragments[key] = {}
                while len(self._fragments) > FRAGMENT_CACHES:
                    self._fragments.popitem(last=False)
            else:
                self._fragments.move_to_end(key)
            return cache

    def keep_fragments(
        self,
        cache: dict[Record, bytes],
        records: list[Record],
        revs: list[int],
        fragments: list[bytes],
    ) -> None:
        """Store freshly rendered fragments unless their record was written meanwhile."""
        with self.lock:
            if [record.rev for record in records] == revs:
                cache.update(zip(records, fragments, strict=True))
                return
            for record, rev, fragment in zip(records, revs, fragments, strict=True):
                if record.rev == rev:
                    cache[record] = fragment

    def _written(self, record: Record) -> None:
        # Caller holds the lock: drop the record's fragments everywhere.
        record.rev += 1
        self.version += 1
        for cache in self._fragments.values():
            cache.pop(record, None)

    # -- writes ----------------------------------------------------------------------------

    def load(self, object_name: str, rows: Iterable[tuple[int, dict[str, Any]]]) -> list[Record]:
        """Bulk insert (counter, values) rows in increasing counter order (seeding). Values
        must already hold the audit fields; derived fields are computed here."""
        table = self.tables[object_name]
        schema = table.schema
        names = schema.stored_names
        booleans = [f.name for f in schema.fields if f.type == "boolean"]
        prefix = schema.key_prefix
        created = []
        append, by_id = created.append, self.by_id
        number = table.next_number - 1
        with self.lock:
            for number, values in rows:  # the last number sets next_number below
                record_id = make_id(prefix, number)
                values["Id"] = record_id
                for name in booleans:
                    if values.get(name) is None:
                        values[name] = False
                derive(object_name, values, None, values["LastModifiedDate"])
                record = Record(record_id, tuple(map(values.get, names)))
                append(record)
                by_id[record_id] = record
            table.records.extend(created)
            table.next_number = max(table.next_number, number + 1)
            self.version += 1
        return created

    def insert(self, object_name: str, values: dict[str, Any], now: str, user_id: str) -> Record:
        schema = SCHEMAS[object_name]
        values = dict(values)
        values.update(
            IsDeleted=False,
            CreatedDate=now,
            LastModifiedDate=now,
            SystemModstamp=now,
            CreatedById=user_id,
            LastModifiedById=user_id,
        )
        if "OwnerId" in schema.index and values.get("OwnerId") is None:
            values["OwnerId"] = user_id
        with self.lock:
            number = self.tables[object_name].next_number
            return self.load(object_name, [(number, values)])[0]

    def update(self, record: Record, changes: dict[str, Any], now: str, user_id: str) -> None:
        object_name = self.object_of(record.id)
        schema = SCHEMAS[object_name]
        with self.lock:
            previous = self.as_dict(record)
            values = {**previous, **changes}
            values.update(LastModifiedDate=now, SystemModstamp=now, LastModifiedById=user_id)
            for name in changes:
                if schema.by_lower[name.lower()].type == "boolean" and values[name] is None:
                    values[name] = False
            derive(object_name, values, changes, now)
            # Copy-on-write: a concurrent reader sees the old list or the new one, never a mix.
            record.values = tuple(map(values.get, schema.stored_names))
            self._written(record)

    def delete(self, record: Record, now: str, user_id: str) -> None:
        """Soft delete (recycle bin): IsDeleted=true, still visible to queryAll."""
        object_name = self.object_of(record.id)
        schema = SCHEMAS[object_name]
        with self.lock:
            values = list(record.values)
            values[schema.index["IsDeleted"]] = True
            values[schema.index["LastModifiedDate"]] = now
            values[schema.index["SystemModstamp"]] = now
            values[schema.index["LastModifiedById"]] = user_id
            record.values = tuple(values)
            record.deleted = True
            self.tables[object_name].deleted += 1
            self._written(record)


class Child:
    """A subquery of a parent-to-child relationship: `(SELECT ContactId, Role FROM
    OpportunityContactRoles)` renders, per parent, null when it has no such children, else
    {"totalSize", "done": true, "records": [...]} (every child, never paged here)."""

    def __init__(self, name: str, selection: Selection, lookup: str) -> None:
        self.name = name
        self.selection = selection
        slot = selection.schema.index[lookup]
        # Indexed once per query: a query's result is what the data was when it ran.
        self._by_parent: dict[str, list[Record]] = {}
        for record in selection.store.records(selection.schema.name):
            self._by_parent.setdefault(record.values[slot], []).append(record)

    def render(self, parent: Record, version: str) -> dict | None:
        children = self._by_parent.get(parent.id)
        if not children:
            return None
        return {"totalSize": len(children), "done": True,
                "records": [self.selection.render(child, version) for child in children]}


class Selection:
    """Renders records of one object with the chosen field paths, ``attributes`` first."""

    def __init__(self, store: Store, schema: ObjectSchema, paths: list[FieldPath],
                 children: tuple[Child, ...] = ()) -> None:
        self.store = store
        self.schema = schema
        self.paths = paths
        self.children = children
        self.key = tuple(path.dotted for path in paths)
        self.has_relationships = any(path.hops for path in paths) or bool(children)
        plain = not children and all(
            path.slot is not None and not path.field.compound for path in paths)
        self._plain_keys = tuple(path.names[0] for path in paths) if plain and paths else None
        # values tuple -> {field: value}: a generated dict display (one BUILD_CONST_KEY_MAP,
        # presized) is ~30% faster than dict(zip()); keys are schema names, slots are ints.
        self._plain_document: Callable[[tuple], dict] | None = None
        if self._plain_keys is not None:
            items = ", ".join(f"{path.names[0]!r}: v[{path.slot}]" for path in paths)
            self._plain_document = eval(f"lambda v: {{{items}}}")
        self._tree = _tree(store, paths)

    def render(self, record: Record, version: str) -> dict:
        object_name = self.schema.name
        document: dict[str, Any] = {
            "attributes": {
                "type": object_name,
                "url": f"/services/data/v{version}/sobjects/{object_name}/{record.id}",
            }
        }
        if self._plain_document is not None:
            document.update(self._plain_document(record.values))
        elif self.paths:
            _fill(document, record, self._tree, version)
        for child in self.children:
            document[child.name] = child.render(record, version)
        return document

    def fragments(self, records: list[Record], version: str) -> list[bytes]:
        """One JSON object per record, as ``render`` + encode would give, but encoded with a
        single orjson call per batch (per-record calls cost ~3x more, mostly in orjson's
        over-allocated output buffers) and split on the record boundaries."""
        if not records:
            return []
        if self._plain_document is None:
            # Records hold no arrays, so '},{"attributes":' only occurs between two records:
            # inside a JSON string the quote would be escaped.
            documents = [self.render(record, version) for record in records]
            parts = _split(encode_json(documents), b'"attributes":')
            if len(parts) == len(records):
                return [b'{"attributes":' + part + b"}" for part in parts]
            return [bytes(encode_json(document)) for document in documents]  # pragma: no cover
        # Plain fields: encode the values without "attributes" (dict(zip()) is C code), then
        # put the attributes in front of each fragment. The first key splits the records.
        build = self._plain_document
        first_key = encode_json(self._plain_keys[0]) + b":"
        documents = [build(record.values) for record in records]
        parts = _split(encode_json(documents), first_key)
        if len(parts) != len(records):  # pragma: no cover - cannot happen (see _split)
            return [bytes(encode_json(self.render(record, version))) for record in records]
        name = self.schema.name
        head = f'{{"attributes":{{"type":"{name}","url":"/services/data/v{version}/sobjects/{name}/'
        head_bytes = head.encode()
        middle = b'"},' + first_key
        return [
            head_bytes + record.id.encode() + middle + part + b"}"
            for record, part in zip(records, parts, strict=True)
        ]


def _split(page: bytes, first_key: bytes) -> list[bytes]:
    """``[{<k>v..},{<k>v..}]`` -> the bodies after ``{<k>`` of each object. ``},{`` followed by a
    quoted key only occurs between array elements: objects here hold no arrays, and in a string
    a quote would be escaped."""
    assert page[:2] == b"[{" and page[-2:] == b"}]"
    inner = page[2 + len(first_key) : -2]
    return inner.split(b"},{" + first_key)


# A render tree node: (key, leaf getter) or (key, (target getter, polymorphic, child nodes)).
_Node = tuple[str, Any]


def _tree(store: Store, paths: list[FieldPath]) -> list[_Node]:
    root: OrderedDict[str, Any] = OrderedDict()
    for path in paths:
        level = root
        source_hops = path.hops
        for depth, (ref, polymorphic) in enumerate(source_hops):
            key = path.names[depth]
            if key not in level:
                level[key] = (store.target_getter(ref), polymorphic, OrderedDict())
            level = level[key][2]
        leaf_key = path.names[-1]
        if leaf_key not in level:
            level[leaf_key] = path.getter if not path.hops else _local_getter(store, path)
    return _freeze(root)


def _local_getter(store: Store, path: FieldPath) -> Callable[[Record], Any]:
    """The leaf getter relative to the last hop's target record."""
    if path.hops[-1][1]:  # polymorphic target
        return store._leaf_getter(None, path.field)
    schema = SCHEMAS[path.hops[-1][0].reference_to[0]]
    return store._leaf_getter(schema, path.field)


def _freeze(level: OrderedDict) -> list[_Node]:
    nodes: list[_Node] = []
    for key, value in level.items():
        if isinstance(value, tuple):
            target, polymorphic, children = value
            nodes.append((key, (target, polymorphic, _freeze(children))))
        else:
            nodes.append((key, value))
    return nodes


def _fill(document: dict, record: Record, nodes: list[_Node], version: str) -> None:
    for key, node in nodes:
        if isinstance(node, tuple):
            target_getter, polymorphic, children = node
            target = target_getter(record)
            if target is None:
                document[key] = None
                continue
            object_name = PREFIXES[target.id[:3]]
            nested: dict[str, Any] = {
                "attributes": {
                    # Polymorphic lookups (Who, What, Parent) render as the "Name" object.
                    "type": "Name" if polymorphic else object_name,
                    "url": f"/services/data/v{version}/sobjects/{object_name}/{target.id}",
                }
            }
            _fill(nested, target, children, version)
            document[key] = nested
        else:
            document[key] = node(record)


def _address(parts: list[Any]) -> dict[str, Any] | None:
    # sobject_get_account.json: compound address objects list their keys alphabetically.
    street, city, state, postal_code, country = parts
    return {
        "city": city,
        "country": country,
        "countryCode": None,
        "geocodeAccuracy": None,
        "latitude": None,
        "longitude": None,
        "postalCode": postal_code,
        "state": state,
        "stateCode": None,
        "street": street,
    }


# -- derived fields --------------------------------------------------------------------------


def derive(object_name: str, values: dict[str, Any], changes: dict | None, now: str) -> None:
    """Formula-like and defaulted fields Salesforce maintains itself. ``changes`` is the body
    of an update (None on create)."""
    changed = values if changes is None else changes
    if object_name in ("Contact", "Lead", "User"):
        values["Name"] = " ".join(p for p in (values.get("FirstName"), values.get("LastName")) if p)
    if object_name == "Opportunity":
        info = STAGE_INFO.get(values.get("StageName"))
        if info is not None:
            probability, forecast, closed, won = info
            # A new stage brings its default probability unless the write sets one too.
            if values.get("Probability") is None or (
                "StageName" in changed and "Probability" not in changed
            ):
                values["Probability"] = probability
            values.update(IsClosed=closed, IsWon=won, ForecastCategoryName=forecast)
    elif object_name == "Task":
        values["Status"] = values.get("Status") or "Not Started"
        values["Priority"] = values.get("Priority") or "Normal"
        values["TaskSubtype"] = values.get("TaskSubtype") or "Task"
        closed = values["Status"] == "Completed"
        values["IsClosed"] = closed
        values["IsHighPriority"] = values["Priority"] == "High"
        if not closed:
            values["CompletedDateTime"] = None
        elif values.get("CompletedDateTime") is None:
            values["CompletedDateTime"] = now
    elif object_name == "Event":
        _derive_event(values, changed)
    elif object_name == "Lead":
        values["Status"] = values.get("Status") or "Open - Not Contacted"


def _derive_event(values: dict[str, Any], changed: dict) -> None:
    """StartDateTime/ActivityDateTime/ActivityDate agree; EndDateTime = start + duration."""
    if "ActivityDateTime" in changed and "StartDateTime" not in changed:
        values["StartDateTime"] = values["ActivityDateTime"]
    start = values.get("StartDateTime")
    if start is None:
        return
    values["ActivityDateTime"] = start
    values["ActivityDate"] = start[:10]
    duration, end = values.get("DurationInMinutes"), values.get("EndDateTime")
    if end is not None and ("EndDateTime" in changed or duration is None):
        values["DurationInMinutes"] = int((datetime_to_epoch(end) - datetime_to_epoch(start)) // 60)
    elif duration is not None:
        values["EndDateTime"] = format_datetime(datetime_to_epoch(start) + duration * 60)
