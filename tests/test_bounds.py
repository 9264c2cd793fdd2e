"""Bounded resources: collections a node keeps for its whole life stay bounded when driven
past their limits (docs/reliability.md, "Bounded resources and the 24-hour soak")."""

from __future__ import annotations

import hashlib
import random

import trio

from p2pakash import wire
from p2pakash.consensus.messages import Status
from p2pakash.consensus.sync import BlockSync
from p2pakash.consensus.types import Block, Commit
from p2pakash.crypto import NodeID, PrivateKey
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.messages import IDontWant, Subscribe
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSub, PubSubParams, Verdict
from p2pakash.gossip.service import GossipService
from p2pakash.market import ledger_market as lm
from p2pakash.market.validators import MarketValidators, ValidatorParams
from tests.gossip.netsim import node_ids
from tests.integration.test_chain_memory import chain_net, wait_for
from tests.ledger.helpers import USERS, Chain, new_ledger
from tests.market.helpers_market import CHAIN, order


async def test_chain_forgets_decoded_consensus_messages_of_its_own(
        autojump_clock: trio.abc.Clock) -> None:
    """Decoded proposals and votes once waited in a table until delivered, and the node's
    own stayed there up to INBOX_SIZE (10,000 per validator). Now an accepted message goes
    from the topic validator straight into the driver's inbox, which the driver drains:
    after 40 heights nothing is left waiting."""
    async with chain_net(4) as net:
        await wait_for(lambda: min(c.height for c in net.running()) >= 40, limit=300)
        for chain in net.running():
            assert not hasattr(chain, "_decoded")
            waiting = chain._inbox_send.statistics().current_buffer_used
            assert waiting < 20, (chain.name, waiting)


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


def test_pubsub_tables_stay_bounded_when_peers_flood_them() -> None:
    """Topics a peer claims, IDs it says IDONTWANT for, and the scores kept for departed
    peers each stop at their parameter however much a peer (or a stream of peers) sends."""
    params = PubSubParams(max_topics_per_peer=64, max_idontwant=50, max_retained=20)
    ps = PubSub(local_id=node_ids(1)[0], params=params, rng=random.Random(1))
    ps.subscribe(0.0, "t")
    peers = node_ids(301)[1:]
    flooder = peers[0]
    ps.add_peer(0.0, flooder, outbound=False)
    for i in range(1_000):
        ps.handle(0.0, flooder, Subscribe(topic=f"topic-{i}", subscribe=True))
        ps.handle(0.0, flooder, IDontWant(ids=tuple(
            hashlib.sha256(f"{i}/{j}".encode()).digest() for j in range(10))))
    assert len(ps._peers[flooder].topics) == 64
    assert len(ps._topic_peers) <= 64 + 1
    assert len(ps._peers[flooder].dontwant) == 50
    for n, peer in enumerate(peers[1:]):  # 299 peers join the mesh, earn a score and leave
        now = float(n)
        ps.add_peer(now, peer, outbound=True)
        ps.handle(now, peer, Subscribe(topic="t", subscribe=True))
        ps.heartbeat(now + 0.5)
        ps.remove_peer(now + 0.9, peer)
        assert len(ps._retained) <= 20
    assert len(ps._retained) == 20  # scores were kept, up to the bound


def test_market_validator_tables_evict_the_oldest_past_their_limits() -> None:
    """Orders remembered (for checking bids), message hashes seen (replay) and signers
    (rate limits, strikes) are LRU tables of ``max_orders``/``max_seen``/``max_signers``."""
    chain = Chain(new_ledger())
    view = lm.LedgerView(chain.ledger.store)
    params = ValidatorParams(max_orders=5, max_seen=8, max_signers=2, burst=1_000)
    mv = MarketValidators(chain_id=CHAIN, view=view, now_ms=lambda: 1_000_000, params=params)
    for dseq in range(1, 31):
        for owner in USERS[:4]:  # four signers
            data = wire.encode(order(owner, dseq=dseq, expiry_ms=1_060_000))
            assert mv.validate_order(NodeID("ab" * 20), "orders", data) is Verdict.ACCEPT
            assert len(mv.orders) <= 5 and len(mv._seen) <= 8 and len(mv._signers) <= 2
    assert len(mv.orders) == 5 and len(mv._accepted) == 5


def test_market_validators_forget_expired_orders() -> None:
    """Every node kept every order it relayed (up to 10,000 per node, the 24-hour soak's
    growth); orders and seen hashes past their expiry now leave the tables."""
    chain = Chain(new_ledger())
    now = [1_000_000]
    mv = MarketValidators(chain_id=CHAIN, view=lm.LedgerView(chain.ledger.store),
                          now_ms=lambda: now[0], params=ValidatorParams(burst=1_000))
    for dseq in range(1, 21):
        data = wire.encode(order(USERS[0], dseq=dseq, expiry_ms=now[0] + 60_000))
        assert mv.validate_order(NodeID("ab" * 20), "orders", data) is Verdict.ACCEPT
    assert len(mv.orders) == 20 and len(mv._seen) == 20
    now[0] += 60_000 + mv.params.skew_ms + 1  # all twenty expired
    data = wire.encode(order(USERS[0], dseq=99, expiry_ms=now[0] + 60_000))
    assert mv.validate_order(NodeID("ab" * 20), "orders", data) is Verdict.ACCEPT
    assert len(mv.orders) == len(mv._accepted) == len(mv._seen) == 1


def test_provider_keeps_a_bounded_table_of_order_message_ids() -> None:
    """The provider keeps each order's gossip message ID to send its answer back the
    order's way; a provider seeing orders for months keeps only the newest."""
    from p2pakash.provider.service import MAX_ORDER_ROUTES, ProviderService
    svc = ProviderService.__new__(ProviderService)  # the table alone: no node needed
    svc._order_msgs = {}
    for i in range(3 * MAX_ORDER_ROUTES):
        svc._remember_order(i.to_bytes(32, "big"), hashlib.sha256(bytes([i % 256])).digest())
        assert len(svc._order_msgs) <= MAX_ORDER_ROUTES
    assert (3 * MAX_ORDER_ROUTES - 1).to_bytes(32, "big") in svc._order_msgs
