"""Values passed to and returned by the ``p2pakash_*`` hooks.

Rules and invariants:
* All values are frozen attrs classes; hooks never receive or return mutable state.
* ``PriceQuote.price_per_block`` is a positive ``int`` in the micro-denomination of the
  order (``uakt`` per block for the whole group, all units and replicas included); a
  fractional price is always rounded *up* before it becomes a quote.
* ``Decline`` carries a short machine ``reason_code`` (snake_case) and one human line.
* ``AllocatedResources`` is the group's units after reservation (GPU attributes rewritten
  to the concrete model the provider would give); pricing reads it, never the raw group.
* Orders and bids are ``p2pakash.market.orders.Order``/``Bid``; ``ProviderContext.order_id``
  is ``str(OrderID)`` ("owner/dseq/gseq/oseq").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from p2pakash.errors import ConfigError
from p2pakash.market.sdl.groups import GroupSpec, ResourceUnit
from p2pakash.market.sdl.resources import EndpointKind, Price

GI = 1024**3
ATTO = 10**18

# Decline reason codes used by the built-ins (plugins may add their own).
BELOW_COST = "below_cost"
BELOW_FLOOR = "below_floor"
NO_PRICE = "no_price"
UNPRICED_STORAGE = "unpriced_storage"
WRONG_DENOM = "wrong_denom"
SCRIPT_FAILED = "script_failed"
SCRIPT_TIMEOUT = "script_timeout"
NO_AMOUNT = "no_amount"
INVALID_QUANTITY = "invalid_quantity"
ZERO_BID = "zero_bid"


def _positive_int(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not int or value <= 0:
        raise ValueError(f"{type(inst).__name__}.{attribute.name} must be a positive int, "
                         f"got {value!r}")


def _non_negative_int(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{type(inst).__name__}.{attribute.name} must be an int >= 0, "
                         f"got {value!r}")


def _optional_non_negative(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _non_negative_int(inst, attribute, value)


def ram_text(memory_bytes: int) -> str:
    """Akash's ``ram`` attribute for a memory size that is a whole number of GiB: ``80Gi``."""
    return f"{memory_bytes // GI}Gi"


@attrs.frozen(kw_only=True)
class GPURecord:
    """One physical GPU as a probe sees it.

    ``model`` is Akash's model key (``h100``), ``memory_bytes`` the marketed size in whole
    GiB (80 GiB for an "80GB" card whose NVML total is a little less), ``interface`` is
    ``pcie`` or ``sxm``. ``utilisation`` is percent busy and ``ecc_errors`` the volatile
    uncorrected ECC count; both are None where the device cannot report them.
    """

    index: int = attrs.field(validator=_non_negative_int)
    uuid: str
    vendor: str
    model: str
    memory_bytes: int = attrs.field(validator=_non_negative_int)
    interface: str
    driver: str = ""
    utilisation: int | None = attrs.field(default=None, validator=_optional_non_negative)
    ecc_errors: int | None = attrs.field(default=None, validator=_optional_non_negative)
    name: str = ""

    @property
    def ram(self) -> str:
        return ram_text(self.memory_bytes)

    @property
    def attribute_key(self) -> str:
        """The SDL/provider capability key ``vendor/nvidia/model/h100/ram/80Gi/interface/sxm``."""
        return (f"vendor/{self.vendor}/model/{self.model}/ram/{self.ram}"
                f"/interface/{self.interface}")


@attrs.frozen(kw_only=True)
class PriceQuote:
    """A bid price for the whole group, per block, in the order's denomination."""

    price_per_block: int = attrs.field(validator=_positive_int)
    denom: str = "uakt"

    @property
    def price(self) -> Price:
        return Price(denom=self.denom, amount_atto=self.price_per_block * ATTO)


@attrs.frozen(kw_only=True)
class Decline:
    """No bid: ``reason_code`` is a snake_case tag, ``reason`` one line for the log."""

    reason_code: str
    reason: str


PriceAnswer = PriceQuote | Decline


@attrs.frozen(kw_only=True)
class ProviderContext:
    """Who asks and for what: the tenant (``owner``, Akash's AKASH_OWNER), this provider's
    address, the order's ID as text and the chain height the decision is made at."""

    owner: str
    provider: str = ""
    order_id: str = ""
    height: int = 0


@attrs.frozen(kw_only=True)
class AllocatedResources:
    """The group's units after reservation (same shape as ``GroupSpec.resources``)."""

    units: tuple[ResourceUnit, ...]

    @classmethod
    def from_group(cls, group: GroupSpec) -> AllocatedResources:
        """The units as ordered (no GPU attribute rewritten): what is priced when the
        reservation picked no concrete model."""
        return cls(units=group.resources)


def group_max_price(group: GroupSpec) -> Price:
    """The tenant's maximum for the whole group per block: Σ unit price × count
    (Akash's ``GroupSpec.Price()``); denomination of the first unit."""
    denom = group.resources[0].price.denom if group.resources else "uakt"
    total = sum(unit.price.amount_atto * unit.count for unit in group.resources)
    return Price(denom=denom, amount_atto=total)


def leased_ips(unit: ResourceUnit) -> int:
    return sum(1 for e in unit.resources.endpoints if e.kind == EndpointKind.LEASED_IP)


def ceil_atto(amount_atto: int) -> int:
    """An 18-decimal amount rounded up to a whole micro-denomination."""
    return -(-amount_atto // ATTO)


@attrs.frozen(kw_only=True)
class PluginConfig:
    """The ``[provider]`` table as plugins see it.

    ``pricing`` names the one plugin that answers ``p2pakash_bid_price``; ``plugins`` lists
    extra modules to import and register; ``gpu_probes`` the built-in probes to register;
    ``entry_points`` whether the ``p2pakash`` entry-point group is loaded; ``settings`` is
    the whole raw table. A plugin named N reads its own settings from ``[provider.N]``
    (``section(N)``), e.g. ``[provider.linear]``, ``[provider.akash-script]``.
    """

    pricing: str = "linear"
    plugins: tuple[str, ...] = ()
    gpu_probes: tuple[str, ...] = ("nvml", "static")
    entry_points: bool = True
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    source: str = "[provider]"

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, source: str = "[provider]"
                   ) -> PluginConfig:
        """Read ``pricing``, ``plugins``, ``gpu_probes``, ``entry_points`` from a TOML table."""
        pricing = table.get("pricing", "linear")
        if not isinstance(pricing, str) or not pricing:
            raise ConfigError(f"{source}: pricing: expected a plugin name, got {pricing!r}")
        plugins = _str_list(table.get("plugins", []), f"{source}: plugins")
        probes = _str_list(table.get("gpu_probes", ["nvml", "static"]), f"{source}: gpu_probes")
        entry_points = table.get("entry_points", True)
        if not isinstance(entry_points, bool):
            raise ConfigError(f"{source}: entry_points: expected true or false, "
                              f"got {entry_points!r}")
        return cls(pricing=pricing, plugins=plugins, gpu_probes=probes,
                   entry_points=entry_points, settings=dict(table), source=source)

    def section(self, *path: str) -> Mapping[str, Any]:
        """The sub-table at ``path`` (e.g. ``section("linear", "gpu")``), {} if absent."""
        node: Any = self.settings
        for i, key in enumerate(path):
            node = node.get(key, {}) if isinstance(node, Mapping) else {}
            if not isinstance(node, Mapping):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"{self.source}: {where}: expected a table, got {node!r}")
        table: Mapping[str, Any] = node
        return table

    def where(self, *path: str) -> str:
        return f"{self.source}: {'.'.join(path)}"


def _str_list(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    return tuple(value)
