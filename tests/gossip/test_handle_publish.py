"""``PubSub.handle_publish`` (the in-memory sink's entry) answers as ``handle`` does, and
``Send`` (a NamedTuple) is an immutable value."""

from __future__ import annotations

import random
from typing import Any

import pytest

from p2pakash.crypto import NodeID
from p2pakash.gossip.messages import Publish, Subscribe
from p2pakash.gossip.pubsub import PubSub, PubSubParams, Send, Verdict
from tests.gossip.netsim import node_ids

T = "t"
IDS = node_ids(12)


def _node(**kw: Any) -> PubSub:
    ps = PubSub(local_id=IDS[0], params=PubSubParams(**kw), rng=random.Random(7))
    ps.subscribe(0.0, T)
    for q in IDS[1:9]:
        ps.add_peer(0.0, q, outbound=False)
        ps.handle(0.0, q, Subscribe(topic=T, subscribe=True))
    ps.heartbeat(1.0)
    ps.set_validator(T, lambda s, t, d: Verdict.REJECT if d[:1] == b"!" else Verdict.ACCEPT)
    return ps


def test_handle_publish_equals_handle_on_a_mixed_sequence() -> None:
    by_handle = _node(graylist_threshold=-60.0, disconnect_threshold=-1000.0)
    direct = _node(graylist_threshold=-60.0, disconnect_threshold=-1000.0)
    rng = random.Random(3)
    steps = []
    for k in range(200):  # new, duplicate, rejected, unsubscribed-topic and unknown-peer copies
        peer = IDS[rng.randrange(1, 12)]
        data = b"!%d" % k if rng.random() < 0.1 else b"m%d" % rng.randrange(40)
        topic = T if rng.random() < 0.95 else "other"
        steps.append((1.0 + k * 0.01, peer, Publish(topic=topic, data=data)))
    for now, peer, item in steps:
        assert by_handle.handle(now, peer, item) == direct.handle_publish(now, peer, item)
    assert by_handle.stats == direct.stats
    assert by_handle.stats.delivered > 0 and by_handle.stats.duplicates > 0
    assert by_handle.stats.rejected > 0 and by_handle.stats.unsubscribed > 0
    assert by_handle.stats.graylisted > 0  # rejections pushed some peer below -60
    assert direct.handle_publish(9.0, NodeID("unknown-peer"), Publish(topic=T, data=b"x")) == []


def test_send_is_an_immutable_value() -> None:
    a, b = Send(IDS[1], "item"), Send(IDS[1], "item")
    assert a == b and hash(a) == hash(b) and a != Send(IDS[2], "item")
    assert (a.peer, a.item) == (IDS[1], "item") and "Send(" in repr(a)
    with pytest.raises(AttributeError):
        a.peer = IDS[2]  # type: ignore[misc]
