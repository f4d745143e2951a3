"""Actions against a vendor-neutral test server: conditional requests (cases), results taken
from headers, 204 responses, and the payload's path into the request."""

from __future__ import annotations

import pytest

from engine.errors import InputError
from sandbox.core import App, Request, Response, serve
from tests.support import write_specs

CONNECTOR = """
name: acme
title: Acme
base_url: http://unused.invalid
auth:
  token: {type: token, apply: {header: Authorization, value: "Bearer {{ token }}"}}
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
  update_contact:
    model: contact
    input: update
    request: {method: PATCH, path: "/contacts/{{ input.id }}", body: "{{ record }}"}
    result: {id: "{{ input.id }}"}
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

    app.add_route("POST", "/leads", create("leads"))
    app.add_route("POST", "/contacts", create("contacts"))
    app.add_route("PATCH", r"/contacts/(?P<record_id>[^/]+)", patch)
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
