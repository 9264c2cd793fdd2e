"""The bid engine: Akash's ``shouldBid`` -> reserve -> price -> bid, as a pure core.

Rules and invariants (reference/akash.md §2, bid-engine flow):
* ``consider(order, now_ms, audits)`` looks at each group of an unexpired order once (by
  ``OrderID``): placement attributes and ``signedBy`` (``matching.match_group``), a concrete
  GPU model (``matching.offer_for``), then a reservation in the inventory. A group that
  fails gets a ``DeclineBody`` with the matching reason; one that fits gets a
  ``PriceRequest`` and its reservation is held.
* ``priced(request, answer, now_ms)`` turns the pricing plugin's answer into a ``BidBody``
  (price <= the group's integer maximum, offer = the reserved units with concrete GPUs) or
  a ``DeclineBody``; a decline, an over-max price or a plugin error releases the
  reservation. A plugin error never escapes: it becomes a decline "pricing failed".
* A reservation backing a bid is held until the bid expires (plus ``grace_ms``, for a lease
  tx already in flight), another provider's lease for the order is seen (lost), or this
  provider's lease is seen (won: the reservation moves to the ``LeaseID``).
* Bodies are returned unsigned; the caller signs them (``orders.sign_bid``/``sign_decline``).
* Pure: time is ``now_ms``; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from p2pakash.market import matching
from p2pakash.market.orders import (
    MAX_TEXT,
    BidBody,
    DeclineBody,
    DeclineReason,
    LeaseID,
    OfferedUnit,
    Order,
    OrderID,
)
from p2pakash.market.sdl.groups import GroupSpec, ResourceUnit
from p2pakash.market.sdl.resources import Attribute, Resources
from p2pakash.plugins.types import (
    BELOW_COST,
    BELOW_FLOOR,
    AllocatedResources,
    PriceQuote,
    ProviderContext,
)
from p2pakash.plugins.types import Decline as PriceDecline
from p2pakash.provider.inventory import Allocation, InsufficientCapacity, Inventory

COST_CODES = frozenset({BELOW_COST, BELOW_FLOOR})


@attrs.frozen(kw_only=True)
class EngineParams:
    bid_ttl_ms: int = 300_000  # a bid's expiry (Akash --bid-timeout 5m)
    grace_ms: int = 30_000  # reservation kept past the bid's expiry for a lease in flight
    decline_ttl_ms: int = 60_000


@attrs.frozen(kw_only=True)
class PriceRequest:
    """A reserved group waiting for the pricing plugin (``pm.bid_price(group, resources,
    context)``)."""

    order: Order
    gseq: int
    group: GroupSpec
    resources: AllocatedResources
    context: ProviderContext
    offered: tuple[OfferedUnit, ...]

    @property
    def order_id(self) -> OrderID:
        return self.order.order_id(self.gseq)


@attrs.frozen(kw_only=True)
class Pending:
    """An order group this provider reserved for (priced or not yet)."""

    order: Order
    gseq: int
    offered: tuple[OfferedUnit, ...]
    bid: BidBody | None = None


@attrs.frozen(kw_only=True)
class Won:
    lease_id: LeaseID
    order: Order
    gseq: int
    allocation: Allocation


def one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


class BidEngine:
    def __init__(self, *, provider: str, attributes: Sequence[Attribute], inventory: Inventory,
                 params: EngineParams | None = None) -> None:
        self.provider = provider
        self.attributes = tuple(attributes)
        self.inventory = inventory
        self.params = params or EngineParams()
        self.pending: dict[OrderID, Pending] = {}
        self.seen: set[OrderID] = set()  # groups already considered (bounded by ``forget``)

    # ------------------------------------------------------------ orders

    def consider(self, order: Order, now_ms: int, audits: Mapping[str, Sequence[Attribute]]
                 ) -> list[PriceRequest | DeclineBody]:
        if order.body.expiry_ms <= now_ms:
            return []
        out: list[PriceRequest | DeclineBody] = []
        for gseq, group in enumerate(order.body.groups, start=1):
            oid = order.order_id(gseq)
            if oid in self.seen:
                continue
            self.seen.add(oid)
            mismatch = matching.match_group(group, self.attributes, audits)
            if mismatch is not None:
                out.append(self._decline(order, gseq, mismatch.reason, mismatch.text, now_ms))
                continue
            offer = matching.offer_for(group, self.attributes)
            if offer is None:
                out.append(self._decline(order, gseq, DeclineReason.GPU_MODEL_UNAVAILABLE,
                                         "no GPU model matching the request", now_ms))
                continue
            expires = now_ms + self.params.bid_ttl_ms + self.params.grace_ms
            try:
                self.inventory.reserve(oid, offer, expires_ms=expires)
            except InsufficientCapacity as exc:
                out.append(self._decline(order, gseq, DeclineReason.NO_CAPACITY, str(exc),
                                         now_ms))
                continue
            offered = tuple(OfferedUnit(resources=res, count=count) for res, count in offer)
            self.pending[oid] = Pending(order=order, gseq=gseq, offered=offered)
            out.append(self._price_request(order, gseq, offer, offered))
        return out

    def _price_request(self, order: Order, gseq: int, offer: Sequence[tuple[Resources, int]],
                       offered: tuple[OfferedUnit, ...]) -> PriceRequest:
        spec = order.group(gseq).to_spec()
        units = tuple(ResourceUnit(resources=res, count=count, price=unit.price)
                      for (res, count), unit in zip(offer, spec.resources, strict=True))
        context = ProviderContext(owner=order.owner, provider=self.provider,
                                  order_id=str(order.order_id(gseq)))
        return PriceRequest(order=order, gseq=gseq, group=spec,
                            resources=AllocatedResources(units=units), context=context,
                            offered=offered)

    def priced(self, request: PriceRequest, answer: PriceQuote | PriceDecline | Exception,
               now_ms: int) -> BidBody | DeclineBody | None:
        """The bid or decline for a priced request; None if the order is no longer pending."""
        oid = request.order_id
        pending = self.pending.get(oid)
        if pending is None or pending.bid is not None:
            return None
        order, gseq = request.order, request.gseq
        max_price = order.group(gseq).max_price
        if isinstance(answer, PriceQuote) and answer.price_per_block > max_price:
            answer = PriceDecline(reason_code=BELOW_COST,
                                  reason=f"price {answer.price_per_block} above the order's "
                                         f"maximum {max_price}")
        if not isinstance(answer, PriceQuote):
            self.pending.pop(oid)
            self.inventory.release(oid)
            if isinstance(answer, PriceDecline):
                reason = (DeclineReason.PRICE_BELOW_COST if answer.reason_code in COST_CODES
                          else DeclineReason.UNSPECIFIED)
                text = f"{answer.reason_code}: {answer.reason}"
            else:
                reason, text = DeclineReason.UNSPECIFIED, "provider pricing failed"
            return self._decline(order, gseq, reason, text, now_ms)
        body = BidBody(order=oid, order_digest=order.digest, provider=self.provider,
                       price=answer.price_per_block, resources=pending.offered,
                       expiry_ms=now_ms + self.params.bid_ttl_ms)
        self.pending[oid] = attrs.evolve(pending, bid=body)
        return body

    def _decline(self, order: Order, gseq: int, reason: DeclineReason, text: str,
                 now_ms: int) -> DeclineBody:
        return DeclineBody(order=order.order_id(gseq), order_digest=order.digest,
                           provider=self.provider, reason=reason, text=one_line(text),
                           expiry_ms=now_ms + self.params.decline_ttl_ms)

    # ------------------------------------------------------------ chain events

    def lease_created(self, lease_id: LeaseID) -> Won | None:
        """A lease for an order we may have bid on: ours -> Won, someone else's -> release."""
        oid = lease_id.order
        pending = self.pending.pop(oid, None)
        if lease_id.provider != self.provider:
            self.inventory.release(oid)
            return None
        if pending is None:
            return None
        if oid in self.inventory.held:
            allocation = self.inventory.commit(oid, lease_id)
        else:  # the reservation lapsed before the lease arrived: take the resources again
            try:
                allocation = self.inventory.reserve(
                    lease_id, [(u.resources, u.count) for u in pending.offered])
            except InsufficientCapacity:
                return None
        return Won(lease_id=lease_id, order=pending.order, gseq=pending.gseq,
                   allocation=allocation)

    def adopt(self, lease_id: LeaseID, order: Order, gseq: int) -> Won | None:
        """Take the resources of a lease this provider already runs (after a restart)."""
        offer = matching.offer_for(order.group(gseq), self.attributes)
        if offer is None:
            return None
        self.seen.add(lease_id.order)
        try:
            allocation = self.inventory.reserve(lease_id, offer)
        except InsufficientCapacity:
            return None
        return Won(lease_id=lease_id, order=order, gseq=gseq, allocation=allocation)

    def lease_closed(self, lease_id: LeaseID) -> bool:
        return self.inventory.release(lease_id)

    def expire(self, now_ms: int) -> list[OrderID]:
        """Release reservations whose bids expired (and the grace passed) unanswered."""
        gone = []
        for key in self.inventory.expire(now_ms):
            if isinstance(key, OrderID):
                self.pending.pop(key, None)
                gone.append(key)
        return gone

    def forget(self, keep: int = 100_000) -> None:
        """Bound the memory of considered groups (oldest first is not tracked: all go)."""
        if len(self.seen) > keep:
            self.seen = set(self.pending)
