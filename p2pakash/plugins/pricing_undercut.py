"""``undercut`` pricing: beat the best competing bid seen on gossip, down to a floor.

Rules and invariants:
* The bid engine reports every competing bid with ``record_competing_bid(order_id, price)``
  (an int in micro-denom or a ``Price``); the lowest per order is kept. At most
  ``max_orders`` orders are remembered (oldest forgotten first); ``forget(order_id)`` drops
  one when its order closes. All methods are thread-safe.
* cost = the ``linear`` cost of the group (rates from ``[provider.linear]``);
  floor = ceil(cost × ``floor_factor``); with no competitor the quote is ceil(cost);
  otherwise min(ceil(competitor) - ``step``, ceil(cost)). A target below the floor declines
  ("below_floor"); a target above the group's maximum is lowered to that maximum when the
  floor allows it, else declines with "price below cost".
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from fractions import Fraction

from p2pakash.errors import ConfigError
from p2pakash.market.sdl.groups import GroupSpec
from p2pakash.market.sdl.resources import Price
from p2pakash.plugins import pricing_linear
from p2pakash.plugins.hookspecs import hookimpl
from p2pakash.plugins.pricing_linear import LinearRates
from p2pakash.plugins.types import (
    ATTO,
    BELOW_COST,
    BELOW_FLOOR,
    AllocatedResources,
    Decline,
    PluginConfig,
    PriceQuote,
    ProviderContext,
    ceil_atto,
    group_max_price,
)

NAME = "undercut"
DEFAULT_STEP = 1
DEFAULT_FLOOR_FACTOR = Fraction(8, 10)
DEFAULT_MAX_ORDERS = 10_000


class UndercutPricing:
    """The ``undercut`` plugin; settings in ``[provider.undercut]``: step, floor_factor."""

    def __init__(self, rates: LinearRates | None = None, *, step: int = DEFAULT_STEP,
                 floor_factor: Fraction = DEFAULT_FLOOR_FACTOR,
                 max_orders: int = DEFAULT_MAX_ORDERS) -> None:
        self.rates = rates or LinearRates.from_table({})
        self.step = step
        self.floor_factor = floor_factor
        self.max_orders = max_orders
        self._best: OrderedDict[str, int] = OrderedDict()  # order id -> lowest price (atto)
        self._lock = threading.Lock()

    @hookimpl
    def p2pakash_configure(self, config: PluginConfig) -> None:
        self.rates = LinearRates.from_table(config.section(pricing_linear.NAME),
                                            config.where(pricing_linear.NAME))
        table, where = config.section(NAME), config.where(NAME)
        for key in table:
            if key not in ("step", "floor_factor"):
                raise ConfigError(f"{where}: {key}: unknown key (expected step, floor_factor)")
        step = table.get("step", self.step)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ConfigError(f"{where}: step: expected an integer >= 1, got {step!r}")
        raw = table.get("floor_factor")
        factor = (self.floor_factor if raw is None
                  else pricing_linear.parse_rate(raw, f"{where}: floor_factor"))
        if factor > 1:
            raise ConfigError(f"{where}: floor_factor: must be at most 1, got "
                              f"{table['floor_factor']!r}")
        self.step, self.floor_factor = step, factor

    def record_competing_bid(self, order_id: object, price: int | Price) -> None:
        """Remember a competitor's bid price (per block, whole group) for ``order_id``
        (an ``OrderID`` or its text; kept as ``str(order_id)``)."""
        order_id = str(order_id)
        atto = price.amount_atto if isinstance(price, Price) else price * ATTO
        if atto <= 0:
            return
        with self._lock:
            best = self._best.get(order_id)
            if best is None or atto < best:
                self._best[order_id] = atto
            self._best.move_to_end(order_id)
            while len(self._best) > self.max_orders:
                self._best.popitem(last=False)

    def best_competing(self, order_id: object) -> int | None:
        """The lowest competing price seen for ``order_id`` in 10^-18 units, if any."""
        with self._lock:
            return self._best.get(str(order_id))

    def forget(self, order_id: object) -> None:
        with self._lock:
            self._best.pop(str(order_id), None)

    def price(self, group: GroupSpec, resources: AllocatedResources,
              order_id: str) -> PriceQuote | Decline:
        cost = self.rates.group_cost(resources)
        if isinstance(cost, Decline):
            return cost
        linear_price = math.ceil(cost)
        floor = max(1, math.ceil(cost * self.floor_factor))
        competitor = self.best_competing(order_id)
        target = linear_price
        if competitor is not None:
            target = min(ceil_atto(competitor) - self.step, linear_price)
        limit = group_max_price(group)
        if target * ATTO > limit.amount_atto:
            target = limit.whole
            if target < floor:
                return Decline(reason_code=BELOW_COST,
                               reason=f"price below cost: the group pays at most "
                                      f"{limit.amount}{limit.denom} per block, our floor is "
                                      f"{floor}{limit.denom}")
        if target < floor:
            return Decline(reason_code=BELOW_FLOOR,
                           reason=f"undercutting {ceil_atto(competitor or 0)}{limit.denom} "
                                  f"would go below our floor of {floor}{limit.denom}")
        return PriceQuote(price_per_block=target, denom=limit.denom)

    @hookimpl
    def p2pakash_bid_price(self, group: GroupSpec, resources: AllocatedResources,
                           context: ProviderContext) -> PriceQuote | Decline:
        return self.price(group, resources, context.order_id)
