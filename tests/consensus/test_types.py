"""Consensus wire types: encoding, signatures, block hashes, commits and evidence."""

from __future__ import annotations

import attrs
import pytest

from p2pakash import wire
from p2pakash.consensus.types import (
    Block,
    Commit,
    CommitSig,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    VoteType,
    verify_commit,
    verify_proposal,
    verify_vote,
)
from p2pakash.crypto import VerifyCache
from p2pakash.errors import DecodeError, InvalidSignature, RemoteProtocolError
from tests.consensus import CHAIN, KEYS, ZERO, make_block, make_set, proposal, vote

PRE = VoteType.PREVOTE
PC = VoteType.PRECOMMIT


def test_vote_signature_binds_chain_kind_and_every_field() -> None:
    v = vote(KEYS[0], PRE, 3, 1, ZERO)
    verify_vote(v, CHAIN)
    with pytest.raises(InvalidSignature):
        verify_vote(v, "other-chain")
    for change in ({"round": 2}, {"block_hash": None}, {"type": PC}, {"timestamp_ms": 2}):
        with pytest.raises(InvalidSignature):
            verify_vote(attrs.evolve(v, **change), CHAIN)
    cache = VerifyCache()
    verify_vote(v, CHAIN, cache)
    verify_vote(v, CHAIN, cache)  # the same object: remembered, the cache is not asked
    assert (cache.misses, cache.hits) == (1, 0)
    verify_vote(wire.decode(wire.encode(v), Vote), CHAIN, cache)  # an equal copy: the cache
    assert (cache.misses, cache.hits) == (1, 1)


def test_vote_memo_is_per_cache_and_chain_and_never_keeps_a_failure() -> None:
    v = vote(KEYS[2], PRE, 4, 0, ZERO)
    first, second = VerifyCache(), VerifyCache()
    verify_vote(v, CHAIN, first)
    verify_vote(v, CHAIN, second)  # another cache checks for itself
    assert second.misses == 1
    with pytest.raises(InvalidSignature):
        verify_vote(v, "other-chain", first)  # verified for CHAIN only
    forged = attrs.evolve(v, round=1)
    for _ in range(2):
        with pytest.raises(InvalidSignature):
            verify_vote(forged, CHAIN, first)


def test_vote_round_trips_and_refuses_bad_fields() -> None:
    v = vote(KEYS[1], PC, 1, 0, None)
    assert wire.decode(wire.encode(v), Vote) == v
    with pytest.raises(ValueError, match="block_hash"):
        attrs.evolve(v, block_hash=b"short")
    with pytest.raises(ValueError, match="height"):
        attrs.evolve(v, height=0)
    bad = wire.encode(v).replace(v.signature, v.signature[:63])  # 63 bytes under a 64-byte length
    with pytest.raises(DecodeError):
        wire.decode(bad, Vote)


def test_block_hash_is_header_digest_and_body_is_checked() -> None:
    vs = make_set(1, 1, 1, 1)
    block = make_block(2, vs, KEYS[0])
    assert block.hash() == wire.digest(block.header)
    block.check_body()
    assert wire.decode(wire.encode(block), Block) == block
    tampered = attrs.evolve(block, txs=(b"other",))
    assert tampered.hash() == block.hash()  # same header, so body check must catch it
    with pytest.raises(RemoteProtocolError, match="txs_hash"):
        tampered.check_body()


def test_proposal_signs_block_hash_and_pol_round_bounds() -> None:
    vs = make_set(1, 1, 1, 1)
    block = make_block(1, vs, KEYS[0])
    p = proposal(KEYS[0], block, round=2, pol_round=1)
    verify_proposal(p, CHAIN)
    assert wire.decode(wire.encode(p), Proposal) == p
    with pytest.raises(InvalidSignature):
        verify_proposal(attrs.evolve(p, pol_round=0), CHAIN)
    with pytest.raises(ValueError, match="pol_round"):
        attrs.evolve(p, pol_round=2)
    with pytest.raises(ValueError, match="height"):
        attrs.evolve(p, height=5)


def _commit(vs_keys: list[int], block_hash: bytes, height: int = 1, round: int = 0) -> Commit:
    sigs = []
    for i in vs_keys:
        v = vote(KEYS[i], PC, height, round, block_hash)
        sigs.append(CommitSig(validator=v.validator, timestamp_ms=v.timestamp_ms,
                              signature=v.signature))
    return Commit(height=height, round=round, block_hash=block_hash, signatures=tuple(sigs))


def test_verify_commit_needs_more_than_two_thirds_of_distinct_members() -> None:
    vs = make_set(1, 1, 1, 1)
    h = bytes(range(32))
    verify_commit(_commit([0, 1, 2], h), vs, CHAIN, h)
    with pytest.raises(RemoteProtocolError, match="not more than 2/3"):
        verify_commit(_commit([0, 1], h), vs, CHAIN, h)
    with pytest.raises(RemoteProtocolError, match="signed twice"):
        verify_commit(_commit([0, 1, 1], h), vs, CHAIN, h)
    with pytest.raises(RemoteProtocolError, match="not a validator"):
        verify_commit(_commit([0, 1, 5], h), vs, CHAIN, h)
    with pytest.raises(RemoteProtocolError, match="another block"):
        verify_commit(_commit([0, 1, 2], h), vs, CHAIN, ZERO)
    forged = _commit([0, 1, 2], h)
    forged = attrs.evolve(forged, signatures=(*forged.signatures[:2], attrs.evolve(
        forged.signatures[2], timestamp_ms=99)))
    with pytest.raises(InvalidSignature, match="does not verify"):
        verify_commit(forged, vs, CHAIN, h)


def test_a_remembered_commit_is_checked_again_against_another_set_cache_or_chain() -> None:
    vs, h = make_set(1, 1, 1, 1), bytes(range(32))
    commit, cache = _commit([0, 1, 2], h), VerifyCache()
    verify_commit(commit, vs, CHAIN, h, cache)
    misses = cache.misses
    verify_commit(commit, vs, CHAIN, h, cache)  # the same object: remembered
    verify_commit(wire.decode(wire.encode(commit), Commit), vs, CHAIN, h, cache)  # by value
    assert cache.misses == misses
    with pytest.raises(RemoteProtocolError, match="not more than 2/3"):
        verify_commit(commit, make_set(1, 1, 1, 1, 1, 1), CHAIN, h, cache)  # another set
    with pytest.raises(InvalidSignature):
        verify_commit(commit, vs, "other-chain", h, cache)
    with pytest.raises(RemoteProtocolError, match="another block"):
        verify_commit(commit, vs, CHAIN, ZERO, cache)
    verify_commit(commit, vs, CHAIN, h, VerifyCache())  # another cache verifies for itself


def test_duplicate_vote_evidence_is_canonical_and_verified() -> None:
    vs = make_set(1, 1, 1, 1)
    a = vote(KEYS[2], PRE, 4, 1, bytes(range(32)))
    b = vote(KEYS[2], PRE, 4, 1, None)
    ev = DuplicateVoteEvidence.of(a, b)
    assert ev == DuplicateVoteEvidence.of(b, a)
    assert ev.vote_a is b  # nil orders first
    ev.verify(vs, CHAIN)
    assert wire.decode(wire.encode(ev), DuplicateVoteEvidence) == ev
    with pytest.raises(RemoteProtocolError, match="canonical order"):
        DuplicateVoteEvidence(vote_a=a, vote_b=b).verify(vs, CHAIN)
    with pytest.raises(RemoteProtocolError, match="one block"):
        DuplicateVoteEvidence(vote_a=a, vote_b=vote(KEYS[2], PRE, 4, 1, a.block_hash, 7)
                              ).verify(vs, CHAIN)
    with pytest.raises(RemoteProtocolError, match="differ"):
        DuplicateVoteEvidence.of(a, vote(KEYS[2], PRE, 4, 2, None)).verify(vs, CHAIN)
    with pytest.raises(RemoteProtocolError, match="not a validator"):
        DuplicateVoteEvidence.of(vote(KEYS[6], PC, 1, 0, None),
                                 vote(KEYS[6], PC, 1, 0, ZERO)).verify(vs, CHAIN)
    with pytest.raises(InvalidSignature):
        DuplicateVoteEvidence.of(attrs.evolve(b, timestamp_ms=50), a).verify(vs, CHAIN)
