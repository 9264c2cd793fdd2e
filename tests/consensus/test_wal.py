"""The consensus WAL: records, fsync of own messages, torn tails, corruption, rotation."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from p2pakash.consensus.core import TimeoutEvent, TimeoutKind, VoteEvent
from p2pakash.consensus.messages import EndHeight
from p2pakash.consensus.types import VoteType
from p2pakash.consensus.wal import HEADER, WAL, encode_record, read_records
from p2pakash.errors import StorageError
from tests.consensus import KEYS, vote


def events(n: int) -> list[object]:
    out: list[object] = []
    for i in range(n):
        out.append(VoteEvent(vote=vote(KEYS[i % 4], VoteType.PREVOTE, 3, i, bytes([i]) * 32)))
        out.append(TimeoutEvent(kind=TimeoutKind.PROPOSE, height=3, round=i))
    return out


def written(tmp_path: Path, records: list[object]) -> Path:
    wal = WAL(tmp_path)
    wal.open_height(3)
    for r in records:
        wal.write(r)
    wal.close()
    return wal.path_for(3)


def test_round_trip_and_resume(tmp_path: Path) -> None:
    recs = events(5)
    path = written(tmp_path, recs)
    wal = WAL(tmp_path)
    assert wal.open_height(3) == recs
    wal.write(EndHeight(height=3), sync=True)
    wal.close()
    assert read_records(path) == [*recs, EndHeight(height=3)]


def test_own_messages_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    wal = WAL(tmp_path)
    wal.open_height(1)
    wal.write(events(1)[0])
    assert calls == []  # others: buffered
    wal.write(events(1)[1], sync=True)
    assert len(calls) == 1
    assert len(read_records(wal.path_for(1))) == 2  # on disk before write() returned


@pytest.mark.parametrize("cut", [1, 5, HEADER.size, HEADER.size + 3])
def test_torn_tail_is_truncated_with_a_warning(tmp_path: Path, cut: int,
                                               caplog: pytest.LogCaptureFixture) -> None:
    recs = events(3)
    path = written(tmp_path, recs)
    last = len(encode_record(recs[-1]))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - last + cut])
    with caplog.at_level(logging.WARNING):
        assert read_records(path) == recs[:-1]
    assert "truncating a torn WAL tail" in caplog.text
    assert path.stat().st_size == len(data) - last  # repaired on disk
    wal = WAL(tmp_path)
    assert wal.open_height(3) == recs[:-1]  # appending continues after the good records
    wal.write(recs[-1])
    wal.close()
    assert read_records(path) == recs


def test_bad_checksum_in_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    recs = events(2)
    path = written(tmp_path, recs)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert read_records(path) == recs[:-1]


def test_corruption_before_the_tail_is_a_storage_error(tmp_path: Path) -> None:
    recs = events(3)
    path = written(tmp_path, recs)
    data = bytearray(path.read_bytes())
    data[HEADER.size + 2] ^= 0xFF  # inside the first record's payload
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=r"WAL corrupted at byte 0: checksum mismatch"):
        read_records(path)
    assert path.read_bytes() == bytes(data)  # nothing truncated


def test_rotation_keeps_the_last_files(tmp_path: Path) -> None:
    wal = WAL(tmp_path, keep=2)
    for h in range(1, 6):
        wal.open_height(h)
        wal.write(TimeoutEvent(kind=TimeoutKind.PREVOTE, height=h, round=0))
        wal.end_height(h)
    assert sorted(p.name for p in tmp_path.glob("*.wal")) == [
        wal.path_for(4).name, wal.path_for(5).name]
    assert read_records(wal.path_for(5))[-1] == EndHeight(height=5)


def test_write_before_open_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        WAL(tmp_path).write(EndHeight(height=1))
