"""Pipedrive emulator over real HTTP (httpx -> 127.0.0.1), checked against CONTRACTS.md section 3
and the recorded fixtures in /work/shared/vendor-api/fixtures/pipedrive/."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.kit import RunningSandbox
from sandbox.pipedrive import PipedriveSandbox
from sandbox.pipedrive.records import PERSON
from sandbox.pipedrive.schema import CUSTOMER_TIER, FAVORITE_COLOR, ME, ORG_REGION

API_TOKEN = "sandbox-api-token"
UNLIMITED = {"rate_limit": None, "daily_token_budget": None}
V1_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
V2_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
HEX40 = re.compile(r"[0-9a-f]{40}")
UNAUTHORIZED = {  # fixtures/pipedrive/error_401_unauthorized.json
    "success": False,
    "error": "unauthorized access",
    "errorCode": 401,
    "error_info": "Please check developers.pipedrive.com",
}
RATE_HEADERS = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-daily-ratelimit-token-limit",
    "x-daily-ratelimit-token-remaining",
)


def open_client(running: RunningSandbox, token: str | None = API_TOKEN) -> httpx.Client:
    headers = {"x-api-token": token} if token else {}
    return httpx.Client(base_url=running.url, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[PipedriveSandbox, httpx.Client]]:
    """A read-only company shared by the tests that do not write."""
    emulator = PipedriveSandbox(
        contacts=250, companies=20, deals=30, activities=40, notes=15, **UNLIMITED
    )
    with emulator.start() as running, open_client(running) as client:
        yield emulator, client


@pytest.fixture
def company() -> Iterator[tuple[PipedriveSandbox, httpx.Client]]:
    """A small fresh company for tests that write or change limits."""
    emulator = PipedriveSandbox(contacts=30, companies=5, deals=5, activities=5, **UNLIMITED)
    with emulator.start() as running, open_client(running) as client:
        yield emulator, client


def v1_all(client: httpx.Client, path: str, **params: str) -> tuple[list[dict], list[dict]]:
    """(all records, raw pages) following additional_data.pagination.next_start."""
    records, pages, start = [], [], 0
    while True:
        response = client.get(path, params={"limit": "100", **params, "start": start})
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        records += page["data"] or []
        pagination = page["additional_data"]["pagination"]
        if not pagination["more_items_in_collection"]:
            assert "next_start" not in pagination
            return records, pages
        start = pagination["next_start"]


def v2_all(client: httpx.Client, path: str, **params: str) -> tuple[list[dict], list[dict]]:
    """(all records, raw pages) following additional_data.next_cursor."""
    records, pages, cursor = [], [], None
    while True:
        query = {"limit": "100", **params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        records += page["data"]
        cursor = page["additional_data"]["next_cursor"]
        if cursor is None:
            return records, pages


def basic(emulator: PipedriveSandbox, secret: str | None = None) -> dict[str, str]:
    pair = f"{emulator.client_id}:{secret or emulator.client_secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


# -- public interface ------------------------------------------------------------------------


def test_interface_for_the_engine() -> None:
    emulator = PipedriveSandbox(contacts=3, companies=1, deals=1)
    assert emulator.static_token == API_TOKEN
    assert (emulator.client_id, emulator.client_secret) == (
        "sandbox-client-id",
        "sandbox-client-secret",
    )
    assert emulator.connection_config("http://h:1") == {
        "oauth_url": "http://h:1",
        "api_url": "http://h:1",
    }
    assert PipedriveSandbox.DEMO_OPTIONS["rate_limit"][0] > 80
    assert emulator.describe()["client_id"] == "sandbox-client-id"
    assert emulator.store.count("persons") == 3 and emulator.store.count("notes") == 0
    person = emulator.store.get("persons", 1)
    assert list(person) == list(PERSON) and isinstance(person["id"], int)
    assert emulator.store.get("persons", 999) is None


# -- auth ------------------------------------------------------------------------------------


def test_oauth_code_flow_rotating_refresh_and_revoke(company) -> None:
    emulator, client = company
    authorize = client.get(
        "/oauth/authorize",
        params={"client_id": emulator.client_id, "redirect_uri": "http://x/cb", "state": "s1"},
    )
    assert authorize.status_code == 302
    location = urlsplit(authorize.headers["location"])
    query = parse_qs(location.query)
    assert location.path == "/cb" and query["state"] == ["s1"]
    form = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": "http://x/cb",
    }

    as_json = client.post("/oauth/token", json=form, headers=basic(emulator))
    assert as_json.status_code == 400
    assert as_json.json()["message"] == (
        "Invalid request: content must be application/x-www-form-urlencoded"
    )
    no_basic = client.post("/oauth/token", data=form)
    assert no_basic.status_code == 401 and no_basic.json()["error"] == "invalid_client"
    wrong = client.post("/oauth/token", data=form, headers=basic(emulator, "nope"))
    assert wrong.status_code == 401 and wrong.json()["success"] is False

    token = client.post("/oauth/token", data=form, headers=basic(emulator))
    grant = token.json()
    assert token.status_code == 200, token.text
    assert grant["token_type"] == "Bearer" and grant["expires_in"] == 3600
    assert grant["api_domain"] == str(client.base_url).rstrip("/") == emulator.url
    assert grant["scope"].split(",")[-1] == "base"
    replay = client.post("/oauth/token", data=form, headers=basic(emulator))
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"

    bearer = {"Authorization": f"Bearer {grant['access_token']}", "x-api-token": ""}
    api = httpx.Client(base_url=grant["api_domain"], timeout=10)
    assert api.get("/api/v2/persons", headers=bearer).status_code == 200
    assert api.get("/v1/persons", headers=bearer).status_code == 200

    refresh = {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}
    rotated = client.post("/oauth/token", data=refresh, headers=basic(emulator)).json()
    assert rotated["refresh_token"] != grant["refresh_token"]
    assert rotated["access_token"] != grant["access_token"] and rotated["api_domain"]
    stale = client.post("/oauth/token", data=refresh, headers=basic(emulator))
    assert stale.status_code == 400
    assert stale.json() == {  # fixtures/pipedrive/oauth_error_invalid_grant_sdk_mock.json
        "success": False,
        "message": "Invalid grant: refresh token is invalid",
        "error": "invalid_grant",
    }

    new_bearer = {"Authorization": f"Bearer {rotated['access_token']}"}
    revoke = client.post(
        "/oauth/revoke",
        data={"token": rotated["refresh_token"], "token_type_hint": "refresh_token"},
        headers=basic(emulator),
    )
    assert revoke.status_code == 200
    assert api.get("/api/v2/persons", headers=new_bearer).status_code == 401
    again = {"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]}
    assert client.post("/oauth/token", data=again, headers=basic(emulator)).status_code == 400
    api.close()


def test_authorization_codes_expire_after_five_minutes(company) -> None:
    emulator, client = company
    location = client.get(
        "/oauth/authorize", params={"client_id": emulator.client_id, "redirect_uri": "http://x/cb"}
    ).headers["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    emulator.advance_time(301)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "http://x/cb"}
    late = client.post("/oauth/token", data=form, headers=basic(emulator))
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"
    unknown = client.get("/oauth/authorize", params={"client_id": "x", "redirect_uri": "http://x"})
    assert unknown.status_code == 400


def test_api_token_header_and_query_and_401s(company) -> None:
    emulator, client = company
    anonymous = httpx.Client(base_url=client.base_url, timeout=10)
    assert client.get("/v1/persons").status_code == 200
    assert client.get("/api/v1/persons").status_code == 200
    assert client.get("/api/v2/persons").status_code == 200
    assert anonymous.get("/v1/persons", params={"api_token": API_TOKEN}).status_code == 200
    # Choice (UNCONFIRMED in CONTRACTS 3.2): v2 refuses ?api_token=
    assert anonymous.get("/api/v2/persons", params={"api_token": API_TOKEN}).status_code == 401
    as_bearer = anonymous.get("/api/v2/persons", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert as_bearer.status_code == 401
    for response in (
        anonymous.get("/v1/persons"),
        anonymous.get("/api/v2/deals", headers={"x-api-token": "wrong"}),
        anonymous.get("/v1/nothing-here"),  # CONTRACTS 3.6: unrouted paths get the 401 too
    ):
        assert response.status_code == 401
        assert response.json() == UNAUTHORIZED
        assert response.headers["x-401-by-gw"] == "true"
    assert client.get("/v1/nothing-here").status_code == 404  # authenticated: a real 404

    grant = emulator.issue_token()
    bearer = {"Authorization": f"Bearer {grant.access_token}"}
    assert anonymous.get("/api/v2/persons", headers=bearer).status_code == 200
    emulator.advance_time(3600)
    expired = anonymous.get("/api/v2/persons", headers=bearer)
    assert expired.status_code == 401 and expired.json() == UNAUTHORIZED
    fresh = emulator.issue_token()
    emulator.expire_all_tokens()
    gone = {"Authorization": f"Bearer {fresh.access_token}"}
    assert anonymous.get("/v1/deals", headers=gone).status_code == 401
    assert client.get("/v1/deals").status_code == 200  # API tokens do not expire
    anonymous.close()


# -- lists -----------------------------------------------------------------------------------


def test_v1_offset_paging_returns_every_record_once(shared) -> None:
    emulator, client = shared
    records, pages = v1_all(client, "/v1/persons")
    ids = [record["id"] for record in records]
    assert len(ids) == 250 == len(set(ids)) == emulator.store.count("persons")
    assert ids == sorted(ids)
    assert [len(page["data"]) for page in pages] == [100, 100, 50]
    assert pages[0]["additional_data"]["pagination"] == {
        "start": 0,
        "limit": 100,
        "more_items_in_collection": True,
        "next_start": 100,
    }
    assert "related_objects" in pages[0] and "user" in pages[0]["related_objects"]
    clamped = client.get("/v1/persons", params={"limit": 1000}).json()
    assert clamped["additional_data"]["pagination"]["limit"] == 500
    assert len(clamped["data"]) == 250
    empty = client.get("/v1/persons", params={"start": 1000}).json()
    assert empty["success"] is True and empty["data"] is None  # choice: null on empty v1 lists
    desc = client.get("/v1/persons", params={"sort": "id DESC", "limit": 3}).json()["data"]
    assert [p["id"] for p in desc] == sorted(ids, reverse=True)[:3]
    assert client.get("/v1/persons", params={"sort": "shoe_size ASC"}).status_code == 400


def test_v2_cursor_paging_returns_every_record_once(shared) -> None:
    _, client = shared
    records, pages = v2_all(client, "/api/v2/persons")
    ids = [record["id"] for record in records]
    assert len(ids) == 250 == len(set(ids)) and ids == sorted(ids)
    assert [len(page["data"]) for page in pages] == [100, 100, 50]
    assert pages[0]["additional_data"]["next_cursor"].startswith("eyJ")
    assert pages[-1]["additional_data"] == {"next_cursor": None}
    assert "related_objects" not in pages[0]
    by_time, _ = v2_all(
        client, "/api/v2/persons", sort_by="update_time", sort_direction="desc", limit="37"
    )
    stamps = [record["update_time"] for record in by_time]
    assert len(by_time) == 250 and stamps == sorted(stamps, reverse=True)
    assert sorted(r["id"] for r in by_time) == ids
    assert client.get("/api/v2/persons", params={"limit": 501}).status_code == 400
    assert client.get("/api/v2/persons", params={"cursor": "garbage"}).status_code == 400
    assert client.get("/api/v2/persons", params={"sort_by": "name"}).status_code == 400
    whole = client.get("/api/v2/persons", params={"limit": 500}).json()
    assert len(whole["data"]) == 250 and whole["additional_data"]["next_cursor"] is None


def test_v2_updated_since_and_until(shared) -> None:
    emulator, client = shared
    cutoff = "2025-01-01T00:00:00Z"
    since, _ = v2_all(client, "/api/v2/persons", updated_since=cutoff, limit="40")
    expected = sorted(
        p["id"] for p in emulator.store.active_records("persons") if p["update_time"] >= cutoff
    )
    assert [p["id"] for p in since] == expected and 0 < len(expected) < 250
    until, _ = v2_all(client, "/api/v2/persons", updated_until=cutoff, sort_by="update_time")
    assert len(until) + len(since) == 250
    assert all(p["update_time"] < cutoff for p in until)
    offset = client.get(
        "/api/v2/persons", params={"updated_since": "2025-01-01T02:00:00+02:00", "limit": 500}
    ).json()["data"]
    assert [p["id"] for p in offset] == expected  # offsets are honoured
    assert client.get("/api/v2/persons", params={"updated_since": "yesterday"}).status_code == 400


def test_v2_filters(shared) -> None:
    _, client = shared
    owner = ME["id"]
    mine, _ = v2_all(client, "/api/v2/deals", owner_id=str(owner))
    assert mine and all(deal["owner_id"] == owner for deal in mine)
    won, _ = v2_all(client, "/api/v2/deals", status="won")
    assert all(deal["status"] == "won" for deal in won)
    done, _ = v2_all(client, "/api/v2/activities", done="true")
    assert done and all(activity["done"] is True for activity in done)
    assert client.get("/api/v2/activities", params={"done": "1"}).status_code == 400
    some = client.get("/api/v2/persons", params={"ids": "3,1,2,9999"}).json()["data"]
    assert [p["id"] for p in some] == [1, 2, 3]
    key = FAVORITE_COLOR
    only = client.get("/api/v2/persons", params={"custom_fields": key, "limit": 3}).json()
    assert all(list(p["custom_fields"]) == [key] for p in only["data"])


# -- record shapes ---------------------------------------------------------------------------


def test_time_formats_per_version(shared) -> None:
    _, client = shared
    for kind in ("persons", "organizations", "deals", "activities"):
        v1 = client.get(f"/v1/{kind}", params={"limit": 5, "user_id": 0}).json()["data"]
        v2 = client.get(f"/api/v2/{kind}", params={"limit": 5}).json()["data"]
        for record in v1:
            assert V1_TIME.fullmatch(record["add_time"]), record["add_time"]
            assert V1_TIME.fullmatch(record["update_time"])
        for record in v2:
            assert V2_TIME.fullmatch(record["add_time"])
            assert V2_TIME.fullmatch(record["update_time"])
        assert v1[0]["update_time"] == v2[0]["update_time"].replace("T", " ")[:19]
    notes = client.get("/v1/notes", params={"limit": 5}).json()["data"]
    assert all(V1_TIME.fullmatch(note["add_time"]) for note in notes)


def test_owner_and_org_are_objects_in_v1_and_integers_in_v2(shared) -> None:
    emulator, client = shared
    v1 = client.get("/v1/persons", params={"limit": 50}).json()
    v2 = {p["id"]: p for p in client.get("/api/v2/persons", params={"limit": 50}).json()["data"]}
    with_org = [p for p in v1["data"] if p["org_id"] is not None]
    assert with_org and any(p["org_id"] is None for p in v1["data"])
    for person in with_org:
        org, owner = person["org_id"], person["owner_id"]
        assert org["value"] == v2[person["id"]]["org_id"] and isinstance(org["value"], int)
        assert org["people_count"] >= 1 and org["name"] == person["org_name"]
        assert owner["value"] == owner["id"] == v2[person["id"]]["owner_id"]
        assert set(owner) == {"id", "name", "email", "has_pic", "pic_hash", "active_flag", "value"}
        assert str(org["value"]) in v1["related_objects"]["organization"]
        assert person["visible_to"] in ("1", "3") and v2[person["id"]]["visible_to"] in (1, 3)
    deal = client.get("/v1/deals", params={"limit": 1}).json()["data"][0]
    assert deal["user_id"]["value"] == emulator.store.get("deals", deal["id"])["owner_id"]
    assert isinstance(client.get("/api/v2/deals/1").json()["data"]["owner_id"], int)
    activity = client.get("/v1/activities", params={"limit": 1, "user_id": 0}).json()["data"][0]
    assert isinstance(activity["user_id"], int) and "type_name" in activity


def test_emails_and_phones_lists(shared) -> None:
    _, client = shared
    v1 = client.get("/v1/persons", params={"limit": 250}).json()["data"]
    v2 = {p["id"]: p for p in client.get("/api/v2/persons", params={"limit": 250}).json()["data"]}
    two = [p for p in v1 if len(p["email"]) == 2]
    assert two, "some persons have a second e-mail"
    for person in two:
        assert [e["primary"] for e in person["email"]] == [True, False]
        assert set(person["email"][0]) == {"label", "value", "primary"}
        assert person["primary_email"] == person["email"][0]["value"]
        assert [e["value"] for e in v2[person["id"]]["emails"]] == [
            e["value"] for e in person["email"]
        ]
    none = [p for p in v1 if not v2[p["id"]]["emails"]]
    assert none and none[0]["email"] == [{"value": "", "primary": True}]
    assert any(v2[p["id"]]["phones"] for p in v1) and "phone" not in next(iter(v2.values()))
    assert any(e["value"][0].isupper() for p in v1 for e in p["email"] if e["value"])


def test_custom_fields_at_root_in_v1_and_nested_in_v2(shared) -> None:
    _, client = shared
    v1 = client.get("/v1/persons", params={"limit": 100}).json()["data"]
    v2 = client.get("/api/v2/persons", params={"limit": 100}).json()["data"]
    for old, new in zip(v1, v2, strict=True):
        assert set(new["custom_fields"]) == {FAVORITE_COLOR, CUSTOMER_TIER}
        assert FAVORITE_COLOR not in new and "custom_fields" not in old
        assert old[FAVORITE_COLOR] == new["custom_fields"][FAVORITE_COLOR]
        tier = new["custom_fields"][CUSTOMER_TIER]
        assert old[CUSTOMER_TIER] == (None if tier is None else str(tier))  # enum: id
    assert any(p["custom_fields"][CUSTOMER_TIER] for p in v2)
    fields = client.get("/v1/personFields").json()["data"]
    custom = {f["key"]: f for f in fields if HEX40.fullmatch(f["key"])}
    assert {f["name"] for f in custom.values()} == {"Favorite color", "Customer tier"}
    assert custom[CUSTOMER_TIER]["field_type"] == "enum" and custom[CUSTOMER_TIER]["options"]
    org_fields = client.get("/api/v1/organizationFields").json()["data"]
    assert ORG_REGION in [f["key"] for f in org_fields]
    for route in ("dealFields", "activityFields"):
        assert client.get(f"/v1/{route}").json()["success"] is True
    org = client.get("/api/v2/organizations/1").json()["data"]
    assert set(org["custom_fields"]) == {ORG_REGION}
    assert client.get("/api/v2/deals/1").json()["data"]["custom_fields"] is None  # fixture


def test_seed_data_includes_template_like_name_and_is_deterministic(shared) -> None:
    _, client = shared
    names = [p["name"] for p in client.get("/api/v2/persons", params={"limit": 250}).json()["data"]]
    assert "{{ 7*7 }}" in names

    def snapshot(seed: int) -> list[bytes]:
        emulator = PipedriveSandbox(
            seed=seed, contacts=60, companies=6, deals=8, activities=8, notes=8, **UNLIMITED
        )
        with emulator.start() as running, open_client(running) as snap:
            paths = [f"/api/v2/{k}" for k in ("persons", "organizations", "deals", "activities")]
            paths += ["/v1/persons", "/v1/notes", "/v1/deals"]
            return [snap.get(path, params={"limit": 100}).content for path in paths]

    assert snapshot(7) == snapshot(7)
    assert snapshot(7) != snapshot(8)


def test_company_metadata(shared) -> None:
    _, client = shared
    users = client.get("/v1/users").json()
    assert users["data"][0]["is_you"] is True and "company_id" in users["additional_data"]
    assert client.get("/v1/users/me").json()["data"]["id"] == ME["id"]
    stages = client.get("/api/v2/stages", params={"limit": 3}).json()
    assert len(stages["data"]) == 3 and stages["additional_data"]["next_cursor"]
    assert V2_TIME.fullmatch(stages["data"][0]["add_time"])
    v1_stages = client.get("/v1/stages", params={"pipeline_id": 2}).json()["data"]
    assert {s["pipeline_id"] for s in v1_stages} == {2}
    types = {t["key_string"] for t in client.get("/v1/activityTypes").json()["data"]}
    assert {"call", "meeting", "task", "deadline", "email", "lunch"} <= types
    assert len(client.get("/api/v2/pipelines").json()["data"]) == 2


def test_v1_activities_default_to_the_authorised_user(shared) -> None:
    _, client = shared
    everyone, _ = v1_all(client, "/v1/activities", user_id="0")
    mine, _ = v1_all(client, "/v1/activities")
    assert len(everyone) == 40 and 0 < len(mine) < 40
    assert all(activity["user_id"] == ME["id"] for activity in mine)


def test_recents_lists_changes_since_a_v1_timestamp(shared) -> None:
    emulator, client = shared
    since = "2025-06-01 00:00:00"
    body = client.get(
        "/v1/recents", params={"since_timestamp": since, "items": "person", "limit": 500}
    ).json()
    expected = {
        p["id"]
        for p in emulator.store.active_records("persons")
        if p["update_time"] >= "2025-06-01T00:00:00Z"
    }
    assert {entry["id"] for entry in body["data"]} == expected
    assert all(entry["item"] == "person" and "email" in entry["data"] for entry in body["data"])
    assert body["additional_data"]["since_timestamp"] == since
    assert client.get("/v1/recents").status_code == 400


# -- search ----------------------------------------------------------------------------------


def test_person_search_exact_email(shared) -> None:
    emulator, client = shared
    person = next(
        p
        for p in emulator.store.active_records("persons")
        if p["emails"] and p["emails"][0]["value"][0].isupper()
    )
    email = person["emails"][0]["value"]
    for path in ("/v1/persons/search", "/api/v2/persons/search"):
        response = client.get(
            path, params={"term": email.lower(), "fields": "email", "exact_match": "true"}
        )
        body = response.json()
        assert response.status_code == 200 and body["success"] is True
        [hit] = body["data"]["items"]
        item = hit["item"]
        assert item["id"] == person["id"] and item["type"] == "person"
        assert item["emails"] == [e["value"] for e in person["emails"]]  # plain strings
        assert all(isinstance(phone, str) for phone in item["phones"])
        assert item["owner"] == {"id": person["owner_id"]} and hit["result_score"] > 0
        assert item["custom_fields"] == [] and item["notes"] == []
    v1_extra = client.get(
        "/v1/persons/search", params={"term": email, "fields": "email", "exact_match": "true"}
    ).json()["additional_data"]
    assert v1_extra["pagination"]["more_items_in_collection"] is False
    partial = email.split("@")[0][:-2]
    assert not client.get(
        "/v1/persons/search", params={"term": partial, "fields": "email", "exact_match": "true"}
    ).json()["data"]["items"]
    loose = client.get("/api/v2/persons/search", params={"term": partial, "fields": "email"})
    assert person["id"] in [hit["item"]["id"] for hit in loose.json()["data"]["items"]]
    assert client.get("/v1/persons/search", params={"term": "a"}).status_code == 400
    assert client.get("/v1/persons/search", params={"term": "ab", "fields": "x"}).status_code == 400


def test_v2_search_pages_with_a_cursor(shared) -> None:
    _, client = shared
    first = client.get("/api/v2/persons/search", params={"term": "example", "limit": 100}).json()
    cursor = first["additional_data"]["next_cursor"]
    assert len(first["data"]["items"]) == 100 and cursor
    second = client.get(
        "/api/v2/persons/search", params={"term": "example", "limit": 100, "cursor": cursor}
    ).json()
    ids = [h["item"]["id"] for page in (first, second) for h in page["data"]["items"]]
    assert len(ids) == len(set(ids))


# -- writes ----------------------------------------------------------------------------------


def test_v1_person_crud_and_cross_version_visibility(company) -> None:
    emulator, client = company
    org_id = client.get("/api/v2/organizations", params={"limit": 1}).json()["data"][0]["id"]
    created = client.post(
        "/v1/persons",
        json={
            "name": "Test Person",
            "email": [{"value": "test@example.com", "primary": True}],
            "org_id": org_id,
            FAVORITE_COLOR: "mauve",
            CUSTOMER_TIER: "43",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    person = body["data"]
    assert body["additional_data"] == {"didMerge": False} and "related_objects" in body
    assert person["email"] == [{"label": "work", "value": "test@example.com", "primary": True}]
    assert person["phone"] == [{"value": "", "primary": True}]
    assert (person["first_name"], person["last_name"]) == ("Test", "Person")
    assert person["org_id"]["value"] == org_id and person[CUSTOMER_TIER] == "43"
    assert person["owner_id"]["value"] == ME["id"]

    v2 = client.get(f"/api/v2/persons/{person['id']}").json()["data"]
    assert v2["emails"] == [{"value": "test@example.com", "primary": True, "label": "work"}]
    assert v2["custom_fields"] == {FAVORITE_COLOR: "mauve", CUSTOMER_TIER: 43}
    emulator.advance_time(60)
    updated = client.put(f"/v1/persons/{person['id']}", json={"name": "Renamed Person"})
    assert updated.status_code == 200
    assert updated.json()["data"]["update_time"] > person["update_time"]
    stored = emulator.store.get("persons", person["id"])
    assert stored["name"] == "Renamed Person" and stored["custom_fields"][FAVORITE_COLOR] == "mauve"
    form = client.post("/v1/persons", data={"name": "Form Person", "email": "form@example.com"})
    assert form.status_code == 201 and form.json()["data"]["primary_email"] == "form@example.com"

    deleted = client.delete(f"/v1/persons/{person['id']}")
    assert deleted.status_code == 200 and deleted.json() == {
        "success": True,
        "data": {"id": person["id"]},
    }
    assert client.get(f"/v1/persons/{person['id']}").status_code == 410
    assert client.get(f"/api/v2/persons/{person['id']}").status_code == 410
    again = client.delete(f"/v1/persons/{person['id']}")  # v1_person_delete_response_410.json
    assert again.status_code == 410 and again.json()["success"] is True
    missing = client.get("/v1/persons/99999")
    assert missing.status_code == 404 and missing.json()["success"] is False
    assert missing.json()["error"] == "Person not found"
    assert client.put("/v1/persons/99999", json={"name": "x"}).status_code == 404
    assert emulator.store.get("persons", person["id"], deleted=True)["is_deleted"] is True
    assert emulator.store.count("persons") == 31


def test_v2_person_crud_and_validation(company) -> None:
    emulator, client = company
    payload = {
        "name": "Vee Two",
        "emails": [{"value": "v2@example.com", "primary": True, "label": "work"}],
        "phones": [{"value": "+372 555 0000", "primary": True, "label": "mobile"}],
        "custom_fields": {CUSTOMER_TIER: 41},
        "visible_to": 3,
    }
    created = client.post("/api/v2/persons", json=payload)
    assert created.status_code == 201, created.text
    person = created.json()["data"]
    assert set(created.json()) == {"success", "data"}
    assert V2_TIME.fullmatch(person["add_time"]) and person["owner_id"] == ME["id"]
    v1 = client.get(f"/v1/persons/{person['id']}").json()["data"]
    assert v1["phone"] == [{"label": "mobile", "value": "+372 555 0000", "primary": True}]
    assert v1[CUSTOMER_TIER] == "41" and V1_TIME.fullmatch(v1["add_time"])

    patched = client.patch(f"/api/v2/persons/{person['id']}", json={"emails": []})
    assert patched.status_code == 200 and patched.json()["data"]["emails"] == []
    assert client.put(f"/api/v2/persons/{person['id']}", json={}).status_code in (401, 404, 405)

    for bad in (
        {"emails": []},  # name is required
        {"name": "x", "visible_to": "3"},  # strict types
        {"name": "x", "email": "a@b.co"},  # v1 field name: unknown in v2
        {"name": "x", "org_id": 9999},  # unknown organization
        {"name": "x", "owner_id": 1},  # unknown user
        {"name": "x", "custom_fields": {CUSTOMER_TIER: "41"}},  # enum ids are integers
        {"name": "x", "custom_fields": {"0" * 40: "y"}},
    ):
        response = client.post("/api/v2/persons", json=bad)
        assert response.status_code == 400, (bad, response.text)
        body = response.json()
        assert body["success"] is False and body["error"] and body["error_info"]
    assert client.post("/api/v2/persons", content=b"{nope").status_code == 400
    deleted = client.delete(f"/api/v2/persons/{person['id']}")
    assert deleted.json() == {"success": True, "data": {"id": person["id"]}}
    assert emulator.store.count("persons") == 30


def test_organization_deal_activity_crud(company) -> None:
    emulator, client = company
    org = client.post("/v1/organizations", json={"name": "Test Org", "address": "1 Main St"})
    assert org.status_code == 201 and org.json()["data"]["address"] == "1 Main St"
    org_id = org.json()["data"]["id"]
    org2 = client.post(
        "/api/v2/organizations", json={"name": "V2 Org", "custom_fields": {ORG_REGION: "EMEA"}}
    )
    assert org2.status_code == 201 and org2.json()["data"]["custom_fields"] == {ORG_REGION: "EMEA"}
    patched_org = client.patch(f"/api/v2/organizations/{org_id}", json={"name": "Renamed Org"})
    assert patched_org.json()["data"]["name"] == "Renamed Org"

    person_id = emulator.store.get("persons", 1)["id"]
    deal = client.post(
        "/v1/deals",
        json={"title": "Big deal", "value": "2500", "currency": "eur", "person_id": person_id,
              "org_id": org_id},
    )  # fmt: skip
    assert deal.status_code == 201, deal.text
    v1_deal = deal.json()["data"]
    assert v1_deal["value"] == 2500 and v1_deal["currency"] == "EUR"
    assert v1_deal["person_id"]["value"] == person_id and v1_deal["org_id"]["value"] == org_id
    assert (v1_deal["stage_id"], v1_deal["pipeline_id"], v1_deal["status"]) == (1, 1, "open")
    won = client.put(f"/v1/deals/{v1_deal['id']}", json={"status": "won", "stage_id": 7})
    assert won.status_code == 200
    v2_deal = client.get(f"/api/v2/deals/{v1_deal['id']}").json()["data"]
    assert (v2_deal["status"], v2_deal["stage_id"], v2_deal["pipeline_id"]) == ("won", 7, 2)
    assert V2_TIME.fullmatch(v2_deal["won_time"]) and v2_deal["person_id"] == person_id
    v2_created = client.post("/api/v2/deals", json={"title": "V2 deal", "value": 10.5})
    assert v2_created.status_code == 201 and v2_created.json()["data"]["value"] == 10.5
    assert client.post("/api/v2/deals", json={"value": 1}).status_code == 400  # title required
    assert client.post("/v1/deals", json={"title": "x", "stage_id": 99}).status_code == 400
    assert client.post("/v1/deals", json={"title": "x", "person_id": 999}).status_code == 400
    assert client.post("/api/v2/deals", json={"title": "x", "value": "1"}).status_code == 400
    assert client.delete(f"/api/v2/deals/{v1_deal['id']}").status_code == 200

    activity = client.post(
        "/v1/activities",
        json={"subject": "Call Jane", "type": "call", "due_date": "2026-05-20", "due_time": "10:00",
              "duration": "00:30", "person_id": person_id, "done": 0},
    )  # fmt: skip
    assert activity.status_code == 201, activity.text
    made = activity.json()
    assert made["additional_data"] == {"updates_story_id": None}
    assert made["data"]["type_name"] == "Call" and made["data"]["marked_as_done_time"] == ""
    assert made["data"]["participants"] == [{"person_id": person_id, "primary_flag": True}]
    done = client.patch(f"/api/v2/activities/{made['data']['id']}", json={"done": True})
    assert done.json()["data"]["done"] is True
    assert V2_TIME.fullmatch(done.json()["data"]["marked_as_done_time"])
    plain = client.post("/v1/activities", json={"subject": "Default type"}).json()["data"]
    assert plain["type"] == "call" and plain["due_date"]
    assert client.post("/v1/activities", json={"type": "yoga"}).status_code == 400
    assert client.post("/api/v2/activities", json={"type": "nap"}).status_code == 400
    assert client.post("/api/v2/activities", json={"subject": "x", "deal_id": 999}).status_code == (
        400
    )
    v2_activity = client.post(
        "/api/v2/activities", json={"subject": "Lunch", "type": "lunch", "busy": True}
    )
    assert v2_activity.status_code == 201 and v2_activity.json()["data"]["busy"] is True
    assert client.delete(f"/v1/activities/{plain['id']}").status_code == 200
    assert emulator.store.count("organizations") == 7 and emulator.store.count("deals") == 6


def test_notes(company) -> None:
    emulator, client = company
    missing_content = client.post("/v1/notes", json={"person_id": 1})
    assert missing_content.status_code == 400
    unattached = client.post("/v1/notes", json={"content": "floating"})
    assert unattached.status_code == 400 and "deal" in unattached.json()["error"]
    created = client.post("/v1/notes", json={"content": "Met at the fair", "person_id": 1})
    assert created.status_code == 201, created.text
    note = created.json()["data"]
    person = emulator.store.get("persons", 1)
    assert note["person"] == {"name": person["name"]} and note["deal"] is None
    assert note["user"]["is_you"] is True and V1_TIME.fullmatch(note["add_time"])
    lead_note = client.post("/v1/notes", json={"content": "lead", "lead_id": "a-b-c"})
    assert lead_note.status_code == 201
    listed, _ = v1_all(client, "/v1/notes", person_id="1")
    assert note["id"] in [n["id"] for n in listed]
    updated = client.put(f"/v1/notes/{note['id']}", json={"content": "Edited"})
    assert updated.json()["data"]["content"] == "Edited"
    assert client.get("/api/v2/notes").status_code == 404  # no v2 notes (CONTRACTS 3.4)
    assert client.delete(f"/v1/notes/{note['id']}").status_code == 200
    assert client.get(f"/v1/notes/{note['id']}").status_code == 410
    assert emulator.store.count("notes") == 1


# -- rate limits -----------------------------------------------------------------------------


def test_rate_limit_headers_and_429_in_two_second_windows() -> None:
    emulator = PipedriveSandbox(contacts=5, companies=1, deals=1, rate_limit=(4, 2.0))
    with emulator.start() as running, open_client(running) as client:
        remaining = []
        for path in ("/v1/persons", "/api/v2/persons", "/v1/persons/1", "/api/v2/deals/1"):
            response = client.get(path)
            assert response.status_code == 200
            assert all(name in response.headers for name in RATE_HEADERS)
            assert response.headers["x-ratelimit-limit"] == "4"
            assert response.headers["x-ratelimit-reset"] in ("1", "2")
            remaining.append(int(response.headers["x-ratelimit-remaining"]))
        assert remaining == [3, 2, 1, 0]
        limited = client.get("/v1/persons")
        assert limited.status_code == 429
        # CONTRACTS 3.6: the 429 text is UNCONFIRMED; ours follows the mocks
        assert limited.json() == {
            "success": False,
            "error": "Request over limit",
            "errorCode": 429,
        }
        assert limited.headers["x-ratelimit-remaining"] == "0"
        assert int(limited.headers["x-ratelimit-reset"]) >= 1
        emulator.advance_time(2)
        assert client.get("/v1/persons").status_code == 200
        # another token has its own window
        grant = emulator.issue_token()
        other = client.get(
            "/api/v2/persons", headers={"Authorization": f"Bearer {grant.access_token}"}
        )
        assert other.headers["x-ratelimit-remaining"] == "3"


def test_daily_token_budget() -> None:
    emulator = PipedriveSandbox(
        contacts=5, companies=1, deals=1, rate_limit=None, daily_token_budget=100
    )
    with emulator.start() as running, open_client(running) as client:
        first = client.get("/v1/persons")  # a v1 list costs 20 tokens (UNCONFIRMED numbers)
        assert first.headers["x-daily-ratelimit-token-limit"] == "100"
        assert first.headers["x-daily-ratelimit-token-remaining"] == "80"
        second = client.get("/api/v2/persons")  # v2 costs half
        assert second.headers["x-daily-ratelimit-token-remaining"] == "70"
        assert "x-ratelimit-limit" not in second.headers  # burst limit disabled
        assert emulator.spend_daily_budget() == 0
        spent = client.get("/api/v2/persons/1")
        assert spent.status_code == 429
        assert spent.headers["x-daily-ratelimit-token-remaining"] == "0"
        assert spent.json()["success"] is False and spent.json()["errorCode"] == 429
        emulator.advance_time(86_400)
        assert client.get("/api/v2/persons/1").status_code == 200


# -- fault injection -------------------------------------------------------------------------


def test_fail_next_drop_next_and_oauth_untouched(company) -> None:
    emulator, client = company
    before = emulator.store.count("persons")
    emulator.app.fail_next(2, 503)
    failed = client.post("/api/v2/persons", json={"name": "Retry Me"})
    assert failed.status_code == 503 and failed.json()["success"] is False
    assert client.get("/api/v2/persons").status_code == 503
    assert client.get("/api/v2/persons").status_code == 200
    assert emulator.store.count("persons") == before
    emulator.app.fail_next(1, 429)
    throttled = client.get("/v1/persons")
    assert throttled.status_code == 429 and throttled.json()["error"] == "Request over limit"
    emulator.app.fail_next(1, 401)
    forced = client.get("/v1/persons")
    assert forced.json() == UNAUTHORIZED and forced.headers["x-401-by-gw"] == "true"
    emulator.app.fail_next(1, 500)
    token = client.post("/oauth/token", data={"grant_type": "x"}, headers=basic(emulator))
    assert token.status_code == 400  # OAuth routes are not faulted unless asked
    assert client.get("/v1/persons").status_code == 500
    emulator.app.drop_next(1, after_handling=True)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/api/v2/persons", json={"name": "Ambiguous"})
    assert emulator.store.count("persons") == before + 1
    assert emulator.app.stats.count("v2.create") == 2


def test_error_rate_is_deterministic_and_latency_applies() -> None:
    def statuses() -> list[int]:
        emulator = PipedriveSandbox(
            seed=3, contacts=2, companies=1, deals=1, error_rate=0.3, **UNLIMITED
        )
        with emulator.start() as running, open_client(running) as client:
            return [client.get("/api/v2/persons").status_code for _ in range(30)]

    first = statuses()
    assert first == statuses() and 200 in first and set(first) - {200} <= {500, 502, 503}
    emulator = PipedriveSandbox(contacts=1, companies=1, deals=1, latency_ms=50, **UNLIMITED)
    with emulator.start() as running, open_client(running) as client:
        assert client.get("/v1/persons").elapsed.total_seconds() >= 0.05
