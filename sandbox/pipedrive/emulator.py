"""Pipedrive API v1 + v2 emulator, written from /work/shared/vendor-api/CONTRACTS.md section 3.

    sandbox = PipedriveSandbox(contacts=1000)
    with sandbox.start() as running:          # http://127.0.0.1:<port>
        httpx.get(running.url + "/api/v2/persons",
                  headers={"x-api-token": "sandbox-api-token"})

One store serves both versions: v1 (``/v1/...`` and ``/api/v1/...``: offset pages, objects for
owner/org, ``YYYY-MM-DD HH:MM:SS`` times, custom fields at the root) and v2 (``/api/v2/...``:
cursor pages, plain ids, RFC 3339 times, ``custom_fields{}``). OAuth lives on the same host
(oauth.py). Records: store.py; seed data: seed.py; v1 shapes: shapes.py; list queries: lists.py;
search: search.py; write validation: writes.py; limits: limits.py; errors: errors.py.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from sandbox.kit.control import TruthRow
from sandbox.kit.core import App, OAuthProvider, Request, Response, encode_json
from sandbox.kit.emulator import Emulator
from sandbox.pipedrive.cache import ByteCache
from sandbox.pipedrive.errors import (
    PipedriveError,
    bad_request,
    daily_limit_exceeded,
    for_status,
    gone,
    not_found,
    rate_limited,
    unauthorized,
)
from sandbox.pipedrive.limits import FixedWindowLimiter, TokenBudget, cost
from sandbox.pipedrive.lists import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    cursor_slice,
    encode_cursor,
    include_fields,
    key_id,
    offset_slice,
    ordered_keys,
    parse_v1_page,
    parse_v2_page,
    v1_pagination,
)
from sandbox.pipedrive.oauth import register_oauth_routes
from sandbox.pipedrive.records import new_record
from sandbox.pipedrive.schema import (
    ACTIVITY_TYPES,
    CC_DOMAIN,
    COMPANY_DOMAIN,
    COMPANY_ID,
    FIELD_ROUTES,
    GRANTED_SCOPES,
    KINDS,
    ME,
    PIPELINES,
    SINGULAR,
    STAGES,
    USERS,
    field_definitions,
    v1_activity_type,
    v1_pipeline,
    v1_stage,
    v1_user,
    v2_pipeline,
    v2_stage,
)
from sandbox.pipedrive.search import parse_search, run_search
from sandbox.pipedrive.seed import populate
from sandbox.pipedrive.shapes import Shapes
from sandbox.pipedrive.store import Record, Store
from sandbox.pipedrive.times import parse_rfc3339, parse_v1_time, rfc3339, v1_time
from sandbox.pipedrive.writes import changes_for

V1 = r"/(?:api/)?v1"  # CONTRACTS 3.2: v1 answers on /v1 and /api/v1
V2 = r"/api/v2"  # CONTRACTS 3.2: v2 only under /api/v2
V1_KINDS = "|".join(KINDS)
V2_KINDS = "persons|organizations|deals|activities"  # no v2 notes (CONTRACTS 3.4)
RECORD_ID = r"(?P<record_id>[^/]+)"
PAGE_CACHE_BYTES = 256 * 1024 * 1024
RECENT_ITEMS = {
    "person": "persons",
    "organization": "organizations",
    "deal": "deals",
    "activity": "activities",
    "note": "notes",
}
CREATE_EXTRAS = {  # additional_data of v1 create responses (recorded fixtures)
    "persons": {"didMerge": False},
    "organizations": {"didMerge": False},
    "activities": {"updates_story_id": None},
}

Handler = Callable[..., Response]


class PipedriveSandbox(Emulator):
    """A Pipedrive company in memory, served over HTTP by :meth:`start`.

    Its static tokens are personal API tokens (``api_tokens``), not OAuth bearer tokens."""

    name = "pipedrive"
    # Limits high enough for a fast demo sync that still send real x-ratelimit-* and
    # x-daily-ratelimit-token-* headers for the engine to follow.
    DEMO_OPTIONS: ClassVar[dict[str, Any]] = {
        "rate_limit": (10_000, 2.0),
        "daily_token_budget": 50_000_000,
        "activities": 600,
        "notes": 200,
    }
    TOKEN_SCOPES = tuple(GRANTED_SCOPES.split(","))
    CONTROL_STREAMS: ClassVar[dict[str, str]] = {
        "contacts": "persons",
        "companies": "organizations",
        "deals": "deals",
    }

    def __init__(
        self,
        *,
        seed: int = 42,
        contacts: int = 200,
        companies: int = 50,
        deals: int = 100,
        activities: int = 0,
        notes: int = 0,
        rate_limit: tuple[int, float] | None = (80, 2.0),
        daily_token_budget: int | None = 150_000,
        token_lifetime: int = 3600,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        api_tokens: Iterable[str] = ("sandbox-api-token",),
        error_rate: float = 0.0,
        latency_ms: float = 0,
    ) -> None:
        app = App(
            error_rate=error_rate,
            latency_ms=latency_ms,
            seed=seed,
            json_content_type="application/json",  # as recorded (_meta.json)
        )
        # self.url (set by start()) is the token response's api_domain (CONTRACTS 3.1).
        super().__init__(
            app, client_id=client_id, client_secret=client_secret, static_tokens=api_tokens
        )
        self._api_token_set = frozenset(self.api_tokens)
        self.store = Store()
        populate(
            self.store,
            seed,
            persons=contacts,
            organizations=companies,
            deals=deals,
            activities=activities,
            notes=notes,
        )
        self.shapes = Shapes(self.store)
        # CONTRACTS 3.1: expires_in 3600; codes live 5 minutes; a refresh always returns a new
        # refresh token and the old one stops working.
        self.oauth = OAuthProvider(
            clients={client_id: client_secret},
            clock=self.clock,
            token_lifetime=token_lifetime,
            code_lifetime=300,
            rotate_refresh_tokens=True,
            token_prefix="pd-sbx-",
        )
        self.limiter = FixedWindowLimiter(*rate_limit, self.clock) if rate_limit else None
        self.budget = TokenBudget(daily_token_budget, self.clock) if daily_token_budget else None
        self._pages = ByteCache(PAGE_CACHE_BYTES)
        self._revision = 0  # numbers the values /__sandbox/mutate writes
        self.app.not_found = self._not_found
        self.app.error_response = for_status
        register_oauth_routes(self.app, self.oauth, self._api_domain)
        self._register_api_routes()

    # -- test hooks and connection details -------------------------------------------------

    @property
    def api_tokens(self) -> tuple[str, ...]:
        """The personal API tokens (Pipedrive's name for the static tokens)."""
        return self.static_tokens

    def spend_daily_budget(self, tokens: int | None = None) -> int:
        """Spend ``tokens`` of today's budget (default: all of it); returns what is left."""
        if self.budget is None:
            raise RuntimeError("the daily token budget is disabled (daily_token_budget=None)")
        return self.budget.spend_all(tokens)

    def reset_rate_limits(self) -> None:
        """Forget the current 2-second windows."""
        if self.limiter is not None:
            self.limiter = FixedWindowLimiter(self.limiter.limit, self.limiter.window, self.clock)

    def connection_config(self, url: str) -> dict[str, str]:
        """Connector settings pointing at this sandbox: it is both the OAuth server and the API
        host used with API tokens (with OAuth the API host comes from ``api_domain``)."""
        return {"oauth_url": url, "api_url": url}

    def describe(self) -> dict[str, str]:
        """What a person needs to point a client at this sandbox (printed by the CLI)."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "api_tokens": ", ".join(self.api_tokens),
            "authorize": "/oauth/authorize",
            "token": "/oauth/token (form body, Basic client auth)",
            "api": "/v1, /api/v1, /api/v2 (Bearer, x-api-token, or ?api_token= on v1)",
            "records": ", ".join(f"{k} {self.store.count(k)}" for k in KINDS),
        }

    def now(self) -> str:
        """The sandbox clock as an RFC 3339 time."""
        return rfc3339(self.clock.now())

    def _api_domain(self, request: Request) -> str:
        host = request.headers.get("host")
        return self.url or (f"http://{host}" if host else "")

    # -- test control (sandbox/kit/control.py) ----------------------------------------------
    # Times have whole seconds (RFC 3339 without fraction, CONTRACTS 3.3), so the 1 ms steps of
    # one mutation share a second.

    def control_live_ids(self, stream: str) -> list[str]:
        return [str(record_id) for record_id in self.store.tables[stream].ids]

    def control_create(self, stream: str, stamps: list[float]) -> list[str]:
        created = []
        with self.store.lock:
            for stamp in stamps:
                self._revision += 1
                n = self._revision
                body: dict[str, Any] = {
                    "persons": {
                        "name": f"Mutant Person{n}",
                        "emails": [{"value": f"mutant.{n}@mutations.example", "primary": True,
                                    "label": "work"}],
                    },
                    "organizations": {"name": f"Mutant Organization {n}"},
                    "deals": {"title": f"Mutant Deal {n}", "value": 1000 + n},
                }[stream]
                now = rfc3339(stamp)
                changes = changes_for(self.store, stream, 2, body, None, now)
                record = self.store.insert(
                    stream,
                    lambda record_id, c=changes, t=now: new_record(
                        stream, {**c, "id": record_id, "add_time": t, "update_time": t}
                    ),
                )
                created.append(str(record["id"]))
        return created

    def control_update(self, stream: str, ids: list[str], stamps: list[float]) -> None:
        with self.store.lock:
            for record_id, stamp in zip(ids, stamps, strict=True):
                self._revision += 1
                old = self.store.record(stream, record_id)
                n = self._revision
                if stream == "persons":
                    first = old["first_name"] or "Someone"
                    changes = {"last_name": f"Revision{n}", "name": f"{first} Revision{n}"}
                elif stream == "organizations":
                    changes = {"name": f"Organization revision {n}"}
                else:
                    changes = {"title": f"Deal revision {n}"}
                self.store.replace(stream, {**old, **changes, "update_time": rfc3339(stamp)})

    def control_delete(self, stream: str, ids: list[str], stamps: list[float]) -> None:
        # What DELETE does: is_deleted = true, update_time = the deletion time.
        with self.store.lock:
            for record_id, stamp in zip(ids, stamps, strict=True):
                record = self.store.record(stream, record_id)
                self.store.delete(
                    stream, record, {"is_deleted": True, "update_time": rfc3339(stamp)}
                )

    def control_truth(self, stream: str) -> list[TruthRow]:
        with self.store.lock:
            records = list(self.store.tables[stream].records.values())
        rows = []
        for record in sorted(records, key=lambda r: r["id"]):
            stamp = parse_rfc3339(record["update_time"])
            deleted = bool(record.get("is_deleted"))
            rows.append(TruthRow(str(record["id"]), stamp, deleted, stamp if deleted else None))
        return rows

    # -- routing ---------------------------------------------------------------------------

    def _register_api_routes(self) -> None:
        add = self._add
        # v1 (the search route precedes /persons/{id})
        add("GET", f"{V1}/persons/search", "v1.persons.search", self._search_v1, 1, "search")
        add("GET", f"{V1}/recents", "v1.recents", self._recents, 1, "meta")
        add("GET", rf"{V1}/(?P<kind>{V1_KINDS})", "v1.list", self._list_v1, 1, "list")
        add("POST", rf"{V1}/(?P<kind>{V1_KINDS})", "v1.create", self._create_v1, 1, "write")
        record_v1 = rf"{V1}/(?P<kind>{V1_KINDS})/{RECORD_ID}"
        participants = rf"{V1}/deals/{RECORD_ID}/participants"
        add("GET", participants, "v1.participants", self._participants, 1, "list")
        add("POST", participants, "v1.participants.add", self._add_participant, 1, "write")
        add("GET", record_v1, "v1.get", self._get_v1, 1, "get")
        add("PUT", record_v1, "v1.update", self._update_v1, 1, "write")
        add("DELETE", record_v1, "v1.delete", self._delete, 1, "delete")
        fields = "|".join(FIELD_ROUTES)
        add("GET", rf"{V1}/(?P<route>{fields})", "v1.fields", self._fields, 1, "meta")
        add("GET", f"{V1}/users", "v1.users", self._users, 1, "meta")
        add("GET", f"{V1}/users/me", "v1.users.me", self._me, 1, "get")
        add("GET", f"{V1}/stages", "v1.stages", self._stages_v1, 1, "meta")
        add("GET", f"{V1}/pipelines", "v1.pipelines", self._pipelines_v1, 1, "meta")
        add("GET", f"{V1}/activityTypes", "v1.activity_types", self._activity_types, 1, "meta")
        # v2
        add("GET", f"{V2}/persons/search", "v2.persons.search", self._search_v2, 2, "search")
        add("GET", rf"{V2}/(?P<kind>{V2_KINDS})", "v2.list", self._list_v2, 2, "list")
        add("POST", rf"{V2}/(?P<kind>{V2_KINDS})", "v2.create", self._create_v2, 2, "write")
        record_v2 = rf"{V2}/(?P<kind>{V2_KINDS})/{RECORD_ID}"
        add("GET", record_v2, "v2.get", self._get_v2, 2, "get")
        add("PATCH", record_v2, "v2.update", self._update_v2, 2, "write")
        add("DELETE", record_v2, "v2.delete", self._delete, 2, "delete")
        add("GET", f"{V2}/stages", "v2.stages", self._stages_v2, 2, "meta")
        add("GET", f"{V2}/pipelines", "v2.pipelines", self._pipelines_v2, 2, "meta")

    def _add(
        self, method: str, pattern: str, name: str, handler: Handler, version: int, operation: str
    ) -> None:
        self.app.add_route(
            method, pattern, self._guarded(handler, version, cost(operation, version)), name=name
        )

    def _guarded(self, handler: Handler, version: int, tokens: int) -> Handler:
        """Auth, rate limits, token costs and error rendering around an API handler."""

        def guarded(request: Request, **params: str) -> Response:
            key = self._authenticate(request, version)
            if key is None:
                # CONTRACTS 3.6: the gateway's 401 (no rate-limit headers: it never got that far)
                return unauthorized()
            headers: dict[str, str] = {}
            limited = self._apply_limits(key, tokens, headers)
            if limited is not None:
                return limited
            try:
                if version == 2:
                    response = handler(request, version=2, **params)
                else:
                    response = handler(request, **params)
            except PipedriveError as error:
                response = error.response()
            response.headers.update(headers)
            return response

        return guarded

    def _authenticate(self, request: Request, version: int) -> str | None:
        """The rate-limit key of valid credentials, or None (CONTRACTS 3.2)."""
        authorization = request.headers.get("authorization")
        if authorization:
            # OAuth access tokens only: an API token sent as Bearer is a 401 [3P, UNCONFIRMED].
            scheme, _, token = authorization.partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and self.oauth.check(token).status == "valid":
                return "oauth:" + token
            return None
        api_token = request.headers.get("x-api-token")
        if api_token is not None:
            return "api:" + api_token if api_token in self._api_token_set else None
        # Choice (CONTRACTS 3.2 marks it UNCONFIRMED): ?api_token= works on v1 only; v2 gives 401.
        query_token = request.arg("api_token")
        if version == 1 and query_token in self._api_token_set:
            return "api:" + query_token
        return None

    def _apply_limits(self, key: str, tokens: int, headers: dict[str, str]) -> Response | None:
        """Add the rate-limit headers for this call; a 429 response when over a limit."""
        burst_ok = True
        if self.limiter is not None:
            burst_ok, remaining, reset = self.limiter.hit(key)
            headers["x-ratelimit-limit"] = str(self.limiter.limit)
            headers["x-ratelimit-remaining"] = str(remaining)
            headers["x-ratelimit-reset"] = str(reset)
        if self.budget is not None:
            if burst_ok:
                budget_ok, left = self.budget.spend(tokens)
            else:  # a call refused by the burst limit costs nothing
                budget_ok, left = True, self.budget.remaining()
            headers["x-daily-ratelimit-token-limit"] = str(self.budget.limit)
            headers["x-daily-ratelimit-token-remaining"] = str(left)
            if not budget_ok:
                return daily_limit_exceeded(headers)
        if not burst_ok:
            return rate_limited(headers)
        return None

    def _not_found(self, request: Request) -> Response:
        # CONTRACTS 3.6: unrouted paths also get the gateway 401 - unless the caller is
        # authenticated, then a 404 in the API envelope (choice).
        if self._authenticate(request, 2 if request.path.startswith("/api/v2") else 1) is None:
            return unauthorized()
        return PipedriveError(404, "Unknown method .", code=True).response()

    # -- helpers ---------------------------------------------------------------------------

    def _find(self, kind: str, record_id: str) -> Record:
        """The active record, 404 when unknown, 410 when deleted (choice, CONTRACTS 3.6)."""
        record = self.store.stored(kind, record_id)
        if record is None:
            raise not_found(SINGULAR[kind])
        if record.get("is_deleted") or record.get("active_flag") is False:
            raise gone(SINGULAR[kind])
        return record

    @staticmethod
    def _body(request: Request, version: int) -> dict:
        content_type = (request.headers.get("content-type") or "").lower()
        if version == 1 and content_type.startswith("application/x-www-form-urlencoded"):
            return dict(request.form())  # v1 also takes form bodies
        try:
            body = request.json()
        except ValueError:
            raise bad_request("Invalid JSON in request body") from None
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise bad_request("Request body must be a JSON object")
        return body

    def _cached(self, key: tuple, build: Callable[[], dict]) -> Response:
        """A whole rendered page, reused until the next write."""
        key = (*key, self.store.version)
        body = self._pages.get(key)
        if body is None:
            body = encode_json(build())
            self._pages.put(key, body)
        return Response(200, body)

    def _v1_one(self, kind: str, record: Record, status: int = 200, extras: Any = None) -> Response:
        body: dict[str, Any] = {"success": True, "data": self.shapes.v1(kind, record)}
        if extras is not None:
            body["additional_data"] = extras
        related = self.shapes.related(kind, [record])
        if related is not None:
            body["related_objects"] = related
        return Response(status, body)

    # -- v1 records ------------------------------------------------------------------------

    def _list_v1(self, request: Request, kind: str) -> Response:
        page = parse_v1_page(request, kind)

        def build() -> dict:
            keys = ordered_keys(self.store, page.view)
            chunk, more = offset_slice(keys, page.start, page.limit, page.descending)
            records = self.store.tables[kind].records
            found = [records[key_id(key)] for key in chunk]
            # Choice (CONTRACTS 3.3 marks it UNCONFIRMED): an empty v1 list has data: null.
            body: dict[str, Any] = {
                "success": True,
                "data": self.shapes.v1_many(kind, found) or None,
                "additional_data": {"pagination": v1_pagination(page.start, page.limit, more)},
            }
            related = self.shapes.related(kind, found)
            if related is not None:
                body["related_objects"] = related
            return body

        return self._cached(("v1", page), build)

    def _get_v1(self, request: Request, kind: str, record_id: str) -> Response:
        record = self._find(kind, record_id)
        extras = {"dropbox_email": CC_DOMAIN} if kind == "persons" else None
        return self._v1_one(kind, record, extras=extras)

    def _create_v1(self, request: Request, kind: str) -> Response:
        record = self._insert(kind, self._body(request, 1), 1)
        return self._v1_one(kind, record, 201, CREATE_EXTRAS.get(kind))  # CONTRACTS 3.4: 201

    def _update_v1(self, request: Request, kind: str, record_id: str) -> Response:
        record = self._replace(kind, record_id, self._body(request, 1), 1)
        return self._v1_one(kind, record)

    # A deal's participants: v1 only, offset pages; an empty list is data: null, like the
    # other v1 lists.
    def _participants(self, request: Request, record_id: str) -> Response:
        deal = self._find("deals", record_id)
        return self._v1_static(request, [self.shapes.v1_participant(deal, participant)
                                         for participant in self.store.participants_of(deal["id"])])

    def _add_participant(self, request: Request, record_id: str) -> Response:
        deal = self._find("deals", record_id)
        person_id = self._body(request, 1).get("person_id")
        if self.store.record("persons", person_id if person_id is not None else "") is None:
            raise bad_request("Person not found")
        added = self.store.add_participant(deal["id"], int(person_id), self.now())
        return Response(201, {"success": True,
                              "data": self.shapes.v1_participant(deal, added)})

    # -- v2 records ------------------------------------------------------------------------

    def _list_v2(self, request: Request, kind: str, version: int) -> Response:
        page = parse_v2_page(request, kind, self.clock.now())

        def build() -> dict:
            keys = ordered_keys(self.store, page.view)
            chunk, last = cursor_slice(keys, page.after, page.limit, page.descending)
            records = self.store.tables[kind].records
            found = [records[key_id(key)] for key in chunk]
            if page.custom_fields is not None:
                found = [_only_custom(record, page.custom_fields) for record in found]
            if "participants_count" in page.include:
                found = [self._counted(record) for record in found]
            cursor = None
            if last is not None:
                cursor = encode_cursor(last, page.view.sort, "desc" if page.descending else "asc")
            # CONTRACTS 3.3: additional_data.next_cursor, null on the last page
            return {"success": True, "data": found, "additional_data": {"next_cursor": cursor}}

        return self._cached(("v2", page), build)

    def _get_v2(self, request: Request, kind: str, record_id: str, version: int) -> Response:
        record = self._find(kind, record_id)
        if "participants_count" in include_fields(request, kind):
            record = self._counted(record)
        return Response(200, {"success": True, "data": record})

    def _counted(self, deal: Record) -> Record:
        return {**deal, "participants_count": len(self.store.participants_of(deal["id"]))}

    def _create_v2(self, request: Request, kind: str, version: int) -> Response:
        record = self._insert(kind, self._body(request, 2), 2)
        return Response(201, {"success": True, "data": record})

    def _update_v2(self, request: Request, kind: str, record_id: str, version: int) -> Response:
        record = self._replace(kind, record_id, self._body(request, 2), 2)
        return Response(200, {"success": True, "data": record})

    # -- writes (both versions) ------------------------------------------------------------

    def _insert(self, kind: str, body: dict, version: int) -> Record:
        now = self.now()
        with self.store.lock:
            changes = changes_for(self.store, kind, version, body, None, now)
            record = self.store.insert(
                kind,
                lambda record_id: new_record(
                    kind, {**changes, "id": record_id, "add_time": now, "update_time": now}
                ),
            )
            if kind == "deals" and record.get("person_id") is not None:
                # The deal's person is its first participant (UNCONFIRMED; seed.py too).
                self.store.add_participant(record["id"], record["person_id"], now)
            return record

    def _replace(self, kind: str, record_id: str, body: dict, version: int) -> Record:
        now = self.now()
        with self.store.lock:
            old = self._find(kind, record_id)
            changes = changes_for(self.store, kind, version, body, old, now)
            record = {**old, **changes, "update_time": now}
            self.store.replace(kind, record)
            return record

    def _delete(self, request: Request, kind: str, record_id: str, version: int = 1) -> Response:
        with self.store.lock:
            record = self.store.stored(kind, record_id)
            if record is None:
                raise not_found(SINGULAR[kind])
            body = {"success": True, "data": {"id": record["id"]}}
            if record.get("is_deleted") or record.get("active_flag") is False:
                # v1_person_delete_response_410.json: deleting a deleted record answered 410
                # with a success body.
                return Response(410, body)
            flag = {"active_flag": False} if kind == "notes" else {"is_deleted": True}
            self.store.delete(kind, record, {**flag, "update_time": self.now()})
        return Response(200, body)  # v1_deal_delete_response.json

    # -- search ----------------------------------------------------------------------------

    def _search_v1(self, request: Request) -> Response:
        search = parse_search(request)
        page = parse_v1_page(request, "persons")  # start / limit only
        hits = run_search(self.store, search)
        chunk = hits[page.start : page.start + page.limit]
        more = page.start + page.limit < len(hits)
        return Response(
            200,
            {
                "success": True,
                "data": {"items": [self.shapes.search_item(*hit) for hit in chunk]},
                "additional_data": {"pagination": v1_pagination(page.start, page.limit, more)},
            },
        )

    def _search_v2(self, request: Request, version: int) -> Response:
        search = parse_search(request)
        limit = _limit(request.arg("limit"))
        start = _offset_cursor(request.arg("cursor"))
        hits = run_search(self.store, search)
        chunk = hits[start : start + limit]
        more = start + limit < len(hits)
        cursor = _encode_offset(start + limit) if more else None
        return Response(
            200,
            {
                "success": True,
                "data": {"items": [self.shapes.search_item(*hit) for hit in chunk]},
                "additional_data": {"next_cursor": cursor},
            },
        )

    # -- recents (v1 incremental) ----------------------------------------------------------

    def _recents(self, request: Request) -> Response:
        # CONTRACTS 3.3: GET /v1/recents?since_timestamp=YYYY-MM-DD HH:MM:SS&items=person
        raw_since = request.arg("since_timestamp")
        if not raw_since:
            raise bad_request("since_timestamp is required (YYYY-MM-DD HH:MM:SS)")
        try:
            since = rfc3339(parse_v1_time(raw_since))
        except ValueError:
            raise bad_request(f"Invalid since_timestamp: {raw_since}") from None
        names = (request.arg("items") or ",".join(RECENT_ITEMS)).split(",")
        unknown = [name for name in names if name not in RECENT_ITEMS]
        if unknown:
            raise bad_request(f"Invalid items: {', '.join(unknown)}")
        kinds = tuple(sorted({RECENT_ITEMS[name] for name in names}))
        page = parse_v1_page(request, "persons")

        def build() -> list[tuple[str, str, int]]:
            # Deleted records are listed too (their v1 shape: active_flag false, delete_time;
            # deals also deleted: true, status "deleted"). Choice (UNCONFIRMED): recents is
            # where a sync sees deleted persons and organizations; v2 lists never show them.
            merged = []
            for kind in kinds:
                table = self.store.tables[kind]
                for index in (table.by_update, table.deleted_by_update):
                    start = bisect_left(index, (since,))
                    merged.extend((stamp, kind, record_id) for stamp, record_id in index[start:])
            merged.sort()
            return merged

        changes = self.store.view(("recents", since, kinds), build)
        chunk = changes[page.start : page.start + page.limit]
        more = page.start + page.limit < len(changes)
        singular = {kind: name for name, kind in RECENT_ITEMS.items()}
        data = [
            {
                "item": singular[kind],
                "id": record_id,
                "data": self.shapes.v1(kind, self.store.tables[kind].records[record_id]),
            }
            for _, kind, record_id in chunk
        ]
        return Response(
            200,
            {
                "success": True,
                "data": data or None,
                "additional_data": {
                    "since_timestamp": v1_time(since),
                    "last_timestamp_on_page": v1_time(chunk[-1][0]) if chunk else None,
                    "pagination": v1_pagination(page.start, page.limit, more),
                },
            },
        )

    # -- company metadata ------------------------------------------------------------------

    def _v1_static(self, request: Request, items: list[dict], extra: Any = None) -> Response:
        start = _non_negative(request.arg("start"), 0)
        limit = min(_non_negative(request.arg("limit"), DEFAULT_LIMIT) or DEFAULT_LIMIT, MAX_LIMIT)
        chunk = items[start : start + limit]
        additional = {"pagination": v1_pagination(start, limit, start + limit < len(items))}
        if extra:
            additional.update(extra)
        # An empty v1 list is data: null, as _list_v1 says (a deal without participants).
        return Response(200, {"success": True, "data": chunk or None,
                              "additional_data": additional})

    def _fields(self, request: Request, route: str) -> Response:
        return self._v1_static(request, field_definitions(FIELD_ROUTES[route]))

    def _users(self, request: Request) -> Response:
        # v1_users_list.json: additional_data {company_id}, no pagination
        return Response(
            200,
            {
                "success": True,
                "data": [v1_user(user) for user in USERS],
                "additional_data": {"company_id": COMPANY_ID},
            },
        )

    def _me(self, request: Request) -> Response:
        return Response(
            200,
            {
                "success": True,
                "data": {
                    **v1_user(ME),
                    "company_id": COMPANY_ID,
                    "company_name": "Sandbox Company",
                    "company_domain": COMPANY_DOMAIN,
                    "company_country": "EE",
                    "language": {"language_code": "en", "country_code": "US"},
                },
            },
        )

    def _stages_v1(self, request: Request) -> Response:
        pipeline = request.arg("pipeline_id")
        stages = [v1_stage(s) for s in STAGES if pipeline in (None, "", str(s[1]))]
        return Response(200, {"success": True, "data": stages or None})

    def _pipelines_v1(self, request: Request) -> Response:
        return Response(200, {"success": True, "data": [v1_pipeline(p) for p in PIPELINES]})

    def _activity_types(self, request: Request) -> Response:
        return Response(
            200, {"success": True, "data": [v1_activity_type(t) for t in ACTIVITY_TYPES]}
        )

    def _stages_v2(self, request: Request, version: int) -> Response:
        # v2_stages_list_page_cursor.json
        pipeline = request.arg("pipeline_id")
        stages = [v2_stage(s) for s in STAGES if pipeline in (None, "", str(s[1]))]
        return self._static_v2(request, stages)

    def _pipelines_v2(self, request: Request, version: int) -> Response:
        return self._static_v2(request, [v2_pipeline(p) for p in PIPELINES])

    @staticmethod
    def _static_v2(request: Request, items: list[dict]) -> Response:
        limit = _limit(request.arg("limit"))
        start = _offset_cursor(request.arg("cursor"))
        more = start + limit < len(items)
        return Response(
            200,
            {
                "success": True,
                "data": items[start : start + limit],
                "additional_data": {"next_cursor": _encode_offset(start + limit) if more else None},
            },
        )


# -- helpers ---------------------------------------------------------------------------------


def _only_custom(record: Record, keys: tuple[str, ...]) -> Record:
    custom = record.get("custom_fields")
    if custom is None:
        return record
    return {**record, "custom_fields": {k: v for k, v in custom.items() if k in keys}}


def _limit(raw: str | None) -> int:
    if raw in (None, ""):
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request("Validation failed: limit: must be integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"Validation failed: limit: must be between 1 and {MAX_LIMIT}")
    return limit


def _non_negative(raw: str | None, default: int) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"Invalid pagination value: {raw}") from None
    if value < 0:
        raise bad_request(f"Invalid pagination value: {raw}")
    return value


def _encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(f'{{"offset":{offset}}}'.encode()).rstrip(b"=").decode()


def _offset_cursor(raw: str | None) -> int:
    if not raw:
        return 0
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        prefix = '{"offset":'
        if not text.startswith(prefix) or not text.endswith("}"):
            raise ValueError(text)
        offset = int(text[len(prefix) : -1])
        if offset < 0:
            raise ValueError(text)
        return offset
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request("Validation failed: cursor: invalid cursor") from None
