"""Salesforce incremental sync surface over real HTTP: SOQL on SystemModstamp through /query and
/queryAll (CONTRACTS 2.3), deleted rows (IsDeleted) and late-visible records, driven by
/__sandbox/mutate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sandbox.salesforce import SalesforceSandbox

TOKEN = "sandbox-session-id"
V = "/services/data/v59.0"
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
OBJECTS = {"contacts": "Contact", "companies": "Account", "deals": "Opportunity"}


@pytest.fixture
def org() -> Iterator[tuple[SalesforceSandbox, httpx.Client]]:
    emulator = SalesforceSandbox(contacts=40, companies=8, deals=8, leads=0)
    with emulator.start() as running, httpx.Client(
        base_url=running.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ) as client:
        yield emulator, client


def literal(iso_z: str) -> str:
    """A control-endpoint time (2026-01-02T03:04:05.000Z) as a SOQL datetime literal."""
    return iso_z[:19] + "Z"


def shifted(iso_z: str, seconds: float) -> str:
    moment = datetime.fromisoformat(iso_z.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(client: httpx.Client, soql: str, *, all_rows: bool = False) -> tuple[list[dict], int]:
    """(every record over all pages, totalSize)."""
    response = client.get(f"{V}/{'queryAll' if all_rows else 'query'}", params={"q": soql})
    assert response.status_code == 200, response.text
    page = response.json()
    total, records = page["totalSize"], list(page["records"])
    while not page["done"]:
        assert page["nextRecordsUrl"].startswith(f"{V}/query/")
        page = client.get(page["nextRecordsUrl"]).json()
        records += page["records"]
    return records, total


def changes(sobject: str, op: str, since: str, *extra: str) -> str:
    where = " AND ".join([f"SystemModstamp {op} {since}", *extra])
    return (
        f"SELECT Id, SystemModstamp, LastModifiedDate, IsDeleted FROM {sobject} "
        f"WHERE {where} ORDER BY SystemModstamp, Id"
    )


@pytest.mark.parametrize("stream", ["contacts", "companies", "deals"])
def test_systemmodstamp_filters_include_the_boundary_and_order(org, stream) -> None:
    emulator, client = org
    sobject = OBJECTS[stream]
    first = emulator.mutate(stream, update=3)
    second = emulator.mutate(stream, create=2, update=2)
    since = literal(first["modified_from"])
    rows, total = run(client, changes(sobject, ">=", since))
    expected = set(first["updated"] + second["created"] + second["updated"])
    assert {r["Id"] for r in rows} == expected and total == len(rows)
    keys = [(r["SystemModstamp"], r["Id"]) for r in rows]
    assert keys == sorted(keys)
    assert rows[0]["SystemModstamp"] == since[:19] + ".000+0000"  # the boundary is included
    assert all(DATETIME.match(r["SystemModstamp"]) for r in rows)
    assert all(r["IsDeleted"] is False and set(r) == {"attributes", "Id", "SystemModstamp",
               "LastModifiedDate", "IsDeleted"} for r in rows)  # fmt: skip
    after, _ = run(client, changes(sobject, ">", since))
    assert {r["Id"] for r in after} == set(second["created"] + second["updated"])
    before, _ = run(client, changes(sobject, ">=", since, f"SystemModstamp < "
                                                          f"{literal(second['modified_from'])}"))
    assert {r["Id"] for r in before} == set(first["updated"]) - set(second["updated"])
    upto, _ = run(client, changes(sobject, ">=", since, f"SystemModstamp <= {since}"))
    assert {r["Id"] for r in upto} == {r["Id"] for r in before}
    # An offset literal is the same instant.
    offset = since[:19] + "+00:00"
    assert run(client, changes(sobject, ">=", offset))[0] == rows


def test_limit_and_paging_by_cursor(org) -> None:
    emulator, client = org
    burst = emulator.mutate("contacts", update=30, same_timestamp=True)
    since = literal(burst["modified_from"])
    soql = changes("Contact", ">=", since) + " LIMIT 10"
    rows, total = run(client, soql)
    assert total == 10 and [r["Id"] for r in rows] == sorted(burst["updated"])[:10]
    # Next slice within one timestamp: SystemModstamp = t AND Id > last id.
    last = rows[-1]["Id"]
    more, _ = run(client, changes("Contact", "=", since, f"Id > '{last}'") + " LIMIT 10")
    assert [r["Id"] for r in more] == sorted(burst["updated"])[10:20]


def test_deleted_rows_only_in_query_all(org) -> None:
    emulator, client = org
    deleted = emulator.mutate("contacts", delete=2)
    victim = next(i for i in emulator.mutate("contacts", update=1)["updated"])
    assert client.delete(f"{V}/sobjects/Contact/{victim}").status_code == 204
    gone = {*deleted["deleted"], victim}
    since = literal(deleted["modified_from"])
    live, _ = run(client, changes("Contact", ">=", since))
    assert not gone & {r["Id"] for r in live}
    everything, _ = run(client, changes("Contact", ">=", since), all_rows=True)
    rows = {r["Id"]: r for r in everything}
    assert gone <= set(rows)
    for record_id in gone:
        assert rows[record_id]["IsDeleted"] is True
    truth = {r["id"]: r for r in emulator.truth("contacts")["records"]}
    for record_id in deleted["deleted"]:  # the deletion moved SystemModstamp
        assert rows[record_id]["SystemModstamp"][:19] == truth[record_id]["deleted_at"][:19]
    only_deleted, total = run(
        client, "SELECT Id FROM Contact WHERE IsDeleted = true ORDER BY Id", all_rows=True
    )
    assert {r["Id"] for r in only_deleted} == gone and total == 3
    assert run(client, "SELECT Id FROM Contact WHERE IsDeleted = true")[1] == 0
    count, _ = run(client, "SELECT Id FROM Contact")
    assert len(count) == 37
    # A deleted record reads as ENTITY_IS_DELETED.
    response = client.get(f"{V}/sobjects/Contact/{victim}")
    assert response.status_code == 404 and response.json()[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_late_visible_records_have_an_earlier_systemmodstamp(org) -> None:
    emulator, client = org
    emulator.mutate("deals", update=2)
    served, _ = run(client, changes("Opportunity", ">=", "2026-01-01T00:00:00Z"))
    cursor = served[-1]["SystemModstamp"]
    cursor_literal = cursor[:19] + "Z"
    late = emulator.mutate("deals", update=2, late=True)
    missed, _ = run(client, changes("Opportunity", ">", cursor_literal))
    assert not set(late["updated"]) & {r["Id"] for r in missed}
    lookback = shifted(cursor_literal + "", -300)
    caught, _ = run(client, changes("Opportunity", ">=", lookback))
    assert set(late["updated"]) <= {r["Id"] for r in caught}
    stamps = {r["Id"]: r["SystemModstamp"] for r in caught}
    assert all(stamps[i] < cursor for i in late["updated"])


def test_datetime_literals_are_unquoted(org) -> None:
    _, client = org
    quoted = client.get(
        f"{V}/query",
        params={"q": "SELECT Id FROM Contact WHERE SystemModstamp >= '2026-01-01T00:00:00Z'"},
    )
    assert quoted.status_code == 400
    assert quoted.json()[0]["errorCode"] == "INVALID_FIELD"
