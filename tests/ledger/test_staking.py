"""Validators, delegation, unbonding maturity and the H+2 validator-update contract."""

from __future__ import annotations

import pytest

from p2pakash.ledger import UAKT_PER_AKT as AKT
from p2pakash.ledger import (
    Code,
    CreateValidator,
    Delegate,
    Params,
    TxRejected,
    Undelegate,
)
from p2pakash.ledger.bank import BONDED_POOL, UNBONDING_POOL, module_address
from tests.ledger.helpers import USERS, VALS, Chain, key, new_ledger, total_balances

A, B = USERS[0], USERS[1]
V0 = VALS[0].public


def _pool(chain: Chain, name: str) -> int:
    return chain.ledger.account(module_address(name)).balance


def _tokens(chain: Chain) -> int:
    return sum(v.tokens for v in chain.ledger.store.validators())


def test_genesis_validators_power_is_one_per_akt() -> None:
    ledger = new_ledger(stakes=(10, 7, 3))
    assert ledger.validators() == ((VALS[0].public, 10), (VALS[1].public, 7), (VALS[2].public, 3))
    assert ledger.validator_set_at(1) == ledger.validators()
    assert ledger.supply() == 4 * 100 * AKT + 20 * AKT


def test_create_validator_bonds_self_stake() -> None:
    chain = Chain(new_ledger())
    result = chain.run(chain.tx(A, CreateValidator(pubkey=A.public, self_stake=5 * AKT + 1,
                                                   moniker="alice")))
    rec = chain.ledger.validator(A.public)
    assert rec is not None and rec.tokens == 5 * AKT + 1 and rec.power == 5
    assert chain.ledger.account(A.address).balance == 95 * AKT - 1
    assert chain.ledger.delegation(A.public, A.address) == 5 * AKT + 1
    assert (A.public, 5) in result.validator_updates
    assert _pool(chain, BONDED_POOL) == _tokens(chain)


@pytest.mark.parametrize(("msg_kw", "code", "reason"), [
    ({"self_stake": AKT - 1}, Code.INSUFFICIENT_STAKE, "below the minimum"),
    ({"pubkey": VALS[0].public}, Code.INVALID_MSG, "must be the tx signer's key"),
    ({"moniker": "m" * 71}, Code.INVALID_MSG, "moniker"),
    ({"self_stake": 101 * AKT}, Code.INSUFFICIENT_FUNDS, "insufficient funds"),
])
def test_create_validator_refusals(msg_kw: dict[str, object], code: Code, reason: str) -> None:
    ledger = new_ledger()
    fields: dict[str, object] = {"pubkey": A.public, "self_stake": 2 * AKT, "moniker": "a"}
    fields.update(msg_kw)
    with pytest.raises(TxRejected, match=reason) as info:
        ledger.check_tx(Chain(ledger).tx(A, CreateValidator(**fields)))  # type: ignore[arg-type]
    assert info.value.code == code


def test_create_validator_twice_refused() -> None:
    chain = Chain(new_ledger())
    chain.run(chain.tx(A, CreateValidator(pubkey=A.public, self_stake=2 * AKT, moniker="a")))
    with pytest.raises(TxRejected, match="already exists") as info:
        chain.ledger.check_tx(chain.tx(A, CreateValidator(pubkey=A.public, self_stake=2 * AKT,
                                                          moniker="a")))
    assert info.value.code == Code.VALIDATOR_EXISTS


def test_delegate_raises_power_and_refuses_unknown_validator() -> None:
    chain = Chain(new_ledger())
    result = chain.run(chain.tx(A, Delegate(validator=V0, amount=3 * AKT)))
    assert dict(chain.ledger.validators())[V0] == 13
    assert result.validator_updates == ((V0, 13),)
    assert chain.ledger.delegation(V0, A.address) == 3 * AKT
    with pytest.raises(TxRejected, match="unknown validator") as info:
        chain.ledger.check_tx(chain.tx(A, Delegate(validator=key(77).public, amount=1)))
    assert info.value.code == Code.UNKNOWN_VALIDATOR
    with pytest.raises(TxRejected, match="must be positive"):
        chain.ledger.check_tx(chain.tx(A, Delegate(validator=V0, amount=0)))


def test_undelegate_then_mature_returns_funds() -> None:
    chain = Chain(new_ledger())  # unbonding time 60 s, one block per second
    chain.run(chain.tx(A, Delegate(validator=V0, amount=3 * AKT)))
    supply = chain.ledger.supply()
    start = chain.ledger.time_ms()
    result = chain.run(chain.tx(A, Undelegate(validator=V0, amount=2 * AKT)))
    assert result.validator_updates == ((V0, 11),)
    assert chain.ledger.account(A.address).balance == 97 * AKT  # locked while unbonding
    (entry,) = chain.ledger.unbondings()
    assert entry.amount == 2 * AKT and entry.completion_ms == start + 1000 + 60_000
    assert _pool(chain, UNBONDING_POOL) == 2 * AKT
    while chain.ledger.time_ms() + 1000 < entry.completion_ms:
        assert not any(e.type == "complete_unbonding" for e in chain.block().events)
    assert chain.ledger.account(A.address).balance == 97 * AKT
    matured = chain.block()  # block time == completion time
    assert [e.type for e in matured.events].count("complete_unbonding") == 1
    assert chain.ledger.account(A.address).balance == 99 * AKT
    assert chain.ledger.unbondings() == ()
    assert _pool(chain, UNBONDING_POOL) == 0
    assert chain.ledger.supply() == supply == total_balances(chain.ledger)


def test_undelegate_more_than_delegated_refused() -> None:
    chain = Chain(new_ledger())
    chain.run(chain.tx(A, Delegate(validator=V0, amount=AKT)))
    with pytest.raises(TxRejected, match=r"has 1000000 uakt bonded .* undelegate 1000001"):
        chain.ledger.check_tx(chain.tx(A, Undelegate(validator=V0, amount=AKT + 1)))
    with pytest.raises(TxRejected, match="has 0 uakt bonded"):
        chain.ledger.check_tx(chain.tx(B, Undelegate(validator=V0, amount=1)))


def test_validator_update_contract_h_plus_2() -> None:
    """Updates returned for block H are the set in force from H+2 (reference §A7)."""
    chain = Chain(new_ledger())
    before = chain.ledger.validators()
    result = chain.run(chain.tx(A, Delegate(validator=V0, amount=5 * AKT)))  # block H = 1
    h = chain.ledger.height()
    assert result.validator_updates == ((V0, 15),)
    # H and H+1 are still signed by the old set; the new set signs from H+2 on.
    assert chain.ledger.validator_set_at(h) == before
    assert chain.ledger.validator_set_at(h + 1) == before
    assert dict(chain.ledger.validator_set_at(h + 2))[V0] == 15
    assert chain.ledger.validators() == chain.ledger.validator_set_at(h + 2)
    # a block with no change returns no updates
    assert chain.block().validator_updates == ()


def test_removal_is_power_zero_and_max_validators_caps_the_set() -> None:
    chain = Chain(new_ledger(Params(unbonding_time_s=60, max_validators=3), stakes=(10, 10, 2)))
    result = chain.run(chain.tx(A, CreateValidator(pubkey=A.public, self_stake=5 * AKT,
                                                   moniker="a")))
    assert result.validator_updates == tuple(sorted([(A.public, 5), (VALS[2].public, 0)]))
    assert len(chain.ledger.validators()) == 3
    result = chain.run(chain.tx(A, Undelegate(validator=A.public, amount=5 * AKT)))
    assert result.validator_updates == tuple(sorted([(A.public, 0), (VALS[2].public, 2)]))


def test_shares_keep_delegators_proportional_after_a_slash() -> None:
    from p2pakash.ledger.blocks import Misbehaviour
    chain = Chain(new_ledger())
    chain.run(chain.tx(A, Delegate(validator=V0, amount=10 * AKT)))
    chain.block(misbehaviour=(Misbehaviour(pubkey=V0, height=1, time_ms=chain.ledger.time_ms()),))
    assert chain.ledger.delegation(V0, A.address) == 9_500_000
    assert chain.ledger.delegation(V0, VALS[0].address) == 9_500_000
    # leaving takes exactly the post-slash value; the others keep theirs
    chain.run(chain.tx(A, Undelegate(validator=V0, amount=9_500_000)))
    assert chain.ledger.delegation(V0, A.address) == 0
    assert chain.ledger.delegation(V0, VALS[0].address) == 9_500_000
    with pytest.raises(TxRejected, match="tombstoned"):
        chain.ledger.check_tx(chain.tx(B, Delegate(validator=V0, amount=AKT)))
    assert _pool(chain, BONDED_POOL) == _tokens(chain)
