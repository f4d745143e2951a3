"""Zoho CRM module metadata for the emulator: field API names and kinds, mandatory fields,
lookups, data centres, org users and OAuth scopes (CONTRACTS section 4).

Field names and record shapes follow the recorded payloads in
``fixtures/zoho/v2_*_get.json``; ids are 19-digit numeric strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# -- field kinds -------------------------------------------------------------------------------

TEXT = "text"
TEXTAREA = "textarea"
EMAIL = "email"
PHONE = "phone"
WEBSITE = "website"
PICKLIST = "picklist"
INTEGER = "integer"
CURRENCY = "currency"
DOUBLE = "double"
DATE = "date"
DATETIME = "datetime"
BOOLEAN = "boolean"
LOOKUP = "lookup"  # {"name", "id"}
OWNER = "ownerlookup"  # {"name", "id", "email"}
USER = "userlookup"  # Created_By / Modified_By (read-only)
MODULE_NAME = "module"  # $se_module
TAGS = "tags"

TEXTUAL = frozenset((TEXT, TEXTAREA, EMAIL, PHONE, WEBSITE, PICKLIST))
NUMERIC = frozenset((INTEGER, CURRENCY, DOUBLE))
MAX_LENGTH = {TEXT: 255, EMAIL: 100, PHONE: 30, WEBSITE: 255, PICKLIST: 255, TEXTAREA: 32_000}


@dataclass(frozen=True)
class Field:
    api_name: str
    kind: str
    targets: tuple[str, ...] = ()  # lookup modules; several = chosen by $se_module
    options: tuple[str, ...] = ()  # a restricted picklist (empty: any text is accepted)
    read_only: bool = False


@dataclass(frozen=True)
class Module:
    api_name: str
    fields: dict[str, Field]
    mandatory: tuple[str, ...]
    display_field: str  # what a lookup to this module shows as "name"
    first_id: int
    system: dict[str, object]  # constant $-keys of every record (fixtures/zoho/v2_*_get.json)
    unique: tuple[str, ...] = ()  # DUPLICATE_DATA on create/update
    duplicate_check: tuple[str, ...] = ()  # upsert's default duplicate_check_fields
    name_only_lookups: tuple[str, ...] = ()  # lookups that accept {"name"} without an id
    order: tuple[str, ...] = field(default=())  # keys of a full record, in output order

    def kind(self, name: str) -> str | None:
        found = self.fields.get(name)
        return found.kind if found else None

    def fields_of(self, *kinds: str) -> tuple[str, ...]:
        return tuple(name for name, f in self.fields.items() if f.kind in kinds)


# -- ids ---------------------------------------------------------------------------------------

ORG_PREFIX = 4876876  # every id starts with the org's prefix, like 7328395... in the fixtures
ORG_ID = "4876876000000000001"


def _module_base(index: int) -> int:
    # 19 digits: 4876876 + 3-digit module block + 9-digit sequence.
    return ORG_PREFIX * 10**12 + index * 10**9


# -- org users (Owner / Created_By / Modified_By) -----------------------------------------------


def _user(user_id: str, first: str, last: str, role: str, profile: str) -> dict:
    return {
        "id": user_id,
        "first_name": first,
        "last_name": last,
        "full_name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}@sandbox-org.example",
        "role": role,
        "profile": profile,
    }


USERS = (
    _user("4876876000000605001", "Amina", "Wanjiru", "CEO", "Administrator"),
    _user("4876876000000605017", "Tom", "Becker", "Manager", "Standard"),
    _user("4876876000000605033", "Priya", "Raman", "Sales Rep", "Standard"),
    _user("4876876000000605049", "Diego", "Alves", "Sales Rep", "Standard"),
)
API_USER = USERS[0]  # the user who authorised the OAuth client; writes are made as them
USERS_BY_ID = {user["id"]: user for user in USERS}


def owner_ref(user: dict) -> dict:
    """Owner / Created_By / Modified_By on a record: {name, id, email}."""
    return {"name": user["full_name"], "id": user["id"], "email": user["email"]}


def actor_ref(user: dict) -> dict:
    """Created_By / Modified_By in a write response's details: {name, id} (no email)."""
    return {"name": user["full_name"], "id": user["id"]}


# -- picklists ---------------------------------------------------------------------------------

LEAD_SOURCES = (
    "Advertisement", "Cold Call", "Employee Referral", "External Referral", "Online Store",
    "Partner", "Public Relations", "Sales Email Alias", "Seminar Partner", "Internal Seminar",
    "Trade Show", "Web Download", "Web Research", "Chat",
)  # fmt: skip
CUSTOMER_TIERS = ("Bronze", "Silver", "Gold", "Platinum")
# Zoho's standard Deal stages and their default probabilities.
STAGE_PROBABILITY = {
    "Qualification": 10,
    "Needs Analysis": 20,
    "Value Proposition": 40,
    "Identify Decision Makers": 60,
    "Proposal/Price Quote": 75,
    "Negotiation/Review": 90,
    "Closed Won": 100,
    "Closed Lost": 0,
    "Closed Lost to Competition": 0,
}
TASK_STATUSES = ("Not Started", "Deferred", "In Progress", "Completed", "Waiting for input")
TASK_PRIORITIES = ("High", "Highest", "Low", "Lowest", "Normal")
CALL_TYPES = ("Inbound", "Outbound", "Missed")
OUTBOUND_CALL_STATUSES = ("Scheduled", "Completed", "Overdue", "Cancelled")
CALL_PURPOSES = ("Prospecting", "Administrative", "Negotiation", "Demo", "Project", "Desk")
CALL_RESULTS = (
    "Interested", "Not interested", "No response", "Busy", "Requested more info",
    "Requested call back", "Invalid number",
)  # fmt: skip
INDUSTRIES = (
    "ASP (Application Service Provider)", "Data/Telecom OEM", "Government/Military",
    "Large Enterprise", "ManagementISV", "Network Equipment Enterprise", "Service Provider",
    "Small/Medium Enterprise", "Systems Integrator", "Wireless Industry",
)  # fmt: skip
ACCOUNT_TYPES = ("Analyst", "Competitor", "Customer", "Distributor", "Investor", "Partner",
                 "Prospect", "Reseller", "Vendor")  # fmt: skip
DEAL_TYPES = ("New Business", "Existing Business")
PIPELINE = "Standard (Standard)"


# -- modules -----------------------------------------------------------------------------------


def _fields(*specs: Field | tuple[str, str]) -> dict[str, Field]:
    built: dict[str, Field] = {}
    for spec in specs:
        item = spec if isinstance(spec, Field) else Field(*spec)
        built[item.api_name] = item
    return built


def _system(layout_id: str, **extra: object) -> dict[str, object]:
    """The constant $-keys seen on recorded records (v2_contact_get.json and friends)."""
    keys: dict[str, object] = {
        "$currency_symbol": "$",
        "$field_states": None,
        "$review_process": {"approve": False, "reject": False, "resubmit": False},
        "$layout_id": {"display_label": "Standard", "name": "Standard", "id": layout_id},
        "$review": None,
        "$state": "save",
        "$process_flow": False,
        "$locked_for_me": False,
        "$approved": True,
        "$approval": {
            "delegate": False,
            "takeover": False,
            "approve": False,
            "reject": False,
            "resubmit": False,
        },
        "$editable": True,
        "$orchestration": False,
        "$in_merge": False,
        "$zia_owner_assignment": "owner_recommendation_unavailable",
        "$approval_state": "approved",
    }
    keys.update(extra)
    return keys


_COMMON = (
    Field("Owner", OWNER),
    Field("Created_Time", DATETIME, read_only=True),
    Field("Modified_Time", DATETIME, read_only=True),
    Field("Created_By", USER, read_only=True),
    Field("Modified_By", USER, read_only=True),
    Field("Last_Activity_Time", DATETIME, read_only=True),
    Field("Description", TEXTAREA),
)
_TAG = (Field("Tag", TAGS, read_only=True),)

CONTACTS = Module(
    api_name="Contacts",
    fields=_fields(
        ("Salutation", PICKLIST),
        ("First_Name", TEXT),
        ("Last_Name", TEXT),
        Field("Full_Name", TEXT, read_only=True),
        ("Email", EMAIL),
        ("Secondary_Email", EMAIL),
        ("Phone", PHONE),
        ("Mobile", PHONE),
        ("Home_Phone", PHONE),
        ("Other_Phone", PHONE),
        ("Fax", PHONE),
        ("Title", TEXT),
        ("Department", TEXT),
        Field("Account_Name", LOOKUP, targets=("Accounts",)),
        Field("Reporting_To", LOOKUP, targets=("Contacts",)),
        ("Lead_Source", PICKLIST),
        ("Date_of_Birth", DATE),
        ("Email_Opt_Out", BOOLEAN),
        ("Mailing_Street", TEXT),
        ("Mailing_City", TEXT),
        ("Mailing_State", TEXT),
        ("Mailing_Zip", TEXT),
        ("Mailing_Country", TEXT),
        ("Twitter", TEXT),
        ("Skype_ID", TEXT),
        # Custom fields of this org (API names as Zoho derives them from the labels).
        ("Favorite_Color", TEXT),
        ("Customer_Tier", PICKLIST),
        *_COMMON,
        *_TAG,
    ),
    mandatory=("Last_Name",),
    display_field="Full_Name",
    first_id=_module_base(1),
    system=_system("4876876000000091033", **{"$is_duplicate": False}),
    # Choice (CONTRACTS 4.4 leaves it open): Email is a unique field on Contacts, compared
    # case-insensitively, so a second contact with the same Email is DUPLICATE_DATA.
    unique=("Email",),
    duplicate_check=("Email",),
    name_only_lookups=("Account_Name",),
)

ACCOUNTS = Module(
    api_name="Accounts",
    fields=_fields(
        ("Account_Name", TEXT),
        ("Account_Number", TEXT),
        ("Account_Site", TEXT),
        Field("Parent_Account", LOOKUP, targets=("Accounts",)),
        ("Website", WEBSITE),
        ("Phone", PHONE),
        ("Fax", PHONE),
        ("Industry", PICKLIST),
        ("Account_Type", PICKLIST),
        ("Employees", INTEGER),
        ("Annual_Revenue", CURRENCY),
        ("Ticker_Symbol", TEXT),
        ("Billing_Street", TEXT),
        ("Billing_City", TEXT),
        ("Billing_State", TEXT),
        ("Billing_Code", TEXT),
        ("Billing_Country", TEXT),
        *_COMMON,
        *_TAG,
    ),
    mandatory=("Account_Name",),
    display_field="Account_Name",
    first_id=_module_base(2),
    system=_system("4876876000000091029", **{"$is_duplicate": False}),
    duplicate_check=("Account_Name",),
)

DEALS = Module(
    api_name="Deals",
    fields=_fields(
        ("Deal_Name", TEXT),
        Field("Stage", PICKLIST, options=tuple(STAGE_PROBABILITY)),
        ("Amount", CURRENCY),
        ("Closing_Date", DATE),
        ("Probability", INTEGER),
        Field("Expected_Revenue", CURRENCY, read_only=True),
        Field("Account_Name", LOOKUP, targets=("Accounts",)),
        Field("Contact_Name", LOOKUP, targets=("Contacts",)),
        ("Pipeline", PICKLIST),
        ("Type", PICKLIST),
        ("Lead_Source", PICKLIST),
        ("Next_Step", TEXT),
        *_COMMON,
        *_TAG,
    ),
    mandatory=("Deal_Name", "Stage"),
    display_field="Deal_Name",
    first_id=_module_base(3),
    system=_system("4876876000000091023"),
    duplicate_check=("Deal_Name",),
    # CONTRACTS 4.4: {"name"} alone was accepted for Account_Name, while Contact_Name demanded
    # an id (MANDATORY_NOT_FOUND at $.data[0].Contact_Name.id).
    name_only_lookups=("Account_Name",),
)

TASKS = Module(
    api_name="Tasks",
    fields=_fields(
        ("Subject", TEXT),
        ("Due_Date", DATE),
        Field("Status", PICKLIST, options=TASK_STATUSES),
        Field("Priority", PICKLIST, options=TASK_PRIORITIES),
        Field("Who_Id", LOOKUP, targets=("Contacts",)),
        Field("What_Id", LOOKUP, targets=("Accounts", "Deals")),
        Field("$se_module", MODULE_NAME),
        ("Send_Notification_Email", BOOLEAN),
        Field("Closed_Time", DATETIME, read_only=True),
        *_COMMON,
        *_TAG,
    ),
    mandatory=("Subject",),
    display_field="Subject",
    first_id=_module_base(4),
    system=_system("4876876000000091041", Remind_At=None, Recurring_Activity=None),
)

CALLS = Module(
    api_name="Calls",
    fields=_fields(
        ("Subject", TEXT),
        Field("Call_Type", PICKLIST, options=CALL_TYPES),
        ("Call_Start_Time", DATETIME),
        ("Call_Duration", TEXT),
        Field("Call_Duration_in_seconds", INTEGER, read_only=True),
        ("Call_Purpose", PICKLIST),
        ("Call_Result", PICKLIST),
        ("Call_Agenda", TEXT),
        Field("Call_Status", PICKLIST, read_only=True),
        Field("Who_Id", LOOKUP, targets=("Contacts",)),
        Field("What_Id", LOOKUP, targets=("Accounts", "Deals")),
        Field("$se_module", MODULE_NAME),
        ("Caller_ID", PHONE),
        ("Dialled_Number", PHONE),
        *_COMMON,
        *_TAG,
    ),
    # Choice: the three fields the brief names; the recorded create also sent Call_Duration
    # and Outbound_Call_Status, which we accept but do not demand.
    mandatory=("Subject", "Call_Type", "Call_Start_Time"),
    display_field="Subject",
    first_id=_module_base(5),
    system=_system("4876876000000091045", Reminder=None, **{"$calendar_booking_call": False}),
)

NOTES = Module(
    api_name="Notes",
    fields=_fields(
        ("Note_Title", TEXT),
        ("Note_Content", TEXTAREA),
        Field("Parent_Id", LOOKUP, targets=("Contacts", "Accounts", "Deals")),
        Field("$se_module", MODULE_NAME),
        *_COMMON[:5],
    ),
    mandatory=("Note_Content", "Parent_Id", "$se_module"),
    display_field="Note_Title",
    first_id=_module_base(6),
    # fixtures/zoho/v2_note_get.json: notes carry fewer $-keys than other records.
    system={
        "$attachments": None,
        "$field_states": None,
        "$editable": True,
        "$is_shared_to_client": False,
        "$size": None,
        "$state": "save",
        "$voice_note": False,
    },
)


# Meetings. Not in CONTRACTS 4.3: the module and field API names are Zoho's public Events
# module as its docs name them (UNCONFIRMED here); read like Tasks and Calls.
EVENTS = Module(
    api_name="Events",
    fields=_fields(
        ("Event_Title", TEXT),
        ("Start_DateTime", DATETIME),
        ("End_DateTime", DATETIME),
        ("Venue", TEXT),
        ("All_day", BOOLEAN),
        ("Description", TEXTAREA),
        Field("Who_Id", LOOKUP, targets=("Contacts",)),
        Field("What_Id", LOOKUP, targets=("Accounts", "Deals")),
        Field("$se_module", MODULE_NAME),
        *_COMMON,
        *_TAG,
    ),
    mandatory=("Event_Title", "Start_DateTime", "End_DateTime"),
    display_field="Event_Title",
    first_id=_module_base(7),
    system=_system("4876876000000091049"),
)


def _with_order(module: Module) -> Module:
    keys = (*module.fields, *module.system, "id")
    return Module(**{**module.__dict__, "order": tuple(dict.fromkeys(keys))})


MODULES: dict[str, Module] = {
    m.api_name: _with_order(m)
    for m in (CONTACTS, ACCOUNTS, DEALS, TASKS, CALLS, NOTES, EVENTS)
}
# Choice: module names in URLs are matched case-insensitively ("contacts" works like
# "Contacts"); records and errors always use the canonical API name.
MODULE_ALIASES = {name.lower(): name for name in MODULES}


# -- data centres (CONTRACTS 4.1) ---------------------------------------------------------------


@dataclass(frozen=True)
class DataCentre:
    location: str  # the `location` query parameter on the OAuth callback
    accounts_server: str
    api_domain: str


DATA_CENTRES = {
    dc.location: dc
    for dc in (
        DataCentre("us", "https://accounts.zoho.com", "https://www.zohoapis.com"),
        DataCentre("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu"),
        DataCentre("in", "https://accounts.zoho.in", "https://www.zohoapis.in"),
        DataCentre("cn", "https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
        DataCentre("au", "https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
        DataCentre("jp", "https://accounts.zoho.jp", "https://www.zohoapis.jp"),
        DataCentre("ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
        DataCentre("sa", "https://accounts.zoho.sa", "https://www.zohoapis.sa"),
        # UK: not in the ZSDK snapshot CONTRACTS cites; several third-party clients list
        # accounts.zoho.uk / www.zohoapis.uk with location "uk" [3P].
        DataCentre("uk", "https://accounts.zoho.uk", "https://www.zohoapis.uk"),
    )
}


# -- OAuth scopes (CONTRACTS 4.1) ----------------------------------------------------------------

ALL_SCOPES = (
    "ZohoCRM.modules.ALL",
    "ZohoCRM.settings.ALL",
    "ZohoCRM.users.READ",
    "ZohoCRM.org.READ",
    "ZohoSearch.securesearch.READ",
)
OPERATIONS = {"GET": "READ", "POST": "CREATE", "PUT": "UPDATE", "DELETE": "DELETE"}


def module_scope_ok(scopes: tuple[str, ...], module: str, operation: str) -> bool:
    """ZohoCRM.modules.{module|ALL}[.{ALL|READ|CREATE|UPDATE|DELETE}] and, per the crm-oas
    spec, ZohoCRM.modules.{operation}. Compared case-insensitively."""
    wanted = {
        "zohocrm.modules.all",
        f"zohocrm.modules.{operation}",
        "zohocrm.modules.all.all",
        f"zohocrm.modules.all.{operation}",
        f"zohocrm.modules.{module}",
        f"zohocrm.modules.{module}.all",
        f"zohocrm.modules.{module}.{operation}",
    }
    wanted = {scope.lower() for scope in wanted}
    return any(scope.lower() in wanted for scope in scopes)


def scope_ok(scopes: tuple[str, ...], *accepted: str) -> bool:
    lowered = {scope.lower() for scope in scopes}
    return any(scope.lower() in lowered for scope in accepted)
