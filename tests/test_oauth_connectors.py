"""The OAuth lifecycle of every connector against its emulator: the authorization URL its YAML
describes, the code exchange with its client-authentication rule, the token response's
settings reaching the API base, a token expiring mid-sync, rotation, and revocation."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from engine.engine import PROJECT_ROOT
from engine.store import SyncRun
from sandbox import EMULATORS
from sandbox.demo import follow_without_browser

CONNECTORS = PROJECT_ROOT / "connectors"

# connector -> (scope separator, PKCE, the setting that becomes the API host, small pages)
EXPECTED = {
    "hubspot": (" ", False, None, {}),
    "salesforce": (" ", True, "instance_url", {"batch_size": 200}),
    "pipedrive": (None, False, "api_domain", {"page_size": 100}),
    "zoho": (",", False, "api_domain", {}),
}
# The scopes the vendor requires for what the connector does (CONTRACTS 1.1, 2.1, 4.1): HubSpot
# per object (tasks, calls and notes under the contacts scopes); Salesforce `api`, plus
# `refresh_token` for a refresh token; Zoho every CRM module and, for search, securesearch.
# Pipedrive sets scopes on the app, not in the URL.
SCOPES = {
    "hubspot": {"crm.objects.contacts.read", "crm.objects.contacts.write",
                "crm.objects.companies.read", "crm.objects.companies.write",
                "crm.objects.deals.read", "crm.objects.deals.write",
                # The properties API (the fields a sync selects): developers.hubspot.com,
                # "Get all contact properties" requires crm.schemas.contacts.read.
                "crm.schemas.contacts.read", "crm.schemas.companies.read",
                "crm.schemas.deals.read"},
    "salesforce": {"api", "refresh_token"},
    "pipedrive": None,
    "zoho": {"ZohoCRM.modules.ALL", "ZohoSearch.securesearch.READ"},
}
CONTACTS = 1000
# Where each vendor's token endpoint lives (CONTRACTS 1.1, 2.1, 3.1, 4.1), on the emulator's host.
TOKEN_PATHS = {"hubspot": "/oauth/v1/token", "salesforce": "/services/oauth2/token",
               "pipedrive": "/oauth/token", "zoho": "/oauth/v2/token"}
# What a refresh with a revoked refresh token gets (CONTRACTS 1.1, 2.1, 3.1, 4.1).
REVOKED = {"hubspot": (400, "status", "BAD_REFRESH_TOKEN"),
           "salesforce": (400, "error", "invalid_grant"),
           "pipedrive": (400, "error", "invalid_grant"),
           "zoho": (200, "error", "invalid_code")}  # Zoho's token errors come back as 200


class ExpireAfterFirstPage:
    """Progress that expires every token at the emulator once the first page is read."""

    def __init__(self, emulator):
        self.emulator = emulator

    def stream_started(self, run: SyncRun) -> None: pass
    def stream_finished(self, run: SyncRun) -> None: pass

    def page_read(self, run: SyncRun) -> None:
        if run.pages == 1:
            self.emulator.expire_all_tokens()


@pytest.fixture(params=sorted(EXPECTED))
def vendor(request):
    name = request.param
    # At least five pages everywhere: when the first is read, the second may already be
    # fetched and the third on its way (pages are read one ahead), so only the fourth and
    # later are sure to meet the expired token.
    options = {"contacts": CONTACTS, "companies": 5, "deals": 5}
    if name == "salesforce":
        options["rotate_refresh_tokens"] = True
    emulator = EMULATORS[name](**options)
    with emulator.start() as running:
        yield name, emulator, running


def connect(engine, name, emulator, running, seen):
    def browser(url: str) -> None:
        seen.append(url)
        follow_without_browser(url)

    return engine.connect(name, f"{name}-oauth", client_id=emulator.client_id,
                          client_secret=emulator.client_secret,
                          config=emulator.connection_config(running.url),
                          redirect_uri="http://127.0.0.1:0/callback", open_url=browser,
                          timeout=10)


def test_connect_refresh_mid_sync_and_revoke(make_engine, vendor):
    name, emulator, running = vendor
    separator, pkce, host_setting, small_pages = EXPECTED[name]
    engine = make_engine(CONNECTORS)
    seen: list[str] = []
    conn = connect(engine, name, emulator, running, seen)

    query = {k: v[0] for k, v in parse_qs(urlsplit(seen[0]).query).items()}
    assert len(query["state"]) >= 32 and query["client_id"] == emulator.client_id
    assert query["response_type"] == "code"
    if separator is None:
        assert "scope" not in query  # scopes are set on the app, not in the URL
    else:
        scopes = query["scope"].split(separator)
        assert SCOPES[name] <= set(scopes) and all(s and s.strip() == s for s in scopes)
    assert ("code_challenge" in query) is pkce
    if pkce:
        assert query["code_challenge_method"] == "S256"

    if host_setting:  # the token response decides where the API lives
        assert conn.credentials.settings[host_setting] == running.url
        session, _, _ = engine.session(name, conn.name)
        assert session.base_url.startswith(running.url)

    before = engine.credentials.load(conn.name).credentials
    [run] = engine.sync(name, conn.name, streams=["contacts"], config=small_pages,
                        progress=ExpireAfterFirstPage(emulator))
    assert run.status == "succeeded", run.error
    assert run.records == CONTACTS and run.pages >= 5
    after = engine.credentials.load(conn.name).credentials
    assert after.access_token != before.access_token  # refreshed and stored
    if name in ("pipedrive", "salesforce"):  # both rotate here: the new one must be kept
        assert after.refresh_token != before.refresh_token
    if name == "zoho":  # Zoho never returns a new refresh token: the old one stays
        assert after.refresh_token == before.refresh_token

    assert engine.disconnect(name, conn.name) is True
    assert engine.credentials.load(conn.name) is None
    grant = {"grant_type": "refresh_token", "refresh_token": after.refresh_token,
             "client_id": emulator.client_id, "client_secret": emulator.client_secret}
    auth = (emulator.client_id, emulator.client_secret) if name == "pipedrive" else None
    response = httpx.post(running.url + TOKEN_PATHS[name], data=grant, auth=auth)
    status, key, code = REVOKED[name]
    assert response.status_code == status and response.json()[key] == code  # revoked
    assert "access_token" not in response.json()
