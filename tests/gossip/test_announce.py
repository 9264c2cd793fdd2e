"""Subscription re-announcement: only to peers that have not shown they know the topic."""

from __future__ import annotations

import random
from typing import Any

import pytest

from p2pakash.errors import ConfigError
from p2pakash.gossip.messages import Graft, IHave, Publish, Subscribe
from p2pakash.gossip.pubsub import PubSub, PubSubParams, Send
from tests.gossip.netsim import node_ids

A, B, C, D, E = node_ids(5)
T, U = "t", "u"


def announced(actions: list[Any]) -> set[tuple[str, str]]:
    return {(a.peer, a.item.topic) for a in actions
            if type(a) is Send and type(a.item) is Subscribe and a.item.subscribe}


def core(most: int = 3) -> PubSub:
    ps = PubSub(local_id=A, params=PubSubParams(announce_every=3, announce_every_max=most),
                rng=random.Random(1))
    ps.subscribe(0.0, T)
    ps.subscribe(0.0, U)
    for q in (B, C, D, E):
        ps.add_peer(0.0, q, outbound=False)
    return ps


def test_reannounce_skips_topics_a_peer_has_shown_it_knows() -> None:
    ps = core()
    assert [announced(ps.heartbeat(t)) for t in (1.0, 2.0)] == [set(), set()]
    everyone = {(q, t) for q in (B, C, D, E) for t in (T, U)}
    assert announced(ps.heartbeat(3.0)) == everyone  # nobody has shown anything yet
    ps.handle(3.5, B, Publish(topic=T, data=b"x"))  # B forwards T to us: it knows
    ps.handle(3.5, C, IHave(topic=U, ids=(b"\x01" * 32,)))  # C gossips U to us: it knows
    ps.handle(3.5, D, Subscribe(topic=T, subscribe=True))
    ps.handle(3.5, D, Graft(topic=T))  # D grafts us on T: it knows
    ps.handle(3.5, E, Publish(topic="other", data=b"y"))  # not our topic: proves nothing
    for t in (4.0, 5.0):
        ps.heartbeat(t)
    assert announced(ps.heartbeat(6.0)) == everyone - {(B, T), (C, U), (D, T)}


def test_unsubscribing_forgets_the_proofs() -> None:
    ps = core()
    ps.handle(0.5, B, Publish(topic=T, data=b"x"))
    ps.unsubscribe(1.0, T)
    ps.subscribe(1.5, T)  # tells everyone again, and must keep repeating it to B
    ps.heartbeat(2.0)
    ps.heartbeat(2.5)
    assert (B, T) in announced(ps.heartbeat(3.0))


def test_the_gap_doubles_up_to_the_maximum_and_subscribing_restarts_it() -> None:
    ps = core(most=12)
    rounds = [hb for hb in range(1, 50) if announced(ps.heartbeat(float(hb)))]
    assert rounds == [3, 9, 21, 33, 45]  # gaps 3, 6, 12, 12, 12
    ps.subscribe(50.0, "v")  # a new topic: the next repeat comes announce_every later
    rounds = [hb for hb in range(50, 60) if announced(ps.heartbeat(float(hb)))]
    assert rounds == [52, 58]  # 3 after subscribing (at heartbeat 49), then gaps 6, 12 ...


def test_announce_params_are_checked() -> None:
    with pytest.raises(ConfigError, match="announce_every <= announce_every_max"):
        PubSubParams(announce_every=10, announce_every_max=5)
