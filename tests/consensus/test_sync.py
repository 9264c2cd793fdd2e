"""Block sync: a late node fetches and verifies every block; a lying peer is banned."""

from __future__ import annotations

import logging

import attrs
import pytest
import trio

from p2pakash.chain import ChainService
from p2pakash.consensus.types import Block, Commit, build_block
from p2pakash.errors import RemoteProtocolError
from p2pakash.ledger import Send, sign_tx
from tests.integration.test_chain_memory import (
    CHAIN,
    assert_same_chain,
    chain_net,
    key_of,
    wait_for,
)

FORGED_TX = sign_tx(key_of(0), CHAIN, sequence=0,
                    msgs=(Send(to=key_of(1).address, amount=1),)).encode()


class LyingChain(ChainService):
    """Test-only byzantine block server: answers block requests with a forged block."""

    def stored(self, height: int) -> tuple[Block | None, Commit | None]:
        block, commit = super().stored(height)
        if block is None or height < 2:
            return block, commit
        h = block.header
        forged = build_block(chain_id=h.chain_id, height=h.height, time_ms=h.time_ms,
                             last_block_hash=h.last_block_hash,
                             validators_hash=h.validators_hash,
                             next_validators_hash=h.next_validators_hash, app_hash=h.app_hash,
                             proposer=h.proposer, txs=(FORGED_TX,), evidence=block.evidence,
                             last_commit=block.last_commit)
        return forged, commit


async def test_lying_peer_is_banned_and_sync_completes(autojump_clock: trio.abc.Clock,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="p2pakash.consensus.sync")
    async with chain_net(5, validators=4, start=0) as net:
        for i in range(3):
            await net.start(i)
        await net.start(3, chain_cls=LyingChain)  # an honest validator but a lying server
        await wait_for(lambda: min(c.height for c in net.running()) >= 12)
        late = await net.start(4, validator=False)
        assert late.gossip is not None
        target = max(c.height for c in net.running())
        await wait_for(lambda: late.c.height >= target, limit=60)
        assert late.gossip.stats.bans >= 1
        assert "bad block" in caplog.text and "commit for height" in caplog.text
        liar = net.members[3].key.node_id
        assert late.c.sync.peer_heights.get(liar) is None or liar not in late.gossip.connected
        assert_same_chain(net.running(), target)


async def test_synced_block_needs_a_commit_for_it(autojump_clock: trio.abc.Clock) -> None:
    async with chain_net(4) as net:
        await wait_for(lambda: min(c.height for c in net.running()) >= 3)
        src = net.members[0].c
        fresh = net.members[1].c.__class__(
            gossip=net.members[1].c.gossip, key=None, genesis=net.genesis, timeouts=src.timeouts)
        b1, c1, c2 = src.block(1), src.commit(1), src.commit(2)
        assert b1 is not None and c1 is not None and c2 is not None
        with pytest.raises(RemoteProtocolError, match="another block"):
            fresh.apply_synced(b1, c2)  # a valid commit, but of another height/block
        few = attrs.evolve(c1, signatures=c1.signatures[:1])
        with pytest.raises(RemoteProtocolError, match="not more than 2/3"):
            fresh.apply_synced(b1, few)
        b2 = src.block(2)
        assert b2 is not None
        with pytest.raises(RemoteProtocolError, match="does not follow"):
            fresh.apply_synced(b2, c2)
        fresh.apply_synced(b1, c1)
        assert fresh.height == 1 and fresh.latest_block_hash == b1.hash()
        fresh.close()
