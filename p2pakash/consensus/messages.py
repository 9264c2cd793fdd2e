"""Driver-level consensus messages (tags 130-139): block sync, chain state, WAL markers.

Rules and invariants:
* Proposals and votes travel as the wire bytes of ``Proposal``/``Vote`` (types.py) on the
  gossip topics ``PROPOSAL_TOPIC`` and ``VOTE_TOPIC``; nothing here wraps them.
* Block sync uses direct messages: ``StatusRequest`` -> ``Status`` (the sender's latest
  committed height and the lowest height it still stores); ``BlockRequest(h)`` ->
  ``BlockResponse(h, block, commit)`` where ``commit`` holds more than 2/3 of the
  precommits of height h for that block (``block``/``commit`` None: not stored).
* ``VoteBundle`` is sent directly to each peer when a node's round makes no progress:
  the proposals and votes of its current rounds, so a peer that missed them (a healed
  partition, a restart) gets them again — gossip dedupes and will not resend them.
* ``EndHeight`` closes a height in the WAL; ``ChainState`` is the state row of the block
  store: what the node needs to start height ``height + 1``.
* ``BlockCommit`` travels on ``COMMIT_TOPIC``: a decided block with the commit that decided
  it, for the nodes that follow committed blocks instead of the votes (``routing.py``).
* Tags 130-139 belong to this module; 140-199 stay free (mempool and later layers).
"""

from __future__ import annotations

import attrs

from p2pakash import wire
from p2pakash.consensus.proposer import ValidatorSet
from p2pakash.consensus.types import Block, Commit, Proposal, Vote

PROPOSAL_TOPIC = "consensus/proposal"
VOTE_TOPIC = "consensus/vote"
COMMIT_TOPIC = "consensus/commit"
MAX_BUNDLE_VOTES = 4_000
MAX_BUNDLE_PROPOSALS = 4


@wire.message(tag=130)
@attrs.frozen(kw_only=True)
class StatusRequest:
    """Ask a peer for its ``Status``."""

    nonce: int = 0


@wire.message(tag=131)
@attrs.frozen(kw_only=True)
class Status:
    height: int  # latest committed block (0: only genesis)
    base: int  # lowest stored block (1 unless pruned; 0 when none)
    genesis: bytes = b""  # genesis hash: peers of one chain ID but another genesis part ways


@wire.message(tag=132)
@attrs.frozen(kw_only=True)
class BlockRequest:
    height: int


@wire.message(tag=133)
@attrs.frozen(kw_only=True)
class BlockResponse:
    height: int
    block: Block | None
    commit: Commit | None


@wire.message(tag=134)
@attrs.frozen(kw_only=True)
class EndHeight:
    """WAL marker: everything of ``height`` is decided and the block is stored."""

    height: int


@wire.message(tag=135)
@attrs.frozen(kw_only=True)
class ChainState:
    """The chain after block ``height`` (0 = genesis): enough to start height + 1.

    ``validators`` sign height + 1, ``next_validators`` height + 2 (validator updates
    of block H land in the set for H + 2), ``last_validators`` signed ``height`` (None at
    genesis). Proposer priorities are included: they are consensus state."""

    chain_id: str
    height: int
    app_hash: bytes
    last_block_hash: bytes
    last_time_ms: int
    last_validators: ValidatorSet | None
    validators: ValidatorSet
    next_validators: ValidatorSet


@wire.message(tag=136)
@attrs.frozen(kw_only=True)
class VoteBundle:
    """The sender's proposals and votes of ``height`` for its latest rounds."""

    height: int
    proposals: tuple[Proposal, ...] = attrs.field(validator=wire.max_items(MAX_BUNDLE_PROPOSALS))
    votes: tuple[Vote, ...] = attrs.field(validator=wire.max_items(MAX_BUNDLE_VOTES))


@wire.message(tag=137)
@attrs.frozen(kw_only=True)
class BlockCommit:
    """A committed block and more than 2/3 of the precommits of its height for it."""

    block: Block
    commit: Commit
