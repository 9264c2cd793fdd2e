"""Run the nodes of a testnet folder as separate processes (``testnet start|stop``, the demo).

Rules and invariants:
* Each node runs as ``python -m p2pakash node start --home HOME`` in its own session (so a
  terminal's Ctrl-C reaches only ``testnet start``, which then stops every node itself),
  with stdout and stderr in ``HOME/node.log``. The pids go to ``DIR/pids.json``; ``stop``
  signals only pids whose command line still names their home (a reused pid is left alone).
* Stopping is SIGTERM to every node, a bounded wait, then SIGKILL to whoever is left.
* Every wait is bounded; a node that exits or never answers raises ``TestnetError`` with
  its name and the tail of its log.
* When a provider uses the podman executor on the testnet's own socket, ``start`` starts
  ``podman system service`` there first (``podman_setup``) and ``stop`` ends it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from p2pakash import home
from p2pakash.client import ApiError, NodeClient, NodeUnreachable
from p2pakash.config import load_config
from p2pakash.errors import P2PAkashError
from p2pakash.executor import podman_setup
from p2pakash.testnet import Layout, NodeEntry

PIDS_FILE = "pids.json"
LOG_FILE = "node.log"


class TestnetError(P2PAkashError):
    """A node of the testnet failed to start or died; the message carries its log tail."""

    __test__ = False  # not a pytest test class


def log_path(layout: Layout, entry: NodeEntry) -> Path:
    return layout.home(entry) / LOG_FILE


def log_tail(layout: Layout, entry: NodeEntry, chars: int = 2000) -> str:
    try:
        text = log_path(layout, entry).read_text(errors="replace")
    except OSError:
        text = ""
    return f"--- {entry.name} log ({log_path(layout, entry)}) ---\n{text[-chars:]}"


def status_of(entry: NodeEntry, timeout: float = 2.0) -> dict[str, object] | None:
    """The node's ``/status``, or None while it does not answer."""
    try:
        return NodeClient(entry.url, timeout=timeout).status()
    except (NodeUnreachable, ApiError):
        return None


class Testnet:
    """The processes of one testnet folder."""

    __test__ = False

    def __init__(self, layout: Layout, *, python: str = sys.executable,
                 env: dict[str, str] | None = None,
                 launcher: Callable[[NodeEntry], Sequence[str]] = lambda _entry: ()) -> None:
        self.layout = layout
        self.python = python
        self.launcher = launcher  # a command prefix per node, e.g. ip netns exec NS
        self.env = dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.podman: podman_setup.PodmanService | None = None

    # ------------------------------------------------------------ podman

    def needs_podman(self) -> bool:
        own = f"unix://{self.layout.podman_dir / 'podman.sock'}"
        for entry in self.layout.by_role("provider"):
            cfg = load_config(home.config_path(self.layout.home(entry))).provider
            if cfg is not None and cfg.executor == "podman" and cfg.podman_socket == own:
                return True
        return False

    def start_podman(self) -> None:
        """Start the testnet's podman service unless one already answers on its socket."""
        sock = self.layout.podman_dir / "podman.sock"
        if self.podman is not None or (sock.exists() and podman_setup.ping(sock)):
            return
        self.podman = podman_setup.start_service(self.layout.podman_dir)

    # ------------------------------------------------------------ processes

    def start(self, names: Sequence[str] | None = None) -> None:
        """Start the named nodes (default: all) and record every pid."""
        if names is None and self.needs_podman():
            self.start_podman()
        for entry in self._entries(names):
            proc = self.procs.get(entry.name)
            if proc is not None and proc.poll() is None:
                continue
            node_home = self.layout.home(entry)
            with log_path(self.layout, entry).open("ab") as out:
                self.procs[entry.name] = subprocess.Popen(
                    [*self.launcher(entry), self.python, "-m", "p2pakash", "node", "start",
                     "--home", str(node_home)],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=self.env, start_new_session=True)
        self._write_pids()

    def _entries(self, names: Sequence[str] | None) -> list[NodeEntry]:
        if names is None:
            return list(self.layout.nodes)
        return [self.layout.node(n) for n in names]

    def _write_pids(self) -> None:
        pids = {name: p.pid for name, p in self.procs.items() if p.poll() is None}
        if self.podman is not None:
            pids["podman"] = self.podman.process.pid
        (self.layout.root / PIDS_FILE).write_text(json.dumps(pids, indent=1) + "\n")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                entry = self.layout.node(name)
                raise TestnetError(f"{name} exited with code {proc.returncode}\n"
                                   f"{log_tail(self.layout, entry)}")

    def wait_ready(self, *, timeout: float = 60.0, min_height: int = 1,
                   names: Sequence[str] | None = None,
                   progress: Callable[[str], None] = lambda _line: None,
                   stop: Callable[[], bool] = lambda: False) -> float:
        """Wait until every named node answers ``/status`` at ``min_height`` or above."""
        start = time.monotonic()
        waiting = {e.name: e for e in self._entries(names)}
        while waiting:
            self.check_alive()
            if stop():
                raise TestnetError("interrupted while waiting for the nodes to start")
            for name, entry in list(waiting.items()):
                st = status_of(entry, timeout=1.0)
                if st is not None and int(str(st.get("height", 0))) >= min_height:
                    del waiting[name]
                    progress(f"{name} up at height {st['height']} "
                             f"({time.monotonic() - start:.1f} s)")
            if waiting and time.monotonic() - start > timeout:
                entry = next(iter(waiting.values()))
                raise TestnetError(
                    f"{', '.join(waiting)} not up after {timeout:g} s\n"
                    f"{log_tail(self.layout, entry)}")
            if waiting:
                time.sleep(0.1)
        return time.monotonic() - start

    def stop_node(self, name: str, *, sig: int = signal.SIGTERM, timeout: float = 10.0
                  ) -> int | None:
        proc = self.procs.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._write_pids()
        return proc.returncode

    def stop(self, timeout: float = 10.0) -> dict[str, int | None]:
        """SIGTERM every node, wait up to ``timeout`` s, SIGKILL the rest; stop podman."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(10)
        if self.podman is not None:
            self.podman.stop()
            self.podman = None
        with contextlib.suppress(FileNotFoundError):
            (self.layout.root / PIDS_FILE).unlink()
        return codes

    def table(self) -> str:
        rows = [("node", "role", "p2p", "api", "node id")]
        rows += [(e.name, e.role, e.p2p, e.url, e.node_id) for e in self.layout.nodes]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False))
                         + "  " + r[4] for r in rows)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_detached(layout: Layout, *, timeout: float = 10.0) -> list[str]:
    """Stop the processes recorded in DIR/pids.json (``testnet start --detach``)."""
    path = layout.root / PIDS_FILE
    try:
        pids: dict[str, int] = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise TestnetError(f"{path}: not a pid file ({exc})") from None
    ours: dict[str, int] = {}
    for name, pid in pids.items():
        marker = str(layout.podman_dir if name == "podman" else layout.root / name)
        if f"{marker} " in _cmdline(int(pid)) or f"{marker}/" in _cmdline(int(pid)):
            ours[name] = int(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in ours.values():
        while _cmdline(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _cmdline(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    path.unlink()
    return sorted(ours)
