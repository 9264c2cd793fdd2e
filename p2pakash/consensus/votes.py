"""The vote keeper: all prevotes and precommits of one height, counted by voting power.

Rules and invariants:
* Votes arrive already signature-checked (the driver verifies); the keeper checks only
  height and membership, and counts each validator at most once per (round, type).
* Counting follows the paper: "2f+1 PREVOTE(h, r, id(v))" counts the distinct senders of
  that message, so a validator that equivocates counts toward *each* value it voted for
  (safe while faulty power < 1/3: two 2/3 quorums for different values would share a
  correct validator), while "2f+1 PREVOTE(h, r, *)" and f+1 count each validator once.
  Counting every value keeps views converging (the gossip property): dropping an
  equivocator's second vote would let two correct nodes count it differently for ever.
* A second vote of a validator for the same (round, type) and the same value is a
  DUPLICATE (ignored; the timestamp may differ). One for another value is an
  EQUIVOCATION: it is counted, and the first such pair becomes DuplicateVoteEvidence, once
  per (validator, round, type). At most ``MAX_VALUES_PER_SLOT`` values are kept per
  (validator, round, type); further ones are DROPPED (block sync with a verified commit
  is then the way to catch up).
* Memory is bounded against a validator flooding rounds. Rounds up to the current round
  are kept in full (L28 needs the POL of an earlier round, L49 decides in any round), and
  correct validators only reach a round through timeouts or f+1 of it, so their number
  grows with real progress only. Of the rounds *above* the current one, each validator
  keeps at most ``max_future_rounds`` (its highest ones, the ones that can make us skip
  forward, L55): a vote for a higher round evicts that validator's lowest future round,
  a vote below all of them is DROPPED. So a height holds at most
  n * 2 * MAX_VALUES_PER_SLOT * (current_round + 1 + max_future_rounds) votes.
* Quorum arithmetic is exact integers on the validator set (``two_thirds``/``one_third``).
"""

from __future__ import annotations

import enum

import attrs

from p2pakash.consensus.proposer import ValidatorSet
from p2pakash.consensus.types import Commit, CommitSig, DuplicateVoteEvidence, Vote, VoteType
from p2pakash.errors import LocalProtocolError

DEFAULT_MAX_FUTURE_ROUNDS = 4
MAX_VALUES_PER_SLOT = 3


class AddStatus(enum.Enum):
    ADDED = "added"
    DUPLICATE = "duplicate"
    EQUIVOCATION = "equivocation"
    UNKNOWN_VALIDATOR = "unknown-validator"
    WRONG_HEIGHT = "wrong-height"
    DROPPED = "dropped"  # beyond a validator's allowance of future rounds or values


@attrs.frozen(kw_only=True)
class AddResult:
    status: AddStatus
    evidence: DuplicateVoteEvidence | None = None

    @property
    def added(self) -> bool:
        return self.status is AddStatus.ADDED


_RESULTS = {status: AddResult(status=status) for status in AddStatus}  # without evidence


class _Tally:
    """Votes of one (round, type): per validator, and power per block hash (None = nil)."""

    __slots__ = ("by_hash", "by_validator", "total")

    def __init__(self) -> None:
        self.by_validator: dict[bytes, list[Vote]] = {}  # first vote first
        self.by_hash: dict[bytes | None, int] = {}
        self.total = 0


class VoteKeeper:
    """The message log of votes for one height (see the module rules)."""

    def __init__(self, height: int, validator_set: ValidatorSet, *,
                 max_future_rounds: int = DEFAULT_MAX_FUTURE_ROUNDS) -> None:
        if max_future_rounds < 1:
            raise LocalProtocolError("max_future_rounds must be at least 1")
        self.height = height
        self.validator_set = validator_set
        self.max_future_rounds = max_future_rounds
        self._round = 0
        self._tallies: dict[tuple[int, VoteType], _Tally] = {}
        self._voters: dict[int, dict[bytes, int]] = {}  # round -> validator -> power
        self._future: dict[bytes, set[int]] = {}  # validator -> its rounds above _round
        self._reported: set[tuple[bytes, int, VoteType]] = set()

    # ------------------------------------------------------------ rounds

    @property
    def current_round(self) -> int:
        return self._round

    def set_round(self, round: int) -> None:
        """Tell the keeper the core's round; rounds only move forward."""
        if round < self._round:
            raise LocalProtocolError(f"vote keeper round moves back: {self._round} -> {round}")
        self._round = round
        for rounds in self._future.values():
            rounds.difference_update({r for r in rounds if r <= round})

    # ------------------------------------------------------------ adding

    def add(self, vote: Vote) -> AddResult:
        if vote.height != self.height:
            return _RESULTS[AddStatus.WRONG_HEIGHT]
        member = self.validator_set.get(vote.validator)
        if member is None:
            return _RESULTS[AddStatus.UNKNOWN_VALIDATOR]
        tally = self._tallies.get((vote.round, vote.type))
        existing = None if tally is None else tally.by_validator.get(vote.validator)
        evidence = None
        if existing is not None:
            if any(v.block_hash == vote.block_hash for v in existing):
                return _RESULTS[AddStatus.DUPLICATE]
            if len(existing) >= MAX_VALUES_PER_SLOT:
                return _RESULTS[AddStatus.DROPPED]
            key = (vote.validator, vote.round, vote.type)
            if key not in self._reported:
                self._reported.add(key)
                evidence = DuplicateVoteEvidence.of(existing[0], vote)
        elif vote.round > self._round and not self._admit_future(vote.validator, vote.round):
            return _RESULTS[AddStatus.DROPPED]
        if tally is None:
            tally = self._tallies[(vote.round, vote.type)] = _Tally()
        tally.by_hash[vote.block_hash] = tally.by_hash.get(vote.block_hash, 0) + member.power
        if existing is None:
            tally.by_validator[vote.validator] = [vote]
            tally.total += member.power
            self._voters.setdefault(vote.round, {})[vote.validator] = member.power
            return _RESULTS[AddStatus.ADDED]
        existing.append(vote)
        return AddResult(status=AddStatus.EQUIVOCATION, evidence=evidence)

    def _admit_future(self, validator: bytes, round: int) -> bool:
        rounds = self._future.setdefault(validator, set())
        if round in rounds or len(rounds) < self.max_future_rounds:
            rounds.add(round)
            return True
        lowest = min(rounds)
        if round < lowest:
            return False
        rounds.discard(lowest)
        rounds.add(round)
        self._evict(validator, lowest)
        return True

    def _evict(self, validator: bytes, round: int) -> None:
        for type in VoteType:
            tally = self._tallies.get((round, type))
            if tally is None:
                continue
            old = tally.by_validator.pop(validator, None)
            if old is None:
                continue
            power = self.validator_set.power_of(validator)
            for v in old:
                tally.by_hash[v.block_hash] -= power
                if tally.by_hash[v.block_hash] == 0:
                    del tally.by_hash[v.block_hash]
            tally.total -= power
        voters = self._voters.get(round)
        if voters is not None:
            voters.pop(validator, None)

    # ------------------------------------------------------------ queries

    def power_for(self, round: int, type: VoteType, block_hash: bytes | None) -> int:
        tally = self._tallies.get((round, type))
        return 0 if tally is None else tally.by_hash.get(block_hash, 0)

    def any_power(self, round: int, type: VoteType) -> int:
        tally = self._tallies.get((round, type))
        return 0 if tally is None else tally.total

    def has_two_thirds_for(self, round: int, type: VoteType, block_hash: bytes | None) -> bool:
        return self.validator_set.two_thirds(self.power_for(round, type, block_hash))

    def has_two_thirds_any(self, round: int, type: VoteType) -> bool:
        return self.validator_set.two_thirds(self.any_power(round, type))

    def has_one_third_any_round(self, round: int) -> bool:
        """f+1: validators with any vote in ``round`` hold more than 1/3 (each counted once)."""
        voters = self._voters.get(round)
        return voters is not None and self.validator_set.one_third(sum(voters.values()))

    def two_thirds_value(self, round: int, type: VoteType) -> tuple[bytes | None] | None:
        """``(hash,)`` (hash None for nil) when more than 2/3 voted for it, else None."""
        tally = self._tallies.get((round, type))
        if tally is not None:
            for block_hash, power in tally.by_hash.items():
                if self.validator_set.two_thirds(power):
                    return (block_hash,)
        return None

    def rounds(self) -> list[int]:
        """Rounds holding at least one vote, ascending."""
        return sorted(r for r, voters in self._voters.items() if voters)

    def has_round_above(self, round: int) -> bool:
        """Whether any round above ``round`` holds a vote (cheaper than ``rounds``)."""
        return any(r > round and voters for r, voters in self._voters.items())

    def votes(self, round: int, type: VoteType) -> tuple[Vote, ...]:
        tally = self._tallies.get((round, type))
        return () if tally is None else tuple(v for vs in tally.by_validator.values() for v in vs)

    def commit_for(self, round: int, block_hash: bytes) -> Commit:
        """The precommits for ``block_hash`` at ``round`` as a Commit, in set order."""
        if not self.has_two_thirds_for(round, VoteType.PRECOMMIT, block_hash):
            raise LocalProtocolError(
                f"no 2/3 precommits for {block_hash.hex()} at height {self.height} round {round}")
        tally = self._tallies[(round, VoteType.PRECOMMIT)]
        sigs = []
        for validator in self.validator_set.validators:
            vote = next((v for v in tally.by_validator.get(validator.pubkey, ())
                         if v.block_hash == block_hash), None)
            if vote is not None:
                sigs.append(CommitSig(validator=vote.validator, timestamp_ms=vote.timestamp_ms,
                                      signature=vote.signature))
        return Commit(height=self.height, round=round, block_hash=block_hash,
                      signatures=tuple(sigs))
