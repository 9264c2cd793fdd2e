"""ChainService: consensus core + driver + ledger + block store + gossip, for one node.

Rules and invariants:
* Storage is opened and healed in the constructor: the block store's state row (height
  S), the ledger's height L and the highest stored block B satisfy S <= L <= B <= S + 1;
  a crash between "block stored", "applied to the ledger" and "state persisted" is healed
  by applying block S + 1 again (or only persisting the state when the ledger already has
  it). Anything else is StorageError and the node stops.
* Proposals and votes travel on the gossip topics ``consensus/proposal`` and
  ``consensus/vote``, among the nodes that take them (``routing.py``: validators of the
  next two heights, and nodes configured with ``follow_votes``); gossip gives relay,
  content-hash dedupe and peer scoring. Topic validators decode, check the height window
  and verify signatures once per node (VerifyCache); a bad signature rejects the message
  and costs the relaying peer score, a message outside the window is ignored. An accepted
  peer's message goes from the validator straight into the driver's inbox.
* Route by role: the run loop runs the consensus driver while the node's key signs the
  next height (or it follows votes), else it follows committed blocks from the
  ``consensus/commit`` topic (``CommitRelay``), which our driver's decisions feed. A
  commit that changes the role (a validator-set change) cancels the running mode; the
  loop subscribes or unsubscribes the vote topics and starts the other mode.
* valid(v) is ``consensus/validity.py``: header against the state, body, last commit,
  txs decode, evidence.
* Commit order (``finalize``): store block + commit -> apply to the ledger -> persist the
  state (height, app hash, validator sets for H+1 and H+2) -> mempool update -> block
  subscribers. Validator updates of block H land in the set for H + 2 (reference §A7);
  the consensus sets are checked against the ledger's own record of them.
* Double-sign evidence found by the core is kept (verified, bounded) until a block of
  ours or someone else's commits it; the ledger receives it as ``Misbehaviour``.
* Consensus (or following) runs in a cancel scope: when peers are ahead (2+ heights, or 1
  height for longer than ``catchup_delay``) it is cancelled, block sync catches up, and
  consensus restarts from the new height (replaying that height's WAL).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import trio

from p2pakash import wire
from p2pakash.consensus import routing, validity
from p2pakash.consensus.blockstore import BlockStore
from p2pakash.consensus.core import TimeoutParams
from p2pakash.consensus.driver import ConsensusDriver, Message
from p2pakash.consensus.guard import SigningGuard
from p2pakash.consensus.messages import PROPOSAL_TOPIC, VOTE_TOPIC, ChainState, VoteBundle
from p2pakash.consensus.proposer import Validator, ValidatorSet
from p2pakash.consensus.sync import BlockSync
from p2pakash.consensus.types import (
    MAX_EVIDENCE,
    Block,
    Commit,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    build_block,
    verify_commit,
)
from p2pakash.consensus.wal import WAL
from p2pakash.crypto import NodeID, PrivateKey, VerifyCache
from p2pakash.errors import RemoteProtocolError, StorageError
from p2pakash.faults import crash_point
from p2pakash.gossip.pubsub import Verdict
from p2pakash.gossip.service import GossipService
from p2pakash.ledger import BlockInput, BlockResult, GenesisDoc, Ledger, Misbehaviour
from p2pakash.ledger.kv import KV, MemoryKV
from p2pakash.ledger.kv_sqlite import SqliteKV

log = logging.getLogger(__name__)

MAX_PENDING_EVIDENCE = 1_000
INBOX_SIZE = 10_000
BLOCK_SUBSCRIBER_QUEUE = 1_000
SHARED_DECODED = 4_096  # consensus messages in the simulator's shared decode memo


class TxSource(Protocol):
    """What consensus needs from a mempool."""

    def reap(self, max_bytes: int) -> list[bytes]: ...

    def update(self, height: int, txs: Sequence[bytes]) -> None: ...


class FifoTxSource:
    """A minimal FIFO of encoded txs (no checks): the real mempool replaces it."""

    def __init__(self, max_txs: int = 100_000) -> None:
        self.max_txs = max_txs
        self._txs: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def add(self, tx: bytes) -> bool:
        if tx in self._txs or len(self._txs) >= self.max_txs:
            return False
        self._txs[tx] = None
        return True

    def __len__(self) -> int:
        return len(self._txs)

    def reap(self, max_bytes: int) -> list[bytes]:
        out: list[bytes] = []
        size = 0
        for tx in self._txs:
            if size + len(tx) > max_bytes:
                break
            out.append(tx)
            size += len(tx)
        return out

    def update(self, height: int, txs: Sequence[bytes]) -> None:
        for tx in txs:
            self._txs.pop(tx, None)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class ChainService:
    def __init__(self, *, gossip: GossipService, key: PrivateKey | None, genesis: GenesisDoc,
                 data_dir: Path | None = None, timeouts: TimeoutParams | None = None,
                 verify_cache: VerifyCache | None = None, mempool: TxSource | None = None,
                 now_ms: Callable[[], int] | None = None, max_block_bytes: int = 512 * 1024,
                 status_interval: float = 0.5, catchup_delay: float = 1.0,
                 follow_votes: bool = False, commit_backup_delay: float = 1.0,
                 name: str = "", state: KV | None = None) -> None:
        self.gossip = gossip
        self.key = key
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.data_dir = data_dir
        self.timeouts = timeouts or TimeoutParams()
        self.verify_cache = verify_cache or VerifyCache()
        self.mempool: TxSource = mempool if mempool is not None else FifoTxSource()
        self._now_ms = now_ms or _wall_ms
        self.max_block_bytes = max_block_bytes
        self.status_interval = status_interval
        self.catchup_delay = catchup_delay
        self.name = name or gossip.node_id[:8]
        self._evidence: dict[bytes, DuplicateVoteEvidence] = {}
        self._block_subs: list[trio.MemorySendChannel[tuple[Block, BlockResult]]] = []
        self.shared_decoded: wire.DecodeMemo | None = None  # see ``_decode``
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[Message](INBOX_SIZE)
        self._driver_scope: trio.CancelScope | None = None  # the running mode (driver or follower)
        self.follow_votes = follow_votes
        self._votes_on = False  # subscribed to the proposal and vote topics
        self._driving = False  # the running mode is the driver
        self._lag_since: float | None = None
        self.dropped_inputs = 0
        self.store, self.ledger = self._open(state)
        self.state = self._load_state()
        self._heal()
        wal = guard = None
        if data_dir is not None:
            wal = WAL(data_dir / "cs.wal")
        if key is not None:
            guard = SigningGuard(key, self.chain_id, None if data_dir is None
                                 else data_dir / "priv_validator_state.json")
        self.driver = ConsensusDriver(self, local=None if key is None else key.public,
                                      guard=guard, wal=wal, params=self.timeouts, name=self.name)
        self.sync = BlockSync(gossip, self, name=self.name,
                              genesis_hash=genesis.genesis_hash())
        self.relay = routing.CommitRelay(gossip, self, pubkey=None if key is None else key.public,
                                         backup_delay=commit_backup_delay, name=self.name)

    # ------------------------------------------------------------ public queries

    @property
    def height(self) -> int:
        """The latest committed height (0: genesis only)."""
        return self.state.height

    @property
    def latest_block_hash(self) -> bytes:
        return self.state.last_block_hash

    @property
    def validator_set(self) -> ValidatorSet:
        """The set that signs the next height."""
        return self.state.validators

    def block(self, height: int) -> Block | None:
        return self.store.block(height)

    def commit(self, height: int) -> Commit | None:
        return self.store.commit(height)

    def subscribe_blocks(self) -> trio.MemoryReceiveChannel[tuple[Block, BlockResult]]:
        """Every block committed from now on with its result (a slow reader misses some)."""
        send, recv = trio.open_memory_channel[tuple[Block, BlockResult]](BLOCK_SUBSCRIBER_QUEUE)
        self._block_subs.append(send)
        return recv

    def close(self) -> None:
        """Close the databases and the WAL (after ``run`` has stopped)."""
        if self.driver.wal is not None:
            self.driver.wal.close()
        self.store.close()
        close = getattr(self._kv, "close", None)
        if close is not None:
            close()

    # ------------------------------------------------------------ storage

    def _open(self, state: KV | None) -> tuple[BlockStore, Ledger]:
        """``state``: for a node without ``data_dir``, a state KV to start from instead of a
        fresh MemoryKV (the simulator gives each node a copy of one genesis state)."""
        kv: KV
        if state is not None and self.data_dir is not None:
            raise ValueError(f"{self.name}: a state KV is for a node without a data_dir "
                             f"(this one keeps its state in {self.data_dir})")
        if self.data_dir is None:
            store, kv = BlockStore(None), MemoryKV() if state is None else state
        else:
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"{self.data_dir}: cannot create the data folder ({exc})"
                                   ) from None
            store, kv = BlockStore(self.data_dir / "blocks.db"), SqliteKV(
                self.data_dir / "state.db")
        self._kv = kv
        ledger = Ledger(kv, verify=self.verify_cache.verify)
        try:
            ledger.chain_id()
        except StorageError:
            Ledger.init_genesis(kv, self.genesis)
        if ledger.chain_id() != self.chain_id:
            raise StorageError(f"{self.data_dir}: state belongs to chain {ledger.chain_id()!r}, "
                               f"not {self.chain_id!r}")
        known = store.get_meta("genesis_hash")
        if known is None:
            store.set_meta("genesis_hash", self.genesis.genesis_hash())
        elif known != self.genesis.genesis_hash():
            raise StorageError(f"{store.where}: the block store belongs to another genesis")
        return store, ledger

    def _load_state(self) -> ChainState:
        state = self.store.state()
        if state is not None:
            return state
        if self.ledger.height() != 0:
            raise StorageError(f"{self.store.where}: no chain state but the ledger is at "
                               f"height {self.ledger.height()}")
        vs = ValidatorSet.new([Validator(pubkey=pk, power=p)
                               for pk, p in self.ledger.validator_set_at(1)])
        state = ChainState(chain_id=self.chain_id, height=0, app_hash=self.ledger.app_hash(),
                           last_block_hash=b"", last_time_ms=self.ledger.time_ms(),
                           last_validators=None, validators=vs, next_validators=vs.advance(1))
        self.store.save_state(state)
        return state

    def _heal(self) -> None:
        s, ledger_h, b = self.state.height, self.ledger.height(), self.store.height()
        if not s <= ledger_h <= b <= s + 1:
            raise StorageError(f"{self.store.where}: inconsistent storage: chain state at "
                               f"height {s}, ledger at {ledger_h}, blocks up to {b}")
        if b == s:
            if self.ledger.app_hash() != self.state.app_hash:
                raise StorageError(f"{self.store.where}: the ledger's app hash at height {s} "
                                   "differs from the chain state's")
            return
        block, commit = self.store.block(b), self.store.commit(b)
        if block is None or commit is None:
            raise StorageError(f"{self.store.where}: block {b} or its commit is missing")
        if ledger_h == s:
            if self.ledger.app_hash() != self.state.app_hash:
                raise StorageError(f"{self.store.where}: the ledger's app hash at height {s} "
                                   "differs from the chain state's")
            updates = self._apply(block).validator_updates
        else:
            current = {v.pubkey: v.power for v in self.state.next_validators.validators}
            target = dict(self.ledger.validator_set_at(b + 2))
            updates = tuple(sorted([(pk, p) for pk, p in target.items() if current.get(pk) != p]
                                   + [(pk, 0) for pk in current if pk not in target]))
        self._advance(block, updates)
        log.warning("%s healed storage: block %d re-applied after an interrupted commit",
                    self.name, b)

    def _apply(self, block: Block) -> BlockResult:
        h = block.header
        misbehaviour = tuple(Misbehaviour(pubkey=ev.validator, height=ev.height,
                                          time_ms=self._time_at(ev.height, h.time_ms))
                             for ev in block.evidence)
        signers = tuple(s.validator for s in block.last_commit.signatures) \
            if block.last_commit is not None else ()
        return self.ledger.apply_block(BlockInput(height=h.height, time_ms=h.time_ms,
                                                  proposer=h.proposer, txs=block.txs,
                                                  signers=signers, misbehaviour=misbehaviour))

    def _time_at(self, height: int, default: int) -> int:
        block = self.store.block(height)
        return default if block is None else block.header.time_ms

    def _advance(self, block: Block, updates: Sequence[tuple[bytes, int]]) -> None:
        st = self.state
        changes = [Validator(pubkey=pk, power=p) for pk, p in updates]
        next_vs = st.next_validators.update(changes).advance(1)
        ledger_set = dict(self.ledger.validator_set_at(block.height + 2))
        ours = {v.pubkey: v.power for v in next_vs.validators}
        if ledger_set != ours:
            raise StorageError(f"validator set for height {block.height + 2} differs between "
                               "consensus and the ledger")
        self.state = ChainState(chain_id=st.chain_id, height=block.height,
                                app_hash=self.ledger.app_hash(), last_block_hash=block.hash(),
                                last_time_ms=block.header.time_ms,
                                last_validators=st.validators, validators=st.next_validators,
                                next_validators=next_vs)
        self.store.save_state(self.state)

    # ------------------------------------------------------------ the driver's App

    def committed_height(self) -> int:
        return self.state.height

    def base_height(self) -> int:
        return self.store.base()

    def validator_set_for(self, height: int) -> ValidatorSet:
        if height != self.state.height + 1:
            raise StorageError(f"no validator set for height {height} (next is "
                               f"{self.state.height + 1})")
        return self.state.validators

    def now_ms(self) -> int:
        return self._now_ms()

    def propose_block(self, height: int, round: int) -> Block:
        st = self.state
        assert self.key is not None and height == st.height + 1
        evidence = [ev for ev in self._evidence.values() if ev.height < height][:MAX_EVIDENCE]
        budget = self.max_block_bytes - sum(len(wire.encode(ev)) for ev in evidence)
        txs = self.mempool.reap(max(0, budget))
        last_commit = self.store.commit(st.height) if st.height > 0 else None
        time_ms = max(self.now_ms(), st.last_time_ms + (1 if st.height > 0 else 0))
        return build_block(chain_id=self.chain_id, height=height, time_ms=time_ms,
                           last_block_hash=st.last_block_hash,
                           validators_hash=st.validators.hash(),
                           next_validators_hash=st.next_validators.hash(),
                           app_hash=st.app_hash, proposer=self.key.public, txs=txs,
                           evidence=evidence, last_commit=last_commit)

    def is_valid(self, proposal: Proposal) -> bool:
        try:
            self.check_block(proposal.block, proposer=proposal.proposer)
        except RemoteProtocolError as exc:
            log.info("%s invalid proposal %d/%d: %s", self.name, proposal.height,
                     proposal.round, exc)
            return False
        return True

    def check_block(self, block: Block, *, proposer: bytes | None = None,
                    live: bool = True) -> None:
        """valid(v): raise RemoteProtocolError naming the first rule ``block`` breaks."""
        validity.check_block(block, self.state, self.store, self.verify_cache,
                             max_block_bytes=self.max_block_bytes,
                             max_tx_bytes=self.ledger.params().max_tx_bytes,
                             proposer=proposer, now_ms=self.now_ms() if live else None)

    def finalize(self, block: Block, commit: Commit) -> None:
        """Commit order: store, apply to the ledger, persist state, then tell the others."""
        crash_point("block_store_before")
        self.store.save_block(block, commit)
        crash_point("block_store_after")
        result = self._apply(block)
        crash_point("ledger_apply_after")
        self._advance(block, result.validator_updates)
        crash_point("state_persist_after")
        self.mempool.update(block.height, block.txs)
        for ev in block.evidence:
            self._evidence.pop(wire.digest(ev), None)
        log.debug("%s committed block %d (%d txs)", self.name, block.height, len(block.txs))
        for send in list(self._block_subs):
            try:
                send.send_nowait((block, result))
            except trio.WouldBlock:
                log.warning("%s block subscriber too slow: block %d dropped", self.name,
                            block.height)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._block_subs.remove(send)
        self._routed(block, commit)

    def _role(self) -> tuple[bool, bool]:
        pubkey = None if self.key is None else self.key.public
        return (routing.takes_votes(self.state, pubkey, self.follow_votes),
                routing.drives(self.state, pubkey, self.follow_votes))

    def _routed(self, block: Block, commit: Commit) -> None:
        """After a commit: publish what our driver decided; a new role ends the running mode."""
        if self._driver_scope is None:
            return  # block sync is applying: the run loop picks the mode afterwards
        if self._driving:
            self.relay.decided(block, commit)
        if self._role() != (self._votes_on, self._driving):
            self._driver_scope.cancel()

    def update_commit(self, commit: Commit) -> None:
        if commit.height == self.state.height:
            self.store.save_commit(commit)

    def add_evidence(self, evidence: DuplicateVoteEvidence) -> None:
        digest = wire.digest(evidence)
        if digest in self._evidence or self.store.has_evidence(digest):
            return
        if len(self._evidence) >= MAX_PENDING_EVIDENCE:
            return
        try:
            validity.check_evidence(evidence, self.state.height + 2, self.store,
                                    self.chain_id, self.verify_cache, "evidence")
        except RemoteProtocolError as exc:
            log.warning("%s dropping evidence: %s", self.name, exc)
            return
        log.warning("%s double sign by %s at height %d round %d", self.name,
                    evidence.validator.hex()[:16], evidence.height, evidence.vote_a.round)
        self._evidence[digest] = evidence

    def broadcast(self, message: Message) -> None:
        topic = PROPOSAL_TOPIC if isinstance(message, Proposal) else VOTE_TOPIC
        self.gossip.publish(topic, wire.encode(message))

    def rebroadcast(self, bundle: VoteBundle) -> None:
        if bundle.votes or bundle.proposals:  # to the peers that take votes
            for peer in sorted(self.gossip.connected & self.gossip.pubsub.topic_peers(VOTE_TOPIC)):
                self.gossip.send_to(peer, bundle)

    def _on_bundle(self, peer: NodeID, item: object) -> None:
        """A peer's resent proposals and votes: checked like gossip, then to the driver."""
        assert isinstance(item, VoteBundle)
        if not self._votes_on:
            return  # not taking votes: nothing to check them against for us
        messages: list[Message] = [*item.proposals, *item.votes]
        admitted = [m for m in messages if validity.admit(m, self.state, self.verify_cache)]
        for message in admitted:  # a bad signature raised above: the peer is banned
            try:
                self._inbox_send.send_nowait(message)
            except trio.WouldBlock:
                self.dropped_inputs += 1

    # ------------------------------------------------------------ block sync target

    def stored(self, height: int) -> tuple[Block | None, Commit | None]:
        return self.store.block(height), self.store.commit(height)

    def apply_synced(self, block: Block, commit: Commit) -> None:
        if block.height != self.state.height + 1:
            raise RemoteProtocolError(f"block {block.height} does not follow "
                                      f"{self.state.height}")
        self.check_block(block, live=False)
        verify_commit(commit, self.state.validators, self.chain_id, block.hash(),
                      self.verify_cache)
        if commit.height != block.height:
            raise RemoteProtocolError(f"commit for height {commit.height} with block "
                                      f"{block.height}")
        self.finalize(block, commit)

    # ------------------------------------------------------------ gossip

    def _decode(self, data: bytes, cls: type[Proposal] | type[Vote]) -> Message:
        """``wire.decode``, or through ``shared_decoded`` (the simulator's nodes share one
        memo, as they share the VerifyCache)."""
        return wire.decode_via(self.shared_decoded, data, cls)

    def _validate(self, source: NodeID, data: bytes, cls: type[Proposal] | type[Vote]
                  ) -> Verdict:
        """Topic validator: decode, window and membership (else IGNORE), signature. An
        accepted message of a peer goes to the driver's inbox at once (the topics have no
        local channel: gossip delivers what its validator accepted, so this is the same
        message at the same instant, without a task step per message); our own messages
        the driver already has."""
        try:
            message = self._decode(data, cls)
            if not validity.admit(message, self.state, self.verify_cache):
                return Verdict.IGNORE
        except RemoteProtocolError:  # undecodable or badly signed: the relayer pays
            return Verdict.REJECT
        if source != self.gossip.node_id:
            try:
                self._inbox_send.send_nowait(message)
            except trio.WouldBlock:
                self.dropped_inputs += 1
        return Verdict.ACCEPT

    async def _status_loop(self) -> None:
        while True:
            await trio.sleep(self.status_interval)
            self.sync.announce()  # to peers that have not heard our height; a slow keep-alive
            self._check_lag()

    def _check_lag(self) -> None:
        scope = self._driver_scope
        if scope is None:
            return
        best, cur = self.sync.max_peer_height(), self.state.height + 1
        now = trio.current_time()
        if best > cur:
            scope.cancel()
        elif best == cur:
            if self._lag_since is None:
                self._lag_since = now
            elif now - self._lag_since >= self.catchup_delay:
                scope.cancel()
        else:
            self._lag_since = None

    # ------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        self.sync.register()
        self.gossip.register(VoteBundle, self._on_bundle)
        self.gossip.set_validator(PROPOSAL_TOPIC, lambda p, t, d: self._validate(p, d, Proposal))
        self.gossip.set_validator(VOTE_TOPIC, lambda p, t, d: self._validate(p, d, Vote))
        async with trio.open_nursery() as nursery:
            await nursery.start(self.relay.run)
            self._route_votes()
            nursery.start_soon(self._status_loop)
            task_status.started()
            while True:
                await self.sync.catch_up()
                self._lag_since = None
                self._route_votes()
                self._driving = self._role()[1]
                with trio.CancelScope() as scope:
                    self._driver_scope = scope
                    if self._driving:
                        await self.driver.run(self._inbox_recv)
                    else:
                        await self._follow()
                self._driver_scope = None
                if self._role() == (self._votes_on, self._driving):
                    log.info("%s behind peers at height %d: switching to block sync",
                             self.name, self.state.height)

    def _route_votes(self) -> None:
        """Take the proposal and vote topics, or leave them, as the role says (their
        validator feeds the driver: no local channel)."""
        wanted = self._role()[0]
        if wanted == self._votes_on:
            return
        self._votes_on = wanted
        log.info("%s %s the consensus vote topics at height %d", self.name,
                 "joins" if wanted else "leaves", self.state.height)
        for topic in (PROPOSAL_TOPIC, VOTE_TOPIC):
            if wanted:
                self.gossip.relay(topic)
            else:
                self.gossip.unsubscribe(topic)

    async def _follow(self) -> None:
        """Follow committed blocks from the commit topic until cancelled."""
        self.relay.following = True
        try:
            await trio.sleep_forever()
        finally:
            self.relay.following = False
