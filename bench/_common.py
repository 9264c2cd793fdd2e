"""Helpers shared by the benchmark scripts (run as ``python bench/NAME.py``: this folder is
then ``sys.path[0]``, so ``from _common import ...`` works). Benchmark code only: never a
test, never imported by the package."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

import trio


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound together, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


async def wait_until(cond: Callable[[], bool], limit: float, step: float = 0.01) -> bool:
    """Poll ``cond`` every ``step`` seconds for at most ``limit`` seconds; its last value."""
    with trio.move_on_after(limit):
        while not cond():  # noqa: ASYNC110 - bounded by move_on_after
            await trio.sleep(step)
    return cond()
