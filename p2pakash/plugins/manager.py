"""The plugin manager: loads plugins, checks them, and calls hooks defensively.

Rules and invariants:
* Load order: built-ins (the pricing plugin ``pricing`` names if it is a built-in, the
  probes in ``gpu_probes``, asked in that order; cheapest-bid selection), then the
  ``p2pakash`` entry-point group (an entry point may name a module, an object, or a class
  instantiated without arguments), then the modules in ``plugins`` (``"pkg.mod"`` or
  ``"pkg.mod:attr"``), then extras given by the caller. Names are unique; a clash is a
  PluginError naming both.
* Like pytest, a callable named ``p2pakash_*`` is a hook implementation even without the
  ``@hookimpl`` marker, so ``check_pending`` refuses a misspelt hook by plugin name.
  Hook wrappers are refused on the hooks the manager calls itself.
* The wrapper methods call each implementation themselves and turn an exception or a
  nonsense answer (wrong type, bad price, denomination that is not the order's, a GPU list
  that is not a list of GPURecord, a bid that was not offered) into a PluginError naming
  the plugin and the hook. Callers log it and carry on (the provider does not bid).
* ``bid_price`` asks exactly the plugin ``pricing`` names; a quote above the group's
  maximum becomes a Decline. Notifications log a failing plugin and still call the rest.
* Thread-safe after ``load()``: hooks may be called from several worker threads at once.
* The entry-point scan (every installed distribution's metadata) is remembered per group
  and ``sys.path``: a simulator loading 400 providers' managers scans once; a changed
  ``sys.path`` scans again. The entry points themselves are loaded per manager.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import pluggy

from p2pakash.errors import ConfigError, PluginError
from p2pakash.market.orders import Bid, Order
from p2pakash.market.sdl.groups import GroupSpec
from p2pakash.plugins import hookspecs
from p2pakash.plugins.gpu_nvml import NvmlProbe
from p2pakash.plugins.gpu_static import StaticProbe
from p2pakash.plugins.pricing_linear import LinearPricing
from p2pakash.plugins.pricing_script import ScriptPricing
from p2pakash.plugins.pricing_undercut import UndercutPricing
from p2pakash.plugins.select_cheapest import NAME as SELECT_NAME
from p2pakash.plugins.select_cheapest import CheapestBid
from p2pakash.plugins.types import (
    ATTO,
    BELOW_COST,
    NO_PRICE,
    AllocatedResources,
    Decline,
    GPURecord,
    PluginConfig,
    PriceQuote,
    ProviderContext,
    group_max_price,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT
PREFIX = "p2pakash_"
BUILTIN_PRICING: dict[str, type] = {"linear": LinearPricing, "akash-script": ScriptPricing,
                                    "undercut": UndercutPricing}
BUILTIN_PROBES: dict[str, type] = {"nvml": NvmlProbe, "static": StaticProbe}
CALLED_HOOKS = ("p2pakash_configure", "p2pakash_bid_price", "p2pakash_probe_gpus",
                "p2pakash_executor", "p2pakash_select_bid", "p2pakash_order_seen",
                "p2pakash_lease_created", "p2pakash_lease_closed")


class _Pluggy(pluggy.PluginManager):
    """pluggy, plus pytest's rule: an unmarked ``p2pakash_*`` routine is an implementation."""

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith(PREFIX):
            try:
                method = getattr(plugin, name)
            except AttributeError:  # pragma: no cover - dir() listed it
                return None
            if inspect.isroutine(method):
                return {"wrapper": False, "hookwrapper": False, "optionalhook": False,
                        "tryfirst": False, "trylast": False, "specname": None}
        return opts


_SCANS: dict[tuple[str, tuple[str, ...]], tuple[importlib.metadata.EntryPoint, ...]] = {}


def entry_points(group: str) -> tuple[importlib.metadata.EntryPoint, ...]:
    """The entry points of ``group`` (remembered per group and ``sys.path``)."""
    key = (group, tuple(sys.path))
    found = _SCANS.get(key)
    if found is None:
        found = _SCANS[key] = tuple(importlib.metadata.entry_points(group=group))
    return found


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


class PluginManager:
    """p2pakash's plugins. Build with ``PluginManager.load(config)`` or register by hand
    and call ``check_pending()`` and ``configure()`` yourself."""

    def __init__(self, config: PluginConfig | None = None) -> None:
        self.config = config or PluginConfig()
        self.pm = _Pluggy(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.hook = self.pm.hook

    # ------------------------------------------------------------ loading

    @classmethod
    def load(cls, config: PluginConfig | None = None,
             extra: Iterable[tuple[str, object]] = ()) -> PluginManager:
        """Everything the config asks for, checked and configured."""
        manager = cls(config)
        manager.load_builtins()
        if manager.config.entry_points:
            manager.load_entry_points()
        manager.load_modules(manager.config.plugins)
        for name, plugin in extra:
            manager.register(plugin, name)
        manager.check_pending()
        manager.check_pricing()
        manager.configure()
        return manager

    def register(self, plugin: object, name: str) -> None:
        if self.pm.has_plugin(name):
            raise PluginError(f"plugin name {name!r} is taken by {self.pm.get_plugin(name)!r}; "
                              f"cannot register {plugin!r} under it")
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise PluginError(f"plugin {name!r}: {text}") from None

    def load_builtins(self) -> None:
        pricing = BUILTIN_PRICING.get(self.config.pricing)
        if pricing is not None:
            self.register(pricing(), self.config.pricing)
        for probe in self.config.gpu_probes:
            if probe not in BUILTIN_PROBES:
                raise ConfigError(f"{self.config.source}: gpu_probes: unknown probe {probe!r} "
                                  f"(built-ins: {', '.join(BUILTIN_PROBES)})")
        for probe in reversed(self.config.gpu_probes):  # pluggy calls the last one first
            self.register(BUILTIN_PROBES[probe](), probe)
        self.register(CheapestBid(), SELECT_NAME)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        for ep in entry_points(group):
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(f"plugin {ep.name!r} (entry point {ep.value} in group "
                                  f"{group!r}) failed to load: {type(exc).__name__}: "
                                  f"{exc}") from exc
            self.register(self._instance(plugin, ep.name), ep.name)

    def load_modules(self, names: Iterable[str]) -> None:
        for spec in names:
            module_name, _, attr = spec.partition(":")
            try:
                plugin: Any = importlib.import_module(module_name)
                for part in filter(None, attr.split(".")):
                    plugin = getattr(plugin, part)
            except Exception as exc:
                raise PluginError(f"plugin {spec!r} (from {self.config.source} plugins) "
                                  f"failed to load: {type(exc).__name__}: {exc}") from exc
            self.register(self._instance(plugin, spec), spec)

    @staticmethod
    def _instance(plugin: object, name: str) -> object:
        if not inspect.isclass(plugin):
            return plugin
        try:
            return plugin()
        except Exception as exc:
            raise PluginError(f"plugin {name!r}: {plugin.__name__}() failed: "
                              f"{type(exc).__name__}: {exc}") from exc

    def check_pending(self) -> None:
        """Refuse implementations of hooks that do not exist, and wrappers on called hooks."""
        for hook_name, caller in vars(self.pm.hook).items():
            if hook_name.startswith("_") or not isinstance(caller, pluggy.HookCaller):
                continue
            for impl in caller.get_hookimpls():
                if not caller.has_spec() and not impl.optionalhook:
                    raise PluginError(f"plugin {impl.plugin_name!r}: unknown hook "
                                      f"{hook_name!r} (known: {', '.join(CALLED_HOOKS)})")
                if hook_name in CALLED_HOOKS and (impl.hookwrapper or impl.wrapper):
                    raise PluginError(f"plugin {impl.plugin_name!r}: hook wrappers are not "
                                      f"supported on {hook_name}")

    def check_pricing(self) -> None:
        name = self.config.pricing
        if not self.pm.has_plugin(name):
            raise ConfigError(f"{self.config.source}: pricing: no plugin named {name!r} "
                              f"(built-ins: {', '.join(BUILTIN_PRICING)}; loaded: "
                              f"{', '.join(self.names())})")
        if self._impl("p2pakash_bid_price", name) is None:
            raise ConfigError(f"{self.config.source}: pricing: plugin {name!r} does not "
                              "implement p2pakash_bid_price")

    def configure(self) -> None:
        """``p2pakash_configure`` on every plugin; a ConfigError passes through as is."""
        for impl in self._impls("p2pakash_configure"):
            try:
                self._call(impl, {"config": self.config})
            except ConfigError:
                raise
            except Exception as exc:
                raise self._error(impl, "p2pakash_configure", exc) from exc

    # ------------------------------------------------------------ queries

    def names(self) -> list[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin())

    def get_plugin(self, name: str) -> Any:
        return self.pm.get_plugin(name)

    @property
    def pricing(self) -> Any:
        """The plugin object that answers ``p2pakash_bid_price``."""
        return self.pm.get_plugin(self.config.pricing)

    # ------------------------------------------------------------ hook calls

    def bid_price(self, group: GroupSpec, resources: AllocatedResources,
                  context: ProviderContext) -> PriceQuote | Decline:
        """The selected pricing plugin's answer, checked; PluginError if it misbehaves."""
        hook, name = "p2pakash_bid_price", self.config.pricing
        impl = self._impl(hook, name)
        if impl is None:
            raise PluginError(f"plugin {name!r}: does not implement {hook}")
        try:
            answer = self._call(impl, {"group": group, "resources": resources,
                                       "context": context})
        except Exception as exc:
            raise self._error(impl, hook, exc) from exc
        limit = group_max_price(group)
        if answer is None:
            return Decline(reason_code=NO_PRICE, reason=f"pricing plugin {name!r} gave no price")
        if isinstance(answer, Decline):
            if not (isinstance(answer.reason_code, str) and isinstance(answer.reason, str)):
                raise PluginError(f"plugin {name!r}: {hook} returned a Decline whose "
                                  f"reason_code and reason are not strings: {answer!r}")
            return answer
        if not isinstance(answer, PriceQuote):
            raise PluginError(f"plugin {name!r}: {hook} returned {_describe(answer)}; "
                              "expected PriceQuote, Decline or None")
        price = answer.price_per_block
        if type(price) is not int or price <= 0:
            raise PluginError(f"plugin {name!r}: {hook} quoted {price!r}; "
                              "price_per_block must be a positive int")
        if answer.denom != limit.denom:
            raise PluginError(f"plugin {name!r}: {hook} quoted in {answer.denom!r} but the "
                              f"order is priced in {limit.denom!r}")
        if price * ATTO > limit.amount_atto:
            return Decline(reason_code=BELOW_COST,
                           reason=f"price too high, not bidding: {price}{limit.denom} > "
                                  f"the group's maximum {limit.amount}{limit.denom}")
        return answer

    def probe_gpus(self) -> list[GPURecord]:
        """All probes' GPUs; a GPU UUID seen twice is kept once (first probe wins)."""
        hook = "p2pakash_probe_gpus"
        records: list[GPURecord] = []
        seen: set[str] = set()
        for impl in self._impls(hook):
            try:
                answer = self._call(impl, {"config": self.config})
            except Exception as exc:
                raise self._error(impl, hook, exc) from exc
            if answer is None:
                continue
            if not isinstance(answer, list) or not all(isinstance(r, GPURecord) for r in answer):
                raise PluginError(f"plugin {impl.plugin_name!r}: {hook} returned "
                                  f"{_describe(answer)}; expected a list of GPURecord")
            for record in answer:
                if record.uuid in seen:
                    log.warning("GPU %s reported by probe %r again; ignored", record.uuid,
                                impl.plugin_name)
                    continue
                seen.add(record.uuid)
                records.append(record)
        return records

    def executor(self) -> Any:
        """The first container runtime a plugin offers, or None."""
        return self._first("p2pakash_executor", {"config": self.config})

    def select_bid(self, order: Order, bids: Sequence[Bid]) -> Bid | None:
        """The bid to accept (one of ``bids``), or None."""
        chosen = self._first("p2pakash_select_bid", {"order": order, "bids": bids},
                             check=lambda answer: any(answer is b or answer == b for b in bids),
                             expected="one of the offered bids")
        return chosen  # type: ignore[no-any-return]

    def order_seen(self, order: Order) -> list[PluginError]:
        return self._notify("p2pakash_order_seen", {"order": order})

    def lease_created(self, lease: object) -> list[PluginError]:
        return self._notify("p2pakash_lease_created", {"lease": lease})

    def lease_closed(self, lease: object, reason: str) -> list[PluginError]:
        return self._notify("p2pakash_lease_closed", {"lease": lease, "reason": reason})

    # ------------------------------------------------------------ internals

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        """Implementations in pluggy's call order (tryfirst first, trylast last)."""
        return list(reversed(getattr(self.pm.hook, hook).get_hookimpls()))

    def _impl(self, hook: str, plugin_name: str) -> pluggy.HookImpl | None:
        return next((i for i in self._impls(hook) if i.plugin_name == plugin_name), None)

    @staticmethod
    def _call(impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> Any:
        return impl.function(*[kwargs[arg] for arg in impl.argnames])

    @staticmethod
    def _error(impl: pluggy.HookImpl, hook: str, exc: BaseException) -> PluginError:
        return PluginError(f"plugin {impl.plugin_name!r} raised in {hook}: "
                           f"{type(exc).__name__}: {exc}")

    def _first(self, hook: str, kwargs: dict[str, Any], check: Any = None,
               expected: str = "") -> Any:
        for impl in self._impls(hook):
            try:
                answer = self._call(impl, kwargs)
            except Exception as exc:
                raise self._error(impl, hook, exc) from exc
            if answer is None:
                continue
            if check is not None and not check(answer):
                raise PluginError(f"plugin {impl.plugin_name!r}: {hook} returned "
                                  f"{_describe(answer)}; expected {expected}")
            return answer
        return None

    def _notify(self, hook: str, kwargs: dict[str, Any]) -> list[PluginError]:
        errors = []
        for impl in self._impls(hook):
            try:
                self._call(impl, kwargs)
            except Exception as exc:
                error = self._error(impl, hook, exc)
                log.error("%s", error)
                errors.append(error)
        return errors
