"""The KV stores: order, overlays, SQLite durability; memory and SQLite agree on app hashes."""

from __future__ import annotations

from pathlib import Path
from random import Random

import pytest

from p2pakash.errors import LocalProtocolError, StorageError
from p2pakash.ledger import Delegate, Ledger, MemoryKV, Overlay, Send, SqliteKV, Undelegate
from p2pakash.ledger.kv import KV, prefix_end
from tests.ledger.helpers import USERS, VALS, Chain, genesis


def _fill(kv: KV) -> None:
    for key in [b"b/2", b"a/1", b"b/\xff", b"b/1", b"c", b"b"]:
        kv.set(key, key + b"!")


@pytest.mark.parametrize("make", [MemoryKV, lambda: SqliteKV(":memory:"),
                                  lambda: Overlay(MemoryKV())], ids=["memory", "sqlite", "overlay"])
def test_iterate_prefix_in_byte_order(make: object) -> None:
    kv: KV = make()  # type: ignore[operator]
    _fill(kv)
    kv.delete(b"b/2")
    kv.delete(b"zz")  # deleting a missing key is fine
    assert [k for k, _ in kv.iterate(b"b/")] == [b"b/1", b"b/\xff"]
    assert [k for k, _ in kv.iterate(b"")] == [b"a/1", b"b", b"b/1", b"b/\xff", b"c"]
    assert kv.get(b"c") == b"c!" and kv.get(b"b/2") is None


def test_prefix_end() -> None:
    assert prefix_end(b"ab") == b"ac"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") is None


def test_overlay_merges_masks_and_flushes() -> None:
    base = MemoryKV()
    _fill(base)
    over = Overlay(base)
    over.delete(b"b/1")
    over.set(b"b/0", b"new")
    over.set(b"b/\xff", b"changed")
    assert list(over.iterate(b"b/")) == [(b"b/0", b"new"), (b"b/2", b"b/2!"),
                                         (b"b/\xff", b"changed")]
    assert base.get(b"b/1") == b"b/1!"  # untouched until flush
    over.flush()
    assert list(base.iterate(b"b/")) == [(b"b/0", b"new"), (b"b/2", b"b/2!"),
                                         (b"b/\xff", b"changed")]
    assert over.writes == {}


def test_sqlite_commit_is_atomic_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    kv = SqliteKV(path)
    assert kv._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert kv._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    kv.set(b"a", b"1")
    kv.commit()
    kv.set(b"b", b"2")
    kv.delete(b"a")
    kv.close()  # a crash before commit
    again = SqliteKV(path)
    assert list(again.iterate(b"")) == [(b"a", b"1")]
    again.close()


def test_sqlite_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match=str(path)):
        SqliteKV(path)


def _random_blocks(chain: Chain, rng: Random, n: int) -> list[bytes]:
    hashes = []
    for _ in range(n):
        sender = rng.choice(USERS)
        to = rng.choice(USERS)
        val = rng.choice(VALS).public
        kind = rng.randrange(3)
        msg: object
        if kind == 0:
            msg = Send(to=to.address, amount=rng.randrange(1, 5_000_000))
        elif kind == 1:
            msg = Delegate(validator=val, amount=rng.randrange(1, 5_000_000))
        else:
            msg = Undelegate(validator=val, amount=rng.randrange(1, 2_000_000))
        signers = tuple(v.public for v in VALS if rng.random() < 0.8)
        result = chain.block(chain.tx(sender, msg, fee=rng.randrange(3)), signers=signers,
                             dt_ms=rng.randrange(500, 20_000))
        hashes.append(result.app_hash)
    return hashes


def test_memory_and_sqlite_give_identical_app_hashes(tmp_path: Path) -> None:
    kvs: list[KV] = [MemoryKV(), SqliteKV(tmp_path / "state.db")]
    runs = []
    for kv in kvs:
        first = Ledger.init_genesis(kv, genesis())
        runs.append([first, *_random_blocks(Chain(Ledger(kv)), Random(7), 40)])
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == len(runs[0])


def test_crash_between_blocks_keeps_committed_state(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    kv = SqliteKV(path)
    Ledger.init_genesis(kv, genesis())
    chain = Chain(Ledger(kv))
    hashes = _random_blocks(chain, Random(3), 10)
    balances = {u.address: chain.ledger.account(u.address) for u in USERS}
    kv.set(b"acc/half-written", b"junk")  # a block that was being written when we crashed
    kv.close()

    reopened = Ledger(SqliteKV(path))
    assert reopened.height() == 10 and reopened.app_hash() == hashes[-1]
    assert reopened.store.kv.get(b"acc/half-written") is None
    assert {u.address: reopened.account(u.address) for u in USERS} == balances
    # ...and carries on exactly as a ledger that never crashed
    twin_kv = MemoryKV()
    Ledger.init_genesis(twin_kv, genesis())
    twin = Chain(Ledger(twin_kv))
    rng = Random(3)
    assert _random_blocks(twin, rng, 10) == hashes
    more = _random_blocks(Chain(reopened), Random(11), 5)
    assert _random_blocks(twin, Random(11), 5) == more


def test_apply_block_refuses_a_wrong_height_or_time() -> None:
    from p2pakash.ledger import BlockInput
    kv = MemoryKV()
    Ledger.init_genesis(kv, genesis())
    ledger = Ledger(kv)
    with pytest.raises(LocalProtocolError, match="does not follow"):
        ledger.apply_block(BlockInput(height=2, time_ms=2_000_000, proposer=VALS[0].public))
    with pytest.raises(LocalProtocolError, match="before the previous"):
        ledger.apply_block(BlockInput(height=1, time_ms=1, proposer=VALS[0].public))
    assert ledger.height() == 0


def test_genesis_twice_refused() -> None:
    kv = MemoryKV()
    Ledger.init_genesis(kv, genesis())
    with pytest.raises(StorageError, match="already initialised"):
        Ledger.init_genesis(kv, genesis())

