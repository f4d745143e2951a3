"""The compiled expressions (engine/jmespath_compiler.py) against jmespath's own interpreter.

Every expression in connectors/*.yaml and mappings/*.yaml, and edge cases of every node type and
function, is read both ways from the recorded payloads in tests/fixtures (each document and
every object and list inside it), from those records with the paths the expression reads set to
adversarial values (null, wrong types, empty lists, numbers as strings), and from seeded random
JSON built of the expression's own keys and literals. Both must give the same value (by repr:
1 is not true, 1.0 is not 1) or the same error.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jmespath
import pytest
import yaml
from jmespath.exceptions import JMESPathError

from engine.extract import (
    ExpressionFailed,
    ExpressionProblem,
    ValueFunctions,
    compile_getter,
    plain_keys,
    read_paths,
)
from engine.jmespath_compiler import needs_interpreter

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
OPTIONS = jmespath.Options(custom_functions=ValueFunctions())

ADVERSARIAL: list[Any] = [None, "", "x", "0", "1", "true", "1,234.50", "a_unlabeled", 0, 1, -1,
                          1.5, 0.0, True, False, [], [None], [0, 1], ["a", "b"], [{}],
                          [{"label": "Primary", "id": 7}], {}, {"a": 1}, {"value": "v"}]

# Every node type and function, at the edges: jmespath's numbers and booleans (0 == false is
# false), truth (0 is true), type errors, exprefs (left to the interpreter).
EDGE_CASES = [
    "a == `0`", "a == `false`", "a != `1`", "a == b", "a != b", "a == 'x'", "a != 'x'",
    "a == `null`", "a == `[0]`", "a < b", "a <= `1`", "a > 'b'", "a >= `1.5`", "!a", "!!a",
    "a || b", "a && b", "!a && b || c", "a[0]", "a[-1]", "a[1:]", "a[::-1]", "a[:2].b", "a[*]",
    "a[*].b", "a[*].b[0]", "a[].b", "a[][]", "a.*", "a.*.b", "a[?b]", "a[?b == `1`].c",
    "a[?!b]", "a[?b > `0`] | [0]", "a | [0]", "[a, b]", "[a, b][?@]", "{x: a, y: b.c}",
    "a.{x: b}", "a[*].{x: b, y: c}", "@", "@.a", "`[1, 2]`", "'lit'", "a.length(@)",
    "length(a)", "length(a || `[]`)", "to_string(a)", "to_number(a)", "to_array(a)",
    "not_null(a, b, 'z')", "join(', ', a)", "join('-', [a, b][?@])", "contains(a, 'x')",
    "starts_with(a, 'x')", "ends_with(to_string(a), '_unlabeled')", "type(a)", "keys(a)",
    "values(a)", "max(a)", "min(a)", "sum(a)", "avg(a)", "sort(a)", "reverse(a)", "abs(a)",
    "ceil(a)", "floor(a)", "merge(a, b)", "sort_by(a, &b)", "max_by(a, &b)", "map(&b, a)",
    # Left to the interpreter, inside compiled nodes, with the engine's own functions.
    "map(&lower(b), a)", "[sort_by(a, &b)][0][?c].b", "a[*].map(&upper(@), b)",
    "lower(a)", "upper(a)", "trim(a)", "split(a, ' ')[0]", "replace(a, 'a', 'b')",
    "regex(a, '([0-9]+)')", "url_host(a)", "number(a)", "with_parent(a, 'b', 'p')",
    "a && starts_with(a, '0') && a || `null`", "a.b.c.d", "a.\"b c\"", "`false`", "length(@)",
    # Literals the compiler folds: a constant side of a comparison, of || and &&, or the
    # second argument of a function (checked once, when compiled; wrong-typed, it is not).
    "'x' == a", "'x' != a", "a.b == 'x'", "a == `\"x\"`", "a || 'd'", "a && 'y'",
    "a || `null`", "a && `[1]`", "!a || `0`", "ends_with(a, `1`)", "starts_with('abc', a)",
    "contains(a, `null`)", "contains(a, `1`)",
]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def shipped_expressions() -> list[str]:
    """Every string in the connector and mapping files that is a jmespath expression the
    engine compiles (keys, paths and expressions alike; templates and prose are not)."""
    found: dict[str, None] = {}
    for path in sorted([*ROOT.glob("connectors/*.yaml"), *ROOT.glob("mappings/*.yaml")]):
        for text in _strings(yaml.safe_load(path.read_text())):
            if "{{" in text or "{%" in text:
                continue
            try:
                with warnings.catch_warnings():  # (prose with backquotes, not an expression)
                    warnings.simplefilter("ignore", PendingDeprecationWarning)
                    jmespath.compile(text)
                    compile_getter(text)
            except (JMESPathError, ExpressionProblem):
                continue
            found.setdefault(text, None)
    return list(found)


SHIPPED = shipped_expressions()


def _documents() -> list[Any]:
    """Each fixture, and every object and list inside it."""
    out: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, (dict, list)):
            out.append(node)
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    for path in sorted(FIXTURES.glob("*/*.json")):
        if path.name != "_meta.json":
            walk(json.loads(path.read_text()))
    return out


DOCUMENTS = _documents()
RECORDS = [d for d in DOCUMENTS if isinstance(d, dict)]


def _set(record: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of `record` with `value` at `path` (the objects on the way copied, or made)."""
    copy = dict(record)
    target = copy
    for key in path[:-1]:
        inner = target.get(key)
        target[key] = dict(inner) if isinstance(inner, dict) else {}
        target = target[key]
    target[path[-1]] = value
    return copy


def _words(tree: Any) -> tuple[list[str], list[Any]]:
    """The keys an expression names and the literals it holds."""
    keys: list[str] = []
    literals: list[Any] = []

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        if node.get("type") in ("field", "key_val_pair"):
            keys.append(node["value"])
        if node.get("type") == "literal":
            literals.append(node["value"])
        for child in node.get("children") or ():
            walk(child)

    walk(tree)
    return keys or ["a"], literals


def _random_value(rng: random.Random, keys: list[str], literals: list[Any], depth: int) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.35:
        return rng.choice(ADVERSARIAL + literals + [rng.choice(keys)])
    if roll < 0.7:
        return {rng.choice(keys): _random_value(rng, keys, literals, depth - 1)
                for _ in range(rng.randint(0, 4))}
    return [_random_value(rng, keys, literals, depth - 1) for _ in range(rng.randint(0, 4))]


def _outcome(read: Any, value: Any) -> tuple[str, str]:
    try:
        return ("value", repr(read(value)))
    except ExpressionFailed as exc:
        return ("failed", str(exc))
    except Exception as exc:  # anything else must be the same too
        return ("raised", f"{type(exc).__name__}: {exc}")


def _interpreted(expression: str) -> Any:
    parsed = jmespath.compile(expression)

    def search(value: Any) -> Any:
        try:
            return parsed.search(value, options=OPTIONS)
        except (JMESPathError, TypeError) as exc:  # as engine.extract wraps either
            raise ExpressionFailed(f"{expression!r} failed: {exc}") from None

    return search


def _values_for(expression: str) -> Iterator[Any]:
    # Plain paths all read through one function: a sample of them is read from fewer values.
    plain = plain_keys(expression) is not None
    yield from DOCUMENTS[:: 4 if plain else 1]
    yield from ADVERSARIAL
    paths = sorted(read_paths(expression))
    for record in RECORDS[:: len(RECORDS) // (8 if plain else 40)]:  # a spread of them
        for path in paths:
            for bad in ADVERSARIAL:
                yield _set(record, path, bad)
    keys, literals = _words(jmespath.compile(expression).parsed)
    rng = random.Random(expression)  # seeded: the same values every run
    for _ in range(50 if plain else 300):
        yield {key: _random_value(rng, keys, literals, 3) for key in keys}


def _differences(expression: str) -> list[str]:
    compiled, interpreter = compile_getter(expression), _interpreted(expression)
    out = []
    for value in _values_for(expression):
        mine, theirs = _outcome(compiled, value), _outcome(interpreter, value)
        if mine != theirs:
            out.append(f"{json.dumps(value, default=str)[:300]}: compiled {mine}, "
                       f"interpreter {theirs}")
    return out[:3]


def test_the_shipped_files_hold_the_expressions_of_the_hot_path():
    assert len(SHIPPED) > 100  # keys and paths, and the expressions listed below
    for expression in ("[to[*].{id: to_string(toObjectId), label: associationTypes[?typeId =="
                       " `1` || typeId == `5`] && 'Primary' || `null`}, with_parent(to, "
                       "'associationTypes', 'link')[?category != 'HUBSPOT_DEFINED' && label]"
                       ".{id: to_string(link.toObjectId), label: label}][]",
                       "(emails[?primary].value)[0] || emails[0].value",
                       "data[?status == 'error'].code | [0]"):
        assert expression in SHIPPED


@pytest.mark.parametrize("expression", SHIPPED)
def test_shipped_expression_agrees_with_jmespath(expression):
    assert _differences(expression) == []


@pytest.mark.parametrize("expression", EDGE_CASES)
def test_edge_case_agrees_with_jmespath(expression):
    assert _differences(expression) == []


def test_shipped_expressions_need_no_interpreter():
    left = [e for e in SHIPPED if needs_interpreter(jmespath.compile(e).parsed)]
    assert left == []


def test_an_expression_reference_is_left_to_the_interpreter():
    assert needs_interpreter(jmespath.compile("sort_by(a, &b)").parsed)
    assert needs_interpreter(jmespath.compile("x.{y: [sort_by(a, &b)]}").parsed)  # deep inside
    assert not needs_interpreter(jmespath.compile("x.{y: [a, b][?@] | [0]}").parsed)
    assert compile_getter("sort_by(a, &b)[].b")({"a": [{"b": 2}, {"b": 1}]}) == [1, 2]


def test_an_expression_nested_past_pythons_block_limit_still_agrees():
    # Written out, each filter is a loop and Python compiles at most 20 nested: such a tree is
    # read by jmespath; nested ifs (the || chain) have no such limit.
    ors, filters = "a", "a"
    for level in range(30):
        ors, filters = f"k{level} || ({ors})", f"x{level}[?{filters}]"
    for expression in (ors, filters):
        assert _differences(expression) == []
    assert compile_getter(ors)({"a": 1}) == 1


def test_a_type_error_names_the_expression_and_jmespath_says_what():
    with pytest.raises(ExpressionFailed, match=r"'length\(a\)' failed: In function length\(\), "
                                               r"invalid type for value: None"):
        compile_getter("length(a)")({})
