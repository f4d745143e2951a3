"""Credentials shared in PostgreSQL, encrypted at rest with a key from the environment: what
the table holds, a wrong key, key rotation, an OAuth refresh written back, and the CLI with a
project file that keeps its credentials there. Real PostgreSQL from scripts/services.sh."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from engine import Engine
from engine.auth import Credentials
from engine.connections import Connection
from engine.engine import PROJECT_ROOT
from engine.errors import InputError
from sandbox.demo import connect_oauth
from sandbox.hubspot import HubSpotSandbox

pytestmark = pytest.mark.usefixtures("services")


@pytest.fixture
def keys() -> tuple[str, str]:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode(), Fernet.generate_key().decode()


def open_store(pg_dsn: str, services: dict[str, str], keys: str):
    from engine.shared_credentials import PostgresCredentialStore

    return PostgresCredentialStore(pg_dsn, keys, password=services["CRM_ENGINE_PG_PASSWORD"],
                                   key_env="CRM_ENGINE_CREDENTIALS_KEY")


def raw_rows(pg_dsn: str, services: dict[str, str]) -> list[tuple[str, str, bytes]]:
    import psycopg

    with psycopg.connect(pg_dsn, password=services["CRM_ENGINE_PG_PASSWORD"]) as con:
        return [(name, connector, bytes(sealed)) for name, connector, sealed in con.execute(
            "SELECT name, connector, sealed FROM crm_engine_connections ORDER BY name")]


SECRETS = {"access_token": "at-7f3c9a1e5b2d4c6e", "refresh_token": "rt-0a9b8c7d6e5f4a3b",
           "client_secret": "cs-1234567890abcdef"}


def a_connection(name: str = "acme") -> Connection:
    return Connection(name, "hubspot", "oauth2", {"page_size": 50}, None,
                      Credentials(client_id="cid-acme", **SECRETS))


def test_credentials_are_encrypted_at_rest_and_read_back(pg_dsn, services, keys):
    store = open_store(pg_dsn, services, keys[0])
    store.save(a_connection())
    [(name, connector, sealed)] = raw_rows(pg_dsn, services)
    assert (name, connector) == ("acme", "hubspot")
    for value in (*SECRETS.values(), "cid-acme"):
        assert value.encode() not in sealed  # nothing in clear, not even the client id
    loaded = store.load("acme")
    assert loaded.to_dict() == a_connection().to_dict()
    assert store.names() == ["acme"]
    assert "at-7f3c9a1e5b2d4c6e" not in repr(store) + repr(loaded.credentials)
    assert store.delete("acme") and store.load("acme") is None and store.names() == []


def test_a_wrong_key_fails_in_one_line_that_names_the_connection(pg_dsn, services, keys):
    open_store(pg_dsn, services, keys[0]).save(a_connection())
    from engine.shared_credentials import CredentialsError

    with pytest.raises(CredentialsError) as failed:
        open_store(pg_dsn, services, keys[1]).load("acme")
    message = str(failed.value)
    assert "\n" not in message
    assert "'acme'" in message and "CRM_ENGINE_CREDENTIALS_KEY" in message
    with pytest.raises(InputError, match="CRM_ENGINE_CREDENTIALS_KEY: is not a list of Fernet"):
        open_store(pg_dsn, services, "not-a-key")
    from engine.shared_credentials import SharedCredentialsTarget

    with pytest.raises(InputError, match=r"^SHARED_KEY: is not set"):
        SharedCredentialsTarget(pg_dsn, "SHARED_KEY").open()


def test_rotation_re_encrypts_with_the_new_key_so_the_old_one_can_go(pg_dsn, services, keys):
    old, new = keys
    open_store(pg_dsn, services, old).save(a_connection("acme"))
    open_store(pg_dsn, services, old).save(a_connection("globex"))
    before = raw_rows(pg_dsn, services)
    both = open_store(pg_dsn, services, f"{new},{old}")  # the new key first: it encrypts
    assert both.load("acme").credentials.refresh_token == SECRETS["refresh_token"]
    assert both.rotate() == 2
    after = raw_rows(pg_dsn, services)
    assert [r[2] for r in after] != [r[2] for r in before]
    assert open_store(pg_dsn, services, new).load("globex").to_dict() == \
        a_connection("globex").to_dict()
    from engine.shared_credentials import CredentialsError

    with pytest.raises(CredentialsError):
        open_store(pg_dsn, services, old).load("acme")


def test_an_oauth_refresh_writes_the_rotated_refresh_token_back(pg_dsn, services, keys,
                                                                 tmp_path):
    from sandbox.kit.oauth import OAuthError

    store = open_store(pg_dsn, services, keys[0])
    emulator = HubSpotSandbox(contacts=30, companies=2, deals=2, rotate_refresh_tokens=True)
    with emulator.start() as running, Engine(db=tmp_path / "crm.duckdb", credentials=store,
                                             connectors_dir=PROJECT_ROOT / "connectors") as engine:
        connect_oauth(engine, "hubspot", emulator, running.url, "acme")
        first = store.load("acme").credentials.refresh_token
        emulator.expire_all_tokens()  # the next request gets a 401: the engine refreshes
        runs = engine.sync("hubspot", "acme", streams=["contacts"])
        assert [r.status for r in runs] == ["succeeded"], runs[0].error
    stored = open_store(pg_dsn, services, keys[0]).load("acme").credentials
    assert stored.refresh_token != first
    emulator.oauth.refresh(emulator.client_id, emulator.client_secret, stored.refresh_token)
    with pytest.raises(OAuthError):  # the old one was spent: only the stored one works
        emulator.oauth.refresh(emulator.client_id, emulator.client_secret, first)
    [(_, _, sealed)] = raw_rows(pg_dsn, services)
    assert stored.refresh_token.encode() not in sealed


def test_the_cli_keeps_a_projects_credentials_in_postgresql(pg_dsn, services, keys, tmp_path):
    """`connect` stores a connection in the project's shared store (no file in the home);
    with a wrong key every command that reads it fails in one line, exit code 1."""
    (tmp_path / "crm-engine.yaml").write_text(textwrap.dedent(f"""\
        credentials:
          postgres: "{pg_dsn}"
          password: {{env: CRM_ENGINE_PG_PASSWORD}}
          key: {{env: SHARED_KEY}}
        connections:
          acme: {{connector: pipedrive, auth: api_token,
                  secrets: {{api_token: {{env: PIPEDRIVE_TOKEN}}}}}}
        """))
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRM_ENGINE_")}
    env = {**base, "CRM_ENGINE_HOME": str(tmp_path / "home"), "SHARED_KEY": keys[0],
           "CRM_ENGINE_PG_PASSWORD": services["CRM_ENGINE_PG_PASSWORD"],
           "CRM_ENGINE_PIPEDRIVE_API_TOKEN": "pd-token-5e6f7a8b9c0d"}

    def crm(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=tmp_path,
                              env={**env, **extra}, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    stored = crm("connect", "pipedrive", "--connection", "shared", "--auth", "api_token")
    assert stored.returncode == 0, stored.stderr
    assert not (tmp_path / "home" / "connections").exists()
    [(name, connector, sealed)] = raw_rows(pg_dsn, services)
    assert (name, connector) == ("shared", "pipedrive")
    assert b"pd-token-5e6f7a8b9c0d" not in sealed
    listed = crm("connections", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "shared" in listed.stdout and "pd-token-5e6f7a8b9c0d" not in listed.stdout

    from cryptography.fernet import Fernet

    wrong = crm("connections", SHARED_KEY=Fernet.generate_key().decode())
    assert wrong.returncode == 1
    assert wrong.stderr.count("\n") == 1 and wrong.stderr.startswith("error: credentials of "
                                                                      "connection 'shared'")




SHARED_SYNC = textwrap.dedent("""
    import os, sys
    from engine import Engine
    from engine.clock import FakeClock
    from engine.shared_credentials import PostgresCredentialStore
    dsn, db, connectors, later = sys.argv[1:5]
    store = PostgresCredentialStore(dsn, os.environ["KEYS"], password=os.environ["PGPW"])
    with Engine(db=db, connectors_dir=connectors, clock=FakeClock(float(later)),
                credentials=store) as engine:
        [run] = engine.sync("acme")
    print(run.status, run.records, run.error)
""")


def test_two_processes_refreshing_at_once_keep_the_rotated_token(pg_dsn, services, keys,
                                                                 tmp_path, clock):
    """The shared store's lock and its read-change-write transaction: two processes find the
    token expired at once; one refreshes (the vendor's refresh tokens are single-use), the
    other uses what it wrote back."""
    from tests.support import TEST_MAPPING, serving, write_specs
    from tests.test_oauth import CONNECTOR, Vendor, connect

    store = open_store(pg_dsn, services, keys[0])
    connectors = write_specs(tmp_path, CONNECTOR, TEST_MAPPING)
    for vendor in serving(Vendor()):
        with Engine(db=tmp_path / "crm.duckdb", connectors_dir=connectors, clock=clock,
                    credentials=store) as engine:
            connect(engine, vendor)
        script = tmp_path / "sync.py"
        script.write_text(SHARED_SYNC)
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "KEYS": keys[0],
               "PGPW": services["CRM_ENGINE_PG_PASSWORD"]}
        later = str(clock.wall() + 600)  # both see an expired token at start
        processes = [subprocess.Popen(
            [sys.executable, str(script), pg_dsn, str(tmp_path / f"p{i}.duckdb"),
             str(connectors), later], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env) for i in range(2)]
        outputs = [p.communicate(timeout=120) for p in processes]
        assert [o[0].split()[:2] for o in outputs] == [["succeeded", "30"]] * 2, outputs
        assert vendor.replayed == 0  # nobody spent a rotated refresh token twice
        grants = [r for r in vendor.token_requests if r["grant_type"] == "refresh_token"]
        assert len(grants) == 1  # the second process found the first one's fresh token
        stored = store.load("acme").credentials.refresh_token
        assert stored in vendor.refresh_tokens
        [(_, _, sealed)] = raw_rows(pg_dsn, services)
        assert stored.encode() not in sealed
