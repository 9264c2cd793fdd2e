"""Accounts and AKT movements (a simplified Cosmos SDK x/bank, one denomination: uakt).

Rules and invariants:
* ``g/supply`` equals the sum of every account balance, always. Only ``mint`` and
  ``burn`` change it, and they also count into ``g/minted`` / ``g/burned``, so
  ``supply == genesis supply - burned + minted`` holds at every height.
* Tokens held by a module (bonded stake, unbonding stake, fees of the current block, the
  market's escrow) sit in a *module account*: an ordinary address derived from the module
  name, as Cosmos does. Hence the supply invariant needs no per-module bookkeeping.
* No balance is ever negative: ``transfer``/``burn`` raise ``TxRejected`` (INSUFFICIENT_FUNDS)
  before writing anything. Amounts must be non-negative integers.
* ``Send`` to a blocked module account (the pools above, or any the market blocks with
  ``block_address``) is refused: their balances mirror other state.
* An account record whose balance and sequence are both 0 is deleted (no empty records).
"""

from __future__ import annotations

import hashlib

import bech32

from p2pakash import crypto
from p2pakash.crypto import ADDRESS_PREFIX
from p2pakash.ledger.handlers import Context
from p2pakash.ledger.state import (
    K_BURNED,
    K_MINTED,
    K_SUPPLY,
    P_ACC,
    AccountRec,
    Store,
)
from p2pakash.ledger.txs import Code, Event, Send, TxRejected

FEE_COLLECTOR = "fee_collector"
BONDED_POOL = "bonded_tokens_pool"
UNBONDING_POOL = "not_bonded_tokens_pool"


def module_address(name: str) -> str:
    """The account address of a module: bech32 of sha256(b"module:" + name)[:20]."""
    raw = hashlib.sha256(b"module:" + name.encode()).digest()[:20]
    words = bech32.convertbits(raw, 8, 5)
    assert words is not None
    return str(bech32.bech32_encode(ADDRESS_PREFIX, words))


_BLOCKED: set[str] = set()


def block_address(addr: str) -> None:
    """Refuse ``Send`` to ``addr`` (module accounts whose balance mirrors other state)."""
    _BLOCKED.add(addr)


_KEYS: dict[str, bytes] = {}  # address -> its account key (a tx reads and writes it 3-6 times)
_EMPTY = AccountRec(balance=0, sequence=0)


def _key(addr: str) -> bytes:
    key = _KEYS.get(addr)
    if key is None:
        if len(_KEYS) >= 65536:
            _KEYS.clear()
        key = _KEYS[addr] = P_ACC + addr.encode()
    return key


def get_account(store: Store, addr: str) -> AccountRec:
    rec = store.get(_key(addr), AccountRec)
    return _EMPTY if rec is None else rec


def put_account(store: Store, addr: str, rec: AccountRec) -> None:
    if rec.balance < 0:
        raise AssertionError(f"negative balance for {addr}")  # unreachable: callers check
    if rec.balance == 0 and rec.sequence == 0:
        store.delete(_key(addr))
    else:
        store.put_message(_key(addr), rec)


def balance(store: Store, addr: str) -> int:
    return get_account(store, addr).balance


def _check_amount(amount: int) -> None:
    if type(amount) is not int or amount < 0:
        raise TxRejected(Code.INVALID_MSG, f"amount must be a non-negative integer, got {amount!r}")


def add(store: Store, addr: str, amount: int) -> None:
    """Credit ``addr`` (internal: the caller moves the same amount out elsewhere)."""
    _check_amount(amount)
    rec = get_account(store, addr)
    put_account(store, addr, AccountRec(balance=rec.balance + amount, sequence=rec.sequence))


def sub(store: Store, addr: str, amount: int) -> None:
    """Debit ``addr``; INSUFFICIENT_FUNDS names what it had and what was asked."""
    _check_amount(amount)
    rec = get_account(store, addr)
    if rec.balance < amount:
        raise TxRejected(Code.INSUFFICIENT_FUNDS,
                         f"insufficient funds: {addr} has {rec.balance} uakt, needs {amount}")
    put_account(store, addr, AccountRec(balance=rec.balance - amount, sequence=rec.sequence))


def transfer(store: Store, src: str, dst: str, amount: int) -> None:
    sub(store, src, amount)
    add(store, dst, amount)


def mint(store: Store, addr: str, amount: int) -> None:
    """Create ``amount`` new uakt in ``addr`` (genesis; a future inflation rule)."""
    add(store, addr, amount)
    store.put_int(K_SUPPLY, store.get_int(K_SUPPLY) + amount)
    store.put_int(K_MINTED, store.get_int(K_MINTED) + amount)


def burn(store: Store, addr: str, amount: int) -> None:
    """Destroy ``amount`` uakt held by ``addr`` (slashing)."""
    sub(store, addr, amount)
    store.put_int(K_SUPPLY, store.get_int(K_SUPPLY) - amount)
    store.put_int(K_BURNED, store.get_int(K_BURNED) + amount)


def supply(store: Store) -> int:
    return store.get_int(K_SUPPLY)


for _name in (FEE_COLLECTOR, BONDED_POOL, UNBONDING_POOL):
    block_address(module_address(_name))


def send(ctx: Context, msg: Send) -> None:
    """The ``Send`` handler: move ``amount`` uakt from the signer to ``to``."""
    try:
        crypto.address_bytes(msg.to)
    except ValueError as exc:
        raise TxRejected(Code.INVALID_MSG, f"Send.to: {exc}") from None
    if msg.to in _BLOCKED:
        raise TxRejected(Code.INVALID_MSG, f"Send.to: {msg.to} is a module account")
    if msg.amount <= 0:
        raise TxRejected(Code.INVALID_MSG, f"Send.amount must be positive, got {msg.amount}")
    transfer(ctx.store, ctx.sender, msg.to, msg.amount)
    if not ctx.quiet:  # ``ctx.emit("transfer", ...)``, built directly: one per Send
        ctx.events.append(Event(type="transfer", attrs=(
            ("sender", ctx.sender), ("recipient", msg.to), ("amount", str(msg.amount)))))
