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
* A ``Tx`` keeps its canonical encoding once known (``encode``, cached; ``decode_tx`` stores
  the received bytes, which canonical decoding proved equal to it), so its hash, size and
  the signed body bytes (``body_bytes``: a slice of the encoding) are never re-encoded.
* ``decode_tx`` memoises decoded txs process-wide by their bytes (bounded): decoding is a
  pure function, so the mempool, block validity and block execution of a node (or of every
  node of a simulation) decode each tx once.
* ``TxBatch`` carries many encoded txs in one gossip message on the ``txs`` topic.
"""

from __future__ import annotations

import enum
import hashlib

import attrs
import cbor2

from p2pakash import crypto, wire
from p2pakash.errors import DecodeError, TxError

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
@attrs.frozen(kw_only=True, slots=False)  # no slots: the encoding is cached in __dict__
class Tx:
    body: TxBody
    pubkey: bytes
    signature: bytes

    def encode(self) -> bytes:
        """The canonical encoding (computed once, or the bytes it was decoded from)."""
        raw: bytes | None = self.__dict__.get("_raw")
        if raw is None:
            raw = wire.encode(self)
            object.__setattr__(self, "_raw", raw)
        return raw

    def hash(self) -> bytes:
        digest: bytes | None = self.__dict__.get("_hash")
        if digest is None:
            digest = hashlib.sha256(self.encode()).digest()
            object.__setattr__(self, "_hash", digest)
        return digest

    def body_bytes(self) -> bytes:
        """``wire.encode(self.body)``, what the signature covers: a slice of ``encode()``.

        The tx is the array [body, pubkey, signature] under its tag; the body's encoding
        sits between the tag and array heads and the two byte strings' encodings."""
        raw = self.encode()
        return raw[_TX_HEAD:len(raw) - _bstr_size(len(self.pubkey))
                   - _bstr_size(len(self.signature))]


def _bstr_size(n: int) -> int:
    """Bytes of the canonical CBOR encoding of a byte string of length ``n``."""
    return n + (1 if n < 24 else 2 if n < 1 << 8 else 3 if n < 1 << 16 else
                5 if n < 1 << 32 else 9)


# The tag head plus the head of the 3-item array: three nulls encode as one byte each.
_TX_HEAD = len(cbor2.dumps(cbor2.CBORTag(wire.TAG_BASE + wire.tag_of(Tx), [None] * 3))) - 3


def tx_hash(tx: Tx | bytes) -> bytes:
    """sha256 of the canonical encoding (pass the bytes when you already have them).

    Bytes that ``decode_tx`` memoised reuse their tx's cached hash: a committed tx's hash
    is wanted by the mempool, the tx index and the block event, once each per node."""
    if isinstance(tx, Tx):
        return tx.hash()
    found = _DECODED.get(tx) if type(tx) is bytes else None
    return found.hash() if found is not None else hashlib.sha256(tx).digest()


_DECODED: dict[bytes, Tx] = {}
DECODE_CACHE_SIZE = 1 << 15


def decode_tx(raw: bytes, *, max_size: int = wire.MAX_MESSAGE_SIZE,
              hash_: bytes | None = None) -> Tx:
    """``wire.decode(raw, Tx, max_size=max_size)``, memoised by ``raw`` (DecodeError as it).

    ``hash_``, when the caller already has ``tx_hash(raw)``, seeds the tx's cached hash."""
    if len(raw) > max_size:
        raise DecodeError(f"message of {len(raw)} bytes exceeds the limit of {max_size}")
    raw = bytes(raw)
    found = _DECODED.get(raw)
    if found is not None:
        return found
    tx = wire.decode(raw, Tx, max_size=max_size)
    tx.__dict__["_raw"] = raw
    if hash_ is not None:
        tx.__dict__["_hash"] = hash_
    if len(_DECODED) >= DECODE_CACHE_SIZE:
        del _DECODED[next(iter(_DECODED))]
    _DECODED[raw] = tx
    return tx


def sign_tx(key: crypto.PrivateKey, chain_id: str, *, sequence: int, msgs: tuple[object, ...],
            fee: int = 0, memo: str = "") -> Tx:
    """Build and sign a tx from ``key``'s account."""
    body = TxBody(sender=key.address, sequence=sequence, fee=fee, memo=memo, msgs=msgs)
    return Tx(body=body, pubkey=key.public, signature=key.sign("tx", chain_id, wire.encode(body)))


MAX_TX_BATCH = 4096


@wire.message(tag=225)
@attrs.frozen(kw_only=True)
class TxBatch:
    """Encoded txs gossiped together (each item is one tx's canonical encoding)."""

    txs: tuple[bytes, ...] = attrs.field(validator=wire.max_items(MAX_TX_BATCH))


@wire.message(tag=220)
@attrs.frozen(kw_only=True)
class Event:
    type: str
    attrs: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.attrs if k == name), None)


def event(type_: str, **fields: object) -> Event:
    """An event with its attributes in keyword order, values rendered with ``str``."""
    return Event(type=type_, attrs=tuple([  # _render inlined: a committed tx makes two events
        (k, v if type(v) is str else v.hex() if isinstance(v, bytes) else str(v))
        for k, v in fields.items()]))


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
