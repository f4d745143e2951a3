"""Mapping pages in other processes, so that one read uses more than one core.

In one interpreter, fetching a page (httpx, JSON), mapping it and landing it take turns at
one GIL, and a second core idles. A `MappingPool` is N processes that map pages: a read
sends each page after its first there (its records as JSON) and gets back the page's rows
already encoded as the store lands them (`EncodedRows`), with their links and data warnings,
when it hands its batch over. The first process goes on fetching, enriching and landing. A
read's first page maps in its own process, while the pool's processes start, so a read of
one page (many incremental runs) never waits for them.

Each read sticks to one process, which gets its `PageTask` (the mapping file's text as the
engine loaded it, and the run's `ReadContext`) once, forgets it when the read ends, and
compiles each mapping text once: a file edited during a sync changes no page of it. Pages
travel over a socket written by the stream's own thread, and one thread per process resolves
their futures: no other thread takes the GIL per page (ProcessPoolExecutor's feeder and
manager threads cost more than the mapping saved). A process ignores SIGINT (the
first process decides what an interrupt stops) and ends when told to, or when the first
process's end closes its socket.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from engine.associations import Link
from engine.convert import warnings_to
from engine.loader import load_mapping
from engine.mapping import ModelMapping, ReadContext
from engine.store import EncodedRows, add_warning
from engine.store.pieces import row_pieces

log = logging.getLogger("crm_engine.sync")


class MappingFailed(RuntimeError):
    """A mapping process stopped (killed, or out of memory) before it answered."""


@dataclass(frozen=True)
class Mapped:
    """One page, mapped in a pool's process."""

    rows: EncodedRows
    links: list[list[Link]] | None
    warnings: list[str]  # the run's: what could not be read, on this page
    logged: list[str]  # what the process logged meanwhile (once per field), for the engine's log


@dataclass(frozen=True)
class PageTask:
    """What a pool's process needs to map a read's pages, besides their records."""

    mapping_file: str  # where the mapping was loaded from, for what its problems say
    mapping_text: str  # the file as the engine loaded it (it may change during a sync)
    mapping: str  # its key in the mapping file
    context: ReadContext
    connector: str
    connection: str


class MappingPool:
    """Up to `processes` mapping processes, started on first use and shared by every read."""

    def __init__(self, processes: int):
        if processes < 1:
            raise ValueError("a mapping pool has one process or more")
        self.processes = processes
        self._workers: list[_Worker | None] = [None] * processes
        self._lock = threading.Lock()
        self._next = itertools.count()
        self._closed = False

    def start(self) -> None:
        """Start the processes now (they take half a second to import the engine), not at a
        read's second page."""
        for slot in range(self.processes):
            self._worker(slot)

    def _worker(self, slot: int) -> _Worker:
        with self._lock:
            if self._closed:  # a stream still running as the engine closes starts none
                raise MappingFailed("the engine closed its mapping processes")
            worker = self._workers[slot]
            if worker is None or worker.dead or worker.exited:
                if worker is not None:
                    worker.close()  # reaps it
                worker = self._workers[slot] = _Worker()
            return worker

    def pids(self) -> list[int]:
        """The running processes' ids (to watch their memory, or to test their death)."""
        with self._lock:
            return [w.pid for w in self._workers if w is not None and not w.exited]

    def reader(self, task: PageTask) -> PageReader:
        """Where one read sends its pages, in order."""
        return PageReader(self._worker(next(self._next) % self.processes), task)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, [None] * self.processes
        for worker in workers:
            if worker is not None:
                worker.close()


class PageReader:
    """One read's pages to one process; each page's future resolves to its Mapped."""

    def __init__(self, worker: _Worker, task: PageTask):
        self._worker = worker
        self._task_id = worker.send_task(task)

    def submit(self, records: list[Any]) -> Future[Mapped]:
        """The page's mapping, to come; what the mapping raises is raised as it is, and
        MappingFailed if the process dies first."""
        return self._worker.send_page(self._task_id, orjson.dumps(records))

    def close(self) -> None:
        """The read is over: its process forgets its task (a long-lived engine runs many)."""
        with contextlib.suppress(MappingFailed):
            self._worker.send(b"F" + self._task_id.to_bytes(8, "little"))


class _Worker:
    """One mapping process, its socket, and the thread that resolves its pages' futures.

    A plain interpreter (`python -c`), not multiprocessing's spawn: that runs the caller's
    main module again in the child, which a script without a `__main__` guard does not
    survive."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-c", f"from engine.sync.mapping_pool import serve; "
                                   f"serve({theirs.fileno()})"],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=_environment())
        theirs.close()
        log.info("started a mapping process (pid %d)", self._process.pid)
        self._conn = Connection(ours.detach())
        self._pending: dict[int, Future[Mapped]] = {}
        self._numbers = itertools.count()
        self._send_lock = threading.Lock()
        self.dead = False
        threading.Thread(target=self._receive, name="mapped-pages", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def exited(self) -> bool:
        return self._process.poll() is not None

    def send_task(self, task: PageTask) -> int:
        number = next(self._numbers)
        self.send(b"T" + pickle.dumps((number, task), protocol=pickle.HIGHEST_PROTOCOL))
        return number

    def send_page(self, task_id: int, body: bytes) -> Future[Mapped]:
        future: Future[Mapped] = Future()
        number = next(self._numbers)
        self._pending[number] = future
        self.send(b"P" + number.to_bytes(8, "little") + task_id.to_bytes(8, "little") + body)
        return future

    def send(self, message: bytes) -> None:
        with self._send_lock:
            try:
                self._conn.send_bytes(message)
            except OSError:
                self._fail()
                raise MappingFailed("a mapping process stopped (killed, or out of memory); "
                                    "a rerun goes on from the last batch landed") from None

    def _receive(self) -> None:
        while True:
            try:
                number, ok, value = pickle.loads(self._conn.recv_bytes())
            except Exception:  # its end (EOFError, OSError), or an answer that cannot be read
                self._fail()
                return
            future = self._pending.pop(number)
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _fail(self) -> None:
        self.dead = True
        if self._process.poll() is None:  # alive, but its answers cannot be trusted
            self._process.kill()
        for number in list(self._pending):
            future = self._pending.pop(number, None)
            if future is not None and not future.done():
                future.set_exception(MappingFailed(
                    "a mapping process stopped before it answered (killed, or out of "
                    "memory); a rerun goes on from the last batch landed"))

    def close(self) -> None:
        # An empty message ends the process (closing the socket would not: the receiving
        # thread's read holds it open).
        with contextlib.suppress(OSError), self._send_lock:
            self._conn.send_bytes(b"")
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._conn.close()


def _environment() -> dict[str, str]:
    """A mapping process's environment: what Python needs, and where `engine` is imported
    from; none of the secrets a sync reads from the environment (it sends no request)."""
    root = str(Path(__file__).resolve().parents[2])
    kept = {name: value for name, value in os.environ.items()
            if name in _KEPT_VARIABLES or name.startswith(("LC_", "PYTHON"))}
    kept["PYTHONPATH"] = os.pathsep.join(p for p in (root, kept.get("PYTHONPATH")) if p)
    return kept


_KEPT_VARIABLES = {"PATH", "LANG", "TMPDIR", "HOME", "SYSTEMROOT"}


# -- in a mapping process --------------------------------------------------------------------

class _Logged(logging.Handler):
    """What a mapping process logs goes back with its page, to the engine's log (its format,
    its -q), not to the terminal."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_logged = _Logged()


def serve(fd: int) -> None:
    """A mapping process's loop: pages in, mapped pages out, until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root = logging.getLogger("crm_engine")
    root.addHandler(_logged)
    root.propagate = False
    conn = Connection(fd)
    tasks: dict[int, PageTask] = {}
    mappings: dict[tuple[str, str], ModelMapping] = {}  # by text and key
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not message:
            return
        if message[:1] == b"T":
            number, task = pickle.loads(message[1:])
            tasks[number] = task
            continue
        if message[:1] == b"F":
            tasks.pop(int.from_bytes(message[1:9], "little"), None)
            continue
        number = int.from_bytes(message[1:9], "little")
        task = tasks[int.from_bytes(message[9:17], "little")]
        try:
            key = (task.mapping_text, task.mapping)
            if key not in mappings:
                mappings[key] = _load(task)
            answer = (number, True, map_page(mappings[key], task, orjson.loads(message[17:])))
        except Exception as exc:  # the read fails with it, as it would in one process
            answer = (number, False, exc)
        try:
            encoded = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
            if not answer[1]:
                pickle.loads(encoded)  # an exception must come back to life over there too
        except Exception as exc:  # one that does not: its message does
            message = f"{type(answer[2]).__name__}: {answer[2]}" if not answer[1] else str(exc)
            encoded = pickle.dumps((number, False, RuntimeError(message)))
        try:
            conn.send_bytes(encoded)
        except OSError:
            return


def _load(task: PageTask) -> ModelMapping:
    mappings, problems = load_mapping(task.mapping_file, task.mapping_text)
    if problems:  # the engine loaded this very text without one
        raise RuntimeError(f"{task.mapping_file}: {problems[0]}")
    return mappings[task.mapping]


def map_page(mapping: ModelMapping, task: PageTask, records: list[Any]) -> Mapped:
    """Map a page's records as the first process would, and encode its rows."""
    columns = mapping.model.empty_columns()
    warnings: list[str] = []
    with warnings_to(lambda message: add_warning(warnings, message)):
        mapping.read_columns(records, columns, context=task.context)
        links = mapping.read_links(records)
    count = len(columns["id"])
    data = {"connector": [task.connector] * count, "connection": [task.connection] * count,
            **columns}
    pieces = list(row_pieces(data))
    rows = EncodedRows(columns["id"], b"".join(pieces), max(map(len, pieces), default=0),
                       "raw" in columns)
    logged, _logged.messages = _logged.messages, []
    return Mapped(rows, links, warnings, logged)
