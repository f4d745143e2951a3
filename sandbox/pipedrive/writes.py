"""Write bodies -> stored-record changes, with Pipedrive's validation (CONTRACTS 3.4).

v1 is lenient (numbers and booleans may come as strings, ``email``/``phone`` may be a string,
a list of strings or a list of objects, custom fields sit at the body root, unknown keys are
ignored). v2 is strict ("significantly stricter input validation", PD-DOC-V2): exact JSON types,
``emails``/``phones`` as objects, custom fields under ``custom_fields``, and - our choice where
the contract is silent - unknown top-level keys are a 400.

References to other records that do not exist (``org_id``, ``person_id``, ``deal_id``,
``stage_id``, ``owner_id``) are a 400 naming the record (choice: CONTRACTS 3.6 lists 400 for
validation and 404 for a missing path resource; a bad reference is the former).
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.pipedrive.errors import PipedriveError, bad_request
from sandbox.pipedrive.schema import (
    ACTIVITY_TYPE_NAMES,
    CUSTOM_FIELDS,
    ENUM_FIELDS,
    FIRST_STAGE,
    LABEL_IDS,
    ME,
    SINGULAR,
    STAGE_PIPELINE,
    USERS_BY_ID,
    VISIBILITY,
)
from sandbox.pipedrive.store import Record, Store
from sandbox.pipedrive.times import is_date

HEX_KEY = re.compile(r"[0-9a-f]{40}")
HH_MM = re.compile(r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?")
DEAL_STATUSES = ("open", "won", "lost")

V2_FIELDS = {
    "persons": {
        "name", "owner_id", "org_id", "emails", "phones", "visible_to", "label_ids",
        "marketing_status", "custom_fields", "first_name", "last_name",
    },
    "organizations": {
        "name", "owner_id", "address", "website", "visible_to", "label_ids", "custom_fields",
    },
    "deals": {
        "title", "value", "currency", "person_id", "org_id", "stage_id", "pipeline_id",
        "status", "owner_id", "expected_close_date", "probability", "lost_reason",
        "visible_to", "label_ids", "custom_fields", "origin_id", "channel", "channel_id",
    },
    "activities": {
        "subject", "type", "owner_id", "deal_id", "lead_id", "person_id", "org_id", "due_date",
        "due_time", "duration", "busy", "done", "location", "participants", "note",
        "public_description", "priority",
    },
}  # fmt: skip


class Changes:
    """Turns one request body into changes for a record of ``kind``."""

    def __init__(self, store: Store, kind: str, version: int, body: dict, old: Record | None):
        self.store = store
        self.kind = kind
        self.version = version
        self.body = body
        self.old = old  # None when creating
        self.out: dict[str, Any] = {}

    # -- typed readers ---------------------------------------------------------------------

    def fail(self, field: str, problem: str) -> PipedriveError:
        if self.version == 2:
            return bad_request(f"Validation failed: {field}: {problem}")
        return bad_request(f"Invalid value for {field}: {problem}")

    def has(self, field: str) -> bool:
        return field in self.body

    def string(self, field: str, *, required: bool = False, nullable: bool = True) -> str | None:
        value = self.body.get(field)
        if value is None:
            if required or not nullable:
                raise self.fail(field, "is required" if required else "must not be null")
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and self.version == 1:
            value = str(value)
        if not isinstance(value, str):
            raise self.fail(field, "must be string")
        if required and not value.strip():
            raise self.fail(field, "must not be empty")
        return value

    def integer(self, field: str) -> int | None:
        value = self.body.get(field)
        if value is None:
            return None
        if self.version == 1 and isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, "must be integer")
        return value

    def number(self, field: str) -> float | int | None:
        value = self.body.get(field)
        if value is None:
            return None
        if self.version == 1 and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise self.fail(field, "must be number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, "must be number")
        return int(value) if float(value).is_integer() else value

    def boolean(self, field: str) -> bool | None:
        value = self.body.get(field)
        if value is None or isinstance(value, bool):
            return value
        if self.version == 1 and value in (0, 1, "0", "1", "true", "false"):
            return value in (1, "1", "true")
        raise self.fail(field, "must be boolean")

    def reference(self, field: str, kind: str) -> int | None:
        record_id = self.integer(field)
        if record_id is not None and self.store.record(kind, record_id) is None:
            raise bad_request(f"{SINGULAR[kind]} with id {record_id} not found")
        return record_id

    def user(self, field: str) -> int | None:
        user_id = self.integer(field)
        if user_id is not None and user_id not in USERS_BY_ID:
            raise bad_request(f"User with id {user_id} not found")
        return user_id

    # -- shared fields ---------------------------------------------------------------------

    def check_keys(self) -> None:
        if self.version == 2:
            unknown = sorted(set(self.body) - V2_FIELDS[self.kind])
            if unknown:
                raise bad_request(
                    f"Validation failed: must NOT have additional properties: {', '.join(unknown)}"
                )

    def owner(self, v1_name: str = "owner_id") -> None:
        name = "owner_id" if self.version == 2 else v1_name
        if self.has(name):
            owner_id = self.user(name)
            if owner_id is None:
                raise self.fail(name, "must not be null")
            self.out["owner_id"] = owner_id
        elif self.old is None:
            self.out["owner_id"] = ME["id"]  # the authorised user owns what it creates

    def links(self) -> None:
        """What an activity or note is attached to: person, org and deal ids (checked), lead."""
        for field, kind in (("person_id", "persons"), ("org_id", "organizations"),
                            ("deal_id", "deals")):  # fmt: skip
            if self.has(field):
                self.out[field] = self.reference(field, kind)
        if self.has("lead_id"):  # leads are not modelled: any id is accepted
            self.out["lead_id"] = self.string("lead_id")

    def visibility(self) -> None:
        if not self.has("visible_to"):
            return
        value = self.integer("visible_to")
        if value not in VISIBILITY:
            raise self.fail("visible_to", f"must be one of {', '.join(map(str, VISIBILITY))}")
        self.out["visible_to"] = value

    def labels(self) -> None:
        names = ["label_ids"] + (["label"] if self.version == 1 else [])
        for name in names:
            if not self.has(name):
                continue
            raw = self.body[name]
            values = raw if isinstance(raw, list) else ([] if raw is None else [raw])
            ids = []
            for value in values:
                if isinstance(value, str) and self.version == 1 and value.isdigit():
                    value = int(value)
                if isinstance(value, bool) or not isinstance(value, int):
                    raise self.fail(name, "must be a list of integers")
                if value not in LABEL_IDS.get(self.kind, ()):
                    raise self.fail(name, f"unknown label id {value}")
                ids.append(value)
            self.out["label_ids"] = ids

    def custom_fields(self) -> None:
        keys = CUSTOM_FIELDS[self.kind]
        if self.version == 2:
            if not self.has("custom_fields"):
                return
            given = self.body["custom_fields"]
            if not isinstance(given, dict):
                raise self.fail("custom_fields", "must be object")
            unknown = [key for key in given if key not in keys]
            if unknown:
                raise self.fail("custom_fields", f"unknown custom field {unknown[0]}")
        else:  # v1: 40-hex keys at the root; keys the company does not define are ignored
            given = {key: value for key, value in self.body.items() if key in keys}
        if not given:
            return
        current = dict((self.old or {}).get("custom_fields") or dict.fromkeys(keys))
        for key, value in given.items():
            current[key] = self._custom_value(key, value)
        self.out["custom_fields"] = current

    def _custom_value(self, key: str, value: Any) -> Any:
        if value is None:
            return None
        if key in ENUM_FIELDS:
            if self.version == 1 and isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(key, "must be an option id (integer)")
            if value not in ENUM_FIELDS[key]:
                raise self.fail(key, f"{value} is not an option of this field")
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and self.version == 1:
            return str(value)
        if not isinstance(value, str):
            raise self.fail(key, "must be string")
        return value

    def contacts(self, v1_name: str, v2_name: str) -> None:
        name = v2_name if self.version == 2 else v1_name
        if not self.has(name):
            return
        raw = self.body[name]
        if raw is None:
            self.out[v2_name] = []
            return
        if self.version == 1 and isinstance(raw, str):
            raw = [raw] if raw else []
        if not isinstance(raw, list):
            raise self.fail(name, "must be array")
        entries = []
        for item in raw:
            if self.version == 1 and isinstance(item, str):
                item = {"value": item}
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                raise self.fail(name, "items must be objects with a string value")
            primary = item.get("primary", False)
            if self.version == 1 and primary in ("true", "false", 0, 1, "0", "1"):
                primary = primary in ("true", 1, "1")
            if not isinstance(primary, bool):
                raise self.fail(name, "primary must be boolean")
            label = item.get("label", "work")
            if not isinstance(label, str):
                raise self.fail(name, "label must be string")
            if item["value"]:
                entries.append({"value": item["value"], "primary": primary, "label": label})
        if entries and not any(entry["primary"] for entry in entries):
            entries[0]["primary"] = True
        self.out[v2_name] = entries


# -- per kind --------------------------------------------------------------------------------


def person_changes(c: Changes) -> dict[str, Any]:
    c.check_keys()
    if c.has("name") or c.old is None:
        name = c.string("name", required=True).strip()
        first, _, last = name.partition(" ")
        c.out.update(name=name, first_name=first, last_name=last or None)
    elif c.has("first_name") or c.has("last_name"):
        first = c.string("first_name") if c.has("first_name") else c.old["first_name"]
        last = c.string("last_name") if c.has("last_name") else c.old["last_name"]
        name = " ".join(part for part in (first, last) if part)
        if not name:
            raise c.fail("name", "must not be empty")
        c.out.update(name=name, first_name=first, last_name=last)
    c.owner()
    if c.has("org_id"):
        c.out["org_id"] = c.reference("org_id", "organizations")
    c.contacts("email", "emails")
    c.contacts("phone", "phones")
    c.visibility()
    c.labels()
    c.custom_fields()
    return c.out


def organization_changes(c: Changes) -> dict[str, Any]:
    c.check_keys()
    if c.has("name") or c.old is None:
        c.out["name"] = c.string("name", required=True).strip()
    c.owner()
    if c.has("address"):
        raw = c.body["address"]
        if raw is None or raw == "":
            c.out["address"] = None
        elif isinstance(raw, str):
            c.out["address"] = _address({"value": raw})
        elif isinstance(raw, dict) and c.version == 2 and isinstance(raw.get("value"), str):
            c.out["address"] = _address(raw)
        else:
            raise c.fail("address", "must be " + ("object" if c.version == 2 else "string"))
    if c.has("website"):
        c.out["website"] = c.string("website") or None
    c.visibility()
    c.labels()
    c.custom_fields()
    return c.out


def _address(raw: dict) -> dict:
    parts = (
        "country", "admin_area_level_1", "admin_area_level_2", "locality", "sublocality",
        "route", "street_number", "postal_code",
    )  # fmt: skip
    return {"value": raw["value"], **{part: raw.get(part) for part in parts}}


def deal_changes(c: Changes, now: str) -> dict[str, Any]:
    c.check_keys()
    old = c.old or {}
    if c.has("title") or c.old is None:
        c.out["title"] = c.string("title", required=True).strip()
    if c.has("value"):
        c.out["value"] = c.number("value") or 0
    if c.has("currency"):
        currency = c.string("currency", nullable=False)
        if not re.fullmatch(r"[A-Za-z]{3}", currency):
            raise c.fail("currency", "must be a 3-letter currency code")
        c.out["currency"] = currency.upper()
    c.owner(v1_name="user_id")
    if c.old is None:
        c.out["creator_user_id"] = ME["id"]
    for field, kind in (("person_id", "persons"), ("org_id", "organizations")):
        if c.has(field):
            c.out[field] = c.reference(field, kind)
    stage_id = c.integer("stage_id") if c.has("stage_id") else None
    pipeline_id = c.integer("pipeline_id") if c.has("pipeline_id") else None
    if stage_id is not None and stage_id not in STAGE_PIPELINE:
        raise bad_request(f"Stage with id {stage_id} not found")
    if pipeline_id is not None and pipeline_id not in FIRST_STAGE:
        raise bad_request(f"Pipeline with id {pipeline_id} not found")
    if stage_id is not None and pipeline_id is not None and STAGE_PIPELINE[stage_id] != pipeline_id:
        raise bad_request(f"Stage {stage_id} does not belong to pipeline {pipeline_id}")
    if stage_id is None and pipeline_id is not None:
        stage_id = FIRST_STAGE[pipeline_id]
    if stage_id is None and c.old is None:
        stage_id = FIRST_STAGE[1]  # v1_deal_create_response.json: stage_id 1, pipeline_id 1
    if stage_id is not None:
        c.out["stage_id"], c.out["pipeline_id"] = stage_id, STAGE_PIPELINE[stage_id]
        if c.old is not None and stage_id != old.get("stage_id"):
            c.out["stage_change_time"] = now
    if c.has("status"):
        status = c.string("status", nullable=False)
        if status not in DEAL_STATUSES:
            raise c.fail("status", f"must be one of {', '.join(DEAL_STATUSES)}")
        if status != old.get("status", "open"):
            closed = now if status != "open" else None
            c.out.update(
                status=status,
                close_time=closed,
                won_time=closed if status == "won" else None,
                lost_time=closed if status == "lost" else None,
            )
    if c.has("expected_close_date"):
        date = c.string("expected_close_date")
        if date is not None and not is_date(date):
            raise c.fail("expected_close_date", "must be a date (YYYY-MM-DD)")
        c.out["expected_close_date"] = date
    if c.has("probability"):
        probability = c.number("probability")
        if probability is not None and not 0 <= probability <= 100:
            raise c.fail("probability", "must be between 0 and 100")
        c.out["probability"] = probability
    if c.has("lost_reason"):
        c.out["lost_reason"] = c.string("lost_reason")
    for field in ("origin_id", "channel_id"):
        if c.has(field):
            c.out[field] = c.string(field)
    if c.has("channel"):
        c.out["channel"] = c.integer("channel")
    c.visibility()
    c.labels()
    c.custom_fields()
    return c.out


def activity_changes(c: Changes, now: str) -> dict[str, Any]:
    c.check_keys()
    if c.has("type") or c.old is None:
        # v1 docs: a missing type defaults to Call (v1_activity_create_response.json: "call")
        kind = c.string("type") or "call"
        if kind not in ACTIVITY_TYPE_NAMES:
            raise c.fail("type", f"unknown activity type {kind!r}; known: "
                         + ", ".join(ACTIVITY_TYPE_NAMES))  # fmt: skip
        c.out["type"] = kind
    if c.has("subject") or c.old is None:
        subject = c.string("subject")
        c.out["subject"] = subject or ACTIVITY_TYPE_NAMES[c.out.get("type", "call")]
    c.owner(v1_name="user_id")
    c.links()
    if c.has("due_date"):
        date = c.string("due_date")
        if date is not None and not is_date(date):
            raise c.fail("due_date", "must be a date (YYYY-MM-DD)")
        c.out["due_date"] = date
    elif c.old is None:
        c.out["due_date"] = now[:10]  # v1_activity_create_response.json: due today
    for field in ("due_time", "duration"):
        if c.has(field):
            value = c.string(field) or None
            if value is not None and not HH_MM.fullmatch(value):
                raise c.fail(field, "must be HH:MM")
            c.out[field] = value[:5] if value else None
    busy_name = "busy" if c.version == 2 else "busy_flag"
    if c.has(busy_name):
        c.out["busy"] = bool(c.boolean(busy_name))
    if c.has("done"):
        done = bool(c.boolean("done"))
        if c.old is None or done != c.old["done"]:
            c.out["done"] = done
            c.out["marked_as_done_time"] = now if done else None
    if c.has("participants"):
        c.out["participants"] = _participants(c)
    elif c.out.get("person_id") is not None and not (c.old or {}).get("participants"):
        c.out["participants"] = [{"person_id": c.out["person_id"], "primary": True}]
    if c.has("location"):
        raw = c.body["location"]
        if isinstance(raw, dict) and isinstance(raw.get("value"), str):
            c.out["location"] = _address(raw)
        elif isinstance(raw, str) and c.version == 1:
            c.out["location"] = _address({"value": raw}) if raw else None
        elif raw is None:
            c.out["location"] = None
        else:
            raise c.fail("location", "must be " + ("object" if c.version == 2 else "string"))
    for field in ("note", "public_description"):
        if c.has(field):
            c.out[field] = c.string(field)
    if c.has("priority"):
        c.out["priority"] = c.integer("priority")
    return c.out


def _participants(c: Changes) -> list[dict]:
    raw = c.body["participants"]
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise c.fail("participants", "must be array")
    participants = []
    for item in raw:
        if not isinstance(item, dict):
            raise c.fail("participants", "items must be objects")
        person_id = item.get("person_id")
        if isinstance(person_id, bool) or not isinstance(person_id, int):
            raise c.fail("participants", "person_id must be integer")
        if c.store.record("persons", person_id) is None:
            raise bad_request(f"Person with id {person_id} not found")
        primary = item.get("primary" if c.version == 2 else "primary_flag", False)
        participants.append({"person_id": person_id, "primary": bool(primary)})
    return participants


def note_changes(c: Changes) -> dict[str, Any]:
    if c.has("content") or c.old is None:
        c.out["content"] = c.string("content", required=True)
    c.links()
    if c.old is None and not any(
        c.out.get(field) for field in ("person_id", "org_id", "deal_id", "lead_id")
    ):
        # CONTRACTS 3.4: a note needs one of deal_id, person_id, org_id, lead_id
        raise bad_request("Note must be attached to a deal, person, organization or lead")
    if c.has("user_id"):
        c.out["user_id"] = c.user("user_id")
    elif c.old is None:
        c.out["user_id"] = ME["id"]
    for flag in ("deal", "person", "organization", "lead"):
        name = f"pinned_to_{flag}_flag"
        if c.has(name):
            c.out[name] = bool(c.boolean(name))
    if c.old is not None:
        c.out["last_update_user_id"] = ME["id"]
    return c.out


def changes_for(
    store: Store, kind: str, version: int, body: dict, old: Record | None, now: str
) -> dict[str, Any]:
    c = Changes(store, kind, version, body, old)
    if kind == "persons":
        return person_changes(c)
    if kind == "organizations":
        return organization_changes(c)
    if kind == "deals":
        return deal_changes(c, now)
    if kind == "activities":
        return activity_changes(c, now)
    return note_changes(c)
