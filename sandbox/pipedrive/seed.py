"""Deterministic Pipedrive seed data: the same seed and counts give identical records.

Plain ``random.Random(seed).random`` draws over small word lists (no Faker). The data carries
the cases an engine must pass through untouched: nulls, unicode, quotes, commas, mixed-case
e-mails, persons without e-mail or with two, and a person named literally ``{{ 7*7 }}``.
"""

from __future__ import annotations

import functools

from sandbox.kit import seed_words
from sandbox.kit.seed_words import COLORS, COMPANY_HEADS, COMPANY_TAILS, DEAL_WORDS, LAST_NAMES
from sandbox.kit.seedkit import Draw, Timeline, gc_paused, slugger
from sandbox.pipedrive.records import ACTIVITY, DEAL, NOTE, ORGANIZATION
from sandbox.pipedrive.schema import (
    ACTIVITY_TYPES,
    CUSTOMER_TIER,
    FAVORITE_COLOR,
    FIRST_STAGE,
    ORG_LABELS,
    ORG_REGION,
    PERSON_LABELS,
    STAGES,
    TIER_OPTIONS,
    USER_IDS,
)
from sandbox.pipedrive.store import Store
from sandbox.pipedrive.times import SEED_END, SEED_START, rfc3339, utc_day

# Pipedrive splits a name at the first space into first_name / last_name, so a seeded first
# name has none.
FIRST_NAMES = tuple(name for name in seed_words.FIRST_NAMES if " " not in name)
# Whole names an engine must not mangle: template syntax, quotes, commas, SQL/CSV specials.
TRICKY_NAMES = {  # person index -> name
    7: "{{ 7*7 }}",
    14: 'Robert"); DROP TABLE persons;--',
    21: "Anne, Marie Dupont",
    28: "${jndi:ldap://x}",
}
PLACES = (  # (locality, admin area, country, postal code)
    ("Boston", "Massachusetts", "United States", "02108"),
    ("Austin", "Texas", "United States", "73301"),
    ("Berlin", "Berlin", "Germany", "10115"),
    ("Dublin", "County Dublin", "Ireland", "D02"),
    ("São Paulo", "São Paulo", "Brazil", "01000-000"),
    ("Kraków", "Lesser Poland", "Poland", "30-001"),
    ("Tokyo", "Tokyo", "Japan", "100-0001"),
    ("Lagos", "Lagos", "Nigeria", "100001"),
    ("Montréal", "Quebec", "Canada", "H2Y 1C6"),
    ("Tallinn", "Harju County", "Estonia", "10111"),
)
STREETS = ("Main St", "High Street", "Rue de la Paix", "Hauptstraße", "Ulica Długa", "Elm Ave")
REGIONS = ("EMEA", "NA", "LATAM", "APAC")
LOST_REASONS = ("Price", "Went with a competitor", "No budget", "Timing")
CURRENCIES = ("USD", "USD", "EUR", "GBP")
TOPICS = ("pricing", "onboarding", "renewal", "demo", "contract", "integration")
NOTE_BODIES = (*seed_words.NOTE_BODIES, 'Said "call me next quarter", twice.')
ACTIVITY_KEYS = tuple(key for _, key, _, _ in ACTIVITY_TYPES)
PERSON_LABEL_IDS = tuple(i for i, _ in PERSON_LABELS)
ORG_LABEL_IDS = tuple(i for i, _ in ORG_LABELS)
TIER_IDS = tuple(i for i, _ in TIER_OPTIONS)
OPEN_STAGES = tuple(stage[0] for stage in STAGES)
DURATIONS = ("00:15", "00:30", "00:45", "01:00")
_slug = slugger("person")


class _Timeline(Timeline):
    """add_time rising with the id; update_time between it and the end of the seed window."""

    def __init__(self, draw: Draw, count: int) -> None:
        super().__init__(draw, count, SEED_START, SEED_END)

    def stamps(self, index: int) -> tuple[int, str, str]:
        """(add_time as epoch seconds, add_time, update_time)."""
        added, updated = self.span(index)
        return added, rfc3339(added), rfc3339(updated)


def populate(
    store: Store,
    seed: int,
    *,
    persons: int,
    organizations: int,
    deals: int,
    activities: int = 0,
    notes: int = 0,
) -> None:
    draw = Draw(seed)
    with gc_paused():
        orgs = _organizations(draw, organizations)
        store.load("organizations", orgs)
        people = _persons(draw, persons, orgs)
        store.load("persons", people)
        deal_rows = _deals(draw, deals, orgs, people)
        store.load("deals", deal_rows)
        # Drawn apart, so the records after them stay those of earlier seeds.
        _participants(Draw(seed + 7919), store, deal_rows, people)
        store.load("activities", _activities(draw, activities, people, deal_rows))
        store.load("notes", _notes(draw, notes, people, deal_rows))


def _ids(draw: Draw, count: int) -> list[int]:
    # Increasing ids with a few gaps, like an account where records were deleted.
    ids, current = [], 1
    for _ in range(count):
        ids.append(current)
        current += 1 if draw.random() < 0.9 else 2
    return ids


def _organizations(draw: Draw, count: int) -> list[dict]:
    timeline = _Timeline(draw, count)
    rand, pick = draw.random, draw.pick
    rows = []
    for index, org_id in enumerate(_ids(draw, count)):
        head, tail = pick(COMPANY_HEADS), pick(COMPANY_TAILS)
        locality, area, country, postal = pick(PLACES)
        _, added, updated = timeline.stamps(index)
        address = None
        if rand() < 0.85:
            number, route = str(1 + draw.below(200)), pick(STREETS)
            address = {
                "value": f"{number} {route}, {locality} {postal}, {country}",
                "country": country,
                "admin_area_level_1": area,
                "admin_area_level_2": None,
                "locality": locality,
                "sublocality": None,
                "route": route,
                "street_number": number,
                "postal_code": postal,
            }
        rows.append(
            {
                **ORGANIZATION,
                "id": org_id,
                "name": f"{head} {tail}" if index % 7 else f"{head} {tail} #{index}",
                "owner_id": pick(USER_IDS),
                "add_time": added,
                "update_time": updated,
                "visible_to": 3 if rand() < 0.9 else 1,
                "address": address,
                # (no draw: the rest of the seed stays as it was)
                "website": f"https://www.{head.lower().replace(' ', '')}{index}.example.com"
                if index % 4 else None,
                "label_ids": [pick(ORG_LABEL_IDS)] if rand() < 0.4 else (),
                "custom_fields": {ORG_REGION: pick(REGIONS) if rand() < 0.7 else None},
            }
        )
    return rows


def _persons(draw: Draw, count: int, orgs: list[dict]) -> list[dict]:
    # The hot loop of a 100,000-person seed: picks are inlined (a method call per draw costs
    # more than the draw) and the record is spelled out in PERSON's key order.
    step = (SEED_END - SEED_START) // max(count, 1)
    rand = draw.random
    n_first, n_last, n_orgs = len(FIRST_NAMES), len(LAST_NAMES), len(orgs)
    n_users, n_labels, n_colors, n_tiers = (
        len(USER_IDS), len(PERSON_LABEL_IDS), len(COLORS), len(TIER_IDS)
    )  # fmt: skip
    rows = []
    for index, person_id in enumerate(_ids(draw, count)):
        name = TRICKY_NAMES.get(index) or (
            f"{FIRST_NAMES[int(rand() * n_first)]} {LAST_NAMES[int(rand() * n_last)]}"
        )
        first, _, last = name.partition(" ")
        org = orgs[int(rand() * n_orgs)] if n_orgs and rand() < 0.8 else None
        domain = _domain(org["name"], org["id"]) if org else "mail.example.org"
        emails: list[dict] | tuple = ()
        if index % 37 != 5:  # a few persons have no e-mail at all
            work = f"{_slug(first)}.{_slug(last)}.{index}@{domain}"
            # Some are stored mixed case; exact-match search must still find them.
            work = work.capitalize() if index % 11 == 3 else work
            emails = [{"value": work, "primary": True, "label": "work"}]
            if rand() < 0.25:
                emails.append(
                    {"value": f"{_slug(first)}{index}@home.example.net", "primary": False,
                     "label": "home"}
                )  # fmt: skip
        phones: list[dict] | tuple = ()
        if rand() < 0.7:
            phones = [
                {"value": f"+1 555 {100 + int(rand() * 900)} {1000 + int(rand() * 9000)}",
                 "primary": True, "label": "work" if rand() < 0.5 else "mobile"}
            ]  # fmt: skip
            if rand() < 0.15:
                phones.append(
                    {"value": f"+44 20 {7000 + int(rand() * 2000)} {1000 + int(rand() * 9000)}",
                     "primary": False, "label": "home"}
                )  # fmt: skip
        added = SEED_START + index * step + int(rand() * step)
        updated = added + int((SEED_END - added) * rand() ** 2)
        rows.append(
            {
                "id": person_id,
                "name": name,
                "first_name": first,
                "last_name": last or None,
                "owner_id": USER_IDS[int(rand() * n_users)],
                "org_id": org["id"] if org else None,
                "add_time": rfc3339(added),
                "update_time": rfc3339(updated),
                "emails": emails,
                "phones": phones,
                "is_deleted": False,
                "visible_to": 3 if rand() < 0.9 else 1,
                "label_ids": [PERSON_LABEL_IDS[int(rand() * n_labels)]] if rand() < 0.4 else (),
                "picture_id": None,
                "custom_fields": {
                    FAVORITE_COLOR: COLORS[int(rand() * n_colors)] if rand() < 0.5 else None,
                    CUSTOMER_TIER: TIER_IDS[int(rand() * n_tiers)] if rand() < 0.6 else None,
                },
            }
        )
    return rows


def _deals(draw: Draw, count: int, orgs: list[dict], people: list[dict]) -> list[dict]:
    timeline = _Timeline(draw, count)
    rand, pick = draw.random, draw.pick
    org_names = {org["id"]: org["name"] for org in orgs}
    rows = []
    for index, deal_id in enumerate(_ids(draw, count)):
        person = pick(people) if people and rand() < 0.7 else None
        org_id = person["org_id"] if person else None
        if org_id is None and orgs and rand() < 0.6:
            org_id = pick(orgs)["id"]
        label = person["name"] if person else "Direct"
        if org_id is not None:
            label = org_names[org_id]
        stage_id = pick(OPEN_STAGES)
        pipeline_id = 2 if stage_id >= FIRST_STAGE[2] else 1
        added_epoch, added, updated = timeline.stamps(index)
        status = pick(("open", "open", "open", "won", "won", "lost"))
        closed = rfc3339(added_epoch + 86_400 * (1 + draw.below(120))) if status != "open" else None
        closed = min(closed, updated) if closed else None
        rows.append(
            {
                **DEAL,
                "id": deal_id,
                "title": f"{label} - {pick(DEAL_WORDS)}",
                "creator_user_id": pick(USER_IDS),
                "value": (5 + draw.below(1995)) * 50 if rand() < 0.9 else 0,
                "person_id": person["id"] if person else None,
                "org_id": org_id,
                "stage_id": stage_id,
                "currency": pick(CURRENCIES),
                "add_time": added,
                "update_time": updated,
                "status": status,
                "lost_reason": pick(LOST_REASONS) if status == "lost" else None,
                "visible_to": 3,
                "close_time": closed,
                "pipeline_id": pipeline_id,
                "won_time": closed if status == "won" else None,
                "lost_time": closed if status == "lost" else None,
                "stage_change_time": updated if rand() < 0.5 else None,
                "expected_close_date": (
                    utc_day(added_epoch // 86_400 + 30 + draw.below(150)) if rand() < 0.7 else None
                ),
                "owner_id": pick(USER_IDS),
                "origin": "ManuallyCreated",
            }
        )
    return rows


def _participants(draw: Draw, store: Store, deal_rows: list[dict], people: list[dict]) -> None:
    """A deal's person is its first participant (UNCONFIRMED: as the web app lists them);
    one deal in six has one to three more."""
    for deal in deal_rows:
        persons = [deal["person_id"]] if deal["person_id"] is not None else []
        if people and draw.random() < 1 / 6:
            for _ in range(1 + draw.below(3)):
                other = draw.pick(people)["id"]
                if other not in persons:
                    persons.append(other)
        for person_id in persons:
            store.add_participant(deal["id"], person_id, deal["add_time"])


def _activities(draw: Draw, count: int, people: list[dict], deal_rows: list[dict]) -> list[dict]:
    timeline = _Timeline(draw, count)
    rand, pick = draw.random, draw.pick
    rows = []
    for index, activity_id in enumerate(_ids(draw, count)):
        kind = pick(ACTIVITY_KEYS)
        person = pick(people) if people and rand() < 0.9 else None
        deal = pick(deal_rows) if deal_rows and rand() < 0.4 else None
        added_epoch, added, updated = timeline.stamps(index)
        done = rand() < 0.5
        timed = rand() < 0.7
        rows.append(
            {
                **ACTIVITY,
                "id": activity_id,
                "subject": f"{kind.capitalize()}: {pick(TOPICS)}",
                "type": kind,
                "owner_id": pick(USER_IDS),
                "add_time": added,
                "update_time": updated,
                "deal_id": deal["id"] if deal else None,
                "person_id": person["id"] if person else None,
                "org_id": person["org_id"] if person else (deal["org_id"] if deal else None),
                "due_date": utc_day(added_epoch // 86_400 + draw.below(30)),
                "due_time": f"{8 + draw.below(10):02d}:{pick(('00', '15', '30', '45'))}"
                if timed
                else None,
                "duration": pick(DURATIONS) if timed else None,
                "busy": timed and kind == "meeting",
                "done": done,
                "marked_as_done_time": updated if done else None,
                "participants": [{"person_id": person["id"], "primary": True}] if person else (),
                "note": pick(NOTE_BODIES) if rand() < 0.5 else None,
            }
        )
    return rows


def _notes(draw: Draw, count: int, people: list[dict], deal_rows: list[dict]) -> list[dict]:
    timeline = _Timeline(draw, count)
    rand, pick = draw.random, draw.pick
    rows = []
    for index, note_id in enumerate(_ids(draw, count)):
        person = pick(people) if people else None
        deal = pick(deal_rows) if deal_rows and (person is None or rand() < 0.4) else None
        if person is None and deal is None:
            break  # a note must be attached to something (CONTRACTS 3.4)
        _, added, updated = timeline.stamps(index)
        rows.append(
            {
                **NOTE,
                "id": note_id,
                "user_id": pick(USER_IDS),
                "deal_id": deal["id"] if deal else None,
                "person_id": person["id"] if person else None,
                "org_id": person["org_id"] if person else deal["org_id"],
                "content": pick(NOTE_BODIES),
                "add_time": added,
                "update_time": updated,
            }
        )
    return rows


@functools.cache
def _domain(org_name: str, org_id: int) -> str:
    return f"{_slug(org_name)}{org_id}.example.com"
