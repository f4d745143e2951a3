"""Salesforce OAuth 2.0 web-server flow (CONTRACTS 2.1) on the generic OAuthProvider.

Served on the same host as the API (the sandbox is both login.salesforce.com and the
instance). Salesforce specifics layered on top of sandbox.kit.oauth here, because core lacks them:
PKCE (S256) checks, refresh tokens only when the ``refresh_token``/``offline_access`` scope is
granted, replay of a rotated refresh token revoking the whole grant, sessions that time out
after inactivity, and HTTP Basic client authentication. Token responses have ``instance_url``
and ``signature`` and never ``expires_in``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Any

from sandbox.kit.core import (
    AccessToken,
    App,
    Clock,
    OAuthError,
    OAuthProvider,
    Request,
    Response,
    TokenCheck,
    TokenGrant,
)
from sandbox.kit.oauth_http import authorize_redirect, basic_auth
from sandbox.salesforce.errors import oauth_error

# Granted when the authorize request names no scope: what a typical connected app is set up
# with (Salesforce then grants the app's configured scopes).
DEFAULT_SCOPES = ("api", "refresh_token", "id")
REFRESH_SCOPES = {"refresh_token", "offline_access"}
BAD_VERIFIER = "bad_verifier"

# OAuthError reason -> (error, error_description) as Salesforce words them (CONTRACTS 2.1).
TOKEN_ERRORS = {
    OAuthError.UNKNOWN_CLIENT: ("invalid_client_id", "client identifier invalid"),
    OAuthError.BAD_CLIENT_SECRET: ("invalid_client", "invalid client credentials"),
    OAuthError.BAD_CODE: ("invalid_grant", "expired authorization code"),
    OAuthError.REDIRECT_MISMATCH: (
        "redirect_uri_mismatch",
        "redirect_uri must match configuration",
    ),
    OAuthError.BAD_REFRESH_TOKEN: ("invalid_grant", "expired access/refresh token"),
    BAD_VERIFIER: ("invalid_grant", "invalid code verifier"),
}


class SalesforceOAuth(OAuthProvider):
    """OAuthProvider plus PKCE, scope-dependent refresh tokens, rotation replay detection and
    inactivity-based session expiry."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._challenges: dict[str, str] = {}  # authorization code -> S256 code_challenge
        self._family: dict[str, str] = {}  # live refresh token -> first token of its grant
        self._retired: dict[str, str] = {}  # rotated-away refresh token -> family

    def authorize_pkce(
        self, client_id: str | None, redirect_uri: str, scopes: Iterable[str], challenge: str | None
    ) -> str:
        code = self.authorize(client_id, redirect_uri, scopes)
        if challenge:
            self._challenges[code] = challenge
        return code

    def exchange(
        self,
        client_id: str | None,
        client_secret: str | None,
        code: str | None,
        redirect_uri: str,
        verifier: str | None,
    ) -> TokenGrant:
        challenge = self._challenges.get(code or "")
        if challenge is not None:
            digest = hashlib.sha256((verifier or "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
                raise OAuthError(BAD_VERIFIER)
        grant = self.exchange_code(client_id, client_secret, code, redirect_uri)
        self._challenges.pop(code or "", None)  # the code is spent
        return self._scope_refresh_token(grant)

    def issue(self, client_id: str, scopes: Iterable[str]) -> TokenGrant:
        return self._scope_refresh_token(super().issue(client_id, scopes))

    def _scope_refresh_token(self, grant: TokenGrant) -> TokenGrant:
        # CONTRACTS 2.1: a refresh token only when refresh_token/offline_access was granted.
        if REFRESH_SCOPES.isdisjoint(grant.scopes):
            with self._lock:
                self._refresh_tokens.pop(grant.refresh_token, None)
            grant.refresh_token = ""
        else:
            self._family[grant.refresh_token] = grant.refresh_token
        return grant

    def refresh(
        self, client_id: str | None, client_secret: str | None, refresh_token: str | None
    ) -> TokenGrant:
        family = self._retired.get(refresh_token or "")
        if family is not None:
            # CONTRACTS 2.1: replaying a rotated refresh token revokes the grant's tokens.
            live = [token for token, first in self._family.items() if first == family]
            for token in live:
                self.revoke_refresh_token(token)
            raise OAuthError(OAuthError.BAD_REFRESH_TOKEN)
        grant = super().refresh(client_id, client_secret, refresh_token)
        if grant.refresh_token != refresh_token and refresh_token:  # rotated
            family = self._family.pop(refresh_token, refresh_token)
            self._retired[refresh_token] = family
            self._family[grant.refresh_token] = family
        return grant

    def revoke_refresh_token(self, refresh_token: str) -> bool:
        self._family.pop(refresh_token, None)
        return super().revoke_refresh_token(refresh_token)

    def touch(self, check: TokenCheck) -> None:
        """Session timeout is inactivity-based (CONTRACTS 2.1): a use in the second half of
        the timeout extends the session by a full timeout, as Salesforce does."""
        token: AccessToken | None = check.token
        if token is None or token.expires_at is None:
            return
        now = self.clock.now()
        if token.expires_at - now < self.token_lifetime / 2:
            token.expires_at = now + self.token_lifetime


def signature(client_secret: str, identity_url: str, issued_at: str) -> str:
    """Base64 HMAC-SHA256 of id + issued_at keyed with the client secret (Salesforce's
    documented token-response signature)."""
    digest = hmac.new(
        client_secret.encode(), (identity_url + issued_at).encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def _basic_credentials(request: Request) -> tuple[str | None, str | None]:
    pair = basic_auth(request)
    if pair is None:
        return None, None
    client_id, _, client_secret = pair.partition(":")
    return client_id, client_secret


class OAuthRoutes:
    """Registers /services/oauth2/* and the identity URL on the App ("oauth" fault group)."""

    def __init__(
        self,
        app: App,
        oauth: SalesforceOAuth,
        *,
        clock: Clock,
        base_url: Callable[[Request], str],
        org_id: str,
        user: Callable[[], dict[str, Any]],
    ) -> None:
        self.oauth = oauth
        self.clock = clock
        self.base_url = base_url
        self.org_id = org_id
        self.user = user
        app.add_route("GET", r"/services/oauth2/authorize/?", self.authorize,
                      name="oauth.authorize", group="oauth")  # fmt: skip
        app.add_route("POST", r"/services/oauth2/token/?", self.token,
                      name="oauth.token", group="oauth")  # fmt: skip
        for method in ("POST", "GET"):
            app.add_route(method, r"/services/oauth2/revoke/?", self.revoke,
                          name="oauth.revoke", group="oauth")  # fmt: skip
            app.add_route(method, r"/services/oauth2/userinfo/?", self.userinfo,
                          name="oauth.userinfo", group="oauth")  # fmt: skip
        app.add_route("GET", r"/id/(?P<org>[^/]+)/(?P<user_id>[^/]+)/?", self.identity,
                      name="oauth.identity", group="oauth")  # fmt: skip

    def identity_url(self, request: Request) -> str:
        return f"{self.base_url(request)}/id/{self.org_id}/{self.user()['user_id']}"

    # -- authorize -------------------------------------------------------------------------

    def authorize(self, request: Request) -> Response:
        # CONTRACTS 2.1: response_type=code, client_id, redirect_uri, optional scope (space
        # separated), state, code_challenge (S256). Consent is automatic.
        client_id = request.arg("client_id")
        redirect_uri = request.arg("redirect_uri")
        if client_id not in self.oauth.clients:
            # An unknown client gets an error page, never a redirect (it cannot be trusted).
            return oauth_error(*TOKEN_ERRORS[OAuthError.UNKNOWN_CLIENT])
        if not redirect_uri:
            return oauth_error(*TOKEN_ERRORS[OAuthError.REDIRECT_MISMATCH])
        if request.arg("response_type") != "code":
            return authorize_redirect(request, redirect_uri, {
                "error": "unsupported_response_type",
                "error_description": "response type not supported",
            })  # fmt: skip
        method = request.arg("code_challenge_method") or "S256"
        if method != "S256":
            return authorize_redirect(request, redirect_uri, {
                "error": "invalid_request",
                "error_description": "invalid code_challenge_method",
            })  # fmt: skip
        scopes = (request.arg("scope") or "").split() or list(DEFAULT_SCOPES)
        code = self.oauth.authorize_pkce(
            client_id, redirect_uri, dict.fromkeys(scopes), request.arg("code_challenge")
        )
        return authorize_redirect(request, redirect_uri, {"code": code})

    # -- token -----------------------------------------------------------------------------

    def token(self, request: Request) -> Response:
        fields = request.form()
        # Client credentials in the body or as HTTP Basic (CONTRACTS 2.1).
        basic_id, basic_secret = _basic_credentials(request)
        client_id = fields.get("client_id") or basic_id
        client_secret = fields.get("client_secret") or basic_secret
        grant_type = fields.get("grant_type")
        try:
            if grant_type == "authorization_code":
                grant = self.oauth.exchange(
                    client_id,
                    client_secret,
                    fields.get("code"),
                    fields.get("redirect_uri", ""),
                    fields.get("code_verifier"),
                )
            elif grant_type == "refresh_token":
                grant = self.oauth.refresh(client_id, client_secret, fields.get("refresh_token"))
            else:
                return oauth_error("unsupported_grant_type", "grant type not supported")
        except OAuthError as error:
            return oauth_error(*TOKEN_ERRORS[error.reason])
        body = self._token_body(request, grant, grant_type, fields, client_id or "")
        return Response(200, body)

    def _token_body(
        self,
        request: Request,
        grant: TokenGrant,
        grant_type: str,
        fields: dict[str, str],
        client_id: str,
    ) -> dict[str, Any]:
        identity = self.identity_url(request)
        issued_at = str(int(self.clock.now() * 1000))
        body: dict[str, Any] = {"access_token": grant.access_token}
        # The refresh response carries a refresh token only when it rotated (CONTRACTS 2.1).
        rotated = grant_type == "refresh_token" and grant.refresh_token != fields.get(
            "refresh_token"
        )
        if grant.refresh_token and (grant_type == "authorization_code" or rotated):
            body["refresh_token"] = grant.refresh_token
        body.update(
            signature=signature(self.oauth.clients[client_id], identity, issued_at),
            scope=" ".join(grant.scopes),
            instance_url=self.base_url(request),
            id=identity,
            token_type="Bearer",
            issued_at=issued_at,
        )  # no expires_in: the session lasts the org's timeout (CONTRACTS 2.1)
        return body

    # -- revoke, userinfo ------------------------------------------------------------------

    def revoke(self, request: Request) -> Response:
        token = request.form().get("token") or request.arg("token") or ""
        # Revoking a refresh token also revokes its access tokens; an access token goes alone.
        if self.oauth.revoke_refresh_token(token) or self.oauth.revoke_access_token(token):
            return Response(200)
        return oauth_error("unsupported_token_type", "this token type is not supported")

    def _bearer(self, request: Request) -> AccessToken | None:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            return None
        check = self.oauth.check(token.strip())
        return check.token if check.status == "valid" else None

    def userinfo(self, request: Request) -> Response:
        if self._bearer(request) is None:
            # Choice (UNCONFIRMED): 403 with Salesforce's plain-text "Bad_OAuth_Token".
            return Response(403, "Bad_OAuth_Token")
        return Response(200, self._claims(request))

    def identity(self, request: Request, org: str, user_id: str) -> Response:
        if self._bearer(request) is None:
            return Response(403, "Bad_OAuth_Token")
        if org != self.org_id or user_id != self.user()["user_id"]:
            return Response(404, "Bad_Id")
        claims = self._claims(request)
        return Response(
            200,
            {
                "id": claims["sub"],
                "user_id": claims["user_id"],
                "organization_id": claims["organization_id"],
                "username": claims["preferred_username"],
                "nick_name": claims["nickname"],
                "display_name": claims["name"],
                "email": claims["email"],
                "first_name": claims["given_name"],
                "last_name": claims["family_name"],
                "active": True,
                "user_type": "STANDARD",
                "language": "en_US",
                "locale": "en_US",
                "utcOffset": 0,
                "urls": claims["urls"],
            },
        )

    def _claims(self, request: Request) -> dict[str, Any]:
        # Shape of GET /services/oauth2/userinfo (OpenID Connect claims plus Salesforce's).
        user = self.user()
        base = self.base_url(request)
        return {
            "sub": self.identity_url(request),
            "user_id": user["user_id"],
            "organization_id": self.org_id,
            "preferred_username": user["username"],
            "nickname": user["alias"],
            "name": user["name"],
            "email": user["email"],
            "email_verified": True,
            "given_name": user["first_name"],
            "family_name": user["last_name"],
            "zoneinfo": "GMT",
            "active": True,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": 0,
            "updated_at": user["updated_at"],
            "urls": {
                "enterprise": f"{base}/services/Soap/c/{{version}}/{self.org_id}",
                "rest": f"{base}/services/data/v{{version}}/",
                "sobjects": f"{base}/services/data/v{{version}}/sobjects/",
                "query": f"{base}/services/data/v{{version}}/query/",
                "profile": f"{base}/{user['user_id']}",
            },
        }
