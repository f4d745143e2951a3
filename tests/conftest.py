from __future__ import annotations

from pathlib import Path

import pytest

from engine import Engine
from engine.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_engine(tmp_path: Path, clock: FakeClock):
    """Engine(db, connectors_dir) with a fake clock and a private credentials home."""
    engines: list[Engine] = []

    def make(connectors_dir: Path | None = None, db: str | None = "crm.duckdb", **kw) -> Engine:
        engine = Engine(db=tmp_path / db if db else None, connectors_dir=connectors_dir,
                        home=tmp_path / "home", clock=clock, **kw)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
