"""OAuth 2.0 state for the emulators: codes, expiring access tokens, refresh tokens.

Each vendor maps this onto its own endpoints, parameter rules and error bodies.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.kit.core import Clock


class OAuthError(Exception):
    """``reason`` is one of the class constants; the vendor turns it into its error body."""

    UNKNOWN_CLIENT = "unknown_client"
    BAD_CLIENT_SECRET = "bad_client_secret"
    BAD_CODE = "bad_code"
    REDIRECT_MISMATCH = "redirect_mismatch"
    BAD_REFRESH_TOKEN = "bad_refresh_token"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class AccessToken:
    token: str
    client_id: str | None
    scopes: tuple[str, ...] | None  # None: unrestricted (static tokens)
    expires_at: float | None  # None: never expires
    refresh_token: str | None


@dataclass
class TokenGrant:
    access_token: str
    refresh_token: str
    expires_in: int
    scopes: tuple[str, ...]


@dataclass
class TokenCheck:
    """Result of checking a bearer token: ``status`` is "valid", "expired" or "unknown"."""

    status: str
    token: AccessToken | None = None
    expired_seconds_ago: float = 0.0


@dataclass
class _AuthCode:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class _RefreshToken:
    client_id: str
    scopes: tuple[str, ...]


class OAuthProvider:
    """Authorization codes (auto-consent), expiring access tokens, refresh tokens (optionally
    rotating), revocation and static never-expiring tokens, on the App's clock."""

    def __init__(
        self,
        *,
        clients: dict[str, str],
        clock: Clock,
        token_lifetime: float = 3600,
        code_lifetime: float = 600,
        rotate_refresh_tokens: bool = False,
        static_tokens: Iterable[str] = (),
        token_prefix: str = "",
    ) -> None:
        self.clients = dict(clients)
        self.clock = clock
        self.token_lifetime = token_lifetime
        self.code_lifetime = code_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.token_prefix = token_prefix
        self._codes: dict[str, _AuthCode] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._access_tokens: dict[str, AccessToken] = {}
        self._lock = threading.Lock()
        for token in static_tokens:
            self._access_tokens[token] = AccessToken(token, None, None, None, None)

    def _new_token(self, kind: str) -> str:
        return f"{self.token_prefix}{kind}-{secrets.token_urlsafe(24)}"

    def _check_client(self, client_id: str | None, client_secret: str | None) -> str:
        if client_id not in self.clients:
            raise OAuthError(OAuthError.UNKNOWN_CLIENT)
        if client_secret is not None and client_secret != self.clients[client_id]:
            raise OAuthError(OAuthError.BAD_CLIENT_SECRET)
        return client_id

    def authorize(self, client_id: str | None, redirect_uri: str, scopes: Iterable[str]) -> str:
        """Auto-consent: returns an authorization code for the redirect."""
        self._check_client(client_id, None)
        code = self._new_token("code")
        with self._lock:
            self._codes[code] = _AuthCode(
                client_id, redirect_uri, tuple(scopes), self.clock.now() + self.code_lifetime
            )
        return code

    def exchange_code(
        self, client_id: str | None, client_secret: str | None, code: str | None, redirect_uri: str
    ) -> TokenGrant:
        client_id = self._check_client(client_id, client_secret or "")
        with self._lock:
            grant = self._codes.get(code or "")
            if grant is None or grant.client_id != client_id:
                raise OAuthError(OAuthError.BAD_CODE)
            if grant.expires_at <= self.clock.now():
                del self._codes[code]
                raise OAuthError(OAuthError.BAD_CODE)
            if grant.redirect_uri != redirect_uri:
                raise OAuthError(OAuthError.REDIRECT_MISMATCH)
            del self._codes[code]  # single use
            refresh = self._new_token("refresh")
            self._refresh_tokens[refresh] = _RefreshToken(client_id, grant.scopes)
            return self._issue_access(client_id, grant.scopes, refresh)

    def refresh(
        self, client_id: str | None, client_secret: str | None, refresh_token: str | None
    ) -> TokenGrant:
        client_id = self._check_client(client_id, client_secret or "")
        with self._lock:
            stored = self._refresh_tokens.get(refresh_token or "")
            if stored is None or stored.client_id != client_id:
                raise OAuthError(OAuthError.BAD_REFRESH_TOKEN)
            if self.rotate_refresh_tokens:
                del self._refresh_tokens[refresh_token]
                refresh_token = self._new_token("refresh")
                self._refresh_tokens[refresh_token] = stored
            return self._issue_access(client_id, stored.scopes, refresh_token)

    def issue(self, client_id: str, scopes: Iterable[str]) -> TokenGrant:
        """Test hook: a fresh token pair without the authorization-code round trip."""
        self._check_client(client_id, None)
        with self._lock:
            refresh = self._new_token("refresh")
            self._refresh_tokens[refresh] = _RefreshToken(client_id, tuple(scopes))
            return self._issue_access(client_id, tuple(scopes), refresh)

    def _issue_access(
        self, client_id: str, scopes: tuple[str, ...], refresh_token: str
    ) -> TokenGrant:
        now = self.clock.now()
        token = self._new_token("access")
        self._access_tokens[token] = AccessToken(
            token, client_id, scopes, now + self.token_lifetime, refresh_token
        )
        return TokenGrant(token, refresh_token, int(self.token_lifetime), scopes)

    def check(self, access_token: str | None) -> TokenCheck:
        token = self._access_tokens.get(access_token or "")
        if token is None:
            return TokenCheck("unknown")
        if token.expires_at is not None:
            overdue = self.clock.now() - token.expires_at
            if overdue >= 0:
                return TokenCheck("expired", token, overdue)
        return TokenCheck("valid", token)

    def refresh_token_info(self, refresh_token: str) -> tuple[str, tuple[str, ...]] | None:
        """(client_id, scopes) of a live refresh token."""
        stored = self._refresh_tokens.get(refresh_token)
        return (stored.client_id, stored.scopes) if stored else None

    def revoke_refresh_token(self, refresh_token: str) -> bool:
        """Revoke a refresh token and the access tokens minted from it."""
        with self._lock:
            if self._refresh_tokens.pop(refresh_token, None) is None:
                return False
            for token in [
                t for t, a in self._access_tokens.items() if a.refresh_token == refresh_token
            ]:
                del self._access_tokens[token]
            return True

    def revoke_access_token(self, access_token: str) -> bool:
        with self._lock:
            return self._access_tokens.pop(access_token, None) is not None

    def expire_all(self) -> None:
        """Test hook: every expiring access token expires now (static tokens are untouched)."""
        now = self.clock.now()
        with self._lock:
            for token in self._access_tokens.values():
                if token.expires_at is not None:
                    token.expires_at = min(token.expires_at, now)
