"""Bounded caches of the pubsub core: the seen cache, the message cache, a token bucket.

Rules and invariants (sans-IO: time arrives as ``now`` in seconds):
* ``SeenCache`` remembers message IDs for ``ttl`` seconds in time buckets of ``bucket``
  seconds; an ID is forgotten between ``ttl`` and ``ttl + bucket`` seconds after it was
  added, or earlier when more than ``max_size`` IDs are held (oldest bucket first).
  Lookups are one set membership test. ``on_drop`` (optional) is told each batch of IDs
  forgotten, so a table keyed by the same IDs can forget them too (``replies.py``).
* ``MessageCache`` holds accepted messages for ``length`` heartbeat windows; ``shift``
  opens a new window and drops the oldest. ``gossip_ids`` lists the IDs of the newest
  ``gossip`` windows for one topic, newest window first. At most ``max_size`` messages.
  Each entry counts how often each peer was served it by IWANT, and holds the peers known
  to have it (``holders``: they sent it, or an IHAVE or IDONTWANT naming it, to us).
* ``TokenBucket`` refills at ``rate`` per second up to ``burst``; ``take`` spends one token.
  It refills lazily, so ``tokens`` never over-counts: with ``tokens >= 1`` it has a token
  whatever the refill, and a caller may skip ``has`` (a later refill covers the whole gap,
  capped at ``burst``: the same up to float rounding).
* ``trim_oldest(table, limit)`` keeps an insertion-ordered memo at most ``limit`` long by
  dropping its oldest eighth at once: deleting one entry at a time from the front makes
  each ``next(iter(table))`` skip every hole left before it (15 us per eviction at 65,536
  entries), a batch costs one pass per ``limit / 8`` inserts.
* ``DontWant`` remembers the IDs one peer said IDONTWANT for, each with the heartbeat
  number it arrived in; at most ``max_size`` (oldest dropped), expired by heartbeat age.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any

from p2pakash.crypto import NodeID
from p2pakash.gossip.messages import MSG_ID_LEN, Publish


def trim_oldest(table: dict[Any, Any], limit: int) -> None:
    """Drop ``table``'s oldest entries (an eighth of ``limit``) once it is over ``limit``."""
    if len(table) > limit:
        for key in list(islice(table, max(1, limit // 8))):
            del table[key]


class SeenCache:
    __slots__ = ("_bucket", "_buckets", "_max_size", "_on_drop", "_ttl", "ids")

    def __init__(self, *, ttl: float, bucket: float, max_size: int,
                 on_drop: Callable[[list[bytes]], None] | None = None) -> None:
        if ttl <= 0 or bucket <= 0 or max_size <= 0:
            raise ValueError("SeenCache needs ttl > 0, bucket > 0 and max_size > 0")
        self._ttl = ttl
        self._bucket = bucket
        self._max_size = max_size
        self._on_drop = on_drop
        self.ids: set[bytes] = set()  # read by callers for a membership test; add() adds
        # (start time, ids added in [start, start + bucket)), oldest first
        self._buckets: deque[tuple[float, list[bytes]]] = deque()

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, now: float, msg_id: bytes) -> bool:
        """Remember ``msg_id``; return False when it was already known."""
        ids = self.ids
        if msg_id in ids:
            return False
        ids.add(msg_id)
        buckets = self._buckets
        if not buckets or now - buckets[-1][0] >= self._bucket:
            buckets.append((now, [msg_id]))
        else:
            buckets[-1][1].append(msg_id)
        if len(ids) > self._max_size:
            self._drop_oldest()
        return True

    def expire(self, now: float) -> int:
        """Forget buckets older than the TTL; return how many IDs were forgotten."""
        dropped = 0
        buckets = self._buckets
        limit = self._ttl + self._bucket
        while buckets and now - buckets[0][0] >= limit:
            dropped += self._drop_oldest()
        return dropped

    def _drop_oldest(self) -> int:
        _, old = self._buckets.popleft()
        self.ids.difference_update(old)
        if self._on_drop is not None:
            self._on_drop(old)
        return len(old)


class CacheEntry:
    __slots__ = ("holders", "item", "msg_id", "served")

    def __init__(self, msg_id: bytes, item: Publish) -> None:
        self.msg_id = msg_id
        self.item = item
        self.served: dict[NodeID, int] | None = None
        self.holders: set[NodeID] = set()  # peers known to have it: no IHAVE to them


class MessageCache:
    __slots__ = ("_gossip", "_max_size", "_windows", "entries")

    def __init__(self, *, length: int, gossip: int, max_size: int) -> None:
        if not 1 <= gossip <= length:
            raise ValueError(f"MessageCache needs 1 <= gossip ({gossip}) <= length ({length})")
        self._gossip = gossip
        self._max_size = max_size
        self.entries: dict[bytes, CacheEntry] = {}  # callers read it; put() and shift() write
        # newest window first; each maps topic -> entries in arrival order
        self._windows: deque[dict[str, list[CacheEntry]]] = deque([{}], maxlen=length)

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, msg_id: bytes, item: Publish, holder: NodeID | None = None) -> bool:
        """Cache an accepted message (``holder``: the peer it came from); False when full or
        already present."""
        if msg_id in self.entries or len(self.entries) >= self._max_size:
            return False
        entry = self.entries[msg_id] = CacheEntry(msg_id, item)
        if holder is not None:
            entry.holders.add(holder)
        window = self._windows[0]
        listed = window.get(item.topic)
        if listed is None:
            window[item.topic] = [entry]
        else:
            listed.append(entry)
        return True

    def get(self, msg_id: bytes) -> CacheEntry | None:
        return self.entries.get(msg_id)

    def mark_held(self, ids: tuple[bytes, ...], peer: NodeID) -> None:
        """``peer`` holds these messages (it sent them, or an IHAVE/IDONTWANT naming them)."""
        entries = self.entries
        for mid in ids:
            entry = entries.get(mid)
            if entry is not None:
                entry.holders.add(peer)

    def serve(self, ids: tuple[bytes, ...], peer: NodeID, limit: int) -> list[Publish]:
        """The cached messages an IWANT of ``peer`` asks for, each at most ``limit`` times
        per peer."""
        out: list[Publish] = []
        for mid in ids:
            entry = self.entries.get(mid)
            if entry is None:
                continue
            if entry.served is None:
                entry.served = {}
            n = entry.served.get(peer, 0)
            if n < limit:
                entry.served[peer] = n + 1
                out.append(entry.item)
        return out

    def gossip_topics(self) -> set[str]:
        """The topics with entries in the newest ``gossip`` windows."""
        return set().union(*islice(self._windows, self._gossip))

    def gossip_entries(self, topic: str) -> list[CacheEntry]:
        """The entries of ``topic`` in the newest ``gossip`` windows, newest window first."""
        out: list[CacheEntry] = []
        for window in islice(self._windows, self._gossip):
            listed = window.get(topic)
            if listed:
                out += listed
        return out

    def gossip_ids(self, topic: str) -> list[bytes]:
        return [entry.msg_id for entry in self.gossip_entries(topic)]

    def shift(self) -> None:
        windows = self._windows
        if len(windows) == windows.maxlen:
            entries = self.entries
            for listed in windows[-1].values():
                for entry in listed:
                    del entries[entry.msg_id]
        windows.appendleft({})


class TokenBucket:
    __slots__ = ("_burst", "_last", "_rate", "tokens")

    def __init__(self, *, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._last = now
        self.tokens = burst

    def has(self, now: float) -> bool:
        """Refill for the time passed; True while at least one token is left."""
        elapsed = now - self._last
        if elapsed > 0:
            self.tokens = min(self._burst, self.tokens + elapsed * self._rate)
            self._last = now
        return self.tokens >= 1.0

    def take(self, now: float) -> bool:
        if self.has(now):
            self.tokens -= 1.0
            return True
        return False

    def charge(self, now: float) -> None:
        """Spend one token (may go down to zero; never below)."""
        if self.has(now):
            self.tokens -= 1.0


class DontWant:
    __slots__ = ("_ids", "_max_size")

    def __init__(self, *, max_size: int) -> None:
        self._max_size = max_size
        self._ids: dict[bytes, int] = {}  # msg_id -> heartbeat number, oldest first

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: tuple[bytes, ...], heartbeat: int) -> None:
        known = self._ids
        for mid in ids:
            if len(mid) == MSG_ID_LEN and mid not in known:
                known[mid] = heartbeat
        excess = len(known) - self._max_size
        if excess > 0:
            for mid in list(known)[:excess]:
                del known[mid]

    def expire(self, oldest: int) -> None:
        """Forget IDs told at heartbeat number ``oldest`` or before."""
        known = self._ids
        while known:
            mid = next(iter(known))
            if known[mid] > oldest:
                break
            del known[mid]
