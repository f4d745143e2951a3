"""The sandbox Pipedrive company: users, pipelines, stages, activity types, field definitions.

Custom fields are keyed by 40-hex-character hashes (CONTRACTS 3.3); the keys are fixed here so
a connector mapping can name them, and ``GET /v1/personFields`` (etc.) lists them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sandbox.pipedrive.times import SEED_START, rfc3339, v1_time

COMPANY_ID = 13_370_042
COMPANY_DOMAIN = "sandbox"
CC_DOMAIN = "sandbox@pipedrivemail.com"
ERROR_INFO = "Please check developers.pipedrive.com"  # CONTRACTS 3.6 (error_401_unauthorized)
# CONTRACTS 3.1: the scope string is comma separated and ends in "base".
GRANTED_SCOPES = "deals:full,contacts:full,activities:full,users:read,base"
COMPANY_CREATED = rfc3339(SEED_START - 86_400 * 30)

KINDS = ("persons", "organizations", "deals", "activities", "notes")
SINGULAR = {
    "persons": "Person",
    "organizations": "Organization",
    "deals": "Deal",
    "activities": "Activity",
    "notes": "Note",
}


def custom_key(kind: str, name: str) -> str:
    """A stable 40-hex-char custom field key, like Pipedrive's random ones."""
    return hashlib.sha1(f"sandbox:{kind}:{name}".encode()).hexdigest()


FAVORITE_COLOR = custom_key("person", "Favorite color")  # varchar
CUSTOMER_TIER = custom_key("person", "Customer tier")  # enum (single option)
ORG_REGION = custom_key("organization", "Region")  # varchar
# Enum custom fields hold option ids: v1 shows the id as a string ("43"), v2 as an integer
# (our reading of the v2 migration guide; CONTRACTS does not record an enum value).
TIER_OPTIONS = ((41, "Bronze"), (42, "Silver"), (43, "Gold"), (44, "Platinum"))
TIER_OPTION_IDS = frozenset(option_id for option_id, _ in TIER_OPTIONS)
ENUM_FIELDS = {CUSTOMER_TIER: TIER_OPTION_IDS}
CUSTOM_FIELDS = {
    "persons": (FAVORITE_COLOR, CUSTOMER_TIER),
    "organizations": (ORG_REGION,),
    "deals": (),  # v2 shows custom_fields: null when there are none (v2_deal_get.json)
    "activities": (),
    "notes": (),
}
PERSON_LABELS = ((5, "Customer"), (6, "Hot lead"), (7, "Warm lead"), (8, "Cold lead"))
ORG_LABELS = ((9, "Customer"), (10, "Partner"), (11, "Prospect"))
LABEL_IDS = {
    "persons": frozenset(i for i, _ in PERSON_LABELS),
    "organizations": frozenset(i for i, _ in ORG_LABELS),
    "deals": frozenset(),
}
VISIBILITY = (1, 3, 5, 7)  # owner only, entire company, and the two group levels


# -- users -----------------------------------------------------------------------------------


def _user(user_id: int, name: str, admin: bool) -> dict[str, Any]:
    email = name.lower().replace(" ", ".") + "@sandbox-crm.example"
    return {"id": user_id, "name": name, "email": email, "is_admin": 1 if admin else 0}


USERS = (
    _user(18_402_731, "Maria Lopez", True),  # the user every token belongs to ("is_you")
    _user(18_402_733, "Sam Okafor", False),
    _user(18_402_767, "Li Wei", False),
    _user(18_402_790, "Anna Berg", False),
)
USER_IDS = tuple(user["id"] for user in USERS)
USERS_BY_ID = {user["id"]: user for user in USERS}
ME = USERS[0]


def owner_object(user_id: int) -> dict[str, Any] | None:
    """v1 ``owner_id``/``user_id`` object (v1_person_get.json)."""
    user = USERS_BY_ID.get(user_id)
    if user is None:
        return None
    return {
        "id": user_id,
        "name": user["name"],
        "email": user["email"],
        "has_pic": 0,
        "pic_hash": None,
        "active_flag": True,
        "value": user_id,
    }


OWNER_OBJECTS = {user_id: owner_object(user_id) for user_id in USER_IDS}
RELATED_USERS = {
    user_id: {k: v for k, v in obj.items() if k != "value"}
    for user_id, obj in OWNER_OBJECTS.items()
}


def v1_user(user: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/users item (shape of v1_users_list.json)."""
    created = v1_time(COMPANY_CREATED)
    return {
        "id": user["id"],
        "name": user["name"],
        "email": user["email"],
        "lang": 1,
        "locale": "en_US",
        "timezone_name": "Europe/Berlin",
        "timezone_offset": "+01:00",
        "default_currency": "USD",
        "icon_url": None,
        "active_flag": True,
        "is_deleted": False,
        "is_admin": user["is_admin"],
        "role_id": 1,
        "created": created,
        "has_created_company": user is ME,
        "is_you": user is ME,
        "access": [{"app": "sales", "admin": bool(user["is_admin"]), "permission_set_id": None}],
        "phone": None,
        "modified": created,
        "last_login": created,
    }


# -- pipelines and stages --------------------------------------------------------------------

PIPELINES = (
    {"id": 1, "name": "Sales pipeline", "url_title": "default", "order_nr": 1},
    {"id": 2, "name": "Partnerships", "url_title": "partnerships", "order_nr": 2},
)
STAGES = (  # (id, pipeline id, order, name, deal probability)
    (1, 1, 1, "Qualified", 10),
    (2, 1, 2, "Contact Made", 20),
    (3, 1, 3, "Demo Scheduled", 40),
    (4, 1, 4, "Proposal Made", 60),
    (5, 1, 5, "Negotiations Started", 80),
    (6, 2, 1, "Intro", 20),
    (7, 2, 2, "Evaluation", 50),
    (8, 2, 3, "Signed", 90),
)
STAGE_PIPELINE = {stage_id: pipeline_id for stage_id, pipeline_id, *_ in STAGES}
FIRST_STAGE = {1: 1, 2: 6}


def v1_pipeline(pipeline: dict[str, Any]) -> dict[str, Any]:
    return {
        **pipeline,
        "active": True,
        "deal_probability": True,
        "add_time": v1_time(COMPANY_CREATED),
        "update_time": None,
    }


def v2_pipeline(pipeline: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": pipeline["id"],
        "name": pipeline["name"],
        "order_nr": pipeline["order_nr"],
        "is_deleted": False,
        "is_deal_probability_enabled": True,
        "add_time": COMPANY_CREATED,
        "update_time": COMPANY_CREATED,
    }


def v1_stage(stage: tuple) -> dict[str, Any]:
    """GET /v1/stages item (related_objects.stage in v1_deal_create_response.json)."""
    stage_id, pipeline_id, order_nr, name, probability = stage
    return {
        "id": stage_id,
        "order_nr": order_nr,
        "name": name,
        "active_flag": True,
        "deal_probability": probability,
        "pipeline_id": pipeline_id,
        "rotten_flag": False,
        "rotten_days": None,
        "add_time": v1_time(COMPANY_CREATED),
        "update_time": None,
        "pipeline_name": PIPELINES[pipeline_id - 1]["name"],
        "pipeline_deal_probability": True,
    }


def v2_stage(stage: tuple) -> dict[str, Any]:
    """GET /api/v2/stages item (v2_stages_list_page_cursor.json)."""
    stage_id, pipeline_id, order_nr, name, probability = stage
    return {
        "id": stage_id,
        "name": name,
        "order_nr": order_nr,
        "pipeline_id": pipeline_id,
        "deal_probability": probability,
        "is_deal_rot_enabled": False,
        "days_to_rotten": None,
        "is_deleted": False,
        "add_time": COMPANY_CREATED,
        "update_time": COMPANY_CREATED,
    }


# -- activity types --------------------------------------------------------------------------

ACTIVITY_TYPES = (  # (id, key_string, name, icon_key)
    (1, "call", "Call", "call"),
    (2, "meeting", "Meeting", "meeting"),
    (3, "task", "Task", "task"),
    (4, "deadline", "Deadline", "deadline"),
    (5, "email", "Email", "email"),
    (6, "lunch", "Lunch", "lunch"),
)
ACTIVITY_TYPE_NAMES = {key: name for _, key, name, _ in ACTIVITY_TYPES}


def v1_activity_type(activity_type: tuple) -> dict[str, Any]:
    type_id, key, name, icon = activity_type
    return {
        "id": type_id,
        "order_nr": type_id,
        "name": name,
        "key_string": key,
        "icon_key": icon,
        "active_flag": True,
        "color": None,
        "is_custom_flag": False,
        "add_time": v1_time(COMPANY_CREATED),
        "update_time": None,
    }


# -- field definitions (GET /v1/<kind>Fields) ------------------------------------------------


def _options(pairs: tuple) -> list[dict[str, Any]]:
    return [{"id": option_id, "label": label} for option_id, label in pairs]


_FIELD_SPECS: dict[str, tuple] = {  # (key, name, field_type, options)
    "persons": (
        ("id", "ID", "int", None),
        ("name", "Name", "varchar", None),
        ("first_name", "First name", "varchar", None),
        ("last_name", "Last name", "varchar", None),
        ("label", "Label", "enum", _options(PERSON_LABELS)),
        ("org_id", "Organization", "org", None),
        ("email", "Email", "varchar", None),
        ("phone", "Phone", "phone", None),
        ("owner_id", "Owner", "user", None),
        ("add_time", "Person created", "date", None),
        ("update_time", "Update time", "date", None),
        ("visible_to", "Visible to", "visible_to", None),
        (FAVORITE_COLOR, "Favorite color", "varchar", None),
        (CUSTOMER_TIER, "Customer tier", "enum", _options(TIER_OPTIONS)),
    ),
    "organizations": (
        ("id", "ID", "int", None),
        ("name", "Name", "varchar", None),
        ("label", "Label", "enum", _options(ORG_LABELS)),
        ("owner_id", "Owner", "user", None),
        ("address", "Address", "address", None),
        ("website", "Website", "varchar", None),
        ("people_count", "People", "int", None),
        ("add_time", "Organization created", "date", None),
        ("update_time", "Update time", "date", None),
        ("visible_to", "Visible to", "visible_to", None),
        (ORG_REGION, "Region", "varchar", None),
    ),
    "deals": (
        ("id", "ID", "int", None),
        ("title", "Title", "varchar", None),
        ("value", "Value", "monetary", None),
        ("currency", "Currency", "varchar_options", None),
        (
            "status",
            "Status",
            "status",
            _options((("open", "Open"), ("won", "Won"), ("lost", "Lost"), ("deleted", "Deleted"))),
        ),
        ("pipeline", "Pipeline", "double", None),
        ("stage_id", "Stage", "stage", None),
        ("person_id", "Contact person", "people", None),
        ("org_id", "Organization", "org", None),
        ("user_id", "Owner", "user", None),
        ("expected_close_date", "Expected close date", "date", None),
        ("probability", "Probability", "double", None),
        ("lost_reason", "Lost reason", "varchar_options", None),
        ("add_time", "Deal created", "date", None),
        ("update_time", "Update time", "date", None),
        ("visible_to", "Visible to", "visible_to", None),
    ),
    "activities": (
        ("id", "ID", "int", None),
        ("subject", "Subject", "varchar", None),
        (
            "type",
            "Type",
            "enum",
            [{"id": key, "label": name} for _, key, name, _ in ACTIVITY_TYPES],
        ),
        ("due_date", "Due date", "date", None),
        ("due_time", "Due time", "time", None),
        ("duration", "Duration", "time", None),
        ("person_id", "Contact person", "people", None),
        ("org_id", "Organization", "org", None),
        ("deal_id", "Deal", "deal", None),
        ("note", "Note", "text", None),
        ("done", "Done", "enum", _options(((0, "To do"), (1, "Done")))),
        ("user_id", "Assigned to user", "user", None),
        ("add_time", "Add time", "date", None),
        ("update_time", "Update time", "date", None),
    ),
}


def field_definitions(kind: str) -> list[dict[str, Any]]:
    """GET /v1/personFields (etc.) items: built-in fields, then the custom ones (edit_flag)."""
    created = v1_time(COMPANY_CREATED)
    custom = set(CUSTOM_FIELDS[kind])
    fields = []
    for order, (key, name, field_type, options) in enumerate(_FIELD_SPECS[kind], start=1):
        is_custom = key in custom
        field = {
            "id": 9000 + order if not is_custom else 12_000 + order,
            "key": key,
            "name": name,
            "order_nr": order,
            "field_type": field_type,
            "add_time": created,
            "update_time": created,
            "last_updated_by_user_id": ME["id"] if is_custom else None,
            "created_by_user_id": ME["id"] if is_custom else None,
            "active_flag": True,
            "edit_flag": is_custom,
            "index_visible_flag": True,
            "details_visible_flag": True,
            "add_visible_flag": True,
            "important_flag": False,
            "bulk_edit_allowed": True,
            "searchable_flag": is_custom,
            "filtering_allowed": True,
            "sortable_flag": True,
            "mandatory_flag": key in ("name", "title"),
        }
        if options is not None:
            field["options"] = options
        fields.append(field)
    return fields


FIELD_ROUTES = {  # path segment -> kind
    "personFields": "persons",
    "organizationFields": "organizations",
    "dealFields": "deals",
    "activityFields": "activities",
}
