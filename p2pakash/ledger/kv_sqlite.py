"""The production KV: one SQLite table, WAL mode, ``synchronous=FULL``.

Rules and invariants:
* Writes go into one open transaction; ``commit()`` ends it, so one block is one SQLite
  transaction: a crash before ``commit()`` loses the whole block and nothing else.
* Keys are BLOBs compared with memcmp, so ``ORDER BY k`` is ascending byte order, the
  order the ``KV`` protocol promises.
* A file that is not a SQLite database, or cannot be written, raises StorageError naming
  the path; the node must stop rather than run on broken state.
* Point reads go through a bounded cache of values (``None``: absent) read or written by
  this connection, which is the database's only writer: a write updates the cache, a
  rollback empties it. ``iterate`` always reads SQLite (which sees the open transaction).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from p2pakash.errors import StorageError
from p2pakash.faults import armed, crash_point
from p2pakash.fsutil import write_failure
from p2pakash.ledger.kv import prefix_end

CACHE_SIZE = 1 << 16


class SqliteKV:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open the state database ({exc})") from None
        self._in_tx = False
        self._cache: dict[bytes, bytes | None] = {}

    def _remember(self, key: bytes, value: bytes | None) -> None:
        cache = self._cache
        if key not in cache and len(cache) >= CACHE_SIZE:
            del cache[next(iter(cache))]  # the oldest entry
        cache[key] = value

    def _begin(self) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_tx = True

    def get(self, key: bytes) -> bytes | None:
        try:
            return self._cache[key]
        except KeyError:
            pass
        try:
            row = self._db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: read failed ({exc})") from None
        value = None if row is None else bytes(row[0])
        self._remember(key, value)
        return value

    def set(self, key: bytes, value: bytes) -> None:
        try:
            self._begin()
            self._db.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, value))
        except sqlite3.Error as exc:
            self._cache.clear()
            raise StorageError(write_failure(self.path, exc)) from None
        crash_point("ledger_write")
        self._remember(key, bytes(value))

    def write_many(self, writes: list[tuple[bytes, bytes | None]]) -> None:
        """``set``/``delete`` (None) of each pair, in one statement per kind (a block's
        writes: one C loop instead of a Python call per key)."""
        if armed("ledger_write"):
            for key, value in writes:
                if value is None:
                    self.delete(key)
                else:
                    self.set(key, value)
            return
        sets = [(k, v) for k, v in writes if v is not None]
        deletes = [(k,) for k, v in writes if v is None]
        try:
            self._begin()
            if sets:
                self._db.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", sets)
            if deletes:
                self._db.executemany("DELETE FROM kv WHERE k = ?", deletes)
        except sqlite3.Error as exc:
            self._cache.clear()
            raise StorageError(write_failure(self.path, exc)) from None
        for key, value in writes:
            self._remember(key, value)

    def delete(self, key: bytes) -> None:
        try:
            self._begin()
            self._db.execute("DELETE FROM kv WHERE k = ?", (key,))
        except sqlite3.Error as exc:
            self._cache.clear()
            raise StorageError(write_failure(self.path, exc)) from None
        self._remember(key, None)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        end = prefix_end(prefix)
        try:
            if end is None:
                rows = self._db.execute(
                    "SELECT k, v FROM kv WHERE k >= ? ORDER BY k", (prefix,)).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k",
                    (prefix, end)).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: read failed ({exc})") from None
        for k, v in rows:
            yield bytes(k), bytes(v)

    def commit(self) -> None:
        if not self._in_tx:
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._cache.clear()
            raise StorageError(write_failure(self.path, exc)) from None
        self._in_tx = False

    def rollback(self) -> None:
        """Drop uncommitted writes (used when a block fails half way)."""
        self._cache.clear()
        if self._in_tx:
            self._in_tx = False
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                self._db.execute("ROLLBACK")

    def close(self) -> None:
        """Close without committing: pending writes are lost, as in a crash."""
        self.rollback()
        self._db.close()
