"""linear and undercut pricing: rates from TOML, GPU fallbacks, rounding, limits, floors."""

from __future__ import annotations

import time
import tomllib
from fractions import Fraction

import attrs
import pytest

from p2pakash.errors import ConfigError
from p2pakash.market.sdl import Attribute, GroupSpec, Price
from p2pakash.plugins import types as t
from p2pakash.plugins.manager import PluginManager
from p2pakash.plugins.pricing_linear import LinearPricing, LinearRates
from p2pakash.plugins.pricing_undercut import UndercutPricing
from p2pakash.plugins.types import PluginConfig
from tests.plugins.samples import allocated, config, context, cpu_group, gpu_group

RATES = {"cpu": 10, "memory": 5, "endpoint": 1, "storage": {"ephemeral": 0.5}}
# cpu group unit: 2 cores, 4 GiB, 20 GiB ephemeral, 1 endpoint = 20 + 20 + 10 + 1 = 51; × 3


def linear(table: dict[str, object] | None = None) -> LinearPricing:
    return LinearPricing(LinearRates.from_table(table if table is not None else RATES))


def price(pricing: LinearPricing, group: GroupSpec) -> t.PriceQuote | t.Decline:
    return pricing.p2pakash_bid_price(group=group, resources=allocated(group),
                                      context=context())


def with_storage_class(group: GroupSpec, cls: str) -> GroupSpec:
    unit = group.resources[0]
    volumes = tuple(attrs.evolve(v, attributes=(Attribute(key="class", value=cls),))
                    for v in unit.resources.storage)
    res = attrs.evolve(unit.resources, storage=volumes)
    return attrs.evolve(group, resources=(attrs.evolve(unit, resources=res),))


def test_sum_over_units_times_count() -> None:
    assert price(linear(), cpu_group()) == t.PriceQuote(price_per_block=153, denom="uakt")


def test_fractional_cost_rounds_up() -> None:
    pricing = linear({"cpu": "0.1", "memory": 0, "endpoint": "0.01",
                      "storage": {"ephemeral": 0}})
    assert price(pricing, cpu_group()) == t.PriceQuote(price_per_block=1)  # 0.63 -> 1


def test_above_group_maximum_declines_price_below_cost() -> None:
    answer = price(linear(), cpu_group(max_price=50))  # the group pays at most 150
    assert isinstance(answer, t.Decline)
    assert answer.reason_code == t.BELOW_COST
    assert answer.reason.startswith("price below cost")
    assert price(linear(), cpu_group(max_price=51)) == t.PriceQuote(price_per_block=153)


def test_gpu_rate_fallbacks() -> None:
    full = {"a100.80gi.sxm": 900, "a100.80gi": 800, "a100": 700, "default": 100}
    key = "vendor/nvidia/model/a100/ram/80Gi/interface/sxm"
    expected = [900, 800, 700, 100]
    for drop, rate in zip(range(4), expected, strict=True):
        gpu = dict(list(full.items())[drop:])
        assert LinearRates.from_table({"gpu": gpu}).gpu_rate(key) == rate
    rates = LinearRates.from_table({"gpu": {"a100": 700}})
    assert rates.gpu_rate("vendor/nvidia/model/a100/ram/40Gi/interface/sxm4") == 700
    assert rates.gpu_rate("vendor/nvidia/model/*") == rates.gpu["default"]
    assert LinearRates.from_table({"gpu": {"h100.80Gi.sxm": 5}}).gpu_rate(
        "vendor/nvidia/model/h100/ram/80Gi/interface/sxm") == 5


def test_gpu_group_price() -> None:
    pricing = linear({"cpu": 10, "memory": 4, "endpoint": 1, "gpu": {"a100.80Gi.sxm": 900},
                      "storage": {"ephemeral": 1, "beta3": 2}})
    # 10 + 4 × 0.5 + 1 × 1 + 2 × 10 + 1 + 900 = 934
    assert price(pricing, gpu_group()) == t.PriceQuote(price_per_block=934)


def test_unpriced_storage_class_declines_unless_default() -> None:
    group = with_storage_class(cpu_group(), "fast")
    answer = price(linear(), group)
    assert answer == t.Decline(reason_code=t.UNPRICED_STORAGE,
                               reason="no pricing configured for storage class: fast")
    priced = linear({**RATES, "storage": {"default": 1}})
    assert price(priced, group) == t.PriceQuote(price_per_block=(20 + 20 + 20 + 1) * 3)


@pytest.mark.parametrize(("table", "message"), [
    ({"cpu": -1}, r"\[provider\]: linear: cpu: must not be negative"),
    ({"memory": "lots"}, "memory: expected a number"),
    ({"endpoint": True}, "endpoint: expected a number"),
    ({"gpu": {"a100": [1]}}, r"gpu\.a100: expected a number"),
    ({"gpu": 5}, "gpu: expected a table"),
    ({"cpus": 1}, "cpus: unknown key"),
])
def test_bad_rates_are_config_errors(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PluginManager.load(config(linear=table))


def test_rates_from_toml_through_the_manager() -> None:
    doc = tomllib.loads("""
[provider]
pricing = "linear"
entry_points = false
gpu_probes = []

[provider.linear]
cpu = 10
memory = 5.0
endpoint = "1"

[provider.linear.storage]
ephemeral = 0.5
""")
    manager = PluginManager.load(PluginConfig.from_table(doc["provider"]))
    group = cpu_group()
    assert manager.bid_price(group, allocated(group), context()) == t.PriceQuote(
        price_per_block=153)


def test_linear_decision_is_fast() -> None:
    manager = PluginManager.load(config(linear=RATES))
    group = gpu_group()
    resources, ctx = allocated(group), context()
    start = time.perf_counter()
    for _ in range(200):
        manager.bid_price(group, resources, ctx)
    assert (time.perf_counter() - start) / 200 < 0.005


# ------------------------------------------------------------------ undercut


def undercut(**kw: object) -> UndercutPricing:
    return UndercutPricing(LinearRates.from_table(RATES), **kw)  # type: ignore[arg-type]


def quote(pricing: UndercutPricing, group: GroupSpec, order: str = "o1"
          ) -> t.PriceQuote | t.Decline:
    return pricing.p2pakash_bid_price(group=group, resources=allocated(group),
                                      context=context(order))


def test_undercut_without_competitor_is_linear() -> None:
    assert quote(undercut(), cpu_group()) == t.PriceQuote(price_per_block=153)


def test_undercut_beats_the_best_competitor_by_step() -> None:
    pricing = undercut()
    pricing.record_competing_bid("o1", 145)
    pricing.record_competing_bid("o1", 140)
    pricing.record_competing_bid("o1", 150)  # not better than 140
    assert quote(pricing, cpu_group()) == t.PriceQuote(price_per_block=139)
    assert quote(pricing, cpu_group(), "o2") == t.PriceQuote(price_per_block=153)
    pricing.record_competing_bid("o3", Price.parse("uakt", "130.5"))
    assert quote(pricing, cpu_group(), "o3") == t.PriceQuote(price_per_block=130)
    pricing.record_competing_bid("o4", 400)  # our linear price is already lower
    assert quote(pricing, cpu_group(), "o4") == t.PriceQuote(price_per_block=153)


def test_undercut_never_below_floor() -> None:
    pricing = undercut()  # floor = ceil(153 × 0.8) = 123
    pricing.record_competing_bid("o1", 124)
    assert quote(pricing, cpu_group()) == t.PriceQuote(price_per_block=123)
    pricing.record_competing_bid("o1", 123)
    answer = quote(pricing, cpu_group())
    assert isinstance(answer, t.Decline)
    assert answer.reason_code == t.BELOW_FLOOR


def test_undercut_lowers_to_the_group_maximum_when_the_floor_allows() -> None:
    assert quote(undercut(), cpu_group(max_price=45)) == t.PriceQuote(price_per_block=135)
    answer = quote(undercut(), cpu_group(max_price=40))  # 120 < floor 123
    assert isinstance(answer, t.Decline) and answer.reason_code == t.BELOW_COST


def test_undercut_memory_is_bounded_and_forgettable() -> None:
    pricing = undercut(max_orders=2)
    for order in ("a", "b", "c"):
        pricing.record_competing_bid(order, 100)
    assert pricing.best_competing("a") is None
    assert pricing.best_competing("c") == 100 * t.ATTO
    pricing.forget("c")
    assert pricing.best_competing("c") is None


def test_undercut_settings_from_config() -> None:
    manager = PluginManager.load(config(pricing="undercut", linear=RATES,
                                        undercut={"step": 5, "floor_factor": 0.9}))
    plugin = manager.pricing
    assert isinstance(plugin, UndercutPricing)
    assert (plugin.step, plugin.floor_factor) == (5, Fraction(9, 10))
    plugin.record_competing_bid("o1", 150)
    group = cpu_group()
    assert manager.bid_price(group, allocated(group), context("o1")) == t.PriceQuote(
        price_per_block=145)
    for bad, message in (({"step": 0}, "step: expected an integer >= 1"),
                         ({"floor_factor": 1.5}, "floor_factor: must be at most 1"),
                         ({"margin": 1}, "margin: unknown key")):
        with pytest.raises(ConfigError, match=message):
            PluginManager.load(config(pricing="undercut", undercut=bad))
