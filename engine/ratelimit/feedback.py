"""What a response's rate-limit headers say, read once for every kind of budget."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.spec import HeaderValue

# When a spent day is asked about again. When a vendor's day resets is not in its answers
# (midnight in some time zone, or a rolling 24 hours: the connector files' comments say), and a
# process that stopped sending would never hear of the reset: a long-lived worker once stopped
# a connection for good. A quarter of an hour is our choice (UNCONFIRMED by any vendor): at
# most four refused requests an hour while the day is still spent.
DAILY_RECHECK_SECONDS = 900.0


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
        allowed, left = values.get("daily_limit"), values.get("daily_remaining")
        if usage is None and allowed is not None and left is not None:  # two headers say it
            usage = (int(allowed - left), int(allowed))
        if usage is not None:
            left = usage[1] - usage[0]
        return cls(values.get("limit"), values.get("window"), values.get("remaining"),
                   values.get("reset"), left, usage)

    @property
    def pause_seconds(self) -> float | None:
        """How long every sender waits: nothing remains, and the vendor says when it resets."""
        return self.reset if self._exhausted and self.reset else None

    @property
    def window_full(self) -> bool:
        """Nothing remains, and no reset is named: a rolling window, which the budget's log
        fills (the requests it does not hold count from now)."""
        return self._exhausted and not self.reset

    @property
    def _exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def note_day(self, budget: Any) -> None:
        """What the vendor said of its day, on the budget (either kind)."""
        if self.daily_remaining is not None:
            budget.daily_remaining = self.daily_remaining
        if self.usage is not None:
            budget.usage = f"{self.usage[0]}/{self.usage[1]}"


class DailyRemaining:
    """A budget's `daily_remaining`: the vendor's last report of the day's calls left, which,
    once it says none, lapses (None: not known) after `DAILY_RECHECK_SECONDS` on the budget's
    clock, so that the next request asks again."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._value, self._said_at = f"_{name}", f"_{name}_said_at"

    def __get__(self, budget: Any, owner: type | None = None) -> float | None:
        value = getattr(budget, self._value, None)
        if value is not None and value <= 0 and \
                budget._clock.monotonic() - getattr(budget, self._said_at) >= \
                DAILY_RECHECK_SECONDS:
            return None
        return value

    def __set__(self, budget: Any, value: float | None) -> None:
        setattr(budget, self._value, value)
        setattr(budget, self._said_at, budget._clock.monotonic())
