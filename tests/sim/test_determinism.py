"""Determinism: one scenario and seed give the same blocks and report, run after run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from p2pakash.sim import report
from p2pakash.sim.determinism import deterministic_run, deterministic_scheduling
from p2pakash.sim.runner import run
from tests.sim.conftest import small

ROOT = Path(__file__).resolve().parents[2]


def _view(seed: int, **over: object) -> dict[str, Any]:
    return report.deterministic_view(report.build_report(run(small(**over), seed=seed)))


def test_same_seed_same_report_different_seed_differs() -> None:
    faults = [{"kind": "crash", "node": "v3", "at": 4.0, "until": 8.0},
              {"kind": "clock_skew", "node": "f0", "at": 2.0, "skew_ms": 25}]
    a = _view(5, faults=faults)
    b = _view(5, faults=faults)
    c = _view(6, faults=faults)
    assert a["final_block_hash"] and a["final_height"] >= 8
    assert a == b
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert c["final_block_hash"] != a["final_block_hash"]


MARKET = {"providers": {"count": 2, "price_spread": 0.2,
                        "gpus": [{"model": "rtx4090", "count": 2}, {"model": "a100",
                                                                     "ram": "80Gi"}]},
          "tenants": {"count": 2, "arrival_rate": 0.4, "start": 1.0, "wait": 2.0,
                      "lease_seconds": 4.0, "sdl_dir": str(ROOT / "simulations" / "sdl")}}


def test_market_same_seed_same_report_different_seed_differs() -> None:
    faults = [{"kind": "crash", "node": "p1", "at": 6.0, "until": 9.0},
              {"kind": "containers_die", "node": "p0", "at": 8.0, "until": 10.0}]
    a = _view(7, duration=16.0, faults=faults, **MARKET)
    b = _view(7, duration=16.0, faults=faults, **MARKET)
    c = _view(8, duration=16.0, faults=faults, **MARKET)
    assert a["market"]["deployments"] >= 4 and a["market"]["outcomes"].get("leased", 0) >= 2
    assert a == b
    assert c["final_block_hash"] != a["final_block_hash"] and c["market"] != a["market"]


def test_same_report_in_another_process_with_another_hash_seed(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nduration = 12.0\n[chain]\ncommit = 0.5\n[full_nodes]\n'
                    'count = 1\n[workload]\naccounts = 3\ntransfer_rate = 2.0\n'
                    '[network]\njitter = 0.3\nlatency_ms = 8.0\n'
                    '[providers]\ncount = 1\n[[providers.gpus]]\nmodel = "h100"\n'
                    'ram = "80Gi"\ninterface = "sxm"\ncount = 2\n[providers.node]\ncpu = 64.0\n'
                    'memory = "512Gi"\n[tenants]\ncount = 1\narrival_rate = 0.5\n'
                    'start = 3.0\nwait = 2.0\nsdl_dir = "' + str(ROOT / "simulations" / "sdl")
                    + '"\n')
    reports = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"out{hash_seed}"
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run([sys.executable, "-m", "p2pakash", "sim", "run", str(path),
                               "--out", str(out), "--quiet", "--no-plots"], env=env,
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        reports.append(report.deterministic_view(json.loads((out / "report.json").read_text())))
    assert reports[0] == reports[1]
    assert reports[0]["final_height"] >= 5
    assert reports[0]["market"]["outcomes"].get("leased", 0) >= 1


def test_scheduling_hook_is_restored_and_orders_tasks_by_seed() -> None:
    from trio._core import _run as trio_run

    def order(seed: int) -> list[int]:
        seen: list[int] = []

        async def main() -> None:
            async def task(i: int) -> None:
                for _ in range(3):
                    await trio.lowlevel.checkpoint()
                    seen.append(i)

            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(task, i)

        deterministic_run(main, seed=seed)
        return seen

    before = trio_run._ALLOW_DETERMINISTIC_SCHEDULING  # Hypothesis's plugin may have set it
    state = trio_run._r.getstate()
    assert order(1) == order(1)
    assert order(1) != order(2)
    assert trio_run._ALLOW_DETERMINISTIC_SCHEDULING is before
    with deterministic_scheduling(3):
        assert trio_run._ALLOW_DETERMINISTIC_SCHEDULING is True
    assert trio_run._ALLOW_DETERMINISTIC_SCHEDULING is before
    assert trio_run._r.getstate() == state
