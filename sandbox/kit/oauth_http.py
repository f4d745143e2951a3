"""HTTP pieces that the vendors' OAuth endpoints share: the redirect that ends an authorize
request, and the client credentials of an ``Authorization: Basic`` header.

Not in oauth.py: that module holds token state only and is imported by core (no Request or
Response there).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlencode

from sandbox.kit.core import Request, Response


def authorize_redirect(
    request: Request,
    redirect_uri: str,
    params: dict[str, str],
    extra: dict[str, str] | None = None,
) -> Response:
    """A 302 to ``redirect_uri`` with ``params`` (a code, or an error), the request's ``state``
    when it sent one, and then any vendor ``extra`` added to its query, in that order.
    Consent is automatic, so authorize answers with this at once."""
    query = dict(params)
    state = request.arg("state")
    if state is not None:
        query["state"] = state
    if extra:
        query.update(extra)
    separator = "&" if "?" in redirect_uri else "?"
    return Response(302, None, {"Location": redirect_uri + separator + urlencode(query)})


def basic_auth(request: Request) -> str | None:
    """The decoded ``client_id:client_secret`` of an ``Authorization: Basic`` header; None
    without one, or when it is not strict base64 of UTF-8 text."""
    scheme, _, encoded = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
