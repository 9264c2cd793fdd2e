"""A chain of real node processes on 127.0.0.1: four validators and a late follower.

The homes come from ``p2pakash node init``, the genesis from the ``p2pakash genesis`` CLI,
and each node runs as ``p2pakash node start --config HOME/config.toml``. One module-scoped
testnet serves the tests in file order: transfers finalize with one block hash on every
node; bad txs are refused with their reason; a validator killed with SIGKILL while txs
flow is restarted, catches up and provably never signed conflicting votes (its signing
guard's file and every commit in every block store); a validator killed inside a height
the chain is halted at (two others paused with SIGSTOP) resumes that height from its WAL
with one signature per (round, step) in every node's WAL; a fifth node started late syncs
from genesis to the same hashes. Every wait is bounded; every process is stopped at the
end (paused ones are continued first).
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Iterator

import attrs
import pytest

from p2pakash import crypto, wire
from p2pakash.client import ApiError, NodeClient, NodeUnreachable
from p2pakash.consensus.guard import SignStep, load_state
from p2pakash.consensus.types import VoteType
from p2pakash.ledger.txs import Send, Tx, sign_tx
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
    run_cli_many,
    stored_evidence,
    stored_hashes,
    try_status,
    victim_commit_signatures,
    victim_wal_signatures,
)
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.slow

START_LIMIT = 30.0  # four fresh processes reach height 2
COMMIT_LIMIT = 15.0  # a tx is in a block on every node
CATCHUP_LIMIT = 25.0  # a restarted or late node reaches the others' height
RICH = 10**12
POOR = 1_000


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("chain")
    alice, poor = crypto.PrivateKey.generate(), crypto.PrivateKey.generate()
    crypto.save_key(root / "alice.json", alice)
    crypto.save_key(root / "poor.json", poor)
    flows = tuple(crypto.PrivateKey.generate() for _ in range(3))
    for j, key in enumerate(flows):
        crypto.save_key(root / f"flow{j}.json", key)
    homes = make_homes(root, 4, chain_id=CHAIN)
    genesis = root / "genesis.json"
    make_genesis(genesis, chain_id=CHAIN, validators=homes, via_cli=False,
                 accounts=[(alice.address, RICH), (poor.address, POOR),
                           *[(k.address, RICH) for k in flows]])
    checked = run_cli("genesis", "validate", str(genesis))
    assert checked.returncode == 0 and "4 validators" in checked.stdout, checked
    install_genesis(genesis, homes)
    net = ChainNet(homes)
    try:
        for i in range(4):
            net.start(i)
        poll(lambda: all(height_of(net.client(i)) >= 2 for i in range(4)), limit=START_LIMIT,
             what="four validators to commit block 2", describe=net.tails)
        yield Chain(net=net, root=root, alice=alice, alice_file=root / "alice.json",
                    poor=poor, poor_file=root / "poor.json", flows=flows,
                    bob=crypto.PrivateKey.generate().address)
    finally:
        net.stop_all()


def _cli_json(done: object) -> dict[str, object]:
    assert hasattr(done, "returncode") and hasattr(done, "stdout")
    assert done.returncode == 0, f"CLI failed: {getattr(done, 'stderr', '')}"
    doc = json.loads(done.stdout)
    assert isinstance(doc, dict)
    return doc


def _wait_height(chain: Chain, nodes: list[int], height: int, limit: float) -> None:
    poll(lambda: all(height_of(chain.net.client(i)) >= height for i in nodes), limit=limit,
         what=f"nodes {nodes} at height {height}", describe=chain.net.tails)


# ------------------------------------------------------------------ transfers


def test_transfers_finalize_with_one_block_hash_on_every_node(chain: Chain) -> None:
    net = chain.net
    amounts = [1_000, 2_000, 3_000]
    # Three senders at once, each through another validator's API, each waiting for its
    # block; then a second transfer from the first sender.
    sends = [("tx", "send", "--from", str(chain.root / f"flow{j}.json"), chain.bob,
              str(amount), "--node", net.homes[j].url, "--wait", "--timeout", "15", "--json")
             for j, amount in enumerate(amounts)]
    sends.append(("tx", "send", "--from", str(chain.alice_file), chain.bob, "4000",
                  "--node", net.homes[3].url, "--wait", "--timeout", "15", "--json"))
    amounts.append(4_000)
    heights = []
    for done in run_cli_many(sends):
        doc = _cli_json(done)
        assert doc["accepted"] is True and doc["sequence"] == 0, doc
        result = doc["result"]
        assert isinstance(result, dict) and result["code"] == 0, doc
        heights.append(int(result["height"]))
    top = max(heights)
    _wait_height(chain, [0, 1, 2, 3], top, COMMIT_LIMIT)

    # `query block H --json` on each node: one hash, one app hash, the tx inside.
    answers = run_cli_many([("query", "block", str(top), "--json", "--node", h.url)
                            for h in net.homes[:4]])
    blocks = [_cli_json(done) for done in answers]
    assert len({b["hash"] for b in blocks}) == 1, [b["hash"] for b in blocks]
    headers = [b["header"] for b in blocks]
    assert all(isinstance(h, dict) for h in headers)
    assert len({json.dumps(h, sort_keys=True) for h in headers}) == 1
    # Every height up to there, in every node's block store: the same block hash.
    stores = [stored_hashes(home.data) for home in net.homes[:4]]
    for h in range(1, top + 1):
        hashes = {store[h].hex() for store in stores}
        assert len(hashes) == 1, f"height {h}: nodes disagree: {hashes}"
    for i in range(4):
        account = net.client(i).account(chain.bob)
        assert account["balance"] == sum(amounts), (i, account)
        assert net.client(i).account(chain.alice.address)["sequence"] == 1


# ------------------------------------------------------------------ bad input


def _post(client: NodeClient, tx: Tx | bytes) -> ApiError:
    data = tx if isinstance(tx, bytes) else tx.encode()
    with pytest.raises(ApiError) as info:
        client.submit(data)
    return info.value


def test_bad_txs_are_refused_with_a_clear_reason(chain: Chain) -> None:
    net, client = chain.net, chain.net.client(1)
    # Insufficient funds through the CLI: one line, exit 1, the reason from the node.
    done = run_cli("tx", "send", "--from", str(chain.poor_file), chain.bob, "5000",
                   "--node", net.homes[0].url)
    assert done.returncode == 1, done
    assert re.fullmatch(r"error: tx refused by http://127\.0\.0\.1:\d+: message 0 \(Send\): "
                        rf"insufficient funds: {chain.poor.address} has {POOR} uakt, "
                        r"needs 5000\n", done.stderr), done.stderr

    seq = int(client.account(chain.alice.address)["next_sequence"])
    send = (Send(to=chain.bob, amount=1),)
    # Wrong sequence (a replay of an old one, then one from the future).
    for wrong in [w for w in (seq - 1, seq + 5) if w >= 0]:
        err = _post(client, sign_tx(chain.alice, CHAIN, sequence=wrong, msgs=send))
        assert err.status == 400, err.body
        assert err.body["reason"] == (f"wrong sequence for {chain.alice.address}: "
                                      f"expected {seq}, got {wrong}"), err.body
        assert err.body["accepted"] is False and err.body["code"] != 0
    # Bad signature: a flipped bit, and a tx signed for another chain.
    good = sign_tx(chain.alice, CHAIN, sequence=seq, msgs=send)
    flipped = attrs.evolve(good, signature=bytes([good.signature[0] ^ 1]) + good.signature[1:])
    other_chain = sign_tx(chain.alice, "another-chain", sequence=seq, msgs=send)
    for bad in (flipped, other_chain):
        err = _post(client, bad)
        assert err.status == 400 and "bad signature" in str(err), err.body
    # Insufficient funds through the API, for a funded account sending too much.
    err = _post(client, sign_tx(chain.alice, CHAIN, sequence=seq,
                                msgs=(Send(to=chain.bob, amount=RICH * 2),)))
    assert err.status == 400 and "insufficient funds" in str(err), err.body
    # Not a tx at all.
    err = _post(client, b"\x01\x02\x03")
    assert err.status == 400 and str(err).startswith("malformed tx"), err.body
    # None of these took the sequence: the good tx still goes through, once.
    assert client.submit(good.encode())["accepted"] is True
    err = _post(client, good)
    assert err.status == 409 and str(err).startswith("duplicate tx"), err.body
    found = client.wait_for_tx(good.hash().hex(), timeout=COMMIT_LIMIT)
    assert found["code"] == 0, found


# ------------------------------------------------------------------ crash and restart


class Load:
    """Background transfers: flow key i signs in order and submits to node i only (so
    its sequence never races gossip)."""

    def __init__(self, chain: Chain, nodes: list[int]) -> None:
        self.chain = chain
        self.nodes = nodes
        self.stop = threading.Event()
        self.accepted: list[str] = []
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        clients = [self.chain.net.client(i, timeout=3.0) for i in self.nodes]
        seqs = [int(c.account(k.address)["next_sequence"])
                for c, k in zip(clients, self.chain.flows, strict=False)]
        for _ in range(2_000):  # bounded: about 20 s at most
            if self.stop.is_set():
                return
            for j, client in enumerate(clients):
                key = self.chain.flows[j]
                tx = sign_tx(key, CHAIN, sequence=seqs[j], msgs=(Send(to=self.chain.bob,
                                                                      amount=7),))
                try:
                    client.submit(tx.encode())
                except (ApiError, NodeUnreachable) as exc:
                    self.errors.append(f"node{self.nodes[j]}: {exc}")
                    continue
                seqs[j] += 1
                self.accepted.append(tx.hash().hex())
            time.sleep(0.01)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_killed_validator_catches_up_and_never_signs_conflicting_votes(chain: Chain) -> None:
    net = chain.net
    victim_i, victim_home = 3, net.homes[3]
    victim = victim_home.key.public
    guard_file = victim_home.data / "priv_validator_state.json"
    live = [0, 1, 2]
    with Load(chain, live) as load:
        start = height_of(net.client(0))
        _wait_height(chain, [0, 1, 2, 3], start + 3, COMMIT_LIMIT)
        poll(lambda: len(load.accepted) >= 30, limit=COMMIT_LIMIT, what="txs to flow",
             describe=lambda: "\n".join(load.errors[-5:]))
        net.nodes[victim_i].kill()  # SIGKILL mid-run: no shutdown, no flush
        at_crash = load_state(guard_file)
        crashed_at = height_of(net.client(0))
        assert at_crash.height >= start, at_crash
        check_guard_signature(at_crash, victim)
        # 3 of 4 (power 30 of 40 > 2/3): the chain goes on without it.
        _wait_height(chain, live, crashed_at + 3, COMMIT_LIMIT)
        restarted_at = height_of(net.client(0))
        net.start(victim_i)
        poll(lambda: height_of(net.client(victim_i)) >= height_of(net.client(0)) - 1,
             limit=CATCHUP_LIMIT, what="the restarted validator to catch up",
             describe=net.tails)

        def signs_again() -> bool:  # its precommit is in a commit made after the restart
            latest = net.client(0).block("latest")
            signers = {s for c in (latest.get("commit"), latest.get("last_commit")) if c
                       for s in c["signers"]}
            return int(latest["height"]) > restarted_at + 1 and victim.hex() in signers
        poll(signs_again, limit=CATCHUP_LIMIT, what="the restarted validator to sign blocks",
             describe=net.tails)
        moved = load.accepted[:]
    assert len(moved) >= 30, load.errors[-5:]
    for tx_hash in (moved[-1], moved[-2], moved[-3]):  # the last tx of each flow key
        assert net.client(0).wait_for_tx(tx_hash, timeout=COMMIT_LIMIT)["code"] == 0
    final = height_of(net.client(0))
    _wait_height(chain, [0, 1, 2, 3], final, CATCHUP_LIMIT)

    # The signing guard: never a step backwards across the crash, its signature genuine.
    after = load_state(guard_file)
    assert after.hrs > at_crash.hrs, (at_crash, after)
    assert after.height > restarted_at, (restarted_at, after)
    check_guard_signature(after, victim)
    # Every commit in every block store: one signature per (height, round) by the victim.
    sigs = victim_commit_signatures(chain, victim)
    assert sigs, "the victim's precommits are in no commit"
    conflicts = {hr: s for hr, s in sigs.items() if len(s) > 1}
    assert not conflicts, f"conflicting precommits by the victim: {conflicts}"
    if at_crash.step == SignStep.PRECOMMIT:  # what it signed before dying is what it kept
        for block_hash, signature in sigs.get((at_crash.height, at_crash.round), set()):
            assert signature == at_crash.signature, "re-signed the crash height differently"
            assert at_crash.sign_bytes == wire.encode(
                [int(VoteType.PRECOMMIT), at_crash.height, at_crash.round, block_hash,
                 at_crash.timestamp_ms, victim])
    # The ledger agrees: no evidence committed, the victim neither jailed nor slashed.
    for home in net.homes[:4]:
        assert stored_evidence(home.data) == 0, home.name
    done = run_cli("query", "validators", "--json", "--node", net.homes[0].url)
    record = next(v for v in _cli_json(done)["validators"]  # type: ignore[attr-defined]
                  if v["pubkey"] == victim.hex())
    assert (record["jailed"], record["tombstoned"]) == (False, False), record
    assert record["tokens"] == VALIDATOR_STAKE and record["power"] == 10, record
    for node in net.nodes:
        assert "double sign by" not in node.text(), node.tail()


def test_validator_killed_in_a_halted_height_resumes_it_without_double_signing(
        chain: Chain) -> None:
    """Two validators paused (SIGSTOP): the chain halts at height H (2 of 4 is not > 2/3)
    after node0 and the victim voted in it. The victim is SIGKILLed there and restarted
    into the same height: it rebuilds H from its WAL, its guard never moves backwards, and
    once the paused two resume, H is decided with no conflicting vote by anyone."""
    net = chain.net
    victim_i, victim_home = 3, net.homes[3]
    victim = victim_home.key.public
    guard_file = victim_home.data / "priv_validator_state.json"
    paused = [net.nodes[1], net.nodes[2]]
    _wait_height(chain, [0, 1, 2, 3], height_of(net.client(0)) + 1, COMMIT_LIMIT)
    halted: list[int] = []
    try:
        for node in paused:
            assert node.proc is not None
            node.proc.send_signal(signal.SIGSTOP)

        def voted_in_a_halted_height() -> bool:
            tops = {height_of(net.client(i)) for i in (0, victim_i)}
            state = load_state(guard_file)
            if len(tops) == 1 and state.height == min(tops) + 1 and state.step >= 2:
                halted[:] = [state.height]
                return True
            return False
        poll(voted_in_a_halted_height, limit=COMMIT_LIMIT,
             what="the victim voting in the halted height", describe=net.tails)
        time.sleep(0.5)  # a few timeouts of that height pass with nothing to decide
        height = halted[0]
        assert height_of(net.client(0)) == height - 1, "the chain did not halt"
        net.nodes[victim_i].kill()
        at_crash = load_state(guard_file)
        check_guard_signature(at_crash, victim)
        assert at_crash.height == height, (at_crash, height)
        victim_node = net.start(victim_i)  # a fresh log file
        victim_node.wait_log(rf"replayed \d+ WAL records of height {height}\b",
                             limit=CATCHUP_LIMIT)
        time.sleep(0.5)  # it runs the height again, two of four still paused
        assert load_state(guard_file).hrs >= at_crash.hrs
        assert height_of(net.client(0)) == height - 1, "the chain moved with two paused"
        seen = victim_wal_signatures(chain, height, victim)
    finally:
        for node in paused:
            if node.alive and node.proc is not None:
                node.proc.send_signal(signal.SIGCONT)

    def decided() -> bool:  # read the WALs of height H until (and once after) it is decided
        done = height_of(net.client(0)) >= height
        for key, sigs in victim_wal_signatures(chain, height, victim).items():
            seen[key] |= sigs
        return done
    poll(decided, limit=CATCHUP_LIMIT, what=f"height {height} decided", describe=net.tails,
         interval=0.02)
    # Every proposal and vote of the victim at H that any node logged (the victim's own
    # before and after the crash, node0's during the halt, everyone's at the decision):
    # one signature per (round, step).
    assert (at_crash.round, at_crash.step, at_crash.signature) in {
        (r, st, sig) for (r, st), sigs in seen.items() for sig in sigs}, seen
    doubled = {key: sorted(sig.hex()[:16] for sig in sigs)
               for key, sigs in seen.items() if len(sigs) > 1}
    assert not doubled, f"the victim signed twice at height {height}: {doubled}"
    _wait_height(chain, [0, 1, 2, 3], height + 2, CATCHUP_LIMIT)
    after = load_state(guard_file)
    assert after.hrs > at_crash.hrs and after.height > height, (at_crash, after)
    sigs = victim_commit_signatures(chain, victim)
    conflicts = {hr: s for hr, s in sigs.items() if len(s) > 1}
    assert not conflicts, f"conflicting precommits by the victim: {conflicts}"
    for home in net.homes[:4]:
        assert stored_evidence(home.data) == 0, home.name
    for node in net.nodes:
        assert "double sign by" not in node.text(), node.tail()
    record = next(v for v in net.client(0).validators()["validators"]
                  if v["pubkey"] == victim.hex())
    assert (record["jailed"], record["tombstoned"], record["tokens"]) == (
        False, False, VALIDATOR_STAKE), record


# ------------------------------------------------------------------ a late follower


def test_late_follower_syncs_from_genesis_to_the_same_hashes(chain: Chain) -> None:
    net = chain.net
    (home,) = make_homes(chain.root, 1, chain_id=CHAIN, first=4, seed=net.homes[0].peer)
    install_genesis(chain.root / "genesis.json", [home])
    i = net.add(home)
    target = height_of(net.client(0))
    assert target > 10, target
    follower = net.start(i)
    follower.wait_log(r"block sync done at height \d+ \(\d+ blocks\)", limit=CATCHUP_LIMIT)
    poll(lambda: height_of(net.client(i)) >= target, limit=CATCHUP_LIMIT,
         what=f"the follower at height {target}", describe=net.tails)
    status = try_status(net.client(i))
    assert status is not None and status["validator"] is False, status
    assert "bad block" not in follower.text(), follower.tail()
    # Its block store holds every block from 1, each with the validators' hash.
    theirs, ours = stored_hashes(net.homes[0].data), stored_hashes(home.data)
    assert set(range(1, target + 1)) <= set(ours), sorted(set(range(1, target + 1)) - set(ours))
    for h in range(1, target + 1):
        assert ours[h] == theirs[h], f"height {h}: follower {ours[h].hex()} != {theirs[h].hex()}"
    # And it executed them (each synced block's app hash is checked against its own
    # state): the same block at the target height, the same app hash at a common height.
    done = run_cli_many([("query", "block", str(target), "--json", "--node", url)
                         for url in (net.homes[0].url, home.url)])
    a, b = (_cli_json(d) for d in done)
    assert a["hash"] == b["hash"] and a["header"] == b["header"], (a, b)
    seen: list[tuple[object, object]] = []

    def same_state() -> bool:
        x, y = try_status(net.client(0)), try_status(net.client(i))
        if x is None or y is None:
            return False
        seen.append(((x["height"], x["app_hash"]), (y["height"], y["app_hash"])))
        return bool(x["height"] == y["height"] and x["app_hash"] == y["app_hash"])
    poll(same_state, limit=COMMIT_LIMIT, what="node0 and the follower at one height and "
         "app hash", describe=lambda: f"{seen[-5:]}\n{net.tails()}")
