"""A testnet of real node processes: join, faucet, become a validator, SIGTERM, bad input.

One module-scoped testnet (4 validators from ``testnet init``, each node its own process
started by ``Testnet``) serves the tests in file order: a node joins later with ``node init
--genesis FILE --seeds ...`` (seeds from the published ``seeds.txt``), syncs, is funded by
``faucet serve``/``faucet request`` and becomes a validator with ``tx stake
create-validator`` whose signatures then appear in commits; a validator SIGTERMed right as
it commits exits cleanly, restarts and carries on with the same blocks and no tx lost; a
port in use, a home of another chain and a genesis of another network each end in one
clear message with nothing overwritten. ``testnet start``/``stop`` are run as commands.
Every wait is bounded; every process is stopped at the end, pass or fail.
"""

from __future__ import annotations

import functools
import hashlib
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from p2pakash import crypto
from p2pakash.client import NodeClient
from p2pakash.ledger.txs import Send, sign_tx
from p2pakash.testnet import Layout, init_testnet, load_layout
from p2pakash.testnet_run import Testnet, log_tail
from tests.testnet.helpers import PYTHON, cli, free_base, height, ok, poll, set_config, status

pytestmark = pytest.mark.slow
CHAIN = "t-net"


@attrs.define
class Net:
    layout: Layout
    testnet: Testnet
    root: Path
    extra: dict[str, subprocess.Popen[bytes]] = attrs.Factory(dict)
    joiner_url: str = ""

    def url(self, i: int) -> str:
        return self.layout.nodes[i].url

    def tails(self) -> str:
        return "\n".join(log_tail(self.layout, e, 1500) for e in self.layout.nodes)

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("wb")
        proc = subprocess.Popen([PYTHON, "-m", "p2pakash", *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.extra[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")


def dumps(data: Path) -> dict[str, str]:
    """name -> sha256 of the SQL dump of each database (WAL checkpoints do not count)."""
    out = {}
    for path in sorted(data.glob("*.db")):
        db = sqlite3.connect(path)
        try:
            out[path.name] = hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
        finally:
            db.close()
    return out


def committed_after(url: str, start: int) -> bool:
    return height(url) > start


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("testnet")
    layout = init_testnet(root / "net", validators=4, chain_id=CHAIN, base_port=free_base(12),
                          executor="fake")
    testnet = Testnet(layout)
    n = Net(layout=layout, testnet=testnet, root=root)
    try:
        testnet.start()
        testnet.wait_ready(timeout=40.0, min_height=2)
        yield n
    finally:
        for proc in n.extra.values():
            stop(proc)
        testnet.stop()


def test_join_sync_faucet_and_become_validator(net: Net) -> None:
    base = free_base(3, start=42000)
    joiner = net.root / "joiner"
    seeds = [s for s in (net.layout.root / "seeds.txt").read_text().splitlines()
             if s and not s.startswith("#")]
    out = ok("node", "init", "--home", str(joiner), "--moniker", "joiner", "--genesis",
             str(net.layout.root / "genesis.json"), "--genesis-hash", net.layout.genesis_hash,
             "--seeds", ",".join(seeds[:2]), "--listen", f"127.0.0.1:{base}")
    assert f"hash {net.layout.genesis_hash}" in out
    set_config(joiner, "api", listen=f"127.0.0.1:{base + 1}")
    net.joiner_url = url = f"http://127.0.0.1:{base + 1}"
    net.spawn("joiner", "node", "start", "--home", str(joiner))
    poll(lambda: height(url) >= height(net.url(0)) - 1 > 2, limit=30, what="joiner to sync",
         describe=lambda: net.log("joiner")[-2000:])
    assert status(url)["validator"] is False  # type: ignore[index]

    net.spawn("faucet", "faucet", "serve", "--from", str(net.layout.faucet_key), "--node",
              net.url(0), "--amount", "20akt", "--listen", f"127.0.0.1:{base + 2}")
    poll(lambda: "faucet akash" in net.log("faucet"), limit=15, what="faucet to listen",
         describe=lambda: net.log("faucet"))
    address = crypto.load_key(joiner / "node_key.json").address
    got = ok("faucet", "request", address, "--url", f"127.0.0.1:{base + 2}")
    assert f"received 20000000 uakt at {address}" in got
    again = cli("faucet", "request", address, "--url", f"127.0.0.1:{base + 2}")
    assert again.returncode == 1 and "already received 1 grant(s)" in again.stderr

    ok("tx", "stake", "create-validator", "--home", str(joiner), "--self-stake", "10akt",
       "--moniker", "joiner", "--wait")
    poll(lambda: (status(url) or {}).get("validator"), limit=20, what="joiner in the set")
    pubkey = crypto.load_key(joiner / "node_key.json").public.hex()

    def signs() -> bool:
        block = NodeClient(net.url(1)).block("latest")
        return pubkey in (block.get("last_commit") or {}).get("signers", [])

    poll(signs, limit=20, what="the joiner's signature in a commit",
         describe=lambda: net.log("joiner")[-2000:])


def test_sigterm_during_commit_restart_nothing_lost(net: Net) -> None:
    faucet = crypto.load_key(net.layout.faucet_key)
    if "faucet" in net.extra:
        stop(net.extra.pop("faucet"))
    client = NodeClient(net.url(0))
    victim = net.layout.nodes[2]
    sequence = int(client.account(faucet.address)["next_sequence"])
    sinks = [crypto.PrivateKey.generate().address for _ in range(6)]
    hashes = []
    for i, sink in enumerate(sinks):
        tx = sign_tx(faucet, CHAIN, sequence=sequence + i, msgs=(Send(to=sink, amount=1000),))
        hashes.append(client.submit(tx.encode())["hash"])
        if i == 2:  # SIGTERM the moment the victim has just committed a block
            start = height(victim.url)
            poll(functools.partial(committed_after, victim.url, start), limit=10,
                 what="a commit")
            code = net.testnet.stop_node(victim.name)
            assert code == 0, log_tail(net.layout, victim)
            assert "SIGTERM, shutting down" in log_tail(net.layout, victim)
            stopped_at = start + 1
    for h in hashes:
        found = client.wait_for_tx(h, timeout=20)
        assert found["code"] == 0
    net.testnet.start([victim.name])
    poll(lambda: height(victim.url) >= height(net.url(0)) - 1 > stopped_at + 2, limit=30,
         what="the restarted validator to catch up", describe=net.tails)
    top = min(height(victim.url), height(net.url(0)))
    a, b = NodeClient(victim.url), NodeClient(net.url(0))
    for h in range(1, top + 1):
        assert a.block(h)["hash"] == b.block(h)["hash"], f"block {h} differs"
    for h in hashes:
        assert a.tx(h)["code"] in (0, None)  # indexed (result unknown while it was down)
    for sink in sinks:
        assert int(a.account(sink)["balance"]) == 1000


def test_port_in_use_home_of_another_chain_and_foreign_genesis(net: Net, tmp_path: Path
                                                                 ) -> None:
    genesis = str(net.layout.root / "genesis.json")
    taken = net.layout.nodes[0].p2p
    busy = tmp_path / "busy"
    ok("node", "init", "--home", str(busy), "--genesis", genesis, "--listen", taken)
    set_config(busy, "api", listen=f"127.0.0.1:{free_base(1, start=43000)}")
    done = cli("node", "start", "--home", str(busy), timeout=30)
    assert done.returncode != 0
    lines = [x for x in done.stderr.splitlines() if x.startswith("Error") or "error" in x]
    assert any(f"p2p.listen {taken}" in x and "in use" in x for x in lines), done.stderr
    assert "Traceback" not in done.stderr

    # A home whose data belongs to this chain, configured for another one.
    other = init_testnet(tmp_path / "other", validators=1, chain_id="t-other",
                         base_port=free_base(2, start=44000), executor="fake")
    foreign = tmp_path / "foreign"
    ok("node", "init", "--home", str(foreign), "--genesis", str(other.root / "genesis.json"),
       "--listen", f"127.0.0.1:{free_base(1, start=45000)}")
    (foreign / "data").mkdir()
    for db in sorted((net.layout.home(net.layout.nodes[3]) / "data").glob("*.db")):
        src, dst = sqlite3.connect(db), sqlite3.connect(foreign / "data" / db.name)
        src.backup(dst)  # a consistent copy of a live database
        src.close()
        dst.close()
    before = dumps(foreign / "data")
    done = cli("node", "start", "--home", str(foreign), timeout=30)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "belongs to chain 't-net', not 't-other'" in done.stderr, done.stderr
    assert dumps(foreign / "data") == before and len(before) >= 2  # nothing written

    # A genesis with other state and the same chain ID: block sync's status exchange
    # names it in one line, and the node stays at height 0.
    doc = json.loads(Path(genesis).read_text())
    doc["accounts"][0]["balance"] += 1
    (tmp_path / "forged.json").write_text(json.dumps(doc))
    forged = tmp_path / "forged"
    base = free_base(2, start=46000)
    seeds = ",".join(n.peer for n in net.layout.nodes[:2])
    ok("node", "init", "--home", str(forged), "--genesis", str(tmp_path / "forged.json"),
       "--seeds", seeds, "--listen", f"127.0.0.1:{base}")
    set_config(forged, "api", listen=f"127.0.0.1:{base + 1}")
    proc = net.spawn("forged", "node", "start", "--home", str(forged))
    try:
        poll(lambda: "runs a different genesis" in net.log("forged"), limit=20,
             what="the forged genesis to be noticed", describe=lambda: net.log("forged"))
        time.sleep(1.0)
        assert height(f"http://127.0.0.1:{base + 1}") == 0
        assert height(net.url(0)) > 5
    finally:
        stop(proc)


def test_testnet_commands_start_stop(tmp_path: Path) -> None:
    out = tmp_path / "small"
    ok("testnet", "init", "--validators", "1", "--out", str(out), "--executor", "fake",
       "--base-port", str(free_base(2, start=47000)), "--chain-id", "t-small")
    log = (tmp_path / "start.log").open("w+")
    proc = subprocess.Popen([PYTHON, "-m", "p2pakash", "testnet", "start", str(out)],
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        poll(lambda: "press Ctrl-C" in (tmp_path / "start.log").read_text(), limit=30,
             what="testnet start", describe=lambda: (tmp_path / "start.log").read_text())
        text = (tmp_path / "start.log").read_text()
        assert "validator0" in text and "http://127.0.0.1:" in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert "all nodes stopped cleanly" in (tmp_path / "start.log").read_text()
    finally:
        stop(proc)  # type: ignore[arg-type]
    detached = cli("testnet", "start", str(out), "--detach")
    try:
        assert detached.returncode == 0, detached.stderr
        layout = load_layout(out)
        assert height(layout.nodes[0].url) >= 1
    finally:
        stopped = cli("testnet", "stop", str(out))
    assert stopped.returncode == 0 and "stopped validator0" in stopped.stdout
    assert height(layout.nodes[0].url) == -1
    assert "nothing running" in cli("testnet", "stop", str(out)).stdout
