"""Running trio deterministically: virtual time plus trio's deterministic-scheduling hook.

What trio 0.35 does (``trio/_core/_run.py``, checked against the installed source):
* Each scheduler pass takes the whole run queue as one batch. Normally the batch is
  reversed with probability 1/2 (``_r.random()``), so task order varies run to run.
* With the private flag ``_ALLOW_DETERMINISTIC_SCHEDULING`` (what Hypothesis's trio plugin
  flips) the batch is sorted by ``Task._counter`` (creation order, a process-wide counter:
  only the relative order matters) and then shuffled with the module's ``_r``. Seeding
  ``_r`` makes every batch order a function of the seed.
* Trio's own comment names the remaining sources: the deadline tie-breaker (the deadline
  heap orders equal deadlines by ``id(cancel_scope)``, a memory address) and the order of
  ``task._notify_queues``. Both only decide the order in which tasks are *put on* the run
  queue within one pass; the sort by creation order above erases that order before the
  batch runs. Side effects of the abort callbacks in between (removing a task from a
  parking lot or a channel's wait queue) commute, so they do not leak through either.
* ``SystemClock`` draws its offset from ``_r``; we never use it: ``EventClock`` starts at 0.

What ``deterministic_run`` guarantees, given the same code and the same inputs:
* Virtual time: ``gossip.memory_clock.EventClock``: time only moves when every task waits,
  and then jumps exactly to the next event, the in-memory network's next frame (delivered
  from the clock's idle hook: no timer per frame) or trio's next deadline.
* Scheduling: the hook above with ``_r`` seeded from ``seed``; both the flag and ``_r``'s
  state are restored afterwards, so other trio runs in the process are unaffected.
* Everything else must come from our side: every random choice from a ``random.Random``
  derived with ``derive(seed, label)``, no wall clock in anything that decides, and no
  iteration over sets of ``str``/``bytes`` whose order feeds a decision (Python salts those
  hashes per process). Measured: the same scenario and seed give the same blocks and the
  same report under PYTHONHASHSEED=1, 2, 3 and unset (tests/sim/test_determinism.py runs two
  processes with different hash seeds).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import trio
from trio._core import _run as trio_run

from p2pakash.gossip.memory_clock import EventClock

T = TypeVar("T")


def derive(seed: int, label: str) -> int:
    """A 64-bit sub-seed for ``label``: independent streams that do not shift each other."""
    digest = hashlib.sha256(f"p2pakash-sim/{seed}/{label}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def rng_for(seed: int, label: str) -> random.Random:
    return random.Random(derive(seed, label))


@contextlib.contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    """Flip trio's deterministic-scheduling hook and seed its ``_r`` for the duration."""
    module: Any = trio_run
    old_flag = module._ALLOW_DETERMINISTIC_SCHEDULING
    old_state = module._r.getstate()
    module._ALLOW_DETERMINISTIC_SCHEDULING = True
    module._r.seed(derive(seed, "trio-scheduler"))
    try:
        yield
    finally:
        module._ALLOW_DETERMINISTIC_SCHEDULING = old_flag
        module._r.setstate(old_state)


@contextlib.contextmanager
def inline_threads() -> Iterator[None]:
    """``trio.to_thread.run_sync`` calls the function on the trio thread, after a checkpoint.

    A real worker thread would let the virtual clock move by however much
    it likes while the thread runs, and finish at a wall-clock-dependent point: neither
    deterministic nor meaningful. The provider's pricing and plugin notifications are the
    callers; the function's result or exception is returned or raised as by the original.
    """
    module: Any = trio.to_thread
    original = module.run_sync

    async def run_sync(sync_fn: Callable[..., T], *args: object, **_options: object) -> T:
        await trio.lowlevel.checkpoint()
        return sync_fn(*args)

    module.run_sync = run_sync
    try:
        yield
    finally:
        module.run_sync = original


def deterministic_run(fn: Callable[[], Awaitable[T]], *, seed: int) -> T:
    """``trio.run(fn)`` on virtual time with seeded, creation-ordered scheduling and worker
    threads run inline."""
    clock = EventClock()

    async def main() -> T:
        return await fn()

    with deterministic_scheduling(seed), inline_threads():
        return trio.run(main, clock=clock)


__all__ = ["derive", "deterministic_run", "deterministic_scheduling", "inline_threads",
           "rng_for"]
