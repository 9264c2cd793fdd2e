"""The bid engine: match -> reserve -> price -> bid or decline; reservations' lifetime."""

from __future__ import annotations

import hashlib

import pytest

from p2pakash.crypto import PrivateKey
from p2pakash.errors import PluginError
from p2pakash.market.orders import (
    BidBody,
    DeclineBody,
    DeclineReason,
    LeaseID,
    Order,
    make_order,
)
from p2pakash.market.sdl import parse_sdl
from p2pakash.market.sdl.resources import Attribute
from p2pakash.plugins.manager import PluginManager
from p2pakash.plugins.types import Decline as PriceDecline
from p2pakash.plugins.types import PluginConfig, PriceQuote
from p2pakash.provider.bidengine import BidEngine, EngineParams, PriceRequest
from p2pakash.provider.inventory import Capacity, Inventory
from tests.executor.sdl_texts import web_sdl

GI = 1024**3
CHAIN = "bid-chain"
TENANT = PrivateKey.from_seed(hashlib.sha256(b"bid-tenant").digest())
PROVIDER = PrivateKey.from_seed(hashlib.sha256(b"bid-provider").digest())
OTHER = PrivateKey.from_seed(hashlib.sha256(b"bid-other").digest())
PLACED = web_sdl().replace("    dc:\n      pricing:",
                           "    dc:\n      attributes:\n        region: us-west\n      pricing:")


def order(dseq: int = 1, text: str | None = None, expiry_ms: int = 100_000) -> Order:
    sdl = parse_sdl(text or web_sdl())
    return make_order(TENANT, CHAIN, dseq=dseq, groups=sdl.groups(),
                      manifest_hash=sdl.version_hash(), deposit=5_000_000, expiry_ms=expiry_ms)


def engine(cpu: int = 4000, attributes: tuple[Attribute, ...] = ()) -> BidEngine:
    inv = Inventory(Capacity(cpu_millis=cpu, memory_bytes=8 * GI,
                             storage={"ephemeral": 10 * GI}))
    return BidEngine(provider=PROVIDER.address, attributes=attributes, inventory=inv,
                     params=EngineParams(bid_ttl_ms=10_000, grace_ms=1_000))


def request(out: list[PriceRequest | DeclineBody]) -> PriceRequest:
    assert len(out) == 1 and isinstance(out[0], PriceRequest), out
    return out[0]


def test_matching_order_gets_a_bid_with_the_reserved_units() -> None:
    e, o = engine(), order()
    req = request(e.consider(o, 0, {}))
    assert req.context.owner == TENANT.address and req.group.name == "dc"
    assert len(e.inventory.held) == 1
    body = e.priced(req, PriceQuote(price_per_block=7), 5)
    assert isinstance(body, BidBody)
    assert (body.price, body.provider, body.order, body.order_digest) == (
        7, PROVIDER.address, o.order_id(1), o.digest)
    assert body.expiry_ms == 10_005
    assert [u.count for u in body.resources] == [u.count for u in o.body.groups[0].resources]
    assert e.consider(o, 6, {}) == []  # the same order group is considered once


def test_attribute_mismatch_declines_without_reserving() -> None:
    e = engine(attributes=(Attribute(key="region", value="eu-west"),))
    out = e.consider(order(text=PLACED), 0, {})
    assert len(out) == 1 and isinstance(out[0], DeclineBody)
    assert out[0].reason is DeclineReason.ATTRIBUTE_MISMATCH
    assert "region=us-west" in out[0].text
    assert e.inventory.held == {}
    ok = engine(attributes=(Attribute(key="region", value="us-west"),))
    request(ok.consider(order(text=PLACED), 0, {}))


def test_gpu_model_unavailable_declines() -> None:
    out = engine().consider(order(text=web_sdl(gpu=1)), 0, {})
    assert isinstance(out[0], DeclineBody)
    assert out[0].reason is DeclineReason.GPU_MODEL_UNAVAILABLE


def test_insufficient_capacity_declines() -> None:
    e = engine(cpu=300)  # the group needs 250m + 100m
    out = e.consider(order(), 0, {})
    assert isinstance(out[0], DeclineBody) and out[0].reason is DeclineReason.NO_CAPACITY
    assert "insufficient CPU" in out[0].text


def test_second_order_declined_until_reservation_expires() -> None:
    e = engine(cpu=400)
    first = request(e.consider(order(1), 0, {}))
    assert isinstance(e.priced(first, PriceQuote(price_per_block=5), 0), BidBody)
    out = e.consider(order(2), 1, {})
    assert isinstance(out[0], DeclineBody) and out[0].reason is DeclineReason.NO_CAPACITY
    assert e.expire(10_999) == []  # bid expiry + grace not yet passed
    assert e.expire(11_000) == [first.order_id]
    assert e.inventory.held == {} and e.pending == {}
    request(e.consider(order(3), 11_001, {}))


def test_reservation_released_when_another_provider_wins() -> None:
    e = engine(cpu=400)
    req = request(e.consider(order(1), 0, {}))
    e.priced(req, PriceQuote(price_per_block=5), 0)
    lost = req.order.order_id(1)
    other = LeaseID(owner=lost.owner, dseq=lost.dseq, gseq=1, oseq=1, provider=OTHER.address)
    assert e.lease_created(other) is None
    assert e.inventory.held == {}


def test_won_lease_keeps_the_resources_past_expiry() -> None:
    e = engine(cpu=400)
    req = request(e.consider(order(1), 0, {}))
    body = e.priced(req, PriceQuote(price_per_block=5), 0)
    assert isinstance(body, BidBody)
    o = body.order
    lid = LeaseID(owner=o.owner, dseq=o.dseq, gseq=o.gseq, oseq=o.oseq,
                  provider=PROVIDER.address)
    won = e.lease_created(lid)
    assert won is not None and won.gseq == 1 and won.order == req.order
    assert e.expire(1_000_000) == []
    assert set(e.inventory.held) == {lid}
    assert e.lease_closed(lid) and e.inventory.held == {}


def test_price_above_max_declines_and_releases() -> None:
    e = engine()
    req = request(e.consider(order(), 0, {}))
    body = e.priced(req, PriceQuote(price_per_block=111), 0)  # max is 100 + 10
    assert isinstance(body, DeclineBody) and body.reason is DeclineReason.PRICE_BELOW_COST
    assert e.inventory.held == {}
    req = request(e.consider(order(2), 0, {}))
    assert isinstance(e.priced(req, PriceQuote(price_per_block=110), 0), BidBody)


def test_pricing_plugin_decline_becomes_a_decline() -> None:
    e = engine()
    req = request(e.consider(order(), 0, {}))
    body = e.priced(req, PriceDecline(reason_code="below_cost", reason="too cheap"), 0)
    assert isinstance(body, DeclineBody)
    assert body.reason is DeclineReason.PRICE_BELOW_COST and "too cheap" in body.text


class Raising:
    def p2pakash_bid_price(self, group: object, resources: object, context: object) -> None:
        raise RuntimeError("pricing backend down")


def test_raising_pricing_plugin_declines() -> None:
    pm = PluginManager.load(PluginConfig(pricing="boom", gpu_probes=(), entry_points=False),
                            extra=[("boom", Raising())])
    e = engine()
    req = request(e.consider(order(), 0, {}))
    with pytest.raises(PluginError, match="plugin 'boom' raised in p2pakash_bid_price: "
                                          "RuntimeError: pricing backend down") as info:
        pm.bid_price(req.group, req.resources, req.context)
    body = e.priced(req, info.value, 0)
    assert isinstance(body, DeclineBody) and body.reason is DeclineReason.UNSPECIFIED
    assert body.text == "provider pricing failed"
    assert e.inventory.held == {}
    # the engine carries on: the next order is priced by linear and bid on
    linear = PluginManager.load(PluginConfig(gpu_probes=(), entry_points=False))
    req = request(e.consider(order(2), 0, {}))
    answer = linear.bid_price(req.group, req.resources, req.context)
    assert isinstance(answer, PriceQuote)
    assert isinstance(e.priced(req, answer, 0), BidBody)


def test_expired_order_is_ignored() -> None:
    assert engine().consider(order(expiry_ms=50), 50, {}) == []


def test_forget_bounds_the_considered_groups_but_keeps_pending_ones() -> None:
    e = engine(cpu=400)  # room for one reservation (350m): the second order is declined
    held, declined = order(1), order(2)
    request(e.consider(held, 0, {}))
    [decline] = e.consider(declined, 0, {})
    assert isinstance(decline, DeclineBody)
    e.forget(keep=2)  # not above the bound: nothing forgotten
    assert e.seen == {held.order_id(1), declined.order_id(1)}
    e.forget(keep=1)
    assert e.seen == {held.order_id(1)}
    assert e.consider(held, 1, {}) == []  # still pending: not considered again
    assert len(e.consider(declined, 1, {})) == 1  # forgotten: considered again
