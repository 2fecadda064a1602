"""YAML for fleet files: libyaml's parser, plain data only, no aliases, bounded nesting.

PyYAML's loaders build a node graph (recursively: 100,000 nested levels crash libyaml's composer
with SIGSEGV, 5,000 end in a RecursionError in the constructor) and expand aliases (321 bytes of
nested aliases became 720 MB). An operator's fleet has no use for either, so this loader reads
libyaml's events in one loop (no recursion), refuses an anchor, an alias or a merge key (``<<``)
where it appears, and refuses nesting deeper than ``MAX_DEPTH``. Scalars are resolved and built
by PyYAML's SafeLoader rules (ints, floats, booleans, null, timestamps), so the data is what
``yaml.safe_load`` gives for any document it accepts. Skipping the node graph also makes it faster
than ``yaml.load(Loader=CSafeLoader)`` (see docs/fleet.md for the figures).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

MAX_DEPTH = 200  # nested mappings and lists; a fleet file needs a dozen

try:  # libyaml when PyYAML has it (it does in its wheels)
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_PLAIN_COLLECTIONS = {None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class FleetYamlError(ValueError):
    """Input this loader refuses: ``line`` (1-based, or None) and the problem."""

    def __init__(self, line: int | None, problem: str) -> None:
        self.line = line
        self.problem = problem
        super().__init__(f"line {line}: {problem}" if line else problem)


class _Mapping:
    __slots__ = ("data", "key", "has_key")

    def __init__(self) -> None:
        self.data: dict = {}
        self.key: Any = None
        self.has_key = False


def _line(event: Any) -> int | None:
    mark = getattr(event, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def load(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """The one document of ``text`` (None when empty). Raises FleetYamlError for what fleet files
    may not hold, yaml.YAMLError for what is not YAML."""
    loader = _Loader(text)
    try:
        get, resolve, constructors = loader.get_event, loader.resolve, loader.yaml_constructors
        # The first characters PyYAML's implicit resolvers look at (bool, int, float, null, ...): a
        # plain scalar starting with any other (most of a fleet: names, domains, addresses) is a
        # string, which is what resolve() would answer, without its regular expressions.
        resolved_first = frozenset(loader.yaml_implicit_resolvers)
        fast = None not in resolved_first
        stack: list[Any] = []
        root: Any = None
        documents = 0
        while True:
            event = get()
            kind = event.__class__
            if kind is ScalarEvent:
                value = event.value
                if (fast and event.tag is None and event.anchor is None and value
                        and (value[0] not in resolved_first or not event.implicit[0])):
                    pass  # the common case: a string (plain, starting with a character no resolver takes, or quoted)
                elif event.anchor is not None:
                    raise FleetYamlError(_line(event), f"anchor &{event.anchor}: YAML anchors and aliases are not "
                                         "allowed in fleet files (write the value out)")
                else:
                    tag = event.tag
                    if tag is None or tag == "!":
                        tag = resolve(ScalarNode, value, event.implicit)
                    if tag == _MERGE:
                        raise FleetYamlError(_line(event), "merge keys (<<) are not allowed in fleet files")
                    if tag != _STR:
                        build = constructors.get(tag)
                        if build is None:
                            raise FleetYamlError(_line(event), f"the tag {tag} is not allowed in fleet files")
                        node = ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
                        value = build(loader, node)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.anchor is not None:
                    raise FleetYamlError(_line(event), f"anchor &{event.anchor}: YAML anchors and aliases are not "
                                         "allowed in fleet files (write the value out)")
                if event.tag not in _PLAIN_COLLECTIONS:
                    raise FleetYamlError(_line(event), f"the tag {event.tag} is not allowed in fleet files")
                if len(stack) >= max_depth:
                    raise FleetYamlError(_line(event), f"nested more than {max_depth} levels deep")
                stack.append(_Mapping() if kind is MappingStartEvent else [])
                continue
            elif kind is MappingEndEvent:
                value = stack.pop().data
            elif kind is SequenceEndEvent:
                value = stack.pop()
            elif kind is AliasEvent:
                raise FleetYamlError(_line(event), f"alias *{event.anchor}: YAML anchors and aliases are not allowed "
                                     "in fleet files (write the value out)")
            elif kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise FleetYamlError(_line(event), "more than one YAML document (---) in the file")
                continue
            elif kind is StreamEndEvent:
                return root
            else:  # stream start, document end
                continue
            if not stack:
                root = value
                continue
            top = stack[-1]
            if top.__class__ is list:
                top.append(value)
            elif top.has_key:
                top.data[top.key] = value
                top.has_key = False
            else:
                if isinstance(value, list | dict):
                    raise FleetYamlError(_line(event), "a mapping key that is a list or a mapping")
                top.key, top.has_key = value, True
    finally:
        loader.dispose()
