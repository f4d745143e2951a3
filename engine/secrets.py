"""Keep secrets out of logs, errors, reprs and the database.

Every token, client secret or API key the engine learns is registered here; `redact` replaces
any registered value in a string. Values are wrapped in `Secret` so a stray repr shows `***`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

_lock = threading.Lock()
_known: set[str] = set()
MASK = "***"


class Secret(str):
    """A string whose repr never shows its value (str() still does, for headers)."""

    def __repr__(self) -> str:
        return "Secret('***')"


def register(value: Any) -> None:
    """Remember a secret value so `redact` hides it from now on."""
    if isinstance(value, str) and len(value) >= 4:
        with _lock:
            _known.add(str(value))


def redact(text: Any) -> Any:
    """Replace every registered secret in a string (other types pass through)."""
    if not isinstance(text, str) or not _known:
        return text
    with _lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


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
    target = logger or logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
