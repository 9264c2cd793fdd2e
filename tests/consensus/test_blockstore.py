"""The SQLite block store: blocks, commits, state, validator-set history, corruption."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from p2pakash import wire
from p2pakash.consensus.blockstore import BlockStore
from p2pakash.consensus.messages import ChainState
from p2pakash.consensus.proposer import ValidatorSet
from p2pakash.consensus.types import Commit, CommitSig, VoteType
from p2pakash.errors import StorageError
from tests.consensus import KEYS, make_block, make_set, vote


def commit_for(block_hash: bytes, height: int) -> Commit:
    sigs = tuple(CommitSig(validator=v.validator, timestamp_ms=v.timestamp_ms,
                           signature=v.signature)
                 for v in (vote(KEYS[i], VoteType.PRECOMMIT, height, 0, block_hash)
                           for i in range(3)))
    return Commit(height=height, round=0, block_hash=block_hash, signatures=sigs)


def test_blocks_commits_and_state_survive_reopen(tmp_path: Path) -> None:
    vs = make_set(1, 1, 1, 1)
    path = tmp_path / "blocks.db"
    store = BlockStore(path)
    block = make_block(1, vs, KEYS[0])
    commit = commit_for(block.hash(), 1)
    store.save_block(block, commit)
    state = ChainState(chain_id="c", height=1, app_hash=bytes(32), last_block_hash=block.hash(),
                       last_time_ms=1000, last_validators=vs, validators=vs,
                       next_validators=vs.advance(1))
    store.save_state(state)
    store.close()
    again = BlockStore(path)
    assert again.block(1) == block and again.commit(1) == commit
    assert again.state() == state
    assert again.height() == 1 and again.base() == 1
    assert again.block(2) is None and again.commit(2) is None
    assert again.validator_set(3) is not None


def test_validator_set_history() -> None:
    a, b = make_set(1, 1, 1, 1), make_set(2, 1, 1)
    store = BlockStore(None)

    def st(h: int, cur: ValidatorSet, nxt: ValidatorSet) -> ChainState:
        return ChainState(chain_id="c", height=h, app_hash=b"", last_block_hash=b"",
                          last_time_ms=0, last_validators=None, validators=cur,
                          next_validators=nxt)
    store.save_state(st(0, a, a))
    store.save_state(st(1, a, b))  # b signs height 3 on
    assert store.validator_set(1) == a and store.validator_set(2) == a
    vs3 = store.validator_set(3)
    assert vs3 is not None and vs3.hash() == b.hash()
    assert store.validator_set(99) == vs3


def test_commit_for_another_block_refused() -> None:
    vs = make_set(1, 1, 1, 1)
    store = BlockStore(None)
    block = make_block(1, vs, KEYS[0])
    with pytest.raises(StorageError, match="another block"):
        store.save_block(block, commit_for(bytes(32), 1))
    store.save_block(block, commit_for(block.hash(), 1))
    with pytest.raises(StorageError):
        store.save_commit(commit_for(bytes(32), 1))


def test_corrupted_row_is_a_storage_error(tmp_path: Path) -> None:
    vs = make_set(1, 1, 1, 1)
    path = tmp_path / "blocks.db"
    store = BlockStore(path)
    block = make_block(1, vs, KEYS[0])
    store.save_block(block, commit_for(block.hash(), 1))
    store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE blocks SET data = ? WHERE height = 1", (b"\x00garbage",))
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="corrupted block 1"):
        BlockStore(path).block(1)


def test_swapped_block_is_a_storage_error(tmp_path: Path) -> None:
    vs = make_set(1, 1, 1, 1)
    path = tmp_path / "blocks.db"
    store = BlockStore(path)
    a, b = make_block(1, vs, KEYS[0], b"a"), make_block(1, vs, KEYS[0], b"b")
    store.save_block(a, commit_for(a.hash(), 1))
    store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE blocks SET data = ? WHERE height = 1", (wire.encode(b),))
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="does not match its stored hash"):
        BlockStore(path).block(1)


def test_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "blocks.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StorageError, match=r"blocks\.db"):
        BlockStore(path)


def test_state_row_is_the_wire_encoding_and_sets_survive_reopen(tmp_path: Path) -> None:
    """save_state splices cached set encodings: the row must still be wire.encode(state),
    and the in-memory valset index must agree with a fresh open of the same file."""
    a, b = make_set(1, 1, 1, 1), make_set(2, 1, 1)
    path = tmp_path / "blocks.db"
    store = BlockStore(path)
    states = []
    cur, nxt = a, a.advance(1)
    for h in range(6):
        last = None if h == 0 else states[-1].validators
        if h == 3:
            nxt = b  # membership changes: b signs height 5 on
        st = ChainState(chain_id="c", height=h, app_hash=bytes(32), last_block_hash=b"x" * h,
                        last_time_ms=h, last_validators=last, validators=cur,
                        next_validators=nxt)
        store.save_state(st)
        states.append(st)
        rows = store._query("SELECT data FROM state WHERE id = 1")
        assert bytes(rows[0][0]) == wire.encode(st)
        cur, nxt = nxt, nxt.advance(1)
    heights = [r[0] for r in store._query("SELECT height FROM valsets ORDER BY height")]
    assert heights == [1, 2, 5]  # genesis writes both of its sets
    answers = {h: store.validator_set(h) for h in range(0, 9)}
    store.close()
    again = BlockStore(path)
    assert again.state() == states[-1]
    for h, vs in answers.items():
        fresh = again.validator_set(h)
        assert (fresh is None) == (vs is None)
        if fresh is not None and vs is not None:
            assert fresh.hash() == vs.hash()
    assert answers[4] is not None and answers[4].hash() == a.hash()
    assert answers[5] is not None and answers[5].hash() == b.hash()


def test_valset_row_deleted_behind_the_store_is_a_storage_error(tmp_path: Path) -> None:
    a = make_set(1, 1, 1, 1)
    path = tmp_path / "blocks.db"
    store = BlockStore(path)
    store.save_state(ChainState(chain_id="c", height=0, app_hash=b"", last_block_hash=b"",
                                last_time_ms=0, last_validators=None, validators=a,
                                next_validators=a))
    store.close()
    reopened = BlockStore(path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM valsets")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="validator set row 2"):
        reopened.validator_set(3)


def test_encoding_memo_returns_each_objects_own_bytes() -> None:
    from p2pakash.consensus import blockstore

    vs = make_set(1, 1, 1, 1)
    blocks = [make_block(1, vs, KEYS[0], bytes([i])) for i in range(blockstore.ENCODE_MEMO + 5)]
    for b in blocks + blocks[::-1]:  # evictions and re-encodes on the way back
        assert blockstore.encoded(b) == wire.encode(b)
    twin = make_block(1, vs, KEYS[0], bytes([0]))  # equal value, other object
    assert blockstore.encoded(twin) == wire.encode(blocks[0])
