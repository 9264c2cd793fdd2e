"""YAML to a small node tree, read with Go yaml.v3's decoding rules.

Rules and invariants:
* Only the first YAML document is read (as Go's ``yaml.Unmarshal`` does). The tree is built
  iteratively from PyYAML's (safe, C-accelerated when available) event stream, so deep
  nesting, alias bombs and huge inputs end in SDLError, never a crash: depth is capped at
  MAX_DEPTH and the alias-expanded node count at MAX_NODES.
* Scalars keep their original text and resolved tag, so a field typed as a string receives
  the text as written (``3`` -> ``"3"``, ``yes`` -> ``"yes"``), like yaml.v3.
* Mapping keys are unique (yaml.v3 refuses duplicates); ``<<`` merge keys are applied.
* Every accessor raises SDLError naming the line and the SDL path.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import yaml

from p2pakash.errors import SDLError

MAX_DEPTH = 64
MAX_NODES = 200_000

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
MERGE = "tag:yaml.org,2002:merge"
SEQ = "tag:yaml.org,2002:seq"
MAP = "tag:yaml.org,2002:map"

_KIND_NAMES = {"scalar": "a scalar", "seq": "a sequence", "map": "a mapping"}
_TRUE = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"}
_FALSE = {"n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"}

try:
    _Parser: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Parser = yaml.SafeLoader

_RESOLVER = yaml.resolver.Resolver()


@attrs.define(eq=False)
class Node:
    kind: str  # "scalar" | "seq" | "map"
    tag: str
    line: int
    text: str = ""
    items: list[Node] = attrs.field(factory=list)
    pairs: list[tuple[Node, Node]] = attrs.field(factory=list)
    size: int = 1

    @property
    def is_null(self) -> bool:
        return self.kind == "scalar" and self.tag == NULL


def compose(text: str) -> Node | None:
    """The first document of ``text`` as a Node tree, or None for an empty document."""
    try:
        return _compose(yaml.parse(text, Loader=_Parser))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise SDLError(f"yaml: {where}{exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else "invalid input"
        raise SDLError(f"yaml: {first_line}") from None


def _compose(events: Iterator[yaml.Event]) -> Node | None:
    anchors: dict[str, Node] = {}
    stack: list[Node] = []
    pending_key: list[Node | None] = []
    root: Node | None = None
    started = False
    for event in events:
        if isinstance(event, yaml.DocumentStartEvent):
            started = True
            continue
        if isinstance(event, yaml.DocumentEndEvent):
            break
        if not started or isinstance(event, yaml.StreamStartEvent | yaml.StreamEndEvent):
            continue
        node: Node | None = None
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                raise SDLError(f"yaml: line {line}: unknown anchor {event.anchor!r} referenced")
            node = anchors[event.anchor]
            if any(node is open_node for open_node in stack):
                raise SDLError(f"yaml: line {line}: anchor {event.anchor!r} refers to itself")
        elif isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = _RESOLVER.resolve(  # type: ignore[no-untyped-call]
                    yaml.ScalarNode, event.value, event.implicit)
            node = Node("scalar", tag, line, text=event.value)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            kind = "seq" if isinstance(event, yaml.SequenceStartEvent) else "map"
            tag = event.tag if event.tag not in (None, "!") else (SEQ if kind == "seq" else MAP)
            opened = Node(kind, tag, line)
            if event.anchor is not None:
                anchors[event.anchor] = opened
            stack.append(opened)
            pending_key.append(None)
            if len(stack) > MAX_DEPTH:
                raise SDLError(f"yaml: line {line}: nesting deeper than {MAX_DEPTH} levels")
            continue
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            node = stack.pop()
            pending_key.pop()
            node.size = 1 + sum(n.size for n in node.items)
            node.size += sum(k.size + v.size for k, v in node.pairs)
            if node.size > MAX_NODES:
                raise SDLError(f"yaml: document too large (more than {MAX_NODES} nodes)")
        if node is None:
            continue
        if isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
            anchors[event.anchor] = node
        if not stack:
            root = node
            continue
        parent = stack[-1]
        if parent.kind == "seq":
            parent.items.append(node)
        elif pending_key[-1] is None:
            pending_key[-1] = node
        else:
            key = pending_key[-1]
            assert key is not None
            parent.pairs.append((key, node))
            pending_key[-1] = None
    return root


def describe(node: Node) -> str:
    return _KIND_NAMES[node.kind]


def fail(node: Node, path: str, message: str) -> SDLError:
    return SDLError(f"line {node.line}: {path}: {message}")


def mapping(node: Node | None, path: str) -> list[tuple[str, Node]]:
    """A mapping's (key, value) pairs in document order; null is an empty mapping."""
    if node is None or node.is_null:
        return []
    if node.kind != "map":
        raise fail(node, path, f"expected a mapping, got {describe(node)}")
    result: list[tuple[str, Node]] = []
    seen: dict[str, int] = {}
    merged: list[tuple[str, Node]] = []
    for key, value in node.pairs:
        if key.kind != "scalar":
            raise fail(key, path, f"mapping keys must be scalars, got {describe(key)}")
        if key.tag == MERGE:
            sources = value.items if value.kind == "seq" else [value]
            for source in sources:
                merged.extend(mapping(source, path))
            continue
        if key.text in seen:
            raise fail(key, path, f"mapping key {key.text!r} already defined at line "
                                  f"{seen[key.text]}")
        seen[key.text] = key.line
        result.append((key.text, value))
    for key_text, value in merged:
        if key_text not in seen:
            seen[key_text] = value.line
            result.append((key_text, value))
    return result


def sequence(node: Node | None, path: str) -> list[Node] | None:
    """A sequence's items; None for null or absent (Go's nil slice)."""
    if node is None or node.is_null:
        return None
    if node.kind != "seq":
        raise fail(node, path, f"expected a sequence, got {describe(node)}")
    return node.items


def string(node: Node | None, path: str) -> str:
    """A scalar's text as written; null or absent is the empty string."""
    if node is None or node.is_null:
        return ""
    if node.kind != "scalar":
        raise fail(node, path, f"expected a string, got {describe(node)}")
    return node.text


def strings(node: Node | None, path: str) -> tuple[str, ...] | None:
    items = sequence(node, path)
    if items is None:
        return None
    return tuple(string(item, f"{path}[{i}]") for i, item in enumerate(items))


def uint(node: Node | None, path: str, *, bits: int = 32) -> int:
    """An unsigned integer field: YAML ints (and integral floats, truncated) in range."""
    if node is None or node.is_null:
        return 0
    if node.kind != "scalar":
        raise fail(node, path, f"expected an integer, got {describe(node)}")
    value: int | None = None
    if node.tag == INT:
        value = _yaml_int(node.text)
    elif node.tag == FLOAT:
        number = _yaml_float(node.text)
        if number is not None and number == number and abs(number) != float("inf"):
            value = int(number)
    if value is None or value < 0 or value >= 2**bits:
        raise fail(node, path, f"cannot unmarshal {node.text!r} into uint{bits}")
    return value


def boolean(node: Node | None, path: str) -> bool:
    if node is None or node.is_null:
        return False
    if node.kind == "scalar" and node.text in _TRUE:
        return True
    if node.kind == "scalar" and node.text in _FALSE:
        return False
    raise fail(node, path, f"cannot unmarshal {node.text or describe(node)!r} into bool")


def _yaml_int(text: str) -> int | None:
    """PyYAML's (YAML 1.1) int construction, as the resolver tagged it."""
    value = text.replace("_", "")
    sign = -1 if value.startswith("-") else 1
    value = value.lstrip("+-")
    try:
        if value == "0":
            return 0
        if value.startswith("0b"):
            return sign * int(value[2:], 2)
        if value.startswith("0x"):
            return sign * int(value[2:], 16)
        if value.startswith("0") and ":" not in value:
            return sign * int(value, 8)
        if ":" in value:
            total = 0
            for part in value.split(":"):
                total = total * 60 + int(part)
            return sign * total
        return sign * int(value)
    except ValueError:
        return None


def _yaml_float(text: str) -> float | None:
    value = text.replace("_", "").lower()
    try:
        if ":" in value:
            sign = -1.0 if value.startswith("-") else 1.0
            total = 0.0
            for part in value.lstrip("+-").split(":"):
                total = total * 60 + float(part)
            return sign * total
        return float(value.replace(".inf", "inf").replace(".nan", "nan"))
    except ValueError:
        return None
