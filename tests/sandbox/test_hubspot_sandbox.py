"""HubSpot emulator over real HTTP (httpx -> 127.0.0.1), checked against CONTRACTS.md section 1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import sandbox
from sandbox.__main__ import _parser
from sandbox.hubspot import HubSpotSandbox
from sandbox.hubspot.store import LISTED_LINKS
from sandbox.kit import RunningSandbox

STATIC_TOKEN = "sandbox-private-app-token"
CONTACTS = "/crm/v3/objects/contacts"
UNLIMITED = {"rate_limit": None, "search_rate_limit": None, "daily_limit": None}


def open_client(running: RunningSandbox, token: str | None = STATIC_TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=running.url, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[HubSpotSandbox, httpx.Client]]:
    """A read-only portal shared by the tests that do not write."""
    emulator = HubSpotSandbox(
        contacts=250, companies=20, deals=30, tasks=15, calls=10, notes=10, **UNLIMITED
    )
    with emulator.start() as running, open_client(running) as client:
        yield emulator, client


@pytest.fixture
def portal() -> Iterator[tuple[HubSpotSandbox, httpx.Client]]:
    """A small fresh portal for tests that write or change limits."""
    emulator = HubSpotSandbox(contacts=30, companies=5, deals=5, **UNLIMITED)
    with emulator.start() as running, open_client(running) as client:
        yield emulator, client


def list_all(client: httpx.Client, path: str, **params: str) -> tuple[list[dict], list[dict]]:
    """(all records, raw pages) following paging.next.after."""
    records, pages, after = [], [], None
    while True:
        query = {"limit": "100", **params, **({"after": after} if after else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        records += page["results"]
        if "paging" not in page:
            return records, pages
        after = page["paging"]["next"]["after"]


# -- registry and CLI ------------------------------------------------------------------------


def test_registry_and_start() -> None:
    assert sandbox.EMULATORS["hubspot"] is HubSpotSandbox
    with sandbox.start("hubspot", contacts=3, companies=0, deals=0) as running:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", running.url)
        assert isinstance(running.emulator, HubSpotSandbox)
        with open_client(running) as client:
            assert len(client.get(CONTACTS).json()["results"]) == 3


def test_cli_options_follow_the_constructor() -> None:
    args = _parser().parse_args(
        [
            "hubspot",
            "--port",
            "0",
            "--contacts",
            "7",
            "--rate-limit",
            "50,10",
            "--daily-limit",
            "none",
            "--static-tokens",
            "a,b",
        ]
    )
    assert (args.port, args.contacts, args.rate_limit) == (0, 7, (50, 10.0))
    assert args.daily_limit is None and args.static_tokens == ("a", "b")
    # An option whose default is None still takes its annotated type.
    assert _parser().parse_args(["zoho", "--rate-limit", "10,1"]).rate_limit == (10, 1.0)


@pytest.mark.parametrize(("flag", "value"), [("--rate-limit", "1000000"),
                                             ("--rate-limit", "10,x"), ("--contacts", "many")])
def test_a_malformed_option_is_a_one_line_error(capsys, flag, value) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["hubspot", flag, value])
    last = capsys.readouterr().err.splitlines()[-1]
    assert exited.value.code == 2
    assert last.startswith(f"python -m sandbox hubspot: error: argument {flag}: '{value}' is "
                           "not like "), last


# -- lists -----------------------------------------------------------------------------------


def test_pagination_returns_every_record_once_and_omits_paging_on_last_page(shared) -> None:
    emulator, client = shared
    records, pages = list_all(client, CONTACTS)
    ids = [int(record["id"]) for record in records]
    assert len(ids) == 250 == len(set(ids)) and ids == sorted(ids)
    assert [len(page["results"]) for page in pages] == [100, 100, 50]
    assert all("paging" in page for page in pages[:-1]) and "paging" not in pages[-1]
    link = pages[0]["paging"]["next"]["link"]
    assert link == "?after=" + pages[0]["paging"]["next"]["after"]
    assert emulator.store.count("contacts") == 250


def test_list_limit_defaults_to_10_and_is_clamped_to_100(shared) -> None:
    _, client = shared
    assert len(client.get(CONTACTS).json()["results"]) == 10
    assert len(client.get(CONTACTS, params={"limit": 500}).json()["results"]) == 100
    assert client.get(CONTACTS, params={"after": "%%%"}).status_code == 400


def test_properties_selection_and_defaults(shared) -> None:
    _, client = shared
    always = {"hs_object_id", "createdate", "lastmodifieddate"}
    default = client.get(CONTACTS, params={"limit": 5}).json()["results"]
    assert all(set(r["properties"]) == always | {"firstname", "lastname", "email"} for r in default)
    chosen = client.get(
        CONTACTS, params={"limit": 5, "properties": "firstname,favorite_color,not_a_property"}
    ).json()["results"]
    assert all(set(r["properties"]) == always | {"firstname", "favorite_color"} for r in chosen)
    exploded = client.get(
        CONTACTS, params=[("properties", "phone"), ("properties", "jobtitle")]
    ).json()["results"]
    assert set(exploded[0]["properties"]) == always | {"phone", "jobtitle"}
    company = client.get("/crm/v3/objects/companies", params={"limit": 1}).json()["results"][0]
    assert set(company["properties"]) == {
        "name",
        "domain",
        "hs_object_id",
        "createdate",
        "hs_lastmodifieddate",
    }
    assert list(company) == ["id", "properties", "createdAt", "updatedAt", "archived", "url"]


ALL_PROPERTIES = {
    "contacts": "firstname,lastname,email,phone,company,jobtitle,website,lifecyclestage,"
    "hubspot_owner_id,associatedcompanyid,favorite_color,customer_tier",
    "companies": "name,domain,industry,phone,city,country,hubspot_owner_id",
    "deals": "dealname,amount,deal_currency_code,dealstage,pipeline,closedate,hubspot_owner_id",
    "tasks": "hs_task_subject,hs_task_body,hs_task_status,hs_task_priority,hs_task_type,"
    "hs_timestamp,hubspot_owner_id",
    "calls": "hs_call_title,hs_call_body,hs_call_direction,hs_call_duration,hs_call_disposition,"
    "hs_call_status,hs_timestamp",
    "notes": "hs_note_body,hs_timestamp,hubspot_owner_id",
}


@pytest.mark.parametrize("object_type", sorted(ALL_PROPERTIES))
def test_property_values_are_strings_or_null(shared, object_type: str) -> None:
    _, client = shared
    records, _ = list_all(
        client, f"/crm/v3/objects/{object_type}", properties=ALL_PROPERTIES[object_type]
    )
    values = [value for record in records for value in record["properties"].values()]
    assert records and all(value is None or isinstance(value, str) for value in values)
    assert None in values  # some properties are unset and come back as null
    assert all(isinstance(record["id"], str) for record in records)


def test_seed_has_template_like_first_name_and_associations(shared) -> None:
    _, client = shared
    records, _ = list_all(client, CONTACTS, associations="companies")
    assert any(record["properties"]["firstname"] == "{{ 7*7 }}" for record in records)
    linked = [record for record in records if "associations" in record]
    assert linked and linked[0]["associations"]["companies"]["results"][0]["type"] == (
        "contact_to_company"
    )
    tasks, _ = list_all(client, "/crm/v3/objects/tasks", associations="contacts")
    assert all(
        t["associations"]["contacts"]["results"][0]["type"] == "task_to_contact" for t in tasks
    )


def test_object_type_ids_work_like_names(shared) -> None:
    _, client = shared
    by_id = client.get("/crm/v3/objects/0-3", params={"limit": 3}).json()
    assert by_id == client.get("/crm/v3/objects/deals", params={"limit": 3}).json()


def test_seed_data_is_deterministic() -> None:
    def snapshot(seed: int) -> list[bytes]:
        emulator = HubSpotSandbox(
            seed=seed, contacts=120, companies=10, deals=10, tasks=5, **UNLIMITED
        )
        with emulator.start() as running, open_client(running) as client:
            return [
                client.get(
                    f"/crm/v3/objects/{kind}",
                    params={
                        "limit": 100,
                        "properties": ALL_PROPERTIES[kind],
                        "associations": "companies",
                    },
                ).content
                for kind in ("contacts", "companies", "deals", "tasks")
            ]

    assert snapshot(7) == snapshot(7)
    assert snapshot(7) != snapshot(8)


# -- single records --------------------------------------------------------------------------


def test_get_by_id_and_by_email(shared) -> None:
    _, client = shared
    first = client.get(CONTACTS, params={"limit": 20}).json()["results"]
    contact = next(record for record in first if record["properties"]["email"])
    by_id = client.get(f"{CONTACTS}/{contact['id']}")
    assert by_id.status_code == 200 and by_id.json()["id"] == contact["id"]
    email = contact["properties"]["email"].upper()
    by_email = client.get(f"{CONTACTS}/{email}", params={"idProperty": "email"})
    assert by_email.status_code == 200 and by_email.json()["id"] == contact["id"]
    missing = client.get(f"{CONTACTS}/nobody@example.com", params={"idProperty": "email"})
    assert missing.status_code == 404 and missing.json()["category"] == "OBJECT_NOT_FOUND"


def test_errors_use_the_hubspot_envelope(shared) -> None:
    _, client = shared
    unknown_route = client.get("/crm/v3/nothing-here")
    body = unknown_route.json()
    assert unknown_route.status_code == 404 and body["status"] == "error"
    assert {"message", "correlationId", "category"} <= set(body)
    bad_type = client.get("/crm/v3/objects/widgets")
    assert bad_type.status_code == 400
    assert bad_type.json()["message"] == "Unable to infer object type from: widgets"


def test_create_returns_201_with_string_values_and_associations(portal) -> None:
    emulator, client = portal
    company_id = client.get("/crm/v3/objects/companies", params={"limit": 1}).json()["results"][0][
        "id"
    ]
    response = client.post(
        CONTACTS,
        json={
            "properties": {"email": "new.person@example.com", "customer_tier": "gold"},
            "associations": [
                {
                    "to": {"id": company_id},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}],
                }
            ],
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["properties"]["lifecyclestage"] == "lead"  # contacts_create_response.json
    assert created["properties"]["hs_object_id"] == created["id"]
    linked = client.get(f"{CONTACTS}/{created['id']}", params={"associations": "companies"}).json()
    # Type 279 is the unlabelled contact -> company type, but the first company linked is the
    # primary (type 1) all the same: listed once more as contact_to_company, and the contact's
    # associatedcompanyid.
    assert linked["associations"]["companies"]["results"] == [
        {"id": company_id, "type": "contact_to_company"},
        {"id": company_id, "type": "contact_to_company_unlabeled"},
    ]
    assert created["properties"]["associatedcompanyid"] == company_id
    back = client.get(
        f"/crm/v3/objects/companies/{company_id}", params={"associations": "contacts"}
    )
    assert created["id"] in [a["id"] for a in back.json()["associations"]["contacts"]["results"]]

    deal = client.post(
        "/crm/v3/objects/deals", json={"properties": {"dealname": "X", "amount": 10000}}
    )
    assert deal.status_code == 201 and deal.json()["properties"]["amount"] == "10000"
    assert emulator.store.get("deals", deal.json()["id"])["properties"]["amount"] == "10000"
    assert emulator.app.stats.count("objects.create") == 2


def test_create_validation_errors(portal) -> None:
    _, client = portal
    unknown = client.post(CONTACTS, json={"properties": {"email": "a@b.co", "shoe_size": "9"}})
    body = unknown.json()
    assert unknown.status_code == 400 and body["category"] == "VALIDATION_ERROR"
    assert [error["code"] for error in body["errors"]] == ["PROPERTY_DOESNT_EXIST"]
    bad_option = client.post(CONTACTS, json={"properties": {"lifecyclestage": "royalty"}})
    assert bad_option.json()["errors"][0]["code"] == "INVALID_OPTION"
    no_timestamp = client.post(
        "/crm/v3/objects/tasks", json={"properties": {"hs_task_subject": "x"}}
    )
    assert no_timestamp.status_code == 400
    # A meeting without hs_timestamp takes its start time; with neither it is refused.
    meeting = client.post("/crm/v3/objects/meetings", json={"properties": {
        "hs_meeting_title": "Kickoff", "hs_meeting_start_time": "2026-03-12T10:00:00Z"}})
    assert meeting.status_code == 201, meeting.text
    assert meeting.json()["properties"]["hs_timestamp"] == \
        meeting.json()["properties"]["hs_meeting_start_time"]
    untimed = client.post("/crm/v3/objects/meetings",
                          json={"properties": {"hs_meeting_title": "Kickoff"}})
    assert untimed.status_code == 400
    assert untimed.json()["errors"][0]["context"]["propertyName"] == ["hs_timestamp"]
    missing_target = client.post(
        "/crm/v3/objects/notes",
        json={
            "properties": {"hs_timestamp": "2026-03-12T10:00:00Z", "hs_note_body": "hi"},
            "associations": [
                {
                    "to": {"id": "1"},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}],
                }
            ],
        },
    )
    assert missing_target.status_code == 400
    wrong_direction = client.post(
        "/crm/v3/objects/notes",
        json={
            "properties": {"hs_timestamp": "2026-03-12T10:00:00Z"},
            "associations": [
                {
                    "to": {"id": "1"},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}],
                }
            ],
        },
    )
    assert wrong_direction.status_code == 400


def test_duplicate_email_is_409_with_existing_id(portal) -> None:
    _, client = portal
    existing = next(
        r
        for r in client.get(CONTACTS, params={"limit": 30}).json()["results"]
        if r["properties"]["email"]
    )
    response = client.post(
        CONTACTS, json={"properties": {"email": existing["properties"]["email"].upper()}}
    )
    body = response.json()
    assert response.status_code == 409 and body["category"] == "CONFLICT"
    assert re.search(r"Existing ID:\s*(\d+)", body["message"]).group(1) == existing["id"]
    assert body["message"] == f"Contact already exists. Existing ID: {existing['id']}"


def test_patch_updates_and_bumps_modified_time_from_the_sandbox_clock(portal) -> None:
    emulator, client = portal
    contact = client.get(CONTACTS, params={"limit": 1}).json()["results"][0]
    emulator.advance_time(86_400)
    response = client.patch(
        f"{CONTACTS}/{contact['id']}", json={"properties": {"firstname": "Renamed", "phone": None}}
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["properties"]["firstname"] == "Renamed" and "phone" not in updated["properties"]
    assert updated["updatedAt"] > contact["updatedAt"]
    assert updated["properties"]["lastmodifieddate"] == updated["updatedAt"]
    assert updated["updatedAt"][:10] == emulator.now_iso()[:10]
    assert emulator.store.get("contacts", contact["id"])["properties"]["firstname"] == "Renamed"
    by_email = client.patch(
        f"{CONTACTS}/NOT-THERE@example.com", params={"idProperty": "email"}, json={"properties": {}}
    )
    assert by_email.status_code == 404


def test_delete_archives(portal) -> None:
    emulator, client = portal
    record_id = client.get(CONTACTS, params={"limit": 1}).json()["results"][0]["id"]
    assert client.delete(f"{CONTACTS}/{record_id}").status_code == 204
    assert client.get(f"{CONTACTS}/{record_id}").status_code == 404
    assert client.delete(f"{CONTACTS}/{record_id}").status_code == 204  # retry-safe
    listed = [r["id"] for r in client.get(CONTACTS, params={"limit": 100}).json()["results"]]
    assert record_id not in listed and len(listed) == 29
    archived = client.get(CONTACTS, params={"archived": "true"}).json()["results"]
    assert [r["id"] for r in archived] == [record_id] and archived[0]["archived"] is True
    assert emulator.store.get("contacts", record_id, archived=True)["archivedAt"]


# -- associations v4 batch read --------------------------------------------------------------


def batch_read(
    client: httpx.Client, from_type: str, to_type: str, inputs: list[dict], **kwargs
) -> httpx.Response:
    path = f"/crm/v4/associations/{from_type}/{to_type}/batch/read"
    return client.post(path, json={"inputs": inputs}, **kwargs)


def read_all_associations(
    client: httpx.Client, from_type: str, to_type: str, ids: list[str]
) -> tuple[dict[str, list[dict]], list[dict]]:
    """({from id: every `to` entry, following paging per input}, every error entry)."""
    found: dict[str, list[dict]] = {}
    errors: list[dict] = []
    pending = [{"id": record_id} for record_id in ids]
    while pending:
        response = batch_read(client, from_type, to_type, pending)
        body = response.json()
        assert response.status_code == (207 if body.get("errors") else 200), response.text
        assert body["status"] == "COMPLETE" and body["startedAt"] and body["completedAt"]
        errors += body.get("errors", [])
        pending = []
        for result in body["results"]:
            found.setdefault(result["from"]["id"], []).extend(result["to"])
            if "paging" in result:
                pending.append(
                    {"id": result["from"]["id"], "after": result["paging"]["next"]["after"]}
                )
    return found, errors


def test_v4_batch_read_equals_the_list_endpoint_associations(shared) -> None:
    _, client = shared
    deals, _ = list_all(client, "/crm/v3/objects/deals", associations="companies,contacts")
    deal_ids = [deal["id"] for deal in deals]
    for to_type, plain_type in (("companies", 341), ("contacts", 3)):
        found, errors = read_all_associations(client, "deals", to_type, deal_ids)
        # Each linked id once: a list names the primary company twice (unlabelled, primary).
        listed = {
            deal["id"]: list(dict.fromkeys(
                a["id"] for a in deal.get("associations", {}).get(to_type, {}).get("results", [])
            ))
            for deal in deals
        }
        assert {d: [str(t["toObjectId"]) for t in to] for d, to in found.items()} == {
            d: ids for d, ids in listed.items() if ids
        }
        # Inputs without associations are left out of results and listed in errors.
        assert sorted(e["context"]["fromObjectId"][0] for e in errors) == sorted(
            d for d, ids in listed.items() if not ids
        )
        for to in found.values():
            for target in to:
                assert isinstance(target["toObjectId"], int)  # a number in v4, not a string
                assert target["associationTypes"][-1] == {
                    "category": "HUBSPOT_DEFINED",
                    "typeId": plain_type,
                    "label": None,
                }
    companies, _ = read_all_associations(client, "deals", "companies", deal_ids)
    # Every seeded deal's one company is its primary company: type 5 beside 341.
    assert companies and all(
        [t["associationTypes"] for t in to]
        == [
            [
                {"category": "HUBSPOT_DEFINED", "typeId": 5,
                 "label": "Deal with Primary Company"},
                {"category": "HUBSPOT_DEFINED", "typeId": 341, "label": None},
            ]
        ]
        for to in companies.values()
    )
    # Object type ids work like names, as on the object routes.
    by_type_id = batch_read(client, "0-3", "0-2", [{"id": deal_ids[0]}]).json()
    by_name = batch_read(client, "deals", "companies", [{"id": deal_ids[0]}]).json()
    assert by_type_id["results"] == by_name["results"]


def test_v4_batch_read_contact_primary_company_and_reverse_direction(shared) -> None:
    _, client = shared
    contacts, _ = list_all(
        client, CONTACTS, properties="associatedcompanyid", associations="companies"
    )
    linked = [c for c in contacts if "associations" in c]
    found, _ = read_all_associations(client, "contacts", "companies", [c["id"] for c in linked])
    for contact in linked:
        primary = contact["properties"]["associatedcompanyid"]
        for target in found[contact["id"]]:
            labels = {t["typeId"]: t["label"] for t in target["associationTypes"]}
            expected = (
                {1: "Contact with Primary Company", 279: None}
                if str(target["toObjectId"]) == primary else {279: None}
            )
            assert labels == expected
    companies, _ = list_all(client, "/crm/v3/objects/companies", associations="contacts")
    back, _ = read_all_associations(client, "companies", "contacts", [c["id"] for c in companies])
    for company in companies:
        listed = [
            a["id"] for a in company.get("associations", {}).get("contacts", {}).get("results", [])
        ]
        assert [str(t["toObjectId"]) for t in back.get(company["id"], [])] == listed
    assert all(
        t["associationTypes"] == [{"category": "HUBSPOT_DEFINED", "typeId": 280, "label": None}]
        for to in back.values()
        for t in to
    )


def test_v4_batch_read_unknown_ids_are_207_errors(shared) -> None:
    _, client = shared
    deal_id = client.get("/crm/v3/objects/deals", params={"limit": 1}).json()["results"][0]["id"]
    response = batch_read(
        client, "deals", "companies", [{"id": "1"}, {"id": deal_id}, {"id": "not-a-number"}]
    )
    body = response.json()
    assert response.status_code == 207 and body["status"] == "COMPLETE"
    assert [r["from"]["id"] for r in body["results"]] == [deal_id]
    assert body["numErrors"] == 2
    assert body["errors"][0] == {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
        "message": "No company is associated with deal 1.",
        "context": {"fromObjectId": ["1"], "fromObjectType": ["deal"], "toObjectType": ["company"]},
    }
    assert body["errors"][1]["context"]["fromObjectId"] == ["not-a-number"]
    nothing = batch_read(client, "deals", "contacts", [{"id": "2"}])
    assert nothing.status_code == 207 and nothing.json()["results"] == []
    empty = batch_read(client, "deals", "contacts", [])
    assert empty.status_code == 200 and empty.json()["results"] == []


def test_v4_batch_read_input_limit_and_validation(shared) -> None:
    _, client = shared
    deals = client.get("/crm/v3/objects/deals", params={"limit": 100}).json()["results"]
    inputs = [{"id": deals[i % len(deals)]["id"]} for i in range(1000)]
    at_limit = batch_read(client, "deals", "companies", inputs)
    assert at_limit.status_code in (200, 207) and len(at_limit.json()["results"]) == 1000
    over = batch_read(client, "deals", "companies", [*inputs, {"id": "1"}])
    body = over.json()
    assert over.status_code == 400 and body["category"] == "VALIDATION_ERROR"
    assert body["status"] == "error" and body["correlationId"] and "1000" in body["message"]
    path = "/crm/v4/associations/deals/companies/batch/read"
    for bad in (
        {},
        {"inputs": {"id": "1"}},
        {"inputs": [{}]},
        {"inputs": [{"id": "1", "after": "%%"}]},
    ):
        response = client.post(path, json=bad)
        assert response.status_code == 400, bad
        assert response.json()["category"] == "VALIDATION_ERROR"
    assert client.post(path, content=b"{not json").status_code == 400
    widgets = batch_read(client, "deals", "widgets", [{"id": "1"}])
    assert widgets.status_code == 400
    assert widgets.json()["message"] == "Unable to infer object type from: widgets"
    # The sandbox models only the association type ids of schema.ASSOCIATION_TYPES.
    assert batch_read(client, "companies", "deals", [{"id": "1"}]).status_code == 400


def test_v4_batch_read_pages_many_associations_per_input() -> None:
    emulator = HubSpotSandbox(contacts=700, companies=1, deals=0, **UNLIMITED)
    with emulator.start() as running, open_client(running) as client:
        company = client.get(
            "/crm/v3/objects/companies", params={"associations": "contacts"}
        ).json()["results"][0]
        # The list names the first links and pages the rest (its cap is our choice).
        listed = [a["id"] for a in company["associations"]["contacts"]["results"]]
        every = [str(i) for i in emulator.store.associated_ids(
            "companies", int(company["id"]), "contacts")]
        assert len(every) > 500 and listed == every[:LISTED_LINKS]
        assert company["associations"]["contacts"]["paging"]["next"]["after"]
        first = batch_read(client, "companies", "contacts", [{"id": company["id"]}]).json()
        page = first["results"][0]
        assert len(page["to"]) == 500 and page["paging"]["next"]["after"]
        assert set(page["paging"]["next"]) == {"after"}
        found, errors = read_all_associations(client, "companies", "contacts", [company["id"]])
        assert not errors and [str(t["toObjectId"]) for t in found[company["id"]]] == every
        wrong_type = batch_read(
            client,
            "contacts",
            "companies",
            [{"id": listed[0], "after": page["paging"]["next"]["after"]}],
        )
        assert wrong_type.status_code == 400


def test_v4_batch_read_auth_scopes_and_rate_limits() -> None:
    emulator = HubSpotSandbox(
        contacts=20, companies=3, deals=5, rate_limit=(4, 10.0), daily_limit=None
    )
    with emulator.start() as running, open_client(running, token=None) as client:
        deal_id = str(emulator.store.tables["deals"].active[0])
        inputs = [{"id": deal_id}]
        missing = batch_read(client, "deals", "companies", inputs)
        assert missing.status_code == 401
        assert missing.json()["category"] == "INVALID_AUTHENTICATION"
        contacts_only = emulator.issue_token(["oauth", "crm.objects.contacts.read"])
        bearer = {"Authorization": f"Bearer {contacts_only.access_token}"}
        denied = batch_read(client, "deals", "companies", inputs, headers=bearer)
        assert denied.status_code == 403 and denied.json()["category"] == "MISSING_SCOPES"
        assert denied.json()["errors"][0]["context"]["requiredGranularScopes"] == [
            "crm.objects.deals.read"
        ]
        # The from-object's read scope is what counts.
        allowed = batch_read(client, "contacts", "deals", [{"id": "1"}], headers=bearer)
        assert allowed.status_code == 207
        assert allowed.headers["X-HubSpot-RateLimit-Max"] == "4"
        emulator.advance_time(1800 + 5)
        expired = batch_read(client, "contacts", "deals", [{"id": "1"}], headers=bearer)
        assert expired.status_code == 401 and expired.json()["category"] == "EXPIRED_AUTHENTICATION"
        static = {"Authorization": f"Bearer {STATIC_TOKEN}"}
        statuses = [
            batch_read(client, "deals", "companies", inputs, headers=static).status_code
            for _ in range(5)
        ]
        assert statuses == [200, 200, 200, 200, 429]
        assert emulator.app.stats.count("associations.batch_read") >= 5


def test_v4_batch_read_shows_created_associations(portal) -> None:
    _, client = portal
    companies = client.get("/crm/v3/objects/companies", params={"limit": 2}).json()["results"]
    contact = client.get(CONTACTS, params={"limit": 1}).json()["results"][0]

    def spec(to_id: str, *type_ids: int) -> dict:
        types = [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t} for t in type_ids
        ]
        return {"to": {"id": to_id}, "types": types}

    deal = client.post(
        "/crm/v3/objects/deals",
        json={
            "properties": {"dealname": "Linked"},
            "associations": [
                spec(companies[0]["id"], 341),
                spec(companies[1]["id"], 5, 341),
                spec(contact["id"], 3),
            ],
        },
    ).json()
    by_company = batch_read(client, "deals", "companies", [{"id": deal["id"]}]).json()
    assert by_company["results"][0]["to"] == sorted(
        [
            {
                "toObjectId": int(companies[0]["id"]),
                "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 341, "label": None}],
            },
            {
                "toObjectId": int(companies[1]["id"]),
                "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": 5,
                     "label": "Deal with Primary Company"},
                    {"category": "HUBSPOT_DEFINED", "typeId": 341, "label": None},
                ],
            },
        ],
        key=lambda target: target["toObjectId"],
    )
    # Associations are symmetric: the contact now reads the deal back (type 4).
    back = batch_read(client, "contacts", "deals", [{"id": contact["id"]}]).json()
    assert {
        "toObjectId": int(deal["id"]),
        "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 4, "label": None}],
    } in back["results"][0]["to"]
    # No primary type given: the first company linked is the primary (HubSpot's v4 guide).
    plain = client.post("/crm/v3/objects/deals", json={
        "properties": {"dealname": "Plain"},
        "associations": [spec(companies[1]["id"], 341), spec(companies[0]["id"], 341)]}).json()
    read = batch_read(client, "deals", "companies", [{"id": plain["id"]}]).json()
    assert {target["toObjectId"]: [t["typeId"] for t in target["associationTypes"]]
            for target in read["results"][0]["to"]} == {int(companies[1]["id"]): [5, 341],
                                                        int(companies[0]["id"]): [341]}
    # An archived record reads like an unknown one (sandbox choice, UNCONFIRMED).
    assert client.delete(f"/crm/v3/objects/deals/{deal['id']}").status_code == 204
    gone = batch_read(client, "deals", "companies", [{"id": deal["id"]}])
    assert gone.status_code == 207 and gone.json()["results"] == []


# -- search ----------------------------------------------------------------------------------


def search(client: httpx.Client, object_type: str, body: dict) -> httpx.Response:
    return client.post(f"/crm/v3/objects/{object_type}/search", json=body)


def test_search_eq_email_is_case_insensitive(shared) -> None:
    _, client = shared
    contact = next(
        r
        for r in client.get(CONTACTS, params={"limit": 20}).json()["results"]
        if r["properties"]["email"] and r["properties"]["email"][0].isupper()
    )
    response = search(
        client,
        "contacts",
        {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "email",
                            "operator": "EQ",
                            "value": contact["properties"]["email"].lower(),
                        }
                    ]
                }
            ],
            "properties": ["email"],
            "limit": 1,
        },
    )
    body = response.json()
    assert response.status_code == 200 and body["total"] == 1 and "paging" not in body
    assert body["results"][0]["id"] == contact["id"]
    assert not any(name.lower().startswith("x-hubspot-ratelimit") for name in response.headers)


def test_search_gte_sorts_and_offset_paging(shared) -> None:
    _, client = shared
    cutoff = "2025-01-01T00:00:00.000Z"
    query = {
        "filterGroups": [
            {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": cutoff}]}
        ],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["lastmodifieddate", "email"],
        "limit": 40,
    }
    results, offsets, after, total = [], [], None, None
    while True:
        page = search(client, "contacts", {**query, **({"after": after} if after else {})}).json()
        total = page["total"]
        results += page["results"]
        if "paging" not in page:
            break
        assert set(page["paging"]["next"]) == {"after"}  # numeric offset, no link
        after = page["paging"]["next"]["after"]
        offsets.append(after)
    stamps = [r["properties"]["lastmodifieddate"] for r in results]
    assert len(results) == total > 40 and stamps == sorted(stamps) and min(stamps) >= cutoff
    assert offsets == [str(40 * n) for n in range(1, len(offsets) + 1)]
    # Timestamps compare as times: the same cutoff as epoch milliseconds matches the same set.
    epoch = search(
        client,
        "contacts",
        {
            **query,
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "lastmodifieddate",
                            "operator": "GTE",
                            "value": "1735689600000",
                        }
                    ]
                }
            ],
        },
    )
    assert epoch.json()["total"] == total
    descending = search(client, "contacts", {**query, "sorts": ["-lastmodifieddate"]}).json()
    assert descending["results"][0]["properties"]["lastmodifieddate"] == max(stamps)


def test_search_operators_and_or_groups(shared) -> None:
    _, client = shared

    def total(*groups: list[dict]) -> int:
        body = {"filterGroups": [{"filters": filters} for filters in groups], "limit": 0}
        response = search(client, "contacts", body)
        assert response.status_code == 200, response.text
        return response.json()["total"]

    gold = {"propertyName": "customer_tier", "operator": "EQ", "value": "gold"}
    silver = {"propertyName": "customer_tier", "operator": "EQ", "value": "silver"}
    assert total([gold]) + total([silver]) == total([gold], [silver])
    assert total(
        [{"propertyName": "customer_tier", "operator": "IN", "values": ["GOLD", "silver"]}]
    ) == (total([gold], [silver]))
    has = total([{"propertyName": "customer_tier", "operator": "HAS_PROPERTY"}])
    has_not = total([{"propertyName": "customer_tier", "operator": "NOT_HAS_PROPERTY"}])
    assert has + has_not == 250
    assert total([gold, {"propertyName": "customer_tier", "operator": "NEQ", "value": "gold"}]) == 0
    assert total([{"propertyName": "firstname", "operator": "CONTAINS_TOKEN", "value": "7*7"}]) >= 1
    assert total([{"propertyName": "hs_object_id", "operator": "LT", "value": "70000000100"}]) > 0


def test_search_limits(shared) -> None:
    _, client = shared
    assert search(client, "contacts", {"limit": 201}).status_code == 400
    beyond = search(client, "contacts", {"after": "10000"})
    assert beyond.status_code == 400 and beyond.json()["category"] == "VALIDATION_ERROR"
    unknown = {
        "filterGroups": [{"filters": [{"propertyName": "nope", "operator": "EQ", "value": 1}]}]
    }
    assert search(client, "contacts", unknown).status_code == 400


def test_search_stops_at_10000_results() -> None:
    emulator = HubSpotSandbox(contacts=10_050, companies=0, deals=0, **UNLIMITED)
    with emulator.start() as running, open_client(running) as client:
        last = search(client, "contacts", {"limit": 200, "after": "9800"}).json()
        assert last["total"] == 10_050 and len(last["results"]) == 200
        assert last["paging"]["next"]["after"] == "10000"  # offered, but refused:
        assert search(client, "contacts", {"limit": 200, "after": "10000"}).status_code == 400


# -- auth and OAuth --------------------------------------------------------------------------


def test_oauth_code_refresh_revoke_round_trip(portal) -> None:
    emulator, client = portal
    authorize = client.get(
        "/oauth/authorize",
        params={
            "client_id": emulator.client_id,
            "redirect_uri": "http://localhost/cb",
            "scope": "oauth crm.objects.contacts.read",
            "optional_scope": "crm.objects.deals.read",
            "state": "xyz",
        },
    )
    assert authorize.status_code == 302
    location = urlsplit(authorize.headers["location"])
    redirect = parse_qs(location.query)
    assert location.path == "/cb" and redirect["state"] == ["xyz"]
    form = {
        "grant_type": "authorization_code",
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        "redirect_uri": "http://localhost/cb",
        "code": redirect["code"][0],
    }
    token = client.post("/oauth/v1/token", data=form)
    grant = token.json()
    assert token.status_code == 200 and grant["token_type"] == "bearer"
    assert grant["token_use"] == "access_token" and grant["expires_in"] == 1800
    assert grant["scopes"] == ["oauth", "crm.objects.contacts.read", "crm.objects.deals.read"]
    assert client.post("/oauth/v1/token", data=form).json()["status"] == "BAD_AUTH_CODE"

    bearer = {"Authorization": f"Bearer {grant['access_token']}"}
    assert client.get(CONTACTS, headers=bearer).status_code == 200
    denied = client.get("/crm/v3/objects/companies", headers=bearer)
    assert denied.status_code == 403 and denied.json()["category"] == "MISSING_SCOPES"
    assert client.post(CONTACTS, headers=bearer, json={"properties": {}}).status_code == 403
    info = client.get(f"/oauth/v1/access-tokens/{grant['access_token']}").json()
    assert info["token_type"] == "access" and 0 < info["expires_in"] <= 1800

    refresh = {
        "grant_type": "refresh_token",
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        "refresh_token": grant["refresh_token"],
    }
    refreshed = client.post("/oauth/v1/token", data=refresh).json()
    assert refreshed["refresh_token"] == grant["refresh_token"]  # default: no rotation
    assert refreshed["access_token"] != grant["access_token"]
    revoked = client.delete(f"/oauth/v1/refresh-tokens/{grant['refresh_token']}")
    assert revoked.status_code == 204
    bad = client.post("/oauth/v1/token", data=refresh)
    assert bad.status_code == 400
    assert bad.json() == {
        "status": "BAD_REFRESH_TOKEN",
        "message": "missing or invalid refresh token",
    }
    after_revoke = client.get(
        CONTACTS, headers={"Authorization": f"Bearer {refreshed['access_token']}"}
    )
    assert after_revoke.json()["category"] == "INVALID_AUTHENTICATION"


def test_oauth_rejects_unknown_client_and_can_rotate() -> None:
    emulator = HubSpotSandbox(contacts=1, companies=0, deals=0, rotate_refresh_tokens=True)
    with emulator.start() as running, open_client(running, token=None) as client:
        unknown = client.get(
            "/oauth/authorize",
            params={"client_id": "nope", "redirect_uri": "http://x/cb", "scope": "oauth"},
        )
        assert unknown.status_code == 400
        first = emulator.issue_token()
        form = {
            "grant_type": "refresh_token",
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
            "refresh_token": first.refresh_token,
        }
        rotated = client.post("/oauth/v1/token", data=form).json()
        assert rotated["refresh_token"] != first.refresh_token
        assert client.post("/oauth/v1/token", data=form).json()["status"] == "BAD_REFRESH_TOKEN"
        wrong_secret = client.post("/oauth/v1/token", data={**form, "client_secret": "x"})
        assert wrong_secret.json()["status"] == "BAD_CLIENT_SECRET"


def test_expired_token_is_401_after_advance_time(portal) -> None:
    emulator, client = portal
    grant = emulator.issue_token()
    bearer = {"Authorization": f"Bearer {grant.access_token}"}
    assert client.get(CONTACTS, headers=bearer).status_code == 200
    emulator.advance_time(1800 + 75)
    expired = client.get(CONTACTS, headers=bearer)
    body = expired.json()
    assert expired.status_code == 401 and body["category"] == "EXPIRED_AUTHENTICATION"
    assert body["message"] == "The OAuth token used to make this call expired 75 second(s) ago."
    assert set(body["context"]) == {"expire time"} and body["correlationId"]
    assert client.get(CONTACTS).status_code == 200  # private-app tokens never expire
    fresh = emulator.issue_token()
    emulator.expire_all_tokens()
    gone = client.get(CONTACTS, headers={"Authorization": f"Bearer {fresh.access_token}"})
    assert gone.json()["category"] == "EXPIRED_AUTHENTICATION"
    missing = client.get(CONTACTS, headers={"Authorization": ""})
    assert missing.status_code == 401
    assert missing.json()["message"].startswith("Authentication credentials not found")


# -- rate limits -----------------------------------------------------------------------------


def test_ten_second_window_limit_gives_429_with_policy_name() -> None:
    emulator = HubSpotSandbox(contacts=5, companies=0, deals=0, rate_limit=(5, 10.0))
    with emulator.start() as running, open_client(running) as client:
        remaining = []
        for _ in range(5):
            response = client.get(CONTACTS)
            assert response.status_code == 200
            assert response.headers["X-HubSpot-RateLimit-Max"] == "5"
            assert response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
            remaining.append(int(response.headers["X-HubSpot-RateLimit-Remaining"]))
        assert remaining == [4, 3, 2, 1, 0]
        limited = client.get(CONTACTS)
        body = limited.json()
        assert limited.status_code == 429 and "retry-after" not in limited.headers
        assert body["status"] == "error" and body["errorType"] == "RATE_LIMIT"
        assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["correlationId"]
        assert body["message"] == "You have reached your ten_secondly_rolling limit."
        emulator.advance_time(10)
        assert client.get(CONTACTS).status_code == 200


def test_daily_limit_and_search_limit() -> None:
    emulator = HubSpotSandbox(contacts=5, companies=0, deals=0, rate_limit=None, daily_limit=3)
    with emulator.start() as running, open_client(running) as client:
        for _ in range(3):
            assert client.get(CONTACTS).status_code == 200
        daily = client.get(CONTACTS)
        assert daily.status_code == 429
        assert set(daily.json()) == {
            "status",
            "message",
            "errorType",
            "correlationId",
            "policyName",
            "requestId",
        }
        assert daily.json()["policyName"] == "DAILY"
        emulator.advance_time(86_400)
        assert client.get(CONTACTS).status_code == 200
    emulator = HubSpotSandbox(contacts=5, companies=0, deals=0, rate_limit=None, daily_limit=None)
    with emulator.start() as running, open_client(running) as client:
        statuses = [search(client, "contacts", {}).status_code for _ in range(6)]
        # CONTRACTS 1.5: 4/s per token (changelog) or 5/s per account (current docs, 3P);
        # the sandbox's choice is 5 per second per account.
        assert statuses == [200] * 5 + [429]
        assert (
            search(client, "contacts", {}).json()["message"]
            == "You have reached your secondly limit."
        )


# -- fault injection -------------------------------------------------------------------------


def test_fail_next_then_recover_and_counts(portal) -> None:
    emulator, client = portal
    before = emulator.store.count("contacts")
    emulator.app.fail_next(2, 503)
    first = client.post(CONTACTS, json={"properties": {"email": "retry@example.com"}})
    assert first.status_code == 503 and first.json()["status"] == "error"
    assert client.get(CONTACTS).status_code == 503
    assert client.get(CONTACTS).status_code == 200
    assert emulator.store.count("contacts") == before  # the failed POST wrote nothing
    assert emulator.app.stats.count("objects.create") == 1
    emulator.app.fail_next(1, 429)
    assert client.get(CONTACTS).json()["policyName"] == "TEN_SECONDLY_ROLLING"
    emulator.app.fail_next(1, 500, body={"custom": True}, headers={"X-Test": "1"})
    custom = client.get(CONTACTS)
    assert custom.json() == {"custom": True} and custom.headers["x-test"] == "1"
    emulator.app.fail_next(1, 500)
    token = client.post("/oauth/v1/token", data={"grant_type": "nope"})
    assert token.status_code == 400  # OAuth routes are not faulted unless asked
    assert client.get(CONTACTS).status_code == 500


def test_drop_next_closes_the_connection_without_a_reply(portal) -> None:
    emulator, client = portal
    before = emulator.store.count("contacts")
    emulator.app.drop_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(CONTACTS)
    assert client.get(CONTACTS).status_code == 200
    emulator.app.drop_next(1, after_handling=True)  # the write lands, the reply is lost
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(CONTACTS, json={"properties": {"email": "ambiguous@example.com"}})
    assert emulator.store.count("contacts") == before + 1
    retry = client.post(CONTACTS, json={"properties": {"email": "ambiguous@example.com"}})
    assert retry.status_code == 409


def test_error_rate_is_deterministic() -> None:
    def statuses() -> list[int]:
        emulator = HubSpotSandbox(
            seed=3, contacts=2, companies=0, deals=0, error_rate=0.3, **UNLIMITED
        )
        with emulator.start() as running, open_client(running) as client:
            return [client.get(CONTACTS).status_code for _ in range(40)]

    first = statuses()
    assert first == statuses()
    assert 200 in first and set(first) - {200} <= {500, 502, 503} and len(set(first)) > 1


def test_latency_is_applied() -> None:
    emulator = HubSpotSandbox(contacts=1, companies=0, deals=0, latency_ms=50, **UNLIMITED)
    with emulator.start() as running, open_client(running) as client:
        response = client.get(CONTACTS)
        assert response.status_code == 200 and response.elapsed.total_seconds() >= 0.05
