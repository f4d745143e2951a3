"""Sync progress: a live line on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from engine.store import SyncRun


class TerminalProgress:
    """Redraws one status line per stream, at most ten times a second."""

    def __init__(self, out: TextIO = sys.stderr):
        self.out = out
        self._started = 0.0
        self._drawn = 0.0

    def stream_started(self, run: SyncRun) -> None:
        self._started = time.perf_counter()
        self._draw(run, force=True)

    def page_read(self, run: SyncRun) -> None:
        self._draw(run)

    def stream_finished(self, run: SyncRun) -> None:
        self._draw(run, force=True)
        self.out.write("\n")
        self.out.flush()

    def _draw(self, run: SyncRun, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        elapsed = max(now - self._started, 1e-9)
        records = run.fetched
        self.out.write(f"\r  {run.stream:<14} {run.status:<9} {records:>9,} records "
                       f"{run.pages:>6,} pages  {records / elapsed:>9,.0f} rec/s")
        self.out.flush()


class LogProgress:
    """One line when a stream starts and one when it ends (for cron and CI logs)."""

    def __init__(self, out: TextIO = sys.stderr):
        self.out = out
        self._started = 0.0

    def stream_started(self, run: SyncRun) -> None:
        self._started = time.perf_counter()
        print(f"sync {run.connection}/{run.stream}: started", file=self.out, flush=True)

    def page_read(self, run: SyncRun) -> None:
        pass

    def stream_finished(self, run: SyncRun) -> None:
        elapsed = time.perf_counter() - self._started
        error = f" error: {run.error}" if run.error else ""
        print(f"sync {run.connection}/{run.stream}: {run.status}, {run.records} records, "
              f"{run.pages} pages, {run.requests} requests, {run.retries} retries, "
              f"{elapsed:.1f}s{error}", file=self.out, flush=True)


def progress_for(stream: TextIO = sys.stderr) -> TerminalProgress | LogProgress:
    return TerminalProgress(stream) if stream.isatty() else LogProgress(stream)
