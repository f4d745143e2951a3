"""Spec files load the same through libyaml as through PyYAML: the same values (anchors and
merges included) and the same line for every YAML path; broken YAML keeps PyYAML's message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.errors import SpecError
from engine.schema_check import schema
from engine.yamlsource import Locator, _construct, load

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = sorted([*ROOT.glob("connectors/*.yaml"), *ROOT.glob("mappings/*.yaml"),
                     ROOT / "engine" / "models.yaml", *ROOT.glob("engine/schemas/*.yaml")])


def by_pyyaml(path: Path) -> tuple[object, dict]:
    loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
    try:
        loc = Locator(str(path))
        return _construct(loader.get_single_node(), (), loc, loader), loc.lines
    finally:
        loader.dispose()


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_a_spec_file_loads_as_pyyaml_loads_it(path):
    data, loc = load(path)
    assert (data, loc.lines) == by_pyyaml(path)


@pytest.mark.parametrize(("text", "line", "says"), [
    ("a: 1\nb: *nope\n", 2, "found undefined alias 'nope'"),
    ("a: [1, 2\nb: 3\n", 2, "expected ',' or ']', but got ':'"),
    ("a: 1\n\tb: 2\n", 2, "found character '\\t' that cannot start any token"),
])
def test_broken_yaml_says_what_pyyaml_says(tmp_path, text, line, says):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load(path)
    [problem] = caught.value.problems
    assert (problem.line, problem.message) == (line, f"invalid YAML: {says}")


@pytest.mark.parametrize("kind", ["connector", "mapping", "project"])
def test_the_json_schemas_load_as_pyyaml_loads_them(kind):
    path = ROOT / "engine" / "schemas" / f"{kind}.schema.yaml"
    assert schema(kind) == yaml.safe_load(path.read_text(encoding="utf-8"))


def test_an_anchor_that_merges_and_overrides_loads_each_time_it_is_reused(tmp_path):
    """Streams that differ by a key share one anchor whose mappings merge others and override
    their keys; reusing it is no duplicate (PyYAML rewrites a merged node in place, so the
    second visit must still know which keys were the node's own). A real duplicate inside the
    anchor is still one, wherever it is reused."""
    path = tmp_path / "shared.yaml"
    path.write_text("base: &base {request: {path: /a}, records: results}\n"
                    "tasks: &activity\n"
                    "  model: task\n"
                    "  fields:\n"
                    "    <<: *base\n"
                    "    request: {path: /b}\n"
                    "calls: {<<: *activity, model: call}\n"
                    "notes: {<<: *activity, model: note}\n")
    data, _ = load(path)
    fields = {"request": {"path": "/b"}, "records": "results"}
    assert [data[s] for s in ("tasks", "calls", "notes")] == [
        {"model": "task", "fields": fields}, {"model": "call", "fields": fields},
        {"model": "note", "fields": fields}]
    path.write_text("tasks: &activity\n  model: task\n  records: a\n  records: b\n"
                    "calls: {<<: *activity, model: call}\n")
    with pytest.raises(SpecError) as caught:
        load(path)
    [problem] = caught.value.problems
    assert (problem.line, problem.message) == (4, "duplicate key 'records'")
