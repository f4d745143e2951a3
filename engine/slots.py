"""Running work concurrently within a bound: at most N streams syncing at once, across every
connection of an Engine, each in a thread of its own (streams wait on rate budgets and the
network, not on the CPU). A bounded number in flight bounds memory too: each holds at most a
page being mapped, one fetched ahead, a batch being built and one landing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from engine.errors import Cancelled

T = TypeVar("T")
POLL_SECONDS = 0.2


class Slots:
    """At most `limit` holders at once (None: no bound). Waiting stops when `cancelled` is set."""

    def __init__(self, limit: int | None, cancelled: threading.Event):
        if limit is not None and limit < 1:
            raise ValueError("a concurrency limit must be at least 1")
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit) if limit else None
        self._cancelled = cancelled

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._free is None:
            yield
            return
        while not self._free.acquire(timeout=POLL_SECONDS):
            if self._cancelled.is_set():
                raise Cancelled("the sync was cancelled")
        try:
            yield
        finally:
            self._free.release()


def run_concurrently(tasks: list[Callable[[], T]], *, on_interrupt: Callable[[], None],
                     grace_seconds: float, name: str = "worker") -> list[T]:
    """Run each task in a thread of its own; return their results in order, or raise the first
    task's exception (in task order) once all have ended. A KeyboardInterrupt while waiting
    (Ctrl-C, SIGTERM) calls `on_interrupt`, gives the tasks `grace_seconds` to wind down, and
    is raised again. One task runs in the calling thread."""
    if len(tasks) == 1:
        return [tasks[0]()]
    results: list[T | None] = [None] * len(tasks)
    errors: list[BaseException | None] = [None] * len(tasks)

    def work(i: int) -> None:
        try:
            results[i] = tasks[i]()
        except BaseException as exc:  # re-raised in the calling thread
            errors[i] = exc

    threads = [threading.Thread(target=work, args=(i,), name=f"{name}-{i}", daemon=True)
               for i in range(len(tasks))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        on_interrupt()
        deadline = time.monotonic() + grace_seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        raise
    for error in errors:
        if error is not None:
            raise error
    return results  # type: ignore[return-value]
