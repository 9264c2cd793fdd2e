"""A full disk or failing writes stop the node with one clear line and no corruption.

Disk full, for real: SQLite's ``PRAGMA max_page_count`` (SQLITE_FULL, no root needed) for
the block store and the ledger; a small tmpfs filled to the last byte (ENOSPC; root only,
skipped with the reason otherwise) for the WAL, the signing guard and a whole validator
process of a four-validator chain. Each failing write raises StorageError saying
``disk full writing <path>: <error>``, leaves what was stored before readable and intact,
and once space is back the same files carry on: the store takes the block, the ledger
applies it to the app hash an unharmed ledger computes, the node process restarts and
catches up to its peers' blocks and app hash. Failing writes that are not a full disk:
RLIMIT_FSIZE set on a running validator from outside (``prlimit``, no root): EFBIG, which
SQLite reports as "disk I/O error", ends the node with ``cannot write <path>: <error>``.
In both process tests the node exits 1 with that one ``error:`` line as its last word and
no traceback, and the restarted node's signatures show no conflict.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pakash import crypto
from p2pakash.consensus.blockstore import BlockStore
from p2pakash.consensus.guard import SigningGuard, load_state
from p2pakash.consensus.messages import EndHeight
from p2pakash.consensus.types import Block, VoteType
from p2pakash.consensus.wal import WAL
from p2pakash.errors import StorageError
from p2pakash.ledger import Ledger
from p2pakash.ledger.kv import MemoryKV
from p2pakash.ledger.kv_sqlite import SqliteKV
from p2pakash.ledger.txs import Send
from tests.consensus import KEYS, make_set
from tests.consensus.test_blockstore import commit_for
from tests.integration.chain_helpers import Chain, height_of, poll, stored_hashes
from tests.integration.conftest import NodeProcess
from tests.integration.test_crash_loop import VICTIM, Loop, TxLoad, make_chain
from tests.ledger.helpers import USERS, genesis
from tests.ledger.helpers import Chain as LedgerChain

FULL = "database or disk is full"


def _cap_pages(db: object) -> None:
    """Let the SQLite connection ``db`` grow its database by no page at all."""
    import sqlite3

    assert isinstance(db, sqlite3.Connection)
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")


def _big_block(height: int, last_block_hash: bytes = b"") -> Block:
    from p2pakash.consensus.types import build_block

    vs = make_set(1, 1, 1, 1)
    return build_block(chain_id="test-chain", height=height, time_ms=1000 * height,
                       last_block_hash=last_block_hash, validators_hash=vs.hash(),
                       next_validators_hash=vs.hash(), app_hash=b"", proposer=KEYS[0].public,
                       txs=tuple(os.urandom(2_000) for _ in range(40)))


# ------------------------------------------------------------------ SQLite full (any user)


def test_block_store_disk_full_is_one_clear_error_and_keeps_what_was_stored(
        tmp_path: Path) -> None:
    path = tmp_path / "blocks.db"
    store = BlockStore(path)
    first = _big_block(1)
    store.save_block(first, commit_for(first.hash(), 1))
    _cap_pages(store._db)
    second = _big_block(2, first.hash())
    with pytest.raises(StorageError) as info:
        store.save_block(second, commit_for(second.hash(), 2))
    assert str(info.value) == f"disk full writing {path}: {FULL}"
    assert store.height() == 1 and store.block(1) == first  # the failed write left nothing
    assert store.block(2) is None and store.commit(2) is None
    store.close()
    again = BlockStore(path)  # space is back: the same file takes the block
    again.save_block(second, commit_for(second.hash(), 2))
    assert again.block(2) == second and again.block(1) == first
    again.close()


def test_ledger_disk_full_fails_the_block_whole_and_the_retry_matches_an_unharmed_ledger(
        tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    kv = SqliteKV(path)
    Ledger.init_genesis(kv, genesis())
    ledger, twin = Ledger(kv), Ledger(MemoryKV())
    Ledger.init_genesis(twin._kv, genesis())
    for chain in (LedgerChain(ledger), LedgerChain(twin)):
        chain.run(chain.tx(USERS[0], Send(to=USERS[1].address, amount=5)))
    before = (ledger.height(), ledger.app_hash())
    _cap_pages(kv._db)
    sends = [Send(to=crypto.PrivateKey.from_seed(bytes([i]) * 32).address, amount=1)
             for i in range(1, 200)]  # 199 new accounts: new pages
    tx = LedgerChain(ledger).tx(USERS[2], *sends)
    with pytest.raises(StorageError) as info:
        LedgerChain(ledger).block(tx)
    assert str(info.value) == f"disk full writing {path}: {FULL}"
    assert (ledger.height(), ledger.app_hash()) == before  # nothing of the block stayed
    kv.close()
    again = Ledger(SqliteKV(path))  # space is back
    assert (again.height(), again.app_hash()) == before
    ours = LedgerChain(again).block(tx)
    theirs = LedgerChain(twin).block(tx)
    assert ours.tx_results[0].code == 0 and ours.app_hash == theirs.app_hash


# ------------------------------------------------------------------ a full tmpfs (root)


@contextlib.contextmanager
def small_fs(where: Path, size_kib: int) -> Iterator[Path]:
    """A tmpfs of ``size_kib`` KiB mounted at ``where`` (skips the test unless root can
    mount one); unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a small tmpfs, and mounting one needs root")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs",
                           str(where)], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


def fill(fs: Path) -> Path:
    """Fill ``fs`` to the last byte with one file (bounded by the size of the fs)."""
    filler = fs / "filler"
    chunk = b"\0" * 4096
    with filler.open("wb", buffering=0) as f:
        for _ in range(1 << 20):
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    return filler


def test_wal_on_a_full_disk_is_one_clear_error_and_replays_after_space_returns(
        tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs", 256) as fs:
        wal = WAL(fs / "cs.wal")
        wal.open_height(1)
        wal.write(EndHeight(height=0), sync=True)
        filler = fill(fs)
        path = wal.path_for(1)
        with pytest.raises(StorageError) as info:
            for _ in range(10_000):  # the buffer fills, then the flush hits the full disk
                wal.write(EndHeight(height=1))
            wal.flush()
        assert re.fullmatch(rf"disk full writing {re.escape(str(path))}: \[Errno 28\] "
                            "No space left on device", str(info.value)), str(info.value)
        wal.close()  # no second error, nothing left to flush at exit
        filler.unlink()
        again = WAL(fs / "cs.wal")
        records = again.open_height(1)  # a torn tail is cut, the fsynced record is kept
        assert records[0] == EndHeight(height=0)
        assert all(r == EndHeight(height=1) for r in records[1:])
        again.write(EndHeight(height=1), sync=True)
        again.close()


def test_signing_guard_on_a_full_disk_withholds_the_signature_and_keeps_its_state(
        tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs", 64) as fs:
        path = fs / "priv_validator_state.json"
        guard = SigningGuard(KEYS[0], "test-chain", path)
        guard.sign_vote(type=VoteType.PREVOTE, height=1, round=0, block_hash=b"a" * 32,
                        timestamp_ms=1)
        saved = load_state(path)
        filler = fill(fs)
        with pytest.raises(StorageError) as info:
            guard.sign_vote(type=VoteType.PRECOMMIT, height=1, round=0, block_hash=b"a" * 32,
                            timestamp_ms=2)
        assert str(info.value) == (f"disk full writing {path}: [Errno 28] No space left on "
                                   "device; the signature is withheld")
        assert load_state(path) == saved and guard.last == saved
        assert [p.name for p in fs.iterdir()] == sorted(["filler", path.name])  # no temp file
        filler.unlink()
        vote = guard.sign_vote(type=VoteType.PRECOMMIT, height=1, round=0,
                               block_hash=b"a" * 32, timestamp_ms=2)
        assert load_state(path).signature == vote.signature


# ------------------------------------------------------------------ a validator process


ERROR_LINE = re.compile(r"error: (?:(?:disk full writing|cannot write) (?P<path>\S+): .+"
                        r"|(?P<index>\S+): cannot write the tx index \(.+\))")


def stopped_with_one_line(node: NodeProcess, under: Path) -> Path:
    """``node`` exited 1 and its log ends in one ``error:`` line naming a file under
    ``under``, with no traceback anywhere; returns that file."""
    assert node.proc is not None and node.proc.returncode == 1, node.tail()
    text = node.text()
    assert "Traceback" not in text and "Exception ignored" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    match = ERROR_LINE.fullmatch(errors[0])
    assert match, errors[0]
    failed = Path(match.group("path") or match.group("index"))
    assert failed.is_relative_to(under), failed
    assert text.rstrip().endswith(errors[0]), text[-2000:]  # its last word
    return failed


def rejoins(chain: Chain, load: TxLoad) -> None:
    """Restart the victim: it catches up with the chain's blocks, app hash and txs, and
    its signatures show no conflict."""
    net = chain.net
    home = net.homes[VICTIM]
    stopped_at = max(stored_hashes(home.data), default=0)
    net.start(VICTIM)
    loop = Loop(chain, load, random.Random(1))
    # the others may not be past the victim's last block yet: wait until they are
    poll(lambda: height_of(net.client(0)) > stopped_at, limit=30,
         what="the others to pass the victim's last block", describe=net.tails)
    target = height_of(net.client(0))
    poll(lambda: loop.live_check(target), limit=30, what="the validator to catch up",
         describe=net.tails)
    loop.check_signatures()
    assert height_of(net.client(VICTIM)) > stopped_at
    ours, theirs = stored_hashes(home.data), stored_hashes(net.homes[0].data)
    assert all(theirs[h] == v for h, v in ours.items() if h in theirs)


def start_with_load(chain: Chain) -> None:
    net = chain.net
    for i in range(4):
        net.start(i)
    poll(lambda: all(height_of(net.client(i)) >= 3 for i in range(4)), limit=30,
         what="four validators at height 3", describe=net.tails)


@pytest.mark.slow
def test_validator_on_a_full_disk_stops_with_one_line_and_rejoins_once_space_is_back(
        tmp_path: Path) -> None:
    chain = make_chain(tmp_path)
    net, home = chain.net, chain.net.homes[VICTIM]
    with small_fs(home.data, 4096) as fs:
        try:
            start_with_load(chain)
            with TxLoad(net, list(chain.flows), chain.bob) as load:
                poll(lambda: len(load.snapshot()) >= 3, limit=15, what="txs to commit",
                     describe=lambda: "\n".join(load.errors[-5:]))
                filler = fill(fs)
                node = net.nodes[VICTIM]
                poll(lambda: not node.alive, limit=20, what="the validator to stop on the "
                     "full disk", describe=net.tails)
                failed = stopped_with_one_line(node, fs)
                assert "disk full writing" in node.text() or failed.name.startswith("tx")
                filler.unlink()  # space is back
                rejoins(chain, load)
        finally:
            net.stop_all()


@pytest.mark.slow
def test_validator_past_its_file_size_limit_stops_with_one_line_and_rejoins(
        tmp_path: Path) -> None:
    """RLIMIT_FSIZE set from outside (prlimit) on a running validator: the next write
    that grows a store file past it fails with EFBIG (Python ignores SIGXFSZ). No root."""
    chain = make_chain(tmp_path)
    net, home = chain.net, chain.net.homes[VICTIM]
    try:
        start_with_load(chain)
        with TxLoad(net, list(chain.flows), chain.bob) as load:
            poll(lambda: len(load.snapshot()) >= 3, limit=15, what="txs to commit",
                 describe=lambda: "\n".join(load.errors[-5:]))
            node = net.nodes[VICTIM]
            assert node.proc is not None
            files = [*home.data.rglob("*"), node.log]
            limit = max(f.stat().st_size for f in files if f.is_file()) + 1
            done = subprocess.run(["prlimit", f"--pid={node.proc.pid}",
                                   f"--fsize={limit}:{limit}"],
                                  capture_output=True, text=True, timeout=10)
            if done.returncode != 0:
                pytest.skip(f"prlimit failed: {done.stderr.strip()}")
            poll(lambda: not node.alive, limit=20, what="the validator to stop at its file "
                 "size limit", describe=net.tails)
            stopped_with_one_line(node, home.data)
            rejoins(chain, load)
    finally:
        net.stop_all()
