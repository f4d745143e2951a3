"""Connections and where their credentials live.

A connection is one account at one CRM: a name, its connector, its config, the auth method it
uses and its credentials. Connections are stored outside the DuckDB file, one JSON file each
under the user's config directory (`$CRM_ENGINE_HOME`, else `$XDG_CONFIG_HOME/crm-engine`,
else `~/.config/crm-engine`), mode 0600, written atomically (write, fsync, rename).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from engine.auth import Credentials

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Connection:
    name: str
    connector: str
    auth_method: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    base_url: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
    # Where a caller's secrets came from (a project file's variables), for what a refusal
    # tells the user to check; never stored.
    secrets_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "connector": self.connector,
            "auth_method": self.auth_method,
            "config": self.config,
            "base_url": self.base_url,
            "credentials": self.credentials.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Connection:
        return cls(
            name=data["name"],
            connector=data["connector"],
            auth_method=data.get("auth_method"),
            config=dict(data.get("config") or {}),
            base_url=data.get("base_url"),
            credentials=Credentials.from_dict(data.get("credentials") or {}),
        )


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"invalid connection name {name!r}: use letters, digits, _ . -")
    return name


class ConnectionStore(Protocol):
    """Where connections and their credentials are kept: `CredentialStore` (files, the
    default) or engine.shared_credentials.PostgresCredentialStore (shared, encrypted)."""

    def load(self, name: str) -> Connection | None: ...
    def names(self) -> list[str]: ...
    def save(self, connection: Connection) -> None: ...
    def delete(self, name: str) -> bool: ...
    def update_credentials(self, name: str, credentials: Credentials) -> None: ...
    def locked(self, name: str) -> AbstractContextManager[None]: ...


def default_home() -> Path:
    if os.environ.get("CRM_ENGINE_HOME"):
        return Path(os.environ["CRM_ENGINE_HOME"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "crm-engine"


class CredentialStore:
    def __init__(self, home: str | Path | None = None):
        self.directory = Path(home or default_home()) / "connections"

    def _file(self, name: str) -> Path:
        return self.directory / f"{check_name(name)}.json"

    def load(self, name: str) -> Connection | None:
        path = self._file(name)
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        return Connection.from_dict(data)

    def names(self) -> list[str]:
        if not self.directory.exists():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json"))

    def save(self, connection: Connection) -> None:
        path = self._file(connection.name)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        payload = orjson.dumps(connection.to_dict(), option=orjson.OPT_INDENT_2)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{connection.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, name: str) -> bool:
        try:
            self._file(name).unlink()
            return True
        except FileNotFoundError:
            return False

    def update_credentials(self, name: str, credentials: Credentials) -> None:
        """Replace a stored connection's credentials, keeping the rest as stored."""
        connection = self.load(name)
        if connection is None:
            raise KeyError(name)
        connection.credentials = credentials
        self.save(connection)

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """An exclusive lock per connection across processes (held while refreshing)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.directory / f".{name}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


# A lock per connection name held while its token is refreshed, in front of the credential
# store's own: a distributed worker passes one every worker sees (Redis).
RefreshLock = Callable[[str], AbstractContextManager[None]]


class StoredTokens:
    """One stored connection's credentials as the refresh logic's `TokenStore`."""

    def __init__(self, store: ConnectionStore, name: str, lock: RefreshLock | None = None):
        self._store = store
        self._name = name
        self._lock = lock

    @contextmanager
    def locked(self) -> Iterator[None]:
        with contextlib.ExitStack() as held:
            if self._lock is not None:
                held.enter_context(self._lock(self._name))
            held.enter_context(self._store.locked(self._name))
            yield

    def load(self) -> Credentials | None:
        connection = self._store.load(self._name)
        return connection.credentials if connection else None

    def save(self, credentials: Credentials) -> None:
        self._store.update_credentials(self._name, credentials)
