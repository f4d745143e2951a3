"""What a distributed deployment sets in the environment, read once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass

from engine.errors import InputError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _seconds(variable: str, default: float) -> float:
    raw = os.environ.get(variable)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InputError(variable, f"not a number of seconds: {raw!r}") from None
    if value <= 0:
        raise InputError(variable, f"must be more than 0 seconds, got {raw}")
    return value


@dataclass(frozen=True)
class Settings:
    # Broker, rate budgets and locks: one Redis for the whole deployment.
    redis_url: str = DEFAULT_REDIS_URL
    # A task taken by a worker that then vanished is handed out again after this long. A unit
    # still running by then is not run twice (its lock), its copy waits for it.
    visibility_timeout: float = 3600.0
    # A unit's lock lives this long after its worker's last renewal (every third of it): how
    # soon a unit whose worker was killed can run elsewhere.
    unit_lease: float = 60.0
    # How long a token refresh may hold its lock before another worker may try.
    refresh_lease: float = 60.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            redis_url=os.environ.get("CRM_ENGINE_REDIS_URL") or DEFAULT_REDIS_URL,
            visibility_timeout=_seconds("CRM_ENGINE_VISIBILITY_TIMEOUT", 3600.0),
            unit_lease=_seconds("CRM_ENGINE_UNIT_LEASE", 60.0),
            refresh_lease=_seconds("CRM_ENGINE_REFRESH_LEASE", 60.0),
        )
