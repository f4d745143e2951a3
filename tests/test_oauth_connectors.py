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
    options = {"contacts": 450, "companies": 5, "deals": 5}
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
    method = engine.connector(name).auth["oauth2"]
    assert len(query["state"]) >= 32 and query["client_id"] == emulator.client_id
    if separator is None:
        assert "scope" not in query  # scopes are set on the app, not in the URL
    else:
        assert query["scope"] == separator.join(method.scopes)
    assert ("code_challenge" in query) is pkce

    if host_setting:  # the token response decides where the API lives
        assert conn.credentials.settings[host_setting] == running.url
        session, _, _ = engine.session(name, conn.name)
        assert session.base_url.startswith(running.url)

    before = engine.credentials.load(conn.name).credentials
    [run] = engine.sync(name, conn.name, streams=["contacts"], config=small_pages,
                        progress=ExpireAfterFirstPage(emulator))
    assert run.status == "succeeded", run.error
    assert run.records == 450 and run.pages >= 3
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
    token_url = method.token_url.render(engine.connector(name).template_context(
        {**{k: s.default for k, s in engine.connector(name).config.items()},
         **emulator.connection_config(running.url)}, after.settings))
    auth = (emulator.client_id, emulator.client_secret) if name == "pipedrive" else None
    response = httpx.post(token_url, data=grant, auth=auth)
    body = response.json() if response.content else {}
    assert response.status_code >= 400 or "access_token" not in body  # revoked
