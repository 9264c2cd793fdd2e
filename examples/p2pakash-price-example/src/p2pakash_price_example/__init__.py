"""``discount``: bid a flat percentage below what the built-in ``linear`` plugin would.

Rules and invariants:
* Rates come from ``[provider.linear]`` (the same table ``linear`` reads), the discount
  from ``[provider.discount]``: ``percent`` (0 < percent < 100, default 5).
* price = ceil(linear price × (100 - percent) / 100), and always at least 1 uakt below
  the linear price while that stays positive, so this plugin outbids ``linear`` with the same
  rates. Whatever ``linear`` declines (unpriced storage, above the group maximum) is
  declined here too, with linear's reason.
* Thread-safe: the hook only reads settings fixed at configure time.
"""

from __future__ import annotations

import math
from fractions import Fraction

from p2pakash.errors import ConfigError
from p2pakash.market.sdl import GroupSpec
from p2pakash.plugins import (
    AllocatedResources,
    Decline,
    PluginConfig,
    PriceQuote,
    ProviderContext,
    hookimpl,
)
from p2pakash.plugins.pricing_linear import LinearPricing

NAME = "discount"
__all__ = ["DiscountPricing"]


class DiscountPricing:
    """Registered through the ``p2pakash`` entry point ``discount`` (instantiated once)."""

    def __init__(self) -> None:
        self.linear = LinearPricing()
        self.percent = Fraction(5)

    @hookimpl
    def p2pakash_configure(self, config: PluginConfig) -> None:
        self.linear.p2pakash_configure(config)
        table = config.section(NAME)
        for key in table:
            if key != "percent":
                raise ConfigError(f"{config.where(NAME)}: {key}: unknown key (expected percent)")
        percent = table.get("percent", 5)
        if isinstance(percent, bool) or not isinstance(percent, int | float) \
                or not 0 < percent < 100:
            raise ConfigError(f"{config.where(NAME)}: percent: expected a number between 0 "
                              f"and 100, got {percent!r}")
        self.percent = Fraction(str(percent))

    @hookimpl
    def p2pakash_bid_price(self, group: GroupSpec, resources: AllocatedResources,
                           context: ProviderContext) -> PriceQuote | Decline:
        quote = self.linear.price(group, resources)
        if isinstance(quote, Decline):
            return quote
        linear = quote.price_per_block
        price = math.ceil(linear * (100 - self.percent) / 100)
        if price >= linear > 1:
            price = linear - 1
        return PriceQuote(price_per_block=max(price, 1), denom=quote.denom)
