"""The market: SDL parsing (``p2pakash.market.sdl``), orders, bids and leases.

Importing this package registers the market's ledger messages and end blocker
(``ledger_market``), so every node that imports it runs the same state machine.
"""

from __future__ import annotations

from p2pakash.market import ledger_market as ledger_market  # registers the handlers
