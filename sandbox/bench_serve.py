"""Serving benchmark: page through N HubSpot contacts with one keep-alive httpx.Client.

    python -m sandbox.bench_serve [--contacts 100000] [--limit 100] [--passes 2]

The emulator runs in its own process (as it would beside the engine), so the client's JSON
parsing does not share its GIL; the server's CPU time is read from /proc (Linux) to give the
CPU cost of one page. Pass 1 renders every record; later passes hit the per-record JSON cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from sandbox.hubspot import HubSpotSandbox

# What a sync would ask for (fixtures/hubspot/_meta.json list request plus the custom fields).
PROPERTIES = (
    "email,firstname,lastname,phone,company,jobtitle,lifecyclestage,hubspot_owner_id,"
    "favorite_color,customer_tier,createdate,lastmodifieddate"
)
TOKEN = "sandbox-private-app-token"


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, or None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_server(contacts: int) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable,
        "-m",
        "sandbox",
        "hubspot",
        "--port",
        "0",
        "--contacts",
        str(contacts),
        "--companies",
        "0",
        "--deals",
        "0",
        "--rate-limit",
        "none",
        "--search-rate-limit",
        "none",
        "--daily-limit",
        "none",
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    first_line = server.stdout.readline()  # "hubspot sandbox listening on http://..."
    return server, first_line.rsplit(" ", 1)[-1].strip()


def _one_pass(client: httpx.Client, limit: int) -> tuple[int, int, float]:
    """(pages, records, seconds) for one full pagination."""
    pages = records = 0
    after = None
    started = time.perf_counter()
    while True:
        params = {"limit": limit, "properties": PROPERTIES}
        if after:
            params["after"] = after
        response = client.get("/crm/v3/objects/contacts", params=params)
        response.raise_for_status()
        page = orjson.loads(response.content)
        pages += 1
        records += len(page["results"])
        after = page.get("paging", {}).get("next", {}).get("after")
        if not after:
            return pages, records, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()

    started = time.perf_counter()
    HubSpotSandbox(contacts=args.contacts, companies=0, deals=0)
    print(f"seed: {args.contacts} contacts built in {time.perf_counter() - started:.2f} s")

    server, url = _start_server(args.contacts)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            for number in range(1, args.passes + 1):
                cpu_before = _cpu_seconds(server.pid)
                pages, records, seconds = _one_pass(client, args.limit)
                cpu_after = _cpu_seconds(server.pid)
                line = (
                    f"pass {number}: {pages} pages, {records} records in {seconds:.2f} s = "
                    f"{pages / seconds:,.0f} pages/s, {records / seconds:,.0f} records/s"
                )
                if cpu_before is not None and cpu_after is not None:
                    per_page_ms = (cpu_after - cpu_before) / pages * 1000
                    line += f"; server CPU {per_page_ms:.2f} ms/page"
                print(line, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
