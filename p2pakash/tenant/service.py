"""TenantService: the tenant's side of the market, running inside the tenant's own node.

Rules and invariants:
* The node's key is the tenant's account: it signs orders, lease txs and provider requests.
* ``deploy`` is DESIGN.md §1 from the tenant's seat: SDL -> signed order on topic
  ``orders`` -> bids and declines collected from topics ``bids``/``declines`` (screened by
  ``plan.screen_bid``; each reported through ``emit`` as it arrives) until ``wait_s`` ends
  or every registered provider has answered every group -> one bid per group chosen
  (``plan.select``) -> one CreateLease tx for all groups (atomic) through the mempool and
  tx gossip -> the manifest sent to each winning provider over a direct authenticated link
  (``GossipService.send_to``; the provider's on-chain ``host_uri`` is its ``ID@host:port``,
  dialled when not connected) -> its ``ManifestAck``. The last event is always ``done``.
* Input errors (SDL, denomination, deposit, balance, unknown plugin) raise TenantError or
  SDLError before anything is published. Later failures end in ``done`` with ``ok: false``
  and the stage that failed; an order that drew no bid lists every decline's reason.
* Every wait is bounded (``TenantParams``); memory is bounded (last ``max_runs`` deploys,
  ``max_answers`` bids+declines per deploy). Late or unsolicited provider replies and bids
  for unknown orders are dropped; a reply never raises into the gossip layer.
* Tx sequence = committed sequence + this node's pending txs from the tenant; sign and
  ``mempool.add`` happen without a checkpoint between, so concurrent submits never clash.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any, Protocol

import attrs
import trio

from p2pakash import crypto, wire
from p2pakash.crypto import NodeID, is_node_id
from p2pakash.errors import DecodeError, InvalidSignature, PluginError
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.service import Delivered
from p2pakash.ledger import Ledger, bank
from p2pakash.ledger.txs import TxResult, sign_tx, tx_hash
from p2pakash.market import ledger_market as lm
from p2pakash.market.orders import (
    Bid,
    Decline,
    InvalidMarketMessage,
    LeaseID,
    Order,
    check_bid,
    check_decline,
    make_order,
    verify,
)
from p2pakash.market.validators import TOPIC_BIDS, TOPIC_DECLINES, TOPIC_ORDERS
from p2pakash.provider.messages import (
    LeaseLogs,
    LeaseLogsRequest,
    LeaseStatus,
    LeaseStatusRequest,
    ManifestAck,
    SendManifest,
    sign_request,
)
from p2pakash.tenant import plan
from p2pakash.tenant.plan import TenantError

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]
Reply = ManifestAck | LeaseStatus | LeaseLogs


class GossipLike(Protocol):
    """What the tenant uses of ``GossipService``."""

    @property
    def connected(self) -> frozenset[NodeID]: ...

    def register(self, item_type: type, handler: Callable[[NodeID, object], None]) -> None: ...

    def send_to(self, peer: NodeID, item: object) -> bool: ...

    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[Delivered]: ...

    def publish(self, topic: str, data: bytes) -> bytes: ...


class ChainLike(Protocol):
    @property
    def height(self) -> int: ...

    @property
    def ledger(self) -> Ledger: ...

    def subscribe_blocks(self) -> trio.MemoryReceiveChannel[Any]: ...


class MempoolLike(Protocol):
    def add(self, tx_bytes: bytes) -> Any: ...  # mempool.AddResult

    def pending_from(self, sender: str) -> int: ...


@attrs.frozen(kw_only=True)
class TenantParams:
    default_wait_s: float = 10.0
    max_wait_s: float = 300.0
    order_slack_ms: int = 60_000  # order expiry after the wait: room for the lease tx
    tx_timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    reply_timeout_s: float = 15.0
    manifest_attempts: int = 5  # a provider one block behind refuses a lease it has not seen
    manifest_retry_s: float = 0.5
    max_runs: int = 1_000
    max_answers: int = 500


@attrs.define(eq=False)
class DeployRun:
    """One ``deploy`` in memory: its order and the answers it drew (bids live off chain)."""

    order: Order
    prepared: plan.Prepared
    started: float
    emit: Emit
    status: str = "collecting"  # collecting | selecting | leasing | active | no_bids | failed
    bids: dict[tuple[int, str], Bid] = attrs.field(factory=dict)
    declines: dict[tuple[int, str], Decline] = attrs.field(factory=dict)
    refused: list[dict[str, Any]] = attrs.field(factory=list)
    error: str = ""
    changed: trio.Event = attrs.field(factory=trio.Event)

    @property
    def dseq(self) -> int:
        return self.order.body.deployment.dseq

    def answered(self, gseq: int) -> set[str]:
        return {p for (g, p) in (*self.bids, *self.declines) if g == gseq}


@attrs.define(eq=False)
class _Waiter:
    event: trio.Event = attrs.field(factory=trio.Event)
    value: Any = None


def _wall_ms() -> int:
    return int(time.time() * 1000)


class TenantService:
    def __init__(self, *, key: crypto.PrivateKey, gossip: GossipLike, chain: ChainLike,
                 mempool: MempoolLike, publish_tx: Callable[[bytes], object],
                 plugins: plan.BidSelector | None = None,
                 now_ms: Callable[[], int] = _wall_ms, params: TenantParams | None = None,
                 verify_cache: crypto.VerifyCache | None = None) -> None:
        self.key = key
        self.address = key.address
        self.gossip = gossip
        self.chain = chain
        self.mempool = mempool
        self.publish_tx = publish_tx
        self.plugins = plugins
        self.now_ms = now_ms
        self.params = params or TenantParams()
        self.cache = verify_cache or crypto.VerifyCache()
        self.runs: OrderedDict[int, DeployRun] = OrderedDict()
        self._by_digest: dict[bytes, DeployRun] = {}
        self._tx_waiters: dict[bytes, _Waiter] = {}
        self._replies: dict[tuple[type, LeaseID, NodeID], list[_Waiter]] = {}
        self._last_dseq = 0
        self.decoder: wire.DecodeMemo | None = None  # the simulator's nodes share one

    @property
    def chain_id(self) -> str:
        return self.chain.ledger.chain_id()

    # ------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        for reply in (ManifestAck, LeaseStatus, LeaseLogs):
            self.gossip.register(reply, self._on_reply)
        blocks = self.chain.subscribe_blocks()
        bids = self.gossip.subscribe(TOPIC_BIDS)
        declines = self.gossip.subscribe(TOPIC_DECLINES)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_blocks, blocks)
            nursery.start_soon(self._collect, bids, self._on_bid)
            nursery.start_soon(self._collect, declines, self._on_decline)
            task_status.started()

    async def _collect(self, channel: trio.MemoryReceiveChannel[Delivered],
                       handle: Callable[[bytes], None]) -> None:
        async with channel:
            async for item in channel:
                handle(item.data)

    async def _follow_blocks(self, channel: trio.MemoryReceiveChannel[Any]) -> None:
        async with channel:
            async for block, result in channel:
                waiters = self._tx_waiters
                for raw, res in zip(block.txs, result.tx_results, strict=True):
                    if not waiters:  # most blocks: nothing of ours is waiting
                        break
                    waiter = waiters.pop(tx_hash(raw), None)
                    if waiter is not None:
                        waiter.value = (block.height, res)
                        waiter.event.set()
                for ev in result.events:
                    if ev.type == "lease_closed" and ev.get("owner") == self.address:
                        log.info("lease %s/%s/%s of deployment %s closed: %s",
                                 ev.get("gseq"), ev.get("oseq"), ev.get("provider"),
                                 ev.get("dseq"), ev.get("reason_name"))

    # ------------------------------------------------------------ bids and declines

    def _on_bid(self, data: bytes) -> None:
        try:
            bid = wire.decode_via(self.decoder, data, Bid)
            check_bid(bid.body)
        except (DecodeError, InvalidMarketMessage):
            return
        run = self._by_digest.get(bid.body.order_digest)
        if run is None or run.status != "collecting":
            return
        key = (bid.body.order.gseq, bid.provider)
        if key in run.bids or len(run.bids) + len(run.declines) >= self.params.max_answers:
            return
        view = lm.LedgerView(self.chain.ledger.store)
        problem = plan.screen_bid(run.order, bid, chain_id=self.chain_id, now_ms=self.now_ms(),
                                  view=view, cache=self.cache)
        elapsed = self._elapsed_ms(run)
        if problem is not None:
            refused = {"event": "bid_refused", "dseq": run.dseq, "gseq": key[0],
                       "provider": bid.provider, "why": problem, "elapsed_ms": elapsed}
            if len(run.refused) < self.params.max_answers:
                run.refused.append(refused)
            run.emit(refused)
            return
        run.declines.pop(key, None)  # a bid supersedes an earlier decline
        run.bids[key] = bid
        run.emit(plan.bid_json(bid, elapsed))
        run.changed.set()

    def _on_decline(self, data: bytes) -> None:
        try:
            decline = wire.decode_via(self.decoder, data, Decline)
            check_decline(decline.body)
        except (DecodeError, InvalidMarketMessage):
            return
        run = self._by_digest.get(decline.body.order_digest)
        if run is None or run.status != "collecting":
            return
        oid = decline.body.order
        key = (oid.gseq, decline.provider)
        if (key in run.bids or key in run.declines
                or len(run.bids) + len(run.declines) >= self.params.max_answers
                or oid.deployment != run.order.body.deployment
                or not 1 <= oid.gseq <= len(run.order.body.groups)):
            return
        try:
            verify(decline, self.chain_id, self.cache)
        except InvalidSignature:
            return
        run.declines[key] = decline
        run.emit(plan.decline_json(decline, self._elapsed_ms(run)))
        run.changed.set()

    def _elapsed_ms(self, run: DeployRun) -> int:
        return int((trio.current_time() - run.started) * 1000)

    # ------------------------------------------------------------ deploy

    def _next_dseq(self) -> int:
        """Akash uses the block height; we take the larger of it and the last one + 1,
        skipping any dseq this owner already has on chain or in memory."""
        store = self.chain.ledger.store
        dseq = max(self.chain.height, self._last_dseq + 1, 1)
        while dseq in self.runs or lm.get_deployment(
                store, lm.DeploymentID(owner=self.address, dseq=dseq)) is not None:
            dseq += 1
        self._last_dseq = dseq
        return dseq

    def registered_providers(self) -> set[str]:
        store = self.chain.ledger.store
        return {rec.owner for _, rec in store.scan(lm.P + b"prov/", lm.ProviderRec)}

    async def deploy(self, text: str, *, source: str = "<sdl>", deposit: int | None = None,
                     select: str | None = None, wait_s: float | None = None,
                     denom_rates: Mapping[str, Fraction] | None = None,
                     emit: Emit = lambda _event: None) -> dict[str, Any]:
        """Run one deployment (module rules); returns the final ``done`` event."""
        p = self.params
        wait = p.default_wait_s if wait_s is None else wait_s
        if not 0 < wait <= p.max_wait_s:
            raise TenantError(f"--wait must be in (0, {p.max_wait_s:g}] seconds, got {wait:g}")
        plan.check_select(select, self.plugins)
        prepared = plan.prepare(text, source=source, denom_rates=denom_rates)
        store = self.chain.ledger.store
        min_deposit = lm.market_params(store).min_deposit
        amount = min_deposit if deposit is None else deposit
        if amount < min_deposit:
            raise TenantError(f"deposit {amount} uakt is below the chain's minimum "
                              f"{min_deposit} uakt")
        balance = bank.balance(store, self.address)
        if balance < amount:
            raise TenantError(f"account {self.address} holds {balance} uakt, less than the "
                              f"deposit {amount} uakt")
        dseq = self._next_dseq()
        try:
            order = make_order(self.key, self.chain_id, dseq=dseq, groups=prepared.groups,
                               manifest_hash=prepared.manifest_hash, deposit=amount,
                               expiry_ms=self.now_ms() + int(wait * 1000) + p.order_slack_ms)
        except InvalidMarketMessage as exc:
            raise TenantError(f"{source}: {exc}") from None
        run = DeployRun(order=order, prepared=prepared, started=trio.current_time(), emit=emit)
        self._remember(run)
        emit(plan.order_json(order, prepared))
        self.gossip.publish(TOPIC_ORDERS, wire.encode(order))
        try:
            return await self._finish(run, wait, select)
        except (TenantError, PluginError) as exc:
            stage = run.status
            if stage != "no_bids":
                run.status = "failed"
            return self._done(run, ok=False, stage=stage, error=str(exc))

    async def _finish(self, run: DeployRun, wait: float, select: str | None) -> dict[str, Any]:
        groups = range(1, len(run.order.body.groups) + 1)
        with trio.move_on_after(wait):
            while True:
                providers = self.registered_providers() - {self.address}
                if providers and all(providers <= run.answered(g) for g in groups):
                    break
                await run.changed.wait()
                run.changed = trio.Event()
        run.status = "selecting"
        chosen: list[Bid] = []
        for gseq in groups:
            offered = [b for (g, _), b in sorted(run.bids.items()) if g == gseq]
            bid = plan.select(run.order, offered, select, self.plugins)
            if bid is None:
                run.status = "no_bids"
                name = run.order.body.groups[gseq - 1].name
                why = "no bids" if not offered else "no bid was selected"
                run.emit({"event": "no_bids", "dseq": run.dseq, "gseq": gseq, "group": name,
                          "declines": [plan.decline_json(d, 0) for (g, _), d in
                                       sorted(run.declines.items()) if g == gseq],
                          "waited_ms": self._elapsed_ms(run)})
                raise TenantError(f"group {name!r} got {why} within {wait:g} s "
                                  f"({len(run.answered(gseq))} providers answered)")
            chosen.append(bid)
            run.emit({"event": "selected", "dseq": run.dseq, "gseq": gseq,
                      "provider": bid.provider, "price": bid.body.price,
                      "gpus": plan.gpu_models(bid), "by": select or "plugins"})
        run.status = "leasing"
        msgs = tuple(lm.CreateLease(order=run.order, bid=b) for b in chosen)
        height, _ = await self.submit(msgs, run=run)
        for bid in chosen:
            run.emit({"event": "lease", "dseq": run.dseq, "lease": plan.lease_ref(bid.lease_id),
                      "provider": bid.provider, "price": bid.body.price, "height": height})
        run.status = "active"
        errors = []
        for bid in chosen:
            ack = await self.send_manifest(bid.lease_id, run.prepared.manifest)
            run.emit({"event": "manifest", "dseq": run.dseq,
                      "lease": plan.lease_ref(bid.lease_id), "provider": bid.provider,
                      "accepted": ack.ok, "error": ack.error})
            if not ack.ok:
                errors.append(f"provider {bid.provider} refused the manifest: {ack.error}")
        if errors:
            return self._done(run, ok=False, stage="manifest", error="; ".join(errors),
                              leases=[plan.lease_ref(b.lease_id) for b in chosen])
        return self._done(run, ok=True, leases=[plan.lease_ref(b.lease_id) for b in chosen])

    def _done(self, run: DeployRun, *, ok: bool, **fields: Any) -> dict[str, Any]:
        run.error = fields.get("error", "")
        event = {"event": "done", "ok": ok, "dseq": run.dseq, "bids": len(run.bids),
                 "declines": len(run.declines), "elapsed_ms": self._elapsed_ms(run), **fields}
        run.emit(event)
        return event

    def _remember(self, run: DeployRun) -> None:
        self.runs[run.dseq] = run
        self._by_digest[run.order.digest] = run
        while len(self.runs) > self.params.max_runs:
            _, old = self.runs.popitem(last=False)
            self._by_digest.pop(old.order.digest, None)

    # ------------------------------------------------------------ txs

    async def submit(self, msgs: tuple[object, ...], *, run: DeployRun | None = None
                     ) -> tuple[int, TxResult]:
        """Sign, admit, gossip and wait for ``msgs`` in a block: (height, result).

        TenantError when the mempool refuses the tx, it fails in its block, or no block
        holds it within ``tx_timeout_s``."""
        ledger = self.chain.ledger
        seq = ledger.account(self.address).sequence + self.mempool.pending_from(self.address)
        raw = sign_tx(self.key, self.chain_id, sequence=seq, msgs=msgs).encode()
        h = tx_hash(raw)
        waiter = self._tx_waiters[h] = _Waiter()
        admitted = self.mempool.add(raw)
        if not admitted.accepted:
            del self._tx_waiters[h]
            raise TenantError(f"tx refused: {admitted.reason}")
        self.publish_tx(raw)
        if run is not None:
            run.emit({"event": "lease_tx", "dseq": run.dseq, "hash": h.hex()})
        with trio.move_on_after(self.params.tx_timeout_s):
            await waiter.event.wait()
        self._tx_waiters.pop(h, None)
        if waiter.value is None:
            raise TenantError(f"tx {h.hex()} not in a block after "
                              f"{self.params.tx_timeout_s:g} s")
        height, result = waiter.value
        if not result.ok:
            raise TenantError(f"tx {h.hex()} failed in block {height}: {result.log}")
        return height, result

    # ------------------------------------------------------------ provider requests

    async def send_manifest(self, lid: LeaseID, manifest: bytes) -> ManifestAck:
        """Send the manifest; a refusal is retried ``manifest_attempts`` times in all,
        ``manifest_retry_s`` apart (the provider's node may not have the lease's block yet).
        """
        ack = ManifestAck(lease_id=lid, ok=False, error="not sent")
        for attempt in range(self.params.manifest_attempts):
            if attempt:
                await trio.sleep(self.params.manifest_retry_s)
            try:
                peer = await self._provider_link(lid.provider)
                msg = sign_request(self.key, self.chain_id, SendManifest(
                    lease_id=lid, manifest=manifest, issued_ms=self.now_ms(), pubkey=b"",
                    signature=b""))
                reply = await self._request(peer, msg, ManifestAck, lid)
            except TenantError as exc:
                return ManifestAck(lease_id=lid, ok=False, error=str(exc))
            assert isinstance(reply, ManifestAck)
            ack = reply
            if ack.ok:
                break
            log.info("manifest for %s refused (attempt %d): %s", lid, attempt + 1, ack.error)
        return ack

    async def lease_status(self, lid: LeaseID) -> LeaseStatus:
        peer = await self._provider_link(lid.provider)
        msg = sign_request(self.key, self.chain_id, LeaseStatusRequest(
            lease_id=lid, issued_ms=self.now_ms(), pubkey=b"", signature=b""))
        reply = await self._request(peer, msg, LeaseStatus, lid)
        assert isinstance(reply, LeaseStatus)
        return reply

    async def lease_logs(self, lid: LeaseID, *, service: str = "", tail: int = 100
                         ) -> LeaseLogs:
        peer = await self._provider_link(lid.provider)
        msg = sign_request(self.key, self.chain_id, LeaseLogsRequest(
            lease_id=lid, service=service, tail=tail, issued_ms=self.now_ms(), pubkey=b"",
            signature=b""))
        reply = await self._request(peer, msg, LeaseLogs, lid)
        assert isinstance(reply, LeaseLogs)
        return reply

    async def _provider_link(self, provider: str) -> NodeID:
        """The provider's node ID, connected (dialled from its on-chain host_uri if need be)."""
        rec = lm.get_provider(self.chain.ledger.store, provider)
        if rec is None:
            raise TenantError(f"provider {provider} is not registered on chain")
        uri = rec.host_uri.removeprefix("p2p://")
        if is_node_id(uri) and NodeID(uri) in self.gossip.connected:
            return NodeID(uri)  # "p2p://ID": reachable only over an existing link
        try:
            addr = PeerAddr.parse(uri)
        except ValueError as exc:
            raise TenantError(f"provider {provider} host_uri {rec.host_uri!r} is not a node "
                              f"address (ID@host:port), or names a node not connected: "
                              f"{exc}") from None
        if addr.node_id in self.gossip.connected:
            return addr.node_id
        connect = getattr(self.gossip, "connect", None)
        if connect is None:
            raise TenantError(f"not connected to provider {provider} ({addr}) and this node "
                              f"cannot dial on demand")
        connect(addr)
        with trio.move_on_after(self.params.connect_timeout_s):
            while addr.node_id not in self.gossip.connected:  # noqa: ASYNC110 - no event
                await trio.sleep(0.02)
            return addr.node_id
        raise TenantError(f"cannot connect to provider {provider} at {addr} within "
                          f"{self.params.connect_timeout_s:g} s")

    async def _request(self, peer: NodeID, msg: object, reply: type, lid: LeaseID) -> Reply:
        key = (reply, lid, peer)
        waiter = _Waiter()
        self._replies.setdefault(key, []).append(waiter)
        try:
            if not self.gossip.send_to(peer, msg):
                raise TenantError(f"cannot send to provider {lid.provider}: link closed or "
                                  f"its queue is full")
            with trio.move_on_after(self.params.reply_timeout_s):
                await waiter.event.wait()
        finally:
            queue = self._replies.get(key, [])
            if waiter in queue:
                queue.remove(waiter)
            if not queue:
                self._replies.pop(key, None)
        if waiter.value is None:
            raise TenantError(f"provider {lid.provider} did not answer the "
                              f"{type(msg).__name__} within {self.params.reply_timeout_s:g} s")
        return waiter.value  # type: ignore[no-any-return]

    def _on_reply(self, peer: NodeID, item: object) -> None:
        """A provider's answer: wake the oldest matching request; drop anything else."""
        if not isinstance(item, ManifestAck | LeaseStatus | LeaseLogs):
            return
        queue = self._replies.get((type(item), item.lease_id, peer))
        if not queue:
            return
        waiter = queue.pop(0)
        waiter.value = item
        waiter.event.set()
