"""The unified tables' meaning, from payloads recorded from the real vendors (tests/fixtures):
reference records (users, stages) mapped, deals' stage label, id, status and currency, custom
holding every field the mapping does not name (and none it does), normalized domains, emails
and phones; and the spec language's lookups, fallbacks and merges failing clearly."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

from engine.convert import warnings_to
from engine.engine import PROJECT_ROOT
from engine.errors import InputError
from engine.loader import load_connector
from engine.mapping import ReadContext
from engine.normalize import e164, email, url_host
from tests.support import TEST_MAPPING, connector_yaml
from tests.test_validate import GOOD_STREAM, problems_for

FIXTURES = Path(__file__).resolve().parent / "fixtures"
UTC = dt.UTC


def fixture(vendor: str, name: str):
    return json.loads((FIXTURES / vendor / name).read_text())


def mappings(name: str):
    return load_connector(PROJECT_ROOT / "connectors" / f"{name}.yaml").mappings


# -- normalized values -------------------------------------------------------------------------

def test_domains_are_bare_lower_case_hosts():
    assert url_host("http://edgecomm.com") == "edgecomm.com"  # Salesforce Website (recorded)
    assert url_host("https://WWW.Example.COM/about?x=1") == "example.com"
    assert url_host("example.org") == "example.org"
    assert url_host("  ") is None and url_host(None) is None
    assert url_host("http://[broken") is None  # not a URL: null, never an exception


def test_emails_are_trimmed_and_lower_case():
    assert email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"
    assert email("   ") is None


def test_phones_in_e164_where_they_parse():
    assert e164("+1-555-509-3895") == "+15555093895"
    assert e164("+44 20 7946 0000") == "+442079460000"
    assert e164("(512) 757-6000") is None  # no country code and no region to read it in
    assert e164("(512) 757-6000", "US") == "+15127576000"  # Salesforce's recorded Phone
    assert e164("not a phone", "US") is None
    assert e164("+1 23") is None  # too short to be a number


# -- HubSpot -----------------------------------------------------------------------------------

def test_hubspot_owners_from_the_recorded_list():
    owner = mappings("hubspot")["owner"]
    rows = [owner.read(r) for r in fixture("hubspot", "owners_list.json")["results"]]
    assert [(r["id"], r["name"], r["email"], r["is_active"]) for r in rows] == [
        ("32900489", "Test Delete", "test-delete-action@example.com", True),
        ("88842095", "Marcin Nango", "marcinnango@gmail.com", True)]
    assert rows[0]["created_at"] == dt.datetime(2026, 3, 12, 7, 37, 29, 818000, tzinfo=UTC)
    # The fields the mapping does not name, and no field twice.
    assert rows[0]["custom"] == {"type": "PERSON", "userId": 32900489,
                                 "userIdIncludingInactive": 32900489}


# HubSpot's default deal pipeline, as its pipelines API documents it: stage ids are the
# dealstage values, metadata.probability a fraction in a string.
HUBSPOT_STAGES = [
    {"id": "appointmentscheduled", "label": "Appointment Scheduled", "is_closed": False,
     "is_won": False},
    {"id": "closedwon", "label": "Closed Won", "is_closed": True, "is_won": True},
    {"id": "closedlost", "label": "Closed Lost", "is_closed": True, "is_won": False},
]


def test_hubspot_deal_stage_status_and_currency_from_the_recorded_search():
    deal = mappings("hubspot")["deal"]
    [recorded, *_] = fixture("hubspot", "deals_search_response.json")["results"]
    context = ReadContext(references={"stage": HUBSPOT_STAGES,
                                      "pipeline": [{"id": "default", "label": "Sales Pipeline"}]},
                          account={"default_currency": "EUR"})
    row = deal.read(recorded, context=context)
    assert (row["stage"], row["stage_id"], row["status"]) == (
        "Appointment Scheduled", "appointmentscheduled", "open")
    assert (row["pipeline"], row["pipeline_id"]) == ("Sales Pipeline", "default")
    # No deal_currency_code in the recording: the portal's currency.
    assert "deal_currency_code" not in recorded["properties"]
    assert row["currency"] == "EUR" and row["amount"] == Decimal("3000")
    # hs_object_id, createdate and hs_lastmodifieddate repeat id, created_at, updated_at.
    assert row["custom"] == {}
    won = {**recorded, "properties": {**recorded["properties"], "dealstage": "closedwon",
                                      "deal_currency_code": "GBP"}}
    row = deal.read(won, context=context)
    assert (row["stage"], row["status"], row["currency"]) == ("Closed Won", "won", "GBP")


def test_a_stage_nobody_synced_reads_null_with_a_warning():
    deal = mappings("hubspot")["deal"]
    [recorded, *_] = fixture("hubspot", "deals_search_response.json")["results"]
    seen: list[str] = []
    with warnings_to(seen.append):
        row = deal.read(recorded, context=ReadContext(references={"stage": []}))
    assert row["stage_id"] == "appointmentscheduled"
    assert row["stage"] is None and row["status"] is None
    assert any("no stage with id 'appointmentscheduled'" in w for w in seen)


def test_a_looked_up_field_is_not_written():
    deal = mappings("hubspot")["deal"]
    with pytest.raises(InputError, match="stage: is read from the stages table, not written: "
                                         "write stage_id instead"):
        deal.write({"stage": "Closed Won"}, apply_defaults=False)
    assert deal.write({"stage_id": "closedwon"}, apply_defaults=False) == {
        "properties": {"dealstage": "closedwon"}}


def test_hubspot_contacts_custom_never_repeats_a_mapped_field():
    contact = mappings("hubspot")["contact"]
    row = contact.read(fixture("hubspot", "contacts_get.json"))
    assert row["email"] == "test-contact-2026@example.com"
    assert row["custom"] == {}  # createdate, lastmodifieddate, hs_object_id are mapped fields


# -- Salesforce --------------------------------------------------------------------------------

def test_salesforce_account_domain_address_phone_and_custom():
    company = mappings("salesforce")["company"]
    recorded = fixture("salesforce", "sobject_get_account.json")
    row = company.read(recorded, context=ReadContext(phone_region="US"))
    assert recorded["Website"] == "http://edgecomm.com"
    assert row["domain"] == "edgecomm.com"
    assert row["phone"] == "(512) 757-6000" and row["phone_e164"] == "+15127576000"
    assert row["address"] == ("312 Constitution Place\nAustin, TX 78767\nUSA, Austin, TX, "
                              "United States")
    custom = row["custom"]
    assert custom["Fax"] == "(512) 757-9000" and custom["AnnualRevenue"] == 139000000
    assert custom["BillingAddress"]["countryCode"] == "US"  # nothing dropped
    mapped = {"Id", "Name", "Website", "Phone", "Industry", "BillingCity", "BillingCountry",
              "BillingStreet", "BillingState", "BillingPostalCode", "OwnerId", "CreatedDate",
              "SystemModstamp", "IsDeleted", "attributes"}
    assert not mapped & set(custom)


def test_salesforce_opportunity_stage_id_and_currency_fallback():
    deal = mappings("salesforce")["deal"]
    record = {"attributes": {"type": "Opportunity"}, "Id": "006dM00000A1", "Name": "Edge",
              "StageName": "Closed Won", "IsClosed": True, "IsWon": True, "Amount": 1000,
              "CurrencyIsoCode": None}
    context = ReadContext(references={"stage": [{"id": "01J000000000001", "label": "Closed Won",
                                                 "is_closed": True, "is_won": True}]},
                          account={"default_currency": "USD"})
    row = deal.read(record, context=context)
    assert (row["stage"], row["stage_id"], row["status"], row["currency"]) == (
        "Closed Won", "01J000000000001", "won", "USD")
    assert row["custom"] == {}  # IsClosed and IsWon are read by status


# -- Pipedrive ---------------------------------------------------------------------------------

def test_pipedrive_stages_from_the_recorded_v2_page():
    stage = mappings("pipedrive")["stage"]
    row, second = [stage.read(r) for r in
                   fixture("pipedrive", "v2_stages_list_page_cursor.json")["data"]]
    assert (second["id"], second["label"], second["probability"]) == (
        "10", "Nango Create Stage Test", 100.0)
    assert (row["id"], row["label"], row["pipeline_id"], row["sort_order"]) == (
        "7", "Prospect Qualified", "2", 1)
    assert (row["probability"], row["is_closed"], row["is_won"], row["is_deleted"]) == (
        30.0, False, False, False)
    assert row["custom"] == {"is_deal_rot_enabled": False, "days_to_rotten": None}


def test_pipedrive_deal_labels_status_and_every_unmapped_field():
    deal = mappings("pipedrive")["deal"]
    recorded = fixture("pipedrive", "v2_deal_get.json")["data"]
    context = ReadContext(references={"stage": [{"id": "3", "label": "Demo Scheduled"}],
                                      "pipeline": [{"id": "1", "label": "Sales pipeline"}]})
    row = deal.read(recorded, context=context)
    assert (row["stage"], row["stage_id"], row["pipeline"], row["pipeline_id"]) == (
        "Demo Scheduled", "3", "Sales pipeline", "1")
    assert (row["status"], row["currency"], row["amount"]) == ("open", "USD", Decimal("25000"))
    custom = row["custom"]
    assert recorded["custom_fields"] is None
    assert custom["probability"] == 65 and custom["origin"] == "Marketplace"
    assert custom["creator_user_id"] == 25760681
    assert not {"title", "value", "currency", "stage_id", "pipeline_id", "status", "owner_id",
                "custom_fields"} & set(custom)


def test_pipedrive_organization_keeps_its_recorded_address():
    company = mappings("pipedrive")["company"]
    # The organization inside a recorded v1 person (v1 gives the address as one line).
    org = {"id": 1, **fixture("pipedrive", "v1_persons_list_page.json")["data"][0]["org_id"]}
    row = company.read(org)
    assert row["name"] == "Test Organization Updated"
    assert row["address"] == "123 Main St, San Francisco, CA 94105"
    assert row["custom"]["cc_email"] == "nango-sandbox2@pipedrivemail.com"
    assert "address" not in row["custom"] and "name" not in row["custom"]
    # v2's address object gives the line, the city and the country.
    v2 = {"id": 2, "name": "Acme", "website": "https://www.Acme.example/", "custom_fields":
          {"a" * 40: "EMEA"}, "address": {"value": "1 Rue X, Paris", "locality": "Paris",
                                          "country": "France", "postal_code": "75001"}}
    row = company.read(v2, custom_names={"a" * 40: "Region"})
    assert (row["address"], row["city"], row["country"], row["domain"]) == (
        "1 Rue X, Paris", "Paris", "France", "acme.example")
    assert row["custom"] == {"Region": "EMEA"}  # custom fields under their names


def test_pipedrive_owners_from_the_recorded_users():
    owner = mappings("pipedrive")["owner"]
    [row] = [owner.read(r) for r in fixture("pipedrive", "v1_users_list.json")["data"]]
    assert (row["id"], row["name"], row["email"], row["is_active"]) == (
        "25760681", "Nango", "api@nango.dev", True)
    assert row["created_at"] == dt.datetime(2026, 5, 15, 9, 12, 14, tzinfo=UTC)
    assert row["custom"]["default_currency"] == "USD"


# -- Zoho --------------------------------------------------------------------------------------

def test_zoho_owner_from_the_recorded_users():
    owner = mappings("zoho")["owner"]
    row = owner.read(fixture("zoho", "v2_users_list.json")["users"][0])
    assert (row["id"], row["name"], row["is_active"]) == (
        "7328395000000605001", "Nango Developer", True)
    assert row["created_at"] == dt.datetime(2026, 5, 14, 8, 34, 21, tzinfo=UTC)  # +03:00 in
    assert row["custom"]["role"] == {"name": "CEO", "id": "7328395000000026005"}


def test_zoho_deal_status_from_the_stage_picklist_and_the_org_currency():
    deal = mappings("zoho")["deal"]
    recorded = fixture("zoho", "v2_deal_get.json")["data"][0]
    context = ReadContext(
        references={"stage": [{"id": "73283950000001", "label": "Qualification",
                               "is_closed": False, "is_won": False}]},
        account={"default_currency": "KES"})  # the recorded org's currency ($currency_symbol)
    row = deal.read(recorded, context=context)
    assert (row["stage"], row["stage_id"], row["status"]) == (
        "Qualification", "73283950000001", "open")
    assert (row["currency"], row["amount"]) == ("KES", Decimal("10000"))
    custom = row["custom"]
    assert custom["Probability"] == 10 and custom["Expected_Revenue"] == 1000
    assert not any(key.startswith("$") for key in custom)
    assert not {"Deal_Name", "Stage", "Amount", "Owner"} & set(custom)


# -- the spec language's checks ----------------------------------------------------------------

def test_a_lookup_into_an_unknown_model_is_a_spec_error(tmp_path):
    mapping = TEST_MAPPING.replace("first_name: name",
                                   "first_name: {path: name, lookup: {model: stag, value: x}}")
    [p] = problems_for(tmp_path, connector_yaml(GOOD_STREAM), mapping)
    assert p.path == "models.contact.fields.first_name.lookup.model"
    assert "unknown unified model 'stag'" in p.message


def test_a_derived_field_is_not_mapped(tmp_path):
    mapping = TEST_MAPPING.replace("email: email", "email: email\n      phone_e164: tel")
    [p] = problems_for(tmp_path, connector_yaml(GOOD_STREAM), mapping)
    assert p.path == "models.contact.fields.phone_e164"
    assert "computed from phone" in p.message


def test_a_fallback_on_an_undeclared_account_fact_is_a_spec_error(tmp_path):
    mapping = TEST_MAPPING.replace("email: email",
                                   "email: {path: email, fallback: {account: default_email}}")
    [p] = problems_for(tmp_path, connector_yaml(GOOD_STREAM), mapping)
    assert "account fact 'default_email'" in p.message and "contact.email" in p.message
