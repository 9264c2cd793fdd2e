"""Bounded resources: collections a node keeps for its whole life stay bounded when driven
past their limits (docs/reliability.md, "Bounded resources and the 24-hour soak")."""

from __future__ import annotations

import random

import trio

from p2pakash.consensus.messages import Status
from p2pakash.consensus.sync import BlockSync
from p2pakash.consensus.types import Block, Commit
from p2pakash.crypto import PrivateKey
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams
from p2pakash.gossip.service import GossipService
from tests.integration.test_chain_memory import chain_net, wait_for


async def test_chain_forgets_decoded_consensus_messages_of_its_own(
        autojump_clock: trio.abc.Clock) -> None:
    """The consensus topic validator keeps each decoded proposal or vote until the message is
    delivered; the node's own messages were delivered but never taken out, so the table grew
    by a few entries per height up to INBOX_SIZE (10,000 messages per validator)."""
    async with chain_net(4) as net:
        await wait_for(lambda: min(c.height for c in net.running()) >= 40, limit=300)
        for chain in net.running():
            assert len(chain._decoded) < 20, (chain.name, len(chain._decoded))


def test_block_sync_forgets_the_heights_of_departed_peers() -> None:
    """Every peer that ever sent a Status kept an entry in ``peer_heights``: a node meeting
    new peers for days grew it without end. Now it holds at most 2 x connected + 16."""
    key = PrivateKey.from_seed(bytes(32))
    gossip = GossipService(
        transport=MemoryTransport(MemoryNetwork(random.Random(1)), key, "bounds", "10.9.0.1:1"),
        rng=random.Random(1), peer_params=PeerParams(pex_interval=1e9),
        pubsub_params=PubSubParams())
    sync = BlockSync(gossip, _NoBlocks())
    for i in range(1_000):
        peer = PrivateKey.from_seed(i.to_bytes(32, "big")).node_id
        sync._on_status(peer, Status(height=i, base=0, genesis=b""))
        assert len(sync.peer_heights) <= 17
    assert sync.max_peer_height() == 0  # none of them is connected


class _NoBlocks:
    def committed_height(self) -> int:
        return 0

    def base_height(self) -> int:
        return 0

    def stored(self, height: int) -> tuple[Block | None, Commit | None]:
        return None, None

    def apply_synced(self, block: Block, commit: Commit) -> None:
        raise AssertionError("nothing to apply")
