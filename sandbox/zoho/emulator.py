"""Zoho CRM emulator (API v2..v8), written from /work/shared/vendor-api/CONTRACTS.md section 4.

    sandbox = ZohoSandbox(contacts=1000)
    with sandbox.start() as running:        # http://127.0.0.1:<port>
        httpx.get(running.url + "/crm/v3/Contacts", params={"fields": "Last_Name,Email"},
                  headers={"Authorization": "Zoho-oauthtoken 1000.sandbox-static-token"})

One server plays a data centre's accounts server (OAuth, oauth.py) and its API host: the
token response's ``api_domain`` is this server's URL. Modules Contacts, Accounts, Deals, Tasks,
Calls, Notes and Events: list (page, then page_token; paging.py), get, create, update, upsert,
delete, deleted records and search (criteria parsed in criteria.py); users. Records live in
store.py, seed data in seed.py, writes in records.py, limits in limits.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from sandbox.kit.control import TruthRow
from sandbox.kit.core import (
    AccessToken,
    LruCache,
    Request,
    Response,
    SlidingWindowLimiter,
    decode_json,
    encode_json,
)
from sandbox.kit.emulator import Emulator
from sandbox.zoho import errors as errors
from sandbox.zoho import settings
from sandbox.zoho.criteria import CriteriaError, compile_criteria, parse
from sandbox.zoho.errors import ZohoError
from sandbox.zoho.limits import ConcurrencyApp, CreditLedger, InFlight, write_cost
from sandbox.zoho.oauth import ZohoOAuthProvider, register_oauth_routes
from sandbox.zoho.paging import (
    DISCRETE_LIMIT,
    TOKEN_LIFETIME,
    TOKEN_RECORD_LIMIT,
    PageToken,
    TokenCodec,
    binding_of,
    info_block,
    key_at,
    parse_page,
    parse_per_page,
    position_of,
    slice_ids,
)
from sandbox.zoho.records import MAX_RECORDS, Outcome, Writer, batch_status, records_of
from sandbox.zoho.schema import (
    ALL_SCOPES,
    API_USER,
    DATA_CENTRES,
    EMAIL,
    MODULES,
    PHONE,
    TEXTUAL,
    USERS,
    module_scope_ok,
    scope_ok,
)
from sandbox.zoho.seed import populate
from sandbox.zoho.store import (
    Store,
    Table,
    canonical_module,
    render_full,
    render_page,
    selection_pairs,
)
from sandbox.zoho.time import OrgTime, parse_http_or_iso

AUTH_PREFIX = "zoho-oauthtoken"  # CONTRACTS 4.2: Authorization: Zoho-oauthtoken <token>
MAX_FIELDS = 50  # CONTRACTS 4.3
SEARCH_LIMIT = 2000  # CONTRACTS 4.5 [UNCONFIRMED]: search reaches the first 2,000 matches only
PAGE_CACHE_PAGES = 2048
SORT_FIELDS = ("id", "Created_Time", "Modified_Time")
SELF_CLIENT = "self-client"  # concurrency key of the static tokens
VERSION = r"/crm/(?P<version>v[2-8]|v2\.1)"
# The field /__sandbox/mutate changes on an update, per module.
MUTATED_FIELD = {"Contacts": "Title", "Accounts": "Description", "Deals": "Next_Step"}
MODULE = r"/(?P<module>[A-Za-z][A-Za-z0-9_]*)"
# Routes outside the modules, by the scopes they accept (CONTRACTS 4.1 lists the families).
SETTINGS, ORG = "SETTINGS", "ORG"
_USER_SCOPES = ("ZohoCRM.users.READ", "ZohoCRM.users.ALL")
MODULELESS_SCOPES = {
    SETTINGS: ("ZohoCRM.settings.READ", "ZohoCRM.settings.ALL", "ZohoCRM.settings.fields.READ"),
    ORG: ("ZohoCRM.org.READ", "ZohoCRM.org.ALL"),
}
RECORD = r"/(?P<record_id>[^/]+)"


@dataclass
class Call:
    """One API request after auth: the resolved module and the decoded body of a write."""

    version: int
    module: str | None = None
    table: Table | None = None
    items: list[Any] | None = None
    body: dict[str, Any] | None = None
    record_id: str | None = None


Handler = Callable[[Request, Call], Response]


class ZohoSandbox(Emulator):
    """A Zoho CRM org in memory, served over HTTP by :meth:`start`."""

    name = "zoho"
    # An Enterprise-sized credit budget and concurrency.
    DEMO_OPTIONS: ClassVar[dict[str, Any]] = {"credits_per_day": 2_000_000, "max_concurrent": 20,
                                              "tasks": 300, "calls": 200, "notes": 200,
                                              "events": 100}
    TOKEN_SCOPES = ALL_SCOPES
    CONTROL_STREAMS: ClassVar[dict[str, str]] = {
        "contacts": "Contacts",
        "companies": "Accounts",
        "deals": "Deals",
    }

    def __init__(
        self,
        *,
        seed: int = 42,
        contacts: int = 200,
        companies: int = 50,
        deals: int = 100,
        tasks: int = 0,
        calls: int = 0,
        notes: int = 0,
        events: int = 0,
        org_offset: str = "+03:00",
        data_centre: str = "us",
        credits_per_day: int = 50_000,
        max_concurrent: int = 10,
        max_fields: int = MAX_FIELDS,
        rate_limit: tuple[int, float] | None = None,
        token_lifetime: int = 3600,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        static_tokens: Iterable[str] = ("1000.sandbox-static-token",),
        error_rate: float = 0.0,
        latency_ms: float = 0,
    ) -> None:
        if data_centre.lower() not in DATA_CENTRES:
            raise ValueError(
                f"unknown data_centre {data_centre!r}; one of {', '.join(DATA_CENTRES)}"
            )
        self.data_centre = DATA_CENTRES[data_centre.lower()]
        self.max_fields = max_fields  # API names one `fields` list may hold
        self.org = OrgTime(org_offset)
        self.gate = InFlight(max_concurrent)
        app = ConcurrencyApp(
            gate=self.gate,
            key_of=self._app_key,
            refuse=errors.too_many_requests,
            error_rate=error_rate,
            latency_ms=latency_ms,
            seed=seed,
            json_content_type="application/json;charset=UTF-8",  # as recorded (_meta.json)
        )
        # self.url (set by start()) is the api_domain and the accounts-server.
        super().__init__(
            app,
            client_id=client_id,
            client_secret=client_secret,
            # A bare string is one token (not its characters).
            static_tokens=(static_tokens,) if isinstance(static_tokens, str) else static_tokens,
        )
        self.store = Store()
        populate(
            self.store,
            seed,
            self.org,
            contacts=contacts,
            companies=companies,
            deals=deals,
            tasks=tasks,
            calls=calls,
            notes=notes,
            events=events,
        )
        self.writer = Writer(self.store, self.org, self.clock)
        self._revision = 0  # numbers the values /__sandbox/mutate writes
        self.oauth = ZohoOAuthProvider(
            clients={client_id: client_secret},
            clock=self.clock,
            token_lifetime=token_lifetime,
            rotate_refresh_tokens=False,  # CONTRACTS 4.1: a refresh keeps the refresh token
            static_tokens=self.static_tokens,
        )
        self.credits = CreditLedger(credits_per_day, self.clock)
        window = _rate_limit(rate_limit)
        self.rate_limiter = SlidingWindowLimiter(*window, self.clock) if window else None
        self.codec = TokenCodec(f"zoho-sandbox-{seed}".encode())
        self._pages = LruCache(PAGE_CACHE_PAGES)
        self._searches = LruCache(64)
        self._selections: dict[tuple[str, str], tuple] = {}
        self.app.not_found = self._not_found
        self.app.error_response = errors.for_status
        register_oauth_routes(
            self.app,
            self.oauth,
            location=self.data_centre.location,
            base_url=self.base_url,
            org=self.org,
        )
        self._register_api_routes()

    # -- connection details ------------------------------------------------------------------

    def base_url(self, request: Request | None = None) -> str:
        """This server's URL: the token response's api_domain and the accounts-server."""
        if self.url:
            return self.url
        host = request.headers.get("Host") if request is not None else None
        return f"http://{host}" if host else "http://127.0.0.1"

    def connection_config(self, url: str) -> dict[str, Any]:
        """The connector setting that overrides the data centre's accounts server; the API host
        comes from the token response's api_domain (this same URL). The custom fields are
        worth syncing."""
        return {"accounts_url": url, "extra_fields": ["Favorite_Color", "Customer_Tier"]}

    def describe(self) -> dict[str, str]:
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "static_token": ", ".join(self.static_tokens),
            "auth_header": "Authorization: Zoho-oauthtoken <token>",
            "data_centre": (
                f"{self.data_centre.location} (plays {self.data_centre.accounts_server} and "
                f"{self.data_centre.api_domain})"
            ),
            "authorize": "/oauth/v2/auth",
            "token": "/oauth/v2/token",
            "revoke": "/oauth/v2/token/revoke",
            "api": "/crm/v2 .. /crm/v8 (v3+ require `fields` on lists)",
            "org_offset": self.org.offset_text,
            "credits_per_day": str(self.credits.limit),
            "max_concurrent": str(self.gate.limit),
        }

    # -- test control (sandbox/kit/control.py) ----------------------------------------------
    # Zoho times have whole seconds in the org's offset, so the 1 ms steps of one mutation
    # share a second. Writes go through the Writer (as the API user) with its clock pinned to
    # each stamp.

    def control_live_ids(self, stream: str) -> list[str]:
        return self.store.ids(stream)

    def control_create(self, stream: str, stamps: list[float]) -> list[str]:
        created = []
        with self.store.lock:
            for stamp in stamps:
                self._revision += 1
                n = self._revision
                item: dict[str, Any] = {
                    "Contacts": {"First_Name": "Mutant", "Last_Name": f"Number {n}",
                                 "Email": f"mutant.{n}@mutations.example"},
                    "Accounts": {"Account_Name": f"Mutant Account {n}"},
                    "Deals": {"Deal_Name": f"Mutant Deal {n}", "Stage": "Qualification",
                              "Amount": 1000 + n},
                }[stream]
                outcome = self._pinned(stamp, lambda i=item: self.writer.create(stream, [i]))[0]
                if not outcome.ok:
                    raise RuntimeError(f"control create failed: {outcome.entry}")
                created.append(outcome.entry["details"]["id"])
        return created

    def control_update(self, stream: str, ids: list[str], stamps: list[float]) -> None:
        name = MUTATED_FIELD[stream]
        with self.store.lock:
            for record_id, stamp in zip(ids, stamps, strict=True):
                self._revision += 1
                item = {"id": record_id, name: f"{name} revision {self._revision}"}
                outcome = self._pinned(stamp, lambda i=item: self.writer.update(stream, [i]))[0]
                if not outcome.ok:
                    raise RuntimeError(f"control update failed: {outcome.entry}")

    def control_delete(self, stream: str, ids: list[str], stamps: list[float]) -> None:
        # What DELETE does: the record moves to the recycle bin (GET /{module}/deleted).
        with self.store.lock:
            for record_id, stamp in zip(ids, stamps, strict=True):
                self._pinned(stamp, lambda r=record_id: self.writer.delete(stream, [r]))

    def control_truth(self, stream: str) -> list[TruthRow]:
        table = self.store.table(stream)
        with self.store.lock:
            rows = [
                TruthRow(str(record_id), float(table.records[record_id].modified), False)
                for record_id in table.ids
            ]
            rows += [
                TruthRow(entry["id"], float(deleted_at), True, float(deleted_at))
                for entry, deleted_at in zip(table.deleted, table.deleted_at, strict=True)
            ]
        return sorted(rows, key=lambda row: int(row.id))

    def _pinned(self, stamp: float, write: Callable[[], list[Outcome]]) -> list[Outcome]:
        self.writer.fixed_now = int(stamp)
        try:
            return write()
        finally:
            self.writer.fixed_now = None

    # -- routing -----------------------------------------------------------------------------

    def _register_api_routes(self) -> None:
        module, record = VERSION + MODULE, VERSION + MODULE + RECORD
        read, create, update, delete = "READ", "CREATE", "UPDATE", "DELETE"
        routes: list[tuple[str, str, str, Handler, str | None]] = [
            ("GET", VERSION + "/users", "users.list", self._users, None),
            ("GET", VERSION + "/settings/fields", "settings.fields", self._fields_meta, SETTINGS),
            ("GET", VERSION + "/org", "org.get", self._organization, ORG),
            ("GET", module + "/search", "records.search", self._search, "SEARCH"),
            ("GET", module + "/deleted", "records.deleted", self._deleted, read),
            ("POST", module + "/upsert", "records.upsert", self._upsert, create),
            ("GET", module, "records.list", self._list, read),
            ("POST", module, "records.create", self._create, create),
            ("PUT", module, "records.update_many", self._update_many, update),
            ("DELETE", module, "records.delete_many", self._delete_many, delete),
            ("GET", record, "records.get", self._get, read),
            ("PUT", record, "records.update", self._update, update),
            ("DELETE", record, "records.delete", self._delete, delete),
        ]
        for method, pattern, name, handler, operation in routes:
            self.app.add_route(method, pattern, self._guarded(handler, operation), name=name)

    def _guarded(self, handler: Handler, operation: str | None) -> Callable[..., Response]:
        """Auth, module, scopes, limits and error rendering around an API handler."""

        def guarded(request: Request, version: str, **params: str) -> Response:
            token: AccessToken | None = None
            try:
                token = self._authenticate(request)
                call = Call(version=int(version[1]), record_id=params.get("record_id"))
                if "module" in params:
                    call.module = canonical_module(params["module"])
                    if call.module is None:
                        raise errors.invalid_module()
                    call.table = self.store.table(call.module)
                self._check_scope(token, call, operation)
                cost = 1
                if request.method in ("POST", "PUT"):
                    call.body, call.items = self._write_body(request)
                    cost = write_cost(len(call.items))
                limited = self._spend(cost)
                response = limited or handler(request, call)
            except ZohoError as error:
                response = error.response()
            if token is not None and token.expires_at is not None:
                # CONTRACTS 4.2: the access token's expiry, in the org's offset.
                response.headers["X-ACCESSTOKEN-RESET"] = self.org.format(token.expires_at)
            return response

        return guarded

    def _authenticate(self, request: Request) -> AccessToken:
        # CONTRACTS 4.2: only "Zoho-oauthtoken <token>"; a Bearer header counts as no token.
        scheme, _, value = (request.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != AUTH_PREFIX or not value.strip():
            raise errors.authentication_failure()
        check = self.oauth.check(value.strip())
        if check.status != "valid":
            raise errors.invalid_token()  # expired, revoked or unknown
        return check.token

    def _check_scope(self, token: AccessToken, call: Call, operation: str | None) -> None:
        scopes = token.scopes
        if scopes is None:  # static tokens are unrestricted
            return
        if call.module is None:  # /users, /settings, /org
            allowed = scope_ok(scopes, *MODULELESS_SCOPES.get(operation or "", _USER_SCOPES))
        elif operation == "SEARCH":
            # CONTRACTS 4.1: search also needs ZohoSearch.securesearch.READ.
            allowed = module_scope_ok(scopes, call.module.lower(), "READ") and scope_ok(
                scopes, "ZohoSearch.securesearch.READ", "ZohoSearch.securesearch.ALL"
            )
        else:
            allowed = module_scope_ok(scopes, call.module.lower(), operation or "READ")
        if not allowed:
            raise errors.scope_mismatch()

    def _spend(self, cost: int) -> Response | None:
        """A 429 when the per-window limit or the org's credits are exhausted."""
        if self.rate_limiter is not None and not self.rate_limiter.hit("org")[0]:
            return errors.too_many_requests()
        if not self.credits.spend(cost):
            return errors.too_many_requests()
        return None

    def _app_key(self, request: Request) -> str:
        """Concurrency is counted per app (CONTRACTS 4.7): the token's OAuth client."""
        scheme, _, value = (request.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != AUTH_PREFIX:
            return "anonymous"
        token = self.oauth.check(value.strip()).token
        if token is None:
            return "anonymous"
        return token.client_id or SELF_CLIENT

    def _not_found(self, request: Request) -> Response:
        if request.path.startswith("/crm/"):
            for route in self.app.routes:
                if route.method != request.method and route.pattern.fullmatch(request.path):
                    return errors.invalid_request_method().response()
        return errors.invalid_url_pattern().response()

    @staticmethod
    def _write_body(request: Request) -> tuple[dict[str, Any], list[Any]]:
        try:
            body = decode_json(request.body) if request.body else None
        except ValueError:
            raise errors.body_error(
                "INVALID_DATA", "invalid data", {"expected_data_type": "jsonobject"}
            ) from None
        return body, records_of(body)

    # -- lists -------------------------------------------------------------------------------

    def _selection(self, table: Table, raw: str | None) -> tuple | None:
        """(key, default) pairs for `fields`, or None for whole records. Unknown API names are
        ignored (choice, UNCONFIRMED); id always comes back."""
        if raw is None:
            return None
        if raw.count(",") >= self.max_fields and len(
                [name for name in raw.split(",") if name.strip()]) > self.max_fields:
            raise errors.limit_exceeded("fields", self.max_fields)
        cache_key = (table.module.api_name, raw)
        pairs = self._selections.get(cache_key)
        if pairs is None:
            names = [name.strip() for name in raw.split(",") if name.strip()]
            known = tuple(name for name in dict.fromkeys(names) if name in table.defaults
                          or name in table.module.fields or name == "id")  # fmt: skip
            pairs = selection_pairs(table, known)
            if len(self._selections) > 1024:
                self._selections.clear()
            self._selections[cache_key] = pairs
        return pairs

    def _list(self, request: Request, call: Call) -> Response:
        table = call.table
        raw_fields = request.arg("fields")
        if raw_fields is None and call.version >= 3:
            # CONTRACTS 4.3: fields is mandatory in v3+ (crm-oas example).
            raise errors.required_param_missing("fields")
        pairs = self._selection(table, raw_fields)
        page_raw, token_raw = request.arg("page"), request.arg("page_token")
        if page_raw is not None and token_raw is not None:
            raise errors.ambiguity("page", "page_token")
        per_page = parse_per_page(request.arg("per_page"))
        # fixtures/zoho/v2_contacts_list_page.json: the default order is id, descending.
        sort_by = request.arg("sort_by") or "id"
        if sort_by not in SORT_FIELDS:
            raise errors.invalid_param("sort_by", supported_values=list(SORT_FIELDS))
        sort_order = (request.arg("sort_order") or "desc").lower()
        if sort_order not in ("asc", "desc"):
            raise errors.invalid_param("sort_order", supported_values=["desc", "asc"])
        since = self._if_modified_since(request)
        selected = tuple(key for key, _ in pairs) if pairs is not None else None
        binding = binding_of(table.module.api_name, selected, sort_by, sort_order, since)
        now = int(self.clock.now())
        descending = sort_order == "desc"
        with self.store.lock:
            keys, ids = table.ordering(sort_by, since)
            if token_raw is not None:
                start = self._token_position(token_raw, binding, now, keys, descending, per_page)
            else:
                page = parse_page(page_raw)
                if page * per_page > DISCRETE_LIMIT:
                    raise errors.discrete_pagination_limit()
                start = (page - 1) * per_page
            if not ids and since is not None:
                return Response(304)  # CONTRACTS 4.3: nothing modified since
            bucket = now // 60  # page tokens expire on minute boundaries, so pages can be cached
            cache_key = (table.module.api_name, table.version, selected, sort_by, sort_order,
                         since, start, per_page, bucket)  # fmt: skip
            cached = self._pages.get(cache_key)
            if cached is not None:
                return Response(200, cached) if cached else Response(204)
            page_ids = slice_ids(ids, descending, start, per_page)
            if not page_ids:
                self._pages.put(cache_key, b"")
                return Response(204)  # CONTRACTS 4.3: no records -> 204, empty body
            body = self._page_body(
                table, page_ids, pairs, keys, descending, start, per_page, binding,
                sort_by, sort_order, bucket,
            )  # fmt: skip
        self._pages.put(cache_key, body)
        return Response(200, body)

    def _page_body(
        self,
        table: Table,
        page_ids: list[int],
        pairs: tuple | None,
        keys: list,
        descending: bool,
        start: int,
        per_page: int,
        binding: int,
        sort_by: str,
        sort_order: str,
        bucket: int,
    ) -> bytes:
        expires = bucket * 60 + TOKEN_LIFETIME
        end = start + len(page_ids)
        more = end < len(keys)
        next_token = previous_token = None
        if more:
            last = key_at(keys, descending, end - 1)
            next_token = self.codec.encode(PageToken(b"n", binding, last, expires))
        if start > 0:
            first = key_at(keys, descending, start)
            previous_token = self.codec.encode(PageToken(b"p", binding, first, expires))
        info = info_block(
            per_page=per_page,
            count=len(page_ids),
            page=start // per_page + 1,
            sort_by=sort_by,
            sort_order=sort_order,
            more=more,
            next_token=next_token,
            previous_token=previous_token,
            expiry=self.org.format(expires) if next_token else None,
        )
        return encode_json({"data": render_page(table, page_ids, pairs), "info": info})

    def _token_position(
        self, raw: str, binding: int, now: int, keys: list, descending: bool, per_page: int
    ) -> int:
        token = self.codec.decode(raw)
        if token is None or token.binding != binding:
            raise errors.token_mismatch()
        if token.expires <= now:
            raise errors.expired_page_token()
        start = position_of(token, keys, descending, per_page)
        if start >= TOKEN_RECORD_LIMIT:
            raise errors.pagination_limit()
        return start

    @staticmethod
    def _if_modified_since(request: Request) -> int | None:
        # CONTRACTS 4.3: If-Modified-Since: 2024-01-01T00:00:00+00:00. Choice: inclusive
        # (Modified_Time >= the header), so a client re-reads its boundary second instead of
        # losing a record changed within it.
        raw = request.headers.get("If-Modified-Since")
        if not raw:
            return None
        epoch = parse_http_or_iso(raw)
        if epoch is None:
            raise errors.invalid_param("If-Modified-Since")
        return int(epoch)

    # -- single records ----------------------------------------------------------------------

    def _get(self, request: Request, call: Call) -> Response:
        table = call.table
        if not call.record_id.isdigit():
            raise errors.ZohoError(
                400, "INVALID_DATA", "the id given seems to be invalid", {"resource_path_index": 1}
            )
        pairs = self._selection(table, request.arg("fields"))
        record = self.store.record(call.module, call.record_id)
        if record is None:
            return Response(204)  # crm-oas getRecord: 204 when no record matches
        document = (
            render_full(table, record)
            if pairs is None
            else render_page(table, [record.id], pairs)[0]
        )
        return Response(200, {"data": [document]})

    def _create(self, request: Request, call: Call) -> Response:
        return self._answer(self.writer.create(call.module, call.items), 201)

    def _update(self, request: Request, call: Call) -> Response:
        outcomes = self.writer.update(call.module, call.items, record_id=call.record_id)
        return self._answer(outcomes, 200)

    def _update_many(self, request: Request, call: Call) -> Response:
        return self._answer(self.writer.update(call.module, call.items), 200)

    def _upsert(self, request: Request, call: Call) -> Response:
        fields = call.body.get("duplicate_check_fields")
        if fields is not None and (
            not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)
        ):
            raise errors.body_error(
                "INVALID_DATA",
                "invalid data",
                {"api_name": "duplicate_check_fields", "json_path": "$.duplicate_check_fields"},
            )
        # fixtures/zoho/v2_upsert_response.json: 200 even when the record was inserted.
        return self._answer(self.writer.upsert(call.module, call.items, fields), 200)

    def _delete(self, request: Request, call: Call) -> Response:
        if not call.record_id.isdigit():
            # crm-oas example response-400-invalidrecordid.
            raise errors.ZohoError(
                400, "INVALID_DATA", "invalid record id", {"resource_path_index": 1}
            )
        return self._answer(self.writer.delete(call.module, [call.record_id]), 200)

    def _delete_many(self, request: Request, call: Call) -> Response:
        ids = [i.strip() for i in ",".join(request.query.get("ids", ())).split(",") if i.strip()]
        if not ids:
            raise errors.ZohoError(
                400,
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                {"param_name": "ids"},
            )
        if len(ids) > MAX_RECORDS:
            raise errors.limit_exceeded("ids", MAX_RECORDS)
        return self._answer(self.writer.delete(call.module, ids), 200)

    @staticmethod
    def _answer(outcomes: list[Outcome], success: int) -> Response:
        return Response(batch_status(outcomes, success), {"data": [o.entry for o in outcomes]})

    def _deleted(self, request: Request, call: Call) -> Response:
        """GET /{module}/deleted: the recycle bin, newest first (crm-oas getDeletedRecords)."""
        kind = (request.arg("type") or "all").lower()
        if kind not in ("all", "recycle", "permanent"):
            raise errors.invalid_param("type", supported_values=["all", "recycle", "permanent"])
        # crm-oas getDeletedRecords takes If-Modified-Since: only entries deleted at or after
        # it (inclusive, as on the list). Choice (UNCONFIRMED): 304 when none is that recent,
        # as the list answers. Nothing is ever purged permanently here.
        since = self._if_modified_since(request)
        table = call.table
        entries = [] if kind == "permanent" else table.deleted[::-1]
        if since is not None and entries:
            entries = [
                entry
                for entry, deleted_at in zip(table.deleted[::-1], table.deleted_at[::-1],
                                             strict=True)
                if deleted_at >= since
            ]
            if not entries:
                return Response(304)
        per_page = parse_per_page(request.arg("per_page"))
        page = parse_page(request.arg("page"))
        chunk = entries[(page - 1) * per_page : page * per_page]
        if not chunk:
            return Response(204)
        info = {
            "per_page": per_page,
            "count": len(chunk),
            "page": page,
            "more_records": page * per_page < len(entries),
        }
        return Response(200, {"data": chunk, "info": info})

    # -- search ------------------------------------------------------------------------------

    def _search(self, request: Request, call: Call) -> Response:
        table = call.table
        # CONTRACTS 4.5: only one of criteria/email/phone/word counts, in that order.
        for kind in ("criteria", "email", "phone", "word"):
            value = request.arg(kind)
            if value is not None:
                break
        else:
            raise errors.required_param_missing("criteria")
        pairs = self._selection(table, request.arg("fields"))
        per_page = parse_per_page(request.arg("per_page"))
        page = parse_page(request.arg("page"))
        if page * per_page > SEARCH_LIMIT:
            raise errors.discrete_pagination_limit(
                "You can only get the first 2000 records of a search"
            )
        matches = self._matches(table, kind, value)
        reachable = min(len(matches), SEARCH_LIMIT)
        start = (page - 1) * per_page
        page_ids = matches[start : min(start + per_page, reachable)]
        if not page_ids:
            return Response(204)  # CONTRACTS 4.5: no match -> 204
        info = {
            "per_page": per_page,
            "count": len(page_ids),
            "page": page,
            # Choice: false at the 2,000 cap, since a further page is refused.
            "more_records": start + len(page_ids) < reachable,
        }
        return Response(200, {"data": render_page(table, page_ids, pairs), "info": info})

    def _matches(self, table: Table, kind: str, value: str) -> list[int]:
        """Ids matching a search, in the list's default order (id descending); cached."""
        cache_key = (table.module.api_name, table.version, kind, value)
        cached = self._searches.get(cache_key)
        if cached is not None:
            return cached
        records = table.records
        if kind == "criteria":
            try:
                predicate = compile_criteria(parse(value), table.module)
            except CriteriaError as problem:
                raise errors.invalid_query(problem.reason, **problem.details) from None
        elif kind == "email":
            predicate = _equals_any(table.module.fields_of(EMAIL), value.strip().casefold())
        elif kind == "phone":
            predicate = _phone_match(table.module.fields_of(PHONE), value)
        else:
            predicate = _word_match(table.module.fields_of(*TEXTUAL), value.strip().casefold())
        with self.store.lock:
            found = [i for i in reversed(table.ids) if predicate(records[i])]
        self._searches.put(cache_key, found)
        return found

    # -- org metadata ------------------------------------------------------------------------

    def _fields_meta(self, request: Request, call: Call) -> Response:
        module = canonical_module(request.arg("module") or "")
        if module is None:
            raise errors.required_param_missing("module")
        return Response(200, {"fields": settings.module_fields(MODULES[module])})

    def _organization(self, request: Request, call: Call) -> Response:
        return Response(200, {"org": [settings.organization("Africa/Nairobi")]})

    # -- users -------------------------------------------------------------------------------

    def _users(self, request: Request, call: Call) -> Response:
        """GET /users (fixtures/zoho/v2_users_list.json, trimmed)."""
        kind = request.arg("type") or "AllUsers"
        users = [API_USER] if kind == "CurrentUser" else list(USERS)
        if kind == "AdminUsers":
            users = [u for u in USERS if u["profile"] == "Administrator"]
        stamp = self.org.format(1_672_531_200)
        data = [
            {
                "id": user["id"],
                "first_name": user["first_name"],
                "last_name": user["last_name"],
                "full_name": user["full_name"],
                "email": user["email"],
                "role": {"name": user["role"], "id": user["id"][:-3] + "005"},
                "profile": {"name": user["profile"], "id": user["id"][:-3] + "011"},
                "status": "active",
                "confirm": True,
                "language": "en_US",
                "locale": "en_US",
                "time_zone": "Africa/Nairobi",
                "offset": self.org.offset * 1000,
                "created_time": stamp,
                "Modified_Time": stamp,
            }
            for user in users
        ]
        info = {"per_page": 200, "count": len(data), "page": 1, "more_records": False}
        return Response(200, {"users": data, "info": info})


def _rate_limit(value: tuple[int, float] | str | None) -> tuple[int, float] | None:
    """(limit, window seconds); the CLI passes "100,10" as text since the default is None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        limit, _, window = value.partition(",")
        return int(limit), float(window or 1)
    limit, window = value
    return int(limit), float(window)


# -- search predicates ------------------------------------------------------------------------


def _equals_any(fields: tuple[str, ...], wanted: str) -> Callable[[Any], bool]:
    # Choice: email= is exact but case-insensitive over every Email-type field of the module.
    def match(record: Any) -> bool:
        get = record.doc.get
        return any(isinstance(get(f), str) and get(f).casefold() == wanted for f in fields)

    return match


_NOT_DIGITS = re.compile(r"\D")


def _phone_match(fields: tuple[str, ...], raw: str) -> Callable[[Any], bool]:
    # Choice: phone= compares digits only; a query of 7+ digits also matches as a suffix, so a
    # local number finds the same number stored with its country code.
    wanted = _NOT_DIGITS.sub("", raw)

    def match(record: Any) -> bool:
        for name in fields:
            value = record.doc.get(name)
            if isinstance(value, str) and wanted:
                digits = _NOT_DIGITS.sub("", value)
                if digits == wanted or (len(wanted) >= 7 and digits.endswith(wanted)):
                    return True
        return False

    return match


def _word_match(fields: tuple[str, ...], wanted: str) -> Callable[[Any], bool]:
    # Choice: word= is a case-insensitive substring match over the module's text fields.
    def match(record: Any) -> bool:
        get = record.doc.get
        return any(isinstance(get(f), str) and wanted in get(f).casefold() for f in fields)

    return match


__all__ = ["ZohoSandbox"]
