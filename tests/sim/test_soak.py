"""A short soak (10 virtual minutes of a small market, storage on disk) with the sampler of
``bench/soak.py``: every node collection plateaus or stays under its declared cap, the
consensus WAL keeps at most a few files per node, and no invariant is violated. The
24-hour run is ``bench/soak.py simulations/soak-24h.toml`` (docs/reliability.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from p2pakash.consensus.wal import DEFAULT_KEEP
from p2pakash.sim.scenario import load_scenario, scenario_data, structure_scenario

ROOT = Path(__file__).resolve().parents[2]


def _soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak_bench", ROOT / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("soak_bench", module)
    spec.loader.exec_module(module)
    return module


def test_short_soak_collections_plateau() -> None:
    soak = _soak()
    data = scenario_data(load_scenario(ROOT / "simulations" / "soak-24h.toml"))
    data.update(name="soak-short", duration=600.0, wall_limit=300.0, faults=[])
    data["providers"] = {**data["providers"], "count": 1}
    data["tenants"] = {**data["tenants"], "count": 1, "arrival_rate": 0.02,
                       "lease_seconds": 120.0}
    data["workload"] = {**data["workload"], "transfer_rate": 0.2}
    scenario = structure_scenario(data, source="test")
    result, sampler = soak.run(scenario, every=60.0, verify_cache=1_000, mempool_cache=50)
    rows = sampler.rows
    assert result.stopped_by == "until"
    assert result.checker is not None and not result.checker.violations
    assert len(rows) == 10 and rows[-1]["height"] > 40  # 12 s blocks
    assert rows[-1]["deploys"] >= 5  # the market ran: deploys opened and closed
    flat, reasons, _notes = soak.verdict(rows, sampler.caps, rss_tolerance=1.0)
    assert flat, reasons
    assert rows[-1]["sizes"]["VerifyCache._seen"] <= 1_000  # a cap reached holds
    assert max(r["sizes"]["WAL files per node"] for r in rows) <= DEFAULT_KEEP + 1
