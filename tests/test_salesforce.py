"""Salesforce end to end: connectors/salesforce.yaml against the Salesforce emulator."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from engine.engine import PROJECT_ROOT
from engine.errors import CrmError, InputError
from sandbox import EMULATORS
from sandbox.demo import connect_oauth

CONNECTORS = PROJECT_ROOT / "connectors"
HOSTILE = ["x' OR Email != '", "a@b.com' OR Name LIKE '%", "\\' OR Id != '", "a\nb@c.com",
           "o'brien@example.com", "%@example.com", "'; DELETE FROM Contact; --"]


@pytest.fixture(scope="module")
def salesforce():
    emulator = EMULATORS["salesforce"](contacts=450, companies=20, deals=30, batch_size=200)
    with emulator.start() as running:
        yield emulator, running


@pytest.fixture
def engine(make_engine, salesforce):
    emulator, running = salesforce
    engine = make_engine(CONNECTORS)
    connect_oauth(engine, "salesforce", emulator, running.url, "sf")
    return engine


def ids(emulator, object_name):
    return [record.id for record in emulator.store.records(object_name)]


def test_sync_follows_next_records_url_and_records_api_usage(engine, salesforce):
    emulator, running = salesforce
    stored = engine.credentials.load("sf").credentials
    assert stored.settings["instance_url"] == running.url and stored.expires_at is not None
    runs = engine.sync("salesforce", "sf", config={"batch_size": 200})
    assert {r.stream: r.status for r in runs} == dict.fromkeys(
        ("contacts", "companies", "deals", "owners", "pipelines", "stages", "tasks", "calls",
         "meetings", "notes"), "succeeded")
    by_stream = {r.stream: r for r in runs}
    contacts = by_stream["contacts"]
    assert contacts.records == 450 and contacts.pages == 3
    # Sforce-Limit-Info: api-usage=N/M, M the org's daily allocation (CONTRACTS 2.7)
    used, allowed = re.fullmatch(r"(\d+)/(\d+)", contacts.api_usage).groups()
    assert int(allowed) == int(emulator.describe()["daily_limit"]) and int(used) > 0
    for table, sobject in (("contacts", "Contact"), ("companies", "Account"),
                           ("deals", "Opportunity")):
        landed = engine.store.query(f"SELECT count(DISTINCT id) FROM {table}")[0][0]
        assert landed == emulator.store.count(sobject)


def test_records_drop_attributes_and_land_as_utc(engine, salesforce):
    emulator, _ = salesforce
    engine.sync("salesforce", "sf", streams=["contacts", "deals"])
    contact_id = ids(emulator, "Contact")[0]
    vendor = emulator.store.get("Contact", contact_id)
    row = engine.store.query("SELECT company_id, owner_id, updated_at, custom FROM contacts "
                             "WHERE id = ?", [contact_id])[0]
    assert (row[0], row[1]) == (vendor["AccountId"], vendor["OwnerId"])
    assert row[2] == dt.datetime.strptime(vendor["SystemModstamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert "attributes" not in (row[3] or "")
    statuses = {r[0] for r in engine.store.query("SELECT DISTINCT status FROM deals")}
    assert statuses <= {"open", "won", "lost"} and len(statuses) >= 2


@pytest.mark.parametrize("hostile", HOSTILE)
def test_soql_escaping_keeps_hostile_values_as_values(engine, hostile):
    found = engine.action("salesforce", "search_contact_by_email", {"email": hostile}, "sf")
    assert found == {"records": [], "id": None}


def test_search_finds_an_email_with_a_quote(engine):
    created = engine.action("salesforce", "create_contact", {
        "last_name": "O'Brien", "email": "o'brien.test@example.com"}, "sf")
    found = engine.action("salesforce", "search_contact_by_email",
                          {"email": "o'brien.test@example.com"}, "sf")
    assert found["id"] == created["id"] and found["records"][0]["last_name"] == "O'Brien"


def test_lead_or_contact_by_lifecycle_stage(engine, salesforce):
    emulator, _ = salesforce
    lead = engine.action("salesforce", "create_contact", {
        "last_name": "Lovelace", "lifecycle_stage": "lead"}, "sf")
    contact = engine.action("salesforce", "create_contact", {"last_name": "Babbage"}, "sf")
    assert lead["id"].startswith("00Q") and contact["id"].startswith("003")
    assert emulator.store.get("Lead", lead["id"])["Company"] == "[not provided]"


def test_task_or_event_by_activity_type(engine, salesforce):
    emulator, _ = salesforce
    contact = ids(emulator, "Contact")[1]
    meeting = engine.action("salesforce", "log_activity", {
        "activity_type": "meeting", "subject": "Kick-off", "duration_seconds": 2700,
        "started_at": "2026-11-30T15:00:00Z", "contact_id": contact}, "sf")
    call = engine.action("salesforce", "log_activity", {
        "subject": "Intro", "direction": "inbound", "duration_seconds": 95,
        "outcome": "left_voicemail", "contact_id": contact}, "sf")
    event = emulator.store.get("Event", meeting["id"])
    assert meeting["id"].startswith("00U") and event["DurationInMinutes"] == 45
    task = emulator.store.get("Task", call["id"])
    assert (task["TaskSubtype"], task["CallType"], task["CallDurationInSeconds"],
            task["CallDisposition"]) == ("Call", "Inbound", 95, "Left Voicemail")


def test_update_returns_the_id_after_204_and_get_reads_back(engine):
    deal = engine.action("salesforce", "create_deal", {
        "name": "Engine", "stage": "Prospecting", "close_date": "2026-12-31",
        "amount": "10.50"}, "sf")
    updated = engine.action("salesforce", "update_deal",
                            {"id": deal["id"], "stage": "Closed Won"}, "sf")
    assert updated == {"id": deal["id"]}
    got = engine.action("salesforce", "get_deal", {"id": deal["id"]}, "sf")
    assert got["record"]["stage"] == "Closed Won" and got["record"]["status"] == "won"
    assert got["record"]["amount"] == "10.5"


def test_task_and_note(engine, salesforce):
    emulator, _ = salesforce
    contact, deal = ids(emulator, "Contact")[2], ids(emulator, "Opportunity")[0]
    task = engine.action("salesforce", "create_task", {
        "subject": "Call back", "priority": "urgent", "due_date": "2026-12-15",
        "contact_id": contact, "deal_id": deal}, "sf")
    stored = emulator.store.get("Task", task["id"])
    assert (stored["Priority"], stored["WhoId"], stored["WhatId"]) == ("High", contact, deal)
    note = engine.action("salesforce", "create_note", {"body": "Likes gears",
                                                       "contact_id": contact}, "sf")
    assert note["id"].startswith("002")  # a classic Note's key prefix
    stored = emulator.store.get("Note", note["id"])
    assert (stored["ParentId"], stored["Title"], stored["Body"]) == (contact, "Likes gears",
                                                                     "Likes gears")


def test_search_records_runs_only_a_select(engine):
    result = engine.action("salesforce", "search_records",
                           {"query": "SELECT Id, Name FROM Account ORDER BY Name LIMIT 3"}, "sf")
    assert len(result["records"]) == 3 and "attributes" in result["records"][0]
    with pytest.raises(InputError, match="single SOQL SELECT"):
        engine.action("salesforce", "search_records", {"query": "DELETE FROM Account"}, "sf")


def test_error_arrays_are_normalized(engine):
    with pytest.raises(CrmError) as info:
        engine.action("salesforce", "create_deal", {"name": "x", "stage": "Nope",
                                                     "close_date": "2026-01-01"}, "sf")
    error = info.value
    # fixtures/salesforce/error_400_invalid_restricted_picklist.json: the array's first entry
    assert (error.status, error.code, error.kind, error.retryable) == (
        400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "fatal", False)
    assert error.message.endswith(": bad value for restricted picklist field: Nope")
    assert error.raw_body[0]["errorCode"] == error.code


def test_expired_session_refreshes_once_and_retries(engine, salesforce):
    emulator, running = salesforce
    engine.sync("salesforce", "sf", streams=["companies"])
    before = engine.credentials.load("sf").credentials
    token_calls = running.app.stats.count("oauth.token")
    served = running.app.requests_served
    emulator.expire_all_tokens()  # the next API call gets 401 INVALID_SESSION_ID
    [run] = engine.sync("salesforce", "sf", streams=["companies"], full_refresh=True)
    assert run.status == "succeeded" and run.records == emulator.store.count("Account")
    assert running.app.stats.count("oauth.token") == token_calls + 1  # refreshed once
    # The refused request (the Account describe), the refresh, the same request again, one
    # page of 20 accounts, then the one query for deleted accounts.
    assert running.app.requests_served - served == 5
    after = engine.credentials.load("sf").credentials
    assert after.access_token != before.access_token  # the new one, stored
    assert after.refresh_token == before.refresh_token  # Salesforce does not rotate here


def test_request_limit_exceeded_is_retried_then_a_spent_allocation_stops(engine, salesforce,
                                                                           clock):
    _, running = salesforce
    limit = [{"message": "ConcurrentRequests Limit exceeded.",
              "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    running.app.fail_next(1, 403, body=limit)
    [run] = engine.sync("salesforce", "sf", streams=["companies"])
    assert run.status == "succeeded" and run.retries == 1 and len(clock.sleeps) == 1
    running.app.fail_next(1, 403, body=[{"message": "TotalRequests Limit exceeded.",
                                         "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                          headers={"Sforce-Limit-Info": "api-usage=100000/100000"})
    [run] = engine.sync("salesforce", "sf", streams=["companies"])
    assert run.status == "failed" and "daily API budget is spent" in run.error


def test_contact_reads_and_updates_and_the_opportunity_alias(engine, salesforce):
    emulator, _ = salesforce
    contact = engine.action("salesforce", "create_contact", {"last_name": "Turing",
                                                             "email": "alan@example.com"}, "sf")
    assert engine.action("salesforce", "update_contact",
                         {"id": contact["id"], "job_title": "Cryptanalyst"}, "sf") == \
        {"id": contact["id"]}
    got = engine.action("salesforce", "get_contact", {"id": contact["id"]}, "sf")
    assert got["record"]["job_title"] == "Cryptanalyst" and got["record"]["email"] == \
        "alan@example.com"
    call = engine.action("salesforce", "log_call", {"subject": "Bombe", "direction": "outbound",
                                                    "duration_seconds": 60,
                                                    "contact_id": contact["id"]}, "sf")
    assert emulator.store.get("Task", call["id"])["TaskSubtype"] == "Call"
    deal = ids(emulator, "Opportunity")[1]
    engine.action("salesforce", "update_opportunity", {"id": deal, "amount": 42}, "sf")
    assert emulator.store.get("Opportunity", deal)["Amount"] == 42
