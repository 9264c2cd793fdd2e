"""Exponential backoff with jitter for redialling peers (sans-IO).

Rules: the n-th retry (n = 0, 1, ...) waits ``d * (1 + jitter * u)`` seconds, where
``d = min(base * 2**n, cap)`` and ``u`` is uniform in [-1, 1) from the injected RNG; so
every delay lies in ``[d * (1 - jitter), d * (1 + jitter)]``. A ``Retry`` remembers the
attempt count and when the next try is due; a success forgets it (the caller drops it).
"""

from __future__ import annotations

from random import Random

import attrs

_MAX_EXPONENT = 62  # 2**62 dwarfs any sensible cap; keeps the float conversion finite


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: float, rng: Random) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
    if attempt < 0:
        raise ValueError(f"backoff attempt must be >= 0, got {attempt}")
    nominal = min(base * float(2 ** min(attempt, _MAX_EXPONENT)), cap)
    return nominal * (1.0 + jitter * (2.0 * rng.random() - 1.0))


@attrs.define
class Retry:
    """Backoff state of one dial target: failed ``attempts`` so far, next try ``due``."""

    attempts: int = 0
    due: float = 0.0

    def fail(self, now: float, *, base: float, cap: float, jitter: float, rng: Random) -> float:
        """Record a failure at ``now``; returns the delay until the next try."""
        delay = backoff_delay(self.attempts, base=base, cap=cap, jitter=jitter, rng=rng)
        self.attempts += 1
        self.due = now + delay
        return delay
