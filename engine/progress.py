"""Sync progress: a live line on a terminal, plain log lines otherwise. Streams of a connection
run concurrently, so both keep each run's own start time, under a lock."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

from engine.store import SyncRun


class TerminalProgress:
    """Redraws one status line for the streams running, at most ten times a second; a stream
    that ends gets a line of its own."""

    def __init__(self, out: TextIO = sys.stderr):
        self.out = out
        self._running: dict[str, tuple[SyncRun, float]] = {}
        self._drawn = 0.0
        self._lock = threading.Lock()

    def stream_started(self, run: SyncRun) -> None:
        with self._lock:
            self._running[run.run_id] = (run, time.perf_counter())
            self._draw(force=True)

    def page_read(self, run: SyncRun) -> None:
        with self._lock:
            self._draw()

    def stream_finished(self, run: SyncRun) -> None:
        with self._lock:
            _, started = self._running.pop(run.run_id, (run, time.perf_counter()))
            self.out.write(f"\r\033[K  {_describe(run, started)}\n")
            self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not self._running or (not force and now - self._drawn < 0.1):
            return
        self._drawn = now
        line = " | ".join(_describe(run, started) for run, started in self._running.values())
        self.out.write(f"\r\033[K  {line}")
        self.out.flush()


def _describe(run: SyncRun, started: float) -> str:
    elapsed = max(time.perf_counter() - started, 1e-9)
    return (f"{run.stream:<14} {run.status:<9} {run.fetched:>9,} records {run.pages:>6,} pages "
            f"{run.fetched / elapsed:>9,.0f} rec/s")


class LogProgress:
    """One line when a stream starts and one when it ends (for cron and CI logs); with
    `as_json`, one JSON object each, as `--log-format json` writes log lines, with the run's
    fields besides its message. Streams end on threads of their own: each line is written
    whole, under a lock, never interleaved."""

    def __init__(self, out: TextIO = sys.stderr, as_json: bool = False):
        self.out = out
        self.as_json = as_json
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def stream_started(self, run: SyncRun) -> None:
        with self._lock:
            self._started[run.run_id] = time.perf_counter()
        self.line(run, "started", f"sync {run.connection}/{run.stream}: started")

    def page_read(self, run: SyncRun) -> None:
        pass

    def stream_finished(self, run: SyncRun) -> None:
        with self._lock:
            started = self._started.pop(run.run_id, time.perf_counter())
        seconds = time.perf_counter() - started
        error = f" error: {run.error}" if run.error else ""
        self.line(run, "finished",
                  f"sync {run.connection}/{run.stream}: {run.status}, {run.records} records, "
                  f"{run.pages} pages, {run.requests} requests, {run.retries} retries, "
                  f"{seconds:.1f}s{error}", seconds)

    def line(self, run: SyncRun, event: str, text: str, seconds: float | None = None) -> None:
        """One line about `run` (`event`: started, finished, or failed before it started)."""
        if self.as_json:
            fields: dict[str, Any] = {
                "event": event, "connector": run.connector, "connection": run.connection,
                "stream": run.stream, "run_id": run.run_id, "status": run.status}
            if seconds is not None:
                fields.update(records=run.records, pages=run.pages, requests=run.requests,
                              retries=run.retries, seconds=round(seconds, 3), error=run.error)
            text = json_log_line(time.time(), "ERROR" if run.status == "failed" else "INFO",
                                 "crm_engine.progress", text, **fields)
        # (print() writes the text and its newline in two calls, between which another
        # thread's line can come.)
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()


def json_log_line(created: float, level: str, logger: str, message: str,
                  **fields: Any) -> str:
    """One line as `--log-format json` writes log records (and progress lines): local time,
    level, logger, message, then any fields of their own."""
    return json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(created)),
                       "level": level, "logger": logger, "message": message, **fields},
                      ensure_ascii=False)


def progress_for(stream: TextIO = sys.stderr) -> TerminalProgress | LogProgress:
    return TerminalProgress(stream) if stream.isatty() else LogProgress(stream)
