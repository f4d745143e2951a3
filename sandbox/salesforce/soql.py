"""SOQL: a tokenizer and a recursive-descent parser for the subset the emulator serves.

    SELECT field, Relationship.Field, (SELECT field, ... FROM ChildRelationship), ...
         | COUNT() | FIELDS(ALL|STANDARD|CUSTOM)
    FROM Object
    [WHERE condition]  [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...]
    [LIMIT n] [OFFSET n]

Conditions: ``= != < <= > >= LIKE IN NOT IN``, ``AND``/``OR`` (mixing them needs parentheses,
as in SOQL), ``NOT``, parentheses. Literals: single-quoted strings with the SOQL escape
sequences (CONTRACTS 2.5; ``\\%``/``\\_`` only inside LIKE), numbers, ``true/false/null``,
unquoted dates ``2026-05-01`` and datetimes ``2024-01-01T00:00:00Z`` (CONTRACTS 2.3), and
relative date literals (``TODAY``, ``LAST_N_DAYS:30``...).

A string literal ends at the first unescaped quote, so an injection attempt parses exactly as
Salesforce would parse it. Semantics (field types, values) are checked in query.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEYWORDS = frozenset(
    {
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC",
        "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "TRUE", "FALSE", "NULL",
        "INCLUDES", "EXCLUDES", "GROUP", "HAVING", "WITH", "USING", "TYPEOF", "FOR",
    }
)  # fmt: skip
# Relative date literals: name -> takes ":n"
DATE_LITERALS = {
    "TODAY": False, "YESTERDAY": False, "TOMORROW": False,
    "THIS_MONTH": False, "LAST_MONTH": False, "NEXT_MONTH": False,
    "THIS_YEAR": False, "LAST_YEAR": False, "NEXT_YEAR": False,
    "LAST_90_DAYS": False, "NEXT_90_DAYS": False,
    "LAST_N_DAYS": True, "NEXT_N_DAYS": True, "N_DAYS_AGO": True,
}  # fmt: skip
_ESCAPES = {
    "n": "\n", "N": "\n", "r": "\r", "R": "\r", "t": "\t", "T": "\t",
    "b": "\b", "B": "\b", "f": "\f", "F": "\f", '"': '"', "'": "'", "\\": "\\",
}  # fmt: skip

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)
    |(?P<date>\d{4}-\d{2}-\d{2})(?![\w:])
    |(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))(?![\w.])
    |(?P<ident>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)
    |(?P<op>!=|<=|>=|=|<|>)
    |(?P<punct>[(),:])
    """,
    re.VERBOSE,
)


class SoqlError(Exception):
    """``code`` is the Salesforce errorCode; ``position`` (an index into the query) asks for
    the caret-annotated message (error_400_invalid_field_in_soql.json)."""

    def __init__(self, code: str, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.position = position

    def render(self, query: str) -> str:
        if self.position is None:
            return self.message
        row = query.count("\n", 0, self.position) + 1
        line_start = query.rfind("\n", 0, self.position) + 1
        line_end = query.find("\n", self.position)
        line = query[line_start : line_end if line_end >= 0 else len(query)]
        column = self.position - line_start
        return f"\n{line}\n{' ' * column}^\nERROR at Row:{row}:Column:{column + 1}\n{self.message}"


@dataclass(frozen=True)
class Token:
    kind: str  # ident, keyword, string, number, date, datetime, op, punct, eof
    text: str  # as written (keywords upper-cased)
    position: int
    value: object = None


@dataclass(frozen=True)
class StringValue:
    text: str  # decoded; LIKE-only escapes (\% \_) decoded to the bare character
    like_pattern: str  # regex source: % -> .*, _ -> ., escaped ones literal
    like_escapes: bool  # contains \% or \_ (valid in LIKE only)


@dataclass(frozen=True)
class FieldRef:
    name: str
    position: int


@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, boolean, null, date, datetime, date_literal
    value: object  # StringValue, int|float, bool, None, "YYYY-MM-DD", raw text, (name, n)
    position: int
    text: str


@dataclass(frozen=True)
class Comparison:
    field: FieldRef
    operator: str  # = != < <= > >= LIKE IN NOT IN
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True)
class Logical:
    operator: str  # AND / OR
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Negation:
    item: Condition


Condition = Comparison | Logical | Negation


@dataclass(frozen=True)
class OrderItem:
    field: FieldRef
    descending: bool = False
    nulls_first: bool | None = None  # None: Salesforce default (nulls first)


@dataclass(frozen=True)
class SubQuery:
    """`(SELECT fields FROM ChildRelationship)` in a select list."""

    relationship: FieldRef
    fields: tuple[FieldRef, ...]


@dataclass
class Query:
    fields: list[FieldRef] = field(default_factory=list)
    subqueries: list[SubQuery] = field(default_factory=list)
    count_only: bool = False
    fields_function: tuple[str, int] | None = None  # ("ALL"|"STANDARD"|"CUSTOM", position)
    object_name: FieldRef | None = None
    where: Condition | None = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    relative_dates: bool = False  # uses TODAY & co: results depend on the day


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    position, length = 0, len(query)
    while position < length:
        if query[position] == "'":
            token, position = _string(query, position)
            tokens.append(token)
            continue
        match = _TOKEN.match(query, position)
        if match is None:
            # The wording of Salesforce's lexer errors ("line 1:N no viable alternative...").
            raise SoqlError(
                "MALFORMED_QUERY",
                f"line 1:{position} no viable alternative at character '{query[position]}'",
            )
        kind, text = match.lastgroup, match.group()
        if kind == "ident" and text.upper() in KEYWORDS:
            tokens.append(Token("keyword", text.upper(), position))
        elif kind == "number":
            number = float(text) if "." in text else int(text)
            tokens.append(Token("number", text, position, number))
        elif kind != "ws":
            tokens.append(Token(kind, text, position))
        position = match.end()
    tokens.append(Token("eof", "<EOF>", length))
    return tokens


def _string(query: str, start: int) -> tuple[Token, int]:
    """A quoted literal starting at ``start``; ends at the first unescaped quote."""
    text: list[str] = []
    pattern: list[str] = []
    like_escapes = False
    position = start + 1
    while True:
        if position >= len(query):
            raise SoqlError(
                "MALFORMED_QUERY",
                f"line 1:{len(query)} mismatched character '<EOF>' expecting '''",
            )
        char = query[position]
        if char == "'":
            break
        if char != "\\":
            text.append(char)
            pattern.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
            position += 1
            continue
        escaped = query[position + 1 : position + 2]
        if escaped in ("%", "_"):  # CONTRACTS 2.5: LIKE-only escapes
            like_escapes = True
            text.append(escaped)
            pattern.append(re.escape(escaped))
            position += 2
        elif escaped == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", query[position + 2 : position + 6]):
            decoded = chr(int(query[position + 2 : position + 6], 16))
            text.append(decoded)
            pattern.append(re.escape(decoded))
            position += 6
        elif escaped in _ESCAPES:
            decoded = _ESCAPES[escaped]
            text.append(decoded)
            pattern.append(re.escape(decoded))
            position += 2
        else:
            raw = query[start : query.find("'", position + 1) + 1 or len(query)]
            raise SoqlError(
                "MALFORMED_QUERY",
                f"Invalid string literal {raw}. Illegal character sequence "
                f"'\\{escaped}' in string literal.",
                start,
            )
    raw = query[start : position + 1]
    value = StringValue("".join(text), "".join(pattern), like_escapes)
    return Token("string", raw, start, value), position + 1


class Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.index = 0
        self.relative_dates = False

    # -- token helpers ---------------------------------------------------------------------

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def unexpected(self, token: Token | None = None) -> SoqlError:
        token = token or self.token
        # error_400_malformed_query.json: a bad first token gets the bare message.
        position = None if token.position == 0 else token.position
        return SoqlError("MALFORMED_QUERY", f"unexpected token: {token.text}", position)

    def is_keyword(self, *words: str) -> bool:
        return self.token.kind == "keyword" and self.token.text in words

    def expect_keyword(self, word: str) -> Token:
        if not self.is_keyword(word):
            raise self.unexpected()
        return self.advance()

    def expect_punct(self, char: str) -> Token:
        if self.token.kind != "punct" or self.token.text != char:
            raise self.unexpected()
        return self.advance()

    def at_punct(self, char: str) -> bool:
        return self.token.kind == "punct" and self.token.text == char

    def identifier(self) -> FieldRef:
        if self.token.kind != "ident":
            raise self.unexpected()
        token = self.advance()
        return FieldRef(token.text, token.position)

    def integer(self) -> int:
        token = self.token
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
            raise self.unexpected()
        self.advance()
        return token.value

    # -- grammar ---------------------------------------------------------------------------

    def parse(self) -> Query:
        query = Query()
        self.expect_keyword("SELECT")
        self._select_list(query)
        self.expect_keyword("FROM")
        query.object_name = self.identifier()
        if "." in query.object_name.name:
            raise self.unexpected(self.tokens[self.index - 1])
        if self.is_keyword("WHERE"):
            self.advance()
            query.where = self._condition()
        if self.is_keyword("ORDER"):
            self.advance()
            self.expect_keyword("BY")
            query.order_by.append(self._order_item())
            while self.at_punct(","):
                self.advance()
                query.order_by.append(self._order_item())
        if self.is_keyword("LIMIT"):
            self.advance()
            query.limit = self.integer()
        if self.is_keyword("OFFSET"):
            self.advance()
            query.offset = self.integer()
        if self.token.kind != "eof":
            raise self.unexpected()
        query.relative_dates = self.relative_dates
        return query

    def _select_list(self, query: Query) -> None:
        while True:
            token = self.token
            follows_paren = self.peek().kind == "punct" and self.peek().text == "("
            if token.kind == "ident" and token.text.upper() == "COUNT" and follows_paren:
                self.advance()
                self.advance()
                self.expect_punct(")")
                if query.fields or query.fields_function or query.count_only:
                    raise self.unexpected(token)
                query.count_only = True
            elif token.kind == "ident" and token.text.upper() == "FIELDS" and follows_paren:
                self.advance()
                self.advance()
                kind = self.token
                if kind.kind != "ident" or kind.text.upper() not in ("ALL", "STANDARD", "CUSTOM"):
                    raise self.unexpected()
                self.advance()
                self.expect_punct(")")
                query.fields_function = (kind.text.upper(), token.position)
            elif token.kind == "punct" and token.text == "(" and self.peek().text == "SELECT":
                if query.count_only:
                    raise self.unexpected()
                query.subqueries.append(self._subquery())
            else:
                if query.count_only:
                    raise self.unexpected()
                query.fields.append(self.identifier())
            if not self.at_punct(","):
                return
            self.advance()

    def _subquery(self) -> SubQuery:
        self.expect_punct("(")
        self.expect_keyword("SELECT")
        fields = [self.identifier()]
        while self.at_punct(","):
            self.advance()
            fields.append(self.identifier())
        self.expect_keyword("FROM")
        relationship = self.identifier()
        self.expect_punct(")")
        return SubQuery(relationship, tuple(fields))

    def _condition(self) -> Condition:
        """A chain joined by one connector; SOQL rejects ``a AND b OR c`` (unexpected OR)."""
        items = [self._unary()]
        connector = None
        while self.is_keyword("AND", "OR"):
            if connector is not None and self.token.text != connector:
                raise self.unexpected()
            connector = self.advance().text
            items.append(self._unary())
        return items[0] if connector is None else Logical(connector, tuple(items))

    def _unary(self) -> Condition:
        if self.is_keyword("NOT"):
            self.advance()
            return Negation(self._unary())
        if self.at_punct("("):
            self.advance()
            inner = self._condition()
            self.expect_punct(")")
            return inner
        return self._comparison()

    def _comparison(self) -> Comparison:
        field_ref = self.identifier()
        token = self.token
        if token.kind == "op":
            self.advance()
            return Comparison(field_ref, token.text, self._value())
        if self.is_keyword("LIKE"):
            self.advance()
            return Comparison(field_ref, "LIKE", self._value())
        if self.is_keyword("IN"):
            self.advance()
            return Comparison(field_ref, "IN", self._value_list())
        if self.is_keyword("NOT") and self.peek().kind == "keyword" and self.peek().text == "IN":
            self.advance()
            self.advance()
            return Comparison(field_ref, "NOT IN", self._value_list())
        raise self.unexpected()

    def _value_list(self) -> tuple[Literal, ...]:
        self.expect_punct("(")
        values = [self._value()]
        while self.at_punct(","):
            self.advance()
            values.append(self._value())
        self.expect_punct(")")
        return tuple(values)

    def _value(self) -> Literal:
        token = self.token
        kind = token.kind
        if kind in ("string", "number", "date", "datetime"):
            self.advance()
            value = token.value if kind in ("string", "number") else token.text
            return Literal(kind, value, token.position, token.text)
        if kind == "keyword" and token.text in ("TRUE", "FALSE"):
            self.advance()
            return Literal("boolean", token.text == "TRUE", token.position, token.text)
        if kind == "keyword" and token.text == "NULL":
            self.advance()
            return Literal("null", None, token.position, token.text)
        if kind == "ident" and token.text.upper() in DATE_LITERALS:
            name = token.text.upper()
            self.advance()
            amount = None
            if DATE_LITERALS[name]:
                self.expect_punct(":")
                amount = self.integer()
            self.relative_dates = True
            return Literal("date_literal", (name, amount), token.position, token.text)
        raise self.unexpected()

    def _order_item(self) -> OrderItem:
        field_ref = self.identifier()
        descending = False
        if self.is_keyword("ASC", "DESC"):
            descending = self.advance().text == "DESC"
        nulls_first = None
        if self.is_keyword("NULLS"):
            self.advance()
            if not self.is_keyword("FIRST", "LAST"):
                raise self.unexpected()
            nulls_first = self.advance().text == "FIRST"
        return OrderItem(field_ref, descending, nulls_first)


def parse(query: str) -> Query:
    """Parse SOQL text; raises SoqlError (MALFORMED_QUERY) on a syntax error."""
    return Parser(query).parse()
