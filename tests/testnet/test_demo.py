"""``python -m p2pakash.demo`` end to end, as ``make demo`` runs it.

Podman is used when it can run a container here; otherwise the fake executor is forced
through ``P2PAKASH_DEMO_EXECUTOR=fake`` and the demo must say so in one line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from p2pakash.executor.podman_setup import podman_unusable_reason

pytestmark = pytest.mark.slow


def test_demo_runs_the_marketplace_end_to_end(tmp_path: Path) -> None:
    real = podman_unusable_reason(tmp_path) is None
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not real:
        env["P2PAKASH_DEMO_EXECUTOR"] = "fake"
    done = subprocess.run([sys.executable, "-m", "p2pakash.demo"], capture_output=True,
                          text=True, timeout=110, env=env)
    out = done.stdout
    assert done.returncode == 0, f"{out[-3000:]}\n{done.stderr[-3000:]}"
    for step in range(1, 9):
        assert f"== [{step}/8]" in out
    assert re.search(r"bid +from provider0: \d+ uakt/block", out), out
    assert re.search(r"decline +from provider1: attribute_mismatch: .*region=us-west", out), out
    assert re.search(r"lease \d+\.1\.1 active at height \d+", out), out
    assert "manifest sent to provider0: accepted" in out
    assert "provider state running" in out
    assert re.search(r"log web/stdout: .*", out), out
    assert re.search(r"provider0 earned [\d,]+ uakt \(\d+ blocks x", out), out
    assert re.search(r"escrow +0 +500,000 +0", out), out
    assert "all 7 nodes stopped cleanly" in out
    if real:
        assert "Podman works here" in out
        assert "-> 'hello from a p2pakash lease'" in out
    else:
        assert sum("Podman not used" in line for line in out.splitlines()) == 1
