"""Fuzz what a node does with consensus and ledger bytes from peers: real signed blocks,
commits, proposals, votes, evidence, txs and tx batches, mutated, decoded and then checked.

Property: decoding raises DecodeError or gives a message; every check a node then applies
(``Block.check_body``, ``verify_commit``, ``verify_proposal``, ``verify_vote``, evidence
``verify``, ``decode_tx``, ``Mempool.add``) raises only P2PAkashError subclasses (the
mempool never raises: it answers with a refusal).
"""

from __future__ import annotations

import functools

from hypothesis import given
from hypothesis import strategies as st

from p2pakash import wire
from p2pakash.consensus.messages import BlockResponse, VoteBundle
from p2pakash.consensus.proposer import Validator, ValidatorSet
from p2pakash.consensus.types import (
    Block,
    Commit,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    VoteType,
    sign_proposal,
    sign_vote,
    verify_commit,
    verify_proposal,
    verify_vote,
)
from p2pakash.errors import DecodeError
from p2pakash.ledger.txs import Send, Tx, TxBatch, decode_tx, sign_tx
from p2pakash.mempool import Mempool
from tests.api import CHAIN, VALS, LocalChain
from tests.fuzz.cbor_gen import mutated
from tests.fuzz.support import fuzz_settings, only_ours
from tests.ledger.helpers import USERS


@functools.cache
def fixture() -> tuple[LocalChain, ValidatorSet, list[bytes]]:
    """A two-block chain with txs, and the encodings of its messages (the fuzz seeds)."""
    chain = LocalChain()
    txs = [sign_tx(USERS[i], CHAIN, sequence=0, msgs=(Send(to=USERS[3].address, amount=5),))
           for i in range(3)]
    chain.make_block([t.encode() for t in txs[:2]])
    block, _ = chain.make_block([txs[2].encode()])
    commit = chain.commit(2)
    assert commit is not None
    vset = ValidatorSet.new(Validator(pubkey=pk, power=p)
                            for pk, p in chain.ledger.validator_set_at(2))
    proposal = sign_proposal(VALS[0], CHAIN, height=2, round=1, pol_round=0, block=block,
                             timestamp_ms=5)
    votes = [sign_vote(VALS[0], CHAIN, type=VoteType.PREVOTE, height=2, round=0,
                       block_hash=h, timestamp_ms=7) for h in (block.hash(), None)]
    evidence = DuplicateVoteEvidence.of(votes[0], votes[1])
    pending = sign_tx(USERS[0], CHAIN, sequence=1, msgs=(Send(to=USERS[3].address, amount=5),))
    seeds = [block, commit, proposal, votes[0], votes[1], evidence, pending,
             TxBatch(txs=tuple(t.encode() for t in txs)),
             BlockResponse(height=2, block=block, commit=commit),
             VoteBundle(height=2, proposals=(proposal,), votes=tuple(votes))]
    return chain, vset, [wire.encode(s) for s in seeds]


def check_message(value: object, vset: ValidatorSet, pool: Mempool) -> None:
    """The checks a node applies to a decoded message; only P2PAkashError may escape."""
    if isinstance(value, Block):
        only_ours(value.check_body)
        for raw in value.txs:
            only_ours(decode_tx, raw)
    elif isinstance(value, Commit):
        only_ours(verify_commit, value, vset, CHAIN, value.block_hash)
    elif isinstance(value, Proposal):
        only_ours(verify_proposal, value, CHAIN)
        check_message(value.block, vset, pool)
    elif isinstance(value, Vote):
        only_ours(verify_vote, value, CHAIN)
    elif isinstance(value, DuplicateVoteEvidence):
        only_ours(value.verify, vset, CHAIN)
    elif isinstance(value, Tx):
        pool.add(value.encode())
    elif isinstance(value, TxBatch):
        for raw in value.txs:
            only_ours(decode_tx, raw)
            pool.add(raw)
    elif isinstance(value, BlockResponse):
        for part in (value.block, value.commit):
            if part is not None:
                check_message(part, vset, pool)
    elif isinstance(value, VoteBundle):
        for item in (*value.proposals, *value.votes):
            check_message(item, vset, pool)


def test_seeds_pass_every_check() -> None:
    chain, vset, seeds = fixture()
    block = wire.decode(seeds[0], Block)
    block.check_body()
    verify_commit(wire.decode(seeds[1], Commit), vset, CHAIN, block.hash())
    wire.decode(seeds[5], DuplicateVoteEvidence).verify(vset, CHAIN)
    pool = Mempool.for_ledger(chain.ledger)
    assert pool.add(seeds[6]).accepted


@fuzz_settings(250)
@given(data=st.data())
def test_mutated_chain_messages(data: st.DataObject) -> None:
    chain, vset, seeds = fixture()
    raw = data.draw(st.sampled_from(seeds).flatmap(mutated), label="bytes")
    value = only_ours(wire.decode, raw, object, allowed=(DecodeError,))
    if value is not None:
        assert wire.encode(value) == raw
        check_message(value, vset, Mempool.for_ledger(chain.ledger))


@fuzz_settings(150)
@given(data=st.data())
def test_decode_tx_and_mempool(data: st.DataObject) -> None:
    chain, _, seeds = fixture()
    raw = data.draw(st.sampled_from([seeds[6]]).flatmap(mutated) | st.binary(max_size=300))
    tx = only_ours(decode_tx, raw, allowed=(DecodeError,))
    if tx is not None:
        assert tx.encode() == raw and tx.hash()
        assert wire.encode(tx.body) == tx.body_bytes()
    result = Mempool.for_ledger(chain.ledger).add(raw)
    assert result.accepted or result.reason
