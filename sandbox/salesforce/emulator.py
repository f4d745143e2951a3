"""Salesforce REST API emulator (v58-v60), written from /work/shared/vendor-api/CONTRACTS.md
section 2 and the recordings in ``fixtures/salesforce/``.

    sandbox = SalesforceSandbox(contacts=1000)
    with sandbox.start() as running:        # http://127.0.0.1:<port>
        httpx.get(running.url + "/services/data/v59.0/query",
                  params={"q": "SELECT Id, Email FROM Contact"},
                  headers={"Authorization": "Bearer sandbox-session-id"})

One host serves both login.salesforce.com (OAuth, oauth.py) and the instance the token's
``instance_url`` names. Objects: Contact, Account, Opportunity, Lead, Task, Event, Note (+
read-only User). Records live in store.py, seed data in seed.py, SOQL in soql.py (parser) and
query.py (execution and paging).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from sandbox.kit.control import TruthRow
from sandbox.kit.core import AccessToken, App, Request, Response, SlidingWindowLimiter
from sandbox.kit.emulator import Emulator
from sandbox.salesforce.errors import (
    SalesforceError,
    bad_request,
    entity_is_deleted,
    for_status,
    invalid_auth_header,
    invalid_field_on_write,
    invalid_session,
    malformed_id,
    not_found,
    request_limit_exceeded,
    required_fields_missing,
)
from sandbox.salesforce.ids import make_id, normalize_id
from sandbox.salesforce.oauth import DEFAULT_SCOPES, OAuthRoutes, SalesforceOAuth
from sandbox.salesforce.query import MAX_BATCH, MIN_BATCH, QueryEngine, batch_size_from
from sandbox.salesforce.schema import SCHEMAS, ObjectSchema, schema_for, version_label
from sandbox.salesforce.seed import populate
from sandbox.salesforce.store import PathError, Record, Selection, Store
from sandbox.salesforce.values import (
    check_reference,
    coerce,
    datetime_to_epoch,
    format_date,
    format_datetime,
)

ORG_KEY = "org"  # CONTRACTS 2.7: the API allocation is per org, rolling 24 hours
DAY = 86_400
# Sforce-Limit-Info needs a maximum even with daily_limit=None (our choice: a large number).
UNLIMITED_REPORTED_MAX = 5_000_000
COMPOSITE_MAX = 200  # CONTRACTS 2.4: sObject Collections take at most 200 records
# External-id style keys accepted by upsert (PATCH .../sobjects/{Type}/{Field}/{value}). Email
# worked as a key in the recorded org (CONTRACTS 2.4, UNCONFIRMED for every org).
UPSERT_KEYS = {"Contact": ("Id", "Email"), "Lead": ("Id", "Email")}

# GET /limits: the recorded fixture's shape (a subset of its keys); DailyApiRequests is live.
STATIC_LIMITS = {
    "DailyAsyncApexExecutions": 250000,
    "DailyBulkApiBatches": 15000,
    "DailyBulkV2QueryFileStorageMB": 976562,
    "DailyBulkV2QueryJobs": 10000,
    "DailyDurableStreamingApiEvents": 10000,
    "DailyGenericStreamingApiEvents": 10000,
    "DailyStreamingApiEvents": 10000,
    "DailyWorkflowEmails": 8040,
    "DataStorageMB": 5,
    "FileStorageMB": 20,
    "HourlyTimeBasedWorkflow": 50,
    "MassEmail": 10,
    "SingleEmail": 15,
    "StreamingApiConcurrentClients": 20,
}

Handler = Callable[..., Response]
# The field /__sandbox/mutate changes on an update, per object.
MUTATED_FIELD = {"Contact": "Title", "Account": "Description", "Opportunity": "NextStep"}


class SalesforceSandbox(Emulator):
    """A Salesforce org in memory, served over HTTP by :meth:`start`."""

    name = "salesforce"
    # An allocation no demo sync exhausts (the Sforce-Limit-Info header is still sent) and a
    # few activities and leads to sync.
    DEMO_OPTIONS: ClassVar[dict[str, Any]] = {
        "daily_limit": 5_000_000,
        "leads": 50,
        "tasks": 200,
        "events": 100,
        "notes": 100,
    }
    # A session, and a refresh token because the scopes allow one (oauth.py).
    TOKEN_SCOPES = DEFAULT_SCOPES
    CONTROL_STREAMS: ClassVar[dict[str, str]] = {
        "contacts": "Contact",
        "companies": "Account",
        "deals": "Opportunity",
    }

    def __init__(
        self,
        *,
        seed: int = 42,
        contacts: int = 200,
        companies: int = 50,
        deals: int = 100,
        leads: int = 20,
        tasks: int = 0,
        events: int = 0,
        notes: int = 0,
        batch_size: int = 2000,
        daily_limit: int | None = 100_000,
        token_lifetime: int = 7200,
        rotate_refresh_tokens: bool = False,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        static_tokens: Iterable[str] = ("sandbox-session-id",),
        api_versions: Iterable[str] = ("58.0", "59.0", "60.0"),
        error_rate: float = 0.0,
        latency_ms: float = 0,
    ) -> None:
        if not MIN_BATCH <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be {MIN_BATCH}..{MAX_BATCH}, got {batch_size}")
        self.api_versions = tuple(sorted({f"{float(v):.1f}" for v in api_versions}, key=float))
        if not self.api_versions:
            raise ValueError("api_versions must name at least one version")
        self.batch_size = batch_size
        self.daily_limit = daily_limit
        app = App(
            error_rate=error_rate,
            error_statuses=(500, 503),
            latency_ms=latency_ms,
            seed=seed,
            json_content_type="application/json;charset=UTF-8",  # as recorded (_meta.json)
        )
        # self.url (set by start()) is the instance_url of every token.
        super().__init__(
            app, client_id=client_id, client_secret=client_secret, static_tokens=static_tokens
        )
        self.store = Store()
        self.api_user_id = populate(
            self.store,
            seed,
            contacts=contacts,
            companies=companies,
            deals=deals,
            leads=leads,
            tasks=tasks,
            events=events,
            notes=notes,
        )
        self.org_id = make_id("00D", 1_000_000 + seed % 1_000_000)
        # Access tokens look like Salesforce session ids: "<15-char org id>!<secret>".
        self.oauth = SalesforceOAuth(
            clients={client_id: client_secret},
            clock=self.clock,
            token_lifetime=token_lifetime,
            rotate_refresh_tokens=rotate_refresh_tokens,
            static_tokens=self.static_tokens,
            token_prefix=self.org_id[:15] + "!",
        )
        self.usage = SlidingWindowLimiter(
            daily_limit if daily_limit is not None else 1 << 62, DAY, self.clock
        )
        self.queries = QueryEngine(self.store, self.clock)
        self._revision = 0  # numbers the values /__sandbox/mutate writes
        self._get_selections: dict[tuple[str, str | None], Selection] = {}
        self._selections_lock = threading.Lock()
        self.app.not_found = lambda request: not_found().response()
        self.app.error_response = for_status
        OAuthRoutes(
            self.app,
            self.oauth,
            clock=self.clock,
            base_url=self.base_url,
            org_id=self.org_id,
            user=self._api_user,
        )
        self._register_api_routes()

    # -- connection details and test hooks -------------------------------------------------

    def connection_config(self, url: str) -> dict[str, Any]:
        """connectors/salesforce.yaml settings for this sandbox: it is the OAuth host; the API
        host comes from the token response's instance_url (this same URL). Its Contact custom
        fields are worth syncing."""
        return {"login_url": url, "extra_fields": ["Favorite_Color__c", "Customer_Tier__c"],
                "phone_region": "US"}  # the org's phones are US numbers like (991) 555-6759

    def describe(self) -> dict[str, str]:
        """What a person needs to point a client at this sandbox (printed by the CLI)."""
        latest = self.api_versions[-1]
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "static_token": ", ".join(self.static_tokens),
            "authorize": "/services/oauth2/authorize",
            "token": "/services/oauth2/token",
            "api": f"/services/data/v{latest}/",
            "query": f"/services/data/v{latest}/query?q=SELECT+Id,Email+FROM+Contact",
            "api_versions": ", ".join(self.api_versions),
            "daily_limit": str(self.daily_limit) if self.daily_limit else "unlimited",
        }

    def soql(self, query: str, *, all_rows: bool = False) -> list[dict]:
        """Test helper: the records a SOQL query returns (all pages, as the API renders them),
        straight from the store: no HTTP, no API usage counted."""
        return self.queries.select(query, all_rows=all_rows, version=self.api_versions[-1])

    def now(self) -> str:
        """The sandbox clock as a Salesforce datetime (second precision, like record stamps)."""
        return format_datetime(self.clock.now())

    def base_url(self, request: Request) -> str:
        return self.url or f"http://{request.headers.get('Host', '127.0.0.1')}"

    def _api_user(self) -> dict[str, Any]:
        user = self.store.as_dict(self.store.by_id[self.api_user_id])
        return {
            "user_id": user["Id"],
            "username": user["Username"],
            "alias": user["Alias"],
            "name": user["Name"],
            "email": user["Email"],
            "first_name": user["FirstName"],
            "last_name": user["LastName"],
            "updated_at": user["LastModifiedDate"],
        }

    # -- test control (sandbox/kit/control.py) ----------------------------------------------
    # Record times have whole seconds (CONTRACTS 2.3 recordings all show .000), so the 1 ms
    # steps of one mutation collapse into the same second, as in a bulk update.

    def control_live_ids(self, stream: str) -> list[str]:
        return [record.id for record in self.store.records(stream)]

    def control_create(self, stream: str, stamps: list[float]) -> list[str]:
        created = []
        for stamp in stamps:
            self._revision += 1
            n = self._revision
            values: dict[str, Any] = {
                "Contact": {"FirstName": "Mutant", "LastName": f"Number {n}",
                            "Email": f"mutant.{n}@mutations.example"},
                "Account": {"Name": f"Mutant Account {n}"},
                "Opportunity": {"Name": f"Mutant Opportunity {n}", "StageName": "Prospecting",
                                "CloseDate": format_date(stamp + 30 * DAY),
                                "Amount": float(1000 + n)},
            }[stream]
            record = self.store.insert(stream, values, format_datetime(stamp), self.api_user_id)
            created.append(record.id)
        return created

    def control_update(self, stream: str, ids: list[str], stamps: list[float]) -> None:
        name = MUTATED_FIELD[stream]
        for record_id, stamp in zip(ids, stamps, strict=True):
            self._revision += 1
            record = self.store.by_id[record_id]
            changes = {name: f"{name} revision {self._revision}"}
            # LastModifiedDate and SystemModstamp both take the stamp (a late stamp included).
            self.store.update(record, changes, format_datetime(stamp), self.api_user_id)

    def control_delete(self, stream: str, ids: list[str], stamps: list[float]) -> None:
        # What DELETE /sobjects/{Type}/{id} does: IsDeleted = true, SystemModstamp = now; the
        # row leaves /query and stays in /queryAll.
        for record_id, stamp in zip(ids, stamps, strict=True):
            record = self.store.by_id[record_id]
            self.store.delete(record, format_datetime(stamp), self.api_user_id)

    def control_truth(self, stream: str) -> list[TruthRow]:
        # updated_at is SystemModstamp (the incremental cursor field, CONTRACTS 2.3).
        schema = SCHEMAS[stream]
        slot = schema.index["SystemModstamp"]
        with self.store.lock:
            records = list(self.store.records(stream, include_deleted=True))
        rows = []
        for record in records:
            stamp = datetime_to_epoch(record.values[slot])
            deleted_at = stamp if record.deleted else None
            rows.append(TruthRow(record.id, stamp, record.deleted, deleted_at))
        return rows

    # -- routing ---------------------------------------------------------------------------

    def _register_api_routes(self) -> None:
        app = self.app
        app.add_route("GET", r"/services/data/?", self._versions, name="versions")
        base = r"/services/data/v(?P<version>[^/]+)"
        sobject = base + r"/sobjects/(?P<sobject>[^/]+)"
        record = sobject + r"/(?P<record_id>[^/]+)/?"
        routes: list[tuple[str, str, str, Handler]] = [
            ("GET", base + r"/?", "resources", self._resources),
            ("GET", base + r"/limits/?", "limits", self._limits),
            ("GET", base + r"/query/?", "query", self._query),
            ("GET", base + r"/query/(?P<locator>[^/]+)/?", "query.more", self._query_more),
            ("GET", base + r"/queryAll/?", "queryAll", self._query_all),
            ("GET", base + r"/queryAll/(?P<locator>[^/]+)/?", "queryAll.more", self._query_more),
            ("GET", base + r"/sobjects/?", "sobjects.describeGlobal", self._describe_global),
            ("POST", base + r"/composite/sobjects/?", "composite.create", self._composite_create),
            ("PATCH", base + r"/composite/sobjects/?", "composite.update", self._composite_update),
            ("GET", sobject + r"/describe/?", "sobject.describe", self._describe),
            ("GET", sobject + r"/?", "sobject.info", self._sobject_info),
            ("POST", sobject + r"/?", "sobject.create", self._create),
            ("GET", record, "sobject.get", self._get),
            ("PATCH", record, "sobject.update", self._update),
            ("DELETE", record, "sobject.delete", self._delete),
            ("PUT", record, "sobject.put", self._method_not_allowed),
            ("POST", record, "sobject.post", self._method_not_allowed),
            ("GET", sobject + r"/(?P<key>[^/]+)/(?P<value>.+)", "sobject.getByKey", self._get_by),
            ("PATCH", sobject + r"/(?P<key>[^/]+)/(?P<value>.+)", "sobject.upsert", self._upsert),
        ]
        for method, pattern, name, handler in routes:
            app.add_route(method, pattern, self._guarded(handler), name=name)
        # Anything else under a version still authenticates and counts, then 404s.
        for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
            app.add_route(
                method, base + r"(?:/.*)?", self._guarded(self._unknown), name="not_found"
            )

    def _guarded(self, handler: Handler) -> Handler:
        """Auth, the API allocation, Sforce-Limit-Info and the error array around a handler."""

        def guarded(request: Request, version: str, **params: str) -> Response:
            try:
                self._authenticate(request)
            except SalesforceError as error:
                return error.response()  # no org yet: no Sforce-Limit-Info
            allowed, remaining = self.usage.hit(ORG_KEY)
            limit = self.daily_limit or UNLIMITED_REPORTED_MAX
            used = self.usage.limit - remaining if allowed else self.usage.limit
            try:
                if not allowed:
                    # CONTRACTS 2.6: the allocation is spent -> 403 REQUEST_LIMIT_EXCEEDED.
                    raise request_limit_exceeded()
                if version not in self.api_versions:
                    raise not_found()
                response = handler(request, version=version, **params)
            except SalesforceError as error:
                response = error.response()
            # CONTRACTS 2.7: Sforce-Limit-Info: api-usage=N/M on every API response.
            response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{limit}"
            return response

        return guarded

    def _authenticate(self, request: Request) -> AccessToken:
        # CONTRACTS 2.2: "Bearer <token>"; Connect/Chatter docs also show "OAuth <token>".
        header = (request.headers.get("Authorization") or "").strip()
        if not header:
            raise invalid_session()
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            raise invalid_auth_header()
        check = self.oauth.check(token.strip())
        if check.status != "valid":
            raise invalid_session()  # unknown, revoked and expired sessions look the same
        self.oauth.touch(check)
        return check.token

    def _unknown(self, request: Request, version: str) -> Response:
        raise not_found()

    def _method_not_allowed(self, request: Request, version: str, **params: str) -> Response:
        raise SalesforceError(
            405,
            "METHOD_NOT_ALLOWED",
            f"HTTP Method '{request.method}' not allowed. Allowed are HEAD,GET,PATCH,DELETE",
        )

    # -- versions, resources, limits -------------------------------------------------------

    def _versions(self, request: Request) -> Response:
        # fixtures/salesforce/versions_list.json: no auth, no Sforce-Limit-Info.
        return Response(
            200,
            [
                {"label": version_label(v), "url": f"/services/data/v{v}", "version": v}
                for v in self.api_versions
            ],
        )

    def _resources(self, request: Request, version: str) -> Response:
        base = f"/services/data/v{version}"
        names = ("composite", "limits", "query", "queryAll", "sobjects")
        return Response(200, {name: f"{base}/{name}" for name in names})

    def _limits(self, request: Request, version: str) -> Response:
        # fixtures/salesforce/limits.json: {"Name": {"Max", "Remaining"}} sorted by name.
        limit = self.daily_limit or UNLIMITED_REPORTED_MAX
        used = self.usage.limit - self.usage.remaining(ORG_KEY)
        limits = {name: {"Max": n, "Remaining": n} for name, n in STATIC_LIMITS.items()}
        limits["DailyApiRequests"] = {"Max": limit, "Remaining": max(0, limit - used)}
        return Response(200, dict(sorted(limits.items())))

    # -- query -----------------------------------------------------------------------------

    def _run_query(self, request: Request, version: str, all_rows: bool) -> Response:
        soql = request.arg("q")
        if not soql or not soql.strip():
            raise bad_request("MALFORMED_QUERY", "A query string has to be specified")
        # Sforce-Query-Options: batchSize=N (200..2000) overrides the sandbox default.
        batch = batch_size_from(request.headers.get("Sforce-Query-Options"), self.batch_size)
        body = self.queries.query(soql, all_rows=all_rows, version=version, batch_size=batch)
        return Response(200, body)

    def _query(self, request: Request, version: str) -> Response:
        return self._run_query(request, version, all_rows=False)

    def _query_all(self, request: Request, version: str) -> Response:
        # CONTRACTS 2.3: queryAll also returns deleted (IsDeleted = true) records.
        return self._run_query(request, version, all_rows=True)

    def _query_more(self, request: Request, version: str, locator: str) -> Response:
        return Response(200, self.queries.more(locator, version=version))

    # -- describe --------------------------------------------------------------------------

    def _object_urls(self, schema: ObjectSchema, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{schema.name}"
        return {
            "sobject": base,
            "describe": f"{base}/describe",
            "rowTemplate": f"{base}/{{ID}}",
        }

    def _object_summary(self, schema: ObjectSchema, version: str) -> dict[str, Any]:
        return {
            "name": schema.name,
            "label": schema.label,
            "labelPlural": schema.label_plural,
            "keyPrefix": schema.key_prefix,
            "custom": False,
            "queryable": True,
            "retrieveable": True,
            "searchable": True,
            "createable": schema.writable,
            "updateable": schema.writable,
            "deletable": schema.writable,
            "urls": self._object_urls(schema, version),
        }

    def _describe_global(self, request: Request, version: str) -> Response:
        objects = [self._object_summary(SCHEMAS[name], version) for name in sorted(SCHEMAS)]
        return Response(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects})

    def _schema(self, sobject: str) -> ObjectSchema:
        schema = schema_for(sobject)
        if schema is None:
            raise not_found()  # error_404_not_found_unknown_sobject.json
        return schema

    def _sobject_info(self, request: Request, version: str, sobject: str) -> Response:
        schema = self._schema(sobject)
        return Response(
            200, {"objectDescribe": self._object_summary(schema, version), "recentItems": []}
        )

    def _describe(self, request: Request, version: str, sobject: str) -> Response:
        schema = self._schema(sobject)
        fields = []
        for f in schema.fields:
            fields.append(
                {
                    "name": f.name,
                    "label": f.label,
                    "type": f.type,
                    "length": f.length,
                    "custom": f.custom,
                    "nillable": not f.required and f.type != "boolean" and f.name != "Id",
                    "createable": f.createable and schema.writable,
                    "updateable": f.updateable and schema.writable,
                    "filterable": f.filterable,
                    "sortable": f.sortable,
                    "idLookup": f.name == "Id" or f.name in UPSERT_KEYS.get(schema.name, ()),
                    "externalId": False,
                    "referenceTo": list(f.reference_to),
                    "relationshipName": f.relationship,
                    "polymorphicForeignKey": len(f.reference_to) > 1,
                    "restrictedPicklist": f.restricted,
                    "picklistValues": [_picklist_entry(v) for v in f.picklist],
                }
            )
        body = {**self._object_summary(schema, version), "fields": fields}
        return Response(200, body)

    # -- single records --------------------------------------------------------------------

    def _find(self, schema: ObjectSchema, record_id: str) -> Record:
        canonical = normalize_id(record_id)
        if canonical is None or canonical[:3] != schema.key_prefix:
            # Choice: any id that is not a well-formed id of this object is MALFORMED_ID
            # (error_400_malformed_id.json), for GET as for PATCH/DELETE.
            raise malformed_id(record_id)
        found = self.store.by_id.get(canonical)
        if found is None:
            raise not_found()
        if found.deleted:
            raise entity_is_deleted()  # error_404_entity_is_deleted.json
        return found

    def _selection(self, schema: ObjectSchema, fields: str | None) -> Selection:
        key = (schema.name, fields)
        selection = self._get_selections.get(key)
        if selection is None:
            names = None
            if fields is not None:
                names = [name.strip() for name in fields.split(",") if name.strip()]
                if not any(name.lower() == "id" for name in names):
                    names.append("Id")  # a ?fields= GET always returns the Id
            try:
                selection = self.store.selection(schema.name, names)
            except PathError as error:
                raise bad_request(
                    "INVALID_FIELD",
                    f"No such column '{error.name}' on entity '{error.entity}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' after the "
                    "custom field name. Please reference your WSDL or the describe call for the "
                    "appropriate names.",
                ) from None
            with self._selections_lock:
                if len(self._get_selections) > 256:
                    self._get_selections.clear()
                self._get_selections[key] = selection
        return selection

    def _get(self, request: Request, version: str, sobject: str, record_id: str) -> Response:
        schema = self._schema(sobject)
        record = self._find(schema, record_id)
        selection = self._selection(schema, request.arg("fields"))
        return Response(200, selection.render(record, version))

    def _create(self, request: Request, version: str, sobject: str) -> Response:
        schema = self._writable(sobject)
        changes = self._validate(schema, self._body(request), creating=True)
        record = self.store.insert(schema.name, changes, self.now(), self.api_user_id)
        return self._created(schema, record, version)

    def _created(
        self, schema: ObjectSchema, record: Record, version: str, **extra: Any
    ) -> Response:
        # CONTRACTS 2.4: 201 {"id","success":true,"errors":[]} + Location.
        location = f"/services/data/v{version}/sobjects/{schema.name}/{record.id}"
        body = {"id": record.id, "success": True, "errors": [], **extra}
        return Response(201, body, {"Location": location})

    def _update(self, request: Request, version: str, sobject: str, record_id: str) -> Response:
        schema = self._writable(sobject)
        record = self._find(schema, record_id)
        changes = self._validate(schema, self._body(request), creating=False, record=record)
        self.store.update(record, changes, self.now(), self.api_user_id)
        return Response(204)  # CONTRACTS 2.4: 204 No Content, empty body

    def _delete(self, request: Request, version: str, sobject: str, record_id: str) -> Response:
        schema = self._writable(sobject)
        record = self._find(schema, record_id)  # a second DELETE -> 404 ENTITY_IS_DELETED
        self.store.delete(record, self.now(), self.api_user_id)
        return Response(204)

    def _writable(self, sobject: str) -> ObjectSchema:
        schema = self._schema(sobject)
        if not schema.writable:
            raise bad_request(
                "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id"
            )
        return schema

    # -- external-id style keys: GET and upsert --------------------------------------------

    def _by_key(self, schema: ObjectSchema, key: str, value: str) -> tuple[str, list[Record]]:
        field = schema.field(key)
        if field is None or field.name not in UPSERT_KEYS.get(schema.name, ("Id",)):
            raise SalesforceError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {key}",
            )
        if field.name == "Id":
            canonical = normalize_id(value)
            found = self.store.by_id.get(canonical) if canonical else None
            live = found is not None and not found.deleted
            return field.name, [found] if live and canonical[:3] == schema.key_prefix else []
        return field.name, self.store.find(schema.name, field.name, value)

    def _multiple(self, schema: ObjectSchema, records: list[Record], version: str) -> Response:
        # CONTRACTS 2.4 / SF-DOC-ERR: several matches -> 300 with the candidates' URLs.
        base = f"/services/data/v{version}/sobjects/{schema.name}/"
        return Response(300, [base + record.id for record in records])

    def _get_by(
        self, request: Request, version: str, sobject: str, key: str, value: str
    ) -> Response:
        schema = self._schema(sobject)
        _, records = self._by_key(schema, key, value)
        if not records:
            raise not_found()
        if len(records) > 1:
            return self._multiple(schema, records, version)
        selection = self._selection(schema, request.arg("fields"))
        return Response(200, selection.render(records[0], version))

    def _upsert(
        self, request: Request, version: str, sobject: str, key: str, value: str
    ) -> Response:
        # CONTRACTS 2.4: 201 {..., "created": true} or 200 {..., "created": false}.
        schema = self._writable(sobject)
        field_name, records = self._by_key(schema, key, value)
        body = self._body(request)
        if len(records) > 1:
            return self._multiple(schema, records, version)
        location = f"/services/data/v{version}/sobjects/{schema.name}/"
        if records:
            record = records[0]
            changes = self._validate(schema, body, creating=False, record=record)
            self.store.update(record, changes, self.now(), self.api_user_id)
            result = {"id": record.id, "success": True, "errors": [], "created": False}
            return Response(200, result, {"Location": location + record.id})
        if field_name == "Id":
            raise not_found()
        changes = self._validate(schema, {**body, field_name: value}, creating=True)
        record = self.store.insert(schema.name, changes, self.now(), self.api_user_id)
        return self._created(schema, record, version, created=True)

    # -- sObject Collections ---------------------------------------------------------------

    def _composite_create(self, request: Request, version: str) -> Response:
        return self._composite(request, creating=True)

    def _composite_update(self, request: Request, version: str) -> Response:
        return self._composite(request, creating=False)

    def _composite(self, request: Request, creating: bool) -> Response:
        """POST/PATCH /composite/sobjects: one result per record, in order (CONTRACTS 2.4)."""
        body = self._body(request)
        records = body.get("records")
        if not isinstance(records, list) or not records:
            raise bad_request("INVALID_FIELD", "Required field is missing: records")
        if len(records) > COMPOSITE_MAX:
            raise bad_request(
                "EXCEEDED_ID_LIMIT", f"Record limit reached. Limit is: {COMPOSITE_MAX}"
            )
        all_or_none = bool(body.get("allOrNone"))
        planned: list[tuple[ObjectSchema, Record | None, dict] | SalesforceError] = []
        for item in records:
            try:
                planned.append(self._plan_collection_item(item, creating))
            except SalesforceError as error:
                planned.append(error)
        failed = any(isinstance(entry, SalesforceError) for entry in planned)
        results = []
        for entry in planned:
            if isinstance(entry, SalesforceError):
                results.append({"success": False, "errors": [_collection_error(entry)]})
            elif all_or_none and failed:
                rolled_back = SalesforceError(
                    400,
                    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "Record rolled back because not all records were valid and the request "
                    "was using AllOrNone header",
                    [],
                )
                results.append({"success": False, "errors": [_collection_error(rolled_back)]})
            else:
                schema, record, changes = entry
                if record is None:
                    record = self.store.insert(schema.name, changes, self.now(), self.api_user_id)
                else:
                    self.store.update(record, changes, self.now(), self.api_user_id)
                results.append({"id": record.id, "success": True, "errors": []})
        return Response(200, results)

    def _plan_collection_item(
        self, item: object, creating: bool
    ) -> tuple[ObjectSchema, Record | None, dict]:
        if not isinstance(item, dict):
            raise bad_request("JSON_PARSER_ERROR", "each record must be a JSON object")
        attributes = item.get("attributes")
        type_name = attributes.get("type") if isinstance(attributes, dict) else None
        if not type_name:
            raise bad_request("INVALID_TYPE", "Must send a concrete entity type.")
        schema = self._writable(type_name)
        fields = {k: v for k, v in item.items() if k.lower() != "id"}
        if creating:
            return schema, None, self._validate(schema, fields, creating=True)
        record_id = next((v for k, v in item.items() if k.lower() == "id"), None)
        if not isinstance(record_id, str):
            raise bad_request("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        record = self._find(schema, record_id)
        return schema, record, self._validate(schema, fields, creating=False, record=record)

    # -- validation ------------------------------------------------------------------------

    @staticmethod
    def _body(request: Request) -> dict:
        try:
            body = request.json()
        except ValueError:
            raise bad_request(
                "JSON_PARSER_ERROR",
                "Unexpected character: expected a valid value (number, String, array, object, "
                "'true', 'false' or 'null') at [line:1, column:1]",
            ) from None
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise bad_request(
                "JSON_PARSER_ERROR",
                "Cannot deserialize instance of SObject from START_ARRAY value [line:1, column:1]",
            )
        return body

    def _validate(
        self, schema: ObjectSchema, body: dict, *, creating: bool, record: Record | None = None
    ) -> dict[str, Any]:
        """Field values of a create/update body, checked as Salesforce checks them."""
        changes: dict[str, Any] = {}
        for key, value in body.items():
            if key == "attributes":
                continue
            field = schema.field(key)
            if field is None:
                raise invalid_field_on_write(key, schema.name)
            if not (field.createable if creating else field.updateable):
                raise bad_request(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {field.name}. Please check the security "
                    "settings of this field and verify that it is read/write for your profile "
                    "or permission set.",
                    [field.name],
                )
            stored = coerce(field, value)
            if field.type == "reference" and stored is not None:
                stored = check_reference(field, stored, self.store.live_object_of)
            changes[field.name] = stored
        current = self.store.as_dict(record) if record is not None else {}
        merged = {**current, **changes}
        required = [f.name for f in schema.fields if f.required]
        if creating:
            missing = [name for name in required if merged.get(name) is None]
        else:
            missing = [name for name in required if name in changes and changes[name] is None]
        if schema.name == "Event":
            missing += _event_missing(merged)
        if missing:
            raise required_fields_missing(missing)
        if schema.name == "Event":
            start, end = merged.get("StartDateTime"), changes.get("EndDateTime")
            if start and end and end < start:
                raise bad_request(
                    "FIELD_INTEGRITY_EXCEPTION",
                    "End Date Time: End Date Time cannot be earlier than Start Date Time",
                    ["EndDateTime"],
                )
        return changes


def _event_missing(values: dict[str, Any]) -> list[str]:
    """An event needs a start and either a duration or an end."""
    missing = []
    if values.get("StartDateTime") is None and values.get("ActivityDateTime") is None:
        missing.append("StartDateTime")
    if values.get("DurationInMinutes") is None and values.get("EndDateTime") is None:
        missing.append("DurationInMinutes")
    return missing


def _picklist_entry(value: str) -> dict[str, Any]:
    return {"active": True, "defaultValue": False, "label": value, "validFor": None, "value": value}


def _collection_error(error: SalesforceError) -> dict[str, Any]:
    # composite_sobjects_update_response.json: per-record errors use "statusCode".
    return {"statusCode": error.error_code, "message": error.message, "fields": error.fields or []}
