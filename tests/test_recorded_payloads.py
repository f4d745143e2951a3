"""The connectors against payloads recorded from the real vendors (tests/fixtures, copied from
the shared vendor-API notes with their provenance), not our emulators: records found where the
YAML says, mapped with the right types and times in UTC, the next page found, errors classified,
result ids extracted, rate-limit headers read."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from engine.clock import FakeClock
from engine.engine import PROJECT_ROOT
from engine.loader import load_connector
from engine.paginate import Page, paginator_for
from engine.ratelimit import RateBudget
from engine.transport import Call, classify

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VENDORS = ("hubspot", "salesforce", "pipedrive", "zoho")


def kind_code(errors, status, body):
    meaning = classify(errors, status, body)
    return meaning.kind, meaning.code

UTC = dt.UTC


def meta(vendor: str) -> dict:
    return json.loads((FIXTURES / vendor / "_meta.json").read_text())


def fixture(vendor: str, name: str):
    return json.loads((FIXTURES / vendor / name).read_text())


def connector(name: str):
    return load_connector(PROJECT_ROOT / "connectors" / f"{name}.yaml")


def next_call(stream, body, records, url="https://h.example/api/list"):
    return paginator_for(stream.paginate).next(Call("GET", url), Page(body, records, 1))


@pytest.mark.parametrize("vendor", VENDORS)
def test_every_recorded_file_is_here_with_its_provenance(vendor):
    recorded = {p.name for p in (FIXTURES / vendor).glob("*.json")} - {"_meta.json"}
    described = meta(vendor)
    assert recorded and set(described) == recorded  # no file without provenance, and vice versa
    for name, entry in described.items():
        assert "source" in entry and entry["source"].strip(), name
        json.loads((FIXTURES / vendor / name).read_text())  # every body parses


def test_hubspot_list_page_without_paging_is_the_last():
    hubspot = connector("hubspot")
    stream = hubspot.streams["contacts"]
    body = fixture("hubspot", "contacts_list_page.json")
    records = stream.records(body)
    assert [r["id"] for r in records] == ["713492963559", "713688692984", "713802347732"]
    assert next_call(stream, body, records) is None
    row = stream.mapping.read(records[0])
    assert row["id"] == records[0]["id"] and row["email"] == records[0]["properties"]["email"]
    assert row["updated_at"] == dt.datetime(2026, 3, 12, 7, 34, 24, 559000, tzinfo=UTC)
    assert row["is_deleted"] is False
    # hs_object_id, createdate and lastmodifieddate repeat id, created_at and updated_at.
    assert row["custom"] == {} and set(records[0]["properties"]) >= {"hs_object_id", "email"}


def test_hubspot_search_cursor_and_deal_types():
    hubspot = connector("hubspot")
    stream = hubspot.streams["deals"]
    body = fixture("hubspot", "deals_search_response.json")
    call = next_call(stream, body, stream.records(body))
    assert call is not None and call.params["after"] == "5"
    deal = stream.mapping.read(body["results"][0])
    assert deal["amount"] == Decimal("3000") and deal["stage_id"] == "appointmentscheduled"
    assert deal["close_date"] is None  # "closedate": null


def test_hubspot_errors_classify_as_the_contract_says():
    errors = connector("hubspot").errors
    assert classify(errors, 429, fixture("hubspot", "error_429_daily_limit.json")).kind == \
        "quota_exhausted"
    assert kind_code(errors, 401, fixture("hubspot", "error_401_expired_authentication.json")) \
        == ("auth_expired", "EXPIRED_AUTHENTICATION")
    assert classify(errors, 409, fixture("hubspot", "error_409_conflict_contact_exists.json")
                    ).code == "CONFLICT"


def test_salesforce_query_pages_and_records():
    salesforce = connector("salesforce")
    stream = salesforce.streams["companies"]
    first = fixture("salesforce", "query_accounts_first_page_not_done.json")
    call = next_call(stream, first, stream.records(first),
                     url="https://org.my.salesforce.com/services/data/v59.0/query")
    assert call.url == "https://org.my.salesforce.com" + first["nextRecordsUrl"]
    last = fixture("salesforce", "query_accounts_next_page_done.json")
    assert next_call(stream, last, stream.records(last)) is None
    account = stream.mapping.read(first["records"][0])
    assert account["name"] == first["records"][0]["Name"]
    assert account["created_at"] == dt.datetime(2026, 5, 1, 7, 25, 37, tzinfo=UTC)
    assert "attributes" not in account["custom"]
    contacts = fixture("salesforce", "query_contacts_page.json")
    row = salesforce.streams["contacts"].mapping.read(contacts["records"][0])
    assert row["id"] == contacts["records"][0]["Id"] and row["updated_at"].tzinfo == UTC
    empty = fixture("salesforce", "query_empty_result.json")
    assert stream.records(empty) == []


def test_salesforce_errors_are_arrays_and_limits_are_403():
    errors = connector("salesforce").errors
    assert kind_code(errors, 401, fixture("salesforce", "error_401_invalid_session_id.json")) \
        == ("auth_expired", "INVALID_SESSION_ID")
    assert kind_code(errors, 403, fixture("salesforce", "error_403_request_limit_exceeded.json")
                     ) == ("rate_limited", "REQUEST_LIMIT_EXCEEDED")
    assert kind_code(errors, 400, fixture("salesforce", "error_400_malformed_query.json")) \
        == ("fatal", "MALFORMED_QUERY")
    oauth = fixture("salesforce", "error_400_oauth_invalid_grant.json")
    assert classify(errors, 400, oauth).code == "invalid_grant"


def test_salesforce_usage_header():
    feedback = connector("salesforce").rate_limit.feedback["daily_usage"]
    assert feedback.read_usage(httpx.Headers({"Sforce-Limit-Info": "api-usage=51/100000"})) \
        == (51, 100000)


def test_pipedrive_v2_records_and_cursor_end():
    pipedrive = connector("pipedrive")
    deal = pipedrive.streams["deals"].mapping.read(fixture("pipedrive", "v2_deal_get.json")["data"])
    assert (deal["id"], deal["name"], deal["amount"], deal["currency"]) == (
        "1", "Acme Corp - Enterprise License", Decimal("25000"), "USD")
    assert (deal["company_id"], deal["contact_id"], deal["status"]) == ("1", "1", "open")
    assert deal["updated_at"] == dt.datetime(2026, 5, 15, 10, 16, 44, tzinfo=UTC)
    stream = pipedrive.streams["contacts"]
    stages = fixture("pipedrive", "v2_stages_list_page_cursor.json")  # next_cursor: null
    assert next_call(stream, stages, stages["data"]) is None
    meaning = classify(pipedrive.errors, 401, fixture("pipedrive", "error_401_unauthorized.json"))
    assert meaning.kind == "auth_expired" and meaning.code == "401"
    assert "token" in meaning.message


def test_pipedrive_email_lists():
    mapping = connector("pipedrive").mappings["contact"]
    person = fixture("pipedrive", "v1_person_get.json")["data"]
    v2_shape = {**person, "emails": person["email"], "phones": person["phone"]}
    row = mapping.read(v2_shape)
    assert row["email"] == next(e["value"] for e in person["email"] if e["primary"])


def test_zoho_list_page_lookups_and_offsets():
    zoho = connector("zoho")
    stream = zoho.streams["contacts"]
    body = fixture("zoho", "v2_contacts_list_page.json")
    records = stream.records(body)
    assert [r["id"] for r in records] == [r["id"] for r in body["data"]] and len(records) == 2
    assert next_call(stream, body, records) is None  # info.more_records: false
    row = stream.mapping.read(records[0])
    assert row["owner_id"] == records[0]["Owner"]["id"]
    assert row["created_at"] == dt.datetime.fromisoformat(records[0]["Created_Time"])
    assert row["created_at"].tzinfo == UTC
    assert not any(key.startswith("$") for key in row["custom"])
    deal = zoho.streams["deals"].mapping.read(fixture("zoho", "v2_deal_get.json")["data"][0])
    assert (deal["id"], deal["name"], deal["amount"], deal["stage"]) == (
        "7328395000000688003", "Test Deal from Nango Action", Decimal("10000"), "Qualification")
    # status comes from the stage's picklist metadata (tests/test_unified_shapes.py)
    assert deal["close_date"] == dt.date(2024, 12, 31)  # "Closing_Date": "2024-12-31"
    assert deal["updated_at"] == dt.datetime(2026, 5, 14, 9, 52, 27, tzinfo=UTC)  # +03:00 in
    assert deal["owner_id"] == "7328395000000605001"


def test_zoho_write_results_and_errors():
    zoho = connector("zoho")
    created = fixture("zoho", "v2_contact_create_response.json")
    result_id = zoho.actions["create_contact"].cases[0].result.id
    assert result_id.render({"response": created}) == created["data"][0]["details"]["id"]
    assert kind_code(zoho.errors, 401, fixture("zoho", "error_401_invalid_token.json")) == (
        "auth_expired", "INVALID_TOKEN")
    assert classify(zoho.errors, 429, fixture("zoho", "error_429_too_many_requests.json")).kind \
        == "rate_limited"
    cap = fixture("zoho", "error_400_discrete_pagination_limit_exceeded.json")
    assert classify(zoho.errors, 400, cap).code == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"
    per_record = fixture("zoho", "error_400_mandatory_not_found_in_data.json")
    # A per-record error, as the in-body rule reads it from a 2xx (and the envelope from a 400).
    assert zoho.errors.in_body_when(per_record)
    assert zoho.errors.in_body_code(per_record) == "MANDATORY_NOT_FOUND"
    assert classify(zoho.errors, 400, per_record).code == "MANDATORY_NOT_FOUND"



def recorded_headers(vendor: str, name: str) -> httpx.Headers:
    return httpx.Headers(meta(vendor)[name]["headers"])


def test_budgets_read_the_recorded_rate_limit_headers():
    clock = FakeClock()
    hubspot = RateBudget(connector("hubspot").rate_limit, clock)
    hubspot.observe(recorded_headers("hubspot", "contacts_list_page.json"))
    assert (hubspot.capacity, hubspot.window) == (110, 10.0)  # Max 110 per 10000 ms
    pipedrive = RateBudget(connector("pipedrive").rate_limit, clock)
    pipedrive.observe(recorded_headers("pipedrive", "v1_persons_list_page.json"))
    assert (pipedrive.capacity, pipedrive.daily_remaining) == (80, 147158)
    assert pipedrive.usage == "2842/150000"  # the token limit less the remaining
    salesforce = RateBudget(connector("salesforce").rate_limit, clock)
    salesforce.observe(recorded_headers("salesforce", "query_contacts_page.json"))
    assert (salesforce.usage, salesforce.daily_remaining) == ("896/15000", 15000 - 896)
    assert clock.sleeps == []


def test_pipedrive_remaining_zero_waits_for_the_recorded_reset():
    """A recorded Pipedrive window (limit 80, reset 2 s) with nothing left pauses sending for
    the reset, not for our own guess of the window."""
    clock = FakeClock()
    budget = RateBudget(connector("pipedrive").rate_limit, clock)
    spent = {**recorded_headers("pipedrive", "v1_person_get.json"), "x-ratelimit-remaining": "0"}
    budget.observe(httpx.Headers(spent))
    budget.acquire()
    assert clock.sleeps == [2.0]
