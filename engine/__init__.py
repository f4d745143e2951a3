"""crm-engine: a declarative, YAML-driven connector engine for CRMs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import CrmError, InputError, SpecError

if TYPE_CHECKING:
    from engine.engine import Engine

__all__ = ["CrmError", "Engine", "InputError", "SpecError"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `Engine` on first use: a process that only maps pages (engine.sync.mapping_pool) imports
    # engine.* modules without HTTP, DuckDB and the rest of the engine.
    if name == "Engine":
        from engine.engine import Engine

        return Engine
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
