"""The mempool: txs waiting for a block, checked against a copy of state (sans-IO).

Rules and invariants:
* ``add`` admits a tx only if: it is at most ``max_tx_bytes``; its sha256 is neither pending
  nor in the LRU cache of recently seen hashes (resubmits and gossip copies are refused as
  duplicates before any decoding or signature work); the pool has room (``max_txs``,
  ``max_bytes``); it decodes as a canonical ``Tx``; and ``check(tx)`` passes.
* ``check`` runs against a COPY of state that keeps the effects of every admitted tx
  (``Ledger.copy_for_check``), so a sender's sequences n, n+1, ... are admitted in order and
  a second tx with an already-used sequence is refused with the ledger's reason ("wrong
  sequence for ADDR: expected X, got Y").
* Pending txs keep FIFO (admission) order; ``reap`` returns a prefix of that order and stops
  at the first tx that does not fit, so a sender's txs are never reordered or skipped.
* ``update`` after each committed block: committed hashes go into the cache and out of the
  pool, then every remaining tx is rechecked in FIFO order against a fresh copy of the new
  state; those that now fail are dropped and forgotten by the cache (they may come back).
* The cache holds hashes of admitted and committed txs only: a refused tx is not cached,
  so it is judged afresh if it comes back when state has changed.
* Pure: no trio, clock or randomness. The gossip ``txs`` topic validator is ``tx_validator``;
  a message on the topic is one encoded tx or a ``TxBatch`` of them (told apart by tag).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Sequence

import attrs

from p2pakash import wire
from p2pakash.crypto import NodeID
from p2pakash.errors import DecodeError, LocalProtocolError, TxError
from p2pakash.gossip.pubsub import Validator, Verdict
from p2pakash.ledger.app import Ledger, VerifyFn
from p2pakash.ledger.txs import Code, Tx, TxBatch, decode_tx, tx_hash

TOPIC = "txs"
BATCH_TAG = wire.encode(TxBatch(txs=()))[:-2]  # the CBOR tag head a TxBatch starts with
MiB = 1024 * 1024

CheckFn = Callable[[Tx], None]
TxBytes = bytes  # aliases: inside Mempool, ``bytes`` names the property
TxHash = bytes
# Ledger codes that no change of state can cure: the sender of such a tx broke the rules.
PERMANENT_CODES = frozenset({Code.DECODE, Code.TOO_LARGE, Code.BAD_SIGNATURE, Code.UNKNOWN_MSG,
                             Code.INVALID_MSG})


class Status(enum.Enum):
    ADMITTED = "admitted"
    DUPLICATE = "duplicate"  # pending already, or seen recently (cache)
    MALFORMED = "malformed"  # too large or not a canonical Tx encoding
    INVALID = "invalid"  # the state check refused it (``code`` says which rule)
    FULL = "full"  # no room: try again after the next block


@attrs.frozen(kw_only=True)
class AddResult:
    accepted: bool
    tx_hash: bytes
    reason: str  # "" when accepted
    status: Status
    code: int = 0  # the ledger Code of an INVALID tx; 0 otherwise

    @property
    def permanent(self) -> bool:
        """True when the tx can never become valid: its sender broke the rules."""
        return self.status is Status.MALFORMED or (
            self.status is Status.INVALID and self.code in PERMANENT_CODES)


class _Entry:
    """A pending tx: its bytes and the decoded ``Tx`` (a plain slotted class: one is made
    per admitted tx)."""

    __slots__ = ("raw", "tx")

    def __init__(self, raw: bytes, tx: Tx) -> None:
        self.raw = raw
        self.tx = tx


class Mempool:
    """Pending txs in FIFO order over a state copy; see the module docstring for the rules."""

    def __init__(self, check: CheckFn, *, new_check: Callable[[], CheckFn] | None = None,
                 max_txs: int = 5000, max_bytes: int = 64 * MiB, max_tx_bytes: int = MiB,
                 cache_size: int = 10_000) -> None:
        for name, value in (("max_txs", max_txs), ("max_bytes", max_bytes),
                            ("max_tx_bytes", max_tx_bytes), ("cache_size", cache_size)):
            if value <= 0:
                raise LocalProtocolError(f"mempool {name} must be positive, got {value}")
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_tx_bytes = max_tx_bytes
        self.cache_size = cache_size
        self.height = 0  # of the last block passed to ``update``
        self.last_dropped: list[tuple[TxHash, str]] = []  # by the last ``update``'s recheck
        self._check = check
        self._new_check = new_check
        self._txs: dict[TxHash, _Entry] = {}  # insertion order is FIFO order
        self._bytes = 0
        self._cache: OrderedDict[TxHash, None] = OrderedDict()

    @classmethod
    def for_ledger(cls, ledger: Ledger, *, verify: VerifyFn | None = None, max_txs: int = 5000,
                   max_bytes: int = 64 * MiB, max_tx_bytes: int = MiB,
                   cache_size: int = 10_000) -> Mempool:
        """A mempool checking against copies of ``ledger`` (a fresh copy after each block).

        ``verify`` defaults to the ledger's own (give the node's ``VerifyCache.verify`` to
        the ledger so block execution reuses the mempool's verifications)."""
        def new_check() -> CheckFn:
            copy = ledger.copy_for_check()
            return lambda tx: copy.check_tx(tx, verify=verify)

        return cls(new_check(), new_check=new_check, max_txs=max_txs, max_bytes=max_bytes,
                   max_tx_bytes=max_tx_bytes, cache_size=cache_size)

    # ------------------------------------------------------------ queries

    @property
    def size(self) -> int:
        return len(self._txs)

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._txs)

    def has(self, hash_: TxHash) -> bool:
        """Whether the tx with this hash is pending."""
        return hash_ in self._txs

    def pending_from(self, sender: str) -> int:
        """How many pending txs ``sender`` signed (they hold its next sequences)."""
        return sum(1 for entry in self._txs.values() if entry.tx.body.sender == sender)

    def seen(self, hash_: TxHash) -> bool:
        """Pending, or admitted/committed recently enough to be in the cache."""
        return hash_ in self._txs or hash_ in self._cache

    # ------------------------------------------------------------ admission

    def add(self, tx_bytes: TxBytes) -> AddResult:
        """Try to admit one encoded tx; the result says whether and why not."""
        h = tx_hash(tx_bytes)
        if len(tx_bytes) > self.max_tx_bytes:
            return _refused(h, Status.MALFORMED,
                            f"tx too large: {len(tx_bytes)} bytes, limit {self.max_tx_bytes}")
        if h in self._txs:
            return _refused(h, Status.DUPLICATE, "duplicate tx: already in the mempool")
        if h in self._cache:
            self._cache.move_to_end(h)
            return _refused(h, Status.DUPLICATE, "duplicate tx: seen recently")
        if len(self._txs) >= self.max_txs or self._bytes + len(tx_bytes) > self.max_bytes:
            return _refused(h, Status.FULL,
                            f"mempool is full ({len(self._txs)} txs, {self._bytes} bytes)")
        try:
            tx = decode_tx(tx_bytes, max_size=self.max_tx_bytes, hash_=h)
        except DecodeError as exc:
            return _refused(h, Status.MALFORMED, f"malformed tx: {exc}")
        try:
            self._check(tx)
        except TxError as exc:
            code = int(getattr(exc, "code", -1))
            return _refused(h, Status.INVALID, str(exc), code)
        self._txs[h] = _Entry(tx_bytes, tx)
        self._bytes += len(tx_bytes)
        self._remember(h)
        return AddResult(accepted=True, tx_hash=h, reason="", status=Status.ADMITTED)

    def reap(self, max_bytes: int = -1, max_txs: int = -1) -> list[TxBytes]:
        """The oldest pending txs, in FIFO order, within the limits (-1: no limit).

        Stops at the first tx that would pass ``max_bytes``; the txs stay pending until
        ``update`` sees them committed."""
        out: list[TxBytes] = []
        total = 0
        for entry in self._txs.values():
            if max_txs >= 0 and len(out) >= max_txs:
                break
            if max_bytes >= 0 and total + len(entry.raw) > max_bytes:
                break
            out.append(entry.raw)
            total += len(entry.raw)
        return out

    def update(self, height: int, txs: Sequence[TxBytes], new_check: CheckFn | None = None
               ) -> None:
        """Block ``height`` committed ``txs``: drop them from the pool, recheck the rest.

        ``new_check`` checks against a fresh copy of the state after the block; without it
        the ``new_check`` factory given at construction makes one. ``last_dropped`` then
        holds the (hash, reason) of every pending tx the recheck dropped."""
        if new_check is None:
            if self._new_check is None:
                raise LocalProtocolError(
                    "mempool update needs a check on the new state: pass new_check or build"
                    " the mempool with a new_check factory")
            new_check = self._new_check()
        self.height = height
        for raw in txs:
            h = tx_hash(raw)
            entry = self._txs.pop(h, None)
            if entry is not None:
                self._bytes -= len(entry.raw)
            self._remember(h)
        self._check = new_check
        dropped: list[tuple[TxHash, str]] = []
        for h, entry in list(self._txs.items()):
            try:
                new_check(entry.tx)
            except TxError as exc:
                del self._txs[h]
                self._bytes -= len(entry.raw)
                self._cache.pop(h, None)
                dropped.append((h, str(exc)))
        self.last_dropped = dropped

    def _remember(self, h: TxHash) -> None:
        self._cache[h] = None
        self._cache.move_to_end(h)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)


def _refused(h: bytes, status: Status, reason: str, code: int = 0) -> AddResult:
    return AddResult(accepted=False, tx_hash=h, reason=reason, status=status, code=code)


def tx_validator(mempool: Mempool, local_id: NodeID) -> Validator:
    """The ``txs`` gossip topic validator: admission to ``mempool`` decides the verdict.

    ACCEPT (forward) what was admitted, and our own publication of a tx the API already
    admitted; REJECT (penalise the peer) what can never be valid: malformed bytes, a bad
    signature, an invalid message; IGNORE the rest: duplicates, a full pool, and txs
    whose failure depends on state (sequence, funds), which the peer may see differently.
    A ``TxBatch`` is admitted tx by tx in order: REJECT if one can never be valid (an
    honest node batches only txs it admitted), else ACCEPT if one was admitted, else IGNORE.
    Our own batches are ACCEPTed: they hold only txs we admitted.
    """

    def validate(peer: str, topic: str, data: bytes) -> Verdict:
        if data.startswith(BATCH_TAG):
            if peer == local_id:
                return Verdict.ACCEPT
            try:
                batch = wire.decode(data, TxBatch)
            except DecodeError:
                return Verdict.REJECT
            admitted = False
            for raw in batch.txs:
                result = mempool.add(raw)
                if result.accepted:
                    admitted = True
                elif result.permanent:
                    return Verdict.REJECT
            return Verdict.ACCEPT if admitted else Verdict.IGNORE
        if peer == local_id and mempool.has(tx_hash(data)):
            return Verdict.ACCEPT
        result = mempool.add(data)
        if result.accepted:
            return Verdict.ACCEPT
        return Verdict.REJECT if result.permanent else Verdict.IGNORE

    return validate
