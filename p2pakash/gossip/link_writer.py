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
* ``flush_links`` is the same for the in-memory item fast path (the simulator's): each
  dirty link's queued items go out as one batch of items (or several under the frame
  limit), sized by ``MemoryConnection.size_of`` instead of encoded.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from p2pakash import wire
from p2pakash.gossip import messages as m
from p2pakash.gossip.caches import trim_oldest
from p2pakash.gossip.memory import MemoryConnection
from p2pakash.gossip.service_types import (
    FRAME_HEAD,
    GossipSettings,
    GossipStats,
    Link,
    frame_overhead,
    split_frames,
)
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


def flush_links(dirty: list[Link], *, settings: GossipSettings, stats: GossipStats,
                broken: Callable[[Link], None]) -> None:
    """Send each in-memory link's queued items (``link.pending``) as one frame of items."""
    limit = settings.max_frame - 16
    for link in dirty:
        link.dirty = False
        pending, link.pending = link.pending, []
        if link.closed:
            continue
        conn = link.conn
        assert isinstance(conn, MemoryConnection)
        size_of = conn.size_of
        n = len(pending)
        size = size_of(pending[0]) if n == 1 else sum(map(size_of, pending))
        if size > limit:
            frames, dropped = split_frames(pending, size_of, limit)
            stats.dropped_out += dropped
            for batch, bsize in frames:
                if not _send_items(link, batch, bsize + frame_overhead(len(batch)), stats,
                                   broken):
                    break
            continue
        # the usual case, one frame per link
        _send_items(link, pending, size + (FRAME_HEAD + 1 if n < 24 else frame_overhead(n)),
                    stats, broken)


def _send_items(link: Link, items: list[object], size: int, stats: GossipStats,
                broken: Callable[[Link], None]) -> bool:
    """One frame of ``items`` (``size`` bytes with the envelope); False if the link broke."""
    conn = link.conn
    assert isinstance(conn, MemoryConnection)
    try:
        sent = conn.send_items(tuple(items), size)
    except (ConnectionClosed, OSError):
        broken(link)
        return False
    if not sent:
        stats.dropped_out += len(items)
        return True
    stats.frames_out += 1
    stats.bytes_out += size
    stats.items_out += len(items)
    return True


__all__ = ["MEMO_ITEMS", "EncodeMemo", "flush_links", "write_link"]
