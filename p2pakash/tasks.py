"""Small trio helpers shared by the node's services.

Rules: nothing here stores a nursery or starts a task of its own; callers start these
with ``nursery.start_soon`` and they end when cancelled.
"""

from __future__ import annotations

from typing import Any

import trio


async def drain(channel: trio.MemoryReceiveChannel[Any]) -> None:
    """Consume and drop everything from ``channel`` (a subscription kept only so the node
    relays a topic) until cancelled or the channel closes."""
    async with channel:
        async for _ in channel:
            pass


def sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one leaf of nested single-member exception groups (else the group itself), so a
    start-up failure such as a port in use can be reported in one line."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
