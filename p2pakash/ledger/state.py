"""State records (wire tags 250-269), the key layout, and typed access over a KV.

Rules and invariants:
* Every consensus value is a wire-encoded record (canonical CBOR) — never JSON or pickle.
* Key layout (all ASCII prefixes, then raw bytes; iteration is in byte order):
    ``acc/<address>``                        AccountRec
    ``val/<pubkey 32>``                      ValidatorRec
    ``del/<validator pubkey 32><delegator>`` DelegationRec (shares)
    ``unb/<completion ms u64><seq u64>``     UnbondingRec (so maturity is a prefix scan)
    ``sig/<pubkey 32>``                      SigningInfo
    ``mis/<pubkey 32><slot u16>``            b"": missed height h (slot = h % window)
    ``vs/<effective height u64>``            ValSet: the active set from that height on
    ``g/<name>``                             globals: chain_id, params, supply, burned, minted
    ``\\x00meta/<name>``                     height and app hash: *not* part of the hash
  Other modules (the market) use their own prefixes, never these.
* A key under ``\\x00meta/`` is bookkeeping about the state, excluded from the app hash.
* Decoded records are memoised process-wide by (class, bytes): records are immutable and
  decoding is a pure function, so every ledger of a simulation shares one bounded cache
  and a state read costs a dict lookup instead of a CBOR decode and canonical re-encode.
* ``encode_record`` equals ``wire.encode`` for every record, faster (a type-keyed walk;
  the hot path is an account write per tx and party). A record written is put in the
  decode cache under its new bytes, so reading it back costs no decode; written into an
  ``Overlay`` it stays a value (``Overlay.set_record``) until bytes are needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import attrs
import cbor2

from p2pakash import wire
from p2pakash.errors import StorageError
from p2pakash.ledger.kv import KV, Overlay, Record
from p2pakash.ledger.params import POWER_REDUCTION, Params

T = TypeVar("T")

META = b"\x00meta/"
K_HEIGHT = META + b"height"
K_APP_HASH = META + b"app_hash"
K_CHAIN_ID = b"g/chain_id"
K_PARAMS = b"g/params"
K_SUPPLY = b"g/supply"
K_BURNED = b"g/burned"
K_MINTED = b"g/minted"
K_UNB_SEQ = b"g/unb_seq"
P_ACC = b"acc/"
P_VAL = b"val/"
P_DEL = b"del/"
P_UNB = b"unb/"
P_SIG = b"sig/"
P_MISS = b"mis/"
P_VALSET = b"vs/"


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


@wire.message(tag=250)
@attrs.frozen(kw_only=True)
class AccountRec:
    balance: int
    sequence: int


@wire.message(tag=251)
@attrs.frozen(kw_only=True)
class ValidatorRec:
    pubkey: bytes
    moniker: str
    tokens: int  # uakt bonded to this validator (self + delegations), after slashes
    shares: int  # total delegation shares issued
    jailed: bool = False
    tombstoned: bool = False
    jailed_until_ms: int = 0

    @property
    def power(self) -> int:
        return self.tokens // POWER_REDUCTION


@wire.message(tag=252)
@attrs.frozen(kw_only=True)
class DelegationRec:
    shares: int


@wire.message(tag=253)
@attrs.frozen(kw_only=True)
class UnbondingRec:
    delegator: str
    validator: bytes
    amount: int
    creation_height: int
    completion_ms: int


@wire.message(tag=254)
@attrs.frozen(kw_only=True)
class SigningInfo:
    start_height: int  # when tracking (re)started: creation, unjail or entry into the set
    missed: int  # missed blocks among the window's slots


@wire.message(tag=255)
@attrs.frozen(kw_only=True)
class ValSet:
    validators: tuple[tuple[bytes, int], ...]  # (pubkey, power), power descending


_DECODED: dict[tuple[type, bytes], object] = {}
DECODE_CACHE_SIZE = 1 << 16


def decode_record(raw: bytes, cls: type[T]) -> T:
    key = (cls, raw)
    found = _DECODED.get(key)
    if found is None:
        found = wire.decode(raw, cls)
        _memo(key, found)
    return found  # type: ignore[return-value]


def _memo(key: tuple[type, bytes], value: object) -> None:
    if len(_DECODED) >= DECODE_CACHE_SIZE:
        del _DECODED[next(iter(_DECODED))]  # the oldest entry
    _DECODED[key] = value


_INT_MAX = 2**64 - 1


def encode_record(value: object) -> bytes:
    """``wire.encode(value)``: the same bytes (or error). An ``AccountRec`` (most of a
    block's writes) is put together from its heads, without the generic walk."""
    if type(value) is AccountRec and 0 <= value.balance <= _INT_MAX \
            and 0 <= value.sequence <= _INT_MAX:
        return (_ACCOUNT_HEAD + wire.cbor_head(0, value.balance)
                + wire.cbor_head(0, value.sequence))
    return wire.encode(value)


# The tag and the 2-item array head every AccountRec encoding starts with.
_ACCOUNT_HEAD = cbor2.dumps(cbor2.CBORTag(wire.TAG_BASE + wire.tag_of(AccountRec), [0, 0]))[:-2]


def remember_record(raw: bytes, value: object) -> None:
    """Seed the decode cache with a record just encoded (decode(encode(v)) == v)."""
    key = (type(value), raw)
    if key not in _DECODED:
        _memo(key, value)


class Store:
    """Typed reads and writes of wire records over a KV."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv

    def get(self, key: bytes, cls: type[T]) -> T | None:
        kv = self.kv
        if type(kv) is Overlay:
            entry = kv.lookup(key)
            if isinstance(entry, Record):
                if type(entry.value) is cls:
                    return entry.value
                entry = entry.raw()
            return None if entry is None else decode_record(entry, cls)
        raw = kv.get(key)
        return None if raw is None else decode_record(raw, cls)

    def put(self, key: bytes, value: object) -> None:
        kv = self.kv
        record = wire.is_message(value)  # frozen: safe to keep as a value
        if record and type(kv) is Overlay:
            kv.set_record(key, value, encode_record)  # encoded only if it reaches bytes
            return
        raw = encode_record(value)
        if record:  # the next read needs no decode
            remember_record(raw, value)
        kv.set(key, raw)

    def put_message(self, key: bytes, value: object) -> None:
        """``put`` of a value the caller knows is a wire message (a record class)."""
        kv = self.kv
        if type(kv) is Overlay:
            kv.writes[key] = Record(value, encode_record)  # ``Overlay.set_record``, inline
            return
        raw = encode_record(value)
        remember_record(raw, value)
        kv.set(key, raw)

    def delete(self, key: bytes) -> None:
        self.kv.delete(key)

    def scan(self, prefix: bytes, cls: type[T]) -> Iterator[tuple[bytes, T]]:
        for key, raw in self.kv.iterate(prefix):
            yield key, decode_record(raw, cls)

    def get_int(self, key: bytes) -> int:
        value = self.get(key, int)
        return 0 if value is None else value

    def put_int(self, key: bytes, value: int) -> None:
        self.put(key, value)

    # ------------------------------------------------------------ globals

    def chain_id(self) -> str:
        """The chain ID written at genesis (``Ledger.chain_id`` caches it)."""
        value = self.get(K_CHAIN_ID, str)
        if value is None:
            raise StorageError("state has no chain ID: was the genesis applied?")
        return value

    def params(self) -> Params:
        value = self.get(K_PARAMS, Params)
        return Params() if value is None else value

    # ------------------------------------------------------------ records

    def validator(self, pubkey: bytes) -> ValidatorRec | None:
        return self.get(P_VAL + pubkey, ValidatorRec)

    def put_validator(self, rec: ValidatorRec) -> None:
        self.put(P_VAL + rec.pubkey, rec)

    def validators(self) -> Iterator[ValidatorRec]:
        for _, rec in self.scan(P_VAL, ValidatorRec):
            yield rec
