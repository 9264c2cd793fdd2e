"""Built-in ``p2pakash_select_bid``: the cheapest bid, ties broken by provider address.

Rules: registered ``trylast``, so any other plugin answering the hook decides first; the
result is always one of the given bids (None only when there are none).
"""

from __future__ import annotations

from collections.abc import Sequence

from p2pakash.plugins.hookspecs import hookimpl
from p2pakash.plugins.types import BidLike, OrderLike

NAME = "select-cheapest"


def cheapest(bids: Sequence[BidLike]) -> BidLike | None:
    """The bid with the lowest price (exact, 10^-18 units), then the lowest address."""
    if not bids:
        return None
    return min(bids, key=lambda bid: (bid.price.amount_atto, str(bid.provider)))


class CheapestBid:
    @hookimpl(trylast=True)
    def p2pakash_select_bid(self, order: OrderLike, bids: Sequence[BidLike]) -> BidLike | None:
        return cheapest(bids)
