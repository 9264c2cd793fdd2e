#!/usr/bin/env python3
"""Crash-safety loop: the test's loop (tests/integration/test_crash_loop.py) with any count.

Runs ``run_loop`` on a fresh 4-validator testnet of real processes in a temporary folder:
every iteration restarts validator 3 armed with a ``P2PAKASH_CRASH_AT`` point (or clean,
to be SIGKILLed from outside), waits for the death and checks blocks, app hashes, txs and
signatures (see the test's docstring). Prints the iterations, the crash points covered with
counts, seconds per iteration, how often the victim was checked live before dying, the
txs checked, the heals it logged, the process CPU seconds of this script, and the load
average. Any broken invariant fails with the test's message. Benchmark only: never a test.

    python bench/crash_loop.py --iterations 50 --seed 8
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.test_crash_loop import run_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="crash-loop-") as tmp:
        figures = run_loop(Path(tmp), args.iterations, args.seed)
    wall = time.monotonic() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(f"iterations            {figures.iterations} (seed {args.seed})")
    print("crash points          " + ", ".join(f"{k} {n}" for k, n in
                                               sorted(figures.kinds.items())))
    print(f"loop seconds          {figures.seconds:.1f} "
          f"({figures.seconds / max(1, figures.iterations):.2f} s per iteration)")
    print(f"whole run seconds     {wall:.1f}")
    print(f"victim alive seconds  {figures.alive_seconds:.1f}; "
          f"file checks {figures.check_seconds:.1f}")
    print(f"live-checked first    {figures.caught_up_first} of {figures.iterations}")
    print(f"txs committed         {figures.txs_committed} "
          f"(checked live on the victim: {figures.live_txs_checked})")
    print(f"heals logged          {figures.heals}")
    print(f"final height          {figures.final_height}")
    print(f"CPU s (this process)  {own.ru_utime + own.ru_stime:.1f}; "
          f"(node processes) {children.ru_utime + children.ru_stime:.1f}")
    print(f"load average          {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
