"""The one wire codec: tagged, canonical CBOR (DESIGN.md §3.3).

Rules and invariants:
* A wire message is a frozen attrs class registered with ``@message(tag=N)``. It is
  encoded as CBOR tag ``TAG_BASE + N`` around an array of its fields in declaration
  order. Tags are stable and never reused; ranges are allotted by layer (see TAG_RANGES).
* Field types allowed: int (64-bit range), bool, str, bytes, None, IntEnum, NewTypes of
  those, ``X | None``, unions of message classes, ``tuple[X, ...]``, fixed tuples,
  nested message classes, and ``object`` meaning "any registered message".
  Maps and floats are never part of a message: nothing signed is ever a CBOR map.
* ``decode`` accepts only the canonical encoding: it decodes, re-encodes and compares, so
  trailing bytes, non-minimal integers and indefinite lengths are all refused. Unknown
  tags, wrong field counts or types, and oversize input raise DecodeError, and nothing
  else: arbitrary bytes from a peer can only ever produce DecodeError.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import io
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, cast

import attrs
import cbor2

from p2pakash.errors import DecodeError, LocalProtocolError

TAG_BASE = 40000
MAX_MESSAGE_SIZE = 4 * 1024 * 1024
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

# Tag ranges by layer (the offset N in @message(tag=N)); a tag is never reused.
TAG_RANGES: dict[str, range] = {
    "gossip": range(1, 100),
    "consensus": range(100, 200),
    "ledger": range(200, 300),
    "market": range(300, 400),
    "provider": range(400, 500),
    "sim": range(500, 600),
    "test": range(900, 1000),
}

T = TypeVar("T")
Checker = Callable[[Any], Any]


@attrs.frozen
class _Spec:
    cls: type
    tag: int
    names: tuple[str, ...]


_BY_TAG: dict[int, _Spec] = {}
_BY_CLASS: dict[type, _Spec] = {}


def message(tag: int) -> Callable[[type[T]], type[T]]:
    """Register a frozen attrs class as a wire message with the stable tag ``tag``."""

    def register(cls: type[T]) -> type[T]:
        if not attrs.has(cls):
            raise LocalProtocolError(f"{cls.__qualname__}: wire messages must be attrs classes")
        if tag in _BY_TAG and _BY_TAG[tag].cls is not cls:
            other = _BY_TAG[tag].cls.__qualname__
            raise LocalProtocolError(f"wire tag {tag} of {cls.__qualname__} is taken by {other}")
        names = tuple(f.name for f in attrs.fields(cls))
        spec = _Spec(cls=cls, tag=tag, names=names)
        _BY_TAG[tag] = spec
        _BY_CLASS[cls] = spec
        return cast("type[T]", cls)

    return register


def max_items(limit: int) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    """attrs validator: a tuple field holds at most ``limit`` items (bounds peer input)."""
    def check(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if len(value) > limit:
            raise ValueError(f"{attribute.name} holds more than {limit} items")
    return check


def max_chars(limit: int) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    """attrs validator: a str field is at most ``limit`` characters long."""
    def check(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if len(value) > limit:
            raise ValueError(f"{attribute.name} longer than {limit} characters")
    return check


def tag_of(cls: type) -> int:
    return _BY_CLASS[cls].tag


def is_message(obj: object) -> bool:
    return type(obj) in _BY_CLASS


# ---------------------------------------------------------------- encoding


def _to_cbor(obj: object) -> object:
    tree = _TREES.get(type(obj))
    if tree is not None:
        return tree(obj)
    spec = _BY_CLASS.get(type(obj))
    if spec is not None:
        tree = _TREES[spec.cls] = _tree_builder(spec)
        return tree(obj)
    if obj is None or isinstance(obj, (bool, str, bytes)):
        return obj
    if isinstance(obj, int):  # includes IntEnum
        if not _INT_MIN <= obj <= _INT_MAX:
            raise LocalProtocolError(f"integer {obj} out of the 64-bit wire range")
        return int(obj)
    if isinstance(obj, (tuple, list)):
        return [x if type(x) in _SIMPLE or (type(x) is int and _INT_MIN <= x <= _INT_MAX)
                else _to_cbor(x) for x in obj]
    raise LocalProtocolError(f"cannot put {type(obj).__name__} on the wire")


# Values that go into the tree as they are (exact types; subclasses take the long way).
_SIMPLE = frozenset({str, bytes, bool, type(None)})
_TREES: dict[type, Callable[[Any], object]] = {}


def _tree_builder(spec: _Spec) -> Callable[[Any], object]:
    """Generate ``tree(obj)``: the CBOR tree of one message class, fields inline. A field
    holding a str, bytes, bool, None or an in-range int goes in as it is; anything else
    (a message, a tuple, an IntEnum, a bad value) through ``_to_cbor``, so the result and
    the errors are those of the generic walk."""
    src = ["def tree(o):"]
    for i, name in enumerate(spec.names):
        src += [f"    v{i} = o.{name}",
                f"    t = type(v{i})",
                "    if t is int:",
                f"        if not _MIN <= v{i} <= _MAX:",
                f"            v{i} = _to_cbor(v{i})",
                "    elif t not in _SIMPLE:",
                f"        v{i} = _to_cbor(v{i})"]
    fields = ", ".join(f"v{i}" for i in range(len(spec.names)))
    src.append(f"    return CBORTag({TAG_BASE + spec.tag}, [{fields}])")
    ns: dict[str, Any] = {"CBORTag": cbor2.CBORTag, "_to_cbor": _to_cbor, "_SIMPLE": _SIMPLE,
                          "_MIN": _INT_MIN, "_MAX": _INT_MAX}
    exec("\n".join(src), ns)  # the source is built above from the class's field names
    tree: Callable[[Any], object] = ns["tree"]
    return tree


def encode(obj: object) -> bytes:
    """Canonical CBOR bytes of a registered message (or a plain value tree of them)."""
    data: bytes = cbor2.dumps(_to_cbor(obj), canonical=True)
    return data


def cbor_head(major: int, n: int) -> bytes:
    """A canonical CBOR head (major type, argument 0 <= n < 2**64), as cbor2 writes it."""
    m = major << 5
    if n < 24:
        return bytes((m | n,))
    if n < 0x100:
        return bytes((m | 24, n))
    if n < 0x10000:
        return bytes((m | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((m | 26,)) + n.to_bytes(4, "big")
    if n < 0x10000000000000000:
        return bytes((m | 27,)) + n.to_bytes(8, "big")
    raise LocalProtocolError("length out of range")


def encode_batch(cls: type, encoded_items: list[bytes]) -> bytes:
    """Encode a message whose only field is a tuple, from its items' encodings.

    Equal to ``encode(cls(field=tuple(items)))`` but lets a sender encode each item
    once, however many batches it goes into.
    """
    spec = _BY_CLASS[cls]
    if len(spec.names) != 1:
        raise LocalProtocolError(f"{cls.__name__} is not a single-field batch message")
    return (cbor_head(6, TAG_BASE + spec.tag) + cbor_head(4, 1)
            + cbor_head(4, len(encoded_items)) + b"".join(encoded_items))


def digest(obj: object) -> bytes:
    """sha256 of the canonical encoding: the content ID of a message."""
    return hashlib.sha256(encode(obj)).digest()


# ---------------------------------------------------------------- decoding
#
# cbor2's C decoder turns the bytes into a plain tree (lists, ints, str, bytes, None, bool
# and CBORTag for our tags); a converter per expected type then checks the tree and builds
# the values. A message class's converter is generated source (one function per class,
# fields inline), so a decode costs one C parse, one Python call per message and, for
# canonical input, one C re-encode of the same tree.


def decode(data: bytes, expected: type[T], *, max_size: int = MAX_MESSAGE_SIZE,
           canonical: bool = True) -> T:
    """Decode canonical bytes into an instance of ``expected`` (``object``: any message).

    ``canonical=False`` skips the re-encode-and-compare step (trailing bytes are still
    refused). Use it only for an envelope that is never hashed or signed as received —
    the transport ``Frame``, whose items are re-encoded before any hash or signature.
    """
    if len(data) > max_size:
        raise DecodeError(f"message of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        if canonical:
            # ``loads`` ignores what follows the first item; the re-encode below finds it.
            tree = cbor2.loads(data)
        else:
            stream = io.BytesIO(data)
            tree = cbor2.CBORDecoder(stream).decode()
            if stream.tell() != len(data):
                raise DecodeError(f"{len(data) - stream.tell()} trailing bytes after the"
                                  " message")
        result = _converter(expected)(tree)
        # The tree holds only what the converters accept (plain values and our tags), so
        # its canonical encoding is the canonical encoding of ``result``.
        if canonical:
            again = cbor2.dumps(tree, canonical=True)
            if again != data:
                if len(again) < len(data) and data.startswith(again):
                    raise DecodeError(f"{len(data) - len(again)} trailing bytes after the"
                                      " message")
                raise DecodeError("non-canonical encoding")
    except DecodeError:
        raise
    except (cbor2.CBORError, ValueError, TypeError, LocalProtocolError, OverflowError,
            RecursionError, KeyError, IndexError, AttributeError, UnicodeError) as exc:
        raise DecodeError(f"malformed CBOR: {exc}") from None
    return cast(T, result)


def decode_via(memo: DecodeMemo | None, data: bytes, expected: type[T]) -> T:
    """``decode(data, expected)``, through ``memo`` when one is given (the simulator's nodes
    share one)."""
    return decode(data, expected) if memo is None else memo.decode(data, expected)


class DecodeMemo:
    """Decoded messages by their bytes, shared by the nodes of one process (a simulation),
    as they share the VerifyCache: decoding is a pure function of the bytes and messages
    are frozen. Bounded (least recently used out); an entry of another class is decoded
    again, so the memo never changes what ``decode(data, cls)`` accepts."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: collections.OrderedDict[bytes, object] = collections.OrderedDict()

    def decode(self, data: bytes, expected: type[T]) -> T:
        """``decode(data, expected)``, once per distinct bytes while remembered."""
        found = self._items.get(data)
        if type(found) is expected:
            self._items.move_to_end(data)
            return found
        msg = decode(data, expected)
        self._items[data] = msg
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return msg

    def __len__(self) -> int:
        return len(self._items)


def _fail(what: str, value: object) -> DecodeError:
    if type(value) is cbor2.CBORTag:
        spec = _BY_TAG.get(value.tag - TAG_BASE)
        if spec is None:
            return DecodeError(f"unknown wire tag {value.tag}")
        return DecodeError(f"expected {what}, got {spec.cls.__name__}")
    return DecodeError(f"expected {what}, got {type(value).__name__}")


_CONVERTERS: dict[object, Checker] = {}
_BUILDING: set[type] = set()


def _converter(tp: Any) -> Checker:
    """The function turning a decoded CBOR tree into a value of type ``tp`` (memoised)."""
    try:
        return _CONVERTERS[tp]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation: build it afresh
        return _build_converter(tp)
    conv = _build_converter(tp)
    if not (isinstance(tp, type) and tp in _BUILDING):
        _CONVERTERS[tp] = conv
    return conv


def _convert_any(v: Any) -> Any:
    if type(v) is not cbor2.CBORTag:
        raise _fail("a wire message", v)
    spec = _BY_TAG.get(v.tag - TAG_BASE)
    if spec is None:
        raise DecodeError(f"unknown wire tag {v.tag}")
    return _converter(spec.cls)(v)


def _convert_int(v: Any) -> Any:
    if type(v) is not int or not _INT_MIN <= v <= _INT_MAX:
        raise _fail("int", v)
    return v


def _build_converter(tp: Any) -> Checker:
    supertype = getattr(tp, "__supertype__", None)
    if supertype is not None:  # NewType
        return _converter(supertype)
    if tp is object:
        return _convert_any
    if tp is int:
        return _convert_int
    if tp in (bool, str, bytes):
        def check_exact(v: Any) -> Any:
            if type(v) is not tp:
                raise _fail(tp.__name__, v)
            return v
        return check_exact
    if tp is None or tp is type(None):
        def check_none(v: Any) -> Any:
            if v is not None:
                raise _fail("null", v)
            return v
        return check_none
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        enum_cls = tp
        def check_enum(v: Any) -> Any:
            if type(v) is not int:
                raise _fail(enum_cls.__name__, v)
            try:
                return enum_cls(v)
            except ValueError:
                raise DecodeError(f"{v} is not a valid {enum_cls.__name__}") from None
        return check_enum
    if isinstance(tp, type) and tp in _BY_CLASS:
        if tp in _BUILDING:  # a recursive type: resolve the converter on use
            cls = tp
            return lambda v: _converter(cls)(v)
        _BUILDING.add(tp)
        try:
            return _message_converter(tp)
        finally:
            _BUILDING.discard(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        options = [_converter(a) for a in args]
        def check_union(v: Any) -> Any:
            for option in options:
                try:
                    return option(v)
                except DecodeError:
                    continue
            raise _fail(" | ".join(getattr(a, "__name__", str(a)) for a in args), v)
        return check_union
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _converter(args[0])
            def check_seq(v: Any) -> Any:
                if type(v) is not list and type(v) is not tuple:
                    raise _fail("array", v)
                return tuple([item(x) for x in v])
            return check_seq
        items = [_converter(a) for a in args]
        def check_fixed(v: Any) -> Any:
            if (type(v) is not list and type(v) is not tuple) or len(v) != len(items):
                raise _fail(f"array of {len(items)}", v)
            return tuple([c(x) for c, x in zip(items, v, strict=True)])
        return check_fixed
    raise LocalProtocolError(f"type {tp!r} is not allowed in a wire message")


def _message_converter(cls: type) -> Checker:
    """Generate ``convert(tree) -> cls``: tag, field count, each field inline, construct."""
    spec = _BY_CLASS[cls]
    hints = typing.get_type_hints(cls)
    name = cls.__name__
    ns: dict[str, Any] = {"CBORTag": cbor2.CBORTag, "DecodeError": DecodeError, "cls": cls,
                          "_fail": _fail, "_MIN": _INT_MIN, "_MAX": _INT_MAX}
    n = len(spec.names)
    src = ["def convert(v):",
           f"    if type(v) is not CBORTag or v.tag != {TAG_BASE + spec.tag}:",
           f"        raise _fail({name!r}, v)",
           "    f = v.value",
           f"    if (type(f) is not list and type(f) is not tuple) or len(f) != {n}:",
           f"        raise DecodeError({name + f': expected an array of {n} fields'!r})"]
    for i, field in enumerate(spec.names):
        base = hints[field]
        while getattr(base, "__supertype__", None) is not None:
            base = base.__supertype__
        where = f"{name}.{field}: "
        src.append(f"    a{i} = f[{i}]")
        if base is int:
            src += [f"    if type(a{i}) is not int or not _MIN <= a{i} <= _MAX:",
                    f"        raise DecodeError({where!r} + str(_fail('int', a{i})))"]
        elif base in (str, bytes, bool):
            src += [f"    if type(a{i}) is not {base.__name__}:",
                    f"        raise DecodeError({where!r} + str(_fail({base.__name__!r}, a{i})))"]
        else:
            ns[f"c{i}"] = _converter(hints[field])
            src += ["    try:",
                    f"        a{i} = c{i}(a{i})",
                    "    except DecodeError as exc:",
                    f"        raise DecodeError({where!r} + str(exc)) from None"]
    aliases = [f.alias for f in attrs.fields(cls)]  # init names (attrs strips a leading _)
    args = ", ".join(f"{alias}=a{i}" for i, alias in enumerate(aliases))
    src += ["    try:",
            f"        return cls({args})",
            "    except (ValueError, TypeError) as exc:",
            f"        raise DecodeError({name + ': '!r} + str(exc)) from None"]
    exec("\n".join(src), ns)  # the source is built above from field names and types
    convert: Checker = ns["convert"]
    return convert
