"""Attacker kit shared by ``bench/hostile_bench.py`` and ``tests/integration/test_hostile_suite``.

Rules and invariants:
* Crafting only: every function here builds bytes or wire items from its arguments (keys,
  chain ID, heights, times in ms passed in) and does no I/O; the real-handshake client is
  ``Hostile`` from ``tests/integration/test_hostile_peers.py``, re-exported, not copied.
* Every offending item is built so that exactly one rule is broken (a bad signature on an
  otherwise valid message, a bid one uakt above its order's max price, an order whose owner
  holds nothing), so a test can say which check caught it.
* Keys come from ``key(name)`` (sha256 of the name as the seed): runs are reproducible.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Sequence
from typing import Any

import attrs

from p2pakash import crypto, wire
from p2pakash.consensus.messages import VOTE_TOPIC
from p2pakash.consensus.types import Vote, VoteType, sign_vote
from p2pakash.gossip import messages as m
from p2pakash.gossip import notes
from p2pakash.ledger.txs import Send, Tx, TxBatch, sign_tx
from p2pakash.market import ledger_market as lm
from p2pakash.market import matching
from p2pakash.market.orders import (
    BidBody,
    OfferedUnit,
    Order,
    make_order,
    sign_bid,
    sign_order,
)
from p2pakash.market.sdl import parse_sdl
from p2pakash.market.sdl.resources import Attribute
from p2pakash.market.validators import TOPIC_BIDS, TOPIC_ORDERS
from p2pakash.mempool import TOPIC as TX_TOPIC
from tests.integration.test_hostile_peers import Hostile, _goodbyes, _wait_eof

__all__ = ["Hostile", "goodbyes", "wait_eof"]
goodbyes = _goodbyes
wait_eof = _wait_eof

SDL_TEXT = """
version: "2.0"
services:
  web:
    image: nginx
    expose:
      - port: 80
        to: [{global: true}]
profiles:
  compute:
    small:
      resources:
        cpu: {units: 1}
        memory: {size: 512Mi}
        storage: {size: 1Gi}
  placement:
    dc:
      attributes: {region: hostile-lab}
      pricing:
        small: {denom: uakt, amount: 100}
deployment:
  web:
    dc: {profile: small, count: 1}
"""
PROVIDER_ATTRS = (Attribute(key="region", value="hostile-lab"),)
DEPOSIT = 5_000_000


def key(name: str) -> crypto.PrivateKey:
    return crypto.PrivateKey.from_seed(hashlib.sha256(name.encode()).digest())


def publish(topic: str, data: bytes) -> m.Publish:
    return m.Publish(topic=topic, data=data)


# ---------------------------------------------------------------- floods and frames


def junk_flood(rng: random.Random, n: int, *, topic: str = "spam") -> list[m.Publish]:
    """``n`` distinct Publishes on a topic nobody subscribes to: each passes the seen
    cache and costs the victim a decode and a hash, then is dropped (and charged to the
    sender's token bucket)."""
    return [publish(topic, rng.randbytes(24)) for _ in range(n)]


def valid_notes(author: crypto.PrivateKey, chain_id: str, n: int, *, prefix: str,
                timestamp_ms: int) -> list[m.Publish]:
    """``n`` distinct, correctly signed notes: every one passes validation."""
    return [publish(notes.TOPIC, wire.encode(notes.make_note(
        author, chain_id, f"{prefix}{i}", timestamp_ms=timestamp_ms, nonce=i)))
        for i in range(n)]


def oversized_payload(max_frame: int) -> bytes:
    """A well-formed Frame holding one Publish, one byte over ``max_frame`` once encoded."""
    size = max_frame - 64
    while True:
        payload = wire.encode(m.Frame(items=(publish("spam", b"\x00" * size),)))
        if len(payload) > max_frame:
            return payload
        size += max_frame + 1 - len(payload)


# ---------------------------------------------------------------- bad signatures


def forged_vote(victim: crypto.PrivateKey, forger: crypto.PrivateKey, chain_id: str, *,
                height: int, round: int = 0, timestamp_ms: int) -> m.Publish:
    """A prevote claiming to be ``victim``'s (a validator) with ``forger``'s signature."""
    vote = sign_vote(victim, chain_id, type=VoteType.PREVOTE, height=height, round=round,
                     block_hash=hashlib.sha256(b"forged").digest(), timestamp_ms=timestamp_ms)
    bad = forger.sign("vote", chain_id, vote.sign_body())
    return publish(VOTE_TOPIC, wire.encode(attrs.evolve(vote, signature=bad)))


def forged_tx(victim: crypto.PrivateKey, forger: crypto.PrivateKey, chain_id: str, *,
              sequence: int, to: str) -> m.Publish:
    """A Send from ``victim``'s account signed by ``forger``."""
    tx = sign_tx(victim, chain_id, sequence=sequence, msgs=(Send(to=to, amount=1),))
    bad = forger.sign("tx", chain_id, wire.encode(tx.body))
    return publish(TX_TOPIC, Tx(body=tx.body, pubkey=tx.pubkey, signature=bad).encode())


def forged_bid(provider: crypto.PrivateKey, forger: crypto.PrivateKey, order: Order,
               chain_id: str, *, expiry_ms: int) -> m.Publish:
    bid = sign_bid(provider, chain_id, bid_body(provider, order, expiry_ms=expiry_ms))
    bad = forger.sign("bid", chain_id, wire.encode(bid.body))
    return publish(TOPIC_BIDS, wire.encode(attrs.evolve(bid, signature=bad)))


# ---------------------------------------------------------------- replays


def send_txs(sender: crypto.PrivateKey, chain_id: str, n: int, *, to: str,
             first_sequence: int = 0) -> list[bytes]:
    """``n`` valid Sends of 1 uakt from ``sender``, sequences from ``first_sequence``."""
    return [sign_tx(sender, chain_id, sequence=first_sequence + i,
                    msgs=(Send(to=to, amount=1),)).encode() for i in range(n)]


def replay_batches(txs: Sequence[bytes], n: int, rng: random.Random) -> list[m.Publish]:
    """``n`` TxBatches of already committed txs, each a different selection (so each is a
    new gossip message ID that passes the seen cache and reaches the mempool)."""
    if n > 2 ** len(txs) // 2:
        raise ValueError(f"replay_batches: {len(txs)} txs make too few distinct batches for {n}")
    out: list[m.Publish] = []
    seen: set[tuple[int, ...]] = set()
    for _ in range(50 * n):
        if len(out) == n:
            break
        k = rng.randint(1, len(txs))
        pick = tuple(sorted(rng.sample(range(len(txs)), k)))
        if pick in seen:
            continue
        seen.add(pick)
        out.append(publish(TX_TOPIC, wire.encode(TxBatch(txs=tuple(txs[i] for i in pick)))))
    return out


# ---------------------------------------------------------------- equivocation


def equivocating_votes(validator: crypto.PrivateKey, chain_id: str, *, height: int,
                       round: int = 0, timestamp_ms: int) -> list[Vote]:
    """Two prevotes by ``validator`` for one (height, round), for two different blocks:
    the double sign that DuplicateVoteEvidence proves."""
    return [sign_vote(validator, chain_id, type=VoteType.PREVOTE, height=height, round=round,
                      block_hash=hashlib.sha256(f"fork {which} {height}".encode()).digest(),
                      timestamp_ms=timestamp_ms) for which in ("a", "b")]


def vote_publishes(votes: Sequence[Vote]) -> list[m.Publish]:
    return [publish(VOTE_TOPIC, wire.encode(v)) for v in votes]


# ---------------------------------------------------------------- market


def create_provider() -> lm.CreateProvider:
    return lm.CreateProvider(host_uri="hostile.example:8443", attributes=PROVIDER_ATTRS,
                             bond=500_000)


@functools.cache
def _sdl() -> tuple[Any, bytes]:
    doc = parse_sdl(SDL_TEXT, source="hostile_kit.SDL_TEXT")
    return doc.groups(), doc.version_hash()


def order(tenant: crypto.PrivateKey, chain_id: str, *, dseq: int, expiry_ms: int) -> Order:
    groups, manifest_hash = _sdl()
    return make_order(tenant, chain_id, dseq=dseq, groups=groups, manifest_hash=manifest_hash,
                      deposit=DEPOSIT, expiry_ms=expiry_ms)


def order_publish(o: Order) -> m.Publish:
    return publish(TOPIC_ORDERS, wire.encode(o))


def bid_body(provider: crypto.PrivateKey, o: Order, *, expiry_ms: int, price: int | None = None
             ) -> BidBody:
    group = o.group(1)
    offer = matching.offer_for(group, PROVIDER_ATTRS)
    assert offer is not None, "the kit's provider attributes must match the kit's SDL"
    return BidBody(order=o.order_id(1), order_digest=o.digest, provider=provider.address,
                   price=group.max_price if price is None else price, expiry_ms=expiry_ms,
                   resources=tuple(OfferedUnit(resources=r, count=c) for r, c in offer))


def overpriced_bids(provider: crypto.PrivateKey, o: Order, chain_id: str, n: int, *,
                    expiry_ms: int) -> list[m.Publish]:
    """``n`` correctly signed bids, each 1..n uakt above the order's max price."""
    top = o.group(1).max_price
    return [publish(TOPIC_BIDS, wire.encode(sign_bid(provider, chain_id, bid_body(
        provider, o, expiry_ms=expiry_ms, price=top + 1 + i)))) for i in range(n)]


def unfunded_orders(tenants: Sequence[crypto.PrivateKey], chain_id: str, per_tenant: int, *,
                    expiry_ms: int) -> list[m.Publish]:
    """Valid, signed orders from tenants who hold nothing: each owner fails the deposit
    check (balance < deposit). Interleaved across tenants; one checked template per tenant,
    re-signed with dseq 1, 2, ... (the checks do not depend on dseq)."""
    templates = [order(t, chain_id, dseq=1, expiry_ms=expiry_ms) for t in tenants]
    out = []
    for i in range(per_tenant):
        for t, tpl in zip(tenants, templates, strict=True):
            body = attrs.evolve(tpl.body, deployment=attrs.evolve(tpl.body.deployment,
                                                                  dseq=1 + i))
            out.append(order_publish(sign_order(t, chain_id, body)))
    return out


def resigned_garbage(items: Sequence[m.Publish], n: int, rng: random.Random) -> list[m.Publish]:
    """``n`` copies of ``items`` (cycled) whose trailing 64-byte signature is random bytes:
    distinct messages that cost nothing to make. Against a signer the victim has already
    banned they are dropped before any signature work; otherwise they are forgeries."""
    return [publish(items[i % len(items)].topic, items[i % len(items)].data[:-64]
                    + rng.randbytes(64)) for i in range(n)]
