"""The in-process budget: one per connection, spent before each request so we stay under the limit.

A sliding-window log of send times holds at most `requests` sends per `per_seconds`. Once
answered, a request counts from its answer instead: the vendor saw it somewhere between the two,
and under load (many streams, many connections) that can be well after it was sent, so a window
counted from the send alone could run ahead of the vendor's and draw 429s. The
vendor's rate-limit headers (named in the YAML) correct it: the advertised limit and window
replace ours, and a `remaining` of zero pauses sending until the reset it names, or, naming
none, fills the log to the limit: requests the vendor counted that the log does not hold
(another client's) count from now, while those it holds leave as they would. A whole window's
pause instead, each time a window filled, cost every throttled sync a window per window.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from engine.clock import Clock
from engine.ratelimit.feedback import DayReport, Feedback
from engine.spec import RateLimitSpec


class RateBudget(DayReport):
    def __init__(self, spec: RateLimitSpec, clock: Clock):
        self.capacity = spec.requests
        self.window = spec.per_seconds
        self.feedback = spec.feedback
        self._clock = clock
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._slots = (threading.BoundedSemaphore(spec.max_concurrent)
                       if spec.max_concurrent else None)

    def acquire(self) -> float:
        """Block until a request may be sent, then count it; returns its stamp for `release`."""
        while True:
            with self._lock:
                now = self._clock.monotonic()
                self._forget_before(now - self.window)
                if self._paused_until > now:
                    wait = self._paused_until - now
                elif len(self._sent) >= self.capacity:
                    wait = self._sent[0] + self.window - now
                else:
                    self._sent.append(now)
                    stamp = now
                    break
            self._clock.sleep(wait)
        if self._slots is not None:
            self._slots.acquire()
        return stamp

    def release(self, stamp: float | None = None) -> None:
        """The request is answered (or failed): it counts in the window from now on."""
        if stamp is not None:
            with self._lock:
                with contextlib.suppress(ValueError):  # already out of the window
                    self._sent.remove(stamp)
                self._sent.append(self._clock.monotonic())
        if self._slots is not None:
            self._slots.release()

    def observe(self, headers: Mapping[str, Any]) -> None:
        """Correct the budget from one response's rate-limit headers."""
        if not self.feedback:
            return
        said = Feedback.read(self.feedback, headers)
        with self._lock:
            if said.window:
                self.window = said.window
            if said.limit:
                self.capacity = max(1, int(said.limit))
            if said.pause_seconds is not None:
                self._paused_until = max(self._paused_until,
                                         self._clock.monotonic() + said.pause_seconds)
            if said.window_full:
                self._fill(self._clock.monotonic())
            self.note_day(said)

    def _fill(self, now: float) -> None:
        """The vendor's window is full: what the log does not explain was sent just now."""
        self._forget_before(now - self.window)
        self._sent.extend([now] * (self.capacity - len(self._sent)))

    def _forget_before(self, moment: float) -> None:
        while self._sent and self._sent[0] <= moment:
            self._sent.popleft()

    def pause(self, seconds: float) -> None:
        """Hold every sender back (after a 429 that said how long to wait)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock.monotonic() + seconds)
