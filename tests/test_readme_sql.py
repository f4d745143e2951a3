"""The README's example SQL gives the right answers on the demo data.

`make demo` (smaller) writes its DuckDB file; every query of the README's SQL block runs on it,
and its result is checked against what the emulators hold, read from their own stores and their
vendor metadata (stage labels, won/lost flags, account currencies), never from our mappings.
The emulators are seeded: built again with the demo's arguments, they hold the same records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import duckdb
import pytest

from sandbox import EMULATORS
from sandbox.demo import readme_queries, run_demo
from sandbox.hubspot.pipelines import COMPANY_CURRENCY, STAGE_INFO
from sandbox.hubspot.seed import OWNERS
from sandbox.pipedrive.schema import CUSTOMER_TIER as PIPEDRIVE_TIER
from sandbox.pipedrive.schema import STAGES as PIPEDRIVE_STAGES
from sandbox.pipedrive.schema import TIER_OPTIONS
from sandbox.pipedrive.schema import USERS_BY_ID as PIPEDRIVE_USERS
from sandbox.salesforce.schema import CORPORATE_CURRENCY
from sandbox.salesforce.schema import STAGE_INFO as SALESFORCE_STAGES
from sandbox.zoho.settings import HOME_CURRENCY

CONTACTS = 60  # the demo's 10,000 would only be slower; the seeds scale the same way

Row = tuple[Any, ...]
Deal = dict[str, Any]  # connector, stage, status, currency, amount, owner


def demo_emulators() -> dict[str, Any]:
    """The emulators as run_demo builds them (same seeds and counts)."""
    return {name: cls(contacts=CONTACTS, companies=max(CONTACTS // 10, 10),
                      deals=max(CONTACTS // 5, 10), **cls.DEMO_OPTIONS)
            for name, cls in EMULATORS.items()}


# -- the vendors' truth ------------------------------------------------------------------------

def _status(closed: bool, won: bool) -> str:
    return "won" if won else "lost" if closed else "open"


def hubspot_deals(emulator: Any) -> list[Deal]:
    names = {o["id"]: f"{o['firstName']} {o['lastName']}" for o in OWNERS}
    deals = []
    for deal_id in emulator.store.tables["deals"].active:
        p = emulator.store.get("deals", deal_id)["properties"]
        label, closed, probability = STAGE_INFO[p["dealstage"]]
        deals.append({"stage": label, "status": _status(closed, closed and probability == "1.0"),
                      "currency": p.get("deal_currency_code") or COMPANY_CURRENCY,
                      "amount": Decimal(p["amount"]) if p.get("amount") else None,
                      "owner": names.get(p.get("hubspot_owner_id"))})
    return deals


def salesforce_deals(emulator: Any) -> list[Deal]:
    store = emulator.store
    names = {u.id: f"{store.value(u, 'FirstName')} {store.value(u, 'LastName')}"
             for u in store.records("User")}
    deals = []
    for record in store.records("Opportunity"):
        stage = store.value(record, "StageName")
        _, _, closed, won = SALESFORCE_STAGES[stage]
        amount = store.value(record, "Amount")
        deals.append({"stage": stage, "status": _status(closed, won),
                      "currency": store.value(record, "CurrencyIsoCode") or CORPORATE_CURRENCY,
                      "amount": None if amount is None else Decimal(str(amount)),
                      "owner": names.get(store.value(record, "OwnerId"))})
    return deals


def pipedrive_deals(emulator: Any) -> list[Deal]:
    labels = {stage_id: name for stage_id, _, _, name, _ in PIPEDRIVE_STAGES}
    deals = []
    for deal in emulator.store.tables["deals"].records.values():
        if deal.get("is_deleted"):
            continue
        owner = PIPEDRIVE_USERS.get(deal.get("owner_id"))
        deals.append({"stage": labels[deal["stage_id"]], "status": deal["status"],
                      "currency": deal["currency"],
                      "amount": None if deal["value"] is None else Decimal(str(deal["value"])),
                      "owner": owner and owner["name"]})
    return deals


def zoho_deals(emulator: Any) -> list[Deal]:
    table = emulator.store.table("Deals")
    deals = []
    for record_id in table.ids:
        doc = table.records[record_id].doc
        stage = doc["Stage"]
        closed = stage.startswith("Closed")  # Zoho's standard forecast types
        amount = doc.get("Amount")
        deals.append({"stage": stage, "status": _status(closed, stage == "Closed Won"),
                      "currency": HOME_CURRENCY,
                      "amount": None if amount is None else Decimal(str(amount)),
                      "owner": (doc.get("Owner") or {}).get("name")})
    return deals


DEALS: dict[str, Callable[[Any], list[Deal]]] = {
    "hubspot": hubspot_deals, "salesforce": salesforce_deals, "pipedrive": pipedrive_deals,
    "zoho": zoho_deals,
}


def all_deals(emulators: dict[str, Any]) -> list[Deal]:
    return [{"connector": name, **deal} for name, read in DEALS.items()
            for deal in read(emulators[name])]


def grouped(deals: list[Deal], keys: tuple[str, ...]) -> list[Row]:
    """(*keys, count, sum of amounts) per group, sorted as ORDER BY ALL sorts (nulls last)."""
    groups: dict[tuple, list[Deal]] = {}
    for deal in deals:
        groups.setdefault(tuple(deal[k] for k in keys), []).append(deal)
    rows = []
    for key, members in groups.items():
        amounts = [d["amount"] for d in members if d["amount"] is not None]
        rows.append((*key, len(members), sum(amounts) if amounts else None))
    return sorted(rows, key=lambda row: [(v is None, v) for v in row])


PIPEDRIVE_TIER_LABELS = dict(TIER_OPTIONS)  # as GET /v1/personFields lists the options


def customer_tiers(emulators: dict[str, Any]) -> list[Row]:
    counts: Counter[tuple[str, str]] = Counter()
    hubspot = emulators["hubspot"].store
    for contact_id in hubspot.tables["contacts"].active:
        tier = hubspot.get("contacts", contact_id)["properties"].get("customer_tier")
        if tier:
            counts["hubspot", tier] += 1
    salesforce = emulators["salesforce"].store
    for record in salesforce.records("Contact"):
        if tier := salesforce.value(record, "Customer_Tier__c"):
            counts["salesforce", tier] += 1
    pipedrive = emulators["pipedrive"].store  # an enum field: option ids, shown as labels
    for person in pipedrive.active_records("persons"):
        if (tier := (person["custom_fields"] or {}).get(PIPEDRIVE_TIER)) is not None:
            counts["pipedrive", PIPEDRIVE_TIER_LABELS[tier]] += 1
    zoho = emulators["zoho"].store.table("Contacts")
    for record_id in zoho.ids:
        if tier := zoho.records[record_id].doc.get("Customer_Tier"):
            counts["zoho", tier] += 1
    return sorted((connector, tier, n) for (connector, tier), n in counts.items())


# -- the checks --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    db = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    assert run_demo(str(db), contacts=CONTACTS) == 0
    con = duckdb.connect(str(db), read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="module")
def emulators() -> dict[str, Any]:
    return demo_emulators()


def check_contacts(rows: list[Row], emulators: dict[str, Any]) -> None:
    assert rows == [(name, CONTACTS) for name in sorted(EMULATORS)]


def check_pipeline(rows: list[Row], emulators: dict[str, Any]) -> None:
    deals = all_deals(emulators)
    assert rows == grouped(deals, ("connector", "stage", "status", "currency"))
    # Every CRM's deals have a stage label, a status and a currency: none of them null.
    assert all(None not in row[:4] for row in rows)
    assert {row[0] for row in rows} == set(EMULATORS)


def check_currencies(rows: list[Row], emulators: dict[str, Any]) -> None:
    deals = [d for d in all_deals(emulators) if d["status"] != "lost"]
    assert rows == grouped(deals, ("currency", "status"))
    assert {row[0] for row in rows} == {"USD", "EUR", "GBP"}


def check_owners(rows: list[Row], emulators: dict[str, Any]) -> None:
    deals = [d for d in all_deals(emulators) if d["owner"] is not None]
    expected = Counter((d["connector"], d["owner"]) for d in deals)
    assert rows == sorted((connector, owner, n) for (connector, owner), n in expected.items())


def check_tiers(rows: list[Row], emulators: dict[str, Any]) -> None:
    assert rows == customer_tiers(emulators)
    assert {row[0] for row in rows} == {"hubspot", "salesforce", "pipedrive", "zoho"}


def check_sync_runs(rows: list[Row], emulators: dict[str, Any]) -> None:
    assert rows and all(row[2] == "succeeded" and row[6] is None for row in rows)
    streams = {(connection.removesuffix("-demo"), stream) for connection, stream, *_ in rows}
    assert {"contacts", "companies", "deals", "owners", "pipelines", "stages"} <= {
        stream for _, stream in streams}
    assert {connector for connector, _ in streams} == set(EMULATORS)


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


CONTACT_COMPANY_LINKS: dict[str, Callable[[Any], Counter]] = {
    "hubspot": _hubspot, "salesforce": _salesforce, "pipedrive": _pipedrive, "zoho": _zoho}


def check_contacts_per_company(rows: list[Row], emulators: dict[str, Any]) -> None:
    """Each CRM's company with the most contacts (ties: the lowest id), as many as the CRM
    itself links to it."""
    found = {row[0]: row[1:] for row in rows}
    assert set(found) == set(CONTACT_COMPANY_LINKS)
    for connector, links_of in CONTACT_COMPANY_LINKS.items():
        linked = links_of(emulators[connector])
        company_id, _name, contacts = found[connector]
        most = max(linked.values())
        assert (contacts, linked[company_id]) == (most, most), connector
        assert company_id == min(c for c, n in linked.items() if n == most), connector


# Each README query, by its title, and how its answer is checked. A query the README adds
# without a check here fails the test below.
CHECKS: dict[str, Callable[[list[Row], dict[str, Any]], None]] = {
    "contacts per CRM": check_contacts,
    "pipeline by stage and status, per currency, across CRMs": check_pipeline,
    "won and open amounts per currency (never adding USD to EUR)": check_currencies,
    "deals per owner, by name": check_owners,
    "a custom field the mapping does not name, by its name in each CRM": check_tiers,
    "contacts per company, through associations: each CRM's company with the most contacts":
        check_contacts_per_company,
    "how did the last syncs go?": check_sync_runs,
}


def test_every_readme_query_has_a_check():
    titles = [title for title, _ in readme_queries()]
    assert titles and set(titles) <= set(CHECKS), set(titles) - set(CHECKS)


@pytest.mark.parametrize("title", list(CHECKS))
def test_readme_query_answers(title, demo, emulators):
    queries = dict(readme_queries())
    if title not in queries:
        pytest.fail(f"the README has no query titled {title!r}")
    rows = demo.execute(queries[title]).fetchall()
    CHECKS[title](rows, emulators)

