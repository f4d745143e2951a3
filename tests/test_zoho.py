"""Zoho CRM end to end: connectors/zoho.yaml against the Zoho emulator over loopback."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from engine.engine import PROJECT_ROOT
from engine.errors import CrmError, InputError
from sandbox import EMULATORS
from sandbox.demo import connect_oauth, follow_without_browser
from sandbox.zoho.settings import HOME_CURRENCY as ORG_CURRENCY  # what GET /org answers

CONNECTORS = PROJECT_ROOT / "connectors"
HOSTILE = ["a@b.com)or(Email:starts_with:", "x,y@z.com", "(a)@b.com", "back\\slash@x.com",
           "a@b.com)or(Last_Name:equals:Smith"]


@pytest.fixture(scope="module")
def zoho():
    emulator = EMULATORS["zoho"](contacts=2300, companies=20, deals=30)
    with emulator.start() as running:
        yield emulator, running


@pytest.fixture
def engine(make_engine, zoho):
    emulator, running = zoho
    engine = make_engine(CONNECTORS)
    connect_oauth(engine, "zoho", emulator, running.url, "z")
    return engine


def some_id(emulator, module, index=0):
    return emulator.store.ids(module)[index]


def test_sync_crosses_the_2000_record_page_cap_with_page_tokens(engine):
    runs = engine.sync("zoho", "z")
    assert {r.stream: r.status for r in runs} == dict.fromkeys(
        ("contacts", "companies", "deals", "owners", "pipelines", "stages", "tasks", "calls",
         "meetings", "notes"), "succeeded")
    by_stream = {r.stream: r for r in runs}
    contacts = by_stream["contacts"]
    assert contacts.records == 2300 and contacts.pages == 12  # 10 numbered pages, then tokens
    assert engine.store.query("SELECT count(DISTINCT id) FROM contacts")[0][0] == 2300
    # No page was refused (no 400 at the cap); a first sync asks for no deleted contacts; the
    # one more request is the module's field list.
    assert contacts.requests == contacts.pages + 1


def test_lookups_offsets_and_custom_fields(engine, zoho):
    emulator, _ = zoho
    engine.sync("zoho", "z", streams=["contacts"])
    with_account = next(r for r in (emulator.store.get("Contacts", i)
                                    for i in emulator.store.ids("Contacts")[:50])
                        if r.get("Account_Name"))
    row = engine.store.query(
        "SELECT company_id, company_name, owner_id, updated_at, custom FROM contacts "
        "WHERE id = ?", [with_account["id"]])[0]
    assert row[0] == with_account["Account_Name"]["id"]
    assert row[1] == with_account["Account_Name"]["name"]
    assert row[2] == with_account["Owner"]["id"]
    assert row[3] == dt.datetime.fromisoformat(with_account["Modified_Time"])  # +03:00 -> UTC
    assert row[3].utcoffset() == dt.timedelta(0)
    assert "Favorite_Color" in row[4] and "$state" not in row[4]


def test_empty_module_answers_204_and_syncs_zero_records(make_engine):
    emulator = EMULATORS["zoho"](contacts=0, companies=0, deals=0)
    with emulator.start() as running:
        engine = make_engine(CONNECTORS, db="empty.duckdb")
        connect_oauth(engine, "zoho", emulator, running.url, "z-empty")
        runs = engine.sync("zoho", "z-empty")
    reference = ("owners", "pipelines", "stages")  # the account's settings, not its records
    assert [(r.status, r.records, r.pages) for r in runs
            if r.stream not in reference] == [("succeeded", 0, 1)] * 7


class Recording(httpx.HTTPTransport):
    """Real HTTP, remembering every request the engine sent."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def test_api_calls_use_zoho_oauthtoken_not_bearer(make_engine, zoho):
    emulator, running = zoho
    sent = Recording()
    engine = make_engine(CONNECTORS, db="header.duckdb", transport=sent)
    connect_oauth(engine, "zoho", emulator, running.url, "z-header")
    contact = some_id(emulator, "Contacts")
    result = engine.action("zoho", "get_contact", {"id": contact}, "z-header")
    assert result["id"] == contact
    token = engine.credentials.load("z-header").credentials.access_token
    [request] = sent.requests
    # CONTRACTS 4.2/4.3: Authorization: Zoho-oauthtoken <token>, on {api_domain}/crm/v3/...
    assert request.headers["authorization"] == f"Zoho-oauthtoken {token}"
    assert str(request.url).startswith(f"{running.url}/crm/v3/Contacts/{contact}")


def test_data_centre_choice_and_the_callback_accounts_server(make_engine, zoho):
    engine = make_engine(CONNECTORS, db="dc.duckdb")
    seen: list[str] = []
    emulator, running = zoho

    def browser(url: str) -> None:
        seen.append(url)
        follow_without_browser(url)

    # data_centre eu would send the user to accounts.zoho.eu; the sandbox override stands in.
    engine.connect("zoho", "z-eu", client_id=emulator.client_id,
                   client_secret=emulator.client_secret,
                   config={"data_centre": "eu", "accounts_url": running.url},
                   redirect_uri="http://127.0.0.1:0/callback", open_url=browser, timeout=10)
    query = parse_qs(urlsplit(seen[0]).query)
    # CONTRACTS 4.1: comma-separated; every CRM module, and securesearch for searches.
    assert {"ZohoCRM.modules.ALL", "ZohoSearch.securesearch.READ"} <= set(
        query["scope"][0].split(","))
    assert query["access_type"] == ["offline"]  # what yields a refresh token
    stored = engine.credentials.load("z-eu").credentials
    assert stored.settings["accounts_server"] == running.url  # from the callback
    assert stored.settings["api_domain"] == running.url  # from the token response
    context = engine.connector("zoho").template_context({"data_centre": "eu", "accounts_url":
                                                         None}, {})
    url = engine.connector("zoho").auth["oauth2"].authorize_url.render(context)
    assert url == "https://accounts.zoho.eu/oauth/v2/auth"
    with pytest.raises(InputError, match="data_centre"):
        engine.sync("zoho", "z-eu", config={"data_centre": "mars"})


@pytest.mark.parametrize("hostile", HOSTILE)
def test_criteria_escaping_keeps_hostile_values_as_values(engine, zoho, hostile):
    found = engine.action("zoho", "search_contact_by_email", {"email": hostile}, "z")
    assert found == {"records": [], "id": None}


def test_search_finds_a_created_contact_with_special_characters(engine):
    created = engine.action("zoho", "create_contact", {
        "first_name": "Pat", "last_name": "Boyle (Sales), EMEA", "email": "p(b),x@y.com"}, "z")
    found = engine.action("zoho", "search_contact_by_email", {"email": "p(b),x@y.com"}, "z")
    assert found["id"] == created["id"]
    assert found["records"][0]["last_name"] == "Boyle (Sales), EMEA"


def test_contact_deal_task_call_and_note_actions(engine, zoho):
    emulator, _ = zoho
    org_reads = emulator.app.stats.count("org.get")  # (this module's syncs read it too)
    contact = engine.action("zoho", "create_contact", {"last_name": "Hopper",
                                                       "email": "gh@navy.example"}, "z")
    engine.action("zoho", "update_contact", {"id": contact["id"], "job_title": "Rear Admiral"},
                  "z")
    assert emulator.store.get("Contacts", contact["id"])["Title"] == "Rear Admiral"
    deal = engine.action("zoho", "create_deal", {
        "name": "Compiler", "stage": "Qualification", "amount": 10, "close_date": "2026-12-31",
        "contact_id": contact["id"]}, "z")
    engine.action("zoho", "update_deal", {"id": deal["id"], "stage": "Closed Won"}, "z")
    got = engine.action("zoho", "get_deal", {"id": deal["id"]}, "z")
    assert got["record"]["status"] == "won" and got["record"]["contact_id"] == contact["id"]
    # A single-currency org's deals carry no Currency: the result is in the org's home
    # currency, read once for the connection's actions (create, update and two reads).
    assert "Currency" not in emulator.store.get("Deals", deal["id"])
    assert got["record"]["currency"] == ORG_CURRENCY
    assert engine.action("zoho", "get_deal", {"id": deal["id"]}, "z")["record"]["currency"] \
        == ORG_CURRENCY
    assert emulator.app.stats.count("org.get") == org_reads + 1
    task = engine.action("zoho", "create_task", {"subject": "Ship it", "priority": "urgent",
                                                 "contact_id": contact["id"],
                                                 "deal_id": deal["id"]}, "z")
    stored = emulator.store.get("Tasks", task["id"])
    assert stored["Priority"] == "Highest" and stored["$se_module"] == "Deals"
    assert stored["What_Id"]["id"] == deal["id"] and stored["Who_Id"]["id"] == contact["id"]
    call = engine.action("zoho", "log_call", {"subject": "Intro", "duration_seconds": 754,
                                              "contact_id": contact["id"]}, "z")
    stored = emulator.store.get("Calls", call["id"])
    assert stored["Call_Duration"] == "12:34" and stored["Call_Type"] == "Outbound"
    note = engine.action("zoho", "create_note", {"body": "Likes COBOL",
                                                 "contact_id": contact["id"]}, "z")
    stored = emulator.store.get("Notes", note["id"])
    assert stored["Parent_Id"]["id"] == contact["id"] and stored["$se_module"] == "Contacts"


def test_a_write_whose_only_record_failed_is_a_normalized_400(engine, zoho):
    """CONTRACTS 4.4/4.6: per-record errors inside data[]; a write whose every record failed
    is a 400 (fixtures/zoho/error_400_mandatory_not_found_in_data.json)."""
    engine.action("zoho", "create_contact", {"last_name": "Dup", "email": "dup@x.com"}, "z")
    with pytest.raises(CrmError) as info:
        engine.action("zoho", "create_contact", {"last_name": "Dup", "email": "dup@x.com"}, "z")
    error = info.value
    assert (error.status, error.code, error.kind, error.retryable) == (
        400, "DUPLICATE_DATA", "fatal", False)
    assert error.raw_body["data"][0]["details"]["api_name"] == "Email"
    with pytest.raises(CrmError) as info:  # Contact_Name needs an id Zoho knows
        engine.action("zoho", "create_deal", {"name": "x", "stage": "Qualification",
                                              "contact_id": "123"}, "z")
    assert (info.value.status, info.value.code) == (400, "INVALID_DATA")
    assert info.value.raw_body["data"][0]["details"]["api_name"] == "Contact_Name"
