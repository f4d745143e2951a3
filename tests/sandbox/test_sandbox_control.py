"""The test-control endpoints every emulator serves (sandbox/kit/control.py): POST
/__sandbox/mutate and GET /__sandbox/truth, over real HTTP, the same way on all four vendors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from sandbox.hubspot import HubSpotSandbox
from sandbox.kit import Emulator
from sandbox.pipedrive import PipedriveSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.zoho import ZohoSandbox

SEEDED = 30
VENDORS: dict[str, tuple[type[Emulator], dict]] = {
    "hubspot": (
        HubSpotSandbox,
        {"rate_limit": None, "search_rate_limit": None, "daily_limit": None},
    ),
    "salesforce": (SalesforceSandbox, {"leads": 0}),
    "pipedrive": (PipedriveSandbox, {"rate_limit": None, "daily_token_budget": None}),
    "zoho": (ZohoSandbox, {}),
}
# A vendor's own name for each neutral stream, also accepted by the endpoints.
NATIVE = {
    "hubspot": {"contacts": "contacts", "companies": "companies", "deals": "deals"},
    "salesforce": {"contacts": "Contact", "companies": "Account", "deals": "Opportunity"},
    "pipedrive": {"contacts": "persons", "companies": "organizations", "deals": "deals"},
    "zoho": {"contacts": "Contacts", "companies": "Accounts", "deals": "Deals"},
}
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# An API read that needs credentials, per vendor: (method, path, headers).
API_READ = {
    "hubspot": ("/crm/v3/objects/contacts", {"Authorization": "Bearer sandbox-private-app-token"}),
    "salesforce": (
        "/services/data/v59.0/sobjects/Contact/describe",
        {"Authorization": "Bearer sandbox-session-id"},
    ),
    "pipedrive": ("/api/v2/persons", {"x-api-token": "sandbox-api-token"}),
    "zoho": (
        "/crm/v3/Contacts?fields=Last_Name",
        {"Authorization": "Zoho-oauthtoken 1000.sandbox-static-token"},
    ),
}


@pytest.fixture(params=sorted(VENDORS))
def vendor(request) -> Iterator[tuple[str, Emulator, httpx.Client]]:
    name = request.param
    emulator_class, options = VENDORS[name]
    emulator = emulator_class(contacts=SEEDED, companies=5, deals=5, **options)
    # No credentials on the client: the control endpoints need none.
    with emulator.start() as running, httpx.Client(base_url=running.url, timeout=10) as client:
        yield name, emulator, client


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def mutate(client: httpx.Client, **body) -> dict:
    response = client.post("/__sandbox/mutate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def truth(client: httpx.Client, stream: str) -> dict[str, dict]:
    response = client.get("/__sandbox/truth", params={"stream": stream})
    assert response.status_code == 200, response.text
    return {row["id"]: row for row in response.json()["records"]}


def test_mutate_reports_ids_and_truth_shows_them(vendor) -> None:
    name, emulator, client = vendor
    before = truth(client, "contacts")
    assert len(before) == SEEDED
    row = next(iter(before.values()))
    assert set(row) == {"id", "updated_at", "deleted", "deleted_at"}
    assert all(ISO.match(r["updated_at"]) and r["deleted"] is False for r in before.values())
    read_at = emulator.clock.now()

    result = mutate(client, stream="contacts", create=2, update=3, delete=2)
    assert result["stream"] == NATIVE[name]["contacts"]
    assert len(result["created"]) == 2 and len(result["updated"]) == 3
    assert len(result["deleted"]) == 2
    touched = result["created"] + result["updated"] + result["deleted"]
    assert all(isinstance(i, str) for i in touched) and len(set(touched)) == 7
    assert not set(result["created"]) & set(before)
    assert set(result["updated"]) | set(result["deleted"]) <= set(before)
    # Each call moves the clock at least 1 s first: every stamp is after the earlier read.
    assert epoch(result["modified_from"]) > read_at
    assert emulator.clock.now() - read_at >= 1

    after = truth(client, "contacts")
    assert len(after) == SEEDED + 2
    for record_id in result["created"] + result["updated"]:
        row = after[record_id]
        assert row["deleted"] is False and row["deleted_at"] is None
        assert epoch(row["updated_at"]) >= int(epoch(result["modified_from"]))
        assert epoch(row["updated_at"]) > epoch(before.get(record_id, row)["updated_at"]) or (
            record_id in result["created"]
        )
    for record_id in result["deleted"]:
        row = after[record_id]
        assert row["deleted"] is True and ISO.match(row["deleted_at"])
        assert row["updated_at"] == row["deleted_at"]  # the deletion is the latest change
    untouched = set(before) - set(touched)
    assert all(after[i] == before[i] for i in untouched)


def test_native_stream_names_and_other_streams(vendor) -> None:
    name, _emulator, client = vendor
    for neutral, native in NATIVE[name].items():
        assert truth(client, native) == truth(client, neutral)
    result = mutate(client, stream=NATIVE[name]["deals"], update=1)
    assert truth(client, "deals")[result["updated"][0]]["updated_at"] == result["modified_from"]
    assert len(truth(client, "companies")) == 5


def test_same_timestamp_and_late(vendor) -> None:
    _name, emulator, client = vendor
    burst = mutate(client, stream="contacts", create=3, update=10, delete=2, same_timestamp=True)
    assert burst["modified_from"] == burst["modified_to"]
    rows = truth(client, "contacts")
    touched = burst["created"] + burst["updated"] + burst["deleted"]
    assert {rows[i]["updated_at"] for i in touched} == {burst["modified_from"]}

    late = mutate(client, stream="contacts", update=2, late=True)
    # 60 s before the clock: earlier than the burst that was already there.
    assert epoch(late["modified_to"]) < epoch(burst["modified_from"])
    assert emulator.clock.now() - epoch(late["modified_from"]) >= 60
    later = mutate(client, stream="contacts", update=1, late=True, late_by=5)
    assert 5 <= emulator.clock.now() - epoch(later["modified_from"]) < 10
    rows = truth(client, "contacts")
    assert {rows[i]["updated_at"][:19] for i in late["updated"]} == {late["modified_from"][:19]}


def test_stamps_step_by_one_millisecond_within_a_call(vendor) -> None:
    name, _emulator, client = vendor
    result = mutate(client, stream="contacts", update=5)
    start = epoch(result["modified_from"])
    assert start == int(start)  # a whole second: every vendor can represent it
    assert round(epoch(result["modified_to"]) - start, 3) == 0.004
    stamps = [truth(client, "contacts")[i]["updated_at"] for i in result["updated"]]
    if name == "hubspot":  # millisecond times
        assert stamps == sorted(stamps) and len(set(stamps)) == 5
    else:  # whole-second times: the same second
        assert set(stamps) == {result["modified_from"]}


def test_control_routes_skip_auth_limits_faults_and_counters(vendor) -> None:
    name, emulator, client = vendor
    path, headers = API_READ[name]
    assert client.get(path).status_code in (401, 403)  # the API itself needs credentials
    served = emulator.app.requests_served
    emulator.app.fail_next(1, 503)
    mutate(client, stream="contacts", update=1)
    truth(client, "contacts")
    assert emulator.app.requests_served == served  # not counted
    # The queued fault is still there for the next API request.
    assert client.get(path, headers=headers).status_code == 503
    assert client.get(path, headers=headers).status_code == 200


def test_bad_requests_are_400_with_a_message(vendor) -> None:
    _name, _emulator, client = vendor
    cases = [
        {"stream": "tickets", "update": 1},
        {"update": 1},
        {"stream": "contacts", "update": -1},
        {"stream": "contacts", "update": "2"},
        {"stream": "contacts", "update": SEEDED, "delete": 1},  # more than there are
        {"stream": "contacts", "same_timestamp": "yes"},
        {"stream": "contacts", "late": True, "late_by": 0},
        {"stream": "contacts", "updates": 1},
    ]
    for body in cases:
        response = client.post("/__sandbox/mutate", json=body)
        assert response.status_code == 400, body
        assert isinstance(response.json()["error"], str)
    assert client.post("/__sandbox/mutate", content=b"{nope").status_code == 400
    assert client.get("/__sandbox/truth", params={"stream": "tickets"}).status_code == 400
    assert client.get("/__sandbox/truth").status_code == 400
    assert len(truth(client, "contacts")) == SEEDED  # nothing happened


def test_python_helpers_match_the_endpoints(vendor) -> None:
    _name, emulator, client = vendor
    result = emulator.mutate("contacts", update=2, delete=1)
    assert set(result) == {"stream", "created", "updated", "deleted", "modified_from",
                           "modified_to"}
    assert emulator.truth("contacts")["records"] == list(truth(client, "contacts").values())
    with pytest.raises(ValueError):
        emulator.mutate("tickets", update=1)
