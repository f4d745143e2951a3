"""HubSpot end to end: the real connector YAML against the HubSpot emulator over loopback,
connected through the OAuth flow, landing in a real DuckDB file."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from engine.cli import main
from engine.engine import PROJECT_ROOT
from engine.errors import CrmError, InputError
from engine.ratelimit.feedback import DAILY_RECHECK_SECONDS
from sandbox.demo import connect_oauth
from sandbox.hubspot import HubSpotSandbox
from sandbox.hubspot.store import LISTED_LINKS

CONNECTORS = PROJECT_ROOT / "connectors"


@pytest.fixture(scope="module")
def hubspot():
    emulator = HubSpotSandbox(contacts=250, companies=30, deals=60, rate_limit=(1000, 10.0))
    with emulator.start() as running:
        yield emulator, running


@pytest.fixture
def engine(make_engine, hubspot):
    emulator, running = hubspot
    engine = make_engine(CONNECTORS)
    connect_oauth(engine, "hubspot", emulator, running.url, "acct")
    return engine


def first_id(emulator, kind: str, index: int = 0) -> str:
    """An id the emulator really has (its ids are large, like HubSpot's)."""
    records = emulator.store.active_records(kind)
    for _ in range(index):
        next(records)
    return next(records).id_str


def count(engine, sql, *params):
    return engine.store.query(sql, list(params))[0][0]


def test_sync_lands_every_stream_completely(engine, hubspot):
    emulator, _ = hubspot
    runs = engine.sync("hubspot", "acct")
    assert {r.stream: r.status for r in runs} == dict.fromkeys(
        ("contacts", "companies", "deals", "owners", "pipelines", "stages", "tasks", "calls",
         "meetings", "notes"), "succeeded")
    by_stream = {r.stream: r for r in runs}
    contacts = emulator.store.count("contacts")
    contacts_run = by_stream["contacts"]
    assert contacts_run.records == contacts and contacts_run.pages == 3  # 100 per page
    for table in ("contacts", "companies", "deals"):
        distinct = count(engine, f"SELECT count(DISTINCT id) FROM {table}")
        assert distinct == emulator.store.count(table)
    row = engine.store.query(
        "SELECT run_id, status, records, pages, requests, retries, error FROM sync_runs "
        "WHERE stream = 'contacts'")[0]
    # The contact properties and three pages of contacts: no v4 read of companies, the list
    # saying which link is primary and none having a custom label; a first sync reads no
    # archived contacts (none can be here).
    assert row[1:] == ("succeeded", contacts, 3, 4, 0, None)


def test_records_are_typed_utc_and_keep_unmapped_properties_in_custom(engine, hubspot):
    emulator, _ = hubspot
    engine.sync("hubspot", "acct", streams=["contacts", "deals"])
    some_id = engine.store.query("SELECT id FROM contacts ORDER BY id LIMIT 1")[0][0]
    vendor = emulator.store.get("contacts", some_id)
    row = engine.store.query(
        "SELECT first_name, email, updated_at, typeof(updated_at), custom, connector, connection "
        "FROM contacts WHERE id = ?", [some_id])[0]
    assert row[0] == vendor["properties"]["firstname"] and row[1] == vendor["properties"]["email"]
    assert row[3] == "TIMESTAMP WITH TIME ZONE"
    assert row[2] == dt.datetime.fromisoformat(vendor["updatedAt"])
    custom = json.loads(row[4])
    assert "favorite_color" in custom and "firstname" not in custom
    assert row[5:] == ("hubspot", "acct")
    deal = engine.store.query("SELECT amount, close_date, typeof(amount) FROM deals "
                              "WHERE amount IS NOT NULL AND close_date IS NOT NULL LIMIT 1")[0]
    assert isinstance(deal[0], Decimal) and deal[2].startswith("DECIMAL")
    assert isinstance(deal[1], dt.date)


def test_template_looking_names_land_verbatim(engine):
    engine.sync("hubspot", "acct", streams=["contacts"])
    assert count(engine, "SELECT count(*) FROM contacts WHERE first_name = '{{ 7*7 }}'") >= 1
    assert count(engine, "SELECT count(*) FROM contacts WHERE first_name = '49'") == 0


def test_rerun_upserts_without_duplicates_and_picks_up_changes(engine):
    engine.sync("hubspot", "acct", streams=["contacts"])
    before = count(engine, "SELECT count(*) FROM contacts")
    some_id = engine.store.query("SELECT id FROM contacts ORDER BY id LIMIT 1")[0][0]
    engine.action("hubspot", "update_contact", {"id": some_id, "job_title": "Rerun checker"},
                  "acct")
    engine.sync("hubspot", "acct", streams=["contacts"])
    assert count(engine, "SELECT count(*) FROM contacts") == before
    assert count(engine, "SELECT job_title FROM contacts WHERE id = ?", some_id) == "Rerun checker"
    assert count(engine, "SELECT count(*) FROM sync_runs WHERE stream = 'contacts'") == 2


def test_no_secret_reaches_the_database_file(engine, hubspot, tmp_path):
    emulator, _ = hubspot
    engine.sync("hubspot", "acct", streams=["companies"])
    engine.action("hubspot", "search_contact_by_email", {"email": "nobody@example.com"}, "acct",
                  log_payload=True)
    creds = engine.credentials.load("acct").credentials
    engine.close()
    data = (tmp_path / "crm.duckdb").read_bytes()
    for secret in (creds.access_token, creds.refresh_token, emulator.client_secret):
        assert secret and secret.encode() not in data


# -- actions ---------------------------------------------------------------------------------


def test_create_get_update_and_search_contact(engine, hubspot):
    emulator, _ = hubspot
    created = engine.action("hubspot", "create_contact", {
        "first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com",
        "custom": {"customer_tier": "gold"}}, "acct")
    contact_id = created["id"]
    assert created["record"]["email"] == "grace@example.com"
    stored = emulator.store.get("contacts", contact_id)["properties"]
    assert stored["customer_tier"] == "gold" and stored["lastname"] == "Hopper"

    got = engine.action("hubspot", "get_contact", {"id": contact_id}, "acct")
    assert got["record"]["first_name"] == "Grace" and got["record"]["custom"]["customer_tier"] \
        == "gold"
    engine.action("hubspot", "update_contact", {"id": contact_id, "phone": "+1 555 0100"}, "acct")
    assert emulator.store.get("contacts", contact_id)["properties"]["phone"] == "+1 555 0100"

    found = engine.action("hubspot", "search_contact_by_email", {"email": "GRACE@example.com"},
                          "acct")
    assert found["id"] == contact_id and len(found["records"]) == 1
    none = engine.action("hubspot", "search_contact_by_email", {"email": "x@nowhere.test"}, "acct")
    assert none == {"records": [], "id": None}


def test_duplicate_email_is_a_conflict_with_the_existing_id(engine):
    first = engine.action("hubspot", "create_contact", {"email": "dup@example.com"}, "acct")
    with pytest.raises(CrmError) as info:
        engine.action("hubspot", "create_contact", {"email": "dup@example.com"}, "acct")
    assert info.value.status == 409 and info.value.code == "CONFLICT"
    assert f"Existing ID: {first['id']}" in info.value.message
    assert not info.value.retryable


def test_deal_actions(engine, hubspot):
    emulator, _ = hubspot
    company = first_id(emulator, "companies")
    created = engine.action("hubspot", "create_deal", {
        "name": "Mainframe", "amount": "1234.56", "stage_id": "appointmentscheduled",
        "pipeline_id": "default", "close_date": "2026-12-31", "company_id": company}, "acct")
    deal_id = created["id"]
    assert created["record"]["amount"] == "1234.56"
    assert emulator.store.associated_ids("deals", int(deal_id), "companies") == [int(company)]
    updated = engine.action("hubspot", "update_deal",
                            {"id": deal_id, "stage_id": "closedwon", "amount": 1300}, "acct")
    assert updated["record"]["stage_id"] == "closedwon" and updated["record"]["amount"] == "1300"
    assert emulator.store.get("deals", deal_id)["properties"]["dealstage"] == "closedwon"
    # HubSpot's dealstage is an id: the label is read from the stages table, never written.
    with pytest.raises(InputError, match=r"stage: .*write stage_id instead"):
        engine.action("hubspot", "update_deal", {"id": deal_id, "stage": "Closed Won"}, "acct")
    got = engine.action("hubspot", "get_deal", {"id": deal_id}, "acct")
    assert got["record"]["close_date"] == "2026-12-31" and got["record"]["company_id"] == company


def test_create_task_with_associations_and_priority_mapping(engine, hubspot):
    emulator, _ = hubspot
    ids = {kind: first_id(emulator, kind) for kind in ("contacts", "deals", "companies")}
    task = engine.action("hubspot", "create_task", {
        "subject": "Follow up", "priority": "urgent", "due_date": "2026-12-15",
        "contact_id": ids["contacts"], "deal_id": ids["deals"], "company_id": ids["companies"]},
        "acct")
    stored = emulator.store.get("tasks", task["id"])["properties"]
    assert stored["hs_task_priority"] == "HIGH" and stored["hs_task_status"] == "NOT_STARTED"
    assert stored["hs_timestamp"].startswith("2026-12-15T00:00:00")
    for kind, linked in ids.items():
        assert emulator.store.associated_ids("tasks", int(task["id"]), kind) == [int(linked)]
    assert task["record"]["priority"] == "high"  # HubSpot has no urgent


def test_log_call_and_create_note(engine, hubspot):
    emulator, _ = hubspot
    contact = first_id(emulator, "contacts", 1)
    call = engine.action("hubspot", "log_call", {
        "subject": "Intro", "direction": "inbound", "duration_seconds": 125,
        "outcome": "left_voicemail", "contact_id": contact}, "acct")
    stored = emulator.store.get("calls", call["id"])["properties"]
    assert stored["hs_call_duration"] == "125000" and stored["hs_call_direction"] == "INBOUND"
    # Required by HubSpot (CONTRACTS 1.3); defaulted to now, as an ISO-8601 UTC time.
    logged = dt.datetime.fromisoformat(stored["hs_timestamp"].replace("Z", "+00:00"))
    assert logged.tzinfo is not None
    assert abs((dt.datetime.now(dt.UTC) - logged).total_seconds()) < 300
    assert call["record"]["duration_seconds"] == 125 and call["record"]["outcome"] == \
        "left_voicemail"
    note = engine.action("hubspot", "create_note", {"body": "Hi", "contact_id": contact}, "acct")
    assert emulator.store.associated_ids("notes", int(note["id"]), "contacts") == [int(contact)]


def test_bad_payload_is_rejected_before_any_request(engine, hubspot):
    _, running = hubspot
    before = running.app.requests_served
    with pytest.raises(InputError) as info:
        engine.action("hubspot", "create_task", {"subject": "x", "priority": "asap",
                                                 "due_date": "2026-01-01"}, "acct")
    assert info.value.field == "priority" and "asap" in info.value.message
    with pytest.raises(InputError, match="due_date: is required"):
        engine.action("hubspot", "create_task", {"subject": "x"}, "acct")
    with pytest.raises(InputError, match="close_date"):
        engine.action("hubspot", "create_deal", {"name": "x", "close_date": "31/12/2026"}, "acct")
    with pytest.raises(InputError, match="emial: unknown field"):
        engine.action("hubspot", "create_contact", {"emial": "x@y.z"}, "acct")
    assert running.app.requests_served == before
    rows = engine.store.query("SELECT status, error FROM action_log WHERE action = 'create_task'")
    assert rows and all(r[0] == "failed" for r in rows)


def test_ten_secondly_429_is_retried_and_daily_429_stops(engine, hubspot, clock):
    emulator, running = hubspot
    ten = {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
           "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}
    running.app.fail_next(2, 429, body=ten)
    contact = first_id(emulator, "contacts", 2)
    got = engine.action("hubspot", "get_contact", {"id": contact}, "acct")
    assert got["id"] == contact and len(clock.sleeps) == 2
    daily = dict(ten, message="You have reached your daily limit.", policyName="DAILY")
    running.app.fail_next(1, 429, body=daily)
    [run, *rest] = engine.sync("hubspot", "acct")
    assert run.status == "failed" and "daily API limit" in run.error and rest == []


def test_a_spent_daily_budget_stops_the_sync_before_hubspot_refuses_a_request(make_engine,
                                                                              clock):
    """Private apps are told what is left of the account's day: the request that answer says
    would be refused is never sent, nor any other in that process until the day is asked
    about again (DAILY_RECHECK_SECONDS): then one request, refused while the day lasts."""
    emulator = HubSpotSandbox(contacts=250, companies=0, deals=0, daily_limit=2)
    with emulator.start() as running:
        engine = make_engine(CONNECTORS)

        def sync():
            [run] = engine.sync("hubspot", streams=["contacts"], token=emulator.static_token,
                                base_url=running.url)
            assert run.status == "failed"
            return run

        run = sync()
        assert "daily API budget is spent" in run.error
        assert run.requests == 2 and 429 not in running.app.stats.statuses
        assert run.api_usage == "2/2"  # X-HubSpot-RateLimit-Daily less its -Remaining
        assert engine.store.query("SELECT count(*) FROM contacts")[0][0] == 100  # page 1
        assert sync().requests == 0  # the same process, later: nothing sent
        clock.advance(DAILY_RECHECK_SECONDS)
        run = sync()
        assert run.requests == 1 and running.app.stats.statuses[429] == 1
        assert "daily API limit" in run.error  # HubSpot's own refusal, this time


def test_cli_action_prints_the_unified_result(hubspot, tmp_path, capsys, monkeypatch):
    emulator, running = hubspot
    monkeypatch.setenv("CRM_ENGINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CRM_ENGINE_HUBSPOT_TOKEN", emulator.static_token)
    contact = first_id(emulator, "contacts", 3)
    code = main(["action", "hubspot", "get_contact", "--data", json.dumps({"id": contact}),
                 "--base-url", running.url, "--db", str(tmp_path / "cli.duckdb")])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["id"] == contact
    # The unified email is the vendor's, trimmed and lower-cased (this one is stored "Charles...").
    stored = emulator.store.get("contacts", contact)["properties"]["email"]
    assert stored != stored.lower()
    assert result["record"]["email"] == stored.lower()
    code = main(["action", "hubspot", "get_contact", "--data", '{"id": "999999999"}',
                 "--base-url", running.url])
    assert code == 1
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["status"] == 404 and error["code"] == "OBJECT_NOT_FOUND"


def test_cli_sync_summary(hubspot, tmp_path, capsys, monkeypatch):
    emulator, running = hubspot
    monkeypatch.setenv("CRM_ENGINE_HOME", str(tmp_path / "home"))
    code = main(["sync", "hubspot", "--streams", "companies", "--base-url", running.url,
                 "--token", emulator.static_token, "--db", str(tmp_path / "s.duckdb")])
    out = capsys.readouterr()
    assert code == 0
    assert "companies" in out.out and "succeeded" in out.out
    assert "sync hubspot/companies: succeeded" in out.err  # plain progress lines, not a tty


def test_activity_links_come_with_the_list_and_only_a_paged_list_costs_a_v4_read(engine,
                                                                                 hubspot):
    """The activities list, asked for `associations=contacts,companies,deals`, names each
    activity's links (CONTRACTS 1.3), which carry no label: a page costs no v4 read unless a
    record's links are paged there, and then only that type's read, for that page."""
    emulator, _ = hubspot
    store = emulator.store
    crowded = int(engine.action("hubspot", "create_task", {
        "subject": "Kick-off with everyone", "due_date": "2026-12-15",
        "company_id": first_id(emulator, "companies")},
        "acct")["id"])
    contacts = [c.id for c in store.active_records("contacts")]
    for contact in contacts[:LISTED_LINKS + 20]:
        store.associate("tasks", crowded, "contacts", contact)
    [run] = [r for r in engine.sync("hubspot", "acct", streams=["tasks"]) if r.stream == "tasks"]
    assert run.status == "succeeded"
    # The property list, the pages, and one v4 read: contacts, for the crowded task's page.
    assert run.requests == 1 + run.pages + 1
    for task in store.active_records("tasks"):
        for to_type, model in (("contacts", "contact"), ("companies", "company"),
                               ("deals", "deal")):
            landed = {row[0] for row in engine.store.query(
                "SELECT to_id FROM associations WHERE connection = 'acct' AND from_model = "
                "'task' AND from_id = ? AND to_model = ?", [task.id_str, model])}
            assert landed == {str(i) for i in store.associated_ids("tasks", task.id, to_type)}
    assert len(store.associated_ids("tasks", crowded, "contacts")) > LISTED_LINKS
