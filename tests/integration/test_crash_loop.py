"""SIGKILL a validator at random points of block commit, again and again, while txs flow.

Four validator processes on 127.0.0.1 (homes from ``node init``; a genesis in which missed
blocks never jail, so the victim stays a validator however often it dies) and a tx load:
three accounts each keep one Send in flight through one of validators 0-2 and record the
height, index and code its API reports once the tx is in a block. Validator 3 is the victim.
Each iteration of a seeded plan restarts it either armed with
``P2PAKASH_CRASH_AT=<point>:<n>`` (``p2pakash.faults``; n drawn so the crash falls in block
sync or soon after it) or clean, to be SIGKILLed from outside at a random moment once it
has caught up; then it waits for the death (SIGKILL, nothing else) and checks, from files:

* every block the victim stored has the peers' hash; its chain state row S, ledger height L
  and top block B satisfy S <= L <= B <= S + 1, and its ledger's app hash at L is the
  chain's (no torn ledger transaction);
* every recorded tx at or below B is in its stored block at the recorded height and index;
* its signing guard's state verifies and never moved backwards; at each height in its WAL
  every node's WAL holds one signature of it per (round, step); every commit in every block
  store holds one precommit of it per (height, round) (the checkers of
  test_chain_processes);

and, whenever it was seen caught up before dying, live through its API: its block hash and
app hash are the chain's, and the txs recorded since the last such check have the same
height, index and code on it. At the end it restarts clean and catches up; all four nodes
agree on every block, no evidence was committed, no node logged a double sign, and the
victim is neither jailed nor slashed. ``run_loop`` returns the figures for the bench.

The test runs 10 iterations (every crash kind once, the first two twice): an iteration
costs 3.5-6 s on the shared 2-core machine (mostly the victim's interpreter start-up), so
50 do not fit the two-minute budget of ``make test``; ``bench/crash_loop.py --iterations
50`` runs the 50-iteration loop with the same checks.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from p2pakash import crypto, faults, wire
from p2pakash.client import ApiError, NodeClient, NodeUnreachable
from p2pakash.consensus.guard import LastSign, load_state
from p2pakash.consensus.messages import ChainState
from p2pakash.consensus.types import Block
from p2pakash.errors import ConfigError
from p2pakash.ledger.params import Params
from p2pakash.ledger.state import K_APP_HASH, K_HEIGHT, decode_record
from p2pakash.ledger.txs import Send, sign_tx, tx_hash
from tests.integration.chain_helpers import (
    CHAIN,
    VALIDATOR_STAKE,
    Chain,
    ChainNet,
    check_guard_signature,
    height_of,
    install_genesis,
    make_genesis,
    make_homes,
    poll,
    stored_evidence,
    stored_hashes,
    try_status,
    victim_commit_signatures,
    victim_wal_signatures,
)

SEED = 8
ITERATIONS = 10  # every kind at least once; bench/crash_loop.py runs 50
VICTIM = 3
LIVE = (0, 1, 2)
EXTERNAL = "external"
KINDS = (*faults.POINTS, EXTERNAL)
FINALIZE_POINTS = {"block_store_before", "block_store_after", "ledger_apply_after",
                   "state_persist_after"}
START_LIMIT = 30.0
DEATH_LIMIT = 20.0  # an armed victim reaches its crash point
CATCHUP_LIMIT = 25.0
BLOCK_LIMIT = 20.0  # the chain makes the next block (slow only on a starved machine)


@attrs.frozen(kw_only=True)
class Seen:
    """Where the API said a tx committed, and with which code."""

    height: int
    index: int
    code: int | None


class TxLoad:
    """Account j keeps one Send in flight through node LIVE[j]: submit, poll its /tx until
    the tx is in a block, record it, sign the next."""

    def __init__(self, net: ChainNet, keys: list[crypto.PrivateKey], to: str) -> None:
        self.net, self.keys, self.to = net, keys, to
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.committed: dict[str, Seen] = {}
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def snapshot(self) -> dict[str, Seen]:
        with self.lock:
            return dict(self.committed)

    def _run(self) -> None:
        clients = [self.net.client(i, timeout=3.0) for i in LIVE]
        seqs = [int(c.account(k.address)["next_sequence"])
                for c, k in zip(clients, self.keys, strict=True)]
        flight: list[str | None] = [None] * len(self.keys)
        for _ in range(100_000):  # bounded: the test stops it long before
            if self.stop.wait(0.03):
                return
            for j, client in enumerate(clients):
                try:
                    self._step(j, client, seqs, flight)
                except (ApiError, NodeUnreachable) as exc:
                    self.errors.append(f"node{LIVE[j]}: {exc}")

    def _step(self, j: int, client: NodeClient, seqs: list[int], flight: list[str | None]
              ) -> None:
        pending = flight[j]
        if pending is None:
            tx = sign_tx(self.keys[j], CHAIN, sequence=seqs[j],
                         msgs=(Send(to=self.to, amount=1 + seqs[j] % 5),))
            client.submit(tx.encode())
            flight[j] = tx.hash().hex()
            seqs[j] += 1
            return
        try:
            found = client.tx(pending)
        except ApiError as exc:
            if exc.status == 404:  # in a block, not yet indexed
                return
            raise
        if found.get("pending"):
            return
        with self.lock:
            self.committed[pending] = Seen(height=int(found["height"]),
                                           index=int(found["index"]), code=found["code"])
        flight[j] = None

    def __enter__(self) -> TxLoad:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


# ------------------------------------------------------------------ reading a dead node


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)


def ledger_top(data: Path) -> tuple[int, bytes]:
    """(height, app hash) of the ledger committed in DATA/state.db."""
    db = _ro(data / "state.db")
    try:
        rows = dict(db.execute("SELECT k, v FROM kv WHERE k IN (?, ?)", (K_HEIGHT, K_APP_HASH)))
    finally:
        db.close()
    return (decode_record(bytes(rows[K_HEIGHT]), int),
            decode_record(bytes(rows[K_APP_HASH]), bytes))


def chain_state(data: Path) -> ChainState:
    db = _ro(data / "blocks.db")
    try:
        (raw,) = db.execute("SELECT data FROM state WHERE id = 1").fetchone()
    finally:
        db.close()
    return wire.decode(bytes(raw), ChainState)


def block_txs(data: Path, heights: set[int]) -> dict[int, list[str]]:
    """height -> hex hashes of the txs of each stored block among ``heights``."""
    db = _ro(data / "blocks.db")
    try:
        rows = db.execute("SELECT height, data FROM blocks").fetchall()
    finally:
        db.close()
    return {int(h): [tx_hash(raw).hex() for raw in wire.decode(bytes(d), Block).txs]
            for h, d in rows if int(h) in heights}


# ------------------------------------------------------------------ the loop


@attrs.define
class Figures:
    iterations: int = 0
    kinds: collections.Counter[str] = attrs.field(factory=collections.Counter)
    caught_up_first: int = 0  # iterations whose live check ran before the death
    live_txs_checked: int = 0
    txs_committed: int = 0
    heals: int = 0
    seconds: float = 0.0
    alive_seconds: float = 0.0  # from the victim's start to its death
    check_seconds: float = 0.0  # the file checks after each death
    final_height: int = 0


@contextlib.contextmanager
def _armed(value: str | None) -> Iterator[None]:
    """``P2PAKASH_CRASH_AT`` for the processes started inside (the test reads it never)."""
    old = os.environ.pop(faults.ENV, None)
    if value is not None:
        os.environ[faults.ENV] = value
    try:
        yield
    finally:
        os.environ.pop(faults.ENV, None)
        if old is not None:
            os.environ[faults.ENV] = old


def _count(kind: str, lag: int, rng: random.Random) -> int:
    """The n of ``kind:n``: finalize points fall in the sync of the lag or just after it."""
    if kind in FINALIZE_POINTS:
        return lag + rng.randint(1, 6)
    if kind == "ledger_write":
        return rng.randint(1, (lag + 3) * 8)
    if kind == "guard_write_after":
        return rng.randint(1, 10)
    return rng.randint(1, 60)  # wal_write_after


class Loop:
    def __init__(self, chain: Chain, load: TxLoad, rng: random.Random) -> None:
        self.chain, self.net, self.load, self.rng = chain, chain.net, load, rng
        self.home = self.net.homes[VICTIM]
        self.victim = self.home.key.public
        self.guard_file = self.home.data / "priv_validator_state.json"
        self.last_sign = LastSign()
        self.live_checked: set[str] = set()
        self.figures = Figures()

    def app_hash_after(self, height: int) -> bytes:
        """The chain's app hash after ``height``: block height+1's header, from node0."""
        poll(lambda: height_of(self.net.client(0)) >= height + 1, limit=BLOCK_LIMIT,
             what=f"node0 at height {height + 1}", describe=self.net.tails)
        return bytes.fromhex(self.net.client(0).block(height + 1)["header"]["app_hash"])

    def iteration(self, kind: str) -> None:
        victim_node = self.net.nodes[VICTIM]
        target = height_of(self.net.client(0))
        lag = max(0, target - chain_state(self.home.data).height)
        armed = None if kind == EXTERNAL else f"{kind}:{_count(kind, lag, self.rng)}"
        began = time.monotonic()
        with _armed(armed):
            self.net.start(VICTIM)
        checked = False
        deadline = time.monotonic() + (CATCHUP_LIMIT if armed is None else DEATH_LIMIT)
        while victim_node.alive:
            if time.monotonic() > deadline:
                victim_node.kill()
                pytest.fail(f"iteration {self.figures.iterations} ({armed or kind}): the "
                            f"victim neither died nor caught up\n{self.net.tails()}")
            if not checked and self.live_check(target):
                checked = True
                self.figures.caught_up_first += 1
                if armed is None:  # external: SIGKILL at a random moment of the next blocks
                    time.sleep(self.rng.uniform(0.0, 0.4))
                    victim_node.kill()
                    break
            time.sleep(0.02)
        assert victim_node.proc is not None
        code = victim_node.proc.wait(timeout=10)
        assert code == -signal.SIGKILL, (
            f"iteration {self.figures.iterations} ({armed or kind}): the victim exited with "
            f"{code}, not by SIGKILL\n{victim_node.tail()}")
        self.figures.kinds[kind] += 1
        self.figures.heals += victim_node.text().count("healed storage")
        died = time.monotonic()
        self.figures.alive_seconds += died - began
        self.check_files()
        self.figures.check_seconds += time.monotonic() - died

    def live_check(self, target: int) -> bool:
        """If the victim is at ``target`` or beyond: its block hash and app hash are the
        chain's and the txs recorded since the last check are the same on it. False if it
        is behind (or gone)."""
        client = self.net.client(VICTIM, timeout=2.0)
        status = try_status(client)
        if status is None or int(status["height"]) < target:
            return False
        h = int(status["height"])
        assert status["latest_block_hash"] == self.net.client(0).block(h)["hash"], (h, status)
        assert bytes.fromhex(status["app_hash"]) == self.app_hash_after(h), (h, status)
        for tx, seen in sorted(self.load.snapshot().items()):
            if tx in self.live_checked or seen.height > h:
                continue
            try:
                found = client.tx(tx)
            except (NodeUnreachable, ApiError):
                break  # it died under us: the next live check goes on from here
            assert (found["height"], found["index"]) == (seen.height, seen.index), (tx, found)
            assert found["code"] in (seen.code, None), (tx, found, seen)  # None: backfilled
            self.live_checked.add(tx)
            self.figures.live_txs_checked += 1
        return True

    def check_files(self) -> None:
        data = self.home.data
        ours, theirs = stored_hashes(data), stored_hashes(self.net.homes[0].data)
        top = max(ours, default=0)
        if top > max(theirs, default=0):
            poll(lambda: height_of(self.net.client(0)) >= top, limit=BLOCK_LIMIT,
                 what=f"node0 at height {top}", describe=self.net.tails)
            theirs = stored_hashes(self.net.homes[0].data)
        for h, block_hash in ours.items():
            assert theirs[h] == block_hash, f"height {h}: the victim stored another block"
        state = chain_state(data)
        ledger_h, app_hash = ledger_top(data)
        assert state.height <= ledger_h <= top <= state.height + 1, (state.height, ledger_h, top)
        assert app_hash == self.app_hash_after(ledger_h), f"ledger app hash at {ledger_h}"
        assert state.app_hash == self.app_hash_after(state.height), "chain state app hash"
        if state.height:
            assert state.last_block_hash == ours[state.height], "chain state block hash"
        txs = {tx: seen for tx, seen in self.load.snapshot().items() if seen.height <= top}
        stored = block_txs(data, {seen.height for seen in txs.values()})
        for tx, seen in txs.items():
            assert stored[seen.height][seen.index] == tx, f"tx {tx} lost at {seen.height}"
        self.check_signatures()

    def check_signatures(self) -> None:
        state = load_state(self.guard_file)
        if state.height:
            check_guard_signature(state, self.victim)
        assert state.hrs >= self.last_sign.hrs, ("the guard moved back", self.last_sign, state)
        self.last_sign = state
        heights = {int(p.stem) for p in (self.home.data / "cs.wal").glob("*.wal")}
        for height in sorted(heights | {state.height}):
            found = victim_wal_signatures(self.chain, height, self.victim)
            doubled = {k: s for k, s in found.items() if len(s) > 1}
            assert not doubled, f"the victim signed twice at height {height}: {doubled}"
        conflicts = {hr: s for hr, s in victim_commit_signatures(self.chain, self.victim).items()
                     if len(s) > 1}
        assert not conflicts, f"conflicting precommits by the victim: {conflicts}"


    def finish(self) -> None:
        """Restart clean: the victim catches up, every tx checks out on it, and all four
        nodes agree on every block they share."""
        self.net.start(VICTIM)
        target = height_of(self.net.client(0))
        poll(lambda: self.live_check(target), limit=CATCHUP_LIMIT,
             what="the victim to catch up after the loop", describe=self.net.tails)
        poll(lambda: self.live_check(target) and self.live_checked >= set(
            tx for tx, s in self.load.snapshot().items() if s.height <= target),
             limit=CATCHUP_LIMIT, what="every tx checked on the victim", describe=self.net.tails)
        stores = [stored_hashes(home.data) for home in self.net.homes]
        common = set.intersection(*(set(s) for s in stores))
        assert len(common) >= target - 1, (len(common), target)
        for h in sorted(common):
            assert len({s[h] for s in stores}) == 1, f"height {h}: the nodes disagree"
        for home in self.net.homes:
            assert stored_evidence(home.data) == 0, home.name
            for log in home.path.glob("node*.log"):
                assert "double sign by" not in log.read_text(errors="replace"), log
        record = next(v for v in self.net.client(0).validators()["validators"]
                      if v["pubkey"] == self.victim.hex())
        assert (record["jailed"], record["tombstoned"], record["tokens"]) == (
            False, False, VALIDATOR_STAKE), record
        self.figures.final_height = height_of(self.net.client(0))
        self.figures.txs_committed = len(self.load.snapshot())


def make_chain(root: Path) -> Chain:
    """Four validator homes and a genesis in which missed blocks never jail."""
    keys = [crypto.PrivateKey.generate() for _ in LIVE]
    homes = make_homes(root, 4, chain_id=CHAIN)
    genesis = root / "genesis.json"
    make_genesis(genesis, chain_id=CHAIN, validators=homes, via_cli=False,
                 accounts=[(k.address, 10**12) for k in keys], params=Params(min_signed_bps=0))
    install_genesis(genesis, homes)
    return Chain(net=ChainNet(homes), root=root, alice=keys[0], alice_file=root / "none",
                 poor=keys[1], poor_file=root / "none", flows=tuple(keys),
                 bob=crypto.PrivateKey.generate().address)


def run_loop(root: Path, iterations: int, seed: int) -> Figures:
    """Run the crash loop on a fresh testnet under ``root``; the figures it measured."""
    rng = random.Random(seed)
    plan = [KINDS[i % len(KINDS)] for i in range(iterations)]
    rng.shuffle(plan)
    chain = make_chain(root)
    net = chain.net
    try:
        for i in range(4):
            net.start(i)
        poll(lambda: all(height_of(net.client(i)) >= 2 for i in range(4)), limit=START_LIMIT,
             what="four validators to commit block 2", describe=net.tails)
        with TxLoad(net, list(chain.flows), chain.bob) as load:
            loop = Loop(chain, load, rng)
            net.nodes[VICTIM].kill()
            start = time.monotonic()
            for kind in plan:
                loop.iteration(kind)
                loop.figures.iterations += 1
            loop.figures.seconds = time.monotonic() - start
            loop.finish()
            assert len(load.snapshot()) >= iterations, ("too few txs", load.errors[-5:])
        return loop.figures
    finally:
        net.stop_all()


@pytest.mark.slow
def test_sigkill_at_random_commit_points_never_forks_double_signs_or_loses_a_tx(
        tmp_path: Path) -> None:
    figures = run_loop(tmp_path, ITERATIONS, SEED)
    print(f"\ncrash loop: {figures}")
    assert figures.iterations == ITERATIONS
    assert set(figures.kinds) == set(KINDS), figures.kinds
    assert figures.caught_up_first > 0 and figures.live_txs_checked > 0, figures


# ------------------------------------------------------------------ p2pakash.faults


def test_crash_point_parse_names_the_variable_and_the_known_points() -> None:
    assert faults.parse("ledger_write") == ("ledger_write", 1)
    assert faults.parse("guard_write_after:7") == ("guard_write_after", 7)
    with pytest.raises(ConfigError, match=r"P2PAKASH_CRASH_AT='ledger_wrte:2': unknown "
                                          r"crash point 'ledger_wrte' \(known: block_store"):
        faults.parse("ledger_wrte:2")
    for bad in ("ledger_write:0", "ledger_write:x", "ledger_write:"):
        with pytest.raises(ConfigError, match="must be a positive integer"):
            faults.parse(bad)


def _run_points(env: str, calls: int) -> subprocess.CompletedProcess[str]:
    code = ("from p2pakash import faults\n"
            f"for i in range({calls}):\n"
            "    faults.crash_point('guard_write_after')\n"
            "    faults.crash_point('ledger_write')\n"
            "    print(i, flush=True)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, env=dict(os.environ, **{faults.ENV: env}))


def test_crash_point_kills_the_process_on_the_nth_call_of_its_point_only() -> None:
    done = _run_points("ledger_write:3", 5)
    assert done.returncode == -signal.SIGKILL, done
    assert done.stdout.split() == ["0", "1"], done.stdout  # died in the third round
    done = _run_points("block_store_before", 5)  # armed, never called: no crash
    assert done.returncode == 0 and done.stdout.split() == ["0", "1", "2", "3", "4"], done
    done = _run_points("nowhere:1", 1)
    assert done.returncode == 1 and "unknown crash point 'nowhere'" in done.stderr, done
