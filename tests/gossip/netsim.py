"""A deterministic discrete-event network for sans-IO gossip cores (tests only).

Rules and invariants:
* Virtual time only: events sit in a heapq ordered by (time, sequence number), so equal
  times keep insertion order and one seed gives one run, byte for byte.
* Every link has a fixed one-way latency drawn from the rng when it is connected. With a
  ``bandwidth`` (bytes/s) each direction of a link also transmits one item at a time
  (size estimated by ``item_size``), so big messages queue. Each direction is FIFO, like
  a TCP connection. ``loss`` drops each ``Send`` independently; messages in flight on a
  link that was cut (or re-made) are dropped.
* Each node's heartbeat runs every ``heartbeat_interval`` from a random first offset.
* Actions: ``Send`` is carried to the peer, ``Deliver`` is recorded (first time per node
  and message), ``Disconnect`` cuts the link on both sides (the driver's ban).
* ``partition`` only blocks links between groups (messages dropped, connections kept up);
  ``cut``/``connect`` model closed and new connections (``remove_peer``/``add_peer``).
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from p2pakash.crypto import NodeID
from p2pakash.gossip.messages import Publish, message_id
from p2pakash.gossip.pubsub import Deliver, Disconnect, Send


class Core(Protocol):
    def add_peer(self, now: float, peer: NodeID, *, outbound: bool) -> list[Any]: ...
    def remove_peer(self, now: float, peer: NodeID) -> list[Any]: ...
    def handle(self, now: float, peer: NodeID, item: object) -> list[Any]: ...
    def heartbeat(self, now: float) -> list[Any]: ...


def node_ids(n: int) -> list[NodeID]:
    """n distinct 40-hex node IDs whose sorted order is unrelated to their index."""
    return [NodeID(hashlib.sha1(f"node-{i}".encode()).hexdigest()) for i in range(n)]


def random_graph(rng: random.Random, n: int, *, degree: float = 6.5, min_degree: int = 4,
                 max_degree: int = 10) -> list[tuple[int, int]]:
    """A connected graph: a ring, chords until every node has ``min_degree``, then random
    chords up to a mean ``degree``; no node gets more than ``max_degree`` links."""
    edges: set[tuple[int, int]] = set()
    deg: Counter[int] = Counter()

    def add(a: int, b: int) -> None:
        e = (min(a, b), max(a, b))
        if a != b and e not in edges and deg[a] < max_degree and deg[b] < max_degree:
            edges.add(e)
            deg[a] += 1
            deg[b] += 1
    for i in range(n if n > 2 else n - 1):
        add(i, (i + 1) % n)
    for i in range(n):
        for _ in range(20 * n):
            if deg[i] >= min(min_degree, n - 1):
                break
            add(i, rng.randrange(n))
    target = int(n * degree / 2)
    for _ in range(50 * n):
        if len(edges) >= target:
            break
        add(rng.randrange(n), rng.randrange(n))
    return sorted(edges)


def item_size(item: object) -> int:
    """A rough wire size: payload bytes plus 33 per listed message ID plus a header."""
    data = getattr(item, "data", b"")
    ids = getattr(item, "ids", ())
    return 16 + len(data) + 33 * len(ids)


C = TypeVar("C", bound=Core)


class NetSim(Generic[C]):
    def __init__(self, cores: Mapping[NodeID, C], *, rng: random.Random,
                 delay: tuple[float, float] = (0.002, 0.030), loss: float = 0.0,
                 heartbeat_interval: float = 1.0, bandwidth: float | None = None,
                 record: bool = False) -> None:
        self.cores = cores
        self.rng = rng
        self.delay = delay
        self.loss = loss
        self.bandwidth = bandwidth
        self._busy: dict[tuple[NodeID, NodeID], float] = {}  # link direction -> busy until
        self.now = 0.0
        self.trace: list[tuple[float, NodeID, str]] | None = [] if record else None
        self.delivered: dict[NodeID, dict[bytes, float]] = {n: {} for n in cores}
        self.copies: Counter[tuple[NodeID, bytes]] = Counter()  # Publish items received
        self.disconnects: list[tuple[float, NodeID, NodeID, str]] = []
        self.sends = 0
        self._links: dict[tuple[NodeID, NodeID], tuple[float, int]] = {}  # (a, b) -> delay, epoch
        self._epoch = 0
        self._blocked: Callable[[NodeID, NodeID], bool] = lambda a, b: False
        self._queue: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self._seq = 0
        self.heartbeat_interval = heartbeat_interval
        for node in cores:
            self._push(rng.uniform(0, heartbeat_interval), "hb", (node,))

    # --------------------------------------------------------------- topology
    def connect(self, a: NodeID, b: NodeID) -> None:
        """``a`` dials ``b``: a new connection (both cores learn of each other)."""
        if self.linked(a, b):
            return
        self._epoch += 1
        d = self.rng.uniform(*self.delay)
        self._links[(a, b)] = self._links[(b, a)] = (d, self._epoch)
        self._busy[(a, b)] = self._busy[(b, a)] = self.now
        self.apply(a, self.cores[a].add_peer(self.now, b, outbound=True))
        self.apply(b, self.cores[b].add_peer(self.now, a, outbound=False))

    def cut(self, a: NodeID, b: NodeID) -> None:
        """Close the connection between a and b (in-flight messages are lost)."""
        if not self.linked(a, b):
            return
        del self._links[(a, b)], self._links[(b, a)]
        self.apply(a, self.cores[a].remove_peer(self.now, b))
        self.apply(b, self.cores[b].remove_peer(self.now, a))

    def linked(self, a: NodeID, b: NodeID) -> bool:
        return (a, b) in self._links

    def neighbours(self, a: NodeID) -> list[NodeID]:
        return sorted(b for (x, b) in self._links if x == a)

    def connect_graph(self, ids: Sequence[NodeID], edges: Iterable[tuple[int, int]]) -> None:
        for i, j in edges:
            self.connect(ids[i], ids[j])

    def partition(self, *groups: Iterable[NodeID]) -> None:
        """Drop every message between different groups until ``heal``."""
        side = {n: g for g, members in enumerate(groups) for n in members}
        self._blocked = lambda a, b: side.get(a, -1) != side.get(b, -1)

    def heal(self) -> None:
        self._blocked = lambda a, b: False

    # ------------------------------------------------------------------ drive
    def call(self, node: NodeID, fn: Callable[[float], list[Any]]) -> None:
        """Run ``fn(now)`` on a node's core and carry out the actions it returns."""
        self.apply(node, fn(self.now))

    def run_until(self, t: float, *, max_events: int = 5_000_000) -> None:
        q = self._queue
        for _ in range(max_events):
            if not q or q[0][0] > t:
                self.now = max(self.now, t)
                return
            when, _, kind, args = heapq.heappop(q)
            self.now = when
            if kind == "hb":
                (node,) = args
                self.apply(node, self.cores[node].heartbeat(when))
                self._push(when + self.heartbeat_interval, "hb", (node,))
            else:
                src, dst, epoch, item = args
                link = self._links.get((src, dst))
                if link is None or link[1] != epoch:
                    continue
                if type(item) is Publish:
                    self.copies[(dst, message_id(item.topic, item.data))] += 1
                self.apply(dst, self.cores[dst].handle(when, src, item))
        raise AssertionError(f"netsim: more than {max_events} events before t={t}")

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def apply(self, node: NodeID, actions: list[Any]) -> None:
        for action in actions:
            if self.trace is not None:
                self.trace.append((round(self.now, 9), node, repr(action)))
            if type(action) is Send:
                link = self._links.get((node, action.peer))
                self.sends += 1
                if link is None or self._blocked(node, action.peer):
                    continue
                if self.loss and self.rng.random() < self.loss:
                    continue
                when = self.now
                if self.bandwidth:
                    key = (node, action.peer)
                    when = self._busy[key] = (max(when, self._busy[key])
                                              + item_size(action.item) / self.bandwidth)
                self._push(when + link[0], "msg", (node, action.peer, link[1], action.item))
            elif type(action) is Deliver:
                self.delivered[node].setdefault(action.msg_id, self.now)
            elif type(action) is Disconnect:
                self.disconnects.append((self.now, node, action.peer, action.reason))
                self.cut(node, action.peer)
            else:
                raise AssertionError(f"netsim: unknown action {action!r} from {node}")

    def _push(self, when: float, kind: str, args: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, kind, args))

    # -------------------------------------------------------------- queries
    def reached(self, msg_id: bytes) -> set[NodeID]:
        return {n for n, got in self.delivered.items() if msg_id in got}
