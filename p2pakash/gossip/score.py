"""Pubsub parameters and peer scoring (gossipsub v1.1, reference consensus_gossip.md §B2).

score = min(topic_score_cap, Σ_topics topic_weight·(w1·P1 + w2·P2 + w4·P4)) + w7·P7
* P1 time in mesh: (now - graft time) / time_in_mesh_quantum, capped at time_in_mesh_cap.
* P2 first message deliveries: count of messages this peer delivered first (capped, decays).
* P4 invalid messages: (count of rejected messages)², decays.
* P7 behaviour penalty: (penalty - threshold)² above the threshold (GRAFT during backoff,
  rate-limit excess), decays.
Weights w4, w7 are negative. Only topics the local node subscribes to carry topic stats,
so per-peer state is bounded by our own subscriptions. P3/P3b (mesh delivery deficit),
P5 (application score) and P6 (IP colocation) are not computed here. Decay runs once per
heartbeat; counters below ``decay_to_zero`` become 0. It may run lazily: ``catch_up(n)``
applies the decays of heartbeats up to number ``n`` not applied yet, each exactly as
``decay`` does it (same float operations, same order), per topic (``topic_at``) and for
P7; a counter must be caught up before it changes or is read. With non-negative P1/P2 and
topic weights a score can only be negative while ``penalised`` (P4 or P7 present).
``choose_pruned`` picks the peers to PRUNE from an oversized mesh: the best ``d_score`` by
score stay, the rest of the ``d`` survivors are random, and at least ``d_out`` outbound
peers stay when available.
Sans-IO: time arrives as ``now``, randomness from the caller's ``random.Random``.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping

import attrs

from p2pakash.crypto import NodeID
from p2pakash.errors import ConfigError
from p2pakash.gossip.messages import MAX_IDS


@attrs.frozen(kw_only=True)
class PubSubParams:
    d: int = 6
    d_lo: int = 4
    d_hi: int = 12
    d_lazy: int = 6
    d_out: int = 2
    d_score: int = 4
    heartbeat_interval: float = 1.0
    announce_every: int = 10  # heartbeats to a peer's first re-announcement of our topics
    announce_every_max: int = 80  # the gap doubles after each one up to this (pubsub.py)
    mcache_len: int = 5
    mcache_gossip: int = 3
    mcache_max: int = 100_000
    seen_ttl: float = 120.0
    seen_max: int = 1_000_000
    reply_ttl: float = 120.0  # seconds the way back of an answerable message is kept
    reply_paths: int = 2  # ways back kept per message (replies.py)
    # (topic, d_lo, d, d_hi): a topic's own mesh degree (e.g. fewer copies of small,
    # frequent messages that their layer repairs itself); the other D parameters follow
    topic_degree: tuple[tuple[str, int, int, int], ...] = ()
    fanout_ttl: float = 60.0
    prune_backoff: float = 60.0
    unsubscribe_backoff: float = 10.0
    max_backoff: float = 3600.0
    flood_publish: bool = True
    gossip_factor: float = 0.25
    max_ihave_length: int = 5000
    max_ihave_messages: int = 10  # per peer per heartbeat
    max_iwant_per_heartbeat: int = 5000  # ids asked of one peer per heartbeat
    gossip_retransmission: int = 3
    idontwant_min_size: int = 1024
    idontwant_ttl_heartbeats: int = 3
    max_idontwant: int = 5000  # ids remembered per peer
    max_topics_per_peer: int = 64
    rate_limit_msgs_per_sec: float = 1000.0
    rate_limit_burst: float = 2000.0
    rate_limit_penalty: float = 0.1
    # score weights (score.py) and thresholds
    topic_weight: float = 1.0
    topic_score_cap: float = 20.0
    time_in_mesh_weight: float = 0.01
    time_in_mesh_quantum: float = 1.0
    time_in_mesh_cap: float = 300.0
    first_deliveries_weight: float = 1.0
    first_deliveries_cap: float = 10.0
    first_deliveries_decay: float = 0.9
    invalid_messages_weight: float = -10.0
    invalid_messages_decay: float = 0.99
    behaviour_penalty_weight: float = -10.0
    behaviour_penalty_threshold: float = 0.0
    behaviour_penalty_decay: float = 0.9
    decay_to_zero: float = 0.01
    retain_score: float = 3600.0
    max_retained: int = 10_000
    gossip_threshold: float = -10.0
    publish_threshold: float = -50.0
    graylist_threshold: float = -80.0
    disconnect_threshold: float = -80.0

    def for_topic(self, topic: str) -> PubSubParams:
        """These parameters with ``topic``'s mesh degree from ``topic_degree``."""
        for name, d_lo, d, d_hi in self.topic_degree:
            if name == topic:
                return attrs.evolve(self, d_lo=d_lo, d=d, d_hi=d_hi, topic_degree=(),
                                    d_out=min(self.d_out, d_lo - 1, d // 2),
                                    d_score=min(self.d_score, d), d_lazy=min(self.d_lazy, d))
        return self

    def __attrs_post_init__(self) -> None:
        for name, d_lo, d, d_hi in self.topic_degree:
            if not 0 < d_lo <= d <= d_hi:
                raise ConfigError(f"pubsub params: topic_degree of {name!r} needs "
                                  f"0 < d_lo <= d <= d_hi, got {d_lo}, {d}, {d_hi}")
        checks = [
            (0 < self.d_lo <= self.d <= self.d_hi,
             f"needs 0 < d_lo <= d <= d_hi, got {self.d_lo}, {self.d}, {self.d_hi}"),
            (0 <= self.d_out < self.d_lo and self.d_out <= self.d // 2,
             f"needs d_out < d_lo and d_out <= d/2, got d_out={self.d_out}"),
            (0 <= self.d_score <= self.d, f"needs 0 <= d_score <= d, got {self.d_score}"),
            (1 <= self.mcache_gossip <= self.mcache_len,
             f"needs 1 <= mcache_gossip <= mcache_len, got {self.mcache_gossip}, "
             f"{self.mcache_len}"),
            (0 < self.max_ihave_length <= MAX_IDS and 0 < self.max_iwant_per_heartbeat <= MAX_IDS,
             f"needs max_ihave_length and max_iwant_per_heartbeat in 1..{MAX_IDS}"),
            (1 <= self.announce_every <= self.announce_every_max,
             f"needs 1 <= announce_every <= announce_every_max, got {self.announce_every}, "
             f"{self.announce_every_max}"),
            (self.heartbeat_interval > 0 and self.seen_ttl > 0,
             "needs positive heartbeat_interval and seen_ttl"),
            (self.rate_limit_burst >= 1 and self.rate_limit_msgs_per_sec > 0,
             "needs rate_limit_burst >= 1 and rate_limit_msgs_per_sec > 0"),
            (self.invalid_messages_weight <= 0 and self.behaviour_penalty_weight <= 0,
             "needs invalid_messages_weight <= 0 and behaviour_penalty_weight <= 0"),
            (self.graylist_threshold < self.publish_threshold <= self.gossip_threshold <= 0,
             "needs graylist_threshold < publish_threshold <= gossip_threshold <= 0"),
        ]
        for ok, what in checks:
            if not ok:
                raise ConfigError(f"pubsub params: {what}")


class TopicStats:
    __slots__ = ("decayed", "first_deliveries", "graft_time", "in_mesh", "invalid")

    def __init__(self) -> None:
        self.in_mesh = False
        self.graft_time = 0.0
        self.first_deliveries = 0.0
        self.invalid = 0.0
        self.decayed = 0  # heartbeat number of the last decay applied (lazy decay)


def _decayed(x: float, factor: float, zero: float, steps: int) -> float:
    """``steps`` decays of ``x`` as ``PeerScore.decay`` applies them one by one."""
    for _ in range(steps):
        x *= factor
        if x < zero:
            return 0.0
    return x


class PeerScore:
    """Counters behind one peer's score; survives disconnects while negative."""

    __slots__ = ("behaviour_penalty", "penalty_at", "topics")

    def __init__(self) -> None:
        self.topics: dict[str, TopicStats] = {}
        self.behaviour_penalty = 0.0
        self.penalty_at = 0  # heartbeat number of P7's last decay (lazy decay)

    def topic_at(self, topic: str, heartbeat: int, p: PubSubParams) -> TopicStats:
        """The topic's counters, caught up to ``heartbeat`` (module rules)."""
        stats = self.topic(topic)
        steps = heartbeat - stats.decayed
        if steps > 0:
            stats.decayed = heartbeat
            if stats.first_deliveries:
                stats.first_deliveries = _decayed(stats.first_deliveries,
                                                  p.first_deliveries_decay, p.decay_to_zero,
                                                  steps)
            if stats.invalid:
                stats.invalid = _decayed(stats.invalid, p.invalid_messages_decay,
                                         p.decay_to_zero, steps)
        return stats

    def catch_up(self, heartbeat: int, p: PubSubParams) -> None:
        """Apply every decay up to heartbeat number ``heartbeat`` not applied yet."""
        for topic in self.topics:
            self.topic_at(topic, heartbeat, p)
        steps = heartbeat - self.penalty_at
        if steps > 0:
            self.penalty_at = heartbeat
            if self.behaviour_penalty:
                self.behaviour_penalty = _decayed(self.behaviour_penalty,
                                                  p.behaviour_penalty_decay, p.decay_to_zero,
                                                  steps)

    def rebase(self, heartbeat: int) -> None:
        """Count decays from heartbeat number ``heartbeat`` on (a retained score joining a
        new connection: no decay for the time it was away)."""
        self.penalty_at = heartbeat
        for stats in self.topics.values():
            stats.decayed = heartbeat

    def penalised(self, p: PubSubParams) -> bool:
        """P4 or P7 is present: the score may be negative (module rules)."""
        return (self.behaviour_penalty > p.behaviour_penalty_threshold
                or any(stats.invalid for stats in self.topics.values()))

    def topic(self, topic: str) -> TopicStats:
        stats = self.topics.get(topic)
        if stats is None:
            stats = self.topics[topic] = TopicStats()
        return stats

    def graft(self, now: float, topic: str) -> None:
        stats = self.topic(topic)
        stats.in_mesh = True
        stats.graft_time = now

    def prune(self, topic: str) -> None:
        stats = self.topics.get(topic)
        if stats is not None:
            stats.in_mesh = False

    def first_delivery(self, topic: str, p: PubSubParams) -> None:
        stats = self.topic(topic)
        if stats.first_deliveries < p.first_deliveries_cap:
            stats.first_deliveries = min(p.first_deliveries_cap, stats.first_deliveries + 1.0)

    def invalid(self, topic: str) -> None:
        self.topic(topic).invalid += 1.0

    def compute(self, now: float, p: PubSubParams) -> float:
        total = 0.0
        for stats in self.topics.values():
            s = 0.0
            if stats.in_mesh:
                p1 = (now - stats.graft_time) / p.time_in_mesh_quantum
                s += p.time_in_mesh_weight * min(max(p1, 0.0), p.time_in_mesh_cap)
            s += p.first_deliveries_weight * stats.first_deliveries
            s += p.invalid_messages_weight * stats.invalid * stats.invalid
            total += p.topic_weight * s
        if p.topic_score_cap > 0 and total > p.topic_score_cap:
            total = p.topic_score_cap
        excess = self.behaviour_penalty - p.behaviour_penalty_threshold
        if excess > 0:
            total += p.behaviour_penalty_weight * excess * excess
        return total

    def decay(self, p: PubSubParams) -> None:
        zero = p.decay_to_zero
        for stats in self.topics.values():
            stats.first_deliveries *= p.first_deliveries_decay
            if stats.first_deliveries < zero:
                stats.first_deliveries = 0.0
            stats.invalid *= p.invalid_messages_decay
            if stats.invalid < zero:
                stats.invalid = 0.0
        self.behaviour_penalty *= p.behaviour_penalty_decay
        if self.behaviour_penalty < zero:
            self.behaviour_penalty = 0.0

    def forget_topic(self, topic: str) -> None:
        """Drop a topic's counters unless they hold a penalty (invalid messages)."""
        stats = self.topics.get(topic)
        if stats is not None and stats.invalid == 0.0:
            del self.topics[topic]


def choose_pruned(rng: random.Random, mesh: Collection[NodeID], scores: Mapping[NodeID, float],
                  outbound: Collection[NodeID], p: PubSubParams) -> list[NodeID]:
    """The mesh members to PRUNE so that ``p.d`` remain (none when the mesh is not larger)."""
    members = sorted(mesh)
    if len(members) <= p.d:
        return []
    rng.shuffle(members)
    members.sort(key=lambda q: scores[q], reverse=True)  # stable: ties stay in random order
    keep = members[:p.d_score]
    rest = members[p.d_score:]
    rng.shuffle(rest)
    keep += rest[:p.d - p.d_score]
    removed = rest[p.d - p.d_score:]
    short = p.d_out - sum(1 for q in keep if q in outbound)
    if short > 0:
        outs = [q for q in removed if q in outbound][:short]
        ins = [q for q in reversed(keep) if q not in outbound][:len(outs)]
        for o, i in zip(outs, ins, strict=False):
            keep[keep.index(i)] = o
            removed[removed.index(o)] = i
    return removed
