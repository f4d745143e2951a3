"""The Python API: `Engine(db=...).sync(...)` and `Engine(...).action(...)`."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from engine import oauth, secrets
from engine.actions import run_action
from engine.auth import Credentials
from engine.authkinds import AuthMethod, AuthRuntime, OAuth2
from engine.clock import Clock
from engine.connections import (
    Connection,
    ConnectionStore,
    CredentialStore,
    RefreshLock,
    StoredTokens,
)
from engine.errors import CrmError, InputError, SpecError
from engine.loader import load_connector
from engine.mapping import ModelMapping, ReadContext
from engine.models import unified_models
from engine.ratelimit import Budgets, LocalBudgets
from engine.render import render_call
from engine.slots import POLL_SECONDS, Slots, run_concurrently
from engine.spec import Connector
from engine.store import DuckDBStore, Store, StoreTarget, SyncRun
from engine.sync import NoProgress, Progress, StreamContext, naming_field_list, run_stream
from engine.sync.context import (
    account_facts,
    ordered,
    reference_rows,
    referenced_models,
    skipped,
    unread_references,
)
from engine.sync.fieldlist import FieldList
from engine.sync.mapping_pool import MappingFailed, MappingPool
from engine.sync.pages import read_variables, stream_variables
from engine.sync.writer import Lander
from engine.templates import TemplateFailed
from engine.transport import Session, is_auth_expired

if TYPE_CHECKING:
    from engine.project import ProjectConnection

log = logging.getLogger("crm_engine")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Failures that no other stream of the same connection would escape.
STOPS_EVERY_STREAM = frozenset({"auth_expired", "auth_revoked", "quota_exhausted"})
CANCEL_GRACE_SECONDS = 1.5  # running streams' time to land what they read after a signal


def default_connectors_dir() -> Path:
    if os.environ.get("CRM_ENGINE_CONNECTORS"):
        return Path(os.environ["CRM_ENGINE_CONNECTORS"])
    bundled = PROJECT_ROOT / "connectors"
    return bundled if bundled.is_dir() else Path.cwd() / "connectors"


def token_from_env(connector: str) -> str | None:
    """`CRM_ENGINE_<CONNECTOR>_TOKEN`, then `CRM_ENGINE_TOKEN`, for scripted use: what
    `--token` gives, a method's one secret."""
    return (os.environ.get(f"CRM_ENGINE_{connector.upper()}_TOKEN")
            or os.environ.get("CRM_ENGINE_TOKEN"))


def secrets_from_env(connector: Connector, method: AuthMethod) -> dict[str, str] | None:
    """A method's secrets from `CRM_ENGINE_<CONNECTOR>_<SECRET>`, or None unless all are set."""
    values = {}
    for name, variables in method.env_variables(connector.name).items():
        value = next((os.environ[v] for v in variables if os.environ.get(v)), None)
        if value is None:
            return None
        values[name] = value
    return values


def coerce_config(connector: Connector, values: dict[str, Any]) -> dict[str, Any]:
    """Connector defaults overlaid with `values`; strings from a command line are typed."""
    out = {name: s.default for name, s in connector.config.items()}
    for name, value in values.items():
        if name not in connector.config:
            known = ", ".join(connector.config) or "none"
            raise InputError(f"config.{name}", f"unknown setting for {connector.name} "
                                               f"(known: {known})")
        setting = connector.config[name]
        out[name] = _coerce(setting.type, value, name)
        problem = setting.problem(out[name])
        if problem:
            raise InputError(f"config.{name}", problem)
    missing = [n for n, s in connector.config.items() if s.required and out.get(n) is None]
    if missing:
        raise InputError(f"config.{missing[0]}", f"is required by {connector.name}")
    return out


def _coerce(type_: str, value: Any, name: str) -> Any:
    if not isinstance(value, str) or type_ == "string":
        return value
    try:
        if type_ == "integer":
            return int(value)
        if type_ == "number":
            return float(value)
        if type_ == "boolean":
            return value.lower() in ("1", "true", "yes")
        if type_ == "list":
            return [v.strip() for v in value.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"config.{name}", f"not a valid {type_}: {value!r}") from None
    return value


def api_base_url(connector: Connector, context: dict[str, Any], override: str | None) -> str:
    """The connector's base URL, or an override of it: a URL with a path replaces the whole
    base; a bare origin (scheme, host, port) replaces only the origin and keeps the
    connector's path (`/services/data/v59.0`), so `--base-url http://127.0.0.1:8101` reaches
    a local emulator whatever the API's prefix."""
    if override is None:
        return str(connector.base_url.render(context)).rstrip("/")
    parts = urlsplit(override)
    if not parts.scheme or not parts.netloc:
        raise InputError("base_url", f"not an absolute URL: {override!r}")
    if parts.path.strip("/"):
        return override.rstrip("/")
    # Host settings a connection learns from a token response stand for the origin too.
    credentials = {k: override if v is None else v for k, v in context["credentials"].items()}
    try:
        rendered = str(connector.base_url.render({**context, "credentials": credentials}))
    except TemplateFailed as exc:
        raise InputError("base_url", f"cannot build {connector.name}'s base URL: {exc}") from None
    return override.rstrip("/") + urlsplit(rendered).path.rstrip("/")


class Engine:
    """Runs syncs and actions. Thread-safe; one Engine can serve many connections.

    `max_concurrency` bounds the streams syncing at once, over every connection this Engine
    syncs (None: no bound; a connection's streams all run at once)."""

    def __init__(self, db: str | Path | StoreTarget | None = None, *,
                 connectors_dir: str | Path | None = None, home: str | Path | None = None,
                 clock: Clock | None = None, transport: httpx.BaseTransport | None = None,
                 credentials: ConnectionStore | None = None, budgets: Budgets | None = None,
                 refresh_lock: RefreshLock | None = None, max_concurrency: int | None = None,
                 map_processes: int = 0):
        self.connectors_dir = Path(connectors_dir) if connectors_dir else default_connectors_dir()
        self._db = db
        self._store: Store | None = None
        self.credentials: ConnectionStore = credentials or CredentialStore(home)
        self.clock = clock or Clock()
        self._transport = transport
        self._connectors: dict[str, Connector] = {}
        self._sessions: dict[tuple[str, str], tuple[Session, dict[str, Any], Connection]] = {}
        # Where rate budgets live (in this process unless a distributed worker shares them),
        # and the lock a token refresh holds (the credential store's unless one is given).
        self.budgets = budgets or LocalBudgets(self.clock)
        self._refresh_lock = refresh_lock
        self._field_lists: dict[tuple[str, str, str], FieldList | None] = {}
        self._references: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self._account_facts: dict[tuple[str, str], dict[str, Any]] = {}  # kept for actions
        self._lock = threading.Lock()
        self._loading = threading.Lock()  # connector files being loaded
        self.cancelled = threading.Event()  # set by cancel(): running syncs stop at a page
        self._syncing = 0  # syncs running (the last to end lets the next one clear a cancel)
        self.slots = Slots(max_concurrency, self.cancelled)
        self._lander_of_store: Lander | None = None
        # Processes that map long reads' pages beside this one (engine.sync.mapping_pool).
        self.mapping_pool = MappingPool(map_processes) if map_processes > 0 else None
        for name in secrets.LOGGERS:  # a logger's filter sees only its own records
            secrets.install_log_redaction(logging.getLogger(name))

    @property
    def store(self) -> Store | None:
        """The DuckDB file (or another target's store), opened on first use (a broken spec
        never creates it)."""
        with self._lock:
            if self._store is None and self._db is not None:
                self._store = (DuckDBStore(self._db) if isinstance(self._db, str | Path)
                               else self._db.open())
        return self._store

    def _lander(self) -> Lander:
        """One lander for the store: every stream's batches, many to a transaction."""
        with self._lock:
            if self._lander_of_store is None:
                assert self._store is not None
                self._lander_of_store = Lander(self._store)
            return self._lander_of_store

    # -- specs -----------------------------------------------------------------------------
    def connector_files(self) -> list[Path]:
        return sorted(self.connectors_dir.glob("*.yaml"))

    def connector(self, name: str) -> Connector:
        # Loaded once: hundreds of connections starting at once would each compile it.
        with self._loading:
            if name not in self._connectors:
                path = self.connectors_dir / f"{name}.yaml"
                if not path.exists():
                    known = ", ".join(p.stem for p in self.connector_files()) or "none"
                    raise InputError("connector",
                                     f"unknown connector {name!r} (known: {known})")
                self._connectors[name] = load_connector(path)
            return self._connectors[name]

    def all_connectors(self) -> list[Connector]:
        return [self.connector(p.stem) for p in self.connector_files()]

    # -- connections -----------------------------------------------------------------------
    def resolve_connection(self, connector: Connector, name: str | None = None, *,
                           token: str | None = None, base_url: str | None = None,
                           config: dict[str, Any] | None = None,
                           auth_method: str | None = None,
                           secrets: dict[str, str] | None = None,
                           secrets_from: str | None = None) -> Connection:
        """The connection to use: `secrets` (the auth method's, by name; `secrets_from` says
        where they came from) or a ready `token` given, else the stored connection of that
        name, else secrets in the environment."""
        name = name or connector.name
        stored = self.credentials.load(name)
        if stored is not None and stored.connector != connector.name:
            raise InputError("connection", f"connection {name!r} belongs to {stored.connector}, "
                                           f"not {connector.name}")
        if auth_method:
            self.auth_method(connector, auth_method)  # an unknown name is an error
        token = token or (None if stored or secrets else token_from_env(connector.name))
        if secrets:  # held by the caller (a project file's environment references)
            method = self._secrets_method(connector, auth_method)
            connection = Connection(name, connector.name, method.name,
                                    dict(stored.config) if stored else {},
                                    stored.base_url if stored else None,
                                    method.credentials_from_secrets(secrets),
                                    secrets_from=secrets_from)
        elif token:
            # A ready token or key: the method named, else the first that takes one secret.
            method = self.auth_method(connector, auth_method) if auth_method else next(
                (m for m in connector.auth.values() if not m.authorizes and len(m.secrets) == 1),
                next(iter(connector.auth.values())))
            connection = Connection(name, connector.name, method.name,
                                    dict(stored.config) if stored else {},
                                    stored.base_url if stored else None,
                                    method.credentials_from_token(token))
        elif stored is not None:
            connection = stored
        else:
            connection = self._connection_from_env(connector, name, auth_method)
        if auth_method:
            connection.auth_method = auth_method
        if connection.auth_method:
            self.auth_method(connector, connection.auth_method)
        connection.config = {**connection.config, **(config or {})}
        if base_url:
            connection.base_url = base_url
        return connection

    @staticmethod
    def auth_method(connector: Connector, name: str | None = None) -> AuthMethod:
        """The auth method of that name, or the connector's first."""
        if not name:
            return next(iter(connector.auth.values()))
        if name not in connector.auth:
            raise InputError("auth_method", f"{connector.name} has no auth method {name!r} "
                                            f"(known: {', '.join(connector.auth)})")
        return connector.auth[name]

    def _connection_from_env(self, connector: Connector, name: str,
                             auth_method: str | None) -> Connection:
        """A connection whose secrets are all in the environment: the method named, else the
        first (without an authorization flow) that finds every one of its secrets there."""
        methods = ([self.auth_method(connector, auth_method)] if auth_method else
                   [m for m in connector.auth.values() if not m.authorizes])
        for method in methods:
            values = None if method.authorizes else secrets_from_env(connector, method)
            if values is not None:
                return Connection(name, connector.name, method.name,
                                  credentials=method.credentials_from_secrets(values))
        wanted = "; ".join(
            f"{m.name}: {', '.join(v[0] for v in m.env_variables(connector.name).values())}"
            for m in methods)
        raise InputError("connection", (
            f"no credentials for connection {name!r}: run `crm-engine connect "
            f"{connector.name} --connection {name}`, or pass --token (or set "
            f"CRM_ENGINE_{connector.name.upper()}_TOKEN)"
            + (f", or set the secrets of a method ({wanted})" if wanted else "")))

    def session(self, connector_name: str, connection: str | None = None,
                **options: Any) -> tuple[Session, dict[str, Any], Connection]:
        """An open session for a connection, plus its template context."""
        connector = self.connector(connector_name)
        key = (connector.name, connection or connector.name)
        with self._lock:
            cached = self._sessions.get(key)
            if cached is not None and not any(options.values()):
                return cached
            conn = self.resolve_connection(connector, connection, **options)
            if cached is not None:
                if conn == cached[2]:  # the same again: threads syncing its streams share it
                    return cached
                cached[0].close()
            session, context = self._open(connector, conn)
            self._sessions[key] = (session, context, conn)
        return session, context, conn

    def _open(self, connector: Connector, conn: Connection) -> tuple[Session, dict[str, Any]]:
        config = coerce_config(connector, conn.config)
        creds = conn.credentials
        context = connector.template_context(config, creds.settings)
        base_url = api_base_url(connector, context, conn.base_url)
        method = self.auth_method(connector, conn.auth_method)
        sessions: list[Session] = []  # filled below; a refresh may move the API host

        def refreshed(new: Credentials) -> None:
            context["credentials"] = connector.template_context(config, new.settings)["credentials"]
            if sessions:  # a token response may name a new API host
                sessions[0].base_url = api_base_url(connector, context, conn.base_url)

        # Refreshed tokens persist where the connection is stored (not for a pasted token).
        stored = creds.refresh_token and self.credentials.load(conn.name) is not None
        auth, hint = method.build(AuthRuntime(
            connector=connector.name, connection=conn.name, context=context, credentials=creds,
            clock=self.clock, is_auth_expired=lambda r: is_auth_expired(connector.errors, r),
            store=StoredTokens(self.credentials, conn.name, self._refresh_lock) if stored
            else None,
            on_refresh=refreshed))
        if hint and conn.secrets_from:  # not the command line's --token: the caller's secrets
            hint = f"the credentials were refused; check {conn.secrets_from}"
        headers = {k: str(t.render(context)) for k, t in connector.headers.items()}
        headers.setdefault("User-Agent", "crm-engine")
        budget, groups = None, {}
        if connector.rate_limit is not None:  # one set per connection, shared by its sessions
            budget = self.budgets.budget(connector.name, conn.name, "", connector.rate_limit)
            groups = {name: self.budgets.budget(connector.name, conn.name, name, spec)
                      for name, spec in connector.rate_limit.groups.items()}
        session = Session(connector, base_url=base_url, auth=auth, headers=headers,
                          budget=budget, clock=self.clock, transport=self._transport,
                          auth_hint=hint, groups=groups)
        sessions.append(session)
        return session, context

    def cancel(self) -> None:
        """Stop the syncs running in other threads: each lands what it read, marks its run
        `interrupted` and raises engine.errors.Cancelled (a KeyboardInterrupt). Syncs that
        start while any of them still runs stop too (`sync --all`'s other connections)."""
        self.cancelled.set()

    def close(self) -> None:
        with self._lock:
            for session, _, _ in self._sessions.values():
                session.close()
            self._sessions.clear()
        if self.mapping_pool is not None:
            self.mapping_pool.close()
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connecting -------------------------------------------------------------------------
    def connect(self, connector_name: str, connection: str | None = None, *, client_id: str,
                client_secret: str, config: dict[str, Any] | None = None,
                auth_method: str | None = None, redirect_uri: str = oauth.DEFAULT_REDIRECT_URI,
                open_url: Callable[[str], None], timeout: float = 300.0) -> Connection:
        """Authorize through the vendor's OAuth flow and store the connection."""
        connector = self.connector(connector_name)
        method = self._oauth_method(connector, auth_method)
        config = dict(config or {})
        context = connector.template_context(coerce_config(connector, config), {})
        credentials = oauth.connect(connector, method, context, client_id=client_id,
                                    client_secret=client_secret, clock=self.clock,
                                    redirect_uri=redirect_uri, open_url=open_url,
                                    timeout=timeout)
        return self._store_connection(Connection(connection or connector.name, connector.name,
                                                 method.name, config, credentials=credentials))

    def store_secrets(self, connector_name: str, connection: str | None = None, *,
                      secrets: dict[str, str], config: dict[str, Any] | None = None,
                      auth_method: str | None = None) -> Connection:
        """Store a connection that authenticates with secrets the user holds (an API key, a
        username and password): the method named, else the first without an authorization
        flow. `secrets` gives each of the method's, by name."""
        connector = self.connector(connector_name)
        method = self._secrets_method(connector, auth_method)
        credentials = method.credentials_from_secrets(secrets)
        config = dict(config or {})
        coerce_config(connector, config)
        return self._store_connection(Connection(connection or connector.name, connector.name,
                                                 method.name, config, credentials=credentials))

    def store_token(self, connector_name: str, connection: str | None = None, *, token: str,
                    config: dict[str, Any] | None = None,
                    auth_method: str | None = None) -> Connection:
        """`store_secrets` for a method with one secret (a token, an API key)."""
        method = self._secrets_method(self.connector(connector_name), auth_method)
        return self.store_secrets(connector_name, connection, config=config,
                                  auth_method=method.name,
                                  secrets=method.credentials_from_token(token).secrets)

    def _secrets_method(self, connector: Connector, name: str | None) -> AuthMethod:
        methods = [m for m in connector.auth.values() if not m.authorizes]
        method = self.auth_method(connector, name) if name else (methods[0] if methods else None)
        if method is None or method.authorizes:
            raise InputError("auth_method", f"{connector.name} has no auth method that takes "
                                            f"secrets{f' named {name!r}' if name else ''}: "
                                            f"connect through OAuth instead")
        return method

    def _store_connection(self, conn: Connection) -> Connection:
        with self.credentials.locked(conn.name):
            self.credentials.save(conn)
        with self._lock:  # a cached session would still hold the old credentials
            cached = self._sessions.pop((conn.connector, conn.name), None)
        if cached is not None:
            cached[0].close()
        return conn

    def disconnect(self, connector_name: str, connection: str | None = None) -> bool:
        """Revoke the tokens where the vendor can, then delete the stored credentials.
        Returns whether a revocation was sent."""
        connector = self.connector(connector_name)
        name = connection or connector.name
        stored = self.credentials.load(name)
        if stored is None or stored.connector != connector.name:
            raise InputError("connection", f"no stored {connector.name} connection {name!r}")
        method = connector.auth.get(stored.auth_method or "")
        revoked = False
        if method is not None:
            context = connector.template_context(coerce_config(connector, stored.config),
                                                 stored.credentials.settings)
            with httpx.Client(timeout=30, transport=self._transport) as client:
                revoked = method.disconnect(connector, context, stored.credentials, client)
        with self.credentials.locked(name):
            self.credentials.delete(name)
        with self._lock:
            cached = self._sessions.pop((connector.name, name), None)
        if cached is not None:
            cached[0].close()
        return revoked

    def _oauth_method(self, connector: Connector, name: str | None) -> OAuth2:
        methods = [m for m in connector.auth.values() if isinstance(m, OAuth2)]
        method = self.auth_method(connector, name) if name else (methods[0] if methods else None)
        if not isinstance(method, OAuth2):
            raise InputError("auth_method", f"{connector.name} has no OAuth 2.0 auth method"
                                            f"{f' named {name!r}' if name else ''}")
        return method

    # -- operations ------------------------------------------------------------------------
    def _field_lists_for(self, spec: Connector, session: Session, context: dict[str, Any],
                         conn: Connection) -> Callable[[ModelMapping], FieldList | None]:
        """Custom-field names and option labels for action results, from the stream that reads
        the same mapping, fetched once per connection and kept (syncs re-read them every
        run)."""
        def field_list_for(mapping: ModelMapping) -> FieldList | None:
            stream = next((s for s in spec.streams.values() if s.mapping is mapping
                           and s.fields and (s.fields.name or s.fields.options)), None)
            if stream is None:
                return None
            key = (spec.name, conn.name, stream.name)
            if key not in self._field_lists:
                ctx = StreamContext(session, None, conn.name, context)  # type: ignore[arg-type]
                self._field_lists[key] = naming_field_list(stream, ctx)
            return self._field_lists[key]

        return field_list_for

    def _read_contexts_for(self, spec: Connector, session: Session, context: dict[str, Any],
                           conn: Connection) -> Callable[[ModelMapping], ReadContext]:
        """What action results are read with: custom-field names, the reference rows their
        lookups need (landed by a sync, else read once from the CRM and kept) and the
        account's facts (read once and kept)."""
        field_list_for = self._field_lists_for(spec, session, context, conn)
        ctx = StreamContext(session, self.store, conn.name, context,
                            account=self._account_facts.setdefault((spec.name, conn.name), {}))

        def warn(message: str) -> None:
            log.warning("%s: %s", conn.name, message)

        def reading(mapping: ModelMapping) -> ReadContext:
            references = {}
            for model in {f.lookup.model for f in mapping.fields.values() if f.lookup}:
                key = (spec.name, conn.name, model)
                rows = self._references.get(key)
                if rows is None:
                    rows = reference_rows(spec, model, ctx)
                    if self.store is None or not self.store.has_rows(
                            unified_models()[model], conn.name):
                        self._references[key] = rows  # read from the CRM: keep them
                references[model] = rows
            fields = field_list_for(mapping)
            return ReadContext(custom_names=fields.names if fields else None,
                               custom_options=fields.options if fields else None,
                               references=references,
                               account=account_facts(mapping, ctx, warn, strict=False),
                               phone_region=context["config"].get("phone_region"))

        return reading

    def sync(self, connector: str, connection: str | None = None, *,
             streams: Iterable[str] | None = None, full_refresh: bool = False,
             progress: Progress | None = None, **options: Any) -> list[SyncRun]:
        """Sync streams into the DuckDB file, concurrently (within the Engine's
        `max_concurrency`); returns one run per stream started, reference streams first (failed
        ones too; after an expired or revoked credential or a spent quota, streams not yet
        started are not). Streams with a cursor read what changed since their last run;
        `full_refresh` reads every record of the streams named again (and forgets their
        cursors). `cancel()` stops the syncs running then; a sync started once they have all
        ended runs (Ctrl-C in a notebook does not leave the Engine unable to sync)."""
        with self._lock:
            if self._syncing == 0:
                self.cancelled.clear()
            self._syncing += 1
        try:
            return self._sync(connector, connection, streams=streams, full_refresh=full_refresh,
                              progress=progress, **options)
        finally:
            with self._lock:
                self._syncing -= 1

    def _sync(self, connector: str, connection: str | None, *,
              streams: Iterable[str] | None, full_refresh: bool, progress: Progress | None,
              **options: Any) -> list[SyncRun]:
        if self._db is None:
            raise InputError("db", "sync needs a database: Engine(db='file.duckdb')")
        spec = self.connector(connector)
        names = list(streams) if streams else list(spec.streams)
        for name in names:
            if name not in spec.streams:
                raise InputError("streams", f"{connector} has no stream {name!r} "
                                            f"(streams: {', '.join(spec.streams)})")
        session, context, conn = self.session(connector, connection, **options)
        assert self.store is not None
        store, models = self.store, unified_models()
        ctx = StreamContext(session, store, conn.name, context, self.cancelled, self._lander(),
                            mapping_pool=self.mapping_pool)
        if self.mapping_pool is not None:
            self.mapping_pool.start()  # while the first batches map here
        progress = progress or NoProgress()
        # Reference tables (stages, ...) land before the streams that look into them, and are
        # read with them until a read of theirs succeeded: rows a killed or failed run left
        # may be part of the table (and the run's row would stay `running`, in a lake).
        succeeded = {stream for stream, status in store.query(
            "SELECT stream, arg_max(status, started) FROM sync_runs WHERE connection = ? "
            "GROUP BY stream", [conn.name]) if status == "succeeded"}
        names = ordered(spec.streams, names, lambda stream: stream in succeeded and store.has_rows(
            models[spec.streams[stream].mapping.model.name], conn.name))
        # Only earlier streams: `ordered` put providers first, and a cycle must not deadlock.
        providers = {name: [p for p in names[:i]
                            if spec.streams[p].mapping.model.name
                            in referenced_models(spec.streams[name])]
                     for i, name in enumerate(names)}
        ended = {name: threading.Event() for name in names}
        finished: dict[str, SyncRun] = {}
        stopped = threading.Event()  # a failure no other stream of the connection would escape
        answers = session.answers

        def one(name: str) -> SyncRun | None:
            """One stream, once a slot is free. Its requests spend the connection's budgets,
            which every stream (and action) of the connection shares. Until this sync has had
            an answer, only the first stream sends: refused credentials or a spent quota then
            fail one stream, not every one at once. A stream that looks into reference tables
            waits (without a slot) for their streams in this sync to end."""
            try:
                if name != names[0]:
                    while not (session.wait_for_answer(answers, POLL_SECONDS)
                               or ended[names[0]].is_set()):
                        ctx.check_cancelled()
                for provider in providers[name]:
                    while not ended[provider].wait(POLL_SECONDS):
                        ctx.check_cancelled()
                return run_one(name)
            finally:
                ended[name].set()

        def run_one(name: str) -> SyncRun | None:
            with self.slots.held():
                if stopped.is_set():
                    return None  # it would fail the same way: not started
                run = SyncRun(spec.name, conn.name, name)
                finished[name] = run
                failed = unread_references(spec.streams, name,
                                           [finished[p] for p in providers[name]
                                            if p in finished])
                if failed:
                    # Its rows would land without what they look up there: not a success.
                    skipped(store, run, f"not run: it reads {failed[0]}, whose stream failed "
                                        f"in this sync; a rerun repairs it")
                    return run
                try:
                    run_stream(spec.streams[name], ctx, run, progress,
                               full_refresh=full_refresh)
                except (CrmError, MappingFailed) as exc:  # its run says so
                    log.info("%s: stream %s failed: %s", conn.name, name, exc)
                    if isinstance(exc, CrmError) and exc.kind in STOPS_EVERY_STREAM:
                        stopped.set()
                return run

        runs = run_concurrently([lambda n=name: one(n) for name in names],
                                on_interrupt=self.cancel, grace_seconds=CANCEL_GRACE_SECONDS,
                                name=f"sync-{conn.name}")
        return [run for run in runs if run is not None]

    def check(self, connector: str, connection: str | None = None,
              **options: Any) -> dict[str, Any]:
        """One cheap request (the connector's `check`, else its first stream's first page):
        do the credentials work and does the API answer? Never raises a CrmError: the result
        says what went wrong."""
        spec = self.connector(connector)
        started = time.perf_counter()
        result: dict[str, Any] = {"connector": spec.name, "connection": connection or spec.name}
        try:
            session, context, conn = self.session(connector, connection, **options)
            result["connection"] = conn.name
            first = next(iter(spec.streams.values()))
            # Without a `check`, the first page of the first stream as a first sync asks it.
            call = render_call(spec.check or first.request, session.base_url, read_variables(
                stream_variables(context, first.name), vendor_fields=first.mapping.vendor_fields))
            reply = session.send(call, "check")
            result.update(ok=True, status=reply.status, error=None, kind=None)
        except CrmError as exc:
            result.update(ok=False, status=exc.status, error=str(exc), kind=exc.kind)
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result

    def connections(self, declared: Iterable[ProjectConnection] = ()) -> list[dict[str, Any]]:
        """The connections of a project file (`declared`), then the stored ones it does not
        name: connector, where it comes from, auth method and kind, token expiry (stored
        tokens), and (with a database) the last sync."""
        last: dict[str, tuple[Any, Any]] = {}
        if self._db is not None and (not isinstance(self._db, str | Path)
                                     or Path(self._db).exists()):
            assert self.store is not None
            last = {row[0]: row[1:] for row in self.store.query(
                "SELECT connection, max(started), arg_max(status, started) FROM sync_runs "
                "GROUP BY connection")}
        declared = list(declared)
        secrets_given = {d.name: bool(d.secrets) for d in declared}
        rows = [(d.name, d.connector, d.auth, "project") for d in declared]
        named = {name for name, *_ in rows}
        for name in self.credentials.names():
            conn = self.credentials.load(name)
            if conn is not None and name not in named:
                rows.append((name, conn.connector, conn.auth_method, "stored"))
        out = []
        for name, connector, auth_method, source in rows:
            stored = self.credentials.load(name)
            if stored is not None and stored.connector == connector:
                auth_method = auth_method or stored.auth_method
            else:
                stored = None
            try:
                spec = self.connector(connector)
                method = (self._secrets_method(spec, None) if auth_method is None and
                          source == "project" and secrets_given[name] else
                          self.auth_method(spec, auth_method))
                auth_method, kind = method.name, method.type
            except (InputError, SpecError):
                kind = None  # a connector that is gone or broken: still listed
            expires = stored.credentials.expires_at if stored else None
            synced, status = last.get(name, (None, None))
            out.append({"connection": name, "connector": connector, "source": source,
                        "auth_method": auth_method, "auth_kind": kind,
                        "token_expires": dt.datetime.fromtimestamp(expires, dt.UTC)
                        if expires else None,
                        "last_sync": synced, "last_status": status})
        return out

    def status(self, connector: str | None = None,
               connection: str | None = None) -> list[dict[str, Any]]:
        """Per synced stream: how its next run reads, its cursor, what is in progress, and its
        last run (status, records, requests, when, deletes)."""
        if self._db is None:
            raise InputError("db", "status needs a database: Engine(db='file.duckdb')")
        if connector is not None:
            self.connector(connector)  # an unknown name is an error, not an empty answer
        assert self.store is not None
        out = []
        for row in self.store.stream_status(connector, connection):
            state = row.pop("state") or {}
            progress = ("full refresh" if state.get("resume") else
                        "incremental" if state.get("window") else None)
            out.append({**row,
                        "next_mode": "incremental" if state.get("cursor") and not
                        state.get("resume") else "full_refresh",
                        "cursor": state.get("cursor"), "in_progress": progress,
                        "deletes_cursor": state.get("deletes_cursor"),
                        "last_full_refresh": state.get("last_full_refresh")})
        return out

    def action(self, connector: str, action: str, payload: Any, connection: str | None = None,
               *, log_payload: bool = False, **options: Any) -> dict[str, Any]:
        """Run one action with a unified payload; returns {id, record | records}."""
        spec = self.connector(connector)
        if action not in spec.actions:
            raise InputError("action", f"{connector} has no action {action!r} "
                                       f"(actions: {', '.join(spec.actions)})")
        session, context, conn = self.session(connector, connection, **options)
        started = time.perf_counter()
        status, remote_id, error = "succeeded", None, None
        try:
            result = run_action(session, spec.actions[action], payload, context, spec.actions,
                                self._read_contexts_for(spec, session, context, conn))
            remote_id = result.get("id")
            return result
        except (CrmError, InputError) as exc:
            status, error = "failed", str(exc)
            raise
        finally:
            if self.store is not None:
                self.store.log_action(
                    connector=spec.name, connection=conn.name, action=action, status=status,
                    remote_id=remote_id, duration_ms=(time.perf_counter() - started) * 1000,
                    error=error, payload=secrets.redact_deep(payload) if log_payload else None)


__all__ = ["CrmError", "Engine", "InputError", "SpecError"]
