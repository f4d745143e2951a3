"""Rate budgets: spent before each request so a connection stays under its vendor's limit.

`Budget` is what a session spends (engine.transport); `Budgets` hands out one per
(connector, connection, group) and is chosen by whoever builds the Engine. Side by side:
`local.RateBudget`, the in-process default, and `redis_budget.RedisBudget`, shared by every
worker of a distributed deployment (it imports redis: only the distributed mode loads it).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

from engine.clock import Clock
from engine.ratelimit.feedback import Feedback
from engine.ratelimit.local import RateBudget
from engine.spec import RateLimitSpec


class Budget(Protocol):
    waited_seconds: float  # time spent waiting for the budget, by this process
    daily_remaining: float | None  # the vendor's last report of the day's remaining calls
    usage: str | None  # the vendor's last "used/allowed" report

    def acquire(self) -> Any:
        """Block until a request may be sent, then count it; returns a stamp for `release`."""

    def release(self, stamp: Any = None) -> None:
        """The request acquired last by this thread (`stamp`, what `acquire` returned) got
        its answer."""

    def observe(self, headers: Mapping[str, Any]) -> None:
        """Correct the budget from one response's rate-limit headers."""

    def pause(self, seconds: float) -> None:
        """Hold every sender back (after a 429 that said how long to wait)."""


class Budgets(Protocol):
    def budget(self, connector: str, connection: str, group: str,
               spec: RateLimitSpec) -> Budget:
        """The budget of one connection (`group` "" for the whole API, else an endpoint
        group limited apart); the same object for the same key."""


class KeyedBudgets:
    """One budget per (connector, connection, group), made on first use and kept."""

    def __init__(self) -> None:
        self._budgets: dict[tuple[str, str, str], Budget] = {}
        self._lock = threading.Lock()

    def budget(self, connector: str, connection: str, group: str,
               spec: RateLimitSpec) -> Budget:
        with self._lock:
            key = (connector, connection, group)
            if key not in self._budgets:
                self._budgets[key] = self._make(key, spec)
            return self._budgets[key]

    def _make(self, key: tuple[str, str, str], spec: RateLimitSpec) -> Budget:
        raise NotImplementedError


class LocalBudgets(KeyedBudgets):
    """In-process budgets: the embedded default."""

    def __init__(self, clock: Clock):
        super().__init__()
        self._clock = clock

    def _make(self, key: tuple[str, str, str], spec: RateLimitSpec) -> Budget:
        return RateBudget(spec, self._clock)


__all__ = ["Budget", "Budgets", "Feedback", "KeyedBudgets", "LocalBudgets", "RateBudget"]
