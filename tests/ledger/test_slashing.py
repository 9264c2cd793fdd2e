"""Downtime jailing, double-sign tombstones, evidence rules and Unjail."""

from __future__ import annotations

import pytest

from p2pakash.ledger import UAKT_PER_AKT as AKT
from p2pakash.ledger import (
    Code,
    Delegate,
    Event,
    Misbehaviour,
    Params,
    TxRejected,
    Undelegate,
    Unjail,
)
from p2pakash.ledger.bank import BONDED_POOL, module_address
from tests.ledger.helpers import USERS, VALS, Chain, new_ledger, total_balances

A = USERS[0]
V0, V1, V2 = (v.public for v in VALS)


def _all_but(*absent: bytes) -> tuple[bytes, ...]:
    return tuple(v.public for v in VALS if v.public not in absent)


def _miss(chain: Chain, n: int, who: bytes = V2) -> list[Event]:
    events: list[Event] = []
    for _ in range(n):
        events += list(chain.block(signers=_all_but(who)).events)
    return events


def test_fifty_misses_do_not_jail_fifty_one_do() -> None:
    chain = Chain(new_ledger())
    chain.block()  # height 1 has no last commit
    supply = chain.ledger.supply()
    _miss(chain, 50)
    rec = chain.ledger.validator(V2)
    assert rec is not None and not rec.jailed
    jail_time = chain.ledger.time_ms() + 1000
    result = chain.block(signers=_all_but(V2))  # miss number 51
    rec = chain.ledger.validator(V2)
    assert rec is not None and rec.jailed and not rec.tombstoned
    assert rec.jailed_until_ms == jail_time + 600_000
    assert rec.tokens == 10 * AKT - 100_000  # 1 % burned
    assert chain.ledger.supply() == supply - 100_000 == total_balances(chain.ledger)
    assert chain.ledger.burned() == 100_000
    jail = next(e for e in result.events if e.type == "jail")
    assert jail.get("reason") == "missing_signature"
    assert result.validator_updates == ((V2, 0),)
    assert V2 not in dict(chain.ledger.validators())


def test_misses_spread_over_the_window_slide_out() -> None:
    chain = Chain(new_ledger())
    chain.block()
    for _ in range(3):  # 50 misses, 50 signs, three times: never more than 50 in any window
        _miss(chain, 50)
        for _ in range(50):
            chain.block()
    rec = chain.ledger.validator(V2)
    assert rec is not None and not rec.jailed


def test_unjail_only_after_the_jail_time() -> None:
    chain = Chain(new_ledger())
    chain.block()
    _miss(chain, 51)
    with pytest.raises(TxRejected, match="jailed until") as info:
        chain.ledger.check_tx(chain.tx(VALS[2], Unjail()))
    assert info.value.code == Code.JAILED
    while chain.ledger.time_ms() + 1000 < chain.ledger.validator(V2).jailed_until_ms:  # type: ignore[union-attr]
        chain.block(signers=_all_but(V2))
    result = chain.run(chain.tx(VALS[2], Unjail()))
    rec = chain.ledger.validator(V2)
    assert rec is not None and not rec.jailed
    assert result.validator_updates == ((V2, 9),)  # 9.9 AKT -> power 9
    with pytest.raises(TxRejected, match="not jailed") as info:
        chain.ledger.check_tx(chain.tx(VALS[2], Unjail()))
    assert info.value.code == Code.NOT_JAILED


def test_unjail_needs_the_minimum_self_stake() -> None:
    chain = Chain(new_ledger(Params(unbonding_time_s=60, downtime_jail_s=0)))
    chain.block()
    _miss(chain, 51)
    chain.run(chain.tx(VALS[2], Undelegate(validator=V2, amount=9 * AKT)))
    with pytest.raises(TxRejected, match="self delegation 900000 uakt below") as info:
        chain.ledger.check_tx(chain.tx(VALS[2], Unjail()))
    assert info.value.code == Code.INSUFFICIENT_STAKE


def test_double_sign_slashes_five_percent_and_tombstones() -> None:
    chain = Chain(new_ledger())
    chain.run(chain.tx(A, Delegate(validator=V1, amount=10 * AKT)))
    infraction = chain.ledger.height()
    supply = chain.ledger.supply()
    # an unbonding begun at the infraction height is slashed too; the stake still bonded is
    chain.run(chain.tx(A, Undelegate(validator=V1, amount=4 * AKT)))
    result = chain.block(misbehaviour=(Misbehaviour(pubkey=V1, height=infraction + 1,
                                                    time_ms=chain.ledger.time_ms()),))
    rec = chain.ledger.validator(V1)
    assert rec is not None and rec.jailed and rec.tombstoned
    assert rec.tokens == 16 * AKT * 95 // 100
    (entry,) = chain.ledger.unbondings()
    assert entry.amount == 4 * AKT * 95 // 100
    burned = 20 * AKT * 5 // 100
    assert chain.ledger.supply() == supply - burned == total_balances(chain.ledger)
    assert chain.ledger.burned() == burned
    assert result.validator_updates == ((V1, 0),)
    jail = next(e for e in result.events if e.type == "jail")
    assert (jail.get("reason"), jail.get("burned")) == ("double_sign", str(burned))
    # tombstoned: never unjails, and the same fault is not punished twice
    chain.block(dt_ms=10**9)
    with pytest.raises(TxRejected, match="tombstoned") as info:
        chain.ledger.check_tx(chain.tx(VALS[1], Unjail()))
    assert info.value.code == Code.TOMBSTONED
    again = chain.block(misbehaviour=(Misbehaviour(pubkey=V1, height=infraction,
                                                   time_ms=chain.ledger.time_ms()),))
    assert [e.get("reason") for e in again.events if e.type == "evidence_ignored"] == [
        "validator already tombstoned"]
    assert chain.ledger.burned() == burned
    assert chain.ledger.account(module_address(BONDED_POOL)).balance == sum(
        v.tokens for v in chain.ledger.store.validators())


def test_old_future_and_unknown_evidence_is_ignored() -> None:
    chain = Chain(new_ledger())  # unbonding period 60 s
    chain.block()
    old = Misbehaviour(pubkey=V0, height=1, time_ms=chain.ledger.time_ms() - 61_000)
    future = Misbehaviour(pubkey=V0, height=50, time_ms=chain.ledger.time_ms())
    unknown = Misbehaviour(pubkey=bytes(32), height=1, time_ms=chain.ledger.time_ms())
    result = chain.block(misbehaviour=(old, future, unknown))
    reasons = [e.get("reason") for e in result.events if e.type == "evidence_ignored"]
    assert reasons == ["evidence older than the unbonding period",
                       "infraction height 50 outside 1..2", "unknown validator"]
    assert chain.ledger.burned() == 0


def test_leaving_and_rejoining_the_set_starts_a_fresh_window() -> None:
    chain = Chain(new_ledger())
    chain.block()
    _miss(chain, 45)
    chain.run(chain.tx(VALS[2], Undelegate(validator=V2, amount=9_500_000)))  # power 0: out
    for _ in range(3):
        chain.block()
    assert V2 not in dict(chain.ledger.validator_set_at(chain.ledger.height() + 1))
    chain.run(chain.tx(A, Delegate(validator=V2, amount=9_500_000)))  # back in
    for _ in range(2):
        chain.block()
    assert V2 in dict(chain.ledger.validator_set_at(chain.ledger.height()))
    _miss(chain, 50)  # 45 old misses + 50 would jail; the old ones were forgotten
    rec = chain.ledger.validator(V2)
    assert rec is not None and not rec.jailed
    _miss(chain, 1)
    rec = chain.ledger.validator(V2)
    assert rec is not None and rec.jailed
