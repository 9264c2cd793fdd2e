"""The on-chain market: providers, audits, CreateLease checks, escrow, closes, overdraw sweep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

from p2pakash import crypto
from p2pakash.ledger import BlockResult, TxResult
from p2pakash.market import ledger_market as lm
from p2pakash.market.orders import DeploymentID, LeaseID, Order, sign_bid, sign_order
from p2pakash.market.sdl.resources import Attribute
from tests.ledger.helpers import USERS, Chain, new_ledger, total_balances
from tests.market.helpers_market import (
    CPU_PROVIDER_ATTRS,
    GPU_PROVIDER_ATTRS,
    SDL_TEXT,
    bid,
    create_provider,
    order,
)

TENANT, PROVIDER, OTHER, AUDITOR = USERS
AKT = 1_000_000
START = 100 * AKT  # every USERS account's genesis balance


def _ok(result: BlockResult) -> TxResult:
    assert result.tx_results[0].ok, result.tx_results[0].log
    return result.tx_results[0]


def _fail(result: BlockResult, text: str) -> None:
    res = result.tx_results[0]
    assert not res.ok and text in res.log, res.log


@pytest.fixture
def chain() -> Chain:
    c = Chain(new_ledger())
    _ok(c.block(c.tx(PROVIDER, create_provider())))
    return c


def _lease(c: Chain, o: Order | None = None, **bid_kw: object) -> tuple[Order, LeaseID]:
    o = o or order(TENANT, expiry_ms=10**12)
    b = bid(PROVIDER, o, expiry_ms=10**12, **bid_kw)  # type: ignore[arg-type]
    _ok(c.block(c.tx(TENANT, lm.CreateLease(order=o, bid=b))))
    return o, b.lease_id


def _invariants(c: Chain) -> None:
    store = c.ledger.store
    assert c.ledger.supply() == total_balances(c.ledger)
    held = 0
    for dep in lm.owner_deployments(store, TENANT.address):
        held += dep.escrow.balance + sum(rec.payment.balance
                                         for rec in lm.deployment_leases(store, dep.id))
    assert c.ledger.account(lm.ESCROW).balance == held


# ---------------------------------------------------------------- providers


def test_provider_registration_locks_a_bond(chain: Chain) -> None:
    rec = lm.get_provider(chain.ledger.store, PROVIDER.address)
    assert rec is not None and rec.attributes == GPU_PROVIDER_ATTRS and rec.bond == 500_000
    assert chain.ledger.account(lm.BONDS).balance == 500_000
    _fail(chain.block(chain.tx(PROVIDER, create_provider())), "already exists")
    up = lm.UpdateProvider(host_uri="new:1", attributes=CPU_PROVIDER_ATTRS, bond=2 * AKT)
    _ok(chain.block(chain.tx(PROVIDER, up)))
    assert chain.ledger.account(lm.BONDS).balance == 2 * AKT
    _ok(chain.block(chain.tx(PROVIDER, attrs.evolve(up, bond=600_000))))
    assert chain.ledger.account(PROVIDER.address).balance == START - 600_000
    _fail(chain.block(chain.tx(OTHER, up)), "not found")


@pytest.mark.parametrize(("msg", "text"), [
    (create_provider(bond=1), "below the minimum 500000"),
    (create_provider(attributes=(Attribute(key="bad key", value="x"),)), "does not match regexp"),
    (create_provider(attributes=(Attribute(key="region*", value="x"),)), "does not match regexp"),
    (create_provider(attributes=(Attribute(key="ab", value="1"), Attribute(key="ab", value="2"))),
     "duplicate keys"),
    (attrs.evolve(create_provider(), host_uri="has space"), "host_uri"),
    (create_provider(bond=START + 1), "insufficient funds"),
])
def test_provider_refusals(msg: lm.CreateProvider, text: str) -> None:
    c = Chain(new_ledger())
    _fail(c.block(c.tx(OTHER, msg)), text)


def test_auditor_signs_and_deletes_attributes(chain: Chain) -> None:
    sign = lm.SignProviderAttributes(provider=PROVIDER.address,
                                     attributes=(Attribute(key="tier", value="1"),))
    _ok(chain.block(chain.tx(AUDITOR, sign)))
    _ok(chain.block(chain.tx(AUDITOR, attrs.evolve(sign, attributes=(
        Attribute(key="region", value="us-west"),)))))
    audits = lm.get_audits(chain.ledger.store, PROVIDER.address)
    assert audits == {AUDITOR.address: (Attribute(key="region", value="us-west"),
                                        Attribute(key="tier", value="1"))}
    _ok(chain.block(chain.tx(AUDITOR, lm.DeleteProviderAttributes(
        provider=PROVIDER.address, keys=("tier",)))))
    assert lm.get_audits(chain.ledger.store, PROVIDER.address)[AUDITOR.address] == (
        Attribute(key="region", value="us-west"),)
    _ok(chain.block(chain.tx(AUDITOR, lm.DeleteProviderAttributes(provider=PROVIDER.address))))
    assert lm.get_audits(chain.ledger.store, PROVIDER.address) == {}
    _fail(chain.block(chain.tx(AUDITOR, attrs.evolve(sign, provider=OTHER.address))),
          "not found")


# ---------------------------------------------------------------- leases


def test_create_lease_moves_the_deposit_and_activates(chain: Chain) -> None:
    o = order(TENANT, expiry_ms=10**12)
    b = bid(PROVIDER, o, price=2500, expiry_ms=10**12)
    tx = chain.tx(TENANT, lm.CreateLease(order=o, bid=b))
    chain.ledger.check_tx(tx)  # the mempool check passes too
    result = chain.block(tx)
    events = {e.type: e for e in _ok(result).events}
    assert events["lease_created"].get("price") == "2500"
    assert events["deployment_created"].get("deposit") == str(o.body.deposit)
    rec = lm.get_lease(chain.ledger.store, b.lease_id)
    assert rec is not None and rec.state is lm.LeaseState.ACTIVE and rec.price == 2500
    assert rec.order_digest == o.digest
    dep = lm.get_deployment(chain.ledger.store, o.body.deployment)
    assert dep is not None and dep.manifest_hash == o.body.manifest_hash
    assert dep.escrow.balance == o.body.deposit
    assert chain.ledger.account(TENANT.address).balance == START - o.body.deposit
    assert [r.id for r in lm.provider_leases(chain.ledger.store, PROVIDER.address)] == [
        b.lease_id]
    _invariants(chain)


def _resign_order(o: Order, **changes: Any) -> Order:
    return sign_order(TENANT, "ledger-test", attrs.evolve(o.body, **changes))


OTHER_PROVIDER = crypto.PrivateKey.from_seed(b"\x77" * 32)
Case = Callable[[Order], tuple[crypto.PrivateKey, lm.CreateLease]]


def _pair(o: Order, **bid_kw: object) -> lm.CreateLease:
    bid_kw.setdefault("expiry_ms", 10**12)
    return lm.CreateLease(order=o, bid=bid(PROVIDER, o, **bid_kw))  # type: ignore[arg-type]


REFUSALS: list[tuple[str, Case, str]] = [
    ("not the owner", lambda o: (OTHER, _pair(o)), "only the order's owner"),
    ("order for another chain", lambda o: (TENANT, lm.CreateLease(
        order=order(TENANT, chain="x", expiry_ms=10**12),
        bid=bid(PROVIDER, order(TENANT, chain="x", expiry_ms=10**12), expiry_ms=10**12))),
     "order signature"),
    ("bid forged", lambda o: (TENANT, attrs.evolve(_pair(o), bid=attrs.evolve(
        _pair(o).bid, signature=bytes(64)))), "bid signature"),
    ("bid for another order", lambda o: (TENANT, lm.CreateLease(
        order=_resign_order(o, deposit=o.body.deposit + 1), bid=_pair(o).bid)),
     "not this order"),
    ("bid expired", lambda o: (TENANT, _pair(o, expiry_ms=1)), "bid expired"),
    ("over price", lambda o: (TENANT, _pair(o, price=3001)), "exceeds the group's max price 3000"),
    ("offer mismatch", lambda o: (TENANT, _pair(o, resources=())), "1..20 resource units"),
    ("unregistered provider", lambda o: (TENANT, lm.CreateLease(order=o, bid=sign_bid(
        OTHER_PROVIDER, "ledger-test", attrs.evolve(
            bid(PROVIDER, o, expiry_ms=10**12).body, provider=OTHER_PROVIDER.address)))),
     "is not registered"),
    ("deposit below min", lambda o: (TENANT, _pair(_resign_order(o, deposit=499_999))),
     "below the minimum 500000"),
    ("deposit unaffordable", lambda o: (TENANT, _pair(_resign_order(o, deposit=START + 1))),
     "insufficient funds"),
]


@pytest.mark.parametrize(("name", "case", "text"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_create_lease_refusals(chain: Chain, name: str, case: Case, text: str) -> None:
    o = order(TENANT, expiry_ms=10**12)
    sender, msg = case(o)
    _fail(chain.block(chain.tx(sender, msg)), text)
    assert chain.ledger.account(TENANT.address).balance == START
    _invariants(chain)


def test_provider_must_match_placement_and_audits(chain: Chain) -> None:
    up = lm.UpdateProvider(host_uri="p:1", attributes=CPU_PROVIDER_ATTRS, bond=500_000)
    _ok(chain.block(chain.tx(PROVIDER, up)))
    o = order(TENANT, expiry_ms=10**12)
    _fail(chain.block(chain.tx(TENANT, _pair(o))), "lacks placement attributes region=us-west")
    _ok(chain.block(chain.tx(PROVIDER, attrs.evolve(up, attributes=GPU_PROVIDER_ATTRS))))
    audited = SDL_TEXT.replace("attributes: {region: us-west}",
                               "attributes: {region: us-west}\n      signedBy: {anyOf: ["
                               f"{AUDITOR.address}]}}")
    o = order(TENANT, expiry_ms=10**12, text=audited)
    _fail(chain.block(chain.tx(TENANT, _pair(o))), "not signed by any of")
    _ok(chain.block(chain.tx(AUDITOR, lm.SignProviderAttributes(
        provider=PROVIDER.address, attributes=(Attribute(key="region", value="us-west"),)))))
    _ok(chain.block(chain.tx(TENANT, _pair(o))))


def test_one_active_lease_per_group_and_one_lease_per_order(chain: Chain) -> None:
    o, lid = _lease(chain)
    _fail(chain.block(chain.tx(TENANT, _pair(o))), "already had a lease")
    o2 = _resign_order(o, oseq=2)
    _fail(chain.block(chain.tx(TENANT, _pair(o2))), "already has an active lease")
    _ok(chain.block(chain.tx(TENANT, lm.CloseLease(lease=lid))))
    _fail(chain.block(chain.tx(TENANT, _pair(o))), "already had a lease")
    balance = chain.ledger.account(TENANT.address).balance
    _ok(chain.block(chain.tx(TENANT, _pair(o2))))  # re-ordered: same escrow, no new deposit
    assert chain.ledger.account(TENANT.address).balance == balance
    o3 = _resign_order(o, oseq=3, manifest_hash=b"\x01" * 32)
    _ok(chain.block(chain.tx(TENANT, lm.CloseLease(lease=attrs.evolve(lid, oseq=2)))))
    _fail(chain.block(chain.tx(TENANT, _pair(o3))), "manifest hash differs")
    _invariants(chain)


def test_withdraw_pays_rate_times_blocks(chain: Chain) -> None:
    _, lid = _lease(chain, price=1000)
    created = chain.ledger.height()
    for _ in range(4):
        chain.block()
    _fail(chain.block(chain.tx(TENANT, lm.Withdraw(lease=lid))), "only the lease's provider")
    before = chain.ledger.account(PROVIDER.address).balance
    result = chain.block(chain.tx(PROVIDER, lm.Withdraw(lease=lid)))
    paid = (chain.ledger.height() - created) * 1000
    assert [e.get("amount") for e in _ok(result).events if e.type == "withdraw"] == [str(paid)]
    assert chain.ledger.account(PROVIDER.address).balance == before + paid
    _invariants(chain)


def test_close_lease_reasons_and_payout(chain: Chain) -> None:
    _, lid = _lease(chain, price=1000)
    created = chain.ledger.height()
    chain.block()
    _fail(chain.block(chain.tx(TENANT, lm.CloseLease(lease=lid, reason=lm.LeaseCloseReason
                                                     .UNSTABLE))), "reason owner")
    _fail(chain.block(chain.tx(PROVIDER, lm.CloseLease(lease=lid))), "may not close")
    _fail(chain.block(chain.tx(PROVIDER, lm.CloseLease(
        lease=lid, reason=lm.LeaseCloseReason.INSUFFICIENT_FUNDS))), "may not close")
    _fail(chain.block(chain.tx(OTHER, lm.CloseLease(lease=lid))), "tenant or the provider")
    result = chain.block(chain.tx(PROVIDER, lm.CloseLease(
        lease=lid, reason=lm.LeaseCloseReason.MANIFEST_TIMEOUT)))
    closed = [e for e in _ok(result).events if e.type == "lease_closed"]
    paid = (chain.ledger.height() - created) * 1000
    assert closed[0].get("reason") == "10003" and closed[0].get("paid") == str(paid)
    rec = lm.get_lease(chain.ledger.store, lid)
    assert rec is not None and rec.state is lm.LeaseState.CLOSED
    assert rec.reason is lm.LeaseCloseReason.MANIFEST_TIMEOUT
    _fail(chain.block(chain.tx(TENANT, lm.CloseLease(lease=lid))), "not active (closed)")
    _fail(chain.block(chain.tx(PROVIDER, lm.Withdraw(lease=lid))), "not active")
    dep = lm.get_deployment(chain.ledger.store, lid.deployment)
    assert dep is not None and dep.state is lm.DeploymentState.ACTIVE and dep.due_height == 0
    _invariants(chain)


def test_close_deployment_refunds_and_closes_leases(chain: Chain) -> None:
    o, _ = _lease(chain, price=1000)
    created = chain.ledger.height()
    chain.block()
    _fail(chain.block(chain.tx(OTHER, lm.CloseDeployment(deployment=o.body.deployment))),
          "only the owner")
    result = chain.block(chain.tx(TENANT, lm.CloseDeployment(deployment=o.body.deployment)))
    events = _ok(result).events
    assert [e.get("reason") for e in events if e.type == "lease_closed"] == ["1"]
    spent = (chain.ledger.height() - created) * 1000
    assert chain.ledger.account(TENANT.address).balance == START - spent
    assert chain.ledger.account(lm.ESCROW).balance == 0
    _fail(chain.block(chain.tx(TENANT, lm.Deposit(deployment=o.body.deployment, amount=5))),
          "is closed")
    _fail(chain.block(chain.tx(TENANT, _pair(_resign_order(o, oseq=2)))), "is closed")
    _invariants(chain)


def test_overdraw_is_found_by_the_end_blocker_at_its_block(chain: Chain) -> None:
    two_groups = SDL_TEXT.replace(
        "  placement:\n    dc:\n", "  placement:\n    dc2:\n      attributes: {region: us-west}\n"
        "      pricing:\n        gpu1: {denom: uakt, amount: 1500}\n    dc:\n").replace(
        "    dc: {profile: gpu1, count: 2}", "    dc: {profile: gpu1, count: 2}\n"
        "    dc2: {profile: gpu1, count: 1}")
    o = order(TENANT, deposit=500_000, expiry_ms=10**12, text=two_groups)
    assert [g.name for g in o.body.groups] == ["dc", "dc2"]
    _lease(chain, o, price=3000, gseq=1)
    _lease(chain, o, price=1000, gseq=2)  # same deployment: no second deposit
    assert chain.ledger.account(lm.ESCROW).balance == 500_000
    dep = lm.get_deployment(chain.ledger.store, o.body.deployment)
    assert dep is not None
    due = dep.escrow.settled_at + dep.escrow.balance // 4000 + 1
    assert dep.due_height == due
    while chain.ledger.height() < due - 1:
        assert not [e for e in chain.block().events if e.type == "lease_closed"]
    before = chain.ledger.account(PROVIDER.address).balance
    result = chain.block()
    assert chain.ledger.height() == due
    closed = [e for e in result.events if e.type == "lease_closed"]
    assert [e.get("reason") for e in closed] == ["20000", "20000"]
    assert {e.type for e in result.events} >= {"escrow_overdrawn", "deployment_closed"}
    assert chain.ledger.account(PROVIDER.address).balance - before == 500_000  # all of it
    assert chain.ledger.account(lm.ESCROW).balance == 0
    for rec in lm.deployment_leases(chain.ledger.store, o.body.deployment):
        assert rec.state is lm.LeaseState.INSUFFICIENT_FUNDS and rec.closed_on == due
    assert sum(rec.payment.withdrawn for rec in lm.deployment_leases(
        chain.ledger.store, o.body.deployment)) == 500_000
    dep = lm.get_deployment(chain.ledger.store, o.body.deployment)
    assert dep is not None and dep.state is lm.DeploymentState.CLOSED
    assert list(chain.ledger.store.scan(lm.P_DUE, DeploymentID)) == []
    _invariants(chain)


def test_deposit_moves_the_due_height_and_anyone_may_deposit(chain: Chain) -> None:
    o, _ = _lease(chain, price=100_000 // 40)  # 2500/block; deposit 5 AKT lasts 2000 blocks
    dep = lm.get_deployment(chain.ledger.store, o.body.deployment)
    assert dep is not None
    _fail(chain.block(chain.tx(OTHER, lm.Deposit(deployment=o.body.deployment, amount=0))),
          "positive")
    _ok(chain.block(chain.tx(OTHER, lm.Deposit(deployment=o.body.deployment, amount=25_000))))
    after = lm.get_deployment(chain.ledger.store, o.body.deployment)
    assert after is not None and after.due_height == dep.due_height + 10
    assert len(list(chain.ledger.store.scan(lm.P_DUE, DeploymentID))) == 1
    _fail(chain.block(chain.tx(OTHER, lm.Deposit(deployment=attrs.evolve(
        o.body.deployment, dseq=99), amount=5))), "not found")
    _invariants(chain)


def test_same_blocks_give_the_same_app_hash() -> None:
    hashes = []
    for _ in range(2):
        c = Chain(new_ledger())
        _ok(c.block(c.tx(PROVIDER, create_provider())))
        _lease(c)
        hashes.append(c.block().app_hash)
    assert hashes[0] == hashes[1]


def test_preview_settles_without_writing(chain: Chain) -> None:
    o, _ = _lease(chain, price=1000)
    h = chain.ledger.height()
    s = lm.preview(chain.ledger.store, o.body.deployment, h + 10)
    assert s is not None and s.payments[0].balance == 10_000 and not s.overdrawn
    dep = lm.get_deployment(chain.ledger.store, o.body.deployment)
    assert dep is not None and dep.escrow.settled_at == h
    view = lm.LedgerView(chain.ledger.store)
    assert view.balance(TENANT.address) == START - o.body.deposit
    assert view.provider(PROVIDER.address) is not None and view.provider(OTHER.address) is None


@pytest.mark.parametrize("dseq", [0, -1])
def test_bad_sequence_numbers_are_refused_not_crashes(chain: Chain, dseq: int) -> None:
    o, lid = _lease(chain)
    bad_dep = attrs.evolve(o.body.deployment, dseq=dseq)
    _fail(chain.block(chain.tx(TENANT, lm.Deposit(deployment=bad_dep, amount=5))),
          "sequence numbers")
    _fail(chain.block(chain.tx(TENANT, lm.CloseDeployment(deployment=bad_dep))),
          "sequence numbers")
    for msg in (lm.CloseLease(lease=attrs.evolve(lid, gseq=dseq)),
                lm.Withdraw(lease=attrs.evolve(lid, oseq=dseq))):
        _fail(chain.block(chain.tx(TENANT, msg)), "sequence numbers")
