"""The gossip service: the trio driver of a transport, the peer manager and pubsub.

Rules and invariants:
* The cores (PeerManager, PubSub) are sans-IO; this module is the only place that
  feeds them events (with ``now`` from trio's clock, virtual under MockClock) and
  carries out their actions. Every call into a core happens on trio's single thread
  between checkpoints, so cores need no locks.
* One reader and one writer task per connection. The writer batches every message
  queued for that peer into one ``Frame`` per transport frame. Per-peer outbound queues
  are bounded: when a peer cannot keep up, messages to it are dropped and counted, never
  buffered without limit, and the node never blocks on a slow peer.
* A peer that sends bytes we cannot decode, breaks the frame limits, or is reported by
  a core as misbehaving is banned for a while and disconnected; the node carries on.
* Other layers (consensus, market) register handlers for their own message types and
  send direct messages with ``send_to``; ``connect`` dials a peer on demand outside the
  outbound budget (the peer manager's "too many outbound" does not refuse it); gossip
  topics are used through ``publish``, ``subscribe`` and ``set_validator``; answers to one
  message go back to its publisher only with ``reply`` (topics made ``answerable``).
* No stored or injected nurseries: dials run in the nursery of ``_dialer``; inbound
  connections run in the transport's own ``serve``.
* In-memory fast path (a ``MemoryNetwork(items=True)``, the simulator's): a link carries
  decoded items, not bytes. Each item is still sized once (per item object, network-wide:
  ``MemoryConnection.size_of``) for sizes, counters and the frame limit, but nobody
  decodes: the receiver's transport calls the link's sink at the delivery time, which
  does what ``_on_frame`` (the byte reader's, after decoding) does, inline. The per-link
  writer task is replaced by one flusher task per service that batches every link's
  queued items after a checkpoint, as the writer does per link.
  Queue bounds, drops, bans and the cores' inputs are the same; TCP is unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from collections.abc import Callable, Sequence

import trio

from p2pakash import wire
from p2pakash.crypto import NodeID
from p2pakash.errors import HandshakeError, RemoteProtocolError
from p2pakash.gossip import messages as m
from p2pakash.gossip import peers as pm
from p2pakash.gossip import pubsub as ps
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.link_writer import EncodeMemo, flush_links, write_link
from p2pakash.gossip.memory import Batch, MemoryConnection, Payload
from p2pakash.gossip.service_types import (
    MAX_ON_DEMAND,
    PEER_SET,
    PEER_TYPES,
    PUBSUB_SET,
    PUBSUB_TYPES,
    Delivered,
    GossipSettings,
    GossipStats,
    Handler,
    Link,
    goodbye_frame,
)
from p2pakash.gossip.transport import Connection, ConnectionClosed, Transport

log = logging.getLogger(__name__)

class GossipService:
    """Runs one node's gossip layer over any Transport (TCP or in-memory)."""

    def __init__(
        self,
        *,
        transport: Transport,
        rng: random.Random,
        peer_params: pm.PeerParams,
        pubsub_params: ps.PubSubParams,
        seeds: Sequence[PeerAddr] = (),
        persistent: Sequence[PeerAddr] = (),
        settings: GossipSettings | None = None,
        self_addr: str = "",
    ) -> None:
        self.transport = transport
        self.node_id: NodeID = transport.node_id
        self.settings = settings or GossipSettings()
        self.peer_params = peer_params
        self.peers = pm.PeerManager(local_id=self.node_id, params=peer_params, rng=rng,
                                    seeds=seeds, persistent=persistent, self_addr=self_addr)
        self.pubsub = ps.PubSub(local_id=self.node_id, params=pubsub_params, rng=rng)
        self.stats = GossipStats()
        self.listen_addr = ""
        self._links: dict[NodeID, Link] = {}
        self._subscribers: dict[str, list[trio.MemorySendChannel[Delivered]]] = {}
        self._handlers: dict[type, Handler] = {}
        self._dial_send, self._dial_recv = trio.open_memory_channel[PeerAddr](1024)
        self._dialing: set[NodeID] = set()
        self._wake = trio.Event()
        self._call_at: Callable[[float, Callable[[], None]], bool] | None = None
        self._tick_gen = 0
        self._next_heartbeat = 0.0
        self._encoded = EncodeMemo()  # the byte path's writers encode each item once
        self._dirty: list[Link] = []  # fast links with pending items
        self._flush_asked = False  # of the flusher task or the network clock
        self._flush_lot = trio.lowlevel.ParkingLot()
        self._seeds = frozenset(seeds)
        self._wanted = frozenset(seeds) | frozenset(persistent)
        self._dial_failures: dict[NodeID, int] = {}
        self._on_demand: set[NodeID] = set()  # connect() targets: outside the outbound budget
        self._serial = 0  # connections so far (``session``)

    # ------------------------------------------------------------ public API

    @property
    def connected(self) -> frozenset[NodeID]:
        return frozenset(self._links)

    def session(self, peer: NodeID) -> int | None:
        """The number of our current connection to ``peer`` (None: not connected)."""
        link = self._links.get(peer)
        return None if link is None else link.serial

    def register(self, item_type: type, handler: Handler) -> None:
        """Route direct messages of ``item_type`` (another layer's) to ``handler``."""
        self._handlers[item_type] = handler

    def send_to(self, peer: NodeID, item: object) -> bool:
        """Queue a direct message for a connected peer; False when not connected or full."""
        link = self._links.get(peer)
        if link is None:
            return False
        if link.fast:
            if len(link.pending) >= self.settings.queue_size:
                self.stats.dropped_out += 1
                return False
            link.pending.append(item)
            if not link.dirty:
                link.dirty = True
                self._dirty.append(link)
                if not self._flush_asked:
                    self._flush_asked = True
                    self._ask_flush(link)
            return True
        try:
            link.send.send_nowait(item)
        except trio.WouldBlock:
            self.stats.dropped_out += 1
            return False
        return True

    def connect(self, addr: PeerAddr) -> None:
        """Dial ``addr`` now, outside the peer manager's outbound budget (a tenant reaching
        the provider it leased from); a no-op when connected or already dialling."""
        if addr.node_id in self._links or addr.node_id == self.node_id:
            return
        if len(self._on_demand) < MAX_ON_DEMAND:
            self._on_demand.add(addr.node_id)
        with contextlib.suppress(trio.WouldBlock):
            self._dial_send.send_nowait(addr)

    def set_validator(self, topic: str, validator: ps.Validator) -> None:
        self.pubsub.set_validator(topic, validator)

    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[Delivered]:
        send, recv = trio.open_memory_channel[Delivered](self.settings.subscriber_queue)
        first = topic not in self._subscribers
        self._subscribers.setdefault(topic, []).append(send)
        if first:
            self._apply(self.pubsub.subscribe(self._now(), topic))
        return recv

    def relay(self, topic: str) -> None:
        """Join ``topic`` without a local subscription: its messages are validated and
        forwarded like any other, and delivered to no local channel (a node that relays
        the market topics for its peers)."""
        if topic not in self._subscribers:
            self._subscribers[topic] = []
            self._apply(self.pubsub.subscribe(self._now(), topic))

    def unsubscribe(self, topic: str) -> None:
        """Leave ``topic``: its local subscriptions end, peers are told, the mesh is pruned."""
        for send in self._subscribers.pop(topic, ()):
            send.close()
        self._apply(self.pubsub.unsubscribe(self._now(), topic))

    def publish(self, topic: str, data: bytes) -> bytes:
        """Publish to the topic; local subscribers get it too (once, like everyone else)."""
        published = self.pubsub.stats.published
        msg_id, actions = self.pubsub.publish(self._now(), topic, data)
        self._apply(actions)
        if self.pubsub.stats.published > published:
            self._deliver(ps.Deliver(topic=topic, data=data, msg_id=msg_id, source=self.node_id))
        return msg_id

    def answerable(self, topic: str) -> None:
        """Keep the way back of ``topic``'s messages so ``reply`` can answer them."""
        self.pubsub.answerable(topic)

    def reply(self, to: bytes, topic: str, data: bytes) -> bool:
        """Send an answer to message ``to`` back the way it came (``replies.py``): its
        publisher gets ``data`` as a message of ``topic``. False when this node holds no
        way back (``to`` unknown or expired) or its own validator refuses ``data``."""
        ok, actions = self.pubsub.reply(self._now(), to, topic, data)
        self._apply(actions)
        return ok

    def ban(self, peer: NodeID, reason: str) -> None:
        """Disconnect ``peer`` and refuse its node ID for ``ban_seconds``.

        The ban is by node ID only, as CometBFT marks a bad peer: honest peers that share
        the offender's IP (one machine, a NAT, a local test network) keep their links.
        """
        self.stats.bans += 1
        log.info("banning peer %s: %s", peer[:12], reason)
        self._apply(self.peers.ban(self._now(), peer, reason))

    # ------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.listen_addr = await nursery.start(self.transport.serve,
                                                       self._serve_connection)
                nursery.start_soon(self._dialer)
                call_at = getattr(self.transport, "call_at", None)
                if call_at is not None and call_at(self._now(), self._tick_once):
                    self._call_at = call_at  # the simulator's clock runs the ticks
                    self._next_heartbeat = self._now() + self.pubsub.params.heartbeat_interval
                else:
                    nursery.start_soon(self._ticker)
                nursery.start_soon(self._flusher)
                self._apply(self.peers.start(self._now()))
                task_status.started(self.listen_addr)
        finally:
            self._tick_gen += 1  # clock ticks still scheduled find a newer generation: stop
            self._call_at = None

    def _now(self) -> float:
        return trio.current_time()

    def _tick_once(self) -> None:
        """The first clock tick (``run``) starts generation ``_tick_gen``."""
        self._tick(self._tick_gen)

    def _tick(self, gen: int) -> None:
        """Under the simulator's EventClock, ``_ticker``'s loop as clock callbacks: one
        step, then the next at the same deadline. A wake (``_wake_ticker``) starts a new
        generation at once; older callbacks then do nothing."""
        call_at = self._call_at
        if gen != self._tick_gen or call_at is None:
            return
        now = self._now()
        if now >= self._next_heartbeat:
            self._apply(self.pubsub.heartbeat(now))
            self._next_heartbeat = now + self.pubsub.params.heartbeat_interval
        self._apply(self.peers.tick(now))
        if gen != self._tick_gen:
            return  # woken meanwhile: the new generation's step is already due
        deadline = min(self._next_heartbeat, self.peers.next_deadline(),
                       now + self.settings.tick_interval)
        call_at(max(deadline, now + 0.001), functools.partial(self._tick, gen))

    def _wake_ticker(self) -> None:
        call_at = self._call_at
        if call_at is None:
            self._wake.set()
            return
        self._tick_gen += 1
        call_at(self._now(), functools.partial(self._tick, self._tick_gen))

    async def _ticker(self) -> None:
        """Drive the cores' timers: peer manager ticks and pubsub heartbeats."""
        interval = self.pubsub.params.heartbeat_interval
        next_heartbeat = self._now() + interval
        while True:
            now = self._now()
            if now >= next_heartbeat:
                self._apply(self.pubsub.heartbeat(now))
                next_heartbeat = now + interval
            self._apply(self.peers.tick(now))
            deadline = min(next_heartbeat, self.peers.next_deadline(),
                           now + self.settings.tick_interval)
            with trio.move_on_at(max(deadline, now + 0.001)):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _dialer(self) -> None:
        async with trio.open_nursery() as nursery:
            async for addr in self._dial_recv:
                if addr.node_id in self._dialing or addr.node_id in self._links:
                    continue
                self._dialing.add(addr.node_id)
                nursery.start_soon(self._dial, addr)

    async def _dial(self, addr: PeerAddr) -> None:
        try:
            conn = await self.transport.dial(addr.hostport, expected=addr.node_id)
        except (OSError, HandshakeError, RemoteProtocolError, ConnectionClosed) as exc:
            self._dialing.discard(addr.node_id)
            self._on_demand.discard(addr.node_id)
            self._log_dial_failure(addr, exc)
            self._apply(self.peers.dial_failed(self._now(), addr, str(exc)))
            return
        self._dialing.discard(addr.node_id)
        self._dial_failures.pop(addr.node_id, None)
        await self._serve_connection(conn)

    def _log_dial_failure(self, addr: PeerAddr, exc: BaseException) -> None:
        """Seeds and persistent peers that cannot be reached are the user's business: say so
        (the first failure, then every tenth); other addresses come and go quietly."""
        if addr not in self._wanted:
            log.debug("dial %s failed: %s", addr, exc)
            return
        count = self._dial_failures.get(addr.node_id, 0) + 1
        self._dial_failures[addr.node_id] = count
        if count == 1 or count % 10 == 0:
            reason = str(exc) or type(exc).__name__
            log.warning("cannot reach %s (%s; attempt %d): %s", addr,
                        "seed" if addr in self._seeds else "persistent peer", count, reason)

    async def _serve_connection(self, conn: Connection) -> None:
        peer = conn.remote_id
        refusal = self.peers.accept(self._now(), peer, host=conn.remote_host,
                                    outbound=conn.outbound)
        if conn.outbound and peer in self._on_demand:
            self._on_demand.discard(peer)
            if refusal == pm.REFUSE_OUTBOUND:
                refusal = None  # connect() dials outside the outbound budget, as it says
        if refusal is not None:
            log.debug("refusing %s: %s", peer[:12], refusal)
            with trio.move_on_after(1):
                await conn.send(goodbye_frame(refusal))
            await conn.aclose()
            return
        send, recv = trio.open_memory_channel[object](self.settings.queue_size)
        link = Link(conn=conn, send=send, recv=recv, scope=trio.CancelScope(),
                     fast=isinstance(conn, MemoryConnection) and conn.can_attach)
        self._serial += 1
        link.serial = self._serial
        self._links[peer] = link
        log.info("peer connected %s %s %s", peer[:12], "out" if conn.outbound else "in",
                 conn.remote_listen_addr or conn.remote_host)
        try:
            with link.scope:
                now = self._now()
                self._apply(self.peers.connected(now, peer, host=conn.remote_host,
                                                 listen_addr=conn.remote_listen_addr,
                                                 outbound=conn.outbound))
                self._apply(self.pubsub.add_peer(now, peer, outbound=conn.outbound))
                if link.fast:
                    await self._fast_link(link)
                else:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(functools.partial(
                            write_link, link, settings=self.settings, stats=self.stats,
                            memo=self._encoded, broken=self._cancel_link))
                        await self._reader(link)
                        nursery.cancel_scope.cancel()
        finally:
            if self._links.get(peer) is link:
                del self._links[peer]
            now = self._now()
            self._apply(self.pubsub.remove_peer(now, peer))
            self._apply(self.peers.disconnected(now, peer))
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                if link.goodbye:
                    with contextlib.suppress(ConnectionClosed, OSError, trio.BrokenResourceError,
                                             trio.ClosedResourceError):
                        await conn.send(goodbye_frame(link.goodbye))
                await conn.aclose()
            log.info("peer disconnected %s%s", peer[:12],
                     f": {link.goodbye}" if link.goodbye else "")

    async def _reader(self, link: Link) -> None:
        conn = link.conn
        peer = conn.remote_id
        while True:
            try:
                payload = await conn.receive()
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError,
                    OSError):
                return
            except RemoteProtocolError as exc:
                self.ban(peer, f"protocol error: {exc}")
                return
            if not self._on_bytes(peer, payload) or peer not in self._links:
                return

    def _on_bytes(self, peer: NodeID, payload: bytes) -> bool:
        """Decode a frame's bytes and dispatch its items; False (``peer`` banned) if bad."""
        try:
            # The envelope is never hashed or signed: skip its canonical re-encode.
            frame = wire.decode(payload, m.Frame, max_size=self.settings.max_frame,
                                canonical=False)
        except RemoteProtocolError as exc:
            self.ban(peer, f"protocol error: {exc}")
            return False
        self._on_frame(peer, frame.items, len(payload))
        return True

    def _on_frame(self, peer: NodeID, items: Sequence[object], size: int) -> None:
        """A frame arrived from ``peer`` (decoded, or as items on the fast path)."""
        self.stats.frames_in += 1
        self.stats.bytes_in += size
        self.stats.items_in += len(items)
        now = self._now()
        self.peers.seen(now, peer)
        for item in items:
            self._dispatch(peer, item, now)
            if peer not in self._links:
                return

    async def _fast_link(self, link: Link) -> None:
        """Item mode: the transport's pump feeds ``_on_frame``; wait for the end."""
        conn = link.conn
        assert isinstance(conn, MemoryConnection)
        peer = conn.remote_id
        ended = trio.Event()

        now = conn.clock.now
        stats, links, seen, dispatch = self.stats, self._links, self.peers.seen, self._dispatch
        handle, publish, apply = self.pubsub.handle_publish, m.Publish, self._apply
        done = False

        def sink(payload: Payload | None) -> None:
            nonlocal done
            if done or link.closed:
                return
            if isinstance(payload, Batch):  # ``_on_frame``, inline: the per-frame path
                items = payload.items
                stats.frames_in += 1
                stats.bytes_in += payload.size
                stats.items_in += len(items)
                at = now()
                seen(at, peer)
                for item in items:
                    if type(item) is publish:  # ``_dispatch``'s first case, inline
                        actions = handle(at, peer, item)
                        if actions:
                            apply(actions)
                    else:
                        dispatch(peer, item, at)
                    if peer not in links:
                        return
                return
            if payload is None or not self._on_bytes(peer, payload):  # Goodbye, raw frames
                done = True
                ended.set()

        # Items queued before this point are already on ``_dirty`` (``send_to`` put them).
        conn.attach(sink)
        await ended.wait()

    async def _flusher(self) -> None:
        """Item mode: one batch per link with queued items, after a checkpoint (or
        ``flush_interval``), like ``link_writer.write_link`` does for its link. Under the
        simulator's EventClock the network clock calls ``_flush_dirty`` instead, once no task
        can run at the instant (``MemoryNetwork.flush_later``), and this task stays parked."""
        flush = self.settings.flush_interval
        while True:
            await self._flush_lot.park()
            if flush > 0:
                await trio.sleep(flush)
            else:
                await trio.lowlevel.checkpoint()
            self._flush_dirty()

    def _ask_flush(self, link: Link) -> None:
        conn = link.conn
        assert isinstance(conn, MemoryConnection)
        if self.settings.flush_interval > 0 or not conn.flush_later(self._flush_dirty):
            self._flush_lot.unpark()

    def _flush_dirty(self) -> None:
        self._flush_asked = False
        dirty, self._dirty = self._dirty, []
        flush_links(dirty, settings=self.settings, stats=self.stats, broken=self._cancel_link)

    def _dispatch(self, peer: NodeID, item: object, now: float) -> None:
        kind = type(item)  # messages are exact types: decoded, or the sender's own objects
        if kind in PUBSUB_SET:
            actions = self.pubsub.handle(now, peer, item)
            if actions:
                self._apply(actions)
        elif kind in PEER_SET:
            self._apply(self.peers.handle(now, peer, item))
        elif isinstance(item, m.Goodbye):
            log.info("peer %s says goodbye: %s", peer[:12], item.reason)
            self._close(peer, "")
        else:
            handler = self._handlers.get(type(item))
            if handler is None:
                self.ban(peer, f"unexpected message {type(item).__name__}")
                return
            try:
                handler(peer, item)
            except RemoteProtocolError as exc:
                self.ban(peer, f"{type(item).__name__}: {exc}")

    def _close(self, peer: NodeID, reason: str) -> None:
        link = self._links.get(peer)
        if link is not None:
            link.goodbye = reason
            self._cancel_link(link)

    @staticmethod
    def _cancel_link(link: Link) -> None:
        link.closed = True
        link.scope.cancel()

    # ------------------------------------------------------------ actions

    def _apply(self, actions: Sequence[object]) -> None:
        send_to, links, limit = self.send_to, self._links, self.settings.queue_size
        for action in actions:
            if type(action) is ps.Send:  # the usual action: no isinstance chain
                peer, item = action
                link = links.get(peer)
                # ``send_to`` to a link with items queued already, inline (a call less a copy)
                if link is not None and link.dirty and len(link.pending) < limit:
                    link.pending.append(item)
                else:
                    send_to(peer, item)
                continue
            if isinstance(action, (ps.Send, pm.SendTo)):
                send_to(action.peer, action.item)
            elif isinstance(action, ps.Deliver):
                self._deliver(action)
            elif isinstance(action, ps.Disconnect):
                self.ban(action.peer, action.reason)
            elif isinstance(action, pm.Dial):
                with contextlib.suppress(trio.WouldBlock):
                    self._dial_send.send_nowait(action.addr)
            elif isinstance(action, pm.Disconnect):
                self._close(action.peer, action.reason)
            else:
                raise TypeError(f"unknown action {action!r}")
            if isinstance(action, (pm.Dial, pm.Disconnect)):
                self._wake_ticker()  # the peer manager's deadlines may have moved

    def _deliver(self, action: ps.Deliver) -> None:
        item = Delivered(topic=action.topic, data=action.data, msg_id=action.msg_id,
                         source=action.source)
        for channel in self._subscribers.get(action.topic, ()):
            try:
                channel.send_nowait(item)
            except trio.WouldBlock:
                self.stats.dropped_local += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                continue


__all__ = ["PEER_TYPES", "PUBSUB_TYPES", "Delivered", "GossipService", "GossipSettings",
           "GossipStats", "Handler"]
