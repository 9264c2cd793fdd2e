"""The key-value interface the ledger runs on, an in-memory store and a write overlay.

Rules and invariants:
* Keys and values are bytes. ``iterate(prefix)`` yields (key, value) pairs in ascending
  byte order of the key — the ledger relies on that order for determinism.
* Writes (``set``/``delete``) become durable only at ``commit()``, which is atomic: after a
  crash a store shows either all writes of a commit or none. ``MemoryKV`` has nothing to
  lose, so its commit does nothing.
* ``Overlay`` buffers writes on top of a parent KV without touching it: reads see the
  buffered writes first; ``flush()`` pushes them into the parent (without committing the
  parent); dropping an overlay discards them. The ledger uses one overlay per block, one
  per transaction (so a failed transaction leaves no trace) and one per mempool copy.
* An overlay may hold a *record* (``set_record``: an immutable value and its encoder)
  instead of bytes: it is encoded only when bytes are asked for (``get``, ``iterate``,
  ``sorted_writes``, a flush into a non-overlay parent), once, and ``lookup`` hands the
  value itself to a typed reader. Flushing into another overlay moves records as they are,
  so a block's many writes of one account are encoded once, and a mempool copy's never.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Protocol


class KV(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def set(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...

    def commit(self) -> None: ...


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    raw = bytearray(prefix)
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return None


class MemoryKV:
    """A dict plus a sorted key list; for tests and simulations."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        if key not in self._data:
            bisect.insort(self._keys, key)
        self._data[key] = bytes(value)

    def delete(self, key: bytes) -> None:
        if self._data.pop(key, None) is not None:
            del self._keys[bisect.bisect_left(self._keys, key)]

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        end = prefix_end(prefix)
        lo = bisect.bisect_left(self._keys, prefix)
        hi = len(self._keys) if end is None else bisect.bisect_left(self._keys, end)
        for key in self._keys[lo:hi]:  # a copy: writes while iterating are safe
            yield key, self._data[key]

    def commit(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._data)


class Record:
    """A value waiting in an overlay, encoded on first need."""

    __slots__ = ("_raw", "encode", "value")

    def __init__(self, value: object, encode: Callable[[object], bytes]) -> None:
        self.value = value
        self.encode = encode
        self._raw: bytes | None = None

    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = self.encode(self.value)
        return self._raw


Entry = bytes | Record | None


def _raw(entry: Entry) -> bytes | None:
    return entry.raw() if type(entry) is Record else entry  # type: ignore[return-value]


class Overlay:
    """Buffered writes over a parent KV (None in ``writes`` marks a deletion)."""

    def __init__(self, parent: KV) -> None:
        self.parent = parent
        self.writes: dict[bytes, Entry] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return _raw(self.writes[key])
        return self.parent.get(key)

    def lookup(self, key: bytes) -> Entry:
        """The entry for ``key`` through this overlay and overlay parents: a Record as it
        was set, else the bytes (None: absent)."""
        overlay = self
        while True:
            writes = overlay.writes
            if key in writes:
                return writes[key]
            parent = overlay.parent
            if type(parent) is not Overlay:
                return parent.get(key)
            overlay = parent

    def set(self, key: bytes, value: bytes) -> None:
        self.writes[key] = bytes(value)

    def set_record(self, key: bytes, value: object, encode: Callable[[object], bytes]) -> None:
        self.writes[key] = Record(value, encode)

    def delete(self, key: bytes) -> None:
        self.writes[key] = None

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        mine = sorted((k, _raw(v)) for k, v in self.writes.items() if k.startswith(prefix))
        base = self.parent.iterate(prefix)
        i = 0
        nxt = next(base, None)
        while nxt is not None or i < len(mine):
            if nxt is not None and (i >= len(mine) or nxt[0] < mine[i][0]):
                if nxt[0] not in self.writes:
                    yield nxt
                nxt = next(base, None)
                continue
            key, value = mine[i]
            i += 1
            if nxt is not None and nxt[0] == key:
                nxt = next(base, None)
            if value is not None:
                yield key, value

    def sorted_writes(self) -> list[tuple[bytes, bytes | None]]:
        return [(k, _raw(v)) for k, v in sorted(self.writes.items(), key=_first)]

    def flush(self) -> None:
        """Push the buffered writes into the parent (in key order) and forget them."""
        parent = self.parent
        if type(parent) is Overlay:
            parent.writes.update(self.writes)  # entries as they are: records stay lazy
        else:
            writes = self.sorted_writes()
            write_many = getattr(parent, "write_many", None)
            if write_many is not None:  # a store that takes a batch (SqliteKV)
                write_many(writes)
            else:
                for key, value in writes:
                    if value is None:
                        parent.delete(key)
                    else:
                        parent.set(key, value)
        self.writes.clear()

    def commit(self) -> None:
        """An overlay's commit is a flush: durability belongs to the store underneath."""
        self.flush()


def _first(item: tuple[bytes, Entry]) -> bytes:
    return item[0]
