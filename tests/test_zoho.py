"""Zoho CRM end to end: connectors/zoho.yaml against the Zoho emulator over loopback."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest

from engine.engine import PROJECT_ROOT
from engine.errors import CrmError, InputError
from sandbox.demo import connect_oauth, follow_without_browser
from sandbox.zoho import ZohoSandbox

CONNECTORS = PROJECT_ROOT / "connectors"
HOSTILE = ["a@b.com)or(Email:starts_with:", "x,y@z.com", "(a)@b.com", "back\\slash@x.com",
           "a@b.com)or(Last_Name:equals:Smith"]


@pytest.fixture(scope="module")
def zoho():
    emulator = ZohoSandbox(contacts=2300, companies=20, deals=30)
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
    assert [r.status for r in runs] == ["succeeded"] * 3, [r.error for r in runs]
    assert runs[0].records == 2300 and runs[0].pages == 12  # 10 numbered pages, then tokens
    assert engine.store.query("SELECT count(DISTINCT id) FROM contacts")[0][0] == 2300
    assert runs[0].requests == runs[0].pages  # no page was refused (no 400 at the cap)


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
    emulator = ZohoSandbox(contacts=0, companies=0, deals=0)
    with emulator.start() as running:
        engine = make_engine(CONNECTORS, db="empty.duckdb")
        connect_oauth(engine, "zoho", emulator, running.url, "z-empty")
        runs = engine.sync("zoho", "z-empty")
    assert [(r.status, r.records, r.pages) for r in runs] == [("succeeded", 0, 1)] * 3


def test_api_calls_use_zoho_oauthtoken_not_bearer(engine, zoho):
    session, _, _ = engine.session("zoho", "z")
    emulator, _ = zoho
    # The emulator refuses Bearer; a successful call proves the header's scheme.
    result = engine.action("zoho", "get_contact", {"id": some_id(emulator, "Contacts")}, "z")
    assert result["id"] == some_id(emulator, "Contacts")
    assert engine.connector("zoho").auth["oauth2"].apply_value.render({"token": "t"}) == \
        "Zoho-oauthtoken t"
    assert session.base_url.endswith("/crm/v3")


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
    assert query["scope"] == ["ZohoCRM.modules.ALL,ZohoCRM.settings.READ,ZohoCRM.users.READ,"
                              "ZohoSearch.securesearch.READ"]
    assert query["access_type"] == ["offline"]
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


def test_per_record_error_inside_a_2xx_is_a_failure(engine, zoho):
    engine.action("zoho", "create_contact", {"last_name": "Dup", "email": "dup@x.com"}, "z")
    with pytest.raises(CrmError) as info:
        engine.action("zoho", "create_contact", {"last_name": "Dup", "email": "dup@x.com"}, "z")
    assert info.value.code == "DUPLICATE_DATA" and 200 <= (info.value.status or 0) < 500
    with pytest.raises(CrmError) as info:  # Contact_Name needs an id Zoho knows
        engine.action("zoho", "create_deal", {"name": "x", "stage": "Qualification",
                                              "contact_id": "123"}, "z")
    assert info.value.code in ("INVALID_DATA", "MANDATORY_NOT_FOUND")
