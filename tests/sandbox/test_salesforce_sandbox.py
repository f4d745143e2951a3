"""Salesforce emulator over real HTTP (httpx -> 127.0.0.1), checked against CONTRACTS.md section 2
and the recorded bodies in /work/shared/vendor-api/fixtures/salesforce/."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.kit import RunningSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.salesforce.ids import normalize_id

STATIC_TOKEN = "sandbox-session-id"
V = "/services/data/v59.0"
QUERY = V + "/query"
CONTACTS = V + "/sobjects/Contact"
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000")
REDIRECT = "http://localhost:8765/callback"

# Recorded bodies (fixtures/salesforce/error_*.json), compared byte for byte where we can.
SESSION_EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
LIMIT_EXCEEDED = [
    {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
]
ENTITY_DELETED = [{"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}]
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
BACON_MESSAGE = (
    "\nSELECT Bacon__c FROM Account LIMIT 2\n       ^\nERROR at Row:1:Column:8\nNo such column "
    "'Bacon__c' on entity 'Account'. If you are attempting to use a custom field, be sure to "
    "append the '__c' after the custom field name. Please reference your WSDL or the describe "
    "call for the appropriate names."
)


def soql_quote(value: str) -> str:
    """A SOQL string literal, escaped like simple-salesforce's quote_soql_value (CONTRACTS 2.5)."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace("'", "\\'")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
        .replace("\b", "\\b")
        .replace("\f", "\\f")
    )
    return f"'{escaped}'"


def like_quote(value: str) -> str:
    """A LIKE pattern literal matching ``value`` exactly (wildcards escaped too)."""
    return soql_quote(value)[:-1].replace("%", "\\%").replace("_", "\\_") + "'"


def open_client(running: RunningSandbox, token: str | None = STATIC_TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=running.url, headers=headers, timeout=10)


def soql(client: httpx.Client, text: str, **kwargs) -> httpx.Response:
    return client.get(QUERY, params={"q": text}, **kwargs)


def records(client: httpx.Client, text: str) -> list[dict]:
    response = soql(client, text)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["done"], "use query_pages for multi-page results"
    return body["records"]


def query_pages(client: httpx.Client, text: str, **kwargs) -> list[dict]:
    """Every page of a query, following nextRecordsUrl (GET {instance_url}{nextRecordsUrl})."""
    response = soql(client, text, **kwargs)
    pages = []
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        if pages[-1]["done"]:
            assert "nextRecordsUrl" not in pages[-1]
            return pages
        response = client.get(pages[-1]["nextRecordsUrl"])


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[SalesforceSandbox, httpx.Client, RunningSandbox]]:
    """A read-only org shared by the tests that do not write."""
    emulator = SalesforceSandbox(
        contacts=450, companies=20, deals=30, leads=10, tasks=25, events=10, notes=5,
        daily_limit=None,
    )  # fmt: skip
    with emulator.start() as running, open_client(running) as client:
        yield emulator, client, running


@pytest.fixture
def org() -> Iterator[tuple[SalesforceSandbox, httpx.Client]]:
    """A small fresh org for tests that write or change limits."""
    emulator = SalesforceSandbox(contacts=30, companies=5, deals=5, leads=3, daily_limit=None)
    with emulator.start() as running, open_client(running) as client:
        yield emulator, client


# -- interface -------------------------------------------------------------------------------


def test_public_interface_and_describe() -> None:
    emulator = SalesforceSandbox(contacts=3, companies=1, deals=1, leads=0)
    assert emulator.static_token == STATIC_TOKEN
    assert (emulator.client_id, emulator.client_secret) == (
        "sandbox-client-id",
        "sandbox-client-secret",
    )
    assert emulator.connection_config("http://127.0.0.1:9") == {
        "login_url": "http://127.0.0.1:9",
        "extra_fields": ["Favorite_Color__c", "Customer_Tier__c"], "phone_region": "US"}
    assert SalesforceSandbox.DEMO_OPTIONS["daily_limit"] > 100_000
    info = emulator.describe()
    assert info["token"] == "/services/oauth2/token" and info["static_token"] == STATIC_TOKEN
    assert emulator.store.count("Contact") == 3 and emulator.store.count("Account") == 1
    with pytest.raises(ValueError):
        SalesforceSandbox(batch_size=100)


def test_cli_flags_follow_the_constructor(monkeypatch) -> None:
    import sandbox
    from sandbox.__main__ import _parser

    monkeypatch.setitem(sandbox.EMULATORS, "salesforce", SalesforceSandbox)
    args = _parser().parse_args(
        ["salesforce", "--contacts", "7", "--daily-limit", "none", "--batch-size", "500",
         "--static-tokens", "a,b", "--api-versions", "59.0,60.0", "--rotate-refresh-tokens", "yes"]
    )  # fmt: skip
    assert (args.contacts, args.daily_limit, args.batch_size) == (7, None, 500)
    assert args.static_tokens == ("a", "b") and args.api_versions == ("59.0", "60.0")
    assert args.rotate_refresh_tokens is True


def test_soql_helper_and_store(shared) -> None:
    emulator, client, _ = shared
    direct = emulator.soql("SELECT Id, Email FROM Contact WHERE Email LIKE '%.1@%'")
    over_http = records(client, "SELECT Id, Email FROM Contact WHERE Email LIKE '%.1@%'")
    assert [r["Id"] for r in direct] == [r["Id"] for r in over_http] and direct
    assert emulator.store.get("Contact", direct[0]["Id"])["Email"] == direct[0]["Email"]
    assert emulator.store.get("Account", direct[0]["Id"]) is None  # wrong object
    assert len(emulator.soql("SELECT Id FROM Contact")) == emulator.store.count("Contact") == 450


def test_versions_resources_and_unknown_version(shared) -> None:
    _, client, _ = shared
    versions = client.get("/services/data")
    assert versions.status_code == 200 and "sforce-limit-info" not in versions.headers
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in (
        versions.json()
    )
    assert [v["version"] for v in versions.json()] == ["58.0", "59.0", "60.0"]
    resources = client.get(V + "/").json()
    assert resources["query"] == V + "/query" and resources["sobjects"] == V + "/sobjects"
    unknown = client.get("/services/data/v12.0/query", params={"q": "SELECT Id FROM Contact"})
    assert unknown.status_code == 404 and unknown.json() == NOT_FOUND
    assert unknown.text.startswith('[{"errorCode"')  # key order as recorded
    assert client.get(V + "/nothing/here").json() == NOT_FOUND
    assert client.get(V + "/sobjects/Widget__c/describe").status_code == 404


# -- OAuth -----------------------------------------------------------------------------------


def authorize(client: httpx.Client, emulator: SalesforceSandbox, **params: str) -> dict:
    response = client.get(
        "/services/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": emulator.client_id,
            "redirect_uri": REDIRECT,
            "state": "st-123",
            **params,
        },
    )
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def test_oauth_code_flow_with_pkce_and_basic_client_auth(shared) -> None:
    emulator, client, running = shared
    verifier = "v" * 50
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    redirect = authorize(
        client,
        emulator,
        scope="api refresh_token",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    assert redirect["state"] == "st-123"
    form = {"grant_type": "authorization_code", "code": redirect["code"], "redirect_uri": REDIRECT}
    basic = base64.b64encode(f"{emulator.client_id}:{emulator.client_secret}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}"}
    wrong = client.post(
        "/services/oauth2/token", data={**form, "code_verifier": "x" * 50}, headers=headers
    )
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid_grant", "error_description": "invalid code verifier"}
    missing = client.post("/services/oauth2/token", data=form, headers=headers)
    assert missing.json()["error"] == "invalid_grant"
    token = client.post(
        "/services/oauth2/token", data={**form, "code_verifier": verifier}, headers=headers
    )
    grant = token.json()
    assert token.status_code == 200, token.text
    # CONTRACTS 2.1: instance_url, signature, issued_at (ms string), id; NO expires_in.
    assert "expires_in" not in grant
    assert set(grant) == {
        "access_token", "refresh_token", "signature", "scope", "instance_url", "id",
        "token_type", "issued_at",
    }  # fmt: skip
    assert grant["instance_url"] == running.url and grant["token_type"] == "Bearer"
    assert grant["scope"] == "api refresh_token" and grant["issued_at"].isdigit()
    assert re.fullmatch(re.escape(running.url) + r"/id/00D\w{15}/005\w{15}", grant["id"])
    expected = hmac.new(
        emulator.client_secret.encode(),
        (grant["id"] + grant["issued_at"]).encode(),
        hashlib.sha256,
    ).digest()
    assert base64.b64decode(grant["signature"]) == expected
    bearer = {"Authorization": f"Bearer {grant['access_token']}"}
    assert client.get(grant["instance_url"] + QUERY, params={"q": "SELECT Id FROM Lead"},
                      headers=bearer).status_code == 200  # fmt: skip
    # Codes are single use.
    again = client.post(
        "/services/oauth2/token", data={**form, "code_verifier": verifier}, headers=headers
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # Client credentials in the body work as well; no refresh_token scope -> no refresh token.
    plain = authorize(client, emulator, scope="api")
    body_auth = client.post(
        "/services/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": plain["code"],
            "redirect_uri": REDIRECT,
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
        },
    ).json()
    assert "access_token" in body_auth and "refresh_token" not in body_auth


def refresh(client: httpx.Client, emulator: SalesforceSandbox, token: str) -> httpx.Response:
    return client.post(
        "/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
        },
    )


def test_refresh_without_rotation_omits_refresh_token(org) -> None:
    emulator, client = org
    first = emulator.issue_token()
    response = refresh(client, emulator, first.refresh_token)
    body = response.json()
    # fixtures/salesforce/oauth_token_refresh_response_example.json: no refresh_token, no
    # expires_in.
    assert response.status_code == 200 and set(body) == {
        "access_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at",
    }  # fmt: skip
    assert body["access_token"] != first.access_token
    assert refresh(client, emulator, first.refresh_token).status_code == 200  # still valid
    bad = refresh(client, emulator, "nope")
    assert bad.status_code == 400
    assert bad.json() == {  # error_400_oauth_invalid_grant.json
        "error": "invalid_grant",
        "error_description": "expired access/refresh token",
    }
    wrong_secret = client.post(
        "/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first.refresh_token,
            "client_id": emulator.client_id,
            "client_secret": "wrong",
        },
    )
    assert wrong_secret.json()["error"] == "invalid_client"
    unknown_grant = client.post("/services/oauth2/token", data={"grant_type": "password"})
    assert unknown_grant.json()["error"] == "unsupported_grant_type"


def test_refresh_with_rotation_and_replay_detection() -> None:
    emulator = SalesforceSandbox(contacts=2, companies=1, deals=0, rotate_refresh_tokens=True)
    with emulator.start() as running, open_client(running, token=None) as client:
        first = emulator.issue_token()
        rotated = refresh(client, emulator, first.refresh_token).json()
        assert rotated["refresh_token"] != first.refresh_token
        newest = refresh(client, emulator, rotated["refresh_token"]).json()
        # Replaying a rotated-away token fails and revokes the live one of the same grant.
        assert refresh(client, emulator, first.refresh_token).status_code == 400
        assert refresh(client, emulator, newest["refresh_token"]).status_code == 400
        bearer = {"Authorization": f"Bearer {newest['access_token']}"}
        assert client.get(V + "/limits", headers=bearer).json() == SESSION_EXPIRED


def test_authorize_errors(shared) -> None:
    emulator, client, _ = shared
    unknown = client.get(
        "/services/oauth2/authorize",
        params={"response_type": "code", "client_id": "nope", "redirect_uri": REDIRECT},
    )
    assert unknown.status_code == 400
    assert unknown.json() == {
        "error": "invalid_client_id",
        "error_description": "client identifier invalid",
    }
    token_type = authorize(client, emulator, response_type="token")
    assert token_type["error"] == "unsupported_response_type" and token_type["state"] == "st-123"


def test_revoke_and_userinfo(org) -> None:
    emulator, client = org
    grant = emulator.issue_token()
    bearer = {"Authorization": f"Bearer {grant.access_token}"}
    info = client.get("/services/oauth2/userinfo", headers=bearer)
    assert info.status_code == 200 and info.json()["email"] == "admin@sandbox-org.example"
    assert info.json()["user_id"] == emulator.api_user_id
    identity = client.get(info.json()["sub"].removeprefix(emulator.url), headers=bearer)
    assert identity.json()["username"] == "admin@sandbox-org.example"
    assert (
        client.post("/services/oauth2/revoke", data={"token": grant.refresh_token}).status_code
        == 200
    )
    # Revoking the refresh token revokes the sessions minted from it.
    assert client.get(V + "/limits", headers=bearer).json() == SESSION_EXPIRED
    assert refresh(client, emulator, grant.refresh_token).status_code == 400
    other = emulator.issue_token()
    assert (
        client.post("/services/oauth2/revoke", data={"token": other.access_token}).status_code
        == 200
    )
    assert (
        client.get(
            V + "/limits", headers={"Authorization": f"Bearer {other.access_token}"}
        ).status_code
        == 401
    )
    unknown = client.post("/services/oauth2/revoke", data={"token": "nope"})
    assert unknown.status_code == 400 and unknown.json()["error"] == "unsupported_token_type"
    assert client.get("/services/oauth2/userinfo", headers=bearer).status_code == 403


def test_sessions_expire_after_inactivity(org) -> None:
    emulator, client = org
    grant = emulator.issue_token()
    bearer = {"Authorization": f"Bearer {grant.access_token}"}
    assert client.get(V + "/limits", headers=bearer).status_code == 200
    emulator.advance_time(5000)  # past half of the 7,200 s timeout: a use extends the session
    assert client.get(V + "/limits", headers=bearer).status_code == 200
    emulator.advance_time(5000)
    assert client.get(V + "/limits", headers=bearer).status_code == 200
    emulator.advance_time(7201)  # idle longer than the timeout
    expired = client.get(V + "/limits", headers=bearer)
    assert expired.status_code == 401 and expired.json() == SESSION_EXPIRED
    assert "sforce-limit-info" not in expired.headers
    assert client.get(V + "/limits").status_code == 200  # static session ids never expire
    fresh = emulator.issue_token()
    emulator.expire_all_tokens()
    gone = client.get(V + "/limits", headers={"Authorization": f"Bearer {fresh.access_token}"})
    assert gone.json() == SESSION_EXPIRED
    assert client.get(V + "/limits", headers={"Authorization": ""}).json() == SESSION_EXPIRED
    wrong_scheme = client.get(V + "/limits", headers={"Authorization": "Basic abc"})
    assert wrong_scheme.status_code == 401
    assert wrong_scheme.json() == [
        {"message": "INVALID_HEADER_TYPE", "errorCode": "INVALID_AUTH_HEADER"}
    ]
    oauth_scheme = client.get(V + "/limits", headers={"Authorization": f"OAuth {STATIC_TOKEN}"})
    assert oauth_scheme.status_code == 200


# -- query and paging ------------------------------------------------------------------------


def test_query_pages_return_every_record_once(shared) -> None:
    emulator, client, _ = shared
    pages = query_pages(
        client,
        "SELECT Id, Email FROM Contact",
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    assert [len(page["records"]) for page in pages] == [200, 200, 50]
    assert all(page["totalSize"] == 450 for page in pages)
    assert [page["done"] for page in pages] == [False, False, True]
    # CONTRACTS 2.3: path-absolute, includes the version, "<locator>-<offset>".
    assert re.fullmatch(r"/services/data/v59\.0/query/01g\w{15}-200", pages[0]["nextRecordsUrl"])
    assert pages[1]["nextRecordsUrl"].endswith("-400")
    ids = [record["Id"] for page in pages for record in page["records"]]
    assert len(ids) == len(set(ids)) == emulator.store.count("Contact")
    # Default batch: 2,000 -> one page; out-of-range batch sizes are clamped to 200..2000.
    assert [len(p["records"]) for p in query_pages(client, "SELECT Id FROM Contact")] == [450]
    tiny = query_pages(client, "SELECT Id FROM Contact",
                       headers={"Sforce-Query-Options": "batchSize=5"})  # fmt: skip
    assert len(tiny[0]["records"]) == 200
    unknown = client.get(QUERY + "/01gSb0000000000AAA-200")
    assert unknown.status_code == 400 and unknown.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_batch_size_option_and_locators_expire() -> None:
    emulator = SalesforceSandbox(contacts=250, companies=2, deals=0, batch_size=200)
    with emulator.start() as running, open_client(running) as client:
        first = soql(client, "SELECT Id FROM Contact").json()
        assert len(first["records"]) == 200 and first["nextRecordsUrl"].endswith("-200")
        emulator.advance_time(16 * 60)  # locators expire after 15 idle minutes
        stale = client.get(first["nextRecordsUrl"])
        assert stale.status_code == 400 and stale.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_record_shape_follows_the_recordings(shared) -> None:
    _, client, _ = shared
    rows = records(
        client,
        "select id, firstname, LASTNAME, email, createddate, systemmodstamp, account.name, "
        "favorite_color__c from contact limit 40",
    )
    first = rows[0]
    assert list(first)[:2] == ["attributes", "Id"]  # attributes first, canonical field names
    assert list(first) == ["attributes", "Id", "FirstName", "LastName", "Email", "CreatedDate",
                           "SystemModstamp", "Account", "Favorite_Color__c"]  # fmt: skip
    assert first["attributes"] == {
        "type": "Contact",
        "url": f"{V}/sobjects/Contact/{first['Id']}",
    }
    assert all(DATETIME.fullmatch(row["CreatedDate"]) for row in rows)
    assert any(row["Account"] is None for row in rows)  # a null relationship is null
    linked = next(row for row in rows if row["Account"] is not None)
    assert linked["Account"]["attributes"]["type"] == "Account" and linked["Account"]["Name"]
    assert any(row["Favorite_Color__c"] is None for row in rows)  # nulls are present
    ids = [row["Id"] for row in rows]
    assert all(len(i) == 18 and i.startswith("003") and normalize_id(i) == i for i in ids)


def test_seed_covers_objects_and_awkward_values(shared) -> None:
    _, client, _ = shared
    prefixes = {"Contact": "003", "Account": "001", "Opportunity": "006", "Lead": "00Q",
                "Task": "00T", "Event": "00U", "Note": "002", "User": "005"}  # fmt: skip
    for name, prefix in prefixes.items():
        rows = records(client, f"SELECT Id FROM {name} LIMIT 5")
        assert rows and all(row["Id"].startswith(prefix) for row in rows), name
    names = records(client, "SELECT FirstName, LastName FROM Contact LIMIT 10")
    assert {"FirstName": "{{ 7*7 }}", "LastName": "Template"} in [
        {k: row[k] for k in ("FirstName", "LastName")} for row in names
    ]
    task = records(
        client,
        "SELECT Subject, Status, Priority, ActivityDate, Description, WhoId, WhatId, "
        "TaskSubtype, CallType, CallDurationInSeconds, CallDisposition, Who.Name, What.Type "
        "FROM Task WHERE TaskSubtype = 'Call' LIMIT 1",
    )[0]
    assert task["CallType"] in ("Inbound", "Outbound", "Internal")
    assert task["Who"]["attributes"]["type"] == "Name" and task["Who"]["Name"]
    event = records(client, "SELECT StartDateTime, EndDateTime, DurationInMinutes FROM Event "
                            "LIMIT 1")[0]  # fmt: skip
    assert event["EndDateTime"] > event["StartDateTime"] and event["DurationInMinutes"] > 0
    deal = records(client, "SELECT Name, Amount, StageName, CloseDate, Probability, AccountId "
                           "FROM Opportunity LIMIT 1")[0]  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", deal["CloseDate"])


def test_soql_escaping_and_injection(shared) -> None:
    _, client, _ = shared
    fields = "SELECT Id, FirstName, LastName, Email FROM Contact WHERE "
    obrien = records(client, fields + "LastName = " + soql_quote("O'Brien"))
    assert obrien and all(row["LastName"] == "O'Brien" for row in obrien)
    assert records(client, fields + "FirstName = " + soql_quote("{{ 7*7 }}"))
    backslash = records(client, fields + "LastName = " + soql_quote("Slash\\Name"))
    assert [row["LastName"] for row in backslash] == ["Slash\\Name"]
    quotes = records(
        client, fields + "FirstName = " + soql_quote('Robert"); DROP TABLE Contact;--')
    )
    assert len(quotes) == 1
    # The hostile value stays one string literal when escaped: nothing matches.
    hostile = "x' OR Email != '"
    assert records(client, fields + "Email = " + soql_quote(hostile)) == []
    # Unescaped, it is a different query - exactly what Salesforce would run: every contact
    # with an email ('' is null in SOQL).
    injected = soql(client, fields + f"Email = '{hostile}'")
    assert injected.status_code == 200 and injected.json()["totalSize"] > 400
    broken = soql(client, fields + "Email = 'x''")  # a stray quote: unterminated literal
    assert broken.status_code == 400 and broken.json()[0]["errorCode"] == "MALFORMED_QUERY"
    # Comparisons on text are case-insensitive; LIKE wildcards can be escaped.
    mixed = records(client, fields + "Email LIKE 'M%' LIMIT 200")
    assert any(row["Email"][0] == "m" for row in mixed) and any(
        row["Email"][0] == "M" for row in mixed
    )
    exact = records(client, fields + "FirstName LIKE " + like_quote("50%_off"))
    assert [row["FirstName"] for row in exact] == ["50%_off"]
    assert records(client, fields + "FirstName LIKE '50\\%\\_of'") == []
    outside_like = soql(client, fields + "FirstName = '50\\%'")
    assert outside_like.json()[0]["errorCode"] == "MALFORMED_QUERY"
    bad_escape = soql(client, fields + "FirstName = 'a\\qb'")
    assert bad_escape.json()[0]["errorCode"] == "MALFORMED_QUERY"
    escaped_unicode = records(client, fields + "FirstName = 'Zo\\u00eb'")
    assert escaped_unicode == records(client, fields + "FirstName = 'Zoë'") != []


def test_where_operators(shared) -> None:
    emulator, client, _ = shared

    def total(where: str) -> int:
        response = soql(client, f"SELECT COUNT() FROM Contact WHERE {where}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["records"] == [] and body["done"]
        return body["totalSize"]

    tiers = [total(f"Customer_Tier__c = '{tier}'") for tier in ("Gold", "Silver")]
    assert total("Customer_Tier__c IN ('gold', 'SILVER')") == sum(tiers)
    assert total("(Customer_Tier__c = 'Gold' OR Customer_Tier__c = 'Silver')") == sum(tiers)
    has_tier = total("Customer_Tier__c != null")
    assert has_tier + total("Customer_Tier__c = null") == 450
    # SOQL != and NOT IN also match nulls.
    assert total("Customer_Tier__c != 'Gold'") == 450 - tiers[0]
    assert total("Customer_Tier__c NOT IN ('Gold')") == 450 - tiers[0]
    assert total("NOT Customer_Tier__c = 'Gold'") == 450 - tiers[0]
    assert total("Customer_Tier__c = 'Gold' AND HasOptedOutOfEmail = false") <= tiers[0]
    assert total("NPS_Score__c >= 5 AND NPS_Score__c < 8") > 0
    account = records(client, "SELECT Id FROM Account LIMIT 1")[0]["Id"]
    linked = total(f"AccountId = '{account}'")
    assert linked == total(f"AccountId = '{account[:15]}'") == total(f"Account.Id = '{account}'")
    assert total("Account.Name LIKE '%'") == 450 - total("AccountId = null")
    assert emulator.store.count("Contact") == 450


def test_datetime_and_date_comparisons(shared) -> None:
    emulator, client, _ = shared
    stamps = [emulator.store.value(r, "SystemModstamp") for r in emulator.store.records("Contact")]
    cutoff = "2025-06-01T00:00:00.000+0000"
    expected = sum(1 for stamp in stamps if stamp > cutoff)

    def total(where: str) -> int:
        response = soql(client, f"SELECT COUNT() FROM Contact WHERE {where}")
        assert response.status_code == 200, response.text
        return response.json()["totalSize"]

    # CONTRACTS 2.3: unquoted ISO-8601, compared as instants whatever the offset.
    assert 0 < total("SystemModstamp > 2025-06-01T00:00:00Z") == expected < 450
    assert total("SystemModstamp > 2025-06-01T02:00:00+02:00") == expected
    assert total("SystemModstamp > 2025-05-31T19:00:00-05:00") == expected
    assert total("SystemModstamp > 2025-06-01T00:00:00.000Z") == expected
    assert total("CreatedDate >= 2000-01-01T00:00:00Z AND CreatedDate < TOMORROW") == 450
    assert total("Birthdate > 1970-01-01") > 0
    quoted = soql(client, "SELECT Id FROM Contact WHERE SystemModstamp > '2025-06-01T00:00:00Z'")
    assert quoted.status_code == 400 and quoted.json()[0]["errorCode"] == "INVALID_FIELD"
    assert "must be of type dateTime and should not be enclosed in quotes" in quoted.text
    date_on_datetime = soql(client, "SELECT Id FROM Contact WHERE SystemModstamp > 2025-06-01")
    assert date_on_datetime.json()[0]["errorCode"] == "INVALID_FIELD"
    # An unencoded "+" in the URL becomes a space (as on Salesforce): a malformed query.
    raw = client.get(
        QUERY + "?q=SELECT+Id+FROM+Contact+WHERE+SystemModstamp+>+2025-06-01T02:00:00+02:00"
    )
    assert raw.status_code == 400 and raw.json()[0]["errorCode"] == "MALFORMED_QUERY"
    # Incremental pattern: WHERE SystemModstamp > X ORDER BY SystemModstamp ASC, across pages.
    pages = query_pages(
        client,
        "SELECT Id, SystemModstamp FROM Contact WHERE SystemModstamp > 2025-06-01T00:00:00Z "
        "ORDER BY SystemModstamp ASC",
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    got = [row["SystemModstamp"] for page in pages for row in page["records"]]
    assert len(got) == expected and got == sorted(got) and got[0] > cutoff


def test_order_by_limit_offset(shared) -> None:
    _, client, _ = shared
    base = "SELECT Id, LastName, Title FROM Contact"
    rows = records(client, base + " ORDER BY LastName DESC, Id ASC LIMIT 60")
    names = [row["LastName"].lower() for row in rows]
    assert len(rows) == 60 and names == sorted(names, reverse=True)
    nulls_first = records(client, base + " ORDER BY Title LIMIT 5")  # nulls first by default
    assert all(row["Title"] is None for row in nulls_first)
    nulls_last = records(client, base + " ORDER BY Title DESC NULLS LAST LIMIT 450")
    titles = [row["Title"] for row in nulls_last]
    assert titles[0] is not None and titles[-1] is None
    all_ids = [r["Id"] for r in records(client, "SELECT Id FROM Contact ORDER BY Id LIMIT 30")]
    assert all_ids == sorted(all_ids)
    page = records(client, "SELECT Id FROM Contact ORDER BY Id LIMIT 10 OFFSET 10")
    assert [row["Id"] for row in page] == all_ids[10:20]
    counted = soql(client, "SELECT COUNT() FROM Contact LIMIT 7").json()
    assert counted == {"totalSize": 7, "done": True, "records": []}
    too_far = soql(client, "SELECT Id FROM Contact OFFSET 2001")
    assert too_far.json()[0]["errorCode"] == "NUMBER_OUTSIDE_VALID_RANGE"
    long_text = soql(client, "SELECT Id FROM Contact ORDER BY Description")
    assert long_text.json()[0]["errorCode"] == "INVALID_FIELD"


def test_soql_error_bodies(shared) -> None:
    _, client, _ = shared
    selekt = soql(client, "SELEKT Id FROM Contact")
    assert selekt.status_code == 400
    assert selekt.json() == [
        {"message": "unexpected token: SELEKT", "errorCode": "MALFORMED_QUERY"}
    ]
    bacon = soql(client, "SELECT Bacon__c FROM Account LIMIT 2")
    assert bacon.json() == [{"message": BACON_MESSAGE, "errorCode": "INVALID_FIELD"}]
    relationship = soql(client, "SELECT Acount.Name FROM Contact")
    assert "Didn't understand relationship 'Acount'" in relationship.json()[0]["message"]
    unknown_type = soql(client, "SELECT Id FROM Widget")
    assert unknown_type.json()[0]["errorCode"] == "INVALID_TYPE"
    bad_id = soql(client, "SELECT Id FROM Contact WHERE Id = 'abc'")
    assert bad_id.json()[0]["errorCode"] == "INVALID_QUERY_FILTER_OPERATOR"
    mixed = soql(
        client, "SELECT Id FROM Contact WHERE Email = null AND Title = null OR Phone = null"
    )
    assert mixed.json()[0]["errorCode"] == "MALFORMED_QUERY"
    assert "unexpected token: OR" in mixed.json()[0]["message"]
    eof = soql(client, "SELECT Id FROM Contact WHERE")
    assert eof.json()[0]["message"].endswith("unexpected token: <EOF>")
    number_for_text = soql(client, "SELECT Id FROM Contact WHERE LastName = 5")
    assert "must be of type string and should be enclosed in quotes" in number_for_text.text
    not_filterable = soql(client, "SELECT Id FROM Contact WHERE Description = 'x'")
    assert not_filterable.json()[0]["errorCode"] == "INVALID_FIELD"
    assert client.get(QUERY).json()[0]["errorCode"] == "MALFORMED_QUERY"
    duplicate = soql(client, "SELECT Id, id FROM Contact")
    assert duplicate.status_code == 400
    fields_all = soql(client, "SELECT FIELDS(ALL) FROM Contact")
    assert fields_all.json()[0]["errorCode"] == "MALFORMED_QUERY"
    assert len(records(client, "SELECT FIELDS(ALL) FROM Contact LIMIT 2")[0]) > 30


def test_query_all_includes_deleted_records(org) -> None:
    emulator, client = org
    victim = records(client, "SELECT Id FROM Contact LIMIT 1")[0]["Id"]
    assert client.delete(f"{CONTACTS}/{victim}").status_code == 204
    live = records(client, "SELECT Id FROM Contact")
    assert victim not in [row["Id"] for row in live] and len(live) == 29
    everything = client.get(V + "/queryAll", params={"q": "SELECT Id, IsDeleted FROM Contact"})
    rows = everything.json()["records"]
    assert len(rows) == 30 and {"Id": victim, "IsDeleted": True} in [
        {k: row[k] for k in ("Id", "IsDeleted")} for row in rows
    ]
    assert emulator.store.count("Contact") == 29
    assert emulator.store.count("Contact", deleted=True) == 1


def test_query_all_pages_keep_deleted_records() -> None:
    emulator = SalesforceSandbox(contacts=250, companies=2, deals=0, leads=0)
    with emulator.start() as running, open_client(running) as client:
        doomed = [row["Id"] for row in records(client, "SELECT Id FROM Contact LIMIT 3")]
        for record_id in doomed:
            assert client.delete(f"{CONTACTS}/{record_id}").status_code == 204
        first = client.get(
            V + "/queryAll",
            params={"q": "SELECT Id, IsDeleted FROM Contact"},
            headers={"Sforce-Query-Options": "batchSize=200"},
        ).json()
        # The REST docs: a queryAll locator is named under /query/ (both resources serve it).
        assert "/query/" in first["nextRecordsUrl"] and first["totalSize"] == 250
        rest = client.get(first["nextRecordsUrl"].replace("/query/", "/queryAll/")).json()
        rows = first["records"] + rest["records"]
        assert rest["done"] and len(rows) == 250
        assert sorted(row["Id"] for row in rows if row["IsDeleted"]) == sorted(doomed)
        assert soql(client, "SELECT COUNT() FROM Contact").json()["totalSize"] == 247


# -- sObject writes --------------------------------------------------------------------------


def test_create_get_update_delete(org) -> None:
    emulator, client = org
    account = records(client, "SELECT Id FROM Account LIMIT 1")[0]["Id"]
    created = client.post(
        CONTACTS + "/",
        json={"LastName": "Doe", "email": "jane.doe@example.com", "AccountId": account[:15]},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body == {"id": body["id"], "success": True, "errors": []}
    assert created.headers["location"] == f"{CONTACTS}/{body['id']}"
    assert created.headers["sforce-limit-info"].startswith("api-usage=")
    record_id = body["id"]
    full = client.get(f"{CONTACTS}/{record_id}").json()
    assert full["Email"] == "jane.doe@example.com" and full["AccountId"] == account
    assert full["Name"] == "Doe" and full["IsDeleted"] is False
    assert full["MailingAddress"]["city"] is None and DATETIME.fullmatch(full["CreatedDate"])
    some = client.get(f"{CONTACTS}/{record_id}", params={"fields": "LastName,Email"}).json()
    assert list(some) == ["attributes", "LastName", "Email", "Id"]
    emulator.advance_time(3600)
    before = emulator.now()
    patched = client.patch(f"{CONTACTS}/{record_id}", json={"FirstName": "Jane", "Phone": None})
    assert patched.status_code == 204 and patched.content == b""
    assert "content-type" not in patched.headers
    after = emulator.store.get("Contact", record_id)
    assert after["Name"] == "Jane Doe" and after["LastModifiedDate"] > full["LastModifiedDate"]
    # Stamped when patched (the emulator's clock goes on in whole seconds meanwhile).
    assert after["SystemModstamp"] == after["LastModifiedDate"]
    assert before <= after["LastModifiedDate"] <= emulator.now()
    assert client.delete(f"{CONTACTS}/{record_id}").status_code == 204
    again = client.delete(f"{CONTACTS}/{record_id}")
    assert again.status_code == 404 and again.json() == ENTITY_DELETED
    assert client.get(f"{CONTACTS}/{record_id}").json() == ENTITY_DELETED
    assert client.patch(f"{CONTACTS}/{record_id}", json={}).status_code == 404
    never_existed = client.get(f"{CONTACTS}/{normalize_id('003Sb0000000001')}")
    assert never_existed.status_code == 404 and never_existed.json() == NOT_FOUND


def test_write_validation_errors(org) -> None:
    (
        _,
        client,
    ) = org

    def post(sobject: str, body: dict) -> list[dict]:
        response = client.post(f"{V}/sobjects/{sobject}/", json=body)
        assert response.status_code == 400, response.text
        return response.json()

    assert post("Contact", {"Email": "a@b.co"}) == [
        {"message": "Required fields are missing: [LastName]",
         "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName"]}
    ]  # fmt: skip
    assert post("Opportunity", {"Name": "x"})[0]["fields"] == ["StageName", "CloseDate"]
    assert post("Lead", {"LastName": "x"})[0]["fields"] == ["Company"]
    assert post("Event", {"Subject": "x"})[0]["fields"] == ["StartDateTime", "DurationInMinutes"]
    assert post("Account", {"Name": "x", "FavoritePet__c": "dog"}) == [
        {"message": "No such column 'FavoritePet__c' on sobject of type Account",
         "errorCode": "INVALID_FIELD"}
    ]  # fmt: skip
    assert post("Task", {"Priority": "Urgent"}) == [
        {"message": "Priority: bad value for restricted picklist field: Urgent",
         "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "fields": ["Priority"]}
    ]  # fmt: skip
    for body in ({"Status": "Done"}, {"CallType": "Sideways"}):
        assert post("Task", body)[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    stage = post("Opportunity", {"Name": "x", "StageName": "Won!", "CloseDate": "2026-01-01"})
    assert stage[0]["fields"] == ["StageName"]
    assert (
        post("Contact", {"LastName": "x", "CreatedDate": "2020-01-01T00:00:00Z"})[0]["errorCode"]
        == "INVALID_FIELD_FOR_INSERT_UPDATE"
    )
    assert post("Contact", {"LastName": "x", "Email": "not-an-email"})[0]["errorCode"] == (
        "INVALID_EMAIL_ADDRESS"
    )
    assert post("Contact", {"LastName": "x", "AccountId": "nope"})[0]["errorCode"] == "MALFORMED_ID"
    ghost = post("Contact", {"LastName": "x", "AccountId": "001Sb0000000001"})
    assert ghost[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"
    assert (
        post("Opportunity", {"Name": "x", "StageName": "Prospecting", "CloseDate": "soon"})[0][
            "errorCode"
        ]
        == "JSON_PARSER_ERROR"
    )
    assert post("Contact", {"LastName": "x" * 81})[0]["errorCode"] == "STRING_TOO_LONG"
    malformed = client.patch(f"{CONTACTS}/a00B000000FSjVUIB1", json={"LastName": "x"})
    assert malformed.json() == [  # error_400_malformed_id.json
        {"message": "Record ID: id value of incorrect type: a00B000000FSjVUIB1",
         "errorCode": "MALFORMED_ID", "fields": ["Id"]}
    ]  # fmt: skip
    unknown = client.post(f"{V}/sobjects/PlayingCard__c", json={"Name": "x"})
    assert unknown.status_code == 404 and unknown.json() == NOT_FOUND
    assert client.put(f"{CONTACTS}/003Sb000000000A", json={}).status_code == 405
    assert client.post(CONTACTS, content=b"{not json").json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_activities_and_derived_fields(org) -> None:
    emulator, client = org
    contact = records(client, "SELECT Id FROM Contact LIMIT 1")[0]["Id"]
    call = client.post(
        f"{V}/sobjects/Task",
        json={
            "Subject": "Call",
            "TaskSubtype": "Call",
            "CallType": "Outbound",
            "CallDurationInSeconds": 95,
            "CallDisposition": "Connected",
            "Status": "Completed",
            "WhoId": contact,
            "ActivityDate": "2026-03-12",
        },
    )
    assert call.status_code == 201, call.text
    task = emulator.store.get("Task", call.json()["id"])
    assert task["IsClosed"] is True and task["Priority"] == "Normal"
    assert task["CompletedDateTime"] == task["CreatedDate"]
    event = client.post(
        f"{V}/sobjects/Event",
        json={"Subject": "Demo", "StartDateTime": "2026-03-12T10:00:00+01:00",
              "DurationInMinutes": 45, "WhoId": contact},
    )  # fmt: skip
    assert event.status_code == 201, event.text
    stored = emulator.store.get("Event", event.json()["id"])
    assert stored["StartDateTime"] == "2026-03-12T09:00:00.000+0000"
    assert stored["EndDateTime"] == "2026-03-12T09:45:00.000+0000"
    assert stored["ActivityDate"] == "2026-03-12"
    wrong_who = client.post(
        f"{V}/sobjects/Task",
        json={"Subject": "x", "WhoId": records(client, "SELECT Id FROM Account LIMIT 1")[0]["Id"]},
    )
    assert wrong_who.json()[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    deal = client.post(
        f"{V}/sobjects/Opportunity",
        json={
            "Name": "Big",
            "StageName": "Prospecting",
            "CloseDate": "2026-12-31",
            "Amount": "1000",
        },
    )
    deal_id = deal.json()["id"]
    assert emulator.store.get("Opportunity", deal_id)["Probability"] == 10.0
    client.patch(f"{V}/sobjects/Opportunity/{deal_id}", json={"StageName": "Closed Won"})
    won = emulator.store.get("Opportunity", deal_id)
    assert (won["IsWon"], won["IsClosed"], won["Probability"], won["Amount"]) == (
        True,
        True,
        100.0,
        1000.0,
    )


def test_upsert_by_email_and_collections(org) -> None:
    emulator, client = org
    url = f"{CONTACTS}/Email/new.person%40example.com"
    created = client.patch(url, json={"LastName": "Person"})
    assert created.status_code == 201 and created.json()["created"] is True
    updated = client.patch(url, json={"FirstName": "New"})
    assert updated.status_code == 200
    assert updated.json() == {
        "id": created.json()["id"],
        "success": True,
        "errors": [],
        "created": False,
    }
    assert client.get(url).json()["Name"] == "New Person"
    collection = client.post(
        V + "/composite/sobjects",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "Name": "Collected"},
                {"attributes": {"type": "Contact"}, "Email": "no-last-name@example.com"},
            ],
        },
    ).json()
    assert collection[0]["success"] is True and collection[0]["id"].startswith("001")
    assert collection[1] == {
        "success": False,
        "errors": [{"statusCode": "REQUIRED_FIELD_MISSING",
                    "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}],
    }  # fmt: skip
    before = emulator.store.count("Account")
    rolled_back = client.post(
        V + "/composite/sobjects",
        json={"allOrNone": True, "records": [
            {"attributes": {"type": "Account"}, "Name": "Kept?"},
            {"attributes": {"type": "Account"}},
        ]},
    ).json()  # fmt: skip
    assert [r["success"] for r in rolled_back] == [False, False]
    assert emulator.store.count("Account") == before


def test_describe_and_limits(shared) -> None:
    _, client, _ = shared
    describe = client.get(V + "/sobjects/Task/describe").json()
    fields = {field["name"]: field for field in describe["fields"]}
    assert describe["keyPrefix"] == "00T" and fields["Priority"]["restrictedPicklist"] is True
    assert [p["value"] for p in fields["CallType"]["picklistValues"]] == [
        "Inbound",
        "Outbound",
        "Internal",
    ]
    assert fields["WhoId"]["referenceTo"] == ["Contact", "Lead"]
    names = [o["name"] for o in client.get(V + "/sobjects").json()["sobjects"]]
    assert {"Contact", "Account", "Opportunity", "Lead", "Task", "Event"} <= set(names)
    limits = client.get(V + "/limits").json()
    assert set(limits["DailyApiRequests"]) == {"Max", "Remaining"}


# -- limits and faults -----------------------------------------------------------------------


def test_limit_info_header_and_403_when_the_allocation_is_spent() -> None:
    emulator = SalesforceSandbox(contacts=3, companies=1, deals=0, daily_limit=5)
    with emulator.start() as running, open_client(running) as client:
        usage = []
        for _ in range(4):
            response = soql(client, "SELECT Id FROM Contact")
            assert response.status_code == 200
            usage.append(response.headers["Sforce-Limit-Info"])
        assert usage == [f"api-usage={n}/5" for n in range(1, 5)]
        limits = client.get(V + "/limits").json()["DailyApiRequests"]
        assert limits == {"Max": 5, "Remaining": 0}
        spent = soql(client, "SELECT Id FROM Contact")
        assert spent.status_code == 403 and spent.json() == LIMIT_EXCEEDED  # not 429
        assert spent.headers["Sforce-Limit-Info"] == "api-usage=5/5"
        assert client.get("/services/data").status_code == 200  # not counted
        grant = refresh(client, emulator, emulator.issue_token().refresh_token)
        assert grant.status_code == 200  # OAuth is not an API call
        emulator.advance_time(86_400)  # rolling 24 hours
        assert (
            soql(client, "SELECT Id FROM Contact").headers["Sforce-Limit-Info"] == "api-usage=1/5"
        )


def test_fault_injection(org) -> None:
    emulator, client = org
    before = emulator.store.count("Contact")
    emulator.app.fail_next(2, 503)
    failed = client.post(CONTACTS, json={"LastName": "Retry"})
    assert failed.status_code == 503 and failed.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert soql(client, "SELECT Id FROM Contact").status_code == 503
    assert soql(client, "SELECT Id FROM Contact").status_code == 200
    assert emulator.store.count("Contact") == before  # the faulted POST wrote nothing
    emulator.app.fail_next(1, 401)
    assert soql(client, "SELECT Id FROM Contact").json() == SESSION_EXPIRED
    emulator.app.fail_next(1, 500)
    assert client.post("/services/oauth2/token", data={"grant_type": "x"}).status_code == 400
    assert soql(client, "SELECT Id FROM Contact").json()[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    emulator.app.drop_next(1, after_handling=True)  # the write lands, the reply is lost
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(CONTACTS, json={"LastName": "Ambiguous"})
    assert emulator.store.count("Contact") == before + 1
    assert emulator.app.stats.count("sobject.create") == 2


def test_error_rate_is_deterministic() -> None:
    def statuses() -> list[int]:
        emulator = SalesforceSandbox(seed=3, contacts=2, companies=1, deals=0, error_rate=0.3)
        with emulator.start() as running, open_client(running) as client:
            return [soql(client, "SELECT Id FROM Contact").status_code for _ in range(30)]

    first = statuses()
    assert first == statuses() and 200 in first and set(first) - {200} <= {500, 503}


def test_seed_data_is_deterministic() -> None:
    def snapshot(seed: int) -> list[bytes]:
        emulator = SalesforceSandbox(
            seed=seed, contacts=60, companies=5, deals=8, tasks=6, events=3
        )
        with emulator.start() as running, open_client(running) as client:
            return [
                soql(client, f"SELECT FIELDS(ALL) FROM {name} LIMIT 200").content
                for name in ("Contact", "Account", "Opportunity", "Lead", "Task", "Event")
            ]

    assert snapshot(7) == snapshot(7)
    assert snapshot(7) != snapshot(8)
