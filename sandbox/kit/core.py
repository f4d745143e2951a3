"""Generic HTTP framework shared by the vendor emulators.

Vendor packages (``sandbox/hubspot/`` and the others) register routes on an
:class:`App` and decide every status, header and body; nothing here knows any vendor.

Pieces: :class:`Request`/:class:`Response`, :class:`App` (routing, fault injection, request
counters, a controllable :class:`Clock`), :func:`serve` -> :class:`RunningSandbox` (a
keep-alive HTTP/1.1 server on a background thread), :class:`SlidingWindowLimiter` and
:class:`DailyCounter` for vendor rate limits (limits.py), :class:`OAuthProvider` for OAuth 2.0
state (oauth.py) and :class:`LruCache` for rendered responses.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import random
import re
import socket
import sys
import threading
import time
import traceback
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_plus

# The rate-limit and OAuth helpers live in their own modules and are re-exported here, so an
# emulator takes everything generic from sandbox.kit.core.
from sandbox.kit.limits import DailyCounter, SlidingWindowLimiter
from sandbox.kit.oauth import AccessToken, OAuthError, OAuthProvider, TokenCheck, TokenGrant

__all__ = [
    "AccessToken",
    "App",
    "Clock",
    "DailyCounter",
    "Drop",
    "Failure",
    "FaultInjector",
    "Headers",
    "LruCache",
    "OAuthError",
    "OAuthProvider",
    "Request",
    "Response",
    "RunningSandbox",
    "SlidingWindowLimiter",
    "Stats",
    "TokenCheck",
    "TokenGrant",
    "decode_json",
    "encode_json",
    "parse_query",
    "serve",
]

try:
    import orjson

    def encode_json(value: Any) -> bytes:
        return orjson.dumps(value)

    def decode_json(data: bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - orjson is installed in the project venv

    def encode_json(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def decode_json(data: bytes) -> Any:
        return json.loads(data)


# --------------------------------------------------------------------------------------------
# Clock
# --------------------------------------------------------------------------------------------


class Clock:
    """Wall clock plus an offset, so tests can jump ahead (token expiry, rate windows)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


# --------------------------------------------------------------------------------------------
# Request / Response
# --------------------------------------------------------------------------------------------


class Request:
    """One parsed HTTP request. ``headers`` is case-insensitive (``headers.get("x-a")``)."""

    __slots__ = ("body", "headers", "method", "path", "query")

    def __init__(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: Any,
        body: bytes,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """Decoded JSON body (None when empty); raises ValueError on malformed JSON."""
        return decode_json(self.body) if self.body else None

    def form(self) -> dict[str, str]:
        """Form-encoded body, first value per field."""
        fields = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {name: values[0] for name, values in fields.items()}


class Response:
    """A reply. ``body``: dict/list (encoded as JSON), bytes (sent as is, JSON content type
    unless ``content_type`` says otherwise), str (text/plain) or None (no body)."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int = 200,
        body: bytes | dict | list | str | None = None,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}
        self.content_type = content_type


Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str
    group: str  # fault injection targets groups ("api" by default, "oauth" for token routes)


# --------------------------------------------------------------------------------------------
# Fault injection and counters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    status: int
    body: Any = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Drop:
    after_handling: bool  # True: the handler runs (the write happens), then the reply is lost


class FaultInjector:
    """Random 5xx (seeded, so a run is reproducible), fixed latency and queued one-shot faults.

    Faults apply only to routes whose group is in ``groups`` (API routes by default)."""

    def __init__(
        self,
        *,
        error_rate: float = 0.0,
        error_statuses: Iterable[int] = (500, 502, 503),
        latency_ms: float = 0,
        seed: int = 0,
        groups: Iterable[str] = ("api",),
    ) -> None:
        self.error_rate = error_rate
        self.error_statuses = list(error_statuses)
        self.latency_ms = latency_ms
        self.groups = set(groups)
        self._rng = random.Random(seed)
        self._queued: deque[Failure | Drop] = deque()
        self._lock = threading.Lock()

    def fail_next(
        self,
        n: int,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        with self._lock:
            self._queued.extend([Failure(status, body, headers)] * n)

    def drop_next(self, n: int, *, after_handling: bool = False) -> None:
        with self._lock:
            self._queued.extend([Drop(after_handling)] * n)

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()

    def draw(self, group: str) -> Failure | Drop | None:
        """The fault for the next request of ``group``, if any (sleeps for latency first)."""
        if group not in self.groups:
            return None
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        with self._lock:
            if self._queued:
                return self._queued.popleft()
            if self.error_rate and self._rng.random() < self.error_rate:
                return Failure(self._rng.choice(self.error_statuses))
        return None


class Stats:
    """Requests received, in total and per route name (faulted requests included)."""

    NOT_FOUND = "<not found>"

    def __init__(self) -> None:
        self.requests_served = 0
        self.per_route: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, route_name: str) -> None:
        with self._lock:
            self.requests_served += 1
            self.per_route[route_name] += 1

    def count(self, route_name: str) -> int:
        return self.per_route[route_name]

    def reset(self) -> None:
        with self._lock:
            self.requests_served = 0
            self.per_route.clear()


# --------------------------------------------------------------------------------------------
# App
# --------------------------------------------------------------------------------------------


# Route groups outside the API under test: never counted in Stats nor given faults or latency.
UNCOUNTED_GROUPS = frozenset({"control"})


def _plain_not_found(request: Request) -> Response:
    return Response(404, {"message": f"no route for {request.method} {request.path}"})


def _plain_error(status: int) -> Response:
    return Response(status, {"message": f"HTTP {status}"})


class App:
    """Routes plus the cross-cutting behaviour every emulator shares.

    Vendors set ``not_found`` (Request -> Response) and ``error_response`` (status -> Response)
    so 404s, injected faults and crashes carry the vendor's error shape."""

    def __init__(
        self,
        *,
        error_rate: float = 0.0,
        error_statuses: Iterable[int] = (500, 502, 503),
        latency_ms: float = 0,
        seed: int = 0,
        json_content_type: str = "application/json",
    ) -> None:
        self.routes: list[Route] = []
        self.clock = Clock()
        self.stats = Stats()
        self.faults = FaultInjector(
            error_rate=error_rate, error_statuses=error_statuses, latency_ms=latency_ms, seed=seed
        )
        self.json_content_type = json_content_type
        self.not_found: Callable[[Request], Response] = _plain_not_found
        self.error_response: Callable[[int], Response] = _plain_error

    # -- routing ---------------------------------------------------------------------------

    def route(
        self, method: str, pattern: str, *, name: str | None = None, group: str = "api"
    ) -> Callable[[Handler], Handler]:
        """Decorator: the handler gets the Request plus the pattern's named groups."""

        def register(handler: Handler) -> Handler:
            self.add_route(method, pattern, handler, name=name, group=group)
            return handler

        return register

    def add_route(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        name: str | None = None,
        group: str = "api",
    ) -> None:
        route_name = name or f"{method} {pattern}"
        self.routes.append(Route(method.upper(), re.compile(pattern), handler, route_name, group))

    def _match(self, request: Request) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            if route.method != request.method:
                continue
            match = route.pattern.fullmatch(request.path)
            if match:
                return route, match.groupdict()
        return None, {}

    # -- test hooks ------------------------------------------------------------------------

    def advance_time(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def fail_next(
        self, n: int, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """The next ``n`` API requests get ``status`` (body defaults to the vendor's shape)."""
        self.faults.fail_next(n, status, body, headers)

    def drop_next(self, n: int, *, after_handling: bool = False) -> None:
        """The next ``n`` API requests get no reply: the connection is closed."""
        self.faults.drop_next(n, after_handling=after_handling)

    @property
    def requests_served(self) -> int:
        return self.stats.requests_served

    # -- dispatch --------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response | None:
        """The reply to send, or None to close the connection without one."""
        route, params = self._match(request)
        if route is None:
            self.stats.record(Stats.NOT_FOUND)
            return self.not_found(request)
        if route.group in UNCOUNTED_GROUPS:  # test-control routes (control.py)
            return self._call(route, request, params)
        self.stats.record(route.name)
        fault = self.faults.draw(route.group)
        if isinstance(fault, Drop):
            if fault.after_handling:
                self._call(route, request, params)
            return None
        if isinstance(fault, Failure):
            return self._failure_response(fault)
        return self._call(route, request, params)

    def _call(self, route: Route, request: Request, params: dict[str, str]) -> Response:
        try:
            return route.handler(request, **params)
        except Exception:  # a handler bug must surface as a 500, not a hung client
            traceback.print_exc(file=sys.stderr)
            return self.error_response(500)

    def _failure_response(self, fault: Failure) -> Response:
        if fault.body is None:
            response = self.error_response(fault.status)
        else:
            response = Response(fault.status, fault.body)
        if fault.headers:
            response.headers.update(fault.headers)
        return response

    # -- encoding --------------------------------------------------------------------------

    def render(self, response: Response, *, close: bool, head_only: bool = False) -> bytes:
        """Status line, headers and body as one buffer (one send per reply)."""
        body = response.body
        content_type = response.content_type
        if body is None:
            payload = b""
        elif isinstance(body, bytes):
            payload = body
            content_type = content_type or self.json_content_type
        elif isinstance(body, str):
            payload = body.encode()
            content_type = content_type or "text/plain; charset=utf-8"
        else:
            payload = encode_json(body)
            content_type = content_type or self.json_content_type
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {response.status} {reason}", f"Date: {_http_date()}"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(payload)}")
        for name, value in response.headers.items():
            lines.append(f"{name}: {value}")
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + payload


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    # Formatting the Date header costs more than the rest of the headers; once per second.
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, email.utils.formatdate(second, usegmt=True))
    return _date_cache[1]


# --------------------------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------------------------


class Headers(dict):
    """Request headers: keys are stored lower-cased and looked up case-insensitively."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


def parse_query(query: str) -> dict[str, list[str]]:
    """``a=1&a=2&b`` -> {"a": ["1", "2"], "b": [""]} (a lean parse_qs)."""
    params: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params.setdefault(unquote_plus(name), []).append(unquote_plus(value))
    return params


class BadRequest(Exception):
    """The bytes on the wire are not an HTTP/1.x request we can serve."""


MAX_LINE = 65536
MAX_HEADERS = 100
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _RequestHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1. Parses requests itself: the stdlib path goes through email.parser
    and costs several times more per request, which shows at 1,000 pages per sync."""

    protocol_version = "HTTP/1.1"  # keep-alive: the engine reuses one connection
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no per-request logging on stderr

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def handle_one_request(self) -> None:
        try:
            request = self._read_request()
        except BadRequest:
            self.close_connection = True
            self._send(_BAD_REQUEST)
            return
        except OSError:
            request = None
        if request is None:  # the client closed the connection
            self.close_connection = True
            return
        app = self.server.app
        response = app.dispatch(request)
        if response is None:  # injected drop: no reply at all
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        head_only = request.method == "HEAD"
        self._send(app.render(response, close=self.close_connection, head_only=head_only))

    def _send(self, payload: bytes) -> None:
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def _read_line(self) -> bytes:
        line = self.rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise BadRequest("line too long")
        return line

    def _read_request(self) -> Request | None:
        line = self._read_line()
        while line in (b"\r\n", b"\n"):  # tolerate blank lines between requests
            line = self._read_line()
        if not line:
            return None
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest("malformed request line")
        method, target, version = parts
        headers = Headers()
        for _ in range(MAX_HEADERS):
            line = self._read_line()
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise BadRequest("malformed header")
            headers[name.strip().lower()] = value.strip()
        else:
            raise BadRequest("too many headers")
        connection = headers.get("connection", "").lower()
        self.close_connection = "close" in connection or (
            version == "HTTP/1.0" and "keep-alive" not in connection
        )
        body = self._read_body(headers)
        path, _, query = target.partition("?")
        return Request(method, unquote(path), parse_query(query.partition("#")[0]), headers, body)

    def _read_body(self, headers: Headers) -> bytes:
        length = headers.get("content-length")
        if length:
            try:
                return self.rfile.read(int(length))
            except ValueError:
                raise BadRequest("bad Content-Length") from None
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                try:
                    size = int(self._read_line().split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequest("bad chunk size") from None
                if size == 0:
                    while self._read_line() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self._read_line()
        return b""


class TrackingServer(ThreadingHTTPServer):
    """A threaded HTTP server that can close its open keep-alive connections when it stops
    (its handlers call `track` and `untrack`)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        # Idle keep-alive connections would otherwise keep their threads blocked in recv.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Server(TrackingServer):
    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        super().__init__(address, _RequestHandler)


class RunningSandbox:
    """A served App. ``emulator`` is the vendor object that built it (for its test hooks)."""

    def __init__(self, server: _Server, thread: threading.Thread, emulator: Any = None) -> None:
        self._server = server
        self._thread = thread
        self.app = server.app
        self.emulator = emulator
        self.host, self.port = server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve(
    app: App, host: str = "127.0.0.1", port: int = 0, *, emulator: Any = None
) -> RunningSandbox:
    """Serve ``app`` on a background thread; ``port=0`` picks a free port."""
    server = _Server((host, port), app)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},  # bounds how long close() waits
        name=f"sandbox-{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return RunningSandbox(server, thread, emulator)


# --------------------------------------------------------------------------------------------
# Caching helper
# --------------------------------------------------------------------------------------------


class LruCache:
    """A small thread-safe least-recently-used map (rendered pages, search results)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
