"""Bring mutmut's copy of the project (mutants/) up to date before resuming a run.

`mutmut run` keeps the verdicts of mutants whose function is unchanged and re-mutates the files
it mutates, but leaves its copies of every other file (the loader, the schemas, the connectors,
the emulators, the tests) as they were when the run began: a resumed run would test today's
mutated modules against yesterday's everything else. This copies each of those files that
differs. Run from the project root: `python scripts/mutation_sync.py` (`make mutation-resume`).
"""

from __future__ import annotations

import filecmp
import shutil
import sys
import tomllib
from pathlib import Path

COPIED = ("engine", "connectors", "mappings", "sandbox", "tests")


def main() -> int:
    root, target = Path.cwd(), Path.cwd() / "mutants"
    if not target.is_dir():
        print("no mutants/ to resume: run `make mutation`")
        return 1
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    mutated = {Path(p) for p in config["only_mutate"]}
    copied = 0
    for top in COPIED:
        for source in sorted((root / top).rglob("*")):
            relative = source.relative_to(root)
            if not source.is_file() or "__pycache__" in relative.parts or relative in mutated:
                continue
            copy = target / relative
            if copy.exists() and filecmp.cmp(source, copy, shallow=False):
                continue
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy)
            copied += 1
    print(f"mutants/: {copied} files brought up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
