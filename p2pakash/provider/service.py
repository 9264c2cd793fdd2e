"""ProviderService: the trio driver of a provider (bids, leases, manifests, containers, pay).

Rules and invariants (DESIGN.md §1, reference/akash.md §2):
* Orders come from gossip topic ``orders``. An order the node's market validator accepted
  (``market.accepted_order``) is used as decoded and verified there; any other is decoded,
  checked and verified here. The bid engine (pure) decides; pricing runs in
  worker threads (``trio.to_thread``, at most ``pricing_threads`` at once). A raising or
  nonsensical pricing plugin is a PluginError in the log and a decline; the service goes on.
  Bids (topic ``bids``) and declines (``declines``, rate limited) go back to the order's
  tenant along the way the order came (gossip ``reply``): a few hops, not a flood of the
  network. They are published on their topic instead with ``publish_bids`` (for pricing
  plugins that follow competing bids) or when this node holds no way back.
* Chain events of every committed block drive leases: ``lease_created`` for this provider
  -> the reservation becomes the lease's and the manifest is awaited (``manifest_timeout``
  -> ``CloseLease{MANIFEST_TIMEOUT}``); for another provider -> our reservation is released.
  ``lease_closed`` for this provider -> containers are torn down at once (the same block).
* A manifest is accepted only from the lease's tenant (signed request), for an active lease
  of this provider, with Akash's version hash equal to the order's ``manifest_hash`` and
  matching the leased group; it is then deployed by the executor. Status and logs are served
  to the lease's tenant only. Every refusal is answered with its reason, never by crashing.
* Txs (CreateProvider/UpdateProvider at start, CloseLease, Withdraw every
  ``withdraw_period``) are signed with the next free sequence, admitted to the local
  mempool and published on ``txs``.
* Deploys and teardowns of one lease are serialised by a per-lease lock; a deploy that
  finishes after the lease closed is torn down. No nursery is stored: work goes through
  bounded channels to worker tasks of ``run``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from p2pakash import crypto, wire
from p2pakash.chain import ChainService
from p2pakash.config import ProviderConfig
from p2pakash.consensus.types import Block
from p2pakash.errors import DecodeError, ExecutorError, InvalidSignature, PluginError
from p2pakash.executor.base import ContainerState, Executor
from p2pakash.gossip.caches import TokenBucket, trim_oldest
from p2pakash.gossip.service import Delivered, GossipService
from p2pakash.ledger.blocks import BlockResult
from p2pakash.ledger.txs import Event, decode_tx, sign_tx
from p2pakash.market import ledger_market as lm
from p2pakash.market.orders import (
    Bid,
    DeclineBody,
    InvalidMarketMessage,
    LeaseID,
    Order,
    check_order,
    sign_bid,
    sign_decline,
)
from p2pakash.market.orders import verify as verify_market
from p2pakash.market.sdl.manifest import ManifestGroup
from p2pakash.market.sdl.resources import Attribute
from p2pakash.market.validators import (
    TOPIC_BIDS,
    TOPIC_DECLINES,
    TOPIC_ORDERS,
    MarketValidators,
)
from p2pakash.mempool import Mempool
from p2pakash.plugins.manager import PluginManager
from p2pakash.plugins.types import GPURecord
from p2pakash.provider import messages as pm
from p2pakash.provider.bidengine import BidEngine, EngineParams, PriceRequest, Won
from p2pakash.provider.inventory import (
    Capacity,
    Inventory,
    gpu_capabilities,
    storage_capabilities,
)
from p2pakash.provider.manifest_json import (
    ManifestError,
    check_against_order,
    group_for,
    parse_manifest,
)
from p2pakash.provider.store import LeaseRecord, LeaseStore

log = logging.getLogger(__name__)
MAX_ORDER_ROUTES = 4096  # orders whose gossip message ID is kept for answering
Job = Callable[[], Awaitable[None]]


@attrs.define(eq=False)
class LeaseRun:
    won: Won
    state: str = "pending"  # one of messages.LEASE_STATES
    deadline: float = 0.0  # trio time by which the manifest must arrive
    manifest: bytes = b""
    group: ManifestGroup | None = None
    error: str = ""
    closing: bool = False
    lock: trio.Lock = attrs.Factory(trio.Lock)


def provider_capacity(cfg: ProviderConfig, gpus: Iterable[GPURecord]) -> Capacity:
    """What the provider offers: its configured CPU, memory and storage and the probed GPUs
    (``PluginManager.probe_gpus``)."""
    return Capacity(cpu_millis=cfg.cpu_millis, memory_bytes=cfg.memory_bytes,
                    storage=cfg.storage_bytes, gpus=tuple(gpus))


def provider_attributes(cfg: ProviderConfig, capacity: Capacity) -> tuple[Attribute, ...]:
    """Config attributes plus the GPU and storage capabilities the inventory has."""
    own = tuple(Attribute(key=k, value=v) for k, v in sorted(cfg.attributes.items()))
    keys = {a.key for a in own}
    extra = [a for a in (*gpu_capabilities(capacity.gpus),
                         *storage_capabilities(capacity.storage)) if a.key not in keys]
    return own + tuple(extra)


def _lease_of(event: Event) -> LeaseID | None:
    try:
        return LeaseID(owner=event.get("owner") or "", dseq=int(event.get("dseq") or ""),
                       gseq=int(event.get("gseq") or ""), oseq=int(event.get("oseq") or ""),
                       provider=event.get("provider") or "")
    except ValueError:
        return None


class ProviderService:
    def __init__(self, *, key: crypto.PrivateKey, cfg: ProviderConfig, gossip: GossipService,
                 chain: ChainService, mempool: Mempool, publish: Callable[[bytes], None],
                 plugins: PluginManager, executor: Executor, host_uri: str = "",
                 state_dir: Path | None = None, now_ms: Callable[[], int] | None = None,
                 tick: float = 0.1, market: MarketValidators | None = None) -> None:
        self.key = key
        self.market = market  # the node's validators of the market topics, if installed
        self.address = key.address
        self.cfg = cfg
        self.gossip = gossip
        self.chain = chain
        self.chain_id = chain.chain_id
        self.mempool = mempool
        self.publish_tx = publish
        self.plugins = plugins
        self.executor = executor
        self.host_uri = cfg.host_uri or host_uri or f"p2p://{gossip.node_id}"
        self.store = LeaseStore(state_dir)
        self.now_ms = now_ms or chain.now_ms
        self.tick = tick
        self.leases: dict[LeaseID, LeaseRun] = {}
        self.engine: BidEngine | None = None
        self.attributes: tuple[Attribute, ...] = ()
        self.stats: dict[str, int] = {}
        self._declines = TokenBucket(rate=cfg.declines_per_second,
                                     burst=max(1.0, 5 * cfg.declines_per_second), now=0.0)
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[tuple[str, object]](256)
        self._price_send, self._price_recv = trio.open_memory_channel[PriceRequest](1024)
        self._jobs_send, self._jobs_recv = trio.open_memory_channel[Job](4096)
        self._next_withdraw = 0.0
        self._order_msgs: dict[bytes, bytes] = {}  # Order.digest -> its gossip message ID

    def _count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    # ------------------------------------------------------------ start-up

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        gpus = await trio.to_thread.run_sync(self.plugins.probe_gpus)
        capacity = provider_capacity(self.cfg, gpus)
        self.attributes = provider_attributes(self.cfg, capacity)
        ms = 1000
        self.engine = BidEngine(
            provider=self.address, attributes=self.attributes, inventory=Inventory(capacity),
            params=EngineParams(bid_ttl_ms=round(self.cfg.bid_ttl * ms),
                                grace_ms=round(self.cfg.reservation_grace * ms)))
        for cls in (pm.SendManifest, pm.LeaseStatusRequest, pm.LeaseLogsRequest):
            self.gossip.register(cls, self._on_direct)
        orders = self.gossip.subscribe(TOPIC_ORDERS)
        bids = self.gossip.subscribe(TOPIC_BIDS)
        blocks = self.chain.subscribe_blocks()
        self._register()
        await self._adopt()
        self._next_withdraw = trio.current_time() + self.cfg.withdraw_period
        log.info("provider %s: %d CPU millis, %d bytes memory, storage %s, %d GPU(s), "
                 "pricing %r, executor %r", self.address, capacity.cpu_millis,
                 capacity.memory_bytes, dict(capacity.storage), len(gpus),
                 self.plugins.config.pricing, self.executor.name)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._orders, orders)
            nursery.start_soon(self._bids, bids)
            nursery.start_soon(self._blocks, blocks)
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._requests)
            for _ in range(self.cfg.pricing_threads):
                nursery.start_soon(self._pricer)
            for _ in range(4):
                nursery.start_soon(self._worker)
            task_status.started()

    def _register(self) -> None:
        if not self.cfg.register:
            return
        rec = lm.get_provider(self.chain.ledger.store, self.address)
        if rec is None:
            self._submit(lm.CreateProvider(host_uri=self.host_uri, attributes=self.attributes,
                                           bond=self.cfg.bond))
        elif (rec.attributes, rec.host_uri, rec.bond) != (self.attributes, self.host_uri,
                                                          self.cfg.bond):
            self._submit(lm.UpdateProvider(host_uri=self.host_uri, attributes=self.attributes,
                                           bond=self.cfg.bond))

    async def _adopt(self) -> None:
        """After a restart: take back the active leases, re-attach their containers."""
        assert self.engine is not None
        records = self.store.load()
        try:
            running = set(await self.executor.adopt())
        except ExecutorError as exc:
            log.error("provider: cannot list containers to adopt: %s", exc)
            running = set()
        active = {rec.id for rec in lm.provider_leases(self.chain.ledger.store, self.address)
                  if rec.state is lm.LeaseState.ACTIVE}
        for lid in sorted(active):
            record = records.get(lid)
            won = None if record is None else self.engine.adopt(lid, record.order, record.gseq)
            if won is None or record is None:
                log.error("provider: active lease %s has no usable record; closing it", lid)
                self._submit(lm.CloseLease(lease=lid, reason=lm.LeaseCloseReason.UNSPECIFIED))
                continue
            run = LeaseRun(won=won, deadline=trio.current_time() + self.cfg.manifest_timeout)
            self.leases[lid] = run
            if record.manifest:
                groups, _ = parse_manifest(record.manifest)
                run.manifest, run.group = record.manifest, group_for(
                    groups, record.order.group(record.gseq).name)
                run.state = "deploying"
                log.info("provider: adopting lease %s (%s)", lid,
                         "containers running" if str(lid) in running else "redeploying")
                self._job(functools.partial(self._deploy, lid))
        for lease in sorted(running - {str(lid) for lid in active}):
            log.info("provider: removing containers of ended lease %s", lease)
            self._job(functools.partial(self._teardown_str, lease))
        for lid in set(records) - active:
            self.store.delete(lid)

    # ------------------------------------------------------------ txs

    def _submit(self, *msgs: object) -> bool:
        ledger = self.chain.ledger
        sequence = ledger.account(self.address).sequence + self.mempool.pending_from(
            self.address)
        tx = sign_tx(self.key, self.chain_id, sequence=sequence, msgs=msgs,
                     fee=ledger.params().min_fee).encode()
        result = self.mempool.add(tx)
        names = ", ".join(type(m).__name__ for m in msgs)
        if not result.accepted:
            log.warning("provider: tx (%s) refused by the mempool: %s", names, result.reason)
            return False
        self.publish_tx(tx)
        log.info("provider: sent %s", names)
        return True

    # ------------------------------------------------------------ orders and bids

    async def _orders(self, channel: trio.MemoryReceiveChannel[Delivered]) -> None:
        async with channel:
            async for item in channel:
                self._on_order(item.data, item.msg_id)

    def _on_order(self, data: bytes, msg_id: bytes = b"") -> None:
        assert self.engine is not None
        order = None if self.market is None else self.market.accepted_order(data)
        if order is None:
            try:
                order = wire.decode(data, Order)
                check_order(order.body)
                verify_market(order, self.chain_id, self.chain.verify_cache)
            except (DecodeError, InvalidMarketMessage, InvalidSignature) as exc:
                log.debug("provider: order dropped: %s", exc)
                return
            self._count("orders_checked_here")
        self._count("orders")
        if msg_id:
            self._remember_order(order.digest, msg_id)
        self.plugins.order_seen(order)  # a failing plugin is logged by the manager
        audits = lm.get_audits(self.chain.ledger.store, self.address)
        for out in self.engine.consider(order, self.now_ms(), audits):
            if isinstance(out, DeclineBody):
                self._send_decline(out)
                continue
            try:
                self._price_send.send_nowait(out)
            except trio.WouldBlock:
                self._send_decline(self._give_up(out, "provider busy"))

    def _remember_order(self, digest: bytes, msg_id: bytes) -> None:
        """Keep the order's gossip message ID to answer it (``_answer``); bounded."""
        self._order_msgs[digest] = msg_id
        trim_oldest(self._order_msgs, MAX_ORDER_ROUTES)

    def _give_up(self, request: PriceRequest, why: str) -> DeclineBody:
        assert self.engine is not None
        body = self.engine.priced(request, PluginError(why), self.now_ms())
        assert isinstance(body, DeclineBody)
        return body

    async def _pricer(self) -> None:
        assert self.engine is not None
        async for request in self._price_recv:
            answer: Any
            try:
                answer = await trio.to_thread.run_sync(
                    self.plugins.bid_price, request.group, request.resources, request.context)
            except PluginError as exc:
                log.error("provider: no bid for order %s: %s", request.order_id, exc)
                answer = exc
            except Exception as exc:  # a bug anywhere in pricing must not stop the provider
                log.exception("provider: pricing order %s failed", request.order_id)
                answer = PluginError(f"{type(exc).__name__}: {exc}")
            body = self.engine.priced(request, answer, self.now_ms())
            if isinstance(body, DeclineBody):
                self._send_decline(body)
            elif body is not None:
                bid = sign_bid(self.key, self.chain_id, body)
                self._answer(TOPIC_BIDS, wire.encode(bid), body.order_digest)
                self._count("bids")
                log.info("provider: bid %d uakt/block on order %s", body.price, body.order)

    def _send_decline(self, body: DeclineBody) -> None:
        self._count("declines")
        if not self.cfg.send_declines or not self._declines.take(trio.current_time()):
            return
        decline = sign_decline(self.key, self.chain_id, body)
        self._answer(TOPIC_DECLINES, wire.encode(decline), body.order_digest)

    def _answer(self, topic: str, data: bytes, order_digest: bytes) -> None:
        """A bid or decline: back the order's way, or published (module rules)."""
        to = self._order_msgs.get(order_digest)
        if self.cfg.publish_bids or to is None or not self.gossip.reply(to, topic, data):
            self._count(f"{topic}_published")
            self.gossip.publish(topic, data)

    async def _bids(self, channel: trio.MemoryReceiveChannel[Delivered]) -> None:
        """Competing bids, for pricing plugins that follow them (``undercut``)."""
        record = getattr(self.plugins.pricing, "record_competing_bid", None)
        async with channel:
            async for item in channel:
                if record is None:
                    continue
                try:
                    bid = wire.decode(item.data, Bid)
                except DecodeError:
                    continue
                if bid.provider != self.address:
                    record(str(bid.body.order), bid.body.price)

    # ------------------------------------------------------------ chain events

    async def _blocks(self, channel: trio.MemoryReceiveChannel[tuple[Block, BlockResult]]
                      ) -> None:
        async with channel:
            async for block, result in channel:
                events = [e for r in result.tx_results for e in r.events]
                for event in (*events, *result.events):
                    if event.type in ("lease_created", "lease_closed"):
                        lid = _lease_of(event)
                        if lid is not None:
                            self._on_lease_event(event.type, lid, event.get("reason_name"),
                                                 block.txs)

    def _on_lease_event(self, kind: str, lid: LeaseID, reason: str | None,
                        txs: Sequence[bytes] = ()) -> None:
        assert self.engine is not None
        if kind == "lease_created":
            won = self.engine.lease_created(lid)
            if lid.provider != self.address:
                return
            if won is None:
                # no reservation here (e.g. this provider restarted after bidding): the chain
                # checked our signature on the bid, so take the resources now if they are free
                order = _leased_order(txs, lid)
                if order is not None:
                    won = self.engine.adopt(lid, order, lid.gseq)
                    if won is not None:
                        log.info("provider: lease %s for a bid made before a restart;"
                                 " resources taken now", lid)
            if won is None:
                log.error("provider: lease %s created for an order this provider does not "
                          "hold resources for; closing it", lid)
                self._submit(lm.CloseLease(lease=lid, reason=lm.LeaseCloseReason.UNSPECIFIED))
                return
            self.leases[lid] = LeaseRun(won=won,
                                        deadline=trio.current_time() + self.cfg.manifest_timeout)
            self.store.save(LeaseRecord(lease_id=lid, order=won.order, gseq=won.gseq,
                                        manifest=b""))
            self._count("leases")
            log.info("provider: won lease %s; waiting for the manifest", lid)
            self._notify(lambda: self.plugins.lease_created(lid))
        elif lid.provider == self.address:
            self.engine.lease_closed(lid)
            run = self.leases.get(lid)
            if run is not None:
                run.state = "closed"
            self.store.delete(lid)
            log.info("provider: lease %s closed (%s); tearing down", lid, reason)
            self._job(lambda: self._teardown(lid))
            self._notify(lambda: self.plugins.lease_closed(lid, reason or ""))

    def _notify(self, call: Callable[[], list[PluginError]]) -> None:
        async def job() -> None:
            await trio.to_thread.run_sync(call)
        self._job(job)

    async def _ticker(self) -> None:
        assert self.engine is not None
        while True:
            await trio.sleep(self.tick)
            now = trio.current_time()
            self.engine.expire(self.now_ms())
            self.engine.forget()  # bound the memory of considered order groups
            for lid, run in list(self.leases.items()):
                if run.state == "pending" and not run.closing and now >= run.deadline:
                    log.warning("provider: no manifest for lease %s in %.0f s; closing it",
                                lid, self.cfg.manifest_timeout)
                    run.closing = True
                    self._submit(lm.CloseLease(lease=lid,
                                               reason=lm.LeaseCloseReason.MANIFEST_TIMEOUT))
                if run.state == "closed" and not run.lock.locked():
                    del self.leases[lid]
            if now >= self._next_withdraw:
                self._next_withdraw = now + self.cfg.withdraw_period
                active = [lid for lid, run in self.leases.items() if run.state != "closed"]
                if active:
                    self._submit(*(lm.Withdraw(lease=lid) for lid in active))

    # ------------------------------------------------------------ containers

    def _job(self, job: Job) -> None:
        try:
            self._jobs_send.send_nowait(job)
        except trio.WouldBlock:
            log.error("provider: job queue full; a deploy or teardown was dropped")

    async def _worker(self) -> None:
        async for job in self._jobs_recv:
            try:
                await job()
            except Exception:
                log.exception("provider: job failed")

    async def _deploy(self, lid: LeaseID) -> None:
        run = self.leases.get(lid)
        if run is None or run.group is None:
            return
        async with run.lock:
            if run.state == "closed":
                return
            try:
                statuses = await self.executor.deploy(str(lid), run.group,
                                                      gpus=run.won.allocation.gpus)
            except ExecutorError as exc:
                run.state, run.error = "failed", str(exc)
                log.error("provider: deploying lease %s failed: %s", lid, exc)
                return
            failed = [s for s in statuses if s.state is ContainerState.FAILED]
            if run.state != "closed":
                run.state = "failed" if failed else "running"
                run.error = "; ".join(f"{s.service}/{s.replica}: {s.error}" for s in failed)
            log.info("provider: lease %s deployed: %s", lid, run.state)
        if run.state == "closed":
            await self._teardown(lid)

    async def _teardown(self, lid: LeaseID) -> None:
        run = self.leases.get(lid)
        if run is None:
            await self._teardown_str(str(lid))
            return
        async with run.lock:
            await self._teardown_str(str(lid))

    async def _teardown_str(self, lease: str) -> None:
        try:
            await self.executor.teardown(lease)
        except ExecutorError as exc:
            log.error("provider: teardown of lease %s failed: %s", lease, exc)

    # ------------------------------------------------------------ tenant requests

    def _on_direct(self, peer: str, item: object) -> None:
        try:
            self._inbox_send.send_nowait((peer, item))
        except trio.WouldBlock:
            self._count("requests_dropped")

    async def _requests(self) -> None:
        async for peer, item in self._inbox_recv:
            if isinstance(item, pm.SendManifest):
                reply: object = self._on_manifest(item)
            elif isinstance(item, pm.LeaseStatusRequest):
                reply = await self._on_status(item)
            elif isinstance(item, pm.LeaseLogsRequest):
                reply = await self._on_logs(item)
            else:  # pragma: no cover - only the registered types arrive
                continue
            self.gossip.send_to(crypto.NodeID(peer), reply)

    def _check(self, msg: pm.Request) -> LeaseRun:
        pm.verify_request(msg, self.chain_id, self.now_ms())
        run = self.leases.get(msg.lease_id)
        if msg.lease_id.provider != self.address or run is None:
            raise pm.RefusedRequest(f"no lease {msg.lease_id} with this provider")
        return run

    def _on_manifest(self, msg: pm.SendManifest) -> pm.ManifestAck:
        lid = msg.lease_id
        try:
            run = self._check(msg)
            if run.state == "closed" or run.closing:
                raise pm.RefusedRequest(f"lease {lid} is closed")
            order, gseq = run.won.order, run.won.gseq
            groups, version = parse_manifest(msg.manifest)
            if version != order.body.manifest_hash:
                raise ManifestError("manifest version validation failed: hash "
                                    f"{version.hex()} != the order's "
                                    f"{order.body.manifest_hash.hex()}")
            if run.manifest:
                if run.manifest == msg.manifest:
                    return pm.ManifestAck(lease_id=lid, ok=True, error="")
                raise pm.RefusedRequest(f"lease {lid} already has its manifest")
            group = group_for(groups, order.group(gseq).name)
            check_against_order(group, order.group(gseq))
        except (pm.RefusedRequest, ManifestError) as exc:
            self._count("manifests_refused")
            log.info("provider: manifest for %s refused: %s", lid, exc)
            return pm.ManifestAck(lease_id=lid, ok=False, error=str(exc))
        run.manifest, run.group, run.state = msg.manifest, group, "deploying"
        self.store.save(LeaseRecord(lease_id=lid, order=order, gseq=gseq,
                                    manifest=msg.manifest))
        self._job(lambda: self._deploy(lid))
        log.info("provider: manifest for lease %s accepted", lid)
        return pm.ManifestAck(lease_id=lid, ok=True, error="")

    async def _on_status(self, msg: pm.LeaseStatusRequest) -> pm.LeaseStatus:
        lid = msg.lease_id
        try:
            run = self._check(msg)
            statuses = [] if run.state in ("pending", "closed") else await self.executor.status(
                str(lid))
        except (pm.RefusedRequest, ExecutorError) as exc:
            return pm.LeaseStatus(lease_id=lid, state="", services=(), error=str(exc))
        replicas = tuple(pm.ReplicaStatus(
            service=s.service, replica=s.replica, state=str(s.state),
            ports=tuple(sorted(s.ports.items())), error=s.error) for s in statuses)
        return pm.LeaseStatus(lease_id=lid, state=run.state, services=replicas,
                              error=run.error)

    async def _on_logs(self, msg: pm.LeaseLogsRequest) -> pm.LeaseLogs:
        lid = msg.lease_id
        try:
            self._check(msg)
            lines = await self.executor.logs(str(lid), service=msg.service or None,
                                             tail=msg.tail)
        except (pm.RefusedRequest, ExecutorError) as exc:
            return pm.LeaseLogs(lease_id=lid, lines=(), error=str(exc))
        return pm.LeaseLogs(lease_id=lid, lines=tuple(
            pm.LogEntry(service=x.service, replica=x.replica, stream=x.stream, line=x.line)
            for x in lines), error="")


def _leased_order(txs: Sequence[bytes], lid: LeaseID) -> Order | None:
    """The order of the ``CreateLease`` for ``lid`` among a block's ``txs``, if any."""
    for raw in txs:
        try:
            tx = decode_tx(raw)
        except DecodeError:
            continue
        for msg in tx.body.msgs:
            if isinstance(msg, lm.CreateLease) and msg.bid.lease_id == lid:
                return msg.order
    return None
