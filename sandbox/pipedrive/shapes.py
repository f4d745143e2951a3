"""v1 record shapes, derived from the stored v2 shapes (CONTRACTS 3.3, A.3).

v1 differs from v2 in: ``owner_id``/``org_id``/``user_id``/``person_id`` as objects ending in
``value`` (persons, organizations, deals; activities and notes keep plain ids), times as
``YYYY-MM-DD HH:MM:SS``, ``visible_to`` as a string, persons' ``email``/``phone`` as
``[{label, value, primary}]`` (``[{"value": "", "primary": true}]`` when empty), custom fields at
the record root, activity ``due_time``/``duration``/``marked_as_done_time`` as "" when unset,
and ``related_objects`` beside ``data``. Field lists and order follow the recorded fixtures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from sandbox.pipedrive.schema import (
    ACTIVITY_TYPE_NAMES,
    CC_DOMAIN,
    COMPANY_ID,
    CUSTOM_FIELDS,
    ENUM_FIELDS,
    ME,
    OWNER_OBJECTS,
    PIPELINES,
    RELATED_USERS,
    STAGES,
    USERS_BY_ID,
    v1_stage,
)
from sandbox.pipedrive.store import Record, Store
from sandbox.pipedrive.times import v1_time

EMPTY_CONTACT = ({"value": "", "primary": True},)  # v1_person_update_response.json
STAGE_BY_ID = {stage[0]: stage for stage in STAGES}
STAGE_PROBABILITY = {stage[0]: stage[4] for stage in STAGES}
RELATED_STAGES = {stage[0]: v1_stage(stage) for stage in STAGES}
CURRENCY_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£"}

_PERSON_COUNTS = dict.fromkeys(
    (
        "open_deals_count", "related_open_deals_count", "closed_deals_count",
        "related_closed_deals_count", "participant_open_deals_count",
        "participant_closed_deals_count", "email_messages_count", "activities_count",
        "done_activities_count", "undone_activities_count", "files_count", "notes_count",
        "followers_count", "won_deals_count", "related_won_deals_count", "lost_deals_count",
        "related_lost_deals_count",
    ),
    0,
)  # fmt: skip
_NEXT_ACTIVITY = dict.fromkeys(
    (
        "next_activity_date", "next_activity_time", "next_activity_id", "last_activity_id",
        "last_activity_date",
    )
)  # fmt: skip
_MAIL_TIMES = {"last_incoming_mail_time": None, "last_outgoing_mail_time": None}
_POSTAL = dict.fromkeys(
    (
        "postal_address", "postal_address_lat", "postal_address_long",
        "postal_address_subpremise", "postal_address_street_number", "postal_address_route",
        "postal_address_sublocality", "postal_address_locality",
        "postal_address_admin_area_level_1", "postal_address_admin_area_level_2",
        "postal_address_country", "postal_address_postal_code",
        "postal_address_formatted_address",
    )
)  # fmt: skip
_ORG_COUNTS = {
    key: 0
    for key in (
        "open_deals_count", "related_open_deals_count", "closed_deals_count",
        "related_closed_deals_count", "email_messages_count", "people_count", "activities_count",
        "done_activities_count", "undone_activities_count", "files_count", "notes_count",
        "followers_count", "won_deals_count", "related_won_deals_count", "lost_deals_count",
        "related_lost_deals_count",
    )
}  # fmt: skip
_ACTIVITY_LOCATION = dict.fromkeys(
    (
        "location_subpremise", "location_street_number", "location_route",
        "location_sublocality", "location_locality", "location_admin_area_level_1",
        "location_admin_area_level_2", "location_country", "location_postal_code",
        "location_formatted_address",
    )
)  # fmt: skip
_NOTE_USERS = {
    user_id: {"email": user["email"], "name": user["name"], "icon_url": None, "is_you": user is ME}
    for user_id, user in USERS_BY_ID.items()
}


_OWNER_NAMES = {user_id: user["name"] for user_id, user in USERS_BY_ID.items()}
# Every v1 person key in recorded order (v1_persons_list_page.json), custom fields last.
_V1_PERSON: dict[str, Any] = {
    "id": None,
    "owner_id": None,
    "org_id": None,
    "name": None,
    "first_name": None,
    "last_name": None,
    **_PERSON_COUNTS,
    "active_flag": True,
    "phone": EMPTY_CONTACT,
    "email": EMPTY_CONTACT,
    "first_char": None,
    "update_time": None,
    "delete_time": None,
    "add_time": None,
    "visible_to": "3",
    "picture_id": None,
    **_NEXT_ACTIVITY,
    **_MAIL_TIMES,
    "label": None,
    "label_ids": (),
    "im": EMPTY_CONTACT,
    **_POSTAL,
    "notes": None,
    "birthday": None,
    "job_title": None,
    "org_name": None,
    "owner_name": None,
    "primary_email": None,
    "cc_email": CC_DOMAIN,
    "company_id": COMPANY_ID,
    **dict.fromkeys(CUSTOM_FIELDS["persons"]),
}


def v1_contacts(entries: Iterable[dict]) -> list[dict] | tuple:
    """v2 ``[{value, primary, label}]`` -> v1 ``[{label, value, primary}]``."""
    converted = [
        {"label": entry.get("label"), "value": entry["value"], "primary": entry["primary"]}
        for entry in entries
    ]
    return converted or EMPTY_CONTACT


def v1_custom_value(key: str, value: Any) -> Any:
    # Enum fields hold an option id: a string in v1, an integer in v2 (see schema.py).
    if value is not None and key in ENUM_FIELDS:
        return str(value)
    return value


def _owner_name(user_id: int | None) -> str | None:
    return _OWNER_NAMES.get(user_id)


def primary_value(entries: Iterable[dict]) -> str | None:
    first = None
    for entry in entries:
        if entry.get("primary"):
            return entry["value"]
        first = first or entry["value"]
    return first


class Shapes:
    """Renders stored records as v1 records; small lookups (organization and person objects
    nested in other records) are cached until the next write."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._refs: dict[tuple[str, int], Any] = {}
        self._refs_version = -1
        self._lock = threading.Lock()
        self.renderers: dict[str, Callable[[Record], dict]] = {
            "persons": self.v1_person,
            "organizations": self.v1_organization,
            "deals": self.v1_deal,
            "activities": self.v1_activity,
            "notes": self.v1_note,
        }

    def v1(self, kind: str, record: Record) -> dict:
        return self.renderers[kind](record)

    def v1_many(self, kind: str, records: Iterable[Record]) -> list[dict]:
        render = self.renderers[kind]
        return [render(record) for record in records]

    # -- cached nested objects -------------------------------------------------------------

    def _ref(self, kind: str, record_id: int, build: Callable[[Record], Any]) -> Any:
        version = self.store.version
        if version != self._refs_version:
            with self._lock:
                if version != self._refs_version:
                    self._refs = {}
                    self._refs_version = version
        key = (kind, record_id)
        found = self._refs.get(key)
        if found is None:
            record = self.store.stored(kind, record_id)
            found = build(record) if record is not None else False
            self._refs[key] = found
        return found or None

    def org_object(self, org_id: int | None) -> dict | None:
        """v1 ``org_id`` object (v1_persons_list_page.json)."""
        if org_id is None:
            return None
        return self._ref("organizations", org_id, self._org_object)

    def _org_object(self, org: Record) -> dict:
        address = org["address"]
        return {
            "name": org["name"],
            "people_count": self.store.people_count(org["id"]),
            "owner_id": org["owner_id"],
            "address": address["value"] if address else None,
            "label_ids": list(org["label_ids"]),
            "active_flag": not org["is_deleted"],
            "cc_email": CC_DOMAIN,
            "owner_name": _owner_name(org["owner_id"]),
            "value": org["id"],
        }

    def org_name(self, org_id: int | None) -> str | None:
        found = self.org_object(org_id)
        return found["name"] if found else None

    def person_object(self, person_id: int | None) -> dict | None:
        """v1 deal ``person_id`` object (v1_deal_update_response.json)."""
        if person_id is None:
            return None
        return self._ref("persons", person_id, _person_object)

    def person_name(self, person_id: int | None) -> str | None:
        found = self.person_object(person_id)
        return found["name"] if found else None

    def deal_title(self, deal_id: int | None) -> str | None:
        if deal_id is None:
            return None
        return self._ref("deals", deal_id, lambda deal: deal["title"])

    def v1_participant(self, deal: Record, participant: Record) -> dict:
        """An item of GET /v1/deals/{id}/participants. UNCONFIRMED: no recorded payload; the
        shape follows third-party samples of Pipedrive's reference (the participation's id,
        ``person_id`` as the v1 object, the whole ``person``, the deal as related item)."""
        person = self.store.stored("persons", participant["person_id"])
        return {
            "id": participant["id"],
            "person_id": self.person_object(participant["person_id"]),
            "add_time": v1_time(participant["add_time"]),
            "active_flag": True,
            "related_item_data": {"deal_id": deal["id"], "title": deal["title"]},
            "person": self.v1_person(person) if person is not None else None,
        }

    # -- records ---------------------------------------------------------------------------

    def v1_person(self, person: Record) -> dict:
        # Copying a complete template and setting the varying keys is ~2x cheaper than a
        # dict display with spreads; v1 list pages render 500 of these.
        owner_id, name, emails = person["owner_id"], person["name"], person["emails"]
        label_ids, deleted = person["label_ids"], person["is_deleted"]
        org = self.org_object(person["org_id"])
        updated = person["update_time"]
        shaped = _V1_PERSON.copy()
        shaped["id"] = person["id"]
        shaped["owner_id"] = OWNER_OBJECTS.get(owner_id)
        shaped["org_id"] = org
        shaped["name"] = name
        shaped["first_name"] = person["first_name"]
        shaped["last_name"] = person["last_name"]
        shaped["active_flag"] = not deleted
        shaped["phone"] = v1_contacts(person["phones"])
        shaped["email"] = v1_contacts(emails)
        shaped["first_char"] = name[:1].lower()
        shaped["update_time"] = updated[:10] + " " + updated[11:19]
        shaped["delete_time"] = v1_time(updated) if deleted else None
        shaped["add_time"] = v1_time(person["add_time"])
        shaped["visible_to"] = str(person["visible_to"])
        if label_ids:
            shaped["label"] = label_ids[0]
            shaped["label_ids"] = list(label_ids)
        shaped["org_name"] = org["name"] if org else None
        shaped["owner_name"] = _OWNER_NAMES.get(owner_id)
        shaped["primary_email"] = primary_value(emails) if emails else None
        for key, value in person["custom_fields"].items():
            shaped[key] = str(value) if value is not None and key in ENUM_FIELDS else value
        return shaped

    def v1_organization(self, org: Record) -> dict:
        address, name, label_ids = org["address"] or {}, org["name"], org["label_ids"]
        shaped = {
            "id": org["id"],
            "owner_id": OWNER_OBJECTS.get(org["owner_id"]),
            "name": name,
            **_ORG_COUNTS,
            "people_count": self.store.people_count(org["id"]),
            "active_flag": not org["is_deleted"],
            "picture_id": None,
            "country_code": None,
            "first_char": name[:1].lower(),
            "update_time": v1_time(org["update_time"]),
            "delete_time": v1_time(org["update_time"]) if org["is_deleted"] else None,
            "add_time": v1_time(org["add_time"]),
            "visible_to": str(org["visible_to"]),
            **_NEXT_ACTIVITY,
            "label": label_ids[0] if label_ids else None,
            "label_ids": list(label_ids),
            "address": address.get("value"),
            "address_subpremise": None,
            "address_street_number": address.get("street_number"),
            "address_route": address.get("route"),
            "address_sublocality": address.get("sublocality"),
            "address_locality": address.get("locality"),
            "address_admin_area_level_1": address.get("admin_area_level_1"),
            "address_admin_area_level_2": address.get("admin_area_level_2"),
            "address_country": address.get("country"),
            "address_country_code": None,
            "address_postal_code": address.get("postal_code"),
            "address_formatted_address": address.get("value"),
            "website": None,
            "linkedin": None,
            "industry": None,
            "annual_revenue": None,
            "employee_count": None,
            "cc_email": CC_DOMAIN,
            "owner_name": _owner_name(org["owner_id"]),
            "edit_name": True,
            "company_id": COMPANY_ID,
        }
        for key, value in (org["custom_fields"] or {}).items():
            shaped[key] = v1_custom_value(key, value)
        return shaped

    def v1_deal(self, deal: Record) -> dict:
        person_id, org_id, value = deal["person_id"], deal["org_id"], deal["value"]
        status, currency = deal["status"], deal["currency"]
        deleted = deal["is_deleted"]
        person, org = self.person_object(person_id), self.org_object(org_id)
        if status == "won":
            weighted = value
        elif status == "lost":
            weighted = 0
        else:
            weighted = round(value * STAGE_PROBABILITY.get(deal["stage_id"], 100) / 100, 2)
        stage = STAGE_BY_ID.get(deal["stage_id"])
        shaped = {
            "id": deal["id"],
            "creator_user_id": OWNER_OBJECTS.get(deal["creator_user_id"]),
            "user_id": OWNER_OBJECTS.get(deal["owner_id"]),
            "person_id": person,
            "org_id": org,
            "stage_id": deal["stage_id"],
            "title": deal["title"],
            "value": value,
            "currency": currency,
            "add_time": v1_time(deal["add_time"]),
            "update_time": v1_time(deal["update_time"]),
            "stage_change_time": v1_time(deal["stage_change_time"]),
            "active": not deleted,
            "deleted": deleted,
            "status": "deleted" if deleted else status,
            "probability": deal["probability"],
            **_NEXT_ACTIVITY,
            "lost_reason": deal["lost_reason"],
            "visible_to": str(deal["visible_to"]),
            "close_time": v1_time(deal["close_time"]),
            "pipeline_id": deal["pipeline_id"],
            "won_time": v1_time(deal["won_time"]),
            "first_won_time": v1_time(deal["won_time"]),
            "lost_time": v1_time(deal["lost_time"]),
            "products_count": 0,
            "files_count": 0,
            "notes_count": 0,
            "followers_count": 0,
            "email_messages_count": 0,
            "activities_count": 0,
            "done_activities_count": 0,
            "undone_activities_count": 0,
            "participants_count": 0,
            "expected_close_date": deal["expected_close_date"],
            **_MAIL_TIMES,
            "label": None,
            "local_won_date": deal["local_won_date"],
            "local_lost_date": deal["local_lost_date"],
            "local_close_date": deal["local_close_date"],
            "origin": deal["origin"],
            "origin_id": deal["origin_id"],
            "channel": deal["channel"],
            "channel_id": deal["channel_id"],
            "is_archived": deal["is_archived"],
            "archive_time": v1_time(deal["archive_time"]),
            "sequence_enrollment": None,
            "source_lead_id": None,
            "stage_order_nr": stage[2] if stage else None,
            "person_name": person["name"] if person else None,
            "org_name": org["name"] if org else None,
            "next_activity_subject": None,
            "next_activity_type": None,
            "next_activity_duration": None,
            "next_activity_note": None,
            "formatted_value": _money(value, currency),
            "weighted_value": weighted,
            "formatted_weighted_value": _money(weighted, currency),
            "weighted_value_currency": currency,
            "rotten_time": None,
            "owner_name": _owner_name(deal["owner_id"]),
            "cc_email": CC_DOMAIN.replace("@", f"+deal{deal['id']}@"),
            "org_hidden": False,
            "person_hidden": False,
        }
        for key, value in (deal["custom_fields"] or {}).items():
            shaped[key] = v1_custom_value(key, value)
        return shaped

    def v1_activity(self, activity: Record) -> dict:
        owner_id = activity["owner_id"]
        person_id, org_id, deal_id = activity["person_id"], activity["org_id"], activity["deal_id"]
        participants, location = activity["participants"], activity["location"]
        return {
            "id": activity["id"],
            "user_id": owner_id,
            "done": activity["done"],
            "type": activity["type"],
            "reference_type": None,
            "reference_id": None,
            "conference_meeting_client": activity["conference_meeting_client"],
            "conference_meeting_url": activity["conference_meeting_url"],
            "due_date": activity["due_date"],
            "due_time": activity["due_time"] or "",
            "duration": activity["duration"] or "",
            "busy_flag": activity["busy"],
            "add_time": v1_time(activity["add_time"]),
            "marked_as_done_time": v1_time(activity["marked_as_done_time"]) or "",
            "last_notification_time": None,
            "last_notification_user_id": None,
            "notification_language_id": None,
            "subject": activity["subject"],
            "public_description": activity["public_description"],
            "calendar_sync_include_context": None,
            "location": location["value"] if location else None,
            "org_id": org_id,
            "person_id": person_id,
            "deal_id": deal_id,
            "lead_id": activity["lead_id"],
            "active_flag": not activity["is_deleted"],
            "update_time": v1_time(activity["update_time"]),
            "update_user_id": None,
            "source_timezone": None,
            "rec_rule": None,
            "rec_rule_extension": None,
            "rec_master_activity_id": None,
            "conference_meeting_id": activity["conference_meeting_id"],
            "original_start_time": None,
            "private": False,
            "priority": activity["priority"],
            "note": activity["note"],
            "created_by_user_id": owner_id,
            **_ACTIVITY_LOCATION,
            "attendees": activity["attendees"],
            "participants": [
                {"person_id": p["person_id"], "primary_flag": p["primary"]} for p in participants
            ]
            or None,
            "series": None,
            "is_recurring": None,
            "org_name": self.org_name(org_id),
            "person_name": self.person_name(person_id),
            "deal_title": self.deal_title(deal_id),
            "lead_title": None,
            "owner_name": _owner_name(owner_id),
            "person_dropbox_bcc": CC_DOMAIN if person_id else None,
            "deal_dropbox_bcc": CC_DOMAIN.replace("@", f"+deal{deal_id}@") if deal_id else None,
            "assigned_to_user_id": owner_id,
            "type_name": ACTIVITY_TYPE_NAMES.get(activity["type"], activity["type"]),
            "lead": None,
            "company_id": COMPANY_ID,
        }

    def v1_note(self, note: Record) -> dict:
        org_name = self.org_name(note["org_id"])
        person_name = self.person_name(note["person_id"])
        deal_title = self.deal_title(note["deal_id"])
        return {
            **note,
            "add_time": v1_time(note["add_time"]),
            "update_time": v1_time(note["update_time"]),
            "organization": {"name": org_name} if org_name is not None else None,
            "person": {"name": person_name} if person_name is not None else None,
            "deal": {"title": deal_title} if deal_title is not None else None,
            "lead": None,
            "user": _NOTE_USERS.get(note["user_id"]),
        }

    # -- related_objects -------------------------------------------------------------------

    def related(self, kind: str, records: Iterable[Record]) -> dict | None:
        """v1 ``related_objects`` for a page or a record (v1_persons_list_page.json). Notes
        carry none (v1_notes_list_page.json)."""
        if kind == "notes":
            return None
        users: dict[str, dict] = {}
        orgs: dict[str, dict] = {}
        persons: dict[str, dict] = {}
        deals: dict[str, dict] = {}
        stages: dict[str, dict] = {}
        for record in records:
            owner = record.get("owner_id")
            if owner in RELATED_USERS:
                users[str(owner)] = RELATED_USERS[owner]
            org_id = record.get("org_id")
            if org_id is not None and kind != "organizations":
                org = self.org_object(org_id)
                if org is not None:
                    orgs[str(org_id)] = _related(org_id, org)
            person_id = record.get("person_id")
            if person_id is not None:
                person = self.person_object(person_id)
                if person is not None:
                    persons[str(person_id)] = _related(person_id, person)
            if kind == "activities" and record.get("deal_id") is not None:
                title = self.deal_title(record["deal_id"])
                if title is not None:
                    deals[str(record["deal_id"])] = {"id": record["deal_id"], "title": title}
            if kind == "deals" and record.get("stage_id") in RELATED_STAGES:
                stages[str(record["stage_id"])] = RELATED_STAGES[record["stage_id"]]
        related: dict[str, Any] = {"user": users}
        if orgs:
            related["organization"] = orgs
        if persons:
            related["person"] = persons
        if deals:
            related["deal"] = deals
        if stages:
            related["stage"] = stages
            related["pipeline"] = {str(p["id"]): {**p, "active": True} for p in PIPELINES}
        return related

    # -- search ----------------------------------------------------------------------------

    def search_item(self, score: float, person: Record, matched_custom: list[str]) -> dict:
        """A persons/search result (CONTRACTS 3.5): e-mails and phones as plain strings."""
        org_id = person["org_id"]
        org = self.org_object(org_id)
        return {
            "result_score": score,
            "item": {
                "id": person["id"],
                "type": "person",
                "name": person["name"],
                "phones": [entry["value"] for entry in person["phones"]],
                "emails": [entry["value"] for entry in person["emails"]],
                "visible_to": person["visible_to"],
                "owner": {"id": person["owner_id"]},
                "organization": (
                    {"id": org_id, "name": org["name"], "address": org["address"]} if org else None
                ),
                "custom_fields": matched_custom,
                "notes": [],
            },
        }


def _related(record_id: int, nested: dict) -> dict:
    """A related_objects entry: the nested object with ``id`` instead of ``value``."""
    return {"id": record_id, **{k: v for k, v in nested.items() if k != "value"}}


def _person_object(person: Record) -> dict:
    return {
        "active_flag": not person["is_deleted"],
        "name": person["name"],
        "email": v1_contacts(person["emails"]),
        "phone": v1_contacts(person["phones"]),
        "owner_id": person["owner_id"],
        "company_id": COMPANY_ID,
        "value": person["id"],
    }


def _money(amount: float, currency: str) -> str:
    sign = CURRENCY_SIGNS.get(currency)
    number = f"{amount:,.0f}" if float(amount).is_integer() else f"{amount:,.2f}"
    return f"{sign}{number}" if sign else f"{number} {currency}"
