"""Serving benchmark: page through N Pipedrive persons (v2 cursor and v1 offset pages) with one
keep-alive httpx.Client, the emulator in its own process.

    python -m sandbox.pipedrive_bench [--persons 100000] [--limit 500] [--passes 2]

Reports the server's CPU time per page from /proc (Linux). Pass 1 renders every page; later
passes hit the rendered-page cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson

from sandbox.pipedrive import PipedriveSandbox

TOKEN = "sandbox-api-token"


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, or None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _serve(persons: int) -> None:
    emulator = PipedriveSandbox(
        contacts=persons,
        companies=max(persons // 20, 1),
        deals=10,
        rate_limit=None,
        daily_token_budget=None,
    )
    running = emulator.start()
    print(running.url, flush=True)
    threading.Event().wait()  # until the parent terminates this process


def _pass(client: httpx.Client, version: int, limit: int) -> tuple[int, int, float]:
    pages = records = 0
    cursor, start = None, 0
    started = time.perf_counter()
    while True:
        if version == 2:
            params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            page = orjson.loads(client.get("/api/v2/persons", params=params).content)
            cursor = page["additional_data"]["next_cursor"]
            done = cursor is None
        else:
            params = {"limit": limit, "start": start}
            page = orjson.loads(client.get("/v1/persons", params=params).content)
            pagination = page["additional_data"]["pagination"]
            start = pagination.get("next_start", 0)
            done = not pagination["more_items_in_collection"]
        pages += 1
        records += len(page["data"] or ())
        if done:
            return pages, records, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.persons)
        return

    started = time.perf_counter()
    PipedriveSandbox(contacts=args.persons, companies=50, deals=100)
    print(f"seed: {args.persons} persons built in {time.perf_counter() - started:.2f} s")
    command = [sys.executable, "-m", "sandbox.pipedrive_bench", "--serve"]
    server = subprocess.Popen(
        [*command, "--persons", str(args.persons)], stdout=subprocess.PIPE, text=True
    )
    try:
        url = server.stdout.readline().strip()
        with httpx.Client(base_url=url, headers={"x-api-token": TOKEN}, timeout=60) as client:
            for version in (2, 1):
                for number in range(1, args.passes + 1):
                    cpu_before = _cpu_seconds(server.pid)
                    pages, records, seconds = _pass(client, version, args.limit)
                    cpu_after = _cpu_seconds(server.pid)
                    line = (
                        f"v{version} pass {number}: {pages} pages, {records} records in "
                        f"{seconds:.2f} s = {records / seconds:,.0f} records/s"
                    )
                    if cpu_before is not None and cpu_after is not None:
                        per_page = (cpu_after - cpu_before) / pages * 1000
                        line += f"; server CPU {per_page:.2f} ms/page"
                    print(line, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
