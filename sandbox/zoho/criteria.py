"""Zoho CRM search criteria: ``((Field:operator:value)and(Field:operator:value))``.

CONTRACTS 4.5 (Kaizen #30 / #82): inside a value, ``(``, ``)`` and ``,`` must be escaped with a
backslash (``\\(`` ``\\)`` ``\\,``; ``\\\\`` is a backslash); an unescaped ``(``/``)`` is
structure and an unescaped ``,`` separates alternative values. So a hostile value such as
``a@b.com)or(Email:starts_with:`` changes the structure when sent raw (or fails to parse,
INVALID_QUERY), and finds nothing when escaped. At most 10 conditions.

The tokenizer turns the text into LPAREN / RPAREN / AND / OR / COND tokens (a condition is read
whole, escapes resolved, right after the parenthesis that opens it); the parser builds the tree
with ``and`` binding tighter than ``or`` (choice: the docs always parenthesise); ``compile``
turns the tree into a predicate over stored records.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.zoho.schema import (
    BOOLEAN,
    DATE,
    DATETIME,
    LOOKUP,
    MODULE_NAME,
    NUMERIC,
    OWNER,
    TEXTUAL,
    USER,
    Module,
)
from sandbox.zoho.store import Record
from sandbox.zoho.time import is_date, parse_datetime

MAX_CONDITIONS = 10  # CONTRACTS 4.5
_FIELD = re.compile(r"^[A-Za-z$][A-Za-z0-9_$]*$")

EQUALITY = ("equals", "not_equal", "in", "not_in")
COMPARISON = ("greater_than", "greater_equal", "less_than", "less_equal", "between", "not_between")
TEXT_OPERATORS = (*EQUALITY, "starts_with")
ORDERED_OPERATORS = (*EQUALITY, *COMPARISON)
ALL_OPERATORS = frozenset((*TEXT_OPERATORS, *COMPARISON))

Predicate = Callable[[Record], bool]


class CriteriaError(Exception):
    """Becomes 400 INVALID_QUERY; ``details`` go into the error's details."""

    def __init__(self, reason: str, **details: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


# -- tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # "(", ")", "and", "or", "cond"
    position: int
    condition: Condition | None = None


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str
    values: tuple[str, ...]  # split at unescaped commas, escapes resolved


@dataclass(frozen=True)
class Group:
    operator: str  # "and" | "or"
    items: tuple[Condition | Group, ...]


Node = Condition | Group


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char == "(":
            tokens.append(Token("(", i))
            i += 1
            while i < n and text[i].isspace():
                i += 1
            if i < n and text[i] != "(":
                condition, i = _read_condition(text, i)
                tokens.append(Token("cond", i, condition))
        elif char == ")":
            tokens.append(Token(")", i))
            i += 1
        elif text[i : i + 3].lower() == "and":
            tokens.append(Token("and", i))
            i += 3
        elif text[i : i + 2].lower() == "or":
            tokens.append(Token("or", i))
            i += 2
        else:
            raise CriteriaError("unexpected character in criteria", position=i, character=char)
    return tokens


def _read_condition(text: str, i: int) -> tuple[Condition, int]:
    """``Field:operator:value`` up to (not including) the unescaped ``)`` that closes it."""
    start = i
    field_end = text.find(":", i)
    operator_end = text.find(":", field_end + 1) if field_end >= 0 else -1
    close = text.find(")", i)
    if field_end < 0 or operator_end < 0 or (0 <= close < operator_end):
        raise CriteriaError("a condition must be (field:operator:value)", position=start)
    field = text[i:field_end].strip()
    operator = text[field_end + 1 : operator_end].strip().lower()
    if not _FIELD.match(field):
        raise CriteriaError("invalid field name in criteria", api_name=field)
    values: list[str] = []
    current: list[str] = []
    i = operator_end + 1
    n = len(text)
    while True:
        if i >= n:
            raise CriteriaError("unbalanced parentheses: a condition is not closed", position=start)
        char = text[i]
        if char == "\\":
            if i + 1 >= n:
                raise CriteriaError("dangling escape character at the end", position=i)
            current.append(text[i + 1])
            i += 2
        elif char == ")":
            break
        elif char == "(":
            # Structure inside a value: the value was not escaped.
            raise CriteriaError("unescaped ( inside a value", position=i, api_name=field)
        elif char == ",":
            values.append("".join(current))
            current = []
            i += 1
        else:
            current.append(char)
            i += 1
    values.append("".join(current))
    if any(value == "" for value in values):
        raise CriteriaError("empty value in criteria", api_name=field, operator=operator)
    return Condition(field, operator, tuple(values)), i


# -- parser -------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at].kind if self.at < len(self.tokens) else None

    def take(self, kind: str) -> Token:
        if self.peek() != kind:
            found = self.peek() or "end of criteria"
            raise CriteriaError(f"expected {kind!r} but found {found!r}", position=self.at)
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expression(self) -> Node:
        items = [self.term()]
        while self.peek() == "or":
            self.take("or")
            items.append(self.term())
        return items[0] if len(items) == 1 else Group("or", tuple(items))

    def term(self) -> Node:
        items = [self.factor()]
        while self.peek() == "and":
            self.take("and")
            items.append(self.factor())
        return items[0] if len(items) == 1 else Group("and", tuple(items))

    def factor(self) -> Node:
        self.take("(")
        if self.peek() == "cond":
            node: Node = self.take("cond").condition  # type: ignore[assignment]
        else:
            node = self.expression()
        self.take(")")
        return node


def parse(text: str) -> Node:
    """The criteria tree, or CriteriaError."""
    if not text or not text.strip():
        raise CriteriaError("criteria is empty")
    parser = _Parser(tokenize(text))
    node = parser.expression()
    if parser.peek() is not None:
        raise CriteriaError("unexpected text after the criteria", position=parser.at)
    if _count(node) > MAX_CONDITIONS:
        raise CriteriaError(f"a maximum of {MAX_CONDITIONS} conditions is allowed")
    return node


def _count(node: Node) -> int:
    return 1 if isinstance(node, Condition) else sum(_count(item) for item in node.items)


def escape(value: str) -> str:
    """How a client escapes a literal value (CONTRACTS 4.5); used by the tests."""
    for char in ("\\", "(", ")", ","):
        value = value.replace(char, "\\" + char)
    return value


# -- evaluation ---------------------------------------------------------------------------------


def compile_criteria(node: Node, module: Module) -> Predicate:
    if isinstance(node, Group):
        parts = [compile_criteria(item, module) for item in node.items]
        if node.operator == "and":
            return lambda record: all(part(record) for part in parts)
        return lambda record: any(part(record) for part in parts)
    return _condition(node, module)


def _condition(condition: Condition, module: Module) -> Predicate:
    name, operator, values = condition.field, condition.operator, condition.values
    if operator not in ALL_OPERATORS:
        raise CriteriaError("invalid operator found", api_name=name, operator=operator)
    kind = "id" if name == "id" else module.kind(name)
    if kind is None:
        raise CriteriaError("the field is not available for search", api_name=name)
    if kind in TEXTUAL or kind == MODULE_NAME:
        return _text(name, operator, values)
    if kind in (LOOKUP, OWNER, USER):
        _allow(name, operator, EQUALITY)
        wanted = {value.lower() for value in values}
        positive = operator in ("equals", "in")

        def lookup(record: Record) -> bool:
            value = record.doc.get(name)
            if not value:
                return False
            hit = value["id"] in wanted or (value.get("name") or "").lower() in wanted
            return hit if positive else not hit

        return lookup
    if kind == BOOLEAN:
        _allow(name, operator, ("equals", "not_equal"))
        if len(values) != 1 or values[0].lower() not in ("true", "false"):
            raise CriteriaError("a boolean criteria needs true or false", api_name=name)
        flag = values[0].lower() == "true"
        if operator == "not_equal":
            flag = not flag
        return lambda record: bool(record.doc.get(name, False)) == flag
    return _ordered(name, kind, operator, values)


def _allow(name: str, operator: str, allowed: tuple[str, ...]) -> None:
    if operator not in allowed:
        raise CriteriaError("invalid operator for the field", api_name=name, operator=operator)


def _text(name: str, operator: str, values: tuple[str, ...]) -> Predicate:
    # Choice (CONTRACTS 4.5 says `equals` acts like "contains" for many fields): equals is exact
    # but case-insensitive on every text field, Email included. Null never matches.
    _allow(name, operator, TEXT_OPERATORS)
    wanted = tuple(value.casefold() for value in values)
    if operator == "starts_with":
        return lambda record: (
            _text_of(record, name).startswith(wanted) if record.doc.get(name) else False
        )
    options = frozenset(wanted)
    if operator in ("equals", "in"):
        return lambda record: _text_of(record, name) in options if record.doc.get(name) else False
    return lambda record: _text_of(record, name) not in options if record.doc.get(name) else False


def _text_of(record: Record, name: str) -> str:
    return str(record.doc[name]).casefold()


def _ordered(name: str, kind: str, operator: str, values: tuple[str, ...]) -> Predicate:
    _allow(name, operator, ORDERED_OPERATORS)
    convert, read = _converters(name, kind)
    try:
        points = [convert(value) for value in values]
    except ValueError:
        raise CriteriaError(
            f"the value is not a valid {kind}", api_name=name, operator=operator
        ) from None
    if operator in ("between", "not_between"):
        if len(points) != 2:
            raise CriteriaError("between needs two comma-separated values", api_name=name)
        low, high = sorted(points)
        inside = operator == "between"
        return _guard(read, lambda v: (low <= v <= high) == inside)
    if operator in EQUALITY:
        options = frozenset(points)
        positive = operator in ("equals", "in")
        return _guard(read, lambda v: (v in options) == positive)
    if len(points) != 1:
        raise CriteriaError("this operator takes one value", api_name=name, operator=operator)
    point = points[0]
    tests: dict[str, Callable[[object], bool]] = {
        "greater_than": lambda v: v > point,
        "greater_equal": lambda v: v >= point,
        "less_than": lambda v: v < point,
        "less_equal": lambda v: v <= point,
    }
    return _guard(read, tests[operator])


def _guard(read: Callable[[Record], object], test: Callable[[object], bool]) -> Predicate:
    def predicate(record: Record) -> bool:
        value = read(record)
        return value is not None and test(value)

    return predicate


def _converters(name: str, kind: str) -> tuple[Callable[[str], object], Callable[[Record], object]]:
    """(criteria value -> comparable, record -> comparable or None) for an ordered field."""
    if kind == "id":
        return int, lambda record: record.id
    if kind in NUMERIC:
        return float, lambda record: record.doc.get(name)
    if kind == DATE:

        def to_date(value: str) -> str:
            if not is_date(value):
                raise ValueError(value)
            return value

        return to_date, lambda record: record.doc.get(name)
    if kind == DATETIME:

        def to_epoch(value: str) -> float:
            epoch = parse_datetime(value)
            if epoch is None:
                raise ValueError(value)
            return epoch

        if name == "Created_Time":
            return to_epoch, lambda record: record.created
        if name == "Modified_Time":
            return to_epoch, lambda record: record.modified
        return to_epoch, lambda record: parse_datetime(record.doc.get(name))
    raise CriteriaError("the field is not available for search", api_name=name)
