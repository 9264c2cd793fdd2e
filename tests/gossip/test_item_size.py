"""ItemSizer: the in-memory network's item sizes equal the wire encoding's length."""

from __future__ import annotations

import random

import pytest

from p2pakash import wire
from p2pakash.gossip import messages as m
from p2pakash.gossip.item_size import ItemSizer, cbor_head


@pytest.mark.parametrize("n", [0, 1, 23, 24, 255, 256, 65535, 65536])
def test_cbor_head_matches_the_encoder(n: int) -> None:
    assert len(wire.encode(m.IWant(ids=(b"x" * n,)))) - len(wire.encode(m.IWant(ids=()))) \
        == n + cbor_head(n)


def test_sizes_equal_the_encoding() -> None:
    rng = random.Random(3)
    sizer = ItemSizer(max_items=50)
    items: list[object] = []
    for count in (0, 1, 5, 23, 24, 100, 255, 256, 300):
        ids = tuple(rng.randbytes(rng.choice((32, 32, 5, 30))) for _ in range(count))
        for topic in ("t", "consensus/vote", "x" * 40):
            items.append(m.IHave(topic=topic, ids=ids))
        items += [m.IWant(ids=ids), m.IDontWant(ids=ids)]
    for topic in ("txs", "orders", "a" * 24):
        items += [m.Subscribe(topic=topic, subscribe=True),
                  m.Subscribe(topic=topic, subscribe=False), m.Graft(topic=topic),
                  m.Prune(topic=topic, backoff=60, px=()), m.Publish(topic=topic, data=b"d" * 70),
                  m.Ping(nonce=rng.getrandbits(63))]
    for _ in range(2):  # the second round answers from the caches
        for item in items:
            assert sizer.size(item) == len(wire.encode(item)), item
    assert len(sizer._by_id) <= 51


def test_memos_drop_their_oldest_eighth_at_once() -> None:
    from p2pakash.gossip.caches import trim_oldest

    table = {k: k for k in range(17)}
    trim_oldest(table, 16)
    assert list(table) == list(range(2, 17))  # over 16: the oldest 16 // 8 = 2 dropped
    trim_oldest(table, 16)
    assert len(table) == 15  # not over: nothing dropped
    sizer = ItemSizer(max_items=64)
    items = [m.Ping(nonce=k) for k in range(200)]
    for item in items:
        assert sizer.size(item) == len(wire.encode(item))
    assert len(sizer._by_id) <= 64
