"""Pipedrive end to end: connectors/pipedrive.yaml against the Pipedrive emulator over loopback,
both auth ways, landing in a real DuckDB file."""

from __future__ import annotations

import json

import httpx
import pytest

from engine.engine import PROJECT_ROOT
from engine.errors import CrmError
from sandbox.demo import connect_oauth
from sandbox.pipedrive import PipedriveSandbox
from sandbox.pipedrive.schema import CUSTOMER_TIER, TIER_OPTIONS

CONNECTORS = PROJECT_ROOT / "connectors"
# A v2 person's fields that contacts has no column for, and its custom fields by their names.
UNMAPPED_PERSON_FIELDS = {"name", "visible_to", "label_ids", "picture_id", "Favorite color",
                          "Customer tier"}

TIER_LABELS = dict(TIER_OPTIONS)  # option id -> label, as GET /v1/personFields lists them


@pytest.fixture(scope="module")
def pipedrive():
    emulator = PipedriveSandbox(contacts=1200, companies=30, deals=40, rate_limit=(1000, 2.0))
    with emulator.start() as running:
        yield emulator, running


@pytest.fixture
def engine(make_engine, pipedrive):
    emulator, running = pipedrive
    engine = make_engine(CONNECTORS)
    connect_oauth(engine, "pipedrive", emulator, running.url, "pd")
    return engine


def first_person(emulator, index=0):
    records = emulator.store.active_records("persons")
    for _ in range(index):
        next(records)
    return next(records)["id"]


def test_oauth_sync_lands_every_stream_over_several_pages(engine, pipedrive):
    emulator, running = pipedrive
    stored = engine.credentials.load("pd").credentials
    assert stored.settings["api_domain"] == running.url  # the token response's api_domain
    runs = engine.sync("pipedrive", "pd")
    assert {r.stream: r.status for r in runs} == dict.fromkeys(
        ("contacts", "companies", "deals", "owners", "pipelines", "stages", "tasks", "calls",
         "meetings", "notes"), "succeeded")
    by_stream = {r.stream: r for r in runs}
    contacts = by_stream["contacts"]
    assert contacts.records == emulator.store.count("persons") and contacts.pages == 3  # 500/page
    # The company's daily token budget, as its two headers told it at the run's last answer
    # (streams still running spent more since): used/allowed.
    used, allowed = map(int, contacts.api_usage.split("/"))
    assert allowed == 150_000 and 0 < used <= allowed - emulator.budget.remaining()
    for table, kind in (("contacts", "persons"), ("companies", "organizations"),
                        ("deals", "deals")):
        landed = engine.store.query(f"SELECT count(DISTINCT id) FROM {table}")[0][0]
        assert landed == emulator.store.count(kind)


def test_persons_land_with_primary_email_and_named_custom_fields(engine, pipedrive):
    emulator, _ = pipedrive
    engine.sync("pipedrive", "pd", streams=["contacts"])
    rows = engine.store.query(
        "SELECT id, email, phone, company_id, custom FROM contacts WHERE id IN "
        "(SELECT id FROM contacts ORDER BY id LIMIT 50)")
    checked, tiers = 0, set()
    for record_id, email, _phone, company_id, custom in rows:
        person = emulator.store.get("persons", int(record_id))
        primary = [e["value"] for e in person["emails"] if e.get("primary")]
        if primary and primary[0]:
            assert email == primary[0].strip().lower()  # the unified email is normalized
            checked += 1
        assert company_id == (str(person["org_id"]) if person["org_id"] else None)
        # Every field the mapping does not name: the person's own, and its custom fields by
        # name (not hashed); none of the mapped ones.
        custom = json.loads(custom)
        assert set(custom) == UNMAPPED_PERSON_FIELDS
        # An enum custom field holds an option id; custom shows the option's label, as the
        # person fields' definitions give it.
        tier = (person["custom_fields"] or {}).get(CUSTOMER_TIER)
        assert custom["Customer tier"] == (TIER_LABELS[tier] if tier is not None else None)
        tiers.add(custom["Customer tier"])
    assert checked > 10 and len(tiers - {None}) >= 2


def test_api_token_connection(make_engine, pipedrive, tmp_path):
    emulator, running = pipedrive
    engine = make_engine(CONNECTORS, db="token.duckdb")
    engine.store_token("pipedrive", "pd-token", token=emulator.static_token,
                       config={"api_url": running.url})
    [run] = engine.sync("pipedrive", "pd-token", streams=["companies"])
    assert run.status == "succeeded" and run.records == emulator.store.count("organizations")


def test_rejected_api_token_says_so(make_engine, pipedrive):
    _, running = pipedrive
    engine = make_engine(CONNECTORS, db="bad.duckdb")
    engine.store_token("pipedrive", "pd-bad", token="not-a-real-token",
                       config={"api_url": running.url})
    [run] = engine.sync("pipedrive", "pd-bad", streams=["companies"])
    assert run.status == "failed" and "API token or access token was rejected" in run.error


def test_contact_actions_write_and_read_email_lists(engine, pipedrive):
    emulator, _ = pipedrive
    created = engine.action("pipedrive", "create_contact", {
        "first_name": "Grace", "last_name": "Hopper", "email": "grace@navy.example",
        "phone": "+1 555 0100"}, "pd")
    stored = emulator.store.get("persons", int(created["id"]))
    assert stored["name"] == "Grace Hopper"
    assert stored["emails"] == [{"value": "grace@navy.example", "primary": True, "label": "work"}]
    assert created["record"]["email"] == "grace@navy.example"
    engine.action("pipedrive", "update_contact", {"id": created["id"], "phone": "+1 555 0199"},
                  "pd")
    assert emulator.store.get("persons", int(created["id"]))["phones"][0]["value"] == \
        "+1 555 0199"
    got = engine.action("pipedrive", "get_person", {"id": created["id"]}, "pd")
    assert got["record"]["phone"] == "+1 555 0199"
    found = engine.action("pipedrive", "search_contact_by_email",
                          {"email": "GRACE@navy.example"}, "pd")
    assert found["id"] == created["id"] and found["records"][0]["email"] == "grace@navy.example"


def test_company_deal_and_note_actions(engine, pipedrive):
    emulator, _ = pipedrive
    person = first_person(emulator)
    company = engine.action("pipedrive", "create_company", {"name": "Babbage & Co"}, "pd")
    deal = engine.action("pipedrive", "create_deal", {
        "name": "Difference Engine", "amount": "99.95", "currency": "GBP",
        "company_id": company["id"], "contact_id": str(person)}, "pd")
    stored = emulator.store.get("deals", int(deal["id"]))
    assert (stored["org_id"], stored["person_id"], stored["value"]) == (
        int(company["id"]), person, 99.95)
    updated = engine.action("pipedrive", "update_deal", {"id": deal["id"], "status": "won"}, "pd")
    assert updated["record"]["status"] == "won"
    got = engine.action("pipedrive", "get_deal", {"id": deal["id"]}, "pd")
    assert got["record"]["amount"] == "99.95" and got["record"]["company_id"] == company["id"]
    note = engine.action("pipedrive", "create_note", {"body": "Met at the fair",
                                                      "deal_id": deal["id"]}, "pd")
    assert emulator.store.get("notes", int(note["id"]))["deal_id"] == int(deal["id"])


def test_activities_tasks_and_calls(engine, pipedrive):
    emulator, _ = pipedrive
    person = str(first_person(emulator, 1))
    activity = engine.action("pipedrive", "create_activity", {
        "subject": "Lunch", "type": "lunch", "due_date": "2026-12-02", "due_time": "12:30",
        "duration": "01:30", "person_id": person}, "pd")
    stored = emulator.store.get("activities", int(activity["id"]))
    assert (stored["type"], stored["due_time"], stored["duration"]) == ("lunch", "12:30", "01:30")
    engine.action("pipedrive", "update_activity", {"id": activity["id"], "done": True}, "pd")
    assert emulator.store.get("activities", int(activity["id"]))["done"] is True
    task = engine.action("pipedrive", "create_task", {"subject": "Send it", "due_date":
                                                      "2026-12-15", "contact_id": person}, "pd")
    assert emulator.store.get("activities", int(task["id"]))["type"] == "task"
    call = engine.action("pipedrive", "log_call", {"subject": "Intro", "duration_seconds": 1800,
                                                   "contact_id": person}, "pd")
    stored = emulator.store.get("activities", int(call["id"]))
    assert (stored["type"], stored["duration"], stored["done"]) == ("call", "00:30", True)
    assert call["record"]["duration_seconds"] == 1800


def test_429_with_window_headers_is_retried_after_the_reset(engine, pipedrive, clock):
    _, running = pipedrive
    headers = {"x-ratelimit-limit": "80", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"}
    running.app.fail_next(1, 429, body={"success": False, "error": "Request over limit"},
                          headers=headers)
    [run] = engine.sync("pipedrive", "pd", streams=["companies"])
    assert run.status == "succeeded" and run.retries == 1
    assert 2.0 in clock.sleeps  # the window's reset, not a guess


def test_spent_daily_budget_stops_with_a_clear_error(make_engine):
    emulator = PipedriveSandbox(contacts=20, companies=5, deals=5)
    with emulator.start() as running:
        engine = make_engine(CONNECTORS, db="budget.duckdb")
        connect_oauth(engine, "pipedrive", emulator, running.url, "pd-budget")
        engine.sync("pipedrive", "pd-budget", streams=["companies"])
        emulator.spend_daily_budget()
        served = running.app.requests_served
        runs = engine.sync("pipedrive", "pd-budget")
    assert len(runs) == 1 and runs[0].status == "failed"  # the other streams were not tried
    assert "daily API budget is spent" in runs[0].error
    assert running.app.requests_served - served <= 1  # stopped, not spinning


def test_unknown_person_is_a_normalized_404(engine):
    with pytest.raises(CrmError) as info:
        engine.action("pipedrive", "get_contact", {"id": "999999"}, "pd")
    assert info.value.status == 404 and not info.value.retryable


def test_cli_connect_stores_an_api_key_from_the_environment(pipedrive, tmp_path, monkeypatch,
                                                             capsys):
    from engine.cli import main

    emulator, running = pipedrive
    monkeypatch.setenv("CRM_ENGINE_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("CRM_ENGINE_PIPEDRIVE_TOKEN", emulator.static_token)
    assert main(["connect", "pipedrive", "--auth", "api_token", "--connection", "pd-cli",
                 "--config", f"api_url={running.url}"]) == 0
    assert "stored pd-cli" in capsys.readouterr().out
    monkeypatch.delenv("CRM_ENGINE_PIPEDRIVE_TOKEN")
    assert main(["sync", "pipedrive", "--connection", "pd-cli", "--streams", "companies",
                 "--db", str(tmp_path / "cli.duckdb")]) == 0
    stored = (tmp_path / "cli-home" / "connections" / "pd-cli.json").read_text()
    assert emulator.static_token in stored  # kept outside the DuckDB file...
    assert emulator.static_token.encode() not in (tmp_path / "cli.duckdb").read_bytes()
    assert main(["disconnect", "pipedrive", "--connection", "pd-cli"]) == 0
    assert not (tmp_path / "cli-home" / "connections" / "pd-cli.json").exists()


def test_action_results_name_custom_fields_like_syncs_do(engine, pipedrive):
    emulator, _ = pipedrive
    person = first_person(emulator, 2)
    got = engine.action("pipedrive", "get_contact", {"id": str(person)}, "pd")
    assert set(got["record"]["custom"]) == UNMAPPED_PERSON_FIELDS


def test_an_activity_whose_type_changed_moves_between_tables(engine, pipedrive):
    """The v2 activities list has no type filter (CONTRACTS 3.3): calls, meetings and tasks
    read the same list, each keeping its own types. A call turned into a meeting is a meeting
    after the next incremental run, and its row in calls is marked deleted, not left there
    until a full refresh; turned back, it returns."""
    emulator, _ = pipedrive
    person = str(first_person(emulator, 2))
    call = engine.action("pipedrive", "log_call", {"subject": "Demo", "duration_seconds": 600,
                                                   "contact_id": person}, "pd")
    activity = call["id"]
    streams = ["calls", "meetings"]
    assert {r.status for r in engine.sync("pipedrive", "pd", streams=streams)} == {"succeeded"}

    def where() -> dict[str, bool | None]:
        return {table: next(iter(engine.store.query(
            f"SELECT is_deleted FROM {table} WHERE connection = 'pd' AND id = ?",
            [activity])), (None,))[0] for table in streams}

    assert where() == {"calls": False, "meetings": None}
    engine.action("pipedrive", "update_activity", {"id": activity, "type": "meeting"}, "pd")
    assert emulator.store.get("activities", int(activity))["type"] == "meeting"
    runs = {r.stream: r for r in engine.sync("pipedrive", "pd", streams=streams)}
    assert {r.mode for r in runs.values()} == {"incremental"}
    assert where() == {"calls": True, "meetings": False}
    assert runs["calls"].deleted == 1  # (other calls of this module may be read again)

    engine.action("pipedrive", "update_activity", {"id": activity, "type": "call"}, "pd")
    runs = {r.stream: r for r in engine.sync("pipedrive", "pd", streams=streams)}
    assert where() == {"calls": False, "meetings": True}
    assert runs["meetings"].deleted == 1


def deal_contacts(engine, connection: str) -> set[tuple[str, str]]:
    return set(engine.store.query(
        "SELECT from_id, to_id FROM associations WHERE connection = ? AND from_model = 'deal' "
        "AND to_model = 'contact'", [connection]))


def test_deal_participants_land_as_links_when_the_connection_asks(make_engine, pipedrive):
    """Pipedrive keeps a deal's other contacts as participants, listed one deal at a time
    (GET /v1/deals/{id}/participants). With the connection's deal_participants setting, each
    deal that has any (v2 `include_fields=participants_count`) costs one more request per
    page of its participants, and each becomes a deal -> contact link; without it, none is
    sent and the deal keeps its one person."""
    emulator, running = pipedrive
    store = emulator.store
    # One deal with more participants than one page holds (500).
    crowded = next(iter(store.active_records("deals")))["id"]
    for person in list(store.active_records("persons"))[:520]:
        store.add_participant(crowded, person["id"], emulator.now())
    deals = list(store.active_records("deals"))
    primary = {(str(d["id"]), str(d["person_id"])) for d in deals if d["person_id"]}
    everyone = primary | {(str(d["id"]), str(p["person_id"]))
                          for d in deals for p in store.participants_of(d["id"])}
    assert len(everyone) > len(primary) + 520
    engine = make_engine(CONNECTORS, db="participants.duckdb")
    served = {}
    for name, setting in (("pd-plain", {}), ("pd-participants", {"deal_participants": True})):
        engine.store_token("pipedrive", name, token=emulator.static_token,
                           config={"api_url": running.url, **setting})
        before = running.app.requests_served
        runs = engine.sync("pipedrive", name, streams=["deals"])
        assert {r.status for r in runs} == {"succeeded"}
        served[name] = running.app.requests_served - before
    assert deal_contacts(engine, "pd-plain") == primary
    assert deal_contacts(engine, "pd-participants") == everyone
    with_participants = sum(1 for d in deals if store.participants_of(d["id"]))
    # One request per deal with participants, and one more for the crowded deal's second page.
    assert served["pd-participants"] - served["pd-plain"] == with_participants + 1

    # A participant added later, then the deal changed: the next incremental run reads it.
    deal = next(d for d in deals if d["id"] != crowded and not store.participants_of(d["id"]))
    newcomer = str(first_person(emulator, 600))
    added = httpx.post(f"{running.url}/api/v1/deals/{deal['id']}/participants",
                       json={"person_id": int(newcomer)},
                       headers={"x-api-token": emulator.static_token})
    assert added.status_code == 201, added.text
    engine.action("pipedrive", "update_deal", {"id": str(deal["id"]), "name": "Renamed"},
                  "pd-participants")
    [run] = [r for r in engine.sync("pipedrive", "pd-participants", streams=["deals"])
             if r.stream == "deals"]
    assert run.mode == "incremental"
    assert (str(deal["id"]), newcomer) in deal_contacts(engine, "pd-participants")
