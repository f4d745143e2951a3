"""The runs a DuckDB file's writer has in progress, for other processes to see.

DuckDB lets one process open a file at a time: while a sync writes `crm.duckdb`, `status`,
`connections` and `run-due` in another process cannot read it. So the writing store keeps
`crm.duckdb.running.json` beside it: its process id and its runs in progress, with their
counters as last committed, replaced whole after each commit that changes them and removed
when the store closes. A reader trusts it only when its process id is the one DuckDB names as
the file's holder: one left by a killed process says nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.clock import utc_now
from engine.store import SyncRun

SUFFIX = ".running.json"
_FIELDS = ("run_id", "connector", "connection", "stream", "mode", "status", "records", "pages",
           "requests", "retries", "started")


def live_path(db: str | Path) -> Path:
    return Path(f"{db}{SUFFIX}")


class LiveRuns:
    """Written by the process that holds the DuckDB file."""

    def __init__(self, db: str | Path):
        self.path = live_path(db)
        self._runs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        # Whatever is there was left by a process that no longer holds the file (we do).
        with contextlib.suppress(OSError):
            self.path.unlink()

    def publish(self, runs: Iterable[SyncRun]) -> None:
        """Runs whose counters were just committed: the running ones are shown, the others
        (succeeded, failed, interrupted) no longer."""
        with self._lock:
            changed = False
            for run in runs:
                if run.status == "running":
                    shown = {f: getattr(run, f) for f in _FIELDS}
                    changed |= self._runs.get(run.run_id) != shown
                    self._runs[run.run_id] = shown
                else:
                    changed |= self._runs.pop(run.run_id, None) is not None
            if not changed:
                return
            if not self._runs:
                with contextlib.suppress(OSError):
                    self.path.unlink()
                return
            document = {"pid": os.getpid(), "updated": utc_now().isoformat(),
                        "runs": list(self._runs.values())}
            partial = self.path.with_name(self.path.name + ".partial")
            try:
                partial.write_text(json.dumps(document, default=dt.datetime.isoformat),
                                   encoding="utf-8")
                os.replace(partial, self.path)  # readers see the old file or the new, whole
            except OSError:
                pass  # a read-only directory: the database itself is still right

    def close(self) -> None:
        with self._lock:
            self._runs.clear()
            with contextlib.suppress(OSError):
                self.path.unlink()


def read_live_runs(db: str | Path, holder: int) -> dict[str, Any] | None:
    """What the process `holder` (the DuckDB file's holder) said it is running, or None if it
    said nothing (it is not a sync, or has no run in progress yet)."""
    try:
        document = json.loads(live_path(db).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("pid") != holder:
        return None
    return document

