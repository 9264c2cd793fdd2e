"""Validators in one process over the in-memory network, under virtual time.

Each node runs the real GossipService and ChainService (core, driver, WAL, guard, block
store, ledger, block sync); only the transport is in memory. Nodes are stopped by
cancelling their scope (a crash: nothing is flushed on the way out) and restarted from
their data folder.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from p2pakash import wire
from p2pakash.chain import ChainService, FifoTxSource
from p2pakash.consensus.core import TimeoutParams
from p2pakash.consensus.messages import VOTE_TOPIC
from p2pakash.consensus.types import VoteType, sign_vote
from p2pakash.crypto import NodeID, PrivateKey, VerifyCache
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams
from p2pakash.gossip.service import GossipService
from p2pakash.ledger import (
    UAKT_PER_AKT,
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
    Send,
    sign_tx,
)

CHAIN = "chain-test"
FAST = TimeoutParams(propose=0.2, propose_delta=0.05, prevote=0.05, prevote_delta=0.02,
                     precommit=0.05, precommit_delta=0.02, commit=0.02)


def key_of(i: int) -> PrivateKey:
    return PrivateKey.from_seed(hashlib.sha256(f"validator-{i}".encode()).digest())


def addr_of(i: int) -> str:
    return f"10.1.0.{i + 1}:26656"


def make_genesis(validators: int) -> GenesisDoc:
    return GenesisDoc(
        chain_id=CHAIN, genesis_time_ms=0,
        accounts=tuple(GenesisAccount(address=key_of(i).address, balance=1_000 * UAKT_PER_AKT)
                       for i in range(validators)),
        validators=tuple(GenesisValidator(pubkey=key_of(i).public, stake=100 * UAKT_PER_AKT,
                                          moniker=f"v{i}") for i in range(validators)))


async def wait_for(cond: Callable[[], bool], *, limit: float = 60.0, step: float = 0.05) -> None:
    """Wait (virtual time) until ``cond()``; fail after ``limit`` virtual seconds."""
    with trio.fail_after(limit):
        while not cond():  # noqa: ASYNC110 - polls a condition in virtual time
            await trio.sleep(step)


@attrs.define(eq=False)
class Member:
    index: int
    key: PrivateKey
    data_dir: Path | None
    gossip: GossipService | None = None
    chain: ChainService | None = None
    scope: trio.CancelScope | None = None
    done: trio.Event | None = None

    @property
    def running(self) -> bool:
        return self.scope is not None and not self.scope.cancel_called

    @property
    def c(self) -> ChainService:
        assert self.chain is not None
        return self.chain


@attrs.define(eq=False)
class ChainNet:
    network: MemoryNetwork
    genesis: GenesisDoc
    members: list[Member]
    nursery: trio.Nursery
    cache: VerifyCache
    seed: int

    def peers_of(self, i: int) -> list[PeerAddr]:
        return [PeerAddr.parse(f"{m.key.node_id}@{addr_of(m.index)}") for m in self.members
                if m.index != i]

    async def start(self, i: int, *, validator: bool = True,
                    chain_cls: type[ChainService] = ChainService) -> Member:
        m = self.members[i]
        if m.done is not None:
            await m.done.wait()  # the previous incarnation has fully stopped
        done = m.done = trio.Event()
        gossip = GossipService(
            transport=MemoryTransport(self.network, m.key, CHAIN, addr_of(i)),
            rng=random.Random(self.seed * 100 + i),
            peer_params=PeerParams(max_outbound=8, max_inbound=20, pex_interval=1e9,
                                   backoff_base=0.2, backoff_max=1.0, ban_seconds=5.0,
                                   misbehave_ban_seconds=5.0),
            pubsub_params=PubSubParams(), persistent=self.peers_of(i))
        chain = chain_cls(gossip=gossip, key=m.key if validator else None,
                             genesis=self.genesis, data_dir=m.data_dir, timeouts=FAST,
                             verify_cache=self.cache,
                             now_ms=lambda: int(trio.current_time() * 1000),
                             status_interval=0.2, catchup_delay=0.5, name=f"n{i}")
        m.gossip, m.chain = gossip, chain

        async def run_member(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            try:
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as inner:
                        await inner.start(gossip.run)
                        await inner.start(chain.run)
                        task_status.started(scope)
            finally:
                chain.close()
                done.set()

        m.scope = await self.nursery.start(run_member)
        return m

    def stop(self, i: int) -> None:
        m = self.members[i]
        assert m.scope is not None
        m.scope.cancel()

    def running(self) -> list[ChainService]:
        return [m.c for m in self.members if m.running]

    def ids(self, *indices: int) -> list[NodeID]:
        return [self.members[i].key.node_id for i in indices]


@asynccontextmanager
async def chain_net(n: int, *, validators: int | None = None, seed: int = 1,
                    tmp: Path | None = None, start: int | None = None) -> AsyncIterator[ChainNet]:
    genesis = make_genesis(validators if validators is not None else n)
    network = MemoryNetwork(random.Random(seed), latency=0.005)
    members = [Member(index=i, key=key_of(i), data_dir=None if tmp is None else tmp / f"n{i}")
               for i in range(n)]
    async with trio.open_nursery() as nursery:
        net = ChainNet(network=network, genesis=genesis, members=members, nursery=nursery,
                       cache=VerifyCache(), seed=seed)
        for i in range(n if start is None else start):
            await net.start(i)
        yield net
        nursery.cancel_scope.cancel()


def assert_same_chain(chains: list[ChainService], upto: int) -> None:
    for h in range(1, upto + 1):
        blocks = [c.block(h) for c in chains]
        assert all(b is not None for b in blocks), f"height {h} missing"
        hashes = {b.hash() for b in blocks if b is not None}
        assert len(hashes) == 1, f"fork at height {h}"
    apps = {c.block(upto + 1).header.app_hash for c in chains  # type: ignore[union-attr]
            if c.block(upto + 1) is not None}
    assert len(apps) <= 1


# ---------------------------------------------------------------- tests


async def test_four_validators_agree_on_100_blocks(autojump_clock: trio.abc.Clock) -> None:
    async with chain_net(4) as net:
        await wait_for(lambda: min(c.height for c in net.running()) >= 100, limit=300)
        chains = net.running()
        assert_same_chain(chains, 100)
        # app hashes: every node's ledger after block 100 says the same (block 101 header)
        assert len({c.ledger.app_hash() for c in chains if c.height == chains[0].height}) == 1
        assert all(c.driver.refusals == 0 for c in chains)


async def test_one_of_four_crashed_chain_continues(autojump_clock: trio.abc.Clock) -> None:
    async with chain_net(4) as net:
        await wait_for(lambda: min(c.height for c in net.running()) >= 3)
        net.stop(3)
        start = max(c.height for c in net.running())
        await wait_for(lambda: min(c.height for c in net.running()) >= start + 10, limit=120)
        assert_same_chain(net.running(), start + 10)


async def test_two_of_four_crashed_halts_then_resumes(autojump_clock: trio.abc.Clock,
                                                     tmp_path: Path) -> None:
    async with chain_net(4, tmp=tmp_path) as net:
        await wait_for(lambda: min(c.height for c in net.running()) >= 3)
        net.stop(2)
        net.stop(3)
        await trio.sleep(1.0)
        stalled = max(c.height for c in net.running())
        await trio.sleep(10.0)
        assert max(c.height for c in net.running()) <= stalled + 1  # no quorum: no progress
        await net.start(3)  # restart from its data folder: block store + WAL replay
        await wait_for(lambda: min(c.height for c in net.running()) >= stalled + 5, limit=120)
        assert_same_chain(net.running(), stalled + 5)
        assert net.members[3].c.height >= stalled + 5


async def test_partition_heals(autojump_clock: trio.abc.Clock) -> None:
    async with chain_net(4) as net:
        await wait_for(lambda: min(c.height for c in net.running()) >= 3)
        net.network.partition([net.ids(0, 1), net.ids(2, 3)])
        await trio.sleep(2.0)
        split = max(c.height for c in net.running())
        await trio.sleep(5.0)
        assert max(c.height for c in net.running()) <= split + 1  # 2/2: neither side decides
        net.network.heal()
        await wait_for(lambda: min(c.height for c in net.running()) >= split + 5, limit=120)
        assert_same_chain(net.running(), split + 5)


async def test_double_signer_is_caught_slashed_and_jailed(autojump_clock: trio.abc.Clock
                                                         ) -> None:
    async with chain_net(4) as net:
        await wait_for(lambda: min(c.height for c in net.running()) >= 2)
        bad = net.members[3]
        honest = net.members[0].c
        stake_before = honest.ledger.validator(bad.key.public)
        assert stake_before is not None
        # A byzantine key (no signing guard) signs two different prevotes per height.
        rng = random.Random(7)

        def caught() -> bool:
            return any(blk is not None and blk.evidence
                       for blk in (honest.block(h) for h in range(1, honest.height + 1)))
        with trio.fail_after(60):
            while not caught():
                h = honest.height + 1
                for _ in range(2):
                    vote = sign_vote(bad.key, CHAIN, type=VoteType.PREVOTE, height=h, round=0,
                                     block_hash=rng.randbytes(32), timestamp_ms=1)
                    assert bad.gossip is not None
                    bad.gossip.publish(VOTE_TOPIC, wire.encode(vote))
                await wait_for(lambda: honest.height >= h, limit=30)  # noqa: B023
        rec = honest.ledger.validator(bad.key.public)
        assert rec is not None and rec.jailed and rec.tombstoned
        assert rec.tokens == stake_before.tokens - stake_before.tokens * 5 // 100
        start = honest.height
        await wait_for(lambda: honest.height >= start + 5)
        assert bad.key.public not in {v.pubkey for v in honest.validator_set.validators}
        assert_same_chain(net.running(), start + 5)


async def test_late_node_block_syncs_from_genesis(autojump_clock: trio.abc.Clock) -> None:
    async with chain_net(5, validators=4, start=4) as net:
        await wait_for(lambda: min(c.height for c in net.running()) >= 20)
        late = await net.start(4, validator=False)
        target = max(c.height for c in net.running())
        await wait_for(lambda: late.c.height >= target + 3, limit=60)
        assert late.c.sync.applied >= target - 1  # fetched and verified, not gossiped
        assert_same_chain(net.running(), target + 3)


async def test_transfers_finalize_identically_everywhere(autojump_clock: trio.abc.Clock
                                                        ) -> None:
    async with chain_net(4) as net:
        await wait_for(lambda: min(c.height for c in net.running()) >= 1)
        sender, receiver = key_of(0), key_of(1)
        before = net.members[0].c.ledger.account(receiver.address).balance
        for seq in range(5):
            tx = sign_tx(sender, CHAIN, sequence=seq,
                         msgs=(Send(to=receiver.address, amount=1_000),)).encode()
            for m in net.members:  # every node's mempool holds it (the real mempool gossips)
                assert isinstance(m.c.mempool, FifoTxSource)
                m.c.mempool.add(tx)
        chains = net.running()
        await wait_for(lambda: all(c.ledger.account(sender.address).sequence == 5
                                   for c in chains))
        for c in chains:
            assert c.ledger.account(receiver.address).balance == before + 5_000
            assert len(c.mempool) == 0  # type: ignore[arg-type]
        top = min(c.height for c in chains)
        assert_same_chain(chains, top)
        assert len({c.block(top).header.app_hash for c in chains}) == 1  # type: ignore[union-attr]
