"""HubSpot CRM v3 object schemas: known properties, defaults, association types.

The schema decides which property names are valid on write (CONTRACTS 1.6: unknown names
are a VALIDATION_ERROR with PROPERTY_DOESNT_EXIST) and which come back by default (1.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

STRING = "string"
NUMBER = "number"
DATETIME = "datetime"
ENUMERATION = "enumeration"

HUB_ID = 46218910  # the sandbox "portal"
APP_ID = 3180001
APP_BASE_URL = "https://app.hubspot.com"

LIFECYCLE_STAGES = (
    "subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead",
    "opportunity", "customer", "evangelist", "other",
)  # fmt: skip
DEAL_STAGES = (
    "appointmentscheduled", "qualifiedtobuy", "presentationscheduled",
    "decisionmakerboughtin", "contractsent", "closedwon", "closedlost",
)  # fmt: skip
CUSTOMER_TIERS = ("bronze", "silver", "gold", "platinum")


@dataclass(frozen=True)
class ObjectSchema:
    name: str  # path name, e.g. "contacts"
    singular: str  # used in association labels, e.g. "contact_to_company"
    type_id: str  # CONTRACTS 1.3: 0-1 contacts, 0-2 companies, 0-3 deals, 0-27 tasks ...
    properties: dict[str, str]  # property name -> kind
    defaults: tuple[str, ...]  # returned when no `properties` is requested (CONTRACTS 1.3)
    created_property: str
    modified_property: str
    scope: str  # read/write scope prefix (CONTRACTS 1.1: activities use the contacts scopes)
    required_on_create: tuple[str, ...] = ()
    # A property a create leaves out that HubSpot fills from another one (property -> source).
    filled_on_create: dict[str, str] = field(default_factory=dict)
    enumerations: dict[str, tuple[str, ...]] = field(default_factory=dict)
    url_prefix: str = ""  # record URL = prefix + id (the optional `url` field, CONTRACTS 1.3)

    @property
    def always_returned(self) -> tuple[str, ...]:
        # CONTRACTS 1.3: hs_object_id and the create/modify timestamps come back unasked.
        return ("hs_object_id", self.created_property, self.modified_property)

    @property
    def read_only(self) -> frozenset[str]:
        return frozenset(("hs_object_id", self.modified_property, "hs_createdate"))


def _kinds(strings: str, *, numbers: str = "", datetimes: str = "", enums: str = "") -> dict:
    kinds: dict[str, str] = {}
    groups = {STRING: strings, NUMBER: numbers, DATETIME: datetimes, ENUMERATION: enums}
    for kind, names in groups.items():
        kinds.update(dict.fromkeys(names.split(), kind))
    return kinds


CONTACTS = ObjectSchema(
    name="contacts",
    singular="contact",
    type_id="0-1",
    # favorite_color and customer_tier are portal-specific custom properties (custom fields).
    properties=_kinds(
        "firstname lastname email phone company jobtitle website favorite_color",
        numbers="hs_object_id hubspot_owner_id associatedcompanyid",
        datetimes="createdate lastmodifieddate",
        enums="lifecyclestage customer_tier",
    ),
    defaults=("firstname", "lastname", "email"),
    created_property="createdate",
    modified_property="lastmodifieddate",
    scope="crm.objects.contacts",
    enumerations={"lifecyclestage": LIFECYCLE_STAGES, "customer_tier": CUSTOMER_TIERS},
    url_prefix=f"{APP_BASE_URL}/contacts/{HUB_ID}/record/0-1/",
)

COMPANIES = ObjectSchema(
    name="companies",
    singular="company",
    type_id="0-2",
    properties=_kinds(
        "name domain industry phone city country",
        numbers="hs_object_id hubspot_owner_id",
        datetimes="createdate hs_lastmodifieddate",
    ),
    defaults=("name", "domain"),
    created_property="createdate",
    modified_property="hs_lastmodifieddate",
    scope="crm.objects.companies",
    url_prefix=f"{APP_BASE_URL}/contacts/{HUB_ID}/record/0-2/",
)

DEALS = ObjectSchema(
    name="deals",
    singular="deal",
    type_id="0-3",
    properties=_kinds(
        "dealname pipeline",
        numbers="hs_object_id amount hubspot_owner_id",
        datetimes="createdate hs_lastmodifieddate closedate",
        enums="dealstage deal_currency_code",
    ),
    defaults=("dealname", "amount", "closedate", "pipeline", "dealstage"),
    created_property="createdate",
    modified_property="hs_lastmodifieddate",
    scope="crm.objects.deals",
    # The currencies enabled in this sandbox portal.
    enumerations={"dealstage": DEAL_STAGES, "deal_currency_code": ("USD", "EUR", "GBP")},
    url_prefix=f"{APP_BASE_URL}/contacts/{HUB_ID}/record/0-3/",
)

TASKS = ObjectSchema(
    name="tasks",
    singular="task",
    type_id="0-27",
    properties=_kinds(
        "hs_task_subject hs_task_body",
        numbers="hs_object_id hubspot_owner_id",
        datetimes="hs_createdate hs_lastmodifieddate hs_timestamp",
        enums="hs_task_status hs_task_priority hs_task_type",
    ),
    defaults=(),
    created_property="hs_createdate",
    modified_property="hs_lastmodifieddate",
    scope="crm.objects.contacts",
    required_on_create=("hs_timestamp",),  # CONTRACTS 1.4: hs_timestamp required
    enumerations={
        # CONTRACTS 1.4 names NOT_STARTED|COMPLETED; HubSpot's task status property also has
        # IN_PROGRESS, WAITING and DEFERRED, which clients do write.
        "hs_task_status": ("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"),
        "hs_task_priority": ("NONE", "LOW", "MEDIUM", "HIGH"),
        "hs_task_type": ("EMAIL", "CALL", "TODO"),
    },
    url_prefix=f"{APP_BASE_URL}/tasks/{HUB_ID}/view/all/task/",
)

CALLS = ObjectSchema(
    name="calls",
    singular="call",
    type_id="0-48",  # CONTRACTS 1.3: UNCONFIRMED; only shows up in hs_obj_coords-style ids
    properties=_kinds(
        "hs_call_title hs_call_body hs_call_disposition hs_call_status",
        numbers="hs_object_id hubspot_owner_id hs_call_duration",
        datetimes="hs_createdate hs_lastmodifieddate hs_timestamp",
        enums="hs_call_direction",
    ),
    defaults=(),
    created_property="hs_createdate",
    modified_property="hs_lastmodifieddate",
    scope="crm.objects.contacts",
    required_on_create=("hs_timestamp",),  # CONTRACTS 1.4
    # Only the direction enum is vendor-stated; status/disposition values are UNCONFIRMED
    # (CONTRACTS 1.4), so they are accepted as free strings.
    enumerations={"hs_call_direction": ("INBOUND", "OUTBOUND")},
    url_prefix=f"{APP_BASE_URL}/contacts/{HUB_ID}/record/0-48/",
)

NOTES = ObjectSchema(
    name="notes",
    singular="note",
    type_id="0-46",
    properties=_kinds(
        "hs_note_body",
        numbers="hs_object_id hubspot_owner_id",
        datetimes="hs_createdate hs_lastmodifieddate hs_timestamp",
    ),
    defaults=(),
    created_property="hs_createdate",
    modified_property="hs_lastmodifieddate",
    scope="crm.objects.contacts",
    required_on_create=("hs_timestamp",),
    url_prefix=f"{APP_BASE_URL}/contacts/{HUB_ID}/record/0-46/",
)

# Meetings are not in CONTRACTS 1.3: the object and its properties are HubSpot's meetings guide
# (developers.hubspot.com/docs/api/crm/meetings: hs_timestamp, hs_meeting_title, _body,
# _location, _start_time, _end_time, _outcome); its association type ids are UNCONFIRMED.
# A create without hs_timestamp takes hs_meeting_start_time (HubSpot developer changelog,
# "Defaulting hs_timestamp to Meeting Start Time in Meetings Engagement API", 2024-11-12);
# with neither it is refused, as the guide marks hs_timestamp required (HubSpot's answer to
# neither: UNCONFIRMED).
MEETINGS = ObjectSchema(
    name="meetings",
    singular="meeting",
    type_id="0-47",
    properties=_kinds(
        "hs_meeting_title hs_meeting_body hs_meeting_location hs_meeting_outcome",
        numbers="hs_object_id hubspot_owner_id",
        datetimes="hs_createdate hs_lastmodifieddate hs_timestamp hs_meeting_start_time "
        "hs_meeting_end_time",
    ),
    defaults=(),
    created_property="hs_createdate",
    modified_property="hs_lastmodifieddate",
    scope="crm.objects.contacts",
    required_on_create=("hs_timestamp",),
    filled_on_create={"hs_timestamp": "hs_meeting_start_time"},
    url_prefix=f"{APP_BASE_URL}/contacts/{HUB_ID}/record/0-47/",
)

SCHEMAS: dict[str, ObjectSchema] = {
    schema.name: schema
    for schema in (CONTACTS, COMPANIES, DEALS, TASKS, CALLS, NOTES, MEETINGS)
}
# CONTRACTS 1.3: the spec writes deals as /crm/v3/objects/0-3; type ids work like names.
OBJECT_TYPE_ALIASES: dict[str, str] = {
    **{name: name for name in SCHEMAS},
    **{schema.type_id: schema.name for schema in SCHEMAS.values()},
}

# CONTRACTS 1.4 association type table (HUBSPOT_DEFINED, direction matters):
# type id -> (from object, to object). 1 and 5 are the "primary" company associations.
ASSOCIATION_TYPES: dict[int, tuple[str, str]] = {
    279: ("contacts", "companies"),
    1: ("contacts", "companies"),
    280: ("companies", "contacts"),
    3: ("deals", "contacts"),
    4: ("contacts", "deals"),
    341: ("deals", "companies"),
    5: ("deals", "companies"),
    202: ("notes", "contacts"),
    190: ("notes", "companies"),
    214: ("notes", "deals"),
    204: ("tasks", "contacts"),
    192: ("tasks", "companies"),
    216: ("tasks", "deals"),
    194: ("calls", "contacts"),
    182: ("calls", "companies"),
    206: ("calls", "deals"),
    200: ("meetings", "contacts"),  # meetings: UNCONFIRMED (see MEETINGS)
    188: ("meetings", "companies"),
    212: ("meetings", "deals"),
}
PRIMARY_COMPANY_ASSOCIATION = 1  # sets the contact's associatedcompanyid, as in HubSpot
PRIMARY_DEAL_COMPANY_ASSOCIATION = 5  # marks the deal's primary company
ASSOCIATION_CATEGORIES = ("HUBSPOT_DEFINED", "INTEGRATOR_DEFINED", "USER_DEFINED", "WORK")
# The labels v4 reads show on type ids 1 and 5 (the default types have none): "<Object> with
# Primary Company" since 2024-02-19, "Primary Company" before (HubSpot developer changelog,
# "Changes to primary labels for HubSpot-defined association labels", which also says labels
# are not for programs to rely on: only type ids are).
PRIMARY_LABELS = {PRIMARY_COMPANY_ASSOCIATION: "Contact with Primary Company",
                  PRIMARY_DEAL_COMPANY_ASSOCIATION: "Deal with Primary Company"}
PRIMARY_TYPE_IDS = tuple(PRIMARY_LABELS)
# (from object, to object) -> the plain (unlabelled) type id, and -> the "Primary" type id.
UNLABELED_ASSOCIATION_TYPES: dict[tuple[str, str], int] = {
    pair: type_id for type_id, pair in ASSOCIATION_TYPES.items() if type_id not in PRIMARY_TYPE_IDS
}
PRIMARY_ASSOCIATION_TYPES: dict[tuple[str, str], int] = {
    ASSOCIATION_TYPES[type_id]: type_id for type_id in PRIMARY_TYPE_IDS
}


def association_label(from_type: str, to_type: str) -> str:
    """CONTRACTS 1.3: list/get show associations as e.g. {"id": "..", "type": "task_to_contact"}."""
    return f"{SCHEMAS[from_type].singular}_to_{SCHEMAS[to_type].singular}"


def required_scope(object_type: str, write: bool) -> str:
    return f"{SCHEMAS[object_type].scope}.{'write' if write else 'read'}"


# Reading an object type's property definitions takes its schema scope: HubSpot's reference
# for contact properties names crm.schemas.contacts.read (developers.hubspot.com, "Get all
# contact properties"); companies and deals alike. Choice (UNCONFIRMED): the activity types,
# which have no schema scope of their own, take their read scope.
SCHEMA_SCOPES = {"contacts": "crm.schemas.contacts.read",
                 "companies": "crm.schemas.companies.read",
                 "deals": "crm.schemas.deals.read"}


def properties_scope(object_type: str) -> str:
    return SCHEMA_SCOPES.get(object_type) or required_scope(object_type, False)


ALL_SCOPES: tuple[str, ...] = (
    *sorted({f"{s.scope}.{mode}" for s in SCHEMAS.values() for mode in ("read", "write")}),
    *sorted(SCHEMA_SCOPES.values()),
    "crm.objects.owners.read",
    "oauth",
)


class PropertyErrors(Exception):
    """Write-time property problems, as HubSpot's VALIDATION_ERROR ``errors[]`` entries."""

    def __init__(self, errors: list[dict]) -> None:
        super().__init__(errors)
        self.errors = errors


def _property_error(code: str, name: str, message: str) -> dict:
    return {"message": message, "code": code, "context": {"propertyName": [name]}}


def to_property_value(value: object) -> str | None:
    """CONTRACTS 1.3: every property value is stored and returned as a string (or null)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def validate_properties(
    schema: ObjectSchema, properties: object, *, creating: bool
) -> dict[str, str | None]:
    """Stringified properties, or PropertyErrors listing every problem at once."""
    if not isinstance(properties, dict):
        problem = _property_error("INVALID_JSON", "properties", "properties must be an object")
        raise PropertyErrors([problem])
    values: dict[str, str | None] = {}
    errors: list[dict] = []
    for name, raw in properties.items():
        value = to_property_value(raw)
        problem = _check_value(schema, name, value)
        if problem:
            errors.append(problem)
        else:
            values[name] = value
    if creating:
        for name, source in schema.filled_on_create.items():
            if not values.get(name) and values.get(source):
                values[name] = values[source]
        reported = {error["context"]["propertyName"][0] for error in errors}
        errors += [
            _property_error("REQUIRED_PROPERTY", name, f'Property "{name}" is required')
            for name in schema.required_on_create
            if not values.get(name) and name not in reported
        ]
    if errors:
        raise PropertyErrors(errors)
    return values


def _check_value(schema: ObjectSchema, name: str, value: str | None) -> dict | None:
    if name not in schema.properties:
        return _property_error("PROPERTY_DOESNT_EXIST", name, f'Property "{name}" does not exist')
    if name in schema.read_only:
        message = f'"{name}" is a read only property; its value cannot be set.'
        return _property_error("READ_ONLY_VALUE", name, message)
    allowed = schema.enumerations.get(name)
    if allowed and value and value not in allowed:
        message = f"{value} was not one of the allowed options: {', '.join(allowed)}"
        return _property_error("INVALID_OPTION", name, message)
    if name == "email" and value and not _looks_like_email(value):
        return _property_error("INVALID_EMAIL", name, f"Email address {value} is invalid")
    return None


def _looks_like_email(value: str) -> bool:
    local, _, domain = value.partition("@")
    return bool(local) and "." in domain and " " not in value
