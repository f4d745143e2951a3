"""Reading values out of vendor JSON: jmespath, compiled once at load time.

Most paths in specs are plain dotted keys (`properties.firstname`); those become direct dict
look-ups. The others are compiled into Python functions (engine/jmespath_compiler.py) that
give jmespath's answers several times faster than its interpreter, on the per-record path.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import jmespath
from jmespath import functions
from jmespath.exceptions import JMESPathError

from engine.jmespath_compiler import Getter, compile_tree, dig, field_chain
from engine.jmespath_compiler import truthy as truthy  # spec.py and reads.py test truth here
from engine.normalize import url_host

_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


class ExpressionProblem(ValueError):
    """An expression in a spec file that does not compile (found at load time)."""


class ExpressionFailed(ValueError):
    """An expression that compiled but failed on the data it was given (a type error such as
    `length(null)` on a response of an unexpected shape)."""


class ValueFunctions(functions.Functions):
    """String and number functions JMESPath lacks, for mappings and error rules. Each takes a
    null (a missing vendor value) and gives null back, rather than failing the read.

    - `lower(s)`, `upper(s)`, `trim(s)`
    - `split(s, separator)`: a list of parts; `split('Ada Lovelace', ' ')[0]`
    - `replace(s, old, new)`
    - `regex(s, pattern)`: the first match (its first group, if the pattern has one), or null
    - `url_host(s)`: the bare, lower-case host of a URL or domain: `http://www.Edgecomm.com/x`
      -> `edgecomm.com`
    - `number(s)`: a number from text such as `"1,234.50"` or `"$ 99"`, or null
    - `with_parent(parents, key, name)`: the items of each parent's `key` list, each with its
      parent (less that list) set under `name`: stages listed inside their pipelines
    """

    @functions.signature({"types": ["string", "null"]})
    def _func_lower(self, s: str | None) -> str | None:
        return None if s is None else s.lower()

    @functions.signature({"types": ["string", "null"]})
    def _func_upper(self, s: str | None) -> str | None:
        return None if s is None else s.upper()

    @functions.signature({"types": ["string", "null"]})
    def _func_trim(self, s: str | None) -> str | None:
        return None if s is None else s.strip()

    @functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_split(self, s: str | None, separator: str) -> list[str] | None:
        return None if s is None else s.split(separator)

    @functions.signature({"types": ["string", "null"]}, {"types": ["string"]},
                         {"types": ["string"]})
    def _func_replace(self, s: str | None, old: str, new: str) -> str | None:
        return None if s is None else s.replace(old, new)

    @functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_regex(self, s: str | None, pattern: str) -> str | None:
        match = _pattern(pattern).search(s) if s is not None else None
        if match is None:
            return None
        return match.group(1) if match.re.groups else match.group(0)

    @functions.signature({"types": ["string", "null"]})
    def _func_url_host(self, s: str | None) -> str | None:
        return url_host(s)

    @functions.signature({"types": ["array", "null"]}, {"types": ["string"]},
                         {"types": ["string"]})
    def _func_with_parent(self, parents: list[Any] | None, key: str,
                          name: str) -> list[Any] | None:
        if parents is None:
            return None
        out = []
        for parent in parents:
            if not isinstance(parent, dict):
                continue
            rest = {k: v for k, v in parent.items() if k != key}  # not every sibling again
            out += [{**child, name: rest} for child in (parent.get(key) or ())
                    if isinstance(child, dict)]
        return out

    @functions.signature({"types": ["string", "number", "null"]})
    def _func_number(self, s: str | float | None) -> float | int | None:
        if s is None or isinstance(s, (int, float)):
            return s
        digits = re.sub(r"[^0-9.\-]", "", s)
        try:
            value = Decimal(digits)
        except InvalidOperation:
            return None
        return int(value) if value == value.to_integral_value() else float(value)


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_OPTIONS = jmespath.Options(custom_functions=ValueFunctions())
_KNOWN_FUNCTIONS = frozenset(ValueFunctions().FUNCTION_TABLE)


_LITERALS = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"")


def _function_names(expression: str) -> set[str]:
    """The functions an expression calls (names before a parenthesis, outside literals)."""
    code = _LITERALS.sub("''", expression)
    return {name for name, _ in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(\()", code)}


def plain_keys(expression: str) -> tuple[str, ...] | None:
    """The keys of a plain dotted path, or None if it needs jmespath."""
    parts = expression.split(".")
    if all(_PLAIN_KEY.match(p) for p in parts):
        return tuple(parts)
    return None


def compile_keys(keys: tuple[str, ...]) -> Getter:
    """A function reading a path of literal keys (which may contain dots) from a JSON value."""
    return dig(keys)


@lru_cache(maxsize=1024)  # a connector's streams repeat their expressions (YAML anchors)
def compile_getter(expression: str) -> Getter:
    """A function reading `expression` from a JSON value; `@` is the value itself."""
    if expression == "@":
        return lambda obj: obj
    keys = plain_keys(expression)
    if keys is not None:  # `$`-prefixed keys are fine here, though jmespath would need quotes
        return dig(keys)
    try:
        compiled = jmespath.compile(expression)
        for name in _function_names(expression):  # an unknown function fails at load time
            if name not in _KNOWN_FUNCTIONS:
                raise ExpressionProblem(f"unknown function {name}() in {expression!r} (known: "
                                        f"{', '.join(sorted(_KNOWN_FUNCTIONS))})")
    except JMESPathError as exc:
        # jmespath draws a caret under the expression on further lines: one line says it.
        first_line = str(exc).splitlines()[0]
        raise ExpressionProblem(f"invalid jmespath expression {expression!r}: {first_line}"
                                ) from None

    def failed(exc: Exception) -> ExpressionFailed:
        # jmespath itself lets Python's TypeError out of an ordering of mixed types
        # (`a < \`1\`` where a is text): the data's problem, like its own type errors.
        return ExpressionFailed(f"{expression!r} failed: {exc}")

    return compile_tree(compiled.parsed, _OPTIONS, failed)  # jmespath's answers, per record


# AST nodes whose first child is evaluated against the current value and the rest against
# what the first child gives (a path, a projection, a filter, an index, a pipe).
_CHAINS = frozenset({"projection", "value_projection", "filter_projection",
                     "index_expression", "pipe", "flatten"})
# Bare words that mappings write meaning JSON literals (jmespath reads them as keys).
_LITERAL_WORDS = frozenset({"null", "true", "false"})


def read_paths(expression: str) -> frozenset[tuple[str, ...]]:
    """The key paths an expression reads from the value it is given: `IsWon && 'won'` reads
    (IsWon,); `join(' ', [properties.city, properties.zip])` reads (properties, city) and
    (properties, zip); `emails[?primary].value` reads (emails,). For telling which vendor
    fields a mapping uses. Invalid expressions read nothing (the loader reports them)."""
    keys = plain_keys(expression)
    if keys is not None:
        return frozenset({keys})
    try:
        tree = jmespath.compile(expression).parsed
    except JMESPathError:
        return frozenset()
    found: set[tuple[str, ...]] = set()

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        path = field_chain(node)
        if path is not None:
            if path[0] not in _LITERAL_WORDS:
                found.add(path)
            return
        children = node.get("children") or []
        if node.get("type") in _CHAINS or node.get("type") == "subexpression":
            if children:
                walk(children[0])  # the rest reads what the first part gives
            return
        for child in children:
            walk(child)

    walk(tree)
    return frozenset(found)
