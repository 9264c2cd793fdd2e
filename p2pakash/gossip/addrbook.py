"""A bounded book of known peer addresses, one per node ID (sans-IO).

Rules and invariants:
* at most ``max_known`` entries; at most ``max_per_source`` of them learned from any one
  peer (PEX), so a single peer cannot fill the book;
* when full, the oldest entry we never connected to is evicted first; if every entry has
  connected once, an address from PEX is dropped, while an authoritative one (dialled by
  us, or told by the node itself) evicts the entry with the oldest success;
* an existing entry's address only changes through an authoritative add: gossip about a
  node never moves it to another host;
* iteration order is insertion order (deterministic); ``entries`` sorts by node ID.
"""

from __future__ import annotations

import attrs

from p2pakash.crypto import NodeID
from p2pakash.gossip.addr import PeerAddr


@attrs.define
class KnownAddr:
    addr: PeerAddr
    source: NodeID | None  # the peer that told us; None when authoritative
    added: float
    last_success: float | None = None  # last successful outbound connection
    failures: int = 0  # consecutive dial failures


class AddrBook:
    def __init__(self, *, max_known: int, max_per_source: int) -> None:
        if max_known < 1 or max_per_source < 1:
            raise ValueError("address book limits must be >= 1")
        self._max = max_known
        self._max_per_source = max_per_source
        self._entries: dict[NodeID, KnownAddr] = {}
        self._per_source: dict[NodeID, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, node: object) -> bool:
        return node in self._entries

    def get(self, node: NodeID) -> KnownAddr | None:
        return self._entries.get(node)

    def entries(self) -> list[KnownAddr]:
        return [self._entries[k] for k in sorted(self._entries)]

    def has_room(self) -> bool:
        return len(self._entries) < self._max

    def add(self, now: float, addr: PeerAddr, *, source: NodeID | None) -> bool:
        """Learn ``addr``; ``source=None`` means authoritative. True if the book changed."""
        old = self._entries.get(addr.node_id)
        if old is not None:
            if source is not None or (old.addr == addr and old.source is None):
                return False
            self._set_source(old, None)
            if old.addr != addr:
                old.addr, old.last_success, old.failures = addr, None, 0
            return True
        if source is not None and self._per_source.get(source, 0) >= self._max_per_source:
            return False
        if len(self._entries) >= self._max and not self._evict(authoritative=source is None):
            return False
        entry = KnownAddr(addr=addr, source=None, added=now)
        self._entries[addr.node_id] = entry
        self._set_source(entry, source)
        return True

    def mark_success(self, now: float, addr: PeerAddr) -> None:
        """We connected out to ``addr``: it is authoritative and good."""
        self.add(now, addr, source=None)
        entry = self._entries.get(addr.node_id)
        if entry is not None:
            entry.last_success, entry.failures = now, 0

    def mark_failure(self, node: NodeID) -> KnownAddr | None:
        entry = self._entries.get(node)
        if entry is not None:
            entry.failures += 1
        return entry

    def remove(self, node: NodeID) -> None:
        entry = self._entries.pop(node, None)
        if entry is not None:
            self._set_source(entry, None)

    def _set_source(self, entry: KnownAddr, source: NodeID | None) -> None:
        if entry.source is not None:
            left = self._per_source[entry.source] - 1
            if left:
                self._per_source[entry.source] = left
            else:
                del self._per_source[entry.source]
        entry.source = source
        if source is not None:
            self._per_source[source] = self._per_source.get(source, 0) + 1

    def _evict(self, *, authoritative: bool) -> bool:
        for node, entry in self._entries.items():
            if entry.last_success is None:
                self.remove(node)
                return True
        if not authoritative:
            return False
        oldest = min(self._entries.values(), key=lambda e: (e.last_success or 0.0))
        self.remove(oldest.addr.node_id)
        return True
