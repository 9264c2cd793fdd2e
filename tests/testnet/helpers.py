"""Shared helpers for the testnet process tests: free ports, bounded polls, CLI runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from p2pakash.client import ApiError, NodeClient, NodeUnreachable
from p2pakash.config import dump_config, structure_config
from p2pakash.demo import free_base_port

PYTHON = sys.executable


def free_base(count: int, start: int = 32000) -> int:
    """A base port with ``count`` consecutive free ports on 127.0.0.1 (the demo's finder)."""
    return free_base_port(count, start)


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([PYTHON, "-m", "p2pakash", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def ok(*args: str, timeout: float = 60.0) -> str:
    done = cli(*args, timeout=timeout)
    assert done.returncode == 0, f"p2pakash {' '.join(args)}: {done.stderr}"
    return done.stdout


def poll(cond: Callable[[], Any], *, limit: float, what: str,
         describe: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + limit
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {limit:g} s waiting for {what}\n{describe()}")
        time.sleep(0.1)


def status(url: str) -> dict[str, Any] | None:
    try:
        return NodeClient(url, timeout=2.0).status()
    except (NodeUnreachable, ApiError):
        return None


def height(url: str) -> int:
    st = status(url)
    return int(st["height"]) if st else -1


def set_config(home: Path, section: str, **values: Any) -> None:
    """Set ``[section] key = value`` in HOME/config.toml, checked like a config file."""
    path = home / "config.toml"
    data = tomllib.loads(path.read_text())
    data.setdefault(section, {}).update(values)
    cfg = structure_config(data, source=str(path), base_dir=home)
    path.write_text(dump_config(attrs.evolve(cfg, home=Path("."))))
