"""[root, ip netns] Four validators, each in its own network namespace, linked by veth.

A hub namespace holds a bridge; each node namespace gets one veth (10.77.0.k/24, our own
test hosts) whose other end joins the bridge. Nodes listen for peers on their own address
and serve their API on the namespace's loopback; the test reads it by entering the
namespace (setns on this thread). One validator's link is cut (its bridge port down): the
other three (75 % of the power) carry on while it stalls; the link is restored and it
catches up to the same blocks. Skipped unless root can create namespaces here. Every
namespace and process is removed at the end.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pakash.client import ApiError, NodeClient, NodeUnreachable
from p2pakash.testnet import NodeEntry, init_testnet
from p2pakash.testnet_run import Testnet, log_tail
from tests.testnet.helpers import poll

pytestmark = pytest.mark.slow
CLONE_NEWNET = 0x40000000
PREFIX = f"p2pk{os.getpid() % 100000}"
HUB = f"{PREFIX}h"
N = 4


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def netns_unusable() -> str | None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "needs root and iproute2"
    probe = f"{PREFIX}probe"
    done = ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def ns(i: int) -> str:
    return f"{PREFIX}n{i}"


_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(name: str, func: object) -> object:
    """Run ``func()`` with this thread inside network namespace ``name``."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        try:
            return func()  # type: ignore[operator]
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    reason = netns_unusable()
    if reason is not None:
        pytest.skip(reason)
    made: list[str] = []
    try:
        ip("netns", "add", HUB)
        made.append(HUB)
        ip("-n", HUB, "link", "add", "br0", "type", "bridge")
        ip("-n", HUB, "link", "set", "br0", "up")
        for i in range(N):
            ip("netns", "add", ns(i))
            made.append(ns(i))
            ip("-n", HUB, "link", "add", f"h{i}", "type", "veth", "peer", "name", "eth0",
               "netns", ns(i))
            ip("-n", HUB, "link", "set", f"h{i}", "master", "br0", "up")
            ip("-n", ns(i), "addr", "add", f"10.77.0.{i + 1}/24", "dev", "eth0")
            ip("-n", ns(i), "link", "set", "eth0", "up")
            ip("-n", ns(i), "link", "set", "lo", "up")
        yield made
    finally:
        for name in reversed(made):
            ip("netns", "del", name, check=False)


def height_in(i: int, entry: NodeEntry) -> int:
    def read() -> int:
        try:
            return int(NodeClient(entry.url, timeout=1.0).status()["height"])
        except (NodeUnreachable, ApiError):
            return -1
    value = in_netns(ns(i), read)
    assert isinstance(value, int)
    return value


def block_hash_in(i: int, entry: NodeEntry, h: int) -> str:
    value = in_netns(ns(i), lambda: NodeClient(entry.url, timeout=2.0).block(h)["hash"])
    assert isinstance(value, str)
    return value


def test_validators_in_namespaces_one_cut_off_and_restored(namespaces: list[str],
                                                            tmp_path: Path) -> None:
    layout = init_testnet(tmp_path / "net", validators=N, chain_id="t-netns",
                          base_port=26600, executor="fake",
                          hosts=[f"10.77.0.{i + 1}" for i in range(N)])
    index = {e.name: i for i, e in enumerate(layout.nodes)}
    net = Testnet(layout, launcher=lambda e: ("ip", "netns", "exec", ns(index[e.name])))
    nodes = layout.nodes

    def describe() -> str:
        return "\n".join(log_tail(layout, e, 1200) for e in nodes)

    def heights() -> list[int]:
        return [height_in(i, e) for i, e in enumerate(nodes)]

    try:
        net.start()
        poll(lambda: min(heights()) >= 3, limit=40, what="4 namespaced validators at height 3",
             describe=describe)
        assert "10.77.0.1:26600" in (layout.root / "validator1" / "config.toml").read_text()
        ip("-n", HUB, "link", "set", "h3", "down")  # validator3 is cut off
        cut_at = height_in(3, nodes[3])
        poll(lambda: min(heights()[:3]) >= cut_at + 5, limit=30,
             what="the other three to go on without validator3", describe=describe)
        assert height_in(3, nodes[3]) <= cut_at + 1  # it cannot decide alone
        net.check_alive()
        ip("-n", HUB, "link", "set", "h3", "up")  # restored
        poll(lambda: height_in(3, nodes[3]) >= height_in(0, nodes[0]) - 1 >= cut_at + 5,
             limit=40, what="validator3 to catch up after the link came back",
             describe=describe)
        top = height_in(3, nodes[3])
        for h in range(max(1, cut_at - 1), top + 1):
            assert block_hash_in(3, nodes[3], h) == block_hash_in(0, nodes[0], h)
    finally:
        codes = net.stop()
    assert all(code == 0 for code in codes.values()), codes
