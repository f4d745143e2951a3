"""A fault-injecting HTTP/1.1 reverse proxy, for testing how the engine survives a bad network.

    plan = FaultPlan(rate=0.4)                      # 40% of responses go wrong, every kind
    with FaultProxy(emulator_url, plan, seed=7) as proxy:
        engine.sync("hubspot", base_url=proxy.url, token=...)
        proxy.counts        # Counter: which faults were injected, how often
        proxy.upstream      # how many requests reached the emulator

It sits on 127.0.0.1 between the engine and an emulator. For each request it draws, from a
seeded random.Random, whether to fault the response and how: the faults are the ones real
networks, load balancers and proxies produce (see `Fault`). A clean response is the
upstream's, byte for byte, except that absolute URLs naming the upstream are rewritten to
name the proxy, so that paging links and Location headers keep the engine on the proxy.

Which kind of fault comes next is dealt from a shuffled deck (reshuffled when spent), so any
`len(plan.kinds)` consecutive faults cover every kind once: short runs still see them all.

Standard library only; the upstream leg is a fresh http.client connection per request.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from sandbox.kit.core import TrackingServer


class Fault(StrEnum):
    """One way a response can go wrong. The comment says whether the upstream saw the request."""

    RESET_BEFORE = "reset_before"  # not forwarded: the connection is reset on arrival
    RESET_AFTER = "reset_after"  # forwarded (the upstream acted), then reset without an answer
    TRUNCATED = "truncated"  # forwarded; the real headers and half the body, then closed
    HANG = "hang"  # not forwarded: no answer until long after the client's timeout
    HTTP_500 = "http_500"  # not forwarded: a small HTML error page from "the gateway"
    HTTP_502 = "http_502"
    HTTP_503 = "http_503"
    HTTP_504 = "http_504"
    RATE_LIMITED = "429_retry_after"  # not forwarded: 429 with Retry-After (0 or 1 seconds)
    RATE_LIMITED_BARE = "429_no_retry_after"  # not forwarded: 429 without Retry-After
    MALFORMED_JSON = "malformed_json"  # forwarded; 200 with the real body cut in half
    EMPTY_200 = "empty_200"  # forwarded; 200 with an empty body
    HTML_200 = "html_200"  # forwarded; 200 with a text/html "proxy error" page


ALL_FAULTS: tuple[Fault, ...] = tuple(Fault)
# Faults that leave a create's outcome unknown to the client: the upstream received the
# request, and what came back says nothing usable about what it did.
AMBIGUOUS_FAULTS: tuple[Fault, ...] = (
    Fault.RESET_AFTER, Fault.MALFORMED_JSON, Fault.EMPTY_200, Fault.HTML_200)

_FORWARDED = frozenset({Fault.RESET_AFTER, Fault.TRUNCATED, Fault.MALFORMED_JSON,
                        Fault.EMPTY_200, Fault.HTML_200})
_ERROR_STATUSES = {Fault.HTTP_500: 500, Fault.HTTP_502: 502, Fault.HTTP_503: 503,
                   Fault.HTTP_504: 504, Fault.RATE_LIMITED: 429, Fault.RATE_LIMITED_BARE: 429}
# Per-hop headers (RFC 9110 7.6.1) and those the proxy recomputes itself.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                         "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
                         "host", "content-length", "accept-encoding"})
_HTML_PAGE = b"<html><head><title>%d %s</title></head><body><h1>%d %s</h1>" \
             b"<p>upstream proxy error</p></body></html>"


@dataclass(frozen=True)
class FaultPlan:
    """What to inject: the share of eligible responses to fault, and which kinds.

    `methods` and `path_contains` limit faults to some requests (e.g. only the POSTs of
    creates, leaving the GETs around them clean). `hang_seconds` must exceed the client's
    timeout; a hang ends early when the proxy closes. `retry_after` is what a 429 with
    Retry-After may say."""

    rate: float
    kinds: tuple[Fault, ...] = ALL_FAULTS
    methods: frozenset[str] | None = None
    path_contains: str | None = None
    hang_seconds: float = 5.0
    retry_after: tuple[int, ...] = (0, 1)

    def eligible(self, method: str, path: str) -> bool:
        return ((self.methods is None or method in self.methods)
                and (self.path_contains is None or self.path_contains in path))


@dataclass(frozen=True)
class Exchange:
    """One request through the proxy, as a test reads it back afterwards."""

    method: str
    path: str
    fault: Fault | None
    forwarded: bool  # whether the request reached the upstream
    status: int | None  # what the upstream answered, when it was asked


@dataclass
class _Upstream:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class _Dealer:
    """Seeded draws: whether to fault, then the kind from a shuffled deck of `kinds`."""

    rng: random.Random
    kinds: tuple[Fault, ...]
    deck: list[Fault] = field(default_factory=list)

    def draw(self, rate: float) -> Fault | None:
        if self.rng.random() >= rate:
            return None
        if not self.deck:
            self.deck = list(self.kinds)
            self.rng.shuffle(self.deck)
        return self.deck.pop()


class FaultProxy:
    """A reverse proxy to `upstream` (an http://host:port base URL) that injects `plan`'s
    faults, deterministically for a given `seed` and request sequence. Use as a context
    manager, or call close()."""

    def __init__(self, upstream: str, plan: FaultPlan, *, seed: int | str = 0,
                 upstream_timeout: float = 30.0):
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the fault proxy only fronts loopback http servers, not {upstream}")
        self.plan = plan
        self._upstream_address = (parts.hostname, parts.port or 80)
        self._upstream_origin = f"http://{parts.netloc}"
        self._upstream_timeout = upstream_timeout
        self._dealer = _Dealer(random.Random(seed), plan.kinds)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.exchanges: list[Exchange] = []
        self._server = _ProxyServer(("127.0.0.1", 0), self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="fault-proxy", daemon=True)
        self._thread.start()

    # -- what happened ----------------------------------------------------------------------
    @property
    def counts(self) -> Counter[Fault]:
        """Faults injected so far, per kind."""
        with self._lock:
            return Counter(e.fault for e in self.exchanges if e.fault is not None)

    @property
    def requests(self) -> int:
        """Requests that reached the proxy."""
        with self._lock:
            return len(self.exchanges)

    @property
    def upstream(self) -> int:
        """Requests forwarded to the upstream (faulted ones included, when they forward)."""
        with self._lock:
            return sum(e.forwarded for e in self.exchanges)

    @property
    def faulted(self) -> int:
        with self._lock:
            return sum(e.fault is not None for e in self.exchanges)

    def exchanges_since(self, start: int) -> list[Exchange]:
        with self._lock:
            return self.exchanges[start:]

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        self._closing.set()  # wakes hanging handlers
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by the handler ----------------------------------------------------------------
    def _draw(self, method: str, path: str) -> Fault | None:
        with self._lock:
            if not self.plan.eligible(method, path):
                return None
            return self._dealer.draw(self.plan.rate)

    def _retry_after(self) -> int:
        with self._lock:
            return self._dealer.rng.choice(self.plan.retry_after)

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def _forward(self, method: str, path: str, headers: Iterable[tuple[str, str]],
                 body: bytes) -> _Upstream:
        connection = http.client.HTTPConnection(*self._upstream_address,
                                                timeout=self._upstream_timeout)
        try:
            connection.request(method, path, body=body or None, headers=dict(
                (k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP))
            response = connection.getresponse()
            data = response.read()
            upstream_headers = [(k, self._rewrite(v)) for k, v in response.getheaders()
                                if k.lower() not in _HOP_BY_HOP]
            return _Upstream(response.status, response.reason, upstream_headers,
                             self._rewrite(data))
        finally:
            connection.close()

    def _rewrite(self, value: Any) -> Any:
        """Absolute links to the upstream, made to point at the proxy instead."""
        if isinstance(value, bytes):
            return value.replace(self._upstream_origin.encode(), self.url.encode())
        return value.replace(self._upstream_origin, self.url)


class _Handler(BaseHTTPRequestHandler):
    """One client connection; keep-alive, like the engine's HTTP client expects."""

    protocol_version = "HTTP/1.1"
    server: _ProxyServer
    timeout = 30  # an idle keep-alive connection ends its thread eventually

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the exchanges list is the log

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.untrack(self.connection)

    def do_any(self) -> None:
        proxy = self.server.proxy
        method = self.command
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = proxy._draw(method, self.path)
        upstream: _Upstream | None = None
        if fault is None or fault in _FORWARDED:
            upstream = proxy._forward(method, self.path, self.headers.items(), body)
        proxy._record(Exchange(method, self.path, fault, upstream is not None,
                               upstream.status if upstream else None))
        if fault is None:
            assert upstream is not None
            self._respond(upstream.status, upstream.reason, upstream.headers, upstream.body)
        else:
            self._inject(fault, upstream)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_any

    def _inject(self, fault: Fault, upstream: _Upstream | None) -> None:
        proxy = self.server.proxy
        if fault is Fault.HANG:
            proxy._closing.wait(proxy.plan.hang_seconds)
            self._reset()
        elif fault in (Fault.RESET_BEFORE, Fault.RESET_AFTER):
            self._reset()
        elif fault in _ERROR_STATUSES:
            status = _ERROR_STATUSES[fault]
            reason = http.client.responses[status]
            headers = [("Content-Type", "text/html")]
            if fault is Fault.RATE_LIMITED:
                headers.append(("Retry-After", str(proxy._retry_after())))
            page = _HTML_PAGE % (status, reason.encode(), status, reason.encode())
            self._respond(status, reason, headers, page)
        else:
            assert upstream is not None
            self._corrupt(fault, upstream)

    def _corrupt(self, fault: Fault, upstream: _Upstream) -> None:
        """The upstream's answer, spoilt in transit."""
        json_type = [("Content-Type", "application/json")]
        if fault is Fault.TRUNCATED:
            body = upstream.body or b'{"results": []}'
            self._respond(upstream.status, upstream.reason, upstream.headers,
                          body[: len(body) // 2], declared_length=len(body))
            self._close()
        elif fault is Fault.MALFORMED_JSON:
            cut = upstream.body[: len(upstream.body) // 2] if len(upstream.body) > 2 else b""
            self._respond(200, "OK", json_type, cut or b'{"results": [')
        elif fault is Fault.EMPTY_200:
            self._respond(200, "OK", json_type, b"")
        elif fault is Fault.HTML_200:
            self._respond(200, "OK", [("Content-Type", "text/html; charset=utf-8")],
                          _HTML_PAGE % (502, b"Bad Gateway", 502, b"Bad Gateway"))

    def _respond(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes,
                 *, declared_length: int | None = None) -> None:
        length = len(body) if declared_length is None else declared_length
        head = [f"HTTP/1.1 {status} {reason}"]
        head += [f"{name}: {value}" for name, value in headers]
        head.append(f"Content-Length: {length}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += body
        with contextlib.suppress(OSError):
            self.wfile.write(data)
            self.wfile.flush()

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), as a crashing peer would."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        self._close()

    def _close(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()


class _ProxyServer(TrackingServer):
    def __init__(self, address: tuple[str, int], proxy: FaultProxy):
        self.proxy = proxy
        super().__init__(address, _Handler)
