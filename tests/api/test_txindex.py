"""TxIndex: persistence, idempotent feeding, unknown results, corruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pakash.api import TxIndex
from p2pakash.errors import StorageError
from p2pakash.ledger import Event, TxResult, tx_hash

OK = TxResult(code=0, log="", events=(Event(type="tx", attrs=(("sender", "a"),)),))
BAD = TxResult(code=6, log="insufficient funds")


def test_index_persists_across_reopen(tmp_path: Path) -> None:
    index = TxIndex.in_dir(tmp_path / "data")
    assert index.add_block(1, [b"t1", b"t2"], [OK, BAD])
    index.close()
    again = TxIndex.in_dir(tmp_path / "data")
    assert again.last_height == 1
    rec = again.get(tx_hash(b"t2"))
    assert rec is not None and (rec.height, rec.index, rec.result) == (1, 1, BAD)
    first = again.get(tx_hash(b"t1"))
    assert first is not None and first.result == OK
    assert again.get(tx_hash(b"t3")) is None


def test_blocks_at_or_below_last_height_are_skipped() -> None:
    index = TxIndex(None)
    assert index.add_block(2, [b"a"], [OK])
    assert not index.add_block(2, [b"b"], [OK])
    assert not index.add_block(1, [b"c"], [OK])
    assert index.get(tx_hash(b"b")) is None and index.last_height == 2


def test_first_occurrence_is_kept_and_results_may_be_unknown() -> None:
    index = TxIndex(None)
    index.add_block(1, [b"x"], [BAD])
    index.add_block(2, [b"x", b"y"], None)
    rec = index.get(tx_hash(b"x"))
    assert rec is not None and rec.height == 1 and rec.result == BAD
    unknown = index.get(tx_hash(b"y"))
    assert unknown is not None and unknown.result is None and unknown.index == 1


def test_results_must_match_txs() -> None:
    with pytest.raises(ValueError, match="2 txs but 1 results"):
        TxIndex(None).add_block(1, [b"a", b"b"], [OK])


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "txindex.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match=f"{path}: cannot open the tx index"):
        TxIndex(path)
