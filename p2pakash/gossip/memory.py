"""In-memory transport for tests and the simulator: the Transport interface, no sockets.

Rules and invariants:
* No encryption and no signatures: the ``MemoryNetwork`` object knows every listener's real
  key, so a dial hands the dialer the listener's true identity and vice versa. Nothing can
  be forged inside one process, and skipping the crypto keeps 1,000 simulated nodes cheap.
  The same identity checks as TCP still apply: other chain, wrong expected ID and
  self-connection raise HandshakeError; an unknown address (nobody serving) or a
  partitioned pair raises OSError.
* Each direction of a connection is a bounded FIFO of ``(deliver_at, payload)``; ``send``
  waits while it is full (back-pressure). Latency is applied on the receiving side:
  ``receive`` takes the head and sleeps until ``deliver_at``. ``deliver_at = max(previous
  deliver_at, now + latency)`` (+ ``len / bandwidth`` with a bandwidth), so each direction
  is FIFO like TCP. A dial costs one round trip of virtual time.
* Loss and partitions drop frames at send time (loss draws from the network's injected
  ``random.Random``); frames already in flight when a partition starts are delivered.
  Counters: ``frames_sent``/``bytes_sent`` count every frame handed to the network,
  ``frames_dropped`` those of them lost or cut by a partition.
* ``set_link(a, b, ...)`` overrides latency/loss for the pair in both directions (or only
  a->b with ``directed=True``); per-direction overrides win over undirected ones.
* A frame longer than the receiver's ``max_frame`` makes its ``receive`` raise
  RemoteProtocolError and closes the connection. ``aclose`` lets the peer drain what was
  already sent, then its ``receive`` raises ConnectionClosed (the end arrives after the
  link latency, even across a partition); its ``send`` raises ConnectionClosed at once.
* No background tasks and no stored nurseries: ``serve`` runs handlers (and, on an
  ``items`` network, the delivery pump) in its own nursery; everything else is waits on
  parking lots and ``sleep_until``, so trio's MockClock with autojump gives virtual time.
* Item mode (``MemoryNetwork(items=True)``, the simulator's fast path): besides bytes, a
  connection can carry an already-decoded batch of frame items (``send_items``, with the
  size its encoding has, for counters and bandwidth). The receiving side may ``attach`` a
  sink instead of calling ``receive``: the listening transport's one pump task then calls
  ``sink(payload)`` at each frame's delivery time (``None`` marks the end of the stream),
  in delivery-time order and per-direction FIFO, with the same latency, loss, bandwidth
  and partition rules. No per-connection reader task and no decode: the cost of a frame
  is one heap push and one call. Default networks (``items=False``) carry bytes only.
* The network clock (``run_clock``, item mode; ``memory_clock.DeliveryClock``): one task
  delivers every attached pipe's frames, through each receiver's ``Inbox`` (a receiver's
  frames due at one instant are delivered together), and the pumps stay idle; under the
  simulator's ``EventClock`` deliveries run in the clock's idle hook, which also runs the
  services' flushes (``flush_later``).
"""

from __future__ import annotations

import errno
import heapq
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

import trio

from p2pakash.crypto import NodeID, PrivateKey, PublicKey
from p2pakash.errors import LocalProtocolError, RemoteProtocolError
from p2pakash.gossip.item_size import ItemSizer
from p2pakash.gossip.memory_clock import DeliveryClock, Inbox
from p2pakash.gossip.secret import check_peer
from p2pakash.gossip.transport import ConnectionClosed, Handler, parse_addr, run_handler

log = logging.getLogger(__name__)

LatencyModel = Callable[[NodeID, NodeID, random.Random], float]


class LinkLatency(Protocol):
    """A ``LatencyModel`` that also gives a link's fixed part: ``link(src, dst)`` is
    ``(base, jitter)`` and ``model(src, dst, rng)`` equals ``max(0, base * (1 + jitter *
    (2 * rng.random() - 1)))`` (no draw when ``jitter <= 0``). The network asks once per
    pipe and draws the jitter itself (same draws, no call per frame)."""

    def __call__(self, src: NodeID, dst: NodeID, rng: random.Random) -> float: ...

    def link(self, src: NodeID, dst: NodeID) -> tuple[float, float]: ...
SIZE_CACHE = 65_536  # items whose encoded size the network remembers


class Batch:
    """Decoded frame items in flight on an item-mode network, with their encoded size."""

    __slots__ = ("items", "size")

    def __init__(self, items: tuple[object, ...], size: int) -> None:
        self.items = items
        self.size = size

    def __len__(self) -> int:
        return self.size


Payload = bytes | Batch
Sink = Callable[[Payload | None], None]  # None: the peer closed, nothing more will come


class _Pipe:
    """One direction of a connection."""

    __slots__ = ("blocked", "capacity", "eof_at", "last_at", "link", "pump", "queue",
                 "reader_closed", "readers", "sink", "writer_closed", "writers")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queue: deque[tuple[float, Payload | None]] = deque()
        self.last_at = float("-inf")
        self.eof_at = float("-inf")
        self.writer_closed = False
        self.reader_closed = False
        self.readers = trio.lowlevel.ParkingLot()
        self.writers = trio.lowlevel.ParkingLot()
        self.blocked = 0  # writers parked in ``writers`` (a count: no call per frame)
        self.link: tuple[float, float] | None = None  # the model's (base, jitter), if it has
        self.sink: Sink | None = None
        self.pump: _Pump | None = None

    def deliver_head(self) -> None:
        """Called by the pump at the head's delivery time (item mode, sink attached)."""
        if not self.queue:
            return
        _, payload = self.queue.popleft()
        if self.blocked:
            self.writers.unpark()
        sink = self.sink
        if sink is not None and not self.reader_closed:
            sink(payload)


class _Pump:
    """Per listening transport: delivers due frames of attached pipes to their sinks, by a
    deadline of its own at its earliest frame. While the network clock runs, frames go to
    the clock's heap instead (``DeliveryClock.schedule``) and the pump has nothing to do."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network
        self.heap: list[tuple[float, int, _Pipe]] = []
        self.seq = 0
        self.scope: trio.CancelScope | None = None
        self.lot = trio.lowlevel.ParkingLot()
        self.inbox: Inbox = network.clock.inbox()  # this receiver's, on the network clock

    def push(self, at: float, pipe: _Pipe) -> None:
        if self.network.clock.running:
            self.inbox.put(at, pipe)
            return
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, pipe))
        scope = self.scope
        if scope is not None and at < scope.deadline:
            scope.deadline = at

    async def run(self) -> None:
        heap = self.heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                heapq.heappop(heap)[2].deliver_head()
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self.scope = scope
                await self.lot.park()
            self.scope = None


class MemoryNetwork:
    """The shared medium: listeners by address, link properties, partitions, counters."""

    def __init__(self, rng: random.Random, *, latency: float | LatencyModel = 0.0,
                 loss: float = 0.0, bandwidth: float | None = None,
                 buffer_frames: int = 1024, items: bool = False,
                 resolution: float = 0.0) -> None:
        if not 0.0 <= loss <= 1.0:
            raise ValueError(f"loss must be within 0..1, got {loss}")
        if bandwidth is not None and bandwidth <= 0:
            raise ValueError(f"bandwidth must be positive (bytes per second), got {bandwidth}")
        self.rng = rng
        self.latency = latency
        self.loss = loss
        self.bandwidth = bandwidth
        self.buffer_frames = buffer_frames
        self.items = items
        if not resolution >= 0.0:
            raise ValueError(f"resolution must not be negative, got {resolution}")
        self.resolution = resolution
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_dropped = 0
        self.listeners: dict[str, MemoryTransport] = {}
        self._sizer = ItemSizer(max_items=SIZE_CACHE)
        self.clock = DeliveryClock()
        self._groups: dict[NodeID, int] | None = None
        self._links: dict[tuple[NodeID, NodeID], tuple[float | None, float | None]] = {}
        self._directed: dict[tuple[NodeID, NodeID], tuple[float | None, float | None]] = {}

    # ------------------------------------------------------------ faults

    def partition(self, groups: Sequence[Collection[NodeID]]) -> None:
        """Only nodes of one group can talk; nodes named in no group form one more group."""
        mapping: dict[NodeID, int] = {}
        for index, group in enumerate(groups):
            for node in group:
                if mapping.get(node, index) != index:
                    raise ValueError(f"node {node} is in two partition groups")
                mapping[node] = index
        self._groups = mapping

    def heal(self) -> None:
        self._groups = None

    def connected(self, a: NodeID, b: NodeID) -> bool:
        groups = self._groups
        return groups is None or groups.get(a, -1) == groups.get(b, -1)

    def set_link(self, a: NodeID, b: NodeID, *, latency: float | None = None,
                 loss: float | None = None, directed: bool = False) -> None:
        """Override latency and/or loss between a and b; None keeps what is set now."""
        if loss is not None and not 0.0 <= loss <= 1.0:
            raise ValueError(f"loss must be within 0..1, got {loss}")
        table = self._directed if directed else self._links
        old_latency, old_loss = table.get((a, b), (None, None))
        entry = (old_latency if latency is None else latency, old_loss if loss is None else loss)
        table[(a, b)] = entry
        if not directed:
            table[(b, a)] = entry

    def clear_links(self) -> None:
        self._links.clear()
        self._directed.clear()

    def _override(self, src: NodeID, dst: NodeID) -> tuple[float | None, float | None]:
        lat, loss = self._directed.get((src, dst), (None, None))
        if lat is None or loss is None:
            ulat, uloss = self._links.get((src, dst), (None, None))
            lat = ulat if lat is None else lat
            loss = uloss if loss is None else loss
        return lat, loss

    def link_latency(self, src: NodeID, dst: NodeID) -> float:
        lat = self._override(src, dst)[0] if self._links or self._directed else None
        if lat is not None:
            return lat
        model = self.latency
        return model if isinstance(model, (int, float)) else model(src, dst, self.rng)

    def link_loss(self, src: NodeID, dst: NodeID) -> float:
        loss = self._override(src, dst)[1] if self._links or self._directed else None
        return self.loss if loss is None else loss

    # ------------------------------------------------------------ clock

    async def run_clock(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                        ) -> None:
        """Item mode: deliver every attached pipe's frames from one heap (``DeliveryClock``).
        Run it in a task that outlives the transports; pumps deliver by themselves when it
        is not running."""
        await self.clock.run(task_status=task_status)

    @property
    def clock_running(self) -> bool:
        return self.clock.running

    def flush_later(self, flush: Callable[[], None]) -> bool:
        """Ask the clock to call ``flush`` once no task can run at this virtual instant;
        False (not taken) unless it runs on an ``EventClock``."""
        return self.clock.flush_later(flush)

    # ------------------------------------------------------------ frames

    def item_size(self, item: object) -> int:
        """Encoded size of a frame item, computed once per item object for the whole
        network (``item_size.ItemSizer``)."""
        return self._sizer.size(item)

    def _carry(self, src: NodeID, dst: NodeID, pipe: _Pipe, payload: Payload, size: int
               ) -> None:
        self.frames_sent += 1
        self.bytes_sent += size
        link = pipe.link
        if (link is not None and self.loss <= 0.0 and self._groups is None
                and not self._links and not self._directed and self.bandwidth is None):
            # the simulator's usual frame: a known (base, jitter), nothing to drop or override
            base, jitter = link
            at = base if jitter <= 0.0 else base * (1.0 + jitter * (2.0 * self.rng.random()
                                                                    - 1.0))
            at = self.clock.now() + (at if at > 0.0 else 0.0)
        else:
            arrival = self._arrival(src, dst, pipe, size)
            if arrival is None:
                return
            at = arrival
        if at < pipe.last_at:
            at = pipe.last_at
        if self.resolution:
            at = math.ceil(at / self.resolution - 1e-6) * self.resolution  # float noise
        pipe.last_at = at
        pipe.queue.append((at, payload))
        pump = pipe.pump
        if pump is not None:
            if self.clock.running:
                slot = pump.inbox.slots.get(at)  # ``Inbox.put``'s usual case, inline
                if slot is not None:
                    slot.append(pipe)
                else:
                    pump.inbox.put(at, pipe)
            else:
                pump.push(at, pipe)
        elif pipe.readers:
            pipe.readers.unpark()

    def _arrival(self, src: NodeID, dst: NodeID, pipe: _Pipe, size: int) -> float | None:
        """``_carry``'s general case: the frame's arrival before the FIFO and grid rules, or
        None when it is lost or cut by a partition (counted)."""
        lat: float | None = None
        loss: float | None = None
        if self._links or self._directed:
            lat, loss = self._override(src, dst)
        if loss is None:
            loss = self.loss
        groups = self._groups
        if ((groups is not None and groups.get(src, -1) != groups.get(dst, -1))
                or (loss > 0.0 and self.rng.random() < loss)):
            self.frames_dropped += 1
            return None
        if lat is None:
            link = pipe.link
            if link is None:
                model = self.latency
                if isinstance(model, (int, float)):
                    lat = model
                elif hasattr(model, "link"):  # ``LinkLatency``: per pipe, jitter drawn here
                    link = pipe.link = model.link(src, dst)
                else:
                    lat = model(src, dst, self.rng)
            if link is not None:
                base, jitter = link
                lat = base if jitter <= 0.0 else max(
                    0.0, base * (1.0 + jitter * (2.0 * self.rng.random() - 1.0)))
            assert lat is not None
        at = self.clock.now() + lat
        if at < pipe.last_at:
            at = pipe.last_at
        if self.bandwidth is not None:
            at += size / self.bandwidth
        return at


class MemoryConnection:
    """One end of an in-memory connection (see the module rules)."""

    def __init__(self, network: MemoryNetwork, *, local_id: NodeID, remote_id: NodeID,
                 remote_pubkey: PublicKey, remote_listen_addr: str, remote_host: str,
                 outbound: bool, max_frame: int, remote_version: str, out_pipe: _Pipe,
                 in_pipe: _Pipe, pump: _Pump | None = None) -> None:
        self.local_id = local_id
        self.remote_id = remote_id
        self.remote_pubkey = remote_pubkey
        self.remote_listen_addr = remote_listen_addr
        self.remote_host = remote_host
        self.remote_version = remote_version
        self.outbound = outbound
        self.max_frame = max_frame
        self._network = network
        self._out = out_pipe
        self._in = in_pipe
        self._pump = pump  # the local transport's, when it is serving on an item network
        self._closed = False
        self.size_of: Callable[[object], int] = network._sizer.size  # = ``item_size``
        self.clock = network.clock  # its ``now()`` is trio's time, cheaper on an EventClock

    def __repr__(self) -> str:
        way = "to" if self.outbound else "from"
        return f"<MemoryConnection {self.local_id[:8]} {way} {self.remote_id[:8]}>"

    async def send(self, payload: bytes) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if len(payload) > self.max_frame:
            raise LocalProtocolError(
                f"frame of {len(payload)} bytes exceeds the limit of {self.max_frame}")
        pipe = self._out
        while True:
            if self._closed:
                raise ConnectionClosed("connection is closed")
            if pipe.reader_closed:
                raise ConnectionClosed("peer closed the connection")
            if len(pipe.queue) < pipe.capacity:
                break
            pipe.blocked += 1
            try:
                await pipe.writers.park()
            finally:
                pipe.blocked -= 1
        self._network._carry(self.local_id, self.remote_id, pipe, payload, len(payload))
        await trio.lowlevel.cancel_shielded_checkpoint()

    def flush_later(self, flush: Callable[[], None]) -> bool:
        """``MemoryNetwork.flush_later``: True when the network clock will call ``flush``."""
        return self._network.flush_later(flush)

    @property
    def can_attach(self) -> bool:
        """Item mode: ``send_items`` and ``attach`` are available on this connection."""
        return self._pump is not None

    def send_items(self, items: tuple[object, ...], size: int) -> bool:
        """Item mode: hand a batch of frame items (encoded size ``size``) to the network
        without waiting; False (nothing sent) when the direction's buffer is full.
        ConnectionClosed once either side closed."""
        if self._closed:
            raise ConnectionClosed("connection is closed")
        pipe = self._out
        if pipe.reader_closed:
            raise ConnectionClosed("peer closed the connection")
        if size > self.max_frame:
            raise LocalProtocolError(
                f"frame of {size} bytes exceeds the limit of {self.max_frame}")
        if len(pipe.queue) >= pipe.capacity:
            return False
        self._network._carry(self.local_id, self.remote_id, pipe, Batch(items, size), size)
        return True

    def attach(self, sink: Sink) -> None:
        """Item mode: deliver every incoming payload to ``sink`` at its delivery time,
        ``None`` once the peer closed and everything it sent was delivered. ``receive``
        must not be used afterwards."""
        pump = self._pump
        if pump is None:
            raise LocalProtocolError("attach needs an item network and a serving transport")
        pipe = self._in
        pipe.sink, pipe.pump = sink, pump
        for at, _ in pipe.queue:
            pump.push(at, pipe)
        if pipe.writer_closed:
            self._queue_eof(pipe)

    def _queue_eof(self, pipe: _Pipe) -> None:
        if pipe.pump is not None and not pipe.reader_closed:
            pipe.queue.append((pipe.eof_at, None))
            pipe.pump.push(pipe.eof_at, pipe)

    async def receive(self) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        pipe = self._in
        waited = False
        while True:
            if self._closed:
                raise ConnectionClosed("connection is closed")
            if pipe.queue:
                at, payload = pipe.queue[0]
                if at > trio.current_time():
                    await trio.sleep_until(at)
                    waited = True
                    continue
                pipe.queue.popleft()
                pipe.writers.unpark()
                if not isinstance(payload, bytes):  # a Batch or end marker: item mode only
                    self._close()
                    raise LocalProtocolError("receive on an item-mode connection; use attach")
                if len(payload) > self.max_frame:
                    self._close()
                    raise RemoteProtocolError(
                        f"frame of {len(payload)} bytes exceeds the limit of {self.max_frame}")
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return payload
            if pipe.writer_closed:
                if pipe.eof_at > trio.current_time():
                    await trio.sleep_until(pipe.eof_at)
                    continue
                raise ConnectionClosed("peer closed the connection")
            await pipe.readers.park()
            waited = True

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        out, inn = self._out, self._in
        out.writer_closed = True
        out.eof_at = max(out.last_at,
                         trio.current_time() + self._network.link_latency(self.local_id,
                                                                          self.remote_id))
        out.readers.unpark_all()
        out.writers.unpark_all()
        self._queue_eof(out)
        inn.reader_closed = True
        inn.queue.clear()
        inn.readers.unpark_all()
        inn.writers.unpark_all()

    async def aclose(self) -> None:
        self._close()
        await trio.lowlevel.checkpoint()


class MemoryTransport:
    """A node's endpoint on a ``MemoryNetwork``; ``listen`` is its synthetic address."""

    def __init__(self, network: MemoryNetwork, key: PrivateKey, chain_id: str, listen: str, *,
                 max_frame: int = 1 << 20, version: str = "p2pakash/0.1",
                 backlog: int = 64) -> None:
        self.host = parse_addr(listen)[0]
        self.network = network
        self.key = key
        self.node_id = key.node_id
        self.chain_id = chain_id
        self.listen = listen
        self.listen_addr = listen
        self.max_frame = max_frame
        self.version = version
        self.backlog = backlog
        self._inbox: trio.MemorySendChannel[MemoryConnection] | None = None
        self._pump: _Pump | None = None

    def __repr__(self) -> str:
        return f"<MemoryTransport {self.node_id[:8]} at {self.listen}>"

    def call_at(self, when: float, fn: Callable[[], None]) -> bool:
        """Run ``fn`` at virtual time ``when`` from the network's clock (``DeliveryClock
        .call_at``); False (not taken) unless that clock runs on an EventClock."""
        return self.network.clock.call_at(when, fn)

    async def serve(self, handler: Handler, *,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = self.network.listeners
        if self.listen in listeners:
            raise OSError(errno.EADDRINUSE, f"address {self.listen} is already in use")
        send, receive = trio.open_memory_channel[MemoryConnection](self.backlog)
        listeners[self.listen] = self
        self._inbox = send
        try:
            async with trio.open_nursery() as nursery:
                if self.network.items:
                    self._pump = _Pump(self.network)
                    nursery.start_soon(self._pump.run)
                task_status.started(self.listen)
                async for conn in receive:
                    nursery.start_soon(run_handler, handler, conn)
        finally:
            if listeners.get(self.listen) is self:
                del listeners[self.listen]
            self._inbox = None
            self._pump = None
            while True:  # refuse whatever was accepted but never handled
                try:
                    receive.receive_nowait()._close()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break

    async def dial(self, addr: str, *, expected: NodeID | None = None) -> MemoryConnection:
        net = self.network
        target = net.listeners.get(addr)
        if target is None:
            await trio.lowlevel.checkpoint()
            raise ConnectionRefusedError(errno.ECONNREFUSED,
                                         f"connection refused: nobody listens on {addr}")
        a, b = self.node_id, target.node_id
        if not net.connected(a, b):
            await trio.lowlevel.checkpoint()
            raise OSError(errno.EHOSTUNREACH, f"{addr} is unreachable (network partition)")
        await trio.sleep(net.link_latency(a, b) + net.link_latency(b, a))  # connect + handshake
        target = net.listeners.get(addr)  # look again: the world moved during the round trip
        if target is None or target._inbox is None:
            raise ConnectionRefusedError(errno.ECONNREFUSED,
                                         f"connection refused: nobody listens on {addr}")
        b = target.node_id
        if not net.connected(a, b):
            raise OSError(errno.EHOSTUNREACH, f"{addr} is unreachable (network partition)")
        if target.chain_id != self.chain_id:
            log.info("%s refused a dial from chain %r", target, self.chain_id)
        check_peer(local_id=a, chain_id=self.chain_id, peer_chain_id=target.chain_id,
                   peer_pubkey=target.key.public, expected=expected)
        up, down = _Pipe(net.buffer_frames), _Pipe(net.buffer_frames)
        mine = MemoryConnection(net, local_id=a, remote_id=b, remote_pubkey=target.key.public,
                                remote_listen_addr=target.listen, remote_host=target.host,
                                outbound=True, max_frame=self.max_frame,
                                remote_version=target.version, out_pipe=up, in_pipe=down,
                                pump=self._pump)
        theirs = MemoryConnection(net, local_id=b, remote_id=a, remote_pubkey=self.key.public,
                                  remote_listen_addr=self.listen, remote_host=self.host,
                                  outbound=False, max_frame=target.max_frame,
                                  remote_version=self.version, out_pipe=down, in_pipe=up,
                                  pump=target._pump)
        try:
            target._inbox.send_nowait(theirs)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"connection refused: backlog of {addr} is full") from None
        return mine


__all__ = ["Batch", "LatencyModel", "MemoryConnection", "MemoryNetwork", "MemoryTransport",
           "Payload", "Sink"]
