"""In-memory HubSpot records: ordered by id and indexed for O(log n) pagination.

Speed matters (the engine benchmark pulls 100,000 contacts at >= 30,000 records/s end to end):
active ids live in a sorted list so a page is a bisect plus a slice. ``version`` counts writes
so callers can cache rendered pages and search results and know when they went stale.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, insort
from collections.abc import Iterable

from sandbox.hubspot.schema import (
    PRIMARY_ASSOCIATION_TYPES,
    SCHEMAS,
    ObjectSchema,
    association_label,
)


class Record:
    __slots__ = ("archived_at", "created_at", "id", "id_str", "properties", "updated_at")

    def __init__(
        self,
        record_id: int,
        id_str: str,
        properties: dict[str, str],
        created_at: str,
        updated_at: str,
    ) -> None:
        self.id = record_id
        self.id_str = id_str
        self.properties = properties  # only non-null values are stored
        self.created_at = created_at
        self.updated_at = updated_at
        self.archived_at: str | None = None

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


class ObjectTable:
    """One object type: records by id plus sorted id lists for active and archived records."""

    def __init__(self, schema: ObjectSchema, first_id: int) -> None:
        self.schema = schema
        self.records: dict[int, Record] = {}
        self.active: list[int] = []
        self.archived: list[int] = []
        self.next_id = first_id

    def page(
        self, after_id: int | None, limit: int, archived: bool
    ) -> tuple[list[Record], int | None]:
        """Up to ``limit`` records with id >= after_id, and the id the next page starts at."""
        ids = self.archived if archived else self.active
        start = bisect_left(ids, after_id) if after_id is not None else 0
        chunk = ids[start : start + limit + 1]
        next_id = chunk[limit] if len(chunk) > limit else None
        records = self.records
        return [records[i] for i in chunk[:limit]], next_id


# Record ids start high like HubSpot's and differ per type, so mixing them up shows.
# How many links of one type a list or get names under `associations` before it pages them
# (CONTRACTS 1.3: "may also carry paging"; the number is UNCONFIRMED: our choice).
LISTED_LINKS = 100

CustomLabel = tuple[int, str, str]  # (association type id, type name, label)

FIRST_IDS = {
    "contacts": 70_000_000_001,
    "companies": 40_000_000_001,
    "deals": 90_000_000_001,
    "tasks": 50_000_000_001,
    "calls": 60_000_000_001,
    "notes": 80_000_000_001,
    "meetings": 30_000_000_001,
}


class Store:
    """All records plus the association graph and the contact email index."""

    def __init__(self) -> None:
        self.tables = {
            name: ObjectTable(schema, FIRST_IDS[name]) for name, schema in SCHEMAS.items()
        }
        # (from type, to type) -> from id -> to ids; both directions are stored.
        self._links: dict[tuple[str, str], dict[int, list[int]]] = {}
        # (from type, to type) -> from id -> the one linked id that is its "Primary" (deals ->
        # companies; a contact's primary company is its associatedcompanyid property).
        self._primary: dict[tuple[str, str], dict[int, int]] = {}
        # (from type, to type) -> (from id, to id) -> the link's custom labels, as
        # (type id, type name, label): an account's own association labels (USER_DEFINED).
        self._labels: dict[tuple[str, str], dict[tuple[int, int], list[CustomLabel]]] = {}
        self._emails: dict[str, int] = {}  # lower-cased email -> active contact id
        self.version = 0  # bumped on every write; invalidates cached pages and searches
        self.lock = threading.RLock()

    # -- reads -----------------------------------------------------------------------------

    def record(
        self, object_type: str, record_id: int | str, *, archived: bool = False
    ) -> Record | None:
        try:
            found = self.tables[object_type].records.get(int(record_id))
        except ValueError:
            return None
        if found is None or found.archived != archived:
            return None
        return found

    def contact_by_email(self, email: str) -> Record | None:
        contact_id = self._emails.get(email.lower())
        return self.tables["contacts"].records[contact_id] if contact_id is not None else None

    def associated_ids(self, from_type: str, from_id: int, to_type: str) -> list[int]:
        return self._links.get((from_type, to_type), {}).get(from_id, [])

    def association_page(
        self, from_type: str, from_id: int, to_type: str, after_id: int | None, limit: int
    ) -> tuple[list[int], int | None]:
        """Up to ``limit`` linked ids >= after_id (ascending), and the id the next page
        starts at: the same links list/get show under ``associations``."""
        linked = self.associated_ids(from_type, from_id, to_type)
        start = bisect_left(linked, after_id) if after_id is not None else 0
        chunk = linked[start : start + limit + 1]
        return chunk[:limit], chunk[limit] if len(chunk) > limit else None

    def custom_labels(self, from_type: str, from_id: int, to_type: str,
                      to_id: int) -> list[CustomLabel]:
        return self._labels.get((from_type, to_type), {}).get((from_id, to_id), [])

    def primary_id(self, from_type: str, from_id: int, to_type: str) -> int | None:
        """The linked record marked "Primary" (HubSpot allows one), if any."""
        if (from_type, to_type) == ("contacts", "companies"):
            # What HubSpot does too: the primary company is the one in associatedcompanyid.
            record = self.tables["contacts"].records.get(from_id)
            value = record.properties.get("associatedcompanyid") if record else None
            return int(value) if value and value.isdigit() else None
        return self._primary.get((from_type, to_type), {}).get(from_id)

    def get(self, object_type: str, record_id: int | str, *, archived: bool = False) -> dict | None:
        """Test helper: the record as the API shows it, with every set property."""
        found = self.record(object_type, record_id, archived=archived)
        if found is None:
            return None
        return self.document(object_type, found, tuple(sorted(found.properties)))

    def count(self, object_type: str, *, archived: bool = False) -> int:
        table = self.tables[object_type]
        return len(table.archived if archived else table.active)

    # -- rendering -------------------------------------------------------------------------

    def documents(
        self,
        object_type: str,
        records: list[Record],
        selection: tuple[str, ...],
        association_types: tuple[str, ...] = (),
    ) -> list[dict]:
        """SimplePublicObjects (CONTRACTS 1.3): the selected properties, null when unset.

        Callers encode a whole page in one orjson call; the loop is the hot path of a sync."""
        url_prefix = self.tables[object_type].schema.url_prefix
        documents = []
        for record in records:
            values = record.properties
            document = {
                "id": record.id_str,
                "properties": {name: values.get(name) for name in selection},
                "createdAt": record.created_at,
                "updatedAt": record.updated_at,
                "archived": record.archived_at is not None,
            }
            if record.archived_at is not None:
                document["archivedAt"] = record.archived_at
            document["url"] = url_prefix + record.id_str
            if association_types:
                associations = self._associations(object_type, record.id, association_types)
                if associations:  # omitted when there are none (tasks fixture)
                    document["associations"] = associations
            documents.append(document)
        return documents

    def document(
        self,
        object_type: str,
        record: Record,
        selection: tuple[str, ...],
        association_types: tuple[str, ...] = (),
    ) -> dict:
        return self.documents(object_type, [record], selection, association_types)[0]

    def _associations(
        self, object_type: str, record_id: int, association_types: tuple[str, ...]
    ) -> dict:
        associations = {}
        for to_type in association_types:
            to_ids = self.associated_ids(object_type, record_id, to_type)
            if to_ids:
                label = association_label(object_type, to_type)
                listed = to_ids[:LISTED_LINKS]
                if (object_type, to_type) in PRIMARY_ASSOCIATION_TYPES:
                    # A pair with a "Primary" type lists every link as its unlabelled type,
                    # and the primary once more under the primary type's name (3P: HubSpot
                    # community thread 658333; Airbyte issue 30292). Which comes first is
                    # UNCONFIRMED: the primary, as in v4 reads.
                    primary = self.primary_id(object_type, record_id, to_type)
                    results = [{"id": str(to_id), "type": f"{label}_unlabeled"}
                               for to_id in listed]
                    if primary in listed:
                        results.insert(listed.index(primary), {"id": str(primary), "type": label})
                else:
                    results = [{"id": str(to_id), "type": label} for to_id in listed]
                results += [{"id": str(to_id), "type": name} for to_id in listed
                            for _, name, _ in self.custom_labels(object_type, record_id,
                                                                 to_type, to_id)]
                associations[to_type] = {"results": results}
                if len(to_ids) > LISTED_LINKS:
                    after = str(to_ids[LISTED_LINKS])
                    associations[to_type]["paging"] = {"next": {"after": after, "link": (
                        f"/crm/v4/objects/{object_type}/{record_id}/associations/{to_type}"
                        f"?after={after}")}}
        return associations

    # -- writes ----------------------------------------------------------------------------

    def add(self, object_type: str, properties: dict[str, str | None], created_at: str) -> Record:
        """Insert a record under the next id (higher than any existing one)."""
        table = self.tables[object_type]
        values = {name: value for name, value in properties.items() if value is not None}
        with self.lock:
            record_id = table.next_id
            self.load(object_type, [(record_id, values, created_at, created_at)])
            return table.records[record_id]

    def load(self, object_type: str, rows: Iterable[tuple[int, dict[str, str], str, str]]) -> None:
        """Bulk insert (record id, non-null values, createdAt, updatedAt) rows in increasing id
        order. Seeding 100,000 contacts goes through here, so the loop is kept lean."""
        table = self.tables[object_type]
        records, active, emails = table.records, table.active, self._emails
        created_name = table.schema.created_property
        modified_name = table.schema.modified_property
        with self.lock:
            last_id = active[-1] if active else 0
            for record_id, values, created_at, updated_at in rows:
                if record_id <= last_id:
                    raise ValueError(f"{object_type} ids must increase: {record_id} <= {last_id}")
                last_id = record_id
                id_str = str(record_id)
                values["hs_object_id"] = id_str
                values[created_name] = created_at
                values[modified_name] = updated_at
                records[record_id] = Record(record_id, id_str, values, created_at, updated_at)
                active.append(record_id)
                email = values.get("email")
                if email:
                    emails[email.lower()] = record_id
            table.next_id = max(table.next_id, last_id + 1)
            self.version += 1

    def update(
        self, object_type: str, record: Record, properties: dict[str, str | None], now: str
    ) -> None:
        schema = self.tables[object_type].schema
        with self.lock:
            values = record.properties
            if object_type == "contacts" and "email" in properties:
                old_email = values.get("email")
                if old_email:
                    self._emails.pop(old_email.lower(), None)
                if properties["email"]:
                    self._emails[properties["email"].lower()] = record.id
            for name, value in properties.items():
                if value is None:
                    values.pop(name, None)
                else:
                    values[name] = value
            values[schema.modified_property] = now
            record.updated_at = now
            self.version += 1

    def archive(self, object_type: str, record: Record, now: str) -> None:
        table = self.tables[object_type]
        with self.lock:
            table.active.pop(bisect_left(table.active, record.id))
            insort(table.archived, record.id)
            record.archived_at = now
            email = record.properties.get("email") if object_type == "contacts" else None
            if email and self._emails.get(email.lower()) == record.id:
                del self._emails[email.lower()]
            self.version += 1

    def load_links(
        self,
        from_type: str,
        to_type: str,
        pairs: Iterable[tuple[int, int]],
        *,
        primary: bool = False,
    ) -> None:
        """Bulk association of seed records (pairs must not repeat). ``primary``: each pair is
        also its from record's primary association (one pair per from id)."""
        forward = self._links.setdefault((from_type, to_type), {})
        backward = self._links.setdefault((to_type, from_type), {})
        primaries = self._primary.setdefault((from_type, to_type), {})
        with self.lock:
            for from_id, to_id in pairs:
                forward.setdefault(from_id, []).append(to_id)
                backward.setdefault(to_id, []).append(from_id)
                if primary:
                    primaries[from_id] = to_id
            for linked in (*forward.values(), *backward.values()):
                linked.sort()
            self.version += 1

    def associate(self, from_type: str, from_id: int, to_type: str, to_id: int) -> None:
        """Link two records in both directions (HubSpot associations are symmetric)."""
        with self.lock:
            self._link(from_type, from_id, to_type, to_id)
            self._link(to_type, to_id, from_type, from_id)
            self.version += 1

    def label_link(self, from_type: str, from_id: int, to_type: str, to_id: int,
                   label: str) -> None:
        """Give an existing link one of the account's own labels, in its from -> to direction.
        Choice (UNCONFIRMED): the type id is 1000 + the label's place among the pair's labels,
        and its name (what lists show as the link's `type`) the label in snake case."""
        with self.lock:
            pair = self._labels.setdefault((from_type, to_type), {})
            known = {name: type_id for links in pair.values() for type_id, name, _ in links}
            name = "_".join(label.lower().split())
            type_id = known.get(name, 1000 + len(known))
            pair.setdefault((from_id, to_id), []).append((type_id, name, label))
            self.version += 1

    def set_primary(self, from_type: str, from_id: int, to_type: str, to_id: int) -> None:
        """Mark an existing link as the from record's primary one (replacing any other)."""
        with self.lock:
            self._primary.setdefault((from_type, to_type), {})[from_id] = to_id
            self.version += 1

    def _link(self, a_type: str, a_id: int, b_type: str, b_id: int) -> None:
        by_id = self._links.get((a_type, b_type))
        if by_id is None:
            by_id = self._links[(a_type, b_type)] = {}
        linked = by_id.get(a_id)
        if linked is None:
            by_id[a_id] = [b_id]
        else:
            position = bisect_left(linked, b_id)  # sorted; a company has many contacts
            if position < len(linked) and linked[position] == b_id:
                return
            linked.insert(position, b_id)

    def active_records(self, object_type: str) -> Iterable[Record]:
        table = self.tables[object_type]
        return (table.records[record_id] for record_id in table.active)
