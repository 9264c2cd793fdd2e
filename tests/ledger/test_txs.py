"""Tx admission (ante stage), Send, fees, and the in-block failure rules."""

from __future__ import annotations

import attrs
import pytest

from p2pakash import crypto, wire
from p2pakash.errors import InvalidSignature, TxError
from p2pakash.ledger import (
    Code,
    Ledger,
    Params,
    Send,
    Tx,
    TxRejected,
    Unjail,
    sign_tx,
    tx_hash,
)
from p2pakash.ledger.bank import BONDED_POOL, module_address
from tests.ledger.helpers import CHAIN, USERS, VALS, Chain, key, new_ledger, total_balances

A, B = USERS[0], USERS[1]


def test_send_moves_funds_and_bumps_sequence() -> None:
    chain = Chain(new_ledger())
    before = chain.ledger.supply()
    result = chain.run(chain.tx(A, Send(to=B.address, amount=7)))
    assert chain.ledger.account(A.address).balance == 100_000_000 - 7
    assert chain.ledger.account(B.address).balance == 100_000_000 + 7
    assert chain.ledger.account(A.address).sequence == 1
    assert chain.ledger.supply() == before == total_balances(chain.ledger)
    events = result.tx_results[0].events
    assert [e.type for e in events] == ["tx", "transfer"]
    assert events[0].get("hash") == tx_hash(chain.tx(A, Send(to=B.address, amount=7),
                                                     sequence=0)).hex()


def test_send_to_a_new_account_creates_it() -> None:
    chain = Chain(new_ledger())
    fresh = key(99).address
    chain.run(chain.tx(A, Send(to=fresh, amount=5)))
    assert chain.ledger.account(fresh).balance == 5


@pytest.mark.parametrize(("msg", "reason"), [
    (Send(to="akash1nope", amount=1), "Send.to"),
    (Send(to=module_address(BONDED_POOL), amount=1), "module account"),
    (Send(to=B.address, amount=0), "must be positive"),
    (Send(to=B.address, amount=-3), "must be positive"),
])
def test_send_refuses_bad_messages(msg: Send, reason: str) -> None:
    ledger = new_ledger()
    with pytest.raises(TxRejected, match=reason) as info:
        ledger.check_tx(Chain(ledger).tx(A, msg))
    assert info.value.code == Code.INVALID_MSG


def test_insufficient_funds_names_balance_and_need() -> None:
    ledger = new_ledger()
    with pytest.raises(TxError, match=r"has 100000000 uakt, needs 100000001") as info:
        ledger.check_tx(Chain(ledger).tx(A, Send(to=B.address, amount=100_000_001)))
    assert info.value.code == Code.INSUFFICIENT_FUNDS  # type: ignore[attr-defined]


def test_wrong_sequence_says_expected_and_got() -> None:
    chain = Chain(new_ledger())
    with pytest.raises(TxRejected, match="expected 0, got 1") as info:
        chain.ledger.check_tx(chain.tx(A, Send(to=B.address, amount=1), sequence=1))
    assert info.value.code == Code.WRONG_SEQUENCE


def test_replay_is_refused_in_check_and_in_block() -> None:
    chain = Chain(new_ledger())
    tx = chain.tx(A, Send(to=B.address, amount=1))
    chain.run(tx)
    with pytest.raises(TxRejected, match="expected 1, got 0"):
        chain.ledger.check_tx(tx)
    result = chain.block(tx, tx)
    assert [r.code for r in result.tx_results] == [Code.WRONG_SEQUENCE] * 2
    assert chain.ledger.account(B.address).balance == 100_000_001


def test_bad_signature_refused() -> None:
    ledger = new_ledger()
    tx = Chain(ledger).tx(A, Send(to=B.address, amount=1))
    forged = attrs.evolve(tx, body=attrs.evolve(tx.body, msgs=(Send(to=B.address, amount=2),)))
    with pytest.raises(TxRejected, match="bad signature") as info:
        ledger.check_tx(forged)
    assert info.value.code == Code.BAD_SIGNATURE


def test_signature_for_another_chain_refused() -> None:
    ledger = new_ledger()
    tx = sign_tx(A, "other-chain", sequence=0, msgs=(Send(to=B.address, amount=1),))
    with pytest.raises(TxRejected, match="bad signature"):
        ledger.check_tx(tx)


def test_sender_must_be_the_signing_key() -> None:
    ledger = new_ledger()
    tx = Chain(ledger).tx(A, Send(to=B.address, amount=1))
    body = attrs.evolve(tx.body, sender=B.address)
    stolen = Tx(body=body, pubkey=A.public, signature=A.sign("tx", CHAIN, wire.encode(body)))
    with pytest.raises(TxRejected, match="not the address of the signing key"):
        ledger.check_tx(stolen)


def test_unknown_message_refused() -> None:
    ledger = new_ledger()
    tx = sign_tx(A, CHAIN, sequence=0, msgs=(Params(),))  # a wire message with no handler
    with pytest.raises(TxRejected, match="unknown message type Params") as info:
        ledger.check_tx(tx)
    assert info.value.code == Code.UNKNOWN_MSG


def test_empty_and_oversize_txs_refused() -> None:
    ledger = new_ledger(Params(unbonding_time_s=60, max_tx_bytes=300))
    with pytest.raises(TxRejected, match="no messages"):
        ledger.check_tx(sign_tx(A, CHAIN, sequence=0, msgs=()))
    big = sign_tx(A, CHAIN, sequence=0, msgs=(Send(to=B.address, amount=1),), memo="x" * 200)
    with pytest.raises(TxRejected, match="tx too large") as info:
        ledger.check_tx(big)
    assert info.value.code == Code.TOO_LARGE
    result = Chain(ledger).block(big)
    assert result.tx_results[0].code == Code.TOO_LARGE


def test_min_fee_and_fee_funds() -> None:
    ledger = new_ledger(Params(unbonding_time_s=60, min_fee=10))
    chain = Chain(ledger)
    with pytest.raises(TxRejected, match="fee 9 uakt below the minimum 10") as info:
        ledger.check_tx(chain.tx(A, Send(to=B.address, amount=1), fee=9))
    assert info.value.code == Code.INSUFFICIENT_FEE
    poor = key(50)
    with pytest.raises(TxRejected, match="insufficient funds for the fee"):
        ledger.check_tx(chain.tx(poor, Send(to=B.address, amount=1), fee=10))


def test_fees_go_to_the_proposer_and_supply_is_conserved() -> None:
    chain = Chain(new_ledger())
    supply = chain.ledger.supply()
    proposer = VALS[2]
    before = chain.ledger.account(proposer.address).balance
    result = chain.block(chain.tx(A, Send(to=B.address, amount=1), fee=25),
                         proposer=proposer.public)
    assert result.tx_results[0].code == 0
    assert chain.ledger.account(proposer.address).balance == before + 25
    assert chain.ledger.account(A.address).balance == 100_000_000 - 26
    assert chain.ledger.supply() == supply == total_balances(chain.ledger)
    assert any(e.type == "proposer_fees" for e in result.events)


def test_failed_message_in_a_block_keeps_fee_and_sequence_only() -> None:
    chain = Chain(new_ledger())
    tx = chain.tx(A, Send(to=B.address, amount=1), Send(to=B.address, amount=10**12), fee=3)
    result = chain.block(tx)
    assert result.tx_results[0].code == Code.INSUFFICIENT_FUNDS
    assert "message 1 (Send)" in result.tx_results[0].log
    assert result.tx_results[0].events == ()
    assert chain.ledger.account(A.address) .balance == 100_000_000 - 3
    assert chain.ledger.account(A.address).sequence == 1
    assert chain.ledger.account(B.address).balance == 100_000_000  # message 0 rolled back


def test_garbage_in_a_block_gets_a_code_not_an_exception() -> None:
    chain = Chain(new_ledger())
    good = chain.tx(A, Send(to=B.address, amount=1))
    result = chain.block(b"\xff\x00garbage", good)
    assert result.tx_results[0].code == Code.DECODE
    assert result.tx_results[1].code == 0


def test_check_tx_on_committed_ledger_writes_nothing() -> None:
    chain = Chain(new_ledger())
    tx = chain.tx(A, Send(to=B.address, amount=1))
    chain.ledger.check_tx(tx)
    chain.ledger.check_tx(tx)  # still sequence 0: nothing was kept
    assert chain.ledger.account(A.address).sequence == 0


def test_copy_for_check_accumulates_and_leaves_base_alone() -> None:
    chain = Chain(new_ledger())
    copy = chain.ledger.copy_for_check()
    tx0 = chain.tx(A, Send(to=B.address, amount=1))
    tx1 = chain.tx(A, Send(to=B.address, amount=1), sequence=1)
    with pytest.raises(TxRejected, match="expected 0, got 1"):
        copy.check_tx(tx1)
    copy.check_tx(tx0)
    copy.check_tx(tx1)
    with pytest.raises(TxRejected, match="expected 2, got 1"):
        copy.check_tx(tx1)
    assert copy.account(A.address).sequence == 2
    assert chain.ledger.account(A.address).sequence == 0
    assert chain.ledger.height() == copy.height() == 0


def test_check_tx_uses_the_given_verifier_once() -> None:
    ledger = new_ledger()
    cache = crypto.VerifyCache()
    tx = Chain(ledger).tx(A, Send(to=B.address, amount=1))
    ledger.check_tx(tx, verify=cache.verify)
    ledger.check_tx(tx, verify=cache.verify)  # remembered on the tx: not even a cache hit
    assert (cache.misses, cache.hits) == (1, 0)


def test_a_remembered_signature_binds_the_verifier_and_the_chain() -> None:
    ledger = new_ledger()
    tx = Chain(ledger).tx(A, Send(to=B.address, amount=1))
    ledger.check_tx(tx)
    calls: list[str] = []

    def refuse(public: bytes, kind: str, chain_id: str, body: bytes, sig: bytes) -> None:
        calls.append(chain_id)
        raise InvalidSignature("refused by this verifier")

    with pytest.raises(TxRejected, match="refused by this verifier"):
        ledger.check_tx(tx, verify=refuse)  # another verifier decides afresh
    assert calls == [CHAIN]
    other = Ledger(ledger.store.kv, verify=crypto.verify)
    other._chain_id = "another-chain"  # the same object under another chain ID
    with pytest.raises(TxRejected, match="bad signature"):
        other.check_tx(tx)


def test_unjail_of_a_non_validator_is_refused() -> None:
    ledger = new_ledger()
    with pytest.raises(TxRejected, match="no validator") as info:
        ledger.check_tx(Chain(ledger).tx(A, Unjail()))
    assert info.value.code == Code.UNKNOWN_VALIDATOR


def test_tx_roundtrips_on_the_wire() -> None:
    tx = sign_tx(A, CHAIN, sequence=3, msgs=(Send(to=B.address, amount=1), Unjail()), fee=2,
                 memo="hi")
    assert wire.decode(tx.encode(), Tx) == tx
    assert tx.hash() == tx_hash(tx.encode())
