"""Durable file writes.

Rule: ``write_atomic`` leaves ``path`` holding either its old or its new content, never a
mix, and the new content survives a crash once it returns: write a temporary file beside
it, fsync it, rename it over ``path``, fsync the directory. A failure removes the temporary
file and raises OSError for the caller to turn into its own message.

Rule: ``write_failure(path, exc)`` is that message for every store of the node (block store,
ledger, WAL, signing guard): ``disk full writing PATH: ERROR`` when the disk or quota is full
(ENOSPC, EDQUOT, SQLite's SQLITE_FULL), else ``cannot write PATH: ERROR``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from pathlib import Path

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def write_failure(path: object, exc: BaseException) -> str:
    """One line naming the file and the error of a failed write (see the module rules)."""
    full = (isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS) or (
        isinstance(exc, sqlite3.Error)
        and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL)
    return f"{'disk full writing' if full else 'cannot write'} {path}: {exc}"


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
