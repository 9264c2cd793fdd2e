"""The trio driver of the pure consensus core: inputs in, actions out, WAL and guard.

Rules and invariants:
* One task owns the ``Core``: every proposal, vote and timeout is fed from ``run``'s loop,
  so the core is never stepped concurrently. The driver never awaits while it steps
  the core or carries out actions, so a cancellation (block sync taking over) never
  splits a commit or a sign-persist-broadcast sequence.
* Every input (signature-checked proposal with its valid(v) verdict, vote, timeout, the
  app's proposal value) is written to the WAL before the core sees it. Own proposals and
  votes are signed through the signing guard (persisted first), written to the WAL with
  an fsync, and only then broadcast and fed back to the core as ordinary events.
* Actions are carried out in order; events they produce (own messages, values) are fed
  after the whole batch, first in, first out.
* Decide: the app stores the block and commit, applies it to the ledger and persists the
  state at once; the core keeps collecting precommits until its COMMIT timeout fires,
  then the fuller commit replaces the stored one, the WAL closes the height and the next
  height starts (``NewHeight``).
* Messages for the next height are buffered (bounded) until it starts; other heights
  are dropped (block sync catches a node up).
* When (height, round, step) has not moved for ``stall_interval`` seconds, the driver
  hands the app a ``VoteBundle`` of its current rounds to resend directly to peers (and
  again every interval while stalled): gossip never repeats a message, so this is what
  revives a round after lost messages, a healed partition or a restart. The wait for the
  COMMIT timeout after a decision is no stall (peers that missed the decision catch up
  by block sync).
* On start of a height its WAL records are replayed into a fresh core. During replay
  nothing is written to the WAL twice; own messages are re-signed through the guard,
  which hands back the stored signature for the last (h, r, step) and refuses older
  ones harmlessly; a value request is answered by the replayed value, or afterwards.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
from typing import Protocol

import trio

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
from p2pakash.consensus.guard import SigningGuard, SignRefused
from p2pakash.consensus.messages import MAX_BUNDLE_PROPOSALS, MAX_BUNDLE_VOTES, VoteBundle
from p2pakash.consensus.proposer import ValidatorSet
from p2pakash.consensus.types import (
    Block,
    Commit,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    VoteType,
)
from p2pakash.consensus.wal import WAL

log = logging.getLogger(__name__)

MAX_BUFFERED = 10_000
MAX_SEEN_VOTES = 100_000  # per height
MAX_DRAIN = 500  # inputs handled before the loop yields to other tasks
Message = Proposal | Vote


class App(Protocol):
    """What the driver needs from the chain (ChainService implements it)."""

    def committed_height(self) -> int: ...

    def validator_set_for(self, height: int) -> ValidatorSet: ...

    def propose_block(self, height: int, round: int) -> Block: ...

    def is_valid(self, proposal: Proposal) -> bool: ...

    def finalize(self, block: Block, commit: Commit) -> None: ...

    def update_commit(self, commit: Commit) -> None: ...

    def add_evidence(self, evidence: DuplicateVoteEvidence) -> None: ...

    def broadcast(self, message: Message) -> None: ...

    def rebroadcast(self, bundle: VoteBundle) -> None: ...

    def now_ms(self) -> int: ...


def event_height(event: object) -> int:
    if isinstance(event, ProposalEvent):
        return event.proposal.height
    if isinstance(event, VoteEvent):
        return event.vote.height
    if isinstance(event, (TimeoutEvent, ValueReady)):
        return event.height
    return -1


class ConsensusDriver:
    def __init__(self, app: App, *, local: bytes | None, guard: SigningGuard | None,
                 wal: WAL | None, params: TimeoutParams, stall_interval: float = 1.0,
                 name: str = "") -> None:
        self.app = app
        self.guard = guard
        self.wal = wal
        self.params = params
        self.name = name
        self.core = Core(local, params)
        self._timers: list[tuple[float, int, TimeoutEvent]] = []
        self._seq = itertools.count()
        self._buffer: list[Message] = []
        self._seen_votes: set[bytes] = set()
        self._replaying = False
        self._pending_need: NeedValue | None = None
        self.refusals = 0  # signing requests the guard refused (replay or a bug)
        self.stall_interval = stall_interval
        self._progress: tuple[int, int, int] = (0, 0, 0)
        self._next_stall = math.inf
        self.rebroadcasts = 0
        self.replayed = 0  # WAL records fed back on (re)start of a height

    # ------------------------------------------------------------ running

    async def run(self, inbox: trio.MemoryReceiveChannel[Message], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run consensus from the chain's next height until cancelled."""
        height = self.app.committed_height() + 1
        if self.core.height >= height:  # resumed at the same height: rebuild it from the WAL
            self.core = Core(self.core.local, self.params)
        self._start_height(height)
        task_status.started()
        while True:
            # One cancel scope until its deadline passes, not one per message: the deadline
            # (next timer or stall check) moves in place, a few times per height.
            with trio.CancelScope() as scope:
                while True:
                    now = trio.current_time()
                    self._fire_due(now)
                    self._check_stall(now)
                    deadline = min(self._timers[0][0] if self._timers else math.inf,
                                   self._next_stall)
                    if scope.deadline != deadline:
                        scope.deadline = deadline
                    message = await inbox.receive()
                    self.on_message(message)
                    for _ in range(MAX_DRAIN):
                        try:
                            message = inbox.receive_nowait()
                        except trio.WouldBlock:
                            break
                        self.on_message(message)
                    if self.wal is not None:
                        self.wal.flush()

    def on_message(self, message: Message) -> None:
        height = message.height
        if height == self.core.height:
            if isinstance(message, Proposal):
                if self.core.proposal(message.round) is not None:
                    return  # one proposal per round: a resent copy changes nothing
                valid = self.core.decision is None and self.app.is_valid(message)
                self._feed(ProposalEvent(proposal=message, valid=valid))
            else:
                if message.signature in self._seen_votes:
                    return  # resent (vote bundles): already in the WAL and the core
                if message.round <= self.core.round and len(self._seen_votes) < MAX_SEEN_VOTES:
                    self._seen_votes.add(message.signature)  # future rounds may be dropped
                self._feed(VoteEvent(vote=message))
        elif height == self.core.height + 1 and len(self._buffer) < MAX_BUFFERED:
            self._buffer.append(message)

    def _check_stall(self, now: float) -> None:
        core = self.core
        progress = (core.height, core.round, int(core.round_step))
        if core.round_step is Step.COMMIT:  # decided: the COMMIT timeout moves it on
            self._progress = progress
            self._next_stall = math.inf
        elif progress != self._progress:
            self._progress = progress
            self._next_stall = now + self.stall_interval
        elif now >= self._next_stall:
            self._next_stall = now + self.stall_interval
            self.rebroadcasts += 1
            self.app.rebroadcast(self.bundle())

    def bundle(self) -> VoteBundle:
        """Proposals and votes of the current round, the one before it and the valid round."""
        core = self.core
        keeper = core.votes
        rounds = sorted({core.round, core.round - 1, core.valid_round} - {-1})
        proposals = [p for p in (core.proposal(r) for r in rounds) if p is not None]
        votes: list[Vote] = []
        if keeper is not None:
            for r in rounds:
                for t in (VoteType.PREVOTE, VoteType.PRECOMMIT):
                    votes.extend(keeper.votes(r, t))
        return VoteBundle(height=core.height, proposals=tuple(proposals[:MAX_BUNDLE_PROPOSALS]),
                          votes=tuple(votes[:MAX_BUNDLE_VOTES]))

    # ------------------------------------------------------------ heights

    def _start_height(self, height: int) -> None:
        self._timers.clear()
        self._pending_need = None
        self._seen_votes = set()
        vs = self.app.validator_set_for(height)
        records = self.wal.open_height(height) if self.wal is not None else []
        self._replaying = True
        try:
            self._feed(NewHeight(height=height, validator_set=vs), record=False)
            replayed = 0
            for record in records:
                if event_height(record) == height:
                    self._feed(record, record=False)  # type: ignore[arg-type]
                    replayed += 1
            self.replayed += replayed
            if replayed:
                log.info("%s replayed %d WAL records of height %d", self.name, replayed, height)
        finally:
            self._replaying = False
        need = self._pending_need
        if need is not None and (need.height, need.round) == (self.core.height, self.core.round):
            self._pending_need = None
            self._feed(ValueReady(height=need.height, round=need.round,
                                  block=self.app.propose_block(need.height, need.round)))
        buffered, self._buffer = self._buffer, []
        for message in buffered:
            self.on_message(message)

    def _next_height(self) -> None:
        height = self.core.height
        commit = self.core.decision_commit()
        if commit is not None:
            self.app.update_commit(commit)
        if self.wal is not None:
            self.wal.end_height(height)
        self._start_height(height + 1)

    def _fire_due(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, _, event = heapq.heappop(self._timers)
            if event.kind is TimeoutKind.COMMIT:
                if event.height == self.core.height and self.core.round_step is Step.COMMIT:
                    self._next_height()
            else:
                self._feed(event)

    # ------------------------------------------------------------ stepping

    def _feed(self, event: Event, *, record: bool = True, sync: bool = False) -> None:
        queue: collections.deque[tuple[Event, bool]] = collections.deque([(event, record)])
        while queue:
            ev, rec = queue.popleft()
            if rec and self.wal is not None and not self._replaying:
                self.wal.write(ev, sync=sync)
            for action in self.core.step(ev):
                follow = self._act(action)
                if follow is not None:
                    queue.append(follow)

    def _act(self, action: Action) -> tuple[Event, bool] | None:
        if isinstance(action, ScheduleTimeout):
            event = TimeoutEvent(kind=action.kind, height=action.height, round=action.round)
            heapq.heappush(self._timers, (trio.current_time() + action.duration_s,
                                          next(self._seq), event))
            return None
        if isinstance(action, NeedValue):
            if self._replaying:
                self._pending_need = action
                return None
            block = self.app.propose_block(action.height, action.round)
            return (ValueReady(height=action.height, round=action.round, block=block), True)
        if isinstance(action, BroadcastProposal):
            return self._own_proposal(action)
        if isinstance(action, BroadcastVote):
            return self._own_vote(action)
        if isinstance(action, Decide):
            if self.app.committed_height() < action.height:
                self.app.finalize(action.block, action.commit)
            return None
        if isinstance(action, EvidenceFound):
            self.app.add_evidence(action.evidence)
            return None
        raise TypeError(f"unknown consensus action {action!r}")

    def _own_proposal(self, action: BroadcastProposal) -> tuple[Event, bool] | None:
        if self.guard is None:
            return None
        if self._pending_need is not None and self._pending_need.round == action.round:
            self._pending_need = None  # the replayed value answered it
        try:
            proposal = self.guard.sign_proposal(height=action.height, round=action.round,
                                                pol_round=action.pol_round, block=action.block,
                                                timestamp_ms=self.app.now_ms())
        except SignRefused as exc:
            self._refused(exc)
            return None
        event = ProposalEvent(proposal=proposal, valid=True)
        if self.wal is not None:
            self.wal.write(event, sync=True)
        self.app.broadcast(proposal)
        return (event, False)

    def _own_vote(self, action: BroadcastVote) -> tuple[Event, bool] | None:
        if self.guard is None:
            return None
        try:
            vote = self.guard.sign_vote(type=action.type, height=action.height,
                                        round=action.round, block_hash=action.block_hash,
                                        timestamp_ms=self.app.now_ms())
        except SignRefused as exc:
            self._refused(exc)
            return None
        event = VoteEvent(vote=vote)
        if self.wal is not None:
            self.wal.write(event, sync=True)
        self.app.broadcast(vote)
        return (event, False)

    def _refused(self, exc: SignRefused) -> None:
        self.refusals += 1
        if self._replaying:
            log.debug("%s replay: %s", self.name, exc)
        else:
            log.warning("%s signing guard: %s", self.name, exc)

