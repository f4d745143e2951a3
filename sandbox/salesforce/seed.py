"""Deterministic Salesforce seed data: the same seed and counts give identical records and ids.

Plain ``random.Random(seed)`` draws over small word lists. Values include what an engine must
carry through untouched or escape correctly in SOQL: a first name that is literally
``{{ 7*7 }}``, apostrophes (O'Brien), a backslash, LIKE wildcards, quotes, unicode, newlines,
nulls, mixed-case emails. Timestamps have second precision (``.000``) like real records, the
first records of each object share one bulk-import instant (ties for incremental syncs), and
a few records have a SystemModstamp later than their LastModifiedDate, as system updates do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.kit import seed_words
from sandbox.kit.seed_words import DEAL_WORDS, TASK_SUBJECTS
from sandbox.kit.seedkit import Draw, gc_paused, rising_ids, slugger
from sandbox.salesforce.ids import make_id
from sandbox.salesforce.schema import (
    ACCOUNT_TYPES,
    CALL_TYPES,
    COLORS,
    CONVERSION_RATES,
    CORPORATE_CURRENCY,
    CURRENCIES,
    INDUSTRIES,
    LEAD_SOURCES,
    LEAD_STATUSES,
    OPPORTUNITY_CONTACT_ROLES,
    OPPORTUNITY_STAGES,
    OPPORTUNITY_TYPES,
    RATINGS,
    SALUTATIONS,
    SCHEMAS,
    TASK_PRIORITIES,
    TASK_STATUSES,
    TIERS,
)
from sandbox.salesforce.store import Record, Store, first_number
from sandbox.salesforce.values import format_date, format_datetime

SEED_START = 1_704_067_200  # 2024-01-01T00:00:00Z
SEED_END = 1_777_620_337  # 2026-05-01T07:25:37Z (the recorded fixtures' bulk-load instant)
IMPORT_AT = 1_705_311_000  # 2024-01-15T09:30:00Z: the org's initial data import

# (first, last, email, title); the first user is the API user every token acts as.
USERS = (
    ("Sandbox", "Admin", "admin@sandbox-org.example", "System Administrator"),
    ("Maria", "Lopez", "maria.lopez@sandbox-org.example", "Account Executive"),
    ("Sam", "Okafor", "sam.okafor@sandbox-org.example", "Sales Manager"),
    ("Li", "Wei", "li.wei@sandbox-org.example", "Account Executive"),
    ("Anna", "Berg", "anna.berg@sandbox-org.example", "Sales Development Rep"),
)

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Rose", "Tim", "Sean", "Mark",
    "José", "Zoë", "Łukasz", "Søren", "Aoife", "Chloé", "Björn", "Mei", "Priya", "Olúwaseun",
    "Renée", "Jürgen", "Ana María", "Jean-Luc",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Gonzalez", "Wilson", "Anderson", "Taylor", "Moore", "Jackson", "Martin", "Lee",
    "Thompson", "White", "Harris", "Clark", "Forbes", "Barr", "O'Brien", "D'Angelo", "Müller",
    "García", "van der Berg", "Smith-Jones", "Nguyễn", "Kowalski", "Dubois", "Rossi",
    "Yamamoto", "Ó Súilleabháin",
)  # fmt: skip
# Contact index -> (FirstName, LastName): values that break naive templating or SOQL building.
TRICKY_CONTACTS = {
    1: ("{{ 7*7 }}", "Template"),
    2: ("Conan", "O'Brien"),
    3: ('Robert"); DROP TABLE Contact;--', "Tables"),
    4: ("Back", "Slash\\Name"),
    5: ("50%_off", "Wildcard"),
    6: ("Anne, Marie", "Comma"),
}
TITLES = (
    "CEO", "CFO", "SVP, Procurement", "VP Sales", "Account Executive", "Marketing Manager",
    "Engineer", "Operations Lead", "Procurement Officer", "Office Manager", "Data Analyst",
)  # fmt: skip
DEPARTMENTS = ("Finance", "Procurement", "Sales", "Marketing", "Engineering", "Operations")
COMPANY_HEADS = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Soylent", "Tyrell", "Wonka",
    "Stark", "Wayne", "Cyberdyne", "Gringotts", "Nakatomi", "Oceanic", "Massive Dynamic",
    "Bluth", "Pied Piper", "Dunder Mifflin", "Edge", "Burlington", "GenePoint",
)  # fmt: skip
COMPANY_TAILS = (*seed_words.COMPANY_TAILS, "Communications", "Textiles Corp")
PLACES = (
    ("Austin", "TX", "United States", "78767"), ("Burlington", "NC", "USA", "27215"),
    ("Mountain View", "CA", "United States", "94043"), ("Berlin", None, "Germany", "10115"),
    ("Dublin", None, "Ireland", "D02"), ("São Paulo", "SP", "Brazil", "01000-000"),
    ("Kraków", None, "Poland", "30-001"), ("Tokyo", None, "Japan", "100-0001"),
    ("Montréal", "QC", "Canada", "H2X"), ("Sydney", "NSW", "Australia", "2000"),
)  # fmt: skip
STREETS = ("Constitution Place", "Michigan Avenue", "Main Street", "Market St", "Rue Cartier")
CALL_SUBJECTS = ("Call", "Discovery call", "Demo call", "Pricing call", "Support call")
CALL_RESULTS = ("Connected", "Left voicemail", "No answer", "Busy", "Wrong number")
EVENT_SUBJECTS = ("Meeting", "Demo", "Lunch", "Quarterly review", "Onsite workshop")
CONTACT_NOTE = "Met at \"Dreamforce\".\nLikes 'quotes' & <tags>."
NOTE_BODIES = (
    "Called, left voicemail.",
    "Met at the conference & swapped cards.\nFollow up in Q3.",
    "Prefers email. Timezone: CET.",
    "Budget approved — send contract",
)
_slug = slugger("x")  # names and companies in e-mail addresses and websites


class _Timeline:
    """Created rising with the record index; modified between then and the end; the first
    ~3% share the import instant."""

    def __init__(self, draw: Draw, count: int) -> None:
        self._draw = draw
        self._imported = max(1, count * 3 // 100) if count >= 10 else 0
        self._step = max(1, (SEED_END - IMPORT_AT) // max(count, 1))
        stamp = format_datetime(IMPORT_AT)
        self._import_stamps = (stamp, stamp, stamp)

    def stamps(self, index: int) -> tuple[str, str, str]:
        """(CreatedDate, LastModifiedDate, SystemModstamp)."""
        if index < self._imported:
            return self._import_stamps
        draw = self._draw
        created = IMPORT_AT + index * self._step + draw.below(self._step)
        modified = created + int((SEED_END - created) * draw.random() ** 3)
        modified_text = format_datetime(modified)
        if draw.random() < 0.03:  # a later system update: SystemModstamp > LastModifiedDate
            return (
                format_datetime(created),
                modified_text,
                format_datetime(modified + 1 + draw.below(36_000)),
            )
        return format_datetime(created), modified_text, modified_text


def _numbers(draw: Draw, object_name: str, count: int) -> list[int]:
    """Increasing id counters with small gaps, all drawn before the records' values."""
    return list(rising_ids(draw, first_number(object_name), count, max_step=3))


def populate(
    store: Store,
    seed: int,
    *,
    contacts: int,
    companies: int,
    deals: int,
    leads: int = 0,
    tasks: int = 0,
    events: int = 0,
    notes: int = 0,
) -> str:
    """Fill ``store``; returns the API user's id."""
    draw = Draw(seed)
    with gc_paused():
        users = _seed_users(store)
        admin = users[0]
        _seed_setup(store, admin)
        accounts = _seed(store, "Account", companies, draw, users, _account)
        domains = [(r.id, _domain(store, r)) for r in accounts]
        named = [(r.id, store.value(r, "Name")) for r in accounts]
        contact_rows = _seed(
            store, "Contact", contacts, draw, users, lambda d, i: _contact(d, i, domains)
        )
        opportunities = _seed(
            store,
            "Opportunity",
            deals,
            draw,
            users,
            lambda d, i: _opportunity(d, i, named, contact_rows),
        )
        lead_rows = _seed(store, "Lead", leads, draw, users, _lead)
        who = [r.id for r in contact_rows] + [r.id for r in lead_rows]
        what = [r.id for r in accounts] + [r.id for r in opportunities]
        _seed(store, "Task", tasks, draw, users, lambda d, i: _task(d, i, who, what))
        _seed(store, "Event", events, draw, users, lambda d, i: _event(d, i, who, what))
        parents = [r.id for r in contact_rows] + what
        _seed(store, "Note", notes, draw, users, lambda d, i: _note(d, i, parents))
        # A draw of their own: the records above stay as they were before contact roles.
        roles_draw = Draw(seed + 1)
        roles = _contact_roles(roles_draw, store, opportunities, contact_rows)
        _seed(store, "OpportunityContactRole", len(roles), roles_draw, users,
              lambda d, i: roles[i])
    return admin


def _contact_roles(draw: Draw, store: Store, opportunities: list, contacts: list) -> list[dict]:
    """The opportunity's ContactId as its primary contact role; about half the deals also
    name another contact, in a role of its own."""
    roles = []
    for opportunity in opportunities:
        primary = store.value(opportunity, "ContactId")
        if primary:
            roles.append({"OpportunityId": opportunity.id, "ContactId": primary,
                          "Role": draw.pick(("Decision Maker", "Economic Buyer")),
                          "IsPrimary": True})
        other = draw.pick(contacts).id if contacts and draw.random() < 0.5 else None
        if other and other != primary:
            roles.append({"OpportunityId": opportunity.id, "ContactId": other,
                          "Role": draw.pick(OPPORTUNITY_CONTACT_ROLES), "IsPrimary": False})
    return roles


def first_id(object_name: str) -> str:
    return make_id(SCHEMAS[object_name].key_prefix, first_number(object_name))


def _seed_users(store: Store) -> list[str]:
    stamp = format_datetime(SEED_START)
    rows = []
    for index, (first, last, email, title) in enumerate(USERS):
        rows.append(
            (
                first_number("User") + index,
                {
                    "Username": email,
                    "FirstName": first,
                    "LastName": last,
                    "Email": email,
                    "Alias": (first[0] + last)[:8].lower(),
                    "Title": title,
                    "IsActive": True,
                    "TimeZoneSidKey": "GMT",
                    "UserType": "Standard",
                    "CreatedDate": stamp,
                    "LastModifiedDate": stamp,
                    "SystemModstamp": stamp,
                },
            )
        )
    # Users are created by the admin, the admin included: its id is known once loaded.
    admin = first_id("User")
    for _, values in rows:
        values["CreatedById"] = values["LastModifiedById"] = admin
    return [record.id for record in store.load("User", rows)]


def _seed_setup(store: Store, admin: str) -> None:
    """The org's stages (from the Opportunity StageName picklist), its one opportunity sales
    process, and its currencies."""
    stamp = format_datetime(SEED_START)
    audit = {"CreatedDate": stamp, "LastModifiedDate": stamp, "SystemModstamp": stamp,
             "CreatedById": admin, "LastModifiedById": admin, "IsDeleted": False}
    store.load("OpportunityStage", [
        (first_number("OpportunityStage") + order,
         {"MasterLabel": name, "ApiName": name, "IsActive": True, "SortOrder": order + 1,
          "IsClosed": closed, "IsWon": won, "ForecastCategoryName": forecast,
          "DefaultProbability": probability, **audit})
        for order, (name, probability, forecast, closed, won) in enumerate(OPPORTUNITY_STAGES)
    ])
    store.load("BusinessProcess", [(first_number("BusinessProcess"), {
        "Name": "Standard Sales Process", "TableEnumOrId": "Opportunity", "IsActive": True,
        "Description": "The stages every opportunity moves through", **audit})])
    store.load("CurrencyType", [
        (first_number("CurrencyType") + index,
         {"IsoCode": code, "ConversionRate": rate, "DecimalPlaces": 2, "IsActive": True,
          "IsCorporate": code == CORPORATE_CURRENCY, **audit})
        for index, (code, rate) in enumerate(CONVERSION_RATES.items())
    ])


def _seed(
    store: Store,
    object_name: str,
    count: int,
    draw: Draw,
    users: list[str],
    make: Callable[[Draw, int], dict[str, Any]],
) -> list:
    timeline = _Timeline(draw, count)
    admin, owners = users[0], users[1:]
    pick, stamps = draw.pick, timeline.stamps
    rows = []
    for index, number in enumerate(_numbers(draw, object_name, count)):
        values = make(draw, index)
        owner = pick(owners)
        created, modified, system = stamps(index)
        values["OwnerId"] = owner
        values["CreatedDate"] = created
        values["LastModifiedDate"] = modified
        values["SystemModstamp"] = system
        values["CreatedById"] = values["LastModifiedById"] = admin
        values["IsDeleted"] = False
        rows.append((number, values))
    return store.load(object_name, rows)


def _domain(store: Store, account: Record) -> str:
    website = store.value(account, "Website")
    return website.removeprefix("www.") if website else "example.com"


def _account(draw: Draw, index: int) -> dict[str, Any]:
    rand, pick = draw.random, draw.pick
    head, tail = pick(COMPANY_HEADS), pick(COMPANY_TAILS)
    city, state, country, postal = pick(PLACES)
    name = f"{head} {tail}" if index % 7 else f"{head} {tail} #{index}"
    return {
        "Name": name,
        "Type": draw.maybe(0.8, pick(ACCOUNT_TYPES)),
        "BillingStreet": draw.maybe(0.7, f"{100 + draw.below(900)} {pick(STREETS)}"),
        "BillingCity": draw.maybe(0.9, city),
        "BillingState": state,
        "BillingPostalCode": draw.maybe(0.6, postal),
        "BillingCountry": country,
        "Phone": draw.maybe(0.7, f"({200 + draw.below(800)}) 555-{1000 + draw.below(9000)}"),
        "AccountNumber": draw.maybe(0.5, f"CD{100000 + draw.below(900000)}"),
        "Website": f"www.{_slug(head)}{index}.example.com" if rand() < 0.85 else None,
        "Industry": draw.maybe(0.8, pick(INDUSTRIES)),
        "AnnualRevenue": float((1 + draw.below(500)) * 250_000) if rand() < 0.6 else None,
        "NumberOfEmployees": draw.maybe(0.7, 5 + draw.below(5000)),
        "Rating": draw.maybe(0.5, pick(RATINGS)),
        "Description": draw.maybe(0.3, f"{name} is a customer.\nKey contact: procurement."),
        "SLA__c": draw.maybe(0.5, pick(TIERS)),
        "Customer_Since__c": format_date(SEED_START - draw.below(3000) * 86400)
        if rand() < 0.4
        else None,
    }


def _contact(draw: Draw, index: int, accounts: list[tuple[str, str]]) -> dict[str, Any]:
    # The hottest seeding loop (100,000 contacts in well under 3 s): optional values are drawn
    # inline so nothing is formatted unless it is kept.
    rand, pick, below = draw.random, draw.pick, draw.below
    first, last = TRICKY_CONTACTS.get(index) or (pick(FIRST_NAMES), pick(LAST_NAMES))
    account_id, domain = pick(accounts) if accounts and rand() < 0.8 else (None, None)
    email = None
    if index % 41 != 9:  # a few contacts have no email
        email = f"{_slug(first)}.{_slug(last)}.{index}@{domain or 'mail.example.org'}"
        if index % 13 == 4:  # stored mixed case; SOQL = must still match
            email = email.capitalize()
    city, state, country, postal = pick(PLACES)
    return {
        "FirstName": first if index in TRICKY_CONTACTS or rand() < 0.97 else None,
        "LastName": last,
        "AccountId": account_id,
        "Email": email,
        "Salutation": pick(SALUTATIONS) if rand() < 0.4 else None,
        "Phone": f"({200 + below(800)}) 555-{1000 + below(9000)}" if rand() < 0.7 else None,
        "MobilePhone": f"+1 {200 + below(800)} 555 {1000 + below(9000)}" if rand() < 0.5 else None,
        "Title": pick(TITLES) if rand() < 0.75 else None,
        "Department": pick(DEPARTMENTS) if rand() < 0.5 else None,
        "LeadSource": pick(LEAD_SOURCES) if rand() < 0.6 else None,
        "MailingStreet": f"{1 + below(999)} {pick(STREETS)}\n{city}, {country}"
        if rand() < 0.4
        else None,
        "MailingCity": city if rand() < 0.6 else None,
        "MailingState": state,
        "MailingPostalCode": postal if rand() < 0.5 else None,
        "MailingCountry": country if rand() < 0.6 else None,
        "Birthdate": format_date(315_532_800 + below(12_000) * 86400) if rand() < 0.3 else None,
        "HasOptedOutOfEmail": rand() < 0.1,
        "DoNotCall": rand() < 0.05,
        "Description": CONTACT_NOTE if rand() < 0.1 else None,
        "Favorite_Color__c": pick(COLORS) if rand() < 0.5 else None,
        "Customer_Tier__c": pick(TIERS) if rand() < 0.6 else None,
        "NPS_Score__c": float(below(11)) if rand() < 0.4 else None,
    }


def _opportunity(
    draw: Draw, index: int, accounts: list[tuple[str, str]], contacts: list
) -> dict[str, Any]:
    pick = draw.pick
    account_id, label = pick(accounts) if accounts else (None, "Direct")
    stage = pick(OPPORTUNITY_STAGES)[0]
    close = SEED_START + draw.below(SEED_END - SEED_START + 180 * 86400)
    return {
        "Name": f"{label} - {pick(DEAL_WORDS)}",
        "AccountId": account_id,
        "ContactId": pick(contacts).id if contacts and draw.random() < 0.6 else None,
        "StageName": stage,
        "Amount": float((5 + draw.below(1995)) * 50) if draw.random() < 0.9 else None,
        "CloseDate": format_date(close),
        "Type": draw.maybe(0.7, pick(OPPORTUNITY_TYPES)),
        "NextStep": draw.maybe(0.4, "Send revised quote"),
        "LeadSource": draw.maybe(0.5, pick(LEAD_SOURCES)),
        "CurrencyIsoCode": pick(("USD", "USD", *CURRENCIES)),
    }


def _lead(draw: Draw, index: int) -> dict[str, Any]:
    pick = draw.pick
    first, last = pick(FIRST_NAMES), pick(LAST_NAMES)
    company = f"{pick(COMPANY_HEADS)} {pick(COMPANY_TAILS)}"
    city, _, country, _ = pick(PLACES)
    return {
        "FirstName": first,
        "LastName": last,
        "Company": company,
        "Email": draw.maybe(0.9, f"{_slug(first)}.{_slug(last)}.lead{index}@example.net"),
        "Phone": draw.maybe(0.6, f"(555) 010-{1000 + draw.below(9000)}"),
        "Title": draw.maybe(0.6, pick(TITLES)),
        "Status": pick(LEAD_STATUSES),
        "LeadSource": draw.maybe(0.7, pick(LEAD_SOURCES)),
        "Industry": draw.maybe(0.5, pick(INDUSTRIES)),
        "Rating": draw.maybe(0.4, pick(RATINGS)),
        "City": city,
        "Country": country,
    }


def _task(draw: Draw, index: int, who: list[str], what: list[str]) -> dict[str, Any]:
    pick = draw.pick
    kind = pick(("Task", "Task", "Call", "Call", "Email"))
    status = pick(TASK_STATUSES)
    values: dict[str, Any] = {
        "Subject": pick(CALL_SUBJECTS if kind == "Call" else TASK_SUBJECTS),
        "Status": status,
        "Priority": pick(TASK_PRIORITIES),
        "ActivityDate": format_date(SEED_START + draw.below(SEED_END - SEED_START)),
        "Description": draw.maybe(0.5, "Agenda:\n- pricing\n- next steps"),
        "WhoId": pick(who) if who else None,
        "WhatId": pick(what) if what and draw.random() < 0.6 else None,
        "TaskSubtype": kind,
    }
    if kind == "Call":  # CONTRACTS 2.4: call logging fields
        values.update(
            CallType=pick(CALL_TYPES),
            CallDurationInSeconds=draw.below(3600),
            CallDisposition=pick(CALL_RESULTS),
        )
    return values


def _event(draw: Draw, index: int, who: list[str], what: list[str]) -> dict[str, Any]:
    start = SEED_START + draw.below(SEED_END - SEED_START)
    start -= start % 1800  # on the half hour
    return {
        "Subject": draw.pick(EVENT_SUBJECTS),
        "StartDateTime": format_datetime(start),
        "DurationInMinutes": draw.pick((30, 30, 60, 90)),
        "Location": draw.maybe(0.5, draw.pick(("Zoom", "HQ, room 4", "Customer site"))),
        "Description": draw.maybe(0.3, "Bring the pricing deck."),
        "WhoId": draw.pick(who) if who else None,
        "WhatId": draw.pick(what) if what and draw.random() < 0.6 else None,
        "ShowAs": "Busy",
        "IsAllDayEvent": False,
    }


def _note(draw: Draw, index: int, parents: list[str]) -> dict[str, Any]:
    return {
        "ParentId": draw.pick(parents) if parents else None,
        "Title": f"Note {index + 1}",
        "Body": draw.pick(NOTE_BODIES),
        "IsPrivate": draw.random() < 0.1,
    }
