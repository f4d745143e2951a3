"""One connection, rate limit lifted: the engine beside the fetch-and-land floor, and memory.

The HubSpot emulator (its own process) serves N contacts with a limit no sync reaches. Each
round syncs the contacts stream into a fresh DuckDB file through the engine (HTTP, JSON,
mapping, type conversion, landing) and, in the same round, runs the floor: the same pages
fetched and landed through DuckDB's read_json on a thread of its own, nothing mapped
(benchmarks/common.py). Rounds alternate and the medians are printed. The engine's peak RSS is
measured in a process of its own (a child per sync), so the floor and the emulator do not
count in it. Each time runs to the DuckDB file's close, the engine's as the floor's (closing
checkpoints what the WAL still holds). Beside each time, the CPU it took (every thread; the
sync's without the engine's imports): the floor's is more than its seconds, as DuckDB parses
the pages on every core.

    python benchmarks/one_connection.py [--contacts 100000] [--rounds 3]
    python benchmarks/one_connection.py --contacts 1000000 --rounds 1 --no-floor

Targets: engine within 1.25 times the floor at 100,000 contacts; under 200 MB peak RSS at
1,000,000.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    EXTRA_PROPERTIES,
    HUBSPOT_TOKEN,
    ROOT,
    contacts_properties,
    emulator,
    floor,
    median,
    own_peak_mb,
)

SYNC = """
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, "benchmarks")
from common import cpu_seconds, own_peak_mb, process_cpu_seconds
from engine import Engine
from engine.cli import tune_interpreter
tune_interpreter()  # the sync runs as the command line runs it
url, extra, TOKEN, processes = sys.argv[1], sys.argv[2].split(","), sys.argv[3], int(sys.argv[4])
with tempfile.TemporaryDirectory() as tmp:
    engine = Engine(db=Path(tmp) / "bench.duckdb", home=Path(tmp) / "home",
                    map_processes=processes)
    started, cpu = time.perf_counter(), cpu_seconds()
    [run] = engine.sync("hubspot", streams=["contacts"], token=TOKEN, base_url=url,
                        config={"extra_properties": extra})
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    landed = engine.store.query("SELECT count(*) FROM contacts")[0][0]
    # The mapping processes, still running: their peaks and CPU (their start included).
    pids = engine.mapping_pool.pids() if engine.mapping_pool else []
    mapping_mb = sum(own_peak_mb(pid) for pid in pids)
    mapping_cpu = sum(process_cpu_seconds(pid) or 0 for pid in pids)
    # Closing counts too, as the floor's does: DuckDB checkpoints what its WAL still holds.
    started, closing_cpu = time.perf_counter(), cpu_seconds()
    engine.close()
    seconds, cpu = seconds + time.perf_counter() - started, cpu + cpu_seconds() - closing_cpu
print(json.dumps({"status": run.status, "error": run.error, "records": landed,
                  "seconds": seconds, "cpu": cpu, "peak_mb": own_peak_mb(),
                  "mapping_mb": mapping_mb, "mapping_cpu": mapping_cpu}))
"""


def engine_sync(url: str, map_processes: int) -> dict[str, float]:
    """One sync in a child process: its seconds (the sync alone), CPU and peak RSS, and its
    mapping processes' (`--map-processes`)."""
    result = subprocess.run([sys.executable, "-c", SYNC, url, ",".join(EXTRA_PROPERTIES),
                             HUBSPOT_TOKEN, str(map_processes)],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    out = json.loads(result.stdout.splitlines()[-1])
    if out["status"] != "succeeded":
        raise RuntimeError(out["error"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-floor", action="store_true", help="the engine alone (memory)")
    parser.add_argument("--map-processes", type=int, default=0,
                        help="Engine(map_processes=N): pages mapped in N more processes, whose "
                             "memory and CPU are printed beside the engine's")
    args = parser.parse_args()
    engine_seconds, floor_seconds, ratios, peaks = [], [], [], []
    with emulator("hubspot", contacts=args.contacts, companies=10, deals=10,
                  rate_limit="1000000,10", search_rate_limit="none", daily_limit="none") as url:
        properties = contacts_properties(url)
        if not args.no_floor:
            floor(url, properties)  # warm-up: the emulator renders and caches pages once
        for number in range(1, args.rounds + 1):
            run = engine_sync(url, args.map_processes)
            assert run["records"] == args.contacts, run
            engine_seconds.append(run["seconds"])
            peaks.append(run["peak_mb"] + run["mapping_mb"])
            line = (f"round {number}: engine {run['seconds']:.2f}s "
                    f"({args.contacts / run['seconds']:,.0f} records/s, CPU {run['cpu']:.1f}s, "
                    f"peak RSS {run['peak_mb']:.0f} MB")
            if args.map_processes:
                line += (f"; mapping processes: CPU {run['mapping_cpu']:.1f}s, peak RSS "
                         f"{run['mapping_mb']:.0f} MB, {peaks[-1]:.0f} MB in all")
            line += ")"
            if not args.no_floor:
                records, seconds, cpu = floor(url, properties)
                assert records == args.contacts, records
                floor_seconds.append(seconds)
                ratios.append(run["seconds"] / seconds)
                line += f"; floor {seconds:.2f}s (CPU {cpu:.1f}s); engine/floor {ratios[-1]:.2f}"
            print(line, flush=True)
    summary = (f"median of {args.rounds}: engine {median(engine_seconds):.2f}s, "
               f"peak RSS {median(peaks):.0f} MB (max {max(peaks):.0f}"
               f"{', mapping processes included' if args.map_processes else ''})")
    if ratios:
        summary += (f"; floor {median(floor_seconds):.2f}s; engine/floor "
                    f"{median(ratios):.2f} (target <= 1.25)")
    print(summary)
    print(f"(this process: peak RSS {own_peak_mb():.0f} MB, the floor's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
