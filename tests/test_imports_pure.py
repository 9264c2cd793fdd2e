"""DESIGN.md §3.1: protocol cores import no trio, sockets, time, module-level random or podman."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "p2pakash"

# Modules that must stay sans-IO. Grows as cores land.
PURE_MODULES = [
    "wire.py",
    "crypto.py",
    "gossip/messages.py",
]
PURE_GLOBS = [
    "gossip/pubsub.py", "gossip/peers.py", "gossip/score.py", "gossip/caches.py",
    "gossip/addrbook.py", "gossip/backoff.py", "gossip/secret.py", "gossip/addr.py",
    "consensus/core.py", "consensus/votes.py", "consensus/proposer.py", "consensus/types.py",
    "ledger/*.py", "market/*.py", "market/sdl/*.py",
]
FORBIDDEN = {"trio", "socket", "time", "asyncio", "podman", "subprocess", "selectors"}


def _pure_files() -> list[Path]:
    files = {PACKAGE / m for m in PURE_MODULES}
    for pattern in PURE_GLOBS:
        files.update(PACKAGE.glob(pattern))
    return sorted(f for f in files if f.exists() and not f.name.endswith("_io.py"))


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_is_sans_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "random":
                # `from random import Random` is fine (an injected instance); functions are not.
                bad = [a.name for a in node.names if a.name != "Random"]
                assert not bad, f"{path}: uses module-level random ({bad})"
        for name in names:
            root = name.split(".")[0]
            assert root not in FORBIDDEN, f"{path}: imports {name}"
    text = path.read_text()
    for call in ("random.random(", "random.choice(", "random.shuffle(", "random.randint(",
                 "random.sample(", "random.uniform("):
        assert call not in text, f"{path}: calls module-level {call}"
