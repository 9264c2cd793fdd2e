"""The pubsub core: a gossipsub v1.1 mesh (+ v1.2 IDONTWANT) as a sans-IO state machine.

Reference: consensus_gossip.md §B1-§B3. A driver feeds events in (``add_peer``,
``remove_peer``, ``handle``, ``publish``, ``heartbeat`` ...) and carries the returned
actions out: ``Send`` (one gossip message to one peer), ``Deliver`` (first copy of a valid
message to the local application) and ``Disconnect`` (a peer's score fell below
``disconnect_threshold``; emitted once per connection).

Rules and invariants:
* No IO: time arrives as ``now`` (seconds), randomness from the injected ``random.Random``.
  Every set is put in sorted order before the rng samples it, and meshes are
  insertion-ordered dicts, so one seed and one event sequence give one action trace.
* Message IDs are content hashes (``messages.message_id``). The seen cache is checked
  BEFORE validation, so a validator runs at most once per message per node; the seen
  cache also holds rejected and ignored messages.
* Scores (score.py): with non-negative P1/P2/topic weights only peers with a P4/P7 penalty
  (``_watch``) are decayed and recomputed every heartbeat; every other peer's counters decay
  lazily (caught up when touched) and its cached value stays >= 0, which answers every
  threshold (all <= 0) as the exact score would; mesh pruning and ``score`` compute the
  exact value. The action trace equals that of decaying every peer every heartbeat.
* Items from graylisted peers (cached score < ``graylist_threshold``), from peers already
  told to disconnect and from unknown peers are ignored entirely.
* Publish items that turn out useless (ignored, rejected, or for a topic we are not in) cost
  the sending peer a token from its bucket; with the bucket empty, its Publish items are
  dropped before validation and add ``rate_limit_penalty`` to its behaviour penalty (P7).
  Valid messages cost nothing: an honest relay legitimately forwards bursts from many
  publishers, and the volume of valid messages is the topic validators' business (orders
  need an on-chain deposit, bids a registered provider, txs a fee and a sequence number).
* Everything is bounded: seen cache, message cache, IDONTWANT memory, topics per peer,
  IHAVE/IWANT sizes and counts per heartbeat, retained scores of gone peers, backoffs.
* Own publishes are not delivered back to the local application (the caller has them).
* IHAVE (``ihave.py``) names only the gossip window's IDs the target is not known to hold:
  a peer holds a message once it sent it to us (first copy or duplicate), or an IHAVE or
  IDONTWANT naming it; sending it to a peer proves nothing (the copy may be lost).
* Subscriptions go to every peer on connect and on (un)subscribe; re-announcements at a
  doubling gap, only of topics the peer has not shown it knows (``pubsub_types.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from p2pakash.crypto import NodeID
from p2pakash.errors import LocalProtocolError, RemoteProtocolError
from p2pakash.gossip.caches import MessageCache, SeenCache, trim_oldest
from p2pakash.gossip.ihave import topic_gossip, wanted
from p2pakash.gossip.messages import (
    Graft,
    IDontWant,
    IHave,
    IWant,
    Prune,
    Publish,
    Subscribe,
    message_id,
)
from p2pakash.gossip.pubsub_types import (
    Action,
    Deliver,
    Disconnect,
    PeerState,
    PubSubStats,
    Send,
    Validator,
    Verdict,
    announce_later,
    announcements,
    check_topic,
    sample,
)
from p2pakash.gossip.score import PeerScore, PubSubParams, choose_pruned

__all__ = ["Action", "Deliver", "Disconnect", "PubSub", "PubSubParams", "PubSubStats", "Send",
           "Validator", "Verdict"]

ID_MEMO = 1024  # Publish objects whose message ID is remembered


class PubSub:
    def __init__(self, *, local_id: NodeID, params: PubSubParams, rng: random.Random) -> None:
        self.local_id = local_id
        self.params = params
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
        self._handlers: dict[type, Callable[[float, PeerState, Any], list[Action]]] = {
            Subscribe: self._on_subscribe, Graft: self._on_graft, Prune: self._on_prune,
            IHave: self._on_ihave, IWant: self._on_iwant, IDontWant: self._on_idontwant,
        }

    # ----------------------------------------------------------------- queries
    def mesh(self, topic: str) -> frozenset[NodeID]:
        return frozenset(self._mesh.get(topic, ()))

    def fanout(self, topic: str) -> frozenset[NodeID]:
        return frozenset(self._fanout.get(topic, ()))

    def topic_peers(self, topic: str) -> frozenset[NodeID]:
        return frozenset(self._topic_peers.get(topic, ()))

    def subscriptions(self) -> frozenset[str]:
        return frozenset(self._mesh)

    def peers(self) -> frozenset[NodeID]:
        return frozenset(self._peers)

    def score(self, peer: NodeID) -> float:
        """The peer's score as of the last heartbeat or penalty (0.0 for unknown peers)."""
        p = self._peers.get(peer)
        if p is None:
            return 0.0
        return p.value if p.id in self._watch else self._score_now(self._beat_at, p)

    def seen(self, msg_id: bytes) -> bool:
        return msg_id in self._seen

    # ----------------------------------------------------------- local events
    def set_validator(self, topic: str, validator: Validator) -> None:
        self._validators[topic] = validator

    def subscribe(self, now: float, topic: str) -> list[Action]:
        check_topic(topic)
        if topic in self._mesh:
            return []
        out: list[Action] = [Send(q, Subscribe(topic=topic, subscribe=True)) for q in self._peers]
        for peer in self._peers.values():
            self._announce_later(peer)
        mesh = self._mesh[topic] = {}
        fanout = self._fanout.pop(topic, {})
        self._fanout_last.pop(topic, None)
        for q in fanout:
            if len(mesh) < self.params.d and self._graftable(now, q, topic):
                self._graft(now, topic, q, out)
        for q in sample(self._rng, self._graft_candidates(now, topic, mesh),
                         self.params.d - len(mesh)):
            self._graft(now, topic, q, out)
        return out

    def unsubscribe(self, now: float, topic: str) -> list[Action]:
        mesh = self._mesh.pop(topic, None)
        if mesh is None:
            return []
        out: list[Action] = [Send(q, Subscribe(topic=topic, subscribe=False)) for q in self._peers]
        backoff = self.params.unsubscribe_backoff
        for q in mesh:
            self._backoff[(q, topic)] = now + backoff
            out.append(Send(q, Prune(topic=topic, backoff=int(backoff), px=())))
        for peer in self._peers.values():
            peer.score.prune(topic)
            peer.score.forget_topic(topic)
            peer.confirmed.discard(topic)
        return out

    def add_peer(self, now: float, peer: NodeID, *, outbound: bool) -> list[Action]:
        if peer in self._peers:
            raise LocalProtocolError(f"pubsub.add_peer: peer {peer} is already connected")
        p = self.params
        kept = self._retained.pop(peer, None)
        score = kept[0] if kept is not None and kept[1] > now else PeerScore()
        score.rebase(self._heartbeats)
        state = self._peers[peer] = PeerState(now, peer, outbound, score, p)
        if not self._lazy or score.penalised(p):
            self._watch[peer] = None
        self._announce_later(state)
        out: list[Action] = [Send(peer, Subscribe(topic=t, subscribe=True)) for t in self._mesh]
        self._refresh(now, state, out)
        return out

    def remove_peer(self, now: float, peer: NodeID) -> list[Action]:
        state = self._peers.pop(peer, None)
        if state is None:
            return []
        self._watch.pop(peer, None)
        self._dontwant.discard(peer)
        state.score.catch_up(self._heartbeats, self.params)
        self._detach(state)
        for topic in state.topics:
            self._drop_topic_peer(topic, peer)
        if state.score.topics or state.score.behaviour_penalty:
            for topic in list(state.score.topics):
                state.score.prune(topic)
            self._retained.pop(peer, None)  # re-inserted last: the dict stays in expiry order
            if len(self._retained) >= self.params.max_retained:
                del self._retained[next(iter(self._retained))]
            self._retained[peer] = (state.score, now + self.params.retain_score)
        return []

    def publish(self, now: float, topic: str, data: bytes) -> tuple[bytes, list[Action]]:
        """Publish our own message; (msg_id, []) when it was seen before or not accepted."""
        check_topic(topic)
        msg_id = message_id(topic, data)
        if not self._seen.add(now, msg_id):
            return msg_id, []
        verdict = self._validate(self.local_id, topic, data)
        if verdict is not Verdict.ACCEPT:
            return msg_id, []
        item = Publish(topic=topic, data=data)
        self._mcache.put(msg_id, item)
        self.stats.published += 1
        p = self.params
        mesh = self._mesh.get(topic)
        if mesh is None:
            self._fanout_last[topic] = now
            if topic not in self._fanout:
                cands = [q for q in self._topic_peers.get(topic, ()) if self._publishable(q)]
                self._fanout[topic] = dict.fromkeys(sample(self._rng, cands, p.d))
        targets: Iterable[NodeID]
        if p.flood_publish:
            targets = [q for q in self._topic_peers.get(topic, ()) if self._publishable(q)]
        else:
            targets = mesh if mesh is not None else self._fanout[topic]
        out: list[Action] = []
        self._forward(msg_id, item, targets, None, out)
        return msg_id, out

    # ------------------------------------------------------------ peer events
    def handle(self, now: float, peer: NodeID, item: object) -> list[Action]:
        """One gossip message from a connected peer (items of unknown peers are ignored)."""
        if type(item) is Publish:
            return self.handle_publish(now, peer, item)
        state = self._peers.get(peer)
        if state is None:
            return []
        if state.disconnecting or state.value < self.params.graylist_threshold:
            self.stats.graylisted += 1
            return []
        handler = self._handlers.get(type(item))
        if handler is None:
            raise LocalProtocolError(
                f"pubsub.handle: {type(item).__name__} from {peer} is not a pubsub message")
        return handler(now, state, item)

    def handle_publish(self, now: float, source: NodeID, item: Publish) -> list[Action]:
        """``handle`` of a Publish (one call less per copy: the in-memory sink's entry)."""
        peer = self._peers.get(source)
        stats = self.stats
        if peer is None:
            return []
        if peer.disconnecting or peer.value < self.params.graylist_threshold:
            stats.graylisted += 1
            return []
        if peer.bucket.tokens < 1.0 and not peer.bucket.has(now):  # (refills lazily: exact)
            stats.rate_limited += 1
            out: list[Action] = []
            self._penalise(now, peer, self.params.rate_limit_penalty, out)
            return out
        topic = item.topic
        mesh = self._mesh.get(topic)
        if mesh is None:
            stats.unsubscribed += 1
            peer.bucket.charge(now)
            return []
        peer.confirmed.add(topic)
        data = item.data
        memo = self._ids.get(id(item))  # the same object from several peers (in memory)
        if memo is not None and memo[0] is item:
            msg_id = memo[1]
        else:
            msg_id = message_id(topic, data)
            self._ids[id(item)] = (item, msg_id)  # holding the item keeps its id unique
            trim_oldest(self._ids, ID_MEMO)
        if msg_id in self._seen.ids:
            stats.duplicates += 1
            entry = self._mcache.entries.get(msg_id)
            if entry is not None:
                entry.holders.add(source)  # no IHAVE of it to this peer (module rules)
            return []
        self._seen.add(now, msg_id)
        self._iwant_pending.discard(msg_id)
        out = []
        if len(data) >= self.params.idontwant_min_size and len(mesh) > 1:
            dont = IDontWant(ids=(msg_id,))
            for q in mesh:
                if q != source:
                    out.append(Send(q, dont))
                    stats.idontwant_sent += 1
        verdict = self._validate(source, topic, data)
        if verdict is Verdict.ACCEPT:
            peer.score.topic_at(topic, self._heartbeats, self.params)
            peer.score.first_delivery(topic, self.params)
            self._mcache.put(msg_id, item, source)
            stats.delivered += 1
            out.append(Deliver(topic, data, msg_id, source))
            self._forward(msg_id, item, mesh, source, out)
        else:
            peer.bucket.charge(now)
            if verdict is Verdict.REJECT:
                peer.score.topic_at(topic, self._heartbeats, self.params)
                peer.score.invalid(topic)
                self._watch[peer.id] = None
                self._refresh(now, peer, out)
        return out

    def _on_subscribe(self, now: float, peer: PeerState, item: Subscribe) -> list[Action]:
        topic = item.topic
        if item.subscribe:
            self._learn_topic(peer, topic)
        elif topic in peer.topics:
            peer.topics.discard(topic)
            self._drop_topic_peer(topic, peer.id)
        return []

    def _learn_topic(self, peer: PeerState, topic: str) -> None:
        if topic not in peer.topics and len(peer.topics) < self.params.max_topics_per_peer:
            peer.topics.add(topic)
            self._topic_peers.setdefault(topic, {})[peer.id] = None

    def _on_graft(self, now: float, peer: PeerState, item: Graft) -> list[Action]:
        topic, pid, p = item.topic, peer.id, self.params
        mesh = self._mesh.get(topic)
        if mesh is None or pid in mesh:
            return [Send(pid, Prune(topic=topic, backoff=0, px=()))] if mesh is None else []
        peer.confirmed.add(topic)
        out: list[Action] = []
        if self._backoff.get((pid, topic), 0.0) > now:
            self._penalise(now, peer, 1.0, out)
        elif peer.value >= 0 and topic in peer.topics and (len(mesh) < p.d_hi or peer.outbound):
            mesh[pid] = None
            peer.score.graft(now, topic)
            return out
        self._backoff[(pid, topic)] = now + p.prune_backoff
        out.append(Send(pid, Prune(topic=topic, backoff=int(p.prune_backoff), px=())))
        return out

    def _on_prune(self, now: float, peer: PeerState, item: Prune) -> list[Action]:
        topic, p = item.topic, self.params
        mesh = self._mesh.get(topic)
        if mesh is None:
            return []
        if peer.id in mesh:
            del mesh[peer.id]
            peer.score.prune(topic)
        backoff = min(float(item.backoff), p.max_backoff) if item.backoff > 0 else p.prune_backoff
        self._backoff[(peer.id, topic)] = max(now + backoff, self._backoff.get((peer.id, topic), 0))
        return []

    def _on_ihave(self, now: float, peer: PeerState, item: IHave) -> list[Action]:
        p = self.params
        if peer.counted_at != self._heartbeats:  # the per-heartbeat counters, reset lazily
            peer.counted_at = self._heartbeats
            peer.ihave_count = peer.iwant_asked = 0
        peer.ihave_count += 1
        if item.topic in self._mesh:
            peer.confirmed.add(item.topic)
        if (peer.value < p.gossip_threshold or peer.ihave_count > p.max_ihave_messages
                or item.topic not in self._mesh):
            return []
        want = wanted(item.ids, peer.id, p.max_iwant_per_heartbeat - peer.iwant_asked,
                      seen=self._seen, pending=self._iwant_pending, mcache=self._mcache)
        if not want:
            return []
        peer.iwant_asked += len(want)
        self.stats.iwant_sent += len(want)
        return [Send(peer.id, IWant(ids=tuple(want)))]

    def _on_iwant(self, now: float, peer: PeerState, item: IWant) -> list[Action]:
        if peer.value < self.params.gossip_threshold:
            return []
        pid = peer.id
        out: list[Action] = [Send(pid, msg) for msg in self._mcache.serve(
            item.ids, pid, self.params.gossip_retransmission)]
        self.stats.iwant_served += len(out)
        self.stats.sent += len(out)
        return out

    def _on_idontwant(self, now: float, peer: PeerState, item: IDontWant) -> list[Action]:
        peer.dontwant.add(item.ids, self._heartbeats)
        if peer.dontwant:
            self._dontwant.add(peer.id)
        self._mcache.mark_held(item.ids, peer.id)
        return []

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
        p, peers, mesh = self.params, self._peers, self._mesh[topic]
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
            if len(fan) < p.d:
                cands = [q for q in self._topic_peers.get(topic, ())
                         if q not in fan and self._publishable(q)]
                for q in sample(self._rng, cands, p.d - len(fan)):
                    fan[q] = None

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
