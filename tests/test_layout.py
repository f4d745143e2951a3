"""Import rules of the layout: the engine never imports the emulators, the emulator kit knows no
vendor, and no vendor package imports another vendor's."""

from __future__ import annotations

import ast
from pathlib import Path

from engine.engine import PROJECT_ROOT
from sandbox import EMULATORS


def _imported_modules(package: Path) -> dict[str, set[str]]:
    """Absolute module names imported by each .py file under ``package`` (``from a import b``
    counts as ``a.b``, since b may be a module)."""
    found: dict[str, set[str]] = {}
    for file in sorted(package.rglob("*.py")):
        modules = found.setdefault(str(file.relative_to(PROJECT_ROOT)), set())
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _sandbox_parts(modules: set[str]) -> set[str]:
    """The sandbox sub-packages among ``modules`` (``sandbox.kit.core`` -> ``kit``)."""
    return {m.split(".")[1] for m in modules if m.startswith("sandbox.")}


def test_the_engine_does_not_import_the_sandbox() -> None:
    for file, modules in _imported_modules(PROJECT_ROOT / "engine").items():
        assert not {m for m in modules if m.split(".")[0] == "sandbox"}, file


def test_vendor_packages_import_only_the_kit_and_themselves() -> None:
    packages = {p.parent.name for p in (PROJECT_ROOT / "sandbox").glob("*/__init__.py")}
    assert packages == {"kit", *EMULATORS}
    for vendor in EMULATORS:
        for file, modules in _imported_modules(PROJECT_ROOT / "sandbox" / vendor).items():
            assert _sandbox_parts(modules) <= {"kit", vendor}, file
    for file, modules in _imported_modules(PROJECT_ROOT / "sandbox" / "kit").items():
        assert _sandbox_parts(modules) <= {"kit"}, file
