"""JSON views of the tenant's deployments and leases: balances settled as of a height."""

from __future__ import annotations

from p2pakash.market import ledger_market as lm
from p2pakash.tenant import render
from tests.ledger.helpers import USERS, Chain, new_ledger
from tests.market.helpers_market import bid, create_provider, order

TENANT, PROVIDER = USERS[0], USERS[1]


def test_deployment_and_leases_show_the_settlement_at_height_without_writing() -> None:
    c = Chain(new_ledger())
    assert c.block(c.tx(PROVIDER, create_provider())).tx_results[0].ok
    o = order(TENANT, expiry_ms=10**12)
    b = bid(PROVIDER, o, price=1000, expiry_ms=10**12)
    assert c.block(c.tx(TENANT, lm.CreateLease(order=o, bid=b))).tx_results[0].ok
    store, h = c.ledger.store, c.ledger.height()
    dep = lm.get_deployment(store, o.body.deployment)
    assert dep is not None

    view = render.deployment_json(store, dep, h + 10)
    assert view["escrow"]["balance"] == o.body.deposit - 10_000
    assert view["escrow"]["transferred"] == 10_000 and view["escrow"]["settled_at"] == h + 10
    [lease] = view["leases"]
    assert lease["lease"] == "7.1.1" and lease["accrued"] == 10_000 and lease["state"] == "active"
    assert render.owner_leases(store, TENANT.address, h + 10) == [lease]
    stored = lm.get_deployment(store, o.body.deployment)
    assert stored is not None and stored.escrow.settled_at == h  # a preview: nothing written
