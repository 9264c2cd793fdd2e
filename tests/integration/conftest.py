"""Shared helpers for the process tests: free ports, fresh homes, node processes.

Rules: every node runs as ``python -m p2pakash node start --config FILE`` in its own
process with its log (stderr and stdout) in a file; every wait is bounded in time and
fails with the log tail; every process a test starts is killed when the test ends, pass
or fail (the ``procs`` fixture owns them).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PYTHON = sys.executable
CLI_TIMEOUT = 30.0  # a one-shot CLI command (init, publish) never takes this long


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run_cli(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``p2pakash ARGS`` in a fresh interpreter; output captured as text."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([PYTHON, "-m", "p2pakash", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def init_home(home: Path, *, moniker: str, chain_id: str, port: int,
              seeds: list[str] | None = None) -> str:
    """``node init`` a fresh home listening on 127.0.0.1:port; returns ``ID@127.0.0.1:port``."""
    args = ["node", "init", "--home", str(home), "--moniker", moniker, "--chain-id", chain_id,
            "--listen", f"127.0.0.1:{port}"]
    if seeds:
        args += ["--seeds", ",".join(seeds)]
    done = run_cli(*args)
    assert done.returncode == 0, f"node init failed: {done.stderr}"
    match = re.search(r"^peer: (\S+)$", done.stdout, re.MULTILINE)
    assert match, f"node init printed no peer line: {done.stdout!r}"
    return match.group(1)


def wait_until(cond: Callable[[], bool], *, limit: float, what: str,
               describe: Callable[[], str] = lambda: "") -> float:
    """Poll ``cond`` every 50 ms for at most ``limit`` seconds; returns the time it took."""
    start = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            pytest.fail(f"gave up after {limit:g} s waiting for {what}\n{describe()}")
        time.sleep(0.05)


class NodeProcess:
    """One ``node start`` process; its output goes to ``log``."""

    def __init__(self, name: str, config: Path, log: Path) -> None:
        self.name = name
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, log: Path | None = None) -> None:
        if log is not None:
            self.log = log
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "p2pakash", "node", "start", "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.name} ({self.log}) ---\n{self.text()[-chars:]}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_log(self, pattern: str, *, limit: float, count: int = 1) -> float:
        """Wait until ``pattern`` (a regex) matches ``count`` times in the log."""
        regex = re.compile(pattern)

        def found() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}\n{self.tail()}")
            return len(regex.findall(self.text())) >= count

        return wait_until(found, limit=limit, what=f"{pattern!r} in {self.name}'s log",
                          describe=self.tail)

    def kill(self) -> None:
        """SIGKILL and reap (no clean shutdown: sockets die with the process)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it does not go; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@pytest.fixture
def procs() -> Iterator[list[NodeProcess]]:
    """A list the test appends its NodeProcesses to; all are stopped at the end."""
    started: list[NodeProcess] = []
    try:
        yield started
    finally:
        for node in started:
            if node.alive and node.proc is not None:
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for node in started:
            if node.proc is None:
                continue
            try:
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=10)
