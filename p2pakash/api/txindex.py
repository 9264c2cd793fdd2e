"""The tx index: tx hash -> (height, index in block, result), in SQLite.

Rules and invariants:
* Fed from committed blocks in height order; a block at or below ``last_height`` is
  skipped, so feeding a block twice (a restart, a backfill racing the stream) is harmless.
  One block is one SQLite transaction, together with the new ``last_height``.
* The result is the wire-encoded ``TxResult`` (code, log, events). A block indexed without
  its results (a backfill from the block store after a restart) stores NULL: the tx's place
  is known, its outcome is not.
* When the same tx bytes appear in two blocks, the first occurrence is kept.
* The file lives in the node's data dir (``txindex.sqlite``); ``path=None`` keeps it in
  memory. It can be deleted at any time and is rebuilt from the blocks (without results).
  A file that is not a database raises StorageError naming the path.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import attrs

from p2pakash import wire
from p2pakash.errors import DecodeError, StorageError
from p2pakash.ledger.state import encode_record
from p2pakash.ledger.txs import TxResult, tx_hash

FILE_NAME = "txindex.sqlite"


@attrs.frozen(kw_only=True)
class TxRecord:
    hash: bytes
    height: int
    index: int
    result: TxResult | None  # None: indexed from the block store, outcome unknown


class TxIndex:
    def __init__(self, path: Path | None) -> None:
        self.path = ":memory:" if path is None else str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS txs (hash BLOB PRIMARY KEY,"
                             " height INTEGER NOT NULL, idx INTEGER NOT NULL, result BLOB)"
                             " WITHOUT ROWID")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY,"
                             " value INTEGER NOT NULL)")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'last_height'").fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open the tx index ({exc})") from None
        self.last_height: int = 0 if row is None else int(row[0])

    @classmethod
    def in_dir(cls, data_dir: Path | None) -> TxIndex:
        if data_dir is None:
            return cls(None)
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / FILE_NAME)

    def add_block(self, height: int, txs: Sequence[bytes],
                  results: Sequence[TxResult] | None) -> bool:
        """Index one committed block; False (nothing written) if already indexed."""
        if height <= self.last_height:
            return False
        if results is not None and len(results) != len(txs):
            raise ValueError(f"block {height}: {len(txs)} txs but {len(results)} results")
        rows = [(tx_hash(raw), height, i, None if results is None else encode_record(results[i]))
                for i, raw in enumerate(txs)]
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO txs (hash, height, idx, result) VALUES (?, ?, ?, ?)", rows)
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES"
                             " ('last_height', ?)", (height,))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StorageError(f"{self.path}: cannot write the tx index ({exc})") from None
        self.last_height = height
        return True

    def get(self, hash_: bytes) -> TxRecord | None:
        try:
            row = self._db.execute("SELECT height, idx, result FROM txs WHERE hash = ?",
                                   (hash_,)).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot read the tx index ({exc})") from None
        if row is None:
            return None
        height, index, blob = row
        result = None
        if blob is not None:
            try:
                result = wire.decode(bytes(blob), TxResult)
            except DecodeError as exc:
                raise StorageError(f"{self.path}: corrupt entry for tx {hash_.hex()} ({exc})"
                                   ) from None
        return TxRecord(hash=hash_, height=int(height), index=int(index), result=result)

    def close(self) -> None:
        self._db.close()
