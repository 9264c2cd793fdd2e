"""Fuzz ``wire.decode`` for every registered message class (the tag registry is iterated).

Property: ``decode(data, cls)`` and ``decode(data, object)`` either return a message whose
canonical encoding is exactly ``data`` (only canonical bytes are accepted) or raise
DecodeError; nothing else, within the deadline and without allocating a declared length.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pakash import wire
from p2pakash.errors import DecodeError
from tests.fuzz.cbor_gen import encode_tree, garbage, mutated, registry, shaped
from tests.fuzz.support import bounded_memory, fuzz_settings, only_ours

TAGS = sorted(registry())


def check_decode(data: bytes, cls: type) -> None:
    for expected in (cls, object):
        value = only_ours(wire.decode, data, expected, allowed=(DecodeError,))
        if value is not None:
            assert wire.encode(value) == data, "decode accepted a non-canonical encoding"
            assert expected is object or type(value) is cls


def test_every_message_class_is_fuzzed() -> None:
    # the gossip, consensus, ledger, market and provider layers all registered messages
    layers = {name for name, tags in wire.TAG_RANGES.items() if any(t in tags for t in TAGS)}
    assert {"gossip", "consensus", "ledger", "market", "provider"} <= layers
    assert len(TAGS) >= 100


@pytest.mark.parametrize("tag", TAGS)
@fuzz_settings(12)
@given(data=st.data())
def test_shaped_and_mutated_encodings(tag: int, data: st.DataObject) -> None:
    cls = registry()[tag]
    seed = encode_tree(data.draw(shaped(cls), label="tree"))
    check_decode(seed, cls)
    check_decode(data.draw(mutated(seed), label="mutated"), cls)


@fuzz_settings(300)
@given(st.binary(max_size=200), st.sampled_from(TAGS))
def test_random_bytes(data: bytes, tag: int) -> None:
    check_decode(data, registry()[tag])


@fuzz_settings(400)
@given(garbage(), st.sampled_from(TAGS))
def test_structured_garbage(data: bytes, tag: int) -> None:
    with bounded_memory(4 << 20):
        check_decode(data, registry()[tag])


@fuzz_settings(200)
@given(st.sampled_from(TAGS), st.sampled_from([0x5B, 0x7B, 0x9B, 0xBB, 0x1B, 0xDB]),
       st.sampled_from([2**32, 2**60, 2**64 - 1]), st.binary(max_size=16))
def test_huge_declared_lengths_do_not_allocate(tag: int, head: int, size: int,
                                               tail: bytes) -> None:
    # a message whose first field declares 2**32..2**64-1 bytes/items/pairs
    data = bytes([0xD9]) + (wire.TAG_BASE + tag).to_bytes(2, "big") + b"\x81"
    data += bytes([head]) + size.to_bytes(8, "big") + tail
    with bounded_memory(1 << 20):
        check_decode(data, registry()[tag])


def test_size_limit_is_checked_before_parsing() -> None:
    data = b"\x5a" + (wire.MAX_MESSAGE_SIZE).to_bytes(4, "big") + bytes(wire.MAX_MESSAGE_SIZE)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        wire.decode(data, object)
