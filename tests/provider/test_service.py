"""ProviderService in one process: 4 validators, a provider node (fake executor), a tenant.

order -> bid (milliseconds of virtual time) -> CreateLease -> manifest (a wrong one refused)
-> deployed -> status/logs to the tenant only -> withdrawals -> escrow runs out -> lease
closed INSUFFICIENT_FUNDS -> containers gone within one block; a lease without a manifest is
closed MANIFEST_TIMEOUT; a raising pricing plugin costs a decline, not the provider; a lease
for a bid made before the provider restarted is taken, not closed; bids go back the order's
way to the tenant only, or to every node with ``publish_bids``.
"""

from __future__ import annotations

import logging

import attrs
import pytest
import trio

from p2pakash.config import ProviderConfig
from p2pakash.executor.base import ContainerState
from p2pakash.executor.fake import FakeExecutor
from p2pakash.market import ledger_market as lm
from p2pakash.market.orders import Bid, DeclineReason, LeaseID, Order, make_order
from p2pakash.market.sdl import manifest_json, parse_sdl
from p2pakash.market.sdl.version import sorted_json
from p2pakash.market.validators import TOPIC_BIDS
from p2pakash.plugins.manager import PluginManager
from p2pakash.plugins.types import PluginConfig
from tests.executor.sdl_texts import web_sdl
from tests.provider.netkit import (
    CHAIN,
    PROVIDER,
    STRANGER,
    TENANT,
    Market,
    market,
    now_ms,
    plugins_with,
    wait_for,
)

PRICE = 100_000  # uakt per block; the deposit lasts 10 blocks
DEPOSIT = 1_000_000
SDL_TEXT = web_sdl().replace("amount: 100}", "amount: 200000}")
CFG = ProviderConfig(executor="fake", cpu=2.0, memory="2Gi", storage={"ephemeral": "1Gi"},
                     manifest_timeout=2.0, withdraw_period=0.3, bid_ttl=30.0,
                     gpu_probes=())


def order_for(dseq: int, text: str = SDL_TEXT) -> Order:
    sdl = parse_sdl(text)
    return make_order(TENANT, CHAIN, dseq=dseq, groups=sdl.groups(),
                      manifest_hash=sdl.version_hash(), deposit=DEPOSIT,
                      expiry_ms=now_ms() + 60_000)


def manifest_bytes(text: str = SDL_TEXT) -> bytes:
    return sorted_json(manifest_json(parse_sdl(text)))


async def lease_for(m: Market, dseq: int, price: int = PRICE,
                    text: str = SDL_TEXT) -> tuple[Order, Bid, LeaseID]:
    order = order_for(dseq, text)
    start = trio.current_time()
    m.tenant.publish_order(order)
    bid = await m.tenant.next_bid()
    assert trio.current_time() - start < 0.1  # one gossip delay, not blocks
    assert bid.body.order == order.order_id(1) and bid.body.price == price
    m.tenant.peer.submit(lm.CreateLease(order=order, bid=bid))
    lid = bid.lease_id
    assert m.provider is not None
    await wait_for(lambda: lid in m.provider.leases)  # type: ignore[union-attr]
    return order, bid, lid


def lease_rec(m: Market, lid: LeaseID) -> lm.LeaseRec | None:
    return lm.get_lease(m.provider_peer.chain.ledger.store, lid)


async def registered(m: Market) -> None:
    await wait_for(lambda: lm.get_provider(m.tenant.peer.chain.ledger.store, PROVIDER.address)
                   is not None)


async def test_order_to_teardown(autojump_clock: trio.abc.Clock) -> None:
    async with market() as m:
        executor = FakeExecutor()
        await m.start_provider(CFG, executor, plugins_with(PRICE))
        await registered(m)
        events = m.tenant.peer.chain.subscribe_blocks()
        _, _, lid = await lease_for(m, 1)
        svc = m.provider
        assert svc is not None and svc.leases[lid].state == "pending"
        # the order came as the node's market validator decoded and verified it
        assert svc.stats["orders"] == 1 and "orders_checked_here" not in svc.stats

        # a manifest whose hash is not the order's is refused; the lease stays pending
        ack = await m.tenant.ask(m.tenant.manifest(lid, manifest_bytes(web_sdl(count=2))))
        assert not ack.ok and "manifest version validation failed" in ack.error
        # signed by someone other than the tenant: refused
        ack = await m.tenant.ask(m.tenant.manifest(lid, manifest_bytes()), signer=STRANGER)
        assert not ack.ok and "not signed by its tenant" in ack.error
        assert svc.leases[lid].state == "pending" and str(lid) not in executor.engine.leases

        ack = await m.tenant.ask(m.tenant.manifest(lid, manifest_bytes()))
        assert ack.ok, ack.error
        await wait_for(lambda: svc.leases[lid].state == "running")
        boxes = executor.engine.leases[str(lid)]
        assert sorted(boxes) == [("web", 0), ("worker", 0)]
        assert all(b.state is ContainerState.RUNNING for b in boxes.values())

        status = await m.tenant.ask(m.tenant.status(lid))
        assert status.state == "running" and status.error == ""
        assert [(s.service, s.replica, s.state) for s in status.services] == [
            ("web", 0, "running"), ("worker", 0, "running")]
        refused = await m.tenant.ask(m.tenant.status(lid), signer=STRANGER)
        assert refused.state == "" and refused.services == ()
        assert "not signed by its tenant" in refused.error

        executor.engine.emit(str(lid), "web", 0, "GET / 200")
        logs = await m.tenant.ask(m.tenant.logs(lid, service="web"))
        assert logs.error == "" and "GET / 200" in [x.line for x in logs.lines]
        stranger_logs = await m.tenant.ask(m.tenant.logs(lid), signer=STRANGER)
        assert stranger_logs.lines == () and "not signed by its tenant" in stranger_logs.error

        # the escrow runs out after about DEPOSIT / PRICE blocks
        await wait_for(lambda: (rec := lease_rec(m, lid)) is not None
                       and rec.state is lm.LeaseState.INSUFFICIENT_FUNDS, limit=60)
        rec = lease_rec(m, lid)
        assert rec is not None and rec.reason is lm.LeaseCloseReason.INSUFFICIENT_FUNDS
        closed = rec.closed_on
        await wait_for(lambda: str(lid) not in executor.engine.leases, limit=5)
        assert m.provider_peer.chain.height <= closed + 1  # gone within one block
        await wait_for(lambda: lid not in svc.leases)
        assert svc.engine is not None and svc.engine.inventory.held == {}

        kinds: set[str] = set()
        while True:
            try:
                _, result = events.receive_nowait()
            except trio.WouldBlock:
                break
            kinds.update(e.type for r in result.tx_results for e in r.events)
            kinds.update(e.type for e in result.events)
        assert {"lease_created", "withdraw", "lease_closed"} <= kinds


async def test_manifest_timeout_closes_the_lease(autojump_clock: trio.abc.Clock) -> None:
    async with market(seed=2) as m:
        executor = FakeExecutor()
        # escrow outlasts the wait; no validator handle: the provider checks orders itself
        await m.start_provider(CFG, executor, plugins_with(1000), use_market=False)
        await registered(m)
        _, _, lid = await lease_for(m, 7, price=1000)
        assert m.provider is not None and m.provider.stats["orders_checked_here"] == 1
        await wait_for(lambda: (rec := lease_rec(m, lid)) is not None
                       and rec.state is lm.LeaseState.CLOSED, limit=10)
        rec = lease_rec(m, lid)
        assert rec is not None and rec.reason is lm.LeaseCloseReason.MANIFEST_TIMEOUT
        # a manifest after the close is refused
        await wait_for(lambda: m.provider is not None and lid not in m.provider.leases)
        ack = await m.tenant.ask(m.tenant.manifest(lid, manifest_bytes()))
        assert not ack.ok and "no lease" in ack.error


class Raising:
    def p2pakash_bid_price(self, group: object, resources: object, context: object) -> None:
        raise RuntimeError("pricing backend down")


async def test_raising_pricing_plugin_declines_and_provider_keeps_running(
        autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture) -> None:
    async with market(seed=3) as m:
        plugins = PluginManager.load(
            PluginConfig(pricing="boom", gpu_probes=(), entry_points=False),
            extra=[("boom", Raising())])
        await m.start_provider(CFG, FakeExecutor(), plugins)
        await registered(m)
        with caplog.at_level(logging.ERROR, logger="p2pakash.provider.service"):
            m.tenant.publish_order(order_for(3))
            decline = await m.tenant.next_decline()
        assert decline.body.reason is DeclineReason.UNSPECIFIED
        assert decline.body.text == "provider pricing failed"
        assert any("plugin 'boom' raised in p2pakash_bid_price: RuntimeError: pricing backend "
                   "down" in r.getMessage() for r in caplog.records)
        # still running: an order it cannot fit is declined for capacity
        big = web_sdl(cpu="4").replace("amount: 100}", "amount: 200000}")
        m.tenant.publish_order(order_for(4, big))
        decline = await m.tenant.next_decline()
        assert decline.body.reason is DeclineReason.NO_CAPACITY
        assert m.provider is not None and m.provider.engine is not None
        assert m.provider.engine.inventory.held == {}


async def test_lease_for_a_bid_made_before_a_restart_is_taken_not_closed(
        autojump_clock: trio.abc.Clock) -> None:
    async with market(seed=3) as m:
        await m.start_provider(CFG, FakeExecutor(), plugins_with(PRICE))
        await registered(m)
        order = order_for(11)
        m.tenant.publish_order(order)
        bid = await m.tenant.next_bid()
        m.stop_provider()  # the provider restarts between its bid and the lease
        await trio.sleep(0.5)
        executor = FakeExecutor()
        await m.start_provider(CFG, executor, plugins_with(PRICE))
        m.tenant.peer.submit(lm.CreateLease(order=order, bid=bid))
        lid = bid.lease_id
        assert m.provider is not None
        await wait_for(lambda: lid in m.provider.leases)  # type: ignore[union-attr]
        ack = await m.tenant.ask(m.tenant.manifest(lid, manifest_bytes()))
        assert ack.ok, ack.error
        rec = lease_rec(m, lid)
        assert rec is not None and rec.state is lm.LeaseState.ACTIVE


@pytest.mark.parametrize("flood", [False, True])
async def test_bids_go_back_the_orders_way_unless_published(
        autojump_clock: trio.abc.Clock, flood: bool) -> None:
    async with market(seed=5) as m:
        cfg = attrs.evolve(CFG, publish_bids=flood)
        watcher = m.validators[0].gossip.subscribe(TOPIC_BIDS)  # a node that asked nothing
        svc = await m.start_provider(cfg, FakeExecutor(), plugins_with(PRICE))
        await registered(m)
        m.tenant.publish_order(order_for(21))
        bid = await m.tenant.next_bid()
        assert bid.body.price == PRICE
        await trio.sleep(1.0)
        seen_elsewhere = []
        while True:
            try:
                seen_elsewhere.append(watcher.receive_nowait())
            except trio.WouldBlock:
                break
        if flood:  # publish_bids: on the topic, for every node (and undercut plugins)
            assert len(seen_elsewhere) == 1 and svc.stats["bids_published"] == 1
        else:  # a reply along the order's path: only the tenant has it
            assert seen_elsewhere == [] and "bids_published" not in svc.stats
            assert m.tenant.peer.gossip.pubsub.stats.replies_delivered == 1
