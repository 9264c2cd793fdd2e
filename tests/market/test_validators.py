"""Gossip validators for orders, bids and declines, over a real ledger view."""

from __future__ import annotations

import random

import attrs
import pytest

from p2pakash import wire
from p2pakash.crypto import NodeID
from p2pakash.gossip.pubsub import PubSub, PubSubParams, Verdict
from p2pakash.market import ledger_market as lm
from p2pakash.market.orders import (
    DeclineBody,
    DeclineReason,
    Order,
    sign_bid,
    sign_decline,
    sign_order,
)
from p2pakash.market.validators import MarketValidators, ValidatorParams
from tests.ledger.helpers import USERS, Chain, new_ledger
from tests.market.helpers_market import CHAIN, SDL_TEXT, bid, create_provider, order

TENANT, PROVIDER, POOR = USERS[0], USERS[1], USERS[2]
PEER = NodeID("ab" * 20)
NOW = 1_000_000
EXPIRY = NOW + 60_000


class Clock:
    def __init__(self) -> None:
        self.ms = NOW

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def mv(clock: Clock) -> MarketValidators:
    c = Chain(new_ledger())
    result = c.block(c.tx(PROVIDER, create_provider()))
    assert result.tx_results[0].ok
    return MarketValidators(chain_id=CHAIN, view=lm.LedgerView(c.ledger.store), now_ms=clock,
                            params=ValidatorParams(burst=5, rate_per_s=1, strikes_to_ban=3,
                                                   ban_ms=10_000))


def _order(**kw: object) -> Order:
    kw.setdefault("expiry_ms", EXPIRY)
    return order(TENANT, **kw)  # type: ignore[arg-type]


def _send_order(mv: MarketValidators, o: Order) -> Verdict:
    return mv.validate_order(PEER, "orders", wire.encode(o))


def test_valid_order_is_accepted_and_remembered(mv: MarketValidators) -> None:
    o = _order()
    assert _send_order(mv, o) is Verdict.ACCEPT
    assert mv.orders[o.digest] == o
    assert _send_order(mv, o) is Verdict.IGNORE  # replayed
    assert mv.stats == {"accepted": 1, "replayed": 1}


def test_accepted_order_hands_over_the_decoded_order_for_exactly_those_bytes(
        mv: MarketValidators) -> None:
    o = _order()
    data = wire.encode(o)
    assert mv.accepted_order(data) is None  # not validated yet
    assert mv.validate_order(PEER, "orders", data) is Verdict.ACCEPT
    got = mv.accepted_order(data)
    assert got == o and got is mv.orders[o.digest]
    forged = wire.encode(attrs.evolve(o, signature=bytes(64)))
    assert mv.validate_order(PEER, "orders", forged) is Verdict.REJECT
    assert mv.accepted_order(forged) is None  # refused bytes are never handed over
    unfunded = wire.encode(_order(deposit=200 * 1_000_000, dseq=9))
    assert mv.validate_order(PEER, "orders", unfunded) is Verdict.IGNORE
    assert mv.accepted_order(unfunded) is None


def test_malformed_and_forged_orders_are_rejected(mv: MarketValidators) -> None:
    o = _order()
    assert mv.validate_order(PEER, "orders", b"\x00garbage") is Verdict.REJECT
    assert mv.validate_order(PEER, "orders", wire.encode(o.body)) is Verdict.REJECT  # unsigned
    forged = attrs.evolve(o, signature=bytes(64))
    assert _send_order(mv, forged) is Verdict.REJECT
    bad = sign_order(TENANT, CHAIN, attrs.evolve(o.body, deposit=0))
    assert _send_order(mv, bad) is Verdict.REJECT
    other_chain = order(TENANT, chain="other", expiry_ms=EXPIRY)
    assert _send_order(mv, other_chain) is Verdict.REJECT
    assert mv.stats["bad_signature"] == 2 and mv.stats["malformed"] == 3


def test_expiry_window(mv: MarketValidators, clock: Clock) -> None:
    assert _send_order(mv, _order(expiry_ms=NOW - 1)) is Verdict.IGNORE  # just expired
    assert _send_order(mv, _order(expiry_ms=NOW - 6_000)) is Verdict.REJECT  # long past
    assert _send_order(mv, _order(expiry_ms=NOW + 606_000)) is Verdict.REJECT  # too far ahead
    assert _send_order(mv, _order(expiry_ms=NOW + 600_000)) is Verdict.ACCEPT


def test_unfunded_tenant_is_ignored_and_struck_then_banned(mv: MarketValidators,
                                                           clock: Clock) -> None:
    rich = _order(deposit=200 * 1_000_000)  # more than the 100 AKT the tenant holds
    for dseq in range(1, 4):
        o = sign_order(TENANT, CHAIN, attrs.evolve(rich.body, deployment=attrs.evolve(
            rich.body.deployment, dseq=dseq)))
        assert _send_order(mv, o) is Verdict.IGNORE
    assert mv.banned(TENANT.address) and mv.stats["unfunded"] == 3
    assert _send_order(mv, _order()) is Verdict.IGNORE  # banned, even when funded
    clock.ms += 10_001
    assert not mv.banned(TENANT.address)
    assert _send_order(mv, _order()) is Verdict.ACCEPT


def test_rate_limit_per_signer(mv: MarketValidators, clock: Clock) -> None:
    verdicts = [_send_order(mv, _order(dseq=d)) for d in range(1, 8)]
    assert verdicts == [Verdict.ACCEPT] * 5 + [Verdict.IGNORE] * 2
    assert mv.strikes(TENANT.address) == 2
    clock.ms += 1_000  # one more token
    assert _send_order(mv, _order(dseq=20)) is Verdict.ACCEPT
    # another signer has its own budget
    assert _send_order(mv, order(POOR, deposit=1, expiry_ms=EXPIRY)) is Verdict.ACCEPT


def _send_bid(mv: MarketValidators, b: object) -> Verdict:
    return mv.validate_bid(PEER, "bids", wire.encode(b))


def test_bids(mv: MarketValidators) -> None:
    o = _order()
    b = bid(PROVIDER, o, expiry_ms=EXPIRY)
    assert _send_bid(mv, b) is Verdict.ACCEPT  # order unknown: price not checkable
    over = bid(PROVIDER, o, price=3001, expiry_ms=EXPIRY)
    assert _send_bid(mv, over) is Verdict.ACCEPT
    assert _send_order(mv, o) is Verdict.ACCEPT
    over2 = bid(PROVIDER, o, price=3002, expiry_ms=EXPIRY)
    assert _send_bid(mv, over2) is Verdict.REJECT
    assert mv.stats["over_price"] == 1 and mv.strikes(PROVIDER.address) == 1
    wrong_group = bid(PROVIDER, o, expiry_ms=EXPIRY, order=o.order_id(2))
    assert _send_bid(mv, wrong_group) is Verdict.REJECT
    short = bid(PROVIDER, o, price=10, expiry_ms=EXPIRY, resources=())
    assert _send_bid(mv, short) is Verdict.REJECT  # stateless: no units offered
    unregistered = sign_bid(POOR, CHAIN, attrs.evolve(b.body, provider=POOR.address))
    assert _send_bid(mv, unregistered) is Verdict.IGNORE
    assert _send_bid(mv, attrs.evolve(b, signature=bytes(64))) is Verdict.REJECT


def test_bid_offer_must_match_a_known_order(mv: MarketValidators) -> None:
    o = _order()
    assert _send_order(mv, o) is Verdict.ACCEPT
    b = bid(PROVIDER, o, price=5, expiry_ms=EXPIRY)
    unit = b.body.resources[0]
    wrong = attrs.evolve(unit, count=1)
    bad = sign_bid(PROVIDER, CHAIN, attrs.evolve(b.body, resources=(wrong,)))
    assert _send_bid(mv, bad) is Verdict.REJECT and mv.stats["offer_mismatch"] == 1


def test_declines(mv: MarketValidators) -> None:
    o = _order(text=SDL_TEXT)
    body = DeclineBody(order=o.order_id(1), order_digest=o.digest, provider=PROVIDER.address,
                       reason=DeclineReason.PRICE_BELOW_COST, text="costs 4000/block",
                       expiry_ms=EXPIRY)
    d = sign_decline(PROVIDER, CHAIN, body)
    assert mv.validate_decline(PEER, "declines", wire.encode(d)) is Verdict.ACCEPT
    assert _send_order(mv, o) is Verdict.ACCEPT
    wrong = sign_decline(PROVIDER, CHAIN, attrs.evolve(body, order=o.order_id(3)))
    assert mv.validate_decline(PEER, "declines", wire.encode(wrong)) is Verdict.REJECT
    stranger = sign_decline(POOR, CHAIN, attrs.evolve(body, provider=POOR.address))
    assert mv.validate_decline(PEER, "declines", wire.encode(stranger)) is Verdict.IGNORE


def test_install_sets_the_three_topic_validators(mv: MarketValidators) -> None:
    pubsub = PubSub(local_id=NodeID("cd" * 20), params=PubSubParams(), rng=random.Random(1))
    mv.install(pubsub)
    assert pubsub._validate(PEER, "orders", b"junk") is Verdict.REJECT
    assert pubsub._validate(PEER, "bids", wire.encode(_order())) is Verdict.REJECT
    assert pubsub._validate(PEER, "declines", wire.encode(_order())) is Verdict.REJECT
