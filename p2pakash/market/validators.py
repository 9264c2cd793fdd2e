"""Gossip topic validators for ``orders``, ``bids`` and ``declines`` (pure; time via ``now_ms``).

Rules and invariants:
* Verdicts follow gossipsub: REJECT (the forwarding peer is penalised) for what no honest
  node forwards — undecodable bytes, broken field rules, a bad signature, an expiry long
  past or too far ahead, a bid over its order's max price or not matching the order's
  units; IGNORE (dropped, nobody penalised) for what depends on one node's view — recently
  expired, replayed, rate limited, signer banned, tenant balance < deposit, provider not
  registered (the forwarder may be a block behind).
* The *signer* (tenant or provider, known only after its signature verifies) is penalised
  directly: every signed offence is a strike; ``strikes_to_ban`` strikes ban the signer's
  messages for ``ban_ms``. Signatures are checked before rate limiting, so nobody can spend
  another address's budget with forged messages.
* Cost order: decode, stateless checks, banned?, expiry, replay, signature (VerifyCache),
  rate limit, then ledger reads. Every table is bounded (LRU eviction); orders and seen
  hashes past their expiry (plus ``skew_ms``) are dropped from the oldest end.
* A bid is checked against its order when this node has seen that order (``orders`` keeps
  the last ``max_orders`` accepted); otherwise only what the bid alone shows.
* ``accepted_order(data)`` hands a local subscriber (the provider) the Order this node's
  validator decoded, checked and verified from exactly these bytes (the last ``max_orders``
  accepted, by sha256 of the bytes), so the subscriber need not decode and verify it again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import attrs

from p2pakash import crypto, wire
from p2pakash.crypto import NodeID
from p2pakash.errors import DecodeError, InvalidSignature
from p2pakash.gossip.caches import TokenBucket
from p2pakash.gossip.pubsub import PubSub, Verdict
from p2pakash.market import matching
from p2pakash.market.orders import (
    Bid,
    Decline,
    InvalidMarketMessage,
    Order,
    Signed,
    check_bid,
    check_decline,
    check_order,
    signer,
    verify,
)

TOPIC_ORDERS = "orders"
TOPIC_BIDS = "bids"
TOPIC_DECLINES = "declines"
K = TypeVar("K")
V = TypeVar("V")


class MarketView(Protocol):
    """What the validators read from the ledger (``ledger_market.LedgerView`` implements it)."""

    def balance(self, address: str) -> int: ...

    def provider(self, address: str) -> Any: ...  # None when not registered


@attrs.frozen(kw_only=True)
class ValidatorParams:
    max_ttl_ms: int = 600_000  # an expiry further ahead than this is refused
    skew_ms: int = 5_000  # clock disagreement tolerated either way
    rate_per_s: float = 5.0  # messages per signer per topic, sustained
    burst: float = 20.0
    strikes_to_ban: int = 20
    ban_ms: int = 60_000
    max_orders: int = 10_000
    max_signers: int = 50_000
    max_seen: int = 100_000


class _Lru(OrderedDict[K, V]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@attrs.define
class _Signer:
    buckets: dict[str, TokenBucket] = attrs.field(factory=dict)
    strikes: int = 0
    banned_until_ms: int = 0


class MarketValidators:
    """The three validators over a shared state; ``install`` puts them on a PubSub."""

    def __init__(self, *, chain_id: str, view: MarketView, now_ms: Callable[[], int],
                 cache: crypto.VerifyCache | None = None,
                 params: ValidatorParams | None = None) -> None:
        self.chain_id = chain_id
        self.view = view
        self.now_ms = now_ms
        self.cache = cache or crypto.VerifyCache()
        self.params = params or ValidatorParams()
        self.orders: _Lru[bytes, Order] = _Lru(self.params.max_orders)  # digest -> order
        self._accepted: _Lru[bytes, Order] = _Lru(self.params.max_orders)  # sha256(data)
        self._signers: _Lru[str, _Signer] = _Lru(self.params.max_signers)
        self._seen: _Lru[bytes, int] = _Lru(self.params.max_seen)  # sha256(data) -> expiry
        self.stats: dict[str, int] = {}
        self.decoder: wire.DecodeMemo | None = None  # the simulator's nodes share one

    def install(self, pubsub: PubSub) -> None:
        pubsub.answerable(TOPIC_ORDERS)  # bids and declines go back the order's way
        pubsub.set_validator(TOPIC_ORDERS, self.validate_order)
        pubsub.set_validator(TOPIC_BIDS, self.validate_bid)
        pubsub.set_validator(TOPIC_DECLINES, self.validate_decline)

    def strikes(self, address: str) -> int:
        rec = self._signers.get(address)
        return 0 if rec is None else rec.strikes

    def accepted_order(self, data: bytes) -> Order | None:
        """The Order this validator accepted from exactly ``data``, or None (never seen,
        refused, or evicted): the caller must then decode and verify it itself."""
        return self._accepted.get(hashlib.sha256(data).digest())

    def banned(self, address: str) -> bool:
        rec = self._signers.get(address)
        return rec is not None and rec.banned_until_ms > self.now_ms()

    def _forget_expired(self, now: int) -> None:
        """Drop orders and seen hashes whose expiry passed (the expiry check refuses their
        messages anyway) from the oldest end, so the tables hold minutes, not the caps."""
        cutoff = now - self.params.skew_ms
        for table in (self.orders, self._accepted):
            while table and next(iter(table.values())).body.expiry_ms < cutoff:
                table.popitem(last=False)
        while self._seen and next(iter(self._seen.values())) < cutoff:
            self._seen.popitem(last=False)

    # ------------------------------------------------------------ topics

    def validate_order(self, source: NodeID, topic: str, data: bytes) -> Verdict:
        order = self._decode(data, Order, check_order)
        if isinstance(order, Verdict):
            return order
        early = self._common(order, data, TOPIC_ORDERS)
        if early is not None:
            return early
        if self.view.balance(order.owner) < order.body.deposit:
            return self._offence(order, "unfunded", Verdict.IGNORE)
        self.orders.put(order.digest, order)
        self._accepted.put(hashlib.sha256(data).digest(), order)
        return self._count("accepted", Verdict.ACCEPT)

    def validate_bid(self, source: NodeID, topic: str, data: bytes) -> Verdict:
        bid = self._decode(data, Bid, check_bid)
        return bid if isinstance(bid, Verdict) else self._answer(bid, data, TOPIC_BIDS)

    def validate_decline(self, source: NodeID, topic: str, data: bytes) -> Verdict:
        decline = self._decode(data, Decline, check_decline)
        if isinstance(decline, Verdict):
            return decline
        return self._answer(decline, data, TOPIC_DECLINES)

    # ------------------------------------------------------------ steps

    def _decode(self, data: bytes, cls: type[V], check: Callable[[Any], None]) -> V | Verdict:
        try:
            msg = wire.decode_via(self.decoder, data, cls)
            check(msg.body)  # type: ignore[attr-defined]
        except (DecodeError, InvalidMarketMessage):
            return self._count("malformed", Verdict.REJECT)
        return msg

    def _common(self, msg: Signed, data: bytes, topic: str) -> Verdict | None:
        """Ban, expiry, replay, signature and rate checks shared by the three topics."""
        p, now, expiry_ms = self.params, self.now_ms(), msg.body.expiry_ms
        address = signer(msg)
        rec = self._signers.get(address)
        if rec is not None and rec.banned_until_ms > now:
            return self._count("banned", Verdict.IGNORE)
        if expiry_ms < now - p.skew_ms or expiry_ms > now + p.max_ttl_ms + p.skew_ms:
            return self._count("bad_expiry", Verdict.REJECT)
        if expiry_ms < now:
            return self._count("expired", Verdict.IGNORE)
        digest = hashlib.sha256(data).digest()
        if digest in self._seen:
            return self._count("replayed", Verdict.IGNORE)
        try:
            verify(msg, self.chain_id, self.cache)
        except InvalidSignature:
            return self._count("bad_signature", Verdict.REJECT)
        self._forget_expired(now)
        self._seen.put(digest, expiry_ms)
        rec = self._signer(address)
        bucket = rec.buckets.get(topic)
        if bucket is None:
            bucket = rec.buckets[topic] = TokenBucket(rate=p.rate_per_s, burst=p.burst,
                                                      now=now / 1000)
        if not bucket.take(now / 1000):
            return self._offence(msg, "rate_limited", Verdict.IGNORE)
        return None

    def _answer(self, msg: Bid | Decline, data: bytes, topic: str) -> Verdict:
        """A provider's bid or decline: the common checks, a registered provider, and (when
        this node has seen the order) the order-dependent rules of ``_answer_problem``."""
        early = self._common(msg, data, topic)
        if early is not None:
            return early
        if self.view.provider(msg.provider) is None:
            return self._offence(msg, "unregistered", Verdict.IGNORE)
        order = self.orders.get(msg.body.order_digest)
        problem = None if order is None else _answer_problem(order, msg)
        if problem is not None:
            return self._offence(msg, problem, Verdict.REJECT)
        return self._count("accepted", Verdict.ACCEPT)

    def _signer(self, address: str) -> _Signer:
        rec = self._signers.get(address)
        if rec is None:
            rec = _Signer()
        self._signers.put(address, rec)
        return rec

    def _offence(self, msg: Signed, what: str, verdict: Verdict) -> Verdict:
        rec = self._signer(signer(msg))
        rec.strikes += 1
        if rec.strikes >= self.params.strikes_to_ban:
            rec.strikes = 0
            rec.banned_until_ms = self.now_ms() + self.params.ban_ms
            self._count("bans", verdict)
        return self._count(what, verdict)

    def _count(self, what: str, verdict: Verdict) -> Verdict:
        self.stats[what] = self.stats.get(what, 0) + 1
        return verdict


def _answer_problem(order: Order, msg: Bid | Decline) -> str | None:
    """Why a bid or decline does not answer ``order`` (a stats key), or None."""
    oid = msg.body.order
    if (oid.deployment != order.body.deployment or oid.oseq != order.body.oseq
            or not 1 <= oid.gseq <= len(order.body.groups)):
        return "wrong_order"
    if isinstance(msg, Decline):
        return None
    group = order.group(oid.gseq)
    if msg.body.price > group.max_price:
        return "over_price"
    if matching.check_offer(group, msg.body.resources) is not None:
        return "offer_mismatch"
    return None
