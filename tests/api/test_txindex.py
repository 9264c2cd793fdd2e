"""TxIndex: persistence, idempotent feeding, unknown results, corruption."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from p2pakash import wire
from p2pakash.api import TxIndex
from p2pakash.errors import StorageError
from p2pakash.ledger import Event, TxResult, tx_hash

OK = TxResult(code=0, log="", events=(Event(type="tx", attrs=(("sender", "a"),)),))
BAD = TxResult(code=6, log="insufficient funds")


def encode_results(results: list[TxResult]) -> bytes:
    """The results row of files written before the JSON rows: the canonical CBOR array of
    the results' wire encodings (the index still reads it)."""
    return b"".join([wire.cbor_head(4, len(results))] + [wire.encode(r) for r in results])


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


def test_block_results_encode_as_the_wire_encodings_in_an_array() -> None:
    results = [OK, BAD, TxResult(code=0, log="é", events=(
        Event(type="transfer", attrs=(("amount", "1"), ("recipient", "b"))), Event(type="x")))]
    assert encode_results(results) == b"\x83" + b"".join(wire.encode(r) for r in results)
    assert encode_results([]) == b"\x80"


def test_results_live_in_one_row_per_block(tmp_path: Path) -> None:
    index = TxIndex(tmp_path / "i.sqlite")
    index.add_block(1, [b"a", b"b", b"c"], [OK, BAD, OK])
    index.add_block(2, [b"d"], None)
    index.close()
    db = sqlite3.connect(tmp_path / "i.sqlite")
    assert db.execute("SELECT height FROM results").fetchall() == [(1,)]
    assert db.execute("SELECT count(*) FROM txs WHERE result IS NULL").fetchone() == (4,)
    db.close()
    again = TxIndex(tmp_path / "i.sqlite")
    got = [again.get(tx_hash(t)) for t in (b"a", b"b", b"c", b"d")]
    assert [r.result if r else "missing" for r in got] == [OK, BAD, OK, None]


def test_a_per_tx_result_from_an_older_file_is_still_read(tmp_path: Path) -> None:
    index = TxIndex(tmp_path / "i.sqlite")
    index._db.execute("INSERT INTO txs (hash, height, idx, result) VALUES (?, 1, 0, ?)",
                      (tx_hash(b"old"), wire.encode(BAD)))
    rec = index.get(tx_hash(b"old"))
    assert rec is not None and rec.result == BAD


def test_a_corrupt_results_row_is_a_storage_error(tmp_path: Path) -> None:
    index = TxIndex(tmp_path / "i.sqlite")
    index.add_block(1, [b"a", b"b"], [OK, BAD])
    index._db.execute("UPDATE results SET results = ? WHERE height = 1",
                      (encode_results([OK]),))  # one result short
    assert index.get(tx_hash(b"a")) is not None
    with pytest.raises(StorageError, match=r"corrupt entry for tx .*no result 1 in block 1"):
        index.get(tx_hash(b"b"))
    index._db.execute("UPDATE results SET results = ? WHERE height = 1", (b"\xff\x00",))
    with pytest.raises(StorageError, match="corrupt entry"):
        index.get(tx_hash(b"a"))


def test_results_rows_are_json_text_and_older_cbor_rows_are_still_read(tmp_path: Path) -> None:
    results = [OK, BAD, TxResult(code=0, log="é", events=(
        Event(type="transfer", attrs=(("amount", "1"), ("recipient", "b"))), Event(type="x")))]
    index = TxIndex(tmp_path / "i.sqlite")
    index.add_block(1, [b"a", b"b", b"c"], results)
    (row,) = index._db.execute("SELECT results FROM results WHERE height = 1").fetchall()
    assert type(row[0]) is str and json.loads(row[0])[2][2][0] == [
        "transfer", [["amount", "1"], ["recipient", "b"]]]
    assert [index.get(tx_hash(t)).result for t in (b"a", b"b", b"c")  # type: ignore[union-attr]
            ] == results
    index._db.execute("UPDATE results SET results = ? WHERE height = 1",
                      (encode_results(results),))  # the CBOR format of older files
    assert [index.get(tx_hash(t)).result for t in (b"a", b"b", b"c")  # type: ignore[union-attr]
            ] == results


@pytest.mark.parametrize("row", [
    "[", "{}", "[[0, \"\"]]", "[[\"0\", \"\", []]]", "[[0, \"\", [[\"t\", [[\"k\", 1]]]]]]",
    "[[0, \"\", [[\"t\"]]]]", "[[0, \"\", [[\"t\", [[\"k\", \"v\", \"w\"]]]]]]", "[]"])
def test_a_corrupt_json_results_row_is_a_storage_error(tmp_path: Path, row: str) -> None:
    index = TxIndex(tmp_path / "i.sqlite")
    index.add_block(1, [b"a"], [OK])
    index._db.execute("UPDATE results SET results = ? WHERE height = 1", (row,))
    with pytest.raises(StorageError, match=r"corrupt entry for tx [0-9a-f]{64}"):
        index.get(tx_hash(b"a"))
