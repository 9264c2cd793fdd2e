"""Algorithm 1, rule by rule: each test is named after the line of the paper it checks.

Four validators of power 1 (f = 1: 2f+1 = 3 votes, f+1 = 2 votes); proposer of round r is
KEYS[r % 4] (equal power goes round-robin in address order). The local validator is
KEYS[1] unless a test says otherwise. Own votes are fed back like the driver does.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Sequence

import pytest

from p2pakash import wire
from p2pakash.consensus.core import (
    Action,
    BroadcastProposal,
    BroadcastVote,
    Core,
    Decide,
    Event,
    EvidenceFound,
    NeedValue,
    NewHeight,
    ProposalEvent,
    ScheduleTimeout,
    Step,
    TimeoutEvent,
    TimeoutKind,
    TimeoutParams,
    ValueReady,
    VoteEvent,
)
from p2pakash.consensus.proposer import ValidatorSet
from p2pakash.consensus.types import Block, VoteType, sign_proposal, verify_commit
from p2pakash.crypto import PrivateKey
from tests.consensus import CHAIN, KEYS, make_block, make_set, proposal, vote

PRE = VoteType.PREVOTE
PC = VoteType.PRECOMMIT
VS = make_set(1, 1, 1, 1)
A = make_block(1, VS, KEYS[0], b"a")
B = make_block(1, VS, KEYS[0], b"b")


def start(local: int | None = 1, height: int = 1) -> tuple[Core, list[Action]]:
    core = Core(None if local is None else KEYS[local].public)
    return core, core.step(NewHeight(height=height, validator_set=VS))


def votes_in(actions: Sequence[Action]) -> list[BroadcastVote]:
    return [a for a in actions if isinstance(a, BroadcastVote)]


def timeouts_in(actions: Sequence[Action]) -> list[ScheduleTimeout]:
    return [a for a in actions if isinstance(a, ScheduleTimeout)]


def send_votes(core: Core, type: VoteType, round: int, block: Block | None,
               who: Sequence[int]) -> list[Action]:
    out: list[Action] = []
    h = None if block is None else block.hash()
    for i in who:
        out += core.step(VoteEvent(vote=vote(KEYS[i], type, core.height, round, h)))
    return out


def propose(core: Core, block: Block, round: int, pol_round: int = -1,
            valid: bool = True, key: PrivateKey | None = None) -> list[Action]:
    signer = KEYS[round % 4] if key is None else key
    p = proposal(signer, block, round, pol_round)
    return core.step(ProposalEvent(proposal=p, valid=valid))


def timeout(core: Core, kind: TimeoutKind, round: int | None = None) -> list[Action]:
    r = core.round if round is None else round
    return core.step(TimeoutEvent(kind=kind, height=core.height, round=r))


def to_round(core: Core, round: int) -> None:
    """Move through rounds by precommit timeouts (L65) without any lock."""
    while core.round < round:
        timeout(core, TimeoutKind.PRECOMMIT)


def lock_on(core: Core, block: Block, round: int) -> None:
    """Prevote and lock ``block`` in ``round`` (L22 + L36), others prevoting it too."""
    to_round(core, round)
    propose(core, block, round)
    send_votes(core, PRE, round, block, [0, 2, 3])
    assert core.locked_round == round


# ---------------------------------------------------------------- L11-L21 StartRound


def test_L11_start_round_proposer_proposes() -> None:
    core, out = start(local=0)
    assert out == [NeedValue(height=1, round=0)]  # L18 getValue()
    assert core.step(ValueReady(height=1, round=1, block=A)) == []  # stale answer
    out = core.step(ValueReady(height=1, round=0, block=A))
    assert out == [BroadcastProposal(height=1, round=0, block=A, pol_round=-1)]  # L19
    assert core.step(ValueReady(height=1, round=0, block=A)) == []  # answered once


def test_L11_start_round_non_proposer_schedules_timeout_propose() -> None:
    core, out = start(local=1)
    assert (core.round, core.round_step) == (0, Step.PROPOSE)
    assert out == [ScheduleTimeout(kind=TimeoutKind.PROPOSE, height=1, round=0,
                                   duration_s=0.3)]  # L21


def test_L15_proposer_reproposes_valid_value_with_its_round() -> None:
    core, _ = start(local=2)  # proposer of round 2
    lock_on(core, A, 0)
    out = timeout(core, TimeoutKind.PRECOMMIT)  # -> round 1
    out = timeout(core, TimeoutKind.PRECOMMIT)  # -> round 2, we propose
    assert out == [BroadcastProposal(height=1, round=2, block=A, pol_round=0)]


# ---------------------------------------------------------------- L22-L33 prevote


def test_L22_prevote_for_valid_proposal() -> None:
    core, _ = start()
    out = propose(core, A, 0)
    assert votes_in(out) == [BroadcastVote(type=PRE, height=1, round=0, block_hash=A.hash())]
    assert core.round_step is Step.PREVOTE


def test_L22_prevote_nil_for_invalid_proposal() -> None:
    core, _ = start()
    out = propose(core, A, 0, valid=False)
    assert votes_in(out) == [BroadcastVote(type=PRE, height=1, round=0, block_hash=None)]


def test_L22_ignores_proposal_not_from_the_proposer() -> None:
    core, _ = start()
    assert propose(core, A, 0, key=KEYS[3]) == []
    assert core.round_step is Step.PROPOSE and core.proposal(0) is None


def test_L22_locked_validator_prevotes_nil_for_a_different_value() -> None:
    core, _ = start()
    lock_on(core, A, 0)
    to_round(core, 1)
    out = propose(core, B, 1)
    assert votes_in(out) == [BroadcastVote(type=PRE, height=1, round=1, block_hash=None)]


def test_L22_locked_validator_prevotes_its_locked_value() -> None:
    core, _ = start()
    lock_on(core, A, 0)
    to_round(core, 1)
    out = propose(core, A, 1)
    assert votes_in(out)[0].block_hash == A.hash()


def test_L28_waits_for_the_pol_then_prevotes() -> None:
    core, _ = start()
    to_round(core, 2)
    assert propose(core, B, 2, pol_round=1) == []  # no 2f+1 prevotes at round 1 yet
    out = send_votes(core, PRE, 1, B, [0, 2, 3])
    assert votes_in(out) == [BroadcastVote(type=PRE, height=1, round=2, block_hash=B.hash())]


def test_L28_unlock_via_pol_at_round_not_below_locked_round() -> None:
    core, _ = start()
    lock_on(core, A, 0)
    send_votes(core, PRE, 1, B, [0, 2, 3])  # a POL for B at round 1 >= lockedRound 0
    to_round(core, 2)
    out = propose(core, B, 2, pol_round=1)
    assert votes_in(out) == [BroadcastVote(type=PRE, height=1, round=2, block_hash=B.hash())]


def test_L28_pol_older_than_lock_prevotes_nil() -> None:
    core, _ = start()
    send_votes(core, PRE, 0, B, [0, 2, 3])  # POL for B at round 0 (we missed the proposal)
    lock_on(core, A, 1)
    to_round(core, 2)
    out = propose(core, B, 2, pol_round=0)  # vr 0 < lockedRound 1, B != lockedValue
    assert votes_in(out) == [BroadcastVote(type=PRE, height=1, round=2, block_hash=None)]


# ---------------------------------------------------------------- L34-L48 precommit


def test_L34_prevote_timeout_once_on_any_two_thirds_prevotes() -> None:
    core, _ = start()
    propose(core, A, 0)
    out = send_votes(core, PRE, 0, A, [0])
    out += send_votes(core, PRE, 0, None, [2])
    assert timeouts_in(out) == []
    out = send_votes(core, PRE, 0, B, [3])  # A + nil + B: 2f+1 of any mix
    assert timeouts_in(out) == [ScheduleTimeout(kind=TimeoutKind.PREVOTE, height=1, round=0,
                                                duration_s=0.1)]
    assert timeouts_in(send_votes(core, PRE, 0, A, [1])) == []  # first time only


def test_L36_lock_and_precommit() -> None:
    core, _ = start()
    propose(core, A, 0)
    out = send_votes(core, PRE, 0, A, [0, 2, 3])
    assert votes_in(out) == [BroadcastVote(type=PC, height=1, round=0, block_hash=A.hash())]
    assert (core.locked_value, core.locked_round) == (A, 0)
    assert (core.valid_value, core.valid_round) == (A, 0)
    assert core.round_step is Step.PRECOMMIT


def test_L36_valid_value_updated_after_precommit_step() -> None:
    core, _ = start()
    propose(core, A, 0)
    send_votes(core, PRE, 0, A, [1, 0])  # own prevote fed back, plus one more
    send_votes(core, PRE, 0, None, [2])  # 2f+1 of a mix -> L34
    timeout(core, TimeoutKind.PREVOTE)  # L61: precommit nil
    assert core.round_step is Step.PRECOMMIT
    out = send_votes(core, PRE, 0, A, [3])  # now 2f+1 prevotes for A, step = precommit
    assert votes_in(out) == []  # L37 does not apply: no second precommit
    assert (core.locked_value, core.locked_round) == (None, -1)
    assert (core.valid_value, core.valid_round) == (A, 0)  # L42-L43 always


def test_L36_needs_a_valid_proposal() -> None:
    core, _ = start()
    propose(core, A, 0, valid=False)
    out = send_votes(core, PRE, 0, A, [0, 2, 3])
    assert all(v.block_hash is None for v in votes_in(out))
    assert core.valid_round == -1 and core.locked_round == -1


def test_L44_precommit_nil_on_two_thirds_nil_prevotes() -> None:
    core, _ = start()
    propose(core, A, 0)
    out = send_votes(core, PRE, 0, None, [0, 2, 3])
    assert votes_in(out) == [BroadcastVote(type=PC, height=1, round=0, block_hash=None)]
    assert core.round_step is Step.PRECOMMIT and core.locked_round == -1


def test_L47_precommit_timeout_once_on_any_two_thirds_precommits() -> None:
    core, _ = start()
    out = send_votes(core, PC, 0, A, [0])
    out += send_votes(core, PC, 0, None, [2])
    assert timeouts_in(out) == []
    out = send_votes(core, PC, 0, B, [3])
    assert timeouts_in(out) == [ScheduleTimeout(kind=TimeoutKind.PRECOMMIT, height=1,
                                                round=0, duration_s=0.1)]
    assert timeouts_in(send_votes(core, PC, 0, A, [1])) == []


# ---------------------------------------------------------------- L49 decide


def test_L49_decide_in_round_zero() -> None:
    core, _ = start()
    propose(core, A, 0)
    send_votes(core, PRE, 0, A, [0, 1, 2])
    out = send_votes(core, PC, 0, A, [0, 1, 2])
    decides = [a for a in out if isinstance(a, Decide)]
    assert len(decides) == 1 and decides[0].block == A and decides[0].round == 0
    verify_commit(decides[0].commit, VS, CHAIN, A.hash())
    assert ScheduleTimeout(kind=TimeoutKind.COMMIT, height=1, round=0, duration_s=0.1) in out
    assert core.round_step is Step.COMMIT and core.decision == A
    assert send_votes(core, PC, 0, A, [3]) == []  # a straggler: no second decision
    commit = core.decision_commit()
    assert commit is not None and len(commit.signatures) == 4
    assert timeout(core, TimeoutKind.COMMIT) == []  # the driver's business


def test_L49_decide_in_later_round() -> None:
    core, _ = start()
    propose(core, A, 0)
    to_round(core, 3)
    out = send_votes(core, PC, 0, A, [0, 2, 3])  # 2f+1 precommits of round 0 arrive late
    decides = [a for a in out if isinstance(a, Decide)]
    assert [(d.round, d.block) for d in decides] == [(0, A)]


def test_L49_waits_for_the_block_and_needs_it_valid() -> None:
    core, _ = start()
    send_votes(core, PC, 0, A, [0, 2, 3])
    assert core.decision is None and core.pending_decision() == (0, A.hash())
    out = propose(core, A, 0, valid=False)
    assert not any(isinstance(a, Decide) for a in out)
    good, _ = start()
    send_votes(good, PC, 0, A, [0, 2, 3])
    out = propose(good, A, 0)
    assert [a.block for a in out if isinstance(a, Decide)] == [A]
    assert good.pending_decision() is None


# ---------------------------------------------------------------- L55 round skip


def test_L55_round_skip_on_f_plus_1() -> None:
    core, _ = start()
    out = send_votes(core, PRE, 3, A, [0])
    assert core.round == 0 and out == []  # f votes are not enough
    out = send_votes(core, PC, 3, None, [2])  # f+1 of any type
    assert core.round == 3 and core.round_step is Step.PROPOSE
    [scheduled] = timeouts_in(out)
    assert (scheduled.kind, scheduled.round) == (TimeoutKind.PROPOSE, 3)
    assert scheduled.duration_s == pytest.approx(0.45)


def test_L55_counts_each_validator_once() -> None:
    core, _ = start()
    send_votes(core, PRE, 2, A, [0])
    send_votes(core, PC, 2, A, [0])
    assert core.round == 0


# ---------------------------------------------------------------- L57-L67 timeouts


def test_L57_timeout_propose_prevotes_nil() -> None:
    core, _ = start()
    out = timeout(core, TimeoutKind.PROPOSE)
    assert votes_in(out) == [BroadcastVote(type=PRE, height=1, round=0, block_hash=None)]
    assert core.round_step is Step.PREVOTE
    assert propose(core, A, 0) == []  # too late for L22: already prevoted


def test_L61_timeout_prevote_precommits_nil() -> None:
    core, _ = start()
    timeout(core, TimeoutKind.PROPOSE)
    out = timeout(core, TimeoutKind.PREVOTE)
    assert votes_in(out) == [BroadcastVote(type=PC, height=1, round=0, block_hash=None)]
    assert core.round_step is Step.PRECOMMIT


def test_L65_timeout_precommit_starts_next_round() -> None:
    core, _ = start()
    out = timeout(core, TimeoutKind.PRECOMMIT)
    assert (core.round, core.round_step) == (1, Step.PROPOSE)
    assert out == [NeedValue(height=1, round=1)]  # we propose round 1
    [scheduled] = timeout(core, TimeoutKind.PRECOMMIT)
    assert isinstance(scheduled, ScheduleTimeout)
    assert (scheduled.kind, scheduled.height, scheduled.round) == (TimeoutKind.PROPOSE, 1, 2)
    assert scheduled.duration_s == pytest.approx(0.4)  # init + r * delta


def test_stale_timeouts_are_ignored() -> None:
    core, _ = start()
    to_round(core, 2)
    for kind in (TimeoutKind.PROPOSE, TimeoutKind.PREVOTE, TimeoutKind.PRECOMMIT):
        assert timeout(core, kind, round=1) == []
        assert core.step(TimeoutEvent(kind=kind, height=2, round=2)) == []
    assert timeout(core, TimeoutKind.PREVOTE) == []  # right round, wrong step
    assert (core.round, core.round_step) == (2, Step.PROPOSE)


def test_future_round_messages_are_retained() -> None:
    core, _ = start()
    propose(core, B, 1)  # round 1's proposal arrives while we are in round 0
    send_votes(core, PRE, 1, B, [0])
    assert core.round == 0
    out = timeout(core, TimeoutKind.PRECOMMIT)
    assert votes_in(out) == [BroadcastVote(type=PRE, height=1, round=1, block_hash=B.hash())]


# ---------------------------------------------------------------- bookkeeping


def test_equivocation_yields_evidence() -> None:
    core, _ = start()
    send_votes(core, PRE, 0, A, [3])
    out = send_votes(core, PRE, 0, B, [3])
    found = [a for a in out if isinstance(a, EvidenceFound)]
    assert len(found) == 1
    found[0].evidence.verify(VS, CHAIN)


def test_non_validator_follows_and_decides_without_voting() -> None:
    for core, _ in (start(local=None), start(local=7)):
        assert not core.is_validator
        out = propose(core, A, 0)
        out += send_votes(core, PRE, 0, A, [0, 1, 2])
        out += send_votes(core, PC, 0, A, [0, 1, 2])
        assert votes_in(out) == []
        assert core.decision == A


def test_inputs_for_other_heights_and_before_start_are_ignored() -> None:
    idle = Core(KEYS[1].public)
    assert idle.step(VoteEvent(vote=vote(KEYS[0], PRE, 1, 0, None))) == []
    core, _ = start(height=2)
    assert propose(core, A, 0) == []  # A is a height-1 block
    for i in (0, 2, 3):  # height-1 precommits
        assert core.step(VoteEvent(vote=vote(KEYS[i], PC, 1, 0, A.hash()))) == []
    assert core.decision is None


def test_timeout_params_are_configurable() -> None:
    params = TimeoutParams(propose=1.0, propose_delta=0.5, commit=2.0)
    assert params.timeout(TimeoutKind.PROPOSE, 3) == 2.5
    assert params.timeout(TimeoutKind.COMMIT, 3) == 2.0
    core = Core(KEYS[1].public, params)
    out = core.step(NewHeight(height=1, validator_set=VS))
    assert timeouts_in(out)[0].duration_s == 1.0


def test_events_round_trip_the_wire_for_the_wal() -> None:
    p = proposal(KEYS[0], A, 0)
    for event in (NewHeight(height=1, validator_set=VS), ProposalEvent(proposal=p, valid=True),
                  VoteEvent(vote=vote(KEYS[0], PRE, 1, 0, None)),
                  TimeoutEvent(kind=TimeoutKind.PREVOTE, height=1, round=2),
                  ValueReady(height=1, round=0, block=A)):
        assert wire.decode(wire.encode(event), object) == event


# ---------------------------------------------------------------- four cores wired together


class Net:
    """A deterministic in-test driver: signs, broadcasts to everyone (self included),
    buffers next-height messages, runs timers in virtual time."""

    def __init__(self, n: int = 4, silent: Sequence[int] = (), equivocator: int | None = None,
                 rng: random.Random | None = None) -> None:
        self.n = n
        self.live = [i for i in range(n) if i not in silent]
        self.vs0 = make_set(*[1] * n)
        self.cores = {i: Core(KEYS[i].public) for i in self.live}
        self.equivocator = equivocator
        self.rng = rng
        self.now = 0.0
        self.seq = 0
        self.queue: list[tuple[int, Event]] = []
        self.timers: list[tuple[float, int, int, TimeoutEvent]] = []
        self.pending: dict[int, list[Event]] = {i: [] for i in self.live}
        self.decided: dict[int, list[Block]] = {i: [] for i in self.live}
        self.evidence: list[EvidenceFound] = []

    def vset(self, height: int) -> ValidatorSet:
        return self.vs0 if height == 1 else self.vs0.advance(height - 1)

    def run(self, heights: int, max_time: float = 60.0) -> None:
        for i in self.live:
            self.handle(i, NewHeight(height=1, validator_set=self.vset(1)))
        for _ in range(200_000):
            if all(len(d) >= heights for d in self.decided.values()):
                return
            if self.queue:
                k = self.rng.randrange(len(self.queue)) if self.rng else 0
                self.deliver(*self.queue.pop(k))
            elif self.timers and self.timers[0][0] <= max_time:
                when, _, i, event = heapq.heappop(self.timers)
                self.now = when
                self.handle(i, event)
            else:
                return
        raise AssertionError("the network did not settle within the step bound")

    def deliver(self, i: int, event: Event) -> None:
        height = event.vote.height if isinstance(event, VoteEvent) else (
            event.proposal.height if isinstance(event, ProposalEvent) else 0)
        if height > self.cores[i].height:
            self.pending[i].append(event)  # the driver keeps next-height messages
        else:
            self.handle(i, event)

    def broadcast(self, event: Event) -> None:
        self.queue.extend((j, event) for j in self.live)

    def handle(self, i: int, event: Event) -> None:
        core = self.cores[i]
        if isinstance(event, TimeoutEvent) and event.kind is TimeoutKind.COMMIT:
            if core.decision is not None and core.height == event.height:
                self.handle(i, NewHeight(height=core.height + 1,
                                         validator_set=self.vset(core.height + 1)))
            return
        for action in core.step(event):
            self.act(i, core, action)
        if isinstance(event, NewHeight):
            waiting, self.pending[i] = self.pending[i], []
            for e in waiting:
                self.deliver(i, e)

    def act(self, i: int, core: Core, action: Action) -> None:
        key = KEYS[i]
        if isinstance(action, NeedValue):
            prev = self.decided[i][-1].hash() if self.decided[i] else b""
            block = make_block(action.height, self.vset(action.height), key,
                               tag=b"r%d-" % action.round, last_block_hash=prev)
            self.queue.append((i, ValueReady(height=action.height, round=action.round,
                                             block=block)))
        elif isinstance(action, BroadcastProposal):
            p = sign_proposal(key, CHAIN, height=action.height, round=action.round,
                              pol_round=action.pol_round, block=action.block,
                              timestamp_ms=int(self.now * 1000))
            self.broadcast(ProposalEvent(proposal=p, valid=True))
        elif isinstance(action, BroadcastVote):
            self.broadcast(VoteEvent(vote=vote(key, action.type, action.height, action.round,
                                               action.block_hash)))
            if i == self.equivocator:
                other = None if action.block_hash is not None else bytes(32)
                self.broadcast(VoteEvent(vote=vote(key, action.type, action.height,
                                                   action.round, other)))
        elif isinstance(action, ScheduleTimeout):
            self.seq += 1
            heapq.heappush(self.timers, (self.now + action.duration_s, self.seq, i, TimeoutEvent(
                kind=action.kind, height=action.height, round=action.round)))
        elif isinstance(action, Decide):
            assert action.height == len(self.decided[i]) + 1
            verify_commit(action.commit, self.vset(action.height), CHAIN, action.block.hash())
            self.decided[i].append(action.block)
        elif isinstance(action, EvidenceFound):
            self.evidence.append(action)

    def agreed_chain(self) -> list[Block]:
        chains = list(self.decided.values())
        shortest = min(len(c) for c in chains)
        for h in range(shortest):
            assert len({c[h].hash() for c in chains}) == 1, f"disagreement at height {h + 1}"
        chain = chains[0][:shortest]
        for prev, block in itertools.pairwise(chain):
            assert block.header.last_block_hash == prev.hash()
        return chain


def test_four_cores_decide_twenty_heights_with_the_same_blocks() -> None:
    net = Net()
    net.run(heights=20)
    assert len(net.agreed_chain()) == 20
    assert all(len(d) == 20 for d in net.decided.values())
    assert net.evidence == []
    assert net.now < 20 * 0.5  # round 0 every time: commit timeouts plus no waiting


def test_one_silent_validator_of_four_still_decides() -> None:
    net = Net(silent=[3])
    net.run(heights=20)
    assert len(net.agreed_chain()) == 20
    # the silent one is proposer of round 0 at every 4th height: those need round 1
    assert {b.header.proposer for b in net.agreed_chain()} == {KEYS[i].public for i in range(3)}


def test_two_silent_validators_of_four_decide_nothing() -> None:
    net = Net(silent=[2, 3])
    net.run(heights=1, max_time=30.0)
    assert all(d == [] for d in net.decided.values())
    # after the propose timeout both prevote nil; 2 of 4 is no 2f+1 of any kind, so no
    # rule (L34, L44) can fire and no further timeout is ever scheduled: they wait
    assert all((c.round, c.round_step) == (0, Step.PREVOTE) for c in net.cores.values())
    assert net.timers == []


def test_equivocating_validator_yields_duplicate_vote_evidence() -> None:
    net = Net(equivocator=3)
    net.run(heights=5)
    assert len(net.agreed_chain()) == 5
    assert net.evidence
    for found in net.evidence:
        assert found.evidence.validator == KEYS[3].public
        found.evidence.verify(net.vset(found.evidence.height), CHAIN)


@pytest.mark.parametrize("seed", range(5))
def test_random_delivery_order_keeps_agreement(seed: int) -> None:
    net = Net(rng=random.Random(seed), equivocator=seed % 4 if seed % 2 else None)
    net.run(heights=8)
    assert len(net.agreed_chain()) == 8
