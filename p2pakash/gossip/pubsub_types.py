"""Values of the pubsub core: verdicts, actions, counters and per-peer state.

Rules and invariants: plain data, no IO, no time and no randomness of their own (``sample``
draws from the caller's ``random.Random`` over a sorted copy, so one seed gives one
choice). ``pubsub.py`` re-exports the public names.

Subscription re-announcements (``announce_later``, ``announcements``), counted in
heartbeats: subscriptions go to every peer on connect and on (un)subscribe; a
re-announcement (for a lost SUBSCRIBE on a lossy link) goes to a peer ``announce_every``
heartbeats after it connected or we subscribed, then after a gap that doubles each time up
to ``announce_every_max``, and only for the topics the peer has not shown it knows: a
Publish, IHAVE or GRAFT from a peer on one of our topics proves it holds us as a
subscriber (honest peers send those only to subscribers; an IWANT answer follows their
IHAVE). Unsubscribing forgets the proofs. A quiet network's SUBSCRIBE traffic falls from
every topic to every peer each ``announce_every`` to idle topics each
``announce_every_max``.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable
from typing import NamedTuple

import attrs

from p2pakash.crypto import NodeID
from p2pakash.errors import LocalProtocolError
from p2pakash.gossip.caches import DontWant, TokenBucket
from p2pakash.gossip.messages import MAX_TOPIC_LEN, Subscribe
from p2pakash.gossip.score import PeerScore, PubSubParams


class Verdict(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    IGNORE = "ignore"


Validator = Callable[[NodeID, str, bytes], Verdict]


class Send(NamedTuple):
    """Send ``item`` to ``peer``. A NamedTuple, not an attrs class: the most frequent action
    (one per forwarded copy), and immutable, comparable and hashable at a third of the cost
    of a frozen attrs instance (no ``object.__setattr__`` per field)."""

    peer: NodeID
    item: object


@attrs.frozen
class Deliver:
    topic: str
    data: bytes
    msg_id: bytes
    source: NodeID


@attrs.frozen
class Disconnect:
    peer: NodeID
    reason: str


Action = Send | Deliver | Disconnect


@attrs.define
class PubSubStats:
    published: int = 0
    delivered: int = 0
    duplicates: int = 0  # Publish copies received after the first
    rejected: int = 0
    ignored: int = 0  # validator said IGNORE
    unsubscribed: int = 0  # Publish for a topic we do not subscribe to
    graylisted: int = 0  # items dropped because the peer is graylisted or disconnecting
    rate_limited: int = 0
    iwant_served: int = 0
    iwant_sent: int = 0  # ids asked for
    ihave_sent: int = 0  # IHAVE messages sent
    idontwant_sent: int = 0
    suppressed: int = 0  # sends skipped because the peer said IDONTWANT
    sent: int = 0  # Publish items sent (forwarding, publishing, IWANT replies)
    replies_sent: int = 0  # Reply items sent (our answers and forwarded ones)
    replies_delivered: int = 0  # replies to our own messages, delivered locally
    replies_unroutable: int = 0  # Reply items for a message we hold no way back for
    replies_flooded: int = 0  # accepted replies published on their topic: no way back left


class PeerState:
    __slots__ = ("announce_at", "announce_gap", "bucket", "confirmed", "counted_at",
                 "disconnecting", "dontwant", "id", "ihave_count", "iwant_asked", "outbound",
                 "score", "topics", "value")

    def __init__(self, now: float, peer: NodeID, outbound: bool, score: PeerScore,
                 p: PubSubParams):
        self.id = peer
        self.outbound = outbound
        self.bucket = TokenBucket(rate=p.rate_limit_msgs_per_sec, burst=p.rate_limit_burst,
                                  now=now)
        self.score = score
        self.value = 0.0  # cached score: refreshed at heartbeat and after each penalty
        self.disconnecting = False
        self.topics: set[str] = set()
        self.confirmed: set[str] = set()  # our topics it has shown it knows (see pubsub.py)
        self.announce_gap = p.announce_every  # heartbeats to our next re-announcement
        self.announce_at = 0  # the heartbeat number of it (set by PubSub.add_peer)
        self.dontwant = DontWant(max_size=p.max_idontwant)
        self.ihave_count = 0  # IHAVE received and IDs asked in heartbeat ``counted_at``
        self.iwant_asked = 0
        self.counted_at = 0


def announce_later(peer: PeerState, beat: int, p: PubSubParams, *, restart: bool) -> int:
    """Set the peer's next re-announcement after heartbeat ``beat``; returns its number."""
    gap = p.announce_every if restart else min(2 * peer.announce_gap, p.announce_every_max)
    peer.announce_gap = gap
    peer.announce_at = beat + (p.announce_every if restart else gap)
    return peer.announce_at


def announcements(peers: dict[NodeID, PeerState], topics: Iterable[str], beat: int,
                  p: PubSubParams) -> tuple[list[Send], int]:
    """The re-announcements due at heartbeat ``beat`` (peers in sorted order) and the first
    heartbeat one is due again."""
    out: list[Send] = []
    subs: list[Subscribe] | None = None
    due = beat + p.announce_every_max
    for pid in sorted(peers):
        state = peers[pid]
        if state.announce_at <= beat:
            announce_later(state, beat, p, restart=False)
            if subs is None:
                subs = [Subscribe(topic=t, subscribe=True) for t in sorted(topics)]
            known = state.confirmed
            out += [Send(pid, sub) for sub in subs if sub.topic not in known]
        due = min(due, state.announce_at)
    return out, due


def sample(rng: random.Random, items: Iterable[NodeID], k: int) -> list[NodeID]:
    cands = sorted(items)
    if k <= 0:
        return []
    if len(cands) <= k:
        return cands
    return rng.sample(cands, k)


def check_topic(topic: str) -> None:
    if not topic or len(topic) > MAX_TOPIC_LEN:
        raise LocalProtocolError(f"pubsub: topic {topic!r} must be 1..{MAX_TOPIC_LEN} characters")


__all__ = ["Action", "Deliver", "Disconnect", "PeerState", "PubSubStats", "Send", "Validator",
           "Verdict", "announce_later", "announcements", "check_topic", "sample"]
