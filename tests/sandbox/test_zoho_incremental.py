"""Zoho CRM incremental sync surface over real HTTP: If-Modified-Since on the records list (304
when nothing changed), sort_by=Modified_Time, page then page_token past record 2,000
(CONTRACTS 4.3), and GET /{module}/deleted (crm-oas getDeletedRecords), driven by
/__sandbox/mutate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sandbox.zoho import ZohoSandbox

STATIC = "1000.sandbox-static-token"
MODULES = {"contacts": "Contacts", "companies": "Accounts", "deals": "Deals"}
ORG_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+03:00$")


def open_client(running) -> httpx.Client:
    return httpx.Client(
        base_url=running.url, headers={"Authorization": f"Zoho-oauthtoken {STATIC}"}, timeout=30
    )


@pytest.fixture
def org() -> Iterator[tuple[ZohoSandbox, httpx.Client]]:
    emulator = ZohoSandbox(contacts=40, companies=8, deals=8)
    with emulator.start() as running, open_client(running) as client:
        yield emulator, client


def header_time(iso_z: str, shift: float = 0) -> str:
    """A control-endpoint time as an If-Modified-Since value (ISO 8601 with an offset)."""
    moment = datetime.fromisoformat(iso_z.replace("Z", "+00:00")) + timedelta(seconds=shift)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def modified_since(
    client: httpx.Client, module: str, since: str, **params: str
) -> tuple[list[dict], int]:
    """(records over every page, the last status) of a Modified_Time-ascending listing since
    ``since``: page numbers up to record 2,000, then info.next_page_token."""
    query = {"fields": "Modified_Time", "sort_by": "Modified_Time", "sort_order": "asc",
             "per_page": "200", "page": "1", **params}  # fmt: skip
    records: list[dict] = []
    while True:
        response = client.get(
            f"/crm/v3/{module}", params=query, headers={"If-Modified-Since": since}
        )
        if response.status_code in (204, 304):
            assert response.content == b""
            return records, response.status_code
        assert response.status_code == 200, response.text
        body = response.json()
        records += body["data"]
        if not body["info"]["more_records"]:
            return records, 200
        if "page_token" in query or int(query["page"]) * int(query["per_page"]) >= 2000:
            query.pop("page", None)
            query["page_token"] = body["info"]["next_page_token"]
        else:
            query["page"] = str(int(query["page"]) + 1)


@pytest.mark.parametrize("stream", ["contacts", "companies", "deals"])
def test_if_modified_since_is_inclusive_and_304_when_nothing_changed(org, stream) -> None:
    emulator, client = org
    module = MODULES[stream]
    first = emulator.mutate(stream, update=3)
    second = emulator.mutate(stream, create=2, update=2)
    since = header_time(first["modified_from"])
    rows, status = modified_since(client, module, since)
    assert status == 200
    assert {r["id"] for r in rows} == set(first["updated"] + second["created"] + second["updated"])
    stamps = [epoch(r["Modified_Time"]) for r in rows]
    assert stamps == sorted(stamps) and stamps[0] == epoch(first["modified_from"])
    assert all(ORG_TIME.match(r["Modified_Time"]) and set(r) == {"Modified_Time", "id"}
               for r in rows)  # fmt: skip
    later, _ = modified_since(client, module, header_time(first["modified_from"], 1))
    assert {r["id"] for r in later} == set(second["created"] + second["updated"])
    # Nothing modified at or after the instant: 304 with an empty body.
    quiet, status = modified_since(client, module, header_time(second["modified_to"], 2))
    assert quiet == [] and status == 304
    # An HTTP-date works too.
    http_date = datetime.fromisoformat(since).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert modified_since(client, module, http_date)[0] == rows


def test_late_visible_records(org) -> None:
    emulator, client = org
    emulator.mutate("contacts", update=2)
    served, _ = modified_since(client, "Contacts", "2026-01-01T00:00:00+00:00")
    cursor = served[-1]["Modified_Time"]
    late = emulator.mutate("contacts", update=2, late=True)
    missed, _ = modified_since(client, "Contacts", cursor)
    assert not set(late["updated"]) & {r["id"] for r in missed}
    caught, _ = modified_since(client, "Contacts", header_time(
        datetime.fromisoformat(cursor).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), -300))
    stamps = {r["id"]: epoch(r["Modified_Time"]) for r in caught}
    assert set(late["updated"]) <= set(stamps)
    assert all(stamps[i] < epoch(cursor) for i in late["updated"])


def test_deleted_records_with_if_modified_since(org) -> None:
    emulator, client = org
    old = emulator.mutate("contacts", delete=1)
    deleted = emulator.mutate("contacts", delete=2)
    victim = emulator.mutate("contacts", update=1)["updated"][0]
    response = client.delete(f"/crm/v3/Contacts/{victim}", params={"wf_trigger": "false"})
    assert response.status_code == 200
    since = header_time(deleted["modified_from"])
    listed = client.get(
        "/crm/v3/Contacts/deleted", params={"type": "all"}, headers={"If-Modified-Since": since}
    )
    assert listed.status_code == 200
    body = listed.json()
    assert set(body) == {"data", "info"}
    assert body["info"] == {"per_page": 200, "count": 3, "page": 1, "more_records": False}
    ids = [entry["id"] for entry in body["data"]]
    assert set(ids) == {*deleted["deleted"], victim} and ids[0] == victim  # newest first
    for entry in body["data"]:
        assert set(entry) == {"deleted_by", "id", "display_name", "type", "created_by",
                              "deleted_time"}  # fmt: skip
        assert entry["type"] == "recycle" and ORG_TIME.match(entry["deleted_time"])
        assert set(entry["deleted_by"]) == {"name", "id"}
        assert epoch(entry["deleted_time"]) >= epoch(deleted["modified_from"])
    everything = client.get("/crm/v3/Contacts/deleted").json()["data"]
    assert {e["id"] for e in everything} == {*old["deleted"], *deleted["deleted"], victim}
    recycle = client.get("/crm/v3/Contacts/deleted", params={"type": "recycle", "per_page": "2"})
    assert recycle.json()["info"]["more_records"] is True
    assert client.get("/crm/v3/Contacts/deleted", params={"type": "permanent"}).status_code == 204
    nothing = client.get(
        "/crm/v3/Contacts/deleted",
        headers={"If-Modified-Since": header_time(deleted["modified_to"], 60)},
    )
    assert nothing.status_code == 304 and nothing.content == b""
    # Deleted records leave the list and the truth marks them.
    live, _ = modified_since(client, "Contacts", "2000-01-01T00:00:00+00:00")
    assert not {*deleted["deleted"], victim} & {r["id"] for r in live}
    truth = {r["id"]: r for r in emulator.truth("contacts")["records"]}
    assert all(truth[i]["deleted"] for i in [*deleted["deleted"], victim])


def test_a_burst_past_2000_records_needs_page_token() -> None:
    emulator = ZohoSandbox(contacts=2300, companies=1, deals=1, credits_per_day=10**6)
    with emulator.start() as running, open_client(running) as client:
        burst = emulator.mutate("contacts", update=2100, same_timestamp=True)
        since = header_time(burst["modified_from"])
        query = {"fields": "Modified_Time", "sort_by": "Modified_Time", "sort_order": "asc",
                 "per_page": "200", "page": "11"}  # fmt: skip
        refused = client.get("/crm/v3/Contacts", params=query,
                             headers={"If-Modified-Since": since})  # fmt: skip
        assert refused.status_code == 400
        assert refused.json()["code"] == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"
        rows, status = modified_since(client, "Contacts", since)
        assert status == 200 and len(rows) == 2100
        assert [r["id"] for r in rows] == sorted(burst["updated"], key=int)
