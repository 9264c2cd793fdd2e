"""Status cadence (``BlockSync.announce``): new connections and height changes, plus a slow
keep-alive; two real GossipServices over the in-memory network under virtual time."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import trio
from trio.testing import MockClock

from p2pakash.consensus.sync import BlockSync
from p2pakash.consensus.types import Block, Commit
from p2pakash.crypto import PrivateKey
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams
from p2pakash.gossip.service import GossipService

CHAIN = "cadence"


class Heights:
    """A SyncTarget holding only a committed height (``announce`` asks nothing else)."""

    def __init__(self) -> None:
        self.height = 0

    def committed_height(self) -> int:
        return self.height

    def base_height(self) -> int:
        return 1 if self.height else 0

    def stored(self, height: int) -> tuple[Block | None, Commit | None]:
        return None, None

    def apply_synced(self, block: Block, commit: Commit) -> None:
        raise AssertionError("nothing to sync in this test")


def _service(net: MemoryNetwork, n: int, persistent: list[PeerAddr]) -> GossipService:
    key = PrivateKey.from_seed(bytes([n]) * 32)
    return GossipService(
        transport=MemoryTransport(net, key, CHAIN, f"10.0.0.{n}:26656"),
        rng=random.Random(n), persistent=persistent, pubsub_params=PubSubParams(),
        peer_params=PeerParams(backoff_base=0.1, backoff_max=0.5, ban_seconds=0.5,
                               pex_interval=float("inf")))


async def _until(cond: Callable[[], bool], limit: float = 10.0) -> None:
    for _ in range(int(limit / 0.05)):  # virtual time
        if cond():
            return
        await trio.sleep(0.05)
    raise AssertionError(f"not within {limit} virtual seconds")


async def test_status_goes_to_new_peers_on_height_change_and_as_keepalive(
        autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(7), latency=0.01)
    a = _service(net, 1, [])
    b = _service(net, 2, [PeerAddr.parse(f"{a.node_id}@10.0.0.1:26656")])
    ha, hb = Heights(), Heights()
    sa = BlockSync(a, ha, name="a", keepalive_every=4)
    sb = BlockSync(b, hb, name="b", keepalive_every=4)
    sa.register()
    sb.register()
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        await _until(lambda: b.node_id in a.connected and a.node_id in b.connected)
        assert sa.announce() == 1  # tick 1: a new connection hears our height
        await _until(lambda: a.node_id in sb.peer_heights)
        assert sb.peer_heights[a.node_id] == 0
        assert [sa.announce(), sa.announce()] == [0, 0]  # ticks 2, 3: nothing changed
        assert sa.announce() == 1  # tick 4: the keep-alive
        ha.height = 5
        assert sa.announce() == 1  # tick 5: our height changed
        await _until(lambda: sb.peer_heights.get(a.node_id) == 5)
        assert sa.announce() == 0
        session = a.session(b.node_id)
        a.ban(b.node_id, "test: drop the link")  # b redials once the ban is over
        await _until(lambda: a.session(b.node_id) not in (None, session))
        assert sa.announce() == 1  # a new connection to the same peer hears it again
        assert sa.statuses_sent == 4
        nursery.cancel_scope.cancel()


def test_keepalive_must_be_positive() -> None:
    net = MemoryNetwork(random.Random(1))
    with pytest.raises(ValueError, match="keepalive_every must be at least 1"):
        BlockSync(_service(net, 1, []), Heights(), name="x", keepalive_every=0)
