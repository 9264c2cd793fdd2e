"""p2pakash: a decentralized GPU and compute marketplace modelled on the Akash Network."""

from __future__ import annotations

__version__ = "0.1.0"
