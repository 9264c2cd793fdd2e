"""valid(v): the checks a proposed or synced block must pass against the chain state.

Rules and invariants:
* Pure functions of the block, the ``ChainState`` after the previous block, the block
  store (committed evidence and historical validator sets) and a VerifyCache; each
  failure raises RemoteProtocolError naming the block and the rule.
* Header: chain ID, height = state height + 1, last block hash, validators hash, next
  validators hash, app hash (the ledger's after the previous block), proposer (a member
  of the set; the proposal's signer when given), time strictly after the previous
  block's (not before genesis time for block 1) and, when ``now_ms`` is given, at most
  ``MAX_CLOCK_DRIFT_MS`` ahead of it.
* ``admit`` gates a gossiped or resent proposal/vote: height within one of the next
  height (votes also the last committed one), signer in that height's set (else False:
  ignore), signature valid (else InvalidSignature: the peer pays).
* Body: the header's body hashes, the last commit verified against the previous set
  (none in block 1), the txs' total size within ``max_block_bytes``, every tx decodes
  (``ledger.Tx``), every evidence verifies against the set of its height, is younger
  than ``MAX_EVIDENCE_AGE`` blocks, below the block's height and not committed before.
* The body checks that depend on the block alone (body hashes, tx sizes and decoding)
  are remembered for the last ``BODY_MEMO`` block objects that passed them, process-wide
  (a block is immutable; the simulator's nodes share one decoded block per message), so
  each block object is hashed once, however many nodes check it. A failure is never
  remembered: a bad block is checked, and refused, every time.
"""

from __future__ import annotations

import collections

from p2pakash import wire
from p2pakash.consensus.blockstore import BlockStore
from p2pakash.consensus.messages import ChainState
from p2pakash.consensus.proposer import ValidatorSet
from p2pakash.consensus.types import (
    Block,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    verify_commit,
    verify_proposal,
    verify_vote,
)
from p2pakash.crypto import VerifyCache
from p2pakash.errors import DecodeError, RemoteProtocolError
from p2pakash.ledger import decode_tx

MAX_CLOCK_DRIFT_MS = 10_000
MAX_EVIDENCE_AGE = 100_000
BODY_MEMO = 16  # block objects whose stand-alone body checks passed (process-wide)

_bodies_ok: collections.OrderedDict[int, tuple[Block, int, int]] = collections.OrderedDict()


def check_body(block: Block, *, max_block_bytes: int, max_tx_bytes: int) -> None:
    """The checks of ``block`` that need no chain state: body hashes, txs' total size
    within ``max_block_bytes``, every tx decodes within ``max_tx_bytes``."""
    hit = _bodies_ok.get(id(block))
    if hit is not None and hit[0] is block and hit[1:] == (max_block_bytes, max_tx_bytes):
        return
    where = f"block {block.header.height}"
    block.check_body()
    if sum(len(tx) for tx in block.txs) > max_block_bytes:
        raise RemoteProtocolError(f"{where}: txs exceed {max_block_bytes} bytes")
    for i, raw in enumerate(block.txs):
        try:
            decode_tx(raw, max_size=max_tx_bytes)
        except DecodeError as exc:
            raise RemoteProtocolError(f"{where}: tx {i} does not decode: {exc}") from None
    _bodies_ok[id(block)] = (block, max_block_bytes, max_tx_bytes)
    if len(_bodies_ok) > BODY_MEMO:
        _bodies_ok.popitem(last=False)


def check_block(block: Block, st: ChainState, store: BlockStore, cache: VerifyCache | None, *,
                max_block_bytes: int, max_tx_bytes: int, proposer: bytes | None = None,
                now_ms: int | None = None) -> None:
    h = block.header
    where = f"block {h.height}"
    expect = [("chain ID", h.chain_id, st.chain_id), ("height", h.height, st.height + 1),
              ("last block hash", h.last_block_hash, st.last_block_hash),
              ("validators hash", h.validators_hash, st.validators.hash()),
              ("next validators hash", h.next_validators_hash, st.next_validators.hash()),
              ("app hash", h.app_hash, st.app_hash)]
    for what, got, want in expect:
        if got != want:
            raise RemoteProtocolError(f"{where}: wrong {what}")
    if proposer is not None and h.proposer != proposer:
        raise RemoteProtocolError(f"{where}: header proposer is not the proposal's signer")
    if st.validators.get(h.proposer) is None:
        raise RemoteProtocolError(f"{where}: proposer is not a validator")
    if h.time_ms < st.last_time_ms or (st.height > 0 and h.time_ms == st.last_time_ms):
        raise RemoteProtocolError(f"{where}: time {h.time_ms} not after {st.last_time_ms}")
    if now_ms is not None and h.time_ms > now_ms + MAX_CLOCK_DRIFT_MS:
        raise RemoteProtocolError(f"{where}: time {h.time_ms} is in the future")
    check_body(block, max_block_bytes=max_block_bytes, max_tx_bytes=max_tx_bytes)
    if st.height == 0 or st.last_validators is None:
        if block.last_commit is not None:
            raise RemoteProtocolError(f"{where}: the first block carries a last commit")
    elif block.last_commit is None:
        raise RemoteProtocolError(f"{where}: missing the last commit")
    else:
        verify_commit(block.last_commit, st.last_validators, st.chain_id, st.last_block_hash,
                      cache)
    seen: set[bytes] = set()
    for ev in block.evidence:
        digest = wire.digest(ev)
        if digest in seen or store.has_evidence(digest):
            raise RemoteProtocolError(f"{where}: evidence committed twice")
        seen.add(digest)
        check_evidence(ev, h.height, store, st.chain_id, cache, where)


def check_evidence(ev: DuplicateVoteEvidence, height: int, store: BlockStore, chain_id: str,
                   cache: VerifyCache | None, where: str) -> None:
    """Evidence usable in a block of ``height``: in range, against the set of its height."""
    if not height - MAX_EVIDENCE_AGE <= ev.height < height:
        raise RemoteProtocolError(f"{where}: evidence of height {ev.height} out of range")
    vs = store.validator_set(ev.height)
    if vs is None:
        raise RemoteProtocolError(f"{where}: no validator set for evidence height {ev.height}")
    ev.verify(vs, chain_id, cache)


def set_for(st: ChainState, height: int) -> ValidatorSet | None:
    """The set that signs ``height``, for the last committed height and the next two."""
    if height == st.height + 1:
        return st.validators
    if height == st.height + 2:
        return st.next_validators
    return st.last_validators if height == st.height else None


def admit(message: Proposal | Vote, st: ChainState, cache: VerifyCache | None) -> bool:
    """False: outside the height window or not signed by a member (ignore it);
    raises InvalidSignature when the signature is bad."""
    nxt = st.height + 1
    if isinstance(message, Proposal):
        signer, low = message.proposer, nxt
    else:
        signer, low = message.validator, nxt - 1
    vs = set_for(st, message.height)
    if not low <= message.height <= nxt + 1 or vs is None or vs.get(signer) is None:
        return False
    if isinstance(message, Proposal):
        verify_proposal(message, st.chain_id, cache)
    else:
        verify_vote(message, st.chain_id, cache)
    return True
