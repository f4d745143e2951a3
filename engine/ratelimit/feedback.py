"""What a response's rate-limit headers say, read once for every kind of budget."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.spec import HeaderValue


@dataclass(frozen=True)
class Feedback:
    """What one response's rate-limit headers say (None: not said)."""

    limit: float | None = None
    window: float | None = None
    remaining: float | None = None
    reset: float | None = None
    daily_remaining: float | None = None
    usage: tuple[int, int] | None = None  # (used, allowed) today

    @classmethod
    def read(cls, feedback: Mapping[str, HeaderValue], headers: Mapping[str, Any]) -> Feedback:
        values = {key: hv.read(headers) for key, hv in feedback.items() if key != "daily_usage"}
        usage = feedback["daily_usage"].read_usage(headers) if "daily_usage" in feedback \
            else None
        return cls(values.get("limit"), values.get("window"), values.get("remaining"),
                   values.get("reset"), values.get("daily_remaining"), usage)

    @property
    def exhausted(self) -> bool:
        """Whether the vendor says nothing remains in its window."""
        return self.remaining is not None and self.remaining <= 0
