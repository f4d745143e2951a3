"""Serving benchmark: page through N contacts of one vendor's emulator the way a sync does, with
one keep-alive httpx.Client.

    python benchmarks/bench_serve.py [hubspot|pipedrive|salesforce|zoho] [--contacts 100000]
                                     [--limit N] [--passes 2]

The emulator runs in its own process (``python -m sandbox``, as it would beside the engine), so
the client's JSON parsing does not share its GIL; the server's CPU time is read from /proc
(Linux) to give the CPU cost of one page. Pass 1 renders every page; later passes hit the
emulator's page caches. Limits are switched off: this measures serving, not throttling.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from sandbox import EMULATORS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import process_cpu_seconds

# A walk pages through all contacts with one page size, yielding the records of each page.
Walk = Callable[[httpx.Client, int], Iterator[int]]


def _hubspot(client: httpx.Client, limit: int) -> Iterator[int]:
    # What a sync asks for (fixtures/hubspot/_meta.json list request plus the custom fields).
    params = {
        "limit": limit,
        "properties": "email,firstname,lastname,phone,company,jobtitle,lifecyclestage,"
        "hubspot_owner_id,favorite_color,customer_tier,createdate,lastmodifieddate",
    }
    while True:
        response = client.get("/crm/v3/objects/contacts", params=params)
        response.raise_for_status()
        page = orjson.loads(response.content)
        yield len(page["results"])
        after = page.get("paging", {}).get("next", {}).get("after")
        if not after:
            return
        params["after"] = after


def _pipedrive_v2(client: httpx.Client, limit: int) -> Iterator[int]:
    params: dict[str, Any] = {"limit": limit}
    while True:
        page = orjson.loads(client.get("/api/v2/persons", params=params).content)
        yield len(page["data"] or ())
        params["cursor"] = page["additional_data"]["next_cursor"]
        if params["cursor"] is None:
            return


def _pipedrive_v1(client: httpx.Client, limit: int) -> Iterator[int]:
    params = {"limit": limit, "start": 0}
    while True:
        page = orjson.loads(client.get("/v1/persons", params=params).content)
        yield len(page["data"] or ())
        pagination = page["additional_data"]["pagination"]
        if not pagination["more_items_in_collection"]:
            return
        params["start"] = pagination["next_start"]


def _salesforce(client: httpx.Client, limit: int) -> Iterator[int]:
    # The first page includes the SOQL filter and sort; the rest follow nextRecordsUrl.
    soql = (
        "SELECT Id, FirstName, LastName, Email, Phone, Title, AccountId, OwnerId, LeadSource, "
        "Favorite_Color__c, CreatedDate, LastModifiedDate, SystemModstamp, IsDeleted "
        "FROM Contact ORDER BY SystemModstamp ASC"
    )
    headers = {"Sforce-Query-Options": f"batchSize={limit}"}
    page = orjson.loads(
        client.get("/services/data/v59.0/query", params={"q": soql}, headers=headers).content
    )
    yield len(page["records"])
    while not page["done"]:
        page = orjson.loads(client.get(page["nextRecordsUrl"], headers=headers).content)
        yield len(page["records"])


def _zoho(client: httpx.Client, limit: int) -> Iterator[int]:
    # CONTRACTS 4.3: ``page`` reaches record 2,000; past it a sync follows ``page_token``.
    params: dict[str, Any] = {
        "fields": "First_Name,Last_Name,Email,Phone,Mobile,Title,Account_Name,Owner,"
        "Lead_Source,Favorite_Color,Customer_Tier,Created_Time,Modified_Time",
        "per_page": limit,
        "page": 1,
    }
    while True:
        response = client.get("/crm/v3/Contacts", params=params)
        if response.status_code == 204:
            return
        response.raise_for_status()
        body = orjson.loads(response.content)
        yield len(body["data"])
        info = body["info"]
        if not info["more_records"]:
            return
        if "page_token" in params or params["page"] * limit >= 2000:
            params.pop("page", None)
            params["page_token"] = info["next_page_token"]
        else:
            params["page"] += 1


@dataclass(frozen=True)
class Target:
    """How to benchmark one vendor: emulator options besides ``contacts``, the credentials,
    the usual page size and the walks to time, by label."""

    options: dict[str, Any]
    headers: dict[str, str]
    limit: int
    walks: dict[str, Walk]


TARGETS = {
    "hubspot": Target(
        options={
            "companies": 0,
            "deals": 0,
            "rate_limit": None,
            "search_rate_limit": None,
            "daily_limit": None,
        },
        headers={"Authorization": "Bearer sandbox-private-app-token"},
        limit=100,
        walks={"list": _hubspot},
    ),
    "pipedrive": Target(
        options={"companies": 50, "deals": 100, "rate_limit": None, "daily_token_budget": None},
        headers={"x-api-token": "sandbox-api-token"},
        limit=500,
        walks={"v2": _pipedrive_v2, "v1": _pipedrive_v1},
    ),
    "salesforce": Target(
        options={"companies": 50, "deals": 100, "daily_limit": None},
        headers={"Authorization": "Bearer sandbox-session-id"},
        limit=2000,
        walks={"query": _salesforce},
    ),
    "zoho": Target(
        options={"companies": 100, "deals": 0, "credits_per_day": 10**9},
        headers={"Authorization": "Zoho-oauthtoken 1000.sandbox-static-token"},
        limit=200,
        walks={"list": _zoho},
    ),
}


def _flag_value(value: Any) -> str:
    """An option as ``python -m sandbox`` parses it back (None -> none, tuples comma-joined)."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _start_server(vendor: str, options: dict[str, Any]) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "sandbox", vendor, "--port", "0"]
    for name, value in options.items():
        command += ["--" + name.replace("_", "-"), _flag_value(value)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    first_line = server.stdout.readline()  # "<vendor> sandbox listening on http://..."
    return server, first_line.rsplit(" ", 1)[-1].strip()


def _timed(walk: Walk, client: httpx.Client, limit: int) -> tuple[int, int, float, float]:
    """(pages, records, seconds to the first page, seconds in all) of one walk."""
    pages = records = 0
    first_page = 0.0
    started = time.perf_counter()
    for count in walk(client, limit):
        if not pages:
            first_page = time.perf_counter() - started
        pages += 1
        records += count
    return pages, records, first_page, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("vendor", nargs="?", default="hubspot", choices=sorted(TARGETS))
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--limit", type=int, help="page size (default: the vendor's usual)")
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args(argv)
    target = TARGETS[args.vendor]
    options = {"contacts": args.contacts, **target.options}
    limit = args.limit or target.limit

    started = time.perf_counter()
    EMULATORS[args.vendor](**options)
    print(f"seed: {args.contacts} contacts built in {time.perf_counter() - started:.2f} s")

    server, url = _start_server(args.vendor, options)
    try:
        with httpx.Client(base_url=url, headers=target.headers, timeout=60) as client:
            for label, walk in target.walks.items():
                for number in range(1, args.passes + 1):
                    cpu_before = process_cpu_seconds(server.pid)
                    pages, records, first_page, seconds = _timed(walk, client, limit)
                    cpu_after = process_cpu_seconds(server.pid)
                    line = (
                        f"{label} pass {number}: {pages} pages, {records} records in "
                        f"{seconds:.2f} s = {pages / seconds:,.0f} pages/s, "
                        f"{records / seconds:,.0f} records/s; first page {first_page * 1000:.0f} ms"
                    )
                    if cpu_before is not None and cpu_after is not None:
                        per_page = (cpu_after - cpu_before) / pages * 1000
                        line += f"; server CPU {per_page:.2f} ms/page"
                    print(line, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
