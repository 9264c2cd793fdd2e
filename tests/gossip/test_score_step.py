"""The heartbeat's one-pass score step equals ``decay`` then ``compute``."""

from __future__ import annotations

import random

from p2pakash.gossip.score import PeerScore, PubSubParams


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


def test_decay_and_compute_equals_decay_then_compute() -> None:
    rng = random.Random(11)
    for p in (PubSubParams(), PubSubParams(topic_score_cap=0.0, behaviour_penalty_threshold=1.0)):
        for _ in range(300):
            seed = rng.random()
            one, two = _random_score(random.Random(seed), p), _random_score(random.Random(seed), p)
            now = rng.uniform(0.0, 800.0)
            for _ in range(rng.randint(1, 60)):  # repeated heartbeats decay towards zero
                two.decay(p)
                assert one.decay_and_compute(now, p) == two.compute(now, p)
            assert one.behaviour_penalty == two.behaviour_penalty
            assert {t: (s.first_deliveries, s.invalid) for t, s in one.topics.items()} == \
                {t: (s.first_deliveries, s.invalid) for t, s in two.topics.items()}
