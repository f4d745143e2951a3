"""Stored record templates: every record is ``{**TEMPLATE[kind], **values}``.

The templates fix the key order and defaults of the stored (v2) shapes, taken from the
client-php/nodejs v2 models (PersonItem, OrganizationItem, DealItem, ActivityItem) and the
recorded v2_deal_get.json; notes have no v2 API and keep the v1 note fields
(v1_note_create_response.json) with RFC 3339 times. Defaults are immutable (tuples, None) so
templates can be shared; records are replaced, never mutated, on write.
"""

from __future__ import annotations

from typing import Any

from sandbox.pipedrive.schema import CUSTOM_FIELDS

PERSON = {
    "id": 0,
    "name": "",
    "first_name": None,
    "last_name": None,
    "owner_id": None,
    "org_id": None,
    "add_time": "",
    "update_time": "",
    "emails": (),  # [{value, primary, label}] (CONTRACTS 3.3)
    "phones": (),
    "is_deleted": False,
    "visible_to": 3,
    "label_ids": (),
    "picture_id": None,
    "custom_fields": None,
}

ORGANIZATION = {
    "id": 0,
    "name": "",
    "owner_id": None,
    "add_time": "",
    "update_time": "",
    "is_deleted": False,
    "visible_to": 3,
    "address": None,  # {value, country, admin_area_level_1, ..., postal_code}
    # A standard organization field of Pipedrive's (its organizationFields list it; where v2
    # puts it is UNCONFIRMED: at the top, like address).
    "website": None,
    "label_ids": (),
    "custom_fields": None,
}

DEAL = {  # key order of v2_deal_get.json
    "id": 0,
    "title": "",
    "creator_user_id": None,
    "value": 0,
    "person_id": None,
    "org_id": None,
    "stage_id": 1,
    "currency": "USD",
    "add_time": "",
    "update_time": "",
    "status": "open",
    "probability": None,
    "lost_reason": None,
    "visible_to": 3,
    "close_time": None,
    "pipeline_id": 1,
    "won_time": None,
    "lost_time": None,
    "stage_change_time": None,
    "local_won_date": None,
    "local_lost_date": None,
    "local_close_date": None,
    "expected_close_date": None,
    "custom_fields": None,  # the sandbox company defines no deal custom fields
    "owner_id": None,
    "label_ids": (),
    "is_deleted": False,
    "origin": "API",
    "origin_id": None,
    "channel": None,
    "channel_id": None,
    "is_archived": False,
    "archive_time": None,
}

ACTIVITY = {
    "id": 0,
    "subject": "",
    "type": "call",
    "owner_id": None,
    "is_deleted": False,
    "add_time": "",
    "update_time": "",
    "deal_id": None,
    "lead_id": None,
    "person_id": None,
    "org_id": None,
    "project_id": None,
    "due_date": None,
    "due_time": None,
    "duration": None,
    "busy": False,
    "done": False,
    "marked_as_done_time": None,
    "location": None,
    "participants": (),
    "attendees": None,
    "conference_meeting_client": None,
    "conference_meeting_url": None,
    "conference_meeting_id": None,
    "public_description": None,
    "priority": None,
    "note": None,
}

NOTE = {
    "id": 0,
    "user_id": None,
    "deal_id": None,
    "person_id": None,
    "org_id": None,
    "lead_id": None,
    "content": "",
    "add_time": "",
    "update_time": "",
    "active_flag": True,
    "pinned_to_deal_flag": False,
    "pinned_to_person_flag": False,
    "pinned_to_organization_flag": False,
    "pinned_to_lead_flag": False,
    "last_update_user_id": None,
}

TEMPLATES: dict[str, dict[str, Any]] = {
    "persons": PERSON,
    "organizations": ORGANIZATION,
    "deals": DEAL,
    "activities": ACTIVITY,
    "notes": NOTE,
}


def empty_custom_fields(kind: str) -> dict[str, Any] | None:
    """Every defined custom field of ``kind`` set to null, or None when it has none."""
    keys = CUSTOM_FIELDS[kind]
    return dict.fromkeys(keys) if keys else None


def new_record(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    record = {**TEMPLATES[kind], **values}
    if "custom_fields" in record and record["custom_fields"] is None:
        record["custom_fields"] = empty_custom_fields(kind)
    return record
