"""Load YAML and remember where every value came from.

`load` returns plain Python data plus a `Locator` that maps a YAML path (a tuple of keys and
indexes) to its line, so any later check can point at the exact line of the offending value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Problem, SpecError

YamlPath = tuple[Any, ...]


def format_path(path: YamlPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Locator:
    file: str
    lines: dict[YamlPath, int] = field(default_factory=dict)
    own_keys: dict[int, set[int]] = field(default_factory=dict)  # mapping node -> its own keys

    def line(self, path: YamlPath) -> int | None:
        """Line of the value at `path`, or of its nearest located ancestor."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def problem(self, path: YamlPath, message: str) -> Problem:
        return Problem(self.file, self.line(path), format_path(path), message)


def _construct(node: yaml.Node, path: YamlPath, loc: Locator, loader: yaml.SafeLoader) -> Any:
    """Build data from a node, recording lines; duplicate keys are errors, not last-wins."""
    loc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        # flatten_mapping rewrites the node in place, so a node reached again through an alias
        # no longer shows which keys were merged: its own keys are taken at the first visit.
        own_keys = loc.own_keys.setdefault(
            id(node), {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"})
        loader.flatten_mapping(node)  # `<<: *anchor` merges come first; own keys override them
        result: dict[Any, Any] = {}
        merged: set[Any] = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if id(key_node) not in own_keys:
                merged.add(key)
            elif key in merged:
                merged.discard(key)
            elif key in result:
                line = key_node.start_mark.line + 1
                where = format_path(path + (key,))
                raise SpecError([Problem(loc.file, line, where, f"duplicate key {key!r}")])
            result[key] = _construct(value_node, path + (key,), loc, loader)
            # A key's own line is more useful than its value's for block values.
            loc.lines[path + (key,)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), loc, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


# libyaml's loader where PyYAML was built with it (ten times faster), else PyYAML's own.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node, and the loader that composed it (it constructs the values):
    libyaml's where installed, ten times faster (a sync process loads its connector first),
    else PyYAML's. Text libyaml refuses is composed again by PyYAML, which raises what it
    raises, and says more ("found undefined alias 'x'")."""
    if SAFE_LOADER is not yaml.SafeLoader:
        loader = SAFE_LOADER(text)
        try:
            return loader.get_single_node(), loader
        except yaml.YAMLError:
            loader.dispose()
    loader = yaml.SafeLoader(text)
    return loader.get_single_node(), loader


def read_text(path: str | Path) -> str:
    """A spec file's text; one it cannot read is a SpecError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem(str(path), None, "", f"cannot read file: {exc.strerror}")]
                        ) from None


def load(path: str | Path, text: str | None = None) -> tuple[Any, Locator]:
    """Parse one YAML file (or `text`, read from it before) into plain data and its locator;
    syntax errors become SpecError."""
    loc = Locator(str(path))
    if text is None:
        text = read_text(path)
    loader = None
    try:
        node, loader = _compose(text)
        if node is None:
            return None, loc
        return _construct(node, (), loc, loader), loc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        message = f"invalid YAML: {exc.problem or exc.context}"
        raise SpecError([Problem(str(path), line, "", message)]) from None
    finally:
        if loader is not None:
            loader.dispose()
