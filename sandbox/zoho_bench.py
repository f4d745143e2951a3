"""Serving benchmark: sync N Zoho contacts the way the engine does, with one keep-alive client.

    python -m sandbox.zoho_bench [--contacts 100000] [--passes 2]

Pages of 200 with ``page`` up to record 2,000, then ``page_token`` (CONTRACTS 4.3). The
emulator runs in its own process, so the client's JSON parsing does not share its GIL; the
server's CPU time is read from /proc (Linux) to give the CPU cost of one page. Pass 1 renders
every page; later passes are served from the page cache.
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

from sandbox.zoho import ZohoSandbox

FIELDS = (
    "First_Name,Last_Name,Email,Phone,Mobile,Title,Account_Name,Owner,Lead_Source,"
    "Favorite_Color,Customer_Tier,Created_Time,Modified_Time"
)
TOKEN = "1000.sandbox-static-token"


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _serve(contacts: int) -> None:
    emulator = ZohoSandbox(contacts=contacts, companies=100, deals=0, credits_per_day=10**9)
    running = emulator.start()
    print(running.url, flush=True)
    threading.Event().wait()


def _one_pass(client: httpx.Client) -> tuple[int, int, float]:
    pages = records = 0
    params: dict[str, str | int] = {"fields": FIELDS, "per_page": 200, "page": 1}
    started = time.perf_counter()
    while True:
        response = client.get("/crm/v3/Contacts", params=params)
        if response.status_code == 204:
            break
        response.raise_for_status()
        body = orjson.loads(response.content)
        pages += 1
        records += len(body["data"])
        info = body["info"]
        if not info["more_records"]:
            break
        if "page_token" in params or int(params["page"]) * 200 >= 2000:
            params.pop("page", None)
            params["page_token"] = info["next_page_token"]
        else:
            params["page"] = int(params["page"]) + 1
    return pages, records, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.contacts)
        return
    started = time.perf_counter()
    ZohoSandbox(contacts=args.contacts, companies=100, deals=0)
    print(f"seed: {args.contacts} contacts built in {time.perf_counter() - started:.2f} s")
    command = [
        sys.executable,
        "-m",
        "sandbox.zoho_bench",
        "--serve",
        "--contacts",
        str(args.contacts),
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    try:
        headers = {"Authorization": f"Zoho-oauthtoken {TOKEN}"}
        with httpx.Client(base_url=url, headers=headers) as client:
            for number in range(1, args.passes + 1):
                cpu_before = _cpu_seconds(server.pid)
                pages, records, seconds = _one_pass(client)
                cpu_after = _cpu_seconds(server.pid)
                line = (
                    f"pass {number}: {pages} pages, {records} records in {seconds:.2f} s = "
                    f"{pages / seconds:,.0f} pages/s, {records / seconds:,.0f} records/s"
                )
                if cpu_before is not None and cpu_after is not None:
                    line += f"; server CPU {(cpu_after - cpu_before) / pages * 1000:.2f} ms/page"
                print(line, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
