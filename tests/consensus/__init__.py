"""Shared builders for the consensus tests: deterministic keys, blocks, votes, proposals."""

from __future__ import annotations

from p2pakash.consensus.proposer import Validator, ValidatorSet, address_of
from p2pakash.consensus.types import (
    Block,
    Proposal,
    Vote,
    VoteType,
    build_block,
    sign_proposal,
    sign_vote,
)
from p2pakash.crypto import PrivateKey

CHAIN = "test-chain"
ZERO = bytes(32)

# Eight keys in address order, so KEYS[0] wins proposer-priority ties.
KEYS = sorted((PrivateKey.from_seed(bytes([i + 1]) * 32) for i in range(8)),
              key=lambda k: address_of(k.public))


def make_set(*powers: int) -> ValidatorSet:
    return ValidatorSet.new([Validator(pubkey=KEYS[i].public, power=p)
                             for i, p in enumerate(powers)])


def make_block(height: int, vs: ValidatorSet, proposer: PrivateKey, tag: bytes = b"a",
               last_block_hash: bytes = b"") -> Block:
    return build_block(chain_id=CHAIN, height=height, time_ms=1000 * height,
                       last_block_hash=last_block_hash, validators_hash=vs.hash(),
                       next_validators_hash=vs.hash(), app_hash=b"", proposer=proposer.public,
                       txs=(b"tx-" + tag + str(height).encode(),))


def vote(key: PrivateKey, type: VoteType, height: int, round: int,
         block_hash: bytes | None, timestamp_ms: int = 1) -> Vote:
    return sign_vote(key, CHAIN, type=type, height=height, round=round,
                     block_hash=block_hash, timestamp_ms=timestamp_ms)


def proposal(key: PrivateKey, block: Block, round: int, pol_round: int = -1) -> Proposal:
    return sign_proposal(key, CHAIN, height=block.height, round=round, pol_round=pol_round,
                         block=block, timestamp_ms=5)
