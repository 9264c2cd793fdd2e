"""Provider plugins (pluggy): hookspecs, the manager, built-in pricing, GPU probes.

Rules: every hook is declared in ``hookspecs``; built-in behaviour ships as plugins
registered by ``PluginManager.load``; third-party plugins come from the ``p2pakash``
entry-point group and the ``plugins`` list of ``[provider]``. See docs/pricing-plugins.md.
"""

from __future__ import annotations

from p2pakash.plugins.hookspecs import hookimpl, hookspec
from p2pakash.plugins.manager import PluginManager
from p2pakash.plugins.types import (
    AllocatedResources,
    Decline,
    GPURecord,
    PluginConfig,
    PriceQuote,
    ProviderContext,
)

__all__ = [
    "AllocatedResources",
    "Decline",
    "GPURecord",
    "PluginConfig",
    "PluginManager",
    "PriceQuote",
    "ProviderContext",
    "hookimpl",
    "hookspec",
]
