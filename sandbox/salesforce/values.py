"""Salesforce value formats: datetimes, dates, and coercion of JSON values on write.

CONTRACTS 2.3: datetimes are ``2026-05-01T07:25:37.000+0000`` (UTC, milliseconds, offset without
a colon), dates ``2026-05-01``. Every stored datetime uses exactly that fixed-width UTC form, so
string order is time order: SOQL comparisons and ORDER BY work on the strings directly.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from sandbox.salesforce.errors import (
    SalesforceError,
    bad_picklist,
    bad_request,
    json_parser_error,
)
from sandbox.salesforce.ids import normalize_id
from sandbox.salesforce.schema import STRING_TYPES, Field

_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?"
)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


_DAYS: dict[int, str] = {}  # days since the epoch -> "YYYY-MM-DD"
_CLOCK: list[str] = []  # second of the day -> "THH:MM:SS", built on first use


def _day(days: int) -> str:
    text = _DAYS.get(days)
    if text is None:
        text = _DAYS[days] = time.strftime("%Y-%m-%d", time.gmtime(days * 86400))
    return text


def _clock() -> list[str]:
    # 86,400 preformatted "THH:MM:SS" strings: formatting a timestamp becomes two lookups,
    # which matters when seeding 100,000 records with three timestamps each.
    if not _CLOCK:
        digits = [f"{n:02d}" for n in range(60)]
        _CLOCK.extend(f"T{h}:{m}:{s}" for h in digits[:24] for m in digits for s in digits)
    return _CLOCK


def format_datetime(epoch_seconds: float, millis: int = 0) -> str:
    """``2026-05-01T07:25:37.000+0000`` for a UTC instant."""
    days, second_of_day = divmod(int(epoch_seconds), 86400)
    day = _DAYS.get(days) or _day(days)
    if millis:
        return f"{day}{_clock()[second_of_day]}.{millis:03d}+0000"
    return day + (_CLOCK or _clock())[second_of_day] + ".000+0000"


def format_date(epoch_seconds: float) -> str:
    return _day(int(epoch_seconds) // 86400)


def parse_datetime(text: str, *, keep_millis: bool = True) -> str | None:
    """Any ISO-8601 datetime (``Z``, ``+hh:mm``, ``+hhmm`` or no zone = UTC) as the canonical
    UTC string, or None when it is not one."""
    match = _DATETIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    millis = int((fraction or "0")[:3].ljust(3, "0")) if keep_millis else 0
    return format_datetime(calendar.timegm(moment.timetuple()), millis)


def parse_date(text: str) -> str | None:
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    try:
        return date(*(int(part) for part in match.groups())).isoformat()
    except ValueError:
        return None


def datetime_to_epoch(text: str) -> float:
    """Seconds since the epoch of a canonical datetime string."""
    moment = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return moment.timestamp() + int(text[20:23]) / 1000


def add_days(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


# -- writes ------------------------------------------------------------------------------------

_SOAP_TYPES = {  # the type name Salesforce puts in JSON_PARSER_ERROR messages
    "boolean": "boolean",
    "int": "int",
    "double": "double",
    "currency": "double",
    "percent": "double",
    "date": "date",
    "datetime": "datetime",
}


def coerce(field: Field, value: object) -> object:
    """A JSON value from a create/update body as stored for ``field``; raises SalesforceError
    the way Salesforce rejects it (JSON_PARSER_ERROR, restricted picklist, bad email...)."""
    if value is None:
        return False if field.type == "boolean" else None
    kind = field.type
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise json_parser_error("boolean", value)
    if kind in ("int", "double", "currency", "percent"):
        return _number(field, value)
    if kind == "date":
        parsed = parse_date(value) if isinstance(value, str) else None
        if parsed is None:
            raise json_parser_error("date", value)
        return parsed
    if kind == "datetime":
        parsed = parse_datetime(value, keep_millis=False) if isinstance(value, str) else None
        if parsed is None:
            raise json_parser_error("datetime", value)
        return parsed
    if isinstance(value, (dict, list)):
        raise json_parser_error("string", value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = str(value)
    if kind == "reference":
        return text  # checked against the store by the caller
    if kind in STRING_TYPES and text == "":
        return None  # Salesforce stores empty text as null
    if field.picklist and field.restricted and text not in field.picklist:
        raise bad_picklist(field.label, field.name, text)
    if kind == "email" and not _EMAIL.fullmatch(text):
        raise bad_request(
            "INVALID_EMAIL_ADDRESS", f"{field.label}: invalid email address: {text}", [field.name]
        )
    if field.length and len(text) > field.length:
        raise bad_request(
            "STRING_TOO_LONG",
            f"{field.label}: data value too large: {text[:40]} (max length={field.length})",
            [field.name],
        )
    return text


def _number(field: Field, value: object) -> int | float:
    type_name = _SOAP_TYPES[field.type]
    if isinstance(value, bool):
        raise json_parser_error(type_name, value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise json_parser_error(type_name, value) from None
    if not isinstance(value, (int, float)):
        raise json_parser_error(type_name, value)
    if field.type == "int":
        if isinstance(value, float) and not value.is_integer():
            raise json_parser_error("int", value)
        return int(value)
    return float(value)


def check_reference(field: Field, text: str, live_object_of: Callable[[str], str | None]) -> str:
    """Canonical id for a reference field value; ``live_object_of`` names the object of a live
    record id (None when there is no such record)."""
    canonical = normalize_id(text)
    if canonical is None:
        # Choice: a malformed reference is MALFORMED_ID naming the field (like the Id case).
        raise bad_request(
            "MALFORMED_ID", f"{field.label}: id value of incorrect type: {text}", [field.name]
        )
    target = live_object_of(canonical)
    if target is None:
        # composite_sobjects_update_response.json wording
        raise SalesforceError(
            400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [field.name]
        )
    if target not in field.reference_to:
        raise bad_request(
            "FIELD_INTEGRITY_EXCEPTION",
            f"{field.label}: id value of incorrect type: {canonical}",
            [field.name],
        )
    return canonical
