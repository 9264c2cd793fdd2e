"""The fast paths must equal the generic codec: tx bytes kept from decoding, the body
slice the signature covers, memoised tx decoding, flat record encoding, the SQLite cache."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pakash import wire
from p2pakash.errors import DecodeError, LocalProtocolError
from p2pakash.ledger import (
    Code,
    MemoryKV,
    Overlay,
    Send,
    SqliteKV,
    Tx,
    TxBody,
    TxResult,
    decode_tx,
    sign_tx,
)
from p2pakash.ledger.kv import Record
from p2pakash.ledger.state import (
    AccountRec,
    SigningInfo,
    Store,
    UnbondingRec,
    ValidatorRec,
    ValSet,
    encode_record,
)
from p2pakash.ledger.txs import event
from tests.ledger.helpers import CHAIN, USERS

A, B = USERS[0], USERS[1]


@pytest.mark.parametrize("memo", ["", "m" * 23, "m" * 24, "m" * 255, "m" * 256, "m" * 70_000])
@pytest.mark.parametrize(("pubkey", "signature"), [
    (A.public, b"s" * 64), (b"", b""), (b"k" * 23, b"s" * 24), (b"k" * 300, b"s" * 70_000)])
def test_body_bytes_is_the_encoded_body(memo: str, pubkey: bytes, signature: bytes) -> None:
    body = TxBody(sender=A.address, sequence=3, fee=0, memo=memo,
                  msgs=(Send(to=B.address, amount=5),))
    tx = Tx(body=body, pubkey=pubkey, signature=signature)
    assert tx.body_bytes() == wire.encode(body)
    decoded = decode_tx(wire.encode(tx))
    assert decoded == tx and decoded.body_bytes() == wire.encode(body)
    assert decoded.encode() == wire.encode(tx)


def test_decode_tx_keeps_the_bytes_and_memoises() -> None:
    raw = sign_tx(A, CHAIN, sequence=0, msgs=(Send(to=B.address, amount=1),)).encode()
    tx = decode_tx(raw)
    assert tx.encode() is raw or tx.encode() == raw
    assert decode_tx(bytes(bytearray(raw))) is tx
    assert tx.hash() == wire.digest(tx)


def test_tx_hash_of_memoised_bytes_reuses_the_tx_hash_and_a_seeded_hash_is_kept() -> None:
    import hashlib

    from p2pakash.ledger.txs import tx_hash
    raw = sign_tx(A, CHAIN, sequence=7, msgs=(Send(to=B.address, amount=3),)).encode()
    fresh = bytes(bytearray(raw))
    assert tx_hash(fresh) == hashlib.sha256(raw).digest()  # not memoised yet: computed
    tx = decode_tx(fresh, hash_=hashlib.sha256(fresh).digest())
    assert tx.__dict__["_hash"] == hashlib.sha256(raw).digest() == wire.digest(tx)
    object.__setattr__(tx, "_hash", b"x" * 32)  # proves the memoised tx's hash is used
    assert tx_hash(bytes(bytearray(raw))) == b"x" * 32
    object.__setattr__(tx, "_hash", hashlib.sha256(raw).digest())
    assert tx_hash(bytearray(raw)) == hashlib.sha256(raw).digest()  # type: ignore[arg-type]


def test_decode_tx_refuses_what_wire_decode_refuses() -> None:
    raw = sign_tx(A, CHAIN, sequence=5, msgs=(Send(to=B.address, amount=1),)).encode()
    with pytest.raises(DecodeError, match="trailing bytes"):
        decode_tx(raw + b"\x00")
    with pytest.raises(DecodeError, match="exceeds the limit of 10"):
        decode_tx(raw, max_size=10)
    # sequence 5 written as a one-byte-extended integer (0x18 0x05): not canonical
    tree = cbor2.loads(raw)
    body = cbor2.dumps(tree.value[0])
    assert b"\x05" in body
    bad = raw.replace(body, body.replace(b"\x05", b"\x18\x05", 1), 1)
    with pytest.raises(DecodeError, match="non-canonical"):
        wire.decode(bad, Tx)
    with pytest.raises(DecodeError, match="non-canonical"):
        decode_tx(bad)
    with pytest.raises(DecodeError):
        decode_tx(wire.encode(Send(to=B.address, amount=1)))


@pytest.mark.parametrize("record", [
    AccountRec(balance=0, sequence=0), AccountRec(balance=2**64 - 1, sequence=-(2**63)),
    ValidatorRec(pubkey=A.public, moniker="v é", tokens=10, shares=3, jailed=True),
    UnbondingRec(delegator=A.address, validator=B.public, amount=1, creation_height=2,
                 completion_ms=3),
    SigningInfo(start_height=1, missed=0), ValSet(validators=((A.public, 5),)), 7, "text",
    TxResult(code=0, log="", events=(event("tx", hash=b"\x01", n=3), event("t"))),
    TxResult(code=Code.INVALID_MSG, log="enum code: the generic path"), None, (1, (b"", "")),
])
def test_encode_record_equals_wire_encode(record: object) -> None:
    assert encode_record(record) == wire.encode(record)


@given(st.integers(-(2**64), 2**65), st.integers(-(2**64), 2**65))
def test_encode_record_of_an_account_is_wire_encode_byte_for_byte(balance: int,
                                                                  sequence: int) -> None:
    rec = AccountRec(balance=balance, sequence=sequence)
    try:
        expected = wire.encode(rec)
    except LocalProtocolError:
        with pytest.raises(LocalProtocolError):
            encode_record(rec)
        return
    assert encode_record(rec) == expected
    for edge in (23, 24, 255, 256, 2**16 - 1, 2**16, 2**32 - 1, 2**32, 2**64 - 1):
        rec = AccountRec(balance=edge, sequence=edge - 1)
        assert encode_record(rec) == wire.encode(rec)


def test_write_many_is_set_and_delete_of_each_pair(tmp_path: Path) -> None:
    one, many = SqliteKV(tmp_path / "one.db"), SqliteKV(tmp_path / "many.db")
    for kv in (one, many):
        kv.set(b"gone", b"x")
        kv.set(b"kept", b"y")
        kv.commit()
    writes: list[tuple[bytes, bytes | None]] = [(b"a", b"1"), (b"gone", None), (b"kept", b"z")]
    for key, value in writes:
        one.delete(key) if value is None else one.set(key, value)
    many.write_many(writes)
    assert many.get(b"gone") is None and many.get(b"kept") == b"z"  # the cache follows
    for kv in (one, many):
        kv.commit()
    assert list(one.iterate(b"")) == list(many.iterate(b""))
    many.write_many([(b"a", b"2")])
    many.rollback()
    assert many.get(b"a") == b"1"
    one.close()
    many.close()
    again = SqliteKV(tmp_path / "many.db")
    assert list(again.iterate(b"")) == [(b"a", b"1"), (b"kept", b"z")]
    again.close()


def test_encode_record_refuses_an_integer_out_of_range() -> None:
    with pytest.raises(LocalProtocolError, match="out of the 64-bit wire range"):
        encode_record(AccountRec(balance=2**64, sequence=0))


def test_sqlite_cache_follows_writes_commits_and_rollbacks(tmp_path: Path) -> None:
    kv = SqliteKV(tmp_path / "s.db")
    assert kv.get(b"a") is None
    kv.set(b"a", b"1")
    kv.commit()
    kv.set(b"a", b"2")
    kv.delete(b"b")
    assert kv.get(b"a") == b"2"
    kv.rollback()
    assert kv.get(b"a") == b"1"  # the rolled-back write is gone from the cache too
    kv.delete(b"a")
    assert kv.get(b"a") is None and list(kv.iterate(b"")) == []
    kv.commit()
    kv.close()
    again = SqliteKV(tmp_path / "s.db")
    assert again.get(b"a") is None
    again.close()


def test_overlay_records_are_encoded_once_and_only_when_bytes_are_needed() -> None:
    calls: list[object] = []

    def encode(value: object) -> bytes:
        calls.append(value)
        return wire.encode(value)

    base = MemoryKV()
    block = Overlay(base)
    tx = Overlay(block)
    rec = AccountRec(balance=5, sequence=1)
    tx.set_record(b"acc/x", rec, encode)
    assert Store(tx).get(b"acc/x", AccountRec) is rec and calls == []
    tx.flush()  # into an overlay: still a value
    assert Store(block).get(b"acc/x", AccountRec) is rec and calls == []
    assert block.get(b"acc/x") == wire.encode(rec) and len(calls) == 1
    assert block.sorted_writes() == [(b"acc/x", wire.encode(rec))]
    assert list(block.iterate(b"acc/")) == [(b"acc/x", wire.encode(rec))]
    block.flush()  # into the base store: bytes, from the one encoding made
    assert base.get(b"acc/x") == wire.encode(rec) and len(calls) == 1


def test_store_put_keeps_values_in_overlays_and_bytes_elsewhere() -> None:
    base = MemoryKV()
    over = Overlay(base)
    rec = AccountRec(balance=9, sequence=0)
    Store(over).put(b"acc/y", rec)
    Store(base).put(b"acc/z", rec)
    assert isinstance(over.writes[b"acc/y"], Record)
    assert base.get(b"acc/z") == wire.encode(rec)
    assert Store(over).get(b"acc/y", AccountRec) == rec == Store(over).get(b"acc/z", AccountRec)
    for key in (b"acc/y", b"acc/z"):  # read as another record: the bytes decide, as ever
        with pytest.raises(DecodeError, match="expected SigningInfo, got AccountRec"):
            Store(over).get(key, SigningInfo)


def test_event_renders_bytes_as_hex_and_everything_else_with_str() -> None:
    class Raw(bytes):
        pass

    class Name(str):
        pass

    e = event("t", a=b"\x01\xff", b=Raw(b"\x02"), c="x", d=Name("y"), e=7, f=True, g=None,
              h=Code.OK)
    assert e.attrs == (("a", "01ff"), ("b", "02"), ("c", "x"), ("d", "y"), ("e", "7"),
                       ("f", "True"), ("g", "None"), ("h", "0"))
    assert all(type(v) is str for _, v in e.attrs)
