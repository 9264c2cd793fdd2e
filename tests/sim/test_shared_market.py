"""SharedMarketValidators: the market validators of the simulator's nodes decode each message
once for the process and give the verdicts of MarketValidators."""

from __future__ import annotations

import attrs

from p2pakash import wire
from p2pakash.crypto import NodeID
from p2pakash.gossip.pubsub import Verdict
from p2pakash.market import ledger_market as lm
from p2pakash.market.validators import MarketValidators
from p2pakash.sim.market import SharedMarketValidators
from tests.ledger.helpers import USERS, Chain, new_ledger
from tests.market.helpers_market import CHAIN, bid, create_provider, order

TENANT, PROVIDER = USERS[0], USERS[1]
PEER = NodeID("ab" * 20)
NOW = 1_000_000


def test_shared_decode_gives_the_same_verdicts_and_one_object() -> None:
    c = Chain(new_ledger())
    assert c.block(c.tx(PROVIDER, create_provider())).tx_results[0].ok
    view = lm.LedgerView(c.ledger.store)
    memo = wire.DecodeMemo(16)
    nodes = [SharedMarketValidators(memo=memo, chain_id=CHAIN, view=view, now_ms=lambda: NOW)
             for _ in range(2)]
    plain = MarketValidators(chain_id=CHAIN, view=view, now_ms=lambda: NOW)
    o = order(TENANT, expiry_ms=NOW + 60_000)
    good = bid(PROVIDER, o, expiry_ms=NOW + 60_000)
    forged = attrs.evolve(good, signature=bytes(64))
    over = bid(PROVIDER, o, price=3002, expiry_ms=NOW + 60_000)
    cases = [("orders", wire.encode(o), Verdict.ACCEPT),
             ("bids", wire.encode(good), Verdict.ACCEPT),
             ("bids", wire.encode(forged), Verdict.REJECT),
             ("bids", wire.encode(over), Verdict.REJECT),  # over the known order's price
             ("bids", b"\xff not cbor", Verdict.REJECT),
             ("bids", wire.encode(o), Verdict.REJECT)]  # an order on the bids topic
    for topic, data, verdict in cases:
        for mv in (*nodes, plain):
            check = mv.validate_order if topic == "orders" else mv.validate_bid
            assert check(PEER, topic, data) is verdict, (topic, verdict)
    assert nodes[0].stats == nodes[1].stats == plain.stats
    assert nodes[0].stats["malformed"] == 2
    shared = memo.decode(wire.encode(good), type(good))
    assert nodes[0].orders[o.digest] is nodes[1].orders[o.digest]  # one decoded order
    assert shared == good
