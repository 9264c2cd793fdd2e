"""``testnet init``, ``node init --genesis``, the faucet's limits and the doctor's checks.

No node runs here: the files ``testnet init`` writes are checked the way a node reads them
(genesis, config, key permissions), bad input is refused with one line and nothing is
written or overwritten, and the doctor's checks are run against real sockets and files.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from p2pakash import crypto, home
from p2pakash.config import load_config
from p2pakash.doctor import FAIL, PASS, WARN, check_clock, check_key, check_port, check_seed
from p2pakash.errors import ConfigError
from p2pakash.faucet import Allowance
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.tcp import TcpTransport
from p2pakash.ledger.genesis import load_genesis
from p2pakash.testnet import (
    FAUCET_BALANCE,
    LAYOUT_FILE,
    VALIDATOR_STAKE,
    fetch_genesis,
    init_testnet,
    load_layout,
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2pakash", *args], capture_output=True,
                          text=True, timeout=30)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_init_writes_a_valid_testnet(tmp_path: Path) -> None:
    out = tmp_path / "net"
    layout = init_testnet(out, validators=4, providers=2, tenants=1, chain_id="t-init",
                          base_port=30000, executor="fake")
    doc = load_genesis(out / "genesis.json")
    assert doc.chain_id == "t-init" and doc.genesis_hash().hex() == layout.genesis_hash
    assert [v.stake for v in doc.validators] == [VALIDATOR_STAKE] * 4
    balances = {a.address: a.balance for a in doc.accounts}
    assert balances[layout.faucet_address] == FAUCET_BALANCE
    assert all(balances[n.address] > 0 for n in layout.nodes)
    ports = [int(a.rsplit(":", 1)[1]) for n in layout.nodes for a in (n.p2p, n.api)]
    assert len(set(ports)) == len(ports) == 14 and min(ports) == 30000
    assert load_layout(out) == layout
    attributes = []
    for entry in layout.nodes:
        node_home = out / entry.home
        cfg = load_config(home.config_path(node_home))  # checks the config like a node
        assert cfg.chain_id == "t-init" and cfg.moniker == entry.name
        assert cfg.p2p.listen == entry.p2p and cfg.api.listen == entry.api
        assert entry.peer not in [str(p) for p in cfg.p2p.persistent_peers]
        assert len(cfg.p2p.persistent_peers) == (3 if entry.role == "validator" else 4)
        key_mode = stat.S_IMODE(cfg.key_path.stat().st_mode)
        assert key_mode == 0o600, f"{cfg.key_path}: {key_mode:o}"
        assert crypto.load_key(cfg.key_path).address == entry.address
        assert load_genesis(cfg.genesis_path) == doc
        assert (cfg.provider is not None) == (entry.role == "provider")
        if cfg.provider is not None:
            assert cfg.provider.executor == "fake"
            attributes.append(cfg.provider.attributes["region"])
    assert attributes == ["us-west", "eu-central"]
    assert stat.S_IMODE((out / "faucet_key.json").stat().st_mode) == 0o600
    seeds = [line for line in (out / "seeds.txt").read_text().splitlines()
             if not line.startswith("#")]
    assert seeds == [n.peer for n in layout.by_role("validator")]
    done = cli("config", "check", str(out / "provider0" / "config.toml"))
    assert done.returncode == 0, done.stderr


def test_init_cli_and_refusals(tmp_path: Path) -> None:
    out = tmp_path / "net"
    done = cli("testnet", "init", "--validators", "2", "--tenants", "1", "--out", str(out),
               "--base-port", "30100", "--executor", "fake", "--chain-id", "t-cli")
    assert done.returncode == 0, done.stderr
    assert "3 nodes" in done.stdout and "validator1" in done.stdout
    before = tree(out)
    again = cli("testnet", "init", "--validators", "2", "--out", str(out), "--executor", "fake")
    assert again.returncode == 2
    assert "already exists and is not an empty folder" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert tree(out) == before  # nothing overwritten
    for args, message in [
        (["--validators", "0"], "at least one validator"),
        (["--chain-id", "bad chain"], "--chain-id"),
        (["--base-port", "80"], "--base-port"),
    ]:
        bad = cli("testnet", "init", "--out", str(tmp_path / "x"), "--executor", "fake", *args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert not (tmp_path / "x").exists()


def test_node_init_joins_with_the_published_genesis(tmp_path: Path) -> None:
    layout = init_testnet(tmp_path / "net", validators=1, chain_id="t-join",
                          base_port=30200, executor="fake")
    genesis = str(layout.root / "genesis.json")
    seed = layout.nodes[0].peer
    wrong = cli("node", "init", "--home", str(tmp_path / "a"), "--genesis", genesis,
                "--genesis-hash", "00" * 32, "--seeds", seed)
    assert wrong.returncode == 2
    assert f"genesis hash {layout.genesis_hash} differs from the network's" in wrong.stderr
    assert not (tmp_path / "a").exists()
    good = cli("node", "init", "--home", str(tmp_path / "b"), "--genesis", genesis,
               "--genesis-hash", layout.genesis_hash, "--seeds", seed, "--listen",
               "127.0.0.1:30299")
    assert good.returncode == 0, good.stderr
    cfg = load_config(tmp_path / "b" / "config.toml")
    assert cfg.chain_id == "t-join" and [str(s) for s in cfg.p2p.seeds] == [seed]
    assert load_genesis(cfg.genesis_path).genesis_hash().hex() == layout.genesis_hash
    clash = cli("node", "init", "--home", str(tmp_path / "c"), "--genesis", genesis,
                "--chain-id", "other")
    assert clash.returncode == 2 and "differs from the genesis's t-join" in clash.stderr
    with pytest.raises(ConfigError, match="cannot fetch the genesis"):
        fetch_genesis("http://127.0.0.1:9/genesis.json", timeout=2.0)


def test_faucet_allowance_per_address_and_per_day() -> None:
    limits = Allowance(amount=100, per_address=2, daily_cap=350)
    a, b = "akash1a", "akash1b"
    assert limits.check(a, 0.0) is None
    limits.record(a, 0.0)
    limits.record(a, 10.0)
    why = limits.check(a, 20.0)
    assert why is not None and "already received 2 grant(s)" in why
    limits.record(b, 30.0)
    why = limits.check(b, 40.0)  # 300 given; 400 > 350
    assert why is not None and "limit of 350 uakt" in why
    assert limits.check(a, 86_400.0 + 0.5) is None  # the first grant left the window
    limits.record(a, 86_400.0 + 0.5)
    assert limits.check("akash1c", 86_400.0 + 1) is not None  # 10 s, 30 s, day+0.5: 300


def test_doctor_key_port_clock(tmp_path: Path) -> None:
    key = tmp_path / "node_key.json"
    crypto.save_key(key, crypto.PrivateKey.generate())
    assert check_key(key).status == PASS
    os.chmod(key, 0o644)
    bad = check_key(key)
    assert bad.status == FAIL and bad.fix == f"chmod 600 {key}"
    assert check_key(tmp_path / "absent.json").status == FAIL
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        used = check_port("p2p", f"127.0.0.1:{port}")
        assert used.status == FAIL and "already in use" in used.detail
    assert check_port("p2p", f"127.0.0.1:{port}").status == PASS
    assert check_clock(1_000, None).status == FAIL
    assert check_clock(1_800_000_000_000, 1_800_000_000_000 + 3_600_000).status == WARN
    assert check_clock(1_800_000_000_000, 0).status == PASS


@pytest.fixture
def foreign_peer() -> Iterator[PeerAddr]:
    """A real p2pakash listener on chain 'other-chain', served by trio in a thread."""
    key = crypto.PrivateKey.generate()
    ready: list[str] = []
    stop = threading.Event()

    async def serve() -> None:
        transport = TcpTransport(key, "other-chain", "127.0.0.1:0")

        async def handler(conn: object) -> None:
            await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            ready.append(await nursery.start(transport.serve, handler))
            while not stop.is_set():  # noqa: ASYNC110 - a thread's event, bounded below
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    for _ in range(200):
        if ready:
            break
        threading.Event().wait(0.01)
    assert ready, "listener did not start"
    try:
        yield PeerAddr.parse(f"{key.node_id}@{ready[0]}")
    finally:
        stop.set()
        thread.join(5)


def test_doctor_seed_checks(foreign_peer: PeerAddr) -> None:
    other = check_seed(foreign_peer, "other-chain", timeout=3.0)
    assert other.status == PASS, other.line()
    mine = check_seed(foreign_peer, "my-chain", timeout=3.0)
    assert mine.status == FAIL and "other-chain" in mine.detail, mine.line()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    dead = check_seed(PeerAddr.parse(f"{foreign_peer.node_id}@127.0.0.1:{closed}"), "x", 2.0)
    assert dead.status == FAIL and "unreachable" in dead.detail


def test_doctor_cli_on_a_home(tmp_path: Path) -> None:
    layout = init_testnet(tmp_path / "net", validators=2, chain_id="t-doc", base_port=30300,
                          executor="fake")
    node_home = layout.root / "validator0"
    os.chmod(home.key_path(node_home), 0o640)
    done = cli("doctor", "--home", str(node_home), "--seeds-timeout", "1")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.startswith("[FAIL] key file:") and "0640" in line for line in lines)
    assert any(line.startswith("[PASS] p2p port:") for line in lines)
    assert any(line.startswith("[FAIL] seed") and "unreachable" in line for line in lines)
    assert "fix: chmod 600" in done.stdout
    assert json.loads((layout.root / LAYOUT_FILE).read_text())["chain_id"] == "t-doc"
