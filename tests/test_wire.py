"""wire: golden bytes, round-trips of every field kind, and hostile input only ever
raising DecodeError. Test messages use tags 970-979 (the "test" range is 900-999)."""

from __future__ import annotations

import enum
import hashlib

import attrs
import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pakash import wire
from p2pakash.errors import DecodeError, LocalProtocolError
from p2pakash.gossip import messages as gm

SETTINGS = settings(derandomize=True, deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow])


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2


@wire.message(tag=970)
@attrs.frozen(kw_only=True)
class Point:
    x: int
    y: int


@wire.message(tag=971)
@attrs.frozen(kw_only=True)
class Empty:
    pass


@wire.message(tag=972)
@attrs.frozen(kw_only=True)
class Sample:
    n: int
    flag: bool
    name: str
    blob: bytes
    maybe: int | None
    color: Color
    items: tuple[int, ...]
    pair: tuple[str, bytes]
    point: Point
    points: tuple[Point, ...]
    any_msg: object
    opt_point: Point | None


@wire.message(tag=973)
@attrs.frozen(kw_only=True)
class Checked:
    name: str = attrs.field()

    @name.validator
    def _short(self, attribute: attrs.Attribute[str], value: str) -> None:
        if len(value) > 3:
            raise ValueError("name too long")


INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
points = st.builds(Point, x=INT64, y=INT64)
samples = st.builds(
    Sample,
    n=INT64,
    flag=st.booleans(),
    name=st.text(max_size=20),
    blob=st.binary(max_size=40),
    maybe=st.none() | INT64,
    color=st.sampled_from(Color),
    items=st.lists(INT64, max_size=5).map(tuple),
    pair=st.tuples(st.text(max_size=5), st.binary(max_size=5)),
    point=points,
    points=st.lists(points, max_size=3).map(tuple),
    any_msg=st.one_of(points, st.just(Empty())),
    opt_point=st.none() | points,
)


def _sample() -> Sample:
    return Sample(n=-1, flag=True, name="é", blob=b"\x00\xff", maybe=None, color=Color.GREEN,
                  items=(1, 2), pair=("a", b"b"), point=Point(x=0, y=1), points=(),
                  any_msg=Empty(), opt_point=Point(x=2, y=3))


# ---------------------------------------------------------------- golden bytes


def test_golden_point() -> None:
    # tag 40970 = 0xa00a (2-byte tag head d9), array(2), 1, -2
    assert wire.encode(Point(x=1, y=-2)).hex() == "d9a00a820121"


def test_golden_empty() -> None:
    assert wire.encode(Empty()).hex() == "d9a00b80"


def test_golden_sample() -> None:
    expected = (
        "d9a00c"            # tag 40972
        "8c"                # array of 12 fields
        "20"                # n = -1
        "f5"                # flag = true
        "62c3a9"            # name = "é" (2 UTF-8 bytes)
        "4200ff"            # blob
        "f6"                # maybe = null
        "02"                # color = GREEN
        "820102"            # items
        "82616141 62"       # pair ("a", b"b")
        "d9a00a820001"      # point
        "80"                # points = ()
        "d9a00b80"          # any_msg = Empty
        "d9a00a820203"      # opt_point
    ).replace(" ", "")
    assert wire.encode(_sample()).hex() == expected
    assert wire.digest(_sample()).hex() == hashlib.sha256(
        bytes.fromhex(expected)).hexdigest()


def test_golden_gossip_ping() -> None:
    assert wire.encode(gm.Ping(nonce=7)).hex() == "d99c438107"


# ---------------------------------------------------------------- round-trips


@SETTINGS
@given(samples)
def test_sample_round_trips(sample: Sample) -> None:
    data = wire.encode(sample)
    back = wire.decode(data, Sample)
    assert back == sample
    assert type(back.color) is Color
    assert wire.encode(back) == data
    assert wire.decode(data, object) == sample


@SETTINGS
@given(samples)
def test_decode_as_wrong_class_is_refused(sample: Sample) -> None:
    with pytest.raises(DecodeError):
        wire.decode(wire.encode(sample), Point)


def test_enum_value_out_of_range_is_refused() -> None:
    data = bytearray(wire.encode(_sample()))
    index = data.index(bytes.fromhex("f602"))  # maybe=null, color=2
    data[index + 1] = 0x07
    with pytest.raises(DecodeError, match="not a valid Color"):
        wire.decode(bytes(data), Sample)


def test_validator_failure_is_a_decode_error() -> None:
    data = wire.encode(Checked(name="abc")).replace(b"\x63abc", b"\x64abcd")
    with pytest.raises(DecodeError, match="name too long"):
        wire.decode(data, Checked)


def test_encode_refuses_what_is_not_wire() -> None:
    with pytest.raises(LocalProtocolError):
        wire.encode(Point(x=2**64, y=0))
    with pytest.raises(LocalProtocolError):
        wire.encode(Point(x=1.5, y=0))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        wire.encode({"a": 1})


def _reference_tree(obj: object) -> object:
    """The plain recursive walk the generated per-class tree builders must equal."""
    if wire.is_message(obj):
        names = [f.name for f in attrs.fields(type(obj))]  # type: ignore[arg-type]
        return cbor2.CBORTag(wire.TAG_BASE + wire.tag_of(type(obj)),
                             [_reference_tree(getattr(obj, n)) for n in names])
    if obj is None or isinstance(obj, (bool, str, bytes)):
        return obj
    if isinstance(obj, int):
        if not -(2**63) <= obj <= 2**64 - 1:
            raise LocalProtocolError("out of range")
        return int(obj)
    if isinstance(obj, (tuple, list)):
        return [_reference_tree(x) for x in obj]
    raise LocalProtocolError("not wire")


class Name(str):
    pass


@given(samples)
def test_generated_encoders_equal_the_plain_walk(sample: Sample) -> None:
    assert wire.encode(sample) == cbor2.dumps(_reference_tree(sample), canonical=True)


@pytest.mark.parametrize("point", [Point(x=Color.RED, y=True), Point(x=Name("a"), y=b""),  # type: ignore[arg-type]
                                   Point(x=(1, Color.GREEN), y=None),  # type: ignore[arg-type]
                                   Point(x=Point(x=-(2**63), y=2**64 - 1), y=[Empty()])])  # type: ignore[arg-type]
def test_generated_encoders_take_odd_field_values_as_the_plain_walk_does(point: Point) -> None:
    assert wire.encode(point) == cbor2.dumps(_reference_tree(point), canonical=True)
    for bad in (Point(x=-(2**63) - 1, y=0), Point(x=0, y=(1.5,)),  # type: ignore[arg-type]
                Point(x=0, y=bytearray(b"x"))):  # type: ignore[arg-type]
        with pytest.raises(LocalProtocolError):
            wire.encode(bad)


def test_tag_cannot_be_taken_twice() -> None:
    with pytest.raises(LocalProtocolError, match="taken"):
        @wire.message(tag=970)
        @attrs.frozen(kw_only=True)
        class Other:
            pass


GOSSIP_SAMPLES = [
    gm.Auth(pubkey=b"k" * 32, signature=b"s" * 64, chain_id="c", listen_addr="h:1",
            version="0.1"),
    gm.Ping(nonce=2**64 - 1),
    gm.Pong(nonce=0),
    gm.PexRequest(),
    gm.PexAddrs(addrs=("a@b:1", "c@d:2")),
    gm.Subscribe(topic="blocks", subscribe=True),
    gm.Publish(topic="txs", data=b"\x00" * 100),
    gm.IHave(topic="txs", ids=(b"\x01" * 32, b"\x02" * 32)),
    gm.IWant(ids=(b"\x01" * 32,)),
    gm.Graft(topic="txs"),
    gm.Prune(topic="txs", backoff=60, px=("x@y:3",)),
    gm.IDontWant(ids=()),
    gm.Goodbye(reason="banned"),
]


@pytest.mark.parametrize("msg", GOSSIP_SAMPLES, ids=lambda m: type(m).__name__)
def test_gossip_messages_round_trip(msg: object) -> None:
    data = wire.encode(msg)
    assert wire.decode(data, type(msg)) == msg
    assert wire.decode(data, object) == msg
    assert wire.TAG_RANGES["gossip"].start <= wire.tag_of(type(msg)) < 100


def test_gossip_frame_round_trips_a_batch() -> None:
    frame = gm.Frame(items=tuple(GOSSIP_SAMPLES))
    assert wire.decode(wire.encode(frame), gm.Frame) == frame


def test_encode_batch_equals_encode_of_the_message() -> None:
    for n in (0, 1, 23, 24, 255, 256):
        items = tuple(gm.Ping(nonce=i) for i in range(n))
        batch = wire.encode_batch(gm.Frame, [wire.encode(item) for item in items])
        assert batch == wire.encode(gm.Frame(items=items))
    with pytest.raises(LocalProtocolError, match="not a single-field batch"):
        wire.encode_batch(Point, [])


def test_non_canonical_decode_still_refuses_trailing_bytes() -> None:
    nonminimal = bytes.fromhex("d9a00a82180102")  # Point(x=1, y=2), x in two bytes
    with pytest.raises(DecodeError, match="non-canonical"):
        wire.decode(nonminimal, Point)
    assert wire.decode(nonminimal, Point, canonical=False) == Point(x=1, y=2)
    with pytest.raises(DecodeError, match="1 trailing bytes"):
        wire.decode(nonminimal + b"\x00", Point, canonical=False)


def test_gossip_bounds_are_enforced_on_decode() -> None:
    raw = wire.encode(gm.PexAddrs(addrs=("a",))).replace(b"\x81\x81\x61a", b"\x81\x98\x65"
                                                          + b"\x61a" * 101)
    with pytest.raises(DecodeError, match="more than 100"):
        wire.decode(raw, gm.PexAddrs)
    topic = wire.encode(gm.Graft(topic="t")).replace(b"\x61t", b"\x78\x41" + b"t" * 65)
    with pytest.raises(DecodeError, match="longer than 64"):
        wire.decode(topic, gm.Graft)


def test_message_id_is_content_hash() -> None:
    assert gm.message_id("a", b"b") == gm.message_id("a", b"b")
    assert gm.message_id("a", b"b") != gm.message_id("a\x00", b"b"[1:])
    assert len(gm.message_id("t", b"")) == gm.MSG_ID_LEN


# ---------------------------------------------------------------- hostile input

POINT_1_2 = "d9a00a820102"
HOSTILE = {
    "empty": b"",
    "deep_arrays": b"\x81" * 100_000 + b"\x00",
    "deep_tags": bytes.fromhex("d99c41") * 100_000 + b"\x80",
    "deep_frames": bytes.fromhex("d99c4181") * 1000 + bytes.fromhex("d99c4180"),
    "huge_array_length": b"\x9b" + (2**63).to_bytes(8, "big"),
    "huge_bytes_length": b"\x5b" + (2**62).to_bytes(8, "big") + b"ab",
    "huge_text_length": b"\x7b" + (2**62).to_bytes(8, "big"),
    "huge_map_length": b"\xbb" + (2**62).to_bytes(8, "big"),
    "frame_huge_items": bytes.fromhex("d99c41819b") + (2**63).to_bytes(8, "big"),
    "map_top": bytes.fromhex("a10102"),
    "map_body": bytes.fromhex("d9a00aa20001"),
    "map_field": bytes.fromhex("d9a00a82a00102"),
    "float_top": b"\xfb" + b"\x00" * 8,
    "float_field": bytes.fromhex("d9a00a82f93c0002"),
    "half_float_int": bytes.fromhex("d9a00a82f9000002"),
    "indefinite_array": bytes.fromhex("d9a00a9f0102ff"),
    "indefinite_bytes": bytes.fromhex("d99c48826174") + bytes.fromhex("5f4161ff"),
    "nonminimal_int": bytes.fromhex("d9a00a82180102"),
    "nonminimal_tag": bytes.fromhex("da0000a00a820102"),
    "nonminimal_length": bytes.fromhex("d9a00a98020102"),
    "trailing_byte": bytes.fromhex(POINT_1_2 + "00"),
    "two_messages": bytes.fromhex(POINT_1_2 * 2),
    "unknown_wire_tag": bytes.fromhex("d9a3ff80"),  # 40000 + 1023
    "unregistered_test_tag": bytes.fromhex("d9a0e680"),  # 40000 + 998
    "foreign_tag": bytes.fromhex("d9ffff80"),
    "bignum_field": bytes.fromhex("d9a00a82c2410102"),
    "huge_bignum": bytes.fromhex("d9a00a82c25101") + b"\x00" * 16 + b"\x02",
    "negative_bignum": bytes.fromhex("d9a00a82c3410102"),
    "int_too_small": bytes.fromhex("d9a00a823b800000000000000002"),
    "datetime_tag": bytes.fromhex("c063616263"),
    "epoch_tag": bytes.fromhex("c100"),
    "uuid_tag": bytes.fromhex("d8254161"),
    "mime_tag": bytes.fromhex("d82463616263"),
    "regex_tag": bytes.fromhex("d8236128"),
    "set_tag": bytes.fromhex("d9010281d9a00a820102"),
    "shared_cycle": bytes.fromhex("d81cd99c4181d81d00"),
    "shared_list_cycle": bytes.fromhex("d81c81d81d00"),
    "bad_utf8": bytes.fromhex("d99c4b8162fffe"),
    "undefined": b"\xf7",
    "simple_value": b"\xf8\x20",
    "break_code": b"\xff",
    "truncated": bytes.fromhex(POINT_1_2[:-2]),
    "wrong_field_count": bytes.fromhex("d9a00a83010203"),
    "bool_for_int": bytes.fromhex("d9a00a82f502"),
    "int_for_bool": bytes.fromhex("d99c47826174" + "01"),
    "bytes_for_str": bytes.fromhex("d99c4b814174"),
    "non_message_in_frame": bytes.fromhex("d99c418101"),
    "oversize": b"\x5a" + (5 * 2**20).to_bytes(4, "big") + b"\x00" * (5 * 2**20),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("expected", [object, Point, gm.Frame, Sample],
                         ids=lambda c: c.__name__)
def test_hostile_input_is_a_decode_error(name: str, expected: type) -> None:
    with pytest.raises(DecodeError):
        wire.decode(HOSTILE[name], expected)


def test_oversize_is_refused_before_parsing() -> None:
    with pytest.raises(DecodeError, match="exceeds the limit of 10"):
        wire.decode(b"\x00" * 11, object, max_size=10)


def _decode_or_decode_error(data: bytes, expected: type) -> None:
    try:
        result: object = wire.decode(data, expected)
    except DecodeError:
        return
    assert wire.encode(result) == data  # whatever is accepted is canonical


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    for expected in (object, Point, Sample, gm.Frame):
        _decode_or_decode_error(data, expected)


@SETTINGS
@given(samples, st.data())
def test_mutated_encodings_only_raise_decode_error(sample: Sample, data: st.DataObject) -> None:
    raw = bytearray(wire.encode(sample))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if action == "flip" and raw:
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "insert":
            raw.insert(pos, data.draw(st.integers(0, 255)))
        elif action == "delete" and raw:
            del raw[pos]
        else:
            del raw[pos:]
    _decode_or_decode_error(bytes(raw), Sample)
    _decode_or_decode_error(bytes(raw), object)
