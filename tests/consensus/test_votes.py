"""The vote keeper: power counting, duplicates, equivocation, round bounds, commits."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pakash.consensus.types import VoteType, verify_commit
from p2pakash.consensus.votes import AddStatus, VoteKeeper
from tests.consensus import CHAIN, KEYS, ZERO, make_set, vote

PRE = VoteType.PREVOTE
PC = VoteType.PRECOMMIT
H1 = bytes(range(32))
H2 = bytes(range(1, 33))


def test_counts_by_power_and_thresholds() -> None:
    vs = make_set(1, 2, 3, 4)  # total 10: > 2/3 needs 7, > 1/3 needs 4
    keeper = VoteKeeper(1, vs)
    for i in (3, 2):  # powers 4 + 3 = 7
        assert keeper.add(vote(KEYS[i], PRE, 1, 0, H1)).added
    assert keeper.power_for(0, PRE, H1) == 7
    assert keeper.has_two_thirds_for(0, PRE, H1)
    assert not keeper.has_two_thirds_for(0, PRE, None)
    assert keeper.two_thirds_value(0, PRE) == (H1,)
    assert keeper.any_power(0, PC) == 0
    keeper.add(vote(KEYS[0], PRE, 1, 0, None))
    assert keeper.any_power(0, PRE) == 8 and keeper.power_for(0, PRE, None) == 1


def test_duplicate_and_equivocation_give_evidence_once() -> None:
    keeper = VoteKeeper(1, make_set(1, 1, 1, 1))
    first = vote(KEYS[1], PRE, 1, 0, H1)
    assert keeper.add(first).added
    assert keeper.add(vote(KEYS[1], PRE, 1, 0, H1, timestamp_ms=9)).status is AddStatus.DUPLICATE
    res = keeper.add(vote(KEYS[1], PRE, 1, 0, None))
    assert res.status is AddStatus.EQUIVOCATION and res.evidence is not None
    res.evidence.verify(make_set(1, 1, 1, 1), CHAIN)
    # the paper counts distinct senders per value: the equivocator counts for both values,
    # but only once for "any"
    assert keeper.power_for(0, PRE, H1) == 1 and keeper.power_for(0, PRE, None) == 1
    assert keeper.any_power(0, PRE) == 1
    again = keeper.add(vote(KEYS[1], PRE, 1, 0, H2))
    assert again.status is AddStatus.EQUIVOCATION and again.evidence is None
    assert keeper.add(vote(KEYS[1], PRE, 1, 0, ZERO)).status is AddStatus.DROPPED  # 4th value
    assert keeper.power_for(0, PRE, ZERO) == 0
    assert len(keeper.votes(0, PRE)) == 3
    # the same validator may precommit in that round: another type is not a conflict
    assert keeper.add(vote(KEYS[1], PC, 1, 0, None)).added


def test_rejects_unknown_validator_and_other_height() -> None:
    keeper = VoteKeeper(2, make_set(1, 1, 1, 1))
    assert keeper.add(vote(KEYS[7], PRE, 2, 0, H1)).status is AddStatus.UNKNOWN_VALIDATOR
    assert keeper.add(vote(KEYS[0], PRE, 3, 0, H1)).status is AddStatus.WRONG_HEIGHT


def test_one_third_any_round_counts_each_validator_once() -> None:
    keeper = VoteKeeper(1, make_set(1, 1, 1, 1))
    keeper.add(vote(KEYS[0], PRE, 1, 3, H1))
    keeper.add(vote(KEYS[0], PC, 1, 3, H1))  # same validator, another type: still power 1
    assert not keeper.has_one_third_any_round(3)
    keeper.add(vote(KEYS[1], PC, 1, 3, None))
    assert keeper.has_one_third_any_round(3)
    assert keeper.rounds() == [3]


def test_future_rounds_bounded_per_validator() -> None:
    keeper = VoteKeeper(1, make_set(1, 1, 1, 1), max_future_rounds=2)
    for r in (5, 6):
        assert keeper.add(vote(KEYS[0], PRE, 1, r, H1)).added
    assert keeper.add(vote(KEYS[0], PRE, 1, 4, H1)).status is AddStatus.DROPPED
    assert keeper.add(vote(KEYS[0], PC, 1, 6, H1)).added  # a round it already holds
    assert keeper.add(vote(KEYS[0], PRE, 1, 90, H1)).added  # evicts round 5
    assert keeper.power_for(5, PRE, H1) == 0
    assert keeper.rounds() == [6, 90]
    keeper.set_round(6)  # rounds <= current are no longer "future": room again
    assert keeper.add(vote(KEYS[0], PRE, 1, 91, H1)).added
    assert keeper.add(vote(KEYS[0], PRE, 1, 2, H1)).added  # past rounds are always kept
    assert keeper.rounds() == [2, 6, 90, 91]


def test_commit_for_holds_matching_precommits_in_set_order() -> None:
    vs = make_set(1, 1, 1, 1)
    keeper = VoteKeeper(1, vs)
    for i in (2, 0, 3):
        keeper.add(vote(KEYS[i], PC, 1, 1, H1))
    keeper.add(vote(KEYS[1], PC, 1, 1, None))
    commit = keeper.commit_for(1, H1)
    assert [s.validator for s in commit.signatures] == [KEYS[i].public for i in (0, 2, 3)]
    verify_commit(commit, vs, CHAIN, H1)


@settings(max_examples=80, deadline=None)
@given(powers=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=7),
       seed=st.integers(min_value=0, max_value=2**32))
def test_power_arithmetic_matches_a_recount(powers: list[int], seed: int) -> None:
    rng = random.Random(seed)
    vs = make_set(*powers)
    keeper = VoteKeeper(1, vs)
    values: dict[tuple[int, int, int], list[bytes | None]] = {}  # first 3 distinct values
    for _ in range(40):
        i = rng.randrange(len(powers))
        r = rng.randrange(3)
        t = rng.choice([PRE, PC])
        h = rng.choice([H1, H2, None, ZERO])
        keeper.add(vote(KEYS[i], t, 1, r, h))
        seen = values.setdefault((i, r, int(t)), [])
        if h not in seen and len(seen) < 3:
            seen.append(h)
    first = values
    total = sum(powers)
    for r in range(3):
        for t in (PRE, PC):
            for h in (H1, H2, None, ZERO):
                want = sum(powers[i] for (i, rr, tt), hs in values.items()
                           if rr == r and tt == t and h in hs)
                assert keeper.power_for(r, t, h) == want
                assert keeper.has_two_thirds_for(r, t, h) == (3 * want > 2 * total)
            anyp = sum(powers[i] for (i, rr, tt) in first if rr == r and tt == t)
            assert keeper.any_power(r, t) == anyp
        voters = {i for (i, rr, _t) in first if rr == r}
        assert keeper.has_one_third_any_round(r) == (3 * sum(powers[i] for i in voters) > total)
