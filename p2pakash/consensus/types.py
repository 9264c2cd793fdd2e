"""Consensus wire messages (tags 100-109): votes, proposals, blocks, commits, evidence.

Rules and invariants:
* A block ID is the 32-byte sha256 of the canonical encoding of the block's header; a nil
  vote carries ``block_hash=None``. The header commits to the body through ``txs_hash``,
  ``evidence_hash`` and ``last_commit_hash``; ``Block.check_body`` checks those.
* Times are integer milliseconds; nothing here holds a float.
* A vote is signed with kind "vote", a proposal with kind "proposal", both bound to the
  chain ID (crypto.signing_bytes). The signed body is a canonical CBOR array of every field
  but the signature; a proposal signs its block's hash, not the whole block.
* ``DuplicateVoteEvidence`` holds two votes of one validator for one (height, round, type)
  with different block hashes, in canonical order (smaller ``order_key`` first) so the same
  fault always has the same evidence bytes and is punished once.
* ``verify_vote`` given a VerifyCache remembers the vote objects that verified with it
  (bounded, process-wide, by identity: a decoded vote is immutable).
* ``verify_commit`` given a VerifyCache also remembers whole commits that verified (bounded,
  keyed by the cache, chain ID, the set's hash and the commit's value): a commit is checked
  once per cache, so once per process in a simulation, not once per node and use. The
  commit objects that verified are looked up by identity first (hashing a commit's value
  hashes every signature in it).
* Tags 100-109 live here, 110-111 in proposer.py, 120-129 in core.py; 130-199 are free
  for the driver, WAL, mempool and block sync.
"""

from __future__ import annotations

import collections
import enum
import hashlib
from collections.abc import Sequence

import attrs

from p2pakash import crypto, wire
from p2pakash.consensus.proposer import PUBKEY_SIZE, ValidatorSet
from p2pakash.errors import InvalidSignature, RemoteProtocolError

HASH_SIZE = 32
MAX_EVIDENCE = 100
MAX_COMMIT_SIGS = 10_000
MAX_CHAIN_ID = 64
MAX_COMMIT_MEMO = 1024
_verified_commits: collections.OrderedDict[tuple[object, ...], None] = collections.OrderedDict()
# id(commit) -> (the commit, cache, chain ID, set hash) it verified with: the first look-up
_commit_ids: dict[int, tuple[Commit, crypto.VerifyCache, str, bytes]] = {}
MAX_VOTE_MEMO = 8192
# id(vote) -> (the vote, the cache and chain ID it verified with); holding the vote keeps
# its id unique
_verified_votes: dict[int, tuple[Vote, crypto.VerifyCache, str]] = {}


class VoteType(enum.IntEnum):
    PREVOTE = 1
    PRECOMMIT = 2


def _hash32(inst: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if type(value) is not bytes or len(value) != HASH_SIZE:
        raise ValueError(f"{attribute.name} must be {HASH_SIZE} bytes")


def _hash32_or_empty(inst: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if type(value) is not bytes or len(value) not in (0, HASH_SIZE):
        raise ValueError(f"{attribute.name} must be empty or {HASH_SIZE} bytes")


def _opt_hash32(inst: object, attribute: attrs.Attribute[bytes | None],
                value: bytes | None) -> None:
    if value is not None:
        _hash32(inst, attribute, value)  # type: ignore[arg-type]


def _pubkey(inst: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if type(value) is not bytes or len(value) != PUBKEY_SIZE:
        raise ValueError(f"{attribute.name} must be a {PUBKEY_SIZE}-byte public key")


def _signature(inst: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if type(value) is not bytes or len(value) != crypto.SIGNATURE_SIZE:
        raise ValueError(f"{attribute.name} must be a {crypto.SIGNATURE_SIZE}-byte signature")


def _height(inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value}")


def _non_negative(inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value}")


def _at_most(limit: int) -> attrs._ValidatorType[tuple[object, ...]]:
    def check(inst: object, attribute: attrs.Attribute[tuple[object, ...]],
              value: tuple[object, ...]) -> None:
        if len(value) > limit:
            raise ValueError(f"{attribute.name} holds more than {limit} items")
    return check


# ---------------------------------------------------------------- votes


@wire.message(tag=100)
@attrs.frozen(kw_only=True)
class Vote:
    """PREVOTE(h, r, id(v)|nil) or PRECOMMIT(h, r, id(v)|nil), signed by ``validator``."""

    type: VoteType
    height: int = attrs.field(validator=_height)
    round: int = attrs.field(validator=_non_negative)
    block_hash: bytes | None = attrs.field(validator=_opt_hash32)
    timestamp_ms: int = attrs.field(validator=_non_negative)
    validator: bytes = attrs.field(validator=_pubkey)
    signature: bytes = attrs.field(validator=_signature)

    def sign_body(self) -> bytes:
        return vote_sign_body(self.type, self.height, self.round, self.block_hash,
                              self.timestamp_ms, self.validator)

    def order_key(self) -> bytes:
        """Orders conflicting votes: nil first, then by block hash."""
        return b"" if self.block_hash is None else b"\x01" + self.block_hash


def vote_sign_body(type: VoteType, height: int, round: int, block_hash: bytes | None,
                   timestamp_ms: int, validator: bytes) -> bytes:
    return wire.encode([int(type), height, round, block_hash, timestamp_ms, validator])


def sign_vote(key: crypto.PrivateKey, chain_id: str, *, type: VoteType, height: int,
              round: int, block_hash: bytes | None, timestamp_ms: int) -> Vote:
    body = vote_sign_body(type, height, round, block_hash, timestamp_ms, key.public)
    return Vote(type=type, height=height, round=round, block_hash=block_hash,
                timestamp_ms=timestamp_ms, validator=key.public,
                signature=key.sign("vote", chain_id, body))


def verify_vote(vote: Vote, chain_id: str, cache: crypto.VerifyCache | None = None) -> None:
    """Raise InvalidSignature unless ``vote`` is signed by its validator for ``chain_id``.

    With a cache, a vote object that verified is remembered (``MAX_VOTE_MEMO``, process-wide)
    with that cache and chain ID: the simulator's nodes share one decoded vote, which each
    checks once, and this skips re-encoding its sign bytes for every node."""
    if cache is None:
        crypto.verify(vote.validator, "vote", chain_id, vote.sign_body(), vote.signature)
        return
    hit = _verified_votes.get(id(vote))
    if hit is not None and hit[0] is vote and hit[1] is cache and hit[2] == chain_id:
        return
    cache.verify(vote.validator, "vote", chain_id, vote.sign_body(), vote.signature)
    if len(_verified_votes) >= MAX_VOTE_MEMO:
        del _verified_votes[next(iter(_verified_votes))]
    _verified_votes[id(vote)] = (vote, cache, chain_id)


def _verify(pub: bytes, kind: str, chain_id: str, body: bytes, sig: bytes,
            cache: crypto.VerifyCache | None) -> None:
    if cache is None:
        crypto.verify(pub, kind, chain_id, body, sig)
    else:
        cache.verify(pub, kind, chain_id, body, sig)


# ---------------------------------------------------------------- blocks


@wire.message(tag=101)
@attrs.frozen(kw_only=True)
class CommitSig:
    """One validator's precommit for the committed block (the vote minus shared fields)."""

    validator: bytes = attrs.field(validator=_pubkey)
    timestamp_ms: int = attrs.field(validator=_non_negative)
    signature: bytes = attrs.field(validator=_signature)


@wire.message(tag=102)
@attrs.frozen(kw_only=True)
class Commit:
    """More than 2/3 of the power precommitted ``block_hash`` at (height, round)."""

    height: int = attrs.field(validator=_height)
    round: int = attrs.field(validator=_non_negative)
    block_hash: bytes = attrs.field(validator=_hash32)
    signatures: tuple[CommitSig, ...] = attrs.field(validator=_at_most(MAX_COMMIT_SIGS))

    def votes(self) -> tuple[Vote, ...]:
        """The precommits this commit stands for."""
        return tuple(
            Vote(type=VoteType.PRECOMMIT, height=self.height, round=self.round,
                 block_hash=self.block_hash, timestamp_ms=s.timestamp_ms,
                 validator=s.validator, signature=s.signature)
            for s in self.signatures)

    def hash(self) -> bytes:
        return wire.digest(self)


@wire.message(tag=103)
@attrs.frozen(kw_only=True)
class DuplicateVoteEvidence:
    """Two conflicting votes of one validator: the double-sign fault of CometBFT."""

    vote_a: Vote
    vote_b: Vote

    @classmethod
    def of(cls, first: Vote, second: Vote) -> DuplicateVoteEvidence:
        """Evidence in canonical order, whichever vote was seen first."""
        a, b = sorted((first, second), key=Vote.order_key)
        return cls(vote_a=a, vote_b=b)

    @property
    def validator(self) -> bytes:
        return self.vote_a.validator

    @property
    def height(self) -> int:
        return self.vote_a.height

    def verify(self, validator_set: ValidatorSet, chain_id: str,
               cache: crypto.VerifyCache | None = None) -> None:
        """Raise RemoteProtocolError (InvalidSignature for signatures) unless this is
        valid evidence against a member of ``validator_set`` (the set at that height)."""
        a, b = self.vote_a, self.vote_b
        if (a.validator, a.height, a.round, a.type) != (b.validator, b.height, b.round, b.type):
            raise RemoteProtocolError(
                "duplicate-vote evidence: votes differ in validator, height, round or type")
        if a.block_hash == b.block_hash:
            raise RemoteProtocolError("duplicate-vote evidence: both votes are for one block")
        if a.order_key() > b.order_key():
            raise RemoteProtocolError("duplicate-vote evidence: votes not in canonical order")
        if validator_set.get(a.validator) is None:
            raise RemoteProtocolError(
                f"duplicate-vote evidence: {a.validator.hex()} is not a validator at that height")
        verify_vote(a, chain_id, cache)
        verify_vote(b, chain_id, cache)


@wire.message(tag=104)
@attrs.frozen(kw_only=True)
class Header:
    chain_id: str
    height: int = attrs.field(validator=_height)
    time_ms: int = attrs.field(validator=_non_negative)
    last_block_hash: bytes = attrs.field(validator=_hash32_or_empty)  # empty at height 1
    last_commit_hash: bytes = attrs.field(validator=_hash32)
    validators_hash: bytes = attrs.field(validator=_hash32)
    next_validators_hash: bytes = attrs.field(validator=_hash32)
    app_hash: bytes = attrs.field(validator=_hash32_or_empty)
    txs_hash: bytes = attrs.field(validator=_hash32)
    evidence_hash: bytes = attrs.field(validator=_hash32)
    proposer: bytes = attrs.field(validator=_pubkey)

    def __attrs_post_init__(self) -> None:
        if not 0 < len(self.chain_id) <= MAX_CHAIN_ID:
            raise ValueError(f"chain_id must hold 1..{MAX_CHAIN_ID} characters")

    def hash(self) -> bytes:
        return wire.digest(self)


def txs_hash(txs: Sequence[bytes]) -> bytes:
    return hashlib.sha256(wire.encode(list(txs))).digest()


def evidence_hash(evidence: Sequence[DuplicateVoteEvidence]) -> bytes:
    return hashlib.sha256(wire.encode(list(evidence))).digest()


def commit_hash(commit: Commit | None) -> bytes:
    return hashlib.sha256(wire.encode(commit)).digest()


@wire.message(tag=105)
@attrs.frozen(kw_only=True, slots=False)  # no slots: the hash is cached in __dict__
class Block:
    """A header plus the body it commits to: opaque encoded txs, evidence, last commit."""

    header: Header
    txs: tuple[bytes, ...]
    evidence: tuple[DuplicateVoteEvidence, ...] = attrs.field(validator=_at_most(MAX_EVIDENCE))
    last_commit: Commit | None

    @property
    def height(self) -> int:
        return self.header.height

    def hash(self) -> bytes:
        """The block ID: sha256 of the header's canonical encoding (cached)."""
        cached: bytes | None = self.__dict__.get("_hash_cache")
        if cached is None:
            cached = self.header.hash()
            object.__setattr__(self, "_hash_cache", cached)
        return cached

    def check_body(self) -> None:
        """Raise RemoteProtocolError unless the header's body hashes match the body."""
        h = self.header
        if h.txs_hash != txs_hash(self.txs):
            raise RemoteProtocolError(f"block {h.height}: txs_hash does not match its txs")
        if h.evidence_hash != evidence_hash(self.evidence):
            raise RemoteProtocolError(f"block {h.height}: evidence_hash does not match")
        if h.last_commit_hash != commit_hash(self.last_commit):
            raise RemoteProtocolError(f"block {h.height}: last_commit_hash does not match")
        if self.last_commit is not None and self.last_commit.height != h.height - 1:
            raise RemoteProtocolError(f"block {h.height}: last commit is for another height")
        if self.last_commit is not None and self.last_commit.block_hash != h.last_block_hash:
            raise RemoteProtocolError(f"block {h.height}: last commit is for another block")


def build_block(*, chain_id: str, height: int, time_ms: int, last_block_hash: bytes,
                validators_hash: bytes, next_validators_hash: bytes, app_hash: bytes,
                proposer: bytes, txs: Sequence[bytes] = (),
                evidence: Sequence[DuplicateVoteEvidence] = (),
                last_commit: Commit | None = None) -> Block:
    """A block whose header's body hashes are computed from the body given."""
    header = Header(chain_id=chain_id, height=height, time_ms=time_ms,
                    last_block_hash=last_block_hash, last_commit_hash=commit_hash(last_commit),
                    validators_hash=validators_hash, next_validators_hash=next_validators_hash,
                    app_hash=app_hash, txs_hash=txs_hash(txs),
                    evidence_hash=evidence_hash(evidence), proposer=proposer)
    return Block(header=header, txs=tuple(txs), evidence=tuple(evidence),
                 last_commit=last_commit)


# ---------------------------------------------------------------- proposals


@wire.message(tag=106)
@attrs.frozen(kw_only=True)
class Proposal:
    """PROPOSAL(h, r, v, validRound) from the round's proposer; ``pol_round`` -1 if none."""

    height: int = attrs.field(validator=_height)
    round: int = attrs.field(validator=_non_negative)
    pol_round: int
    block: Block
    timestamp_ms: int = attrs.field(validator=_non_negative)
    proposer: bytes = attrs.field(validator=_pubkey)
    signature: bytes = attrs.field(validator=_signature)

    def __attrs_post_init__(self) -> None:
        if not -1 <= self.pol_round < self.round:
            raise ValueError(f"pol_round {self.pol_round} not in -1..round-1 ({self.round - 1})")
        if self.block.height != self.height:
            raise ValueError(f"proposal for height {self.height} carries block "
                             f"{self.block.height}")

    def sign_body(self) -> bytes:
        return proposal_sign_body(self.height, self.round, self.pol_round, self.block.hash(),
                                  self.timestamp_ms, self.proposer)


def proposal_sign_body(height: int, round: int, pol_round: int, block_hash: bytes,
                       timestamp_ms: int, proposer: bytes) -> bytes:
    return wire.encode([height, round, pol_round, block_hash, timestamp_ms, proposer])


def sign_proposal(key: crypto.PrivateKey, chain_id: str, *, height: int, round: int,
                  pol_round: int, block: Block, timestamp_ms: int) -> Proposal:
    body = proposal_sign_body(height, round, pol_round, block.hash(), timestamp_ms, key.public)
    return Proposal(height=height, round=round, pol_round=pol_round, block=block,
                    timestamp_ms=timestamp_ms, proposer=key.public,
                    signature=key.sign("proposal", chain_id, body))


def verify_proposal(proposal: Proposal, chain_id: str,
                    cache: crypto.VerifyCache | None = None) -> None:
    """Raise InvalidSignature unless the proposal is signed by its proposer."""
    _verify(proposal.proposer, "proposal", chain_id, proposal.sign_body(), proposal.signature,
            cache)


def verify_commit(commit: Commit, validator_set: ValidatorSet, chain_id: str,
                  block_hash: bytes, cache: crypto.VerifyCache | None = None) -> None:
    """Raise RemoteProtocolError (InvalidSignature for a bad signature) unless ``commit``
    holds valid precommits for ``block_hash`` of distinct members of ``validator_set``
    with more than 2/3 of its power."""
    if commit.block_hash != block_hash:
        raise RemoteProtocolError(f"commit for height {commit.height} is for another block")
    memo = None
    if cache is not None:
        set_hash = validator_set.hash()
        known = _commit_ids.get(id(commit))  # the same object: no hashing of 100 signatures
        if known is not None and known[0] is commit and known[1:] == (cache, chain_id,
                                                                      set_hash):
            return
        memo = (id(cache), chain_id, set_hash, commit)
        if memo in _verified_commits:
            _verified_commits.move_to_end(memo)
            _remember_commit(commit, cache, chain_id, set_hash)
            return
    seen: set[bytes] = set()
    power = 0
    for vote in commit.votes():
        member = validator_set.get(vote.validator)
        if member is None:
            raise RemoteProtocolError(
                f"commit for height {commit.height}: {vote.validator.hex()} is not a validator")
        if vote.validator in seen:
            raise RemoteProtocolError(
                f"commit for height {commit.height}: {vote.validator.hex()} signed twice")
        seen.add(vote.validator)
        try:
            verify_vote(vote, chain_id, cache)
        except InvalidSignature:
            raise InvalidSignature(f"commit for height {commit.height}: precommit of "
                                   f"{vote.validator.hex()} does not verify") from None
        power += member.power
    if not validator_set.two_thirds(power):
        raise RemoteProtocolError(f"commit for height {commit.height}: {power} of "
                                  f"{validator_set.total_power} power is not more than 2/3")
    if memo is not None:
        _verified_commits[memo] = None
        if len(_verified_commits) > MAX_COMMIT_MEMO:
            _verified_commits.popitem(last=False)
        assert cache is not None
        _remember_commit(commit, cache, chain_id, validator_set.hash())


def _remember_commit(commit: Commit, cache: crypto.VerifyCache, chain_id: str,
                     set_hash: bytes) -> None:
    if len(_commit_ids) >= MAX_COMMIT_MEMO:
        del _commit_ids[next(iter(_commit_ids))]
    _commit_ids[id(commit)] = (commit, cache, chain_id, set_hash)
