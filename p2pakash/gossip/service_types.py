"""Values and helpers of the gossip service: settings, counters, links, frame sizes.

Rules and invariants: plain data and pure functions (no IO); ``service.py`` re-exports the
public names. ``frame_overhead`` is exact for the canonical CBOR ``Frame`` envelope.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import attrs
import trio

from p2pakash import wire
from p2pakash.crypto import NodeID
from p2pakash.gossip import messages as m
from p2pakash.gossip import peers as pm
from p2pakash.gossip.transport import Connection

T = TypeVar("T")

PUBSUB_TYPES: tuple[type, ...] = (m.Subscribe, m.Publish, m.IHave, m.IWant, m.Graft, m.Prune,
                                  m.IDontWant, m.Reply)
PEER_TYPES: tuple[type, ...] = (m.Ping, m.Pong, m.PexRequest, m.PexAddrs)
PUBSUB_SET = frozenset(PUBSUB_TYPES)  # exact types: a set lookup instead of isinstance
PEER_SET = frozenset(PEER_TYPES)
Handler = Callable[[NodeID, object], None]
FRAME_HEAD = len(wire.encode_batch(m.Frame, [])) - 1  # tag and the 1-field array
MAX_ON_DEMAND = 1024  # connect() targets remembered at once


def frame_overhead(count: int) -> int:
    """Bytes a ``Frame`` of ``count`` items adds to its items' encodings (CBOR heads)."""
    return FRAME_HEAD + (1 if count < 24 else 2 if count < 256 else 3 if count < 65536 else 5)


def goodbye_frame(reason: str) -> bytes:
    return wire.encode(m.Frame(items=(m.Goodbye(reason=reason[:pm.MAX_REASON]),)))


@attrs.frozen(kw_only=True)
class Delivered:
    """A gossip message delivered to a local subscriber."""

    topic: str
    data: bytes
    msg_id: bytes
    source: NodeID


@attrs.define
class GossipStats:
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    items_in: int = 0
    items_out: int = 0
    dropped_out: int = 0
    dropped_local: int = 0
    bans: int = 0


@attrs.define(eq=False)
class Link:
    conn: Connection
    send: trio.MemorySendChannel[object]
    recv: trio.MemoryReceiveChannel[object]
    scope: trio.CancelScope
    goodbye: str = ""
    fast: bool = False  # item mode: ``pending`` and the service's flusher, not ``send``
    pending: list[object] = attrs.Factory(list)
    dirty: bool = False
    closed: bool = False  # ``scope`` was cancelled by us (``_cancel_link``)
    serial: int = 0  # this connection's number in its service (``GossipService.session``)


@attrs.frozen(kw_only=True)
class GossipSettings:
    max_frame: int = 1 << 20
    flush_interval: float = 0.0  # seconds a batch may wait to fill; 0 = whatever is queued now
    queue_size: int = 4096  # per-peer outbound items
    subscriber_queue: int = 10_000
    tick_interval: float = 0.25


def split_frames(items: Sequence[T], size_of: Callable[[T], int], limit: int
                 ) -> tuple[list[tuple[list[T], int]], int]:
    """Split queued items into frames of at most ``limit`` bytes (with their summed sizes),
    in order; an item bigger than ``limit`` is left out. Returns (frames, items left out)."""
    frames: list[tuple[list[T], int]] = []
    batch: list[T] = []
    size = dropped = 0
    for item in items:
        n = size_of(item)
        if n > limit:
            dropped += 1
            continue
        if batch and size + n > limit:
            frames.append((batch, size))
            batch, size = [], 0
        batch.append(item)
        size += n
    if batch:
        frames.append((batch, size))
    return frames, dropped


__all__ = ["FRAME_HEAD", "MAX_ON_DEMAND", "PEER_SET", "PEER_TYPES", "PUBSUB_SET", "PUBSUB_TYPES",
           "Delivered", "GossipSettings", "GossipStats", "Handler", "Link", "frame_overhead",
           "goodbye_frame", "split_frames"]
