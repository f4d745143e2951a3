"""The associations table: a mapping's `associations:` lands one row per link with the record
it is from; landing a record again replaces its links, deletes drop the links from and to a
deleted record, a failed run's rerun lands each link once; and the four connectors find links
where the real vendors' recorded payloads carry them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.engine import PROJECT_ROOT
from engine.errors import SpecError
from engine.loader import load_connector, load_mapping
from sandbox.demo import connect_oauth
from sandbox.hubspot import HubSpotSandbox
from sandbox.kit.core import Request, Response
from sandbox.salesforce import SalesforceSandbox
from tests.support import connector_yaml, serving, write_specs
from tests.test_incremental import STREAM, ChangesServer, sync

FIXTURES = Path(__file__).resolve().parent / "fixtures"

MAPPING = """
models:
  contact:
    custom: "@"
    associations:
      - {to: company, each: companies, id: id, label: role}
      - {to: contact, id: referred_by}
    fields:
      id: {path: id, write: false}
      first_name: name
      updated_at: {path: updated, write: false}
"""


def links(engine) -> set[tuple]:
    return set(engine.store.query(
        "SELECT from_model, from_id, to_model, to_id, label FROM associations"))


def link_rows(engine) -> int:
    return engine.store.query("SELECT count(*) FROM associations")[0][0]


@pytest.fixture
def changes():
    yield from serving(ChangesServer())


@pytest.fixture
def engine(tmp_path, make_engine):
    return make_engine(write_specs(tmp_path, connector_yaml(STREAM.replace("LOOKBACK", "0")),
                                   MAPPING))


def test_links_land_with_their_record_and_are_replaced_when_it_lands_again(engine, changes):
    server = changes
    server.put(3)
    server.records["000000"]["companies"] = [{"id": 7, "role": "Primary"}, {"id": "8"}]
    server.records["000001"]["companies"] = {"id": "9", "role": "Billing"}  # one, not a list
    server.records["000002"]["referred_by"] = "000000"
    assert sync(engine, server).status == "succeeded"
    assert links(engine) == {("contact", "000000", "company", "7", "Primary"),
                             ("contact", "000000", "company", "8", None),
                             ("contact", "000001", "company", "9", "Billing"),
                             ("contact", "000002", "contact", "000000", None)}
    # The CRM moves one contact to another company and unlinks another: an incremental run
    # lands both again, and their links are what the CRM says now, not what it said before.
    server.records["000000"].update(companies=[{"id": "8"}], updated="2026-01-01T00:01:00Z")
    server.records["000001"].update(companies=None, updated="2026-01-01T00:01:00Z")
    run = sync(engine, server)
    assert run.mode == "incremental" and run.status == "succeeded", run.error
    assert links(engine) == {("contact", "000000", "company", "8", None),
                             ("contact", "000002", "contact", "000000", None)}


def test_a_deleted_record_keeps_no_links_from_or_to_it(engine, changes):
    server = changes
    server.put(3)
    server.records["000000"]["companies"] = [{"id": "7"}]
    server.records["000002"]["referred_by"] = "000000"
    server.records["000001"]["companies"] = [{"id": "7"}]
    sync(engine, server)
    server.delete("000000", at=100)  # the CRM lists it deleted
    assert sync(engine, server).status == "succeeded"
    assert links(engine) == {("contact", "000001", "company", "7", None)}
    assert engine.store.query("SELECT is_deleted FROM contacts WHERE id = '000000'") == [(True,)]
    # A record that vanishes without a trace is swept by a full refresh, links and all.
    server.records.pop("000001")
    assert sync(engine, server, full_refresh=True).status == "succeeded"
    assert links(engine) == set()


def test_a_failed_run_lands_its_links_once_when_rerun(engine, changes):
    server = changes
    server.put(25)
    for i, record in enumerate(server.records.values()):
        record["companies"] = [{"id": str(i % 4)}, {"id": "shared", "role": "Partner"}]
    server.fail_at_offset = 20  # the third page fails after two have landed
    run = sync(engine, server)
    assert run.status == "failed" and link_rows(engine) == 40
    server.fail_at_offset = None
    assert sync(engine, server).status == "succeeded"
    assert link_rows(engine) == 50 == len(links(engine))  # nothing twice, nothing missing
    assert sync(engine, server, full_refresh=True).status == "succeeded"
    assert link_rows(engine) == 50


@pytest.mark.parametrize(("entry", "where", "message"), [
    ("{to: opportunity, id: x}", "associations[1].to", "unknown unified model 'opportunity'"),
    ("{to: company, id: 'a[?'}", "associations[1].id", "invalid jmespath expression"),
    ("{to: company}", "associations[1]", "'id' is required"),
])
def test_a_bad_declaration_is_one_located_line(tmp_path, entry, where, message):
    path = tmp_path / "m.yaml"
    path.write_text(MAPPING.replace("{to: contact, id: referred_by}", entry))
    _, problems = load_mapping(path)
    assert len(problems) == 1
    text = str(problems[0])
    assert f"m.yaml:7 at models.contact.{where}: " in text, text
    assert message in text and "\n" not in text


# -- the connectors, on payloads recorded from the real vendors -----------------------------------

def recorded(vendor: str, name: str):
    return json.loads((FIXTURES / vendor / name).read_text())


def connector_links(vendor: str, stream: str, records: list) -> list[list[tuple]]:
    mapping = load_connector(PROJECT_ROOT / "connectors" / f"{vendor}.yaml").streams[stream].mapping
    return mapping.read_links(records)


def test_hubspot_activity_links_from_a_recorded_list_page():
    page = recorded("hubspot", "tasks_list_page_with_associations.json")["results"]
    # The list's own shape ({id, type}) reads as well as the enriched one ({id, label}).
    assert connector_links("hubspot", "tasks", page) == [
        [("contact", "713802347732", None)], [("contact", "713903210728", None)], []]


def test_salesforce_lookups_from_a_recorded_query_page():
    page = recorded("salesforce", "query_contacts_page.json")["records"]
    found = connector_links("salesforce", "contacts", page)
    assert found == [[("company", r["AccountId"], None)] if r["AccountId"] else [] for r in page]
    assert any(found)


def test_pipedrive_note_and_deal_links_from_recorded_records():
    [note] = recorded("pipedrive", "v1_notes_list_page.json")["data"]
    assert connector_links("pipedrive", "notes", [note]) == [
        [("contact", "1", None), ("company", "1", None), ("deal", "1", None)]]
    deal = recorded("pipedrive", "v2_deal_get.json")["data"]
    assert connector_links("pipedrive", "deals", [deal]) == [
        [("company", str(deal["org_id"]), None), ("contact", str(deal["person_id"]), None)]]


def test_zoho_lookups_follow_se_module_in_recorded_pages():
    calls = recorded("zoho", "v2_calls_list_page.json")["data"]
    # The first call is about a deal; the second about a lead, which no unified model holds.
    assert connector_links("zoho", "calls", calls) == [
        [("contact", "7328395000000680155", None), ("deal", "7328395000000680197", None)], []]
    notes = recorded("zoho", "v2_notes_list_page.json")["data"]
    assert connector_links("zoho", "notes", notes) == [
        [("contact", "7328395000000680151", None)], [("contact", "7328395000000680150", None)]]
    deal = recorded("zoho", "v2_deal_get.json")["data"][0]
    assert connector_links("zoho", "deals", [deal]) == [
        [(model, deal[key]["id"], None) for model, key in
         (("company", "Account_Name"), ("contact", "Contact_Name")) if deal.get(key)]]


def test_a_spec_error_names_the_connectors_mapping(tmp_path):
    connectors = write_specs(tmp_path, connector_yaml(STREAM.replace("LOOKBACK", "0")),
                             MAPPING.replace("to: company,", "to: firm,"))
    with pytest.raises(SpecError, match="unknown unified model 'firm'"):
        load_connector(connectors / "acme.yaml")


def test_salesforce_deals_link_every_contact_role(make_engine):
    """Opportunity contact roles (a subquery of the deals query) land as deal -> contact
    links labelled with the role, one per role the org holds."""
    emulator = SalesforceSandbox(contacts=40, companies=10, deals=30, leads=0)
    store = emulator.store
    truth = {(store.value(r, "OpportunityId"), store.value(r, "ContactId"),
              store.value(r, "Role")) for r in store.records("OpportunityContactRole")}
    assert len({deal for deal, _, _ in truth}) > 1 and len(truth) > 10
    with emulator.start() as running:
        engine = make_engine(PROJECT_ROOT / "connectors")
        connect_oauth(engine, "salesforce", emulator, running.url, "sf")
        runs = engine.sync("salesforce", "sf", streams=["deals"])  # and the stages it reads
        run = next(r for r in runs if r.stream == "deals")
    assert run.status == "succeeded", run.error
    landed = set(engine.store.query(
        "SELECT from_id, to_id, label FROM associations WHERE from_model = 'deal' "
        "AND to_model = 'contact'"))
    assert landed == truth


def test_a_record_with_more_links_than_a_v4_read_returns_gets_them_all(make_engine):
    """HubSpot's v4 batch read returns a record's first 500 links and pages the rest apart
    (`results[].paging`, per input): the read is sent again for that record with its `after`
    until none is left, so a contact at 1,200 companies keeps 1,200 links, not 500."""
    emulator = HubSpotSandbox(contacts=3, companies=0, deals=0, rate_limit=(1000, 10.0))
    store = emulator.store
    crowded, plain, _ = [r.id for r in store.active_records("contacts")]
    companies = [store.add("companies", {"name": f"Co {i}"}, "2026-01-01T00:00:00.000Z").id
                 for i in range(1200)]
    for company in companies:
        store.associate("contacts", crowded, "companies", company)
    store.associate("contacts", plain, "companies", companies[0])
    store.update("contacts", store.record("contacts", crowded),
                 {"associatedcompanyid": str(companies[700])}, "2026-01-01T00:00:00.000Z")
    with emulator.start() as running:
        engine = make_engine(PROJECT_ROOT / "connectors")
        [run] = engine.sync("hubspot", streams=["contacts"], token="sandbox-private-app-token",
                            base_url=running.url)
    assert (run.status, run.records) == ("succeeded", 3), run.error
    # The property list, one page, and v4 reads of 500, 500 and 200 links (the list names
    # 100 and pages the rest, which is what sends the crowded contact to v4).
    assert run.requests == 1 + 1 + 3
    expected = {("contact", str(crowded), "company", str(c), "Primary" if c == companies[700]
                 else None) for c in companies}
    assert links(engine) == expected | {("contact", str(plain), "company", str(companies[0]),
                                         None)}


LINKS_STEP = """
      enrich:
        - request:
            method: POST
            path: /links
            idempotent: true
            body: {inputs: "{{ ids | objects('id', after=after) }}"}
          records: results
          key: from
          value: links
          into: companies
          more: next
"""


def test_a_cursor_given_twice_for_the_same_record_fails_the_run(tmp_path, make_engine, changes):
    """`more` follows each record's cursor until none is left; a CRM that hands back a cursor
    it already gave would be followed forever: the run fails and says so. Links come three to
    a request, and every continuation names its input's cursor."""
    bodies: list[Any] = []

    def links(request: Request) -> Response:
        inputs = request.json()["inputs"]
        bodies.append(inputs)
        results = []
        for item in inputs:
            start = 0 if item["id"] == "000001" else int(item.get("after", 0))
            result = {"from": item["id"],
                      "links": [{"id": f"c{i}"} for i in range(start, start + 3)]}
            if start + 3 < 7:
                result["next"] = str(start + 3)
            results.append(result)
        return Response(200, {"results": results})

    changes.app.add_route("POST", "/links", links)
    changes.put(2)
    engine = make_engine(write_specs(tmp_path, connector_yaml(
        STREAM.replace("LOOKBACK", "0") + LINKS_STEP), MAPPING))
    run = sync(engine, changes)
    assert run.status == "failed"
    assert "the results for 000001 go on from '3' again" in run.error
    assert bodies[:2] == [[{"id": "000000"}, {"id": "000001"}],
                          [{"id": "000000", "after": "3"}, {"id": "000001", "after": "3"}]]


def test_a_hubspot_deal_names_its_primary_company_from_the_list(make_engine):
    """A deal's list (`associations=companies,contacts`) names the primary company twice, as
    its unlabelled type and as `deal_to_company`: the deal's company_id is that one, not the
    first listed, its link is labelled "Primary", and no v4 read is sent; searches (no links
    in them) still read links by v4, to the same rows."""
    emulator = HubSpotSandbox(contacts=2, companies=0, deals=1, rate_limit=(1000, 10.0))
    store = emulator.store
    [deal] = [r.id for r in store.active_records("deals")]
    contact = next(iter(store.active_records("contacts"))).id
    companies = [store.add("companies", {"name": f"Co {i}"}, "2026-01-01T00:00:00.000Z").id
                 for i in range(3)]
    for company in companies:
        store.associate("deals", deal, "companies", company)
    store.set_primary("deals", deal, "companies", companies[1])
    store.associate("deals", deal, "contacts", contact)
    with emulator.start() as running:
        engine = make_engine(PROJECT_ROOT / "connectors")
        runs = engine.sync("hubspot", streams=["deals"], token="sandbox-private-app-token",
                           base_url=running.url, config={"lookback_seconds": 0})
        [run] = [r for r in runs if r.stream == "deals"]  # (after stages and pipelines)
        assert (run.status, run.records) == ("succeeded", 1), run.error
        assert run.requests == 1 + 1 + 1  # properties, one page, the default currency
        from_list = links(engine)
        store.update("deals", store.record("deals", deal), {"dealname": "renamed"},
                     "2030-01-01T00:00:00.000Z")
        [run] = engine.sync("hubspot", streams=["deals"], token="sandbox-private-app-token",
                            base_url=running.url, config={"lookback_seconds": 0})
        assert (run.mode, run.status, run.records) == ("incremental", "succeeded", 1), run.error
        assert run.requests >= 1 + 2  # a search page and its two v4 reads
    company_links = {("deal", str(deal), "company", str(c), "Primary" if c == companies[1]
                      else None) for c in companies}
    contact_links = {link for link in from_list if link[2] == "contact"}
    assert from_list == company_links | contact_links
    assert {link[3] for link in contact_links} >= {str(contact)}
    assert links(engine) == from_list
    [(company_id,)] = engine.store.query("SELECT company_id FROM deals")
    assert company_id == str(companies[1])


def test_hubspot_primary_link_is_read_by_type_id_not_label_text(make_engine):
    """v4 labels the primary company "Contact with Primary Company" (HubSpot renamed it in
    2024 and says labels are not for programs): the link lands as "Primary", found by its
    type id; a primary link that also has the account's own label lands once with each, and
    a custom label alone lands as it is."""
    emulator = HubSpotSandbox(contacts=3, companies=0, deals=0, rate_limit=(1000, 10.0))
    store = emulator.store
    first, second, third = [r.id for r in store.active_records("contacts")]
    company = store.add("companies", {"name": "Acme"}, "2026-01-01T00:00:00.000Z").id
    for contact in (first, second):
        store.update("contacts", store.record("contacts", contact),
                     {"associatedcompanyid": str(company)}, "2026-01-01T00:00:00.000Z")
    for contact in (first, second, third):
        store.associate("contacts", contact, "companies", company)
    store.label_link("contacts", second, "companies", company, "Billing")
    store.label_link("contacts", third, "companies", company, "Billing")
    with emulator.start() as running:
        engine = make_engine(PROJECT_ROOT / "connectors")
        [run] = engine.sync("hubspot", streams=["contacts"], token="sandbox-private-app-token",
                            base_url=running.url)
    assert run.status == "succeeded", run.error
    assert run.requests == 1 + 1 + 1  # the property list, the page, its v4 read (custom labels)
    assert links(engine) == {("contact", str(first), "company", str(company), "Primary"),
                             ("contact", str(second), "company", str(company), "Primary"),
                             ("contact", str(second), "company", str(company), "Billing"),
                             ("contact", str(third), "company", str(company), "Billing")}
    assert link_rows(engine) == 4  # none twice, and no unlabelled twin beside a label


def test_hubspot_full_refresh_reads_labels_only_for_pages_with_links(make_engine):
    """The contacts list says which contacts link to companies (`associations=companies`), and
    under which types: the unlabelled one, the primary's (listed besides), or a custom label's.
    Only a page with a custom label's type sends a v4 read; the links land with the labels v4
    gives them (CONTRACTS 1.3, 1.4): "Primary" read from the list, the custom one from v4."""
    emulator = HubSpotSandbox(contacts=250, companies=0, deals=0, rate_limit=(1000, 10.0))
    store = emulator.store
    contacts = [r.id for r in store.active_records("contacts")]
    company = store.add("companies", {"name": "Acme"}, "2026-01-01T00:00:00.000Z").id
    store.update("contacts", store.record("contacts", contacts[150]),
                 {"associatedcompanyid": str(company)}, "2026-01-01T00:00:00.000Z")
    for contact in (contacts[150], contacts[199], contacts[230]):  # pages two and three
        store.associate("contacts", contact, "companies", company)
    store.label_link("contacts", contacts[230], "companies", company, "Decision maker")
    with emulator.start() as running:
        engine = make_engine(PROJECT_ROOT / "connectors")
        [run] = engine.sync("hubspot", streams=["contacts"], token="sandbox-private-app-token",
                            base_url=running.url)
    assert (run.status, run.pages, run.records) == ("succeeded", 3, 250), run.error
    # The property list, three pages, and one v4 read: the third page's, for its custom label
    # (the only place "Decision maker" can come from); the second page's primary sends none.
    assert run.requests == 1 + 3 + 1
    assert links(engine) == {
        ("contact", str(contacts[150]), "company", str(company), "Primary"),
        ("contact", str(contacts[199]), "company", str(company), None),
        ("contact", str(contacts[230]), "company", str(company), "Decision maker")}
