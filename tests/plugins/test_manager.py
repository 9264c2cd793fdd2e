"""PluginManager: loading, checks, defensive hook calls, selection, notifications."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pakash import crypto
from p2pakash.errors import ConfigError, PluginError
from p2pakash.market.orders import (
    Bid,
    BidBody,
    DeploymentID,
    Order,
    OrderBody,
    OrderGroup,
    OrderID,
    sign_bid,
    sign_order,
)
from p2pakash.market.sdl import GroupSpec
from p2pakash.plugins import hookimpl
from p2pakash.plugins import types as t
from p2pakash.plugins.manager import PluginManager
from tests.plugins import plugin_module
from tests.plugins.samples import allocated, config, context, cpu_group

CHAIN = "test-chain"


def load(plugin: object, name: str = "custom", **table: Any) -> PluginManager:
    return PluginManager.load(config(pricing=table.pop("pricing", name), **table),
                              extra=[(name, plugin)])


def ask(manager: PluginManager, group: GroupSpec | None = None) -> t.PriceQuote | t.Decline:
    group = group or cpu_group()
    return manager.bid_price(group, allocated(group), context())


class Answer:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    @hookimpl
    def p2pakash_bid_price(self, group: GroupSpec, resources: t.AllocatedResources,
                           context: t.ProviderContext) -> object:
        return self.answer


class Raises:
    @hookimpl
    def p2pakash_bid_price(self, group: GroupSpec) -> object:
        raise ZeroDivisionError("division by zero")


def forged_quote(price: object, denom: str = "uakt") -> t.PriceQuote:
    quote = object.__new__(t.PriceQuote)
    object.__setattr__(quote, "price_per_block", price)
    object.__setattr__(quote, "denom", denom)
    return quote


def test_a_raising_plugin_is_a_plugin_error_naming_it() -> None:
    with pytest.raises(PluginError, match=r"plugin 'custom' raised in p2pakash_bid_price: "
                                          r"ZeroDivisionError: division by zero"):
        ask(load(Raises()))


@pytest.mark.parametrize(("answer", "message"), [
    (5, "returned int 5; expected PriceQuote, Decline or None"),
    (5.0, "returned float 5.0"),
    ([t.PriceQuote(price_per_block=5)], "returned list"),
    (forged_quote(-3), "quoted -3; price_per_block must be a positive int"),
    (forged_quote(0), "quoted 0"),
    (forged_quote(2.5), "quoted 2.5"),
    (forged_quote(True), "quoted True"),
    (t.PriceQuote(price_per_block=5, denom="uact"), "quoted in 'uact' but the order is priced "
                                                    "in 'uakt'"),
    (t.Decline(reason_code=1, reason="x"), "reason_code and reason are not strings"),  # type: ignore[arg-type]
])
def test_nonsense_answers_are_plugin_errors(answer: object, message: str) -> None:
    with pytest.raises(PluginError, match="plugin 'custom'") as info:
        ask(load(Answer(answer)))
    assert message in str(info.value)


def test_quote_validators_refuse_bad_prices_at_construction() -> None:
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="price_per_block must be a positive int"):
            t.PriceQuote(price_per_block=bad)  # type: ignore[arg-type]


def test_none_declines_and_declines_pass_through() -> None:
    assert ask(load(Answer(None))) == t.Decline(reason_code=t.NO_PRICE,
                                                reason="pricing plugin 'custom' gave no price")
    decline = t.Decline(reason_code="busy", reason="maintenance window")
    assert ask(load(Answer(decline))) == decline
    assert ask(load(Answer(t.PriceQuote(price_per_block=9)))) == t.PriceQuote(price_per_block=9)


def test_only_the_selected_pricing_plugin_answers() -> None:
    manager = PluginManager.load(config(pricing="linear"),
                                 extra=[("other", Answer(t.PriceQuote(price_per_block=1)))])
    answer = ask(manager)
    assert isinstance(answer, t.PriceQuote) and answer.price_per_block > 1


def test_pricing_names_must_exist_and_implement_the_hook() -> None:
    with pytest.raises(ConfigError, match=r"pricing: no plugin named 'nope' \(built-ins: linear, "
                                          "akash-script, undercut"):
        PluginManager.load(config(pricing="nope"))

    class Quiet:
        @hookimpl
        def p2pakash_order_seen(self, order: Order) -> None:
            pass

    with pytest.raises(ConfigError, match="plugin 'quiet' does not implement p2pakash_bid_price"):
        load(Quiet(), "quiet")


def test_modules_from_config_with_unmarked_hooks() -> None:
    manager = PluginManager.load(config(pricing="tests.plugins.plugin_module",
                                        plugins=["tests.plugins.plugin_module"]))
    assert ask(manager) == t.PriceQuote(price_per_block=7)
    order = object()
    assert manager.order_seen(order) == []  # type: ignore[arg-type]
    assert plugin_module.SEEN[-1] is order


def test_module_attribute_class_is_instantiated() -> None:
    spec = "tests.plugins.plugin_module:Flat"
    manager = PluginManager.load(config(pricing=spec, plugins=[spec]))
    assert isinstance(manager.pricing, plugin_module.Flat)
    assert ask(manager) == t.PriceQuote(price_per_block=11)


def test_unloadable_module_names_itself() -> None:
    with pytest.raises(PluginError, match=r"plugin 'no\.such\.module' \(from \[provider\] "
                                          r"plugins\) failed to load: ModuleNotFoundError"):
        PluginManager.load(config(plugins=["no.such.module"]))


def test_misspelt_hook_is_refused_naming_the_plugin() -> None:
    with pytest.raises(PluginError, match=r"plugin 'tests\.plugins\.misspelt_module': unknown "
                                          "hook 'p2pakash_bid_prise'"):
        PluginManager.load(config(plugins=["tests.plugins.misspelt_module"]))

    class Marked:
        @hookimpl
        def p2pakash_leese_closed(self, lease: object) -> None:
            pass

    with pytest.raises(PluginError, match="plugin 'marked': unknown hook 'p2pakash_leese_closed'"):
        load(Marked(), "marked", pricing="linear")


def test_hookimpl_with_an_argument_the_spec_lacks() -> None:
    class Greedy:
        @hookimpl
        def p2pakash_bid_price(self, group: GroupSpec, wallet: object) -> None:
            pass

    with pytest.raises(PluginError, match=r"plugin 'greedy': .*wallet"):
        load(Greedy(), "greedy")


def test_wrappers_are_refused_on_called_hooks() -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def p2pakash_bid_price(self, group: GroupSpec) -> Any:
            return (yield)

    with pytest.raises(PluginError, match="hook wrappers are not supported on p2pakash_bid_price"):
        load(Wrapper(), "wrapper", pricing="linear")


def test_names_are_unique() -> None:
    with pytest.raises(PluginError, match="plugin name 'linear' is taken"):
        PluginManager.load(config(pricing="linear"), extra=[("linear", Answer(None))])


def test_configure_errors() -> None:
    class Picky:
        @hookimpl
        def p2pakash_configure(self, config: t.PluginConfig) -> None:
            raise ConfigError(f"{config.where('picky')}: level: expected 1..3")

    class Broken:
        @hookimpl
        def p2pakash_configure(self) -> None:
            raise KeyError("level")

    with pytest.raises(ConfigError, match=r"\[provider\]: picky: level: expected 1\.\.3"):
        load(Picky(), "picky", pricing="linear")
    with pytest.raises(PluginError, match="plugin 'broken' raised in p2pakash_configure: KeyError"):
        load(Broken(), "broken", pricing="linear")


# ------------------------------------------------------------------ GPU probes, executor


class Probe:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    @hookimpl
    def p2pakash_probe_gpus(self) -> object:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


GPU = t.GPURecord(index=0, uuid="GPU-1", vendor="nvidia", model="t4", memory_bytes=16 * t.GI,
                  interface="pcie")


@pytest.mark.parametrize(("answer", "message"), [
    (RuntimeError("bus error"), "plugin 'probe' raised in p2pakash_probe_gpus: RuntimeError"),
    ((GPU,), "returned tuple"),
    ([GPU, "t4"], "expected a list of GPURecord"),
    ({"gpus": []}, "returned dict"),
])
def test_probe_nonsense_is_a_plugin_error(answer: object, message: str) -> None:
    manager = load(Probe(answer), "probe", pricing="linear")
    with pytest.raises(PluginError, match=message):
        manager.probe_gpus()


def test_probe_results_are_collected_and_deduplicated() -> None:
    other = t.GPURecord(index=1, uuid="GPU-2", vendor="nvidia", model="l4",
                        memory_bytes=24 * t.GI, interface="pcie")
    manager = PluginManager.load(config(), extra=[("a", Probe([GPU])), ("b", Probe([GPU, other]))])
    assert sorted(r.uuid for r in manager.probe_gpus()) == ["GPU-1", "GPU-2"]


def test_executor_first_answer_wins() -> None:
    class Runtime:
        def __init__(self, runtime: object) -> None:
            self.runtime = runtime

        @hookimpl
        def p2pakash_executor(self) -> object:
            return self.runtime

    manager = PluginManager.load(config(), extra=[("none", Runtime(None)),
                                                  ("fake", Runtime("fake-runtime"))])
    assert manager.executor() == "fake-runtime"
    assert PluginManager.load(config()).executor() is None


# ------------------------------------------------------------------ tenant side


def make_order() -> tuple[Order, crypto.PrivateKey]:
    tenant = crypto.PrivateKey.from_seed(bytes(range(32)))
    body = OrderBody(deployment=DeploymentID(owner=tenant.address, dseq=7), oseq=1,
                     groups=(OrderGroup.from_spec(cpu_group()),), manifest_hash=bytes(32),
                     deposit=5_000_000, expiry_ms=60_000)
    return sign_order(tenant, CHAIN, body), tenant


def make_bid(order: Order, seed: int, price: int) -> Bid:
    key = crypto.PrivateKey.from_seed(bytes([seed]) * 32)
    body = BidBody(order=order.order_id(1), order_digest=order.digest, provider=key.address,
                   price=price, resources=(), expiry_ms=60_000)
    return sign_bid(key, CHAIN, body)


def test_select_cheapest_ties_by_provider_address() -> None:
    order, _ = make_order()
    bids = [make_bid(order, seed, price) for seed, price in ((1, 300), (2, 200), (3, 200))]
    manager = PluginManager.load(config())
    chosen = manager.select_bid(order, bids)
    tied = sorted((b for b in bids if b.body.price == 200), key=lambda b: b.provider)
    assert chosen is tied[0]
    assert manager.select_bid(order, []) is None


def test_a_selection_plugin_overrides_and_is_checked() -> None:
    order, _ = make_order()
    bids = [make_bid(order, 1, 100), make_bid(order, 2, 200)]

    class Loyal:
        def __init__(self, pick: object) -> None:
            self.pick = pick

        @hookimpl
        def p2pakash_select_bid(self, bids: list[Bid]) -> object:
            return self.pick

    assert PluginManager.load(config(), extra=[("loyal", Loyal(bids[1]))]).select_bid(
        order, bids) is bids[1]
    stranger = make_bid(order, 9, 1)
    with pytest.raises(PluginError, match="plugin 'loyal': p2pakash_select_bid returned Bid"):
        PluginManager.load(config(), extra=[("loyal", Loyal(stranger))]).select_bid(order, bids)


def test_notifications_log_a_failing_plugin_and_call_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[str, object, str]] = []

    class Audit:
        @hookimpl
        def p2pakash_lease_closed(self, lease: object, reason: str) -> None:
            calls.append(("closed", lease, reason))

        @hookimpl
        def p2pakash_lease_created(self, lease: object) -> None:
            calls.append(("created", lease, ""))

    class Flaky:
        @hookimpl(tryfirst=True)
        def p2pakash_lease_closed(self, lease: object) -> None:
            raise OSError("disk full")

    manager = PluginManager.load(config(), extra=[("audit", Audit()), ("flaky", Flaky())])
    with caplog.at_level(logging.ERROR, logger="p2pakash.plugins.manager"):
        errors = manager.lease_closed("lease-1", "insufficient_funds")
    assert [str(e) for e in errors] == [
        "plugin 'flaky' raised in p2pakash_lease_closed: OSError: disk full"]
    assert "plugin 'flaky' raised in p2pakash_lease_closed" in caplog.text
    assert manager.lease_created("lease-2") == []
    assert calls == [("closed", "lease-1", "insufficient_funds"), ("created", "lease-2", "")]


# ------------------------------------------------------------------ entry points


def fake_distribution(root: Path, name: str, entry_points: str, module: str = "",
                      source: str = "") -> None:
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    if module:
        (root / f"{module}.py").write_text(textwrap.dedent(source))


def test_entry_points_are_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, "p2pakash_tenpercent", """\
        [p2pakash]
        tenpercent = p2pakash_tenpercent:TenPercent
        """, "p2pakash_tenpercent", """\
        from p2pakash.plugins import PriceQuote, hookimpl
        from p2pakash.plugins.pricing_linear import LinearPricing

        class TenPercent:
            def __init__(self):
                self.linear = LinearPricing()

            @hookimpl
            def p2pakash_configure(self, config):
                self.linear.p2pakash_configure(config)

            @hookimpl
            def p2pakash_bid_price(self, group, resources, context):
                quote = self.linear.price(group, resources)
                return PriceQuote(price_per_block=quote.price_per_block * 9 // 10)
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    rates = {"cpu": 10, "memory": 5, "endpoint": 1, "storage": {"ephemeral": 0.5}}
    cfg = config(pricing="tenpercent", linear=rates, entry_points=True)
    assert ask(PluginManager.load(cfg)) == t.PriceQuote(price_per_block=137)  # 153 × 0.9


def test_a_broken_entry_point_names_itself(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, "p2pakash_broken", """\
        [p2pakash]
        broken = p2pakash_no_such_module
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"plugin 'broken' \(entry point p2pakash_no_such_module"
                                          r" in group 'p2pakash'\) failed to load"):
        PluginManager.load(config(entry_points=True))


# ------------------------------------------------------------------ threads


async def test_concurrent_bid_decisions_from_worker_threads() -> None:
    manager = PluginManager.load(config())
    group = cpu_group(max_price=100_000)
    answers: list[object] = []

    async def decide() -> None:
        answers.append(await trio.to_thread.run_sync(
            manager.bid_price, group, allocated(group), context()))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(decide)
    assert len(answers) == 20 and len(set(answers)) == 1
    assert isinstance(answers[0], t.PriceQuote)


def test_order_id_text_keys_undercut() -> None:
    manager = PluginManager.load(config(pricing="undercut"))
    order_id = OrderID(owner="akash1x", dseq=1, gseq=1, oseq=1)
    manager.pricing.record_competing_bid(order_id, 10)
    assert manager.pricing.best_competing(str(order_id)) == 10 * t.ATTO
