"""Escrow settlement: unit cases and properties (money conserved, never negative, exact pay)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pakash.market import escrow
from p2pakash.market import ledger_market as lm
from p2pakash.market.escrow import AccountState, EscrowAccount, Payment, PaymentState
from tests.ledger.helpers import USERS, Chain, new_ledger, total_balances
from tests.market.helpers_market import SDL_TEXT, bid, create_provider, order


def test_settle_pays_rate_times_blocks() -> None:
    acc = escrow.open_account(1000, height=10)
    s = escrow.settle(acc, [Payment(rate=3), Payment(rate=7)], 15)
    assert not s.overdrawn and s.blocks == 5
    assert [p.balance for p in s.payments] == [15, 35]
    assert s.account == attrs.evolve(acc, balance=950, settled_at=15, transferred=50)


def test_settle_is_idempotent_at_one_height_and_skips_closed_payments() -> None:
    acc = escrow.open_account(100, height=1)
    closed = Payment(rate=50, state=PaymentState.CLOSED)
    s = escrow.settle(acc, [Payment(rate=1), closed], 3)
    assert s.payments[1] == closed and s.account.balance == 98
    again = escrow.settle(s.account, s.payments, 3)
    assert again.account == s.account and again.blocks == 0


def test_overdraw_splits_the_remainder_by_rate() -> None:
    acc = escrow.open_account(100, height=0)
    payments = [Payment(rate=20), Payment(rate=10)]
    assert escrow.due_height(acc, payments) == 4  # 3 full blocks (90), short at block 4
    s = escrow.settle(acc, payments, 3)
    assert not s.overdrawn and s.account.balance == 10
    s = escrow.settle(s.account, s.payments, 4)
    assert s.overdrawn and s.blocks == 0
    assert s.account.balance == 0 and s.account.state is AccountState.OVERDRAWN
    assert [p.balance for p in s.payments] == [60 + 7, 30 + 3]  # 10 split 2:1, dust first
    assert all(p.state is PaymentState.OVERDRAWN for p in s.payments)
    assert escrow.due_height(s.account, s.payments) is None


def test_split_is_exact() -> None:
    assert escrow.split(10, [1, 1, 1]) == [4, 3, 3]
    assert escrow.split(5, [0, 0]) == [0, 0]
    assert escrow.split(7, [0, 3]) == [0, 7]


def test_no_rate_means_no_due_and_settled_clock_moves() -> None:
    acc = escrow.open_account(10, height=5)
    assert escrow.due_height(acc, []) is None
    assert escrow.settle(acc, [], 9).account.settled_at == 9


def test_deposit_withdraw_close() -> None:
    acc = escrow.deposit(escrow.open_account(10, 0), 5)
    assert (acc.balance, acc.deposited) == (15, 15)
    with pytest.raises(ValueError):
        escrow.deposit(acc, 0)
    p, amount = escrow.withdraw(Payment(rate=1, balance=4, withdrawn=2))
    assert (p.balance, p.withdrawn, amount) == (0, 6, 4)
    p, amount = escrow.close_payment(Payment(rate=1, balance=3))
    assert (p.state, amount) == (PaymentState.CLOSED, 3)
    closed, refund = escrow.close_account(acc)
    assert (closed.state, closed.balance, refund) == (AccountState.CLOSED, 0, 15)
    with pytest.raises(ValueError):
        EscrowAccount(balance=-1, settled_at=0)


OPS = st.lists(st.one_of(
    st.tuples(st.just("blocks"), st.integers(1, 40)),
    st.tuples(st.just("deposit"), st.integers(1, 500)),
    st.tuples(st.just("withdraw"), st.integers(0, 3)),
), max_size=30)


@settings(max_examples=300, deadline=None)
@given(deposit=st.integers(0, 2000), rates=st.lists(st.integers(0, 50), min_size=1, max_size=4),
       ops=OPS)
def test_escrow_properties(deposit: int, rates: list[int], ops: list[tuple[str, int]]) -> None:
    acc = escrow.open_account(deposit, 0)
    payments = [Payment(rate=r) for r in rates]
    height, paid_out, deposited = 0, 0, deposit
    earned_blocks = 0  # blocks paid in full so far
    for op, n in ops:
        if acc.state is not AccountState.OPEN:
            break
        due = escrow.due_height(acc, payments)
        if op == "blocks":
            height += n
            s = escrow.settle(acc, payments, height)
            if due is not None:
                assert s.overdrawn == (height >= due)
            acc, payments = s.account, list(s.payments)
            earned_blocks += s.blocks
            if not s.overdrawn:
                for p, r in zip(payments, rates, strict=True):
                    assert p.balance + p.withdrawn == r * height  # exactly rate x blocks
            else:
                total = sum(rates)
                assert acc.balance == 0
                for p, r in zip(payments, rates, strict=True):
                    extra = p.balance + p.withdrawn - r * earned_blocks
                    assert 0 <= extra <= r  # less than one more block's worth
                    assert extra * total <= (r * total if r else 0)
        elif op == "deposit":
            acc = escrow.settle(acc, payments, height).account
            acc = escrow.deposit(acc, n)
            deposited += n
        else:
            i = n % len(payments)
            payments[i], amount = escrow.withdraw(payments[i])
            paid_out += amount
        # conservation: what came in is in the account, in payments, or paid out
        held = acc.balance + sum(p.balance for p in payments)
        assert held + paid_out == deposited == acc.deposited
        assert acc.transferred == sum(p.balance + p.withdrawn for p in payments)
        assert acc.balance >= 0 and all(p.balance >= 0 for p in payments)


# ---------------------------------------------------------------- on the ledger

TENANT, PROVIDER, OTHER = USERS[0], USERS[1], USERS[2]
PRICEY = SDL_TEXT.replace("amount: 1500", "amount: 100000")  # group max 200,000 uakt/block
TOP_UP = 60_000


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(deposit=st.integers(500_000, 520_000), price=st.integers(50_000, 200_000),
       steps=st.lists(st.sampled_from(["empty", "withdraw", "deposit"]), max_size=12))
def test_lease_pays_exactly_until_overdraw_then_closes(deposit: int, price: int,
                                                       steps: list[str]) -> None:
    chain = Chain(new_ledger())
    ledger = chain.ledger
    chain.run(chain.tx(PROVIDER, create_provider()))
    o = order(TENANT, deposit=deposit, expiry_ms=10**12, text=PRICEY)
    b = bid(PROVIDER, o, price=price, expiry_ms=10**12)
    start = chain.run(chain.tx(TENANT, lm.CreateLease(order=o, bid=b)))
    assert start.tx_results[0].ok
    created = ledger.height()
    lid = b.lease_id
    provider_start = ledger.account(PROVIDER.address).balance
    funded = deposit
    supply = ledger.supply()
    closed_at = None
    for step in steps + ["empty"] * 20:
        if step == "withdraw":
            result = chain.block(chain.tx(PROVIDER, lm.Withdraw(lease=lid)))
        elif step == "deposit":
            result = chain.block(chain.tx(OTHER, lm.Deposit(deployment=o.body.deployment,
                                                            amount=TOP_UP)))
        else:
            result = chain.block()
        rec = lm.get_lease(ledger.store, lid)
        assert rec is not None
        ok = all(r.ok for r in result.tx_results)
        if step == "deposit" and ok and closed_at is None:
            funded += TOP_UP
        blocks = ledger.height() - created
        earned = rec.payment.balance + rec.payment.withdrawn
        received = ledger.account(PROVIDER.address).balance - provider_start
        assert received == rec.payment.withdrawn
        if rec.state is lm.LeaseState.ACTIVE:
            assert closed_at is None
            dep = lm.get_deployment(ledger.store, o.body.deployment)
            assert dep is not None  # settled at each touch: exactly rate x settled blocks
            assert earned == price * (dep.escrow.settled_at - created)
            assert funded >= price * blocks  # still solvent
        else:
            if closed_at is None:
                closed_at = ledger.height()
                assert rec.state is lm.LeaseState.INSUFFICIENT_FUNDS
                assert rec.reason is lm.LeaseCloseReason.INSUFFICIENT_FUNDS
                assert closed_at == created + funded // price + 1  # the block it overdrew
                assert earned == funded and received == funded  # all of it, to the provider
                events = [*result.events, *(e for r in result.tx_results for e in r.events)]
                assert [e.get("reason") for e in events if e.type == "lease_closed"] == ["20000"]
            break
        assert ledger.supply() == supply == total_balances(ledger)
        assert ledger.account(lm.ESCROW).balance == funded - received
    assert closed_at is not None
