"""Pipedrive OAuth 2.0 endpoints (CONTRACTS 3.1) on the generic OAuthProvider.

Pipedrive serves them on oauth.pipedrive.com; the sandbox serves them on its own host, and the
token response's ``api_domain`` is the sandbox URL. Routes are in the "oauth" group, so API fault
injection and rate limits leave them alone.
"""

from __future__ import annotations

from collections.abc import Callable

from sandbox.kit.core import App, OAuthError, OAuthProvider, Request, Response
from sandbox.kit.oauth_http import authorize_redirect, basic_auth
from sandbox.pipedrive.errors import oauth_error
from sandbox.pipedrive.schema import GRANTED_SCOPES

FORM = "application/x-www-form-urlencoded"


def _invalid_grant(message: str) -> Response:
    return oauth_error(400, "invalid_grant", message)


# OAuthProvider reasons -> responses. The refresh-token body is the SDK mock's
# (oauth_error_invalid_grant_sdk_mock.json); the other wordings follow it (our choice).
GRANT_ERRORS = {
    OAuthError.BAD_CODE: lambda: _invalid_grant("Invalid grant: authorization code is invalid"),
    OAuthError.REDIRECT_MISMATCH: lambda: _invalid_grant("Invalid grant: redirect_uri is invalid"),
    OAuthError.BAD_REFRESH_TOKEN: lambda: _invalid_grant("Invalid grant: refresh token is invalid"),
    OAuthError.UNKNOWN_CLIENT: lambda: oauth_error(
        401, "invalid_client", "Invalid client: client is invalid"
    ),
    OAuthError.BAD_CLIENT_SECRET: lambda: oauth_error(
        401, "invalid_client", "Invalid client: client is invalid"
    ),
}


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(client_id, client_secret) from ``Authorization: Basic base64(id:secret)``."""
    client_id, colon, secret = (basic_auth(request) or "").partition(":")
    return (client_id, secret) if colon else None


def register_oauth_routes(
    app: App, oauth: OAuthProvider, api_domain: Callable[[Request], str]
) -> None:
    def client_error(request: Request) -> tuple[str, str] | Response:
        """The verified client credentials, or the error response (CONTRACTS 3.1)."""
        content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if content_type != FORM:
            return oauth_error(
                400,
                "invalid_request",
                "Invalid request: content must be application/x-www-form-urlencoded",
            )
        credentials = basic_credentials(request)
        if credentials is None:
            return oauth_error(
                401, "invalid_client", "Invalid client: cannot retrieve client credentials"
            )
        client_id, secret = credentials
        if oauth.clients.get(client_id) != secret:
            return GRANT_ERRORS[OAuthError.BAD_CLIENT_SECRET]()
        return credentials

    @app.route("GET", "/oauth/authorize", name="oauth.authorize", group="oauth")
    def authorize(request: Request) -> Response:
        # CONTRACTS 3.1: no scope parameter (scopes are set on the app); consent is automatic.
        redirect_uri = request.arg("redirect_uri")
        if not redirect_uri:
            return oauth_error(400, "invalid_request", "Invalid request: redirect_uri is missing")
        try:
            code = oauth.authorize(request.arg("client_id"), redirect_uri, ())
        except OAuthError:
            return oauth_error(400, "invalid_client", "Invalid client: client is invalid")
        return authorize_redirect(request, redirect_uri, {"code": code})

    @app.route("POST", "/oauth/token", name="oauth.token", group="oauth")
    def token(request: Request) -> Response:
        checked = client_error(request)
        if isinstance(checked, Response):
            return checked
        client_id, secret = checked
        fields = request.form()
        grant_type = fields.get("grant_type")
        try:
            if grant_type == "authorization_code":
                grant = oauth.exchange_code(
                    client_id, secret, fields.get("code"), fields.get("redirect_uri", "")
                )
            elif grant_type == "refresh_token":
                # CONTRACTS 3.1: the response carries a new refresh token; the provider rotates
                # it, so replaying the old one is invalid_grant.
                grant = oauth.refresh(client_id, secret, fields.get("refresh_token"))
            else:
                # exchange_api_token (CONTRACTS 3.1) is not modelled.
                return oauth_error(
                    400, "unsupported_grant_type", "Unsupported grant type: grant_type is invalid"
                )
        except OAuthError as error:
            return GRANT_ERRORS[error.reason]()
        return Response(
            200,
            {
                "access_token": grant.access_token,
                "token_type": "Bearer",
                "expires_in": grant.expires_in,
                "refresh_token": grant.refresh_token,
                "scope": GRANTED_SCOPES,
                "api_domain": api_domain(request),
            },
        )

    @app.route("POST", "/oauth/revoke", name="oauth.revoke", group="oauth")
    def revoke(request: Request) -> Response:
        # CONTRACTS 3.1: form token + token_type_hint, Basic auth. Choice (RFC 7009): 200 with
        # an empty body, also for unknown tokens.
        checked = client_error(request)
        if isinstance(checked, Response):
            return checked
        fields = request.form()
        token_value, hint = fields.get("token", ""), fields.get("token_type_hint")
        if not token_value:
            return oauth_error(400, "invalid_request", "Invalid request: token is missing")
        if hint != "access_token" and oauth.revoke_refresh_token(token_value):
            return Response(200)
        if hint != "refresh_token":
            oauth.revoke_access_token(token_value)
        return Response(200)
