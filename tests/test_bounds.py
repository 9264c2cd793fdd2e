"""Bounded resources: collections a node keeps for its whole life stay bounded when driven
past their limits (docs/reliability.md, "Bounded resources and the 24-hour soak")."""

from __future__ import annotations

import trio

from tests.integration.test_chain_memory import chain_net, wait_for


async def test_chain_forgets_decoded_consensus_messages_of_its_own(
        autojump_clock: trio.abc.Clock) -> None:
    """The consensus topic validator keeps each decoded proposal or vote until the message is
    delivered; the node's own messages were delivered but never taken out, so the table grew
    by a few entries per height up to INBOX_SIZE (10,000 messages per validator)."""
    async with chain_net(4) as net:
        await wait_for(lambda: min(c.height for c in net.running()) >= 40, limit=300)
        for chain in net.running():
            assert len(chain._decoded) < 20, (chain.name, len(chain._decoded))
