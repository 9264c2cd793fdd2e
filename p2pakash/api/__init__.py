"""The node's HTTP JSON API: the ASGI app, the hypercorn service and the tx index.

See ``docs/api.md`` for the endpoints; ``server.ApiService`` is what the node starts.
"""

from __future__ import annotations

from p2pakash.api.app import ApiApp, ChainView, EventHub, NodeInfo
from p2pakash.api.server import ApiService, ChainSource, TxGossip
from p2pakash.api.txindex import TxIndex, TxRecord

__all__ = ["ApiApp", "ApiService", "ChainSource", "ChainView", "EventHub", "NodeInfo",
           "TxGossip", "TxIndex", "TxRecord"]
