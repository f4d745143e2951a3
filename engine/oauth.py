"""The OAuth 2.0 authorization-code flow, generic over what a connector's YAML declares:
authorization URL with `state` (and PKCE S256 where declared), then the code exchange with the
vendor's client-authentication rule. Refreshing lives in engine.auth."""

from __future__ import annotations

import base64
import hashlib
import secrets as random_secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import orjson

from engine import secrets
from engine.auth import Credentials, updated_credentials
from engine.clock import Clock
from engine.errors import CrmError
from engine.spec import AuthMethod, Connector


@dataclass
class AuthorizationRequest:
    url: str
    state: str = field(repr=False)
    code_verifier: str | None = field(default=None, repr=False)
    redirect_uri: str = ""


def authorization_request(connector: Connector, method: AuthMethod, config: dict[str, Any], *,
                          client_id: str, redirect_uri: str) -> AuthorizationRequest:
    state = random_secrets.token_urlsafe(24)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "state": state}
    if method.scopes:
        params["scope"] = method.scope_separator.join(method.scopes)
    params.update(method.authorize_params)
    verifier = None
    if method.pkce:
        verifier = random_secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        params["code_challenge"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        params["code_challenge_method"] = "S256"
    base = method.authorize_url.render({"config": config})  # type: ignore[union-attr]
    separator = "&" if urlsplit(base).query else "?"
    # Spaces as %20, not +: vendors document space-separated scopes that way.
    query = urlencode(params, quote_via=quote)
    return AuthorizationRequest(f"{base}{separator}{query}", state, verifier, redirect_uri)


def parse_callback(request: AuthorizationRequest, callback_url: str) -> dict[str, str]:
    """The callback's query; raises if `state` does not match or the vendor sent an error."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback_url).query).items()}
    if query.get("state") != request.state:
        raise CrmError("oauth", "callback", "the callback's state does not match the request "
                       "(possible forgery); start `crm-engine connect` again")
    if "error" in query:
        raise CrmError("oauth", "callback", f"authorization refused: {query['error']} "
                       f"{query.get('error_description', '')}".strip(), code=query["error"])
    if "code" not in query:
        raise CrmError("oauth", "callback", "the callback carries no authorization code")
    return query


def exchange_code(connector: Connector, method: AuthMethod, config: dict[str, Any], *,
                  client: httpx.Client, client_id: str, client_secret: str, code: str,
                  request: AuthorizationRequest, clock: Clock,
                  token_url: str | None = None) -> Credentials:
    """POST the code to the token endpoint; returns the new credentials."""
    secrets.register(client_secret)
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": request.redirect_uri}
    if request.code_verifier:
        form["code_verifier"] = request.code_verifier
    headers = {"Accept": "application/json"}
    if method.client_auth == "basic":
        pair = f"{client_id}:{client_secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    else:
        form.update(client_id=client_id, client_secret=client_secret)
    url = token_url or method.token_url.render({"config": config})  # type: ignore[union-attr]
    response = client.post(url, data=form, headers=headers)
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        body = {}
    if response.status_code >= 400 or not isinstance(body, dict) or "access_token" not in body:
        code_text = body.get("error") or body.get("status") if isinstance(body, dict) else None
        raise CrmError(connector.name, "oauth.exchange",
                       secrets.redact(f"code exchange failed: {code_text or response.status_code}"),
                       status=response.status_code, code=code_text,
                       raw_body=secrets.redact_deep(body))
    empty = Credentials(client_id=client_id, client_secret=client_secret)
    return updated_credentials(empty, body, method, clock)
