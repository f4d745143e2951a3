"""Syncing streams into a store: full refreshes, incremental reads and deletes, each page
landed with the checkpoint that follows it (see stream.py, reads.py, checkpoint.py); pages
mapped in other processes where the Engine has a pool of them (mapping_pool.py)."""

from engine.sync.pages import StreamContext
from engine.sync.stream import NoProgress, Progress, naming_field_list, run_stream

__all__ = ["NoProgress", "Progress", "StreamContext", "naming_field_list", "run_stream"]
