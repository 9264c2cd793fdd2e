#!/usr/bin/env python3
"""Simulator benchmark: wall seconds per block against the number of nodes, and speed-up.

Each size runs in its own child process (so ``ru_maxrss`` is that run's peak memory): a
network shaped like ``simulations/scale-1000.toml`` scaled to N nodes (10 % validators,
at least 4; of the rest 4/9 providers with GPUs and 5/9 tenants deploying), on the
simulator's in-memory network, under virtual time, with all invariants checked. The run
goes ``--warmup`` blocks, then ``--blocks`` more; we report the wall seconds per block
over the measured blocks (from wall-clock samples the runner's monitor takes every
virtual second), CPU seconds, the speed-up (virtual / wall) and the peak RSS.
``startup_wall``/``startup_cpu``: seconds until the first block is committed (building the
nodes, the connection and subscription exchange at virtual time 0, and block 1);
``wall_to_block_100``/``cpu_to_block_100``: seconds from the start until block 100 (the
issue's scale-1000 target), null when the run ends before it.

``--scenario FILE`` instead times one scenario file (``--until`` virtual seconds) and
prints its speed-up, e.g. ``simulations/quickstart.toml``: ``speedup`` is virtual / wall
seconds, ``cpu_speedup`` virtual / CPU seconds (the figure to compare on a shared machine),
with the load average at the end of the run.

Prints one JSON object per size and a table. Benchmark only: never a test. Every run is
bounded by ``--wall-limit`` (the runner stops cleanly and the row says so).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def shape(nodes: int) -> tuple[int, int, int]:
    validators = max(4, nodes // 10)
    rest = max(0, nodes - validators)
    providers = rest * 4 // 9
    return validators, providers, rest - providers


def scenario(nodes: int, *, warmup: int, blocks: int, wall_limit: float) -> dict[str, Any]:
    from p2pakash.sim.scenario import load_scenario, scenario_data

    base = scenario_data(load_scenario(ROOT / "simulations" / "scale-1000.toml"))
    v, p, t = shape(nodes)
    interval = base["chain"]["commit"] + 1.0  # a generous upper bound per block
    data = {**base, "name": f"bench-{nodes}", "duration": (warmup + blocks + 2) * interval,
            "wall_limit": wall_limit}
    data["validators"] = {**base["validators"], "count": v}
    data["providers"] = {**base["providers"], "count": p}
    data["tenants"] = {**base["tenants"], "count": t}
    return data


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    from p2pakash.sim.determinism import deterministic_run
    from p2pakash.sim.runner import Runner
    from p2pakash.sim.scenario import load_scenario, structure_scenario

    logging.getLogger("p2pakash").setLevel(logging.ERROR)
    if args.scenario:
        sc = load_scenario(Path(args.scenario))
        until = args.until or sc.duration
    else:
        sc = structure_scenario(scenario(args.one, warmup=args.warmup, blocks=args.blocks,
                                         wall_limit=args.wall_limit), source="bench")
        until = sc.duration
    samples: list[tuple[float, float, int, float]] = []  # wall, virtual, height, CPU
    start = time.monotonic()
    target = args.warmup + args.blocks

    def progress(runner: Runner) -> None:
        height = max((n.height for n in runner.nodes), default=0)
        samples.append((time.monotonic() - start, runner.result.virtual_seconds, height,
                        time.process_time()))
        if not args.scenario and height >= target and runner._stop is not None:
            runner._stop.set()  # enough blocks: stop early (the report would say "until")

    cpu0 = time.process_time()
    runner = Runner(sc, until=until, wall_limit=args.wall_limit or None, progress=progress)
    result = deterministic_run(runner.main, seed=runner.seed)
    wall = time.monotonic() - start
    cpu = time.process_time() - cpu0
    measured = [s for s in samples if s[2] >= args.warmup]
    per_block = cpu_per_block = 0.0
    if len(measured) >= 2 and measured[-1][2] > measured[0][2]:
        blocks = measured[-1][2] - measured[0][2]
        per_block = (measured[-1][0] - measured[0][0]) / blocks
        cpu_per_block = (measured[-1][3] - measured[0][3]) / blocks
    final = max(result.block_hashes, default=0)
    checker = result.checker
    return {
        "scenario": sc.name, "nodes": len(result.nodes), "validators": sc.validators.count,
        "providers": sc.providers.count, "tenants": sc.tenants.count,
        "virtual_seconds": round(result.virtual_seconds, 3), "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2), "speedup": round(result.virtual_seconds / wall, 1),
        "cpu_speedup": round(result.virtual_seconds / cpu, 1) if cpu > 0 else 0.0,
        "load_average": round(os.getloadavg()[0], 2),
        "final_height": final, "wall_per_block": round(per_block, 3),
        "cpu_per_block": round(cpu_per_block, 3),
        "startup_wall": round(next((s[0] for s in samples if s[2] >= 1), wall), 2),
        "startup_cpu": round(next((s[3] for s in samples if s[2] >= 1), cpu0 + cpu) - cpu0, 2),
        "wall_to_block_100": next((round(s[0], 1) for s in samples if s[2] >= 100), None),
        "cpu_to_block_100": next((round(s[3] - cpu0, 1) for s in samples if s[2] >= 100), None),
        "stopped_by": result.stopped_by,
        "violations": [v.line() for v in checker.violations] if checker else [],
        "deployments": len(result.market.deploys),
        "leased": sum(1 for d in result.market.deploys if d.outcome == "leased"),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="10,100", help="comma-separated sizes")
    ap.add_argument("--warmup", type=int, default=3, help="blocks before measuring")
    ap.add_argument("--blocks", type=int, default=10, help="blocks measured")
    ap.add_argument("--wall-limit", type=float, default=1800.0, help="per size, seconds")
    ap.add_argument("--scenario", default="", help="time this scenario file instead")
    ap.add_argument("--until", type=float, default=0.0, help="with --scenario")
    ap.add_argument("--json-out", default="", help="also write the rows here")
    ap.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one or args.scenario:
        print(json.dumps(run_one(args)))
        return
    rows = []
    for n in [int(x) for x in args.nodes.split(",")]:
        cmd = [sys.executable, __file__, "--one", str(n), "--warmup", str(args.warmup),
               "--blocks", str(args.blocks), "--wall-limit", str(args.wall_limit)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                              timeout=args.wall_limit + 600)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'nodes':>6} {'v/p/t':>12} {'blocks':>6} {'wall s/block':>12} "
          f"{'CPU s/block':>11} {'speed-up':>8} {'RSS MB':>8} {'leases':>7}")
    for r in rows:
        print(f"{r['nodes']:>6} {r['validators']}/{r['providers']}/{r['tenants']:<6} "
              f"{r['final_height']:>6} {r['wall_per_block']:>12.3f} "
              f"{r.get('cpu_per_block', 0):>11.3f} {r['speedup']:>8.1f} "
              f"{r['max_rss_mb']:>8.0f} {r['leased']:>7}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
