"""Route by role: validators take the vote topics, other nodes follow committed blocks.

Real GossipService and ChainService over the in-memory network under virtual time: the
role functions, the commit topic's validator (accept once per height, reject a forged
commit), followers that commit every block without seeing a vote, a node that asks to
follow votes, and a node that becomes a validator by CreateValidator and switches.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

from p2pakash import wire
from p2pakash.chain import ChainService, FifoTxSource
from p2pakash.consensus import routing
from p2pakash.consensus.core import TimeoutParams
from p2pakash.consensus.messages import (
    COMMIT_TOPIC,
    PROPOSAL_TOPIC,
    VOTE_TOPIC,
    BlockCommit,
    ChainState,
)
from p2pakash.consensus.proposer import Validator, ValidatorSet
from p2pakash.consensus.types import (
    Block,
    Commit,
    CommitSig,
    VoteType,
    sign_vote,
    verify_commit,
)
from p2pakash.crypto import PrivateKey, VerifyCache
from p2pakash.errors import InvalidSignature, RemoteProtocolError
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams, Verdict
from p2pakash.gossip.service import GossipService
from p2pakash.ledger import UAKT_PER_AKT, GenesisAccount, GenesisDoc, GenesisValidator, sign_tx
from p2pakash.ledger.txs import CreateValidator

CHAIN = "routing-test"
FAST = TimeoutParams(propose=0.2, propose_delta=0.05, prevote=0.05, prevote_delta=0.02,
                     precommit=0.05, precommit_delta=0.02, commit=0.05)


def key_of(i: int) -> PrivateKey:
    return PrivateKey.from_seed(hashlib.sha256(f"routing-{i}".encode()).digest())


def addr_of(i: int) -> str:
    return f"10.2.0.{i + 1}:26656"


async def wait_for(cond: Callable[[], bool], *, limit: float = 60.0) -> None:
    with trio.fail_after(limit):
        while not cond():  # noqa: ASYNC110 - polls a condition in virtual time
            await trio.sleep(0.05)


@attrs.define(eq=False)
class Net:
    chains: list[ChainService]
    gossips: list[GossipService]
    scopes: list[trio.CancelScope]


@asynccontextmanager
async def net(n: int, validators: int, *, follow_votes: tuple[int, ...] = ()
              ) -> AsyncIterator[Net]:
    """``n`` nodes, the first ``validators`` in the genesis set, every node funded and
    dialling every earlier node."""
    genesis = GenesisDoc(
        chain_id=CHAIN, genesis_time_ms=0,
        accounts=tuple(GenesisAccount(address=key_of(i).address, balance=1_000 * UAKT_PER_AKT)
                       for i in range(n)),
        validators=tuple(GenesisValidator(pubkey=key_of(i).public, stake=100 * UAKT_PER_AKT,
                                          moniker=f"v{i}") for i in range(validators)))
    network = MemoryNetwork(random.Random(3), latency=0.005)
    cache = VerifyCache()
    out = Net(chains=[], gossips=[], scopes=[])
    async with trio.open_nursery() as nursery:
        for i in range(n):
            dial = list(range(i))
            gossip = GossipService(
                transport=MemoryTransport(network, key_of(i), CHAIN, addr_of(i)),
                rng=random.Random(100 + i),
                peer_params=PeerParams(max_outbound=8, max_inbound=20, pex_interval=1e9,
                                       backoff_base=0.2, backoff_max=1.0),
                pubsub_params=PubSubParams(),
                persistent=[PeerAddr.parse(f"{key_of(j).node_id}@{addr_of(j)}") for j in dial])
            chain = ChainService(gossip=gossip, key=key_of(i), genesis=genesis, timeouts=FAST,
                                 verify_cache=cache, follow_votes=i in follow_votes,
                                 now_ms=lambda: int(trio.current_time() * 1000),
                                 status_interval=0.2, catchup_delay=0.5, name=f"n{i}")

            async def run(g: GossipService = gossip, c: ChainService = chain, *,
                          task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as inner:
                        await inner.start(g.run)
                        await inner.start(c.run)
                        task_status.started(scope)

            out.scopes.append(await nursery.start(run))
            out.chains.append(chain)
            out.gossips.append(gossip)
        yield out
        nursery.cancel_scope.cancel()
    for chain in out.chains:
        chain.close()


# ---------------------------------------------------------------- pure role rules


def _state(validators: Sequence[bytes], next_validators: Sequence[bytes], *, height: int = 5
           ) -> ChainState:
    def vs(keys: Sequence[bytes]) -> ValidatorSet:
        return ValidatorSet.new([Validator(pubkey=k, power=10) for k in keys])

    return ChainState(chain_id=CHAIN, height=height, app_hash=b"", last_block_hash=b"",
                      last_time_ms=0, last_validators=vs(validators), validators=vs(validators),
                      next_validators=vs(next_validators))


def test_role_follows_the_sets_of_the_next_two_heights() -> None:
    a, b, c = (key_of(i).public for i in range(3))
    st = _state([a, b], [b, c])
    assert routing.takes_votes(st, a, False) and routing.drives(st, a, False)  # leaving at H+2
    assert routing.takes_votes(st, b, False) and routing.drives(st, b, False)
    assert routing.takes_votes(st, c, False) and not routing.drives(st, c, False)  # joining
    other = key_of(9).public
    assert not routing.takes_votes(st, other, False) and not routing.drives(st, other, False)
    assert not routing.takes_votes(st, None, False) and not routing.drives(st, None, False)
    assert routing.takes_votes(st, None, True) and routing.drives(st, None, True)


def test_publish_rank_proposer_then_three_backups_in_set_order() -> None:
    keys = [key_of(i).public for i in range(6)]
    st = _state(keys, keys)
    order = [v.pubkey for v in st.last_validators.validators]  # type: ignore[union-attr]
    proposer = order[4]
    ranks = [routing.publish_rank(st, k, proposer) for k in order]
    assert ranks == [2, 3, None, None, 0, 1]
    assert routing.publish_rank(st, key_of(9).public, proposer) is None
    assert routing.publish_rank(st, None, proposer) is None


# ---------------------------------------------------------------- networks


async def test_followers_commit_every_block_without_votes(autojump_clock: trio.abc.Clock
                                                          ) -> None:
    async with net(6, 4) as nt:  # n4 and n5 are full nodes
        await wait_for(lambda: min(c.height for c in nt.chains) >= 15, limit=120)
        top = min(c.height for c in nt.chains)
        for h in range(1, top + 1):
            assert len({c.block(h).hash() for c in nt.chains}) == 1  # type: ignore[union-attr]
        for i in (4, 5):
            follower, g = nt.chains[i], nt.gossips[i]
            assert not routing.drives(follower.state, follower.key.public, False)  # type: ignore[union-attr]
            assert {PROPOSAL_TOPIC, VOTE_TOPIC}.isdisjoint(g.pubsub.subscriptions())
            assert COMMIT_TOPIC in g.pubsub.subscriptions()
            assert follower.relay.applied + follower.sync.applied >= top
            assert follower.relay.applied >= top - 3  # followed the topic, not block sync
            assert follower.driver.core.height == 0  # the driver never ran
        for i in range(4):
            assert {PROPOSAL_TOPIC, VOTE_TOPIC} <= nt.gossips[i].pubsub.subscriptions()
            assert nt.chains[i].relay.applied == 0  # validators decide by themselves
        assert sum(c.relay.published for c in nt.chains[:4]) >= top - 1
        # the full nodes know who takes votes: the validators, not each other
        for i in (4, 5):
            assert nt.gossips[i].pubsub.topic_peers(VOTE_TOPIC) == frozenset(
                key_of(j).node_id for j in range(4))


async def test_follow_votes_runs_the_driver_as_an_observer(autojump_clock: trio.abc.Clock
                                                          ) -> None:
    async with net(5, 4, follow_votes=(4,)) as nt:
        await wait_for(lambda: min(c.height for c in nt.chains) >= 8, limit=120)
        watcher = nt.chains[4]
        assert {PROPOSAL_TOPIC, VOTE_TOPIC} <= nt.gossips[4].pubsub.subscriptions()
        assert watcher.driver.core.height >= 8
        assert watcher.relay.applied == 0 and watcher.relay.published == 0
        # dropping the flag (the role check a commit does) leaves the topics, then follows
        watcher.follow_votes = False
        assert watcher._driver_scope is not None
        watcher._driver_scope.cancel()
        await wait_for(lambda: watcher.relay.applied >= 3, limit=30)
        assert {PROPOSAL_TOPIC, VOTE_TOPIC}.isdisjoint(nt.gossips[4].pubsub.subscriptions())
        await wait_for(lambda: key_of(4).node_id not in nt.gossips[0].pubsub.topic_peers(
            VOTE_TOPIC), limit=5)  # the validators were told
        assert watcher.height >= min(c.height for c in nt.chains[:4]) - 1


async def test_commit_topic_accepts_one_valid_commit_per_height(autojump_clock: trio.abc.Clock
                                                                ) -> None:
    async with net(5, 4) as nt:
        await wait_for(lambda: min(c.height for c in nt.chains) >= 4, limit=120)
        source = nt.chains[0]
        h = source.height
        block, commit = source.block(h), source.commit(h)
        assert block is not None and commit is not None
        # A fresh relay of a node that has committed h-1 (state rolled back by hand).
        probe = routing.CommitRelay(nt.gossips[4], _Behind(source, h - 1), pubkey=None)
        data = wire.encode(BlockCommit(block=block, commit=commit))
        forged_sig = attrs.evolve(commit, signatures=tuple(
            attrs.evolve(s, signature=bytes(64)) for s in commit.signatures))
        forged = wire.encode(BlockCommit(block=block, commit=forged_sig))
        older = wire.encode(BlockCommit(block=source.block(h - 2),  # type: ignore[arg-type]
                                        commit=source.commit(h - 2)))  # type: ignore[arg-type]
        assert probe.validate(older) is Verdict.IGNORE  # outside the window
        assert probe.validate(forged) is Verdict.REJECT
        assert probe.validate(b"\x00garbage") is Verdict.REJECT
        assert probe.relayed == 0
        assert probe.validate(data) is Verdict.ACCEPT
        assert probe.relayed == h
        assert probe.validate(data) is Verdict.IGNORE  # one per height
        # a node that committed h itself relays it too (checked against its own block)
        same = routing.CommitRelay(nt.gossips[4], source, pubkey=None)
        assert same.validate(data) is Verdict.ACCEPT
        # ... but not a commit of its height for another block (the state's last hash)
        other = attrs.evolve(block, header=attrs.evolve(block.header,
                                                        time_ms=block.header.time_ms + 1))
        fresh = routing.CommitRelay(nt.gossips[4], source, pubkey=None)
        assert fresh.validate(wire.encode(BlockCommit(block=other, commit=commit))
                              ) is Verdict.IGNORE
        assert fresh.validate(data) is Verdict.ACCEPT


@attrs.define
class _Behind:
    """A chain view whose committed height is ``height`` (the real chain's sets)."""

    real: ChainService
    height: int

    @property
    def chain_id(self) -> str:
        return self.real.chain_id

    @property
    def verify_cache(self) -> VerifyCache:
        return self.real.verify_cache

    @property
    def state(self) -> ChainState:
        st = self.real.state
        assert st.height == self.height + 1
        assert st.last_validators is not None
        return attrs.evolve(st, height=self.height, validators=st.last_validators)

    def block(self, height: int) -> Block | None:
        return self.real.block(height)

    def apply_synced(self, block: Block, commit: Commit) -> None:
        raise AssertionError("a probe never applies")


async def test_create_validator_switches_a_follower_to_consensus(autojump_clock: trio.abc.Clock
                                                                ) -> None:
    async with net(5, 4) as nt:
        await wait_for(lambda: min(c.height for c in nt.chains) >= 2, limit=120)
        joiner, key = nt.chains[4], key_of(4)
        assert not joiner._votes_on and joiner.relay.following
        tx = sign_tx(key, CHAIN, sequence=0, msgs=(CreateValidator(
            pubkey=key.public, self_stake=50 * UAKT_PER_AKT, moniker="joiner"),)).encode()
        for c in nt.chains:
            assert isinstance(c.mempool, FifoTxSource)
            c.mempool.add(tx)
        await wait_for(lambda: joiner.validator_set.get(key.public) is not None, limit=60)
        await wait_for(lambda: joiner._driving, limit=10)
        assert {PROPOSAL_TOPIC, VOTE_TOPIC} <= nt.gossips[4].pubsub.subscriptions()
        since = joiner.height

        def signed() -> bool:
            top = nt.chains[0].block(nt.chains[0].height)
            return top is not None and top.last_commit is not None and any(
                s.validator == key.public for s in top.last_commit.signatures)

        await wait_for(signed, limit=60)
        await wait_for(lambda: min(c.height for c in nt.chains) >= since + 5, limit=60)
        top = min(c.height for c in nt.chains)
        assert len({c.block(top).hash() for c in nt.chains}) == 1  # type: ignore[union-attr]


def test_verify_commit_remembers_a_verified_commit_per_cache() -> None:
    keys = [key_of(i) for i in range(4)]
    vs = ValidatorSet.new([Validator(pubkey=k.public, power=10) for k in keys])
    block_hash = hashlib.sha256(b"block").digest()
    votes = [sign_vote(k, CHAIN, type=VoteType.PRECOMMIT, height=7, round=0,
                       block_hash=block_hash, timestamp_ms=1) for k in keys[:3]]
    commit = Commit(height=7, round=0, block_hash=block_hash, signatures=tuple(
        CommitSig(validator=v.validator, timestamp_ms=v.timestamp_ms, signature=v.signature)
        for v in votes))
    cache = VerifyCache()
    verify_commit(commit, vs, CHAIN, block_hash, cache)
    checked = cache.hits + cache.misses
    assert checked == 3
    again = wire.decode(wire.encode(commit), Commit)  # another object, same value
    verify_commit(again, vs, CHAIN, block_hash, cache)
    assert cache.hits + cache.misses == checked  # remembered: no signature looked at
    other = VerifyCache()
    verify_commit(again, vs, CHAIN, block_hash, other)
    assert other.misses == 3  # the memo is per cache
    # what differs is checked in full and still refused
    bad = attrs.evolve(commit, signatures=(*commit.signatures[:2], attrs.evolve(
        commit.signatures[2], signature=bytes(64))))
    with pytest.raises(InvalidSignature):
        verify_commit(bad, vs, CHAIN, block_hash, cache)
    smaller = ValidatorSet.new([Validator(pubkey=k.public, power=10) for k in keys[1:]])
    with pytest.raises(RemoteProtocolError, match="not a validator"):
        verify_commit(commit, smaller, CHAIN, block_hash, cache)
    with pytest.raises(RemoteProtocolError, match="another block"):
        verify_commit(commit, vs, CHAIN, bytes(32), cache)
    with pytest.raises(InvalidSignature):
        verify_commit(commit, vs, "other-chain", block_hash, cache)


async def test_shared_decoder_decodes_each_message_once(autojump_clock: trio.abc.Clock
                                                        ) -> None:
    async with net(4, 4) as nt:
        await wait_for(lambda: min(c.height for c in nt.chains) >= 3, limit=120)
        c = nt.chains[0]
        datas = [wire.encode(BlockCommit(block=c.block(h), commit=c.commit(h)))  # type: ignore[arg-type]
                 for h in (1, 2, 3)]
    decoder = wire.DecodeMemo(capacity=2)
    first = decoder.decode(datas[0], BlockCommit)
    assert decoder.decode(bytes(datas[0]), BlockCommit) is first  # equal bytes: same object
    assert first == wire.decode(datas[0], BlockCommit)
    decoder.decode(datas[1], BlockCommit)
    decoder.decode(datas[2], BlockCommit)  # capacity 2: the first is forgotten
    assert decoder.decode(datas[0], BlockCommit) is not first
    assert len(decoder) == 2
    with pytest.raises(RemoteProtocolError):
        decoder.decode(datas[1][:-1], BlockCommit)
