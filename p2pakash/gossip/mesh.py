"""The mesh side of the pubsub core: its state, the heartbeat and the shared helpers.

``PubSub`` (pubsub.py) adds the event handlers; the rules of both are in pubsub.py's
docstring. Split only to keep modules small: ``MeshCore`` is never used alone.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from p2pakash.crypto import NodeID
from p2pakash.errors import RemoteProtocolError
from p2pakash.gossip.caches import MessageCache, SeenCache
from p2pakash.gossip.ihave import topic_gossip
from p2pakash.gossip.messages import Graft, Prune, Publish
from p2pakash.gossip.pubsub_types import (
    Action,
    Disconnect,
    PeerState,
    PubSubStats,
    Send,
    Validator,
    Verdict,
    announce_later,
    announcements,
    sample,
)
from p2pakash.gossip.replies import ReplyRoutes
from p2pakash.gossip.score import PeerScore, PubSubParams, choose_pruned


class MeshCore:
    def __init__(self, *, local_id: NodeID, params: PubSubParams, rng: random.Random) -> None:
        self.local_id = local_id
        self.params = params
        self._topic_params = {topic: params.for_topic(topic) for topic, *_ in params.topic_degree}
        self.stats = PubSubStats()
        self._rng = rng
        self._validators: dict[str, Validator] = {}
        self._mesh: dict[str, dict[NodeID, None]] = {}  # one per subscribed topic
        self._fanout: dict[str, dict[NodeID, None]] = {}
        self._fanout_last: dict[str, float] = {}
        self._topic_peers: dict[str, dict[NodeID, None]] = {}
        self._peers: dict[NodeID, PeerState] = {}
        self._backoff: dict[tuple[NodeID, str], float] = {}  # (peer, topic) -> until
        self._retained: dict[NodeID, tuple[PeerScore, float]] = {}
        self._seen = SeenCache(ttl=params.seen_ttl, bucket=params.heartbeat_interval,
                               max_size=params.seen_max)
        self._mcache = MessageCache(length=params.mcache_len, gossip=params.mcache_gossip,
                                    max_size=params.mcache_max)
        self._iwant_pending: set[bytes] = set()
        self._replies = ReplyRoutes(ttl=params.reply_ttl, bucket=params.heartbeat_interval,
                                    paths=params.reply_paths, max_routes=params.mcache_max,
                                    max_seen=params.seen_max)
        self._ids: dict[int, tuple[Publish, bytes]] = {}  # id(item) -> (item, message id)
        self._heartbeats = 0
        self._beat_at = 0.0  # ``now`` of the last heartbeat
        # Lazy scores (score.py): with non-negative P1/P2/topic weights only peers with a
        # P4/P7 penalty can score below zero; the heartbeat decays and recomputes those
        # (``_watch``), every other peer's counters decay when next touched.
        self._lazy = min(params.topic_weight, params.time_in_mesh_weight,
                         params.first_deliveries_weight) >= 0
        self._watch: dict[NodeID, None] = {}
        self._announce_due = 0  # no peer's re-announcement is due before this heartbeat
        self._dontwant: set[NodeID] = set()  # peers whose IDONTWANT memory is not empty

    # -------------------------------------------------------------- heartbeat
    def heartbeat(self, now: float) -> list[Action]:
        """Mesh and fanout upkeep, IHAVE gossip, cache shifts, expiry and score decay."""
        p = self.params
        self._heartbeats += 1
        self._beat_at = now
        out: list[Action] = []
        oldest = self._heartbeats - p.idontwant_ttl_heartbeats
        for pid in list(self._dontwant):
            dontwant = self._peers[pid].dontwant
            dontwant.expire(oldest)
            if not dontwant:
                self._dontwant.discard(pid)
        for pid in list(self._watch):
            peer = self._peers[pid]
            self._refresh(now, peer, out, self._score_now(now, peer))
            if self._lazy and not peer.score.penalised(p):
                del self._watch[pid]  # cannot go below zero any more: lazy again
        for topic in self._mesh:
            self._maintain_mesh(now, topic, out)
        self._maintain_fanout(now, out)
        self._emit_gossip(out)
        # Links are reliable streams, but a simulated lossy link (or a peer that missed our
        # first announcement) must not leave a topic unknown for good (module rules).
        if self._announce_due <= self._heartbeats:
            sends, self._announce_due = announcements(self._peers, self._mesh,
                                                      self._heartbeats, self.params)
            out += sends
        self._mcache.shift()
        self._seen.expire(now)
        self._replies.expire(now)
        self._iwant_pending.clear()
        if self._backoff:  # an expired entry is no backoff anyway: this only frees memory
            self._backoff = {k: t for k, t in self._backoff.items() if t > now}
        retained = self._retained  # in expiry order (``remove_peer``)
        while retained:
            gone, (_, until) = next(iter(retained.items()))
            if until > now:
                break
            del retained[gone]
        return out

    def _maintain_mesh(self, now: float, topic: str, out: list[Action]) -> None:
        p, peers, mesh = self._params_of(topic), self._peers, self._mesh[topic]
        if self._watch:  # only watched peers can score below zero (lazy scores)
            for q in [q for q in mesh if peers[q].value < 0]:
                self._prune(now, topic, q, p.prune_backoff, out)
        if len(mesh) < p.d_lo:
            cands = self._graft_candidates(now, topic, mesh)
            for q in sample(self._rng, cands, p.d - len(mesh)):
                self._graft(now, topic, q, out)
        elif len(mesh) > p.d_hi:
            scores = {q: self._score_now(now, peers[q]) for q in mesh}
            removed = choose_pruned(self._rng, mesh, scores,
                                    {q for q in mesh if peers[q].outbound}, p)
            for q in removed:
                self._prune(now, topic, q, p.prune_backoff, out)
        if len(mesh) >= p.d_lo:
            short = p.d_out - sum(1 for q in mesh if peers[q].outbound)
            if short > 0:
                cands = [q for q in self._graft_candidates(now, topic, mesh)
                         if peers[q].outbound]
                for q in sample(self._rng, cands, short):
                    self._graft(now, topic, q, out)

    def _maintain_fanout(self, now: float, out: list[Action]) -> None:
        p = self.params
        for topic in [t for t, last in self._fanout_last.items() if last + p.fanout_ttl < now]:
            del self._fanout_last[topic]
            self._fanout.pop(topic, None)
        for topic, fan in self._fanout.items():
            for q in [q for q in fan if not self._publishable(q)]:
                del fan[q]
            d = self._params_of(topic).d
            if len(fan) < d:
                cands = [q for q in self._topic_peers.get(topic, ())
                         if q not in fan and self._publishable(q)]
                for q in sample(self._rng, cands, d - len(fan)):
                    fan[q] = None

    def _params_of(self, topic: str) -> PubSubParams:
        """The parameters with ``topic``'s own mesh degree (``topic_degree``), if it has one."""
        return self._topic_params.get(topic, self.params)

    def _emit_gossip(self, out: list[Action]) -> None:
        """IHAVE for each topic with IDs in the gossip windows (``ihave.topic_gossip``)."""
        active = self._mcache.gossip_topics()
        if not active:
            return
        p, peers = self.params, self._peers
        able = {q for q, st in peers.items()
                if st.value >= p.gossip_threshold and not st.disconnecting}
        for topic, members in [*self._mesh.items(), *self._fanout.items()]:
            if topic not in active:
                continue
            entries = self._mcache.gossip_entries(topic)
            if len(entries) > p.max_ihave_length:
                entries = self._rng.sample(entries, p.max_ihave_length)
            sends = topic_gossip(self._rng, p, topic, entries,
                                 self._topic_peers.get(topic, {}).keys() & able, members)
            self.stats.ihave_sent += len(sends)
            out += sends

    # ---------------------------------------------------------------- helpers
    def _announce_later(self, peer: PeerState) -> None:
        at = announce_later(peer, self._heartbeats, self.params, restart=True)
        self._announce_due = min(self._announce_due, at)

    def _validate(self, source: NodeID, topic: str, data: bytes) -> Verdict:
        validator = self._validators.get(topic)
        if validator is None:
            return Verdict.ACCEPT
        try:
            verdict = validator(source, topic, data)
        except RemoteProtocolError:
            verdict = Verdict.REJECT
        if verdict is Verdict.REJECT:
            self.stats.rejected += 1
        elif verdict is Verdict.IGNORE:
            self.stats.ignored += 1
        return verdict

    def _forward(self, msg_id: bytes, item: Publish, targets: Iterable[NodeID],
                 source: NodeID | None, out: list[Action]) -> None:
        peers, n, told = self._peers, len(out), self._dontwant
        for q in targets:
            if q != source:
                if q in told and msg_id in peers[q].dontwant:
                    self.stats.suppressed += 1
                else:
                    out.append(Send(q, item))
        self.stats.sent += len(out) - n

    def _publishable(self, q: NodeID) -> bool:
        peer = self._peers[q]
        return peer.value >= self.params.publish_threshold and not peer.disconnecting

    def _graftable(self, now: float, q: NodeID, topic: str) -> bool:
        peer = self._peers[q]
        return (peer.value >= 0 and not peer.disconnecting
                and self._backoff.get((q, topic), 0.0) <= now)

    def _graft_candidates(self, now: float, topic: str, mesh: dict[NodeID, None]) -> list[NodeID]:
        return [q for q in self._topic_peers.get(topic, ())
                if q not in mesh and self._graftable(now, q, topic)]

    def _graft(self, now: float, topic: str, q: NodeID, out: list[Action]) -> None:
        self._mesh[topic][q] = None
        self._peers[q].score.graft(now, topic)
        out.append(Send(q, Graft(topic=topic)))

    def _prune(self, now: float, topic: str, q: NodeID, backoff: float,
               out: list[Action]) -> None:
        del self._mesh[topic][q]
        self._peers[q].score.prune(topic)
        self._backoff[(q, topic)] = now + backoff
        out.append(Send(q, Prune(topic=topic, backoff=int(backoff), px=())))

    def _refresh(self, now: float, peer: PeerState, out: list[Action],
                 value: float | None = None) -> None:
        """Cache the peer's score (``value``: just computed) and act on it."""
        if value is None:
            value = self._score_now(now, peer)
        peer.value = value
        if value < self.params.disconnect_threshold and not peer.disconnecting:
            peer.disconnecting = True
            self._detach(peer)
            out.append(Disconnect(peer.id, f"gossip score {value:.1f} below "
                                           f"{self.params.disconnect_threshold}"))

    def _score_now(self, now: float, peer: PeerState) -> float:
        """The peer's score at ``now``, its counters caught up to this heartbeat."""
        peer.score.catch_up(self._heartbeats, self.params)
        return peer.score.compute(now, self.params)

    def _penalise(self, now: float, peer: PeerState, amount: float, out: list[Action]) -> None:
        """Add ``amount`` to the peer's behaviour penalty (P7) and act on its score."""
        peer.score.catch_up(self._heartbeats, self.params)
        peer.score.behaviour_penalty += amount
        self._watch[peer.id] = None
        self._refresh(now, peer, out)

    def _detach(self, peer: PeerState) -> None:
        """Take a peer out of every mesh and fanout (no PRUNE: it is going away)."""
        for table in (self._mesh, self._fanout):
            for members in table.values():
                members.pop(peer.id, None)
        for topic in self._mesh:
            peer.score.prune(topic)

    def _drop_topic_peer(self, topic: str, peer: NodeID) -> None:
        members = self._topic_peers.get(topic)
        if members is not None:
            members.pop(peer, None)
            if not members:
                del self._topic_peers[topic]
        for table in (self._mesh, self._fanout):
            fan = table.get(topic)
            if fan is not None:
                fan.pop(peer, None)
        state = self._peers.get(peer)
        if state is not None:
            state.score.prune(topic)


__all__ = ["MeshCore"]
