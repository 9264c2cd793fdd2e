"""The byte path's writer: one task per connection (TCP, and in-memory links without the
item fast path) that batches the queued gossip items into frames.

Rules and invariants:
* Every item queued on ``link.recv`` while the writer waits one checkpoint (or
  ``flush_interval``) goes out in the same frame(s), in queue order; frames stay under
  ``max_frame - 16`` bytes and an item too big for any frame is dropped and counted.
* Each item object is encoded once however many links carry it (``EncodeMemo``: a
  forwarded message goes to ~D peers, a Status to every peer); items are frozen, so the
  bytes stay right. The memo holds each item it names (its ``id`` is not reused) and at
  most ``MEMO_ITEMS`` of them.
* A connection that fails while sending is handed to ``broken`` (the service closes it).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from p2pakash import wire
from p2pakash.gossip import messages as m
from p2pakash.gossip.caches import trim_oldest
from p2pakash.gossip.service_types import GossipSettings, GossipStats, Link, split_frames
from p2pakash.gossip.transport import ConnectionClosed

MEMO_ITEMS = 4096


class EncodeMemo:
    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[int, tuple[object, bytes]] = {}  # id(item) -> (item, bytes)

    def encode(self, item: object) -> bytes:
        cached = self._items.get(id(item))
        if cached is not None and cached[0] is item:
            return cached[1]
        data = wire.encode(item)
        self._items[id(item)] = (item, data)
        trim_oldest(self._items, MEMO_ITEMS)
        return data


async def write_link(link: Link, *, settings: GossipSettings, stats: GossipStats,
                     memo: EncodeMemo, broken: Callable[[Link], None]) -> None:
    """Run ``link``'s writer until its queue closes or its connection fails."""
    flush = settings.flush_interval
    pending: list[object] = []
    async for first in link.recv:
        pending.append(first)
        if flush > 0:
            await trio.sleep(flush)
        else:
            await trio.lowlevel.checkpoint()
        while True:
            try:
                pending.append(link.recv.receive_nowait())
            except trio.WouldBlock:
                break
        frames, dropped = split_frames([memo.encode(item) for item in pending], len,
                                       settings.max_frame - 16)
        stats.dropped_out += dropped
        pending.clear()
        for batch, _ in frames:
            data = wire.encode_batch(m.Frame, batch)
            try:
                await link.conn.send(data)
            except (ConnectionClosed, OSError, trio.BrokenResourceError,
                    trio.ClosedResourceError):
                broken(link)
                return
            stats.frames_out += 1
            stats.bytes_out += len(data)
            stats.items_out += len(batch)


__all__ = ["MEMO_ITEMS", "EncodeMemo", "write_link"]
