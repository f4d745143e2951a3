"""JMESPath expressions compiled to Python source: jmespath's answers without its interpreter.

jmespath's TreeInterpreter dispatches every node of the parsed tree by name, per record; the
mappings' and enrich steps' expressions run per record on a sync's hot path. `compile_tree`
writes the parsed tree (`jmespath.compile(e).parsed`) out as the body of one Python function,
node for node as jmespath.visitor.TreeInterpreter visits it, and compiles that once: no call per
node, no closure per node (twice as fast as nested closures on the enrich steps' filters). The
same values, the same truth, the same JMESPathError on a type error: function arguments are
checked against the function's own signature, and anything the quick check does not pass goes
through jmespath's own `call_function`, which raises its error or gives its answer. Function
calls that take an expression reference (`sort_by(@, &x)`) and node types jmespath may add are
handed to the interpreter. The values read are JSON (dicts, lists, strings, numbers, booleans,
null).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from numbers import Number
from typing import Any

from jmespath import functions
from jmespath.exceptions import JMESPathError
from jmespath.visitor import Options, TreeInterpreter

Getter = Callable[[Any], Any]
Node = dict[str, Any]


def is_false(value: Any) -> bool:
    """JMESPath's falsehood: false, null and empty strings, lists and objects; 0 is true."""
    if value.__class__ in _PYTHON_TRUTH:  # the common case, first
        return not value
    return value is None or value == "" or value == [] or value == {} or value is False


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
    if node.get("type") not in _WRITERS:
        return True
    if node["type"] == "function_expression" and _takes_expref(node):
        return True
    return any(needs_interpreter(c) for c in node.get("children") or ()
               if isinstance(c, dict))


def compile_tree(node: Node, options: Options,
                 failed: Callable[[Exception], Exception]) -> Getter:
    """A function computing what jmespath's interpreter computes for `node` (with `options`'
    custom functions) on a JSON value. A JMESPathError, or the TypeError jmespath lets out of
    an ordering of mixed types, is raised as `failed(error)`."""
    writer = _Writer(options)
    try:
        result = writer.node(node, "value", 3)  # inside make(), evaluate() and try:
    except RecursionError:  # a tree deeper than Python's stack: the interpreter reads it
        return _interpreted(node, options, failed)
    names = list(writer.names)
    source = "\n".join([
        f"def make({', '.join(['failed', *names])}):",
        "    def evaluate(value):",
        "        try:",
        *writer.lines,
        f"            return {result}",
        "        except (JMESPathError, TypeError) as exc:",
        "            raise failed(exc) from None",
        "    return evaluate",
    ])
    namespace: dict[str, Any] = {"JMESPathError": JMESPathError}
    try:
        code = compile(source, "<jmespath>", "exec")
    except (SyntaxError, RecursionError):  # loops nested past Python's 20 (filters in filters)
        return _interpreted(node, options, failed)
    # Safe to run: the expression's keys and literals enter the source through repr(), or as
    # values passed in; nothing of its text is pasted in as code.
    exec(code, namespace)
    return namespace["make"](failed, *writer.names.values())  # type: ignore[no-any-return]


def _interpreted(node: Node, options: Options,
                 failed: Callable[[Exception], Exception]) -> Getter:
    """jmespath's interpreter over the whole tree, its errors raised as `failed(error)`."""
    visit = TreeInterpreter(options).visit

    def evaluate(value: Any) -> Any:
        try:
            return visit(node, value)
        except (JMESPathError, TypeError) as exc:
            raise failed(exc) from None

    return evaluate


class _Writer:
    """Writes one expression's body: each node's code sets a local the caller then reads.

    `node(n, source, depth)` emits, `depth` indents deep, statements computing node `n` of
    the value held in local `source`, and returns the local (or literal) holding the result.
    Values the source refers to (functions, constants that are not plain literals) are passed
    into the generated function under `names`."""

    def __init__(self, options: Options):
        self.options = options
        self.functions: functions.Functions = options.custom_functions or functions.Functions()
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}
        self._count = 0

    def local(self) -> str:
        self._count += 1
        return f"t{self._count}"

    def name(self, value: Any, hint: str = "c") -> str:
        """A name the generated code reads `value` by."""
        for name, known in self.names.items():
            if known is value:
                return name
        name = f"{hint}{len(self.names)}"
        self.names[name] = value
        return name

    def constant(self, value: Any) -> str:
        """`value` as source: a literal where Python's reads it back as the same value."""
        if value is None or value.__class__ in (bool, str):
            return repr(value)
        if value.__class__ is int:
            return f"({value!r})"  # `(1).get`, not `1.get`
        return self.name(value)

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def node(self, node: Node, source: str, depth: int) -> str:
        keys = field_chain(node)
        if keys is not None:
            return self.keys(keys, source, depth)
        write = _WRITERS.get(node["type"])
        if write is None:
            return self.interpreted(node, source, depth)
        return write(self, node, source, depth)

    def truth(self, node: Node, held: str) -> str:
        """A condition true where the value in `held` is JMESPath-true."""
        if _gives_bool(node):
            return held
        # Strings, lists, objects and booleans are true as in Python; else is_false decides.
        return (f"({held} if {held}.__class__ in {self.name(_PYTHON_TRUTH, 'python_truth')} "
                f"else {held} is not None and not {self.name(is_false, 'is_false')}({held}))")

    def null_unless(self, test: str, depth: int) -> str:
        """A new local, set to null where `test` fails; the caller sets it under the `else:`
        this emits (at depth + 1)."""
        out = self.local()
        self.emit(depth, f"if not ({test}):")
        self.emit(depth + 1, f"{out} = None")
        self.emit(depth, "else:")
        return out

    def interpreted(self, node: Node, source: str, depth: int) -> str:
        visit = TreeInterpreter(self.options).visit
        out = self.local()
        self.emit(depth, f"{out} = {self.name(lambda value: visit(node, value), 'tree')}"
                         f"({source})")
        return out

    # -- one writer per node type, as jmespath.visitor.TreeInterpreter's visit_* ------------
    def keys(self, keys: tuple[str, ...], source: str, depth: int) -> str:
        out = self.local()
        for key in keys:
            self.emit(depth, f"{out} = {source}.get({key!r}) if isinstance({source}, dict) "
                             f"else None")
            source = out
        return out

    def chain(self, node: Node, source: str, depth: int) -> str:
        # subexpression, index_expression, pipe: each part reads what the one before gave.
        run: list[str] = []
        for child in node["children"]:  # runs of plain keys read as one path
            keys = field_chain(child)
            if keys is not None:
                run += keys
                continue
            if run:
                source, run = self.keys(tuple(run), source, depth), []
            source = self.node(child, source, depth)
        return self.keys(tuple(run), source, depth) if run else source

    def identity(self, node: Node, source: str, depth: int) -> str:  # current, identity
        return source

    def literal(self, node: Node, source: str, depth: int) -> str:
        return self.constant(node["value"])

    def index(self, node: Node, source: str, depth: int) -> str:
        at, out = node["value"], self.local()
        fits = f"len({source}) > {at}" if at >= 0 else f"len({source}) >= {-at}"
        self.emit(depth, f"{out} = {source}[{at}] if isinstance({source}, list) and {fits} "
                         f"else None")
        return out

    def slice(self, node: Node, source: str, depth: int) -> str:
        out, cut = self.local(), self.name(slice(*node["children"]), "cut")
        self.emit(depth, f"{out} = {source}[{cut}] if isinstance({source}, list) else None")
        return out

    def _collect(self, base: str, right: Node, condition: Node | None, depth: int) -> str:
        """The non-null results of `right` over the list in `base` (null if it is none), of
        the elements `condition` keeps."""
        out, element = self.null_unless(f"isinstance({base}, list)", depth), self.local()
        if right["type"] in ("identity", "current") and condition is None:
            self.emit(depth + 1, f"{out} = [{element} for {element} in {base} "
                                 f"if {element} is not None]")
            return out
        self.emit(depth + 1, f"{out} = []")
        self.emit(depth + 1, f"for {element} in {base}:")
        inner = depth + 2
        if condition is not None:
            kept = self.node(condition, element, inner)
            self.emit(inner, f"if {self.truth(condition, kept)}:")
            inner += 1
        current = self.node(right, element, inner)
        self.emit(inner, f"if {current} is not None:")
        self.emit(inner + 1, f"{out}.append({current})")
        return out

    def projection(self, node: Node, source: str, depth: int) -> str:
        left, right = node["children"]
        return self._collect(self.node(left, source, depth), right, None, depth)

    def filter_projection(self, node: Node, source: str, depth: int) -> str:
        left, right, condition = node["children"]
        return self._collect(self.node(left, source, depth), right, condition, depth)

    def value_projection(self, node: Node, source: str, depth: int) -> str:
        left, right = node["children"]
        base, values = self.node(left, source, depth), self.local()
        # An object's values (what has .values() in jmespath's JSON), else null.
        self.emit(depth, f"{values} = list({base}.values()) if isinstance({base}, dict) "
                         f"else None")
        return self._collect(values, right, None, depth)

    def flatten(self, node: Node, source: str, depth: int) -> str:
        (inner,) = node["children"]
        base = self.node(inner, source, depth)
        out, element = self.null_unless(f"isinstance({base}, list)", depth), self.local()
        self.emit(depth + 1, f"{out} = []")
        self.emit(depth + 1, f"for {element} in {base}:")
        self.emit(depth + 2, f"if isinstance({element}, list):")
        self.emit(depth + 3, f"{out}.extend({element})")
        self.emit(depth + 2, "else:")
        self.emit(depth + 3, f"{out}.append({element})")
        return out

    def multi_select_list(self, node: Node, source: str, depth: int) -> str:
        out = self.null_unless(f"{source} is not None", depth)
        parts = [self.node(child, source, depth + 1) for child in node["children"]]
        self.emit(depth + 1, f"{out} = [{', '.join(parts)}]")
        return out

    def multi_select_dict(self, node: Node, source: str, depth: int) -> str:
        out = self.null_unless(f"{source} is not None", depth)
        pairs = [(child["value"], self.node(child, source, depth + 1))
                 for child in node["children"]]
        make = self.options.dict_cls
        if make is None:
            self.emit(depth + 1, f"{out} = {{{', '.join(f'{k!r}: {v}' for k, v in pairs)}}}")
        else:
            self.emit(depth + 1, f"{out} = {self.name(make, 'dict_cls')}"
                                 f"([{', '.join(f'({k!r}, {v})' for k, v in pairs)}])")
        return out

    def key_val_pair(self, node: Node, source: str, depth: int) -> str:
        return self.node(node["children"][0], source, depth)

    def or_expression(self, node: Node, source: str, depth: int) -> str:
        return self._either(node, source, depth, on_false=True)

    def and_expression(self, node: Node, source: str, depth: int) -> str:
        return self._either(node, source, depth, on_false=False)

    def _either(self, node: Node, source: str, depth: int, on_false: bool) -> str:
        """`a || b` (b where a is false) and `a && b` (b where a is true)."""
        left, right = node["children"]
        out = self.local()
        self.emit(depth, f"{out} = {self.node(left, source, depth)}")
        truth = self.truth(left, out)
        self.emit(depth, f"if {'not ' if on_false else ''}({truth}):")
        self.emit(depth + 1, f"{out} = {self.node(right, source, depth + 1)}")
        return out

    def not_expression(self, node: Node, source: str, depth: int) -> str:
        (inner,) = node["children"]
        result, out = self.node(inner, source, depth), self.local()
        self.emit(depth, f"{out} = not {result} if {result}.__class__ in "
                         f"{self.name(_PLAIN, 'plain')} else {self.name(_negated, 'negated')}"
                         f"({result})")
        return out

    def comparator(self, node: Node, source: str, depth: int) -> str:
        op = node["value"]
        left, right = (self.node(child, source, depth) for child in node["children"])
        out = self.local()
        if op in ("eq", "ne"):
            # With a literal that is no number or boolean, jmespath's equality is Python's.
            if any(c["type"] == "literal" and not _number_like(c["value"])
                   for c in node["children"]):
                self.emit(depth, f"{out} = {left} {'==' if op == 'eq' else '!='} {right}")
            else:
                compare = self.name(TreeInterpreter.COMPARATOR_FUNC[op], op)
                self.emit(depth, f"{out} = {compare}({left}, {right})")
            return out
        # Ordering: numbers and strings only, else null.
        order = self.name(TreeInterpreter.COMPARATOR_FUNC[op], op)
        comparable = self.name(_comparable, "comparable")
        self.emit(depth, f"{out} = {order}({left}, {right}) if {comparable}({left}) and "
                         f"{comparable}({right}) else None")
        return out

    def function_expression(self, node: Node, source: str, depth: int) -> str:
        if _takes_expref(node):
            return self.interpreted(node, source, depth)
        name = node["value"]
        spec = self.functions.FUNCTION_TABLE.get(name)
        args = [self.node(child, source, depth) for child in node["children"]]
        call_function = self.name(self.functions.call_function, "call_function")
        out = self.local()
        jmespath_call = f"{call_function}({name!r}, [{', '.join(args)}])"
        signature = spec["signature"] if spec is not None else ()
        arity_ok = spec is not None and (
            len(args) >= len(signature) if signature and signature[-1].get("variadic")
            else len(args) == len(signature))
        if not arity_ok:
            # jmespath's own call: it raises what it raises (unknown, arity) every time.
            self.emit(depth, f"{out} = {jmespath_call}")
            return out
        assert spec is not None
        function = spec["function"].__get__(self.functions)
        if spec["function"] is functions.Functions._func_to_string:
            function = _to_string(function)
        checks = []
        for arg, child, accepted in zip(args, node["children"], signature, strict=False):
            test = _argument_test(accepted["types"])
            if test is None or (child["type"] == "literal" and test[0](child["value"])):
                continue  # no check, or a constant that passed its check once, when compiled
            check, classes = test
            if classes is None:
                checks.append(f"{self.name(check, 'check')}({arg})")
            elif len(classes) == 1:
                checks.append(f"{arg}.__class__ is {self.name(next(iter(classes)), 'type')}")
            else:
                checks.append(f"{arg}.__class__ in {self.name(classes, 'types')}")
        call = f"{self.name(function, 'function')}({', '.join(args)})"
        if not checks:
            self.emit(depth, f"{out} = {call}")
        else:  # jmespath says what is wrong (or that it is not)
            self.emit(depth, f"{out} = {call} if {' and '.join(checks)} else {jmespath_call}")
        return out


def _gives_bool(node: Node) -> bool:
    """Whether a node's value is always true or false, so its truth is Python's."""
    kind = node["type"]
    if kind == "not_expression":
        return True
    if kind == "comparator":
        return node["value"] in ("eq", "ne")
    if kind in ("and_expression", "or_expression"):
        return all(_gives_bool(child) for child in node["children"])
    return False


def _to_string(to_json: Callable[[Any], str]) -> Callable[[Any], str]:
    """jmespath's to_string, without its JSON encoder for an int (numeric ids): the same text,
    a tenth of the time."""
    return lambda value: (value if value.__class__ is str
                          else str(value) if value.__class__ is int else to_json(value))


def _actual_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, Number)


def _number_like(x: Any) -> bool:
    """Numbers and booleans: where jmespath's equality differs from Python's (0 == false)."""
    return isinstance(x, (bool, Number))


def _comparable(x: Any) -> bool:
    return _actual_number(x) or isinstance(x, str)


def _takes_expref(node: Node) -> bool:
    return any(isinstance(c, dict) and c.get("type") == "expref" for c in node["children"])


# jmespath's type names (functions.REVERSE_TYPES_MAP) -> the Python classes that carry them
# here; jmespath checks a value's class *name*, so these exact classes always pass it.
_CLASSES = {"boolean": (bool,), "array": (list,), "object": (dict, OrderedDict),
            "null": (type(None),), "string": (str,), "number": (int, float)}


Check = Callable[[Any], bool]


def _argument_test(types: list[str]) -> tuple[Check, frozenset[type] | None] | None:
    """A quick test that an argument passes jmespath's check for `types` (None: no check),
    and the classes it accepts where that is all it tests. A value it does not pass goes to
    jmespath's own check, so it may be strict, never lax."""
    if not types:
        return None
    top: set[type] = set()
    element_groups: list[frozenset[type]] = []
    for name in types:
        kind, _, subtype = name.partition("-")
        if kind not in _CLASSES or (subtype and subtype not in _CLASSES):
            return _never, None  # an expref, or a type this table does not know
        top.update(_CLASSES[kind])
        if subtype:
            element_groups.append(frozenset(_CLASSES[subtype]))
    allowed = frozenset(top)
    if not element_groups:
        return (lambda value: value.__class__ in allowed), allowed

    def check_elements(value: Any) -> bool:
        if value.__class__ is not list:
            return False
        if not value:
            return True
        for group in element_groups:  # the first element's kind picks the group
            if value[0].__class__ in group:
                return all(e.__class__ in group for e in value)
        return False

    return check_elements, None


def _never(value: Any) -> bool:
    """The check of a type this table does not know: jmespath's own check decides."""
    return False


# Values whose jmespath truth is Python's; any number is true (!0 is false).
_PYTHON_TRUTH = frozenset({str, list, dict, bool})
_PLAIN = _PYTHON_TRUTH | {type(None)}


def _negated(value: Any) -> bool:
    """`!value` for what `_PLAIN` leaves: a number's is false (jmespath: !0 too), else Python's."""
    return not _actual_number(value) and not value


_WRITERS: dict[str, Callable[[_Writer, Node, str, int], str]] = {
    "field": _Writer.chain,
    "subexpression": _Writer.chain,
    "index_expression": _Writer.chain,
    "pipe": _Writer.chain,
    "current": _Writer.identity,
    "identity": _Writer.identity,
    "literal": _Writer.literal,
    "index": _Writer.index,
    "slice": _Writer.slice,
    "projection": _Writer.projection,
    "value_projection": _Writer.value_projection,
    "filter_projection": _Writer.filter_projection,
    "flatten": _Writer.flatten,
    "multi_select_list": _Writer.multi_select_list,
    "multi_select_dict": _Writer.multi_select_dict,
    "key_val_pair": _Writer.key_val_pair,
    "or_expression": _Writer.or_expression,
    "and_expression": _Writer.and_expression,
    "not_expression": _Writer.not_expression,
    "comparator": _Writer.comparator,
    "function_expression": _Writer.function_expression,
}
