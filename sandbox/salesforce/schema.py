"""Salesforce sObject metadata for the emulator: fields, types, picklists, relationships.

Field API names, types and picklist values follow the standard objects of a Developer Edition
org (CONTRACTS 2.3/2.4 and the recorded fixtures); a few custom fields (``__c``) are added the
way an admin would. Everything here is static data plus small lookup helpers; records live in
store.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Field types (describe "type" names). Strings of every flavour compare case-insensitively.
STRING_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "combobox", "encryptedstring"}
)
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})
ID_TYPES = frozenset({"id", "reference"})

# Standard Opportunity stages: (name, default probability, forecast category, closed, won).
OPPORTUNITY_STAGES = (
    ("Prospecting", 10.0, "Pipeline", False, False),
    ("Qualification", 10.0, "Pipeline", False, False),
    ("Needs Analysis", 20.0, "Pipeline", False, False),
    ("Value Proposition", 50.0, "Pipeline", False, False),
    ("Id. Decision Makers", 60.0, "Pipeline", False, False),
    ("Perception Analysis", 70.0, "Pipeline", False, False),
    ("Proposal/Price Quote", 75.0, "Pipeline", False, False),
    ("Negotiation/Review", 90.0, "Pipeline", False, False),
    ("Closed Won", 100.0, "Closed", True, True),
    ("Closed Lost", 0.0, "Omitted", True, False),
)
STAGE_INFO = {stage[0]: stage[1:] for stage in OPPORTUNITY_STAGES}
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
TASK_PRIORITIES = ("High", "Normal", "Low")
CALL_TYPES = ("Inbound", "Outbound", "Internal")
TASK_SUBTYPES = ("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn")
LEAD_STATUSES = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
)
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
INDUSTRIES = (
    "Agriculture", "Apparel", "Banking", "Biotechnology", "Chemicals", "Communications",
    "Construction", "Consulting", "Education", "Electronics", "Energy", "Engineering",
    "Entertainment", "Environmental", "Finance", "Food & Beverage", "Government", "Healthcare",
    "Hospitality", "Insurance", "Machinery", "Manufacturing", "Media", "Not For Profit",
    "Recreation", "Retail", "Shipping", "Technology", "Telecommunications", "Transportation",
    "Utilities", "Other",
)  # fmt: skip
ACCOUNT_TYPES = (
    "Prospect", "Customer - Direct", "Customer - Channel", "Channel Partner / Reseller",
    "Installation Partner", "Technology Partner", "Other",
)  # fmt: skip
OPPORTUNITY_TYPES = (
    "Existing Customer - Upgrade", "Existing Customer - Replacement",
    "Existing Customer - Downgrade", "New Customer",
)  # fmt: skip
SALUTATIONS = ("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.")
RATINGS = ("Hot", "Warm", "Cold")
COLORS = ("Red", "Green", "Blue", "Purple", "Orange", "Teal", "Black")
TIERS = ("Bronze", "Silver", "Gold", "Platinum")
CURRENCIES = ("USD", "EUR", "GBP")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    label: str
    length: int = 0
    required: bool = False  # must be set on create (nillable=false, no default)
    createable: bool = True
    updateable: bool = True
    custom: bool = False
    filterable: bool = True
    sortable: bool = True
    picklist: tuple[str, ...] = ()
    restricted: bool = False  # restricted picklist: other values are rejected on write
    reference_to: tuple[str, ...] = ()
    relationship: str | None = None  # AccountId -> "Account"
    compound: tuple[str, ...] = ()  # address fields: component field names (read-only)

    @property
    def stored(self) -> bool:
        return not self.compound


@dataclass
class ObjectSchema:
    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[Field, ...]
    required_note: str = ""
    writable: bool = True
    by_lower: dict[str, Field] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)  # stored field name -> slot
    relationships: dict[str, Field] = field(default_factory=dict)  # lower relationship name
    stored_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        stored = [f for f in self.fields if f.stored]
        self.stored_names = tuple(f.name for f in stored)
        self.index = {name: slot for slot, name in enumerate(self.stored_names)}
        self.by_lower = {f.name.lower(): f for f in self.fields}
        self.relationships = {
            f.relationship.lower(): f for f in self.fields if f.relationship is not None
        }

    def field(self, name: str) -> Field | None:
        """Field by API name, case-insensitively (Salesforce names are case-insensitive)."""
        return self.by_lower.get(name.lower())


# -- field builders -------------------------------------------------------------------------


def _text(name: str, label: str, length: int = 255, **kw: object) -> Field:
    return Field(name, "string", label, length, **kw)  # type: ignore[arg-type]


def _long_text(name: str, label: str, length: int = 32000) -> Field:
    # CONTRACTS/SOQL docs: long text areas cannot be filtered or sorted.
    return Field(name, "textarea", label, length, filterable=False, sortable=False)


def _pick(name: str, label: str, values: tuple[str, ...], **kw: object) -> Field:
    return Field(name, "picklist", label, 255, picklist=values, **kw)  # type: ignore[arg-type]


def _ref(name: str, label: str, to: tuple[str, ...], relationship: str, **kw: object) -> Field:
    kw.update(reference_to=to, relationship=relationship)
    return Field(name, "reference", label, 18, **kw)  # type: ignore[arg-type]


def _read_only(f: Field) -> Field:
    return Field(**{**f.__dict__, "createable": False, "updateable": False})


def _address(prefix: str, label: str) -> tuple[Field, ...]:
    parts = ("Street", "City", "State", "PostalCode", "Country")
    lengths = {"Street": 255, "City": 40, "State": 80, "PostalCode": 20, "Country": 80}
    fields = [
        Field(f"{prefix}{part}", "textarea" if part == "Street" else "string",
              f"{label} {part}", lengths[part])
        for part in parts
    ]  # fmt: skip
    fields.append(
        Field(f"{prefix}Address", "address", f"{label} Address", createable=False,
              updateable=False, filterable=False, sortable=False,
              compound=tuple(f.name for f in fields))
    )  # fmt: skip
    return tuple(fields)


def _system(head: tuple[Field, ...], body: tuple[Field, ...], owner: bool = True) -> tuple:
    """Id and IsDeleted first, the object's fields, then ownership and audit fields."""
    user = ("User",)
    audit = (
        *((_ref("OwnerId", "Owner ID", user, "Owner"),) if owner else ()),
        _read_only(Field("CreatedDate", "datetime", "Created Date")),
        _read_only(_ref("CreatedById", "Created By ID", user, "CreatedBy")),
        _read_only(Field("LastModifiedDate", "datetime", "Last Modified Date")),
        _read_only(_ref("LastModifiedById", "Last Modified By ID", user, "LastModifiedBy")),
        _read_only(Field("SystemModstamp", "datetime", "System Modstamp")),
    )
    return (
        _read_only(Field("Id", "id", "Record ID", 18)),
        _read_only(Field("IsDeleted", "boolean", "Deleted")),
        *head,
        *body,
        *audit,
    )


WHO = ("Contact", "Lead")
WHAT = ("Account", "Opportunity")

SCHEMAS: dict[str, ObjectSchema] = {}


def _register(schema: ObjectSchema) -> None:
    SCHEMAS[schema.name] = schema


_register(ObjectSchema("User", "User", "Users", "005", _system((), (
    _text("Username", "Username", 80),
    _text("LastName", "Last Name", 80),
    _text("FirstName", "First Name", 40),
    _read_only(_text("Name", "Full Name", 121)),
    Field("Email", "email", "Email", 128),
    _text("Alias", "Alias", 8),
    _text("Title", "Title", 80),
    Field("IsActive", "boolean", "Active"),
    _pick("TimeZoneSidKey", "Time Zone", ("America/Los_Angeles", "Europe/London", "GMT")),
    _pick("UserType", "User Type", ("Standard",)),
), owner=False), writable=False))  # fmt: skip

_register(ObjectSchema("Account", "Account", "Accounts", "001", _system((
    _text("Name", "Account Name", 255, required=True),
    _pick("Type", "Account Type", ACCOUNT_TYPES),
    _ref("ParentId", "Parent Account ID", ("Account",), "Parent"),
), (
    *_address("Billing", "Billing"),
    Field("Phone", "phone", "Account Phone", 40),
    _text("AccountNumber", "Account Number", 40),
    Field("Website", "url", "Website", 255),
    _pick("Industry", "Industry", INDUSTRIES),
    Field("AnnualRevenue", "currency", "Annual Revenue"),
    Field("NumberOfEmployees", "int", "Employees"),
    _pick("Rating", "Account Rating", RATINGS),
    _long_text("Description", "Account Description"),
    _pick("SLA__c", "SLA", TIERS, custom=True),
    Field("Customer_Since__c", "date", "Customer Since", custom=True),
))))  # fmt: skip

_register(ObjectSchema("Contact", "Contact", "Contacts", "003", _system((
    _ref("AccountId", "Account ID", ("Account",), "Account"),
    _text("LastName", "Last Name", 80, required=True),
    _text("FirstName", "First Name", 40),
    _pick("Salutation", "Salutation", SALUTATIONS),
    _read_only(_text("Name", "Full Name", 121)),
), (
    *_address("Mailing", "Mailing"),
    Field("Phone", "phone", "Business Phone", 40),
    Field("MobilePhone", "phone", "Mobile Phone", 40),
    Field("Email", "email", "Email", 80),
    _text("Title", "Title", 128),
    _text("Department", "Department", 80),
    _pick("LeadSource", "Lead Source", LEAD_SOURCES),
    Field("Birthdate", "date", "Birthdate"),
    Field("HasOptedOutOfEmail", "boolean", "Email Opt Out"),
    Field("DoNotCall", "boolean", "Do Not Call"),
    _long_text("Description", "Contact Description"),
    _pick("Favorite_Color__c", "Favorite Color", COLORS, custom=True),
    _pick("Customer_Tier__c", "Customer Tier", TIERS, custom=True, restricted=True),
    Field("NPS_Score__c", "double", "NPS Score", custom=True),
))))  # fmt: skip

_register(ObjectSchema("Opportunity", "Opportunity", "Opportunities", "006", _system((
    _ref("AccountId", "Account ID", ("Account",), "Account"),
    _ref("ContactId", "Contact ID", ("Contact",), "Contact"),
    _text("Name", "Name", 120, required=True),
    _long_text("Description", "Description"),
), (
    _pick("StageName", "Stage", tuple(s[0] for s in OPPORTUNITY_STAGES), required=True,
          restricted=True),
    Field("Amount", "currency", "Amount"),
    Field("Probability", "percent", "Probability (%)"),
    Field("CloseDate", "date", "Close Date", required=True),
    _pick("Type", "Opportunity Type", OPPORTUNITY_TYPES),
    _text("NextStep", "Next Step", 255),
    _pick("LeadSource", "Lead Source", LEAD_SOURCES),
    _read_only(Field("IsClosed", "boolean", "Closed")),
    _read_only(Field("IsWon", "boolean", "Won")),
    _read_only(_pick("ForecastCategoryName", "Forecast Category",
                     ("Omitted", "Pipeline", "Best Case", "Commit", "Closed"))),
    _pick("CurrencyIsoCode", "Opportunity Currency", CURRENCIES, restricted=True),
))))  # fmt: skip

_register(ObjectSchema("Lead", "Lead", "Leads", "00Q", _system((
    _text("LastName", "Last Name", 80, required=True),
    _text("FirstName", "First Name", 40),
    _pick("Salutation", "Salutation", SALUTATIONS),
    _read_only(_text("Name", "Full Name", 121)),
), (
    _text("Title", "Title", 128),
    _text("Company", "Company", 255, required=True),
    _text("City", "City", 40),
    _text("Country", "Country", 80),
    Field("Phone", "phone", "Phone", 40),
    Field("MobilePhone", "phone", "Mobile Phone", 40),
    Field("Email", "email", "Email", 80),
    Field("Website", "url", "Website", 255),
    _long_text("Description", "Description"),
    _pick("LeadSource", "Lead Source", LEAD_SOURCES),
    _pick("Status", "Status", LEAD_STATUSES),
    _pick("Industry", "Industry", INDUSTRIES),
    _pick("Rating", "Rating", RATINGS),
    Field("AnnualRevenue", "currency", "Annual Revenue"),
    Field("NumberOfEmployees", "int", "Employees"),
    _read_only(Field("IsConverted", "boolean", "Converted")),
    _read_only(Field("ConvertedDate", "date", "Converted Date")),
    _read_only(_ref("ConvertedAccountId", "Converted Account ID", ("Account",),
                    "ConvertedAccount")),
    _read_only(_ref("ConvertedContactId", "Converted Contact ID", ("Contact",),
                    "ConvertedContact")),
))))  # fmt: skip

_ACTIVITY_LINKS = (
    _ref("WhoId", "Name ID", WHO, "Who"),
    _ref("WhatId", "Related To ID", WHAT, "What"),
)

_register(ObjectSchema("Task", "Task", "Tasks", "00T", _system(_ACTIVITY_LINKS, (
    Field("Subject", "combobox", "Subject", 255),
    Field("ActivityDate", "date", "Due Date Only"),
    _pick("Status", "Status", TASK_STATUSES, restricted=True),
    _pick("Priority", "Priority", TASK_PRIORITIES, restricted=True),
    _read_only(Field("IsHighPriority", "boolean", "High Priority")),
    _long_text("Description", "Description"),
    _read_only(Field("IsClosed", "boolean", "Closed")),
    # TaskSubtype can be set on create only (CONTRACTS 2.4: call logging uses 'Call').
    Field("TaskSubtype", "picklist", "Task Subtype", 40, updateable=False,
          picklist=TASK_SUBTYPES, restricted=True),
    Field("CallDurationInSeconds", "int", "Call Duration"),
    _pick("CallType", "Call Type", CALL_TYPES, restricted=True),
    _text("CallDisposition", "Call Result", 255),
    _text("CallObject", "Call Object Identifier", 255),
    _read_only(Field("CompletedDateTime", "datetime", "Completed Date/Time")),
))))  # fmt: skip

_register(ObjectSchema("Event", "Event", "Events", "00U", _system(_ACTIVITY_LINKS, (
    Field("Subject", "combobox", "Subject", 255),
    _text("Location", "Location", 255),
    Field("IsAllDayEvent", "boolean", "All-Day Event"),
    Field("ActivityDateTime", "datetime", "Due Date Time"),
    Field("ActivityDate", "date", "Due Date Only"),
    Field("DurationInMinutes", "int", "Duration"),
    Field("StartDateTime", "datetime", "Start Date Time"),
    Field("EndDateTime", "datetime", "End Date Time"),
    _long_text("Description", "Description"),
    _pick("ShowAs", "Show Time As", ("Busy", "OutOfOffice", "Free")),
))))  # fmt: skip

_register(ObjectSchema("Note", "Note", "Notes", "002", _system((
    _ref("ParentId", "Parent ID", ("Account", "Contact", "Opportunity", "Lead"), "Parent",
         required=True),
), (
    _text("Title", "Title", 255, required=True),
    Field("IsPrivate", "boolean", "Private"),
    _long_text("Body", "Body"),
))))  # fmt: skip

# Setup objects read by syncs (read-only): the stages (with their closed/won flags), the
# opportunity sales processes, and the org's currencies (a multicurrency org: CurrencyType
# exists there, with one corporate currency). Field lists follow the field reference; like the
# other objects here they carry IsDeleted and the audit fields (OpportunityStage and
# CurrencyType have no IsDeleted in a real org: a sync must not select it).
_register(ObjectSchema("OpportunityStage", "Opportunity Stage", "Opportunity Stages", "01J",
                       _system((), (
    _text("MasterLabel", "Master Label", 255),
    _text("ApiName", "Api Name", 255),
    Field("IsActive", "boolean", "Active"),
    Field("SortOrder", "int", "Sort Order"),
    Field("IsClosed", "boolean", "Closed"),
    Field("IsWon", "boolean", "Won"),
    _pick("ForecastCategoryName", "Forecast Category",
          ("Omitted", "Pipeline", "Best Case", "Commit", "Closed")),
    Field("DefaultProbability", "percent", "Default Probability (%)"),
    _text("Description", "Description", 255),
), owner=False), writable=False))  # fmt: skip

_register(ObjectSchema("BusinessProcess", "Business Process", "Business Processes", "019",
                       _system((), (
    _text("Name", "Name", 80),
    _text("Description", "Description", 255),
    _pick("TableEnumOrId", "Entity Enumeration Or ID", ("Opportunity", "Lead", "Case")),
    Field("IsActive", "boolean", "Active"),
), owner=False), writable=False))  # fmt: skip

_register(ObjectSchema("CurrencyType", "Currency Type", "Currency Types", "02D", _system((), (
    _pick("IsoCode", "Currency ISO Code", CURRENCIES),
    Field("ConversionRate", "double", "Conversion Rate"),
    Field("DecimalPlaces", "int", "Decimal Places"),
    Field("IsActive", "boolean", "Active"),
    Field("IsCorporate", "boolean", "Corporate Currency"),
), owner=False), writable=False))  # fmt: skip
CORPORATE_CURRENCY = "USD"
CONVERSION_RATES = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79}

# A deal's contacts and their roles (Salesforce's standard Role picklist). Read through the
# Opportunity's child relationship `OpportunityContactRoles` in a SOQL subquery, or directly.
OPPORTUNITY_CONTACT_ROLES = (
    "Business User", "Decision Maker", "Economic Buyer", "Economic Decision Maker", "Evaluator",
    "Executive Sponsor", "Influencer", "Technical Buyer", "Other",
)  # fmt: skip
_register(ObjectSchema("OpportunityContactRole", "Opportunity Contact Role",
                       "Opportunity Contact Role", "00K", _system((
    _ref("OpportunityId", "Opportunity ID", ("Opportunity",), "Opportunity", required=True),
    _ref("ContactId", "Contact ID", ("Contact",), "Contact", required=True),
), (
    _pick("Role", "Role", OPPORTUNITY_CONTACT_ROLES),
    Field("IsPrimary", "boolean", "Primary"),
), owner=False)))  # fmt: skip

# Parent-to-child relationships a SOQL subquery may name in its FROM:
# (parent object, relationship name lower-cased) -> (relationship name, child object, lookup).
CHILD_RELATIONSHIPS = {
    ("Opportunity", "opportunitycontactroles"):
        ("OpportunityContactRoles", "OpportunityContactRole", "OpportunityId"),
}
# Objects added after the first ones: their id counters come after, so earlier ids stay put.
LATER_OBJECTS = ("OpportunityContactRole",)

# Key prefix (first three id characters) -> object name.
PREFIXES = {schema.key_prefix: name for name, schema in SCHEMAS.items()}
# Object names are case-insensitive in SOQL FROM and in sobjects/{Type} URLs.
OBJECTS_BY_LOWER = {name.lower(): name for name in SCHEMAS}

# Fields every polymorphic ("Name") relationship offers: Who.Name, What.Type, Owner.Name...
NAME_FIELDS = ("Id", "Name", "Type")


def schema_for(name: str) -> ObjectSchema | None:
    canonical = OBJECTS_BY_LOWER.get(name.lower())
    return SCHEMAS[canonical] if canonical else None


def version_label(version: str) -> str:
    """Release name of an API version: 59.0 -> "Winter '24" (three releases a year)."""
    n = int(float(version)) - 59
    season = ("Winter", "Spring", "Summer")[n % 3]
    return f"{season} '{24 + n // 3:02d}"
