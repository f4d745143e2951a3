"""Zoho CRM times: every datetime carries the org's UTC offset (CONTRACTS 4.3), e.g.
``2026-05-14T12:51:40+03:00``; dates are ``YYYY-MM-DD``.

Formatting is table-driven because seeding 100,000 contacts formats 200,000 timestamps.
"""

from __future__ import annotations

import email.utils
import functools
import re
import time
from datetime import datetime

_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# yyyy-MM-ddTHH:mm:ss with an offset (or Z); fractions are tolerated and dropped.
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$")


def parse_offset(text: str) -> int:
    """``"+03:00"`` -> 10800 seconds. Raises ValueError for anything else."""
    match = _OFFSET.match(text.strip())
    if not match:
        raise ValueError(f"org_offset must look like +03:00 or -05:30, got {text!r}")
    sign, hours, minutes = match.groups()
    seconds = int(hours) * 3600 + int(minutes) * 60
    if seconds > 14 * 3600:
        raise ValueError(f"org_offset out of range: {text!r}")
    return -seconds if sign == "-" else seconds


@functools.cache
def clock_table() -> tuple[str, ...]:
    two = [f"{n:02d}" for n in range(60)]
    return tuple(f"T{h}:{m}:{s}" for h in two[:24] for m in two for s in two)


@functools.lru_cache(maxsize=8192)
def day_text(days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(days * 86400))


class OrgTime:
    """Formats and parses times in one org's offset."""

    def __init__(self, offset: str) -> None:
        self.offset_text = _normalise(offset)
        self.offset = parse_offset(offset)
        self._clock = clock_table()

    def format(self, epoch: float) -> str:
        local = int(epoch) + self.offset
        return day_text(local // 86400) + self._clock[local % 86400] + self.offset_text

    def date(self, epoch: float) -> str:
        return day_text((int(epoch) + self.offset) // 86400)


def _normalise(offset: str) -> str:
    sign, hours, minutes = _OFFSET.match(offset.strip()).groups()
    return f"{sign}{hours}:{minutes}"


def is_date(value: object) -> bool:
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def parse_datetime(value: object) -> float | None:
    """Epoch seconds of an ISO 8601 datetime with an offset, or None when it is not one."""
    if not isinstance(value, str) or not _DATETIME.match(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_http_or_iso(value: str) -> float | None:
    """If-Modified-Since: ISO 8601 with offset (as Zoho documents) or an RFC 1123 HTTP date."""
    epoch = parse_datetime(value.strip())
    if epoch is not None:
        return epoch
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.timestamp() if parsed.tzinfo else None
