"""Lazy score decay (``PeerScore.catch_up``) equals the eager ``decay`` once per heartbeat,
and a pubsub core with lazy scores acts like one that decays every peer every heartbeat."""

from __future__ import annotations

import copy
import random

from p2pakash.gossip.messages import Graft, Publish, Subscribe
from p2pakash.gossip.pubsub import PubSub, Verdict
from p2pakash.gossip.score import PeerScore, PubSubParams
from tests.gossip.netsim import node_ids


def _peek(ps: PubSub, peer: bytes | str) -> float:
    """The peer's score now, computed on a copy (reading must not catch the core up)."""
    score = copy.deepcopy(ps._peers[peer].score)  # type: ignore[index]
    score.catch_up(ps._heartbeats, ps.params)
    return score.compute(ps._beat_at, ps.params)


def _random_score(rng: random.Random, p: PubSubParams) -> PeerScore:
    score = PeerScore()
    for topic in rng.sample(["a", "b", "c", "d"], rng.randint(0, 4)):
        if rng.random() < 0.6:
            score.graft(rng.uniform(0.0, 400.0), topic)
        for _ in range(rng.randint(0, 12)):
            score.first_delivery(topic, p)
        for _ in range(rng.choice([0, 0, 1, 3])):
            score.invalid(topic)
        if rng.random() < 0.3:
            score.prune(topic)
    score.behaviour_penalty = rng.choice([0.0, 0.005, 0.5, 3.0])
    return score


def _counters(score: PeerScore) -> tuple[float, dict[str, tuple[float, float]]]:
    return score.behaviour_penalty, {t: (s.first_deliveries, s.invalid)
                                     for t, s in score.topics.items()}


def test_catch_up_equals_one_decay_per_heartbeat() -> None:
    rng = random.Random(11)
    for p in (PubSubParams(), PubSubParams(topic_score_cap=0.0, behaviour_penalty_threshold=1.0)):
        for _ in range(300):
            seed = rng.random()
            lazy = _random_score(random.Random(seed), p)
            eager = _random_score(random.Random(seed), p)
            now = rng.uniform(0.0, 800.0)
            beat = 0
            for _ in range(rng.randint(1, 12)):  # heartbeats, with deliveries between some
                for _ in range(rng.randint(1, 8)):
                    beat += 1
                    eager.decay(p)
                topic = rng.choice(["a", "b", "e"])
                if rng.random() < 0.5:  # a counter moves: caught up first, then changed
                    lazy.topic_at(topic, beat, p)
                    lazy.first_delivery(topic, p)
                    eager.first_delivery(topic, p)
                lazy.catch_up(beat, p)
                assert lazy.compute(now, p) == eager.compute(now, p)
                assert _counters(lazy) == _counters(eager)
            assert lazy.penalised(p) == (eager.behaviour_penalty > p.behaviour_penalty_threshold
                                         or any(s.invalid for s in eager.topics.values()))


def test_lazy_core_matches_eager_core_trace() -> None:
    """Same events into a core with lazy scores and one that decays and recomputes every
    peer every heartbeat (laziness switched off): the same actions and scores."""
    ids = node_ids(12)
    me, peers = ids[0], ids[1:]

    def core(lazy: bool) -> PubSub:
        params = PubSubParams(d_hi=8)
        ps = PubSub(local_id=me, params=params, rng=random.Random(5))
        if not lazy:
            ps._lazy = False
        bad = {b"bad"}
        ps.set_validator("t", lambda src, topic, data: Verdict.REJECT if data in bad
                         else Verdict.ACCEPT)
        return ps

    lazy, eager = core(True), core(False)
    rng = random.Random(3)
    trace: list[list[object]] = [[], []]
    now = 0.0
    for i, ps in enumerate((lazy, eager)):
        trace[i] += ps.subscribe(now, "t")
        for q in peers:
            trace[i] += ps.add_peer(now, q, outbound=q < peers[4])
            trace[i] += ps.handle(now, q, Subscribe(topic="t", subscribe=True))
    for step in range(400):
        now += 0.25
        q = rng.choice(peers)
        kind = rng.random()
        if kind < 0.6:
            item: object = Publish(topic="t", data=b"m%d" % rng.randrange(300))
        elif kind < 0.65:
            item = Publish(topic="t", data=b"bad")
        else:
            item = Graft(topic="t")
        for i, ps in enumerate((lazy, eager)):
            trace[i] += ps.handle(now, q, item)
            if step % 4 == 3:
                trace[i] += ps.heartbeat(now)
                trace[i].append({p: _peek(ps, p) for p in peers})
        # a cached value is exact for a watched peer, and >= 0 with the score for the rest
        for p in peers:
            value, exact = lazy._peers[p].value, eager._peers[p].value
            assert value == exact if p in lazy._watch else min(value, exact) >= 0
    assert trace[0] == trace[1]
    assert [lazy.score(p) for p in peers] == [eager.score(p) for p in peers]
    assert lazy._watch and len(lazy._watch) < len(eager._watch) == len(peers)
