"""Templates in spec files: jinja2, sandboxed, strict, compiled once at load time.

A string that is exactly one `{{ expression }}` evaluates to the expression's native value (a
list stays a list, a number a number); any other string renders to text. In a structure (a
request body), a mapping with a `$if` key is kept only when that expression is true.

Only spec text is ever compiled. Values from a CRM or a caller enter as variables, so a contact
named `{{ 7*7 }}` stays that string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import jinja2
from jinja2 import StrictUndefined, nodes, sandbox
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.convert import format_timestamp

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{((?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)
CONDITION_KEY = "$if"


def _escape(value: Any, table: Mapping[str, str]) -> str:
    """Replace each character by its entry in `table` (one of the connector's `escapes`), in a
    single pass, so a replacement is never escaped again."""
    return str(value).translate(str.maketrans(dict(table)))


def _make_env(finalize: Callable[[Any], Any] | None = None) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False,
        finalize=finalize,
    )
    env.filters["tojson"] = lambda v: json.dumps(v, default=str)
    env.filters["escape"] = _escape
    # Build request bodies from a payload: drop absent values, leave out some keys.
    env.filters["compact"] = lambda d: {k: v for k, v in d.items() if v is not None}
    env.filters["omit"] = lambda d, *keys: {k: v for k, v in d.items() if k not in keys}
    env.filters["urlquote"] = lambda v: quote(str(v), safe="")
    # [1, 2] | objects('id') -> [{"id": 1}, {"id": 2}]: batch request bodies from a list of ids;
    # objects('id', after=after) adds each id's value in `after` where it has one
    # ({"id": 2, "after": "c2"}), for an enrich step's `more`.
    env.filters["objects"] = lambda values, key, **per_id: [
        {key: v, **{name: found[v] for name, found in per_id.items() if v in found}}
        for v in values]
    # A datetime (such as cursor.since) in a vendor's format: iso8601, epoch_ms, epoch_s, or
    # a strftime pattern.
    env.filters["timestamp"] = lambda v, fmt="iso8601": None if v is None else \
        format_timestamp(v, fmt)
    return env


TEXT_ENV = _make_env()
# In URL paths every interpolated value is percent-encoded, `/` included, so an id such as
# `../admin` cannot change which endpoint is called.
PATH_ENV = _make_env(finalize=lambda v: quote(str(v), safe=""))


class TemplateSyntaxProblem(ValueError):
    pass


class TemplateFailed(RuntimeError):
    """A template that compiled but failed while rendering (an undefined value, a refused
    attribute, an overflow): a mistake in the spec, reported with the template's text."""

    def __init__(self, source: str, error: Exception):
        detail = str(error) or type(error).__name__
        super().__init__(f"template {source.strip()!r} failed: {detail}")


# What rendering can raise on bad data or a bad spec; a sandbox refusal is a TemplateError.
_RENDER_ERRORS = (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError)


def referenced_names(source: str, env: jinja2.Environment = TEXT_ENV) -> list[tuple[str, ...]]:
    """Variable chains a template reads, e.g. ('config', 'base_url'), for load-time checks.

    A chain stops at the first dynamic part (`input[x]`) or call."""
    ast = _parse(source, env)
    chains: list[tuple[str, ...]] = []
    local_names = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}

    def chain_of(node: nodes.Node) -> tuple[str, ...] | None:
        if isinstance(node, nodes.Name):
            return (node.name,)
        if isinstance(node, nodes.Getattr):
            base = chain_of(node.node)
            return base + (node.attr,) if base else None
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            base = chain_of(node.node)
            return base + (str(node.arg.value),) if base else None
        return None

    seen_inner: set[int] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        chain = chain_of(node)
        if chain and id(node) not in seen_inner:
            chains.append(chain)
            inner = node.node
            while isinstance(inner, (nodes.Getattr, nodes.Getitem)):
                seen_inner.add(id(inner))
                inner = inner.node
    for node in ast.find_all(nodes.Name):
        if node.ctx == "load" and node.name not in local_names:
            chains.append((node.name,))
    chains = [c for c in chains if c[0] not in local_names]
    # Drop shorter chains that a longer one already covers.
    longest = [c for c in chains if not any(o != c and o[: len(c)] == c for o in chains)]
    return sorted(set(longest))


_UNSAFE_NAMES = (sandbox.UNSAFE_FUNCTION_ATTRIBUTES | sandbox.UNSAFE_METHOD_ATTRIBUTES
                 | sandbox.UNSAFE_GENERATOR_ATTRIBUTES | sandbox.UNSAFE_COROUTINE_ATTRIBUTES
                 | sandbox.UNSAFE_ASYNC_GENERATOR_ATTRIBUTES | {"mro"})


def unsafe_attributes(source: str, env: jinja2.Environment = TEXT_ENV) -> list[str]:
    """Attributes a template reads that the sandbox refuses at run time (private and dunder
    names such as `__class__`, function and frame internals), found at load time instead."""
    found = []
    for node in _parse(source, env).find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else (
            node.arg.value if isinstance(node.arg, nodes.Const) else None)
        if isinstance(name, str) and (name.startswith("_") or name in _UNSAFE_NAMES):
            found.append(name)
    return found


@lru_cache(maxsize=4096)
def _parse(source: str, env: jinja2.Environment) -> nodes.Template:
    """A template's syntax tree (read, never changed), once per text: loading checks each
    template twice, and a connector repeats many."""
    try:
        return env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateSyntaxProblem(f"template syntax error: {exc.message}") from None


@lru_cache(maxsize=4096)
def _compiled(source: str, env: jinja2.Environment = TEXT_ENV, bare: bool = False
              ) -> tuple[Any, jinja2.Template | None]:
    """A template's compiled expression or template (`bare`: the source is an expression
    without braces), once per text: a connector file says the same few hundred times
    (`{{ config.page_size }}`), and jinja compiles slowly."""
    match = None if bare else _SINGLE_EXPRESSION.match(source)
    try:
        if bare or (match and env is TEXT_ENV):
            expression = source if match is None else match.group(1)
            return env.compile_expression(expression, undefined_to_none=False), None
        return None, env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        what = "expression" if bare else "template"
        raise TemplateSyntaxProblem(f"{what} syntax error: {exc.message}") from None


class Template:
    """One compiled template string."""

    __slots__ = ("_expr", "_tmpl", "source")

    def __init__(self, source: str, env: jinja2.Environment = TEXT_ENV):
        self.source = source
        self._expr, self._tmpl = _compiled(source, env)

    @property
    def is_static(self) -> bool:
        return "{{" not in self.source and "{%" not in self.source

    def render(self, context: Mapping[str, Any]) -> Any:
        try:
            if self._expr is not None:
                value = self._expr(**context)
                if isinstance(value, jinja2.Undefined):  # e.g. a missing attribute of a dict
                    str(value)  # StrictUndefined raises here with jinja's own message
                return value
            return self._tmpl.render(context)  # type: ignore[union-attr]
        except _RENDER_ERRORS as exc:
            raise TemplateFailed(self.source, exc) from None


class Expression:
    """A bare jinja expression (no braces), as in `$if:` and `when:` conditions."""

    __slots__ = ("_expr", "source")

    def __init__(self, source: str):
        self.source = source
        self._expr, _ = _compiled(str(source), bare=True)

    @property
    def as_template(self) -> str:
        return "{{ " + str(self.source) + " }}"

    def render(self, context: Mapping[str, Any]) -> Any:
        try:
            value = self._expr(**context)
            if isinstance(value, jinja2.Undefined):
                str(value)
            return value
        except _RENDER_ERRORS as exc:
            raise TemplateFailed(self.source, exc) from None


class Structure:
    """A YAML value (dict / list / scalar) whose strings are templates."""

    def __init__(self, value: Any, env: jinja2.Environment = TEXT_ENV):
        self._render = _compile(value, env)

    def render(self, context: Mapping[str, Any]) -> Any:
        return self._render(context)


def _compile(value: Any, env: jinja2.Environment) -> Callable[[Mapping[str, Any]], Any]:
    if isinstance(value, str):
        template = Template(value, env)
        if template.is_static:
            return lambda _ctx, v=value: v
        return template.render
    if isinstance(value, dict):
        condition = Expression(value[CONDITION_KEY]) if CONDITION_KEY in value else None
        parts = [(k, _compile(v, env)) for k, v in value.items() if k != CONDITION_KEY]

        def render_dict(ctx: Mapping[str, Any]) -> Any:
            if condition is not None and not condition.render(ctx):
                return _OMIT
            out = {}
            for key, render in parts:
                rendered = render(ctx)
                if rendered is not _OMIT:
                    out[key] = rendered
            return out

        return render_dict
    if isinstance(value, list):
        items = [_compile(v, env) for v in value]

        def render_list(ctx: Mapping[str, Any]) -> Any:
            return [r for r in (item(ctx) for item in items) if r is not _OMIT]

        return render_list
    return lambda _ctx, v=value: v


_OMIT = object()


def template_strings(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Every template inside a structure with its path (for load-time checks); a `$if`
    condition is returned wrapped in braces so it checks like any other template."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            if k == CONDITION_KEY:
                out.append((path + (k,), "{{ " + str(v) + " }}"))
                continue
            out.extend(template_strings(v, path + (k,)))
        return out
    if isinstance(value, list):
        out = []
        for i, v in enumerate(value):
            out.extend(template_strings(v, path + (i,)))
        return out
    return []
