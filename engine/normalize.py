"""Normalized forms of values whose spelling varies by CRM: one place, used by the unified
models' `format` (every connector gets them) and by the mapping language's value functions.

They run on the sync's hot path, so each is cheap for the common case, and the phone parser
(Google's libphonenumber rules, through the `phonenumbers` package) is asked once per
distinct number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache, lru_cache
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
    international = _international(value)
    return parsed_e164(value, region) if international is _UNDECIDED else international


def parsed_e164(value: str, region: str | None) -> str | None:
    """`e164` by phonenumbers alone: parse, the possible-number check, E.164."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_UNDECIDED: Any = object()
# `+`, the country code and the number, in digits and the usual separators only.
_PLUS_DIGITS = re.compile(r"\+[0-9](?:[0-9 ().-]*[0-9])?")
_SEPARATORS = str.maketrans("", "", " ().-")


def _international(value: str) -> str | None:
    """E.164 for a number written `+<country code> <number>` with nothing the parser would
    have to interpret (no national prefix to strip, no extension, no leading zero): most
    numbers CRMs hold. phonenumbers.parse spends some 25 us on steps that change nothing
    for these; its length check still decides. _UNDECIDED: parse it."""
    if len(value) > 250 or not value.startswith("+") or _PLUS_DIGITS.fullmatch(value) is None:
        return _UNDECIDED
    digits = value[1:].translate(_SEPARATORS)
    if len(digits) <= 2 or digits[0] == "0":
        return _UNDECIDED
    for size in (1, 2, 3):  # country codes are prefix-free: the first known one is it
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return _UNDECIDED
    national = digits[size:]
    if not 2 <= len(national) <= 17 or national[0] == "0" or _national_prefix(code, national):
        return _UNDECIDED
    # E.164 is the `+`, the code and the national number, which has no leading zero here.
    return "+" + digits if _possible_length(code, len(national)) else None


@cache
def _possible_length(code: int, length: int) -> bool:
    """phonenumbers' possible-number check, which reads only the national number's length
    (and its country's metadata): asked once per country code and length."""
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int("1" * length))
    return phonenumbers.is_possible_number(number)


def _national_prefix(code: int, national: str) -> bool:
    """Whether the country's national (trunk) prefix pattern matches the number's start, or
    the country is one this shortcut does not know: the parser decides those."""
    pattern = _prefix_pattern(code)
    return pattern is _UNDECIDED or (pattern is not None and pattern.match(national) is not None)


@cache
def _prefix_pattern(code: int) -> re.Pattern[str] | None:
    region = phonenumbers.region_code_for_country_code(code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    if metadata is None:
        return _UNDECIDED
    prefix = metadata.national_prefix_for_parsing
    return re.compile(prefix) if prefix else None


PHONE_REGIONS = tuple(sorted(phonenumbers.SUPPORTED_REGIONS))  # ISO 3166 alpha-2 codes

# A unified field's `format` (engine/models.yaml) -> how its values are normalized on reading.
FORMATS: dict[str, Callable[[Any], Any]] = {"email": email, "hostname": url_host}
# A derived field's `derive.as` -> how it is computed from its source field's value and the
# connection's phone_region.
DERIVATIONS: dict[str, Callable[[str, str | None], Any]] = {"e164": e164}
