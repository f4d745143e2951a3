"""Sync 100,000 contacts from the HubSpot emulator into a fresh DuckDB file; print records/s
and peak memory.

The emulator runs in its own process, so the figures are the engine's: end to end (HTTP,
JSON, mapping, type conversion, landing) in this process, and its peak RSS. For scale it also
times fetching and JSON-parsing the same pages alone, with nothing mapped or landed.

Then 1% of the contacts change (through the emulator's control endpoint) and an incremental
sync reads them: its requests and seconds are printed beside the full sync's.

Targets on a 2-core machine: >= 30,000 records/s and < 200 MB peak RSS.

    python benchmarks/sync_contacts.py [--contacts 100000] [--changed 0.01] [--keep]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "sandbox-private-app-token"


def start_emulator(contacts: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "hubspot", "--port", "0", "--contacts", str(contacts),
         "--companies", "10", "--deals", "10", "--rate-limit", "1000000,10",
         "--search-rate-limit", "none"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    first = process.stdout.readline()  # "hubspot sandbox listening on http://127.0.0.1:PORT"
    return process, first.split()[-1]


def fetch_only(url: str, properties: str) -> tuple[int, float]:
    """Every page fetched and parsed, nothing else: the floor for the same traffic."""
    records, started = 0, time.perf_counter()
    params = {"limit": 100, "properties": properties, "archived": "false"}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        while True:
            body = orjson.loads(client.get("/crm/v3/objects/contacts", params=params).content)
            records += len(body["results"])
            after = body.get("paging", {}).get("next", {}).get("after")
            if not after:
                return records, time.perf_counter() - started
            params["after"] = after


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01,
                        help="share of contacts changed before the incremental sync")
    parser.add_argument("--keep", action="store_true", help="keep the DuckDB file")
    args = parser.parse_args()
    process, url = start_emulator(args.contacts)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.duckdb"
            with Engine(db=db, home=Path(tmp) / "home") as engine:
                # Warm-up: the emulator renders and caches pages on first request.
                extra = ["favorite_color", "customer_tier"]  # the emulator's custom properties
                props = ",".join(engine.connector("hubspot").mappings["contact"]
                                 .vendor_fields("properties") + extra)
                fetch_only(url, props)
                rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                cpu_before = cpu_seconds()
                started = time.perf_counter()
                [run] = engine.sync("hubspot", streams=["contacts"], token=TOKEN, base_url=url,
                                    config={"extra_properties": extra})
                elapsed = time.perf_counter() - started
                cpu = cpu_seconds() - cpu_before
                landed = engine.store.query("SELECT count(*) FROM contacts")[0][0]
                changed = int(args.contacts * args.changed)
                httpx.post(f"{url}/__sandbox/mutate",
                           json={"stream": "contacts", "update": changed}).raise_for_status()
                started = time.perf_counter()
                [again] = engine.sync("hubspot", streams=["contacts"], token=TOKEN,
                                      base_url=url, config={"extra_properties": extra})
                again_seconds = time.perf_counter() - started
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            fetched, fetch_seconds = fetch_only(url, props)
            if args.keep:
                kept = ROOT / "out" / "bench.duckdb"
                kept.parent.mkdir(exist_ok=True)
                kept.write_bytes(db.read_bytes())
    finally:
        process.terminate()
        process.wait()
    assert run.status == "succeeded" and landed == args.contacts, (run.status, run.error, landed)
    print(f"synced {landed:,} contacts in {elapsed:.2f}s: {landed / elapsed:,.0f} records/s "
          f"({run.pages} pages, {run.requests} requests)")
    print(f"engine CPU time: {cpu:.2f}s ({cpu / landed * 1e6:.0f} us per record, all threads)")
    print(f"fetch + JSON parse alone: {fetched / fetch_seconds:,.0f} records/s "
          f"(sync/fetch ratio {landed / elapsed / (fetched / fetch_seconds):.2f})")
    print(f"peak RSS: {peak_mb:.0f} MB (after warm-up, before the sync: {rss_before:.0f} MB)")
    assert again.status == "succeeded" and again.mode == "incremental", again.error
    print(f"incremental after {changed:,} changes: {again.records:,} records, "
          f"{again.requests} requests, {again_seconds:.2f}s "
          f"(the full sync: {run.requests} requests, {elapsed:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
