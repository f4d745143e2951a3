"""What a response's rate-limit headers say, read once for every kind of budget."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.clock import Clock
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


class DayReport:
    """What the vendor last said of its day, as a budget of either kind keeps it: the calls
    left, and `used/allowed` for `sync_runs.api_usage`."""

    _clock: Clock
    usage: str | None = None  # the vendor's last "used/allowed" report
    _daily_remaining: float | None = None
    _daily_said_at = 0.0

    @property
    def daily_remaining(self) -> float | None:
        """The day's calls left, as last said; once none, the report lapses (None: not known)
        after `DAILY_RECHECK_SECONDS` on the budget's clock, so that the next request asks."""
        left = self._daily_remaining
        if left is not None and left <= 0 and \
                self._clock.monotonic() - self._daily_said_at >= DAILY_RECHECK_SECONDS:
            return None
        return left

    @daily_remaining.setter
    def daily_remaining(self, left: float | None) -> None:
        self._daily_remaining, self._daily_said_at = left, self._clock.monotonic()

    def note_day(self, said: Feedback) -> None:
        if said.daily_remaining is not None:
            self.daily_remaining = said.daily_remaining
        if said.usage is not None:
            self.usage = f"{said.usage[0]}/{said.usage[1]}"
