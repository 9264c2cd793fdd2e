"""Fault injection for crash tests: ``crash_point(name)`` kills this process on cue.

Rules and invariants:
* Armed only by the environment variable ``P2PAKASH_CRASH_AT=<name>[:<n>]``, read once
  when this module is first imported: the ``n``-th call (default 1) of
  ``crash_point(name)`` in this process sends SIGKILL to the process itself — no
  ``finally``, no flush, no atexit, as when the process is killed from outside.
* ``name`` must be one of ``POINTS`` and ``n`` a positive integer; anything else is a
  ConfigError naming the variable, so a typo never yields a test that silently never
  crashes.
* Unset (the normal case), ``crash_point`` reads one module global and returns: it may sit
  on hot paths (every ledger write).
* ``hits()`` counts the calls seen for the armed point (for tests of this module).
"""

from __future__ import annotations

import os
import signal

from p2pakash.errors import ConfigError

ENV = "P2PAKASH_CRASH_AT"

POINTS = (
    "block_store_before",  # chain.finalize: before the block and commit are stored
    "block_store_after",  # chain.finalize: block stored, not yet applied to the ledger
    "ledger_apply_after",  # chain.finalize: ledger committed, chain state not persisted
    "state_persist_after",  # chain.finalize: chain state persisted, mempool not updated
    "guard_write_after",  # guard: signing state on disk, signature not yet returned
    "wal_write_after",  # wal: a record written (own messages fsynced), not yet broadcast
    "ledger_write",  # kv_sqlite: one write inside the open ledger transaction
)


def parse(value: str) -> tuple[str, int]:
    """``name[:n]`` -> (name, n); ConfigError naming ``ENV`` when malformed."""
    name, sep, count = value.strip().partition(":")
    if name not in POINTS:
        raise ConfigError(f"{ENV}={value!r}: unknown crash point {name!r} "
                          f"(known: {', '.join(POINTS)})")
    if not sep:
        return name, 1
    try:
        n = int(count)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{ENV}={value!r}: the count after ':' must be a positive integer")
    return name, n


_raw = os.environ.get(ENV, "")
_target: str | None
_target, _count = parse(_raw) if _raw else (None, 0)
_hits = 0


def crash_point(name: str) -> None:
    """SIGKILL this process if ``name`` is the armed point and this is its n-th call."""
    if _target is None or name != _target:
        return
    global _hits
    _hits += 1
    if _hits >= _count:
        os.kill(os.getpid(), signal.SIGKILL)


def armed(name: str) -> bool:
    """Whether ``name`` is the armed point (a batched write path then writes one by one,
    so the n-th write still dies at its own place)."""
    return _target == name


def hits() -> int:
    return _hits
