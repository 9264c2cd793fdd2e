"""A small market network in one process for the tenant tests (in-memory transport).

Every member runs the real GossipService, ChainService, Mempool, TxGossip and the market
gossip validators, and relays the market topics; validators sign blocks, the others
follow them. ``SimProvider`` is a provider built from the real market helpers (matching,
sign_bid/sign_decline, the provider's request verification and Akash's version hash): it
answers orders and manifests the way the provider daemon does.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable

import attrs
import trio

from p2pakash import crypto, wire
from p2pakash.api import TxGossip
from p2pakash.chain import ChainService
from p2pakash.consensus.core import TimeoutParams
from p2pakash.crypto import NodeID, PrivateKey, VerifyCache
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams
from p2pakash.gossip.service import Delivered, GossipService
from p2pakash.ledger import UAKT_PER_AKT, GenesisAccount, GenesisDoc, GenesisValidator, sign_tx
from p2pakash.market import ledger_market as lm
from p2pakash.market import matching
from p2pakash.market.orders import (
    BidBody,
    DeclineBody,
    DeclineReason,
    OfferedUnit,
    Order,
    sign_bid,
    sign_decline,
)
from p2pakash.market.sdl.resources import Attribute
from p2pakash.market.sdl.version import manifest_version
from p2pakash.market.validators import (
    TOPIC_BIDS,
    TOPIC_DECLINES,
    TOPIC_ORDERS,
    MarketValidators,
)
from p2pakash.mempool import Mempool
from p2pakash.provider.messages import (
    LeaseLogs,
    LeaseLogsRequest,
    LeaseStatus,
    LeaseStatusRequest,
    LogEntry,
    ManifestAck,
    RefusedRequest,
    SendManifest,
    verify_request,
)

CHAIN = "tenant-test"
FAST = TimeoutParams(propose=0.2, propose_delta=0.05, prevote=0.05, prevote_delta=0.02,
                     precommit=0.05, precommit_delta=0.02, commit=0.02)
MARKET_TOPICS = (TOPIC_ORDERS, TOPIC_BIDS, TOPIC_DECLINES)


def key(name: str) -> PrivateKey:
    return PrivateKey.from_seed(hashlib.sha256(f"tenant-test-{name}".encode()).digest())


VALIDATORS = [key(f"validator-{i}") for i in range(4)]
GPU_PROVIDER = key("provider-gpu")
CPU_PROVIDER = key("provider-cpu")
TENANT = key("tenant")
GPU_ATTRS = (
    Attribute(key="region", value="us-west"),
    Attribute(key="capabilities/storage/1/class", value="beta3"),
    Attribute(key="capabilities/storage/1/persistent", value="true"),
    Attribute(key="capabilities/gpu/vendor/nvidia/model/h100", value="true"),
)
CPU_ATTRS = (Attribute(key="region", value="eu-central"),)


def genesis(validators: int = 4) -> GenesisDoc:
    return GenesisDoc(
        chain_id=CHAIN, genesis_time_ms=0,
        accounts=tuple(GenesisAccount(address=k.address, balance=100 * UAKT_PER_AKT)
                       for k in (GPU_PROVIDER, CPU_PROVIDER, TENANT)),
        validators=tuple(GenesisValidator(pubkey=k.public, stake=100 * UAKT_PER_AKT,
                                          moniker=f"v{i}")
                         for i, k in enumerate(VALIDATORS[:validators])))


def now_ms() -> int:
    return int(trio.current_time() * 1000)


@attrs.define(eq=False)
class Member:
    key: PrivateKey
    addr: str
    gossip: GossipService
    chain: ChainService
    mempool: Mempool
    txs: TxGossip

    @property
    def peer_addr(self) -> str:
        return f"{self.key.node_id}@{self.addr}"

    def submit(self, *msgs: object) -> bytes:
        """Sign ``msgs`` from this member's key, admit and gossip: the tx hash."""
        ledger = self.chain.ledger
        seq = ledger.account(self.key.address).sequence + self.mempool.pending_from(
            self.key.address)
        raw = sign_tx(self.key, CHAIN, sequence=seq, msgs=msgs).encode()
        result = self.mempool.add(raw)
        assert result.accepted, result.reason
        self.txs.publish(raw)
        return result.tx_hash


async def _drain(channel: trio.MemoryReceiveChannel[Delivered]) -> None:
    async with channel:
        async for _ in channel:
            pass


@attrs.define(eq=False)
class MarketNet:
    network: MemoryNetwork
    nursery: trio.Nursery
    validators: int = 4
    cache: VerifyCache = attrs.field(factory=VerifyCache)
    members: list[Member] = attrs.field(factory=list)

    async def start(self, k: PrivateKey, index: int, *, validator: bool,
                    peers: list[Member]) -> Member:
        addr = f"10.9.0.{index + 1}:26656"
        gossip = GossipService(
            transport=MemoryTransport(self.network, k, CHAIN, addr),
            rng=random.Random(index), pubsub_params=PubSubParams(),
            peer_params=PeerParams(pex_interval=1e9, backoff_base=0.05, backoff_max=0.2),
            persistent=[PeerAddr.parse(m.peer_addr) for m in peers])
        chain = ChainService(gossip=gossip, key=k if validator else None,
                             genesis=genesis(self.validators), timeouts=FAST,
                             verify_cache=self.cache, now_ms=now_ms,
                             status_interval=0.2, catchup_delay=0.5, name=f"n{index}")
        mempool = Mempool.for_ledger(chain.ledger)
        chain.mempool = mempool
        txs = TxGossip(gossip, mempool)
        MarketValidators(chain_id=CHAIN, view=lm.LedgerView(chain.ledger.store), now_ms=now_ms,
                         cache=self.cache).install(gossip.pubsub)
        await self.nursery.start(gossip.run)
        await self.nursery.start(txs.run)
        for topic in MARKET_TOPICS:
            self.nursery.start_soon(_drain, gossip.subscribe(topic))
        await self.nursery.start(chain.run)
        member = Member(key=k, addr=addr, gossip=gossip, chain=chain, mempool=mempool, txs=txs)
        self.members.append(member)
        return member

    async def start_validators(self) -> list[Member]:
        out: list[Member] = []
        for i, k in enumerate(VALIDATORS[:self.validators]):
            out.append(await self.start(k, i, validator=True, peers=list(out)))
        return out


async def wait_for(cond: Callable[[], bool], *, limit: float = 60.0, step: float = 0.05) -> None:
    with trio.fail_after(limit):
        while not cond():  # noqa: ASYNC110 - polls state other tasks change, bounded
            await trio.sleep(step)


async def wait_tx(member: Member, tx: bytes, limit: float = 30.0) -> int:
    """The height of the block that holds ``tx`` (found through the block store)."""
    from p2pakash.ledger.txs import tx_hash

    found: list[int] = []

    def seen() -> bool:
        for height in range(max(1, member.chain.height - 20), member.chain.height + 1):
            block = member.chain.block(height)
            if block is not None and any(tx_hash(raw) == tx for raw in block.txs):
                found.append(height)
                return True
        return False

    await wait_for(seen, limit=limit)
    return found[0]


class SimProvider:
    """A provider from the real market helpers (see the module docstring)."""

    def __init__(self, member: Member, attributes: tuple[Attribute, ...], *,
                 price: int = 1000) -> None:
        self.member = member
        self.key = member.key
        self.attributes = attributes
        self.price = price
        self.orders: dict[tuple[str, int], Order] = {}
        self.manifests: dict[str, bytes] = {}  # lease -> manifest accepted

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        gossip = self.member.gossip
        gossip.register(SendManifest, self._on_manifest)
        gossip.register(LeaseStatusRequest, self._on_status)
        gossip.register(LeaseLogsRequest, self._on_logs)
        channel = gossip.subscribe(TOPIC_ORDERS)
        task_status.started()
        async with channel:
            async for item in channel:
                self._on_order(wire.decode(item.data, Order))

    def _on_order(self, order: Order) -> None:
        self.orders[(order.owner, order.body.deployment.dseq)] = order
        for gseq, group in enumerate(order.body.groups, start=1):
            oid = order.order_id(gseq)
            mismatch = matching.match_group(group, self.attributes, {})
            offer = matching.offer_for(group, self.attributes) if mismatch is None else None
            expiry = now_ms() + 120_000
            if mismatch is not None or offer is None:
                reason = mismatch.reason if mismatch else DeclineReason.NO_CAPACITY
                text = mismatch.text if mismatch else "no GPU free"
                body = DeclineBody(order=oid, order_digest=order.digest,
                                   provider=self.key.address, reason=reason, text=text,
                                   expiry_ms=expiry)
                data = wire.encode(sign_decline(self.key, CHAIN, body))
                self.member.gossip.publish(TOPIC_DECLINES, data)
                continue
            bid = BidBody(order=oid, order_digest=order.digest, provider=self.key.address,
                          price=min(self.price, group.max_price), expiry_ms=expiry,
                          resources=tuple(OfferedUnit(resources=r, count=c) for r, c in offer))
            self.member.gossip.publish(TOPIC_BIDS, wire.encode(sign_bid(self.key, CHAIN, bid)))

    def _on_manifest(self, peer: NodeID, item: object) -> None:
        assert isinstance(item, SendManifest)
        lid = item.lease_id
        try:
            verify_request(item, CHAIN, now_ms())
            rec = lm.get_lease(self.member.chain.ledger.store, lid)
            if rec is None or lid.provider != self.key.address:
                raise RefusedRequest(f"no lease {lid} with this provider")
            order = self.orders[(lid.owner, lid.dseq)]
            if manifest_version(json.loads(item.manifest)) != order.body.manifest_hash:
                raise RefusedRequest("manifest version validation failed")
        except (RefusedRequest, KeyError, ValueError) as exc:
            self.member.gossip.send_to(peer, ManifestAck(lease_id=lid, ok=False, error=str(exc)))
            return
        self.manifests[str(lid)] = item.manifest
        self.member.gossip.send_to(peer, ManifestAck(lease_id=lid, ok=True, error=""))

    def _on_status(self, peer: NodeID, item: object) -> None:
        assert isinstance(item, LeaseStatusRequest)
        try:
            verify_request(item, CHAIN, now_ms())
        except RefusedRequest as exc:
            self.member.gossip.send_to(peer, LeaseStatus(lease_id=item.lease_id, state="",
                                                         services=(), error=str(exc)))
            return
        state = "running" if str(item.lease_id) in self.manifests else "pending"
        self.member.gossip.send_to(peer, LeaseStatus(lease_id=item.lease_id, state=state,
                                                     services=(), error=""))

    def _on_logs(self, peer: NodeID, item: object) -> None:
        assert isinstance(item, LeaseLogsRequest)
        lines = tuple(LogEntry(service="web", replica=0, stream="stdout", line=f"line {i}")
                      for i in range(item.tail))
        self.member.gossip.send_to(peer, LeaseLogs(lease_id=item.lease_id, lines=lines,
                                                   error=""))


def address(k: PrivateKey) -> str:
    return crypto.address(k.public)
