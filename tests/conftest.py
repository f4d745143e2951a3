from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
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


# -- the distributed mode's services (scripts/services.sh) -----------------------------------
SERVICES = Path(__file__).resolve().parent.parent / "scripts" / "services.sh"
DISTRIBUTED_MODULES = ("psycopg", "cryptography", "celery", "redis")


def _unavailable(reason: str) -> None:
    """In CI the distributed tests must run: missing services fail them. A developer machine
    without PostgreSQL and Redis skips them, saying how to get them."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"distributed-mode tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"{reason} (`make services` installs and starts them)")


@pytest.fixture(scope="session")
def services() -> dict[str, str]:
    """CRM_ENGINE_PG_DSN, CRM_ENGINE_PG_PASSWORD and CRM_ENGINE_REDIS_URL of the running
    services, as `scripts/services.sh env` prints them."""
    missing = [m for m in DISTRIBUTED_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        _unavailable(f"the distributed extra is not installed ({', '.join(missing)}): "
                     f"pip install -e '.[distributed]'")
    if subprocess.run(["bash", str(SERVICES), "status"], capture_output=True).returncode:
        _unavailable("PostgreSQL and Redis are not running")
    printed = subprocess.run(["bash", str(SERVICES), "env"], capture_output=True, text=True,
                             check=True).stdout
    return dict(re.findall(r"^export (\w+)='([^']*)'$", printed, re.MULTILINE))


@pytest.fixture
def pg_dsn(services: dict[str, str]) -> Iterator[str]:
    """A fresh PostgreSQL database for one test (dropped after it), as a libpq DSN without the
    password (which is in services["CRM_ENGINE_PG_PASSWORD"])."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    password = services["CRM_ENGINE_PG_PASSWORD"]
    admin = services["CRM_ENGINE_PG_DSN"]
    with psycopg.connect(admin, password=password, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    yield re.sub(r"dbname=\S+", f"dbname={name}", admin)
    with psycopg.connect(admin, password=password, autocommit=True) as con:
        con.execute(f"DROP DATABASE {name} WITH (FORCE)")
