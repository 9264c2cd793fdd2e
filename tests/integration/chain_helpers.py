"""Build a local chain testnet of real node processes (for the process tests and the bench).

Rules and invariants:
* Every home is made by ``p2pakash node init`` (distinct free p2p and API ports on
  127.0.0.1; every node but the first is seeded with node0) and then tuned by rewriting its
  ``config.toml`` through ``p2pakash.config`` (so a bad override fails like a bad file).
* The genesis is built with the ``p2pakash genesis`` CLI (``new``, ``add-validator``,
  ``add-account``, ``validate``) when ``via_cli`` is true, else written directly with
  ``save_genesis`` (many bench accounts would cost one interpreter start each); the same
  file is copied into every home, followers included.
* Nothing here waits without a bound: every wait fails with the nodes' log tails.
* The caller owns the processes: ``ChainNet.stop_all`` (call it in ``finally``) stops them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
import tomllib
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from p2pakash import crypto, wire
from p2pakash.client import ApiError, NodeClient, NodeUnreachable
from p2pakash.config import dump_config, structure_config
from p2pakash.consensus.core import ProposalEvent, VoteEvent
from p2pakash.consensus.guard import LastSign, SignStep
from p2pakash.consensus.types import Block, Commit, VoteType, verify_vote
from p2pakash.consensus.wal import read_records
from p2pakash.errors import InvalidSignature
from p2pakash.ledger.genesis import GenesisAccount, GenesisDoc, GenesisValidator, save_genesis
from p2pakash.ledger.params import Params
from tests.integration.conftest import (
    CLI_TIMEOUT,
    PYTHON,
    NodeProcess,
    free_ports,
    init_home,
    run_cli,
)

VALIDATOR_STAKE = 10_000_000  # 10 AKT: power 10 each


@attrs.frozen(kw_only=True)
class Home:
    name: str
    path: Path
    p2p_port: int
    api_port: int
    peer: str  # ID@127.0.0.1:port

    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    @property
    def key_file(self) -> Path:
        return self.path / "node_key.json"

    @property
    def key(self) -> crypto.PrivateKey:
        return crypto.load_key(self.key_file)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def data(self) -> Path:
        return self.path / "data"


def tune_config(home: Path, overrides: dict[str, dict[str, Any]]) -> None:
    """Set ``[section] key = value`` pairs in HOME/config.toml (checked like a config file)."""
    path = home / "config.toml"
    data = tomllib.loads(path.read_text())
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    cfg = structure_config(data, source=str(path), base_dir=home)
    path.write_text(dump_config(attrs.evolve(cfg, home=Path("."))))


def make_homes(root: Path, n: int, *, chain_id: str, prefix: str = "node",
               seed: str | None = None, first: int = 0,
               overrides: dict[str, dict[str, Any]] | None = None) -> list[Home]:
    """``n`` fresh homes under ``root``; node0 (or ``seed``) seeds the others. The homes
    seeded by node0 are initialised in parallel once node0 exists."""
    ports = free_ports(2 * n)
    names = [f"{prefix}{first + i}" for i in range(n)]
    peers: list[str] = []
    if seed is None:
        peers.append(init_home(root / names[0], moniker=names[0], chain_id=chain_id,
                               port=ports[0]))
        seed = peers[0]
    rest = range(len(peers), n)
    done = run_cli_many([("node", "init", "--home", str(root / names[i]), "--moniker",
                          names[i], "--chain-id", chain_id, "--listen",
                          f"127.0.0.1:{ports[2 * i]}", "--seeds", seed) for i in rest])
    for result in done:
        if result.returncode != 0:
            raise AssertionError(f"node init failed: {result.stderr.strip()}")
        match = re.search(r"^peer: (\S+)$", result.stdout, re.MULTILINE)
        assert match, f"node init printed no peer line: {result.stdout!r}"
        peers.append(match.group(1))
    homes: list[Home] = []
    for i, name in enumerate(names):
        path, api_port = root / name, ports[2 * i + 1]
        tuned = {section: dict(values) for section, values in (overrides or {}).items()}
        tuned.setdefault("api", {})["listen"] = f"127.0.0.1:{api_port}"  # merged, not replaced
        tune_config(path, tuned)
        homes.append(Home(name=name, path=path, p2p_port=ports[2 * i], api_port=api_port,
                          peer=peers[i]))
    return homes


def _cli(*args: str) -> str:
    done = run_cli(*args)
    if done.returncode != 0:
        raise AssertionError(f"p2pakash {' '.join(args)} failed ({done.returncode}):"
                             f" {done.stderr.strip()}")
    return done.stdout


def make_genesis(path: Path, *, chain_id: str, validators: Sequence[Home],
                 accounts: Sequence[tuple[str, int]], via_cli: bool = True,
                 params: Params | None = None, stake: int = VALIDATOR_STAKE) -> None:
    """Write the genesis at ``path``: ``validators``' keys bonded with ``stake`` each and
    ``accounts`` (address, uakt) funded; ``params`` only without the CLI."""
    if via_cli:
        if params is not None:
            raise ValueError("genesis params can only be set with via_cli=False")
        _cli("genesis", "new", "--chain-id", chain_id, "--out", str(path))
        for v in validators:
            _cli("genesis", "add-validator", str(path), "--key", str(v.key_file),
                 "--stake", str(stake), "--moniker", v.name)
        for address, balance in accounts:
            _cli("genesis", "add-account", str(path), address, str(balance))
        out = _cli("genesis", "validate", str(path))
        assert "valid;" in out, out
        return
    doc = GenesisDoc(
        chain_id=chain_id, genesis_time_ms=int(time.time() * 1000),
        accounts=tuple(GenesisAccount(address=a, balance=b) for a, b in accounts),
        validators=tuple(GenesisValidator(pubkey=v.key.public, stake=stake, moniker=v.name)
                         for v in validators),
        params=params or Params())
    doc.validate(str(path))
    save_genesis(path, doc)


def install_genesis(genesis: Path, homes: Sequence[Home]) -> None:
    for home in homes:
        shutil.copyfile(genesis, home.path / "genesis.json")


# ------------------------------------------------------------------ running nodes


@attrs.define
class ChainNet:
    """Homes and their processes; ``nodes[i]`` runs ``homes[i]``."""

    homes: list[Home]
    nodes: list[NodeProcess] = attrs.field(factory=list)
    restarts: dict[str, int] = attrs.field(factory=dict)

    def start(self, i: int) -> NodeProcess:
        home = self.homes[i]
        n = self.restarts.get(home.name, 0)
        self.restarts[home.name] = n + 1
        log = home.path / ("node.log" if n == 0 else f"node.{n}.log")
        if i < len(self.nodes):
            node = self.nodes[i]
            node.start(log)
        else:
            assert i == len(self.nodes), "start nodes in order"
            node = NodeProcess(home.name, home.config, log)
            self.nodes.append(node)
            node.start()
        return node

    def add(self, home: Home) -> int:
        self.homes.append(home)
        return len(self.homes) - 1

    def client(self, i: int, timeout: float = 5.0) -> NodeClient:
        return NodeClient(self.homes[i].url, timeout=timeout)

    def tails(self, chars: int = 1500) -> str:
        return "\n".join(node.tail(chars) for node in self.nodes)

    def stop_all(self) -> None:
        """SIGTERM everyone, then SIGKILL whoever is still there after 5 s."""
        for node in self.nodes:
            if node.alive and node.proc is not None:
                node.proc.terminate()
        deadline = time.monotonic() + 5.0
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=10)


def try_status(client: NodeClient) -> dict[str, Any] | None:
    """``/status`` or None while the node is down or starting."""
    try:
        return client.status()
    except (NodeUnreachable, ApiError):
        return None


def height_of(client: NodeClient) -> int:
    status = try_status(client)
    return int(status["height"]) if status else -1


def poll(cond: Callable[[], bool], *, limit: float, what: str,
         describe: Callable[[], str] = lambda: "", interval: float = 0.05) -> float:
    """Poll ``cond`` for at most ``limit`` s; AssertionError with ``describe()`` if never."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > limit:
            raise AssertionError(f"gave up after {limit:g} s waiting for {what}\n{describe()}")
        time.sleep(interval)
    return time.monotonic() - start


def read_json(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict), f"{path}: not a JSON object"
    return doc


def run_cli_many(commands: Sequence[Sequence[str]], timeout: float = CLI_TIMEOUT
                 ) -> list[subprocess.CompletedProcess[str]]:
    """Run several ``p2pakash ARGS`` at once (one interpreter each); results in order."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = [subprocess.Popen([PYTHON, "-m", "p2pakash", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
               for args in commands]
    done = []
    deadline = time.monotonic() + timeout
    try:
        for args, proc in zip(commands, started, strict=True):
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            done.append(subprocess.CompletedProcess(list(args), proc.returncode, out, err))
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    return done


# ------------------------------------------------------------------ reading a block store


def _open_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection (the node may still be writing: SQLite WAL allows it)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)


def stored_hashes(data: Path) -> dict[int, bytes]:
    """height -> block hash of every block in DATA/blocks.db."""
    db = _open_ro(data / "blocks.db")
    try:
        return {int(h): bytes(v) for h, v in db.execute("SELECT height, hash FROM blocks")}
    finally:
        db.close()


def stored_commits(data: Path) -> list[Commit]:
    """Every commit in DATA/blocks.db: the stored ones and those carried by blocks."""
    db = _open_ro(data / "blocks.db")
    try:
        commits = [wire.decode(bytes(row[0]), Commit)
                   for row in db.execute("SELECT data FROM commits")]
        for (row,) in db.execute("SELECT data FROM blocks"):
            block = wire.decode(bytes(row), Block)
            if block.last_commit is not None:
                commits.append(block.last_commit)
    finally:
        db.close()
    return commits


def stored_evidence(data: Path) -> int:
    """How many double-sign evidence items the blocks in DATA/blocks.db committed."""
    db = _open_ro(data / "blocks.db")
    try:
        return int(db.execute("SELECT COUNT(*) FROM evidence").fetchone()[0])
    finally:
        db.close()


def wal_signatures(data: Path, height: int, signer: bytes) -> set[tuple[int, int, bytes]]:
    """(round, step, signature) of every proposal (step 1), prevote (2) and precommit (3)
    by ``signer`` in DATA/cs.wal's file of ``height`` (read only; empty once rotated away)."""
    path = data / "cs.wal" / f"{height:020d}.wal"
    found: set[tuple[int, int, bytes]] = set()
    for record in read_records(path, repair=False):
        if isinstance(record, ProposalEvent) and record.proposal.proposer == signer:
            found.add((record.proposal.round, 1, record.proposal.signature))
        elif isinstance(record, VoteEvent) and record.vote.validator == signer:
            step = 2 if record.vote.type is VoteType.PREVOTE else 3
            found.add((record.vote.round, step, record.vote.signature))
    return found


# ---------------------------------------- the four-process chain and its signature checks

CHAIN = "chain-proc"


@attrs.frozen(kw_only=True)
class Chain:
    net: ChainNet
    root: Path
    alice: crypto.PrivateKey  # rich, sends with the CLI
    alice_file: Path
    poor: crypto.PrivateKey
    poor_file: Path
    flows: tuple[crypto.PrivateKey, ...]  # rich, one per live node, for background load
    bob: str  # an address that only receives


def victim_commit_signatures(chain: Chain, victim: bytes
                             ) -> dict[tuple[int, int], set[tuple[bytes, bytes]]]:
    """(height, round) -> {(block hash, signature)} of the victim's precommits found in any
    commit of any validator's block store; each signature is checked."""
    found: dict[tuple[int, int], set[tuple[bytes, bytes]]] = defaultdict(set)
    for home in chain.net.homes[:4]:
        for commit in stored_commits(home.data):
            for vote in commit.votes():
                if vote.validator != victim:
                    continue
                verify_vote(vote, CHAIN)
                found[(vote.height, vote.round)].add((commit.block_hash, vote.signature))
    return found


def victim_wal_signatures(chain: Chain, height: int, victim: bytes
              ) -> defaultdict[tuple[int, int], set[bytes]]:
    """(round, step) -> signatures of the victim at ``height`` in the four WALs."""
    found: defaultdict[tuple[int, int], set[bytes]] = defaultdict(set)
    for home in chain.net.homes[:4]:
        for rnd, step, sig in wal_signatures(home.data, height, victim):
            found[(rnd, step)].add(sig)
    return found


def check_guard_signature(state: LastSign, victim: bytes) -> None:
    kind = "proposal" if state.step == SignStep.PROPOSE else "vote"
    try:
        crypto.verify(victim, kind, CHAIN, state.sign_bytes, state.signature)
    except InvalidSignature:
        pytest.fail(f"the guard's stored signature does not verify: {state}")
