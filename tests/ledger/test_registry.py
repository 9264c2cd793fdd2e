"""The handler registry: another module adds a message and an end blocker without edits here."""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import pytest

from p2pakash import wire
from p2pakash.errors import LocalProtocolError
from p2pakash.ledger import Code, Context, TxRejected, bank, register_end_blocker, register_msg
from p2pakash.ledger.handlers import registered_msgs, unregister
from tests.ledger.helpers import USERS, Chain, new_ledger, total_balances

A = USERS[0]
ESCROW = bank.module_address("test_escrow")


@wire.message(tag=981)
@attrs.frozen(kw_only=True)
class Lock:
    """A stand-in market message: lock funds in an escrow module account."""

    amount: int


def _lock(ctx: Context, msg: Lock) -> None:
    if msg.amount > 1_000:
        raise TxRejected(Code.INVALID_MSG, "lock at most 1000")
    bank.transfer(ctx.store, ctx.sender, ESCROW, msg.amount)
    ctx.store.put(b"test_escrow/" + ctx.sender.encode(), msg.amount)
    ctx.emit("lock", owner=ctx.sender, amount=msg.amount)


def _release_all(ctx: Context) -> None:
    for key, amount in list(ctx.store.scan(b"test_escrow/", int)):
        owner = key[len(b"test_escrow/"):].decode()
        bank.transfer(ctx.store, ESCROW, owner, amount)
        ctx.store.delete(key)
        ctx.emit("release", owner=owner, amount=amount)


@pytest.fixture
def registered() -> Iterator[None]:
    register_msg(Lock, _lock)
    register_end_blocker("test_escrow", _release_all)
    try:
        yield
    finally:
        unregister(Lock, end_blocker="test_escrow")


def test_unregistered_message_is_unknown() -> None:
    ledger = new_ledger()
    with pytest.raises(TxRejected, match="unknown message type Lock"):
        ledger.check_tx(Chain(ledger).tx(A, Lock(amount=1)))


@pytest.mark.usefixtures("registered")
def test_registered_handler_runs_and_its_state_is_hashed() -> None:
    assert Lock in registered_msgs()
    chain = Chain(new_ledger())
    chain.ledger.check_tx(chain.tx(A, Lock(amount=500)))
    with pytest.raises(TxRejected, match="lock at most 1000"):
        chain.ledger.check_tx(chain.tx(A, Lock(amount=5000)))
    result = chain.run(chain.tx(A, Lock(amount=500)))
    assert [e.type for e in result.tx_results[0].events] == ["tx", "lock"]
    # the end blocker released it in the same block
    assert [e.get("amount") for e in result.events if e.type == "release"] == ["500"]
    assert chain.ledger.account(A.address).balance == 100_000_000
    assert chain.ledger.supply() == total_balances(chain.ledger)


@pytest.mark.usefixtures("registered")
def test_module_writes_change_the_app_hash() -> None:
    plain, locked = Chain(new_ledger()), Chain(new_ledger())
    a = plain.block()
    b = locked.block(locked.tx(A, Lock(amount=0)))
    assert a.app_hash != b.app_hash


def test_double_registration_refused() -> None:
    register_msg(Lock, _lock)
    try:
        register_msg(Lock, _lock)  # the same handler again is harmless
        with pytest.raises(LocalProtocolError, match="already registered"):
            register_msg(Lock, _release_all)  # type: ignore[arg-type]
    finally:
        unregister(Lock)


def test_only_wire_messages_can_be_registered() -> None:
    class NotAMessage:
        pass

    with pytest.raises(LocalProtocolError, match="not a registered wire message"):
        register_msg(NotAMessage, _lock)
