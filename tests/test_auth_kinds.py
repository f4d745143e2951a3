"""Auth kinds (engine.authkinds): what each sends, what its templates see, how a connection
gets its secrets (connect, the environment, --token, never argv), and that nothing computed
from a secret leaks into logs, errors, reprs or the DuckDB file."""

from __future__ import annotations

import base64
import logging
import sys
from pathlib import Path
from urllib.parse import quote_plus

import pytest
import yaml

from engine import secrets
from engine.auth import Credentials
from engine.authkinds import AUTH_KINDS, AuthRuntime, AuthValue, Placement
from engine.cli import main
from engine.clock import FakeClock
from engine.connections import Connection
from engine.errors import CrmError, InputError, SpecError
from engine.loader import load_connector
from engine.schema_check import schema
from engine.templates import Template
from tests.support import App, Request, Response, cursor_page, items, serving, write_specs

# Every secret below is used by this module only (the registry of secrets is process-wide).
API_KEY = "kinds-key+/=9Zq"  # `+`, `/` and `=` change when percent-encoded in a URL
USERNAME = "kinds-user@example.com"
PASSWORD = "kinds-pass-w0rd"
ACCOUNT = "acct-kinds-0042"  # a setting, not a secret: it must stay readable

CONNECTOR = """
name: acme
title: Acme
base_url: "{{ config.url }}"
config:
  url: {default: "http://unset.invalid"}
  account: {default: acct-kinds-0042}
  region: {default: eu}
constants:
  hosts: {eu: eu.acme.example, us: us.acme.example}
auth:
  key_as_user:
    type: basic
    username: "{{ api_key }}"
    password: ""
    secrets: {api_key: API key (Settings > API)}
  user_password:
    type: basic
  header_key:
    type: api_key
    header: X-Api-Key
  query_key:
    type: api_key
    query: api_key
  token_scheme:
    type: bearer
    scheme: Token
  custom_set:
    type: custom
    headers:
      X-Auth: "Key {{ api_key }}; account={{ config.account }}"
      X-Account: "{{ config.account }}"
      X-Host: "{{ constants.hosts[config.region] }}"
    query: {sig: "{{ api_key }}"}
    secrets: {api_key: API key}
  oauth_query:
    type: oauth2
    authorize_url: "{{ config.url }}/authorize"
    token_url: "{{ config.url }}/token"
    apply: {query: access_token, value: "{{ config.account }}:{{ token }}"}
  oauth_plain_query:
    type: oauth2
    authorize_url: "{{ config.url }}/authorize"
    token_url: "{{ config.url }}/token"
    apply: {query: access_token}
errors:
  message: error.message
streams:
  items:
    model: contact
    request: {method: GET, path: /items}
    records: items
    paginate: {style: cursor, cursor: next, param: after}
actions:
  create_contact:
    model: contact
    input: create
    request: {method: POST, path: /items, body: "{{ record }}"}
    result: {record: "@"}
"""


class EchoServer:
    """Items; records what each request carried. With `reject`, answers 401 with a body that
    echoes every credential it was sent (as careless APIs do)."""

    def __init__(self) -> None:
        self.app = App()
        self.reject = False
        self.seen: list[Request] = []
        self.app.add_route("GET", "/items", self.items)
        self.app.add_route("POST", "/items", self.items)
        self.app.add_route("POST", "/token", self.token)
        self.refreshes: list[Request] = []

    def token(self, request: Request) -> Response:
        self.refreshes.append(request)
        return Response(200, {"access_token": "kinds-refreshed-access", "token_type": "bearer",
                              "expires_in": 3600})

    def items(self, request: Request) -> Response:
        self.seen.append(request)
        if self.reject:
            sent = {k: v for k, v in request.headers.items()
                    if k.lower() in ("authorization", "x-api-key", "x-auth")}
            query = {k: v[0] for k, v in request.query.items()}
            return Response(401, {"error": {
                "message": f"refused {sent} {query} {request.path}?"
                           + "&".join(f"{k}={quote_plus(v)}" for k, v in query.items()),
                "headers": sent, "query": query}})
        if request.method == "POST":
            return Response(201, {"id": "n1", **(request.json() or {})})
        return cursor_page(items(12), request)

    @property
    def last(self) -> Request:
        return self.seen[-1]


@pytest.fixture
def server():
    yield from serving(EchoServer())


@pytest.fixture
def connectors(tmp_path):
    return write_specs(tmp_path, CONNECTOR)


def connect(engine, method: str, server, **values: str) -> None:
    engine.store_secrets("acme", method, secrets=values, auth_method=method,
                         config={"url": server.url})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- what each kind sends ----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "values", "header", "expected"), [
    ("key_as_user", {"api_key": API_KEY}, "authorization", basic(API_KEY, "")),
    ("user_password", {"username": USERNAME, "password": PASSWORD}, "authorization",
     basic(USERNAME, PASSWORD)),
    ("header_key", {"api_key": API_KEY}, "x-api-key", API_KEY),
    ("token_scheme", {"token": API_KEY}, "authorization", f"Token {API_KEY}"),
])
def test_each_kind_sends_its_header(make_engine, connectors, server, method, values, header,
                                    expected):
    engine = make_engine(connectors)
    connect(engine, method, server, **values)
    [run] = engine.sync("acme", method)
    assert run.status == "succeeded" and run.records == 12, run.error
    assert {r.headers.get(header) for r in server.seen} == {expected}


def test_an_api_key_in_the_query(make_engine, connectors, server):
    engine = make_engine(connectors)
    connect(engine, "query_key", server, api_key=API_KEY)
    [run] = engine.sync("acme", "query_key")
    assert run.status == "succeeded"
    assert all(r.arg("api_key") == API_KEY and "authorization" not in r.headers
               for r in server.seen)
    assert server.seen[1].arg("after") == "10"  # pagination's own parameters kept


def test_custom_headers_see_config_constants_and_the_secrets(make_engine, connectors, server):
    engine = make_engine(connectors)
    connect(engine, "custom_set", server, api_key=API_KEY)
    [run] = engine.sync("acme", "custom_set")
    assert run.status == "succeeded"
    sent = server.last
    assert sent.headers.get("x-auth") == f"Key {API_KEY}; account={ACCOUNT}"
    assert sent.headers.get("x-account") == ACCOUNT
    assert sent.headers.get("x-host") == "eu.acme.example"
    assert sent.arg("sig") == API_KEY
    # A setting a template reads is not a secret: only what reads a secret is registered.
    assert secrets.redact(f"account {ACCOUNT}") == f"account {ACCOUNT}"
    assert secrets.is_registered(f"Key {API_KEY}; account={ACCOUNT}")


def test_connection_config_reaches_auth_templates(make_engine, connectors, server):
    engine = make_engine(connectors)
    engine.store_secrets("acme", "us", secrets={"api_key": API_KEY}, auth_method="custom_set",
                         config={"url": server.url, "region": "us", "account": "acct-us-77"})
    engine.sync("acme", "us")
    assert server.last.headers.get("x-host") == "us.acme.example"
    assert server.last.headers.get("x-account") == "acct-us-77"


def test_an_oauth_token_may_go_in_the_query_and_its_template_sees_config(make_engine,
                                                                        connectors, server):
    engine = make_engine(connectors)
    [run] = engine.sync("acme", token="kinds-pasted-access", auth_method="oauth_query",
                        config={"url": server.url})
    assert run.status == "succeeded"
    assert server.last.arg("access_token") == f"{ACCOUNT}:kinds-pasted-access"
    assert secrets.is_registered(f"{ACCOUNT}:kinds-pasted-access")


def test_a_refreshed_oauth_token_goes_where_the_method_applies_it(make_engine, connectors,
                                                                  server, clock):
    """A stored OAuth connection whose token has expired is refreshed first, and the new
    token goes in the query parameter its `apply` names, rendered through its template."""
    engine = make_engine(connectors)
    engine.credentials.save(Connection("oq", "acme", "oauth_query", {"url": server.url},
                                       credentials=Credentials(
                                           access_token="kinds-stale-access",
                                           refresh_token="kinds-refresh-token",
                                           expires_at=clock.wall() - 60,
                                           client_id="kinds-client",
                                           client_secret="kinds-client-secret")))
    [run] = engine.sync("acme", "oq")
    assert run.status == "succeeded" and len(server.refreshes) == 1
    assert {r.arg("access_token") for r in server.seen} == {f"{ACCOUNT}:kinds-refreshed-access"}
    assert "authorization" not in server.last.headers


def test_an_oauth_token_is_applied_as_it_is_when_the_method_gives_no_template(
        make_engine, connectors, server):
    engine = make_engine(connectors)
    [run] = engine.sync("acme", token="kinds-plain-access", auth_method="oauth_plain_query",
                        config={"url": server.url})
    assert run.status == "succeeded" and server.last.arg("access_token") == "kinds-plain-access"


def test_a_refused_pasted_oauth_token_says_how_to_replace_it(make_engine, connectors, server):
    engine = make_engine(connectors)
    server.reject = True
    [run] = engine.sync("acme", token="kinds-pasted-refused", auth_method="oauth_query",
                        config={"url": server.url})
    assert run.status == "failed"
    assert ("the token was refused; check it (--token, CRM_ENGINE_ACME_TOKEN) or run "
            "`crm-engine connect acme`") in run.error


def test_an_oauth_connection_with_no_token_at_all_is_refused_before_sending(
        make_engine, connectors, server):
    engine = make_engine(connectors)
    engine.credentials.save(Connection("bare", "acme", "oauth_query", {"url": server.url},
                                       credentials=Credentials(client_id="kinds-client")))
    with pytest.raises(InputError) as info:
        engine.sync("acme", "bare")
    assert info.value.field == "connection"
    assert info.value.message == "connection 'bare' has no access token"
    assert server.seen == []


def test_a_pasted_oauth_tokens_auth_shows_its_method_and_never_the_token(connectors):
    connector = load_connector(connectors / "acme.yaml")
    config = {"url": "http://x", "account": ACCOUNT}
    runtime = AuthRuntime("acme", "pasted", connector.template_context(config, {}),
                          Credentials(access_token="kinds-repr-token"), FakeClock(),
                          lambda response: False)
    auth, _ = connector.auth["oauth_query"].build(runtime)
    assert repr(auth) == "StaticAuth(method='oauth_query', headers=[], params=['access_token'])"


def test_each_secret_comes_from_its_own_variable_and_a_methods_only_one_from_token(connectors):
    auth = load_connector(connectors / "acme.yaml").auth
    assert auth["header_key"].env_variables("acme") == {
        "api_key": ["CRM_ENGINE_ACME_API_KEY", "CRM_ENGINE_ACME_TOKEN"]}
    # A secret named `token` is already CRM_ENGINE_ACME_TOKEN: not listed twice.
    assert auth["token_scheme"].env_variables("acme") == {"token": ["CRM_ENGINE_ACME_TOKEN"]}
    # Two secrets: neither stands for --token.
    assert auth["user_password"].env_variables("acme") == {
        "username": ["CRM_ENGINE_ACME_USERNAME"], "password": ["CRM_ENGINE_ACME_PASSWORD"]}


def test_a_short_token_is_hidden_in_the_header_it_makes(make_engine, connectors, server):
    """Values shorter than the redaction minimum are not hidden alone (they would mask ordinary
    text), but the header built from one is."""
    short = "k9Z"
    assert len(short) < secrets.MIN_LENGTH
    engine = make_engine(connectors)
    [run] = engine.sync("acme", token=short, auth_method="token_scheme",
                        config={"url": server.url})
    assert run.status == "succeeded" and server.last.headers["authorization"] == f"Token {short}"
    assert secrets.redact(f"sent Authorization: Token {short}") != (
        f"sent Authorization: Token {short}")


def test_a_connection_missing_a_secret_says_which_and_how_to_add_it(make_engine, connectors,
                                                                    server):
    engine = make_engine(connectors)
    engine.credentials.save(Connection("half", "acme", "user_password", {"url": server.url},
                                       credentials=Credentials(secrets={"username": USERNAME})))
    with pytest.raises(InputError) as info:
        engine.sync("acme", "half")
    assert info.value.field == "connection"
    assert info.value.message == ("connection 'half' has no password for auth method "
                                  "'user_password': run `crm-engine connect acme --auth "
                                  "user_password`")
    assert server.seen == []
    auth, _ = load_connector(connectors / "acme.yaml").auth["header_key"].build(AuthRuntime(
        "acme", "keyed", {"config": {}, "constants": {}, "credentials": {}},
        Credentials(secrets={"api_key": API_KEY}), FakeClock(), lambda response: False))
    assert repr(auth) == "StaticAuth(method='header_key', headers=['X-Api-Key'], params=[])"


def test_an_auth_value_that_renders_null_sends_an_empty_string():
    """A setting left unset renders as nothing, never as the text 'None'."""
    value = AuthValue(Template("{{ config.account }}"), secret=False)
    assert value.render({"config": {"account": None}}) == ""
    assert Placement("X-Account", None, value).render({"config": {"account": None}}) == (
        {"X-Account": ""}, {})


def test_a_connection_stored_before_secrets_had_names_still_works(make_engine, connectors,
                                                                  server):
    engine = make_engine(connectors)
    engine.credentials.save(Connection("old", "acme", "token_scheme", {"url": server.url},
                                       credentials=Credentials(access_token=API_KEY)))
    [run] = engine.sync("acme", "old")
    assert run.status == "succeeded" and server.last.headers["authorization"] == f"Token {API_KEY}"


# -- where secrets come from ---------------------------------------------------------------------


def test_token_fills_a_methods_one_secret(make_engine, connectors, server):
    engine = make_engine(connectors)
    [run] = engine.sync("acme", token=API_KEY, auth_method="key_as_user",
                        config={"url": server.url})
    assert run.status == "succeeded"
    assert server.last.headers["authorization"] == basic(API_KEY, "")


def test_token_cannot_stand_for_two_secrets(make_engine, connectors, server):
    engine = make_engine(connectors)
    with pytest.raises(InputError, match="needs username and password, not one token"):
        engine.sync("acme", token=API_KEY, auth_method="user_password")


def test_secrets_from_the_environment(make_engine, connectors, server, monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_ACME_USERNAME", USERNAME)
    monkeypatch.setenv("CRM_ENGINE_ACME_PASSWORD", PASSWORD)
    engine = make_engine(connectors)
    [run] = engine.sync("acme", auth_method="user_password", config={"url": server.url})
    assert run.status == "succeeded"
    assert server.last.headers["authorization"] == basic(USERNAME, PASSWORD)


def test_without_secrets_the_error_names_the_variables(make_engine, connectors):
    engine = make_engine(connectors)
    with pytest.raises(InputError) as info:
        engine.sync("acme", auth_method="user_password")
    assert "CRM_ENGINE_ACME_USERNAME, CRM_ENGINE_ACME_PASSWORD" in str(info.value)


def test_store_secrets_wants_exactly_the_methods_secrets(make_engine, connectors):
    engine = make_engine(connectors)
    with pytest.raises(InputError, match="needs password"):
        engine.store_secrets("acme", secrets={"username": USERNAME},
                             auth_method="user_password")
    with pytest.raises(InputError, match="not token"):
        engine.store_secrets("acme", secrets={"api_key": API_KEY, "token": "x" * 8},
                             auth_method="header_key")
    with pytest.raises(InputError, match="no auth method 'nope'"):
        engine.store_secrets("acme", secrets={}, auth_method="nope")


class Terminal:
    def isatty(self) -> bool:
        return True


def test_cli_connect_asks_for_each_secret_without_echo(connectors, server, tmp_path,
                                                       monkeypatch, capsys):
    asked: list[str] = []
    answers = {"Acme username: ": USERNAME, "Acme password: ": PASSWORD}
    monkeypatch.setattr("engine.cli.getpass.getpass", lambda p: asked.append(p) or answers[p])
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setenv("CRM_ENGINE_HOME", str(tmp_path / "cli-home"))
    assert main(["connect", "acme", "--auth", "user_password", "--connectors-dir",
                 str(connectors), "--config", f"url={server.url}"]) == 0
    assert asked == ["Acme username: ", "Acme password: "]
    assert "stored acme: Acme via user_password" in capsys.readouterr().out
    assert main(["sync", "acme", "--connectors-dir", str(connectors),
                 "--db", str(tmp_path / "cli.duckdb")]) == 0
    assert server.last.headers["authorization"] == basic(USERNAME, PASSWORD)


def test_cli_connect_takes_secrets_from_the_environment(connectors, server, tmp_path,
                                                        monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("CRM_ENGINE_ACME_API_KEY", API_KEY)
    assert main(["connect", "acme", "--auth", "key_as_user", "--connection", "k",
                 "--connectors-dir", str(connectors), "--config", f"url={server.url}"]) == 0
    stored = yaml.safe_load((tmp_path / "cli-home/connections/k.json").read_text())
    assert stored["auth_method"] == "key_as_user"
    assert stored["credentials"]["secrets"] == {"api_key": API_KEY}


def test_cli_connect_without_a_terminal_stores_nothing(connectors, tmp_path, monkeypatch,
                                                       capsys):
    monkeypatch.setenv("CRM_ENGINE_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("CRM_ENGINE_ACME_USERNAME", USERNAME)
    assert main(["connect", "acme", "--auth", "user_password",
                 "--connectors-dir", str(connectors)]) == 2
    assert "CRM_ENGINE_ACME_PASSWORD: is not set" in capsys.readouterr().err
    assert not list((tmp_path / "cli-home").glob("connections/*.json"))


def test_cli_connect_refuses_an_unknown_auth_method(connectors, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRM_ENGINE_HOME", str(tmp_path / "cli-home"))
    assert main(["connect", "acme", "--auth", "nope", "--connectors-dir", str(connectors)]) == 2
    assert "acme has no auth method 'nope'" in capsys.readouterr().err


# -- redaction ---------------------------------------------------------------------------------


def leaks(text: str) -> list[str]:
    """Which forms of this module's secrets appear in `text`."""
    forms = {
        "api key": API_KEY, "encoded api key": quote_plus(API_KEY), "password": PASSWORD,
        "basic(key)": base64.b64encode(f"{API_KEY}:".encode()).decode(),
        "basic(user, password)": base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode(),
    }
    return [name for name, form in forms.items() if form in text]


def database_text(path: Path) -> str:
    data = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    return data.decode("latin-1")


@pytest.mark.parametrize(("method", "values"), [
    ("key_as_user", {"api_key": API_KEY}),
    ("user_password", {"username": USERNAME, "password": PASSWORD}),
    ("query_key", {"api_key": API_KEY}),
    ("custom_set", {"api_key": API_KEY}),
])
def test_nothing_derived_from_a_secret_leaks(make_engine, connectors, server, tmp_path, caplog,
                                              method, values):
    caplog.set_level(logging.DEBUG)
    engine = make_engine(connectors, db="leak.duckdb")
    connect(engine, method, server, **values)
    server.reject = True  # every answer echoes the credentials it got

    [run] = engine.sync("acme", method)
    assert run.status == "failed" and "HTTP 401" in run.error
    echoed = str(server.last.headers.get("authorization") or "") + str(server.last.query)
    assert leaks(echoed) or (method == "custom_set" and API_KEY in server.last.headers["x-auth"])
    with pytest.raises(CrmError) as info:
        engine.action("acme", "create_contact", {"first_name": "Ada"}, method)
    error = info.value
    assert error.status == 401 and "refused" in error.message
    session, _, connection = engine.session("acme", method)
    shown = [str(error), repr(error), str(error.raw_body), repr(error.to_dict()), run.error,
             repr(session.auth), repr(connection), repr(connection.credentials), caplog.text]
    assert [leaks(text) for text in shown] == [[]] * len(shown)
    assert "***" in error.message and "HTTP Request: GET" in caplog.text  # httpx's log lines
    rows = engine.store.query("SELECT error FROM sync_runs UNION ALL SELECT error FROM action_log")
    assert len(rows) == 2 and all("***" in row[0] and not leaks(row[0]) for row in rows)
    engine.close()
    assert leaks(database_text(tmp_path / "leak.duckdb")) == []


def test_a_refused_secret_says_where_it_came_from(make_engine, connectors, server):
    engine = make_engine(connectors)
    connect(engine, "user_password", server, username=USERNAME, password=PASSWORD)
    server.reject = True
    [run] = engine.sync("acme", "user_password")
    assert ("the credentials were refused; check them (CRM_ENGINE_ACME_USERNAME, "
            "CRM_ENGINE_ACME_PASSWORD)") in run.error
    connect(engine, "header_key", server, api_key=API_KEY)
    [run] = engine.sync("acme", "header_key")
    assert "the API key was refused; check it (--token, CRM_ENGINE_ACME_API_KEY)" in run.error


def test_url_forms_of_a_secret_are_redacted():
    secrets.register("kinds-url key/+=")
    assert secrets.redact("GET /x?k=kinds-url+key%2F%2B%3D") == "GET /x?k=***"
    assert secrets.redact("GET /x/kinds-url%20key%2F%2B%3D") == "GET /x/***"


# -- the language --------------------------------------------------------------------------------


def test_the_registry_and_the_schema_name_the_same_kinds():
    assert set(AUTH_KINDS) == set(schema("connector")["$defs"]["auth_method"]["properties"]
                                  ["type"]["enum"])


def auth_problems(tmp_path, auth: str) -> list[str]:
    spec = ("name: acme\ntitle: Acme\nbase_url: http://x.invalid\nconfig: {account: {}}\n"
            "auth:\n" + auth + "streams: {}\n")
    connectors = write_specs(tmp_path, spec)
    with pytest.raises(SpecError) as info:
        load_connector(connectors / "acme.yaml")
    return [f"{p.path}: {p.message}" for p in info.value.problems]


@pytest.mark.parametrize(("auth", "problem"), [
    ("  a: {type: token, apply: {header: X, value: '{{ token }}'}}\n",
     "auth.a.type: 'token' is not one of 'oauth2', 'bearer', 'api_key', 'basic', 'custom'"),
    ("  a: {type: basic, usernme: x}\n",
     "auth.a.usernme: unknown key 'usernme' (did you mean 'username'?)"),
    ("  a: {type: basic, username: '{{ api_key }}', password: ''}\n",
     "auth.a.username: undefined variable 'api_key' in template"),
    ("  a: {type: basic, username: '{{ key }}', password: '', secrets: {key: k, other: o}}\n",
     "auth.a.secrets.other: secret 'other' is declared but no template of this method reads it"),
    ("  a: {type: custom, headers: {X: '{{ config }}'}, secrets: {config: c}}\n",
     "auth.a.secrets.config: 'config' cannot name a secret: auth templates read config, "
     "constants, credentials by that name"),
    ("  a: {type: basic, username: '{{ constants }}', password: '', secrets: {constants: c}}\n",
     "auth.a.secrets.constants: 'constants' cannot name a secret"),
    ("  a: {type: bearer, secrets: {credentials: c}}\n",
     "auth.a.secrets.credentials: 'credentials' cannot name a secret"),
    ("  a: {type: api_key, header: X, secrets: {config: c}}\n",
     "auth.a.secrets.config: 'config' cannot name a secret"),
    ("  a: {type: api_key, header: X, value: '{{ api_ky }}'}\n",
     "auth.a.value: undefined variable 'api_ky' in template"),
    ("  a: {type: api_key, header: X, value: '{{ a }}', secrets: {a: a, b: b}}\n",
     "auth.a.secrets.b: secret 'b' is declared but no template of this method reads it"),
    # `escapes` and the template functions are names every template reads too.
    ("  a: {type: custom, headers: {X: '{{ escapes }}'}, secrets: {escapes: c}}\n",
     "auth.a.secrets.escapes: 'escapes' cannot name a secret"),
    ("  a: {type: custom, headers: {X: '{{ range }}'}, secrets: {range: c}}\n",
     "auth.a.secrets.range: 'range' cannot name a secret"),
    ("  a: {type: api_key, header: X, secrets: {a: a, b: b}}\n",
     "auth.a: `value` is required when a method has more than one secret"),
    ("  a: {type: api_key, header: X, query: y}\n",
     "auth.a: expected exactly one of: header; query"),
    ("  a: {type: bearer, secrets: {a: a, b: b}}\n",
     "auth.a.secrets: {'a': 'a', 'b': 'b'} has too many properties"),
    ("  a: {type: custom, secrets: {k: k}}\n", "auth.a: "),
    ("  a: {type: custom, headers: {X: '{{ config.acount }}'}, secrets: {k: k}}\n",
     "auth.a.headers.X: undefined variable 'config.acount'"),
    ("  a: {type: oauth2, authorize_url: 'http://x/a', token_url: 'http://x/t',\n"
     "      apply: {header: X, value: '{{ tokn }}'}}\n",
     "auth.a.apply.value: undefined variable 'tokn' in template"),
    ("  a: {type: oauth2, authorize_url: '{{ config.acount }}/a', token_url: 'http://x/t'}\n",
     "auth.a.authorize_url: undefined variable 'config.acount'"),
    ("  a: {type: oauth2, authorize_url: 'http://x/a', token_url: 'http://x/t',\n"
     "      revoke: {method: POST, url: '{{ credentials.hots }}/revoke',\n"
     "               form: {token: '{{ token }}'}}}\n",
     "auth.a.revoke.url: undefined variable 'credentials.hots'"),
    ("  a: {type: oauth2, authorize_url: 'http://x/a', token_url: 'http://x/t',\n"
     "      revoke: {method: POST, url: 'http://x/revoke', form: {token: '{{ tokn }}'}}}\n",
     "auth.a.revoke.form.token: undefined variable 'tokn'"),
    ("  a: {type: oauth2, authorize_url: 'http://x/a', token_url: 'http://x/t',\n"
     "      settings: {api_domain: 'api_domain[?'}}\n",
     "auth.a.settings.api_domain: invalid jmespath"),
])
def test_auth_problems_are_located(tmp_path, auth, problem):
    problems = auth_problems(tmp_path, auth)
    assert any(p.startswith(problem) for p in problems), problems


# -- each kind's side of a connection, called directly ----------------------------------------


def load_auth(tmp_path, auth: str) -> dict:
    spec = ("name: acme\ntitle: Acme\nbase_url: http://x.invalid\nconfig: {account: {}}\n"
            "auth:\n" + auth + "streams: {}\n")
    return load_connector(write_specs(tmp_path, spec) / "acme.yaml").auth


THREE_SECRETS = ("  three:\n    type: custom\n    secrets: {app: app, key: key, sig: sig}\n"
                 "    headers: {X-App: '{{ app }}', X-Key: '{{ key }}', X-Sig: '{{ sig }}'}\n")


def test_what_a_method_lacks_is_named_in_a_list(tmp_path):
    method = load_auth(tmp_path, THREE_SECRETS)["three"]
    with pytest.raises(InputError) as info:
        method.credentials_from_secrets({"key": "k"})
    assert (info.value.field, info.value.message) == (
        "secrets", "auth method 'three' needs app and sig")
    with pytest.raises(InputError) as info:
        method.credentials_from_token("t")
    assert (info.value.field, info.value.message) == (
        "token", "auth method 'three' needs app, key and sig, not one token")
    with pytest.raises(InputError) as info:
        method.credentials_from_secrets({"app": "a", "key": "k", "sig": "s", "token": "t",
                                         "api_key": "k"})
    assert (info.value.field, info.value.message) == (
        "secrets", "auth method 'three' takes app, key and sig, not api_key, token")
    assert method.env_variables("acme") == {
        "app": ["CRM_ENGINE_ACME_APP"], "key": ["CRM_ENGINE_ACME_KEY"],
        "sig": ["CRM_ENGINE_ACME_SIG"]}


def test_an_oauth_method_takes_its_client_secret_not_secrets(tmp_path, connectors):
    """`connect` reads the OAuth app's secret from CRM_ENGINE_<CONNECTOR>_CLIENT_SECRET (the
    README's environment variables); the method has no secrets of its own to store."""
    method = load_connector(connectors / "acme.yaml").auth["oauth_query"]
    assert method.env_variables("acme") == {"client_secret": ["CRM_ENGINE_ACME_CLIENT_SECRET"]}
    with pytest.raises(InputError) as info:
        method.credentials_from_secrets({"token": "t"})
    assert (info.value.field, info.value.message) == (
        "auth_method", "'oauth_query' is OAuth 2.0: run `crm-engine connect` to authorize it")


def test_disconnecting_a_key_connection_revokes_nothing_and_forgets_it(make_engine, connectors,
                                                                       server):
    engine = make_engine(connectors)
    connect(engine, "header_key", server, api_key=API_KEY)
    assert engine.disconnect("acme", "header_key") is False
    with pytest.raises(InputError, match="no credentials for connection 'header_key'"):
        engine.session("acme", "header_key")



ALL_KINDS = """\
  o:
    type: oauth2
    description: the OAuth app
    authorize_url: "https://login.example/authorize"
    token_url: "https://login.example/token"
  b:
    type: bearer
    description: a personal token
  k:
    type: api_key
    description: an API key
    header: X-Key
  u:
    type: basic
    description: a login
  c:
    type: custom
    description: a signed header
    secrets: {key: signing key}
    headers: {X-Sig: "{{ key }}"}
"""


def test_each_kind_compiles_its_description_and_defaults(tmp_path):
    """What a method leaves out takes the documented default (docs/spec-language.md): a
    Bearer header, the prompts `connect` shows for each secret, OAuth without PKCE, its client
    in the form and scopes separated by spaces."""
    auth = load_auth(tmp_path, ALL_KINDS)
    assert {name: m.description for name, m in auth.items()} == {
        "o": "the OAuth app", "b": "a personal token", "k": "an API key", "u": "a login",
        "c": "a signed header"}
    undescribed = load_auth(tmp_path / "bare", "\n".join(
        line for line in ALL_KINDS.splitlines() if "description:" not in line) + "\n")
    assert {m.description for m in undescribed.values()} == {""}
    assert {name: m.secrets for name, m in auth.items()} == {
        "o": {}, "b": {"token": "access token"}, "k": {"api_key": "API key"},
        "u": {"username": "username", "password": "password"}, "c": {"key": "signing key"}}
    assert auth["b"].render({"token": "t0k3n-b"}) == ({"Authorization": "Bearer t0k3n-b"}, {})
    oauth = auth["o"]
    assert (oauth.scopes, oauth.scope_separator, oauth.pkce, oauth.client_auth,
            oauth.authorize_params, oauth.token_lifetime_seconds, oauth.revoke,
            oauth.settings, oauth.callback_settings) == ([], " ", False, "body", {}, None, None,
                                                         {}, {})
    assert oauth.apply.render({"token": "t0k3n-o"}) == ({"Authorization": "Bearer t0k3n-o"}, {})


def test_an_api_key_value_may_combine_secrets(tmp_path):
    auth = ("  signed_key:\n    type: api_key\n    header: X-Api-Key\n"
            "    value: '{{ account_id }}:{{ api_key }}'\n"
            "    secrets: {account_id: account id, api_key: API key}\n")
    method = load_auth(tmp_path, auth)["signed_key"]
    assert method.render({"account_id": "a-17", "api_key": "k-kinds-77"}) == (
        {"X-Api-Key": "a-17:k-kinds-77"}, {})
    assert secrets.is_registered("a-17:k-kinds-77")
