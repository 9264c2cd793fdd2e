"""Fuzz tests: hypothesis profiles are registered in ``support`` (``fuzz-short`` by default,
``fuzz`` when ``HYPOTHESIS_PROFILE=fuzz``); see docs/reliability.md, "Fuzzing"."""

from __future__ import annotations

from tests.fuzz.support import load_all_modules

load_all_modules()
