"""The provider daemon: inventory, bid engine, the trio ProviderService and its wire messages.

``messages`` holds the direct provider <-> tenant messages; ``inventory`` and ``bidengine``
are pure cores; ``service`` is the trio driver wired into ``Node.run``.
"""
