"""Pebble CRM: the small REST API that docs/spec-language.md's tutorial adds a connector for.

Pebble is made up for the tutorial; its API is shaped like many real ones. What its
documentation says (the tutorial quotes it; the code below is the whole of it):

- Base URL `https://api.pebblecrm.example/v2`. HTTP Basic auth: the API key is the username,
  the password is empty. A missing or wrong key: 401.
- One error envelope, whatever the status: `{"error": {"type", "message", "fields"?}}`;
  types `invalid_request` (400, `fields` says which), `unauthorized` (401), `not_found` (404),
  `rate_limited` (429, with `Retry-After`; the request was not processed).
- Rate limit: 60 requests per 10 seconds per key. Every response says how much is left:
  `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds); keys issued before
  2024 get the same numbers as `X-RateLimit-Limit`, `X-RateLimit-Remaining`,
  `X-RateLimit-Reset` instead.
- Lists take `_skip` and `_limit` (at most 100) and answer `{"data": [...], "has_more": bool}`,
  oldest first.
- `GET /contacts`, `GET /contacts/{id}`, `POST /contacts` (201 with the contact; `last_name`
  required); `GET /companies`, `GET /companies/{id}`.
- A contact: `id` ("cont_..."), `first_name`, `last_name`, `title`, `emails` and `phones`
  (lists of `{email|phone, type}`, the first is the main one), `company_id`, `date_created`,
  `date_updated` (ISO 8601, UTC) and `custom` (the account's own fields, by name).
  A company: `id` ("comp_..."), `name`, `url`, `industry`, `address` (`city`, `country`),
  `date_created`, `date_updated`, `custom`.
"""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.kit import App, Request, Response
from sandbox.kit.core import SlidingWindowLimiter

MAX_LIMIT = 100
INDUSTRIES = ["Software", "Retail", "Manufacturing", "Health", "Finance"]
CITIES = [("Lisbon", "PT"), ("Leeds", "GB"), ("Lyon", "FR"), ("Leipzig", "DE")]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
EPOCH = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def _when(n: int) -> str:
    return (EPOCH + timedelta(minutes=n)).isoformat(timespec="microseconds")


class PebbleApi:
    """The emulator: seeded, deterministic, in memory. Serve `app` with sandbox.kit.serve."""

    def __init__(self, *, api_key: str = "pk_live_tutorial_3f9a", contacts: int = 230,
                 companies: int = 35, limit: int = 60, window: float = 10.0,
                 legacy_headers: bool = False) -> None:
        self.api_key = api_key
        self.legacy_headers = legacy_headers
        self.app = App()
        self.limiter = SlidingWindowLimiter(limit, window, self.app.clock)
        self.lock = threading.Lock()
        self.companies = [self._company(i) for i in range(companies)]
        self.contacts = [self._contact(i, companies) for i in range(contacts)]
        self.created = 0
        for method, pattern, handler in [
            ("GET", r"/v2/contacts", self.list_contacts),
            ("POST", r"/v2/contacts", self.create_contact),
            ("GET", r"/v2/contacts/(?P<record_id>[^/]+)", self.get_contact),
            ("GET", r"/v2/companies", self.list_companies),
            ("GET", r"/v2/companies/(?P<record_id>[^/]+)", self.get_company),
        ]:
            self.app.add_route(method, pattern, self._guarded(handler))
        self.app.not_found = lambda request: self.error(404, "not_found",
                                                        f"no route {request.path}")
        self.app.error_response = lambda status: self.error(status, "server_error",
                                                            "something went wrong")

    # -- seed -------------------------------------------------------------------------------
    def _company(self, i: int) -> dict[str, Any]:
        city, country = CITIES[i % len(CITIES)]
        return {"id": f"comp_{i:04d}", "name": f"{LAST[i % len(LAST)]} & Co {i}",
                "url": f"https://company{i}.example", "industry": INDUSTRIES[i % 5],
                "address": {"city": city, "country": country}, "date_created": _when(i),
                "date_updated": _when(i + 60), "custom": {"Segment": "SMB" if i % 3 else "ENT"}}

    def _contact(self, i: int, companies: int) -> dict[str, Any]:
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        return {
            "id": f"cont_{i:05d}", "first_name": first, "last_name": last,
            "title": "Engineer" if i % 2 else "Director",
            "emails": [{"email": f"{first}.{last}.{i}@example.com".lower(), "type": "office"}],
            "phones": [{"phone": f"+44 20 7946 {i:04d}", "type": "office"}] if i % 4 else [],
            "company_id": f"comp_{i % companies:04d}" if companies and i % 5 else None,
            "date_created": _when(i), "date_updated": _when(i + 30),
            "custom": {"Tier": ["Gold", "Silver", "Bronze"][i % 3], "Newsletter": i % 2 == 0},
        }

    # -- the HTTP surface ---------------------------------------------------------------------
    def error(self, status: int, type_: str, message: str, **extra: Any) -> Response:
        return Response(status, {"error": {"type": type_, "message": message, **extra}})

    def _rate_headers(self, remaining: int) -> dict[str, str]:
        prefix = "X-RateLimit-" if self.legacy_headers else "RateLimit-"
        return {f"{prefix}Limit": str(self.limiter.limit),
                f"{prefix}Remaining": str(remaining),
                f"{prefix}Reset": str(int(self.limiter.window))}

    def _guarded(self, handler: Any) -> Any:
        def guarded(request: Request, **params: str) -> Response:
            if request.headers.get("authorization") != self._expected_authorization():
                return self.error(401, "unauthorized", "invalid API key; send it as the "
                                                       "username of HTTP Basic auth")
            allowed, remaining = self.limiter.hit(self.api_key)
            if not allowed:
                response = self.error(429, "rate_limited", "too many requests")
                response.headers.update({**self._rate_headers(0),
                                         "Retry-After": str(int(self.limiter.window))})
                return response
            response = handler(request, **params)
            response.headers.update(self._rate_headers(remaining))
            return response

        return guarded

    def _expected_authorization(self) -> str:
        return "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode()

    def _page(self, records: list[dict[str, Any]], request: Request) -> Response:
        try:
            skip = int(request.arg("_skip") or 0)
            limit = int(request.arg("_limit") or MAX_LIMIT)
        except ValueError:
            return self.error(400, "invalid_request", "_skip and _limit are numbers")
        if limit > MAX_LIMIT or limit < 1 or skip < 0:
            return self.error(400, "invalid_request", f"_limit is 1 to {MAX_LIMIT}",
                              fields={"_limit": "out of range"})
        with self.lock:
            page = records[skip:skip + limit]
            return Response(200, {"data": page, "has_more": skip + limit < len(records)})

    def list_contacts(self, request: Request) -> Response:
        return self._page(self.contacts, request)

    def list_companies(self, request: Request) -> Response:
        return self._page(self.companies, request)

    def _one(self, records: list[dict[str, Any]], record_id: str, what: str) -> Response:
        with self.lock:
            found = next((r for r in records if r["id"] == record_id), None)
        if found is None:
            return self.error(404, "not_found", f"no {what} with id {record_id}")
        return Response(200, found)

    def get_contact(self, request: Request, record_id: str) -> Response:
        return self._one(self.contacts, record_id, "contact")

    def get_company(self, request: Request, record_id: str) -> Response:
        return self._one(self.companies, record_id, "company")

    def create_contact(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return self.error(400, "invalid_request", "the body is not JSON")
        if not isinstance(body, dict):
            return self.error(400, "invalid_request", "the body is not a JSON object")
        allowed = {"first_name", "last_name", "title", "emails", "phones", "company_id",
                   "custom"}
        fields = {k: "unknown field" for k in body if k not in allowed}
        if not body.get("last_name"):
            fields["last_name"] = "required"
        for key, inner in (("emails", "email"), ("phones", "phone")):
            value = body.get(key, [])
            if not isinstance(value, list) or any(
                    not isinstance(v, dict) or inner not in v for v in value):
                fields[key] = f"a list of {{{inner}, type}}"
        if body.get("company_id") and not any(c["id"] == body["company_id"]
                                              for c in self.companies):
            fields["company_id"] = "no such company"
        if fields:
            return self.error(400, "invalid_request", "the contact is not valid", fields=fields)
        with self.lock:
            self.created += 1
            now = datetime.now(UTC).isoformat(timespec="microseconds")
            contact = {"id": f"cont_new{self.created:04d}", "first_name": None, "title": None,
                       "emails": [], "phones": [], "company_id": None, "custom": {},
                       **body, "date_created": now, "date_updated": now}
            self.contacts.append(contact)
        return Response(201, contact)


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.tutorial.pebble_api [--port N]`: serve it until Ctrl-C."""
    import argparse
    import time

    from sandbox.kit import serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8200)
    args = parser.parse_args(argv)
    api = PebbleApi()
    running = serve(api.app, port=args.port)
    print(f"Pebble CRM API at {running.url}/v2 (API key: {api.api_key}); Ctrl-C stops it",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        running.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
