"""The tutorial of docs/spec-language.md, end to end: Pebble CRM added by YAML alone
(tests/tutorial/connectors/pebble.yaml, tests/tutorial/mappings/pebble.yaml) against the
emulator of its API (tests/tutorial/pebble_api.py). Every step the tutorial shows is here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest

from engine.cli import main
from engine.errors import CrmError, InputError
from sandbox.kit import serve
from tests.tutorial.pebble_api import PebbleApi

HERE = Path(__file__).parent
CONNECTORS = HERE / "connectors"
DOC = HERE.parent.parent / "docs" / "spec-language.md"


@pytest.fixture
def pebble():
    api = PebbleApi()
    running = serve(api.app)
    yield api, running.url
    running.close()


@pytest.fixture
def engine(make_engine, pebble):
    api, url = pebble
    engine = make_engine(CONNECTORS)
    engine.store_secrets("pebble", secrets={"api_key": api.api_key},
                         config={"api_url": f"{url}/v2"})
    return engine


def test_the_files_validate(capsys):
    assert main(["validate", str(CONNECTORS / "pebble.yaml")]) == 0
    assert "2 streams, 2 actions" in capsys.readouterr().out


def test_sync_lands_both_streams(engine, pebble):
    api, _ = pebble
    runs = engine.sync("pebble")
    assert [(r.stream, r.status, r.records) for r in runs] == [
        ("contacts", "succeeded", len(api.contacts)), ("companies", "succeeded",
                                                      len(api.companies))]
    assert runs[0].pages == 3  # 230 records, 100 a page
    [contact] = engine.store.query(
        "SELECT first_name, last_name, email, phone, job_title, company_id, created_at, "
        "custom FROM contacts WHERE id = 'cont_00009'")
    source = api.contacts[9]
    assert contact[:6] == (source["first_name"], source["last_name"],
                           source["emails"][0]["email"], source["phones"][0]["phone"],
                           source["title"], source["company_id"])
    assert contact[6].isoformat().startswith("2024-03-01T09:09:00")
    assert json.loads(contact[7]) == {"Tier": "Gold", "Newsletter": False}
    no_phone = engine.store.query("SELECT phone FROM contacts WHERE id = 'cont_00004'")
    assert no_phone == [(None,)]  # an empty list of phones reads as no phone
    [company] = engine.store.query(
        "SELECT name, industry, city, country, custom, domain FROM companies "
        "WHERE id = 'comp_0002'")
    assert company[:4] == ("Turing & Co 2", "Manufacturing", "Lyon", "FR")
    assert json.loads(company[4]) == {"Segment": "SMB"}
    assert company[5] == "company2.example"  # url_host() of https://company2.example


def test_create_then_get(engine, pebble):
    api, _ = pebble
    created = engine.action("pebble", "create_contact", {
        "first_name": "Grace", "last_name": "Hopper", "email": "grace@navy.example",
        "company_id": "comp_0003", "custom": {"Tier": "Gold"}})
    stored = api.contacts[-1]
    assert stored["id"] == created["id"] and stored["emails"] == [
        {"email": "grace@navy.example", "type": "office"}]
    assert stored["custom"] == {"Tier": "Gold"}
    got = engine.action("pebble", "get_contact", {"id": created["id"]})
    assert got["record"]["email"] == "grace@navy.example"
    assert got["record"]["company_id"] == "comp_0003"
    assert got["record"]["custom"] == {"Tier": "Gold"}


def test_pebbles_errors_come_through_its_envelope(engine):
    with pytest.raises(CrmError) as info:
        engine.action("pebble", "get_contact", {"id": "cont_nope"})
    assert (info.value.status, info.value.code) == (404, "not_found")
    assert "no contact with id cont_nope" in info.value.message
    with pytest.raises(CrmError) as info:
        engine.action("pebble", "create_contact", {"last_name": "Nobody",
                                                   "company_id": "comp_9999"})
    assert (info.value.status, info.value.code) == (400, "invalid_request")
    with pytest.raises(InputError, match="last_name"):  # refused before anything is sent
        engine.action("pebble", "create_contact", {"first_name": "Only"})


def test_a_wrong_key_says_what_to_do(make_engine, pebble):
    _, url = pebble
    engine = make_engine(CONNECTORS, db="wrong.duckdb")
    engine.store_secrets("pebble", secrets={"api_key": "pk_live_wrong_0000"},
                         config={"api_url": f"{url}/v2"})
    [contacts, *_] = engine.sync("pebble")
    assert contacts.status == "failed" and "HTTP 401 [unauthorized]" in contacts.error
    assert "the API key was refused; check it (--token, CRM_ENGINE_PEBBLE_API_KEY)" \
        in contacts.error
    assert "pk_live_wrong_0000" not in contacts.error


def test_legacy_rate_limit_headers_are_read_too(make_engine):
    api = PebbleApi(limit=45, legacy_headers=True)
    running = serve(api.app)
    try:
        engine = make_engine(CONNECTORS, db="legacy.duckdb")
        engine.store_secrets("pebble", secrets={"api_key": api.api_key},
                             config={"api_url": f"{running.url}/v2"})
        [run] = engine.sync("pebble", streams=["companies"])
        assert run.status == "succeeded"
        session, _, _ = engine.session("pebble")
        assert session.budget.capacity == 45  # X-RateLimit-Limit, not the YAML's 60
    finally:
        running.close()


def test_the_tutorials_command_line(pebble, tmp_path, monkeypatch, capsys):
    """The shell session the tutorial shows, command for command."""
    api, url = pebble
    monkeypatch.setenv("CRM_ENGINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CRM_ENGINE_CONNECTORS", str(CONNECTORS))
    monkeypatch.setenv("CRM_ENGINE_PEBBLE_API_KEY", api.api_key)
    db = str(tmp_path / "pebble.duckdb")
    assert main(["validate"]) == 0
    assert main(["connect", "pebble", "--config", f"api_url={url}/v2"]) == 0
    monkeypatch.delenv("CRM_ENGINE_PEBBLE_API_KEY")  # stored now
    assert main(["sync", "pebble", "--db", db]) == 0
    out = capsys.readouterr().out
    assert re.search(r"contacts\s+succeeded\s+230", out) and re.search(
        r"companies\s+succeeded\s+35", out)
    assert main(["action", "pebble", "create_contact", "--db", db, "--data",
                 '{"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}'
                 ]) == 0
    created = json.loads(capsys.readouterr().out)
    assert main(["action", "pebble", "get_contact", "--data", json.dumps({"id": created["id"]})
                 ]) == 0
    assert json.loads(capsys.readouterr().out)["record"]["email"] == "ada@example.com"
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM contacts").fetchone() == (230,)
        assert con.execute("SELECT action, status FROM action_log").fetchall() == [
            ("create_contact", "succeeded")]
    assert api.api_key.encode() not in Path(db).read_bytes()


def test_the_tutorial_quotes_the_files_as_they_are():
    """The YAML in the tutorial is the YAML that is tested."""
    doc = DOC.read_text(encoding="utf-8")
    for name in ("connectors/pebble.yaml", "mappings/pebble.yaml"):
        text = (HERE / name).read_text(encoding="utf-8")
        blocks = [b for b in re.findall(r"```yaml\n(.*?)```", doc, re.DOTALL) if b in text]
        quoted = "".join(blocks)
        body = [line for line in text.splitlines() if line.strip() and not
                line.startswith("#")]
        missing = [line for line in body if line not in quoted]
        assert not missing, f"{name}: lines the tutorial does not show: {missing[:3]}"
