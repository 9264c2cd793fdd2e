"""Validator sets and CometBFT proposer selection (validator_set.go semantics)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pakash import wire
from p2pakash.consensus.proposer import (
    INT64_MAX,
    Validator,
    ValidatorSet,
    ValidatorSetError,
    _centre,
    _rescale,
    _trunc_div,
    address_of,
)
from p2pakash.crypto import PrivateKey
from p2pakash.errors import DecodeError

KEYS: list[bytes] = sorted((PrivateKey.from_seed(bytes([i + 1]) * 32).public for i in range(8)),
              key=address_of)


def vset(*powers: int) -> ValidatorSet:
    return ValidatorSet.new([Validator(pubkey=KEYS[i], power=p) for i, p in enumerate(powers)])


def sequence(vs: ValidatorSet, n: int) -> list[int]:
    out = []
    for _ in range(n):
        out.append(KEYS.index(vs.proposer_key))
        vs = vs.advance()
    return out


def test_vp_1_3_sequence_p2_p1_p2_p2() -> None:
    # p1 (power 1) has the smaller address, so it wins the tie at the second election.
    assert sequence(vset(1, 3), 12) == [1, 0, 1, 1] * 3


def test_equal_power_goes_in_address_order() -> None:
    assert sequence(vset(100, 100, 100), 9) == [0, 1, 2] * 3


def test_counts_proportional_to_power_over_ten_windows() -> None:
    # validator_set_test.go TestProposerSelection2: powers 4, 5, 3 over 120 elections.
    counts = [0, 0, 0]
    for i in sequence(vset(4, 5, 3), 120):
        counts[i] += 1
    assert counts == [40, 50, 30]


def test_proposer_of_round_is_advance_on_a_copy() -> None:
    vs = vset(1, 2, 3, 4)
    assert vs.proposer(0).pubkey == vs.proposer_key
    assert vs.proposer(5).pubkey == vs.advance(5).proposer_key
    assert vs.proposer(0).pubkey == vs.proposer_key  # the set itself did not change
    with pytest.raises(Exception, match="negative"):
        vs.proposer(-1)


def test_new_validator_starts_at_minus_1_125_total_and_is_centred() -> None:
    vs = vset(1, 1)  # after new(): priorities (-1, 1), key 0 proposed first (tie, smaller)
    assert vs.priorities == (-1, 1)
    updated = vs.update([Validator(pubkey=KEYS[2], power=2)])
    # P after the update = 4, new one at -(4 + 4>>3) = -4; sum -4, avg floor(-4/3) = -2.
    # (CometBFT's big.Int.Div is Euclidean: floor, not Go's truncation, for the average.)
    assert updated.priorities == (1, 3, -2)
    assert updated.total_power == 4


def test_update_changes_power_and_removes_with_zero() -> None:
    vs = vset(5, 5, 5)
    up = vs.update([Validator(pubkey=KEYS[0], power=7), Validator(pubkey=KEYS[1], power=0)])
    assert [v.pubkey for v in up.validators] == [KEYS[0], KEYS[2]]
    assert up.power_of(KEYS[0]) == 7
    assert up.get(KEYS[1]) is None
    assert up.hash() != vs.hash()


@pytest.mark.parametrize("changes, message", [
    ([Validator(pubkey=KEYS[5], power=0)], "unknown validator"),
    ([Validator(pubkey=KEYS[0], power=1), Validator(pubkey=KEYS[0], power=2)], "duplicate"),
    ([Validator(pubkey=KEYS[i], power=0) for i in range(3)], "empty set"),
])
def test_update_refuses_bad_changes(changes: list[Validator], message: str) -> None:
    with pytest.raises(ValidatorSetError, match=message):
        vset(1, 1, 1).update(changes)


def test_rescale_truncates_toward_zero_and_centre_floors() -> None:
    # diff 30 > 2P=10 -> ratio ceil(30/10) = 3; -7/3 truncates to -2 as Go's "/" does.
    assert _rescale([-7, 23, 0], 10) == [-2, 7, 0]
    assert _trunc_div(-7, 3) == -2 and _trunc_div(7, -3) == -2
    assert _centre([-1, -2]) == [1, 0]  # avg floor(-3/2) = -2


def test_priorities_clip_at_int64() -> None:
    vs = ValidatorSet(validators=(Validator(pubkey=KEYS[0], power=10),
                                  Validator(pubkey=KEYS[1], power=10)),
                      priorities=(INT64_MAX, INT64_MAX), proposer_key=KEYS[0])
    after = vs.advance()
    assert max(after.priorities) <= INT64_MAX


def test_quorum_helpers_are_strict() -> None:
    vs = vset(1, 1, 1)
    assert not vs.two_thirds(2) and vs.two_thirds(3)
    assert not vs.one_third(1) and vs.one_third(2)


def test_validator_set_round_trips_the_wire_and_refuses_unsorted() -> None:
    vs = vset(3, 1, 2)
    assert wire.decode(wire.encode(vs), ValidatorSet) == vs
    bad = ValidatorSet.__new__(ValidatorSet)
    object.__setattr__(bad, "validators", tuple(reversed(vs.validators)))
    object.__setattr__(bad, "priorities", vs.priorities)
    object.__setattr__(bad, "proposer_key", vs.proposer_key)
    with pytest.raises(DecodeError, match="sorted"):
        wire.decode(wire.encode(bad), ValidatorSet)


@settings(max_examples=200, deadline=None)
@given(powers=st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=7),
       skip=st.integers(min_value=0, max_value=50), k=st.integers(min_value=1, max_value=4))
def test_fairness_every_window_of_k_total_elections(powers: list[int], skip: int,
                                                   k: int) -> None:
    vs = vset(*powers)
    if skip:
        vs = vs.advance(skip)
    total = sum(powers)
    counts = [0] * len(powers)
    for i in sequence(vs, k * total):
        counts[i] += 1
    for count, power in zip(counts, powers, strict=True):
        # chosen k*VP times (off by at most one: priorities stay within a bounded window)
        assert abs(count - k * power) <= 1, (powers, counts)


def _advance_reference(vs: ValidatorSet, times: int) -> tuple[tuple[int, ...], bytes]:
    """IncrementProposerPriority written out with CompareProposerPriority, pair by pair."""
    total = vs.total_power
    prios = _centre(_rescale(list(vs.priorities), 2 * total))
    chosen = 0
    for _ in range(times):
        prios = [max(-(2**63), min(INT64_MAX, p + v.power))
                 for p, v in zip(prios, vs.validators, strict=True)]
        chosen = 0
        for i in range(1, len(prios)):
            if prios[i] > prios[chosen] or (
                    prios[i] == prios[chosen]
                    and vs.validators[i].address < vs.validators[chosen].address):
                chosen = i
        prios[chosen] -= total
    return tuple(prios), vs.validators[chosen].pubkey


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 1000), min_size=1, max_size=8), st.integers(1, 12))
def test_advance_matches_pairwise_comparison_and_carries_the_membership(
        powers: list[int], times: int) -> None:
    vs = vset(*powers)
    vs.hash()  # fills the cache the advanced set carries
    out = vs.advance(times)
    assert (out.priorities, out.proposer_key) == _advance_reference(vs, times)
    checked = ValidatorSet(validators=out.validators, priorities=out.priorities,
                           proposer_key=out.proposer_key)  # through the checked constructor
    assert out == checked
    assert out.hash() == wire.digest(tuple(out.validators)) == checked.hash()
    assert out.total_power == sum(powers)
    assert all(out.get(k) is not None for k in KEYS[:len(powers)])
    assert wire.decode(wire.encode(out), ValidatorSet) == out


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**6), st.integers(-(2**63), INT64_MAX)),
                min_size=1, max_size=8))
def test_one_election_from_any_int64_priorities_needs_no_clipping(
        members: list[tuple[int, int]]) -> None:
    vs = ValidatorSet(validators=tuple(Validator(pubkey=KEYS[i], power=p)
                                       for i, (p, _) in enumerate(members)),
                      priorities=tuple(q for _, q in members), proposer_key=KEYS[0])
    out = vs.advance(1)
    assert (out.priorities, out.proposer_key) == _advance_reference(vs, 1)
    assert all(abs(q) <= INT64_MAX // 2 for q in out.priorities)
