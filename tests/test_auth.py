"""OAuth refresh in the request path: ahead of expiry, once on a 401, never in a loop."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest

from engine import secrets
from engine.auth import Credentials, OAuth2Auth, updated_credentials
from engine.clock import FakeClock
from engine.connections import Connection
from engine.errors import CrmError
from engine.transport import Call
from tests.support import (
    TEST_MAPPING,
    App,
    Request,
    Response,
    cursor_page,
    items,
    serving,
    write_specs,
)

CONNECTOR = """
name: acme
title: Acme
base_url: "{{ config.url }}"
config:
  url: {default: "http://unset.invalid"}
auth:
  oauth:
    type: oauth2
    authorize_url: "{{ config.url }}/authorize"
    token_url: "{{ config.url }}/token"
    client_auth: basic
    token_lifetime_seconds: 3600
    apply: {header: Authorization, value: "Bearer {{ token }}"}
errors:
  code: code
streams:
  items:
    model: contact
    request: {method: GET, path: /items}
    records: items
    paginate: {style: cursor, cursor: next, param: after}
"""


class OAuthServer:
    """Items behind bearer tokens, and a token endpoint that can rotate refresh tokens."""

    def __init__(self, rotate: bool = True):
        self.app = App()
        self.valid_token = "a-0"
        self.refresh_token = "r-0"
        self.rotate = rotate
        self.token_calls: list[dict[str, str]] = []
        self.always_401 = False
        self.expire_after_pages: int | None = None
        self.refresh_fails = False
        self.expires_in: int | None = 3600  # None: the token response does not say
        self.pages = 0
        self.unauthorized = 0  # 401s served
        self.used_tokens: list[str] = []  # access tokens that were accepted, in order
        # Called the first time a new access token is used (to look at what was stored then).
        self.on_first_use: Callable[[str], None] | None = None
        self.records = items(25)
        self.app.add_route("POST", "/token", self.token)
        self.app.add_route("GET", "/items", self.items)

    def token(self, request: Request) -> Response:
        form = request.form()
        self.token_calls.append({**form, "authorization": request.headers.get("authorization")})
        if self.refresh_fails or form.get("refresh_token") != self.refresh_token:
            return Response(400, {"error": "invalid_grant", "error_description": "expired"})
        n = len(self.token_calls)
        self.valid_token = f"a-{n}"
        body = {"access_token": self.valid_token, "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        if self.rotate:
            self.refresh_token = f"r-{n}"
            body["refresh_token"] = self.refresh_token
        return Response(200, body)

    def items(self, request: Request) -> Response:
        if self.expire_after_pages is not None and self.pages >= self.expire_after_pages:
            self.valid_token = "expired-for-good"
            self.expire_after_pages = None
        if self.always_401 or request.headers.get("authorization") != f"Bearer {self.valid_token}":
            self.unauthorized += 1
            return Response(401, {"code": "EXPIRED", "message": "token expired"})
        if self.valid_token not in self.used_tokens:
            self.used_tokens.append(self.valid_token)
            if self.on_first_use is not None:
                self.on_first_use(self.valid_token)
        self.pages += 1
        return cursor_page(self.records, request)


@pytest.fixture
def oauth_server():
    yield from serving(OAuthServer())


@pytest.fixture
def engine(tmp_path, make_engine, oauth_server, clock):
    engine = make_engine(write_specs(tmp_path, CONNECTOR, TEST_MAPPING))
    engine.credentials.save(Connection(
        "acme", "acme", "oauth", {"url": oauth_server.url},
        credentials=Credentials(access_token="a-stale", refresh_token="r-0",
                                expires_at=clock.wall() + 3000,
                                client_id="cid", client_secret="csecret-value")))
    return engine


def test_401_refreshes_once_then_retries_and_persists_rotation(engine, oauth_server):
    [run] = engine.sync("acme")
    assert run.status == "succeeded" and run.records == 25
    assert oauth_server.unauthorized == 1  # the stale token, once; then the refreshed one
    assert len(oauth_server.token_calls) == 1
    call = oauth_server.token_calls[0]
    assert call["grant_type"] == "refresh_token" and call["authorization"].startswith("Basic ")
    stored = engine.credentials.load("acme").credentials
    assert (stored.access_token, stored.refresh_token) == ("a-1", "r-1")


def test_a_rotated_refresh_token_is_stored_before_the_new_access_token_is_used(
        engine, oauth_server):
    stored_at_first_use: dict[str, str | None] = {}

    def look(token: str) -> None:
        stored_at_first_use[token] = engine.credentials.load("acme").credentials.refresh_token

    oauth_server.on_first_use = look
    [run] = engine.sync("acme")
    assert run.status == "succeeded"
    # Had the process died right after the refresh, the store would still hold a live token.
    assert stored_at_first_use == {"a-1": "r-1"}


def test_a_second_401_is_an_error_not_a_loop(engine, oauth_server):
    oauth_server.always_401 = True
    [run] = engine.sync("acme")
    assert run.status == "failed" and "HTTP 401" in run.error
    assert len(oauth_server.token_calls) == 1
    assert oauth_server.unauthorized == 2  # the request, and its one retry after the refresh


@pytest.mark.parametrize("seconds_left", [299, 120, 10])
def test_refresh_ahead_of_expiry(engine, oauth_server, clock, seconds_left):
    clock.advance(3000 - seconds_left)  # inside the 5-minute margin
    oauth_server.valid_token = "a-1"  # the stale token would be refused
    [run] = engine.sync("acme")
    assert run.status == "succeeded"
    assert oauth_server.unauthorized == 0  # refreshed before sending, not after a 401
    assert len(oauth_server.token_calls) == 1 and oauth_server.pages == 3


def test_a_connection_stored_with_only_a_refresh_token_refreshes_before_sending(
        tmp_path, make_engine, oauth_server):
    """Credentials brought from elsewhere often hold a refresh token only: the engine refreshes
    first rather than sending an empty token and waiting for the 401."""
    engine = make_engine(write_specs(tmp_path, CONNECTOR, TEST_MAPPING))
    engine.credentials.save(Connection(
        "acme", "acme", "oauth", {"url": oauth_server.url},
        credentials=Credentials(refresh_token="r-0", client_id="cid",
                                client_secret="csecret-value")))
    [run] = engine.sync("acme")
    assert run.status == "succeeded" and oauth_server.pages == 3
    assert oauth_server.unauthorized == 0 and len(oauth_server.token_calls) == 1
    assert engine.credentials.load("acme").credentials.access_token == "a-1"


@pytest.mark.parametrize("seconds_left", [301, 300])
def test_no_refresh_while_five_minutes_or_more_are_left(engine, oauth_server, clock,
                                                        seconds_left):
    clock.advance(3000 - seconds_left)
    oauth_server.valid_token = "a-stale"  # still good
    [run] = engine.sync("acme")
    assert run.status == "succeeded" and oauth_server.token_calls == []


def test_refresh_without_new_refresh_token_keeps_the_old_one(engine, oauth_server, clock):
    oauth_server.rotate = False  # like Zoho: the refresh response has no refresh_token
    [run] = engine.sync("acme")  # the stale access token: refreshed with r-0
    assert run.status == "succeeded" and len(oauth_server.token_calls) == 1
    stored = engine.credentials.load("acme").credentials
    assert (stored.access_token, stored.refresh_token) == ("a-1", "r-0")
    assert stored.expires_at == clock.wall() + 3600  # from the response's expires_in
    clock.advance(3600)  # expired: the kept refresh token must still work
    [run] = engine.sync("acme")
    assert run.status == "succeeded"
    assert [c["refresh_token"] for c in oauth_server.token_calls] == ["r-0", "r-0"]
    assert engine.credentials.load("acme").credentials.access_token == "a-2"


def test_invalid_grant_fails_the_run_and_keeps_earlier_pages(engine, oauth_server):
    oauth_server.valid_token = "a-stale"
    oauth_server.expire_after_pages = 2
    oauth_server.refresh_fails = True
    [run] = engine.sync("acme")
    assert run.status == "failed"
    assert "invalid_grant" in run.error and "crm-engine connect acme" in run.error
    assert engine.store.query("SELECT count(*) FROM contacts")[0][0] == 20
    row = engine.store.query("SELECT status, records, error FROM sync_runs")[0]
    assert row[0] == "failed" and row[1] == 20 and "invalid_grant" in row[2]


def test_credentials_repr_hides_secrets(engine):
    text = repr(engine.credentials.load("acme"))
    assert "csecret-value" not in text and "r-0" not in text


def test_refresh_error_is_a_crm_error_for_actions_too(engine, oauth_server):
    oauth_server.refresh_fails = True
    session, _, _ = engine.session("acme")
    with pytest.raises(CrmError, match="crm-engine connect"):
        session.send(Call("GET", oauth_server.url + "/items"), "test")


# -- the token endpoint's answers, on an in-process transport ------------------------------------


def refreshing_client(engine, clock, token_reply: httpx.Response, client_auth: str | None = None,
                      client_id: str | None = "cid", client_secret: str | None = "csecret-value"):
    """A client whose credentials expire within the margin, so its first request refreshes."""
    method = engine.connector("acme").auth["oauth"]
    if client_auth is not None:
        method = dataclasses.replace(method, client_auth=client_auth)
    token_requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            token_requests.append(request)
            return token_reply
        return httpx.Response(200, json={"items": []})

    auth = OAuth2Auth(connector="acme", method=method, token_url="http://127.0.0.1:9/token",
                      credentials=Credentials(access_token="a-old", refresh_token="r-0",
                                              expires_at=clock.wall() + 10,
                                              client_id=client_id,
                                              client_secret=client_secret),
                      is_auth_expired=lambda response: response.status_code == 401, clock=clock,
                      apply=bearer)
    return httpx.Client(auth=auth, transport=httpx.MockTransport(handler)), token_requests


def bearer(request: httpx.Request, token: str) -> None:
    request.headers["Authorization"] = f"Bearer {token}"


def test_a_refresh_asks_for_json_with_the_client_in_basic_auth(engine, clock):
    reply = httpx.Response(200, json={"access_token": "a-1", "expires_in": 3600})
    client, token_requests = refreshing_client(engine, clock, reply)
    with client:
        client.get("http://127.0.0.1:9/items")
    [request] = token_requests
    assert request.method == "POST" and request.headers["accept"] == "application/json"
    pair = base64.b64encode(b"cid:csecret-value").decode()
    assert request.headers["authorization"] == "Basic " + pair
    assert parse_qs(request.content.decode()) == {"grant_type": ["refresh_token"],
                                                  "refresh_token": ["r-0"]}
    # The base64 of the client secret is a secret too, whole.
    assert secrets.redact(f"sent {pair}") == f"sent {secrets.MASK}"
    assert client.auth.refreshes == 1


@pytest.mark.parametrize(("client_auth", "client_id", "sent"), [
    ("basic", "cid", {"authorization": "Basic " + base64.b64encode(b"cid:").decode()}),
    ("basic", None, {"authorization": "Basic " + base64.b64encode(b":").decode()}),
    ("body", "cid", {"client_id": ["cid"]}),
    ("body", None, {}),
])
def test_a_public_client_refreshes_without_a_secret(engine, clock, client_auth, client_id,
                                                    sent):
    """A public client (PKCE, no secret) authenticates by its id alone: an empty secret in
    basic auth, none in the body (RFC 6749 2.3.1)."""
    reply = httpx.Response(200, json={"access_token": "a-1", "expires_in": 3600})
    client, token_requests = refreshing_client(engine, clock, reply, client_auth=client_auth,
                                               client_id=client_id, client_secret=None)
    with client:
        client.get("http://127.0.0.1:9/items")
    [request] = token_requests
    form = parse_qs(request.content.decode())
    assert "client_secret" not in form
    if client_auth == "basic":
        assert request.headers["authorization"] == sent["authorization"]
    else:
        assert "authorization" not in request.headers
        assert {k: v for k, v in form.items() if k == "client_id"} == sent


def test_each_refresh_counts(engine, clock):
    """A token that comes back with less than the refresh margin left is refreshed again
    before the next request: both refreshes count on the auth."""
    reply = httpx.Response(200, json={"access_token": "a-1", "expires_in": 10})
    client, token_requests = refreshing_client(engine, clock, reply)
    with client:
        client.get("http://127.0.0.1:9/items")
        client.get("http://127.0.0.1:9/items")
    assert len(token_requests) == 2 and client.auth.refreshes == 2


@pytest.mark.parametrize(("reply", "kind", "code", "reason"), [
    # The token endpoint is having trouble: the authorization may be fine.
    (httpx.Response(502, html="<html><title>502 Bad Gateway</title><body>x</body></html>"),
     "transient", None, "token refresh failed (502 Bad Gateway)"),
    (httpx.Response(429, json={"status": "RATE_LIMITED"}), "transient", None,
     "token refresh failed (RATE_LIMITED)"),
    (httpx.Response(500, json={"error": "server_error"}), "transient", None,
     "token refresh failed (server_error)"),
    # Zoho answers token errors with HTTP 200 and no access_token (CONTRACTS 4.1).
    (httpx.Response(200, json={"error": "invalid_client"}), "auth_revoked", "invalid_client",
     "token refresh failed (invalid_client)"),
    (httpx.Response(400, json={"error": "invalid_grant", "error_description": "expired",
                               "access_token": "a-bogus"}),
     "auth_revoked", "invalid_grant", "token refresh failed (invalid_grant: expired)"),
    (httpx.Response(400, json={"status": "BAD_REFRESH_TOKEN",
                               "message": "missing or invalid refresh token"}),
     "auth_revoked", "BAD_REFRESH_TOKEN",
     "token refresh failed (BAD_REFRESH_TOKEN: missing or invalid refresh token)"),
    (httpx.Response(200, json=["not", "an", "object"]), "auth_revoked", None,
     "token refresh failed (no access_token)"),
    (httpx.Response(400), "auth_revoked", None, "token refresh failed (no access_token)"),
])
def test_a_refused_refresh_says_why_and_whether_to_connect_again(engine, clock, reply, kind,
                                                                 code, reason):
    client, _ = refreshing_client(engine, clock, reply)
    with client, pytest.raises(CrmError) as info:
        client.get("http://127.0.0.1:9/items")
    error = info.value
    assert (error.connector, error.operation, error.kind, error.code, error.status) == (
        "acme", "oauth.refresh", kind, code, reply.status_code)
    assert error.retryable == (kind == "transient")
    if kind == "transient":
        assert error.message == reason
    else:
        assert error.message == (f"{reason}; the authorization is no longer valid: run "
                                 f"`crm-engine connect acme` again")
        assert error.raw_body == (reply.json() if reply.content else {})


@pytest.mark.parametrize("later", [0, 2800])
def test_an_engine_adopts_the_token_another_refreshed_instead_of_refreshing_again(
        tmp_path, make_engine, engine, oauth_server, clock, later):
    """Two processes on one connection: the second finds the first's rotated tokens in the
    store and uses them, whether a 401 or its own token's expiry sent it to refresh."""
    other = make_engine(tmp_path / "connectors", db="other.duckdb")
    other.session("acme")  # holds the stale access token in memory
    [run] = engine.sync("acme")  # a 401, a refresh: a-1 and r-1 stored
    assert run.status == "succeeded" and len(oauth_server.token_calls) == 1
    clock.advance(later)  # 2800: the stale token is within 5 minutes of expiry, a-1 is not
    [run] = other.sync("acme")
    assert run.status == "succeeded" and run.records == 25
    assert len(oauth_server.token_calls) == 1
    assert other.session("acme")[0].auth.credentials.access_token == "a-1"


@pytest.mark.parametrize(("body", "lifetime", "expires_in"), [
    ({"expires_in": 1800}, 3600, 1800.0),  # HubSpot: 30 minutes (CONTRACTS 1.1)
    ({"expires_in": "3600"}, None, 3600.0),  # some send it as a string
    ({}, 7200, 7200.0),  # Salesforce sends none: the YAML's lifetime (CONTRACTS 2.1)
    ({"expires_in": "soon"}, 7200, 7200.0),
    ({}, None, None),  # no lifetime known: never refreshed ahead of time
])
def test_a_token_response_sets_when_the_token_expires(engine, body, lifetime, expires_in):
    clock = FakeClock()
    method = dataclasses.replace(engine.connector("acme").auth["oauth"],
                                 token_lifetime_seconds=lifetime)
    old = Credentials(access_token="a-0", refresh_token="r-0", client_id="cid")
    new = updated_credentials(old, {"access_token": "a-1", **body}, method, clock)
    assert new.expires_at == (None if expires_in is None else clock.wall() + expires_in)
    assert (new.access_token, new.refresh_token, new.client_id) == ("a-1", "r-0", "cid")


def test_a_token_response_without_expires_in_lasts_the_methods_lifetime(engine, oauth_server,
                                                                        clock):
    """Salesforce's token responses carry no expires_in (CONTRACTS 2.1): the method's
    `token_lifetime_seconds` (3600 in this connector) says when to refresh."""
    oauth_server.expires_in = None
    [run] = engine.sync("acme")
    assert run.status == "succeeded" and len(oauth_server.token_calls) == 1
    assert engine.credentials.load("acme").credentials.expires_at == clock.wall() + 3600


def test_credentials_are_redacted_from_the_moment_they_exist():
    Credentials(access_token="acc-5e1f", refresh_token="ref-5e1f", client_secret="cs-5e1f")
    assert secrets.redact("acc-5e1f ref-5e1f cs-5e1f") == "*** *** ***"


def test_secrets_registered_after_the_pattern_was_built_are_redacted_whole():
    """The redaction pattern is rebuilt lazily (hundreds of connections register tokens while
    others redact checkpoints): a value registered since is still masked, whole, beside the
    values it contains or is contained in, and so are hundreds registered one at a time."""
    secrets.register("base-7c2a9")
    assert secrets.redact("x base-7c2a9") == "x ***"  # the pattern now exists
    secrets.register("long-base-7c2a9-tail")  # contains an older value
    secrets.register("7c2a")  # is contained in both
    assert secrets.redact("a long-base-7c2a9-tail b base-7c2a9 c 7c2a") == "a *** b *** c ***"
    many = [f"tok-{i:04d}-9f3e" for i in range(3 * secrets.RECENT_LIMIT)]
    for token in many:
        secrets.register(token)
        assert secrets.redact("nothing secret here") == "nothing secret here"
    assert secrets.redact(" ".join(many)) == " ".join([secrets.MASK] * len(many))


def test_requests_refused_with_the_same_token_refresh_once(engine, clock):
    """Two requests in flight with one access token both get a 401: the first refreshes, the
    second finds the fresh token in the (in-memory) store and is retried with it, without a
    second refresh that would spend the rotated refresh token again."""
    auth = OAuth2Auth(connector="acme", method=engine.connector("acme").auth["oauth"],
                      token_url="http://127.0.0.1:9/token",
                      credentials=Credentials(access_token="a-0", refresh_token="r-0",
                                              expires_at=clock.wall() + 3600, client_id="cid",
                                              client_secret="csecret-value"),
                      is_auth_expired=lambda response: response.status_code == 401, clock=clock,
                      apply=bearer)
    first = auth.auth_flow(httpx.Request("GET", "http://127.0.0.1:9/items"))
    second = auth.auth_flow(httpx.Request("GET", "http://127.0.0.1:9/items"))
    assert next(first).headers["authorization"] == next(second).headers["authorization"] \
        == "Bearer a-0"
    refresh = first.send(httpx.Response(401))
    assert (refresh.method, refresh.url.path) == ("POST", "/token")
    fresh = {"access_token": "a-1", "refresh_token": "r-1", "expires_in": 3600}
    assert first.send(httpx.Response(200, json=fresh)).headers["authorization"] == "Bearer a-1"
    assert second.send(httpx.Response(401)).headers["authorization"] == "Bearer a-1"
    assert auth.refreshes == 1 and auth.credentials.refresh_token == "r-1"
