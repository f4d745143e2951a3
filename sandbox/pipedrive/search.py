"""GET /v1/persons/search and /api/v2/persons/search (CONTRACTS 3.5).

``term`` needs 2 characters (1 with ``exact_match``); ``exact_match`` compares whole values
and is not case-sensitive; ``fields`` is a subset of custom_fields,email,notes,phone,name.
An exact e-mail search uses the store's e-mail index; anything else scans the persons once and
the result is cached until the next write.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.kit.core import Request
from sandbox.pipedrive.errors import bad_request
from sandbox.pipedrive.schema import CUSTOM_FIELDS, ENUM_FIELDS
from sandbox.pipedrive.store import Record, Store

SEARCH_FIELDS = ("custom_fields", "email", "notes", "phone", "name")


@dataclass(frozen=True)
class Search:
    term: str
    fields: tuple[str, ...]
    exact: bool
    org_id: int | None


def parse_search(request: Request) -> Search:
    term = (request.arg("term") or "").strip()
    exact = (request.arg("exact_match") or "false").lower() in ("true", "1")
    if len(term) < (1 if exact else 2):
        raise bad_request(
            "Validation failed: term: must be at least 2 characters long (1 with exact_match)"
        )
    raw_fields = request.arg("fields")
    fields = tuple(f for f in raw_fields.split(",") if f) if raw_fields else SEARCH_FIELDS
    unknown = [f for f in fields if f not in SEARCH_FIELDS]
    if unknown:
        raise bad_request(
            f"Validation failed: fields: {', '.join(unknown)} is not one of "
            + ", ".join(SEARCH_FIELDS)
        )
    org_id = None
    if request.arg("organization_id"):
        try:
            org_id = int(request.arg("organization_id"))
        except ValueError:
            raise bad_request("Validation failed: organization_id: must be integer") from None
    return Search(term, tuple(sorted(set(fields))), exact, org_id)


def run_search(store: Store, search: Search) -> list[tuple[float, Record, list[str]]]:
    """[(result_score, person, matched custom field values)] best first, then by id."""
    return store.view(("search", search), lambda: _run(store, search))


def _run(store: Store, search: Search) -> list[tuple[float, Record, list[str]]]:
    term = search.term.lower()
    if search.exact and search.fields == ("email",):
        candidates = [store.record("persons", i) for i in store.persons_by_email(term)]
    else:
        candidates = list(store.active_records("persons"))
    hits = []
    for person in candidates:
        if person is None or (search.org_id is not None and person["org_id"] != search.org_id):
            continue
        best, custom = 0.0, []
        for value, is_custom in _values(person, search.fields):
            score = _score(value, term, search.exact)
            if score:
                best = max(best, score)
                if is_custom:
                    custom.append(value)
        if best:
            hits.append((best, person, custom))
    hits.sort(key=lambda hit: (-hit[0], hit[1]["id"]))
    return hits


def _values(person: Record, fields: tuple[str, ...]):
    if "name" in fields:
        yield person["name"], False
    if "email" in fields:
        for entry in person["emails"]:
            yield entry["value"], False
    if "phone" in fields:
        for entry in person["phones"]:
            yield entry["value"], False
    if "custom_fields" in fields:
        for key in CUSTOM_FIELDS["persons"]:
            value = person["custom_fields"].get(key)
            # Option ids are not searchable text; varchar values are.
            if isinstance(value, str) and key not in ENUM_FIELDS:
                yield value, True
    # "notes": contact-sync notes are not kept by the sandbox, so nothing matches.


def _score(value: str, term: str, exact: bool) -> float:
    """A result_score in (0, 1]: 1 for a whole-value match, less for partial ones."""
    if not value:
        return 0.0
    lowered = value.lower()
    if lowered == term:
        return 1.0
    if exact or term not in lowered:
        return 0.0
    return round(0.2 + 0.6 * len(term) / len(lowered), 4)
