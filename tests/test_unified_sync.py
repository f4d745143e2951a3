"""Reference tables, lookups, account facts and raw records through real syncs: the Pipedrive
emulator over loopback, landing in a real DuckDB file."""

from __future__ import annotations

import json

import pytest

from engine.engine import PROJECT_ROOT
from sandbox.pipedrive import PipedriveSandbox
from sandbox.pipedrive.schema import STAGES, USERS

CONNECTORS = PROJECT_ROOT / "connectors"


@pytest.fixture(scope="module")
def pipedrive():
    emulator = PipedriveSandbox(contacts=30, companies=12, deals=40, rate_limit=(1000, 2.0))
    with emulator.start() as running:
        yield emulator, running


@pytest.fixture
def engine(make_engine, pipedrive):
    emulator, running = pipedrive
    engine = make_engine(CONNECTORS)
    engine.store_token("pipedrive", "pd", token=emulator.static_token,
                       config={"api_url": running.url})
    return engine


def test_a_first_deals_sync_lands_the_stages_and_pipelines_it_reads_first(engine, pipedrive):
    emulator, _ = pipedrive
    runs = engine.sync("pipedrive", "pd", streams=["deals"])
    assert [r.stream for r in runs] == ["pipelines", "stages", "deals"]
    assert all(r.status == "succeeded" and not r.warnings for r in runs), [r.warnings for r in runs]
    labels = {str(stage_id): name for stage_id, _, _, name, _ in STAGES}
    rows = engine.store.query("SELECT id, stage_id, stage, pipeline, status FROM deals")
    assert len(rows) == emulator.store.count("deals")
    for deal_id, stage_id, stage, pipeline, status in rows:
        deal = emulator.store.get("deals", int(deal_id))
        assert (stage_id, stage) == (str(deal["stage_id"]), labels[str(deal["stage_id"])])
        assert pipeline == {1: "Sales pipeline", 2: "Partnerships"}[deal["pipeline_id"]]
        assert status == deal["status"]
    # Once the reference tables have rows, a deals sync is just that.
    [again] = engine.sync("pipedrive", "pd", streams=["deals"])
    assert again.stream == "deals" and again.status == "succeeded"


def test_owners_and_stage_metadata_land_as_tables(engine):
    runs = engine.sync("pipedrive", "pd", streams=["owners", "stages"])
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    owners = engine.store.query("SELECT id, name, email, is_active FROM owners ORDER BY name")
    assert owners == sorted(((str(u["id"]), u["name"], u["email"], True) for u in USERS),
                            key=lambda row: row[1])
    stages = engine.store.query("SELECT id, label, pipeline_id, sort_order, probability "
                                "FROM stages ORDER BY id::INT")
    assert stages == [(str(i), name, str(pipeline), order, float(probability))
                      for i, pipeline, order, name, probability in STAGES]


def test_raw_records_only_when_the_connection_asks(engine, pipedrive):
    emulator, running = pipedrive
    [plain] = engine.sync("pipedrive", "pd", streams=["companies"])
    assert plain.status == "succeeded"
    assert engine.store.query("SELECT count(*) FROM companies WHERE raw IS NOT NULL") == [(0,)]
    assert engine.store.query("SELECT count(*) FROM companies WHERE custom IS NULL "
                              "OR is_deleted IS NULL") == [(0,)]
    engine.store_token("pipedrive", "pd-raw", token=emulator.static_token,
                       config={"api_url": running.url, "raw_records": True})
    [raw] = engine.sync("pipedrive", "pd-raw", streams=["companies"])
    assert raw.status == "succeeded"
    rows = engine.store.query("SELECT id, raw, custom FROM companies WHERE connection = 'pd-raw'")
    assert len(rows) == emulator.store.count("organizations")
    for org_id, raw_json, custom_json in rows:
        org = emulator.store.get("organizations", int(org_id))
        landed = json.loads(raw_json)
        assert landed["id"] == org["id"] and landed["name"] == org["name"]
        assert landed["address"] == org["address"]  # the vendor's record, as it came
        # The website is the domain column; the region, a custom field, is in custom by name.
        assert "website" not in json.loads(custom_json)
        assert "Region" in json.loads(custom_json)


def test_a_bad_phone_region_is_refused_before_anything_is_sent(make_engine, pipedrive):
    emulator, running = pipedrive
    engine = make_engine(CONNECTORS, db="region.duckdb")
    with pytest.raises(Exception, match="phone_region"):
        engine.store_token("pipedrive", "pd-x", token=emulator.static_token,
                           config={"api_url": running.url, "phone_region": "Mars"})
        engine.sync("pipedrive", "pd-x", streams=["owners"])


def test_a_reference_stream_whose_last_run_did_not_finish_is_read_again(engine):
    """A run killed mid-read leaves some of its rows and its run `running` (`abandoned` once
    the file is opened again): the table has rows but is not known complete, so the next
    sync of a stream that looks into it reads it again."""
    engine.sync("pipedrive", "pd", streams=["deals"])
    engine.store.query("DELETE FROM stages WHERE id IN (SELECT id FROM stages LIMIT 3)")
    engine.store.query("UPDATE sync_runs SET status = 'abandoned' WHERE stream = 'stages'")
    runs = engine.sync("pipedrive", "pd", streams=["deals"])
    assert [(r.stream, r.status) for r in runs] == [("stages", "succeeded"),
                                                    ("deals", "succeeded")]
    assert engine.store.query("SELECT count(*) FROM stages") == [(len(STAGES),)]
    # Read to the end, it is known complete: the next deals sync is just that.
    [again] = engine.sync("pipedrive", "pd", streams=["deals"])
    assert again.stream == "deals"


def test_deals_do_not_succeed_without_the_stages_they_read(make_engine, pipedrive, tmp_path):
    """The stages stream fails (its endpoint answers 404): deals are not landed with null
    labels and a `succeeded`; they fail, saying why, and a rerun with stages repairs it."""
    emulator, running = pipedrive
    specs = tmp_path / "specs"
    (specs / "connectors").mkdir(parents=True)
    (specs / "mappings").mkdir()
    text = (CONNECTORS / "pipedrive.yaml").read_text()
    (specs / "connectors" / "pipedrive.yaml").write_text(
        text.replace("path: /api/v2/stages,", "path: /api/v2/no-such-stages,"))
    (specs / "mappings" / "pipedrive.yaml").write_text(
        (PROJECT_ROOT / "mappings" / "pipedrive.yaml").read_text())
    engine = make_engine(specs / "connectors", db="broken.duckdb")
    engine.store_token("pipedrive", "pd", token=emulator.static_token,
                       config={"api_url": running.url})
    runs = {r.stream: r for r in engine.sync("pipedrive", "pd", streams=["deals"])}
    assert runs["stages"].status == "failed" and runs["pipelines"].status == "succeeded"
    assert runs["deals"].status == "failed"
    assert "reads stages, whose stream failed in this sync" in runs["deals"].error
    assert engine.store.query("SELECT count(*) FROM information_schema.tables "
                              "WHERE table_name = 'deals'") == [(0,)]  # nothing landed
    assert engine.store.query("SELECT status, error FROM sync_runs WHERE stream = 'deals'") == [
        ("failed", runs["deals"].error)]
