"""Shared pieces of the fuzz tests: settings per profile, the only-our-errors check, memory.

Rules:
* ``fuzz_settings(n)`` gives ``n`` examples per test in the short profile (the default, run by
  ``make test``: derandomized, no example database, so a run is deterministic) and
  ``n * FUZZ_SCALE`` in the long profile (``HYPOTHESIS_PROFILE=fuzz``, run by ``make fuzz``:
  random seeds, database on so a failure found once is replayed). Every example has a
  deadline (``DEADLINE_MS``): a decoder that hangs or goes quadratic fails the test.
* ``only_ours(fn, *args, allowed=...)`` calls a parser and returns its value, or None when it
  raised an allowed error (by default ``P2PAkashError``). Any other exception propagates and
  fails the test: that is the property every fuzz test checks.
* ``bounded_memory(limit)`` measures the traced peak of the block (tracemalloc) and fails
  when it is over ``limit`` bytes: a huge *declared* length must not become an allocation.
* ``load_all_modules()`` imports every ``p2pakash`` module so the wire tag registry holds
  every message class (new classes are fuzzed without touching these tests).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

import p2pakash
from p2pakash.errors import P2PAkashError

T = TypeVar("T")

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz-short")
LONG = PROFILE == "fuzz"
FUZZ_SCALE = int(os.environ.get("FUZZ_SCALE", "50"))
DEADLINE_MS = 500

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
             HealthCheck.function_scoped_fixture]

settings.register_profile("fuzz-short", deadline=timedelta(milliseconds=DEADLINE_MS),
                          derandomize=True, database=None, suppress_health_check=_SUPPRESS,
                          print_blob=True)
settings.register_profile("fuzz", deadline=timedelta(milliseconds=DEADLINE_MS),
                          suppress_health_check=_SUPPRESS, print_blob=True)


def fuzz_settings(examples: int, **overrides: Any) -> settings:
    """Settings of the selected profile with ``examples`` (scaled up in the long profile)."""
    parent = settings.get_profile("fuzz" if LONG else "fuzz-short")
    count = examples * FUZZ_SCALE if LONG else examples
    return settings(parent, max_examples=count, **overrides)


def only_ours(fn: Callable[..., T], *args: Any,
              allowed: tuple[type[BaseException], ...] = (P2PAkashError,),
              **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)``, or None when it raised one of ``allowed``; else it propagates."""
    try:
        return fn(*args, **kwargs)
    except allowed as exc:
        assert str(exc), f"{type(exc).__name__} without a message"
        return None


@contextlib.contextmanager
def bounded_memory(limit: int) -> Iterator[None]:
    """Fail when the block's traced allocation peak exceeds ``limit`` bytes."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1] - base
        if not was_tracing:
            tracemalloc.stop()
    assert peak <= limit, f"allocation peak {peak} bytes exceeds {limit}"


_LOADED = False


def load_all_modules() -> None:
    """Import every p2pakash module (registers every wire message class)."""
    global _LOADED
    if _LOADED:
        return
    for info in pkgutil.walk_packages(p2pakash.__path__, "p2pakash."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    _LOADED = True
