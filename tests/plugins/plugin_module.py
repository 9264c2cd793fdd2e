"""A third-party plugin module used by the manager tests (hooks without the marker, pytest
style, plus one marked class)."""

from __future__ import annotations

from typing import Any

from p2pakash.market.sdl import GroupSpec
from p2pakash.plugins import PriceQuote, hookimpl

SEEN: list[Any] = []


def p2pakash_bid_price(group: GroupSpec) -> PriceQuote:  # a subset of the arguments
    return PriceQuote(price_per_block=7, denom=group.resources[0].price.denom)


def p2pakash_order_seen(order: Any) -> None:
    SEEN.append(order)


class Flat:
    """Loaded as ``tests.plugins.plugin_module:Flat`` (a class: instantiated once)."""

    def __init__(self) -> None:
        self.price = 11

    @hookimpl
    def p2pakash_bid_price(self, group: GroupSpec) -> PriceQuote:
        return PriceQuote(price_per_block=self.price)
