"""Deterministic seed-data mechanics shared by the vendor seeds (``<vendor>/seed.py``): one
seeded draw stream, rising ids, creation/modification timelines, e-mail slugs and a GC pause for
loading.

The same seed must give byte-identical records, so every helper here draws from the stream in
a fixed order: adding, dropping or reordering a draw changes every vendor's data.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import random
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Draw:
    """Deterministic draws from one seeded stream. Built on Random.random() (C code) because
    Random.choice/randrange cost ~1 us each and 100,000 contacts need over a million draws."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed).random

    def below(self, n: int) -> int:
        return int(self.random() * n)

    def pick(self, options: tuple | list) -> Any:
        return options[int(self.random() * len(options))]

    def maybe(self, probability: float, value: T) -> T | None:
        return value if self.random() < probability else None


def rising_ids(draw: Draw, first: int, count: int, max_step: int) -> Iterator[int]:
    """``count`` increasing ids from ``first``, each 1..max_step above the one before, like an
    account where records were deleted. Lazy: the step after an id is drawn when the next one
    is asked for (after the caller's draws for that record); ``list()`` draws all up front."""
    current = first
    for _ in range(count):
        yield current
        current += 1 + draw.below(max_step)


class Timeline:
    """Creation times rising with the record index, one slot of [start, end) per record, and
    modification times between creation and ``end``, skewed towards creation."""

    def __init__(self, draw: Draw, count: int, start: int, end: int) -> None:
        self._draw = draw
        self._start = start
        self._end = end
        self._step = (end - start) // max(count, 1)

    def span(self, index: int) -> tuple[int, int]:
        """(created, modified) of record ``index``, in the unit of start and end."""
        created = self._start + index * self._step + self._draw.below(self._step)
        modified = created + int((self._end - created) * self._draw.random() ** 2)
        return created, modified


def slugger(fallback: str) -> Callable[[str], str]:
    """``text`` -> its lower-case ASCII letters and digits (``fallback`` when none are left),
    for e-mail addresses and domains. Cached: names come from small word lists."""

    @functools.cache
    def slug(text: str) -> str:
        cleaned = "".join(ch for ch in text.lower() if ch.isascii() and ch.isalnum())
        return cleaned or fallback

    return slug


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Seeding allocates millions of long-lived objects; generational GC passes over the
    growing heap would double the start-up time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
