"""Running work concurrently within a bound: at most N streams syncing at once, across every
connection of an Engine, each in a thread of its own (streams wait on rate budgets and the
network, not on the CPU). A bounded number in flight bounds memory too: each holds at most a
page being mapped, one fetched ahead, a batch being built and one landing."""

from __future__ import annotations

import contextvars
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
    task's exception (in task order) once all have ended. Whatever stops the wait (Ctrl-C,
    SIGTERM, a worker's time limit) calls `on_interrupt`, gives the tasks `grace_seconds` to
    wind down, and is raised again.

    A single task gets a thread too: Python raises KeyboardInterrupt in the main thread at
    whatever line it is on, and a sync stopped halfway through mapping a page, or through
    handing a batch over, would land a batch whose columns disagree. Tasks stop at their own
    safe points instead, once `on_interrupt` asks them to."""
    results: list[T | None] = [None] * len(tasks)
    errors: list[BaseException | None] = [None] * len(tasks)
    ended = [threading.Event() for _ in tasks]

    def work(i: int) -> None:
        try:
            results[i] = tasks[i]()
        except BaseException as exc:  # re-raised in the calling thread
            errors[i] = exc
        finally:
            ended[i].set()

    for i in range(len(tasks)):  # each in a copy of the caller's context (its ContextVars)
        threading.Thread(target=contextvars.copy_context().run, args=(work, i),
                         name=f"{name}-{i}", daemon=True).start()
    # Waiting on events, not Thread.join: on Python 3.11 a join interrupted by a signal marks
    # the thread as stopped, and every later join returns at once (bpo-45274's fix).
    try:
        for event in ended:
            event.wait()
    except BaseException:
        on_interrupt()
        deadline = time.monotonic() + grace_seconds
        for event in ended:
            event.wait(max(0.0, deadline - time.monotonic()))
        raise
    for error in errors:
        if error is not None:
            raise error
    return results  # type: ignore[return-value]
