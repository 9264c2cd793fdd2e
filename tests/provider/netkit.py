"""A market in one process: validators, a provider node and a tenant node over the in-memory
network, each with the real GossipService, ChainService, Mempool, TxGossip and market gossip
validators (as node.py wires them); the provider runs the real ProviderService.

Works under the autojump clock and under the real clock (podman tests).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from p2pakash import wire
from p2pakash.api import TxGossip
from p2pakash.chain import ChainService
from p2pakash.config import ProviderConfig
from p2pakash.consensus.core import TimeoutParams
from p2pakash.crypto import PrivateKey, VerifyCache
from p2pakash.executor.base import Executor
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams
from p2pakash.gossip.service import Delivered, GossipService
from p2pakash.ledger import UAKT_PER_AKT, GenesisAccount, GenesisDoc, GenesisValidator, sign_tx
from p2pakash.market import ledger_market as lm
from p2pakash.market.orders import Bid, Decline, LeaseID, Order
from p2pakash.market.validators import TOPIC_BIDS, TOPIC_DECLINES, TOPIC_ORDERS, MarketValidators
from p2pakash.mempool import Mempool
from p2pakash.plugins.hookspecs import hookimpl
from p2pakash.plugins.manager import PluginManager
from p2pakash.plugins.types import PluginConfig, PriceQuote
from p2pakash.provider import messages as pm
from p2pakash.provider.service import ProviderService

CHAIN = "provider-chain"
FAST = TimeoutParams(propose=0.2, propose_delta=0.05, prevote=0.05, prevote_delta=0.02,
                     precommit=0.05, precommit_delta=0.02, commit=0.05)


def key(name: str) -> PrivateKey:
    return PrivateKey.from_seed(hashlib.sha256(f"provider-test-{name}".encode()).digest())


VALIDATORS = [key(f"v{i}") for i in range(4)]
PROVIDER = key("provider")
TENANT = key("tenant")
STRANGER = key("stranger")


def now_ms() -> int:
    return int(trio.current_time() * 1000)


def genesis() -> GenesisDoc:
    return GenesisDoc(
        chain_id=CHAIN, genesis_time_ms=0,
        accounts=tuple(GenesisAccount(address=k.address, balance=100 * UAKT_PER_AKT)
                       for k in (*VALIDATORS, PROVIDER, TENANT)),
        validators=tuple(GenesisValidator(pubkey=k.public, stake=100 * UAKT_PER_AKT,
                                          moniker=f"v{i}") for i, k in enumerate(VALIDATORS)))


class FixedPrice:
    """A pricing plugin with one price per block (registered like any plugin)."""

    def __init__(self, price: int) -> None:
        self.price = price

    @hookimpl
    def p2pakash_bid_price(self, group: object, resources: object,
                           context: object) -> PriceQuote:
        return PriceQuote(price_per_block=self.price)


def addr(i: int) -> str:
    return f"10.7.0.{i + 1}:26656"


ALL = [*VALIDATORS, PROVIDER, TENANT]


@attrs.define(eq=False)
class Peer:
    key: PrivateKey
    gossip: GossipService
    chain: ChainService
    mempool: Mempool
    txs: TxGossip
    market: MarketValidators

    def submit(self, *msgs: object) -> None:
        seq = (self.chain.ledger.account(self.key.address).sequence
               + self.mempool.pending_from(self.key.address))
        raw = sign_tx(self.key, CHAIN, sequence=seq, msgs=msgs).encode()
        result = self.mempool.add(raw)
        assert result.accepted, result.reason
        self.txs.publish(raw)


async def start_peer(nursery: trio.Nursery, net: MemoryNetwork, i: int, cache: VerifyCache,
                     *, validator: bool) -> Peer:
    k = ALL[i]
    peers = [PeerAddr.parse(f"{o.node_id}@{addr(j)}") for j, o in enumerate(ALL) if j != i]
    gossip = GossipService(
        transport=MemoryTransport(net, k, CHAIN, addr(i)), rng=random.Random(i),
        peer_params=PeerParams(max_outbound=8, max_inbound=20, pex_interval=1e9,
                               backoff_base=0.05, backoff_max=0.3),
        pubsub_params=PubSubParams(), persistent=peers)
    chain = ChainService(gossip=gossip, key=k if validator else None, genesis=genesis(),
                         timeouts=FAST, verify_cache=cache, now_ms=now_ms,
                         status_interval=0.2, catchup_delay=0.5, name=f"n{i}")
    mempool = Mempool.for_ledger(chain.ledger, verify=cache.verify)
    chain.mempool = mempool
    txs = TxGossip(gossip, mempool)
    market = MarketValidators(chain_id=CHAIN, view=lm.LedgerView(chain.ledger.store),
                              now_ms=now_ms, cache=cache)
    market.install(gossip.pubsub)
    await nursery.start(gossip.run)
    await nursery.start(txs.run)
    await nursery.start(chain.run)
    return Peer(key=k, gossip=gossip, chain=chain, mempool=mempool, txs=txs, market=market)


@attrs.define(eq=False)
class Tenant:
    peer: Peer
    bids: trio.MemoryReceiveChannel[Delivered]
    declines: trio.MemoryReceiveChannel[Delivered]
    replies: list[object] = attrs.Factory(list)

    def register(self) -> None:
        for cls in (pm.ManifestAck, pm.LeaseStatus, pm.LeaseLogs):
            self.peer.gossip.register(cls, lambda peer, item: self.replies.append(item))

    def publish_order(self, order: Order) -> None:
        self.peer.gossip.publish(TOPIC_ORDERS, wire.encode(order))

    async def next_bid(self, limit: float = 5.0) -> Bid:
        with trio.fail_after(limit):
            item = await self.bids.receive()
        return wire.decode(item.data, Bid)

    async def next_decline(self, limit: float = 5.0) -> Decline:
        with trio.fail_after(limit):
            item = await self.declines.receive()
        return wire.decode(item.data, Decline)

    async def ask(self, msg: Any, signer: PrivateKey | None = None, limit: float = 10.0) -> Any:
        """Send a signed request to the provider and wait for the answer to it."""
        signed = pm.sign_request(signer or self.peer.key, CHAIN,
                                 attrs.evolve(msg, issued_ms=now_ms()))
        want = {pm.SendManifest: pm.ManifestAck, pm.LeaseStatusRequest: pm.LeaseStatus,
                pm.LeaseLogsRequest: pm.LeaseLogs}[type(msg)]
        before = len(self.replies)
        assert self.peer.gossip.send_to(PROVIDER.node_id, signed)
        with trio.fail_after(limit):
            while True:
                for reply in self.replies[before:]:
                    if isinstance(reply, want) and getattr(reply, "lease_id", None) == msg.lease_id:
                        return reply
                await trio.sleep(0.01)

    def manifest(self, lid: LeaseID, data: bytes) -> pm.SendManifest:
        return pm.SendManifest(lease_id=lid, manifest=data, issued_ms=0, pubkey=b"",
                               signature=b"")

    def status(self, lid: LeaseID) -> pm.LeaseStatusRequest:
        return pm.LeaseStatusRequest(lease_id=lid, issued_ms=0, pubkey=b"", signature=b"")

    def logs(self, lid: LeaseID, service: str = "", tail: int = 100) -> pm.LeaseLogsRequest:
        return pm.LeaseLogsRequest(lease_id=lid, service=service, tail=tail, issued_ms=0,
                                   pubkey=b"", signature=b"")


@attrs.define(eq=False)
class Market:
    net: MemoryNetwork
    cache: VerifyCache
    validators: list[Peer]
    provider_peer: Peer
    tenant: Tenant
    nursery: trio.Nursery
    provider: ProviderService | None = None
    provider_scope: trio.CancelScope | None = None

    async def start_provider(self, cfg: ProviderConfig, executor: Executor,
                             plugins: PluginManager, state_dir: Path | None = None,
                             *, use_market: bool = True) -> ProviderService:
        """``use_market=False``: the provider decodes and verifies each order itself."""
        p = self.provider_peer
        service = ProviderService(key=PROVIDER, cfg=cfg, gossip=p.gossip, chain=p.chain,
                                  mempool=p.mempool, publish=p.txs.publish, plugins=plugins,
                                  executor=executor, state_dir=state_dir, now_ms=now_ms,
                                  tick=0.05,
                                  market=p.market if use_market else None)

        async def runner(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as inner:
                    await inner.start(service.run)
                    task_status.started(scope)

        self.provider_scope = await self.nursery.start(runner)
        self.provider = service
        return service

    def stop_provider(self) -> None:
        assert self.provider_scope is not None
        self.provider_scope.cancel()


def plugins_with(price: int) -> PluginManager:
    return PluginManager.load(PluginConfig(pricing="fixed", gpu_probes=(), entry_points=False),
                              extra=[("fixed", FixedPrice(price))])


async def wait_for(cond: Callable[[], bool], *, limit: float = 30.0, step: float = 0.02) -> None:
    with trio.fail_after(limit):
        while not cond():  # noqa: ASYNC110 - polls state other tasks change, bounded
            await trio.sleep(step)


@asynccontextmanager
async def market(seed: int = 1) -> AsyncIterator[Market]:
    net = MemoryNetwork(random.Random(seed), latency=0.002)
    cache = VerifyCache()
    async with trio.open_nursery() as nursery:
        validators = [await start_peer(nursery, net, i, cache, validator=True)
                      for i in range(4)]
        provider = await start_peer(nursery, net, 4, cache, validator=False)
        tenant_peer = await start_peer(nursery, net, 5, cache, validator=False)
        tenant = Tenant(peer=tenant_peer, bids=tenant_peer.gossip.subscribe(TOPIC_BIDS),
                        declines=tenant_peer.gossip.subscribe(TOPIC_DECLINES))
        tenant.register()
        await wait_for(lambda: PROVIDER.node_id in tenant_peer.gossip.connected
                       and tenant_peer.chain.height >= 1)
        yield Market(net=net, cache=cache, validators=validators, provider_peer=provider,
                     tenant=tenant, nursery=nursery)
        nursery.cancel_scope.cancel()
