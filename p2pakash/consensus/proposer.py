"""Validator sets and CometBFT's proposer selection (types/validator_set.go, exactly).

Rules and invariants:
* A validator is an ed25519 public key with a positive voting power; its ``address`` is
  the first 20 bytes of sha256(pubkey) (the node ID bytes), which orders validators and
  breaks priority ties (the smaller address wins, as ``CompareProposerPriority`` does).
* A ``ValidatorSet`` is immutable: validators sorted by address, one proposer priority
  each, and the current proposer. Every change returns a new set.
* ``advance(times)`` is ``IncrementProposerPriority(times)``: once, rescale the priorities
  when max-min > 2*P (dividing by ceil(diff/2P), truncating toward zero like Go's ``/``)
  and centre them on their average (``big.Int.Div`` is Euclidean, i.e. floor for n > 0);
  then ``times`` times add each power, pick the highest priority and subtract P from it.
  Sums clip at the int64 bounds (``safeAddClip``/``safeSubClip``).
* The proposer of round r of a height is ``advance(r)`` on a copy (round 0: the set's own
  proposer). Between heights the state transition calls ``advance(1)``.
* ``advance`` keeps the member tuple: the new set is not checked again but for its
  priorities, and carries its parent's membership hash, index and total power (at 100
  validators the hash alone is ~0.3 ms per node and block).
* ``update(changes)`` is ``UpdateWithChangeSet``: power 0 removes, a new validator starts at
  -(P + P>>3) = -1.125*P where P is the total after updates and before removals (so a
  validator cannot jump the queue by unbonding and re-bonding), then rescale and centre.
  It does not pick a proposer: callers follow it with ``advance(1)`` as CometBFT does.
* Quorums count voting power with exact integers: more than 2/3 is ``3*power > 2*total``,
  more than 1/3 is ``3*power > total``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Iterable, Sequence

import attrs

from p2pakash import wire
from p2pakash.errors import LocalProtocolError

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MAX_TOTAL_VOTING_POWER = INT64_MAX // 8
PRIORITY_WINDOW_SIZE_FACTOR = 2
MAX_VALIDATORS = 10_000
PUBKEY_SIZE = 32


class ValidatorSetError(LocalProtocolError):
    """A validator-set change that CometBFT would refuse (duplicate, negative, overflow...)."""


def _clip(value: int) -> int:
    return max(INT64_MIN, min(INT64_MAX, value))


def _trunc_div(a: int, b: int) -> int:
    """Go's integer division: the quotient truncated toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


@functools.lru_cache(maxsize=65536)
def address_of(pubkey: bytes) -> bytes:
    """The 20-byte validator address: sha256(pubkey)[:20], the bytes of its node ID."""
    return hashlib.sha256(pubkey).digest()[:20]


def _check_pubkey(inst: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if type(value) is not bytes or len(value) != PUBKEY_SIZE:
        raise ValueError(f"{attribute.name} must be a {PUBKEY_SIZE}-byte ed25519 key")


@wire.message(tag=110)
@attrs.frozen(kw_only=True)
class Validator:
    """One validator: public key and voting power (0 only inside an update = removal)."""

    pubkey: bytes = attrs.field(validator=_check_pubkey)
    power: int

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.power <= MAX_TOTAL_VOTING_POWER:
            raise ValueError(f"validator power {self.power} outside 0..{MAX_TOTAL_VOTING_POWER}")

    @property
    def address(self) -> bytes:
        return address_of(self.pubkey)


def _compare(a: tuple[Validator, int], b: tuple[Validator, int]) -> tuple[Validator, int]:
    """CompareProposerPriority: higher priority wins, a tie goes to the smaller address."""
    if a[1] != b[1]:
        return a if a[1] > b[1] else b
    return a if a[0].address < b[0].address else b


@wire.message(tag=111)
@attrs.frozen(kw_only=True, slots=False)  # no slots: lookups are cached in __dict__
class ValidatorSet:
    """Validators sorted by address, their proposer priorities, and the current proposer."""

    validators: tuple[Validator, ...]
    priorities: tuple[int, ...]
    proposer_key: bytes

    def __attrs_post_init__(self) -> None:
        if not 0 < len(self.validators) <= MAX_VALIDATORS:
            raise ValueError(f"a validator set holds 1..{MAX_VALIDATORS} validators")
        if len(self.priorities) != len(self.validators):
            raise ValueError("one proposer priority per validator is required")
        addrs = [v.address for v in self.validators]
        if any(a >= b for a, b in itertools.pairwise(addrs)):
            raise ValueError("validators must be sorted by address without duplicates")
        if any(v.power <= 0 for v in self.validators):
            raise ValueError("every validator in a set has positive power")
        if any(not INT64_MIN <= p <= INT64_MAX for p in self.priorities):
            raise ValueError("proposer priorities must fit in int64")
        if self.proposer_key not in {v.pubkey for v in self.validators}:
            raise ValueError("the proposer is not in the validator set")
        if sum(v.power for v in self.validators) > MAX_TOTAL_VOTING_POWER:
            raise ValueError(f"total voting power exceeds {MAX_TOTAL_VOTING_POWER}")

    # ------------------------------------------------------------ construction

    @classmethod
    def new(cls, validators: Iterable[Validator]) -> ValidatorSet:
        """NewValidatorSet: all validators enter as new ones, then one increment."""
        changes = list(validators)
        if any(v.power == 0 for v in changes):
            raise ValidatorSetError("a new validator set cannot hold validators of power 0")
        vals, prios = _apply_changes([], [], changes)
        return _make(vals, prios, vals[0].pubkey).advance(1)

    # ------------------------------------------------------------ queries

    @property
    def total_power(self) -> int:
        cached: int | None = self.__dict__.get("_total_cache")
        if cached is None:
            cached = sum(v.power for v in self.validators)
            object.__setattr__(self, "_total_cache", cached)
        return cached

    def __len__(self) -> int:
        return len(self.validators)

    def get(self, pubkey: bytes) -> Validator | None:
        return self._index().get(pubkey)

    def power_of(self, pubkey: bytes) -> int:
        found = self._index().get(pubkey)
        return 0 if found is None else found.power

    def _index(self) -> dict[bytes, Validator]:
        cached: dict[bytes, Validator] | None = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {v.pubkey: v for v in self.validators}
            object.__setattr__(self, "_index_cache", cached)
        return cached

    def hash(self) -> bytes:
        """sha256 of the canonical encoding of (pubkey, power) pairs; priorities excluded."""
        cached: bytes | None = self.__dict__.get("_hash_cache")
        if cached is None:
            cached = wire.digest(tuple(self.validators))
            object.__setattr__(self, "_hash_cache", cached)
        return cached

    def two_thirds(self, power: int) -> bool:
        """More than 2/3 of the total power (a 2f+1 quorum)."""
        return power * 3 > self.total_power * 2

    def one_third(self, power: int) -> bool:
        """More than 1/3 of the total power (f+1: at least one correct validator)."""
        return power * 3 > self.total_power

    def proposer(self, round: int = 0) -> Validator:
        """The proposer of ``round`` of the height this set belongs to."""
        if round < 0:
            raise LocalProtocolError(f"round {round} is negative")
        chosen = self if round == 0 else self.advance(round)
        found = chosen.get(chosen.proposer_key)
        assert found is not None  # checked in __attrs_post_init__
        return found

    # ------------------------------------------------------------ transitions

    def advance(self, times: int = 1) -> ValidatorSet:
        """IncrementProposerPriority(times): rescale, centre, then ``times`` elections."""
        if times <= 0:
            raise LocalProtocolError(f"advance(times={times}): times must be positive")
        total = self.total_power
        powers = [v.power for v in self.validators]
        if times == 1:
            # After the rescale max - min <= 2P + 1, so the centred priorities lie within
            # +-(2P + 1) and one election within +-(4P + 1) <= INT64_MAX / 2 (P is at most
            # MAX_TOTAL_VOTING_POWER = INT64_MAX // 8): no sum can clip, none is clipped.
            prios = _rescale(list(self.priorities), PRIORITY_WINDOW_SIZE_FACTOR * total)
            avg = sum(prios) // len(prios)
            prios = [p - avg + w for p, w in zip(prios, powers, strict=True)]
            chosen = prios.index(max(prios))
            prios[chosen] -= total
            return self._with_priorities(prios, chosen)
        prios = _centre(_rescale(list(self.priorities), PRIORITY_WINDOW_SIZE_FACTOR * total))
        chosen = 0
        for _ in range(times):
            prios = [_clip(p + w) for p, w in zip(prios, powers, strict=True)]
            # the highest priority; a tie goes to the smaller address, and validators are
            # sorted by address, so to the first index holding the maximum
            chosen = prios.index(max(prios))
            prios[chosen] = _clip(prios[chosen] - total)
        return self._with_priorities(prios, chosen)

    def _with_priorities(self, prios: list[int], chosen: int) -> ValidatorSet:
        """This set's members with new priorities and the proposer at index ``chosen``.

        The members (the same tuple) were checked when this set was made, so only the
        priorities are checked again; the membership caches (hash, index, total power)
        carry over, as they depend on the members alone."""
        if len(prios) != len(self.validators) or not 0 <= chosen < len(prios):
            raise ValueError("one proposer priority per validator is required")
        if any(not INT64_MIN <= p <= INT64_MAX for p in prios):
            raise ValueError("proposer priorities must fit in int64")
        new = object.__new__(ValidatorSet)
        object.__setattr__(new, "validators", self.validators)
        object.__setattr__(new, "priorities", tuple(prios))
        object.__setattr__(new, "proposer_key", self.validators[chosen].pubkey)
        for name in _MEMBERSHIP_CACHES:
            if name in self.__dict__:
                object.__setattr__(new, name, self.__dict__[name])
        return new

    def update(self, changes: Sequence[Validator]) -> ValidatorSet:
        """UpdateWithChangeSet: add, re-weigh (power > 0) or remove (power 0) validators."""
        if not changes:
            return self
        vals, prios = _apply_changes(list(self.validators), list(self.priorities), changes)
        proposer = self.proposer_key
        if proposer not in {v.pubkey for v in vals}:  # findProposer: max priority, small address
            best = (vals[0], prios[0])
            for pair in zip(vals[1:], prios[1:], strict=True):
                best = _compare(best, pair)
            proposer = best[0].pubkey
        return _make(vals, prios, proposer)


_MEMBERSHIP_CACHES = ("_hash_cache", "_index_cache", "_total_cache")


def _make(vals: list[Validator], prios: list[int], proposer: bytes) -> ValidatorSet:
    return ValidatorSet(validators=tuple(vals), priorities=tuple(prios), proposer_key=proposer)


def _rescale(prios: list[int], diff_max: int) -> list[int]:
    if diff_max <= 0:
        return prios
    diff = max(prios) - min(prios)
    if diff <= diff_max:
        return prios
    ratio = (diff + diff_max - 1) // diff_max
    return [_trunc_div(p, ratio) for p in prios]


def _centre(prios: list[int]) -> list[int]:
    avg = sum(prios) // len(prios)  # big.Int.Div: Euclidean (floor for a positive divisor)
    return [_clip(p - avg) for p in prios]


def _apply_changes(
    vals: list[Validator], prios: list[int], changes: Sequence[Validator]
) -> tuple[list[Validator], list[int]]:
    """updateWithChangeSet without the sort by power: validators stay sorted by address."""
    seen: set[bytes] = set()
    for change in changes:
        if change.address in seen:
            raise ValidatorSetError(f"duplicate validator {change.pubkey.hex()} in one update")
        seen.add(change.address)
    current = {v.pubkey: (v, p) for v, p in zip(vals, prios, strict=True)}
    removals = [c for c in changes if c.power == 0]
    updates = [c for c in changes if c.power > 0]
    for gone in removals:
        if gone.pubkey not in current:
            raise ValidatorSetError(f"cannot remove unknown validator {gone.pubkey.hex()}")
    new_count = sum(1 for u in updates if u.pubkey not in current)
    if new_count == 0 and len(removals) == len(vals):
        raise ValidatorSetError("applying the validator changes would leave an empty set")
    removed_power = sum(current[g.pubkey][0].power for g in removals)
    # verifyUpdates: apply the deltas smallest first, checking the running total.
    def delta(u: Validator) -> int:
        old = current.get(u.pubkey)
        return u.power - (old[0].power if old else 0)
    running = sum(v.power for v in vals) - removed_power
    for u in sorted(updates, key=delta):
        running += delta(u)
        if running > MAX_TOTAL_VOTING_POWER:
            raise ValidatorSetError(
                f"total voting power would exceed the maximum {MAX_TOTAL_VOTING_POWER}")
    before_removals = running + removed_power
    for u in updates:
        old = current.get(u.pubkey)
        start = old[1] if old else -(before_removals + (before_removals >> 3))
        current[u.pubkey] = (u, start)
    for gone in removals:
        del current[gone.pubkey]
    ordered = sorted(current.values(), key=lambda pair: pair[0].address)
    new_vals = [pair[0] for pair in ordered]
    total = sum(v.power for v in new_vals)
    new_prios = _centre(_rescale([pair[1] for pair in ordered],
                                 PRIORITY_WINDOW_SIZE_FACTOR * total))
    return new_vals, new_prios
