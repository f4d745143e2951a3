"""Broken specs give one clear error each, with file:line and YAML path, and nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import SpecError
from engine.loader import load_connector
from tests.support import TEST_MAPPING, connector_yaml, write_specs

GOOD_STREAM = """
    items:
      model: contact
      request:
        method: GET
        path: /cursor
        params: {limit: 10}
      records: items
      paginate: {style: cursor, cursor: next.after, param: after}
"""


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def problems_for(tmp_path, connector: str, mapping: str = TEST_MAPPING):
    connectors = write_specs(tmp_path, connector, mapping)
    with pytest.raises(SpecError) as info:
        load_connector(connectors / "acme.yaml")
    return info.value.problems


def test_good_spec_loads(tmp_path):
    connectors = write_specs(tmp_path, connector_yaml(GOOD_STREAM))
    assert list(load_connector(connectors / "acme.yaml").streams) == ["items"]


def test_misspelt_key(tmp_path):
    [p] = problems_for(tmp_path, connector_yaml(GOOD_STREAM.replace("paginate:", "paginte:")))
    assert p.path == "streams.items.paginte"
    assert "unknown key 'paginte' (did you mean 'paginate'?)" in p.message
    assert p.line == line_of(tmp_path / "connectors/acme.yaml", "paginte")
    assert str(p).startswith(f"{tmp_path}/connectors/acme.yaml:{p.line} at streams.items.paginte")


def test_bad_jmespath(tmp_path):
    [p] = problems_for(tmp_path, connector_yaml(GOOD_STREAM.replace("records: items",
                                                                    "records: items[?")))
    assert p.path == "streams.items.records" and "invalid jmespath" in p.message
    assert p.line == line_of(tmp_path / "connectors/acme.yaml", "records: items[?")


def test_undefined_template_variable(tmp_path):
    stream = GOOD_STREAM.replace("{limit: 10}", "{limit: '{{ config.page_sise }}'}")
    [p] = problems_for(tmp_path, connector_yaml(stream))
    assert p.path == "streams.items.request.params.limit"
    assert "undefined variable 'config.page_sise'" in p.message
    assert p.line == line_of(tmp_path / "connectors/acme.yaml", "page_sise")


def test_unknown_root_variable(tmp_path):
    stream = GOOD_STREAM.replace("path: /cursor", "path: '/c/{{ inptu.id }}'")
    [p] = problems_for(tmp_path, connector_yaml(stream))
    assert "undefined variable 'inptu'" in p.message and p.path == "streams.items.request.path"


def test_a_stream_template_reads_its_stream_name_and_nothing_else_of_it(tmp_path):
    good = GOOD_STREAM.replace("path: /cursor", "path: '/objects/{{ stream.name }}'")
    connectors = write_specs(tmp_path, connector_yaml(good))
    assert list(load_connector(connectors / "acme.yaml").streams) == ["items"]
    stream = GOOD_STREAM.replace("path: /cursor", "path: '/objects/{{ stream.nmae }}'")
    [p] = problems_for(tmp_path, connector_yaml(stream))
    assert "undefined variable 'stream.nmae'" in p.message
    assert p.path == "streams.items.request.path"


def test_template_syntax_error(tmp_path):
    stream = GOOD_STREAM.replace("path: /cursor", "path: '/c/{{ config.x '")
    [p] = problems_for(tmp_path, connector_yaml(stream))
    assert "template syntax error" in p.message and p.path == "streams.items.request.path"


def test_mapping_to_a_field_that_does_not_exist(tmp_path):
    mapping = TEST_MAPPING.replace("email: email", "emial: email")
    [p] = problems_for(tmp_path, connector_yaml(GOOD_STREAM), mapping)
    assert p.file.endswith("mappings/acme.yaml")
    assert p.path == "models.contact.fields.emial"
    assert "contact has no field 'emial'" in p.message
    assert p.line == line_of(tmp_path / "mappings/acme.yaml", "emial")


def test_stream_model_missing_from_mapping(tmp_path):
    [p] = problems_for(tmp_path, connector_yaml(GOOD_STREAM.replace("model: contact",
                                                                    "model: deal")))
    assert p.path == "streams.items.model" and "'deal' is not in the mapping file" in p.message


def test_wrong_type_and_missing_required_key(tmp_path):
    stream = GOOD_STREAM.replace("param: after", "param: 7")
    problems = problems_for(tmp_path, connector_yaml(stream).replace("title: Acme test API\n", ""))
    messages = {p.path: p.message for p in problems}
    assert messages[""] == "'title' is required"
    assert "7 is not of type 'string'" in messages["streams.items.paginate.param"]


def test_duplicate_key(tmp_path):
    [p] = problems_for(tmp_path, connector_yaml(GOOD_STREAM + "      records: again\n"))
    assert "duplicate key 'records'" in p.message


def test_input_field_that_the_model_lacks(tmp_path):
    extra = """
actions:
  find:
    model: contact
    input: {fields: [emale]}
    request: {method: GET, path: /x}
"""
    [p] = problems_for(tmp_path, connector_yaml(GOOD_STREAM) + extra)
    assert p.path == "actions.find.input" and "no field 'emale'" in p.message


def test_cli_validate_reports_and_exits_nonzero(tmp_path, capsys):
    write_specs(tmp_path, connector_yaml(GOOD_STREAM.replace("paginate:", "paginte:")))
    assert main(["validate", str(tmp_path / "connectors")]) == 1
    err = capsys.readouterr().err
    assert f"acme.yaml:{line_of(tmp_path / 'connectors/acme.yaml', 'paginte')}" in err
    assert "streams.items.paginte" in err


def test_cli_sync_with_a_broken_spec_writes_nothing(tmp_path, capsys):
    connectors = write_specs(tmp_path, connector_yaml(GOOD_STREAM.replace("records: items",
                                                                          "records: '['")))
    db = tmp_path / "out.duckdb"
    code = main(["sync", "acme", "--connectors-dir", str(connectors), "--db", str(db),
                 "--token", "x" * 8, "--base-url", "http://127.0.0.1:9"])
    assert code == 2
    assert "streams.items.records" in capsys.readouterr().err
    assert not db.exists()


def test_shipped_specs_are_valid(capsys):
    assert main(["validate"]) == 0
    assert "hubspot.yaml" in capsys.readouterr().out


CONFIG = """
config:
  page_size: {type: integer, default: 50, minimum: 1, maximum: 100}
"""


def test_sandbox_refused_attribute_is_found_at_load_time(tmp_path):
    stream = GOOD_STREAM.replace("{limit: 10}", "{limit: \"{{ ''.__class__ }}\"}")
    [p] = problems_for(tmp_path, connector_yaml(stream))
    assert p.path == "streams.items.request.params.limit" and "'__class__'" in p.message
    assert p.line == line_of(tmp_path / "connectors/acme.yaml", "__class__")


def test_config_default_of_the_wrong_type(tmp_path):
    extra = CONFIG.replace("default: 50", "default: fifty")
    [p] = problems_for(tmp_path, connector_yaml(GOOD_STREAM, extra=extra))
    assert p.path == "config.page_size.default" and p.message == "'fifty' is not a valid integer"


def test_config_default_outside_the_vendors_range(tmp_path):
    extra = CONFIG.replace("default: 50", "default: 1000")
    [p] = problems_for(tmp_path, connector_yaml(GOOD_STREAM, extra=extra))
    assert p.path == "config.page_size.default" and "above the maximum, 100" in p.message


def test_config_value_outside_the_vendors_range_is_refused_before_sending(tmp_path, capsys):
    connectors = write_specs(tmp_path, connector_yaml(GOOD_STREAM, extra=CONFIG))
    code = main(["sync", "acme", "--connectors-dir", str(connectors), "--token", "t0ken",
                 "--base-url", "http://127.0.0.1:9", "--config", "page_size=1000",
                 "--db", str(tmp_path / "x.duckdb")])
    err = capsys.readouterr().err
    assert code == 2 and err == "error: config.page_size: 1000 is above the maximum, 100\n"
    assert not (tmp_path / "x.duckdb").exists()


def test_shipped_page_sizes_carry_the_vendors_maximum():
    from engine.engine import Engine

    engine = Engine()
    # CONTRACTS 0: HubSpot lists 100, Pipedrive v2 500, Salesforce query batches 200-2000.
    assert engine.connector("hubspot").config["page_size"].maximum == 100
    assert engine.connector("pipedrive").config["page_size"].maximum == 500
    salesforce = engine.connector("salesforce").config["batch_size"]
    assert (salesforce.minimum, salesforce.maximum) == (200, 2000)


ENRICH = GOOD_STREAM + """
      enrich:
        - request: {method: GET, path: "/extra"}
          records: results
          value: "@"
          into: extra
"""


def test_an_enrich_step_per_page_names_its_key_and_one_per_record_does_not(tmp_path):
    # One request per page: each result must say which record it is for.
    [p] = problems_for(tmp_path, connector_yaml(ENRICH))
    assert p.path == "streams.items.enrich[0]" and p.message == "'key' is required"
    # One request per record (`each`): its results are all that record's; a key is a mistake.
    each = ENRICH.replace('path: "/extra"}', 'path: "/extra/{{ record.id }}"}\n'
                          "          each: true\n          key: owner")
    [p] = problems_for(tmp_path, connector_yaml(each))
    assert p.path == "streams.items.enrich[0].key" and "no `key`" in p.message
    assert p.line == line_of(tmp_path / "connectors/acme.yaml", "key: owner")
    # A per-page request has no `record`; a per-record one no `ids`.
    per_page = ENRICH.replace('path: "/extra"}', 'path: "/extra/{{ record.id }}"}\n'
                              "          key: owner")
    [p] = problems_for(tmp_path, connector_yaml(per_page))
    assert p.path == "streams.items.enrich[0].request.path" and "'record'" in p.message
    loaded = write_specs(tmp_path, connector_yaml(each.replace("\n          key: owner", "")))
    assert load_connector(loaded / "acme.yaml").streams["items"].enrich[0].each
    # `more` goes on per record within a per-page request; a per-record one pages instead.
    [p] = problems_for(tmp_path, connector_yaml(each.replace("key: owner", "more: next")))
    assert p.path == "streams.items.enrich[0].more" and "no `more`" in p.message
