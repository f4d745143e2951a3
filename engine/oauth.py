"""The OAuth 2.0 authorization-code flow, once, generic over what a connector's YAML declares.

`connect` runs it end to end: the authorization URL (with `state`, and PKCE S256 where the
vendor supports it), a loopback callback on 127.0.0.1, the code exchange with the vendor's
client-authentication rule, and storing the credentials. `revoke` undoes it. Refreshing lives in
engine.auth.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import secrets as random_secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qs, quote, urlencode, urlsplit

import httpx

from engine import secrets
from engine.auth import Credentials, updated_credentials
from engine.clock import Clock
from engine.errors import CrmError
from engine.spec import Connector
from engine.transport import error_body

if TYPE_CHECKING:
    from engine.authkinds import OAuth2

DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/callback"


@dataclass
class AuthorizationRequest:
    url: str
    redirect_uri: str
    state: str = field(repr=False)
    code_verifier: str | None = field(default=None, repr=False)


def authorization_request(method: OAuth2, context: dict[str, Any], *, client_id: str,
                          redirect_uri: str) -> AuthorizationRequest:
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
    base = method.authorize_url.render(context)  # type: ignore[union-attr]
    separator = "&" if urlsplit(base).query else "?"
    # Spaces as %20, not +: vendors document space-separated scopes that way.
    return AuthorizationRequest(f"{base}{separator}{urlencode(params, quote_via=quote)}",
                                redirect_uri, state, verifier)


def parse_callback(request: AuthorizationRequest, callback_url: str) -> dict[str, str]:
    """The callback's query; raises unless `state` matches and a code came back."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback_url).query).items()}
    if not random_secrets.compare_digest(query.get("state", ""), request.state):
        raise CrmError("oauth", "callback", "the callback's state does not match this "
                       "authorization request (a forged or stale callback); nothing was stored")
    if "error" in query:
        detail = query.get("error_description", "")
        raise CrmError("oauth", "callback", f"authorization refused: {query['error']} {detail}"
                       .strip(), code=query["error"])
    if "code" not in query:
        raise CrmError("oauth", "callback", "the callback carries no authorization code")
    return query


def callback_settings(method: OAuth2, query: dict[str, str]) -> dict[str, str]:
    return {name: query[param] for name, param in method.callback_settings.items()
            if query.get(param)}


def _client_auth(method: OAuth2, form: dict[str, str], client_id: str,
                 client_secret: str) -> dict[str, str]:
    """Headers for the vendor's client-authentication rule (the form is completed in place)."""
    headers = {"Accept": "application/json"}
    if method.client_auth == "basic":
        pair = f"{client_id}:{client_secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        secrets.register(headers["Authorization"][6:])  # the base64 of the client secret
    else:
        form.update(client_id=client_id, client_secret=client_secret)
    return headers


def exchange_code(connector: Connector, method: OAuth2, context: dict[str, Any], *,
                  client: httpx.Client, client_id: str, client_secret: str, code: str,
                  request: AuthorizationRequest, clock: Clock,
                  settings: dict[str, str] | None = None) -> Credentials:
    """POST the code to the token endpoint; returns the new credentials."""
    secrets.register(client_secret)
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": request.redirect_uri}
    if request.code_verifier:
        form["code_verifier"] = request.code_verifier
    headers = _client_auth(method, form, client_id, client_secret)
    url = method.token_url.render(context)  # type: ignore[union-attr]
    response = client.post(url, data=form, headers=headers)
    body = error_body(response)  # its JSON, an excerpt of a page that is not, or None
    if response.status_code >= 400 or not isinstance(body, dict) or "access_token" not in body:
        error = (body.get("error") or body.get("status")) if isinstance(body, dict) else None
        raise CrmError(connector.name, "oauth.exchange",
                       secrets.redact(f"code exchange failed: {error or response.status_code}"),
                       status=response.status_code, code=error,
                       raw_body=secrets.redact_deep(body))
    start = Credentials(client_id=client_id, client_secret=client_secret,
                        settings=dict(settings or {}))
    return updated_credentials(start, body, method, clock)


def revoke(connector: Connector, method: OAuth2, context: dict[str, Any],
           credentials: Credentials, *, client: httpx.Client) -> bool:
    """Revoke the refresh token (else the access token) where the vendor offers it."""
    token = credentials.refresh_token or credentials.access_token
    if method.revoke is None or not token:
        return False
    token_context = {**context, "token": token}
    form = {k: str(t.render(token_context)) for k, t in method.revoke.form.items()}
    headers = {"Accept": "application/json"}
    if method.client_auth == "basic":
        headers = _client_auth(method, {}, credentials.client_id or "",
                               credentials.client_secret or "")
    response = client.request(method.revoke.method, method.revoke.url.render(token_context),
                              data=form or None, headers=headers)
    if response.status_code >= 400:
        raise CrmError(connector.name, "oauth.revoke",
                       f"revocation failed with HTTP {response.status_code}",
                       status=response.status_code)
    return True


def listen_port(redirect_uri: SplitResult) -> int:
    """The port a redirect URI's server listens on: the URI's own (0: any free port, which the
    URI then names), or http's 80 if it names none."""
    return 80 if redirect_uri.port is None else redirect_uri.port


class LoopbackCallback:
    """A one-shot HTTP server on 127.0.0.1 that catches the authorization redirect."""

    def __init__(self, redirect_uri: str = DEFAULT_REDIRECT_URI):
        parts = urlsplit(redirect_uri)
        # IPv4 only: the server below listens on AF_INET, so it could never catch [::1].
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the redirect URI must be http://127.0.0.1 or http://localhost: "
                             f"{redirect_uri}")
        self.path = parts.path or "/"
        received: list[str] = []
        done = threading.Event()
        expected_path = self.path

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urlsplit(self.path).path != expected_path:
                    self.send_error(404)
                    return
                received.append(self.path)
                body = b"<p>crm-engine: authorization received. You can close this window.</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                done.set()

            def log_message(self, *args: Any) -> None:
                pass  # the query holds the authorization code: keep it out of logs

        self._server = http.server.HTTPServer((parts.hostname, listen_port(parts)), Handler)
        self._received, self._done = received, done
        port = self._server.server_address[1]
        self.redirect_uri = f"{parts.scheme}://{parts.hostname}:{port}{self.path}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})

    def __enter__(self) -> LoopbackCallback:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, timeout: float) -> str:
        """The callback's path and query, once it arrives."""
        if not self._done.wait(timeout):
            raise CrmError("oauth", "callback",
                           f"no authorization callback within {timeout:.0f}s")
        return self._received[0]


def connect(connector: Connector, method: OAuth2, context: dict[str, Any], *,
            client_id: str, client_secret: str, clock: Clock,
            redirect_uri: str = DEFAULT_REDIRECT_URI,
            open_url: Callable[[str], None], timeout: float = 300.0) -> Credentials:
    """The whole authorization-code flow; `open_url` shows the URL to a person (or a test)."""
    with LoopbackCallback(redirect_uri) as callback:
        request = authorization_request(method, context, client_id=client_id,
                                        redirect_uri=callback.redirect_uri)
        open_url(request.url)
        query = parse_callback(request, callback.wait(timeout))
    settings = callback_settings(method, query)
    token_context = {**context, "credentials": {**context["credentials"], **settings}}
    with httpx.Client(timeout=30) as http:
        return exchange_code(connector, method, token_context, client=http, client_id=client_id,
                             client_secret=client_secret, code=query["code"], request=request,
                             clock=clock, settings=settings)
