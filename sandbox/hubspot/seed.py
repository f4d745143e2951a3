"""Deterministic HubSpot seed data: the same seed and counts give byte-identical records.

Plain ``random.Random(seed)`` draws over small word lists (no Faker). Values include the
awkward cases an engine must carry through untouched: nulls, unicode, quotes, commas, mixed-case
emails and a first name that is literally ``{{ 7*7 }}`` (a template must not evaluate it).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator

from sandbox.hubspot.pipelines import COMPANY_CURRENCY
from sandbox.hubspot.schema import (
    CUSTOMER_TIERS,
    DEAL_STAGES,
    LIFECYCLE_STAGES,
)
from sandbox.hubspot.store import FIRST_IDS, Store
from sandbox.kit.seed_words import (
    CALL_TITLES,
    COLORS,
    COMPANY_HEADS,
    COMPANY_TAILS,
    DEAL_WORDS,
    FIRST_NAMES,
    JOB_TITLES,
    LAST_NAMES,
    NOTE_BODIES,
    TASK_SUBJECTS,
)
from sandbox.kit.seedkit import Draw, Timeline, gc_paused, rising_ids, slugger

# Seed timestamps fall in this window (epoch ms); API writes use the sandbox clock instead.
SEED_START_MS = 1_672_531_200_000  # 2023-01-01T00:00:00Z
SEED_END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _owner(owner_id: str, first: str, last: str) -> dict[str, str]:
    email = f"{first.lower()}.{last.lower()}@sandbox-hub.example"
    return {"id": owner_id, "email": email, "firstName": first, "lastName": last}


# Owners of the sandbox portal (GET /crm/v3/owners); hubspot_owner_id values point at them.
OWNERS = (
    _owner("88842095", "Maria", "Lopez"),
    _owner("32900489", "Sam", "Okafor"),
    _owner("51230077", "Li", "Wei"),
    _owner("61904412", "Anna", "Berg"),
)
OWNER_IDS = tuple(owner["id"] for owner in OWNERS)

# Names an engine must not mangle: template syntax, quotes, commas, SQL/CSV specials.
TRICKY_FIRST_NAMES = {  # contact index -> first name
    7: "{{ 7*7 }}",
    14: 'Robert"); DROP TABLE contacts;--',
    21: "Anne, Marie",
    28: "${jndi:ldap://x}",
}
INDUSTRIES = (
    "COMPUTER_SOFTWARE", "HOSPITAL_HEALTH_CARE", "FINANCIAL_SERVICES", "RETAIL",
    "LOGISTICS_AND_SUPPLY_CHAIN", "MARKETING_AND_ADVERTISING", "CONSTRUCTION", "FOOD_PRODUCTION",
)  # fmt: skip
PLACES = (
    ("Boston", "United States"), ("Austin", "United States"), ("Berlin", "Germany"),
    ("Dublin", "Ireland"), ("São Paulo", "Brazil"), ("Kraków", "Poland"), ("Tokyo", "Japan"),
    ("Lagos", "Nigeria"), ("Montréal", "Canada"), ("Sydney", "Australia"),
)  # fmt: skip
CALL_STATUSES = ("COMPLETED", "NO_ANSWER", "BUSY", "FAILED", "CANCELED")
CALL_DISPOSITIONS = (
    "f240bbac-87c9-4f6e-bf70-924b57d47db7",  # "Connected" in a default portal
    "73a0d17f-1163-4015-bdd5-ec830791da20",  # "No answer"
    "b2cf5968-551e-4856-9783-52b3da59a7d0",  # "Left voicemail"
)
_slug = slugger("contact")


@functools.lru_cache(maxsize=4096)
def _utc_day(days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(days * 86400))


@functools.cache
def _time_parts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    # Lookup tables make iso_ms ~4x cheaper than strftime; seeding 100,000 contacts formats
    # 200,000 timestamps.
    two_digits = [f"{n:02d}" for n in range(60)]
    clock = tuple(
        f"T{hour}:{minute}:" + second + "."
        for hour in two_digits[:24]
        for minute in two_digits
        for second in two_digits
    )
    millis = tuple(f"{ms:03d}Z" for ms in range(1000))
    return clock, millis


def iso_ms(epoch_ms: int) -> str:
    """HubSpot timestamp format: ISO-8601 UTC with milliseconds and a Z."""
    clock, millis = _time_parts()
    seconds, fraction = divmod(epoch_ms, 1000)
    days, second_of_day = divmod(seconds, 86400)
    return _utc_day(days) + clock[second_of_day] + millis[fraction]


class _Timeline(Timeline):
    """Seed timestamps as HubSpot renders them."""

    def __init__(self, draw: Draw, count: int) -> None:
        super().__init__(draw, count, SEED_START_MS, SEED_END_MS)

    def stamps(self, index: int) -> tuple[str, str]:
        created, modified = self.span(index)
        return iso_ms(created), iso_ms(modified)


def _ids(draw: Draw, object_type: str, count: int) -> list[int]:
    # Increasing ids with gaps, like a real portal where other records were deleted; all are
    # drawn before the records' values.
    return list(rising_ids(draw, FIRST_IDS[object_type], count, max_step=9))


Row = tuple[int, dict[str, str], str, str]  # (id, non-null values, createdAt, updatedAt)


def populate(
    store: Store,
    seed: int,
    *,
    contacts: int,
    companies: int,
    deals: int,
    tasks: int = 0,
    calls: int = 0,
    notes: int = 0,
    meetings: int = 0,
) -> None:
    draw = Draw(seed)
    with gc_paused():
        company_rows = list(_company_rows(draw, companies))
        store.load("companies", company_rows)
        links: list[tuple[int, int]] = []
        store.load("contacts", _contact_rows(draw, contacts, company_rows, links))
        store.load_links("contacts", "companies", links)
        contact_ids = store.tables["contacts"].active[:]
        deal_ids = _seed_deals(store, draw, deals, company_rows, contact_ids)
        for object_type, count, make in (
            ("tasks", tasks, _task_values),
            ("calls", calls, _call_values),
            ("notes", notes, _note_values),
            ("meetings", meetings, _meeting_values),  # last: the others stay as they were
        ):
            _seed_activities(store, draw, object_type, count, make, contact_ids, deal_ids)


def _company_rows(draw: Draw, count: int) -> Iterator[Row]:
    timeline = _Timeline(draw, count)
    rand, pick = draw.random, draw.pick
    for index, company_id in enumerate(_ids(draw, "companies", count)):
        head, tail = pick(COMPANY_HEADS), pick(COMPANY_TAILS)
        city, country = pick(PLACES)
        values = {
            "name": f"{head} {tail}" if index % 7 else f"{head} {tail} #{index}",
            "domain": f"{head.lower().replace(' ', '')}{index}.example.com",
            "country": country,
        }
        if rand() < 0.8:
            values["industry"] = pick(INDUSTRIES)
        if rand() < 0.6:
            values["phone"] = f"+1 555 {1_000_000 + draw.below(9_000_000)}"
        if rand() < 0.85:
            values["city"] = city
        if rand() < 0.9:
            values["hubspot_owner_id"] = pick(OWNER_IDS)
        yield (company_id, values, *timeline.stamps(index))


def _contact_rows(
    draw: Draw, count: int, company_rows: list[Row], links: list[tuple[int, int]]
) -> Iterator[Row]:
    """Contacts; ~80% work at a company (associatedcompanyid + a contact_to_company link)."""
    timeline = _Timeline(draw, count)
    rand, pick, below = draw.random, draw.pick, draw.below
    for index, contact_id in enumerate(_ids(draw, "contacts", count)):
        first = TRICKY_FIRST_NAMES.get(index) or pick(FIRST_NAMES)
        last = pick(LAST_NAMES)
        values = {"lifecyclestage": pick(LIFECYCLE_STAGES)}
        if index in TRICKY_FIRST_NAMES or rand() < 0.97:
            values["firstname"] = first
        if rand() < 0.97:
            values["lastname"] = last
        domain = "mail.example.org"
        if company_rows and rand() < 0.8:
            company_id, company, _, _ = pick(company_rows)
            domain = company["domain"]
            values["company"] = company["name"]
            values["website"] = f"https://{domain}"
            values["associatedcompanyid"] = str(company_id)
            links.append((contact_id, company_id))
        if index % 37 != 5:  # a few contacts have no email
            email = f"{_slug(first)}.{_slug(last)}.{index}@{domain}"
            # Some are stored mixed case; search EQ and idProperty=email must still match.
            values["email"] = email.capitalize() if index % 11 == 3 else email
        if rand() < 0.7:
            values["phone"] = f"+1-555-{100 + below(900)}-{1000 + below(9000)}"
        if rand() < 0.75:
            values["jobtitle"] = pick(JOB_TITLES)
        if rand() < 0.85:
            values["hubspot_owner_id"] = pick(OWNER_IDS)
        if rand() < 0.5:
            values["favorite_color"] = pick(COLORS)
        if rand() < 0.6:
            values["customer_tier"] = pick(CUSTOMER_TIERS)
        yield (contact_id, values, *timeline.stamps(index))


def _seed_deals(
    store: Store, draw: Draw, count: int, company_rows: list[Row], contact_ids: list[int]
) -> list[int]:
    timeline = _Timeline(draw, count)
    rand, pick = draw.random, draw.pick
    rows: list[Row] = []
    company_links: list[tuple[int, int]] = []
    contact_links: list[tuple[int, int]] = []
    for index, deal_id in enumerate(_ids(draw, "deals", count)):
        label = "Direct"
        if company_rows:
            company_id, company, _, _ = pick(company_rows)
            label = company["name"]
            company_links.append((deal_id, company_id))
        values = {
            "dealname": f"{label} - {pick(DEAL_WORDS)}",
            "deal_currency_code": pick(("USD", "USD", "EUR", "GBP")),
            "dealstage": pick(DEAL_STAGES),
            "pipeline": "default",
        }
        if values["deal_currency_code"] == COMPANY_CURRENCY and index % 2 == 0:
            # As in a portal before it turned on more currencies: no code, the portal's own.
            del values["deal_currency_code"]
        if rand() < 0.9:
            values["amount"] = str((5 + draw.below(1995)) * 50)
        if rand() < 0.7:
            close_ms = SEED_START_MS + draw.below(SEED_END_MS - SEED_START_MS + 180 * 86_400_000)
            values["closedate"] = iso_ms(close_ms - close_ms % 86_400_000)
        if rand() < 0.9:
            values["hubspot_owner_id"] = pick(OWNER_IDS)
        if contact_ids and rand() < 0.7:
            contact_links.append((deal_id, pick(contact_ids)))
        rows.append((deal_id, values, *timeline.stamps(index)))
    store.load("deals", rows)
    # A deal's one seeded company is its primary company (type 5 beside 341 in v4 reads), as
    # when a deal is created from its company's record in HubSpot.
    store.load_links("deals", "companies", company_links, primary=True)
    store.load_links("deals", "contacts", contact_links)
    return [row[0] for row in rows]


def _seed_activities(
    store: Store,
    draw: Draw,
    object_type: str,
    count: int,
    make: Callable[[Draw, str], dict[str, str]],
    contact_ids: list[int],
    deal_ids: list[int],
) -> None:
    """Tasks, calls or notes, each linked to a contact and sometimes to a deal."""
    timeline = _Timeline(draw, count)
    rows: list[Row] = []
    contact_links: list[tuple[int, int]] = []
    deal_links: list[tuple[int, int]] = []
    for index, record_id in enumerate(_ids(draw, object_type, count)):
        created, modified = timeline.stamps(index)
        rows.append((record_id, make(draw, created), created, modified))
        if contact_ids:
            contact_links.append((record_id, draw.pick(contact_ids)))
        if deal_ids and draw.random() < 0.4:
            deal_links.append((record_id, draw.pick(deal_ids)))
    store.load(object_type, rows)
    store.load_links(object_type, "contacts", contact_links)
    store.load_links(object_type, "deals", deal_links)


def _without_nulls(values: dict[str, str | None]) -> dict[str, str]:
    return {name: value for name, value in values.items() if value is not None}


def _task_values(draw: Draw, created: str) -> dict[str, str]:
    return _without_nulls(
        {
            "hs_task_subject": f"{draw.pick(TASK_SUBJECTS)} #{draw.below(1000)}",
            "hs_task_body": draw.maybe(0.6, "Agenda:\n- pricing\n- next steps"),
            "hs_task_status": draw.pick(("NOT_STARTED", "COMPLETED")),
            "hs_task_priority": draw.pick(("NONE", "LOW", "MEDIUM", "HIGH")),
            "hs_task_type": draw.pick(("EMAIL", "CALL", "TODO")),
            "hs_timestamp": created,
            "hubspot_owner_id": draw.maybe(0.9, draw.pick(OWNER_IDS)),
        }
    )


def _call_values(draw: Draw, created: str) -> dict[str, str]:
    return _without_nulls(
        {
            "hs_call_title": draw.pick(CALL_TITLES),
            "hs_call_body": draw.maybe(0.7, "<p>Discussed <b>renewal</b> timeline.</p>"),
            "hs_call_direction": draw.pick(("INBOUND", "OUTBOUND")),
            "hs_call_duration": str(draw.below(3_600_000)),  # milliseconds (CONTRACTS 1.4)
            "hs_call_disposition": draw.maybe(0.8, draw.pick(CALL_DISPOSITIONS)),
            "hs_call_status": draw.pick(CALL_STATUSES),
            "hs_timestamp": created,
            "hubspot_owner_id": draw.maybe(0.9, draw.pick(OWNER_IDS)),
        }
    )


def _note_values(draw: Draw, created: str) -> dict[str, str]:
    return _without_nulls(
        {
            "hs_note_body": draw.pick(NOTE_BODIES),
            "hs_timestamp": created,
            "hubspot_owner_id": draw.maybe(0.9, draw.pick(OWNER_IDS)),
        }
    )


def _meeting_values(draw: Draw, created: str) -> dict[str, str]:
    hours = 1 + draw.below(2)
    end = created[:11] + f"{min(int(created[11:13]) + hours, 23):02d}" + created[13:]
    return _without_nulls(
        {
            "hs_meeting_title": f"{draw.pick(CALL_TITLES)} (meeting)",
            "hs_meeting_body": draw.maybe(0.6, draw.pick(NOTE_BODIES)),
            "hs_meeting_location": draw.maybe(0.5, draw.pick(("Zoom", "Office", "Client site"))),
            "hs_meeting_outcome": draw.pick(("SCHEDULED", "COMPLETED", "CANCELED")),
            "hs_meeting_start_time": created,
            "hs_meeting_end_time": end,
            "hs_timestamp": created,
            "hubspot_owner_id": draw.maybe(0.9, draw.pick(OWNER_IDS)),
        }
    )


def burst(store: Store, object_type: str, count: int) -> None:
    """Give the ``count`` oldest records of ``object_type`` one identical modification time
    (the latest creation time among them), like HubSpot's bulk jobs that touch more than 10,000
    records at once (search can then not page through one timestamp; CONTRACTS 1.5)."""
    table = store.tables[object_type]
    chosen = [table.records[record_id] for record_id in table.active[:count]]
    if not chosen:
        return
    stamp = max(record.created_at for record in chosen)  # fixed-width ISO: max is the latest
    modified = table.schema.modified_property
    with store.lock:
        for record in chosen:
            record.updated_at = stamp
            record.properties[modified] = stamp
        store.version += 1
