"""Periodic traffic that stops when it is not needed: no Ping on a link that carries traffic."""

from __future__ import annotations

import attrs

from p2pakash.gossip.messages import Ping
from p2pakash.gossip.peers import SendTo
from tests.gossip.test_peers import QUIET, connect, manager, nid


def test_a_busy_link_carries_no_pings() -> None:
    m = manager(params=attrs.evolve(QUIET, ping_interval=10.0, ping_timeout=30.0))
    m.start(0.0)
    connect(m, 0.0, 1, outbound=False)
    m.seen(9.0, nid(1))
    assert m.tick(10.0) == []  # heard from 1 s ago: no ping
    assert m.next_deadline() == 19.0
    m.seen(18.0, nid(1))
    assert m.tick(19.0) == []
    out = m.tick(28.0)  # silent for 10 s: now it is pinged
    assert len(out) == 1 and isinstance(out[0], SendTo) and isinstance(out[0].item, Ping)
