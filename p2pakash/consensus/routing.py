"""Route consensus by role: validators gossip proposals and votes, other nodes follow commits.

Rules and invariants (DESIGN.md §7 "Route by role"):
* ``takes_votes``: a node takes the proposal and vote topics while its key is in the set
  that signs the next height or the one after (``validators``/``next_validators`` of the
  chain state), or when configured to follow votes. ``drives``: it runs the consensus
  driver while its key signs the next height (or it follows votes); otherwise it follows
  committed blocks. Both are pure functions of the committed state, so every node switches
  at the same height; subscribing one height early gives the mesh time to form.
* Committed blocks travel on ``COMMIT_TOPIC`` as ``BlockCommit`` (every node subscribes).
  A validator whose driver decided height h publishes it: the block's proposer at once,
  the next ``BACKUPS`` validators after it in set order after ``rank * backup_delay``
  seconds, and only when no commit of height h has reached them by then.
* Every node relays at most one commit per height, the first that verifies: decoded,
  height h one above its committed height (checked against ``validators``) or equal to it
  (checked against ``last_validators`` and its own block); ``verify_commit`` through the
  shared VerifyCache. Other heights and later copies are ignored; a commit that fails
  verification is rejected (the relaying peer pays in score).
* A follower applies a relayed commit of its next height through the block-sync path
  (``apply_synced``: header and body against the state, the commit again, ``finalize``);
  a gap is left to block sync. A node running the driver only relays: its own driver
  decides, and block sync takes over when it falls behind.
* Bounded: the decoded-message map and the pending backups hold a few heights at most.
* ``decoder`` (a ``wire.DecodeMemo``) lets the nodes of one process (a simulation) decode
  each commit message once.
"""

from __future__ import annotations

import collections
import logging
from typing import Protocol

import trio

from p2pakash import wire
from p2pakash.consensus.messages import COMMIT_TOPIC, BlockCommit, ChainState
from p2pakash.consensus.types import Block, Commit, verify_commit
from p2pakash.crypto import NodeID, VerifyCache
from p2pakash.errors import RemoteProtocolError
from p2pakash.gossip.pubsub import Verdict
from p2pakash.gossip.service import Delivered, GossipService

log = logging.getLogger(__name__)

BACKUPS = 3  # validators after the proposer that publish a commit nobody else did
MAX_DECODED = 64


def takes_votes(state: ChainState, pubkey: bytes | None, follow_votes: bool) -> bool:
    """Whether the node subscribes to the proposal and vote topics now."""
    if follow_votes:
        return True
    return pubkey is not None and (state.validators.get(pubkey) is not None
                                   or state.next_validators.get(pubkey) is not None)


def drives(state: ChainState, pubkey: bytes | None, follow_votes: bool) -> bool:
    """Whether the node runs the consensus driver for height ``state.height + 1``."""
    return follow_votes or (pubkey is not None and state.validators.get(pubkey) is not None)


def publish_rank(state: ChainState, pubkey: bytes | None, proposer: bytes) -> int | None:
    """Our place after ``proposer`` in the set that signed ``state.height`` (0: we proposed);
    None when we are not in that set or not among the first ``BACKUPS`` after it."""
    vs = state.last_validators
    if pubkey is None or vs is None:
        return None
    keys = [v.pubkey for v in vs.validators]
    if pubkey not in keys or proposer not in keys:
        return None
    rank = (keys.index(pubkey) - keys.index(proposer)) % len(keys)
    return rank if rank <= BACKUPS else None


class Target(Protocol):
    """What the relay needs from the chain (ChainService)."""

    @property
    def chain_id(self) -> str: ...

    @property
    def verify_cache(self) -> VerifyCache: ...

    @property
    def state(self) -> ChainState: ...

    def apply_synced(self, block: Block, commit: Commit) -> None: ...


class CommitRelay:
    """The ``consensus/commit`` topic of one node: validate, relay once per height,
    publish what our driver decided, apply what others decided while following."""

    def __init__(self, gossip: GossipService, target: Target, *, pubkey: bytes | None,
                 backup_delay: float = 1.0, name: str = "") -> None:
        self.gossip = gossip
        self.target = target
        self.pubkey = pubkey
        self.backup_delay = backup_delay
        self.name = name
        self.following = False  # set by the chain while no driver runs
        self.decoder: wire.DecodeMemo | None = None  # the simulator shares one
        self.relayed = 0  # highest height whose commit we accepted (relayed)
        self.applied = 0  # blocks applied from the topic
        self.published = 0
        self._decoded: collections.OrderedDict[bytes, BlockCommit] = collections.OrderedDict()
        self._backups: list[tuple[float, int, BlockCommit]] = []  # (due, height, message)
        self._wake = trio.Event()

    def install(self) -> trio.MemoryReceiveChannel[Delivered]:
        self.gossip.set_validator(COMMIT_TOPIC, lambda peer, topic, data: self.validate(data))
        return self.gossip.subscribe(COMMIT_TOPIC)

    # ------------------------------------------------------------ the topic validator

    def validate(self, data: bytes) -> Verdict:
        try:
            msg = wire.decode_via(self.decoder, data, BlockCommit)
        except RemoteProtocolError:
            return Verdict.REJECT
        h, st = msg.block.height, self.target.state
        if h <= self.relayed or h == 0:
            return Verdict.IGNORE
        if h == st.height + 1:
            vs = st.validators
        elif h == st.height and st.last_validators is not None:
            if st.last_block_hash != msg.block.hash():  # the hash of our block h
                log.error("%s commit for height %d of a block we did not commit", self.name, h)
                return Verdict.IGNORE
            vs = st.last_validators
        else:
            return Verdict.IGNORE
        try:
            if msg.commit.height != h:
                raise RemoteProtocolError(f"commit for height {msg.commit.height} with block {h}")
            verify_commit(msg.commit, vs, self.target.chain_id, msg.block.hash(),
                          self.target.verify_cache)
        except RemoteProtocolError as exc:
            log.info("%s bad commit on %s: %s", self.name, COMMIT_TOPIC, exc)
            return Verdict.REJECT
        self.relayed = h
        self._decoded[data] = msg
        while len(self._decoded) > MAX_DECODED:
            self._decoded.popitem(last=False)
        return Verdict.ACCEPT

    # ------------------------------------------------------------ publishing

    def decided(self, block: Block, commit: Commit) -> None:
        """Our driver committed ``block`` (the state already holds it): publish it now (we
        proposed it) or schedule a backup publication (we follow the proposer closely)."""
        rank = publish_rank(self.target.state, self.pubkey, block.header.proposer)
        if rank is None:
            return
        if rank == 0:
            self._publish(block.height, BlockCommit(block=block, commit=commit))
            return
        due = trio.current_time() + rank * self.backup_delay
        self._backups = [b for b in self._backups if b[1] > block.height - BACKUPS]
        self._backups.append((due, block.height, BlockCommit(block=block, commit=commit)))
        self._wake.set()

    def _publish(self, height: int, message: BlockCommit) -> None:
        """Encode and publish ``message`` unless a commit of ``height`` is out already (a
        backup's commit is encoded only if it is published)."""
        if height <= self.relayed:
            return  # someone's commit of this height is out already
        before = self.relayed
        self.gossip.publish(COMMIT_TOPIC, wire.encode(message))
        if self.relayed > before:
            self.published += 1

    # ------------------------------------------------------------ running

    def _apply(self, source: NodeID, data: bytes) -> None:
        msg = self._decoded.pop(data, None)
        if msg is None or source == self.gossip.node_id or not self.following:
            return
        if msg.block.height != self.target.state.height + 1:
            return  # applied meanwhile, or a gap that block sync fills
        try:
            self.target.apply_synced(msg.block, msg.commit)
        except RemoteProtocolError as exc:
            log.warning("%s cannot apply commit %d from %s: %s", self.name, msg.block.height,
                        COMMIT_TOPIC, exc)
            return
        self.applied += 1

    async def _follow(self, channel: trio.MemoryReceiveChannel[Delivered]) -> None:
        async for item in channel:
            self._apply(item.source, item.data)

    async def _publish_backups(self) -> None:
        while True:
            self._wake = trio.Event()
            now = trio.current_time()
            due = [b for b in self._backups if b[0] <= now]
            self._backups = [b for b in self._backups if b[0] > now]
            for _, height, message in due:
                self._publish(height, message)
            deadline = min((b[0] for b in self._backups), default=float("inf"))
            with trio.move_on_at(deadline):
                await self._wake.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        channel = self.install()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, channel)
            nursery.start_soon(self._publish_backups)
            task_status.started()
