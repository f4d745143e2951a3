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
from collections.abc import Iterator
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


def floor(url: str, properties: str, token: str = HUBSPOT_TOKEN) -> tuple[int, float]:
    """Every page of contacts fetched, and landed through DuckDB's read_json 50 pages at a
    time on a thread of its own (as the engine overlaps them), nothing parsed or mapped in
    Python: (records, seconds). The least any sync of the same pages can do."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, \
            duckdb.connect(str(Path(tmp) / "floor.duckdb")) as con, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                         timeout=60) as client:
        con.execute("SET memory_limit = '128MB'")
        handoff: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=1)

        def land() -> None:
            created = False
            while (pages := handoff.get()) is not None:
                path = Path(tmp) / "pages.json"
                path.write_bytes(b"\n".join(pages))
                select = (f"SELECT unnest(results, max_depth := 2) FROM read_json('{path}', "
                          "format = 'newline_delimited')")
                con.execute(f"INSERT INTO contacts BY NAME {select}" if created else
                            f"CREATE TABLE contacts AS {select}")
                created = True

        lander = threading.Thread(target=land)
        lander.start()
        # The list pages the engine reads (with which contacts link to companies); not its v4
        # reads of those links' labels, which the engine sends for pages with links.
        params: dict[str, Any] = {"limit": 100, "properties": properties, "archived": "false",
                                  "associations": "companies"}
        pages: list[bytes] = []
        try:
            while True:
                response = client.get("/crm/v3/objects/contacts", params=params)
                response.raise_for_status()
                pages.append(response.content)
                after = _next_after(response.content)
                if len(pages) == FLOOR_BATCH_PAGES or after is None:
                    handoff.put(pages)
                    pages = []
                if after is None:
                    break
                params["after"] = after
        finally:
            handoff.put(None)
            lander.join()
        records = con.execute("SELECT count(*) FROM contacts").fetchone()[0]
    return records, time.perf_counter() - started


def _next_after(body: bytes) -> str | None:
    """The `paging.next.after` cursor, found without parsing the page in Python (the floor
    leaves all parsing to DuckDB): it is the last key of HubSpot's list response."""
    at = body.rfind(b'"after":"')
    if at < 0:
        return None
    start = at + len(b'"after":"')
    return body[start:body.index(b'"', start)].decode()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
