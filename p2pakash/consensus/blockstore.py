"""The block store: blocks, commits, the chain state row and committed evidence in SQLite.

Rules and invariants:
* WAL journal mode, ``synchronous=FULL``; every ``save_*`` is one SQLite transaction.
  ``path=None`` is an in-memory database (tests, simulations) with the same code.
* Commit order (the caller's duty, reference §A4): ``save_block`` (block + commit) ->
  the ledger applies it -> ``save_state``. So the state row's height S, the ledger's
  height L and the highest stored block B always satisfy S <= L <= B <= S + 1, and a
  crash between the steps is healed on restart by re-applying block S + 1.
* Everything read back is checked: a row that does not decode, a block whose hash is not
  the stored hash, a commit for another block, or a file that is not a SQLite database
  raises StorageError naming the file and the height: the node stops rather than run
  on wrong state.
* Validator sets are kept for every height at which their membership changed
  (``valsets``), so evidence and commits of older heights can be checked.
* The store is the only writer of its database, so it keeps in memory what it would
  otherwise read back every block: the heights of the ``valsets`` rows, the recently used
  sets decoded (a few, by row height), and the encodings of the last saved state's sets.
  ``save_state`` then compares membership hashes without a query or a decode, and encodes
  only the set that is new (``last_validators`` and ``validators`` of height H + 1 are the
  ``validators`` and ``next_validators`` of height H), and of that only the priorities and
  proposer when the membership is the last encoded set's. Caches change only after the
  SQLite transaction committed; the bytes written are ``wire.encode(state)`` exactly.
* Blocks and commits are immutable values: their encodings are memoised process-wide by
  object identity (``encoded``, the last ``ENCODE_MEMO`` objects, held so an ID is never
  reused while remembered), so the simulator's nodes, which share one decoded block
  and commit per message, encode each once rather than once per node. A set's priorities
  are memoised by value (every node of a process computes equal ones each height).
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import sqlite3
from pathlib import Path
from typing import Any, TypeVar

import attrs

from p2pakash import wire
from p2pakash.consensus.messages import ChainState
from p2pakash.consensus.proposer import Validator, ValidatorSet
from p2pakash.consensus.types import Block, Commit
from p2pakash.errors import DecodeError, StorageError
from p2pakash.fsutil import write_failure

T = TypeVar("T")

SET_CACHE = 8  # decoded validator sets kept (by row height): the recent ones
ENCODE_MEMO = 16  # blocks and commits whose encodings are remembered (process-wide)

_memo: collections.OrderedDict[int, tuple[object, bytes]] = collections.OrderedDict()
_priorities: collections.OrderedDict[tuple[int, ...], bytes] = collections.OrderedDict()


def _encode_priorities(priorities: tuple[int, ...]) -> bytes:
    """``wire.encode(priorities)``, remembered by value for the last ``ENCODE_MEMO``."""
    data = _priorities.get(priorities)
    if data is None:
        data = _priorities[priorities] = wire.encode(priorities)
        if len(_priorities) > ENCODE_MEMO:
            _priorities.popitem(last=False)
    return data


def encoded(value: Block | Commit) -> bytes:
    """``wire.encode(value)``, remembered for the last ``ENCODE_MEMO`` objects."""
    hit = _memo.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    data = wire.encode(value)
    _memo[id(value)] = (value, data)
    if len(_memo) > ENCODE_MEMO:
        _memo.popitem(last=False)
    return data

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (height INTEGER PRIMARY KEY, hash BLOB NOT NULL,
                                   data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS commits (height INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS valsets (height INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (hash BLOB PRIMARY KEY, height INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
"""


_STATE_FIELDS = tuple(f.name for f in attrs.fields(ChainState))
_SET_FIELDS = tuple(f.name for f in attrs.fields(ValidatorSet))


class BlockStore:
    def __init__(self, path: Path | None) -> None:
        self.where = ":memory:" if path is None else str(path)
        try:
            self._db = sqlite3.connect(self.where, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            row = self._db.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise StorageError(f"{self.where}: block store failed its integrity check "
                                   f"({row[0] if row else 'no answer'})")
            self._db.executescript(SCHEMA)
            rows = self._db.execute("SELECT height FROM valsets ORDER BY height").fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.where}: cannot open the block store ({exc})") from None
        self._set_heights: list[int] = [int(r[0]) for r in rows]  # the valsets rows, sorted
        self._sets: dict[int, ValidatorSet] = {}  # row height -> decoded set (SET_CACHE)
        self._encoded: dict[int, tuple[ValidatorSet, bytes]] = {}  # id -> (set, encoding)
        self._members: tuple[tuple[Validator, ...], bytes] | None = None  # last encoded

    # ------------------------------------------------------------ helpers

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.where}: block store read failed ({exc})") from None

    def _write(self, statements: list[tuple[str, tuple[object, ...]]]) -> None:
        if len(statements) == 1:  # autocommit: SQLite makes one statement one transaction
            try:
                self._db.execute(*statements[0])
            except sqlite3.Error as exc:
                raise StorageError(write_failure(self.where, exc)) from None
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._db.execute(sql, args)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:  # a failed COMMIT keeps the transaction open
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise StorageError(write_failure(self.where, exc)) from None

    def _decode(self, data: Any, cls: type[T], what: str) -> T:
        try:
            return wire.decode(bytes(data), cls)
        except (DecodeError, TypeError) as exc:
            raise StorageError(f"{self.where}: corrupted {what} ({exc}); the block store "
                               "cannot be trusted, stop and resync") from None

    # ------------------------------------------------------------ blocks

    def save_block(self, block: Block, commit: Commit) -> None:
        """Store ``block`` and its commit (one transaction)."""
        if commit.height != block.height or commit.block_hash != block.hash():
            raise StorageError(f"refusing to store block {block.height} with a commit for "
                               "another block")
        h = block.height
        self._write([
            ("INSERT OR REPLACE INTO blocks (height, hash, data) VALUES (?, ?, ?)",
             (h, block.hash(), encoded(block))),
            ("INSERT OR REPLACE INTO commits (height, data) VALUES (?, ?)",
             (h, encoded(commit))),
            *[("INSERT OR IGNORE INTO evidence (hash, height) VALUES (?, ?)",
               (wire.digest(ev), h)) for ev in block.evidence],
        ])

    def save_commit(self, commit: Commit) -> None:
        """Replace the stored commit of a stored block (e.g. with more precommits)."""
        stored = self.block_hash(commit.height)
        if stored != commit.block_hash:
            raise StorageError(f"refusing a commit for height {commit.height}: not for the "
                               "stored block")
        self._write([("INSERT OR REPLACE INTO commits (height, data) VALUES (?, ?)",
                      (commit.height, encoded(commit)))])

    def height(self) -> int:
        """The highest stored block (0: none)."""
        rows = self._query("SELECT MAX(height) FROM blocks")
        value = rows[0][0] if rows else None
        return int(value) if isinstance(value, int) else 0

    def base(self) -> int:
        rows = self._query("SELECT MIN(height) FROM blocks")
        value = rows[0][0] if rows else None
        return int(value) if isinstance(value, int) else 0

    def block_hash(self, height: int) -> bytes | None:
        rows = self._query("SELECT hash FROM blocks WHERE height = ?", (height,))
        return bytes(rows[0][0]) if rows else None

    def block(self, height: int) -> Block | None:
        rows = self._query("SELECT hash, data FROM blocks WHERE height = ?", (height,))
        if not rows:
            return None
        stored_hash, data = rows[0]
        block = self._decode(data, Block, f"block {height}")
        if block.height != height or block.hash() != stored_hash:
            raise StorageError(f"{self.where}: block {height} does not match its stored hash; "
                               "the block store is corrupted, stop and resync")
        return block

    def commit(self, height: int) -> Commit | None:
        rows = self._query("SELECT data FROM commits WHERE height = ?", (height,))
        if not rows:
            return None
        commit = self._decode(rows[0][0], Commit, f"commit {height}")
        if commit.height != height:
            raise StorageError(f"{self.where}: commit row {height} holds height {commit.height}")
        return commit

    def has_evidence(self, evidence_hash: bytes) -> bool:
        return bool(self._query("SELECT 1 FROM evidence WHERE hash = ?", (evidence_hash,)))

    # ------------------------------------------------------------ state

    def state(self) -> ChainState | None:
        rows = self._query("SELECT data FROM state WHERE id = 1")
        return self._decode(rows[0][0], ChainState, "chain state") if rows else None

    def save_state(self, state: ChainState) -> None:
        """Persist the state row and the validator sets it introduces (one transaction)."""
        row, cache, current_set, next_set = self._encode_state(state)
        statements: list[tuple[str, tuple[object, ...]]] = [
            ("INSERT OR REPLACE INTO state (id, data) VALUES (1, ?)", (row,))]
        new: list[tuple[int, ValidatorSet]] = []
        sets = [(state.height + 1, state.validators, current_set),
                (state.height + 2, state.next_validators, next_set)]
        for height, vs, data in sets:
            current = self.validator_set(height)
            if current is None or current.hash() != vs.hash():
                statements.append(("INSERT OR REPLACE INTO valsets (height, data) VALUES (?, ?)",
                                   (height, data)))
                new.append((height, vs))
        self._write(statements)
        for height, vs in new:
            i = bisect.bisect_left(self._set_heights, height)
            if i == len(self._set_heights) or self._set_heights[i] != height:
                self._set_heights.insert(i, height)
            self._remember_set(height, vs)
        self._encoded = cache

    def _encode_state(self, state: ChainState
                      ) -> tuple[bytes, dict[int, tuple[ValidatorSet, bytes]], bytes, bytes]:
        """``wire.encode(state)`` from the fields' encodings, reusing the encodings of the
        sets the last saved state held; also the new set cache and the two sets' bytes."""
        cache: dict[int, tuple[ValidatorSet, bytes]] = {}
        parts: list[bytes] = []
        for name in _STATE_FIELDS:
            value = getattr(state, name)
            if type(value) is not ValidatorSet:
                parts.append(wire.encode(value))
                continue
            known = self._encoded.get(id(value)) or cache.get(id(value))
            data = known[1] if known is not None and known[0] is value else self._encode_set(
                value)
            cache[id(value)] = (value, data)
            parts.append(data)
        head = (wire.cbor_head(6, wire.TAG_BASE + wire.tag_of(ChainState))
                + wire.cbor_head(4, len(parts)))
        sets = _STATE_FIELDS.index("validators"), _STATE_FIELDS.index("next_validators")
        return head + b"".join(parts), cache, parts[sets[0]], parts[sets[1]]

    def _encode_set(self, vs: ValidatorSet) -> bytes:
        """``wire.encode(vs)``, reusing the members' encoding when the membership equals
        the last encoded set's (most blocks: only the priorities and proposer move)."""
        members = self._members
        if members is None or members[0] != vs.validators:
            members = self._members = (vs.validators, wire.encode(vs.validators))
        parts = [members[1] if name == "validators" else _encode_priorities(vs.priorities)
                 if name == "priorities" else wire.encode(getattr(vs, name))
                 for name in _SET_FIELDS]
        head = (wire.cbor_head(6, wire.TAG_BASE + wire.tag_of(ValidatorSet))
                + wire.cbor_head(4, len(parts)))
        return head + b"".join(parts)

    def _remember_set(self, height: int, vs: ValidatorSet) -> None:
        self._sets[height] = vs
        if len(self._sets) > SET_CACHE:
            del self._sets[min(self._sets)]

    def validator_set(self, height: int) -> ValidatorSet | None:
        """The validator set (membership and power) that signed ``height``."""
        i = bisect.bisect_right(self._set_heights, height)
        if i == 0:
            return None
        row = self._set_heights[i - 1]
        cached = self._sets.get(row)
        if cached is not None:
            return cached
        rows = self._query("SELECT data FROM valsets WHERE height = ?", (row,))
        if not rows:
            raise StorageError(f"{self.where}: validator set row {row} disappeared; the block "
                               "store is corrupted, stop and resync")
        vs = self._decode(rows[0][0], ValidatorSet, f"validator set {height}")
        self._remember_set(row, vs)
        return vs

    def get_meta(self, key: str) -> bytes | None:
        rows = self._query("SELECT v FROM meta WHERE k = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: bytes) -> None:
        self._write([("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))])

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
