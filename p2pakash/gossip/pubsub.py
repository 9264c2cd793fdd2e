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
* Replies (``replies.py``): for messages of an answerable topic the first two delivering
  peers are kept as ways back; a ``Reply`` is validated by its topic's validator, handled
  once, and sent only along the ways back of the message it answers (delivered locally at
  its publisher). It is charged like a Publish: no way back or a topic we are not in costs
  a token, a rejection scores as an invalid message on that topic.
* A topic may have its own mesh degree (``topic_degree``); every mesh rule uses it.
* Subscriptions go to every peer on connect and on (un)subscribe; re-announcements at a
  doubling gap, only of topics the peer has not shown it knows (``pubsub_types.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from p2pakash.crypto import NodeID
from p2pakash.errors import LocalProtocolError
from p2pakash.gossip.caches import trim_oldest
from p2pakash.gossip.ihave import wanted
from p2pakash.gossip.mesh import MeshCore
from p2pakash.gossip.messages import (
    Graft,
    IDontWant,
    IHave,
    IWant,
    Prune,
    Publish,
    Reply,
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
    check_topic,
    sample,
)
from p2pakash.gossip.replies import LOCAL, reply_id
from p2pakash.gossip.score import PeerScore, PubSubParams

__all__ = ["Action", "Deliver", "Disconnect", "PubSub", "PubSubParams", "PubSubStats", "Send",
           "Validator", "Verdict"]

ID_MEMO = 1024  # Publish objects whose message ID is remembered


class PubSub(MeshCore):
    def __init__(self, *, local_id: NodeID, params: PubSubParams, rng: random.Random) -> None:
        super().__init__(local_id=local_id, params=params, rng=rng)
        self._handlers: dict[type, Callable[[float, PeerState, Any], list[Action]]] = {
            Subscribe: self._on_subscribe, Graft: self._on_graft, Prune: self._on_prune,
            IHave: self._on_ihave, IWant: self._on_iwant, IDontWant: self._on_idontwant,
            Reply: self._on_reply,
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

    def answerable(self, topic: str) -> None:
        """Keep the way back for messages of ``topic``, so they can be answered (``reply``)."""
        self._replies.topics.add(topic)

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
        d = self._params_of(topic).d
        for q in fanout:
            if len(mesh) < d and self._graftable(now, q, topic):
                self._graft(now, topic, q, out)
        for q in sample(self._rng, self._graft_candidates(now, topic, mesh), d - len(mesh)):
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
        if topic in self._replies.topics:
            self._replies.note(now, msg_id, LOCAL)
        if topic not in self._mesh:
            self._fanout_last[topic] = now
            if topic not in self._fanout:
                cands = [q for q in self._topic_peers.get(topic, ()) if self._publishable(q)]
                self._fanout[topic] = dict.fromkeys(sample(self._rng, cands,
                                                           self._params_of(topic).d))
        out: list[Action] = []
        self._forward(msg_id, item, self._own_targets(topic), None, out)
        return msg_id, out

    def reply(self, now: float, to: bytes, topic: str, data: bytes
              ) -> tuple[bool, list[Action]]:
        """Answer message ``to`` of an answerable topic: the answer goes back the way ``to``
        came (``replies.py``). (False, []) when we hold no way back (none, or none still
        connected: checked before validating, so a fallback publish is validated afresh) or
        our own validator refuses it; the caller may publish it on ``topic`` instead."""
        route = self._replies.routes.get(to)
        if route is None or not any(q == LOCAL or self._live(q) for q in route):
            return False, []
        rid = reply_id(to, topic, data)
        if rid in self._replies.seen:
            return True, []
        if self._validate(self.local_id, topic, data) is not Verdict.ACCEPT:
            return False, []
        self._replies.seen.add(now, rid)
        out: list[Action] = []
        self._route_reply(now, Reply(to=to, topic=topic, data=data), rid, route, None, out)
        return bool(out), out

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
            return self._rate_limited(now, peer)
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
            if msg_id in self._replies.routes:
                self._replies.also(msg_id, source)  # a second way back
            return []
        self._seen.add(now, msg_id)
        self._iwant_pending.discard(msg_id)
        out: list[Action] = []
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
            if topic in self._replies.topics:
                self._replies.note(now, msg_id, source)
        else:
            self._refused(now, peer, topic, verdict, out)
        return out

    def _on_reply(self, now: float, peer: PeerState, item: Reply) -> list[Action]:
        stats, topic = self.stats, item.topic
        if peer.bucket.tokens < 1.0 and not peer.bucket.has(now):
            return self._rate_limited(now, peer)
        route = self._replies.routes.get(item.to)
        if route is None or topic not in self._mesh:
            stats.replies_unroutable += 1  # our way back expired, or nothing we carry
            peer.bucket.charge(now)
            return []
        rid = reply_id(item.to, topic, item.data)
        if not self._replies.seen.add(now, rid):
            stats.duplicates += 1
            return []
        verdict = self._validate(peer.id, topic, item.data)
        out: list[Action] = []
        if verdict is Verdict.ACCEPT:
            self._route_reply(now, item, rid, route, peer.id, out)
        else:
            self._refused(now, peer, topic, verdict, out)
        return out

    def _rate_limited(self, now: float, peer: PeerState) -> list[Action]:
        """A Publish or Reply from a peer whose bucket is empty: dropped and penalised."""
        self.stats.rate_limited += 1
        out: list[Action] = []
        self._penalise(now, peer, self.params.rate_limit_penalty, out)
        return out

    def _refused(self, now: float, peer: PeerState, topic: str, verdict: Verdict,
                 out: list[Action]) -> None:
        """The validator did not accept what ``peer`` sent on ``topic``: a token for any
        refusal, an invalid-message count (P4) for a rejection."""
        peer.bucket.charge(now)
        if verdict is Verdict.REJECT:
            peer.score.topic_at(topic, self._heartbeats, self.params)
            peer.score.invalid(topic)
            self._watch[peer.id] = None
            self._refresh(now, peer, out)

    def _route_reply(self, now: float, item: Reply, rid: bytes, route: list[NodeID],
                     source: NodeID | None, out: list[Action]) -> None:
        n = len(out)
        for q in route:
            if q == LOCAL:
                self.stats.replies_delivered += 1
                out.append(Deliver(item.topic, item.data, rid, source or self.local_id))
            elif q != source and self._live(q):
                self.stats.replies_sent += 1
                out.append(Send(q, item))
        if len(out) == n and source is not None:
            self._flood_reply(now, item, source, out)

    def _flood_reply(self, now: float, item: Reply, source: NodeID, out: list[Action]) -> None:
        """A relay whose ways back are all gone: the answer (already validated here) goes
        on its topic like a publish, so it still reaches the asker, who subscribes to it."""
        topic, data = item.topic, item.data
        msg_id = message_id(topic, data)
        mesh = self._mesh.get(topic)
        if mesh is None or not self._seen.add(now, msg_id):
            return
        self.stats.replies_flooded += 1
        publish = Publish(topic=topic, data=data)
        self._mcache.put(msg_id, publish)
        self._forward(msg_id, publish, self._own_targets(topic), source, out)

    def _own_targets(self, topic: str) -> Iterable[NodeID]:
        """Where a message this node sends goes: every topic peer above the publish
        threshold (``flood_publish``), else the mesh, else the fanout."""
        if self.params.flood_publish:
            return [q for q in self._topic_peers.get(topic, ()) if self._publishable(q)]
        mesh = self._mesh.get(topic)
        return mesh if mesh is not None else self._fanout.get(topic, {})

    def _live(self, q: NodeID) -> bool:
        peer = self._peers.get(q)
        return peer is not None and not peer.disconnecting

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
        topic, pid, p = item.topic, peer.id, self._params_of(item.topic)
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
