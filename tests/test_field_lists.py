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


# Per vendor: the emulator's cap (lowered, as in an org with many fields), the connector's
# matching chunk setting, and what the vendor answers a request over it.
CAPS = {
    "zoho": ("max_fields", 20, "LIMIT_EXCEEDED", {"contacts": 450}),  # 50 by default
    # 414 URI Too Long; the list URL carries `associations=companies` besides its fields
    "hubspot": ("max_url_length", 290, "414", {"contacts": 250}),
}


@pytest.mark.parametrize("vendor", sorted(CAPS))
def test_a_field_list_over_the_cap_is_chunked_and_lands_the_same_rows(vendor, make_engine):
    setting, cap, refusal, sizes = CAPS[vendor]
    emulator = EMULATORS[vendor](companies=5, deals=5, **sizes)

    def sync(db: str, chunk: str = "as declared"):
        engine = make_engine(CONNECTORS, db=db)
        stream = engine.connector(vendor).streams["contacts"]
        if chunk == "capped":
            setattr(stream.fields.chunk, setting, cap)
        elif chunk == "never":
            stream.fields.chunk = None
        connect_oauth(engine, vendor, emulator, running.url, "c")
        [run] = engine.sync(vendor, "c", streams=["contacts"])
        return engine, run

    with emulator.start() as running:
        whole, unchunked = sync("whole.duckdb")  # under the vendor's real cap: one request
        assert unchunked.status == "succeeded", unchunked.error
        setattr(emulator, setting, cap)
        _, refused = sync("refused.duckdb", chunk="never")
        assert refused.status == "failed" and refusal in refused.error
        chunked, run = sync("chunked.duckdb", chunk="capped")
    assert run.status == "succeeded", run.error
    assert run.pages == unchunked.pages == 3
    assert run.requests > unchunked.requests
    assert _rows(chunked) == _rows(whole)
