"""Auth kinds, registered by name: the `type` of each of a connector's `auth` methods.

Each kind is one class with typed fields, a `compile` step (from the YAML, at load time: every
template compiled, every name it reads checked) and a `build` step (the httpx auth of one
connection, at run time), like the pagination styles of engine.paginate.

| type    | what each request carries                                | secrets (default)  |
|---------|----------------------------------------------------------|--------------------|
| oauth2  | the access token (`apply`; default `Authorization: Bearer`), refreshed | (the flow) |
| bearer  | `Authorization: <scheme> <token>`                        | token              |
| api_key | one header or query parameter (`value`: default the key) | api_key            |
| basic   | `Authorization: Basic base64(username:password)`         | username, password |
| custom  | any set of headers and query parameters                  | (declared)         |

A method's `secrets` name what a connection supplies (`crm-engine connect` asks for each, or
reads `CRM_ENGINE_<CONNECTOR>_<NAME>`; never the command line). Auth templates see `config`,
`constants`, `credentials` (token-response settings) and those secrets by name (`token` in
oauth2's: the access token). Every value rendered from a secret is registered with
engine.secrets, so logs, errors, reprs and the DuckDB file never show it: a Basic header's
base64, a header that embeds the key, a key percent-encoded in a URL.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import httpx

from engine import oauth, secrets
from engine.auth import ApplyToken, Credentials, OAuth2Auth, StaticAuth, TokenStore
from engine.clock import Clock
from engine.errors import InputError
from engine.extract import Getter
from engine.templates import TEXT_ENV, Template, referenced_names
from engine.yamlsource import YamlPath

# What every auth template may read, besides the method's secrets.
AUTH_ROOTS = ("config", "constants", "credentials")
Roots = dict[str, set[str] | None]


class Compiler(Protocol):
    """What compiling needs from the loader: located problems, checked templates, jmespath."""

    def add(self, path: YamlPath, message: str) -> None: ...
    def template(self, path: YamlPath, source: str, roots: Roots) -> Template | None: ...
    def getter(self, path: YamlPath, expression: str) -> Getter | None: ...


@dataclass
class AuthValue:
    """A compiled auth template; what it renders is a secret when it reads one."""

    template: Template
    secret: bool

    def render(self, variables: dict[str, Any]) -> str:
        value = self.template.render(variables)
        text = "" if value is None else str(value)
        if self.secret:
            secrets.register(text)
        return text


@dataclass
class Placement:
    """Where a value goes on each request: a header, or a query parameter."""

    header: str | None
    query: str | None
    value: AuthValue

    def render(self, variables: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, query parameters)."""
        value = self.value.render(variables)
        if self.header is not None:
            return {self.header: value}, {}
        assert self.query is not None  # the schema wants one of the two
        return {}, {self.query: value}

    def apply(self, request: httpx.Request, variables: dict[str, Any]) -> None:
        headers, params = self.render(variables)
        request.headers.update(headers)
        if params:
            request.url = request.url.copy_merge_params(params)


@dataclass
class AuthRuntime:
    """What building one connection's auth needs."""

    connector: str
    connection: str
    context: dict[str, Any]  # the connection's template context (a refresh updates credentials)
    credentials: Credentials
    clock: Clock
    is_auth_expired: Callable[[httpx.Response], bool]
    store: TokenStore | None = None  # where refreshed tokens persist (a stored connection)
    on_refresh: Callable[[Credentials], None] | None = None

    def variables(self, values: dict[str, Any]) -> dict[str, Any]:
        return {**{k: self.context[k] for k in AUTH_ROOTS}, **values}


@dataclass
class RevokeSpec:
    method: str
    url: Template
    form: dict[str, Template]


@dataclass(kw_only=True)
class AuthMethod:
    """One way to authenticate, as `auth.<name>` declares it. Subclasses are the kinds."""

    type: ClassVar[str]
    authorizes: ClassVar[bool] = False  # `connect` runs an authorization flow in a browser
    default_secrets: ClassVar[dict[str, str]] = {}

    name: str
    description: str = ""
    secrets: dict[str, str] = field(default_factory=dict)  # name -> what it is (the prompt)

    @classmethod
    def compile(cls, c: Compiler, path: YamlPath, name: str, spec: dict[str, Any],
                roots: Roots) -> AuthMethod | None:
        raise NotImplementedError

    def build(self, rt: AuthRuntime) -> tuple[httpx.Auth, str | None]:
        """The connection's httpx auth, and what to tell the user when it is refused."""
        raise NotImplementedError

    @property
    def credential_settings(self) -> set[str]:
        """The `credentials.*` names its token responses and callbacks set."""
        return set()

    def env_variables(self, connector: str) -> dict[str, list[str]]:
        """Per secret, the environment variables it may come from, in order: its own name
        (`CRM_ENGINE_ACME_TOKEN`, `CRM_ENGINE_ACME_API_KEY`), and for a method's only
        secret also `CRM_ENGINE_<CONNECTOR>_TOKEN`, which stands for `--token`."""
        prefix = f"CRM_ENGINE_{connector.upper()}_"
        out = {name: [prefix + name.upper()] for name in self.secrets}
        if len(out) == 1:
            names = next(iter(out.values()))
            if names[0] != prefix + "TOKEN":
                names.append(prefix + "TOKEN")
        return out

    def credentials_from_token(self, token: str) -> Credentials:
        """Credentials from one ready token or key (`--token`)."""
        if len(self.secrets) != 1:
            raise InputError("token", f"auth method {self.name!r} needs "
                                      f"{_and(self.secrets)}, not one token")
        return Credentials(secrets={next(iter(self.secrets)): token})

    def credentials_from_secrets(self, values: dict[str, str]) -> Credentials:
        """Credentials from the method's secrets, each given (and none other)."""
        unknown = sorted(set(values) - set(self.secrets))
        if unknown:
            # (every kind that takes secrets declares at least one: the schema says so)
            raise InputError("secrets", f"auth method {self.name!r} takes {_and(self.secrets)}, "
                                        f"not {', '.join(unknown)}")
        missing = [n for n in self.secrets if not values.get(n)]
        if missing:
            raise InputError("secrets", f"auth method {self.name!r} needs {_and(missing)}")
        return Credentials(secrets=dict(values))

    def disconnect(self, connector: Any, context: dict[str, Any], credentials: Credentials,
                   client: httpx.Client) -> bool:
        """Undo at the vendor what `connect` did (revoke tokens), where it can."""
        return False


def _and(names: Any) -> str:
    names = list(names)
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def _variable(name: str) -> str:
    return "{{ " + name + " }}"


def _compile_value(c: Compiler, path: YamlPath, source: str, roots: Roots,
                   secret_names: set[str], used: set[str]) -> AuthValue | None:
    template = c.template(path, source, roots)
    if template is None:
        return None
    read = {chain[0] for chain in referenced_names(source)} & secret_names
    used.update(read)
    return AuthValue(template, bool(read))


class SecretKind(AuthMethod):
    """A kind whose connection holds fixed secrets: its headers and query parameters are
    rendered once per connection, registered as secrets, and sent as they are."""

    def render(self, variables: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        raise NotImplementedError

    @classmethod
    def declared_secrets(cls, c: Compiler, path: YamlPath,
                         spec: dict[str, Any]) -> dict[str, str]:
        declared = dict(spec.get("secrets") or cls.default_secrets)
        for name in declared:
            if name in (*AUTH_ROOTS, "escapes") or name in TEXT_ENV.globals:
                c.add(path + ("secrets", name), f"{name!r} cannot name a secret: auth templates "
                                                f"read {', '.join(AUTH_ROOTS)} by that name")
        return declared

    @staticmethod
    def roots(method_secrets: dict[str, str], roots: Roots) -> Roots:
        return {**{k: roots[k] for k in AUTH_ROOTS}, **dict.fromkeys(method_secrets)}

    @staticmethod
    def check_used(c: Compiler, path: YamlPath, declared: dict[str, str],
                   used: set[str]) -> None:
        for name in declared:
            if name not in used:
                c.add(path + ("secrets", name), f"secret {name!r} is declared but no template "
                                                f"of this method reads it")

    def secret_values(self, credentials: Credentials) -> dict[str, str]:
        values = dict(credentials.secrets)
        if not values and credentials.access_token and len(self.secrets) == 1:
            # A connection stored before secrets had names kept its one token here.
            values = {next(iter(self.secrets)): credentials.access_token}
        return values

    def build(self, rt: AuthRuntime) -> tuple[httpx.Auth, str | None]:
        values = self.secret_values(rt.credentials)
        missing = [n for n in self.secrets if not values.get(n)]
        if missing:
            raise InputError("connection", f"connection {rt.connection!r} has no "
                                           f"{_and(missing)} for auth method {self.name!r}: run "
                                           f"`crm-engine connect {rt.connector} --auth "
                                           f"{self.name}`")
        for value in values.values():
            secrets.register(value)
        headers, params = self.render(rt.variables({n: values[n] for n in self.secrets}))
        return StaticAuth(self.name, headers, params), self.refused_hint(rt.connector)

    def refused_hint(self, connector: str) -> str:
        variables = self.env_variables(connector)
        if len(variables) == 1:
            name = next(iter(variables))
            return (f"the {name.replace('_', ' ').replace('api ', 'API ')} was refused; check "
                    f"it (--token, {variables[name][0]}) or run `crm-engine connect "
                    f"{connector}`")
        first = ", ".join(v[0] for v in variables.values())
        return (f"the credentials were refused; check them ({first}) or run `crm-engine "
                f"connect {connector} --auth {self.name}`")


@dataclass(kw_only=True)
class Bearer(SecretKind):
    """`Authorization: Bearer <token>` (or another scheme, such as `Token`)."""

    type: ClassVar[str] = "bearer"
    default_secrets: ClassVar[dict[str, str]] = {"token": "access token"}

    scheme: str = "Bearer"

    @classmethod
    def compile(cls, c: Compiler, path: YamlPath, name: str, spec: dict[str, Any],
                roots: Roots) -> Bearer | None:
        return cls(name=name, description=spec.get("description", ""),
                   secrets=cls.declared_secrets(c, path, spec),
                   scheme=spec.get("scheme", "Bearer"))

    def render(self, variables: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        value = f"{self.scheme} {variables[next(iter(self.secrets))]}"
        secrets.register(value)
        return {"Authorization": value}, {}


@dataclass(kw_only=True)
class ApiKey(SecretKind):
    """An API key in one header or query parameter."""

    type: ClassVar[str] = "api_key"
    default_secrets: ClassVar[dict[str, str]] = {"api_key": "API key"}

    placement: Placement

    @classmethod
    def compile(cls, c: Compiler, path: YamlPath, name: str, spec: dict[str, Any],
                roots: Roots) -> ApiKey | None:
        declared = cls.declared_secrets(c, path, spec)
        if "value" not in spec and len(declared) != 1:
            c.add(path, "`value` is required when a method has more than one secret")
            return None
        source = spec.get("value", _variable(next(iter(declared))))
        used: set[str] = set()
        value = _compile_value(c, path + ("value",), source, cls.roots(declared, roots),
                               set(declared), used)
        cls.check_used(c, path, declared, used)
        if value is None:
            return None
        return cls(name=name, description=spec.get("description", ""), secrets=declared,
                   placement=Placement(spec.get("header"), spec.get("query"), value))

    def render(self, variables: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        return self.placement.render(variables)


@dataclass(kw_only=True)
class Basic(SecretKind):
    """HTTP Basic: `username` and `password` templates (an API key as the username and an
    empty password is `username: "{{ api_key }}"`, `password: ""`)."""

    type: ClassVar[str] = "basic"
    default_secrets: ClassVar[dict[str, str]] = {"username": "username", "password": "password"}

    username: AuthValue
    password: AuthValue

    @classmethod
    def compile(cls, c: Compiler, path: YamlPath, name: str, spec: dict[str, Any],
                roots: Roots) -> Basic | None:
        declared = cls.declared_secrets(c, path, spec)
        used: set[str] = set()
        scope = cls.roots(declared, roots)
        parts = {key: _compile_value(c, path + (key,), spec.get(key, _variable(key)), scope,
                                     set(declared), used)
                 for key in ("username", "password")}
        cls.check_used(c, path, declared, used)
        if None in parts.values():
            return None
        return cls(name=name, description=spec.get("description", ""), secrets=declared,
                   **parts)  # type: ignore[arg-type]

    def render(self, variables: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        pair = f"{self.username.render(variables)}:{self.password.render(variables)}"
        encoded = base64.b64encode(pair.encode()).decode()
        secrets.register(encoded)  # whatever went in, the header is a credential
        return {"Authorization": f"Basic {encoded}"}, {}


@dataclass(kw_only=True)
class Custom(SecretKind):
    """Any set of headers and query parameters, templates over the secrets and settings."""

    type: ClassVar[str] = "custom"

    headers: dict[str, AuthValue]
    query: dict[str, AuthValue]

    @classmethod
    def compile(cls, c: Compiler, path: YamlPath, name: str, spec: dict[str, Any],
                roots: Roots) -> Custom | None:
        declared = cls.declared_secrets(c, path, spec)
        used: set[str] = set()
        scope = cls.roots(declared, roots)
        parts: dict[str, dict[str, AuthValue | None]] = {
            key: {item: _compile_value(c, path + (key, item), source, scope, set(declared),
                                       used)
                  for item, source in (spec.get(key) or {}).items()}
            for key in ("headers", "query")}
        cls.check_used(c, path, declared, used)
        if any(v is None for part in parts.values() for v in part.values()):
            return None
        return cls(name=name, description=spec.get("description", ""), secrets=declared,
                   **parts)  # type: ignore[arg-type]

    def render(self, variables: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        return ({k: v.render(variables) for k, v in self.headers.items()},
                {k: v.render(variables) for k, v in self.query.items()})


@dataclass(kw_only=True)
class OAuth2(AuthMethod):
    """OAuth 2.0, authorization code: `connect` runs the flow (engine.oauth); requests carry
    the access token (`apply`), refreshed ahead of expiry and once on `auth_expired`. Without
    a refresh token (a token pasted with `--token`) the access token is sent as it is."""

    type: ClassVar[str] = "oauth2"
    authorizes: ClassVar[bool] = True

    authorize_url: Template
    token_url: Template
    apply: Placement
    revoke: RevokeSpec | None = None
    scopes: list[str] = field(default_factory=list)
    scope_separator: str = " "
    pkce: bool = False
    client_auth: str = "body"
    authorize_params: dict[str, str] = field(default_factory=dict)
    token_lifetime_seconds: int | None = None
    settings: dict[str, Getter] = field(default_factory=dict)
    callback_settings: dict[str, str] = field(default_factory=dict)  # setting -> query param

    @classmethod
    def compile(cls, c: Compiler, path: YamlPath, name: str, spec: dict[str, Any],
                roots: Roots) -> OAuth2 | None:
        url_roots = {k: roots[k] for k in AUTH_ROOTS}
        token_roots = {**url_roots, "token": None}
        apply = spec.get("apply") or {"header": "Authorization", "value": "Bearer {{ token }}"}
        value = _compile_value(c, path + ("apply", "value"), apply.get("value", "{{ token }}"),
                               token_roots, {"token"}, set())
        urls = {key: c.template(path + (key,), spec[key], url_roots)
                for key in ("authorize_url", "token_url")}
        revoke = None
        if "revoke" in spec:
            raw = spec["revoke"]
            url = c.template(path + ("revoke", "url"), raw["url"], token_roots)
            form = {k: c.template(path + ("revoke", "form", k), v, token_roots)
                    for k, v in (raw.get("form") or {}).items()}
            if url is not None and all(form.values()):
                revoke = RevokeSpec(raw["method"], url, form)  # type: ignore[arg-type]
        settings = {setting: c.getter(path + ("settings", setting), expr)
                    for setting, expr in (spec.get("settings") or {}).items()}
        if value is None or None in urls.values() or None in settings.values():
            return None
        return cls(
            name=name, description=spec.get("description", ""),
            authorize_url=urls["authorize_url"],  # type: ignore[arg-type]
            token_url=urls["token_url"],  # type: ignore[arg-type]
            apply=Placement(apply.get("header"), apply.get("query"), value),
            revoke=revoke,
            scopes=list(spec.get("scopes", [])),
            scope_separator=spec.get("scope_separator", " "),
            pkce=spec.get("pkce", False),
            client_auth=spec.get("client_auth", "body"),
            authorize_params=dict(spec.get("authorize_params") or {}),
            token_lifetime_seconds=spec.get("token_lifetime_seconds"),
            settings=settings,  # type: ignore[arg-type]
            callback_settings=dict(spec.get("callback_settings") or {}),
        )

    @property
    def credential_settings(self) -> set[str]:
        return {*self.settings, *self.callback_settings}

    def env_variables(self, connector: str) -> dict[str, list[str]]:
        prefix = f"CRM_ENGINE_{connector.upper()}_"
        return {"client_secret": [prefix + "CLIENT_SECRET"]}

    def credentials_from_token(self, token: str) -> Credentials:
        return Credentials(access_token=token)  # pasted: sent as it is, never refreshed

    def credentials_from_secrets(self, values: dict[str, str]) -> Credentials:
        raise InputError("auth_method", f"{self.name!r} is OAuth 2.0: run `crm-engine connect` "
                                        f"to authorize it")

    def applier(self, rt: AuthRuntime) -> ApplyToken:
        def apply(request: httpx.Request, token: str) -> None:
            self.apply.apply(request, rt.variables({"token": token}))

        return apply

    def build(self, rt: AuthRuntime) -> tuple[httpx.Auth, str | None]:
        creds = rt.credentials
        if creds.refresh_token:
            return OAuth2Auth(
                connector=rt.connector, method=self, credentials=creds,
                token_url=self.token_url.render(rt.context), is_auth_expired=rt.is_auth_expired,
                clock=rt.clock, apply=self.applier(rt), store=rt.store,
                on_refresh=rt.on_refresh), None
        if not creds.access_token:
            raise InputError("connection", f"connection {rt.connection!r} has no access token")
        headers, params = self.apply.render(rt.variables({"token": creds.access_token}))
        hint = (f"the token was refused; check it (--token, CRM_ENGINE_{rt.connector.upper()}"
                f"_TOKEN) or run `crm-engine connect {rt.connector}`")
        return StaticAuth(self.name, headers, params), hint

    def disconnect(self, connector: Any, context: dict[str, Any], credentials: Credentials,
                   client: httpx.Client) -> bool:
        return oauth.revoke(connector, self, context, credentials, client=client)


AUTH_KINDS: dict[str, type[AuthMethod]] = {
    kind.type: kind for kind in (OAuth2, Bearer, ApiKey, Basic, Custom)
}
