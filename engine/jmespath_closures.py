"""JMESPath expressions as plain Python closures: jmespath's answers without its interpreter.

jmespath's TreeInterpreter dispatches every node of the parsed tree by name, per record; the
mappings' and enrich steps' expressions run per record on a sync's hot path. `compile_tree`
turns the parsed tree (`jmespath.compile(e).parsed`) into nested closures that follow
jmespath.visitor.TreeInterpreter node for node: the same values, the same truth, the same
JMESPathError on a type error (function arguments are checked against the function's own
signature, and anything the quick check does not pass goes through jmespath's own
`call_function`, which raises its error or gives its answer). Function calls that take an
expression reference (`sort_by(@, &x)`) and node types jmespath may add are handed to the
interpreter. The values read are JSON (dicts, lists, strings, numbers, booleans, null).
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Callable
from numbers import Number
from typing import Any

from jmespath import functions
from jmespath.visitor import Options, TreeInterpreter

Getter = Callable[[Any], Any]
Node = dict[str, Any]


def is_false(value: Any) -> bool:
    """JMESPath's falsehood: false, null and empty strings, lists and objects; 0 is true."""
    kind = value.__class__
    if kind is str or kind is list or kind is dict or kind is bool:
        return not value
    if value is None:
        return True
    if kind is int or kind is float:
        return False
    return value == "" or value == [] or value == {} or value is False


def truthy(value: Any) -> bool:
    """JMESPath's truth: false, null and empty strings, lists and objects are false; 0 is not."""
    return not is_false(value)


def dig(keys: tuple[str, ...]) -> Getter:
    """A function reading a path of literal keys from a JSON value (null past a non-object)."""
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


def field_chain(node: Node) -> tuple[str, ...] | None:
    """The keys of a plain path node (a.b.c), or None."""
    if node.get("type") == "field":
        return (node["value"],)
    if node.get("type") == "subexpression":
        parts = [field_chain(child) for child in node.get("children") or []]
        if all(p is not None for p in parts):
            return tuple(k for p in parts for k in p)  # type: ignore[union-attr]
    return None


def needs_interpreter(node: Node) -> bool:
    """Whether any part of a tree is left to jmespath's interpreter (see the module doc)."""
    if node.get("type") not in _COMPILERS:
        return True
    if node["type"] == "function_expression" and _takes_expref(node):
        return True
    return any(needs_interpreter(c) for c in node.get("children") or ()
               if isinstance(c, dict))


def compile_tree(node: Node, options: Options) -> Getter:
    """A closure computing what jmespath's interpreter computes for `node` (with `options`'
    custom functions) on a JSON value."""
    return _Compiler(options).compile(node)


class _Compiler:
    def __init__(self, options: Options):
        self.options = options
        self.functions: functions.Functions = options.custom_functions or functions.Functions()

    def compile(self, node: Node) -> Getter:
        keys = field_chain(node)
        if keys is not None:
            return dig(keys)
        build = _COMPILERS.get(node["type"])
        if build is None:
            return self.interpreted(node)
        return build(self, node)

    def interpreted(self, node: Node) -> Getter:
        interpreter = TreeInterpreter(self.options)
        visit = interpreter.visit
        return lambda value: visit(node, value)

    def children(self, node: Node) -> list[Getter]:
        return [self.compile(child) for child in node["children"]]

    # -- one builder per node type, as jmespath.visitor.TreeInterpreter's visit_* -----------
    def chain(self, node: Node) -> Getter:  # subexpression, index_expression, pipe
        steps: list[Getter] = []
        run: list[str] = []
        for child in node["children"]:  # runs of plain keys read as one path
            keys = field_chain(child)
            if keys is not None:
                run += keys
                continue
            if run:
                steps.append(dig(tuple(run)))
                run = []
            steps.append(self.compile(child))
        if run:
            steps.append(dig(tuple(run)))
        if len(steps) == 1:
            return steps[0]
        if len(steps) == 2:
            first, second = steps
            return lambda value: second(first(value))

        def chained(value: Any) -> Any:
            for step in steps:
                value = step(value)
            return value

        return chained

    def identity(self, node: Node) -> Getter:  # current, identity
        return _identity

    def literal(self, node: Node) -> Getter:
        constant = node["value"]
        return lambda value: constant

    def index(self, node: Node) -> Getter:
        at = node["value"]

        def index(value: Any) -> Any:
            if not isinstance(value, list):
                return None
            try:
                return value[at]
            except IndexError:
                return None

        return index

    def slice(self, node: Node) -> Getter:
        cut = slice(*node["children"])
        return lambda value: value[cut] if isinstance(value, list) else None

    def projection(self, node: Node) -> Getter:
        left, right = (self.compile(c) for c in node["children"])
        if right is _identity:
            def project_all(value: Any) -> Any:
                base = left(value)
                if not isinstance(base, list):
                    return None
                return [element for element in base if element is not None]

            return project_all

        def project(value: Any) -> Any:
            base = left(value)
            if not isinstance(base, list):
                return None
            return [current for element in base if (current := right(element)) is not None]

        return project

    def value_projection(self, node: Node) -> Getter:
        left, right = (self.compile(c) for c in node["children"])

        def project_values(value: Any) -> Any:
            base = left(value)
            try:
                base = base.values()
            except AttributeError:
                return None
            return [current for element in base if (current := right(element)) is not None]

        return project_values

    def filter_projection(self, node: Node) -> Getter:
        left, right, condition = (self.compile(c) for c in node["children"])

        def project_kept(value: Any) -> Any:
            base = left(value)
            if not isinstance(base, list):
                return None
            return [current for element in base if not is_false(condition(element))
                    and (current := right(element)) is not None]

        return project_kept

    def flatten(self, node: Node) -> Getter:
        (inner,) = self.children(node)

        def flatten(value: Any) -> Any:
            base = inner(value)
            if not isinstance(base, list):
                return None
            merged: list[Any] = []
            for element in base:
                if isinstance(element, list):
                    merged.extend(element)
                else:
                    merged.append(element)
            return merged

        return flatten

    def multi_select_list(self, node: Node) -> Getter:
        parts = self.children(node)
        return lambda value: None if value is None else [part(value) for part in parts]

    def multi_select_dict(self, node: Node) -> Getter:
        pairs = [(child["value"], self.compile(child)) for child in node["children"]]
        make = self.options.dict_cls
        if make is None:
            return lambda value: (None if value is None
                                  else {key: part(value) for key, part in pairs})
        return lambda value: (None if value is None
                              else make((key, part(value)) for key, part in pairs))

    def key_val_pair(self, node: Node) -> Getter:
        return self.compile(node["children"][0])

    def or_expression(self, node: Node) -> Getter:
        left, right = self.children(node)
        if _is_literal(node["children"][1]):  # `a || 'default'`: no call for the constant
            otherwise = node["children"][1]["value"]
            return lambda value: otherwise if is_false(matched := left(value)) else matched

        def either(value: Any) -> Any:
            matched = left(value)
            return right(value) if is_false(matched) else matched

        return either

    def and_expression(self, node: Node) -> Getter:
        left, right = self.children(node)
        if _is_literal(node["children"][1]):  # `a && 'label'`
            then = node["children"][1]["value"]
            return lambda value: matched if is_false(matched := left(value)) else then

        def both(value: Any) -> Any:
            matched = left(value)
            return matched if is_false(matched) else right(value)

        return both

    def not_expression(self, node: Node) -> Getter:
        (inner,) = self.children(node)

        def negated(value: Any) -> Any:
            result = inner(value)
            kind = result.__class__
            if kind is int or kind is float:  # !0 is false: 0 is no special number in jmespath
                return False
            if _actual_number(result) and result == 0:
                return False
            return not result

        return negated

    def comparator(self, node: Node) -> Getter:
        op = node["value"]
        left, right = self.children(node)
        if op in ("eq", "ne"):
            plain = any(c["type"] == "literal" and not _number_like(c["value"])
                        for c in node["children"])
            # With a literal that is no number or boolean, jmespath's equality is Python's.
            if plain:
                direct = _key_against_literal(node, op == "eq")
                if direct is not None:
                    return direct
            if op == "eq":
                if plain:
                    return lambda value: left(value) == right(value)
                equal = TreeInterpreter.COMPARATOR_FUNC["eq"]
                return lambda value: equal(left(value), right(value))
            if plain:
                return lambda value: left(value) != right(value)
            unequal = TreeInterpreter.COMPARATOR_FUNC["ne"]
            return lambda value: unequal(left(value), right(value))
        order = _ORDER[op]

        def compare(value: Any) -> Any:  # ordering: numbers and strings only, else null
            a, b = left(value), right(value)
            if not (_comparable(a) and _comparable(b)):
                return None
            return order(a, b)

        return compare

    def function_expression(self, node: Node) -> Getter:
        if _takes_expref(node):
            return self.interpreted(node)
        name = node["value"]
        args = self.children(node)
        table = self.functions.FUNCTION_TABLE
        call_function = self.functions.call_function
        spec = table.get(name)
        signature = spec["signature"] if spec is not None else ()
        arity_ok = spec is not None and (
            len(args) >= len(signature) if signature and signature[-1].get("variadic")
            else len(args) == len(signature))
        checks = [_type_check(s["types"]) for s in signature] if arity_ok else None
        if checks is None:
            # jmespath's own call: it raises what it raises (unknown, arity) every time.
            return lambda value: call_function(name, [arg(value) for arg in args])
        function = spec["function"].__get__(self.functions)  # type: ignore[index]
        if spec["function"] is functions.Functions._func_to_string:  # type: ignore[index]
            function = _to_string(function)
        checks += [None] * (len(args) - len(checks))  # variadic: the rest go unchecked
        if len(args) == 1:
            return _call_one(name, function, call_function, args[0], checks[0])
        if len(args) == 2:
            second = node["children"][1]
            if _is_literal(second) and (checks[1] is None or checks[1](second["value"])):
                return _call_with_constant(name, function, call_function, args[0],
                                           second["value"], checks[0])
            return _call_two(name, function, call_function, *args, *checks)
        checked = [(i, c) for i, c in enumerate(checks) if c is not None]

        def call(value: Any) -> Any:
            resolved = [arg(value) for arg in args]
            for i, check in checked:
                if not check(resolved[i]):  # jmespath says what is wrong (or that it is not)
                    return call_function(name, resolved)
            return function(*resolved)

        return call


Check = Callable[[Any], bool]


def _call_one(name: str, function: Callable[..., Any], call_function: Callable[..., Any],
              arg: Getter, check: Check | None) -> Getter:
    if check is None:
        return lambda value: function(arg(value))

    def call_one(value: Any) -> Any:
        resolved = arg(value)
        if not check(resolved):  # jmespath says what is wrong (or that it is not)
            return call_function(name, [resolved])
        return function(resolved)

    return call_one


def _call_with_constant(name: str, function: Callable[..., Any],
                        call_function: Callable[..., Any], first: Getter, constant: Any,
                        check: Check | None) -> Getter:
    """`ends_with(name, '_x')`: the constant passed its check once, when compiled."""
    def call_with_constant(value: Any) -> Any:
        a = first(value)
        if check is not None and not check(a):  # jmespath says what is wrong
            return call_function(name, [a, constant])
        return function(a, constant)

    return call_with_constant


def _call_two(name: str, function: Callable[..., Any], call_function: Callable[..., Any],
              first: Getter, second: Getter, check_first: Check | None,
              check_second: Check | None) -> Getter:
    def passes(check: Check | None, resolved: Any) -> bool:
        return check is None or check(resolved)

    if check_first is not None and check_second is not None:
        def call_two_checked(value: Any) -> Any:
            a, b = first(value), second(value)
            if not (check_first(a) and check_second(b)):
                return call_function(name, [a, b])
            return function(a, b)

        return call_two_checked

    def call_two(value: Any) -> Any:
        a, b = first(value), second(value)
        if not (passes(check_first, a) and passes(check_second, b)):
            return call_function(name, [a, b])
        return function(a, b)

    return call_two


def _to_string(to_json: Callable[[Any], str]) -> Callable[[Any], str]:
    """jmespath's to_string, without its JSON encoder for an int (the ids of v4 links): the
    same text, a tenth of the time."""
    return lambda value: (value if value.__class__ is str
                          else str(value) if value.__class__ is int else to_json(value))


def _identity(value: Any) -> Any:
    return value


def _actual_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, Number)


def _number_like(x: Any) -> bool:
    """Numbers and booleans: where jmespath's equality differs from Python's (0 == false)."""
    return isinstance(x, (bool, Number))


def _comparable(x: Any) -> bool:
    kind = x.__class__
    if kind is int or kind is float or kind is str:
        return True
    return _actual_number(x) or isinstance(x, str)


_ORDER = {"lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge}


def _is_literal(node: Node) -> bool:
    return node["type"] == "literal"


def _key_against_literal(node: Node, equal: bool) -> Getter | None:
    """`key == 'text'` (or `!=`, either side) as one closure: the most common filter."""
    children = node["children"]
    for one, other in (children, children[::-1]):
        keys = field_chain(one)
        if keys is not None and len(keys) == 1 and _is_literal(other):
            (key,), constant = keys, other["value"]
            if equal:
                return lambda value: (value.get(key) if isinstance(value, dict)
                                      else None) == constant
            return lambda value: (value.get(key) if isinstance(value, dict)
                                  else None) != constant
    return None


def _takes_expref(node: Node) -> bool:
    return any(isinstance(c, dict) and c.get("type") == "expref" for c in node["children"])


# jmespath's type names (functions.REVERSE_TYPES_MAP) -> the Python classes that carry them
# here; jmespath checks a value's class *name*, so these exact classes always pass it.
_CLASSES = {"boolean": (bool,), "array": (list,), "object": (dict, OrderedDict),
            "null": (type(None),), "string": (str,), "number": (int, float)}


def _never(value: Any) -> bool:
    """The check of a type this table does not know: jmespath's own check decides."""
    return False



def _type_check(types: list[str]) -> Callable[[Any], bool] | None:
    """A quick test that an argument passes jmespath's check for `types` (None: no check).
    A value it does not pass goes to jmespath's own check, so it may be strict, never lax."""
    if not types:
        return None
    top: set[type] = set()
    element_groups: list[frozenset[type]] = []
    for name in types:
        kind, _, subtype = name.partition("-")
        if kind not in _CLASSES or (subtype and subtype not in _CLASSES):
            return _never  # an expref, or a type this table does not know
        top.update(_CLASSES[kind])
        if subtype:
            element_groups.append(frozenset(_CLASSES[subtype]))
    allowed = frozenset(top)
    if not element_groups:
        return lambda value: value.__class__ in allowed

    def check_elements(value: Any) -> bool:
        if value.__class__ is not list:
            return False
        if not value:
            return True
        for group in element_groups:  # the first element's kind picks the group
            if value[0].__class__ in group:
                return all(e.__class__ in group for e in value)
        return False

    return check_elements


_COMPILERS: dict[str, Callable[[_Compiler, Node], Getter]] = {
    "field": _Compiler.chain,
    "subexpression": _Compiler.chain,
    "index_expression": _Compiler.chain,
    "pipe": _Compiler.chain,
    "current": _Compiler.identity,
    "identity": _Compiler.identity,
    "literal": _Compiler.literal,
    "index": _Compiler.index,
    "slice": _Compiler.slice,
    "projection": _Compiler.projection,
    "value_projection": _Compiler.value_projection,
    "filter_projection": _Compiler.filter_projection,
    "flatten": _Compiler.flatten,
    "multi_select_list": _Compiler.multi_select_list,
    "multi_select_dict": _Compiler.multi_select_dict,
    "key_val_pair": _Compiler.key_val_pair,
    "or_expression": _Compiler.or_expression,
    "and_expression": _Compiler.and_expression,
    "not_expression": _Compiler.not_expression,
    "comparator": _Compiler.comparator,
    "function_expression": _Compiler.function_expression,
}
