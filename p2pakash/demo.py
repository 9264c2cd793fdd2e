"""``make demo``: a local network on 127.0.0.1, end to end, in separate processes.

Today: five nodes start from ``configs/local/node*/`` (copied into a fresh folder so key
files get mode 0600 and nothing in the repository is written), find each other through
node0 as seed, and a signed note published through node0 reaches every node. Later
issues grow this into the full marketplace demo (bids, lease, container, payments).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from p2pakash import home

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "local"
NODES = 5
TEXT = "hello from the p2pakash demo"


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _wait(what: str, cond: object, limit: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if callable(cond) and cond():
            return time.monotonic() - start
        time.sleep(0.05)
    raise SystemExit(f"[demo] gave up waiting for {what} after {limit:.0f} s")


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="p2pakash-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for i in range(NODES):
            src, dst = CONFIGS / f"node{i}", workdir / f"node{i}"
            home.copy_home(src, dst)
            log = dst / "node.log"
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "p2pakash", "node", "start", "--config",
                 str(dst / "config.toml")],
                stdout=log.open("wb"), stderr=subprocess.STDOUT))
        _say(f"started {NODES} nodes in {workdir} (logs: nodeN/node.log)")

        def peers(i: int) -> int:
            text = logs[i].read_text(errors="replace")
            return text.count("peer connected") - text.count("peer disconnected")

        def dead() -> list[int]:
            return [i for i, p in enumerate(procs) if p.poll() is not None]

        def all_connected() -> bool:
            if dead():
                bad = dead()[0]
                raise SystemExit(f"[demo] node{bad} exited:\n{logs[bad].read_text()[-2000:]}")
            return all(peers(i) >= 2 for i in range(NODES))

        took = _wait("the nodes to connect", all_connected, 30)
        _say(f"all nodes connected in {took:.2f} s: "
             + ", ".join(f"node{i}={peers(i)} peers" for i in range(NODES)))

        publish = subprocess.run(
            [sys.executable, "-m", "p2pakash", "gossip", "publish", "--config",
             str(workdir / "node0" / "config.toml"), TEXT],
            capture_output=True, text=True, timeout=30)
        if publish.returncode != 0:
            raise SystemExit(f"[demo] publish failed: {publish.stderr.strip()}")
        _say(publish.stdout.strip())
        pattern = re.compile(r"note from (\S+): " + re.escape(TEXT))
        took = _wait("the note to reach every node",
                     lambda: all(pattern.search(p.read_text(errors="replace")) for p in logs), 15)
        for i, log in enumerate(logs):
            line = next(x for x in log.read_text().splitlines() if pattern.search(x))
            _say(f"node{i}: {line.split(' ', 1)[1]}")
        _say(f"the signed note reached all {NODES} nodes ({took * 1000:.0f} ms after publish"
             " returned)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        _say("network stopped")


if __name__ == "__main__":
    main()
