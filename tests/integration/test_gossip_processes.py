"""Real node processes on 127.0.0.1: homes from ``node init``, ``node start``, ``gossip publish``.

Five nodes find each other through node0 (the seed of the others); a signed note published
through node0 reaches every node's log; a node killed with SIGKILL and restarted from the
same config reconnects and receives the next note. Start-up failures (port in use, key
file readable by others) end in one line and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests.integration.conftest import (
    NodeProcess,
    free_ports,
    init_home,
    run_cli,
    wait_until,
)

CHAIN = "proc-test"
N = 5
CONNECT_LIMIT = 20.0  # seconds for five fresh processes to start and connect
DELIVERY_LIMIT = 15.0  # seconds for a published note to show in every log


def _live_peers(node: NodeProcess) -> int:
    text = node.text()
    return text.count("peer connected ") - text.count("peer disconnected ")


def _publish(config: Path, text: str) -> None:
    done = run_cli("gossip", "publish", "--config", str(config), "--timeout", "10", text)
    assert done.returncode == 0, f"publish failed: {done.stderr}"
    assert re.match(r"published note [0-9a-f]{16} as akash1", done.stdout), done.stdout


def _note_seen(text: str) -> re.Pattern[str]:
    return re.compile(r"note from akash1[0-9a-z]+: " + re.escape(text) + "$", re.MULTILINE)


@pytest.mark.slow
def test_five_processes_deliver_and_a_killed_node_rejoins(
        tmp_path: Path, procs: list[NodeProcess]) -> None:
    ports = free_ports(N)
    homes = [tmp_path / f"node{i}" for i in range(N)]
    seed = init_home(homes[0], moniker="node0", chain_id=CHAIN, port=ports[0])
    ids = [seed.split("@")[0]]
    for i in range(1, N):
        peer = init_home(homes[i], moniker=f"node{i}", chain_id=CHAIN, port=ports[i],
                         seeds=[seed])
        ids.append(peer.split("@")[0])
    nodes = [NodeProcess(f"node{i}", homes[i] / "config.toml", homes[i] / "node.log")
             for i in range(N)]
    for node in nodes:
        procs.append(node)
        node.start()

    def everyone_logs() -> str:
        return "\n".join(node.tail(1500) for node in nodes)

    for node in nodes:
        node.wait_log(rf"listening on 127\.0\.0\.1:\d+, chain {CHAIN}", limit=CONNECT_LIMIT)
    wait_until(lambda: all(_live_peers(node) >= 2 for node in nodes), limit=CONNECT_LIMIT,
               what="every node to have two peers", describe=everyone_logs)

    first = "first note from the process test"
    _publish(homes[0] / "config.toml", first)
    wait_until(lambda: all(_note_seen(first).search(node.text()) for node in nodes),
               limit=DELIVERY_LIMIT, what="the first note in all five logs",
               describe=everyone_logs)
    for node in nodes:  # each node logs each note once (the seen cache dedupes copies)
        assert len(_note_seen(first).findall(node.text())) == 1, node.tail()

    # SIGKILL node3: no goodbye, its sockets die with it; node0 notices the EOF.
    victim = nodes[3]
    victim.kill()
    nodes[0].wait_log(rf"peer disconnected {ids[3][:12]}", limit=DELIVERY_LIMIT)

    victim.start(log=homes[3] / "node-restart.log")
    victim.wait_log(r"peer connected [0-9a-f]{12} (out|in) ", limit=CONNECT_LIMIT)
    # node0 (the seed) sees node3 connect a second time, under the same node ID
    nodes[0].wait_log(rf"peer connected {ids[3][:12]} in ", limit=CONNECT_LIMIT, count=2)
    assert not _note_seen(first).search(victim.text())  # a new process: nothing old replayed

    second = "second note, after the restart"
    _publish(homes[0] / "config.toml", second)
    wait_until(lambda: all(_note_seen(second).search(node.text()) for node in nodes),
               limit=DELIVERY_LIMIT, what="the second note in all five logs (node3 restarted)",
               describe=everyone_logs)
    assert all(node.alive for node in nodes)
    assert "Traceback" not in everyone_logs()


@pytest.mark.slow
def test_start_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        init_home(tmp_path / "h", moniker="busy", chain_id=CHAIN, port=port)
        done = run_cli("node", "start", "--config", str(tmp_path / "h" / "config.toml"),
                       timeout=20)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], lines[0]
    assert "config.toml" in lines[0]  # names where the address comes from


@pytest.mark.slow
def test_start_with_a_group_readable_key_is_one_line_exit_2(tmp_path: Path) -> None:
    [port] = free_ports(1)
    init_home(tmp_path / "h", moniker="leaky", chain_id=CHAIN, port=port)
    key_file = tmp_path / "h" / "node_key.json"
    assert key_file.stat().st_mode & 0o777 == 0o600  # node init made it private
    key_file.chmod(0o644)
    done = run_cli("node", "start", "--config", str(tmp_path / "h" / "config.toml"),
                   timeout=20)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(key_file) in lines[0] and "0644" in lines[0] and "chmod 600" in lines[0]
