"""Normalized forms of values whose spelling varies by CRM: one place, used by the unified
models' `format` (every connector gets them) and by the mapping language's value functions.

They run on the sync's hot path, so each is cheap for the common case, and the phone parser
(Google's libphonenumber rules, through the `phonenumbers` package) is asked once per
distinct number.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import phonenumbers


def url_host(value: str | None) -> str | None:
    """The bare, lower-case host of a URL or domain: `http://www.Edgecomm.com/x` ->
    `edgecomm.com`; null for an empty value or one with no host."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname
    except ValueError:  # an unbalanced bracket: not a URL at all
        return None
    return host.removeprefix("www.") if host else None


def email(value: str | None) -> str | None:
    """An address trimmed and lower-cased (mailbox case is not significant in practice, and
    joins across CRMs need one spelling); null when empty."""
    if value is None:
        return None
    text = value.strip().lower()
    return text or None


# Each entry holds a number twice and the cache's own links: some 450 bytes. Connections
# syncing at once hold their current pages' numbers, far fewer than this.
@lru_cache(maxsize=8_192)
def e164(value: str, region: str | None = None) -> str | None:
    """A phone number in E.164 (`+14155550123`) where it parses as a possible number: with its
    country code, or written nationally in `region` (ISO 3166 alpha-2, e.g. US), else null."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


PHONE_REGIONS = tuple(sorted(phonenumbers.SUPPORTED_REGIONS))  # ISO 3166 alpha-2 codes

# A unified field's `format` (engine/models.yaml) -> how its values are normalized on reading.
FORMATS: dict[str, Callable[[Any], Any]] = {"email": email, "hostname": url_host}
# A derived field's `derive.as` -> how it is computed from its source field's value and the
# connection's phone_region.
DERIVATIONS: dict[str, Callable[[str, str | None], Any]] = {"e164": e164}
