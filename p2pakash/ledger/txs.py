"""Transaction wire types (tags 200-219) and result codes.

Rules and invariants:
* ``Tx{body, pubkey, signature}``; ``signature = key.sign("tx", chain_id, wire.encode(body))``.
  The chain is bound by the signature domain, never by a body field. ``body.sender`` must be
  ``crypto.address(pubkey)``. The tx hash is sha256 of the tx's canonical encoding.
* ``TxBody.msgs`` holds any registered wire message (type ``object``): the ledger refuses a
  message type that has no registered handler (``Code.UNKNOWN_MSG``). This is what lets the
  market register CreateLease & co. (tags 300-399) without this file knowing them.
* Validators are named by their consensus public key (32 bytes). Our choice: the consensus
  key *is* the operator's account key, so ``CreateValidator.pubkey`` must equal the tx
  signer's key (proof of possession comes for free, as does the operator address).
* Amounts are integers in uakt. A refusal is a ``TxRejected`` (a ``TxError``) carrying a
  ``Code``; its message names the reason (e.g. "wrong sequence: expected 3, got 2").
"""

from __future__ import annotations

import enum
import hashlib

import attrs

from p2pakash import crypto, wire
from p2pakash.errors import TxError

MAX_MEMO = 256
MAX_MONIKER = 70


class Code(enum.IntEnum):
    OK = 0
    DECODE = 1
    TOO_LARGE = 2
    BAD_SIGNATURE = 3
    WRONG_SEQUENCE = 4
    INSUFFICIENT_FEE = 5
    INSUFFICIENT_FUNDS = 6
    UNKNOWN_MSG = 7
    INVALID_MSG = 8
    UNKNOWN_VALIDATOR = 9
    VALIDATOR_EXISTS = 10
    NOT_JAILED = 11
    JAILED = 12
    TOMBSTONED = 13
    INSUFFICIENT_STAKE = 14


class TxRejected(TxError):
    """A refused transaction: ``code`` says which rule, the message says why."""

    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@wire.message(tag=202)
@attrs.frozen(kw_only=True)
class Send:
    to: str
    amount: int


@wire.message(tag=203)
@attrs.frozen(kw_only=True)
class CreateValidator:
    pubkey: bytes  # must be the tx signer's key (see module docstring)
    self_stake: int
    moniker: str


@wire.message(tag=204)
@attrs.frozen(kw_only=True)
class Delegate:
    validator: bytes  # consensus public key
    amount: int


@wire.message(tag=205)
@attrs.frozen(kw_only=True)
class Undelegate:
    validator: bytes
    amount: int


@wire.message(tag=206)
@attrs.frozen(kw_only=True)
class Unjail:
    """Unjail the validator whose key signed the tx."""


@wire.message(tag=201)
@attrs.frozen(kw_only=True)
class TxBody:
    sender: str
    sequence: int
    fee: int
    memo: str
    msgs: tuple[object, ...]


@wire.message(tag=200)
@attrs.frozen(kw_only=True)
class Tx:
    body: TxBody
    pubkey: bytes
    signature: bytes

    def encode(self) -> bytes:
        return wire.encode(self)

    def hash(self) -> bytes:
        return tx_hash(self)


def tx_hash(tx: Tx | bytes) -> bytes:
    """sha256 of the canonical encoding (pass the bytes when you already have them)."""
    data = tx if isinstance(tx, bytes) else wire.encode(tx)
    return hashlib.sha256(data).digest()


def sign_tx(key: crypto.PrivateKey, chain_id: str, *, sequence: int, msgs: tuple[object, ...],
            fee: int = 0, memo: str = "") -> Tx:
    """Build and sign a tx from ``key``'s account."""
    body = TxBody(sender=key.address, sequence=sequence, fee=fee, memo=memo, msgs=msgs)
    return Tx(body=body, pubkey=key.public, signature=key.sign("tx", chain_id, wire.encode(body)))


@wire.message(tag=220)
@attrs.frozen(kw_only=True)
class Event:
    type: str
    attrs: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.attrs if k == name), None)


def event(type_: str, **fields: object) -> Event:
    """An event with its attributes in keyword order, values rendered with ``str``."""
    return Event(type=type_, attrs=tuple((k, _render(v)) for k, v in fields.items()))


def _render(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


@wire.message(tag=221)
@attrs.frozen(kw_only=True)
class TxResult:
    code: int
    log: str
    events: tuple[Event, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == Code.OK
