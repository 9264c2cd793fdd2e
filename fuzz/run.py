"""Long fuzz runs (``make fuzz``): the tests/fuzz hypothesis tests in the ``fuzz`` profile,
then the atheris harnesses (fuzz/atheris_targets.py) when atheris is installed.

Rules:
* Each group runs for ``FUZZ_SECONDS`` (default 300) of wall time: pytest is re-run with a
  new ``--hypothesis-seed`` until the budget is spent; each run has ``FUZZ_SCALE`` (default
  3 here) times the short run's examples per test, so one run is short, and a run still
  going when the budget ends is stopped (its examples are not counted). A run that fails
  stops its group and the runner exits non-zero; hypothesis prints the shrunk input.
* Per group it prints examples run (hypothesis's statistics), examples per wall second and
  process CPU second, and the load average, so the numbers can be compared on a busy box.
* ``FUZZ_GROUPS`` (comma-separated) picks groups; ``FUZZ_ATHERIS=0`` skips atheris.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
GROUPS = {
    "wire": ["tests/fuzz/test_wire_fuzz.py", "tests/fuzz/test_chain_fuzz.py"],
    "transport": ["tests/fuzz/test_transport_fuzz.py"],
    "files": ["tests/fuzz/test_files_fuzz.py", "tests/fuzz/test_text_fuzz.py"],
    "sdl": ["tests/fuzz/test_sdl_fuzz_more.py", "tests/market/test_sdl_fuzz.py"],
    "api": ["tests/fuzz/test_api_fuzz.py", "tests/fuzz/test_podman_fuzz.py",
            "tests/fuzz/test_podman_http_fuzz.py"],
}
ATHERIS_TARGETS = ["wire", "frames", "sdl", "config"]
_PASSING = re.compile(r"(\d+) passing\b")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_group(name: str, files: list[str], seconds: float) -> bool:
    env = dict(os.environ, HYPOTHESIS_PROFILE="fuzz")
    env.setdefault("FUZZ_SCALE", "3")
    start, cpu0, seed, examples = time.monotonic(), _children_cpu(), 0, 0
    ok = True
    while (left := seconds - (time.monotonic() - start)) > 0:
        seed += 1
        try:
            proc = subprocess.run(
                [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                 f"--hypothesis-seed={seed}", "--hypothesis-show-statistics", *files],
                cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                timeout=left)
        except subprocess.TimeoutExpired:
            break
        examples += sum(int(n) for n in _PASSING.findall(proc.stdout))
        if proc.returncode != 0:
            print(proc.stdout[-6000:], proc.stderr[-2000:], sep="\n")
            ok = False
            break
    wall, cpu = time.monotonic() - start, _children_cpu() - cpu0
    load = os.getloadavg()[0]
    print(f"[{name}] {'ok' if ok else 'FAILED'}: {seed} runs, {examples} examples in "
          f"{wall:.0f} s ({examples / wall:.0f}/s wall, {examples / max(cpu, 1e-9):.0f}/CPU s)"
          f", load {load:.2f}", flush=True)
    return ok


def run_atheris(target: str, seconds: float) -> bool:
    harness = ROOT / "fuzz" / "atheris_targets.py"
    proc = subprocess.run([PY, str(harness), target, f"-max_total_time={int(seconds)}",
                           "-rss_limit_mb=2048", "-timeout=5"], cwd=ROOT, check=False,
                          capture_output=True, text=True)
    tail = [line for line in proc.stderr.splitlines() if line.startswith(("#", "Done", "=="))]
    print(f"[atheris {target}] exit {proc.returncode}: {tail[-1] if tail else ''}", flush=True)
    if proc.returncode != 0:
        print(proc.stderr[-4000:])
    return proc.returncode == 0


def main() -> int:
    seconds = float(os.environ.get("FUZZ_SECONDS", "300"))
    wanted = [g for g in os.environ.get("FUZZ_GROUPS", ",".join(GROUPS)).split(",") if g]
    ok = True
    for name in wanted:
        ok = run_group(name, GROUPS[name], seconds) and ok
    if os.environ.get("FUZZ_ATHERIS", "1") != "0":
        try:
            import atheris  # noqa: F401
        except ImportError:
            print("atheris is not installed: hypothesis runs only", flush=True)
        else:
            for target in ATHERIS_TARGETS:
                ok = run_atheris(target, seconds / 2) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
