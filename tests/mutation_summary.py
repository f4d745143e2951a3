"""The score of the last `make mutation` run, per module, with the documented equivalents apart.

Reads mutmut's results (mutants/**/*.py.meta) and tests/mutation-equivalents.md (a survivor
listed there by name changes nothing any test can observe). Prints, per mutated module and in
total: mutants, killed (by a failing test, or by a timeout: an endless loop is detected),
survived, of those documented as equivalent, and the share of survivors among the mutants that
can be killed. Survivors not yet listed are printed by name, and so are listed names that no
longer survive (a test now kills them, or the code changed and renumbered them).
Run from the project root: `python tests/mutation_summary.py`.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

EQUIVALENTS = Path(__file__).with_name("mutation-equivalents.md")
KILLED = {1, 3}  # a test failed (3: pytest's internal error, as mutmut counts it)
TIMEOUT = {36, -24, 24, 152, 255}
NOT_CHECKED = {None, 2}


def equivalents(path: Path = EQUIVALENTS) -> set[str]:
    """The mutant names listed (in backquotes) in the equivalents file."""
    return set(re.findall(r"`([\w.ǁ]+__mutmut_\d+)`", path.read_text(encoding="utf-8")))


def results(root: Path) -> dict[str, dict[str, int | None]]:
    """Exit code by mutant name, per mutated module."""
    return {str(meta.relative_to(root).with_suffix("").with_suffix(".py")):
            json.loads(meta.read_text())["exit_code_by_key"]
            for meta in sorted(root.rglob("*.py.meta"))}


def main() -> int:
    root = Path("mutants")
    by_module = results(root)
    if not by_module:
        print("no mutation results: run `make mutation` first")
        return 1
    documented = equivalents()
    survivors: list[str] = []
    rows = []
    total = Counter()
    for module, codes in by_module.items():
        row = Counter(mutants=len(codes))
        for name, code in codes.items():
            if code in KILLED:
                row["killed"] += 1
            elif code in TIMEOUT:
                row["killed"] += 1
                row["timeout"] += 1
            elif code in NOT_CHECKED:
                row["not checked"] += 1
            else:  # survived, no test reaches it, suspicious: all undetected
                row["survived"] += 1
                if name in documented:
                    row["equivalent"] += 1
                else:
                    survivors.append(name)
        rows.append((module.removeprefix("engine/"), row))
        total.update(row)
    rows.append(("total", total))
    print(f"{'module':<14}{'mutants':>8}{'killed':>8}{'timeout':>8}{'survived':>9}"
          f"{'equiv.':>7}{'left':>6}{'left %':>8}")
    for module, row in rows:
        left = row["survived"] - row["equivalent"]
        killable = row["mutants"] - row["equivalent"] - row["not checked"]
        share = f"{100 * left / killable:.1f}%" if killable else "-"
        print(f"{module:<14}{row['mutants']:>8}{row['killed']:>8}{row['timeout']:>8}"
              f"{row['survived']:>9}{row['equivalent']:>7}{left:>6}{share:>8}")
    if total["not checked"]:
        print(f"{total['not checked']} mutants were not checked (an interrupted run)")
    every = {name for codes in by_module.values() for name in codes}
    undetected = {name for codes in by_module.values() for name, code in codes.items()
                  if code not in KILLED | TIMEOUT | NOT_CHECKED}
    stale = sorted(documented - undetected)
    if survivors:
        print("Survivors not killed and not listed in tests/mutation-equivalents.md:")
        print("".join(f"  {name}\n" for name in sorted(survivors)), end="")
    if stale:
        print("Listed as equivalent but no longer surviving "
              f"({len([n for n in stale if n in every])} killed, "
              f"{len([n for n in stale if n not in every])} gone):")
        print("".join(f"  {name}\n" for name in stale), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
