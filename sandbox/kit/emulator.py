"""The base of the vendor emulators: client credentials, static tokens, the App and its clock,
the OAuth provider, and the lifecycle and test hooks that the engine and the tests call the
same way on every vendor.

A vendor subclass keeps its own keyword-only constructor (``python -m sandbox`` builds its
flags from that signature), builds its App, store and OAuthProvider, and adds ``name``,
``DEMO_OPTIONS``, ``TOKEN_SCOPES``, ``connection_config`` and ``describe``.

Every emulator also serves the test-control endpoints of control.py (``POST /__sandbox/mutate``,
``GET /__sandbox/truth``); a vendor takes part by naming its objects in ``CONTROL_STREAMS`` and
implementing the ``control_*`` hooks against its store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

from sandbox.kit.control import Controller, Mutation, TruthRow, register_control_routes
from sandbox.kit.core import App, OAuthProvider, RunningSandbox, TokenGrant, serve


class Emulator(ABC):
    """One vendor's API in memory, served over HTTP by :meth:`start`."""

    name: ClassVar[str]
    # Options for `crm-engine demo` (sandbox/demo.py), passed to the constructor.
    DEMO_OPTIONS: ClassVar[dict[str, Any]] = {}
    # What issue_token grants when the caller names no scopes.
    TOKEN_SCOPES: ClassVar[tuple[str, ...]] = ()
    # The control endpoints' streams: neutral name (contacts, companies, deals) -> the vendor's
    # object name that the control_* hooks receive (also accepted as a stream name itself).
    CONTROL_STREAMS: ClassVar[dict[str, str]] = {}

    oauth: OAuthProvider  # set by the subclass, whose provider options differ per vendor

    def __init__(
        self, app: App, *, client_id: str, client_secret: str, static_tokens: Iterable[str]
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.static_tokens = tuple(static_tokens)
        self.app = app
        self.clock = app.clock
        # This server's URL once started: vendors whose token responses name the API host
        # (instance_url, api_domain) answer with it.
        self.url: str | None = None
        self.controller = Controller(self)
        register_control_routes(self)  # first, so no vendor catch-all route shadows them

    def start(self, host: str = "127.0.0.1", port: int = 0) -> RunningSandbox:
        running = serve(self.app, host, port, emulator=self)
        self.url = running.url
        return running

    def advance_time(self, seconds: float) -> None:
        """Move the sandbox clock: token expiry, rate and quota windows, write timestamps."""
        self.app.advance_time(seconds)

    def expire_all_tokens(self) -> None:
        self.oauth.expire_all()

    def issue_token(self, scopes: Iterable[str] | None = None) -> TokenGrant:
        """An OAuth token pair without the browser round trip (default: TOKEN_SCOPES)."""
        return self.oauth.issue(self.client_id, self.TOKEN_SCOPES if scopes is None else scopes)

    @property
    def static_token(self) -> str | None:
        """The first never-expiring token (sandbox/demo.py prints it)."""
        return self.static_tokens[0] if self.static_tokens else None

    # -- test control (control.py) ---------------------------------------------------------

    def mutate(
        self,
        stream: str,
        *,
        create: int = 0,
        update: int = 0,
        delete: int = 0,
        same_timestamp: bool = False,
        late: bool = False,
        late_by: float = 60.0,
    ) -> dict[str, Any]:
        """What ``POST /__sandbox/mutate`` does, without HTTP (same result body)."""
        streams = self.controller.streams()
        if stream not in streams:
            raise ValueError(f"unknown stream {stream!r}; one of {', '.join(streams)}")
        mutation = Mutation(
            streams[stream], create, update, delete, same_timestamp, late, float(late_by)
        )
        return self.controller.mutate(mutation)

    def truth(self, stream: str) -> dict[str, Any]:
        """What ``GET /__sandbox/truth?stream=`` answers, without HTTP."""
        streams = self.controller.streams()
        if stream not in streams:
            raise ValueError(f"unknown stream {stream!r}; one of {', '.join(streams)}")
        return self.controller.truth(streams[stream])

    def control_live_ids(self, stream: str) -> list[str]:
        """Ids of the live (not deleted) records of ``stream`` (a vendor object name)."""
        raise NotImplementedError(f"{self.name} has no control hooks")

    def control_create(self, stream: str, stamps: list[float]) -> list[str]:
        """Create one record per stamp (epoch seconds: its creation and modification time);
        returns the new ids in order."""
        raise NotImplementedError(f"{self.name} has no control hooks")

    def control_update(self, stream: str, ids: list[str], stamps: list[float]) -> None:
        """Change a field of each record and set its modification time to the paired stamp."""
        raise NotImplementedError(f"{self.name} has no control hooks")

    def control_delete(self, stream: str, ids: list[str], stamps: list[float]) -> None:
        """Delete each record as the vendor's DELETE does, at the paired stamp."""
        raise NotImplementedError(f"{self.name} has no control hooks")

    def control_truth(self, stream: str) -> list[TruthRow]:
        """Every record of ``stream``, live and deleted."""
        raise NotImplementedError(f"{self.name} has no control hooks")

    @abstractmethod
    def connection_config(self, url: str) -> dict[str, Any]:
        """Connector settings that point a connection at this sandbox served at ``url``."""

    @abstractmethod
    def describe(self) -> dict[str, str]:
        """What a person needs to point a client at this sandbox (printed by the CLI)."""
