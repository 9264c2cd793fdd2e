"""The consensus write-ahead log: every input of the current height, replayed on restart.

Rules and invariants (CometBFT consensus/wal.go, reference §A4):
* One file per height, ``<dir>/<height 020d>.wal``; a record is
  ``crc32(payload) u32 BE | len(payload) u32 BE | payload`` where the payload is the wire
  encoding of a registered message (a core event, or ``EndHeight``).
* ``write(msg, sync=True)`` (the node's own signed messages) flushes and fsyncs before it
  returns, so the message is on disk before it is broadcast; ``sync=False`` writes are
  buffered and reach the OS at ``flush()`` (the driver flushes whenever its inbox runs
  dry). ``end_height(h)`` appends ``EndHeight(h)``, fsyncs, closes the file and deletes
  all but the last ``keep`` files (rotation per height).
* Reading (``open_height``): a torn tail — a header or payload cut short by the end of
  the file, or a bad last record that ends exactly at the end of the file — is truncated
  with a warning (a crash mid-write). A bad checksum, oversize length or undecodable
  payload with more data after it is corruption earlier in the file: StorageError naming
  the file and offset; the node stops (delete the file to resync from peers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from p2pakash import wire
from p2pakash.consensus.messages import EndHeight
from p2pakash.errors import DecodeError, StorageError
from p2pakash.faults import crash_point
from p2pakash.fsutil import write_failure

log = logging.getLogger(__name__)

HEADER = struct.Struct(">II")
MAX_RECORD = wire.MAX_MESSAGE_SIZE
DEFAULT_KEEP = 3


def encode_record(msg: object) -> bytes:
    payload = wire.encode(msg)
    return HEADER.pack(zlib.crc32(payload), len(payload)) + payload


def read_records(path: Path, *, repair: bool = True) -> list[object]:
    """Decode every record of ``path``; truncate a torn tail (if ``repair``)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the WAL ({exc})") from None
    out: list[object] = []
    pos = 0
    while pos < len(data):
        problem = ""
        end = pos + HEADER.size
        if end > len(data):
            problem = "record header cut short"
        else:
            crc, size = HEADER.unpack_from(data, pos)
            if end + size > len(data):
                problem = "record payload cut short"
            elif size > MAX_RECORD:
                problem = f"record length {size} exceeds {MAX_RECORD}"
            else:
                payload = data[end:end + size]
                if zlib.crc32(payload) != crc:
                    problem = "checksum mismatch"
                else:
                    try:
                        out.append(wire.decode(payload, object))
                    except DecodeError as exc:
                        problem = f"undecodable record ({exc})"
                end += size
        if not problem:
            pos = end
            continue
        if "cut short" not in problem and end < len(data):
            raise StorageError(f"{path}: WAL corrupted at byte {pos}: {problem}, with "
                               f"{len(data) - end} bytes after it; remove the file to resync "
                               "the height from peers")
        log.warning("%s: truncating a torn WAL tail at byte %d (%s, %d bytes dropped)",
                    path, pos, problem, len(data) - pos)
        if repair:
            try:
                with path.open("r+b") as f:
                    f.truncate(pos)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                raise StorageError(f"{path}: cannot truncate the WAL ({exc})") from None
        break
    return out


class WAL:
    """The WAL of one node (see the module rules)."""

    def __init__(self, directory: Path, *, keep: int = DEFAULT_KEEP) -> None:
        self.directory = directory
        self.keep = max(1, keep)
        self.height = 0
        self._file: BinaryIO | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{directory}: cannot create the WAL directory ({exc})") from None

    def path_for(self, height: int) -> Path:
        return self.directory / f"{height:020d}.wal"

    def open_height(self, height: int) -> list[object]:
        """Start (or resume) ``height``: return its records for replay, open it for append."""
        self.close()
        path = self.path_for(height)
        records = read_records(path)
        try:
            self._file = path.open("ab")
        except OSError as exc:
            raise StorageError(f"{path}: cannot open the WAL ({exc})") from None
        self.height = height
        return records

    def write(self, msg: object, *, sync: bool = False) -> None:
        f = self._file
        if f is None:
            raise StorageError("WAL write before open_height")
        try:
            f.write(encode_record(msg))
            if sync:
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            self._drop()
            raise StorageError(write_failure(self.path_for(self.height), exc)) from None
        crash_point("wal_write_after")

    def flush(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self._drop()
                raise StorageError(write_failure(self.path_for(self.height), exc)) from None

    def end_height(self, height: int) -> None:
        """Mark ``height`` done (fsynced), close its file and rotate old files away."""
        if self._file is not None and self.height == height:
            self.write(EndHeight(height=height), sync=True)
            self.close()
        files = sorted(self.directory.glob("*.wal"))
        for old in files[:-self.keep]:
            try:
                old.unlink()
            except OSError as exc:
                log.warning("cannot remove old WAL file %s: %s", old, exc)

    def _drop(self) -> None:
        """Close after a failed write, dropping what is still buffered: a later flush (at
        close or exit) would only fail again; the torn tail is cut on the next read."""
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()  # the flush fails again, the descriptor is closed all the same

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                self._file.close()
            finally:
                self._file = None
