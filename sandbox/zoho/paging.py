"""Zoho CRM list paging (CONTRACTS 4.3): ``page``/``per_page`` up to record 2,000, then
``page_token`` (from ``info.next_page_token``) up to record 100,000 (crm-oas getRecords).

A page token is opaque hex (at most 96 characters, crm-oas) carrying the sort key of the record
it continues from, the request parameters it is bound to (changing them gives
TOKEN_BOUND_DATA_MISMATCH) and its expiry; it is signed so a garbled token is refused. Resolving
a token is one bisect in the module's sorted index, which gives a position; pages are slices
at positions, so rendered pages can be cached by position.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any

from sandbox.zoho import errors as errors
from sandbox.zoho.store import Key

DISCRETE_LIMIT = 2000  # CONTRACTS 4.3: page * per_page beyond this -> 400
TOKEN_RECORD_LIMIT = 100_000  # crm-oas: page tokens reach the first 100,000 records
# CONTRACTS 4.3: the exact lifetime is UNCONFIRMED; the third-party sample suggests ~24 h.
TOKEN_LIFETIME = 86_400
MAX_PER_PAGE = 200  # CONTRACTS 4.3: default and max 200

_LAYOUT = struct.Struct(">BcIqQI")  # version, kind, binding, key epoch, key id, expiry
_VERSION = 1


@dataclass(frozen=True)
class PageToken:
    kind: bytes  # b"n": the records after the key; b"p": the page before the key
    binding: int
    key: Key
    expires: int


def binding_of(*parts: object) -> int:
    """A checksum of the request parameters a token is bound to."""
    return zlib.crc32("|".join(map(str, parts)).encode())


class TokenCodec:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def encode(self, token: PageToken) -> str:
        if isinstance(token.key, tuple):
            epoch, record_id = token.key
        else:
            epoch, record_id = -1, token.key
        payload = _LAYOUT.pack(_VERSION, token.kind, token.binding, epoch, record_id, token.expires)
        return (payload + self._mac(payload)).hex()

    def decode(self, text: str) -> PageToken | None:
        """The token, or None when it is not one of ours (or was altered)."""
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            return None
        payload, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
        if len(payload) != _LAYOUT.size or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        version, kind, binding, epoch, record_id, expires = _LAYOUT.unpack(payload)
        if version != _VERSION or kind not in (b"n", b"p"):
            return None
        key: Key = record_id if epoch == -1 else (epoch, record_id)
        return PageToken(kind, binding, key, expires)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:8]


def position_of(token: PageToken, keys: list[Key], descending: bool, per_page: int) -> int:
    """The position (0-based, in the requested direction) a token's page starts at."""
    n = len(keys)
    if token.kind == b"n":
        if descending:
            return n - bisect_left(keys, token.key)
        return bisect_right(keys, token.key)
    # b"p": the page that ends just before the key.
    end = n - bisect_right(keys, token.key) if descending else bisect_left(keys, token.key)
    return max(0, end - per_page)


def slice_ids(ids: list[int], descending: bool, start: int, per_page: int) -> list[int]:
    """The ids at positions start .. start+per_page in the requested direction."""
    if not descending:
        return ids[start : start + per_page]
    n = len(ids)
    stop = n - start
    first = max(0, stop - per_page)
    return ids[first:stop][::-1] if stop > 0 else []


def key_at(keys: list[Key], descending: bool, position: int) -> Key:
    return keys[len(keys) - 1 - position] if descending else keys[position]


def parse_per_page(raw: str | None) -> int:
    if raw is None or raw == "":
        return MAX_PER_PAGE
    try:
        value = int(raw)
    except ValueError:
        raise errors.invalid_param("per_page") from None
    if value < 1:
        raise errors.invalid_param("per_page")
    # Choice (UNCONFIRMED): above 200 is clamped to 200 rather than refused.
    return min(value, MAX_PER_PAGE)


def parse_page(raw: str | None) -> int:
    if raw is None or raw == "":
        return 1
    try:
        value = int(raw)
    except ValueError:
        raise errors.invalid_param("page") from None
    if value < 1:
        raise errors.invalid_param("page")
    return value


def info_block(
    *,
    per_page: int,
    count: int,
    page: int,
    sort_by: str,
    sort_order: str,
    more: bool,
    next_token: str | None,
    previous_token: str | None,
    expiry: str | None,
) -> dict[str, Any]:
    """The info object of a list page, keys in the crm-oas example's order."""
    return {
        "call": False,
        "per_page": per_page,
        "next_page_token": next_token,
        "count": count,
        "sort_by": sort_by,
        "page": page,
        "page_token_expiry": expiry,
        "sort_order": sort_order,
        "email": False,
        "more_records": more,
        "previous_page_token": previous_token,
    }
