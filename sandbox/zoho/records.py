"""Zoho CRM writes (CONTRACTS 4.4): create, update, upsert and delete, answered per record.

Every record of a ``{"data":[...]}`` batch gets its own ``{code, details, message, status}``
entry; ``batch_status`` turns them into 201/200 (all succeeded), 207 (mixed) or 400 (all failed,
as in fixtures/zoho/error_400_mandatory_not_found_in_data.json).

Validation order per record (choice): mandatory fields, then each given field's type and
lookups, then unique fields. Unknown field names and read-only fields are ignored (choice;
Zoho ignores keys it does not know). Lookups take ``{"id"}``; ``{"name"}`` alone only where the
module allows it (Account_Name), which links the account of that name or creates it (choice,
UNCONFIRMED: CONTRACTS 4.4 only says such a lookup "was accepted").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sandbox.kit.core import Clock
from sandbox.zoho import errors as errors
from sandbox.zoho.schema import (
    API_USER,
    BOOLEAN,
    CURRENCY,
    DATE,
    DATETIME,
    DOUBLE,
    EMAIL,
    INTEGER,
    LOOKUP,
    MAX_LENGTH,
    MODULE_NAME,
    OUTBOUND_CALL_STATUSES,
    OWNER,
    PHONE,
    PIPELINE,
    STAGE_PROBABILITY,
    TEXTUAL,
    USERS_BY_ID,
    Field,
    Module,
    actor_ref,
    owner_ref,
)
from sandbox.zoho.store import Record, Store, Table
from sandbox.zoho.time import OrgTime, is_date, parse_datetime

MAX_RECORDS = 100  # CONTRACTS 4.4: at most 100 records per write
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DURATION = re.compile(r"^(\d{1,4}):([0-5]\d)$")  # Call_Duration "mm:ss"
# Creation defaults seen in recordings: a task created with only a Subject comes back
# "Not Started" / "Normal" (fixtures/zoho/v2_tasks_list_page.json).
CREATE_DEFAULTS = {
    "Tasks": {"Status": "Not Started", "Priority": "Normal"},
    "Deals": {"Pipeline": PIPELINE},
}


class _RecordError(Exception):
    def __init__(self, entry: dict[str, Any]) -> None:
        super().__init__(entry["code"])
        self.entry = entry


@dataclass
class _NewAccount:
    """Account_Name given by name only, naming no existing account: created on commit."""

    name: str


@dataclass
class Outcome:
    entry: dict[str, Any]
    ok: bool


def batch_status(outcomes: list[Outcome], success: int) -> int:
    if all(o.ok for o in outcomes):
        return success
    return 207 if any(o.ok for o in outcomes) else 400


def records_of(body: object) -> list[Any]:
    """The ``data`` array of a write body, or a request-level ZohoError."""
    data = body.get("data") if isinstance(body, dict) else None
    if data is None:
        raise errors.body_error(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            {"api_name": "data", "json_path": "$.data"},
        )
    if not isinstance(data, list) or not data:
        raise errors.body_error(
            "INVALID_DATA",
            "invalid data",
            {"expected_data_type": "jsonarray", "api_name": "data", "json_path": "$.data"},
        )
    if len(data) > MAX_RECORDS:
        # crm-oas example response-400-limitexceedederror (wrapped in data[]).
        raise _BatchTooLarge()
    return data


class _BatchTooLarge(errors.ZohoError):
    def __init__(self) -> None:
        super().__init__(
            400, "LIMIT_EXCEEDED", "count of records in your request exceeds the limit"
        )

    def body(self) -> dict[str, Any]:
        entry = errors.record_error(
            self.code, self.message, {"maximum_length": MAX_RECORDS, "api_name": "data"}
        )
        return {"data": [entry]}


class Writer:
    """Validates and applies writes against the store, as the OAuth app's user."""

    def __init__(self, store: Store, org: OrgTime, clock: Clock) -> None:
        self.store = store
        self.org = org
        self.clock = clock
        self.user = API_USER
        # Set by the test-control hooks: writes are stamped with this time, not the clock.
        self.fixed_now: int | None = None

    # -- operations --------------------------------------------------------------------------

    def create(self, module: str, items: list[Any]) -> list[Outcome]:
        table = self.store.table(module)
        with self.store.lock:
            return [self._create_one(table, item, i) for i, item in enumerate(items)]

    def update(self, module: str, items: list[Any], record_id: str | None = None) -> list[Outcome]:
        """PUT /{module}/{id} (``record_id`` given) or bulk PUT with an id in each record."""
        table = self.store.table(module)
        outcomes = []
        with self.store.lock:
            for i, item in enumerate(items):
                try:
                    record = self._target(table, item, i, record_id)
                    outcomes.append(self._update_one(table, record, item, i))
                except _RecordError as problem:
                    outcomes.append(Outcome(problem.entry, False))
        return outcomes

    def upsert(
        self, module: str, items: list[Any], check_fields: list[str] | None
    ) -> list[Outcome]:
        """POST /{module}/upsert: update the record a duplicate-check field finds, else insert."""
        table = self.store.table(module)
        fields = tuple(check_fields or table.module.duplicate_check)
        outcomes = []
        with self.store.lock:
            for i, item in enumerate(items):
                existing, matched = self._duplicate_of(table, item, fields)
                if existing is None:
                    outcome = self._create_one(table, item, i)
                    present = next(
                        (f for f in fields if isinstance(item, dict) and item.get(f)), None
                    )
                    outcome.entry = _upsert_entry(outcome.entry, "insert", present)
                else:
                    try:
                        outcome = self._update_one(table, existing, item, i)
                    except _RecordError as problem:
                        outcome = Outcome(problem.entry, False)
                    outcome.entry = _upsert_entry(outcome.entry, "update", matched)
                outcomes.append(outcome)
        return outcomes

    def delete(self, module: str, record_ids: list[str]) -> list[Outcome]:
        table = self.store.table(module)
        outcomes = []
        now = self._now()
        with self.store.lock:
            for record_id in record_ids:
                record = self.store.record(module, record_id)
                if record is None:
                    # crm-oas example response-207-mixedresults of deleteRecords.
                    entry = errors.record_error(
                        "INVALID_DATA", "record not deleted", {"id": record_id}
                    )
                    outcomes.append(Outcome(entry, False))
                    continue
                self.store.delete(
                    table.module.api_name, record, self._bin_entry(table, record, now), now
                )
                outcomes.append(
                    Outcome(
                        {
                            "code": "SUCCESS",
                            "details": {"id": record.doc["id"]},
                            "message": "record deleted",
                            "status": "success",
                        },
                        True,
                    )
                )
        return outcomes

    # -- single records ----------------------------------------------------------------------

    def _create_one(self, table: Table, item: Any, index: int) -> Outcome:
        try:
            changes = self._validate(table, item, index, None)
        except _RecordError as problem:
            return Outcome(problem.entry, False)
        now = self._now()
        stamp = self.org.format(now)
        actor = owner_ref(self.user)
        doc = {**CREATE_DEFAULTS.get(table.module.api_name, {}), "Owner": actor}
        doc.update(self._resolve(changes))
        _derive(table.module, doc, doc, self.org, now)
        doc = {name: value for name, value in doc.items() if value is not None}
        doc.update(
            {
                "Created_Time": stamp,
                "Modified_Time": stamp,
                "Created_By": actor,
                "Modified_By": actor,
            }
        )
        record = self.store.insert(table.module.api_name, doc, now)
        return Outcome(self._success(record, "record added"), True)

    def _update_one(
        self,
        table: Table,
        record: Record,
        item: Any,
        index: int,
    ) -> Outcome:
        changes = self._validate(table, item, index, record)
        now = self._now()
        changes = self._resolve(changes)
        merged = {**record.doc, **changes}
        _derive(table.module, merged, changes, self.org, now)
        changes["Modified_Time"] = self.org.format(now)
        changes["Modified_By"] = owner_ref(self.user)
        self.store.update(table.module.api_name, record, changes, now)
        return Outcome(self._success(record, "record updated"), True)

    def _target(self, table: Table, item: Any, index: int, record_id: str | None) -> Record:
        if record_id is None:
            if not isinstance(item, dict) or item.get("id") in (None, ""):
                raise _RecordError(errors.mandatory_not_found("id", f"$.data[{index}].id"))
            record_id = str(item["id"])
        record = self.store.record(table.module.api_name, record_id)
        if record is None:
            raise _RecordError(
                errors.record_error(
                    "INVALID_DATA",
                    "the id given seems to be invalid",
                    {"api_name": "id", "json_path": f"$.data[{index}].id"},
                )
            )
        return record

    def _duplicate_of(
        self, table: Table, item: Any, fields: tuple[str, ...]
    ) -> tuple[Record | None, str | None]:
        if not isinstance(item, dict):
            return None, None
        for field in fields:
            value = item.get(field)
            if not isinstance(value, str) or not value:
                continue
            found_id = self.store.find_unique(table.module.api_name, field, value)
            if found_id is not None:
                return table.records[found_id], field
            if field not in table.unique:
                wanted = value.lower()
                for record_id in table.ids:
                    current = table.records[record_id].doc.get(field)
                    if isinstance(current, str) and current.lower() == wanted:
                        return table.records[record_id], field
        return None, None

    # -- validation --------------------------------------------------------------------------

    def _validate(
        self,
        table: Table,
        item: Any,
        index: int,
        existing: Record | None,
    ) -> dict[str, Any]:
        """The changes a record asks for, in stored form; raises _RecordError."""
        module = table.module
        path = f"$.data[{index}]"
        if not isinstance(item, dict):
            raise _RecordError(errors.invalid_data("data", path, expected_data_type="jsonobject"))
        item = _normalise_note(item) if module.api_name == "Notes" else item
        for name in module.mandatory:
            value = item.get(name) if (existing is None or name in item) else True
            if value is None or value == "" or value == {}:
                raise _RecordError(errors.mandatory_not_found(name, f"{path}.{name}"))
        changes: dict[str, Any] = {}
        for name, value in item.items():
            field = module.fields.get(name)
            if field is None or field.read_only:
                continue
            changes[name] = self._convert(module, field, value, f"{path}.{name}")
        if module.api_name == "Calls" and "Outbound_Call_Status" in item:
            status = item["Outbound_Call_Status"]
            if status not in OUTBOUND_CALL_STATUSES:
                raise _RecordError(
                    errors.invalid_data("Outbound_Call_Status", f"{path}.Outbound_Call_Status")
                )
            changes["Call_Status"] = status
        self._check_links(module, changes, existing, path)
        self._check_unique(table, changes, existing, path)
        return changes

    def _convert(self, module: Module, field: Field, value: Any, path: str) -> Any:
        name, kind = field.api_name, field.kind
        if value is None:
            if kind == OWNER:
                raise _RecordError(errors.invalid_data(name, path, expected_data_type=kind))
            return None
        if kind in TEXTUAL:
            if kind == PHONE and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                raise _RecordError(errors.invalid_data(name, path, expected_data_type=kind))
            if len(value) > MAX_LENGTH[kind]:
                raise _RecordError(errors.invalid_data(name, path, maximum_length=MAX_LENGTH[kind]))
            if kind == EMAIL and not _EMAIL.match(value):
                raise _RecordError(errors.invalid_data(name, path, expected_data_type=kind))
            if field.options and value not in field.options:
                raise _RecordError(errors.invalid_data(name, path))
            if name == "Call_Duration" and not _DURATION.match(value):
                raise _RecordError(errors.invalid_data(name, path))
            return value
        if kind == INTEGER:
            number = _number(value)
            if number is None or number != int(number):
                raise _RecordError(errors.invalid_data(name, path, expected_data_type=kind))
            return int(number)
        if kind in (CURRENCY, DOUBLE):
            number = _number(value)
            if number is None:
                raise _RecordError(errors.invalid_data(name, path, expected_data_type=kind))
            return number
        if kind == DATE:
            if not is_date(value):
                raise _RecordError(errors.invalid_data(name, path, expected_data_type=kind))
            return value
        if kind == DATETIME:
            epoch = parse_datetime(value)
            if epoch is None:
                raise _RecordError(errors.invalid_data(name, path, expected_data_type=kind))
            return self.org.format(epoch)  # stored and shown in the org's offset
        if kind == BOOLEAN:
            if not isinstance(value, bool):
                raise _RecordError(errors.invalid_data(name, path, expected_data_type=kind))
            return value
        if kind == OWNER:
            user = USERS_BY_ID.get(str(value.get("id"))) if isinstance(value, dict) else None
            if user is None:
                raise _RecordError(errors.invalid_data(name, path, expected_data_type=kind))
            return owner_ref(user)
        if kind == MODULE_NAME:
            if not isinstance(value, str):
                raise _RecordError(errors.invalid_data(name, path, expected_data_type="text"))
            return value
        if kind == LOOKUP:
            return value  # resolved in _check_links, which knows $se_module
        return value

    def _check_links(
        self,
        module: Module,
        changes: dict[str, Any],
        existing: Record | None,
        path: str,
    ) -> None:
        """Resolve lookups to {name, id}. What_Id / Parent_Id point into the module that
        $se_module names (CONTRACTS 4.3), given with the write or kept from the record."""
        allowed = {
            target.lower(): target
            for field in module.fields.values()
            if field.kind == LOOKUP and len(field.targets) > 1
            for target in field.targets
        }
        if changes.get("$se_module") is not None:
            target = allowed.get(str(changes["$se_module"]).lower())
            if target is None:
                raise _RecordError(errors.invalid_data("$se_module", f"{path}.$se_module"))
            changes["$se_module"] = target
        se_module = changes.get("$se_module")
        if se_module is None and existing is not None:
            se_module = existing.doc.get("$se_module")
        for name, field in module.fields.items():
            if field.kind != LOOKUP or name not in changes:
                continue
            if changes[name] is None:
                if len(field.targets) > 1 and "$se_module" not in changes:
                    changes["$se_module"] = None  # clearing What_Id clears its module
                continue
            if len(field.targets) > 1:
                if not se_module:
                    raise _RecordError(
                        errors.mandatory_not_found("$se_module", f"{path}.$se_module")
                    )
                target = se_module
            else:
                target = field.targets[0]
            changes[name] = self._lookup(module, name, target, changes[name], f"{path}.{name}")

    def _lookup(self, module: Module, name: str, target: str, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise _RecordError(errors.invalid_data(name, path, expected_data_type="jsonobject"))
        raw_id = value.get("id")
        if raw_id in (None, ""):
            label = value.get("name")
            if isinstance(label, str) and label and name in module.name_only_lookups:
                found = self.store.find_by_display_name(target, label)
                if found is None:
                    return _NewAccount(label)
                return self._reference(target, found)
            # CONTRACTS 4.4: Contact_Name without an id -> MANDATORY_NOT_FOUND at ...id
            raise _RecordError(errors.mandatory_not_found("id", f"{path}.id"))
        found = self.store.record(target, str(raw_id))
        if found is None:
            raise _RecordError(errors.invalid_related_id(name, f"{path}.id"))
        return self._reference(target, found)

    def _reference(self, module: str, record: Record) -> dict[str, Any]:
        table = self.store.table(module)
        return {"name": record.doc.get(table.module.display_field), "id": record.doc["id"]}

    def _check_unique(
        self, table: Table, changes: dict[str, Any], existing: Record | None, path: str
    ) -> None:
        """DUPLICATE_DATA when a unique field's value belongs to another record. Records of a
        batch are written one by one, so an earlier record of the same batch counts too."""
        own_id = existing.id if existing is not None else None
        for field in table.module.unique:
            value = changes.get(field)
            if not value:
                continue
            holder = self.store.find_unique(table.module.api_name, field, value)
            if holder is not None and holder != own_id:
                record = table.records[holder]
                raise _RecordError(
                    errors.duplicate_data(
                        field,
                        f"{path}.{field}",
                        record.doc["id"],
                        table.module.api_name,
                        record.doc["Owner"],
                    )
                )

    # -- helpers -----------------------------------------------------------------------------

    def _resolve(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Create the accounts that name-only Account_Name lookups asked for."""
        for name, value in list(changes.items()):
            if isinstance(value, _NewAccount):
                existing = self.store.find_by_display_name("Accounts", value.name)
                if existing is None:
                    now = self._now()
                    stamp, actor = self.org.format(now), owner_ref(self.user)
                    existing = self.store.insert(
                        "Accounts",
                        {
                            "Account_Name": value.name,
                            "Owner": actor,
                            "Created_Time": stamp,
                            "Modified_Time": stamp,
                            "Created_By": actor,
                            "Modified_By": actor,
                        },
                        now,
                    )
                changes[name] = self._reference("Accounts", existing)
        return changes

    def _success(self, record: Record, message: str) -> dict[str, Any]:
        # fixtures/zoho/v2_contact_create_response.json (details key order included).
        doc = record.doc
        return {
            "code": "SUCCESS",
            "details": {
                "Modified_Time": doc["Modified_Time"],
                "Modified_By": _actor(doc["Modified_By"]),
                "Created_Time": doc["Created_Time"],
                "id": doc["id"],
                "Created_By": _actor(doc["Created_By"]),
            },
            "message": message,
            "status": "success",
        }

    def _bin_entry(self, table: Table, record: Record, now: int) -> dict[str, Any]:
        # crm-oas getDeletedRecords example.
        return {
            "deleted_by": actor_ref(self.user),
            "id": record.doc["id"],
            "display_name": record.doc.get(table.module.display_field),
            "type": "recycle",
            "created_by": _actor(record.doc.get("Created_By")),
            "deleted_time": self.org.format(now),
        }

    def _now(self) -> int:
        return self.fixed_now if self.fixed_now is not None else int(self.clock.now())


def _actor(user: dict | None) -> dict | None:
    return {"name": user["name"], "id": user["id"]} if user else None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if number.is_integer() and "." not in value else number
    return None


def _normalise_note(item: dict[str, Any]) -> dict[str, Any]:
    """Notes: the recorded v2 form (``Parent_Id`` as a string + ``se_module``), the
    ``{"id"}`` + ``$se_module`` form, and the v3+ docs' ``{"module":{"api_name"},"id"}``
    form (UNCONFIRMED) all become ``Parent_Id: {"id"}`` + ``$se_module``."""
    item = dict(item)
    if "se_module" in item and "$se_module" not in item:
        item["$se_module"] = item.pop("se_module")
    parent = item.get("Parent_Id")
    if isinstance(parent, str | int) and not isinstance(parent, bool) and parent != "":
        item["Parent_Id"] = {"id": str(parent)}
    elif isinstance(parent, dict) and isinstance(parent.get("module"), dict):
        item.setdefault("$se_module", parent["module"].get("api_name"))
        item["Parent_Id"] = {"id": parent.get("id")}
    return item


def _derive(
    module: Module, merged: dict[str, Any], out: dict[str, Any], org: OrgTime, now: int
) -> None:
    """Computed fields, written into ``out`` from the record as it will be (``merged``)."""
    name = module.api_name
    if name == "Contacts" and ("First_Name" in out or "Last_Name" in out):
        first, last = merged.get("First_Name"), merged.get("Last_Name") or ""
        out["Full_Name"] = f"{first} {last}".strip() if first else last
    elif name == "Deals" and ({"Stage", "Amount", "Probability"} & set(out)):
        if "Stage" in out and "Probability" not in out and merged.get("Stage"):
            out["Probability"] = STAGE_PROBABILITY.get(merged["Stage"])
            merged["Probability"] = out["Probability"]
        amount, probability = merged.get("Amount"), merged.get("Probability")
        if amount is not None and probability is not None:
            revenue = amount * probability / 100
            out["Expected_Revenue"] = int(revenue) if float(revenue).is_integer() else revenue
    elif name == "Tasks" and "Status" in out:
        out["Closed_Time"] = org.format(now) if merged.get("Status") == "Completed" else None
    elif name == "Calls" and (
        {"Call_Duration", "Call_Type", "Call_Start_Time", "Call_Status"} & set(out)
    ):
        duration = _DURATION.match(merged.get("Call_Duration") or "")
        if "Call_Duration" in out:
            out["Call_Duration_in_seconds"] = (
                int(duration.group(1)) * 60 + int(duration.group(2)) if duration else None
            )
        if "Call_Status" not in out or out.get("Call_Status") is None:
            out["Call_Status"] = _call_status(merged, now)


def _call_status(doc: dict[str, Any], now: int) -> str | None:
    # fixtures/zoho/v2_calls_list_page.json: Inbound -> "Received"; an Outbound call in the
    # future -> "Scheduled", in the past -> "Completed".
    call_type = doc.get("Call_Type")
    if call_type == "Inbound":
        return "Received"
    if call_type == "Missed":
        return "Missed"
    if call_type == "Outbound":
        start = parse_datetime(doc.get("Call_Start_Time"))
        return "Scheduled" if start is not None and start > now else "Completed"
    return doc.get("Call_Status")


def _upsert_entry(entry: dict[str, Any], action: str, field: str | None) -> dict[str, Any]:
    """fixtures/zoho/v2_upsert_response.json: code, duplicate_field, action, details, ..."""
    if entry.get("status") != "success":
        return entry
    return {
        "code": entry["code"],
        "duplicate_field": field,
        "action": action,
        "details": entry["details"],
        "message": entry["message"],
        "status": entry["status"],
    }
