"""A batch lands in DuckDB exactly as the mapping read it: the rows travel as JSON, in pieces
of columns (engine/store/duckdb_file.py), so text that looks like JSON, separators inside
strings, rows larger than a piece and batches of many pieces must all come back unchanged."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from engine.engine import PROJECT_ROOT
from engine.loader import load_connector
from engine.store import Batch, SyncRun
from engine.store.duckdb_file import DuckDBStore, _pieces_file
from engine.store.pieces import PIECE_BYTES, ROWS_PER_PIECE

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hubspot"


def recorded_contacts() -> list[dict]:
    return json.loads((FIXTURES / "contacts_list_page.json").read_text())["results"]


def with_properties(record: dict, record_id: str, **properties: object) -> dict:
    out = copy.deepcopy(record)
    out["id"] = record_id
    out["properties"].update(properties, hs_object_id=record_id)
    return out


def test_a_batch_lands_as_mapped_whatever_its_rows_hold(tmp_path):
    mapping = load_connector(PROJECT_ROOT / "connectors" / "hubspot.yaml").mappings["contact"]
    recorded = recorded_contacts()
    records = [*recorded,
               # A row larger than a piece: it travels alone.
               with_properties(recorded[0], "large", notes="n" * (2 * PIECE_BYTES)),
               # Text that is JSON's own punctuation, line breaks, non-ASCII.
               with_properties(recorded[1], "tricky", firstname='},{"id": "evil"}]\n[',
                               lastname="Zoë \u2028 名前 \\ \"q\"", jobtitle=""),
               # Enough rows for several pieces.
               *(with_properties(recorded[2], f"many-{i}", firstname=f"F{i}")
                 for i in range(ROWS_PER_PIECE * 2 + 7))]
    batch = Batch(mapping.model)
    mapping.read_columns(records, batch.columns)
    run = SyncRun("hubspot", "c1", "contacts")
    store = DuckDBStore(tmp_path / "t.duckdb")
    try:
        store.start_run(run)
        store.land(batch, run, append=True)
        names = list(batch.columns)
        landed = {row[0]: dict(zip(names, row, strict=True)) for row in store.query(
            f"SELECT {', '.join(names)} FROM contacts WHERE connection = 'c1'")}
    finally:
        store.close()
    assert len(landed) == len(records)
    for i, record_id in enumerate(batch.columns["id"]):
        expected = {name: column[i] for name, column in batch.columns.items()}
        row = landed[record_id]
        row["custom"] = json.loads(row["custom"])
        assert row == expected, record_id
    assert len(landed["large"]["custom"]["notes"]) == 2 * PIECE_BYTES
    assert landed["tricky"]["first_name"] == '},{"id": "evil"}]\n['


def test_rows_are_encoded_in_pieces_of_bounded_size():
    # Python holds one piece at a time: rows of 100 KB go a few at a time, not a thousand.
    data = {"id": [str(i) for i in range(50)], "text": [f"{i}" * 100_000 for i in range(50)]}
    path, largest = _pieces_file(data)
    try:
        pieces = [json.loads(line) for line in Path(path).read_text().splitlines()]
    finally:
        Path(path).unlink()
    assert len(pieces) > 1
    assert all(len(piece["id"]) == len(piece["text"]) for piece in pieces)
    rows = [{"id": i, "text": text} for piece in pieces
            for i, text in zip(piece["id"], piece["text"], strict=True)]
    assert rows == [{"id": str(i), "text": f"{i}" * 100_000} for i in range(50)]
    assert 100_000 < largest <= PIECE_BYTES
