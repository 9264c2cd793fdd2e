"""The driver and ChainService on one validator: valid(v), restart with WAL replay, and
healing a crash between "block stored", "applied to the ledger" and "state persisted"."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import attrs
import pytest
import trio

from p2pakash.chain import ChainService
from p2pakash.consensus.blockstore import BlockStore
from p2pakash.consensus.core import Step, TimeoutParams
from p2pakash.consensus.guard import load_state
from p2pakash.consensus.types import Block, build_block
from p2pakash.crypto import VerifyCache
from p2pakash.errors import RemoteProtocolError, StorageError
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams
from p2pakash.gossip.service import GossipService
from p2pakash.ledger import BlockInput, Ledger, Send, SqliteKV, sign_tx
from tests.integration.test_chain_memory import (
    CHAIN,
    FAST,
    assert_same_chain,
    chain_net,
    key_of,
    make_genesis,
    wait_for,
)

KEY = key_of(0)


def single(data_dir: Path | None, *, validators: int = 1,
           timeouts: TimeoutParams = FAST) -> ChainService:
    network = MemoryNetwork(random.Random(1))
    gossip = GossipService(transport=MemoryTransport(network, KEY, CHAIN, "10.9.0.1:1"),
                           rng=random.Random(1), peer_params=PeerParams(pex_interval=1e9),
                           pubsub_params=PubSubParams())
    return ChainService(gossip=gossip, key=KEY, genesis=make_genesis(validators),
                        data_dir=data_dir, timeouts=timeouts, verify_cache=VerifyCache(),
                        now_ms=lambda: int(trio.current_time() * 1000), name="solo")


async def run_until(chain: ChainService, height: int) -> None:
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(chain.gossip.run)
            await nursery.start(chain.run)
            await wait_for(lambda: chain.height >= height, limit=60)
            nursery.cancel_scope.cancel()
    finally:
        chain.close()


# ---------------------------------------------------------------- valid(v)


def rebuilt(block: Block, **changes: object) -> Block:
    h = block.header
    fields = dict(chain_id=h.chain_id, height=h.height, time_ms=h.time_ms,
                  last_block_hash=h.last_block_hash, validators_hash=h.validators_hash,
                  next_validators_hash=h.next_validators_hash, app_hash=h.app_hash,
                  proposer=h.proposer, txs=block.txs, evidence=block.evidence,
                  last_commit=block.last_commit)
    fields.update(changes)
    return build_block(**fields)  # type: ignore[arg-type]


async def test_valid_v_checks_every_header_field() -> None:
    chain = single(None)
    good = chain.propose_block(1, 0)
    chain.check_block(good)
    tx = sign_tx(KEY, CHAIN, sequence=0, msgs=(Send(to=key_of(1).address, amount=5),)).encode()
    chain.check_block(rebuilt(good, txs=(tx,)))
    bad = {
        "wrong chain ID": rebuilt(good, chain_id="other"),
        "wrong height": rebuilt(good, height=2),
        "wrong app hash": rebuilt(good, app_hash=bytes(32)),
        "wrong validators hash": rebuilt(good, validators_hash=bytes(32)),
        "wrong next validators hash": rebuilt(good, next_validators_hash=bytes(32)),
        "wrong last block hash": rebuilt(good, last_block_hash=bytes(32)),
        "proposer is not a validator": rebuilt(good, proposer=key_of(5).public),
        "in the future": rebuilt(good, time_ms=10**9),
        "tx 0 does not decode": rebuilt(good, txs=(b"\x01\x02",)),
    }
    for reason, block in bad.items():
        with pytest.raises(RemoteProtocolError, match=reason):
            chain.check_block(block)
    tampered = attrs.evolve(good, txs=(tx,))  # body no longer matches the header
    with pytest.raises(RemoteProtocolError, match="txs_hash"):
        chain.check_block(tampered)
    chain.close()


# ---------------------------------------------------------------- stalls


async def test_a_stalled_round_is_resent_but_the_commit_wait_is_not(
        autojump_clock: trio.abc.Clock) -> None:
    slow_commit = single(None, timeouts=attrs.evolve(FAST, commit=3.0))  # > stall interval
    await run_until(slow_commit, 3)
    assert slow_commit.driver.rebroadcasts == 0
    stuck = single(None, validators=2)  # half the power runs: no quorum, the round stalls
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(stuck.gossip.run)
            await nursery.start(stuck.run)
            await trio.sleep(5.5)
            nursery.cancel_scope.cancel()
    finally:
        stuck.close()
    assert stuck.height == 0
    assert stuck.driver.rebroadcasts >= 4  # once per stall interval while stuck


# ---------------------------------------------------------------- restart


async def test_single_validator_restarts_from_its_folder(autojump_clock: trio.abc.Clock,
                                                         tmp_path: Path) -> None:
    first = single(tmp_path)
    await run_until(first, 5)
    stopped_at = first.height
    guard_before = load_state(tmp_path / "priv_validator_state.json")
    second = single(tmp_path)
    assert second.height == stopped_at
    await run_until(second, stopped_at + 5)
    assert load_state(tmp_path / "priv_validator_state.json").hrs > guard_before.hrs
    third = single(tmp_path)
    for h in range(1, second.height + 1):
        blk, nxt = third.block(h), third.block(h + 1)
        assert blk is not None
        assert nxt is None or nxt.header.last_block_hash == blk.hash()
    third.close()


async def test_crash_mid_height_replays_the_wal(autojump_clock: trio.abc.Clock,
                                                tmp_path: Path) -> None:
    async with chain_net(4, tmp=tmp_path) as net:
        node = net.members[3]
        await wait_for(lambda: node.c.height >= 3)
        # crash while a height is in progress and the node has already voted in it
        await wait_for(lambda: node.c.driver.core.height == node.c.height + 1
                       and node.c.driver.core.round_step >= Step.PRECOMMIT, step=0.001)
        height = node.c.driver.core.height
        guard_before = load_state(tmp_path / "n3" / "priv_validator_state.json")
        assert guard_before.height == height
        net.stop(3)
        restarted = await net.start(3)
        await wait_for(lambda: restarted.c.height >= height + 3)
        assert restarted.c.driver.replayed > 0
        assert_same_chain(net.running(), height + 3)
        assert load_state(tmp_path / "n3" / "priv_validator_state.json").hrs > guard_before.hrs


# ---------------------------------------------------------------- healing


@pytest.fixture
async def crashed(autojump_clock: trio.abc.Clock, tmp_path: Path
                  ) -> tuple[Path, Path, BlockStore]:
    """A node folder snapshot at height h, and a reference that went on to h + 2."""
    ref = tmp_path / "ref"
    chain = single(ref)
    await run_until(chain, 4)
    snap = tmp_path / "snap"
    shutil.copytree(ref, snap)
    h = chain.height
    chain = single(ref)
    await run_until(chain, h + 2)
    return snap, ref, BlockStore(ref / "blocks.db")


def _expect_healed(folder: Path, ref: BlockStore, height: int) -> None:
    healed = single(folder)
    nxt = ref.block(height + 1)
    assert nxt is not None
    assert healed.height == height
    assert healed.latest_block_hash == nxt.header.last_block_hash
    assert healed.state.app_hash == nxt.header.app_hash
    assert healed.ledger.app_hash() == nxt.header.app_hash
    healed.close()


async def test_heal_block_stored_not_applied(crashed: tuple[Path, Path, BlockStore]) -> None:
    snap, _, ref = crashed
    store = BlockStore(snap / "blocks.db")
    h = store.height() + 1
    block, commit = ref.block(h), ref.commit(h)
    assert block is not None and commit is not None
    store.save_block(block, commit)  # the crash came right after this
    store.close()
    _expect_healed(snap, ref, h)


async def test_heal_block_applied_state_not_persisted(
        crashed: tuple[Path, Path, BlockStore]) -> None:
    snap, _, ref = crashed
    store = BlockStore(snap / "blocks.db")
    h = store.height() + 1
    block, commit = ref.block(h), ref.commit(h)
    assert block is not None and commit is not None and block.last_commit is not None
    store.save_block(block, commit)
    store.close()
    kv = SqliteKV(snap / "state.db")
    Ledger(kv).apply_block(BlockInput(
        height=h, time_ms=block.header.time_ms, proposer=block.header.proposer, txs=block.txs,
        signers=tuple(s.validator for s in block.last_commit.signatures)))
    kv.close()  # ... and the crash came before the state row was written
    _expect_healed(snap, ref, h)


async def test_inconsistent_storage_stops_the_node(
        crashed: tuple[Path, Path, BlockStore]) -> None:
    snap, ref_dir, _ = crashed
    for suffix in ("", "-wal", "-shm"):
        src = ref_dir / f"state.db{suffix}"
        if src.exists():
            shutil.copy(src, snap / f"state.db{suffix}")  # a ledger two blocks ahead
    with pytest.raises(StorageError, match="inconsistent storage"):
        single(snap)


async def test_corrupted_block_store_stops_the_node(
        crashed: tuple[Path, Path, BlockStore]) -> None:
    snap, _, _ = crashed
    for suffix in ("-wal", "-shm"):
        (snap / f"blocks.db{suffix}").unlink(missing_ok=True)
    (snap / "blocks.db").write_bytes(b"\x00garbage" * 4096)
    with pytest.raises(StorageError, match="block store"):
        single(snap)


async def test_driver_resumes_the_same_height_after_an_interruption(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    async with chain_net(4, tmp=tmp_path, start=3) as net:  # 3 of 4: every vote counts
        node = net.members[2].c
        await wait_for(lambda: node.height >= 3)
        await wait_for(lambda: node.driver.core.height == node.height + 1
                       and node.driver.core.round_step >= Step.PREVOTE, step=0.001)
        height = node.driver.core.height
        scope = node._driver_scope
        assert scope is not None
        scope.cancel()  # as when block sync takes over, but nobody can be ahead
        await wait_for(lambda: node.height >= height + 3)
        assert node.driver.replayed > 0  # the same height was rebuilt from its WAL
        assert_same_chain(net.running(), height + 3)
