"""What the benchmarks share: an emulator in a process of its own, the floor (the same pages
fetched and landed through DuckDB's read_json, nothing mapped), peak memory, medians."""

from __future__ import annotations

import os
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import httpx

ROOT = Path(__file__).resolve().parent.parent
HUBSPOT_TOKEN = "sandbox-private-app-token"
# The emulator's two custom properties, passed to syncs as `extra_properties` (the engine
# reads the CRM's property list too: `contacts_properties`).
EXTRA_PROPERTIES = ["favorite_color", "customer_tier"]
FLOOR_BATCH_PAGES = 50  # pages landed per read_json: 5,000 records, as the engine's batches


@contextmanager
def emulator(vendor: str, **options: Any) -> Iterator[str]:
    """`python -m sandbox VENDOR --OPTION VALUE ...` in its own process; yields its URL."""
    command = [sys.executable, "-m", "sandbox", vendor, "--port", "0"]
    for name, value in options.items():
        command += ["--" + name.replace("_", "-"), str(value)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    first = process.stdout.readline()  # "<vendor> sandbox listening on http://127.0.0.1:PORT"
    try:
        if "listening on" not in first:
            raise RuntimeError(f"the {vendor} emulator did not start: {first!r}")
        yield first.split()[-1]
    finally:
        process.terminate()
        process.wait(timeout=30)


def contacts_properties(url: str, token: str = HUBSPOT_TOKEN) -> str:
    """The properties a sync of the contacts stream asks for: its mapping's, the extra ones,
    and every one the CRM lists (the engine reads that list first, as the floor does here)."""
    from engine import Engine

    mapping = Engine().connector("hubspot").mappings["contact"]
    listed = httpx.get(f"{url}/crm/v3/properties/contacts",
                       headers={"Authorization": f"Bearer {token}"}, timeout=60)
    listed.raise_for_status()
    names = (mapping.vendor_fields("properties") + EXTRA_PROPERTIES
             + [p["name"] for p in listed.json()["results"]])
    return ",".join(dict.fromkeys(names))


class PageLander:
    """Lands raw list pages through DuckDB's read_json (`unnest(results)`, the JSON as it came,
    nothing parsed or mapped in Python) on a thread of its own, FLOOR_BATCH_PAGES at a time,
    as the engine overlaps landing with fetching. `add` may be called from many threads."""

    def __init__(self, directory: Path):
        self._directory = directory
        self._con = duckdb.connect(str(directory / "floor.duckdb"))
        self._con.execute("SET memory_limit = '128MB'")
        self._handoff: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=1)
        self._pages: list[bytes] = []
        self._lock = threading.Lock()
        self._created = False
        self._thread = threading.Thread(target=self._land)
        self._thread.start()

    def add(self, page: bytes) -> None:
        with self._lock:
            self._pages.append(page)
            if len(self._pages) < FLOOR_BATCH_PAGES:
                return
            pages, self._pages = self._pages, []
        self._handoff.put(pages)

    def close(self) -> int:
        """Land what is left; the records landed."""
        if self._pages:
            self._handoff.put(self._pages)
        self._handoff.put(None)
        self._thread.join()
        with self._con:  # (nothing landed: a failed fetch, whose error is the one to see)
            return self._con.execute("SELECT count(*) FROM contacts").fetchone()[0] \
                if self._created else 0

    def _land(self) -> None:
        while (pages := self._handoff.get()) is not None:
            path = self._directory / "pages.json"
            path.write_bytes(b"\n".join(pages))
            select = (f"SELECT unnest(results, max_depth := 2) FROM read_json('{path}', "
                      "format = 'newline_delimited')")
            self._con.execute(f"INSERT INTO contacts BY NAME {select}" if self._created else
                              f"CREATE TABLE contacts AS {select}")
            self._created = True


def list_pages(client: httpx.Client, properties: str,
               before_each: Callable[[], None] = lambda: None) -> Iterator[bytes]:
    """Every list page of contacts, as the engine asks for them (its properties, with which
    contacts link to companies, 100 a page), unparsed."""
    params: dict[str, Any] = {"limit": 100, "properties": properties, "archived": "false",
                              "associations": "companies"}
    while True:
        before_each()
        response = client.get("/crm/v3/objects/contacts", params=params)
        response.raise_for_status()
        yield response.content
        after = _next_after(response.content)
        if after is None:
            return
        params["after"] = after


def floor(url: str, properties: str, token: str = HUBSPOT_TOKEN) -> tuple[int, float, float]:
    """Every page of contacts fetched, and landed through DuckDB's read_json 50 pages at a
    time on a thread of its own (as the engine overlaps them), nothing parsed or mapped in
    Python: (records, seconds, CPU seconds of this process meanwhile, DuckDB's threads
    included). The least any sync of the same pages can do."""
    started, cpu = time.perf_counter(), cpu_seconds()
    with tempfile.TemporaryDirectory() as tmp, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                         timeout=60) as client:
        lander = PageLander(Path(tmp))
        try:
            for page in list_pages(client, properties):
                lander.add(page)
        finally:
            records = lander.close()
    return records, time.perf_counter() - started, cpu_seconds() - cpu


def cpu_seconds() -> float:
    """This process's CPU time so far, every thread's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _next_after(body: bytes) -> str | None:
    """The `paging.next.after` cursor, found without parsing the page in Python (the floor
    leaves all parsing to DuckDB): it is the last key of HubSpot's list response."""
    at = body.rfind(b'"after":"')
    if at < 0:
        return None
    start = at + len(b'"after":"')
    return body[start:body.index(b'"', start)].decode()


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of another process (a mapping process, an emulator), or None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_peak_mb(pid: int | str = "self") -> float:
    """This process's peak RSS (or a running one's), its own memory only. Not ru_maxrss: on
    Linux a child started by subprocess (vfork, then exec) takes the parent's peak RSS as its
    own starting ru_maxrss, so an engine started after the floor ran in the benchmark's process
    reported the floor's peak. VmHWM is the high-water mark of the process's own memory map."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
