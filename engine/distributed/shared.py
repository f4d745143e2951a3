"""State the workers share in Redis besides the broker's queues: a lock per unit, a lock per
token refresh, and which tasks are done. Locks are redis-py's (a token per holder, released
only by its holder, with a lease so a killed holder's lock frees itself)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError

from engine.distributed.settings import Settings

log = logging.getLogger("crm_engine.distributed")
PREFIX = "crm-engine"
DONE_TTL_SECONDS = 7 * 86400  # longer than any task waits in the queue
REFRESH_WAIT_SECONDS = 120.0  # a worker waits this long for another's refresh to finish


class SharedState:
    def __init__(self, client: redis.Redis, settings: Settings):
        self.client = client
        self.settings = settings

    @classmethod
    def connect(cls, settings: Settings) -> SharedState:
        return cls(redis.Redis.from_url(settings.redis_url, health_check_interval=30), settings)

    # -- units --------------------------------------------------------------------------------
    @contextmanager
    def unit_lock(self, connection: str, stream: str) -> Iterator[bool]:
        """Hold the unit's lock while the block runs (yields False, holding nothing, when
        another worker runs the unit). The lease is renewed from a thread; a worker killed
        mid-sync stops renewing and the lock frees itself `unit_lease` seconds later."""
        lease = self.settings.unit_lease
        lock = self.client.lock(f"{PREFIX}:unit:{{{connection}:{stream}}}", timeout=lease,
                                blocking=False, thread_local=False)
        # The lock's value names its holder, for whoever asks which worker runs a unit.
        if not lock.acquire(token=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"):
            yield False
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(lease / 3):
                try:
                    lock.reacquire()
                except (LockError, redis.RedisError) as exc:
                    log.error("unit %s/%s: cannot renew its lock (%s); another worker may "
                              "start it too: the store's transactions keep its rows whole",
                              connection, stream, exc)
                    return

        renewer = threading.Thread(target=renew, name=f"lease-{connection}-{stream}",
                                   daemon=True)
        renewer.start()
        try:
            yield True
        finally:
            stop.set()
            renewer.join()
            try:
                lock.release()
            except (LockError, redis.RedisError) as exc:  # expired, or Redis is gone
                log.warning("unit %s/%s: lock already gone at release: %s", connection,
                            stream, exc)

    def is_done(self, task_id: str) -> bool:
        return bool(self.client.exists(f"{PREFIX}:done:{task_id}"))

    def mark_done(self, task_id: str) -> None:
        """A delivery of this task that comes again (the broker redelivers what it never saw
        acknowledged) is acknowledged without syncing."""
        self.client.set(f"{PREFIX}:done:{task_id}", 1, ex=DONE_TTL_SECONDS)

    # -- token refresh ------------------------------------------------------------------------
    @contextmanager
    def refresh_lock(self, connection: str) -> Iterator[None]:
        """One token refresh per connection at a time across every worker (the refresh logic
        re-reads the credential store under it, so the second finds the first's token)."""
        lock = self.client.lock(f"{PREFIX}:refresh:{{{connection}}}",
                                timeout=self.settings.refresh_lease,
                                blocking_timeout=REFRESH_WAIT_SECONDS, thread_local=False)
        if not lock.acquire():
            raise LockError(f"connection {connection}: another worker's token refresh held "
                            f"its lock for over {REFRESH_WAIT_SECONDS:.0f}s")
        try:
            yield
        finally:
            try:
                lock.release()
            except LockError:  # held past its lease: the refresh wrote its token already
                log.warning("connection %s: refresh lock expired before release", connection)
