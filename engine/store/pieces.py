"""Rows as the DuckDB store reads them: JSON lines, each the columns of some rows (a piece).

Apart from engine.store.duckdb_file so that a mapping process (engine.sync.mapping_pool),
which encodes its pages this way, does not import DuckDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

ROWS_PER_PIECE = 1000  # rows turned into JSON at a time
PIECE_BYTES = 2**20  # ... or fewer, so that a piece stays under this (unless it is one row)


def row_pieces(data: dict[str, list[Any]]) -> Iterator[bytes]:
    """Columns as JSON lines, each line the columns of some rows (a piece), for read_json,
    which parses a line at a time in buffers twice `maximum_object_size` (so that is kept
    near the largest piece) and unnests it into rows (`_insert`). A piece holds whole rows and
    is no longer than PIECE_BYTES, unless it is one row. Columns, not a dict per row: a third
    of the time. A mapping process encodes its pages with this too (EncodedRows)."""
    names, columns = list(data), list(data.values())
    count = len(columns[0])
    start, size = 0, ROWS_PER_PIECE
    while start < count:
        piece = orjson.dumps(dict(zip(names, (c[start:start + size] for c in columns),
                                      strict=True)), default=str)
        if len(piece) > PIECE_BYTES and size > 1:  # large rows: again, in smaller pieces
            size = max(1, size * PIECE_BYTES // (2 * len(piece)))
            continue
        yield piece + b"\n"
        start += size
