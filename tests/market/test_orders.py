"""Orders, bids and declines: IDs, wire round trips, signatures, stateless rules, prices."""

from __future__ import annotations

import attrs
import pytest

from p2pakash import wire
from p2pakash.errors import DecodeError, InvalidSignature
from p2pakash.market import orders as om
from p2pakash.market.orders import (
    ATTO,
    Bid,
    DeclineBody,
    DeclineReason,
    InvalidMarketMessage,
    LeaseID,
    Order,
    OrderGroup,
    WirePrice,
    check_bid,
    check_order,
    sign_decline,
    sign_order,
    verify,
)
from p2pakash.market.sdl.resources import Price
from tests.market.helpers_market import CHAIN, SDL_TEXT, bid, key, order, sdl

TENANT, PROVIDER = key(10), key(11)


def test_ids_nest_like_akash() -> None:
    o = order(TENANT)
    oid = o.order_id(1)
    assert (oid.owner, oid.dseq, oid.gseq, oid.oseq) == (TENANT.address, 7, 1, 1)
    b = bid(PROVIDER, o)
    lid = b.lease_id
    assert lid.order == oid and lid.group == oid.group and lid.deployment == o.body.deployment
    assert str(lid) == f"{TENANT.address}/7/1/1/{PROVIDER.address}"
    assert om.BidID is LeaseID


def test_wire_tags_stay_in_the_market_range() -> None:
    for cls in (om.DeploymentID, om.GroupID, om.OrderID, LeaseID, om.OrderBody, Order,
                om.OfferedUnit, om.BidBody, Bid, DeclineBody, om.Decline, WirePrice,
                om.OrderUnit, OrderGroup):
        assert wire.tag_of(cls) in wire.TAG_RANGES["market"]


def test_order_bid_decline_round_trip() -> None:
    o = order(TENANT)
    b = bid(PROVIDER, o)
    d = sign_decline(PROVIDER, CHAIN, DeclineBody(
        order=o.order_id(1), order_digest=o.digest, provider=PROVIDER.address,
        reason=DeclineReason.NO_CAPACITY, text="no free h100", expiry_ms=5))
    for msg in (o, b, d):
        assert wire.decode(wire.encode(msg), type(msg)) == msg
        verify(msg, CHAIN)


def test_order_groups_convert_exactly_to_sdl_group_specs() -> None:
    specs = sdl().groups()
    o = order(TENANT)
    assert tuple(g.to_spec() for g in o.body.groups) == tuple(specs)
    decoded = wire.decode(wire.encode(o), Order)
    assert decoded.body.groups[0].to_spec() == specs[0]


def test_group_max_price_is_unit_price_times_count() -> None:
    group = order(TENANT).body.groups[0]
    assert group.resources[0].count == 2
    assert group.max_price_atto == 2 * 1500 * ATTO
    assert group.max_price == 3000
    half = WirePrice.from_price(Price.parse("uakt", "0.75"))
    assert (half.whole, half.frac_atto) == (0, 75 * 10**16)
    frac = attrs.evolve(group, resources=(attrs.evolve(group.resources[0], price=half),))
    assert frac.max_price_atto == 15 * 10**17 and frac.max_price == 1  # floor of 1.5


def test_wire_price_fraction_out_of_range_is_a_decode_error() -> None:
    good = wire.encode(WirePrice(denom="uakt", whole=1, frac_atto=ATTO - 1))
    bad = good.replace((ATTO - 1).to_bytes(8, "big"), ATTO.to_bytes(8, "big"))
    assert bad != good
    with pytest.raises(DecodeError, match="frac_atto"):
        wire.decode(bad, WirePrice)


def test_signature_binds_chain_kind_and_signer() -> None:
    o = order(TENANT)
    with pytest.raises(InvalidSignature):
        verify(o, "other-chain")
    stranger = sign_order(PROVIDER, CHAIN, o.body)  # valid signature, wrong owner
    with pytest.raises(InvalidSignature, match="not"):
        verify(stranger, CHAIN)
    tampered = attrs.evolve(o, body=attrs.evolve(o.body, deposit=o.body.deposit + 1))
    with pytest.raises(InvalidSignature):
        verify(tampered, CHAIN)
    b = bid(PROVIDER, o)
    as_order_kind = attrs.evolve(b, signature=PROVIDER.sign("order", CHAIN, wire.encode(b.body)))
    with pytest.raises(InvalidSignature):
        verify(as_order_kind, CHAIN)


@pytest.mark.parametrize(("change", "message"), [
    ({"manifest_hash": b"x" * 31}, "manifest_hash must be 32 bytes"),
    ({"deposit": 0}, "deposit must be at least 1"),
    ({"oseq": 0}, "oseq must be at least 1"),
    ({"groups": ()}, "1..20 groups"),
    ({"expiry_ms": 0}, "expiry_ms"),
])
def test_order_rules(change: dict[str, object], message: str) -> None:
    body = attrs.evolve(order(TENANT).body, **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidMarketMessage, match=message):
        check_order(body)


def test_order_refuses_other_denominations_and_duplicate_groups() -> None:
    with pytest.raises(InvalidMarketMessage, match="denom 'uact' is not supported"):
        order(TENANT, text=SDL_TEXT.replace("denom: uakt", "denom: uact"))
    body = order(TENANT).body
    with pytest.raises(InvalidMarketMessage, match="unique"):
        check_order(attrs.evolve(body, groups=body.groups * 2))
    bad_owner = attrs.evolve(body, deployment=attrs.evolve(body.deployment, owner="cosmos1xyz"))
    with pytest.raises(InvalidMarketMessage, match="order owner"):
        check_order(bad_owner)


def test_order_reuses_akash_group_validation() -> None:
    body = order(TENANT).body
    group = body.groups[0]
    unit = group.resources[0]
    huge = attrs.evolve(unit, resources=attrs.evolve(unit.resources, cpu_millis=10**9))
    with pytest.raises(InvalidMarketMessage, match="invalid unit CPU"):
        check_order(attrs.evolve(body, groups=(attrs.evolve(group, resources=(huge,)),)))


def test_order_below_one_uakt_per_block_is_refused() -> None:
    with pytest.raises(InvalidMarketMessage, match="max price below 1 uakt"):
        order(TENANT, text=SDL_TEXT.replace("amount: 1500", "amount: 0.1"))


def test_bid_rules() -> None:
    o = order(TENANT)
    b = bid(PROVIDER, o)
    check_bid(b.body)
    for change, message in (({"price": 0}, "price"), ({"resources": ()}, "1..20"),
                            ({"order_digest": b""}, "order_digest"),
                            ({"provider": "akash1bad"}, "bid provider")):
        with pytest.raises(InvalidMarketMessage, match=message):
            check_bid(attrs.evolve(b.body, **change))


def test_group_lookup_names_the_missing_group() -> None:
    with pytest.raises(InvalidMarketMessage, match="has no group 2"):
        order(TENANT).group(2)


def test_decline_rules() -> None:
    o = order(TENANT)
    body = DeclineBody(order=o.order_id(1), order_digest=o.digest, provider=PROVIDER.address,
                       reason=DeclineReason.GPU_MODEL_UNAVAILABLE, text="x" * 257, expiry_ms=1)
    with pytest.raises(InvalidMarketMessage, match="one line"):
        om.check_decline(body)
    om.check_decline(attrs.evolve(body, text="no a100 here"))


def test_digest_is_computed_once_and_stays_off_the_wire(
        monkeypatch: pytest.MonkeyPatch) -> None:
    o = order(TENANT)
    data = wire.encode(o)
    fresh = wire.decode(data, Order)
    calls: list[object] = []
    real = wire.encode

    def counting(obj: object) -> bytes:
        calls.append(obj)
        return real(obj)

    monkeypatch.setattr(wire, "encode", counting)
    assert fresh.digest == fresh.digest == wire.digest(o.body)
    assert fresh.body_bytes == real(o.body)
    verify(fresh, CHAIN)
    # the body is encoded once per object, however often digest, body_bytes or verify read it
    assert calls.count(fresh.body) == 1 + 1  # + the wire.digest(o.body) reference above
    calls.clear()
    # the cached values are not fields: same bytes, equal and same hash as before reading them
    assert [f.name for f in attrs.fields(Order)] == ["body", "pubkey", "signature"]
    assert real(fresh) == data
    twin = wire.decode(data, Order)
    assert twin == fresh and hash(twin) == hash(fresh)
    assert wire.decode(real(fresh), Order).digest == fresh.digest
    b = bid(PROVIDER, o)
    calls.clear()
    assert b.digest == b.digest == wire.digest(b.body)
    verify(b, CHAIN)
    assert calls.count(b.body) == 1 + 1
    assert wire.decode(real(b), Bid) == b
    # evolve builds a new object with its own digest
    other = attrs.evolve(fresh, body=attrs.evolve(fresh.body, oseq=2))
    assert other.digest != fresh.digest and other.digest == wire.digest(other.body)
