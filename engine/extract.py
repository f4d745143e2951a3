"""Reading values out of vendor JSON: jmespath, compiled once at load time.

Most paths in specs are plain dotted keys (`properties.firstname`); those become direct dict
look-ups, which are several times faster than the jmespath interpreter on the per-record path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

Getter = Callable[[Any], Any]
_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


class ExpressionProblem(ValueError):
    """An expression in a spec file that does not compile (found at load time)."""


class ExpressionFailed(ValueError):
    """An expression that compiled but failed on the data it was given (a type error such as
    `length(null)` on a response of an unexpected shape)."""


def plain_keys(expression: str) -> tuple[str, ...] | None:
    """The keys of a plain dotted path, or None if it needs jmespath."""
    parts = expression.split(".")
    if all(_PLAIN_KEY.match(p) for p in parts):
        return tuple(parts)
    return None


def _dig(keys: tuple[str, ...]) -> Getter:
    if len(keys) == 1:
        (k,) = keys

        def get1(obj: Any) -> Any:
            return obj.get(k) if isinstance(obj, dict) else None

        return get1
    if len(keys) == 2:
        k1, k2 = keys

        def get2(obj: Any) -> Any:
            inner = obj.get(k1) if isinstance(obj, dict) else None
            return inner.get(k2) if isinstance(inner, dict) else None

        return get2

    def get_n(obj: Any) -> Any:
        for key in keys:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(key)
        return obj

    return get_n


def compile_getter(expression: str) -> Getter:
    """A function reading `expression` from a JSON value; `@` is the value itself."""
    if expression == "@":
        return lambda obj: obj
    keys = plain_keys(expression)
    if keys is not None:  # `$`-prefixed keys are fine here, though jmespath would need quotes
        return _dig(keys)
    try:
        compiled = jmespath.compile(expression)
    except JMESPathError as exc:
        raise ExpressionProblem(f"invalid jmespath expression {expression!r}: {exc}") from None

    def search(obj: Any) -> Any:
        try:
            return compiled.search(obj)
        except JMESPathError as exc:
            raise ExpressionFailed(f"{expression!r} failed: {exc}") from None

    return search
