"""Helpers for tests: spec files in a temp dir, and a vendor-neutral test API server."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sandbox.kit import App, Request, Response, RunningSandbox, serve

TEST_MAPPING = """
models:
  contact:
    custom: "@"
    fields:
      id: {path: id, write: false}
      first_name: name
      email: email
      updated_at: {path: updated, write: false}
"""


def write_specs(directory: Path, connector: str, mapping: str = TEST_MAPPING,
                name: str = "acme") -> Path:
    """Write connectors/<name>.yaml and mappings/<name>.yaml; returns the connectors dir."""
    (directory / "connectors").mkdir(parents=True, exist_ok=True)
    (directory / "mappings").mkdir(parents=True, exist_ok=True)
    (directory / "connectors" / f"{name}.yaml").write_text(textwrap.dedent(connector).lstrip())
    (directory / "mappings" / f"{name}.yaml").write_text(textwrap.dedent(mapping).lstrip())
    return directory / "connectors"


def connector_yaml(streams: str, *, extra: str = "") -> str:
    """A minimal token-auth connector around the given `streams:` block."""
    return (
        "name: acme\ntitle: Acme test API\nbase_url: http://unused.invalid\n"
        "auth:\n  token:\n    type: bearer\n"
        + textwrap.dedent(extra)
        + "streams:\n"
        + textwrap.indent(textwrap.dedent(streams).strip() + "\n", "  ")
    )


def items(n: int) -> list[dict[str, Any]]:
    return [{"id": f"{i:05d}", "name": f"Item {i}", "email": f"item{i}@example.com",
             "updated": "2026-01-01T00:00:00Z", "colour": "blue"} for i in range(n)]


def serving(owner: Any) -> Iterator[Any]:
    """Serve `owner.app` for a fixture: sets `owner.url`, yields the owner, then stops."""
    running = serve(owner.app)
    owner.url = running.url
    yield owner
    running.close()


def cursor_page(records: list[dict[str, Any]], request: Request, size: int = 10) -> Response:
    """One page of `records` at the request's `after` cursor: {"items", "next"?}."""
    start = int(request.arg("after") or 0)
    body: dict[str, Any] = {"items": records[start:start + size]}
    if start + size < len(records):
        body["next"] = str(start + size)
    return Response(200, body)


class ItemsServer:
    """One collection served in every pagination style the engine supports.

    GET  /cursor ?after=&limit=     {"items": [...], "next": {"after": ".."}} (absent at end)
    GET  /next_url, /next_url/<pos>  {"records": [...], "done": bool, "next": "/next_url/<pos>"}
    GET  /offset ?start=&limit=     {"data": [...], "more": bool, "next_start": n}
    GET  /page ?page=&per_page= | ?page_token=   {"data": [...], "info": {"more", "token"}}
         (page numbers stop at `page_cap` records with a 400, like capped APIs; empty -> 204)
    POST /search {"after": "..", "limit": n}  {"results": [...], "paging": {"next": {"after"}}}
    """

    def __init__(self, n: int, page_cap: int = 1_000_000):
        self.records = items(n)
        self.page_cap = page_cap
        self.app = App()
        self.seen_params: list[dict[str, Any]] = []
        self.app.add_route("GET", r"/cursor", self.cursor)
        self.app.add_route("GET", r"/next_url(?:/(?P<pos>\d+))?", self.next_url)
        self.app.add_route("GET", r"/offset", self.offset)
        self.app.add_route("GET", r"/page", self.page)
        self.app.add_route("POST", r"/search", self.search)
        self.app.add_route("GET", r"/fields", lambda request: Response(200, {"data": [
            {"key": "colour", "name": "Favourite colour"}, {"key": "name", "name": "Name"}]}))
        self.running: RunningSandbox | None = None

    def __enter__(self) -> ItemsServer:
        self.running = serve(self.app)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.running is not None
        self.running.close()

    @property
    def url(self) -> str:
        assert self.running is not None
        return self.running.url

    def _log(self, request: Request) -> None:
        self.seen_params.append({k: v[0] for k, v in request.query.items()})

    def cursor(self, request: Request) -> Response:
        self._log(request)
        start = int(request.arg("after") or 0)
        limit = int(request.arg("limit") or 10)
        chunk = self.records[start:start + limit]
        body: dict[str, Any] = {"items": chunk}
        if start + limit < len(self.records):
            body["next"] = {"after": str(start + limit)}
        return Response(200, body)

    def next_url(self, request: Request, pos: str | None = None) -> Response:
        self._log(request)
        start = int(pos or 0)
        chunk = self.records[start:start + 7]
        done = start + 7 >= len(self.records)
        body: dict[str, Any] = {"records": chunk, "done": done}
        if not done:
            body["next"] = f"/next_url/{start + 7}"
        return Response(200, body)

    def offset(self, request: Request) -> Response:
        self._log(request)
        start, limit = int(request.arg("start") or 0), int(request.arg("limit") or 10)
        chunk = self.records[start:start + limit]
        more = start + limit < len(self.records)
        body: dict[str, Any] = {"data": chunk, "more": more}
        if more:
            body["next_start"] = start + limit
        return Response(200, body)

    def page(self, request: Request) -> Response:
        self._log(request)
        size = int(request.arg("per_page") or 10)
        token, page = request.arg("page_token"), request.arg("page")
        if token and page:
            return Response(400, {"code": "AMBIGUITY"})
        if token:
            start = int(token.removeprefix("t"))
        else:
            start = (int(page or 1) - 1) * size
            if start + size > self.page_cap:
                return Response(400, {"code": "PAGE_CAP", "limit": self.page_cap})
        chunk = self.records[start:start + size]
        if not chunk:
            return Response(204)
        more = start + size < len(self.records)
        info: dict[str, Any] = {"more": more}
        if more:
            info["token"] = f"t{start + size}"
        return Response(200, {"data": chunk, "info": info})

    def search(self, request: Request) -> Response:
        body = request.json()
        self.seen_params.append(body)
        start, limit = int(body.get("after") or 0), int(body.get("limit") or 10)
        chunk = self.records[start:start + limit]
        out: dict[str, Any] = {"results": chunk, "total": len(self.records)}
        if start + limit < len(self.records):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return Response(200, out)
