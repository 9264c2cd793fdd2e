"""Algorithm 1 of "The latest gossip on BFT consensus" as a pure state machine.

``Core.step(event) -> list[Action]``; each transition carries its line of Algorithm 1
(``# L22``). Rules and invariants:
* The driver verifies signatures and checks ``valid(v)`` (block body + app) before feeding
  a proposal; the core checks heights, rounds, proposer and membership. Everything is
  counted by voting power (2f+1 = more than 2/3, f+1 = more than 1/3).
* Own messages are not counted when sent: the driver signs each BroadcastVote/
  BroadcastProposal through its signing guard and feeds the signed message back as an
  ordinary VoteEvent/ProposalEvent (exactly like one from a peer).
* After every input the rules are evaluated to a fixpoint. The message log holds every
  round of the current height (future rounds too, within the vote keeper's bound and
  ``max_future_rounds`` for proposals); one proposal per round, the first from the
  round's proposer. Inputs for another height, stale timeouts and stale ValueReady
  answers are ignored; the driver buffers next-height messages until NewHeight.
* "First time" guards (L34, L36, L47) fire once per round. Locks change only in L36 and
  reset only at a new height; the only unlock is L28 (a POL at vr >= lockedRound).
* L49 decides in any round; the core then stays in step COMMIT, keeps collecting
  precommits (``decision_commit``) and emits ScheduleTimeout(COMMIT): the core ignores
  that timeout; when it fires the driver applies the block and sends NewHeight(h+1)
  (the paper's "h <- h+1; reset; StartRound(0)").
* Actions come out in order; the driver carries them out in that order (a vote is signed
  and persisted by the signing guard before it leaves the process).
* The paper's ``step_p`` is ``Core.round_step`` (``Core.step`` is the input method).
* A core with ``local=None`` (or not in the height's set) follows without proposing or voting.
"""

from __future__ import annotations

import enum

import attrs

from p2pakash import wire
from p2pakash.consensus.proposer import ValidatorSet
from p2pakash.consensus.types import Block, Commit, DuplicateVoteEvidence, Proposal, Vote
from p2pakash.consensus.types import VoteType as VoteType
from p2pakash.consensus.votes import DEFAULT_MAX_FUTURE_ROUNDS, VoteKeeper
from p2pakash.errors import LocalProtocolError

MAX_RULE_FIRINGS = 1000


class Step(enum.IntEnum):
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    COMMIT = 4


class TimeoutKind(enum.IntEnum):
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    COMMIT = 4


@attrs.frozen(kw_only=True)
class TimeoutParams:
    """``timeout(kind, r) = init + r * delta`` in seconds (paper §III); local-net defaults."""

    propose: float = 0.3
    propose_delta: float = 0.05
    prevote: float = 0.1
    prevote_delta: float = 0.05
    precommit: float = 0.1
    precommit_delta: float = 0.05
    commit: float = 0.1

    def timeout(self, kind: TimeoutKind, round: int) -> float:
        if kind is TimeoutKind.PROPOSE:
            return self.propose + round * self.propose_delta
        if kind is TimeoutKind.PREVOTE:
            return self.prevote + round * self.prevote_delta
        if kind is TimeoutKind.PRECOMMIT:
            return self.precommit + round * self.precommit_delta
        return self.commit


# ---------------------------------------------------------------- events (WAL-able)


@wire.message(tag=120)
@attrs.frozen(kw_only=True)
class NewHeight:
    """Start ``height`` with its validator set (proposer priorities already advanced)."""

    height: int
    validator_set: ValidatorSet


@wire.message(tag=121)
@attrs.frozen(kw_only=True)
class ProposalEvent:
    """A signature-checked proposal; ``valid`` is valid(v) as judged by the app."""

    proposal: Proposal
    valid: bool


@wire.message(tag=122)
@attrs.frozen(kw_only=True)
class VoteEvent:
    """A signature-checked vote (own votes come back this way too)."""

    vote: Vote


@wire.message(tag=123)
@attrs.frozen(kw_only=True)
class TimeoutEvent:
    kind: TimeoutKind
    height: int
    round: int


@wire.message(tag=124)
@attrs.frozen(kw_only=True)
class ValueReady:
    """The app's answer to NeedValue: the block to propose at (height, round)."""

    height: int
    round: int
    block: Block


Event = NewHeight | ProposalEvent | VoteEvent | TimeoutEvent | ValueReady


# ---------------------------------------------------------------- actions


@attrs.frozen(kw_only=True)
class NeedValue:
    """L18 getValue(): ask the app for a block, answered with ValueReady."""

    height: int
    round: int


@attrs.frozen(kw_only=True)
class BroadcastProposal:
    """Sign (through the signing guard) and broadcast PROPOSAL(h, r, block, pol_round)."""

    height: int
    round: int
    block: Block
    pol_round: int


@attrs.frozen(kw_only=True)
class BroadcastVote:
    """Sign (through the signing guard) and broadcast a vote; feed it back as VoteEvent."""

    type: VoteType
    height: int
    round: int
    block_hash: bytes | None


@attrs.frozen(kw_only=True)
class ScheduleTimeout:
    kind: TimeoutKind
    height: int
    round: int
    duration_s: float


@attrs.frozen(kw_only=True)
class Decide:
    height: int
    round: int
    block: Block
    commit: Commit


@attrs.frozen(kw_only=True)
class EvidenceFound:
    evidence: DuplicateVoteEvidence


Action = NeedValue | BroadcastProposal | BroadcastVote | ScheduleTimeout | Decide | EvidenceFound


@attrs.frozen(kw_only=True)
class _Stored:
    proposal: Proposal
    valid: bool

    @property
    def block_hash(self) -> bytes:
        return self.proposal.block.hash()


class Core:
    """One validator's (or follower's) Tendermint state for the current height."""

    def __init__(self, local: bytes | None, params: TimeoutParams | None = None, *,
                 max_future_rounds: int = DEFAULT_MAX_FUTURE_ROUNDS) -> None:
        self.local = local
        self.params = params if params is not None else TimeoutParams()
        self.max_future_rounds = max_future_rounds
        self.height = 0  # 0: no NewHeight yet; every other input is ignored
        self.validator_set: ValidatorSet | None = None
        self._reset()

    def _reset(self) -> None:
        self.round = -1
        self.round_step = Step.PROPOSE
        self.locked_value: Block | None = None
        self.locked_round = -1
        self.valid_value: Block | None = None
        self.valid_round = -1
        self.decision: Block | None = None
        self.decision_round = -1
        self._proposals: dict[int, _Stored] = {}
        self._proposers: dict[int, bytes] = {}
        self._fired: set[tuple[str, int]] = set()  # "first time" guards: (line, round)
        self._awaiting_value = -1  # round of an outstanding NeedValue
        self.votes: VoteKeeper | None = None

    # ------------------------------------------------------------ queries

    @property
    def is_validator(self) -> bool:
        vs = self.validator_set
        return self.local is not None and vs is not None and vs.get(self.local) is not None

    def proposer(self, round: int) -> bytes:
        """The public key of proposer(h, round) for the current height."""
        if self.validator_set is None:
            raise LocalProtocolError("no height started yet")
        found = self._proposers.get(round)
        if found is None:
            found = self._proposers[round] = self.validator_set.proposer(round).pubkey
        return found

    def proposal(self, round: int) -> Proposal | None:
        stored = self._proposals.get(round)
        return None if stored is None else stored.proposal

    def decision_commit(self) -> Commit | None:
        """The commit of the decided block with every precommit collected so far."""
        if self.decision is None or self.votes is None:
            return None
        return self.votes.commit_for(self.decision_round, self.decision.hash())

    def pending_decision(self) -> tuple[int, bytes] | None:
        """(round, hash) that 2/3 precommitted but whose proposal we lack: fetch the block."""
        if self.votes is None or self.decision is not None:
            return None
        for r in self.votes.rounds():
            found = self.votes.two_thirds_value(r, VoteType.PRECOMMIT)
            if found is None or found[0] is None:
                continue
            stored = self._proposals.get(r)
            if stored is None or stored.block_hash != found[0]:
                return (r, found[0])
        return None

    # ------------------------------------------------------------ input

    def step(self, event: Event) -> list[Action]:
        out: list[Action] = []
        if isinstance(event, NewHeight):
            self._new_height(event, out)
        elif self.votes is None or self.validator_set is None:
            return out
        elif isinstance(event, VoteEvent):
            self._on_vote(event.vote, out)
        elif isinstance(event, ProposalEvent):
            self._on_proposal(event.proposal, event.valid)
        elif isinstance(event, TimeoutEvent):
            self._on_timeout(event, out)
        elif isinstance(event, ValueReady):
            self._on_value(event, out)
        else:
            raise LocalProtocolError(f"unknown consensus event {type(event).__name__}")
        self._settle(out)
        return out

    def _new_height(self, event: NewHeight, out: list[Action]) -> None:
        if event.height <= self.height:
            raise LocalProtocolError(f"NewHeight {event.height} after height {self.height}")
        self.height = event.height
        self.validator_set = event.validator_set
        self._reset()
        self.votes = VoteKeeper(event.height, event.validator_set,
                                max_future_rounds=self.max_future_rounds)
        self._start_round(0, out)  # L10

    def _on_vote(self, vote: Vote, out: list[Action]) -> None:
        assert self.votes is not None
        result = self.votes.add(vote)
        if result.evidence is not None:
            out.append(EvidenceFound(evidence=result.evidence))

    def _on_proposal(self, proposal: Proposal, valid: bool) -> None:
        if proposal.height != self.height or proposal.round in self._proposals:
            return
        if proposal.round > max(self.round, 0) + self.max_future_rounds:
            return  # too far ahead to hold; gossip re-delivers it once we get there
        if proposal.proposer != self.proposer(proposal.round):
            return  # "from proposer(h, r)": anyone else's proposal is not in the log
        self._proposals[proposal.round] = _Stored(proposal=proposal, valid=valid)

    def _on_timeout(self, event: TimeoutEvent, out: list[Action]) -> None:
        if event.height != self.height or event.round != self.round:
            return  # stale (or not yet reached): timeouts only act on their own (h, r)
        if event.kind is TimeoutKind.PROPOSE and self.round_step is Step.PROPOSE:
            self._vote(VoteType.PREVOTE, None, out)  # L57-L60
            self.round_step = Step.PREVOTE
        elif event.kind is TimeoutKind.PREVOTE and self.round_step is Step.PREVOTE:
            self._vote(VoteType.PRECOMMIT, None, out)  # L61-L64
            self.round_step = Step.PRECOMMIT
        elif event.kind is TimeoutKind.PRECOMMIT and self.round_step is not Step.COMMIT:
            self._start_round(self.round + 1, out)  # L65-L67

    def _on_value(self, event: ValueReady, out: list[Action]) -> None:
        if (event.height, event.round) != (self.height, self.round):
            return
        if self._awaiting_value != self.round or self.round_step is not Step.PROPOSE:
            return
        if event.block.height != self.height:
            raise LocalProtocolError(
                f"ValueReady for height {self.height} carries a block of {event.block.height}")
        self._awaiting_value = -1
        out.append(BroadcastProposal(height=self.height, round=self.round, block=event.block,
                                     pol_round=-1))  # L19: broadcast PROPOSAL(h, r, v, -1)

    # ------------------------------------------------------------ transitions

    def _start_round(self, round: int, out: list[Action]) -> None:
        assert self.votes is not None
        self.round = round  # L12
        self.round_step = Step.PROPOSE  # L13
        self.votes.set_round(round)
        if self.is_validator and self.proposer(round) == self.local:  # L14
            if self.valid_value is not None:  # L15-L16: re-propose validValue
                out.append(BroadcastProposal(height=self.height, round=round,
                                             block=self.valid_value, pol_round=self.valid_round))
            else:  # L17-L18: getValue()
                self._awaiting_value = round
                out.append(NeedValue(height=self.height, round=round))
        else:  # L20-L21
            self._schedule(TimeoutKind.PROPOSE, out)

    def _schedule(self, kind: TimeoutKind, out: list[Action]) -> None:
        out.append(ScheduleTimeout(kind=kind, height=self.height, round=self.round,
                                   duration_s=self.params.timeout(kind, self.round)))

    def _vote(self, type: VoteType, block_hash: bytes | None, out: list[Action]) -> None:
        if self.is_validator:
            out.append(BroadcastVote(type=type, height=self.height, round=self.round,
                                     block_hash=block_hash))

    def _settle(self, out: list[Action]) -> None:
        for _ in range(MAX_RULE_FIRINGS):
            if not self._fire_one(out):
                return
        raise LocalProtocolError("consensus rules did not settle")  # each firing is monotone

    def _fire_one(self, out: list[Action]) -> bool:
        votes = self.votes
        if votes is None or self.round_step is Step.COMMIT:
            return False
        if self._decide_any_round(out) or self._skip_round(out):
            return True
        r = self.round
        stored = self._proposals.get(r)
        if stored is not None and self.round_step is Step.PROPOSE:
            vr = stored.proposal.pol_round
            v_hash = stored.block_hash
            if vr == -1:  # L22
                lock_ok = self.locked_round == -1 or self._is_locked_on(v_hash)  # L23
                self._vote(VoteType.PREVOTE, v_hash if stored.valid and lock_ok else None,
                           out)  # L24/L26
                self.round_step = Step.PREVOTE  # L27
                return True
            if votes.has_two_thirds_for(vr, VoteType.PREVOTE, v_hash):  # L28 (0 <= vr < r)
                lock_ok = self.locked_round <= vr or self._is_locked_on(v_hash)  # L29
                self._vote(VoteType.PREVOTE, v_hash if stored.valid and lock_ok else None,
                           out)  # L30/L32
                self.round_step = Step.PREVOTE  # L33
                return True
        if (stored is not None and stored.valid and self.round_step >= Step.PREVOTE
                and ("L36", r) not in self._fired
                and votes.has_two_thirds_for(r, VoteType.PREVOTE, stored.block_hash)):  # L36
            self._fired.add(("L36", r))
            if self.round_step is Step.PREVOTE:  # L37
                self.locked_value = stored.proposal.block  # L38
                self.locked_round = r  # L39
                self._vote(VoteType.PRECOMMIT, stored.block_hash, out)  # L40
                self.round_step = Step.PRECOMMIT  # L41
            self.valid_value = stored.proposal.block  # L42
            self.valid_round = r  # L43
            return True
        if self.round_step is Step.PREVOTE and votes.has_two_thirds_for(r, VoteType.PREVOTE, None):
            self._vote(VoteType.PRECOMMIT, None, out)  # L44-L46
            self.round_step = Step.PRECOMMIT
            return True
        if (self.round_step is Step.PREVOTE and ("L34", r) not in self._fired
                and votes.has_two_thirds_any(r, VoteType.PREVOTE)):  # L34-L35
            self._fired.add(("L34", r))
            self._schedule(TimeoutKind.PREVOTE, out)
            return True
        if ("L47", r) not in self._fired and votes.has_two_thirds_any(r, VoteType.PRECOMMIT):
            self._fired.add(("L47", r))  # L47-L48
            self._schedule(TimeoutKind.PRECOMMIT, out)
            return True
        return False

    def _is_locked_on(self, block_hash: bytes) -> bool:
        return self.locked_value is not None and self.locked_value.hash() == block_hash

    def _decide_any_round(self, out: list[Action]) -> bool:
        assert self.votes is not None
        for r in sorted(self._proposals):  # L49: PROPOSAL(h, r', v, *) in any round r'
            stored = self._proposals[r]
            if not stored.valid:  # L50: valid(v)
                continue
            if self.votes.has_two_thirds_for(r, VoteType.PRECOMMIT, stored.block_hash):
                self.decision = stored.proposal.block  # L51: decision[h] = v
                self.decision_round = r
                self.round_step = Step.COMMIT
                commit = self.votes.commit_for(r, stored.block_hash)
                out.append(Decide(height=self.height, round=r, block=self.decision,
                                  commit=commit))
                out.append(ScheduleTimeout(kind=TimeoutKind.COMMIT, height=self.height,
                                           round=r, duration_s=self.params.commit))
                return True  # L52-L54 (next height) happen on NewHeight from the driver
        return False

    def _skip_round(self, out: list[Action]) -> bool:
        assert self.votes is not None
        if not self.votes.has_round_above(self.round):
            return False
        for r in reversed(self.votes.rounds()):  # L55: f+1 messages of a round r' > round
            if r <= self.round:
                return False
            if self.votes.has_one_third_any_round(r):
                self._start_round(r, out)  # L56
                return True
        return False
