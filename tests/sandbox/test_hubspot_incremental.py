"""HubSpot incremental sync surface over real HTTP: CRM search on the last-modified property
(CONTRACTS 1.5), the 10,000-result cap, bursts sharing one timestamp, late-visible records and
archived records (CONTRACTS 1.3/1.4), driven by /__sandbox/mutate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from sandbox.hubspot import HubSpotSandbox
from sandbox.kit import RunningSandbox

TOKEN = "sandbox-private-app-token"
UNLIMITED = {"rate_limit": None, "search_rate_limit": None, "daily_limit": None}
MODIFIED = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate",
            "deals": "hs_lastmodifieddate"}  # fmt: skip
RATE_HEADER_PREFIX = "x-hubspot-ratelimit"


def open_client(running: RunningSandbox) -> httpx.Client:
    return httpx.Client(
        base_url=running.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )


@pytest.fixture
def portal() -> Iterator[tuple[HubSpotSandbox, httpx.Client]]:
    emulator = HubSpotSandbox(contacts=60, companies=10, deals=10, **UNLIMITED)
    with emulator.start() as running, open_client(running) as client:
        yield emulator, client


def search(client: httpx.Client, object_type: str, body: dict) -> httpx.Response:
    return client.post(f"/crm/v3/objects/{object_type}/search", json=body)


def changes_body(object_type: str, *filters: tuple[str, str, str], **extra) -> dict:
    """A search body: filters (property, operator, value) in one group, sorted by the
    last-modified property ascending, 200 a page."""
    return {
        "filterGroups": [
            {"filters": [{"propertyName": p, "operator": o, "value": v} for p, o, v in filters]}
        ],
        "sorts": [{"propertyName": MODIFIED[object_type], "direction": "ASCENDING"}],
        "properties": [MODIFIED[object_type]],
        "limit": 200,
        **extra,
    }


def all_pages(client: httpx.Client, object_type: str, body: dict) -> list[dict]:
    results, after = [], None
    while True:
        response = search(client, object_type, {**body, **({"after": after} if after else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        results += page["results"]
        if "paging" not in page:
            return results
        after = page["paging"]["next"]["after"]


@pytest.mark.parametrize("object_type", ["contacts", "companies", "deals"])
def test_gte_includes_the_boundary_and_results_are_ascending(portal, object_type) -> None:
    emulator, client = portal
    prop = MODIFIED[object_type]
    first = emulator.mutate(object_type, update=3)
    second = emulator.mutate(object_type, create=2, update=2)
    cursor = first["modified_from"]
    found = all_pages(client, object_type, changes_body(object_type, (prop, "GTE", cursor)))
    ids = [r["id"] for r in found]
    assert set(ids) == set(first["updated"] + second["created"] + second["updated"])
    stamps = [r["properties"][prop] for r in found]
    assert stamps == sorted(stamps) and stamps[0] == cursor  # the boundary itself is included
    assert all(r["updatedAt"] == r["properties"][prop] for r in found)
    # GT excludes the boundary; epoch milliseconds work like ISO-8601.
    after_first = all_pages(
        client, object_type, changes_body(object_type, (prop, "GT", first["modified_to"]))
    )
    assert {r["id"] for r in after_first} == set(second["created"] + second["updated"])
    epoch_ms = str(int(time_of(cursor) * 1000))
    same = all_pages(client, object_type, changes_body(object_type, (prop, "GTE", epoch_ms)))
    assert [r["id"] for r in same] == ids
    # LT bounds a window from above.
    window = all_pages(
        client,
        object_type,
        changes_body(object_type, (prop, "GTE", cursor), (prop, "LT", second["modified_from"])),
    )
    assert {r["id"] for r in window} == set(first["updated"]) - set(second["updated"])


def time_of(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_ties_are_in_id_order_and_id_slicing_works(portal) -> None:
    emulator, client = portal
    burst = emulator.mutate("contacts", update=25, same_timestamp=True)
    stamp = burst["modified_from"]
    found = all_pages(client, "contacts", changes_body("contacts", (MODIFIED["contacts"], "GTE",
                                                                    stamp), limit=7))
    ids = [int(r["id"]) for r in found]
    assert ids == sorted(int(i) for i in burst["updated"])  # one timestamp: id order
    # Slicing one timestamp by hs_object_id (EQ on the time, GT the last id, sorted by id).
    middle = ids[9]
    body = changes_body(
        "contacts",
        (MODIFIED["contacts"], "EQ", stamp),
        ("hs_object_id", "GT", str(middle)),
        sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
    )
    rest = all_pages(client, "contacts", body)
    assert [int(r["id"]) for r in rest] == ids[10:]


def test_search_results_shape_has_no_associations_and_no_rate_headers() -> None:
    emulator = HubSpotSandbox(contacts=5, companies=3, deals=10, search_rate_limit=None)
    with emulator.start() as running, open_client(running) as client:
        _check_search_shape(emulator, client)


def _check_search_shape(emulator: HubSpotSandbox, client: httpx.Client) -> None:
    emulator.mutate("deals", update=2)
    response = search(
        client,
        "deals",
        {**changes_body("deals", ("hs_lastmodifieddate", "GTE", "2020-01-01T00:00:00Z")),
         "limit": 3},
    )
    page = response.json()
    assert set(page) == {"total", "results", "paging"}  # deals_search_response.json
    assert page["total"] == 10 and page["paging"] == {"next": {"after": "3"}}
    for result in page["results"]:
        assert set(result) == {"id", "properties", "createdAt", "updatedAt", "archived", "url"}
        assert result["archived"] is False
    assert not [h for h in response.headers if h.lower().startswith(RATE_HEADER_PREFIX)]
    listed = client.get("/crm/v3/objects/deals", params={"associations": "companies"})
    assert any(h.lower().startswith(RATE_HEADER_PREFIX) for h in listed.headers)


def test_more_than_one_sort_is_refused_unless_allowed(portal) -> None:
    _, client = portal
    two = [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"},
           {"propertyName": "hs_object_id", "direction": "ASCENDING"}]  # fmt: skip
    response = search(client, "contacts", {"sorts": two})
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"
    emulator = HubSpotSandbox(contacts=20, companies=0, deals=0, search_max_sorts=2, **UNLIMITED)
    with emulator.start() as running, open_client(running) as other:
        burst = emulator.mutate("contacts", update=8, same_timestamp=True)
        found = all_pages(other, "contacts", {"sorts": two, "limit": 200})
        stamps = [(r["properties"]["lastmodifieddate"], int(r["id"])) for r in found]
        assert stamps == sorted(stamps) and len(found) == 20
        assert {str(i) for _, i in stamps[-8:]} == set(burst["updated"])


def test_late_visible_records_appear_before_the_cursor(portal) -> None:
    emulator, client = portal
    prop = MODIFIED["contacts"]
    emulator.mutate("contacts", update=3)
    served = all_pages(client, "contacts", changes_body("contacts", (prop, "GTE",
                                                                     "2026-01-01T00:00:00Z")))
    cursor = served[-1]["properties"][prop]
    late = emulator.mutate("contacts", update=2, late=True)
    assert late["modified_to"] < cursor
    again = all_pages(client, "contacts", changes_body("contacts", (prop, "GTE", cursor)))
    assert not set(late["updated"]) & {r["id"] for r in again}  # missed without a lookback
    lookback = iso_minus(cursor, 300)
    seen = all_pages(client, "contacts", changes_body("contacts", (prop, "GTE", lookback)))
    assert set(late["updated"]) <= {r["id"] for r in seen}


def iso_minus(iso: str, seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time_of(iso) - seconds))


def test_deletes_are_archived_records(portal) -> None:
    emulator, client = portal
    result = emulator.mutate("contacts", delete=2)
    victim = emulator.truth("contacts")["records"][0]["id"]
    assert client.delete(f"/crm/v3/objects/contacts/{victim}").status_code == 204
    archived = client.get(
        "/crm/v3/objects/contacts", params={"archived": "true", "limit": "100"}
    ).json()
    rows = {r["id"]: r for r in archived["results"]}
    assert set(rows) == {*result["deleted"], victim} and "paging" not in archived
    for row in rows.values():
        assert row["archived"] is True and row["archivedAt"].endswith("Z")
    truth = {r["id"]: r for r in emulator.truth("contacts")["records"]}
    for record_id in result["deleted"]:
        assert rows[record_id]["archivedAt"] == truth[record_id]["deleted_at"]
    # Archived records leave the default list and every search.
    live = client.get("/crm/v3/objects/contacts", params={"limit": "100"}).json()["results"]
    assert not set(rows) & {r["id"] for r in live}
    everything = all_pages(client, "contacts", {"limit": 200})
    assert len(everything) == 57 and not set(rows) & {r["id"] for r in everything}


def test_search_rate_limit_is_configurable_and_shaped_like_hubspot() -> None:
    emulator = HubSpotSandbox(
        contacts=5, companies=0, deals=0, rate_limit=None, daily_limit=None,
        search_rate_limit=(2, 1.0),
    )  # fmt: skip
    with emulator.start() as running, open_client(running) as client:
        statuses = [search(client, "contacts", {}).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        refused = search(client, "contacts", {})
        body = refused.json()
        assert set(body) == {"status", "message", "errorType", "correlationId", "policyName",
                             "requestId"}  # fmt: skip
        assert body["errorType"] == "RATE_LIMIT" and body["status"] == "error"
        assert body["message"] == "You have reached your secondly limit."
        assert not [h for h in refused.headers if h.lower().startswith(RATE_HEADER_PREFIX)]
        emulator.advance_time(1.0)
        assert search(client, "contacts", {}).status_code == 200


def test_a_burst_of_more_than_10000_records_needs_slicing_by_id() -> None:
    """The real size: 10,050 contacts share one lastmodifieddate. Paging one query stops at
    10,000 (after=10000 is a 400 VALIDATION_ERROR); slicing the timestamp by hs_object_id
    reaches every record once."""
    started = time.monotonic()
    emulator = HubSpotSandbox(contacts=10_080, companies=0, deals=0, **UNLIMITED)
    with emulator.start() as running, open_client(running) as client:
        burst = emulator.mutate("contacts", update=10_050, same_timestamp=True)
        stamp = burst["modified_from"]
        prop = MODIFIED["contacts"]
        query = changes_body("contacts", (prop, "GTE", stamp))
        first = search(client, "contacts", query).json()
        assert first["total"] == 10_050
        last_page = search(client, "contacts", {**query, "after": "9800"}).json()
        assert len(last_page["results"]) == 200
        assert last_page["paging"]["next"]["after"] == "10000"  # offered, but refused:
        refused = search(client, "contacts", {**query, "after": "10000"})
        assert refused.status_code == 400
        error = refused.json()
        assert error["status"] == "error" and error["category"] == "VALIDATION_ERROR"
        assert {"message", "correlationId"} <= set(error)

        seen: list[str] = []
        last_id = "0"
        while True:  # one slice at a time: EQ the timestamp, GT the last id, sorted by id
            body = changes_body(
                "contacts",
                (prop, "EQ", stamp),
                ("hs_object_id", "GT", last_id),
                sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            )
            page = search(client, "contacts", body).json()
            seen += [r["id"] for r in page["results"]]
            if "paging" not in page:
                break
            last_id = page["results"][-1]["id"]
        assert len(seen) == len(set(seen)) == 10_050
        assert set(seen) == set(burst["updated"])
    assert time.monotonic() - started < 15  # typically ~2 s


def test_burst_option_at_seed() -> None:
    emulator = HubSpotSandbox(
        contacts=40, companies=12, deals=8, burst_same_timestamp=30, **UNLIMITED
    )
    for object_type, expected in (("contacts", 30), ("companies", 12), ("deals", 8)):
        rows = emulator.truth(object_type)["records"]
        stamps = [r["updated_at"] for r in rows[:expected]]
        assert len(set(stamps)) == 1
        if object_type == "contacts":
            assert all(r["updated_at"] != stamps[0] for r in rows[30:])
    with emulator.start() as running, open_client(running) as client:
        stamp = emulator.truth("contacts")["records"][0]["updated_at"]
        body = changes_body("contacts", ("lastmodifieddate", "EQ", stamp))
        assert len(all_pages(client, "contacts", body)) == 30
