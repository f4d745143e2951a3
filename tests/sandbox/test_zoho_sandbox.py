"""Zoho CRM emulator over real HTTP (httpx -> 127.0.0.1), checked against CONTRACTS.md section 4."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.kit import RunningSandbox
from sandbox.zoho import ZohoSandbox
from sandbox.zoho.criteria import Condition, CriteriaError, Group, escape, parse
from sandbox.zoho.schema import DATA_CENTRES

STATIC = "1000.sandbox-static-token"
CONTACTS = "/crm/v3/Contacts"
FIELDS = "First_Name,Last_Name,Email,Account_Name,Owner,Created_Time,Modified_Time"
ORG_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+03:00$")
ID = re.compile(r"^\d{19}$")
TOO_MANY = {
    "code": "TOO_MANY_REQUESTS",
    "details": {},
    "message": "too many requests. please try again after some time",
    "status": "error",
}
REDIRECT = "http://localhost:8765/callback"


def open_client(running: RunningSandbox, token: str | None = STATIC) -> httpx.Client:
    headers = {"Authorization": f"Zoho-oauthtoken {token}"} if token else {}
    return httpx.Client(base_url=running.url, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[ZohoSandbox, httpx.Client]]:
    """A read-only org of 5,000 contacts, shared by the tests that do not write."""
    emulator = ZohoSandbox(
        contacts=5000, companies=40, deals=60, tasks=15, calls=15, notes=15, credits_per_day=10**7
    )
    with emulator.start() as running, open_client(running) as client:
        yield emulator, client


@pytest.fixture
def org() -> Iterator[tuple[ZohoSandbox, httpx.Client]]:
    """A small fresh org for tests that write or change limits."""
    emulator = ZohoSandbox(contacts=40, companies=6, deals=8, tasks=3, calls=3, notes=3)
    with emulator.start() as running, open_client(running) as client:
        yield emulator, client


def sync(client: httpx.Client, path: str, fields: str, **params: str) -> tuple[list, list]:
    """(records, info blocks) the way the engine pages: page numbers until record 2,000, then
    info.next_page_token (page dropped)."""
    records, infos = [], []
    query = {"fields": fields, "per_page": "200", "page": "1", **params}
    while True:
        response = client.get(path, params=query)
        if response.status_code == 204:
            return records, infos
        assert response.status_code == 200, response.text
        body = response.json()
        records += body["data"]
        infos.append(body["info"])
        if not body["info"]["more_records"]:
            return records, infos
        if "page_token" in query or int(query["page"]) * 200 >= 2000:
            query.pop("page", None)
            query["page_token"] = body["info"]["next_page_token"]
        else:
            query["page"] = str(int(query["page"]) + 1)


def oauth_code(client: httpx.Client, emulator: ZohoSandbox, **extra: str) -> dict[str, list[str]]:
    params = {
        "scope": "ZohoCRM.modules.ALL,ZohoCRM.users.READ,ZohoSearch.securesearch.READ",
        "client_id": emulator.client_id,
        "response_type": "code",
        "access_type": "offline",
        "redirect_uri": REDIRECT,
        "state": "xyz",
        **extra,
    }
    response = client.get("/oauth/v2/auth", params=params)
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return parse_qs(location.query)


# -- interface --------------------------------------------------------------------------------


def test_interface_and_describe() -> None:
    emulator = ZohoSandbox(contacts=3, companies=1, deals=1)
    assert emulator.static_token == STATIC and emulator.client_id == "sandbox-client-id"
    assert emulator.connection_config("http://x:1") == {
        "accounts_url": "http://x:1", "extra_fields": ["Favorite_Color", "Customer_Tier"]}
    assert ZohoSandbox.DEMO_OPTIONS["credits_per_day"] > 50_000
    assert "Zoho-oauthtoken" in emulator.describe()["auth_header"]
    assert emulator.store.count("Contacts") == 3 and emulator.store.count("contacts") == 3
    with emulator.start() as running:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", running.url)
        assert running.emulator is emulator and emulator.base_url() == running.url
    with pytest.raises(ValueError):
        ZohoSandbox(data_centre="mars")


# -- OAuth --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dc", sorted(DATA_CENTRES))
def test_oauth_round_trip_per_data_centre(dc: str) -> None:
    emulator = ZohoSandbox(contacts=2, companies=1, deals=1, data_centre=dc)
    with emulator.start() as running, open_client(running, token=None) as client:
        callback = oauth_code(client, emulator, prompt="consent")
        # CONTRACTS 4.1: the callback names the data centre and the accounts server to use.
        assert callback["location"] == [dc] and callback["accounts-server"] == [running.url]
        assert callback["state"] == ["xyz"] and callback["code"][0].startswith("1000.")
        form = {
            "grant_type": "authorization_code",
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
            "redirect_uri": REDIRECT,
            "code": callback["code"][0],
        }
        token = client.post("/oauth/v2/token", data=form)
        grant = token.json()
        assert token.status_code == 200 and list(grant) == [
            "access_token",
            "refresh_token",
            "api_domain",
            "token_type",
            "expires_in",
        ]
        assert grant["api_domain"] == running.url and grant["token_type"] == "Bearer"
        assert grant["expires_in"] == 3600 and ORG_TIME.match(token.headers["x-accesstoken-reset"])
        api = client.get(
            grant["api_domain"] + CONTACTS,
            params={"fields": "Last_Name"},
            headers={"Authorization": f"Zoho-oauthtoken {grant['access_token']}"},
        )
        assert api.status_code == 200 and ORG_TIME.match(api.headers["x-accesstoken-reset"])


def test_token_endpoint_accepts_query_form_and_basic(org) -> None:
    emulator, api = org
    with httpx.Client(base_url=api.base_url, timeout=10) as client:  # no API token
        secret = {"client_id": emulator.client_id, "client_secret": emulator.client_secret}
        code = oauth_code(client, emulator)["code"][0]
        query = {"grant_type": "authorization_code", "redirect_uri": REDIRECT, "code": code}
        by_query = client.post("/oauth/v2/token", params={**query, **secret}).json()
        assert by_query["refresh_token"].startswith("1000.")
        refresh = {"grant_type": "refresh_token", "refresh_token": by_query["refresh_token"]}
        basic = base64.b64encode(f"{emulator.client_id}:{emulator.client_secret}".encode())
        by_basic = client.post(
            "/oauth/v2/token", data=refresh, headers={"Authorization": f"Basic {basic.decode()}"}
        ).json()
        # CONTRACTS 4.1: a refresh returns no refresh_token.
        assert list(by_basic) == ["access_token", "expires_in", "api_domain", "token_type"]
        by_form = client.post("/oauth/v2/token", data={**refresh, **secret}).json()
        assert by_form["access_token"] not in (by_basic["access_token"], by_query["access_token"])
        revoke = client.post("/oauth/v2/token/revoke", params={"token": by_query["refresh_token"]})
        assert revoke.status_code == 200 and revoke.json() == {"status": "success"}
        again = client.post("/oauth/v2/token", data={**refresh, **secret})
        assert again.status_code == 200 and again.json() == {"error": "invalid_code"}
        revoked = client.get(
            CONTACTS,
            params={"fields": "Last_Name"},
            headers={"Authorization": f"Zoho-oauthtoken {by_form['access_token']}"},
        )
        assert revoked.status_code == 401 and revoked.json()["code"] == "INVALID_TOKEN"


def test_token_errors_online_access_and_bad_clients(org) -> None:
    emulator, client = org
    code = oauth_code(client, emulator, access_type="online")["code"][0]
    form = {
        "grant_type": "authorization_code",
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        "redirect_uri": REDIRECT,
        "code": code,
    }
    online = client.post("/oauth/v2/token", data=form).json()
    assert "access_token" in online and "refresh_token" not in online  # online: no refresh
    assert client.post("/oauth/v2/token", data=form).json() == {"error": "invalid_code"}
    fresh = oauth_code(client, emulator)["code"][0]
    wrong = client.post("/oauth/v2/token", data={**form, "code": fresh, "client_secret": "x"})
    assert wrong.status_code == 200 and wrong.json() == {"error": "invalid_client_secret"}
    unknown = client.post("/oauth/v2/token", data={**form, "code": fresh, "client_id": "nope"})
    assert unknown.json() == {"error": "invalid_client"}
    grant = client.post("/oauth/v2/token", data={**form, "code": fresh}).json()
    assert grant["refresh_token"]
    bad_client = client.get(
        "/oauth/v2/auth",
        params={"client_id": "nope", "scope": "ZohoCRM.modules.ALL", "redirect_uri": REDIRECT},
    )
    assert bad_client.status_code == 400


# -- auth header --------------------------------------------------------------------------------


def test_only_zoho_oauthtoken_authenticates(org) -> None:
    emulator, client = org
    params = {"fields": "Last_Name"}
    bearer = client.get(CONTACTS, params=params, headers={"Authorization": f"Bearer {STATIC}"})
    assert bearer.status_code == 401
    assert bearer.json() == {
        "code": "AUTHENTICATION_FAILURE",
        "details": {},
        "message": "Authentication failed",
        "status": "error",
    }
    missing = client.get(CONTACTS, params=params, headers={"Authorization": ""})
    assert missing.json()["code"] == "AUTHENTICATION_FAILURE"
    bogus = client.get(CONTACTS, params=params, headers={"Authorization": "Zoho-oauthtoken x"})
    assert bogus.status_code == 401 and bogus.json() == {
        "code": "INVALID_TOKEN",
        "details": {},
        "message": "invalid oauth token",
        "status": "error",
    }
    grant = emulator.issue_token()
    mine = {"Authorization": f"Zoho-oauthtoken {grant.access_token}"}
    assert client.get(CONTACTS, params=params, headers=mine).status_code == 200
    emulator.advance_time(3600)
    assert client.get(CONTACTS, params=params, headers=mine).json()["code"] == "INVALID_TOKEN"
    assert client.get(CONTACTS, params=params).status_code == 200  # static tokens never expire
    other = emulator.issue_token()
    emulator.expire_all_tokens()
    expired = {"Authorization": f"Zoho-oauthtoken {other.access_token}"}
    assert client.get(CONTACTS, params=params, headers=expired).status_code == 401


def test_scopes_are_enforced(org) -> None:
    emulator, client = org
    grant = emulator.issue_token(scopes=("ZohoCRM.modules.contacts.READ",))
    headers = {"Authorization": f"Zoho-oauthtoken {grant.access_token}"}
    assert client.get(CONTACTS, params={"fields": "Email"}, headers=headers).status_code == 200
    create = client.post(CONTACTS, json={"data": [{"Last_Name": "X"}]}, headers=headers)
    assert create.status_code == 401 and create.json()["code"] == "OAUTH_SCOPE_MISMATCH"
    deals = client.get("/crm/v3/Deals", params={"fields": "Deal_Name"}, headers=headers)
    assert deals.json()["code"] == "OAUTH_SCOPE_MISMATCH"
    # CONTRACTS 4.1: search also needs ZohoSearch.securesearch.READ.
    search = client.get(f"{CONTACTS}/search", params={"word": "a"}, headers=headers)
    assert search.json()["code"] == "OAUTH_SCOPE_MISMATCH"
    assert client.get("/crm/v3/users", headers=headers).json()["code"] == "OAUTH_SCOPE_MISMATCH"


# -- lists --------------------------------------------------------------------------------------


def test_paging_switches_to_page_token_and_returns_every_record_once(shared) -> None:
    emulator, client = shared
    records, infos = sync(client, CONTACTS, "Last_Name")
    ids = [record["id"] for record in records]
    assert len(ids) == 5000 == len(set(ids)) == emulator.store.count("Contacts")
    assert ids == sorted(ids, reverse=True)  # default: sort_by id, desc (recorded)
    assert all(ID.match(i) for i in ids)
    assert [info["page"] for info in infos] == list(range(1, 26))
    assert infos[0]["previous_page_token"] is None and infos[-1]["next_page_token"] is None
    assert infos[-1]["more_records"] is False and infos[-1]["page_token_expiry"] is None
    first = infos[0]
    assert list(first) == [
        "call",
        "per_page",
        "next_page_token",
        "count",
        "sort_by",
        "page",
        "page_token_expiry",
        "sort_order",
        "email",
        "more_records",
        "previous_page_token",
    ]
    assert (first["sort_by"], first["sort_order"], first["count"]) == ("id", "desc", 200)
    assert ORG_TIME.match(first["page_token_expiry"]) and len(first["next_page_token"]) <= 96
    beyond = client.get(CONTACTS, params={"fields": "Last_Name", "page": 11})
    assert beyond.status_code == 400 and beyond.json() == {
        "code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
        "details": {"limit": 2000},
        "message": "You can only get the first 2000 records without using page_token param",
        "status": "error",
    }
    assert (
        client.get(CONTACTS, params={"fields": "Email", "page": 20, "per_page": 100}).json()[
            "info"
        ]["count"]
        == 100
    )
    ascending, _ = sync(
        client, CONTACTS, "Email,Modified_Time", sort_order="asc", sort_by="Modified_Time"
    )
    stamps = [r["Modified_Time"] for r in ascending]
    assert len({r["id"] for r in ascending}) == 5000 and stamps == sorted(stamps)


def test_page_token_rules(shared) -> None:
    emulator, client = shared
    page = client.get(CONTACTS, params={"fields": "Last_Name", "per_page": 50}).json()
    token = page["info"]["next_page_token"]
    second = client.get(
        CONTACTS, params={"fields": "Last_Name", "per_page": 50, "page_token": token}
    ).json()
    assert second["info"]["page"] == 2 and second["data"][0]["id"] < page["data"][-1]["id"]
    back = client.get(
        CONTACTS,
        params={
            "fields": "Last_Name",
            "per_page": 50,
            "page_token": second["info"]["previous_page_token"],
        },
    )
    assert back.json()["data"] == page["data"]
    both = client.get(CONTACTS, params={"fields": "Last_Name", "page": 2, "page_token": token})
    assert both.status_code == 400 and both.json()["code"] == "AMBIGUITY_DURING_PROCESSING"
    altered = client.get(CONTACTS, params={"fields": "Email", "page_token": token})
    assert altered.json()["code"] == "TOKEN_BOUND_DATA_MISMATCH"
    flipped = f"{int(token[-2:], 16) ^ 0xFF:02x}"  # the last byte changed, whatever it was
    garbled = client.get(CONTACTS,
                         params={"fields": "Last_Name", "page_token": token[:-2] + flipped})
    assert garbled.json()["code"] == "TOKEN_BOUND_DATA_MISMATCH"
    emulator.advance_time(86_400 + 60)
    try:
        expired = client.get(CONTACTS, params={"fields": "Last_Name", "page_token": token})
        assert expired.status_code == 400 and expired.json() == {
            "code": "EXPIRED_VALUE",
            "details": {"api_name": "page_token", "json_path": "$.query.page_token"},
            "message": "Page token expired",
            "status": "error",
        }
    finally:
        emulator.advance_time(-(86_400 + 60))


def test_list_parameters(shared) -> None:
    _, client = shared
    missing = client.get(CONTACTS)
    assert missing.status_code == 400 and missing.json() == {
        "code": "REQUIRED_PARAM_MISSING",
        "details": {"param_name": "fields"},
        "message": "required param is missing",
        "status": "error",
    }
    v2 = client.get("/crm/v2/Contacts", params={"per_page": 2}).json()["data"]  # v2: optional
    assert {"Email", "Account_Name", "$state", "$approved", "Tag", "id"} <= set(v2[0])
    many = client.get(CONTACTS, params={"fields": ",".join(f"F{i}" for i in range(51))})
    assert many.json()["code"] == "LIMIT_EXCEEDED"
    chosen = client.get(CONTACTS, params={"fields": "Email,Nope,$state", "per_page": 1})
    assert list(chosen.json()["data"][0]) == ["Email", "$state", "id"]
    assert (
        client.get(CONTACTS, params={"fields": "Email", "per_page": 500}).json()["info"]["per_page"]
        == 200
    )
    bad_sort = client.get(CONTACTS, params={"fields": "Email", "sort_by": "Email"}).json()
    assert bad_sort["details"]["supported_values"] == ["id", "Created_Time", "Modified_Time"]
    for version in ("v2", "v2.1", "v4", "v5", "v6", "v7", "v8"):
        same = client.get(f"/crm/{version}/contacts", params={"fields": "Email", "per_page": 3})
        assert same.status_code == 200 and len(same.json()["data"]) == 3
    assert client.get("/crm/v9/Contacts").json()["code"] == "INVALID_URL_PATTERN"
    assert client.get("/crm/v3/Widgets", params={"fields": "a"}).json()["code"] == "INVALID_MODULE"
    assert client.patch(CONTACTS).json()["code"] == "INVALID_REQUEST_METHOD"


def test_if_modified_since(shared) -> None:
    _, client = shared
    cutoff = "2025-06-01T00:00:00+03:00"
    records, _ = sync(client, CONTACTS, "Modified_Time")
    expected = sum(1 for r in records if r["Modified_Time"] >= cutoff)
    response = client.get(
        CONTACTS, params={"fields": "Modified_Time"}, headers={"If-Modified-Since": cutoff}
    )
    newer = response.json()["data"]
    assert expected > 0 and len(newer) == min(expected, 200)
    assert all(r["Modified_Time"] >= cutoff for r in newer)
    future = client.get(
        CONTACTS, params={"fields": "Email"}, headers={"If-Modified-Since": "2030-01-01T00:00:00Z"}
    )
    assert future.status_code == 304 and future.content == b""


def test_get_one_record(shared) -> None:
    emulator, client = shared
    record_id = first_id(client, "Contacts")
    chosen = client.get(f"{CONTACTS}/{record_id}", params={"fields": "Last_Name,Email"})
    assert chosen.status_code == 200 and list(chosen.json()["data"][0]) == [
        "Last_Name",
        "Email",
        "id",
    ]
    whole = client.get(f"{CONTACTS}/{record_id}").json()["data"][0]
    assert whole == emulator.store.get("Contacts", record_id)
    assert client.get(f"{CONTACTS}/4876876001999999999").status_code == 204
    assert client.get(f"{CONTACTS}/abc").json()["code"] == "INVALID_DATA"


def test_empty_module_answers_204(org) -> None:
    emulator = ZohoSandbox(contacts=0, companies=0, deals=0)
    with emulator.start() as running, open_client(running) as client:
        for module in ("Contacts", "Accounts", "Deals", "Tasks", "Calls", "Notes"):
            response = client.get(f"/crm/v3/{module}", params={"fields": "id"})
            assert response.status_code == 204 and response.content == b""
        search = client.get(f"{CONTACTS}/search", params={"email": "a@b.co"})
        assert search.status_code == 204 and search.content == b""
    _, small = org
    past_end = small.get(CONTACTS, params={"fields": "Email", "page": 3, "per_page": 20})
    assert past_end.status_code == 204


def test_records_look_like_the_recordings(shared) -> None:
    _, client = shared
    contacts = client.get(CONTACTS, params={"fields": FIELDS, "sort_order": "asc"}).json()["data"]
    linked = next(c for c in contacts if c["Account_Name"])
    assert set(linked["Account_Name"]) == {"name", "id"} and ID.match(linked["Account_Name"]["id"])
    assert set(linked["Owner"]) == {"name", "id", "email"}
    assert all(
        ORG_TIME.match(c["Created_Time"]) and ORG_TIME.match(c["Modified_Time"]) for c in contacts
    )
    names = {c["First_Name"] for c in contacts} | {c["Last_Name"] for c in contacts}
    assert {"{{ 7*7 }}", "Patricia(Boyle)", "Burns,B", "O'Hara (Sales), EMEA"} <= names
    deal = client.get("/crm/v2/Deals", params={"per_page": 1}).json()["data"][0]
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", deal["Closing_Date"]) and deal["Stage"]
    assert isinstance(deal["Amount"], int | float | None) and isinstance(deal["Probability"], int)
    task = next(t for t in client.get("/crm/v2/Tasks").json()["data"] if t["What_Id"] is not None)
    assert task["$se_module"] in ("Deals", "Accounts") and set(task["Who_Id"] or {}) <= {
        "name",
        "id",
    }
    call = client.get("/crm/v2/Calls", params={"per_page": 1}).json()["data"][0]
    assert re.match(r"^\d+:\d{2}$", call["Call_Duration"]) and call["Call_Type"]
    note = client.get("/crm/v2/Notes", params={"per_page": 1}).json()["data"][0]
    assert set(note["Parent_Id"]) == {"name", "id"} and note["$se_module"]
    users = client.get("/crm/v3/users").json()
    assert users["users"][0]["email"] and users["info"]["count"] == len(users["users"])


def test_org_offset_is_configurable() -> None:
    emulator = ZohoSandbox(contacts=3, companies=1, deals=1, org_offset="-05:30")
    with emulator.start() as running, open_client(running) as client:
        record = client.get(CONTACTS, params={"fields": "Created_Time"}).json()["data"][0]
        assert record["Created_Time"].endswith("-05:30")
        created = client.post(CONTACTS, json={"data": [{"Last_Name": "Zed"}]}).json()
        assert created["data"][0]["details"]["Created_Time"].endswith("-05:30")


def test_seed_is_deterministic() -> None:
    def snapshot(seed: int) -> list[bytes]:
        emulator = ZohoSandbox(seed=seed, contacts=150, companies=10, deals=10, tasks=5, notes=5)
        with emulator.start() as running, open_client(running) as client:
            return [
                client.get(f"/crm/v2/{module}").content
                for module in ("Contacts", "Accounts", "Deals", "Tasks", "Notes")
            ]

    assert snapshot(7) == snapshot(7)
    assert snapshot(7) != snapshot(8)


# -- writes -------------------------------------------------------------------------------------


def first_id(client: httpx.Client, module: str) -> str:
    return client.get(f"/crm/v3/{module}", params={"fields": "id", "per_page": 1}).json()["data"][
        0
    ]["id"]


def payloads(client: httpx.Client) -> dict[str, dict]:
    contact, account, deal = (first_id(client, m) for m in ("Contacts", "Accounts", "Deals"))
    return {
        "Contacts": {
            "Last_Name": "TestContact",
            "First_Name": "Test",
            "Email": "test.contact.1778752432@example.com",
            "Account_Name": {"id": account},
            "Favorite_Color": "teal",
        },
        "Accounts": {"Account_Name": "Zylker Ltd", "Website": "https://zylker.example"},
        "Deals": {
            "Deal_Name": "Test Deal",
            "Stage": "Qualification",
            "Amount": 10000,
            "Closing_Date": "2024-12-31",
            "Account_Name": {"name": "Brand New Account"},
            "Contact_Name": {"id": contact},
        },
        "Tasks": {
            "Subject": "Call back",
            "Due_Date": "2026-12-31",
            "Priority": "High",
            "Who_Id": {"id": contact},
            "What_Id": {"id": deal},
            "$se_module": "Deals",
        },
        "Calls": {
            "Subject": "Test Call",
            "Call_Type": "Outbound",
            "Call_Start_Time": "2026-05-14T10:00:00+05:30",
            "Call_Duration": "10:00",
            "Outbound_Call_Status": "Completed",
        },
        "Notes": {
            "Note_Title": "Test Note",
            "Note_Content": "This is a test note",
            "Parent_Id": contact,
            "se_module": "Contacts",
        },
    }


@pytest.mark.parametrize("module", ["Contacts", "Accounts", "Deals", "Tasks", "Calls", "Notes"])
def test_create_get_update_delete(org, module: str) -> None:
    emulator, client = org
    path = f"/crm/v3/{module}"
    created = client.post(path, json={"data": [payloads(client)[module]]})
    assert created.status_code == 201, created.text
    entry = created.json()["data"][0]
    assert (entry["code"], entry["message"], entry["status"]) == (
        "SUCCESS",
        "record added",
        "success",
    )
    details = entry["details"]
    assert list(details) == ["Modified_Time", "Modified_By", "Created_Time", "id", "Created_By"]
    assert ID.match(details["id"]) and set(details["Created_By"]) == {"name", "id"}
    record = client.get(f"{path}/{details['id']}").json()["data"][0]
    assert record["id"] == details["id"] and record["Created_Time"] == details["Created_Time"]
    assert emulator.store.get(module, details["id"])["id"] == details["id"]

    emulator.advance_time(120)
    change = {"Description": "changed"} if module != "Notes" else {"Note_Content": "changed"}
    updated = client.put(f"{path}/{details['id']}", json={"data": [change]})
    assert updated.status_code == 200 and updated.json()["data"][0]["message"] == "record updated"
    after = client.get(f"{path}/{details['id']}").json()["data"][0]
    assert after["Modified_Time"] > record["Modified_Time"]
    assert after.get("Description", after.get("Note_Content")) == "changed"

    deleted = client.delete(f"{path}/{details['id']}", params={"wf_trigger": "false"})
    assert deleted.status_code == 200 and deleted.json() == {
        "data": [
            {
                "code": "SUCCESS",
                "details": {"id": details["id"]},
                "message": "record deleted",
                "status": "success",
            }
        ]
    }
    assert client.get(f"{path}/{details['id']}").status_code == 204
    binned = client.get(f"{path}/deleted", params={"type": "recycle"}).json()["data"][0]
    assert binned["id"] == details["id"] and binned["type"] == "recycle"


def test_written_values_come_back_normalised(org) -> None:
    emulator, client = org
    data = payloads(client)
    calls = client.post("/crm/v3/Calls", json={"data": [data["Calls"]]}).json()
    call = emulator.store.get("Calls", calls["data"][0]["details"]["id"])
    # Times are stored in the org's offset; the duration is derived.
    assert call["Call_Start_Time"] == "2026-05-14T07:30:00+03:00"
    assert (call["Call_Duration_in_seconds"], call["Call_Status"]) == (600, "Completed")
    deal_id = client.post("/crm/v3/Deals", json={"data": [data["Deals"]]}).json()["data"][0][
        "details"
    ]["id"]
    deal = emulator.store.get("Deals", deal_id)
    assert deal["Account_Name"]["name"] == "Brand New Account"  # name-only lookup (created)
    assert (deal["Probability"], deal["Expected_Revenue"]) == (10, 1000)
    assert (
        deal["Contact_Name"]["name"]
        == emulator.store.get("Contacts", data["Tasks"]["Who_Id"]["id"])["Full_Name"]
    )
    task_id = client.post("/crm/v3/Tasks", json={"data": [{"Subject": "Only"}]}).json()["data"][0][
        "details"
    ]["id"]
    task = emulator.store.get("Tasks", task_id)
    assert (task["Status"], task["Priority"]) == ("Not Started", "Normal")  # recorded defaults
    assert task["Owner"]["email"] == "amina.wanjiru@sandbox-org.example"  # the API user
    note_id = client.post(
        "/crm/v3/Notes",
        json={
            "data": [
                {
                    "Note_Content": "v3 form",
                    "Parent_Id": {"id": deal_id},
                    "$se_module": "Deals",
                }
            ]
        },
    ).json()["data"][0]["details"]["id"]
    note = emulator.store.get("Notes", note_id)
    assert (
        note["Parent_Id"] == {"name": "Test Deal", "id": deal_id} and note["$se_module"] == "Deals"
    )


def test_per_record_errors_inside_the_batch(org) -> None:
    emulator, client = org
    before = emulator.store.count("Contacts")
    mixed = client.post(
        CONTACTS, json={"data": [{"Last_Name": "Fine"}, {"First_Name": "No last name"}]}
    )
    assert mixed.status_code == 207
    good, bad = mixed.json()["data"]
    assert good["code"] == "SUCCESS" and bad == {
        "code": "MANDATORY_NOT_FOUND",
        "details": {"api_name": "Last_Name", "json_path": "$.data[1].Last_Name"},
        "message": "required field not found",
        "status": "error",
    }
    assert emulator.store.count("Contacts") == before + 1
    failed = client.post("/crm/v3/Deals", json={"data": [{"Deal_Name": "No stage"}]})
    assert failed.status_code == 400
    assert failed.json()["data"][0]["details"] == {
        "api_name": "Stage",
        "json_path": "$.data[0].Stage",
    }
    contact_by_name = client.post(
        "/crm/v3/Deals",
        json={
            "data": [{"Deal_Name": "D", "Stage": "Qualification", "Contact_Name": {"name": "X"}}]
        },
    )
    assert contact_by_name.json()["data"][0]["details"]["json_path"] == "$.data[0].Contact_Name.id"
    unknown = client.post(
        CONTACTS, json={"data": [{"Last_Name": "L", "Account_Name": {"id": "4876876002999999999"}}]}
    )
    assert unknown.status_code == 400 and unknown.json()["data"][0]["code"] == "INVALID_DATA"
    wrong_type = client.post(
        "/crm/v3/Deals",
        json={"data": [{"Deal_Name": "D", "Stage": "Qualification", "Amount": "lots"}]},
    )
    assert wrong_type.json()["data"][0]["details"]["expected_data_type"] == "currency"
    bad_stage = client.post(
        "/crm/v3/Deals", json={"data": [{"Deal_Name": "D", "Stage": "Dreaming"}]}
    )
    assert bad_stage.json()["data"][0]["details"]["api_name"] == "Stage"
    no_module = client.post(
        "/crm/v3/Tasks",
        json={"data": [{"Subject": "S", "What_Id": {"id": first_id(client, "Deals")}}]},
    )
    assert no_module.json()["data"][0]["details"]["api_name"] == "$se_module"
    note = client.post("/crm/v3/Notes", json={"data": [{"Note_Content": "orphan"}]})
    assert note.json()["data"][0]["details"]["api_name"] == "Parent_Id"
    too_many = client.post(CONTACTS, json={"data": [{"Last_Name": str(i)} for i in range(101)]})
    assert too_many.status_code == 400 and too_many.json()["data"][0]["code"] == "LIMIT_EXCEEDED"
    assert client.post(CONTACTS, json={"nope": []}).json()["code"] == "MANDATORY_NOT_FOUND"


def test_duplicate_email_is_duplicate_data(org) -> None:
    _, client = org
    existing = next(
        r
        for r in client.get(CONTACTS, params={"fields": "Email,Owner"}).json()["data"]
        if r["Email"]
    )
    response = client.post(
        CONTACTS,
        json={
            "data": [
                {"Last_Name": "Dup", "Email": existing["Email"].upper()},
                {"Last_Name": "New", "Email": "brand.new@example.com"},
                {"Last_Name": "Dup2", "Email": "Brand.New@example.com"},
            ]
        },
    )
    assert response.status_code == 207
    first, second, third = response.json()["data"]
    assert first["code"] == "DUPLICATE_DATA" and first["details"]["api_name"] == "Email"
    assert first["details"]["json_path"] == "$.data[0].Email"
    assert first["details"]["duplicate_record"]["id"] == existing["id"]
    assert second["code"] == "SUCCESS" and third["code"] == "DUPLICATE_DATA"
    target = second["details"]["id"]
    clash = client.put(f"{CONTACTS}/{target}", json={"data": [{"Email": existing["Email"]}]})
    assert clash.status_code == 400 and clash.json()["data"][0]["code"] == "DUPLICATE_DATA"
    same = client.put(f"{CONTACTS}/{target}", json={"data": [{"Email": "BRAND.NEW@example.com"}]})
    assert same.status_code == 200


def test_bulk_update_upsert_and_bulk_delete(org) -> None:
    emulator, client = org
    ids = [
        r["id"] for r in client.get(CONTACTS, params={"fields": "id", "per_page": 3}).json()["data"]
    ]
    bulk = client.put(
        CONTACTS,
        json={
            "data": [{"id": ids[0], "Title": "CFO"}, {"Title": "no id"}, {"id": "1", "Title": "x"}]
        },
    )
    assert bulk.status_code == 207
    codes = [e["code"] for e in bulk.json()["data"]]
    assert codes == ["SUCCESS", "MANDATORY_NOT_FOUND", "INVALID_DATA"]
    assert emulator.store.get("Contacts", ids[0])["Title"] == "CFO"
    email = emulator.store.get("Contacts", ids[1])["Email"]
    upsert = client.post(
        f"{CONTACTS}/upsert",
        json={
            "data": [{"Last_Name": "Upd", "Email": email}, {"Last_Name": "Ins", "Email": "i@n.co"}],
            "duplicate_check_fields": ["Email"],
        },
    )
    assert upsert.status_code == 200
    updated, inserted = upsert.json()["data"]
    assert (updated["action"], updated["duplicate_field"], updated["details"]["id"]) == (
        "update",
        "Email",
        ids[1],
    )
    assert inserted["action"] == "insert" and inserted["message"] == "record added"
    deleted = client.delete(CONTACTS, params={"ids": f"{ids[2]},4876876001999999999"})
    assert deleted.status_code == 207
    assert [e["status"] for e in deleted.json()["data"]] == ["success", "error"]
    assert client.delete(CONTACTS).json()["details"] == {"param_name": "ids"}


# -- search -------------------------------------------------------------------------------------


def search(client: httpx.Client, module: str = "Contacts", **params: str) -> httpx.Response:
    return client.get(f"/crm/v3/{module}/search", params=params)


def test_criteria_parser() -> None:
    tree = parse(r"((Last_Name:equals:Burns\,B)and(First_Name:starts_with:M))")
    assert tree == Group(
        "and",
        (
            Condition("Last_Name", "equals", ("Burns,B",)),
            Condition("First_Name", "starts_with", ("M",)),
        ),
    )
    assert parse("(Last_Name:equals:Burns,B)").values == ("Burns", "B")
    assert parse(r"(First_Name:equals:Patricia\(Boyle\))").values == ("Patricia(Boyle)",)
    assert parse(r"(A:equals:back\\slash)").values == ("back\\slash",)
    assert parse("(Modified_Time:greater_equal:2023-04-20T05:58:06+05:30)").values == (
        "2023-04-20T05:58:06+05:30",
    )
    precedence = parse("((A:equals:1)or(B:equals:2)and(C:equals:3))")
    assert precedence.operator == "or" and precedence.items[1].operator == "and"
    for broken in (
        "(First_Name:equals:Patricia(Boyle))",  # unescaped ( in a value
        "((A:equals:1)and(B:equals:2)",  # unbalanced
        "(A:equals:)",
        "A:equals:1",
        "(A:equals:1)xor(B:equals:2)",
        "(A:equals:x\\",
        "((A:equals:1)and(B:equals:2))(C:equals:3)",
    ):
        with pytest.raises(CriteriaError):
            parse(broken)
    with pytest.raises(CriteriaError):
        parse("(" + ")and(".join(f"F{i}:equals:{i}" for i in range(11)) + ")")
    assert escape("a,b(c)\\") == "a\\,b\\(c\\)\\\\"


def test_criteria_escaping_over_http(shared) -> None:
    _, client = shared
    burns = search(client, criteria=f"(Last_Name:equals:{escape('Burns,B')})", fields="Last_Name")
    assert burns.status_code == 200 and [r["Last_Name"] for r in burns.json()["data"]] == [
        "Burns,B"
    ]
    # Unescaped, the comma separates two values (Burns or B): the contact is not found.
    raw = search(client, criteria="(Last_Name:equals:Burns,B)", fields="Last_Name")
    assert raw.status_code == 204 or "Burns,B" not in [r["Last_Name"] for r in raw.json()["data"]]
    boyle = search(client, criteria=f"(First_Name:equals:{escape('Patricia(Boyle)')})")
    assert boyle.json()["data"][0]["First_Name"] == "Patricia(Boyle)"
    unescaped = search(client, criteria="(First_Name:equals:Patricia(Boyle))")
    assert unescaped.status_code == 400 and unescaped.json()["code"] == "INVALID_QUERY"
    template = search(client, criteria="(First_Name:equals:{{ 7*7 }})")
    assert template.json()["data"][0]["First_Name"] == "{{ 7*7 }}"
    prefix = escape("O'Hara (Sales), E")
    ohara = search(client, criteria=f"(Last_Name:starts_with:{prefix})")
    assert ohara.json()["info"]["count"] == 1


def test_hostile_values_cannot_change_the_structure_when_escaped(shared) -> None:
    _, client = shared
    hostile = "x@y.com)or(Last_Name:starts_with:A"
    escaped = search(client, criteria=f"(Email:equals:{escape(hostile)})")
    assert escaped.status_code == 204 and escaped.content == b""
    injected = search(client, criteria=f"(Email:equals:{hostile})", fields="Last_Name")
    assert injected.status_code == 200
    assert all(r["Last_Name"].startswith("A") for r in injected.json()["data"])
    assert injected.json()["info"]["count"] > 1  # the raw value rewrote the query
    dangling = search(client, criteria="(Email:equals:a@b.com)or(Email:starts_with:)")
    assert dangling.status_code == 400 and dangling.json()["code"] == "INVALID_QUERY"


def test_criteria_operators(shared) -> None:
    _, client = shared

    def count(module: str, criteria: str) -> int:
        response = search(client, module, criteria=criteria, per_page="200")
        assert response.status_code in (200, 204), response.text
        return response.json()["info"]["count"] if response.status_code == 200 else 0

    gold = count("Contacts", "(Customer_Tier:equals:gold)")  # case-insensitive
    silver = count("Contacts", "(Customer_Tier:equals:Silver)")
    both = count("Contacts", "((Customer_Tier:equals:Gold)or(Customer_Tier:equals:Silver))")
    assert gold and silver and min(gold + silver, 200) == both
    assert count("Contacts", "(Customer_Tier:in:Gold,Silver)") == both
    assert count("Contacts", "((Customer_Tier:equals:Gold)and(Customer_Tier:not_equal:Gold))") == 0
    deals = [
        r
        for r in client.get("/crm/v3/Deals", params={"fields": "Amount,Stage"}).json()["data"]
        if r["Amount"] is not None
    ]
    expected = sum(1 for d in deals if 10_000 <= d["Amount"] <= 50_000)
    assert count("Deals", "(Amount:between:10000,50000)") == expected
    assert count("Deals", "(Amount:greater_equal:0)") == len(deals)
    # httpx sends "+" as %2B, as CONTRACTS 4.5 requires; a raw "+" would arrive as a space.
    stamped = count("Contacts", "(Modified_Time:greater_equal:2025-06-01T00:00:00+03:00)")
    assert stamped > 0
    raw_plus = client.get(
        f"{CONTACTS}/search?criteria=(Modified_Time:greater_equal:2025-06-01T00:00:00+03:00)"
    )
    assert raw_plus.status_code == 400 and raw_plus.json()["code"] == "INVALID_QUERY"
    some_id = first_id(client, "Contacts")
    assert count("Contacts", f"(id:equals:{some_id})") == 1
    account = client.get(
        "/crm/v3/Contacts", params={"fields": "Account_Name", "per_page": 1}
    ).json()["data"][0]["Account_Name"]
    if account:
        assert count("Contacts", f"(Account_Name:equals:{account['id']})") >= 1
    for bad in ("(Nope:equals:1)", "(Last_Name:greater_than:A)", "(Amount:equals:lots)"):
        module = "Deals" if "Amount" in bad else "Contacts"
        assert search(client, module, criteria=bad).json()["code"] == "INVALID_QUERY"


def test_search_by_email_phone_word_and_precedence(shared) -> None:
    _, client = shared
    contact = next(
        r
        for r in client.get(CONTACTS, params={"fields": "Email,Phone", "per_page": 200}).json()[
            "data"
        ]
        if r["Email"] and r["Email"][0].isupper() and r["Phone"]
    )
    by_email = search(client, email=contact["Email"].lower())
    assert [r["id"] for r in by_email.json()["data"]] == [contact["id"]]
    assert by_email.json()["info"] == {
        "per_page": 200,
        "count": 1,
        "page": 1,
        "more_records": False,
    }
    by_phone = search(client, phone=contact["Phone"])
    assert contact["id"] in [r["id"] for r in by_phone.json()["data"]]
    by_word = search(client, word="burns,b", fields="Last_Name")
    assert [r["Last_Name"] for r in by_word.json()["data"]] == ["Burns,B"]
    # criteria > email > phone > word
    both = search(client, criteria="(Last_Name:equals:Burns\\,B)", email=contact["Email"])
    assert both.json()["data"][0]["Last_Name"] == "Burns,B"
    assert search(client, email="nobody@nowhere.example").status_code == 204
    none = search(client)
    assert none.status_code == 400 and none.json()["code"] == "REQUIRED_PARAM_MISSING"


def test_search_stops_at_2000_results(shared) -> None:
    _, client = shared
    everyone = "(Created_Time:greater_than:2000-01-01T00:00:00+00:00)"
    tenth = search(client, criteria=everyone, page="10", per_page="200", fields="id")
    assert tenth.status_code == 200 and tenth.json()["info"]["more_records"] is False
    beyond = search(client, criteria=everyone, page="11", per_page="200")
    assert beyond.status_code == 400
    assert beyond.json()["code"] == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"


# -- limits -------------------------------------------------------------------------------------


def test_credits_per_day() -> None:
    emulator = ZohoSandbox(contacts=5, companies=1, deals=1, credits_per_day=5)
    with emulator.start() as running, open_client(running) as client:
        statuses = [client.get(CONTACTS, params={"fields": "Email"}).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        limited = client.get(CONTACTS, params={"fields": "Email"})
        assert limited.json() == TOO_MANY and "retry-after" not in limited.headers
        emulator.advance_time(86_400)
        assert client.get(CONTACTS, params={"fields": "Email"}).status_code == 200
        assert emulator.credits.remaining == 4
        bulk = client.post(CONTACTS, json={"data": [{"Last_Name": f"L{i}"} for i in range(25)]})
        assert bulk.status_code == 201 and emulator.credits.remaining == 1  # 25 records: 3
        assert client.post(CONTACTS, json={"data": [{"Last_Name": "x"}] * 11}).status_code == 429


def test_concurrency_limit_per_app() -> None:
    emulator = ZohoSandbox(contacts=5, companies=1, deals=1, max_concurrent=2, latency_ms=400)
    with emulator.start() as running:
        barrier = threading.Barrier(5)
        statuses: list[int] = []

        def fire() -> None:
            with open_client(running) as client:
                barrier.wait()
                statuses.append(client.get(CONTACTS, params={"fields": "Email"}).status_code)

        threads = [threading.Thread(target=fire) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200, 200, 429, 429, 429]
        assert emulator.gate.peak == 2
        with open_client(running) as client:
            assert client.get(CONTACTS, params={"fields": "Email"}).status_code == 200


def test_optional_window_rate_limit() -> None:
    emulator = ZohoSandbox(contacts=2, companies=1, deals=1, rate_limit=(3, 10.0))
    with emulator.start() as running, open_client(running) as client:
        statuses = [client.get(CONTACTS, params={"fields": "Email"}).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        emulator.advance_time(10)
        assert client.get(CONTACTS, params={"fields": "Email"}).status_code == 200


# -- fault injection ----------------------------------------------------------------------------


def test_fail_next_and_drop_next(org) -> None:
    emulator, client = org
    before = emulator.store.count("Contacts")
    emulator.app.fail_next(2, 503)
    failed = client.post(CONTACTS, json={"data": [{"Last_Name": "Retry"}]})
    assert failed.status_code == 503 and failed.json()["status"] == "error"
    assert client.get(CONTACTS, params={"fields": "Email"}).status_code == 503
    assert client.get(CONTACTS, params={"fields": "Email"}).status_code == 200
    assert emulator.store.count("Contacts") == before
    emulator.app.fail_next(1, 429)
    assert client.get(CONTACTS, params={"fields": "Email"}).json() == TOO_MANY
    emulator.app.fail_next(1, 500)
    token = client.post("/oauth/v2/token", data={"grant_type": "nope"})
    assert token.status_code == 200  # OAuth routes are not faulted unless asked
    assert client.get(CONTACTS, params={"fields": "Email"}).json()["code"] == "INTERNAL_ERROR"
    emulator.app.drop_next(1, after_handling=True)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(CONTACTS, json={"data": [{"Last_Name": "Lost reply", "Email": "l@r.co"}]})
    assert emulator.store.count("Contacts") == before + 1
    retry = client.post(CONTACTS, json={"data": [{"Last_Name": "Lost reply", "Email": "l@r.co"}]})
    assert retry.json()["data"][0]["code"] == "DUPLICATE_DATA"


def test_error_rate_is_deterministic() -> None:
    def statuses() -> list[int]:
        emulator = ZohoSandbox(seed=3, contacts=2, companies=1, deals=1, error_rate=0.3)
        with emulator.start() as running, open_client(running) as client:
            return [client.get(CONTACTS, params={"fields": "Email"}).status_code for _ in range(30)]

    first = statuses()
    assert first == statuses() and 200 in first and set(first) - {200} <= {500, 502, 503}
