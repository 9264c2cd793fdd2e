"""Hypothesis strategies for CBOR input: well-typed message trees, mutations and garbage.

Rules:
* ``shaped(cls)`` builds the CBOR item tree of a message from its type hints *without*
  running the class's validators: the right tag and field count with values of the right
  CBOR type (ints over the whole 64-bit range, hashes of the usual lengths...). Such input
  reaches the validators, where anything but ValueError/TypeError would escape.
  Nested ``object`` fields (any message) are filled with field-less or flat classes, and
  depth is capped, so every tree stays small.
* ``mutated(data)`` applies 1..4 byte-level mutations: bit flips, truncation, extension,
  insertion, deletion, a byte overwritten with an interesting CBOR head, a tag swapped for
  another registered one, a length head inflated.
* ``garbage()`` is structured hostile CBOR: huge declared lengths, indefinite lengths, deep
  nesting, floats (NaN, inf, half precision), bignums, simple values, semantic tags cbor2
  interprets itself (datetime, decimal, regex, shared references...), registered tags.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import cbor2
from hypothesis import strategies as st

from p2pakash import wire

MAX_DEPTH = 4
INT_MIN, INT_MAX = -(2**63), 2**64 - 1


def registry() -> dict[int, type]:
    """Every registered message class by tag (the registry wire decodes against)."""
    return {tag: spec.cls for tag, spec in sorted(wire._BY_TAG.items())}


def _flat(cls: type) -> bool:
    hints = typing.get_type_hints(cls)
    return all(h in (int, bool, str, bytes) or getattr(h, "__supertype__", None) is not None
               for h in hints.values())


def _ints() -> st.SearchStrategy[int]:
    edges = [0, 1, -1, 23, 24, 255, 256, 2**31, 2**32, 2**53 + 1, 2**63 - 1, INT_MIN, INT_MAX]
    return st.one_of(st.integers(0, 3), st.integers(-3, 100), st.sampled_from(edges),
                     st.integers(INT_MIN, INT_MAX))


def _sized(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


def _bytes(name: str) -> st.SearchStrategy[bytes]:
    # hashes and keys are 32 bytes, signatures 64, addresses 20: the field name hints which
    any_size = st.sampled_from([32, 64, 20, 0]).flatmap(_sized) | st.binary(max_size=40)
    if "signature" in name:
        return _sized(64) | _sized(64) | any_size
    if any(k in name for k in ("hash", "key", "validator", "proposer", "author", "digest")):
        return _sized(32) | _sized(32) | any_size
    return any_size


def _text() -> st.SearchStrategy[str]:
    words = ["uakt", "akash1", "p2pakash-local", "consensus/vote", "txs", "web", "", "a" * 80]
    return st.sampled_from(words) | st.text(max_size=20)


def shaped(cls: type, depth: int = 0) -> st.SearchStrategy[Any]:
    """The CBOR item tree of a ``cls`` message with well-typed, unvalidated field values."""
    spec = wire._BY_CLASS[cls]
    hints = typing.get_type_hints(cls)
    fields = [_value(hints[name], depth + 1, name) for name in spec.names]
    return st.tuples(*fields).map(lambda vals: cbor2.CBORTag(wire.TAG_BASE + spec.tag,
                                                             list(vals)))


def _any_message(depth: int) -> st.SearchStrategy[Any]:
    classes = [c for c in registry().values() if depth < MAX_DEPTH or _flat(c)]
    flat = [c for c in classes if _flat(c)]
    pool = flat if depth >= 2 else classes
    return st.sampled_from(pool).flatmap(lambda c: shaped(c, depth))


def _value(tp: Any, depth: int, name: str = "") -> st.SearchStrategy[Any]:
    supertype = getattr(tp, "__supertype__", None)
    if supertype is not None:
        return _value(supertype, depth, name)
    if tp is object:
        return st.deferred(lambda: _any_message(depth))
    if tp is int:
        return st.integers(1, 5) | _ints() if "height" in name else _ints()
    if tp is bool:
        return st.booleans()
    if tp is str:
        return _text()
    if tp is bytes:
        return _bytes(name)
    if tp is None or tp is type(None):
        return st.none()
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return st.sampled_from([int(m) for m in tp]) | st.integers(-1, 300)
    if isinstance(tp, type) and tp in wire._BY_CLASS:
        if depth > MAX_DEPTH:  # too deep: a wrong-typed value (decoding refuses it)
            return st.none()
        return st.deferred(lambda: shaped(tp, depth))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        return st.one_of(*(_value(a, depth, name) for a in args))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(_value(args[0], depth + 1, name), max_size=3 if depth < 3 else 1)
        return st.tuples(*(_value(a, depth, name) for a in args)).map(list)
    raise AssertionError(f"no strategy for {tp!r}")


def encode_tree(tree: Any) -> bytes:
    data: bytes = cbor2.dumps(tree, canonical=True)
    return data


# ---------------------------------------------------------------- byte mutations

# Heads worth writing over a byte: lengths 24/25/26/27 of every major type, the indefinite
# forms and break, floats, simple values, tags 2/3 (bignum), 28/29 (shared references).
HEADS = bytes([0x18, 0x19, 0x1A, 0x1B, 0x1F, 0x38, 0x3B, 0x58, 0x5B, 0x5F, 0x78, 0x7B, 0x7F,
               0x98, 0x9B, 0x9F, 0xB8, 0xBB, 0xBF, 0xC2, 0xC3, 0xD8, 0xD9, 0xDA, 0xDB, 0xF4,
               0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFF, 0x00, 0x20, 0x40, 0x60, 0x80,
               0xA0])


def _tag_head(value: int) -> bytes:
    return bytes([0xD9]) + value.to_bytes(2, "big")


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    tags = list(registry())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "extend", "insert", "delete", "head",
                                   "tag", "length"]))
        pos = draw(st.integers(0, max(0, len(out) - 1)))
        if op == "flip" and out:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del out[draw(st.integers(0, len(out))):]
        elif op == "extend":
            out += draw(st.binary(min_size=1, max_size=16))
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=9))
        elif op == "delete" and out:
            del out[pos:pos + draw(st.integers(1, 4))]
        elif op == "head" and out:
            out[pos] = draw(st.sampled_from(HEADS))
        elif op == "tag":
            # every wire tag is TAG_BASE + n: a 2-byte tag head (0xD9) in front of its array
            found = [i for i in range(len(out) - 2) if out[i] == 0xD9
                     and int.from_bytes(out[i + 1:i + 3], "big") - wire.TAG_BASE in tags]
            if found:
                at = draw(st.sampled_from(found))
                out[at:at + 3] = _tag_head(wire.TAG_BASE + draw(st.sampled_from(tags)))
        elif op == "length" and out:
            major = out[pos] & 0xE0
            size = draw(st.sampled_from([2**16 - 1, 2**32 - 1, 2**60, 2**64 - 1]))
            extra = 0x1B if size > 2**32 - 1 else 0x1A if size > 2**16 - 1 else 0x19
            width = {0x19: 2, 0x1A: 4, 0x1B: 8}[extra]
            out[pos:pos + 1] = bytes([major | extra]) + size.to_bytes(width, "big")
    return bytes(out)


# ---------------------------------------------------------------- structured garbage

SEMANTIC_TAGS = [0, 1, 2, 3, 4, 5, 21, 22, 23, 24, 25, 28, 29, 30, 32, 33, 34, 35, 36, 37,
                 256, 258, 260, 261, 55799, 40000, 39999, 41000, 2**32, 2**64 - 1]


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | extra]) + n.to_bytes(size, "big")
    raise ValueError(n)


def _leaf() -> st.SearchStrategy[bytes]:
    huge = st.sampled_from([2**31, 2**32 - 1, 2**60, 2**64 - 1])
    floats = st.floats(allow_nan=True, allow_infinity=True)
    return st.one_of(
        _ints().map(lambda n: cbor2.dumps(n)),
        st.integers(-(2**200), 2**200).map(lambda n: cbor2.dumps(n)),  # bignum tags 2/3
        floats.map(lambda f: cbor2.dumps(f)),
        floats.map(lambda f: cbor2.dumps(f, canonical=True)),  # half/single precision
        st.sampled_from([b"\xf9\x7e\x00", b"\xfa\x7f\xc0\x00\x00", b"\xf8\x20", b"\xf7",
                         b"\xf0", b"\xff", b"\x1c", b"\x5f\xff", b"\x7f\xff"]),
        st.binary(max_size=12).map(lambda b: cbor2.dumps(b)),
        st.text(max_size=8).map(lambda t: cbor2.dumps(t)),
        st.tuples(st.integers(0, 7), huge).map(lambda mh: _head(mh[0], mh[1])),
        st.binary(max_size=8),
    )


def _combine(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    items = st.lists(children, max_size=4)
    tags = st.sampled_from(SEMANTIC_TAGS) | st.sampled_from(list(registry())).map(
        lambda t: wire.TAG_BASE + t)
    return st.one_of(
        items.map(lambda xs: _head(4, len(xs)) + b"".join(xs)),
        items.map(lambda xs: b"\x9f" + b"".join(xs) + b"\xff"),  # indefinite array
        items.map(lambda xs: _head(5, len(xs) // 2) + b"".join(xs[: len(xs) // 2 * 2])),
        items.map(lambda xs: b"\xbf" + b"".join(xs) + b"\xff"),  # indefinite map
        st.tuples(tags, children).map(lambda tc: _head(6, tc[0]) + tc[1]),
        st.lists(st.binary(max_size=4).map(lambda b: cbor2.dumps(b)), max_size=3).map(
            lambda xs: b"\x5f" + b"".join(xs) + b"\xff"),  # indefinite byte string
    )


def garbage() -> st.SearchStrategy[bytes]:
    deep = st.tuples(st.sampled_from([b"\x81", b"\x9f", b"\xa1\x00", b"\xc1", b"\xd8\x1c\x81"]),
                     st.integers(100, 5000)).map(lambda pn: pn[0] * pn[1] + b"\x00")
    return st.recursive(_leaf(), _combine, max_leaves=12) | deep
