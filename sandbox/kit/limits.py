"""Rate-limit bookkeeping for the emulators; each vendor renders its own 429s and headers."""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.kit.core import Clock


class SlidingWindowLimiter:
    """At most ``limit`` hits per key within any rolling ``window`` seconds."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        cutoff = now - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        return hits

    def hit(self, key: str) -> tuple[bool, int]:
        """Count a hit unless the window is full. Returns (allowed, remaining after it)."""
        now = self._clock.now()
        with self._lock:
            hits = self._live(key, now)
            if len(hits) >= self.limit:
                return False, 0
            hits.append(now)
            return True, self.limit - len(hits)

    def remaining(self, key: str) -> int:
        with self._lock:
            return max(0, self.limit - len(self._live(key, self._clock.now())))


class DailyCounter:
    """At most ``limit`` hits per key per UTC day of the sandbox clock."""

    def __init__(self, limit: int, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (day number, hits)
        self._lock = threading.Lock()

    def hit(self, key: str) -> tuple[bool, int]:
        """Count a hit unless today's budget is spent. Returns (allowed, remaining after it)."""
        day = int(self._clock.now() // 86400)
        with self._lock:
            counted_day, count = self._counts.get(key, (day, 0))
            if counted_day != day:
                count = 0
            if count >= self.limit:
                return False, 0
            self._counts[key] = (day, count + 1)
            return True, self.limit - count - 1
