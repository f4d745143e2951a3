"""Zoho CRM API limits (CONTRACTS 4.7): API credits per rolling 24 hours per org, and a cap on
concurrent in-flight requests per app. Both answer 429 TOO_MANY_REQUESTS.

Generic pieces missing from sandbox.kit (core.py, limits.py) are implemented here: a rolling
ledger that charges more than one unit per call, and an in-flight gauge. ``ConcurrencyApp``
counts a request as in flight from the moment it is dispatched (so injected latency counts too)
and refuses it at once when the app is already at its cap.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sandbox.kit.core import App, Request, Response

if TYPE_CHECKING:
    from sandbox.kit.core import Clock

CREDIT_WINDOW = 86_400.0  # CONTRACTS 4.7: credits per rolling 24 h


def write_cost(records: int) -> int:
    """Credits for a create/update/upsert of ``records`` records.

    CONTRACTS 4.7: calls cost different credits and bulk writes of more than 10 records cost
    more. Choice: 1 credit per started block of 10 records (1..10 -> 1, 11..20 -> 2, 100 -> 10);
    every other call (list, get, search, delete) costs 1.
    """
    return max(1, -(-records // 10))


class CreditLedger:
    """At most ``limit`` credits spent within any rolling ``window`` seconds (one org)."""

    def __init__(self, limit: int, clock: Clock, window: float = CREDIT_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._spent: deque[tuple[float, int]] = deque()
        self._total = 0
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        cutoff = now - self.window
        while self._spent and self._spent[0][0] <= cutoff:
            self._total -= self._spent.popleft()[1]

    def spend(self, credits: int) -> bool:
        """Charge ``credits`` unless that would exceed the budget (then charge nothing)."""
        now = self._clock.now()
        with self._lock:
            self._expire(now)
            if self._total + credits > self.limit:
                return False
            self._spent.append((now, credits))
            self._total += credits
            return True

    @property
    def remaining(self) -> int:
        with self._lock:
            self._expire(self._clock.now())
            return self.limit - self._total


class InFlight:
    """Concurrent requests per key, refused above ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.peak = 0

    def enter(self, key: str) -> bool:
        with self._lock:
            count = self._counts.get(key, 0)
            if count >= self.limit:
                return False
            self._counts[key] = count + 1
            self.peak = max(self.peak, count + 1)
            return True

    def leave(self, key: str) -> None:
        with self._lock:
            self._counts[key] -= 1

    def current(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, 0)


class ConcurrencyApp(App):
    """An App whose API requests (``/crm/...``) pass an in-flight gate first.

    ``key_of`` names the app a request belongs to; ``refuse`` builds the 429."""

    REFUSED = "<concurrency limit>"

    def __init__(
        self,
        *,
        gate: InFlight,
        key_of: Callable[[Request], str],
        refuse: Callable[[], Response],
        api_prefix: str = "/crm/",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.gate = gate
        self._key_of = key_of
        self._refuse = refuse
        self._api_prefix = api_prefix

    def dispatch(self, request: Request) -> Response | None:
        if not request.path.startswith(self._api_prefix):
            return super().dispatch(request)
        key = self._key_of(request)
        if not self.gate.enter(key):
            self.stats.record(self.REFUSED)
            return self._refuse()
        try:
            return super().dispatch(request)
        finally:
            self.gate.leave(key)
