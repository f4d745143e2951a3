"""Connections' credentials in PostgreSQL, shared by every process and machine, encrypted at rest.

The same interface as `engine.connections.CredentialStore` (files in $CRM_ENGINE_HOME), so the
engine, `crm-engine connect` and OAuth refresh use either alike. One row per connection: its
name and connector in clear (to list them), everything else (config, tokens, client secret) as
one Fernet token (`cryptography`: AES-128-CBC and HMAC-SHA256, authenticated). The key comes
from an environment variable, never the database; several comma-separated keys are a
MultiFernet: the first encrypts, any decrypts, so keys rotate without downtime
(`rotate` re-encrypts every row with the first).

A rotated refresh token is written back atomically: `update_credentials` reads, changes and
writes the row in one transaction holding the row's lock, and `locked(name)` holds a
PostgreSQL advisory lock across processes while a refresh runs (the workers add a Redis lock
in front of it; see docs/deployment.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from engine import secrets
from engine.auth import Credentials
from engine.connections import Connection, check_name
from engine.errors import InputError
from engine.store import StoreError

if TYPE_CHECKING:
    import psycopg
    from cryptography.fernet import MultiFernet

TABLE = "crm_engine_connections"
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    name text PRIMARY KEY,
    connector text NOT NULL,
    sealed bytea NOT NULL,
    updated timestamptz NOT NULL DEFAULT now()
)"""
LOCK_SPACE = 0x63726d  # advisory-lock namespace of these locks ("crm")


class CredentialsError(StoreError):
    """Stored credentials cannot be read (a wrong key) or the database cannot be reached."""


@dataclass(frozen=True)
class SharedCredentialsTarget:
    """The project file's `credentials:`: a libpq DSN without password, and the environment
    variables holding the password and the Fernet key(s)."""

    dsn: str
    key_env: str
    password_env: str | None = None

    def open(self) -> PostgresCredentialStore:
        keys = secrets.from_environment(self.key_env, "the key the shared credentials are "
                                                      "encrypted with")
        password = secrets.from_environment(self.password_env, "the credentials database's "
                                                               "password")
        assert keys is not None
        return PostgresCredentialStore(self.dsn, keys, password=password, key_env=self.key_env)


def fernet(keys: str, variable: str) -> MultiFernet:
    """A MultiFernet from comma-separated keys (the first encrypts)."""
    from cryptography.fernet import Fernet, MultiFernet

    try:
        return MultiFernet([Fernet(key.strip()) for key in keys.split(",") if key.strip()])
    except (ValueError, TypeError):
        raise InputError(variable, "is not a list of Fernet keys (32 url-safe base64-encoded "
                                   "bytes each; `python -c 'from cryptography.fernet import "
                                   "Fernet; print(Fernet.generate_key().decode())'` makes "
                                   "one)") from None


class PostgresCredentialStore:
    """`CredentialStore`'s interface over one PostgreSQL table (see the module docstring)."""

    def __init__(self, dsn: str, keys: str, *, password: str | None = None,
                 key_env: str = "the credentials key"):
        self.dsn = dsn
        self._password = password
        self._key_env = key_env
        self._fernet = fernet(keys, key_env)
        secrets.register(password)
        for key in keys.split(","):
            secrets.register(key.strip())
        with self._connect() as con:
            # Two processes creating the table at once would race in the system catalogs.
            con.execute("SELECT pg_advisory_xact_lock(%s, 0)", [LOCK_SPACE])
            con.execute(DDL)

    def __repr__(self) -> str:
        return f"PostgresCredentialStore({self.dsn!r})"

    def _connect(self, autocommit: bool = False) -> psycopg.Connection[Any]:
        import psycopg

        try:
            return psycopg.connect(self.dsn, password=self._password, autocommit=autocommit,
                                   connect_timeout=10)
        except psycopg.Error as exc:
            raise CredentialsError(f"credentials database ({self.dsn}): "
                                   f"{secrets.redact(' '.join(str(exc).split()))}") from None

    # -- sealing -----------------------------------------------------------------------------
    def _seal(self, connection: Connection) -> bytes:
        return self._fernet.encrypt(orjson.dumps(connection.to_dict()))

    def _open(self, name: str, sealed: bytes) -> Connection:
        from cryptography.fernet import InvalidToken

        try:
            plain = self._fernet.decrypt(bytes(sealed))
        except InvalidToken:
            raise CredentialsError(
                f"credentials of connection {name!r} cannot be decrypted with the key(s) in "
                f"{self._key_env}: a wrong key, or the one they were written with is no longer "
                f"among them") from None
        connection = Connection.from_dict(orjson.loads(plain))
        for value in connection.credentials.to_dict().values():
            secrets.register(value)  # secrets read from here are hidden from logs too
        return connection

    # -- CredentialStore's interface ---------------------------------------------------------
    def load(self, name: str) -> Connection | None:
        check_name(name)
        with self._connect() as con:
            row = con.execute(f"SELECT sealed FROM {TABLE} WHERE name = %s", [name]).fetchone()
        return self._open(name, row[0]) if row else None

    def names(self) -> list[str]:
        with self._connect() as con:
            return [row[0] for row in con.execute(f"SELECT name FROM {TABLE} ORDER BY name")]

    def save(self, connection: Connection) -> None:
        check_name(connection.name)
        with self._connect() as con:
            con.execute(
                f"INSERT INTO {TABLE} (name, connector, sealed, updated) "
                f"VALUES (%s, %s, %s, now()) ON CONFLICT (name) DO UPDATE SET "
                f"connector = excluded.connector, sealed = excluded.sealed, updated = now()",
                [connection.name, connection.connector, self._seal(connection)])

    def delete(self, name: str) -> bool:
        check_name(name)
        with self._connect() as con:
            return con.execute(f"DELETE FROM {TABLE} WHERE name = %s", [name]).rowcount > 0

    def update_credentials(self, name: str, credentials: Credentials) -> None:
        """Replace a stored connection's credentials, keeping the rest as stored: read, change
        and write in one transaction, the row locked, so no concurrent write is lost."""
        with self._connect() as con:
            row = con.execute(f"SELECT sealed FROM {TABLE} WHERE name = %s FOR UPDATE",
                              [name]).fetchone()
            if row is None:
                raise KeyError(name)
            connection = self._open(name, row[0])
            connection.credentials = credentials
            con.execute(f"UPDATE {TABLE} SET sealed = %s, updated = now() WHERE name = %s",
                        [self._seal(connection), name])

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """An exclusive lock per connection across processes and machines (held while
        refreshing): a session advisory lock, released when the block ends or the process
        dies (its connection closes)."""
        with self._connect(autocommit=True) as con:
            con.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", [LOCK_SPACE, name])
            try:
                yield
            finally:
                con.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", [LOCK_SPACE, name])

    def rotate(self) -> int:
        """Re-encrypt every row with the first key (after adding a new key in front); returns
        how many rows. Afterwards the old keys can be dropped from the variable."""
        with self._connect() as con:
            rows = con.execute(f"SELECT name, sealed FROM {TABLE} FOR UPDATE").fetchall()
            for name, sealed in rows:
                self._open(name, sealed)  # a row no key opens fails here, naming it
                con.execute(f"UPDATE {TABLE} SET sealed = %s WHERE name = %s",
                            [self._fernet.rotate(bytes(sealed)), name])
        return len(rows)
