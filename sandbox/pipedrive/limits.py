"""Pipedrive rate limits (CONTRACTS 3.7): a burst limit per token in 2-second windows and a
company-wide daily budget of *tokens* where each call costs a number of tokens.

Core's SlidingWindowLimiter (rolling window, no reset time) and DailyCounter (one hit per call)
do not fit: Pipedrive reports ``x-ratelimit-reset`` (seconds until the window resets) and
charges calls different amounts, so both limiters live here.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.kit.core import Clock

# Token cost per call. CONTRACTS 3.7 gives "roughly GET single 2 / list 20 / write 10 /
# search 40" as UNCONFIRMED third-party numbers; we use them for v1. The v2 overview states v2
# has "lower rate limiter token costs per endpoint" [V]; we choose half of the v1 cost.
COSTS = {
    "get": 2,
    "list": 20,
    "write": 10,  # POST, PUT/PATCH
    "delete": 6,
    "search": 40,
    "meta": 20,  # fields, users, stages, pipelines, activity types, recents
}
V2_DIVISOR = 2


def cost(operation: str, version: int) -> int:
    base = COSTS[operation]
    return base if version == 1 else max(1, base // V2_DIVISOR)


class FixedWindowLimiter:
    """At most ``limit`` hits per key in a window of ``window`` seconds that starts at the first
    hit, like Pipedrive's 2-second windows (the recorded ``x-ratelimit-reset`` is 2 on the first
    request of a window)."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._windows: dict[str, list[float]] = {}  # key -> [window start, hits]
        self._lock = threading.Lock()

    def hit(self, key: str) -> tuple[bool, int, int]:
        """(allowed, remaining after this hit, whole seconds until the window resets)."""
        now = self._clock.now()
        with self._lock:
            state = self._windows.get(key)
            if state is None or now >= state[0] + self.window:
                if len(self._windows) > 10_000:
                    self._windows.clear()
                state = self._windows[key] = [now, 0]
            reset = max(1, math.ceil(state[0] + self.window - now))
            if state[1] >= self.limit:
                return False, 0, reset
            state[1] += 1
            return True, self.limit - int(state[1]), reset


class TokenBudget:
    """A daily budget of API tokens for the whole company, reset at 00:00 UTC on the sandbox
    clock (the reset time of day is UNCONFIRMED)."""

    def __init__(self, limit: int, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._day = -1
        self._spent = 0
        self._lock = threading.Lock()

    def _roll(self) -> None:
        day = int(self._clock.now() // 86_400)
        if day != self._day:
            self._day, self._spent = day, 0

    def spend(self, tokens: int) -> tuple[bool, int]:
        """Charge ``tokens`` unless the budget cannot cover them: (allowed, remaining)."""
        with self._lock:
            self._roll()
            if self._spent + tokens > self.limit:
                return False, 0
            self._spent += tokens
            return True, self.limit - self._spent

    def remaining(self) -> int:
        with self._lock:
            self._roll()
            return self.limit - self._spent

    def spend_all(self, tokens: int | None = None) -> int:
        """Test hook: spend ``tokens`` (default: everything left); returns what remains."""
        with self._lock:
            self._roll()
            left = self.limit - self._spent
            self._spent += left if tokens is None else min(tokens, left)
            return self.limit - self._spent
