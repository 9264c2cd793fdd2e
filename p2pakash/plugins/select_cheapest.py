"""Built-in ``p2pakash_select_bid``: the cheapest bid, ties broken by provider address.

Rules: registered ``trylast``, so any other plugin answering the hook decides first; the
result is always one of the given bids (None only when there are none).
"""

from __future__ import annotations

from collections.abc import Sequence

from p2pakash.market.orders import Bid, Order
from p2pakash.plugins.hookspecs import hookimpl

NAME = "select-cheapest"


def cheapest(bids: Sequence[Bid]) -> Bid | None:
    """The bid with the lowest price (uakt per block), then the lowest provider address."""
    if not bids:
        return None
    return min(bids, key=lambda bid: (bid.body.price, bid.provider))


class CheapestBid:
    @hookimpl(trylast=True)
    def p2pakash_select_bid(self, order: Order, bids: Sequence[Bid]) -> Bid | None:
        return cheapest(bids)
