"""Actions against a vendor-neutral test server: conditional requests (cases), results taken
from headers, 204 responses, and the payload's path into the request."""

from __future__ import annotations

import pytest

from engine.errors import InputError
from sandbox.kit import App, Request, Response, serve
from tests.support import write_specs

CONNECTOR = r"""
name: acme
title: Acme
base_url: http://unused.invalid
auth:
  token: {type: bearer}
actions:
  create_contact:
    model: contact
    input: create
    required: [last_name]
    cases:
      - when: input.lifecycle_stage == 'lead'
        model: lead
        request: {method: POST, path: /leads, body: "{{ record }}"}
        result: {id: "{{ headers.location.rsplit('/', 1)[1] }}"}
      - request: {method: POST, path: /contacts, body: "{{ record }}"}
        result: {id: "{{ response.id }}"}
  search_records:
    input:
      schema:
        type: object
        additionalProperties: false
        required: [query]
        properties:
          query:
            type: string
            pattern: '^\s*[Ss][Ee][Ll][Ee][Cc][Tt]\s[^;]*$'
            description: a single read-only SELECT
    request: {method: GET, path: /query, params: {q: "{{ input.query }}"}}
    paginate: {style: next_url, next_url: nextRecordsUrl, stop_when: done}
    result: {records: records, raw: true, max_records: 5}
  update_contact:
    model: contact
    input: update
    request: {method: PATCH, path: "/contacts/{{ input.id }}", body: "{{ record }}"}
    result: {id: "{{ input.id }}"}
  update_and_read_contact:
    model: contact
    input: update
    request: {method: PATCH, path: "/contacts/{{ input.id }}", body: "{{ record }}"}
    result: {id: "{{ input.id }}", then: get_contact}
  get_contact:
    model: contact
    input: id
    request: {method: GET, path: "/contacts/{{ input.id }}"}
    result: {record: "@"}
  rename_contact:
    description: the vendor keeps one full name; an update of one part resends the other
    model: contact
    input: {fields: [id, first_name, last_name], required: [id]}
    read_first: get_contact
    request:
      method: PATCH
      path: "/contacts/{{ input.id }}"
      body:
        Name: "{{ (input.first_name or current.first_name) ~ ' '
                  ~ (input.last_name or current.last_name) }}"
    result: {id: "{{ input.id }}"}
  search_by_last_name:
    model: contact
    input: {fields: [last_name]}
    request: {method: GET, path: /contacts/search, params: {q: "{{ input.last_name }}"}}
    result:
      records: data
      filter: "(record.last_name or '') | lower == input.last_name | lower"
"""
MAPPING = """
models:
  contact:
    fields:
      id: {path: Id, write: false}
      first_name: FirstName
      last_name: LastName
      company_name: Account.Name
  lead:
    model: contact
    fields:
      id: {path: Id, write: false}
      first_name: FirstName
      last_name: LastName
      company_name: {path: Company, default: "[not provided]"}
"""


@pytest.fixture
def server():
    app = App()
    received: list[tuple[str, str, object]] = []

    def create(kind: str):
        def handler(request: Request) -> Response:
            received.append((request.method, request.path, request.json()))
            if kind == "leads":
                return Response(201, {"id": "L1", "success": True},
                                headers={"Location": "/sobjects/Lead/L1"})
            return Response(201, {"id": "C1", "success": True})
        return handler

    def patch(request: Request, record_id: str) -> Response:
        received.append((request.method, request.path, request.json(), dict(request.query)))
        return Response(204)

    def query(request: Request, page: str | None = None) -> Response:
        received.append((request.method, request.path, dict(request.query)))
        start = int(page or 0)
        rows = [{"attributes": {"type": "X"}, "Id": str(i)} for i in range(start, start + 2)]
        body = {"done": start >= 4, "records": rows}
        if start < 4:
            body["nextRecordsUrl"] = f"/query/{start + 2}"
        return Response(200, body)

    app.add_route("GET", r"/query(?:/(?P<page>\d+))?", query)
    app.add_route("POST", "/leads", create("leads"))
    app.add_route("POST", "/contacts", create("contacts"))
    app.add_route("PATCH", r"/contacts/(?P<record_id>[^/]+)", patch)
    # A search that answers near matches, as some vendors' `equals` does.
    app.add_route("GET", "/contacts/search", lambda request: Response(200, {"data": [
        {"Id": "1", "LastName": "Burns"}, {"Id": "2", "LastName": "Burnside"},
        {"Id": "3", "LastName": "BURNS"}]}))
    app.add_route("GET", r"/contacts/(?P<record_id>[^/]+)", lambda request, record_id: Response(
        200, {"Id": record_id, "FirstName": "Ada", "LastName": "Lovelace"}))
    running = serve(app)
    running.received = received
    yield running
    running.close()


@pytest.fixture
def engine(tmp_path, make_engine, server):
    engine = make_engine(write_specs(tmp_path, CONNECTOR, MAPPING))
    engine.session("acme", token="tok-abcdef", base_url=server.url)
    return engine


def test_the_first_matching_case_chooses_request_and_mapping(engine, server):
    lead = engine.action("acme", "create_contact",
                         {"last_name": "Lovelace", "lifecycle_stage": "lead"})
    contact = engine.action("acme", "create_contact",
                            {"last_name": "Hopper", "company_name": "Navy"})
    assert (lead["id"], contact["id"]) == ("L1", "C1")
    assert server.received == [
        ("POST", "/leads", {"LastName": "Lovelace", "Company": "[not provided]"}),
        ("POST", "/contacts", {"LastName": "Hopper", "Account": {"Name": "Navy"}}),
    ]


def test_204_update_returns_the_input_id_and_sends_only_given_fields(engine, server):
    # The id is percent-encoded into the path: its `?` does not start a query string.
    result = engine.action("acme", "update_contact", {"id": "x?y=1", "first_name": "Ada"})
    assert result == {"id": "x?y=1"}
    assert server.received == [("PATCH", "/contacts/x?y=1", {"FirstName": "Ada"}, {})]


def test_required_by_the_action(engine, server):
    with pytest.raises(InputError) as info:
        engine.action("acme", "create_contact", {"first_name": "Ada"})
    assert info.value.field == "last_name"
    assert server.received == []


def test_own_input_schema_raw_records_across_pages_up_to_the_cap(engine, server):
    result = engine.action("acme", "search_records", {"query": "SELECT Id FROM X"})
    assert [r["Id"] for r in result["records"]] == ["0", "1", "2", "3", "4"]
    assert result["records"][0]["attributes"] == {"type": "X"}  # raw: as the CRM sent it
    assert [r[1] for r in server.received] == ["/query", "/query/2", "/query/4"]
    assert server.received[0][2] == {"q": ["SELECT Id FROM X"]}


def test_own_input_schema_rejects_with_its_description(engine, server):
    with pytest.raises(InputError) as info:
        engine.action("acme", "search_records", {"query": "DELETE FROM X"})
    assert info.value.field == "query"
    assert "a single read-only SELECT (got 'DELETE FROM X')" in str(info.value)
    with pytest.raises(InputError, match="query"):
        engine.action("acme", "search_records", {"query": "SELECT Id FROM X; DELETE FROM X"})
    assert server.received == []


def test_a_read_back_after_a_204_when_the_yaml_asks_for_one(engine, server):
    result = engine.action("acme", "update_and_read_contact", {"id": "C7", "first_name": "Ada"})
    assert result["id"] == "C7" and result["record"]["last_name"] == "Lovelace"
    assert [r[:2] for r in server.received] == [("PATCH", "/contacts/C7")]  # then the GET


def test_a_read_back_must_name_an_id_action(tmp_path):
    from engine.errors import SpecError
    from engine.loader import load_connector

    bad = CONNECTOR.replace("then: get_contact", "then: create_contact")
    connectors = write_specs(tmp_path, bad, MAPPING)
    with pytest.raises(SpecError, match="create_contact must take `input: id`"):
        load_connector(connectors / "acme.yaml")


def test_a_result_filter_keeps_only_what_matches_the_input(engine):
    result = engine.action("acme", "search_by_last_name", {"last_name": "burns"})
    assert [r["id"] for r in result["records"]] == ["1", "3"] and result["id"] == "1"


def test_read_first_lets_an_update_resend_what_the_payload_leaves_out(engine, server):
    result = engine.action("acme", "rename_contact", {"id": "C9", "last_name": "King"})
    assert result["id"] == "C9"
    method, path, body, _ = server.received[-1]
    assert (method, path, body) == ("PATCH", "/contacts/C9", {"Name": "Ada King"})


def test_read_first_must_name_an_action_that_takes_an_id(tmp_path):
    from engine.errors import SpecError
    from engine.loader import load_connector

    broken = CONNECTOR.replace("read_first: get_contact", "read_first: update_contact")
    with pytest.raises(SpecError) as info:
        load_connector(write_specs(tmp_path, broken, MAPPING) / "acme.yaml")
    [problem] = info.value.problems
    assert problem.path == "actions.rename_contact.read_first"
