"""Pipedrive incremental sync surface over real HTTP: v2 lists with updated_since and
sort_by=update_time (CONTRACTS 3.3), deleted deals through status=deleted, deleted persons and
organizations through v1 /recents, and late-visible records, driven by /__sandbox/mutate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sandbox.pipedrive import PipedriveSandbox

API_TOKEN = "sandbox-api-token"
V2_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
V1_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
KINDS = {"contacts": "persons", "companies": "organizations", "deals": "deals"}


@pytest.fixture
def company() -> Iterator[tuple[PipedriveSandbox, httpx.Client]]:
    emulator = PipedriveSandbox(
        contacts=40, companies=8, deals=12, rate_limit=None, daily_token_budget=None
    )
    with emulator.start() as running, httpx.Client(
        base_url=running.url, headers={"x-api-token": API_TOKEN}, timeout=10
    ) as client:
        yield emulator, client


def rfc3339(iso_z: str, shift: float = 0) -> str:
    """A control-endpoint time as an RFC 3339 updated_since value (whole seconds)."""
    moment = datetime.fromisoformat(iso_z.replace("Z", "+00:00")) + timedelta(seconds=shift)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def v2_all(client: httpx.Client, kind: str, **params: str) -> list[dict]:
    records, cursor = [], None
    while True:
        query = {"limit": "5", **params, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"/api/v2/{kind}", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True and set(body["additional_data"]) == {"next_cursor"}
        records += body["data"]
        cursor = body["additional_data"]["next_cursor"]
        if cursor is None:
            return records


def changes(client: httpx.Client, kind: str, since: str, **params: str) -> list[dict]:
    query = {"updated_since": since, "sort_by": "update_time", "sort_direction": "asc"}
    return v2_all(client, kind, **{**query, **params})


@pytest.mark.parametrize("stream", ["contacts", "companies", "deals"])
def test_updated_since_is_inclusive_and_sorted_by_update_time(company, stream) -> None:
    emulator, client = company
    kind = KINDS[stream]
    first = emulator.mutate(stream, update=3)
    second = emulator.mutate(stream, create=2, update=2)
    since = rfc3339(first["modified_from"])
    rows = changes(client, kind, since)
    assert {str(r["id"]) for r in rows} == set(
        first["updated"] + second["created"] + second["updated"]
    )
    keys = [(r["update_time"], r["id"]) for r in rows]
    assert keys == sorted(keys) and all(V2_TIME.match(t) for t, _ in keys)
    assert rows[0]["update_time"] == since  # update_time >= since: the boundary is included
    later = changes(client, kind, rfc3339(first["modified_from"], 1))
    assert {str(r["id"]) for r in later} == set(second["created"] + second["updated"])
    window = v2_all(
        client, kind, updated_since=since, updated_until=rfc3339(second["modified_from"]),
        sort_by="update_time",
    )  # fmt: skip
    assert {str(r["id"]) for r in window} == set(first["updated"]) - set(second["updated"])
    # Descending order is the exact reverse.
    backwards = changes(client, kind, since, sort_direction="desc")
    assert [r["id"] for r in backwards] == [r["id"] for r in rows][::-1]


def test_deleted_deals_through_status_deleted(company) -> None:
    emulator, client = company
    deleted = emulator.mutate("deals", delete=2)
    victim = emulator.mutate("deals", update=1)["updated"][0]
    response = client.delete(f"/api/v2/deals/{victim}")
    assert response.status_code == 200 and response.json()["data"] == {"id": int(victim)}
    gone = {*deleted["deleted"], victim}
    since = rfc3339(deleted["modified_from"])
    live = changes(client, "deals", since)
    assert not gone & {str(r["id"]) for r in live}
    rows = changes(client, "deals", since, status="deleted")
    assert {str(r["id"]) for r in rows} == gone
    assert all(r["is_deleted"] is True for r in rows)
    keys = [(r["update_time"], r["id"]) for r in rows]
    assert keys == sorted(keys)
    # Every status at once: changed live deals and deleted ones in one ordered listing.
    both = changes(client, "deals", since, status="open,won,lost,deleted")
    assert {str(r["id"]) for r in both} == gone | {victim} and len(both) == 3
    # Deleted longer than 30 days ago: no longer listed.
    emulator.advance_time(31 * 86_400)
    assert changes(client, "deals", since, status="deleted") == []
    assert client.get("/api/v2/deals", params={"status": "gone"}).status_code == 400


def test_deleted_persons_and_organizations_through_v1_recents(company) -> None:
    emulator, client = company
    persons = emulator.mutate("contacts", update=1, delete=2)
    victim = emulator.mutate("contacts", update=1)["updated"][0]
    assert client.delete(f"/api/v2/persons/{victim}").status_code == 200
    orgs = emulator.mutate("companies", delete=1)
    since = rfc3339(persons["modified_from"]).replace("T", " ").rstrip("Z")
    response = client.get(
        "/v1/recents", params={"since_timestamp": since, "items": "person", "limit": "100"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["additional_data"]["since_timestamp"] == since
    assert V1_TIME.match(body["additional_data"]["last_timestamp_on_page"])
    assert body["additional_data"]["pagination"]["more_items_in_collection"] is False
    entries = {str(e["id"]): e for e in body["data"]}
    assert all(e["item"] == "person" for e in entries.values())
    assert set(entries) == {*persons["updated"], *persons["deleted"], victim}
    for record_id in [*persons["deleted"], victim]:
        person = entries[record_id]["data"]
        assert person["active_flag"] is False and V1_TIME.match(person["delete_time"])
    assert entries[persons["updated"][0]]["data"]["active_flag"] is True
    stamps = [e["data"]["update_time"] for e in body["data"]]
    assert stamps == sorted(stamps)
    # Organizations the same way; v2 lists never show deleted persons or organizations.
    org_rows = client.get(
        "/v1/recents", params={"since_timestamp": since, "items": "organization"}
    ).json()["data"]
    assert [str(e["id"]) for e in org_rows] == orgs["deleted"]
    assert org_rows[0]["data"]["active_flag"] is False
    listed = {str(r["id"]) for r in v2_all(client, "persons")}
    assert not listed & {*persons["deleted"], victim}
    assert client.get(f"/api/v2/persons/{victim}").status_code == 410


def test_late_visible_records_have_an_earlier_update_time(company) -> None:
    emulator, client = company
    emulator.mutate("contacts", update=2)
    served = changes(client, "persons", "2026-01-01T00:00:00Z")
    cursor = served[-1]["update_time"]
    late = emulator.mutate("contacts", update=2, late=True)
    missed = changes(client, "persons", cursor)
    assert not set(late["updated"]) & {str(r["id"]) for r in missed}
    caught = changes(client, "persons", rfc3339(cursor, -300))
    stamps = {str(r["id"]): r["update_time"] for r in caught}
    assert set(late["updated"]) <= set(stamps)
    assert all(stamps[i] < cursor for i in late["updated"])


def test_same_timestamp_pages_by_cursor_without_gaps(company) -> None:
    emulator, client = company
    burst = emulator.mutate("contacts", update=23, same_timestamp=True)
    rows = changes(client, "persons", rfc3339(burst["modified_from"]))  # pages of 5
    assert [str(r["id"]) for r in rows] == sorted(burst["updated"], key=int)
    assert {r["update_time"] for r in rows} == {rfc3339(burst["modified_from"])}


def test_bad_updated_since_is_a_400(company) -> None:
    _, client = company
    response = client.get("/api/v2/persons", params={"updated_since": "2026-01-01 00:00:00"})
    assert response.status_code == 400 and response.json()["success"] is False
