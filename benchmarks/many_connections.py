"""200 connections at once, each on its own rate budget: `crm-engine sync --all`.

One HubSpot emulator process serves 200 accounts (one private-app token each), every account
limited to 10 requests per rolling 10 s, each with 2,000 contacts (20 pages of 100). The
engine runs as the CLI does, in a process of its own (`sync --all --max-concurrency 200`),
so its peak RSS is its own. Printed beside the floor from the same run: the rate-limited
minimum of the requests each connection sent (10 at once, then 10 more once the first have
left the 10 s window: about 10 s for 20).

    python benchmarks/many_connections.py [--connections 200] [--contacts 2000] [--repeat 3]

Targets: all done within 13 s, zero 429s, peak RSS under 400 MB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PageLander, contacts_properties, emulator, list_pages, median

LIMIT, WINDOW = 10, 10.0  # each account's budget at the emulator


# The CLI as `crm-engine` runs it, then its own peak RSS on the last line of stderr
# (common.own_peak_mb: not ru_maxrss, which a child starts with its parent's).
CLI = """
import sys
sys.path.insert(0, sys.argv.pop(1))
from common import own_peak_mb
from engine.cli import main
code = main(sys.argv[1:])
print(f"\\npeak_mb={own_peak_mb()}", file=sys.stderr)
sys.exit(code)
"""


def project_file(directory: Path, url: str, tokens: list[str]) -> Path:
    lines = ["database: crm.duckdb", f"max_concurrency: {len(tokens)}", "connections:"]
    for i, _ in enumerate(tokens):
        lines += [f"  c{i:03d}:", "    connector: hubspot", "    auth: private_app",
                  f"    secrets: {{token: {{env: BENCH_TOKEN_{i:03d}}}}}",
                  f"    base_url: {url}", "    streams: [contacts]"]
    path = directory / "crm-engine.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_once(url: str, tokens: list[str], contacts: int, map_processes: int = 0
             ) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        project = project_file(directory, url, tokens)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_ENGINE_")}
        env.update({f"BENCH_TOKEN_{i:03d}": t for i, t in enumerate(tokens)},
                   CRM_ENGINE_HOME=str(directory / "home"))
        started = time.perf_counter()
        cpu_before = _children_cpu()
        process = subprocess.Popen(
            [sys.executable, "-c", CLI, str(Path(__file__).resolve().parent), "sync", "--all",
             "--project", str(project), "--json", "-q", "--map-processes", str(map_processes)],
            cwd=directory, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = process.communicate()
        elapsed = time.perf_counter() - started
        cpu = _children_cpu() - cpu_before
        if process.returncode != 0:
            failed = [r for r in json.loads(out or "[]") if r["status"] != "succeeded"]
            raise RuntimeError(f"sync --all failed ({process.returncode}): {err[-2000:]} "
                               f"{len(failed)} failed runs, e.g. {failed[:2]}")
        err, _, peak = err.rstrip().rpartition("\n")
        peak_mb = float(peak.removeprefix("peak_mb="))
        try:
            runs = json.loads(out)
        except ValueError:
            raise RuntimeError(f"sync --all printed no JSON: {out[:500]!r} {err[-2000:]!r}"
                               ) from None
        with duckdb.connect(str(directory / "crm.duckdb"), read_only=True) as con:
            per_connection = dict(con.execute(
                "SELECT connection, count(*) FROM contacts GROUP BY ALL").fetchall())
            first, last = con.execute("SELECT min(started), max(finished) FROM sync_runs"
                                      ).fetchone()
    assert len(runs) == len(tokens) and all(r["status"] == "succeeded" for r in runs), \
        [r for r in runs if r["status"] != "succeeded"][:3]
    assert per_connection == {f"c{i:03d}": contacts for i in range(len(tokens))}
    requests = max(r["requests"] for r in runs)
    return {"seconds": elapsed, "syncing": (last - first).total_seconds(),
            "retries": sum(r["retries"] for r in runs), "requests": requests,
            "floor": (math.ceil(requests / LIMIT) - 1) * WINDOW, "peak_mb": peak_mb, "cpu": cpu}


class Pacer:
    """A client's own rolling window: at most LIMIT requests answered in any WINDOW seconds,
    counted from when each answer came (the server saw the request before that)."""

    def __init__(self) -> None:
        self._answered: deque[float] = deque()

    def wait(self) -> None:
        if len(self._answered) == LIMIT:
            time.sleep(max(0.0, self._answered.popleft() + WINDOW - time.monotonic()))

    def answered(self) -> None:
        self._answered.append(time.monotonic())


def fetch_and_land_floor(url: str, tokens: list[str], properties: str, contacts: int) -> float:
    """The same requests as the engine's, nothing parsed or mapped: each connection's property
    list and list pages sent by a thread of its own at its account's rate, every page landed
    through DuckDB's read_json by one thread (common.PageLander). What any sync of these
    connections takes on this machine, rate budgets and CPU together."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        lander = PageLander(Path(tmp))

        def one(token: str) -> None:
            pacer = Pacer()
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                              timeout=60) as client:
                pacer.wait()
                client.get("/crm/v3/properties/contacts").raise_for_status()
                pacer.answered()
                for page in list_pages(client, properties, before_each=pacer.wait):
                    pacer.answered()
                    lander.add(page)

        try:
            with ThreadPoolExecutor(len(tokens)) as pool:
                list(pool.map(one, tokens))
        finally:
            records = lander.close()
    assert records == len(tokens) * contacts, records
    return time.perf_counter() - started


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--map-processes", type=int, default=0,
                        help="the CLI's --map-processes (0: map in the engine's process)")
    args = parser.parse_args()
    tokens = [f"bench-account-{i:03d}" for i in range(args.connections)]
    results = []
    with emulator("hubspot", contacts=args.contacts, companies=0, deals=0,
                  rate_limit=f"{LIMIT},{WINDOW}", search_rate_limit="none", daily_limit="none",
                  static_tokens=",".join(tokens)) as url:
        properties = contacts_properties(url, tokens[0])
        time.sleep(WINDOW)  # that request leaves the first account's window
        for number in range(1, args.repeat + 1):
            result = run_once(url, tokens, args.contacts, args.map_processes)
            time.sleep(WINDOW)  # every account's window empties before the floor
            result["fetch_and_land"] = fetch_and_land_floor(url, tokens, properties,
                                                            args.contacts)
            results.append(result)
            print(f"run {number}: {args.connections} connections x {args.contacts:,} contacts "
                  f"in {result['seconds']:.1f}s (first start to last finish "
                  f"{result['syncing']:.1f}s); floor {result['floor']:.0f}s "
                  f"({result['requests']:.0f} requests a connection at {LIMIT} per "
                  f"{WINDOW:.0f}s), fetch-and-land floor {result['fetch_and_land']:.1f}s "
                  f"(same requests and rate, nothing mapped); "
                  f"429s retried: {result['retries']:.0f}; "
                  f"peak RSS {result['peak_mb']:.0f} MB; engine CPU {result['cpu']:.1f}s",
                  flush=True)
            time.sleep(WINDOW)  # every account's window empties before the next run
    print(f"median of {len(results)}: {median([r['seconds'] for r in results]):.1f}s "
          f"(target 13s; floor {median([r['floor'] for r in results]):.0f}s, fetch-and-land "
          f"floor {median([r['fetch_and_land'] for r in results]):.1f}s), "
          f"429s {sum(r['retries'] for r in results):.0f} (target 0), peak RSS "
          f"{max(r['peak_mb'] for r in results):.0f} MB at most (target < 400 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
