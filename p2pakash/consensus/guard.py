"""The signing guard: a validator never signs two different things for one (h, r, step).

Rules and invariants (CometBFT privval/file.go, reference §A5):
* Steps are PROPOSE=1 < PREVOTE=2 < PRECOMMIT=3. The guard holds the last signed
  (height, round, step), its signature, sign bytes and timestamp.
* Any request below the last (h, r, step) is refused. The same (h, r, step) with the
  same sign bytes (or bytes that differ only in the timestamp) returns the stored
  signature and timestamp; anything else for the same (h, r, step) is refused as
  "conflicting data". Refusal raises ``SignRefused`` and signs nothing.
* A new (h, r, step) is signed and its state persisted atomically — temp file, fsync,
  rename, fsync the directory — BEFORE the signed message is returned: after a crash the
  file shows either the old state (and the signature never left) or the new one.
* ``path=None`` keeps the state in memory only (simulations); the rules are the same.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from pathlib import Path

import attrs

from p2pakash import crypto
from p2pakash.consensus.types import (
    Block,
    Proposal,
    Vote,
    VoteType,
    proposal_sign_body,
    vote_sign_body,
)
from p2pakash.errors import LocalProtocolError, StorageError
from p2pakash.faults import crash_point
from p2pakash.fsutil import write_atomic, write_failure


class SignStep(enum.IntEnum):
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3


class SignRefused(LocalProtocolError):
    """The guard refused to sign: a step backwards or conflicting data."""


@attrs.frozen(kw_only=True)
class LastSign:
    height: int = 0
    round: int = 0
    step: int = 0
    signature: bytes = b""
    sign_bytes: bytes = b""
    timestamp_ms: int = 0

    @property
    def hrs(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)


def _vote_step(type: VoteType) -> SignStep:
    return SignStep.PREVOTE if type is VoteType.PREVOTE else SignStep.PRECOMMIT


class SigningGuard:
    """Signs votes and proposals with ``key`` for ``chain_id`` under the rules above."""

    def __init__(self, key: crypto.PrivateKey, chain_id: str, path: Path | None) -> None:
        self.key = key
        self.chain_id = chain_id
        self.path = path
        self.last = LastSign() if path is None else load_state(path)

    def sign_vote(self, *, type: VoteType, height: int, round: int, block_hash: bytes | None,
                  timestamp_ms: int) -> Vote:
        def body(ts: int) -> bytes:
            return vote_sign_body(type, height, round, block_hash, ts, self.key.public)
        sig, ts = self._sign("vote", (height, round, _vote_step(type)), body, timestamp_ms)
        return Vote(type=type, height=height, round=round, block_hash=block_hash,
                    timestamp_ms=ts, validator=self.key.public, signature=sig)

    def sign_proposal(self, *, height: int, round: int, pol_round: int, block: Block,
                      timestamp_ms: int) -> Proposal:
        block_hash = block.hash()

        def body(ts: int) -> bytes:
            return proposal_sign_body(height, round, pol_round, block_hash, ts, self.key.public)
        sig, ts = self._sign("proposal", (height, round, SignStep.PROPOSE), body, timestamp_ms)
        return Proposal(height=height, round=round, pol_round=pol_round, block=block,
                        timestamp_ms=ts, proposer=self.key.public, signature=sig)

    def _sign(self, kind: str, hrs: tuple[int, int, int], body_at: Callable[[int], bytes],
              timestamp_ms: int) -> tuple[bytes, int]:
        last = self.last
        if hrs < last.hrs:
            raise SignRefused(f"refusing to sign {kind} at height/round/step {hrs}: "
                              f"already signed {last.hrs}")
        if hrs == last.hrs:
            if body_at(last.timestamp_ms) == last.sign_bytes:
                return last.signature, last.timestamp_ms
            raise SignRefused(f"refusing to sign {kind} at height/round/step {hrs}: "
                              "conflicting data")
        body = body_at(timestamp_ms)
        signature = self.key.sign(kind, self.chain_id, body)
        new = LastSign(height=hrs[0], round=hrs[1], step=hrs[2], signature=signature,
                       sign_bytes=body, timestamp_ms=timestamp_ms)
        if self.path is not None:
            save_state(self.path, new)
            crash_point("guard_write_after")
        self.last = new
        return signature, timestamp_ms


def load_state(path: Path) -> LastSign:
    """Read the last-sign state; a missing file is a validator that never signed."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return LastSign()
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the signing state ({exc})") from None
    try:
        doc = json.loads(raw)
        state = LastSign(height=int(doc["height"]), round=int(doc["round"]),
                         step=int(doc["step"]), signature=bytes.fromhex(doc["signature"]),
                         sign_bytes=bytes.fromhex(doc["sign_bytes"]),
                         timestamp_ms=int(doc["timestamp_ms"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{path}: corrupted signing state ({exc}); refusing to sign "
                           "rather than risk a double sign") from None
    return state


def save_state(path: Path, state: LastSign) -> None:
    """Write atomically: temp file, fsync, rename over ``path``, fsync the directory."""
    doc = {"height": state.height, "round": state.round, "step": state.step,
           "signature": state.signature.hex(), "sign_bytes": state.sign_bytes.hex(),
           "timestamp_ms": state.timestamp_ms}
    data = json.dumps(doc, sort_keys=True).encode()
    try:
        write_atomic(path, data, mode=0o600)
    except OSError as exc:
        raise StorageError(f"{write_failure(path, exc)}; the signature is withheld") from None
