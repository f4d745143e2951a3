"""Authentication as httpx auth flows; engine.authkinds builds them from a connector's YAML.

`StaticAuth` sends fixed headers and query parameters (a bearer token, an API key, a Basic
header, a custom set, a pasted access token). `OAuth2Auth` also refreshes: ahead of expiry
(5-minute margin), and once when a response is classified as `auth_expired` (a 401, or the
vendor code the YAML names), after which the request is retried once. A second auth failure is
returned to the caller as it is: never a loop.
"""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import orjson

from engine import secrets
from engine.clock import Clock
from engine.errors import CrmError
from engine.transport import excerpt

if TYPE_CHECKING:
    from engine.authkinds import OAuth2

REFRESH_MARGIN_SECONDS = 300


@dataclass
class Credentials:
    """What a connection authenticates with. Never logged: reprs hide every secret."""

    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None  # wall-clock seconds
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    settings: dict[str, Any] = field(default_factory=dict)  # from the token response
    # The named secrets of a method without an authorization flow (api_key, username, ...).
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for value in (self.access_token, self.refresh_token, self.client_secret,
                      *self.secrets.values()):
            secrets.register(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "settings": self.settings,
            "secrets": self.secrets,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Credentials:
        known = {k: data.get(k) for k in ("access_token", "refresh_token", "expires_at",
                                          "client_id", "client_secret")}
        return cls(**known, settings=dict(data.get("settings") or {}),
                   secrets=dict(data.get("secrets") or {}))


class StaticAuth(httpx.Auth):
    """The same headers and query parameters on every request. Their values were rendered from
    secrets and registered (engine.authkinds); reprs show only their names."""

    def __init__(self, method: str, headers: dict[str, str], params: dict[str, str]):
        self._method = method
        self._headers = {k: secrets.Secret(v) for k, v in headers.items()}
        self._params = {k: secrets.Secret(v) for k, v in params.items()}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        for name, value in self._headers.items():
            request.headers[name] = value
        if self._params:
            request.url = request.url.copy_merge_params(self._params)
        yield request

    def __repr__(self) -> str:
        return (f"StaticAuth(method={self._method!r}, headers={sorted(self._headers)}, "
                f"params={sorted(self._params)})")


# Puts an access token on a request (the method's `apply`, rendered with the token).
ApplyToken = Callable[[httpx.Request, str], None]


# Decides whether a response means "the access token expired" (the YAML's error rules).
AuthExpiredCheck = Callable[[httpx.Response], bool]


class TokenStore(Protocol):
    """Where a connection's credentials persist, shared with other processes."""

    def locked(self) -> AbstractContextManager[None]: ...
    def load(self) -> Credentials | None: ...
    def save(self, credentials: Credentials) -> None: ...


class MemoryTokenStore:
    """For connections that are not stored (a pasted token): refreshes live in memory."""

    def __init__(self) -> None:
        self.credentials: Credentials | None = None

    def locked(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def load(self) -> Credentials | None:
        return self.credentials

    def save(self, credentials: Credentials) -> None:
        self.credentials = credentials


class OAuth2Auth(httpx.Auth):
    requires_response_body = True  # vendor codes such as INVALID_SESSION_ID live in the body

    def __init__(self, *, connector: str, method: OAuth2, credentials: Credentials,
                 token_url: str, is_auth_expired: AuthExpiredCheck, clock: Clock,
                 apply: ApplyToken, store: TokenStore | None = None,
                 on_refresh: Callable[[Credentials], None] | None = None):
        self._connector = connector
        self._method = method
        self._apply = apply
        self.credentials = credentials
        self._token_url = token_url
        self._is_auth_expired = is_auth_expired
        self._clock = clock
        self._store = store or MemoryTokenStore()
        self._on_refresh = on_refresh
        self._lock = threading.Lock()
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"OAuth2Auth(connector={self._connector!r}, method={self._method.name!r})"

    def _expires_soon(self, credentials: Credentials | None = None) -> bool:
        """Due for a refresh: within the margin of its expiry, or no access token at all (a
        connection stored with its refresh token only)."""
        creds = credentials or self.credentials
        if not creds.access_token:
            return True
        expires_at = creds.expires_at
        return expires_at is not None and expires_at - self._clock.wall() < REFRESH_MARGIN_SECONDS

    def _can_refresh(self) -> bool:
        return bool(self.credentials.refresh_token)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._expires_soon() and self._can_refresh():
            yield from self._refresh(self.credentials.access_token)
        # A refresh token is what this auth is built on, so there is an access token now: a
        # refresh that fails raises.
        used_token = self._access_token()
        self._apply(request, used_token)
        response = yield request
        if self._is_auth_expired(response) and self._can_refresh():
            yield from self._refresh(used_token)
            self._apply(request, self._access_token())
            yield request  # retried once; a second failure goes back to the caller

    def _access_token(self) -> str:
        token = self.credentials.access_token
        assert token  # an OAuth2Auth always has, or first refreshes, an access token
        return token

    def _refresh(self, stale_token: str | None) -> Generator[httpx.Request, httpx.Response, None]:
        """Refresh once, under a lock per connection shared by threads and processes. Whoever
        gets the lock second finds fresh credentials in the store and uses them, so a rotated
        refresh token is never spent twice (which some vendors punish by revoking everything)."""
        with self._lock, self._store.locked():
            stored = self._store.load()
            if stored is not None and stored.refresh_token:
                if stored.access_token != stale_token and not self._expires_soon(stored):
                    self._adopt(stored)
                    return
                self.credentials = stored  # the newest refresh token, if another rotated it
            response = yield self._refresh_request()
            response.read()
            fresh = self._accept_token_response(response)
            self._store.save(fresh)  # persisted before the new access token is used
            self._adopt(fresh)
            self.refreshes += 1

    def _adopt(self, credentials: Credentials) -> None:
        self.credentials = credentials
        if self._on_refresh is not None:
            self._on_refresh(credentials)

    def _refresh_request(self) -> httpx.Request:
        creds = self.credentials
        form = {"grant_type": "refresh_token", "refresh_token": creds.refresh_token or ""}
        headers = {"Accept": "application/json"}
        if self._method.client_auth == "basic":
            pair = f"{creds.client_id or ''}:{creds.client_secret or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
            secrets.register(headers["Authorization"][6:])  # the base64 of the client secret
        else:
            form["client_id"] = creds.client_id or ""
            if creds.client_secret:  # a public client has none (RFC 6749 2.3.1: omit it)
                form["client_secret"] = creds.client_secret
        return httpx.Request("POST", self._token_url, data=form, headers=headers)

    def _accept_token_response(self, response: httpx.Response) -> Credentials:
        try:
            body = orjson.loads(response.content) if response.content else {}
        except orjson.JSONDecodeError:
            body = {"error": excerpt(response.text)}
        token = body.get("access_token") if isinstance(body, dict) else None
        if token and response.status_code < 400:
            return updated_credentials(self.credentials, body, self._method, self._clock)
        code = body.get("error") or body.get("status") if isinstance(body, dict) else None
        detail = body.get("error_description") or body.get("message") if isinstance(
            body, dict) else None
        reason = f"token refresh failed ({code or 'no access_token'}" \
                 f"{': ' + str(detail) if detail else ''})"
        if response.status_code == 429 or response.status_code >= 500:
            # The token endpoint is having trouble; the authorization may be fine.
            raise CrmError(self._connector, "oauth.refresh", secrets.redact(reason),
                           status=response.status_code, kind="transient", retryable=True)
        raise CrmError(
            self._connector, "oauth.refresh",
            secrets.redact(f"{reason}; the authorization is no longer valid: run "
                           f"`crm-engine connect {self._connector}` again"),
            status=response.status_code, code=str(code) if code else None,
            kind="auth_revoked", raw_body=secrets.redact_deep(body),
        )


def updated_credentials(old: Credentials, body: dict[str, Any], method: OAuth2,
                        clock: Clock) -> Credentials:
    """Credentials after a token response. A response without a refresh token (some vendors
    never rotate) keeps the old one; settings such as an API host are re-read every time."""
    lifetime = body.get("expires_in", method.token_lifetime_seconds)
    try:
        lifetime = float(lifetime) if lifetime is not None else None  # some send "3600"
    except (TypeError, ValueError):
        lifetime = method.token_lifetime_seconds
    settings = dict(old.settings)
    for name, getter in method.settings.items():
        value = getter(body)
        if value is not None:
            settings[name] = value
    return Credentials(
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token") or old.refresh_token,
        expires_at=clock.wall() + lifetime if lifetime else None,
        client_id=old.client_id,
        client_secret=old.client_secret,
        settings=settings,
    )
