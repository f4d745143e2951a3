"""A rate budget in Redis, shared by every worker that syncs the same connection.

The in-process budget's sliding-window log, kept in a sorted set so the vendor's limit holds
summed over all processes and machines. Each step is one Lua script, so two workers never
both take the last slot; times are Redis's own (`TIME`), so the machines' clocks need not
agree. A request is stamped when it is let through and stamped again when its answer arrives:
the vendor counts it somewhere in between, so the later stamp keeps our window at least as
full as the vendor's, whatever the network's jitter.

Per budget, under one Redis Cluster hash tag:
  <key>:log    sorted set: request id -> when (microseconds)
  <key>:slots  sorted set: request id -> lease end, for `max_concurrent` (a killed worker's
               slot frees itself when its lease ends)
  <key>:state  hash: capacity and window the vendor's headers advertised, paused_until
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from typing import Any

import redis

from engine.clock import Clock
from engine.ratelimit import KeyedBudgets
from engine.ratelimit.feedback import DayReport, Feedback
from engine.spec import RateLimitSpec

KEY_PREFIX = "crm-engine:budget"
SLOT_POLL_SECONDS = 0.02  # how often a sender waiting for a concurrency slot looks again
STATE_TTL_SECONDS = 86400  # a budget nobody has used for a day is forgotten

# KEYS: log, slots, state. ARGV: capacity, window (us), request id, max concurrent (0: none),
# slot lease (us), slot poll (us). Returns 0 (sent) or the microseconds to wait.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local capacity = tonumber(redis.call('HGET', KEYS[3], 'capacity') or ARGV[1])
local window = tonumber(redis.call('HGET', KEYS[3], 'window') or ARGV[2])
local paused = tonumber(redis.call('HGET', KEYS[3], 'paused_until') or '0')
if paused > now then return paused - now end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= capacity then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
local slots = tonumber(ARGV[4])
if slots > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= slots then return tonumber(ARGV[6]) end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[3])
  redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[5]) / 1000) + 1000)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) * 2 + 1000)
return 0
"""

# KEYS: log, slots. ARGV: request id. The answer came: stamp the request again, free its slot.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 0
"""

# KEYS: log, state. ARGV: capacity, window (us), pause (us) ('' where not said), state ttl (s),
# fill ('1': the vendor's window is full, and named no reset), the budget's own capacity and
# window (us). A full window the log does not explain gets requests stamped now (`RateBudget`).
_CORRECT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[1] ~= '' then redis.call('HSET', KEYS[2], 'capacity', ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], 'window', ARGV[2]) end
if ARGV[3] ~= '' then
  local paused = tonumber(redis.call('HGET', KEYS[2], 'paused_until') or '0')
  redis.call('HSET', KEYS[2], 'paused_until', math.max(paused, now + tonumber(ARGV[3])))
end
if ARGV[5] == '1' then
  local capacity = tonumber(redis.call('HGET', KEYS[2], 'capacity') or ARGV[6])
  local window = tonumber(redis.call('HGET', KEYS[2], 'window') or ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  for i = redis.call('ZCARD', KEYS[1]) + 1, capacity do
    redis.call('ZADD', KEYS[1], now, 'unexplained:' .. now .. ':' .. i)
  end
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) * 2 + 1000)
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return 0
"""

_US = 1_000_000


def budget_key(connector: str, connection: str, group: str) -> str:
    """The keys' common stem; the braces keep one budget's keys on one Cluster node."""
    return f"{KEY_PREFIX}:{{{connector}:{connection}:{group}}}"


class RedisBudget(DayReport):
    """One connection's (or endpoint group's) budget, as seen from this process."""

    def __init__(self, client: redis.Redis, key: str, spec: RateLimitSpec, clock: Clock,
                 slot_lease_seconds: float = 300.0):
        self._keys = [f"{key}:log", f"{key}:slots", f"{key}:state"]
        self.capacity = spec.requests
        self.window = spec.per_seconds
        self.max_concurrent = spec.max_concurrent or 0
        self.feedback = spec.feedback
        self._clock = clock
        self._slot_lease = slot_lease_seconds
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._correct = client.register_script(_CORRECT)
        self._held = threading.local()  # this thread's requests in flight, newest last
        self.waited_seconds = 0.0

    def acquire(self) -> None:
        request = uuid.uuid4().hex
        while True:
            wait = int(self._acquire(keys=self._keys, args=[
                self.capacity, int(self.window * _US), request, self.max_concurrent,
                int(self._slot_lease * _US), int(SLOT_POLL_SECONDS * _US)]))
            if wait == 0:
                break
            self.waited_seconds += wait / _US
            self._clock.sleep(wait / _US)
        if not hasattr(self._held, "requests"):
            self._held.requests = []
        self._held.requests.append(request)

    def release(self, stamp: Any = None) -> None:
        # `stamp` is unused: the shared window counts each request from when it was sent.
        requests = getattr(self._held, "requests", None)
        if requests:
            self._release(keys=self._keys[:2], args=[requests.pop()])

    def observe(self, headers: Mapping[str, Any]) -> None:
        if not self.feedback:
            return
        said = Feedback.read(self.feedback, headers)
        self.note_day(said)
        capacity = max(1, int(said.limit)) if said.limit else None
        window, pause, fill = said.window or None, said.pause_seconds, said.window_full
        if capacity is None and window is None and pause is None and not fill:
            return
        self._correct_state(capacity, window, pause, fill)

    def pause(self, seconds: float) -> None:
        self._correct_state(None, None, seconds, False)

    def _correct_state(self, capacity: int | None, window: float | None, pause: float | None,
                       fill: bool) -> None:
        self._correct(keys=[self._keys[0], self._keys[2]], args=[
            "" if capacity is None else capacity, "" if window is None else int(window * _US),
            "" if pause is None else int(pause * _US), STATE_TTL_SECONDS, "1" if fill else "",
            self.capacity, int(self.window * _US)])


class RedisBudgets(KeyedBudgets):
    """`Budgets` in Redis: every process asking for the same key spends the same budget."""

    def __init__(self, client: redis.Redis, clock: Clock):
        super().__init__()
        self._client = client
        self._clock = clock

    def _make(self, key: tuple[str, str, str], spec: RateLimitSpec) -> RedisBudget:
        return RedisBudget(self._client, budget_key(*key), spec, self._clock)
