"""What goes into and comes out of ``Ledger.apply_block`` (wire tags 222-229).

Rules and invariants:
* ``BlockInput`` is everything the ledger needs from a committed block: height, block time
  (ms, from the header: the ledger never reads a clock), the proposer's key (who collects
  the fees), the encoded txs in block order, the keys whose precommits are in this block's
  ``last_commit`` (downtime tracking) and verified misbehaviour (double-sign evidence).
* ``BlockResult.validator_updates`` are (pubkey, new power) pairs, power 0 = removal,
  ordered by pubkey. Contract (CometBFT, reference §A7): updates returned for block H take
  effect at H+2 — block H+1's header commits to them as next validators, H+2 is decided by
  the new set. The driver applies them; the ledger already tracks that delay itself.
* An invalid tx inside a block does not abort the block: it gets a non-zero code.
"""

from __future__ import annotations

import attrs

from p2pakash import wire
from p2pakash.ledger.txs import Event, TxResult


@wire.message(tag=223)
@attrs.frozen(kw_only=True)
class Misbehaviour:
    pubkey: bytes  # the validator that double-signed
    height: int  # of the infraction
    time_ms: int  # block time of the infraction height


@wire.message(tag=224)
@attrs.frozen(kw_only=True)
class BlockInput:
    height: int
    time_ms: int
    proposer: bytes
    txs: tuple[bytes, ...] = ()
    signers: tuple[bytes, ...] = ()
    misbehaviour: tuple[Misbehaviour, ...] = ()


@wire.message(tag=222)
@attrs.frozen(kw_only=True)
class BlockResult:
    app_hash: bytes
    tx_results: tuple[TxResult, ...]
    validator_updates: tuple[tuple[bytes, int], ...]
    events: tuple[Event, ...]


@attrs.frozen(kw_only=True)
class Account:
    address: str
    balance: int
    sequence: int
