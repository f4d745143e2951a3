"""Deterministic Zoho CRM seed data: the same seed, counts and org offset give identical records.

Plain ``random.Random(seed)`` draws over small word lists. Values include what an engine must
carry through untouched: a first name that is literally ``{{ 7*7 }}``, names with ``(``, ``)``
and ``,`` (criteria escaping, CONTRACTS 4.5), quotes, unicode, nulls and mixed-case emails.
Lookups are ``{name, id}`` objects and users ``{name, id, email}`` (CONTRACTS 4.3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sandbox.kit.seed_words import (
    CALL_TITLES,
    COLORS,
    COMPANY_TAILS,
    DEAL_WORDS,
    JOB_TITLES,
    TASK_SUBJECTS,
)
from sandbox.kit.seedkit import Draw, Timeline, gc_paused, rising_ids, slugger
from sandbox.zoho.schema import (
    ACCOUNT_TYPES,
    CALL_PURPOSES,
    CALL_RESULTS,
    CUSTOMER_TIERS,
    DEAL_TYPES,
    INDUSTRIES,
    LEAD_SOURCES,
    MODULES,
    PIPELINE,
    STAGE_PROBABILITY,
    TASK_PRIORITIES,
    TASK_STATUSES,
    USERS,
    owner_ref,
)
from sandbox.zoho.store import Store
from sandbox.zoho.time import OrgTime, clock_table, day_text

SEED_START = 1_672_531_200  # 2023-01-01T00:00:00Z; API writes use the sandbox clock instead
SEED_END = 1_767_225_600  # 2026-01-01T00:00:00Z

USER_REFS = tuple(owner_ref(user) for user in USERS)

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Wanjiku", "Otieno", "Achieng", "Kamau", "José", "Zoë", "Łukasz", "Søren", "Aoife", "Chloé",
    "Björn", "Mei", "Priya", "Olúwaseun", "Renée", "Jürgen", "Ana María", "Jean-Luc",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Lopez", "Wilson", "Anderson", "Taylor", "Moore", "Jackson", "Martin", "Lee",
    "Mwangi", "Odhiambo", "Njoroge", "O'Brien", "Müller", "van der Berg", "Smith-Jones",
    "Nguyễn", "Kowalski", "Dubois", "Rossi", "Yamamoto", "Ó Súilleabháin",
)  # fmt: skip
# contact index -> (first name, last name or None for a random one). Structure characters of
# the search criteria syntax in names: ( ) , and a template-looking name.
TRICKY_NAMES: dict[int, tuple[str, str | None]] = {
    7: ("{{ 7*7 }}", None),
    14: ("Patricia(Boyle)", None),  # the Kaizen #82 escaping example
    21: ("Marie", "Burns,B"),  # the Kaizen #30 escaping example
    28: ("Anne", "O'Hara (Sales), EMEA"),
    35: ('Robert"); DROP TABLE contacts;--', None),
}
COMPANY_HEADS = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Soylent", "Tyrell", "Wonka",
    "Stark", "Wayne", "Cyberdyne", "Nakatomi", "Oceanic", "Massive Dynamic", "Bluth",
    "Pied Piper", "Dunder Mifflin", "Prestige", "Monarch", "Aperture", "Safari",
)  # fmt: skip
PLACES = (
    ("Nairobi", "Kenya"), ("Mombasa", "Kenya"), ("Boston", "United States"),
    ("Austin", "United States"), ("Berlin", "Germany"), ("Dublin", "Ireland"),
    ("São Paulo", "Brazil"), ("Kraków", "Poland"), ("Tokyo", "Japan"), ("Lagos", "Nigeria"),
    ("Montréal", "Canada"), ("Sydney", "Australia"),
)  # fmt: skip
NOTE_TITLES = ("Info", "Deal details", "Call summary", "Next steps", None)
NOTE_BODIES = (
    "Called, left voicemail.",
    "Interested in learning more",
    "Prefers email. Timezone: EAT (+03:00).",
    "Budget approved — send contract (v2), then follow up",
    "100 subscriptions deal. Details has been sent",
)
_slug = slugger("contact")


def lookup_ref(name: str | None, record_id: int) -> dict[str, str | None]:
    return {"name": name, "id": str(record_id)}


def _timeline(draw: Draw, count: int) -> Timeline:
    return Timeline(draw, count, SEED_START, SEED_END)


def _ids(draw: Draw, module: str, count: int) -> Iterator[int]:
    # From a random point past the module's first id; each next id is drawn as it is needed.
    return rising_ids(draw, MODULES[module].first_id + 1 + draw.below(50), count, max_step=9)


Row = tuple[int, dict[str, Any], int, int]
Refs = list[tuple[int, str]]  # (id, name) of the records a lookup may point at


def populate(
    store: Store,
    seed: int,
    org: OrgTime,
    *,
    contacts: int,
    companies: int,
    deals: int,
    tasks: int = 0,
    calls: int = 0,
    notes: int = 0,
    events: int = 0,
) -> None:
    draw = Draw(seed)
    with gc_paused():
        accounts = list(_account_rows(draw, org, companies))
        store.load("Accounts", accounts)
        store.load("Contacts", _contact_rows(draw, org, contacts, accounts))
        contacts_table = store.table("Contacts")
        people = [(i, contacts_table.records[i].doc["Full_Name"]) for i in contacts_table.ids]
        firms = [(row[0], row[1]["Account_Name"]) for row in accounts]
        deal_rows = list(_deal_rows(draw, org, deals, firms, people))
        store.load("Deals", deal_rows)
        sales = [(row[0], row[1]["Deal_Name"]) for row in deal_rows]
        for module, count, make_doc in (("Tasks", tasks, _task_doc), ("Calls", calls, _call_doc)):
            store.load(
                module, _activity_rows(draw, org, module, count, make_doc, people, firms, sales)
            )
        store.load("Notes", _note_rows(draw, org, notes, people, firms, sales))
        # Last, so the records above stay as they were before events.
        store.load("Events", _activity_rows(draw, org, "Events", events, _event_doc, people,
                                            firms, sales))


def _audit(draw: Draw, org: OrgTime, created: int, modified: int) -> dict[str, Any]:
    """Owner, Created_*/Modified_* of a seed record."""
    return {
        "Owner": draw.pick(USER_REFS),
        "Created_Time": org.format(created),
        "Modified_Time": org.format(modified),
        "Created_By": draw.pick(USER_REFS),
        "Modified_By": draw.pick(USER_REFS),
    }


def _account_rows(draw: Draw, org: OrgTime, count: int) -> Iterator[Row]:
    timeline = _timeline(draw, count)
    rand, pick = draw.random, draw.pick
    seen: set[str] = set()
    for index, account_id in enumerate(_ids(draw, "Accounts", count)):
        head, tail = pick(COMPANY_HEADS), pick(COMPANY_TAILS)
        name = f"{head} {tail}"
        if name in seen:
            name = f"{name} {index}"
        seen.add(name)
        city, country = pick(PLACES)
        created, modified = timeline.span(index)
        doc: dict[str, Any] = {
            "Account_Name": name,
            "Website": f"https://{_slug(head)}{index}.example.com",
            "Billing_Country": country,
            **_audit(draw, org, created, modified),
        }
        if rand() < 0.85:
            doc["Billing_City"] = city
        if rand() < 0.6:
            doc["Phone"] = f"+254 20 {1_000_000 + draw.below(9_000_000)}"
        if rand() < 0.8:
            doc["Industry"] = pick(INDUSTRIES)
        if rand() < 0.7:
            doc["Account_Type"] = pick(ACCOUNT_TYPES)
        if rand() < 0.5:
            doc["Employees"] = 5 + draw.below(5000)
            doc["Annual_Revenue"] = (10 + draw.below(9990)) * 1000
        yield account_id, doc, created, modified


def _contact_rows(draw: Draw, org: OrgTime, count: int, accounts: list[Row]) -> Iterator[Row]:
    """Contacts; ~80% belong to an account (Account_Name lookup).

    The hot loop of a 100,000-contact seed: draws and time formatting are inlined."""
    rand = draw.random
    users, n_users = USER_REFS, len(USER_REFS)
    firsts, lasts = FIRST_NAMES, LAST_NAMES
    titles, sources, places = JOB_TITLES, LEAD_SOURCES, PLACES
    colors, tiers = COLORS, CUSTOMER_TIERS
    account_refs = [
        (lookup_ref(doc["Account_Name"], i), doc["Website"].removeprefix("https://"))
        for i, doc, _, _ in accounts
    ]
    n_accounts = len(account_refs)
    clock, day, offset, suffix = clock_table(), day_text, org.offset, org.offset_text
    step = (SEED_END - SEED_START) // max(count, 1)
    slug = _slug
    for index, contact_id in enumerate(_ids(draw, "Contacts", count)):
        tricky = TRICKY_NAMES.get(index)
        first, last = tricky if tricky else (None, None)
        first = first or firsts[int(rand() * len(firsts))]
        last = last or lasts[int(rand() * len(lasts))]
        created = SEED_START + index * step + int(rand() * step)
        modified = created + int((SEED_END - created) * rand() ** 2)
        local_created, local_modified = created + offset, modified + offset
        doc: dict[str, Any] = {
            "Last_Name": last,
            "Owner": users[int(rand() * n_users)],
            "Created_Time": day(local_created // 86400) + clock[local_created % 86400] + suffix,
            "Modified_Time": day(local_modified // 86400) + clock[local_modified % 86400] + suffix,
            "Created_By": users[int(rand() * n_users)],
            "Modified_By": users[int(rand() * n_users)],
        }
        if tricky or rand() < 0.95:
            doc["First_Name"] = first
            doc["Full_Name"] = f"{first} {last}"
        else:
            doc["Full_Name"] = last
        domain = "mail.example.org"
        if n_accounts and rand() < 0.8:
            doc["Account_Name"], domain = account_refs[int(rand() * n_accounts)]
        if index % 37 != 5:  # a few contacts have no email
            email = f"{slug(first)}.{slug(last)}.{index}@{domain}"
            # Some are stored mixed case: email search and DUPLICATE_DATA ignore case.
            doc["Email"] = email.capitalize() if index % 11 == 3 else email
        if rand() < 0.7:
            doc["Phone"] = f"+1-555-{100 + int(rand() * 900)}-{1000 + int(rand() * 9000)}"
        if rand() < 0.4:
            doc["Mobile"] = f"+254 7{int(rand() * 100):02d} {100_000 + int(rand() * 900_000)}"
        if rand() < 0.75:
            doc["Title"] = titles[int(rand() * len(titles))]
        if rand() < 0.6:
            doc["Lead_Source"] = sources[int(rand() * len(sources))]
        if rand() < 0.6:
            doc["Mailing_City"], doc["Mailing_Country"] = places[int(rand() * len(places))]
        if rand() < 0.5:
            doc["Favorite_Color"] = colors[int(rand() * len(colors))]
        if rand() < 0.6:
            doc["Customer_Tier"] = tiers[int(rand() * len(tiers))]
        yield contact_id, doc, created, modified


def _deal_rows(draw: Draw, org: OrgTime, count: int, firms: Refs, people: Refs) -> Iterator[Row]:
    timeline = _timeline(draw, count)
    rand, pick = draw.random, draw.pick
    stages = tuple(STAGE_PROBABILITY)
    for index, deal_id in enumerate(_ids(draw, "Deals", count)):
        created, modified = timeline.span(index)
        stage = pick(stages)
        label = "Direct"
        doc: dict[str, Any] = {"Stage": stage, "Probability": STAGE_PROBABILITY[stage]}
        if firms:
            account_id, label = pick(firms)
            doc["Account_Name"] = lookup_ref(label, account_id)
        doc["Deal_Name"] = f"{label} - {pick(DEAL_WORDS)}"
        if rand() < 0.9:
            amount = (5 + draw.below(1995)) * 50
            doc["Amount"] = amount
            doc["Expected_Revenue"] = amount * STAGE_PROBABILITY[stage] // 100
        doc["Closing_Date"] = org.date(created + draw.below(240) * 86400)
        if people and rand() < 0.7:
            doc["Contact_Name"] = lookup_ref(*reversed(pick(people)))
        doc["Pipeline"] = PIPELINE
        doc["Type"] = pick(DEAL_TYPES)
        if rand() < 0.5:
            doc["Lead_Source"] = pick(LEAD_SOURCES)
        doc.update(_audit(draw, org, created, modified))
        yield deal_id, doc, created, modified


def _what(draw: Draw, firms: Refs, deals: Refs) -> tuple[dict | None, str | None]:
    """A What_Id lookup with its $se_module (a deal, else an account), or (None, None)."""
    if deals and draw.random() < 0.6:
        deal_id, name = draw.pick(deals)
        return lookup_ref(name, deal_id), "Deals"
    if firms and draw.random() < 0.7:
        account_id, name = draw.pick(firms)
        return lookup_ref(name, account_id), "Accounts"
    return None, None


def _activity_links(
    draw: Draw, doc: dict[str, Any], people: Refs, firms: Refs, deals: Refs
) -> None:
    if people and draw.random() < 0.85:
        contact_id, name = draw.pick(people)
        doc["Who_Id"] = lookup_ref(name, contact_id)
    what, module = _what(draw, firms, deals)
    if what is not None:
        doc["What_Id"] = what
        doc["$se_module"] = module


def _activity_rows(
    draw: Draw,
    org: OrgTime,
    module: str,
    count: int,
    make_doc: Callable[[Draw, OrgTime, int, int], dict[str, Any]],
    people: Refs,
    firms: Refs,
    deals: Refs,
) -> Iterator[Row]:
    """Tasks or calls: the module's own fields (``make_doc``), then the Who_Id/What_Id links
    and the owner and audit fields."""
    timeline = _timeline(draw, count)
    for index, record_id in enumerate(_ids(draw, module, count)):
        created, modified = timeline.span(index)
        doc = make_doc(draw, org, created, modified)
        _activity_links(draw, doc, people, firms, deals)
        doc.update(_audit(draw, org, created, modified))
        yield record_id, doc, created, modified


def _task_doc(draw: Draw, org: OrgTime, created: int, modified: int) -> dict[str, Any]:
    status = draw.pick(TASK_STATUSES)
    doc: dict[str, Any] = {
        "Subject": f"{draw.pick(TASK_SUBJECTS)} #{draw.below(1000)}",
        "Status": status,
        "Priority": draw.pick(TASK_PRIORITIES),
        "Due_Date": org.date(created + draw.below(60) * 86400),
    }
    if draw.random() < 0.5:
        doc["Description"] = "Agenda:\n- pricing\n- next steps"
    if status == "Completed":
        doc["Closed_Time"] = org.format(modified)
    return doc


def _call_doc(draw: Draw, org: OrgTime, created: int, modified: int) -> dict[str, Any]:
    call_type = draw.pick(("Inbound", "Outbound", "Outbound", "Missed"))
    seconds = 0 if call_type == "Missed" else 15 + draw.below(3600)
    doc: dict[str, Any] = {
        "Subject": draw.pick(CALL_TITLES),
        "Call_Type": call_type,
        "Call_Start_Time": org.format(created - draw.below(7200)),
        "Call_Duration": f"{seconds // 60:02d}:{seconds % 60:02d}",
        "Call_Duration_in_seconds": seconds,
        "Call_Purpose": draw.pick(CALL_PURPOSES),
        # fixtures/zoho/v2_call_get.json: Inbound calls are "Received".
        "Call_Status": {"Inbound": "Received", "Missed": "Missed"}.get(call_type, "Completed"),
    }
    if call_type != "Missed" and draw.random() < 0.8:
        doc["Call_Result"] = draw.pick(CALL_RESULTS)
    return doc


def _event_doc(draw: Draw, org: OrgTime, created: int, modified: int) -> dict[str, Any]:
    start = created + draw.below(30) * 86400
    doc: dict[str, Any] = {
        "Event_Title": f"{draw.pick(CALL_TITLES)} (meeting)",
        "Start_DateTime": org.format(start),
        "End_DateTime": org.format(start + (1 + draw.below(3)) * 1800),
        "All_day": False,
    }
    if draw.random() < 0.5:
        doc["Venue"] = draw.pick(("Zoom", "Office", "Client site"))
    if draw.random() < 0.5:
        doc["Description"] = "Agenda:\n- pricing\n- next steps"
    return doc


def _note_rows(
    draw: Draw, org: OrgTime, count: int, people: Refs, firms: Refs, deals: Refs
) -> Iterator[Row]:
    timeline = _timeline(draw, count)
    parents = [(pool, module) for pool, module in
               ((people, "Contacts"), (firms, "Accounts"), (deals, "Deals")) if pool]  # fmt: skip
    for index, note_id in enumerate(_ids(draw, "Notes", count)):
        if not parents:
            break  # a note needs a parent record
        created, modified = timeline.span(index)
        pool, module = draw.pick(parents)
        parent_id, parent_name = draw.pick(pool)
        doc: dict[str, Any] = {
            "Note_Content": draw.pick(NOTE_BODIES),
            "Parent_Id": lookup_ref(parent_name, parent_id),
            "$se_module": module,
        }
        title = draw.pick(NOTE_TITLES)
        if title:
            doc["Note_Title"] = title
        doc.update(_audit(draw, org, created, modified))
        yield note_id, doc, created, modified
