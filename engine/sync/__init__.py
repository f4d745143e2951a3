"""Syncing streams into a store: full refreshes, incremental reads and deletes, each page
landed with the checkpoint that follows it (see stream.py, reads.py, checkpoint.py); pages
mapped in other processes where the Engine has a pool of them (mapping_pool.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.sync.pages import StreamContext
    from engine.sync.stream import NoProgress, Progress, naming_field_list, run_stream

__all__ = ["NoProgress", "Progress", "StreamContext", "naming_field_list", "run_stream"]


def __getattr__(name: str) -> Any:
    # On first use, as engine/__init__.py: a mapping process imports none of the sync.
    if name == "StreamContext":
        from engine.sync import pages

        return pages.StreamContext
    if name in __all__:
        from engine.sync import stream

        return getattr(stream, name)
    raise AttributeError(f"module 'engine.sync' has no attribute {name!r}")
