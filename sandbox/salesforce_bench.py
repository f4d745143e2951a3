"""Serving benchmark: page through N Salesforce contacts via /query + nextRecordsUrl.

    python -m sandbox.salesforce_bench [--contacts 100000] [--batch 2000] [--passes 2]

The emulator runs in its own process (as beside the engine), so the client's JSON parsing does
not share its GIL; the server's CPU time comes from /proc (Linux) and is divided by the pages
served. Pass 1 renders every record; later passes reuse the cached query result and fragments.
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

SOQL = (
    "SELECT Id, FirstName, LastName, Email, Phone, Title, AccountId, OwnerId, LeadSource, "
    "Favorite_Color__c, CreatedDate, LastModifiedDate, SystemModstamp, IsDeleted "
    "FROM Contact ORDER BY SystemModstamp ASC"
)
SERVER = (
    "import sys, time\n"
    "from sandbox.salesforce import SalesforceSandbox\n"
    "started = time.perf_counter()\n"
    "emulator = SalesforceSandbox(contacts=int(sys.argv[1]), companies=50, deals=100,"
    " daily_limit=None)\n"
    "seeded = time.perf_counter() - started\n"
    "running = emulator.start()\n"
    "print(running.url, seeded, flush=True)\n"
    "sys.stdin.read()\n"
)


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, or None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args(argv)
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.contacts)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url, seeded = server.stdout.readline().split()
        print(f"seeded {args.contacts:,} contacts in {float(seeded):.2f}s")
        headers = {
            "Authorization": "Bearer sandbox-session-id",
            "Sforce-Query-Options": f"batchSize={args.batch}",
        }
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for number in range(1, args.passes + 1):
                cpu_before = _cpu_seconds(server.pid)
                started = time.perf_counter()
                page = orjson.loads(
                    client.get("/services/data/v59.0/query", params={"q": SOQL}).content
                )
                first_page = time.perf_counter() - started
                count, pages = len(page["records"]), 1
                while not page["done"]:
                    page = orjson.loads(client.get(page["nextRecordsUrl"]).content)
                    count += len(page["records"])
                    pages += 1
                elapsed = time.perf_counter() - started
                cpu_after = _cpu_seconds(server.pid)
                cpu = (
                    f", server CPU {(cpu_after - cpu_before) / pages * 1000:.1f} ms/page"
                    if cpu_before is not None and cpu_after is not None
                    else ""
                )
                print(
                    f"pass {number}: {count:,} records in {pages} pages, {elapsed:.2f}s "
                    f"({count / elapsed:,.0f} records/s; first page incl. filter+sort "
                    f"{first_page * 1000:.0f} ms{cpu})"
                )
    finally:
        server.kill()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
