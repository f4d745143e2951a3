"""Every vendor field lands: streams read the CRM's field list (Salesforce describe, HubSpot
properties, Zoho settings/fields) and ask for all of it, so `custom` holds each field the
mapping does not name, standard and custom alike; past a vendor's cap on one request (Zoho's
50 API names, a URL length) the same page is requested per chunk of fields and merged by id."""

from __future__ import annotations

import json

import pytest

from engine.engine import PROJECT_ROOT
from sandbox import EMULATORS
from sandbox.demo import connect_oauth

CONNECTORS = PROJECT_ROOT / "connectors"

# Per vendor: a custom field of the seeded org, a standard field the contact mapping leaves
# out, a compound field no bulk query can select, and a field the mapping names (all as the
# vendor's own contract names them: CONTRACTS.md and the emulators' seeds).
CASES = {
    "salesforce": {"custom": "Favorite_Color__c", "standard": "Department",
                   "mapped": "Email", "never": "MailingAddress"},
    "hubspot": {"custom": "favorite_color", "standard": "website", "mapped": "email",
                "never": None},
    "zoho": {"custom": "Favorite_Color", "standard": "Department", "mapped": "Email",
             "never": None},
}


def _contacts(engine) -> list[tuple[str, dict]]:
    return [(row[0], json.loads(row[1])) for row in
            engine.store.query("SELECT id, custom::VARCHAR FROM contacts ORDER BY id")]


@pytest.mark.parametrize("vendor", sorted(CASES))
def test_every_field_the_mapping_does_not_name_lands_in_custom(vendor, make_engine):
    case = CASES[vendor]
    emulator = EMULATORS[vendor](contacts=30, companies=5, deals=5)
    with emulator.start() as running:
        engine = make_engine(CONNECTORS)
        connect_oauth(engine, vendor, emulator, running.url, "c")
        [run] = engine.sync(vendor, "c", streams=["contacts"])
    assert run.status == "succeeded", run.error
    assert not run.warnings
    customs = [custom for _, custom in _contacts(engine)]
    assert len(customs) == 30
    # Under its API name, on every row (null where the record has no value), with values.
    assert all(case["custom"] in c and case["standard"] in c for c in customs)
    assert any(c[case["custom"]] not in (None, "") for c in customs)
    assert not any(case["mapped"] in c for c in customs)
    if case["never"]:
        assert not any(case["never"] in c for c in customs)


def _rows(engine) -> list[tuple]:
    return engine.store.query(
        "SELECT id, email, first_name, last_name, custom::VARCHAR FROM contacts ORDER BY id")


def test_zoho_chunks_fields_past_its_cap_and_lands_the_same_rows(make_engine):
    emulator = EMULATORS["zoho"](contacts=450, companies=5, deals=5)
    with emulator.start() as running:
        whole = make_engine(CONNECTORS, db="whole.duckdb")
        connect_oauth(whole, "zoho", emulator, running.url, "z")
        [unchunked] = whole.sync("zoho", "z", streams=["contacts"])
        assert unchunked.status == "succeeded", unchunked.error
        assert unchunked.requests == unchunked.pages + 1  # + the field list

        # An org whose field list is over the cap: here, a cap of 20 API names.
        emulator.max_fields = 20
        refused = make_engine(CONNECTORS, db="refused.duckdb")
        refused.connector("zoho").streams["contacts"].fields.chunk = None
        connect_oauth(refused, "zoho", emulator, running.url, "z")
        [failed] = refused.sync("zoho", "z", streams=["contacts"])
        assert failed.status == "failed" and "LIMIT_EXCEEDED" in failed.error

        chunked = make_engine(CONNECTORS, db="chunked.duckdb")
        chunked.connector("zoho").streams["contacts"].fields.chunk.max_fields = 20
        connect_oauth(chunked, "zoho", emulator, running.url, "z")
        [run] = chunked.sync("zoho", "z", streams=["contacts"])
    assert run.status == "succeeded", run.error
    assert run.pages == unchunked.pages == 3
    assert run.requests > unchunked.requests and (run.requests - 1) % run.pages == 0
    assert _rows(chunked) == _rows(whole)


def test_hubspot_chunks_properties_past_the_url_length_and_lands_the_same_rows(make_engine):
    emulator = EMULATORS["hubspot"](contacts=250, companies=5, deals=5)
    with emulator.start() as running:
        whole = make_engine(CONNECTORS, db="whole.duckdb")
        connect_oauth(whole, "hubspot", emulator, running.url, "h")
        [unchunked] = whole.sync("hubspot", "h", streams=["contacts"])
        assert unchunked.status == "succeeded", unchunked.error

        emulator.max_url_length = 260  # 414 URI Too Long past this
        refused = make_engine(CONNECTORS, db="refused.duckdb")
        refused.connector("hubspot").streams["contacts"].fields.chunk = None
        connect_oauth(refused, "hubspot", emulator, running.url, "h")
        [failed] = refused.sync("hubspot", "h", streams=["contacts"])
        assert failed.status == "failed" and "414" in failed.error

        chunked = make_engine(CONNECTORS, db="chunked.duckdb")
        chunked.connector("hubspot").streams["contacts"].fields.chunk.max_url_length = 260
        connect_oauth(chunked, "hubspot", emulator, running.url, "h")
        [run] = chunked.sync("hubspot", "h", streams=["contacts"])
    assert run.status == "succeeded", run.error
    assert run.pages == unchunked.pages == 3
    assert run.requests > unchunked.requests
    assert _rows(chunked) == _rows(whole)
