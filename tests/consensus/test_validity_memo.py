"""validity.check_body: the process-wide memo of passed body checks never hides a fault."""

from __future__ import annotations

import attrs
import pytest

from p2pakash.consensus import validity
from p2pakash.consensus.types import Block, build_block
from p2pakash.crypto import PrivateKey
from p2pakash.errors import RemoteProtocolError
from p2pakash.ledger import Send, sign_tx
from tests.consensus import CHAIN, KEYS, make_set

BIG = 1 << 20


def _block(txs: tuple[bytes, ...]) -> Block:
    vs = make_set(1, 1, 1, 1)
    return build_block(chain_id=CHAIN, height=1, time_ms=1000, last_block_hash=b"",
                       validators_hash=vs.hash(), next_validators_hash=vs.hash(),
                       app_hash=b"", proposer=KEYS[0].public, txs=txs)


def _tx() -> bytes:
    a, b = PrivateKey.from_seed(b"a" * 32), PrivateKey.from_seed(b"b" * 32)
    return sign_tx(a, CHAIN, sequence=0, msgs=(Send(to=b.address, amount=1),)).encode()


def test_a_passed_block_is_rechecked_against_smaller_limits() -> None:
    tx = _tx()
    block = _block((tx,))
    for _ in range(2):
        validity.check_body(block, max_block_bytes=BIG, max_tx_bytes=BIG)
    with pytest.raises(RemoteProtocolError, match="exceed"):
        validity.check_body(block, max_block_bytes=len(tx) - 1, max_tx_bytes=BIG)
    with pytest.raises(RemoteProtocolError, match="tx 0 does not decode"):
        validity.check_body(block, max_block_bytes=BIG, max_tx_bytes=len(tx) - 1)


def test_a_failed_block_fails_every_time() -> None:
    junk = _block((b"junk",))
    good = _block((_tx(),))
    bad_hash = attrs.evolve(good, header=attrs.evolve(good.header, txs_hash=bytes(32)))
    for _ in range(3):
        with pytest.raises(RemoteProtocolError, match="tx 0 does not decode"):
            validity.check_body(junk, max_block_bytes=BIG, max_tx_bytes=BIG)
        with pytest.raises(RemoteProtocolError, match="txs_hash"):
            validity.check_body(bad_hash, max_block_bytes=BIG, max_tx_bytes=BIG)


def test_memo_is_bounded_and_keyed_by_the_object() -> None:
    blocks = [_block((bytes([i]) * 3,)) for i in range(validity.BODY_MEMO + 3)]
    for b in blocks:
        with pytest.raises(RemoteProtocolError):
            validity.check_body(b, max_block_bytes=BIG, max_tx_bytes=BIG)
    empty = [_block(()) for _ in range(validity.BODY_MEMO + 3)]
    for b in empty:
        validity.check_body(b, max_block_bytes=BIG, max_tx_bytes=BIG)
    assert len(validity._bodies_ok) <= validity.BODY_MEMO
