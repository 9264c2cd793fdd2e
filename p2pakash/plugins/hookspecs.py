"""Every hook a p2pakash plugin can implement (pytest/pluggy style).

Rules and invariants:
* All hook names start with ``p2pakash_``; they are called with keyword arguments only, and
  an implementation may accept any subset of a hook's arguments.
* Hooks are synchronous. The provider calls the slow ones (``p2pakash_bid_price``,
  ``p2pakash_probe_gpus``) from worker threads (``trio.to_thread``), so an implementation
  must be thread-safe and may block (run a process, query NVML) but must return in bounded
  time.
* ``firstresult`` hooks stop at the first non-None answer. The provider calls
  ``p2pakash_bid_price`` on the one plugin that ``pricing = "<name>"`` selects.
* Notifications return nothing; an exception in one is logged and the others still run.
* A plugin reads its own settings from ``[provider.<plugin name>]`` in ``p2pakash_configure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pluggy

from p2pakash.market.orders import Bid, Order
from p2pakash.market.sdl.groups import GroupSpec
from p2pakash.plugins.types import (
    AllocatedResources,
    Decline,
    GPURecord,
    PluginConfig,
    PriceQuote,
    ProviderContext,
)

PROJECT = "p2pakash"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def p2pakash_configure(config: PluginConfig) -> None:
    """Called once after all plugins are registered, before any other hook.

    Read ``config.section("<your name>")`` here and raise ``ConfigError`` naming the key
    when a setting is wrong; the node refuses to start.
    """


@hookspec(firstresult=True)
def p2pakash_bid_price(group: GroupSpec, resources: AllocatedResources,
                       context: ProviderContext) -> PriceQuote | Decline | None:
    """The price per block to bid for ``group`` (whole group, all replicas), or a Decline.

    ``resources`` holds the units as reserved (concrete GPU model); ``context`` names the
    tenant (``owner``), this provider and the order. Return a ``PriceQuote`` with a positive
    int ``price_per_block`` in the group's denomination, a ``Decline`` with a reason, or
    None for "no opinion" (the provider then does not bid). Raising is a plugin bug: the
    provider logs a PluginError naming the plugin and does not bid.
    """


@hookspec
def p2pakash_probe_gpus(config: PluginConfig) -> list[GPURecord]:
    """The GPUs this plugin sees on the host (results of all probes are concatenated)."""
    raise NotImplementedError  # pragma: no cover - a spec has no body


@hookspec(firstresult=True)
def p2pakash_executor(config: PluginConfig) -> Any:
    """The container runtime to run leases with (first plugin that returns one wins)."""


@hookspec(firstresult=True)
def p2pakash_select_bid(order: Order, bids: Sequence[Bid]) -> Bid | None:
    """Tenant side: the bid to accept among ``bids`` (all for one group of ``order``), or None.

    Must return one of ``bids``. The built-in (``select-cheapest``, trylast) picks the lowest
    ``bid.body.price``, ties broken by the lower provider address.
    """


@hookspec
def p2pakash_order_seen(order: Order) -> None:
    """An open order reached this node (before any matching)."""


@hookspec
def p2pakash_lease_created(lease: Any) -> None:
    """A lease involving this node was created on chain (the ledger's lease record)."""


@hookspec
def p2pakash_lease_closed(lease: Any, reason: str) -> None:
    """A lease involving this node was closed (``reason`` as recorded on chain)."""
