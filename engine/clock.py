"""Time, injectable so that retry and rate-limit behaviour is tested without real sleeping."""

from __future__ import annotations

import datetime as dt
import threading
import time


def utc_now() -> dt.datetime:
    """The current time as an aware UTC datetime (for rows and run records)."""
    return dt.datetime.now(dt.UTC)


class Clock:
    """Real time: a monotonic clock for waiting, wall time for timestamps."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock(Clock):
    """Time that only moves when something sleeps (or a test advances it)."""

    def __init__(self, start: float = 1_800_000_000.0):
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
