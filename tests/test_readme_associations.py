"""README's "contacts per company, through associations" on the demo data: for each CRM, the
company it names has the most contacts, as many as the CRM itself links to it."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import sandbox
from engine.engine import PROJECT_ROOT
from engine.store import DuckDBStore
from sandbox.demo import CONTACTS_PER_COMPANY, run_demo

CONTACTS = 300  # per emulator; the demo's own default is larger, the shape is the same


def readme_query() -> str:
    text = (PROJECT_ROOT / "README.md").read_text()
    match = re.search(r"-- contacts per company, through associations[^\n]*\n(.*?);", text,
                      re.DOTALL)
    assert match, "README.md lost its contacts-per-company query"
    return match.group(1)


def words(sql: str) -> list[str]:
    return sql.split()


# The CRM's own links from each contact to companies, read from the emulator's store: the
# demo seeds every emulator the same way for the same options (seed 42).
def _hubspot(emulator: Any) -> Counter:
    store = emulator.store
    return Counter(str(company) for record in store.active_records("contacts")
                   for company in set(store.associated_ids("contacts", record.id, "companies"))
                   if store.get("companies", company) is not None)


def _salesforce(emulator: Any) -> Counter:
    store = emulator.store
    return Counter(store.value(r, "AccountId") for r in store.records("Contact")
                   if store.value(r, "AccountId") and store.get("Account", store.value(
                       r, "AccountId")) is not None)


def _pipedrive(emulator: Any) -> Counter:
    store = emulator.store
    return Counter(str(p["org_id"]) for p in store.active_records("persons")
                   if p["org_id"] is not None and store.get("organizations", p["org_id"]))


def _zoho(emulator: Any) -> Counter:
    store = emulator.store
    links = Counter()
    for contact_id in store.ids("Contacts"):
        account = (store.get("Contacts", contact_id) or {}).get("Account_Name")
        if account and store.get("Accounts", account["id"]) is not None:
            links[account["id"]] += 1
    return links


TRUTH: dict[str, Callable[[Any], Counter]] = {
    "hubspot": _hubspot, "salesforce": _salesforce, "pipedrive": _pipedrive, "zoho": _zoho}


def test_the_readme_shows_the_query_the_demo_runs():
    assert words(readme_query()) == words(CONTACTS_PER_COMPANY)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    assert run_demo(str(path), contacts=CONTACTS) == 0
    store = DuckDBStore(path)
    yield store
    store.close()


def test_contacts_per_company_through_associations_on_the_demo_data(demo_db):
    rows = {row[0]: row[1:] for row in demo_db.query(readme_query())}
    assert set(rows) == set(TRUTH)
    for connector, truth in TRUTH.items():
        emulator_class = sandbox.EMULATORS[connector]
        emulator = emulator_class(contacts=CONTACTS, companies=max(CONTACTS // 10, 10),
                                  deals=max(CONTACTS // 5, 10), **emulator_class.DEMO_OPTIONS)
        linked = truth(emulator)
        company_id, _name, contacts = rows[connector]
        most = max(linked.values())
        assert (contacts, linked[company_id]) == (most, most), connector
        # Ties go to the lowest id, so the answer is the same on every run.
        assert company_id == min(c for c, n in linked.items() if n == most), connector
