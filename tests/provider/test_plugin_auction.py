"""Issue 5: "The example pricing plugin package, installed with pip, wins an auction against
``linear``" — as a real auction, in one process under virtual time.

Four validators, two real ProviderServices with the same resources and the same
``[provider.linear]`` rates (fake executor): one prices with the built-in ``linear``, the other
with ``discount`` from ``examples/p2pakash-price-example``, installed by pip into a temporary
directory and loaded through the ``p2pakash`` entry point. A real TenantService deploys one SDL;
both providers bid on the order over gossip; the tenant's built-in selection (cheapest) takes
the discount bid, and the lease on chain is the discount provider's.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pakash.config import ProviderConfig
from p2pakash.executor.fake import FakeExecutor
from p2pakash.gossip.memory import MemoryNetwork
from p2pakash.market import ledger_market as lm
from p2pakash.market.orders import DeploymentID
from p2pakash.market.validators import TOPIC_BIDS, TOPIC_ORDERS
from p2pakash.plugins.manager import PluginManager
from p2pakash.plugins.types import PluginConfig
from p2pakash.provider.service import ProviderService
from p2pakash.tenant import TenantService
from tests.executor.sdl_texts import web_sdl
from tests.plugins.test_example_package import RATES, example_installed
from tests.tenant.net import CPU_PROVIDER, GPU_PROVIDER, TENANT, MarketNet, now_ms, wait_for

LINEAR, DISCOUNT = GPU_PROVIDER, CPU_PROVIDER  # two funded accounts of the tenant test net
SDL_TEXT = web_sdl().replace("amount: 100}", "amount: 200000}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with example_installed(tmp_path_factory.mktemp("auction")) as target:
        yield target


def plugins(pricing: str) -> PluginManager:
    return PluginManager.load(PluginConfig.from_table(
        {"pricing": pricing, "entry_points": True, "gpu_probes": [], "linear": RATES,
         "discount": {"percent": 10}}))


async def test_example_plugin_wins_a_real_auction_against_linear(
        installed: Path, nursery: trio.Nursery, autojump_clock: Any) -> None:
    net = MarketNet(network=MemoryNetwork(random.Random(21)), nursery=nursery)
    validators = await net.start_validators()
    members = [await net.start(k, 4 + i, validator=False, peers=validators)
               for i, k in enumerate((LINEAR, DISCOUNT))]
    tenant = await net.start(TENANT, 6, validator=False, peers=[*validators, *members])
    services = []
    for member, pricing in zip(members, ("linear", "discount"), strict=True):
        cfg = ProviderConfig(executor="fake", cpu=4.0, memory="4Gi",
                             storage={"ephemeral": "4Gi"}, gpu_probes=(), bid_ttl=60.0,
                             manifest_timeout=30.0, withdraw_period=1e6)
        manager = plugins(pricing)
        assert type(manager.pricing).__name__ == {"linear": "LinearPricing",
                                                  "discount": "DiscountPricing"}[pricing]
        service = ProviderService(key=member.key, cfg=cfg, gossip=member.gossip,
                                  chain=member.chain, mempool=member.mempool,
                                  publish=member.txs.publish, plugins=manager,
                                  executor=FakeExecutor(), now_ms=now_ms, tick=0.05)
        await nursery.start(service.run)
        services.append(service)
    store = tenant.chain.ledger.store
    await wait_for(lambda: all(lm.get_provider(store, k.address) is not None
                               for k in (LINEAR, DISCOUNT)))
    svc = TenantService(key=TENANT, gossip=tenant.gossip, chain=tenant.chain,
                        mempool=tenant.mempool, publish_tx=tenant.txs.publish, now_ms=now_ms)
    await nursery.start(svc.run)
    await wait_for(lambda: bool(tenant.gossip.pubsub.mesh(TOPIC_BIDS))
                   and all(bool(m.gossip.pubsub.mesh(TOPIC_ORDERS)) for m in members))

    events: list[dict[str, Any]] = []
    done = await svc.deploy(SDL_TEXT, deposit=1_000_000, wait_s=5.0, emit=events.append)
    assert done["ok"], done
    bids = {e["provider"]: e["price"] for e in events if e["event"] == "bid"}
    assert set(bids) == {LINEAR.address, DISCOUNT.address}  # both took part
    assert bids[DISCOUNT.address] < bids[LINEAR.address]
    # 10 % below linear, rounded up (the example's rule), and at least 1 uakt below
    assert bids[DISCOUNT.address] == min(-(-bids[LINEAR.address] * 9 // 10),
                                         bids[LINEAR.address] - 1)
    [lease] = [e for e in events if e["event"] == "lease"]
    assert (lease["provider"], lease["price"]) == (DISCOUNT.address, bids[DISCOUNT.address])
    [rec] = lm.deployment_leases(store, DeploymentID(owner=TENANT.address, dseq=done["dseq"]))
    assert rec.id.provider == DISCOUNT.address and rec.state is lm.LeaseState.ACTIVE
    assert [s.stats.get("bids", 0) for s in services] == [1, 1]
    # the loser's reservation is released when the lease goes to the other provider
    await wait_for(lambda: services[0].engine is not None
                   and services[0].engine.inventory.held == {})
    with trio.fail_after(10):
        while rec.id not in services[1].leases:  # noqa: ASYNC110 - bounded
            await trio.sleep(0.05)
