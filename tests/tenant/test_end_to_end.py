"""The issue's end-to-end test, in one process under virtual time: 4 validators, 2 providers
with different attributes, 1 tenant. The order reaches both providers, only the matching
one bids (the other declines with a reason), the lease is created, the manifest is
accepted (hash checked), payments accrue, the tenant closes, and the balances add up."""

from __future__ import annotations

import json
import random
from typing import Any

import attrs
import pytest
import trio

from p2pakash.gossip.memory import MemoryNetwork
from p2pakash.ledger import bank
from p2pakash.ledger.state import Store
from p2pakash.market import ledger_market as lm
from p2pakash.market.orders import DeploymentID
from p2pakash.market.sdl.version import manifest_version
from p2pakash.market.validators import TOPIC_BIDS, TOPIC_ORDERS
from p2pakash.tenant import TenantParams, TenantService
from tests.market.helpers_market import SDL_TEXT
from tests.tenant.net import (
    CPU_ATTRS,
    CPU_PROVIDER,
    GPU_ATTRS,
    GPU_PROVIDER,
    TENANT,
    MarketNet,
    Member,
    SimProvider,
    now_ms,
    wait_for,
    wait_tx,
)

NO_MATCH_SDL = SDL_TEXT.replace("region: us-west", "region: mars")


def total_balances(store: Store) -> int:
    from p2pakash.ledger.state import P_ACC, AccountRec

    return sum(int(rec.balance) for _, rec in store.scan(P_ACC, AccountRec))


@attrs.frozen
class Market:
    tenant: Member
    gpu_sim: SimProvider
    cpu_sim: SimProvider
    svc: TenantService


async def market(nursery: trio.Nursery) -> Market:
    net = MarketNet(network=MemoryNetwork(random.Random(3)), nursery=nursery)
    validators = await net.start_validators()
    gpu = await net.start(GPU_PROVIDER, 4, validator=False, peers=validators)
    cpu = await net.start(CPU_PROVIDER, 5, validator=False, peers=validators)
    tenant = await net.start(TENANT, 6, validator=False, peers=[*validators, gpu, cpu])
    hashes = [m.submit(lm.CreateProvider(host_uri=m.peer_addr, attributes=attrs_, bond=500_000))
              for m, attrs_ in ((gpu, GPU_ATTRS), (cpu, CPU_ATTRS))]
    for h in hashes:
        await wait_tx(tenant, h)
    store = tenant.chain.ledger.store
    await wait_for(lambda: all(lm.get_provider(store, k.address) is not None
                               for k in (GPU_PROVIDER, CPU_PROVIDER)))
    sims = SimProvider(gpu, GPU_ATTRS, price=1200), SimProvider(cpu, CPU_ATTRS)
    for sim in sims:
        await nursery.start(sim.run)
    svc = TenantService(key=TENANT, gossip=tenant.gossip, chain=tenant.chain,
                        mempool=tenant.mempool, publish_tx=tenant.txs.publish, now_ms=now_ms,
                        params=TenantParams(default_wait_s=5.0))
    await nursery.start(svc.run)
    # meshes form on the gossip heartbeat: wait until orders and bids have somewhere to go
    await wait_for(lambda: bool(tenant.gossip.pubsub.mesh(TOPIC_BIDS))
                   and all(bool(m.gossip.pubsub.mesh(TOPIC_ORDERS)) for m in (gpu, cpu)))
    return Market(tenant, sims[0], sims[1], svc)


async def test_order_to_lease_to_manifest_to_close(nursery: trio.Nursery,
                                                   autojump_clock: Any) -> None:
    m = await market(nursery)
    tenant, gpu_sim, cpu_sim, svc = m.tenant, m.gpu_sim, m.cpu_sim, m.svc
    ledger = tenant.chain.ledger
    store = ledger.store
    supply_before = ledger.supply()
    tenant_before = bank.balance(store, TENANT.address)
    gpu_before = bank.balance(store, GPU_PROVIDER.address)
    cpu_before = bank.balance(store, CPU_PROVIDER.address)

    events: list[dict[str, Any]] = []
    done = await svc.deploy(SDL_TEXT, source="deploy.yaml", deposit=5_000_000, wait_s=5.0,
                            emit=events.append)
    assert done["ok"], done
    kinds = [e["event"] for e in events]
    assert kinds[0] == "order" and kinds[-1] == "done"
    assert kinds.index("selected") < kinds.index("lease_tx") < kinds.index("lease") \
        < kinds.index("manifest")
    dseq = done["dseq"]
    # the order reached both providers
    for sim in (gpu_sim, cpu_sim):
        assert (TENANT.address, dseq) in sim.orders
    # only the matching provider bid, with the concrete GPU model; the other declined
    bids = [e for e in events if e["event"] == "bid"]
    declines = [e for e in events if e["event"] == "decline"]
    assert [(b["provider"], b["price"], b["gpus"]) for b in bids] == [
        (GPU_PROVIDER.address, 1200, ["nvidia/h100"])]
    assert [(d["provider"], d["reason"]) for d in declines] == [
        (CPU_PROVIDER.address, "attribute_mismatch")]
    assert "region=us-west" in declines[0]["text"]
    # every registered provider answered: no need to wait the whole 5 s
    assert done["elapsed_ms"] < 5_000
    # the lease is on chain
    lease = next(e for e in events if e["event"] == "lease")
    assert lease["lease"] == f"{dseq}.1.1" and lease["provider"] == GPU_PROVIDER.address
    h0 = lease["height"]
    rec = next(r for r in lm.deployment_leases(store, DeploymentID(owner=TENANT.address,
                                                                   dseq=dseq)))
    assert rec.state is lm.LeaseState.ACTIVE and rec.price == 1200 and rec.created_at == h0
    # the manifest was accepted and its hash is the order's
    manifest = next(e for e in events if e["event"] == "manifest")
    assert manifest["accepted"] and manifest["error"] == ""
    sent = gpu_sim.manifests[str(rec.id)]
    dep = lm.get_deployment(store, rec.id.deployment)
    assert dep is not None and manifest_version(json.loads(sent)) == dep.manifest_hash
    assert cpu_sim.manifests == {}
    # payments accrue block by block
    await wait_for(lambda: tenant.chain.height >= h0 + 5)
    preview = lm.preview(store, rec.id.deployment, tenant.chain.height)
    assert preview is not None
    assert preview.payments[0].balance == 1200 * (tenant.chain.height - h0)
    # the tenant closes; balances add up
    height, _ = await svc.submit((lm.CloseDeployment(deployment=rec.id.deployment),))
    await wait_for(lambda: tenant.chain.height >= height)
    closed = lm.get_lease(store, rec.id)
    assert closed is not None and closed.state is lm.LeaseState.CLOSED
    assert closed.reason is lm.LeaseCloseReason.OWNER and closed.closed_on == height
    provider_got = bank.balance(store, GPU_PROVIDER.address) - gpu_before
    tenant_paid = tenant_before - bank.balance(store, TENANT.address)
    refund = 5_000_000 - provider_got
    assert provider_got == 1200 * (height - h0) > 0
    assert tenant_paid == provider_got == 5_000_000 - refund
    assert bank.balance(store, CPU_PROVIDER.address) == cpu_before
    assert bank.balance(store, lm.ESCROW) == 0
    assert ledger.supply() == supply_before == total_balances(store)


async def test_no_bids_shows_every_decline(nursery: trio.Nursery, autojump_clock: Any) -> None:
    m = await market(nursery)
    tenant, svc = m.tenant, m.svc
    balance = bank.balance(tenant.chain.ledger.store, TENANT.address)
    events: list[dict[str, Any]] = []
    done = await svc.deploy(NO_MATCH_SDL, source="mars.yaml", wait_s=5.0, emit=events.append)
    assert not done["ok"] and done["stage"] == "no_bids"
    assert "got no bids" in done["error"] and "2 providers answered" in done["error"]
    no_bids = next(e for e in events if e["event"] == "no_bids")
    reasons = sorted((d["provider"], d["reason"]) for d in no_bids["declines"])
    assert reasons == sorted([(GPU_PROVIDER.address, "attribute_mismatch"),
                              (CPU_PROVIDER.address, "attribute_mismatch")])
    assert all("region=mars" in d["text"] for d in no_bids["declines"])
    assert "lease_tx" not in [e["event"] for e in events]
    assert svc.runs[done["dseq"]].status == "no_bids"
    assert bank.balance(tenant.chain.ledger.store, TENANT.address) == balance  # nothing spent


async def test_refuses_bad_input_before_publishing(nursery: trio.Nursery,
                                                   autojump_clock: Any) -> None:
    from p2pakash.errors import SDLError
    from p2pakash.tenant import TenantError

    m = await market(nursery)
    gpu_sim, svc = m.gpu_sim, m.svc
    with pytest.raises(SDLError, match=r"deploy\.yaml: "):
        await svc.deploy("version: '2.0'\nservices: {}\n", source="deploy.yaml")
    uact = SDL_TEXT.replace("denom: uakt", "denom: uact")
    with pytest.raises(SDLError, match=r"profiles\.placement\.dc\.pricing\.gpu1 is priced in "
                                       r"'uact'.*--denom-rate uact="):
        await svc.deploy(uact, source="deploy.yaml")
    with pytest.raises(TenantError, match="below the chain's minimum 500000"):
        await svc.deploy(SDL_TEXT, deposit=10)
    with pytest.raises(TenantError, match="less than the deposit"):
        await svc.deploy(SDL_TEXT, deposit=10**15)
    with pytest.raises(TenantError, match="--select 'nope'"):
        await svc.deploy(SDL_TEXT, select="nope")
    assert svc.runs == {} and gpu_sim.orders == {}
    # an explicit rate converts uact prices: 1 uact = 2 uakt -> max 2 x 1500 x 2 = 6000
    events: list[dict[str, Any]] = []
    from fractions import Fraction

    done = await svc.deploy(uact, denom_rates={"uact": Fraction(2)}, wait_s=5.0,
                            emit=events.append)
    assert done["ok"], done
    assert events[0]["groups"][0]["max_price"] == 6000


async def test_with_the_provider_daemon(nursery: trio.Nursery, autojump_clock: Any) -> None:
    """The same flow against two real ProviderServices (fake executor): one in the region
    the SDL asks for bids, the other declines; the manifest is deployed; status and logs
    come back from the provider; closing the deployment pays and refunds exactly."""
    from p2pakash.config import ProviderConfig
    from p2pakash.executor.fake import FakeExecutor
    from p2pakash.plugins.manager import PluginManager
    from p2pakash.plugins.types import PluginConfig
    from p2pakash.provider.service import ProviderService
    from tests.executor.sdl_texts import web_sdl
    from tests.provider.netkit import FixedPrice

    net = MarketNet(network=MemoryNetwork(random.Random(9)), nursery=nursery)
    validators = await net.start_validators()
    west = await net.start(GPU_PROVIDER, 4, validator=False, peers=validators)
    east = await net.start(CPU_PROVIDER, 5, validator=False, peers=validators)
    tenant = await net.start(TENANT, 6, validator=False, peers=[*validators, west, east])
    for member, region in ((west, "us-west"), (east, "eu-central")):
        cfg = ProviderConfig(executor="fake", cpu=4.0, memory="4Gi",
                             storage={"ephemeral": "4Gi"}, attributes={"region": region},
                             gpu_probes=(), bid_ttl=60.0, manifest_timeout=30.0,
                             withdraw_period=1e6)
        plugins = PluginManager.load(PluginConfig(pricing="fixed", gpu_probes=(),
                                                  entry_points=False),
                                     extra=[("fixed", FixedPrice(50))])
        service = ProviderService(key=member.key, cfg=cfg, gossip=member.gossip,
                                  chain=member.chain, mempool=member.mempool,
                                  publish=member.txs.publish, plugins=plugins,
                                  executor=FakeExecutor(), now_ms=now_ms, tick=0.05)
        await nursery.start(service.run)
    store = tenant.chain.ledger.store
    await wait_for(lambda: all(lm.get_provider(store, k.address) is not None
                               for k in (GPU_PROVIDER, CPU_PROVIDER)))
    svc = TenantService(key=TENANT, gossip=tenant.gossip, chain=tenant.chain,
                        mempool=tenant.mempool, publish_tx=tenant.txs.publish, now_ms=now_ms)
    await nursery.start(svc.run)
    await wait_for(lambda: bool(tenant.gossip.pubsub.mesh(TOPIC_BIDS))
                   and all(bool(m.gossip.pubsub.mesh(TOPIC_ORDERS)) for m in (west, east)))
    text = web_sdl().replace("    dc:\n      pricing:",
                             "    dc:\n      attributes: {region: us-west}\n      pricing:")
    before = bank.balance(store, TENANT.address), bank.balance(store, GPU_PROVIDER.address)
    events: list[dict[str, Any]] = []
    done = await svc.deploy(text, deposit=1_000_000, wait_s=5.0, emit=events.append)
    assert done["ok"], done
    assert [(e["provider"], e["price"]) for e in events if e["event"] == "bid"] == [
        (GPU_PROVIDER.address, 50)]
    assert [(e["provider"], e["reason"]) for e in events if e["event"] == "decline"] == [
        (CPU_PROVIDER.address, "attribute_mismatch")]
    lease = next(e for e in events if e["event"] == "lease")
    rec = render_lease(store, done["dseq"])
    assert rec.state is lm.LeaseState.ACTIVE and rec.created_at == lease["height"]

    async def running() -> str:
        return (await svc.lease_status(rec.id)).state

    with trio.fail_after(30):
        while await running() != "running":  # noqa: ASYNC110 - asks the provider, bounded
            await trio.sleep(0.1)
    logs = await svc.lease_logs(rec.id, tail=5)
    assert logs.error == "" and any("web up" in e.line for e in logs.lines)
    height, _ = await svc.submit((lm.CloseDeployment(deployment=rec.id.deployment),))
    await wait_for(lambda: tenant.chain.height >= height)
    paid = 50 * (height - lease["height"])
    assert bank.balance(store, TENANT.address) == before[0] - paid
    assert bank.balance(store, GPU_PROVIDER.address) == before[1] + paid


def render_lease(store: Store, dseq: int) -> lm.LeaseRec:
    (rec,) = lm.deployment_leases(store, DeploymentID(owner=TENANT.address, dseq=dseq))
    return rec
