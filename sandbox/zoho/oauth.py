"""Zoho Accounts OAuth 2.0 (CONTRACTS 4.1) on top of the generic OAuthProvider.

The sandbox plays one data centre's accounts server and API host at once:

- ``GET /oauth/v2/auth`` consents at once and redirects to
  ``redirect_uri?code=..&state=..&location=<dc>&accounts-server=<this server>``;
- ``POST /oauth/v2/token`` takes its fields from the query string, a form body or an HTTP Basic
  header (client_id:client_secret), all three per the contract, and answers with ``api_domain``
  = this server; a refresh returns no refresh_token; ``access_type=online`` (Zoho's default
  when the parameter is absent) gets no refresh_token at all;
- ``POST /oauth/v2/token/revoke?token=<refresh token>`` -> ``{"status":"success"}``.

Routes are in the "oauth" group, so API fault injection leaves them alone.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from collections.abc import Callable

from sandbox.kit.core import App, OAuthError, OAuthProvider, Request, Response
from sandbox.kit.oauth_http import authorize_redirect
from sandbox.zoho.time import OrgTime

# Token endpoint errors: HTTP 200 with {"error": ...} (CONTRACTS 4.1 says invalid_code and
# invalid_client come back with HTTP 200 [UNCONFIRMED status]; the SDK treats any response
# without access_token as an error). Choice: 200 for all of them; the codes besides
# invalid_code/invalid_client are our wording of Zoho's style (UNCONFIRMED).
TOKEN_ERRORS = {
    OAuthError.UNKNOWN_CLIENT: "invalid_client",
    OAuthError.BAD_CLIENT_SECRET: "invalid_client_secret",
    OAuthError.BAD_CODE: "invalid_code",
    OAuthError.REDIRECT_MISMATCH: "invalid_redirect_uri",
    OAuthError.BAD_REFRESH_TOKEN: "invalid_code",  # Zoho reports a bad refresh token so too
}


class ZohoOAuthProvider(OAuthProvider):
    """Zoho-shaped tokens (``1000.<hex>.<hex>``) and, per authorization code, whether the
    grant is offline (gets a refresh token)."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self._offline_codes: dict[str, bool] = {}
        self._offline_lock = threading.Lock()

    def _new_token(self, kind: str) -> str:
        return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"

    def remember_access_type(self, code: str, offline: bool) -> None:
        with self._offline_lock:
            self._offline_codes[code] = offline

    def is_offline(self, code: str) -> bool:
        with self._offline_lock:
            return self._offline_codes.get(code, False)

    def forget_code(self, code: str) -> None:
        with self._offline_lock:
            self._offline_codes.pop(code, None)


def _fields(request: Request) -> dict[str, str]:
    """Token request fields from the query string, then a form body, then a Basic header."""
    fields = {name: values[0] for name, values in request.query.items()}
    if request.body:
        fields.update(request.form())
    scheme, _, encoded = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "basic" and encoded:
        try:
            client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return fields
        fields.setdefault("client_id", client_id)
        fields.setdefault("client_secret", client_secret)
    return fields


def register_oauth_routes(
    app: App,
    oauth: ZohoOAuthProvider,
    *,
    location: str,
    base_url: Callable[[Request], str],
    org: OrgTime,
) -> None:
    def token_error(code: str) -> Response:
        return Response(200, {"error": code})

    @app.route("GET", "/oauth/v2/auth", name="oauth.authorize", group="oauth")
    def authorize(request: Request) -> Response:
        redirect_uri = request.arg("redirect_uri")
        # CONTRACTS 4.1: scopes are comma-separated.
        scopes = [s.strip() for s in (request.arg("scope") or "").split(",") if s.strip()]
        if request.arg("response_type", "code") != "code":
            return Response(400, {"error": "unsupported_response_type"})
        if not redirect_uri:
            return Response(400, {"error": "invalid_redirect_uri"})
        if not scopes:
            return Response(400, {"error": "invalid_scope"})
        try:
            code = oauth.authorize(request.arg("client_id"), redirect_uri, scopes)
        except OAuthError:
            return Response(400, {"error": "invalid_client"})
        # CONTRACTS 4.1: access_type=offline is what yields a refresh token; Zoho's default is
        # online. prompt=consent is accepted and changes nothing (consent is automatic).
        oauth.remember_access_type(code, (request.arg("access_type") or "").lower() == "offline")
        return authorize_redirect(
            request,
            redirect_uri,
            {"code": code},
            {"location": location, "accounts-server": base_url(request)},
        )

    @app.route("POST", "/oauth/v2/token", name="oauth.token", group="oauth")
    def token(request: Request) -> Response:
        fields = _fields(request)
        grant_type = fields.get("grant_type")
        api_domain = base_url(request)
        try:
            if grant_type == "authorization_code":
                code = fields.get("code") or ""
                offline = oauth.is_offline(code)
                grant = oauth.exchange_code(
                    fields.get("client_id"),
                    fields.get("client_secret"),
                    code,
                    fields.get("redirect_uri", ""),
                )
                oauth.forget_code(code)  # codes are single use
                # fixtures/zoho/oauth_token_response_docexample.json (key order included)
                body: dict[str, object] = {"access_token": grant.access_token}
                if offline:
                    body["refresh_token"] = grant.refresh_token
                # An online grant's refresh token stays unrevealed, so it cannot be refreshed.
                body.update(
                    {
                        "api_domain": api_domain,
                        "token_type": "Bearer",
                        "expires_in": grant.expires_in,
                    }
                )
            elif grant_type == "refresh_token":
                grant = oauth.refresh(
                    fields.get("client_id"),
                    fields.get("client_secret"),
                    fields.get("refresh_token"),
                )
                # fixtures/zoho/oauth_refresh_response_docexample.json: no refresh_token.
                body = {
                    "access_token": grant.access_token,
                    "expires_in": grant.expires_in,
                    "api_domain": api_domain,
                    "token_type": "Bearer",
                }
            else:
                return token_error("unsupported_grant_type")
        except OAuthError as error:
            return token_error(TOKEN_ERRORS[error.reason])
        expires_at = oauth.clock.now() + grant.expires_in
        return Response(200, body, {"X-ACCESSTOKEN-RESET": org.format(expires_at)})

    @app.route("POST", "/oauth/v2/token/revoke", name="oauth.revoke", group="oauth")
    def revoke(request: Request) -> Response:
        # CONTRACTS 4.1: {"status":"success"}. Choice (UNCONFIRMED): an unknown token gets the
        # same answer (RFC 7009 style), so a retried revoke is harmless.
        token_value = _fields(request).get("token") or ""
        oauth.revoke_refresh_token(token_value)
        return Response(200, {"status": "success"})
