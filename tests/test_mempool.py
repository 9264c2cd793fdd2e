"""The mempool against a real Ledger: admission, dedupe, limits, recheck, reap, gossip verdicts."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from p2pakash import crypto, wire
from p2pakash.crypto import NodeID
from p2pakash.errors import LocalProtocolError
from p2pakash.gossip.pubsub import Verdict
from p2pakash.ledger import UAKT_PER_AKT as AKT
from p2pakash.ledger import Code, Ledger, MemoryKV, Send, Tx, TxBatch, sign_tx
from p2pakash.mempool import Mempool, Status, tx_validator
from tests import test_imports_pure
from tests.ledger.helpers import CHAIN, USERS, Chain, genesis, new_ledger

ALICE, BOB, CAROL = USERS[0], USERS[1], USERS[2]


def send(key: crypto.PrivateKey, seq: int, amount: int = 1, *, fee: int = 0,
         to: str | None = None, memo: str = "") -> bytes:
    tx = sign_tx(key, CHAIN, sequence=seq, fee=fee, memo=memo,
                 msgs=(Send(to=to or CAROL.address, amount=amount),))
    return tx.encode()


@pytest.fixture
def ledger() -> Ledger:
    return new_ledger()


@pytest.fixture
def pool(ledger: Ledger) -> Mempool:
    return Mempool.for_ledger(ledger)


def test_mempool_module_is_sans_io() -> None:
    path = Path(__file__).parent.parent / "p2pakash" / "mempool.py"
    test_imports_pure.test_core_module_is_sans_io(path)


def test_sequences_chain_within_the_pool(pool: Mempool) -> None:
    results = [pool.add(send(ALICE, seq)) for seq in range(3)]
    assert [r.accepted for r in results] == [True, True, True]
    assert all(r.status is Status.ADMITTED and r.reason == "" for r in results)
    assert pool.size == 3


def test_replayed_sequence_is_refused_with_the_expected_one(pool: Mempool) -> None:
    assert pool.add(send(ALICE, 0)).accepted
    assert pool.add(send(ALICE, 1)).accepted
    replay = pool.add(send(ALICE, 0, amount=2))  # other bytes, same sequence
    assert not replay.accepted
    assert replay.status is Status.INVALID and replay.code == Code.WRONG_SEQUENCE
    assert "wrong sequence" in replay.reason and "expected 2, got 0" in replay.reason


def test_sequence_gap_is_refused(pool: Mempool) -> None:
    result = pool.add(send(ALICE, 1))
    assert not result.accepted and "expected 0, got 1" in result.reason


def test_bad_signature_is_refused_and_permanent(pool: Mempool) -> None:
    tx = wire.decode(send(ALICE, 0), Tx)
    forged = attrs.evolve(tx, signature=bytes(64))
    result = pool.add(forged.encode())
    assert not result.accepted and result.code == Code.BAD_SIGNATURE
    assert result.permanent and "bad signature" in result.reason
    wrong_chain = sign_tx(ALICE, "other-chain", sequence=0, msgs=(Send(to=BOB.address,
                                                                      amount=1),))
    assert pool.add(wrong_chain.encode()).code == Code.BAD_SIGNATURE
    assert pool.size == 0


def test_insufficient_funds_counts_admitted_spends(pool: Mempool) -> None:
    balance = 100 * AKT
    assert pool.add(send(ALICE, 0, amount=balance - 10)).accepted
    result = pool.add(send(ALICE, 1, amount=11))
    assert not result.accepted and result.code == Code.INSUFFICIENT_FUNDS
    assert not result.permanent
    assert pool.add(send(ALICE, 1, amount=10)).accepted


def test_malformed_bytes_are_refused(pool: Mempool) -> None:
    for junk in (b"", b"\xff\x00garbage", wire.encode(Send(to=BOB.address, amount=1))):
        result = pool.add(junk)
        assert not result.accepted and result.status is Status.MALFORMED
        assert result.reason.startswith("malformed tx: ") and result.permanent
    trailing = send(ALICE, 0) + b"\x00"
    assert pool.add(trailing).status is Status.MALFORMED
    assert pool.size == 0


def test_duplicates_are_refused_before_any_check(ledger: Ledger) -> None:
    calls: list[Tx] = []
    copy = ledger.copy_for_check()

    def check(tx: Tx) -> None:
        calls.append(tx)
        copy.check_tx(tx)

    pool = Mempool(check)
    raw = send(ALICE, 0)
    assert pool.add(raw).accepted
    again = pool.add(raw)
    assert again.status is Status.DUPLICATE and "already in the mempool" in again.reason
    assert len(calls) == 1 and pool.size == 1


def test_committed_tx_resubmitted_is_a_duplicate(ledger: Ledger, pool: Mempool) -> None:
    raw = send(ALICE, 0)
    assert pool.add(raw).accepted
    Chain(ledger).block(raw)
    pool.update(1, [raw])
    result = pool.add(raw)
    assert result.status is Status.DUPLICATE and "seen recently" in result.reason
    assert pool.seen(result.tx_hash) and not pool.has(result.tx_hash)


def test_evicted_from_cache_a_committed_replay_fails_on_sequence(ledger: Ledger) -> None:
    pool = Mempool.for_ledger(ledger, cache_size=1)
    raw = send(ALICE, 0)
    Chain(ledger).block(raw)
    pool.update(1, [raw, send(BOB, 0)])  # BOB's hash pushes ALICE's out of the cache
    result = pool.add(raw)
    assert result.status is Status.INVALID and "expected 1, got 0" in result.reason


def test_refused_tx_is_not_cached(ledger: Ledger, pool: Mempool) -> None:
    raw = send(ALICE, 0, amount=200 * AKT)
    assert pool.add(raw).code == Code.INSUFFICIENT_FUNDS
    assert pool.add(raw).status is Status.INVALID  # judged again, not "duplicate"


def test_tx_size_limit(ledger: Ledger) -> None:
    small = send(ALICE, 0)
    pool = Mempool.for_ledger(ledger, max_tx_bytes=len(small))
    assert pool.add(small).accepted
    big = send(ALICE, 1, memo="x" * 50)
    result = pool.add(big)
    assert result.status is Status.MALFORMED and "tx too large" in result.reason


def test_count_and_byte_limits(ledger: Ledger) -> None:
    pool = Mempool.for_ledger(ledger, max_txs=2)
    assert pool.add(send(ALICE, 0)).accepted and pool.add(send(ALICE, 1)).accepted
    full = pool.add(send(BOB, 0))
    assert full.status is Status.FULL and "mempool is full (2 txs" in full.reason
    raw = send(ALICE, 0)
    by_bytes = Mempool.for_ledger(ledger, max_bytes=len(raw) + 10)
    assert by_bytes.add(raw).accepted
    assert by_bytes.add(send(BOB, 0)).status is Status.FULL
    assert by_bytes.bytes == len(raw)


def test_full_pool_refusal_is_not_cached(ledger: Ledger) -> None:
    pool = Mempool.for_ledger(ledger, max_txs=1)
    first, second = send(ALICE, 0), send(BOB, 0)
    assert pool.add(first).accepted
    assert pool.add(second).status is Status.FULL
    Chain(ledger).block(first)
    pool.update(1, [first])
    assert pool.add(second).accepted


def test_reap_is_fifo_and_stops_at_the_first_misfit(pool: Mempool) -> None:
    txs = [send(ALICE, 0), send(BOB, 0), send(ALICE, 1, memo="a longer memo" * 4),
           send(BOB, 1)]
    for raw in txs:
        assert pool.add(raw).accepted
    assert pool.reap() == txs
    assert pool.reap(max_txs=2) == txs[:2]
    limit = len(txs[0]) + len(txs[1]) + len(txs[3])  # room for txs[3] but not txs[2]
    assert pool.reap(max_bytes=limit) == txs[:2]
    assert pool.reap(max_bytes=0) == []
    assert pool.size == 4  # reaping does not remove


def test_update_removes_committed_and_rechecks(ledger: Ledger, pool: Mempool) -> None:
    chain = Chain(ledger)
    a0, a1, b0 = send(ALICE, 0), send(ALICE, 1), send(BOB, 0, amount=5)
    for raw in (a0, a1, b0):
        assert pool.add(raw).accepted
    # Another node's block spends nearly all of BOB's funds with other bytes at seq 0.
    competitor = send(BOB, 0, amount=100 * AKT - 1)
    chain.block(a0, competitor)
    pool.update(1, [a0, competitor])
    dropped = pool.last_dropped
    assert [h for h, _ in dropped] == [wire.decode(b0, Tx).hash()]
    assert "wrong sequence" in dropped[0][1]
    assert pool.reap() == [a1] and pool.height == 1
    assert pool.bytes == len(a1)
    assert pool.add(send(ALICE, 2)).accepted  # the fresh copy carries a1's effects
    assert not pool.seen(wire.decode(b0, Tx).hash())  # dropped txs leave the cache


def test_update_without_a_check_factory_is_an_error(ledger: Ledger) -> None:
    pool = Mempool(ledger.copy_for_check().check_tx)
    with pytest.raises(LocalProtocolError, match="new_check"):
        pool.update(1, [])
    pool.update(1, [], ledger.copy_for_check().check_tx)
    assert pool.height == 1


def test_bad_limits_are_refused(ledger: Ledger) -> None:
    with pytest.raises(LocalProtocolError, match="max_txs must be positive"):
        Mempool.for_ledger(ledger, max_txs=0)


def test_signatures_are_verified_once_with_a_shared_cache() -> None:
    cache = crypto.VerifyCache()
    kv = MemoryKV()
    Ledger.init_genesis(kv, genesis())
    ledger = Ledger(kv, verify=cache.verify)
    pool = Mempool.for_ledger(ledger)
    raw = send(ALICE, 0)
    assert pool.add(raw).accepted and cache.misses == 1
    Chain(ledger).block(raw)  # block execution reuses the mempool's verification
    assert ledger.account(ALICE.address).sequence == 1
    assert cache.misses == 1


# ---------------------------------------------------------------- gossip validator

LOCAL = NodeID("aa" * 20)
PEER = NodeID("bb" * 20)


def test_tx_validator_verdicts(pool: Mempool) -> None:
    validate = tx_validator(pool, LOCAL)
    raw = send(ALICE, 0)
    assert validate(PEER, "txs", raw) is Verdict.ACCEPT
    assert validate(PEER, "txs", raw) is Verdict.IGNORE  # duplicate
    assert validate(PEER, "txs", b"junk") is Verdict.REJECT
    forged = attrs.evolve(wire.decode(send(BOB, 0), Tx), signature=bytes(64))
    assert validate(PEER, "txs", forged.encode()) is Verdict.REJECT
    assert validate(PEER, "txs", send(BOB, 5)) is Verdict.IGNORE  # state-dependent
    assert pool.size == 1


def test_tx_validator_accepts_own_publication_of_admitted_tx(pool: Mempool) -> None:
    validate = tx_validator(pool, LOCAL)
    raw = send(ALICE, 0)
    assert pool.add(raw).accepted  # submitted through the API first
    assert validate(LOCAL, "txs", raw) is Verdict.ACCEPT
    assert validate(PEER, "txs", raw) is Verdict.IGNORE


def batch(*raws: bytes) -> bytes:
    return wire.encode(TxBatch(txs=raws))


def test_tx_validator_admits_a_batch_in_order(pool: Mempool) -> None:
    validate = tx_validator(pool, LOCAL)
    assert validate(PEER, "txs", batch(send(ALICE, 0), send(ALICE, 1), send(BOB, 0))
                    ) is Verdict.ACCEPT
    assert pool.size == 3
    # all duplicates or state-dependent: nothing new to forward
    assert validate(PEER, "txs", batch(send(ALICE, 1), send(BOB, 7))) is Verdict.IGNORE
    # one new tx is enough to forward the batch
    assert validate(PEER, "txs", batch(send(ALICE, 0), send(ALICE, 2))) is Verdict.ACCEPT
    assert pool.size == 4


def test_tx_validator_rejects_a_batch_with_a_forged_or_malformed_tx(pool: Mempool) -> None:
    validate = tx_validator(pool, LOCAL)
    forged = attrs.evolve(wire.decode(send(BOB, 0), Tx), signature=bytes(64))
    assert validate(PEER, "txs", batch(send(ALICE, 0), forged.encode())) is Verdict.REJECT
    assert validate(PEER, "txs", batch(b"junk")) is Verdict.REJECT
    assert validate(PEER, "txs", batch(send(CAROL, 0))[:-3]) is Verdict.REJECT
    assert validate(LOCAL, "txs", batch(send(CAROL, 0))) is Verdict.ACCEPT  # our own batch
    assert pool.size == 1  # ALICE's, admitted before the forged one was met
