"""Replies: answers that travel the reverse path of the message they answer (sans-IO).

A market order is flooded to every node, but its answers (bids, declines) matter to one
node: the order's publisher. Flooding each answer as well costs answers x nodes x mesh
degree deliveries (an order drawing 170 bids in a 1,000-node network: ~1.4 million). A
``Reply`` instead goes back hop by hop along the path the answered message came, the way
Gnutella routes query hits: each node remembers, for messages of an *answerable* topic,
the peers that delivered them to it (the first ``paths``, usually 2: a second path keeps
answers flowing past one dead relay) and forwards a reply for that message to them only.
The publisher of the answered message delivers the reply to its local subscribers of the
reply's topic, as if it had arrived on that topic. Cost: a few hops per answer.

Rules and invariants:
* Routes are kept for ``ttl`` seconds after the answered message arrived (time buckets, as
  ``SeenCache``), at most ``max_routes`` messages (oldest dropped); routes of other topics
  are never kept, so the per-copy cost for them is one failed dict lookup on duplicates.
* A reply is identified by the hash of its target, topic and data (``reply_id``): the same
  answer flooded on the topic has another ID, so neither path's dedup hides the other.
  Each node handles a reply once (``seen``); copies from a second path are dropped free.
* Replies are validated by the reply topic's validator at every hop, like a publish:
  the pubsub core charges and penalises their senders by the same rules (``pubsub.py``).
* A reply for a message with no route (unknown, expired) is dropped and charged like a
  useless publish: an honest peer sends one only when our route expired.
"""

from __future__ import annotations

import hashlib

from p2pakash.crypto import NodeID
from p2pakash.gossip.caches import SeenCache

LOCAL = NodeID("")  # the route of a message we published ourselves: deliver replies locally


def reply_id(to: bytes, topic: str, data: bytes) -> bytes:
    return hashlib.sha256(b"reply\x00" + to + topic.encode() + b"\x00" + data).digest()


class ReplyRoutes:
    __slots__ = ("_ids", "_paths", "routes", "seen", "topics")

    def __init__(self, *, ttl: float, bucket: float, paths: int = 2,
                 max_routes: int = 100_000, max_seen: int = 1_000_000) -> None:
        if paths < 1:
            raise ValueError("ReplyRoutes needs paths >= 1")
        self._paths = paths
        self.topics: set[str] = set()  # answerable topics (``PubSub.answerable``)
        self.routes: dict[bytes, list[NodeID]] = {}  # message id -> the first peers (or LOCAL)
        # the routes' ages: a route goes when its ID leaves this cache (TTL or size)
        self._ids = SeenCache(ttl=ttl, bucket=bucket, max_size=max_routes,
                              on_drop=self._forget)
        self.seen = SeenCache(ttl=ttl, bucket=bucket, max_size=max_seen)

    def note(self, now: float, msg_id: bytes, source: NodeID) -> None:
        """``source`` (or LOCAL) delivered ``msg_id`` of an answerable topic to us first."""
        if msg_id in self.routes:
            self.also(msg_id, source)
            return
        self.routes[msg_id] = [source]
        self._ids.add(now, msg_id)

    def also(self, msg_id: bytes, source: NodeID) -> None:
        """A later copy of ``msg_id`` from ``source``: another path back, up to ``paths``."""
        route = self.routes.get(msg_id)
        if route is not None and len(route) < self._paths and source not in route:
            route.append(source)

    def expire(self, now: float) -> None:
        self._ids.expire(now)
        self.seen.expire(now)

    def _forget(self, ids: list[bytes]) -> None:
        for msg_id in ids:
            self.routes.pop(msg_id, None)


__all__ = ["LOCAL", "ReplyRoutes", "reply_id"]
