"""HubSpot OAuth 2.0 endpoints (CONTRACTS 1.1) on top of the generic OAuthProvider.

Routes are in the "oauth" group, so API fault injection leaves them alone unless a test adds
"oauth" to ``app.faults.groups``.
"""

from __future__ import annotations

import base64
import hashlib

from sandbox.hubspot.errors import (
    HubSpotError,
    new_correlation_id,
    token_endpoint_error,
    validation_error,
)
from sandbox.hubspot.schema import APP_ID, HUB_ID
from sandbox.hubspot.seed import OWNERS
from sandbox.kit.core import App, OAuthError, OAuthProvider, Request, Response
from sandbox.kit.oauth_http import authorize_redirect

HUB_DOMAIN = "sandbox-hub.example"
OAUTH_USER = OWNERS[0]  # the "installing user" of every grant

# Token endpoint error codes. BAD_REFRESH_TOKEN is recorded (error_400_bad_refresh_token.json);
# the other codes follow the same {status, message} shape and HubSpot's naming (our choice).
TOKEN_ERRORS = {
    OAuthError.UNKNOWN_CLIENT: ("BAD_CLIENT_ID", "missing or unknown client id"),
    OAuthError.BAD_CLIENT_SECRET: ("BAD_CLIENT_SECRET", "missing or invalid client secret"),
    OAuthError.BAD_CODE: ("BAD_AUTH_CODE", "missing or unknown auth code"),
    OAuthError.REDIRECT_MISMATCH: (
        "MISMATCH_REDIRECT_URI_AUTH_CODE",
        "redirect URI does not match initial auth code URI",
    ),
    OAuthError.BAD_REFRESH_TOKEN: ("BAD_REFRESH_TOKEN", "missing or invalid refresh token"),
}


def register_oauth_routes(app: App, oauth: OAuthProvider) -> None:
    def api_error(error: HubSpotError) -> Response:
        return error.response(new_correlation_id())

    @app.route("GET", r"/oauth(?:/\d+)?/authorize", name="oauth.authorize", group="oauth")
    def authorize(request: Request) -> Response:
        # CONTRACTS 1.1: scope and optional_scope are space-separated; consent is automatic
        # and grants the optional scopes too.
        redirect_uri = request.arg("redirect_uri")
        scopes = (request.arg("scope") or "").split()
        if not redirect_uri or not scopes:
            return api_error(validation_error("redirect_uri and scope are required"))
        scopes += (request.arg("optional_scope") or "").split()
        try:
            code = oauth.authorize(request.arg("client_id"), redirect_uri, dict.fromkeys(scopes))
        except OAuthError:
            return api_error(validation_error("Invalid client_id"))
        return authorize_redirect(request, redirect_uri, {"code": code})

    @app.route("POST", "/oauth/v1/token", name="oauth.token", group="oauth")
    def token(request: Request) -> Response:
        # CONTRACTS 1.1: form-encoded body; v1 also takes the fields as query parameters.
        fields = {name: values[0] for name, values in request.query.items()}
        fields.update(request.form())
        grant_type = fields.get("grant_type")
        try:
            if grant_type == "authorization_code":
                grant = oauth.exchange_code(
                    fields.get("client_id"),
                    fields.get("client_secret"),
                    fields.get("code"),
                    fields.get("redirect_uri", ""),
                )
            elif grant_type == "refresh_token":
                grant = oauth.refresh(
                    fields.get("client_id"),
                    fields.get("client_secret"),
                    fields.get("refresh_token"),
                )
            else:
                return token_endpoint_error("BAD_GRANT_TYPE", "missing or unknown grant_type")
        except OAuthError as error:
            return token_endpoint_error(*TOKEN_ERRORS[error.reason])
        return Response(
            200,
            {
                "access_token": grant.access_token,
                "refresh_token": grant.refresh_token,
                "expires_in": grant.expires_in,
                "token_type": "bearer",
                "token_use": "access_token",
                "hub_id": HUB_ID,
                "user_id": int(OAUTH_USER["id"]),
                "scopes": list(grant.scopes),
            },
        )

    @app.route(
        "DELETE", r"/oauth/v1/refresh-tokens/(?P<token>[^/]+)", name="oauth.revoke", group="oauth"
    )
    def revoke(request: Request, token: str) -> Response:
        # CONTRACTS 1.1: 204. Choice: an unknown token gets the BAD_REFRESH_TOKEN body.
        if not oauth.revoke_refresh_token(token):
            return token_endpoint_error(*TOKEN_ERRORS[OAuthError.BAD_REFRESH_TOKEN])
        return Response(204)

    @app.route(
        "GET",
        r"/oauth/v1/refresh-tokens/(?P<token>[^/]+)",
        name="oauth.refresh_token_info",
        group="oauth",
    )
    def refresh_token_info(request: Request, token: str) -> Response:
        info = oauth.refresh_token_info(token)
        if info is None:
            return token_endpoint_error(*TOKEN_ERRORS[OAuthError.BAD_REFRESH_TOKEN])
        client_id, scopes = info
        return Response(
            200,
            {
                "token": token,
                "user": OAUTH_USER["email"],
                "hub_domain": HUB_DOMAIN,
                "scopes": list(scopes),
                "hub_id": HUB_ID,
                "client_id": client_id,
                "user_id": int(OAUTH_USER["id"]),
                "token_type": "refresh",
            },
        )

    @app.route(
        "GET",
        r"/oauth/v1/access-tokens/(?P<token>[^/]+)",
        name="oauth.access_token_info",
        group="oauth",
    )
    def access_token_info(request: Request, token: str) -> Response:
        # Shape of fixtures/hubspot/oauth_access_token_metadata.json. Choice: expired, unknown
        # and private-app (static) tokens all get 404.
        check = oauth.check(token)
        if check.status != "valid" or check.token.expires_at is None:
            return api_error(HubSpotError(404, "OBJECT_NOT_FOUND", "Token not found"))
        expires_at_ms = int(check.token.expires_at * 1000)
        scopes = list(check.token.scopes or ())
        packed_scopes = base64.b64encode(" ".join(scopes).encode()).decode()
        signature = base64.b64encode(hashlib.sha1(token.encode()).digest()).decode()
        user_id = int(OAUTH_USER["id"])
        return Response(
            200,
            {
                "token": token,
                "user": OAUTH_USER["email"],
                "hub_domain": HUB_DOMAIN,
                "scopes": scopes,
                "signed_access_token": {
                    "expiresAt": expires_at_ms,
                    "scopes": packed_scopes,
                    "hubId": HUB_ID,
                    "userId": user_id,
                    "appId": APP_ID,
                    "signature": signature,
                    "hublet": "na1",
                    "isUserLevel": False,
                    "installingUserId": user_id,
                    "isServiceAccount": False,
                    "isPrivateDistribution": False,
                },
                "token_type": "access",
                "user_id": user_id,
                "is_private_distribution": False,
                "hub_id": HUB_ID,
                "expires_in": max(0, int(check.token.expires_at - oauth.clock.now())),
                "app_id": APP_ID,
            },
        )
