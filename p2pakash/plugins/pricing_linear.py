"""``linear`` pricing: fixed rates per resource, summed over the group and rounded up.

Rules and invariants:
* Rates are micro-denomination (uakt) per block: per CPU core (1000 millicpu), per GiB of
  memory, per GiB of storage by class (``ephemeral`` for a volume without a class), per
  endpoint, per leased IP, and per GPU by model key. TOML ints, floats or decimal strings;
  kept as exact ``Fraction``s, never negative.
* GPU rate lookup tries ``model.ram.interface`` -> ``model.ram`` -> ``model`` -> ``default``
  (the same keys as Akash's ``PRICE_TARGET_GPU_MAPPINGS``). A unit whose GPU attributes list
  several models is charged the highest of their rates.
* price = ceil(Σ over units of count × unit cost); a storage class with no rate and no
  ``storage.default`` declines (Akash: "no pricing configured for storage class").
* A price above the group's maximum declines with "price below cost"; a zero cost declines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

import attrs

from p2pakash.errors import ConfigError
from p2pakash.market.sdl.groups import GroupSpec, ResourceUnit
from p2pakash.plugins.hookspecs import hookimpl
from p2pakash.plugins.types import (
    ATTO,
    BELOW_COST,
    GI,
    NO_PRICE,
    UNPRICED_STORAGE,
    AllocatedResources,
    Decline,
    PluginConfig,
    PriceQuote,
    ProviderContext,
    group_max_price,
    leased_ips,
)

NAME = "linear"
ZERO = Fraction(0)
# Defaults: Akash's generic price script targets (USD per month) at 1 USD/AKT,
# ÷ 429,909 blocks per month, in uakt per block.
DEFAULTS: dict[str, Any] = {
    "cpu": "3.72", "memory": "1.86", "endpoint": "0.12", "ip_lease": "11.63",
    "storage": {"ephemeral": "0.05", "beta1": "0.03", "beta2": "0.07", "beta3": "0.1"},
    "gpu": {"default": "232.61"},
}
SCALARS = ("cpu", "memory", "endpoint", "ip_lease")


def parse_rate(value: object, where: str) -> Fraction:
    """A non-negative rate from a TOML int, float or decimal string."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        rate = Fraction(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if rate < 0:
        raise ConfigError(f"{where}: must not be negative, got {value!r}")
    return rate


@attrs.frozen(kw_only=True)
class LinearRates:
    cpu: Fraction
    memory: Fraction
    endpoint: Fraction
    ip_lease: Fraction
    storage: Mapping[str, Fraction]
    gpu: Mapping[str, Fraction]

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str = "[provider.linear]"
                   ) -> LinearRates:
        """Rates from ``[provider.linear]``; keys not given keep their defaults."""
        known = {*SCALARS, "storage", "gpu"}
        for key in table:
            if key not in known:
                raise ConfigError(f"{where}: {key}: unknown key (expected one of "
                                  f"{', '.join(sorted(known))})")
        scalars = {k: parse_rate(table.get(k, DEFAULTS[k]), f"{where}: {k}") for k in SCALARS}
        tables: dict[str, dict[str, Fraction]] = {}
        for name in ("storage", "gpu"):
            given = table.get(name, {})
            if not isinstance(given, Mapping):
                raise ConfigError(f"{where}: {name}: expected a table, got {given!r}")
            merged = {**DEFAULTS[name], **given}
            tables[name] = {str(k).lower(): parse_rate(v, f"{where}: {name}.{k}")
                            for k, v in merged.items()}
        return cls(storage=tables["storage"], gpu=tables["gpu"], **scalars)

    def gpu_rate(self, attribute_key: str) -> Fraction | None:
        """The rate for ``vendor/<v>/model/<m>[/ram/<r>][/interface/<i>]``."""
        parts = attribute_key.split("/")
        if len(parts) < 4 or parts[0] != "vendor" or parts[2] != "model":
            return self.gpu.get("default")
        model = parts[3].lower()
        extra = dict(zip(parts[4::2], parts[5::2], strict=False))
        ram, iface = extra.get("ram", "").lower(), extra.get("interface", "").lower()
        if iface.startswith("sxm"):
            iface = "sxm"
        candidates = []
        if ram and iface:
            candidates.append(f"{model}.{ram}.{iface}")
        if ram:
            candidates.append(f"{model}.{ram}")
        candidates += [model, "default"]
        for key in candidates:
            if key in self.gpu:
                return self.gpu[key]
        return None

    def unit_cost(self, unit: ResourceUnit) -> Fraction | Decline:
        """One replica's cost per block (exact), or a Decline for an unpriced resource."""
        res = unit.resources
        cost = Fraction(res.cpu_millis, 1000) * self.cpu
        cost += Fraction(res.memory_bytes, GI) * self.memory
        for volume in res.storage:
            cls = next((a.value for a in volume.attributes if a.key == "class"), "ephemeral")
            rate = self.storage.get(cls.lower(), self.storage.get("default"))
            if rate is None:
                return Decline(reason_code=UNPRICED_STORAGE,
                               reason=f"no pricing configured for storage class: {cls}")
            cost += Fraction(volume.size, GI) * rate
        ips = leased_ips(unit)
        cost += (len(res.endpoints) - ips) * self.endpoint + ips * self.ip_lease
        if res.gpu.units:
            rates = [self.gpu_rate(a.key) for a in res.gpu.attributes] or [
                self.gpu.get("default")]
            if any(rate is None for rate in rates):
                keys = ", ".join(a.key for a in res.gpu.attributes) or "any model"
                return Decline(reason_code=NO_PRICE,
                               reason=f"no GPU rate for {keys} and no gpu.default")
            cost += res.gpu.units * max(r for r in rates if r is not None)
        return cost

    def group_cost(self, resources: AllocatedResources) -> Fraction | Decline:
        total = ZERO
        for unit in resources.units:
            cost = self.unit_cost(unit)
            if isinstance(cost, Decline):
                return cost
            total += cost * unit.count
        return total


def quote_cost(cost: Fraction, group: GroupSpec) -> PriceQuote | Decline:
    """The quote for an exact cost: rounded up, declined when above the group's maximum."""
    price = math.ceil(cost)
    limit = group_max_price(group)
    if price <= 0:
        return Decline(reason_code=NO_PRICE, reason="a bid of zero was produced")
    if price * ATTO > limit.amount_atto:
        return Decline(reason_code=BELOW_COST,
                       reason=f"price below cost: the group pays at most {limit.amount}"
                              f"{limit.denom} per block, our price is {price}{limit.denom}")
    return PriceQuote(price_per_block=price, denom=limit.denom)


class LinearPricing:
    """The ``linear`` plugin; rates come from ``[provider.linear]`` at configure time."""

    def __init__(self, rates: LinearRates | None = None) -> None:
        self.rates = rates or LinearRates.from_table({})

    @hookimpl
    def p2pakash_configure(self, config: PluginConfig) -> None:
        self.rates = LinearRates.from_table(config.section(NAME), config.where(NAME))

    def price(self, group: GroupSpec, resources: AllocatedResources) -> PriceQuote | Decline:
        cost = self.rates.group_cost(resources)
        if isinstance(cost, Decline):
            return cost
        return quote_cost(cost, group)

    @hookimpl
    def p2pakash_bid_price(self, group: GroupSpec, resources: AllocatedResources,
                           context: ProviderContext) -> PriceQuote | Decline:
        return self.price(group, resources)
