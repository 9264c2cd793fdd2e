"""The market: SDL parsing (``p2pakash.market.sdl``), orders, bids and leases."""
