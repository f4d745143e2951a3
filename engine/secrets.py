"""Keep secrets out of logs, errors, reprs and the database.

Every token, client secret or API key the engine learns is registered here, and so is every
value computed from one (a Basic header's base64, a header that embeds a key: engine.authkinds
registers what it renders); `redact` replaces any registered value in a string, in the forms it
takes in a URL too. Values are wrapped in `Secret` so a stray repr shows `***`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

from engine.errors import InputError

_lock = threading.Lock()
_known: set[str] = set()
# Every value known when it was built, longest first, as one pattern: `redact` runs on every
# page's checkpoint and log line, with a secret or more per connection registered. Compiling it
# costs time in proportion to every known value (20 ms for 400), so it is not rebuilt at each
# register: values registered since wait in `_recent`, and a text that contains none of them
# (nearly every text: secrets are rarely where they are looked for) is redacted exactly as the
# full pattern would. A text that contains one, or more than RECENT_LIMIT waiting, rebuilds it.
# The two are swapped together (one tuple), so a reader never pairs a pattern with the wrong list.
_redaction: tuple[re.Pattern[str] | None, tuple[str, ...]] = (None, ())
RECENT_LIMIT = 64
MASK = "***"
MIN_LENGTH = 4  # shorter values would mask ordinary text
# The engine's loggers, and httpx's (it logs each request's URL, query string included).
LOGGERS = ("crm_engine", "crm_engine.http", "crm_engine.sync", "crm_engine.convert", "httpx")


class Secret(str):
    """A string whose repr never shows its value (str() still does, for headers)."""

    def __repr__(self) -> str:
        return "Secret('***')"


def register(value: Any) -> None:
    """Remember a secret value so `redact` hides it from now on, as it is and as it reads in a
    URL (a key in a query string is percent-encoded: `+` as %2B, a space as +)."""
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        return
    value = str(value)
    forms = {value, quote(value, safe=""), quote_plus(value), quote(value)}
    global _redaction
    with _lock:
        new = forms - _known
        if new:
            _known.update(new)
            pattern, recent = _redaction
            _redaction = (pattern, (*recent, *new))


def _rebuild() -> re.Pattern[str] | None:
    global _redaction
    with _lock:
        pattern, recent = _redaction
        if recent:
            pattern = re.compile("|".join(
                re.escape(known) for known in sorted(_known, key=len, reverse=True)))
            _redaction = (pattern, ())
        return pattern


def from_environment(variable: str | None, what: str) -> str | None:
    """A secret read from an environment variable (None when no variable is named), registered
    for redaction; an unset one is an error naming the variable and `what` it holds."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise InputError(variable, f"is not set ({what})")
    register(value)
    return value


def is_registered(value: str) -> bool:
    with _lock:
        return value in _known


def redact(text: Any) -> Any:
    """Replace every registered secret in a string (other types pass through)."""
    if not isinstance(text, str):
        return text
    pattern, recent = _redaction
    if recent and (len(recent) > RECENT_LIMIT or any(value in text for value in recent)):
        pattern = _rebuild()
    if pattern is None or pattern.search(text) is None:
        return text
    return pattern.sub(MASK, text)


def redact_deep(value: Any) -> Any:
    """Redact strings inside nested dicts and lists (error bodies, logged requests)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_deep(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from every record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned is not message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Scrub one logger's records (default: the root's) and its handlers'. A logger's filters
    see only the records it creates itself, not its children's: see LOGGERS."""
    target = logger or logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
