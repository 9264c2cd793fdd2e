"""Encoded sizes of frame items for the in-memory network, mostly without encoding them.

Rules and invariants:
* ``ItemSizer.size(item)`` always equals ``len(wire.encode(item))`` (tests compare them).
* Each item object is measured once for the whole network (a forwarded message is the
  same object at every hop); the cache holds the item, so its ``id`` is not reused while
  cached, and at most ``max_items`` objects (the oldest eighth dropped at once).
* ``IHave``/``IWant``/``IDontWant`` (new objects every heartbeat or message) are sized by
  arithmetic: the encoding of the same message with no IDs (cached per class and topic)
  plus the canonical CBOR heads and bytes of the IDs. Small value messages that recur
  equal (``Subscribe``, ``Graft``, ``Prune``) are cached by value. Everything else is
  encoded once.
"""

from __future__ import annotations

from p2pakash import wire
from p2pakash.gossip.caches import trim_oldest
from p2pakash.gossip.messages import MSG_ID_LEN, Graft, IDontWant, IHave, IWant, Prune, Subscribe

MAX_BASES = 1024  # (class, topic) pairs remembered; cleared when more


def cbor_head(n: int) -> int:
    """Bytes of a canonical CBOR head carrying ``n`` (a length or count)."""
    return 1 if n < 24 else 2 if n < 256 else 3 if n < 65536 else 5 if n < 1 << 32 else 9


class ItemSizer:
    def __init__(self, *, max_items: int = 65_536) -> None:
        self.max_items = max_items
        self._by_id: dict[int, tuple[object, int]] = {}  # id(item) -> (item, size)
        self._by_value: dict[object, int] = {}
        self._bases: dict[tuple[type, str], int] = {}

    def size(self, item: object) -> int:
        hit = self._by_id.get(id(item))
        if hit is not None and hit[0] is item:
            return hit[1]
        kind = type(item)
        if kind is IHave or kind is IWant or kind is IDontWant:
            size = self._id_list(item)  # type: ignore[arg-type]
        elif kind is Subscribe or kind is Graft or kind is Prune:
            known = self._by_value.get(item)
            if known is None:
                known = len(wire.encode(item))
                if len(self._by_value) >= MAX_BASES:
                    self._by_value.clear()
                self._by_value[item] = known
            size = known
        else:
            size = len(wire.encode(item))
        self._by_id[id(item)] = (item, size)
        trim_oldest(self._by_id, self.max_items)
        return size

    def _id_list(self, item: IHave | IWant | IDontWant) -> int:
        topic = item.topic if isinstance(item, IHave) else ""
        key = (type(item), topic)
        base = self._bases.get(key)
        if base is None:
            empty = IHave(topic=topic, ids=()) if isinstance(item, IHave) else \
                type(item)(ids=())
            base = len(wire.encode(empty)) - cbor_head(0)
            if len(self._bases) >= MAX_BASES:
                self._bases.clear()
            self._bases[key] = base
        ids = item.ids
        total = base + cbor_head(len(ids))
        if ids and min(map(len, ids)) == MSG_ID_LEN == max(map(len, ids)):  # the usual case
            return total + len(ids) * (MSG_ID_LEN + cbor_head(MSG_ID_LEN))
        for mid in ids:
            n = len(mid)
            total += n + (1 if n < 24 else cbor_head(n))
        return total


__all__ = ["ItemSizer", "cbor_head"]
