"""Escrow settlement math (Akash x/escrow v0.38 ``doAccountSettle``), pure and integer-only.

Rules and invariants:
* One ``EscrowAccount`` per deployment holds the tenant's unspent deposit (``balance``); one
  ``Payment`` per lease accrues ``rate`` uakt per block into its own ``balance`` until the
  provider withdraws it. Both balances live in the market's escrow module account, so
  settlement moves no bank money: ``account.balance + sum(payment.balance)`` is unchanged by
  ``settle``; only deposits add to it and withdrawals / refunds take from it.
* Settlement is lazy: ``settle(account, payments, height)`` pays every OPEN payment for the
  blocks since ``settled_at``: ``full = min(elapsed, balance // total_rate)`` blocks, each
  payment gets ``rate * full``. If ``full < elapsed`` the account is *overdrawn*: the
  remainder (< total_rate) is split across payments by rate (floor, then the dust one uakt
  at a time in payment order), the account ends at 0 and everything is OVERDRAWN.
* ``due_height`` is the first height at which ``settle`` would overdraw
  (``settled_at + balance // total_rate + 1``), so a caller can index accounts by it and
  find overdraws with a cheap range scan instead of settling everything each block.
* Nothing is ever negative; every function returns new values (records are frozen).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

from p2pakash import wire


class AccountState(enum.IntEnum):
    OPEN = 1
    CLOSED = 2
    OVERDRAWN = 3


class PaymentState(enum.IntEnum):
    OPEN = 1
    CLOSED = 2
    OVERDRAWN = 3


def _non_negative(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative integer, got {value!r}")


@wire.message(tag=335)
@attrs.frozen(kw_only=True)
class EscrowAccount:
    balance: int = attrs.field(validator=_non_negative)  # unspent deposit, uakt
    settled_at: int = attrs.field(validator=_non_negative)  # height paid up to (inclusive)
    state: AccountState = AccountState.OPEN
    deposited: int = attrs.field(default=0, validator=_non_negative)  # all deposits ever
    transferred: int = attrs.field(default=0, validator=_non_negative)  # all paid to leases


@wire.message(tag=336)
@attrs.frozen(kw_only=True)
class Payment:
    rate: int = attrs.field(validator=_non_negative)  # uakt per block
    balance: int = attrs.field(default=0, validator=_non_negative)  # accrued, not withdrawn
    withdrawn: int = attrs.field(default=0, validator=_non_negative)
    state: PaymentState = PaymentState.OPEN


@attrs.frozen(kw_only=True)
class Settlement:
    account: EscrowAccount
    payments: tuple[Payment, ...]
    blocks: int  # full blocks paid by this settlement
    overdrawn: bool


def open_account(deposit: int, height: int) -> EscrowAccount:
    return EscrowAccount(balance=deposit, settled_at=height, deposited=deposit)


def block_rate(payments: Sequence[Payment]) -> int:
    return sum(p.rate for p in payments if p.state is PaymentState.OPEN)


def settle(account: EscrowAccount, payments: Sequence[Payment], height: int) -> Settlement:
    """Pay the open payments up to ``height``; overdraw when the balance falls short."""
    if account.state is not AccountState.OPEN or height <= account.settled_at:
        return Settlement(account=account, payments=tuple(payments), blocks=0, overdrawn=False)
    elapsed = height - account.settled_at
    rate = block_rate(payments)
    if rate == 0:
        return Settlement(account=attrs.evolve(account, settled_at=height),
                          payments=tuple(payments), blocks=0, overdrawn=False)
    full = min(elapsed, account.balance // rate)
    paid = [attrs.evolve(p, balance=p.balance + p.rate * full)
            if p.state is PaymentState.OPEN else p for p in payments]
    spent = rate * full
    remaining = account.balance - spent
    if full == elapsed:
        new = attrs.evolve(account, balance=remaining, settled_at=height,
                           transferred=account.transferred + spent)
        return Settlement(account=new, payments=tuple(paid), blocks=full, overdrawn=False)
    shares = split(remaining, [p.rate if p.state is PaymentState.OPEN else 0 for p in paid])
    paid = [attrs.evolve(p, balance=p.balance + share, state=PaymentState.OVERDRAWN)
            if p.state is PaymentState.OPEN else p for p, share in zip(paid, shares, strict=True)]
    new = attrs.evolve(account, balance=0, settled_at=height, state=AccountState.OVERDRAWN,
                       transferred=account.transferred + account.balance)
    return Settlement(account=new, payments=tuple(paid), blocks=full, overdrawn=True)


def split(amount: int, weights: Sequence[int]) -> list[int]:
    """``amount`` split by ``weights`` (floor), the dust one unit each in order; sums exactly."""
    total = sum(weights)
    if total == 0:
        return [0] * len(weights)
    shares = [amount * w // total for w in weights]
    dust = amount - sum(shares)
    for i, w in enumerate(weights):
        if dust == 0:
            break
        if w > 0:
            shares[i] += 1
            dust -= 1
    return shares


def due_height(account: EscrowAccount, payments: Sequence[Payment]) -> int | None:
    """The first height whose settlement overdraws the account (None: it never will)."""
    rate = block_rate(payments)
    if account.state is not AccountState.OPEN or rate == 0:
        return None
    return account.settled_at + account.balance // rate + 1


def deposit(account: EscrowAccount, amount: int) -> EscrowAccount:
    """Add ``amount`` to a (settled) open account."""
    if amount <= 0 or account.state is not AccountState.OPEN:
        raise ValueError("deposit needs a positive amount and an open account")
    return attrs.evolve(account, balance=account.balance + amount,
                        deposited=account.deposited + amount)


def withdraw(payment: Payment) -> tuple[Payment, int]:
    """Pay out the accrued balance: (the payment after, the amount for the provider)."""
    return attrs.evolve(payment, balance=0, withdrawn=payment.withdrawn + payment.balance), \
        payment.balance


def close_payment(payment: Payment, state: PaymentState = PaymentState.CLOSED
                  ) -> tuple[Payment, int]:
    """Close a (settled) payment, paying out its balance: (payment after, amount)."""
    after, amount = withdraw(payment)
    return attrs.evolve(after, state=state), amount


def close_account(account: EscrowAccount) -> tuple[EscrowAccount, int]:
    """Close a (settled) account: (account after, the refund for the owner)."""
    state = AccountState.CLOSED if account.state is AccountState.OPEN else account.state
    return attrs.evolve(account, balance=0, state=state), account.balance
