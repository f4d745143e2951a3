"""The OAuth 2.0 lifecycle: connect through the loopback callback, store, refresh across
processes, revoke. Against a vendor-neutral OAuth server and the HubSpot emulator."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from engine.auth import Credentials
from engine.errors import CrmError
from engine.oauth import (
    AuthorizationRequest,
    LoopbackCallback,
    authorization_request,
    exchange_code,
    listen_port,
    parse_callback,
    revoke,
)
from engine.templates import Template
from sandbox.demo import follow_without_browser, run_demo
from sandbox.hubspot import HubSpotSandbox
from sandbox.kit import App, Request, Response
from tests.support import TEST_MAPPING, cursor_page, items, serving, write_specs

CONNECTOR = """
name: acme
title: Acme
base_url: "{{ credentials.instance_url }}/api"
config:
  login_url: {default: "https://login.acme.invalid"}
auth:
  oauth:
    type: oauth2
    authorize_url: "{{ config.login_url }}/authorize"
    token_url: "{{ config.login_url }}/token"
    revoke: {method: POST, url: "{{ config.login_url }}/revoke", form: {token: "{{ token }}"}}
    scopes: [read, write, offline]
    scope_separator: ","
    pkce: true
    client_auth: basic
    authorize_params: {access_type: offline}
    token_lifetime_seconds: 600
    settings: {instance_url: instance_url}
    callback_settings: {region: location}
    apply: {header: Authorization, value: "Bearer {{ token }}"}
streams:
  items:
    model: contact
    request: {method: GET, path: /items}
    records: items
    paginate: {style: cursor, cursor: next, param: after}
"""


class Vendor:
    """An OAuth provider with PKCE, Basic client auth, rotating single-use refresh tokens and
    an API on a per-tenant host given in the token response (like `instance_url`)."""

    def __init__(self) -> None:
        self.app = App()
        self.codes: dict[str, dict[str, str]] = {}
        self.refresh_tokens: set[str] = set()
        self.access_tokens: set[str] = set()
        self.revoked: list[str] = []
        self.token_requests: list[dict[str, str]] = []
        self.token_queries: list[dict[str, str]] = []  # the token URL's query
        self.replayed = 0
        self.counter = 0
        self.revoke_status = 200
        self.instance_url: str | None = None  # the API host tokens name; None: this server
        self.lock = threading.Lock()
        self.records = items(30)
        self.app.add_route("GET", "/authorize", self.authorize)
        self.app.add_route("POST", "/token", self.token)
        self.app.add_route("POST", "/revoke", self.revoke)
        self.app.add_route("GET", "/api/items", self.items)

    def authorize(self, request: Request) -> Response:
        query = {k: v[0] for k, v in request.query.items()}
        code = f"code-{len(self.codes)}"
        self.codes[code] = query
        target = query["redirect_uri"] + "?" + urlencode(
            {"code": code, "state": query["state"], "location": "eu"})
        return Response(302, None, headers={"Location": target})

    def _issue(self, rotate_from: str | None = None) -> dict[str, str]:
        self.counter += 1
        access, refresh = f"acc-{self.counter}", f"ref-{self.counter}"
        self.access_tokens = {access}  # older access tokens stop working
        if rotate_from:
            self.refresh_tokens.discard(rotate_from)
        self.refresh_tokens.add(refresh)
        return {"access_token": access, "refresh_token": refresh, "expires_in": 600,
                "instance_url": self.instance_url or self.url, "token_type": "Bearer"}

    def token(self, request: Request) -> Response:
        form = request.form()
        basic = request.headers.get("authorization", "")
        self.token_requests.append({**form, "authorization": basic})
        self.token_queries.append({k: v[0] for k, v in request.query.items()})
        if basic != "Basic " + base64.b64encode(b"cid:the-client-secret").decode():
            return Response(401, {"error": "invalid_client"})
        with self.lock:
            if form["grant_type"] == "authorization_code":
                sent = self.codes.pop(form.get("code", ""), None)
                challenge = base64.urlsafe_b64encode(hashlib.sha256(
                    form.get("code_verifier", "").encode()).digest()).rstrip(b"=").decode()
                if sent is None or sent["code_challenge"] != challenge:
                    return Response(400, {"error": "invalid_grant"})
                return Response(200, self._issue())
            token = form.get("refresh_token", "")
            if token not in self.refresh_tokens:
                self.replayed += 1
                return Response(400, {"error": "invalid_grant",
                                      "error_description": "refresh token reused"})
            return Response(200, self._issue(rotate_from=token))

    def revoke(self, request: Request) -> Response:
        token = request.form().get("token", "")
        if self.revoke_status != 200:
            return Response(self.revoke_status, {"error": "temporarily_unavailable"})
        self.revoked.append(token)
        self.refresh_tokens.discard(token)
        return Response(200, {})

    def items(self, request: Request) -> Response:
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in \
                self.access_tokens:
            return Response(401, {"error": "expired"})
        return cursor_page(self.records, request)


@pytest.fixture
def vendor():
    yield from serving(Vendor())


@pytest.fixture
def engine(tmp_path, make_engine):
    return make_engine(write_specs(tmp_path, CONNECTOR, TEST_MAPPING))


def connect(engine, vendor, open_url=follow_without_browser, name="acme"):
    return engine.connect("acme", name, client_id="cid", client_secret="the-client-secret",
                          config={"login_url": vendor.url}, open_url=open_url,
                          redirect_uri="http://127.0.0.1:0/callback", timeout=10)


def test_authorization_url_has_state_pkce_scopes_and_extra_params(engine, vendor):
    seen: list[str] = []

    def browser(url: str) -> None:
        seen.append(url)
        follow_without_browser(url)

    connect(engine, vendor, browser)
    query = {k: v[0] for k, v in parse_qs(urlsplit(seen[0]).query).items()}
    assert query["scope"] == "read,write,offline"  # the YAML's separator
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and query["access_type"] == "offline"
    assert query["redirect_uri"].startswith("http://127.0.0.1:")


def test_code_exchange_stores_credentials_with_settings_and_mode_0600(engine, vendor, tmp_path):
    conn = connect(engine, vendor)
    exchange = vendor.token_requests[0]
    assert exchange["grant_type"] == "authorization_code" and "client_secret" not in exchange
    assert conn.credentials.settings == {"instance_url": vendor.url, "region": "eu"}
    path = tmp_path / "home" / "connections" / "acme.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["credentials"]["refresh_token"] == "ref-1"
    # The token response's instance_url is the API host the sync talks to.
    [run] = engine.sync("acme")
    assert run.status == "succeeded" and run.records == 30


def test_callback_with_the_wrong_state_is_rejected_and_nothing_stored(engine, vendor):
    def forger(url: str) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        httpx.get(query["redirect_uri"] + "?code=stolen&state=guessed")

    with pytest.raises(CrmError, match="state does not match"):
        connect(engine, vendor, forger)
    assert engine.credentials.load("acme") is None
    assert vendor.token_requests == []


def test_parse_callback_reports_a_refusal():
    request = AuthorizationRequest("u", "http://127.0.0.1/cb", "s" * 32)
    with pytest.raises(CrmError, match="access_denied"):
        parse_callback(request, f"/cb?state={'s' * 32}&error=access_denied")


def test_rotated_refresh_token_is_persisted(engine, vendor, clock):
    connect(engine, vendor)
    clock.advance(600)  # expired: refreshed before the first request
    [run] = engine.sync("acme")
    assert run.status == "succeeded"
    stored = engine.credentials.load("acme").credentials
    assert (stored.access_token, stored.refresh_token) == ("acc-2", "ref-2")


def test_revoke_on_disconnect(engine, vendor):
    connect(engine, vendor)
    assert engine.disconnect("acme") is True
    assert vendor.revoked == ["ref-1"] and engine.credentials.load("acme") is None


def test_a_refused_revocation_keeps_the_connection_so_disconnect_can_be_run_again(engine,
                                                                                   vendor):
    connect(engine, vendor)
    vendor.revoke_status = 503
    with pytest.raises(CrmError) as info:
        engine.disconnect("acme")
    assert (info.value.connector, info.value.operation, info.value.status) == (
        "acme", "oauth.revoke", 503)
    assert engine.credentials.load("acme") is not None
    vendor.revoke_status = 200
    assert engine.disconnect("acme") is True
    assert vendor.revoked == ["ref-1"] and engine.credentials.load("acme") is None


CONCURRENT_SYNC = textwrap.dedent("""
    import sys
    from engine import Engine
    from engine.clock import FakeClock
    clock = FakeClock(float(sys.argv[3]))
    with Engine(db=sys.argv[1], connectors_dir=sys.argv[2], home=sys.argv[4], clock=clock) as e:
        [run] = e.sync("acme")
    print(run.status, run.records, run.error)
""")


def test_two_processes_refreshing_at_once_do_not_lose_the_rotated_token(
        engine, vendor, tmp_path, clock):
    connect(engine, vendor)
    later = clock.wall() + 600  # both processes see an expired token at start
    script = tmp_path / "sync.py"
    script.write_text(CONCURRENT_SYNC)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / f"p{i}.duckdb"),
         str(tmp_path / "connectors"), str(later), str(tmp_path / "home")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [o[0].split()[:2] for o in outputs] == [["succeeded", "30"]] * 2, outputs
    assert vendor.replayed == 0  # nobody spent a rotated refresh token twice
    grants = [r for r in vendor.token_requests if r["grant_type"] == "refresh_token"]
    assert len(grants) == 1  # the second process found the first one's fresh token
    assert engine.credentials.load("acme").credentials.refresh_token in vendor.refresh_tokens


def test_hubspot_revoke_kills_the_refresh_token(make_engine, clock):
    emulator = HubSpotSandbox(contacts=20, companies=5, deals=5)
    with emulator.start() as running:
        engine = make_engine(Path(__file__).resolve().parent.parent / "connectors")
        from sandbox.demo import connect_oauth

        conn = connect_oauth(engine, "hubspot", emulator, running.url, "hs")
        refresh = conn.credentials.refresh_token
        assert engine.disconnect("hubspot", "hs") is True
        response = httpx.post(running.url + "/oauth/v1/token", data={
            "grant_type": "refresh_token", "refresh_token": refresh,
            "client_id": emulator.client_id, "client_secret": emulator.client_secret})
        assert response.status_code == 400
        assert response.json()["status"] == "BAD_REFRESH_TOKEN"


def test_no_secret_in_logs_errors_or_the_database_after_a_demo(tmp_path, caplog, capsys,
                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "out" / "demo.duckdb"
    assert run_demo(str(db), contacts=300) == 0
    out = capsys.readouterr()
    secrets = {"client secret": HubSpotSandbox().client_secret}
    for path in (tmp_path / "out" / "demo-home" / "connections").glob("*.json"):
        creds = json.loads(path.read_text())["credentials"]
        secrets["access token"] = creds["access_token"]
        secrets["refresh token"] = creds["refresh_token"]
    data = db.read_bytes()
    for what, value in secrets.items():
        assert value and len(value) > 8
        assert value.encode() not in data, f"{what} in the DuckDB file"
        assert value not in caplog.text and value not in out.out and value not in out.err, what


# -- the code exchange and revocation, against answers given in-process -------------------------


def answered_by(reply: httpx.Response, seen: list[httpx.Request]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return reply
    return httpx.Client(transport=httpx.MockTransport(handler))


def acme_oauth(engine):
    connector = engine.connector("acme")
    context = {"config": {"login_url": "http://127.0.0.1:9"}, "credentials": {}}
    return connector, connector.auth["oauth"], context


EXCHANGE_FAILURES = [
    (httpx.Response(400, json={"error": "invalid_grant"}), "invalid_grant",
     "code exchange failed: invalid_grant"),
    # HubSpot names its errors in `status` (CONTRACTS 1.1).
    (httpx.Response(400, json={"status": "BAD_AUTH_CODE", "message": "missing or invalid"}),
     "BAD_AUTH_CODE", "code exchange failed: BAD_AUTH_CODE"),
    # Zoho answers token errors with HTTP 200 and no access_token (CONTRACTS 4.1).
    (httpx.Response(200, json={"error": "invalid_code"}), "invalid_code",
     "code exchange failed: invalid_code"),
    (httpx.Response(400, json={"access_token": "a-bogus"}), None, "code exchange failed: 400"),
    (httpx.Response(502, html="<html><title>502 Bad Gateway</title>x</html>"), None,
     "code exchange failed: 502"),
    (httpx.Response(503), None, "code exchange failed: 503"),
    (httpx.Response(200, json=["not", "an", "object"]), None, "code exchange failed: 200"),
]


@pytest.mark.parametrize(("reply", "code", "message"), EXCHANGE_FAILURES)
def test_a_failed_code_exchange_is_a_crm_error_naming_the_vendors_reason(engine, clock, reply,
                                                                        code, message):
    connector, method, context = acme_oauth(engine)
    request = AuthorizationRequest("u", "http://127.0.0.1:0/callback", "s" * 32, "v" * 43)
    seen: list[httpx.Request] = []
    with answered_by(reply, seen) as client, pytest.raises(CrmError) as info:
        exchange_code(connector, method, context, client=client, client_id="cid",
                      client_secret="exchange-secret", code="c-1", request=request, clock=clock)
    error = info.value
    assert (error.connector, error.operation, error.code, error.status, error.message) == (
        "acme", "oauth.exchange", code, reply.status_code, message)
    # The body as it came: its JSON, an excerpt of a page that is not JSON, or nothing.
    assert error.raw_body == (reply.json() if reply.content[:1] in (b"{", b"[") else
                              "502 Bad Gateway" if reply.content else None)
    [sent] = seen
    assert sent.headers["accept"] == "application/json"
    assert parse_qs(sent.content.decode()) == {
        "grant_type": ["authorization_code"], "code": ["c-1"],
        "redirect_uri": ["http://127.0.0.1:0/callback"], "code_verifier": ["v" * 43]}


def test_a_client_secret_echoed_by_a_failing_token_endpoint_is_redacted(engine, clock):
    connector, method, context = acme_oauth(engine)
    request = AuthorizationRequest("u", "http://127.0.0.1:0/callback", "s" * 32)
    basic = "Basic " + base64.b64encode(b"cid:echo-secret-7f3a").decode()  # client_auth: basic
    echo = httpx.Response(401, json={"error": "bad client echo-secret-7f3a",
                                     "client_secret": "echo-secret-7f3a", "sent": basic})
    with answered_by(echo, []) as client, pytest.raises(CrmError) as info:
        exchange_code(connector, method, context, client=client, client_id="cid",
                      client_secret="echo-secret-7f3a", code="c-1", request=request, clock=clock)
    assert info.value.message == "code exchange failed: bad client ***"
    assert info.value.raw_body == {"error": "bad client ***", "client_secret": "***",
                                   "sent": "Basic ***"}


def test_revoke_sends_the_refresh_token_else_the_access_token(engine):
    connector, method, context = acme_oauth(engine)
    for credentials, token in [
            (Credentials(access_token="acc-9", refresh_token="ref-9", client_id="cid",
                         client_secret="the-client-secret"), "ref-9"),
            (Credentials(access_token="acc-9", client_id="cid",
                         client_secret="the-client-secret"), "acc-9")]:
        seen: list[httpx.Request] = []
        with answered_by(httpx.Response(200, json={}), seen) as client:
            assert revoke(connector, method, context, credentials, client=client) is True
        [sent] = seen
        assert (sent.method, str(sent.url)) == ("POST", "http://127.0.0.1:9/revoke")
        assert parse_qs(sent.content.decode()) == {"token": [token]}
        assert sent.headers["accept"] == "application/json"
        assert sent.headers["authorization"] == "Basic " + base64.b64encode(
            b"cid:the-client-secret").decode()


def test_revoke_with_the_client_in_the_form_still_asks_for_json(engine):
    connector, method, context = acme_oauth(engine)
    method = dataclasses.replace(method, client_auth="body")
    seen: list[httpx.Request] = []
    with answered_by(httpx.Response(200, json={}), seen) as client:
        revoke(connector, method, context, Credentials(refresh_token="ref-9"), client=client)
    [sent] = seen
    assert sent.headers["accept"] == "application/json" and "authorization" not in sent.headers
    assert parse_qs(sent.content.decode()) == {"token": ["ref-9"]}


def test_a_refused_revocation_is_a_crm_error(engine):
    connector, method, context = acme_oauth(engine)
    credentials = Credentials(access_token="acc-9", refresh_token="ref-9")
    with answered_by(httpx.Response(400, json={"error": "unsupported_token_type"}),
                     []) as client, pytest.raises(CrmError) as info:
        revoke(connector, method, context, credentials, client=client)
    error = info.value
    assert (error.connector, error.operation, error.status, error.message) == (
        "acme", "oauth.revoke", 400, "revocation failed with HTTP 400")


def test_credentials_without_a_token_have_nothing_to_revoke(engine):
    connector, method, context = acme_oauth(engine)
    seen: list[httpx.Request] = []
    with answered_by(httpx.Response(200, json={}), seen) as client:
        assert revoke(connector, method, context, Credentials(client_id="cid"),
                      client=client) is False
    assert seen == []


def test_a_vendor_without_revocation_revokes_nothing(engine):
    connector, method, context = acme_oauth(engine)
    method = dataclasses.replace(method, revoke=None)
    seen: list[httpx.Request] = []
    with answered_by(httpx.Response(200, json={}), seen) as client:
        assert revoke(connector, method, context, Credentials(refresh_token="r"),
                      client=client) is False
    assert seen == []


def test_each_authorization_request_has_fresh_state_and_a_pkce_verifier(engine):
    """`state`: 24 random bytes, 32 URL-safe characters; the PKCE verifier: 48 random bytes,
    64 characters (RFC 7636 4.1 allows 43 to 128), sent as its S256 challenge."""
    _, method, context = acme_oauth(engine)
    requests = [authorization_request(method, context, client_id="cid",
                                      redirect_uri="http://127.0.0.1:8765/callback")
                for _ in range(2)]
    for request in requests:
        assert (len(request.state), len(request.code_verifier)) == (32, 64)
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        digest = hashlib.sha256(request.code_verifier.encode()).digest()
        assert query == {
            "response_type": "code", "client_id": "cid", "state": request.state,
            "redirect_uri": "http://127.0.0.1:8765/callback", "scope": "read,write,offline",
            "access_type": "offline", "code_challenge_method": "S256",
            "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode()}
    assert requests[0].state != requests[1].state
    assert requests[0].code_verifier != requests[1].code_verifier


def test_scopes_are_separated_by_percent_20_and_a_query_in_the_authorize_url_is_kept(engine):
    """HubSpot documents space-separated scopes encoded as %20 (CONTRACTS 1.1); an authorize
    URL with a query of its own gets ours after an `&`."""
    _, method, context = acme_oauth(engine)
    method = dataclasses.replace(
        method, scope_separator=" ", pkce=False,
        authorize_url=Template("{{ config.login_url }}/authorize?realm=eu"))
    request = authorization_request(method, context, client_id="cid",
                                    redirect_uri="http://127.0.0.1:8765/callback")
    base, _, query = request.url.partition("&")
    assert base == "http://127.0.0.1:9/authorize?realm=eu"
    assert "scope=read%20write%20offline" in query and "+" not in query
    assert parse_qs(query)["state"] == [request.state] and request.code_verifier is None


def test_the_loopback_callback_answers_the_browser_and_nothing_else():
    with LoopbackCallback("http://localhost:0/callback") as callback:
        port = urlsplit(callback.redirect_uri).port
        assert callback.redirect_uri == f"http://localhost:{port}/callback" and port not in (0, 80)
        assert httpx.get(f"http://127.0.0.1:{port}/favicon.ico").status_code == 404
        page = httpx.get(f"http://127.0.0.1:{port}/callback?code=c-1&state=s")
        assert callback.wait(5) == "/callback?code=c-1&state=s"
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-length"] == str(len(page.content))
    assert page.text == ("<p>crm-engine: authorization received. You can close this "
                         "window.</p>")


def test_a_redirect_uri_without_a_port_is_served_on_80():
    assert listen_port(urlsplit("http://127.0.0.1/callback")) == 80
    assert listen_port(urlsplit("http://localhost:8765/callback")) == 8765
    assert listen_port(urlsplit("http://127.0.0.1:0/callback")) == 0  # any free port


def test_a_callback_without_a_path_is_caught_at_the_root():
    with LoopbackCallback("http://127.0.0.1:0") as callback:
        port = urlsplit(callback.redirect_uri).port
        assert callback.redirect_uri == f"http://127.0.0.1:{port}/"
        httpx.get(f"http://127.0.0.1:{port}/?code=c-1&state=s")
        assert callback.wait(5) == "/?code=c-1&state=s"


def test_the_redirect_uri_must_be_a_loopback_address():
    with pytest.raises(ValueError) as info:
        LoopbackCallback("http://crm.example.com:8765/callback")
    assert str(info.value) == ("the redirect URI must be http://127.0.0.1 or "
                               "http://localhost: http://crm.example.com:8765/callback")
    # The callback server listens on IPv4: an IPv6 loopback could never be caught.
    with pytest.raises(ValueError, match=r"must be http://127.0.0.1 or http://localhost"):
        LoopbackCallback("http://[::1]:0/callback")


def test_no_callback_in_time_is_an_error_and_stores_nothing(engine, vendor):
    with pytest.raises(CrmError) as info:
        engine.connect("acme", "acme", client_id="cid", client_secret="the-client-secret",
                       config={"login_url": vendor.url}, open_url=lambda url: None,
                       redirect_uri="http://127.0.0.1:0/callback", timeout=1)
    error = info.value
    assert (error.connector, error.operation, error.message) == (
        "oauth", "callback", "no authorization callback within 1s")
    assert engine.credentials.load("acme") is None and vendor.token_requests == []


def test_the_callbacks_settings_reach_the_token_url(tmp_path, make_engine, vendor):
    """Zoho names the accounts server to exchange the code at in its callback (CONTRACTS 4.1):
    what the callback carries is in `credentials` when the token URL is rendered."""
    connector = CONNECTOR.replace('token_url: "{{ config.login_url }}/token"',
                                  'token_url: "{{ config.login_url }}/token?dc={{ '
                                  'credentials.region }}"')
    engine = make_engine(write_specs(tmp_path / "dc", connector, TEST_MAPPING))
    conn = connect(engine, vendor)
    assert vendor.token_queries == [{"dc": "eu"}]
    assert conn.credentials.settings["region"] == "eu"


def test_a_refused_code_exchange_through_connect_names_the_connector(engine, vendor):
    with pytest.raises(CrmError) as info:
        engine.connect("acme", "acme", client_id="cid", client_secret="not-the-secret",
                       config={"login_url": vendor.url}, open_url=follow_without_browser,
                       redirect_uri="http://127.0.0.1:0/callback", timeout=10)
    error = info.value
    assert (error.connector, error.operation, error.status, error.code, error.message) == (
        "acme", "oauth.exchange", 401, "invalid_client", "code exchange failed: invalid_client")
    assert engine.credentials.load("acme") is None


STATE = "s" * 32


@pytest.mark.parametrize(("query", "message", "code"), [
    ("state=forged&code=c", "the callback's state does not match this authorization request "
                             "(a forged or stale callback); nothing was stored", None),
    ("code=c", "the callback's state does not match this authorization request "
               "(a forged or stale callback); nothing was stored", None),
    (f"state={STATE}&error=access_denied&error_description=The+user+said+no",
     "authorization refused: access_denied The user said no", "access_denied"),
    (f"state={STATE}&error=access_denied", "authorization refused: access_denied",
     "access_denied"),
    (f"state={STATE}", "the callback carries no authorization code", None),
])
def test_a_callback_that_brings_no_code_says_why(query, message, code):
    request = AuthorizationRequest("u", "http://127.0.0.1/cb", STATE)
    with pytest.raises(CrmError) as info:
        parse_callback(request, f"/cb?{query}")
    error = info.value
    assert (error.connector, error.operation, error.message, error.code) == (
        "oauth", "callback", message, code)


def test_a_refresh_that_names_another_api_host_moves_the_connection_there(engine, vendor,
                                                                          clock):
    """Salesforce and Zoho name the API host in every token response (CONTRACTS 2.1, 4.1)."""
    connect(engine, vendor)
    moved: list[str] = []
    vendor.app.add_route("GET", r"/v2/api/items",
                         lambda request: moved.append(request.path) or vendor.items(request))
    vendor.instance_url = vendor.url + "/v2"
    clock.advance(600)  # expired: refreshed before the first request
    [run] = engine.sync("acme")
    assert run.status == "succeeded" and run.records == 30 and moved == []
    [run] = engine.sync("acme")  # the same session: its requests now go to the new host
    assert run.status == "succeeded" and len(moved) == 3
    assert engine.credentials.load("acme").credentials.settings["instance_url"] == \
        vendor.url + "/v2"
