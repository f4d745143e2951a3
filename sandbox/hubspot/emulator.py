"""HubSpot CRM v3 emulator, written from /work/shared/vendor-api/CONTRACTS.md section 1.

    sandbox = HubSpotSandbox(contacts=1000)
    with sandbox.start() as running:        # http://127.0.0.1:<port>
        httpx.get(running.url + "/crm/v3/objects/contacts",
                  headers={"Authorization": "Bearer sandbox-private-app-token"})

Objects: contacts, companies, deals, tasks, calls, notes, meetings (list, get, create, update,
archive, search), associations v4 batch read (associations.py), owners, deal pipelines and
account details (pipelines.py), and the OAuth 2.0 endpoints (oauth.py). Records live in
store.py, seed data in seed.py, search in search.py.
"""

from __future__ import annotations

import base64
import binascii
import math
import threading
from collections.abc import Callable, Iterable
from typing import Any, ClassVar
from urllib.parse import urlencode

from sandbox.hubspot import associations, pipelines
from sandbox.hubspot.errors import (
    HubSpotError,
    conflict,
    expired_authentication,
    for_status,
    invalid_authentication,
    missing_scopes,
    new_correlation_id,
    not_found,
    property_validation_error,
    rate_limited,
    validation_error,
)
from sandbox.hubspot.oauth import register_oauth_routes
from sandbox.hubspot.schema import (
    ALL_SCOPES,
    ASSOCIATION_CATEGORIES,
    ASSOCIATION_TYPES,
    OBJECT_TYPE_ALIASES,
    PRIMARY_TYPE_IDS,
    SCHEMAS,
    ObjectSchema,
    PropertyErrors,
    properties_scope,
    required_scope,
    validate_properties,
)
from sandbox.hubspot.search import Searcher, SearchError, parse_search, to_epoch_ms
from sandbox.hubspot.seed import OWNERS, SEED_START_MS, burst, iso_ms, populate
from sandbox.hubspot.store import Record, Store
from sandbox.kit.control import TruthRow
from sandbox.kit.core import (
    AccessToken,
    App,
    DailyCounter,
    LruCache,
    OAuthProvider,
    Request,
    Response,
    SlidingWindowLimiter,
    encode_json,
)
from sandbox.kit.emulator import Emulator

LIST_DEFAULT_LIMIT = 10  # CONTRACTS 1.3
# CONTRACTS 1.3: max 100 is 3P-documented, the over-limit behaviour is not; we clamp to 100
# (a client asking for more simply gets pages of 100).
LIST_MAX_LIMIT = 100
PAGE_CACHE_PAGES = 2048  # ~110 MB at 100 contacts a page; a 100,000-contact sync is 1,000
ACCOUNT_KEY = "portal"  # the daily limit is per account (CONTRACTS 1.7), not per token

ObjectHandler = Callable[..., Response]
# The property /__sandbox/mutate changes on an update, per object type.
MUTATED_PROPERTY = {"contacts": "jobtitle", "companies": "name", "deals": "dealname"}


class HubSpotSandbox(Emulator):
    """A HubSpot portal in memory, served over HTTP by :meth:`start`."""

    name = "hubspot"
    # A budget large enough for a fast demo sync that still sends real X-HubSpot-RateLimit-*
    # headers for the engine to follow.
    DEMO_OPTIONS: ClassVar[dict[str, Any]] = {"rate_limit": (10_000, 10.0),
                                              "tasks": 300, "calls": 200, "notes": 200,
                                              "meetings": 100}
    TOKEN_SCOPES = ALL_SCOPES
    CONTROL_STREAMS: ClassVar[dict[str, str]] = {
        "contacts": "contacts",
        "companies": "companies",
        "deals": "deals",
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
        meetings: int = 0,
        rate_limit: tuple[int, float] | None = (100, 10.0),
        search_rate_limit: tuple[int, float] | None = (5, 1.0),
        search_max_sorts: int = 1,
        max_url_length: int = 16_000,
        burst_same_timestamp: int = 0,
        daily_limit: int | None = 250_000,
        token_lifetime: int = 1800,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        static_tokens: Iterable[str] = ("sandbox-private-app-token",),
        rotate_refresh_tokens: bool = False,
        error_rate: float = 0.0,
        latency_ms: float = 0,
    ) -> None:
        app = App(
            error_rate=error_rate,
            latency_ms=latency_ms,
            seed=seed,
            json_content_type="application/json;charset=utf-8",  # as recorded (_meta.json)
        )
        super().__init__(
            app, client_id=client_id, client_secret=client_secret, static_tokens=static_tokens
        )
        self.store = Store()
        populate(
            self.store,
            seed,
            contacts=contacts,
            companies=companies,
            deals=deals,
            tasks=tasks,
            calls=calls,
            notes=notes,
            meetings=meetings,
        )
        if burst_same_timestamp:
            # N records of each of contacts, companies and deals share one modification time.
            for object_type in ("contacts", "companies", "deals"):
                burst(self.store, object_type, burst_same_timestamp)
        self.search_max_sorts = search_max_sorts
        # A GET naming very many properties is refused with 414 URI Too Long (third-party
        # reports, e.g. airbytehq/airbyte#6954; the length HubSpot allows is UNCONFIRMED).
        self.max_url_length = max_url_length
        self.searcher = Searcher(self.store)
        # CONTRACTS 1.1: refresh-token rotation is UNCONFIRMED. Default: the refresh response
        # repeats the same refresh token; rotate_refresh_tokens=True issues a new one and
        # invalidates the old one.
        self.oauth = OAuthProvider(
            clients={client_id: client_secret},
            clock=self.clock,
            token_lifetime=token_lifetime,
            rotate_refresh_tokens=rotate_refresh_tokens,
            static_tokens=self.static_tokens,
            token_prefix="hs-sbx-",
        )
        self.rate_limiter = self.secondly_window = self.search_limiter = None
        if rate_limit:
            limit, window = rate_limit
            self.rate_limiter = SlidingWindowLimiter(limit, window, self.clock)
            # CONTRACTS 1.7: X-HubSpot-RateLimit-Secondly (110 per 10 s -> 11) is reported,
            # not enforced separately.
            self.secondly_window = SlidingWindowLimiter(math.ceil(limit / window), 1.0, self.clock)
        if search_rate_limit:
            # CONTRACTS 1.5: search has its own, lower limit and answers 429 past it. The
            # changelog said 4 requests/s per token; current docs are quoted (3P) as 5/s per
            # account. Choice (UNCONFIRMED): 5 per second, counted per account.
            self.search_limiter = SlidingWindowLimiter(*search_rate_limit, self.clock)
        self.daily = DailyCounter(daily_limit, self.clock) if daily_limit else None
        self._pages = LruCache(PAGE_CACHE_PAGES)
        self._revision = 0  # numbers the values /__sandbox/mutate writes
        self._selections: dict[tuple[str, str | None], tuple[str, ...]] = {}
        self._selections_lock = threading.Lock()
        self.app.not_found = self._not_found
        self.app.error_response = for_status
        register_oauth_routes(self.app, self.oauth)
        self._register_api_routes()

    # -- connection details ----------------------------------------------------------------

    def connection_config(self, url: str) -> dict[str, Any]:
        """connectors/hubspot.yaml settings that point a connection at this sandbox: it serves
        both the API host and the consent page; its custom properties are worth syncing."""
        return {"api_url": url, "app_url": url,
                "extra_properties": ["favorite_color", "customer_tier"]}

    def describe(self) -> dict[str, str]:
        """What a person needs to point a client at this sandbox (printed by the CLI)."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "static_token": ", ".join(self.static_tokens),
            "authorize": "/oauth/authorize",
            "token": "/oauth/v1/token",
        }

    def now_iso(self) -> str:
        return iso_ms(int(self.clock.now() * 1000))

    # -- routing ---------------------------------------------------------------------------

    def _register_api_routes(self) -> None:
        objects = r"/crm/v3/objects/(?P<object_type>[^/]+)"
        record = objects + r"/(?P<record_id>[^/]+)"
        routes: list[tuple[str, str, str, ObjectHandler, bool, bool]] = [
            # method, pattern, name, handler, write, search
            ("GET", objects, "objects.list", self._list, False, False),
            ("POST", objects, "objects.create", self._create, True, False),
            ("POST", objects + "/search", "objects.search", self._search, False, True),
            ("GET", record, "objects.get", self._get, False, False),
            ("PATCH", record, "objects.update", self._update, True, False),
            ("DELETE", record, "objects.archive", self._archive, True, False),
        ]
        for method, pattern, name, handler, write, search in routes:
            self.app.add_route(
                method, pattern, self._object_route(handler, write, search), name=name
            )
        # Associations v4 batch read: reading needs the from-object's read scope; rate-limited
        # like the object routes (one request, whatever the number of inputs).
        self.app.add_route(
            "POST",
            r"/crm/v4/associations/(?P<from_type>[^/]+)/(?P<to_type>[^/]+)/batch/read",
            self._guarded(self._associations_batch_read, self._from_read_scope),
            name="associations.batch_read",
        )
        # The properties API: every property of an object type, HubSpot's and the portal's own
        # (hubspotDefined false), behind the type's schema scope (schema.properties_scope).
        self.app.add_route(
            "GET",
            r"/crm/v3/properties/(?P<object_type>[^/]+)/?",
            self._object_route(self._properties, False, False, scope_of=properties_scope),
            name="properties.list",
        )
        self.app.add_route(
            "GET",
            r"/crm/v3/owners/?",
            self._guarded(self._owners, "crm.objects.owners.read"),
            name="owners.list",
        )
        self.app.add_route(
            "GET",
            r"/crm/v3/pipelines/deals/?",
            self._guarded(lambda request: Response(
                200, {"results": pipelines.deal_pipelines(iso_ms(SEED_START_MS))}),
                "crm.objects.deals.read"),
            name="pipelines.deals",
        )
        self.app.add_route(
            "GET",
            r"/account-info/v3/details/?",
            self._guarded(lambda request: Response(200, pipelines.account_details()), None),
            name="account_info.details",
        )

    def _object_route(self, handler: ObjectHandler, write: bool, search: bool,
                      scope_of: Callable[[str], str] | None = None) -> Callable:
        def resolve(request: Request, object_type: str, **params: str) -> Response:
            name = OBJECT_TYPE_ALIASES.get(object_type)
            if name is None:
                raise validation_error(f"Unable to infer object type from: {object_type}")
            return handler(request, SCHEMAS[name], **params)

        def scope(params: dict[str, str]) -> str | None:
            name = OBJECT_TYPE_ALIASES.get(params["object_type"])
            if name is None:
                return None
            return scope_of(name) if scope_of is not None else required_scope(name, write)

        return self._guarded(resolve, scope, search=search)

    @staticmethod
    def _from_read_scope(params: dict[str, str]) -> str | None:
        name = OBJECT_TYPE_ALIASES.get(params["from_type"])
        return required_scope(name, False) if name else None

    def _guarded(
        self, handler: Callable, scope: str | Callable[[dict], str | None], *, search: bool = False
    ) -> Callable:
        """Auth, scopes, rate limits and error rendering around an API handler."""

        def guarded(request: Request, **params: str) -> Response:
            correlation_id = new_correlation_id()
            headers = {"X-HubSpot-Correlation-Id": correlation_id}
            try:
                token = self._authenticate(request)
                needed = scope(params) if callable(scope) else scope
                if needed and token.scopes is not None and needed not in token.scopes:
                    raise missing_scopes(needed)
                limited = self._apply_limits(token.token, token.expires_at is None, search, headers)
                if limited is not None:
                    limited.headers.update(headers)
                    return limited
                response = handler(request, **params)
            except HubSpotError as error:
                response = error.response(correlation_id)
            response.headers.update(headers)
            return response

        return guarded

    def _authenticate(self, request: Request) -> AccessToken:
        # CONTRACTS 1.2: Authorization: Bearer <token> (OAuth or private-app token).
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            raise invalid_authentication()
        check = self.oauth.check(token.strip())
        if check.status == "unknown":
            raise invalid_authentication()
        if check.status == "expired":
            raise expired_authentication(
                check.expired_seconds_ago, iso_ms(int(check.token.expires_at * 1000))
            )
        return check.token

    def _apply_limits(
        self, token: str, private_app: bool, search: bool, headers: dict[str, str]
    ) -> Response | None:
        """A 429 response, or None after adding the rate-limit headers for this request."""
        correlation_id = headers["X-HubSpot-Correlation-Id"]
        if search and self.search_limiter is not None:
            allowed, _ = self.search_limiter.hit(ACCOUNT_KEY)
            if not allowed:
                return rate_limited("SECONDLY", correlation_id)
        if self.rate_limiter is not None:
            allowed, remaining = self.rate_limiter.hit(token)
            if not search:  # CONTRACTS 1.5: search responses carry no rate-limit headers
                _, secondly_remaining = self.secondly_window.hit(token)
                headers.update(
                    {
                        "X-HubSpot-RateLimit-Interval-Milliseconds": str(
                            int(self.rate_limiter.window * 1000)
                        ),
                        "X-HubSpot-RateLimit-Max": str(self.rate_limiter.limit),
                        "X-HubSpot-RateLimit-Remaining": str(remaining),
                        "X-HubSpot-RateLimit-Secondly": str(self.secondly_window.limit),
                        "X-HubSpot-RateLimit-Secondly-Remaining": str(secondly_remaining),
                    }
                )
            if not allowed:
                return rate_limited("TEN_SECONDLY_ROLLING", correlation_id)
        if self.daily is not None:
            allowed, remaining = self.daily.hit(ACCOUNT_KEY)
            # CONTRACTS 1.7: the daily pair is not sent on OAuth-authorised requests.
            if private_app and not search:
                headers["X-HubSpot-RateLimit-Daily"] = str(self.daily.limit)
                headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(remaining)
            if not allowed:
                return rate_limited("DAILY", correlation_id)
        return None

    def _not_found(self, request: Request) -> Response:
        correlation_id = new_correlation_id()
        response = not_found().response(correlation_id)
        response.headers["X-HubSpot-Correlation-Id"] = correlation_id
        return response

    # -- request parsing -------------------------------------------------------------------

    def _selection(self, schema: ObjectSchema, requested: str | None) -> tuple[str, ...]:
        """Properties to render: the requested known ones (unknown names are ignored) or the
        defaults, plus those that always come back (CONTRACTS 1.3); sorted like HubSpot's."""
        key = (schema.name, requested)
        selection = self._selections.get(key)
        if selection is None:
            names = [n.strip() for n in requested.split(",")] if requested else schema.defaults
            wanted = {n for n in names if n in schema.properties} | set(schema.always_returned)
            selection = tuple(sorted(wanted))
            with self._selections_lock:
                if len(self._selections) > 512:
                    self._selections.clear()
                self._selections[key] = selection
        return selection

    @staticmethod
    def _requested_properties(request: Request) -> str | None:
        # "properties" may be comma-separated or repeated (explode form, CONTRACTS 1.3).
        values = request.query.get("properties")
        return ",".join(values) if values else None

    @staticmethod
    def _association_types(request: Request) -> tuple[str, ...]:
        names = ",".join(request.query.get("associations", ())).split(",")
        return tuple(OBJECT_TYPE_ALIASES[n] for n in names if n in OBJECT_TYPE_ALIASES)

    @staticmethod
    def _flag(request: Request, name: str) -> bool:
        return (request.arg(name) or "false").lower() == "true"

    @staticmethod
    def _json_body(request: Request) -> dict:
        try:
            body = request.json()
        except ValueError:
            raise validation_error(
                "Invalid input JSON on line 1: the body is not valid JSON"
            ) from None
        if not isinstance(body, dict):
            raise validation_error("Invalid input JSON: expected an object")
        return body

    # -- objects ---------------------------------------------------------------------------

    def _properties(self, request: Request, schema: ObjectSchema) -> Response:
        custom = {"favorite_color", "customer_tier"}
        results = [
            {
                "name": name,
                "label": name.replace("_", " ").title(),
                "type": {"number": "number", "datetime": "datetime",
                         "enumeration": "enumeration"}.get(kind, "string"),
                "fieldType": "select" if kind == "enumeration" else "text",
                "groupName": f"{schema.singular}information",
                "hubspotDefined": name not in custom,
                "options": [{"label": v, "value": v, "hidden": False}
                            for v in schema.enumerations.get(name, ())],
            }
            for name, kind in schema.properties.items()
        ]
        return Response(200, {"results": results})

    def _check_url_length(self, request: Request) -> None:
        length = len(request.path) + 1 + len(urlencode(request.query, doseq=True))
        if length > self.max_url_length:
            raise HubSpotError(414, "URI_TOO_LONG", f"Request-URI Too Long ({length} characters)")

    def _list(self, request: Request, schema: ObjectSchema) -> Response:
        self._check_url_length(request)
        limit = _parse_limit(request.arg("limit"))
        after = _decode_cursor(request.arg("after"))
        selection = self._selection(schema, self._requested_properties(request))
        association_types = self._association_types(request)
        archived = self._flag(request, "archived")
        # Whole pages are cached (per store version): a repeated sync re-sends bytes. Caching
        # per record measured slower on a first pass (100,000 small long-lived objects).
        key = (schema.name, after, limit, selection, association_types, archived)
        version = self.store.version
        cached = self._pages.get(key)
        if cached is not None and cached[0] == version:
            return Response(200, cached[1])
        records, next_id = self.store.tables[schema.name].page(after, limit, archived)
        page: dict[str, Any] = {
            "results": self.store.documents(schema.name, records, selection, association_types)
        }
        if next_id is not None:
            # CONTRACTS 1.3: cursor in paging.next.after (+ link); paging omitted on the last page
            cursor = _encode_cursor(next_id)
            page["paging"] = {"next": {"after": cursor, "link": f"?after={cursor}"}}
        body = encode_json(page)
        self._pages.put(key, (version, body))
        return Response(200, body)

    def _find(self, request: Request, schema: ObjectSchema, record_id: str) -> Record:
        archived = self._flag(request, "archived")
        id_property = request.arg("idProperty")
        if id_property in (None, "hs_object_id"):
            found = self.store.record(schema.name, record_id, archived=archived)
        elif id_property == "email" and schema.name == "contacts":
            # CONTRACTS 1.5: GET /crm/v3/objects/contacts/{email}?idProperty=email
            found = None if archived else self.store.contact_by_email(record_id)
        else:
            raise validation_error(
                f"{id_property} is not a unique identifier property of {schema.name}"
            )
        if found is None:
            raise not_found(record_id)
        return found

    def _get(self, request: Request, schema: ObjectSchema, record_id: str) -> Response:
        record = self._find(request, schema, record_id)
        selection = self._selection(schema, self._requested_properties(request))
        association_types = self._association_types(request)
        return Response(200, self.store.document(schema.name, record, selection, association_types))

    def _full(self, schema: ObjectSchema, record: Record) -> dict:
        # Create/update responses echo every property that has a value (CONTRACTS 1.4).
        return self.store.document(schema.name, record, tuple(sorted(record.properties)))

    def _create(self, request: Request, schema: ObjectSchema) -> Response:
        body = self._json_body(request)
        try:
            values = validate_properties(schema, body.get("properties"), creating=True)
        except PropertyErrors as problems:
            raise property_validation_error(problems.errors) from None
        links = self._parse_associations(schema, body.get("associations") or [])
        # The primary company: the one linked with the primary type, else the first company
        # linked ("The first company record associated with a contact, deal, or ticket is
        # automatically set to Primary": HubSpot's v4 associations guide, 2022 revision).
        primary = [
            to_id for _, to_id, type_id in links
            if type_id in PRIMARY_TYPE_IDS
        ] + [to_id for to_type, to_id, _ in links if to_type == "companies"]
        if schema.name == "contacts":
            values.setdefault("lifecyclestage", "lead")  # recorded in contacts_create_response
            if primary:
                values["associatedcompanyid"] = str(primary[0])
        with self.store.lock:
            if schema.name == "contacts":
                self._check_email_free(values.get("email"), None)
            record = self.store.add(schema.name, values, self.now_iso())
            for to_type, to_id, _ in links:
                self.store.associate(schema.name, record.id, to_type, to_id)
            if schema.name == "deals" and primary:
                self.store.set_primary("deals", record.id, "companies", primary[0])
        return Response(201, self._full(schema, record))  # CONTRACTS 1.4: 201 Created

    def _parse_associations(
        self, schema: ObjectSchema, specs: object
    ) -> list[tuple[str, int, int]]:
        """[(to type, to id, association type id)] from a create body (CONTRACTS 1.4)."""
        if not isinstance(specs, list):
            raise validation_error("associations must be a list")
        links = []
        for spec in specs:
            try:
                to_id = str(spec["to"]["id"])
                types = spec["types"]
                categories = [t["associationCategory"] for t in types]
                type_ids = [int(t["associationTypeId"]) for t in types]
            except (KeyError, TypeError, ValueError):
                raise validation_error(
                    "Each association needs to.id and "
                    "types[{associationCategory, associationTypeId}]"
                ) from None
            for category, type_id in zip(categories, type_ids, strict=True):
                if category not in ASSOCIATION_CATEGORIES:
                    raise validation_error(f"Unknown associationCategory {category}")
                pair = ASSOCIATION_TYPES.get(type_id)
                # Only the HUBSPOT_DEFINED table is modelled; other categories need labels
                # the sandbox does not have.
                if category != "HUBSPOT_DEFINED" or pair is None or pair[0] != schema.name:
                    raise validation_error(
                        f"association type id {type_id} ({category}) is not valid "
                        f"from {schema.name}"
                    )
                if self.store.record(pair[1], to_id) is None:
                    # Choice (UNCONFIRMED): a missing target is a 400, not a 404.
                    raise validation_error(
                        f"One or more associations are invalid: {pair[1]} {to_id} does not exist",
                        [
                            {
                                "message": f"{pair[1]} {to_id} does not exist",
                                "code": "INVALID_ASSOCIATION",
                            }
                        ],
                    )
                links.append((pair[1], int(to_id), type_id))
        return links

    def _check_email_free(self, email: str | None, own_id: int | None) -> None:
        if not email:
            return
        existing = self.store.contact_by_email(email)
        if existing is not None and existing.id != own_id:
            # CONTRACTS 1.5: 409, clients parse "Existing ID:\s*(\d+)"
            raise conflict(f"Contact already exists. Existing ID: {existing.id}")

    def _update(self, request: Request, schema: ObjectSchema, record_id: str) -> Response:
        record = self._find(request, schema, record_id)
        if record.archived:
            raise not_found(record_id)
        body = self._json_body(request)
        try:
            values = validate_properties(schema, body.get("properties"), creating=False)
        except PropertyErrors as problems:
            raise property_validation_error(problems.errors) from None
        with self.store.lock:
            if schema.name == "contacts" and "email" in values:
                self._check_email_free(values["email"], record.id)
            # The write time comes from the sandbox clock, so advance_time moves it too.
            self.store.update(schema.name, record, values, self.now_iso())
        return Response(200, self._full(schema, record))

    def _archive(self, request: Request, schema: ObjectSchema, record_id: str) -> Response:
        # CONTRACTS 1.4: 204. Choice (UNCONFIRMED): archiving an unknown or already archived
        # id is also 204, so a retried DELETE is harmless.
        with self.store.lock:
            record = self.store.record(schema.name, record_id)
            if record is not None:
                self.store.archive(schema.name, record, self.now_iso())
        return Response(204)

    def _search(self, request: Request, schema: ObjectSchema) -> Response:
        try:
            search = parse_search(
                schema,
                self._json_body(request) if request.body else {},
                max_sorts=self.search_max_sorts,
            )
        except SearchError as error:
            raise validation_error(str(error)) from None
        total, records = self.searcher.run(schema, search)
        selection = self._selection(
            schema, ",".join(search.properties) if search.properties else None
        )
        body: dict[str, Any] = {
            "total": total,
            "results": self.store.documents(schema.name, records, selection),
        }
        next_offset = search.offset + len(records)
        if records and next_offset < total:
            # CONTRACTS 1.5: the search cursor is a numeric offset string with no "link"
            body["paging"] = {"next": {"after": str(next_offset)}}
        return Response(200, body)

    # -- associations ----------------------------------------------------------------------

    def _associations_batch_read(self, request: Request, from_type: str, to_type: str) -> Response:
        schemas = []
        for object_type in (from_type, to_type):
            name = OBJECT_TYPE_ALIASES.get(object_type)
            if name is None:
                raise validation_error(f"Unable to infer object type from: {object_type}")
            schemas.append(SCHEMAS[name])
        return associations.batch_read(
            self.store, schemas[0], schemas[1], self._json_body(request), self.now_iso
        )

    # -- test control (sandbox/kit/control.py) ----------------------------------------------

    def control_live_ids(self, stream: str) -> list[str]:
        return [str(record_id) for record_id in self.store.tables[stream].active]

    def control_create(self, stream: str, stamps: list[float]) -> list[str]:
        created = []
        with self.store.lock:
            for stamp in stamps:
                self._revision += 1
                values = self._new_values(stream, self._revision)
                record = self.store.add(stream, values, iso_ms(round(stamp * 1000)))
                created.append(record.id_str)
        return created

    def control_update(self, stream: str, ids: list[str], stamps: list[float]) -> None:
        name = MUTATED_PROPERTY[stream]
        with self.store.lock:
            for record_id, stamp in zip(ids, stamps, strict=True):
                self._revision += 1
                record = self.store.record(stream, record_id)
                value = f"{name} revision {self._revision}"
                self.store.update(stream, record, {name: value}, iso_ms(round(stamp * 1000)))

    def control_delete(self, stream: str, ids: list[str], stamps: list[float]) -> None:
        # What DELETE /crm/v3/objects/{type}/{id} does: archive (GET ?archived=true lists it).
        with self.store.lock:
            for record_id, stamp in zip(ids, stamps, strict=True):
                record = self.store.record(stream, record_id)
                self.store.archive(stream, record, iso_ms(round(stamp * 1000)))

    def control_truth(self, stream: str) -> list[TruthRow]:
        rows = []
        with self.store.lock:
            records = list(self.store.tables[stream].records.values())
        for record in sorted(records, key=lambda r: r.id):
            updated = to_epoch_ms(record.updated_at) / 1000
            deleted_at = None
            if record.archived_at is not None:
                deleted_at = to_epoch_ms(record.archived_at) / 1000
                updated = max(updated, deleted_at)
            rows.append(TruthRow(record.id_str, updated, deleted_at is not None, deleted_at))
        return rows

    @staticmethod
    def _new_values(stream: str, n: int) -> dict[str, str]:
        if stream == "contacts":
            return {
                "firstname": "Mutant",
                "lastname": f"Number {n}",
                "email": f"mutant.{n}@mutations.example",
                "lifecyclestage": "lead",
            }
        if stream == "companies":
            return {"name": f"Mutant Company {n}", "domain": f"mutant{n}.example.com"}
        return {"dealname": f"Mutant Deal {n}", "pipeline": "default",
                "dealstage": "appointmentscheduled", "amount": str(1000 + n)}

    # -- owners ----------------------------------------------------------------------------

    def _owners(self, request: Request) -> Response:
        # Shape of fixtures/hubspot/owners_list.json; owner ids are the hubspot_owner_id values.
        email = request.arg("email")
        owners = [o for o in OWNERS if email is None or o["email"].lower() == email.lower()]
        limit = _parse_limit(request.arg("limit"), default=100, maximum=500)
        try:
            start = int(request.arg("after") or 0)
        except ValueError:
            raise validation_error("after must be numeric") from None
        stamp = iso_ms(SEED_START_MS)
        results = [
            {
                **owner,
                "type": "PERSON",
                "userId": int(owner["id"]),
                "userIdIncludingInactive": int(owner["id"]),
                "createdAt": stamp,
                "updatedAt": stamp,
                "archived": False,
            }
            for owner in owners[start : start + limit]
        ]
        body: dict[str, Any] = {"results": results}
        if start + limit < len(owners):
            body["paging"] = {"next": {"after": str(start + limit)}}
        return Response(200, body)


# -- helpers ---------------------------------------------------------------------------------


def _parse_limit(
    raw: str | None, default: int = LIST_DEFAULT_LIMIT, maximum: int = LIST_MAX_LIMIT
) -> int:
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise validation_error(f"limit must be an integer, got {raw}") from None
    if limit < 1:
        raise validation_error("limit must be at least 1")
    return min(limit, maximum)


def _encode_cursor(record_id: int) -> str:
    # An opaque cursor naming the next id, base64 like HubSpot's ("NTI1Cg..."); unpadded so it
    # needs no URL escaping.
    return base64.urlsafe_b64encode(str(record_id).encode()).rstrip(b"=").decode()


def _decode_cursor(raw: str | None) -> int | None:
    if not raw:
        return None
    try:
        return int(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        raise validation_error(f"Invalid paging cursor after={raw}") from None
