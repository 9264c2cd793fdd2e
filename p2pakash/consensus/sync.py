"""Block sync: fetch committed blocks from peers, verify each with its commit, apply them.

Rules and invariants (CometBFT blocksync, reference §A8):
* Peers tell their latest committed height with ``Status`` (asked with ``StatusRequest``,
  also sent unprompted by the chain's status loop through ``announce``: each tick, to
  every connected peer that has not heard our current height - a new connection, or our
  height changed - and to every peer each ``keepalive_every`` ticks, which repairs a lost
  Status; an idle network sends ~1/``keepalive_every`` of the Status it used to).
  ``catch_up`` runs while consensus is stopped: it fetches heights ``h + 1 ..`` the best
  known peer height, at most ``window`` requests in flight, each from a peer that claims
  the height (spread by height).
* Blocks are applied strictly in order. A block is applied only after the target checks
  its header against the state (chain ID, height, last block hash, validators hashes,
  app hash, body hashes, last commit) and verifies its carried commit (more than 2/3 of
  the power of the set that signs that height); the following block's ``last_commit`` is
  checked again when that block is applied.
* A peer that sends a block or commit that fails verification is banned (``gossip.ban``);
  a peer that does not answer in ``request_timeout`` or has no block to give loses its
  claimed height (it is asked again later) — slow is not malicious.
* ``catch_up`` returns when no connected peer claims a height above ours (after one round
  of status requests); every loop is bounded. ``peer_heights`` forgets peers that are no
  longer connected once it holds more than twice the connected peers plus 16.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from p2pakash.consensus.messages import BlockRequest, BlockResponse, Status, StatusRequest
from p2pakash.consensus.types import Block, Commit
from p2pakash.crypto import NodeID
from p2pakash.errors import RemoteProtocolError
from p2pakash.gossip.service import GossipService

log = logging.getLogger(__name__)


class SyncTarget(Protocol):
    def committed_height(self) -> int: ...

    def base_height(self) -> int: ...

    def stored(self, height: int) -> tuple[Block | None, Commit | None]: ...

    def apply_synced(self, block: Block, commit: Commit) -> None: ...


class BlockSync:
    def __init__(self, gossip: GossipService, target: SyncTarget, *, window: int = 16,
                 request_timeout: float = 2.0, status_wait: float = 0.2,
                 name: str = "", genesis_hash: bytes = b"", keepalive_every: int = 6) -> None:
        if keepalive_every < 1:
            raise ValueError(f"{name}: keepalive_every must be at least 1, got {keepalive_every}")
        self.gossip = gossip
        self.keepalive_every = keepalive_every
        self._told: dict[NodeID, tuple[int, int]] = {}  # peer -> (session, height told)
        self._ticks = 0
        self.statuses_sent = 0
        self.genesis_hash = genesis_hash
        self.target = target
        self.window = window
        self.request_timeout = request_timeout
        self.status_wait = status_wait
        self.name = name
        self.peer_heights: dict[NodeID, int] = {}
        self.applied = 0
        self._inflight: dict[int, tuple[NodeID, float]] = {}
        self._responses: dict[int, tuple[NodeID, BlockResponse]] = {}
        self._arrived = trio.Event()

    def register(self) -> None:
        self.gossip.register(StatusRequest, self._on_status_request)
        self.gossip.register(Status, self._on_status)
        self.gossip.register(BlockRequest, self._on_block_request)
        self.gossip.register(BlockResponse, self._on_block_response)

    # ------------------------------------------------------------ handlers (sync)

    def status(self) -> Status:
        height = self.target.committed_height()
        return Status(height=height, base=self.target.base_height(),
                      genesis=self.genesis_hash)

    def announce(self) -> int:
        """One tick of the status loop (see the module rules); returns the Status sent."""
        self._ticks += 1
        keepalive = self._ticks % self.keepalive_every == 0
        status = self.status()
        gossip, told, sent = self.gossip, self._told, 0
        fresh: dict[NodeID, tuple[int, int]] = {}
        for peer in sorted(gossip.connected):
            session = gossip.session(peer)
            if session is None:
                continue
            mark = (session, status.height)
            if keepalive or told.get(peer) != mark:
                if not gossip.send_to(peer, status):
                    continue  # not told: the next tick tries again
                sent += 1
            fresh[peer] = mark
        self._told = fresh
        self.statuses_sent += sent
        return sent

    def _on_status_request(self, peer: NodeID, item: object) -> None:
        self.gossip.send_to(peer, self.status())

    def _on_status(self, peer: NodeID, item: object) -> None:
        assert isinstance(item, Status)
        if item.height < 0 or item.base < 0 or item.base > item.height:
            raise RemoteProtocolError(f"bad status: height {item.height}, base {item.base}")
        if self.genesis_hash and item.genesis != self.genesis_hash:
            log.error("%s: peer %s runs a different genesis (hash %s, ours %s): check that"
                      " this node's genesis.json is the network's", self.name, peer[:12],
                      item.genesis.hex()[:16] or "none", self.genesis_hash.hex()[:16])
            raise RemoteProtocolError("different genesis")
        self.peer_heights[peer] = item.height
        connected = self.gossip.connected
        if len(self.peer_heights) > 2 * len(connected) + 16:  # forget departed peers
            self.peer_heights = {p: h for p, h in self.peer_heights.items() if p in connected}
        self._arrived.set()

    def _on_block_request(self, peer: NodeID, item: object) -> None:
        assert isinstance(item, BlockRequest)
        block, commit = self.target.stored(item.height)
        self.gossip.send_to(peer, BlockResponse(height=item.height, block=block, commit=commit))

    def _on_block_response(self, peer: NodeID, item: object) -> None:
        assert isinstance(item, BlockResponse)
        asked = self._inflight.get(item.height)
        if asked is None or asked[0] != peer:
            return  # late or unasked: ignore
        del self._inflight[item.height]
        self._responses[item.height] = (peer, item)
        self._arrived.set()

    def max_peer_height(self) -> int:
        connected = self.gossip.connected
        return max((h for p, h in self.peer_heights.items() if p in connected), default=0)

    # ------------------------------------------------------------ catching up

    async def _wait(self, until: float) -> None:
        with trio.move_on_at(until):
            await self._arrived.wait()
        self._arrived = trio.Event()

    async def request_statuses(self) -> None:
        peers = sorted(self.gossip.connected)
        for peer in peers:
            self.gossip.send_to(peer, StatusRequest())
        deadline = trio.current_time() + self.status_wait
        while trio.current_time() < deadline:
            if all(p in self.peer_heights for p in peers):
                break
            await self._wait(deadline)

    async def catch_up(self) -> int:
        """Fetch and apply blocks until no peer claims more; return how many were applied."""
        await self.request_statuses()
        applied = 0
        self._inflight.clear()
        self._responses.clear()
        while True:
            ours = self.target.committed_height()
            best = self.max_peer_height()
            if best <= ours:
                if applied:
                    log.info("%s block sync done at height %d (%d blocks)", self.name, ours,
                             applied)
                return applied
            self._request(ours + 1, best)
            next_h = ours + 1
            asked = self._inflight.get(next_h)
            if next_h not in self._responses:
                until = asked[1] if asked else trio.current_time() + self.request_timeout
                await self._wait(until)
            if next_h in self._responses:
                peer, resp = self._responses.pop(next_h)
                if self._apply(peer, resp):
                    applied += 1
                    self.applied += 1
            elif asked is not None and trio.current_time() >= asked[1]:
                self._inflight.pop(next_h, None)
                log.info("%s block %d: no answer from %s", self.name, next_h, asked[0][:12])
                self.peer_heights.pop(asked[0], None)
                if self.max_peer_height() <= ours:
                    await self.request_statuses()
            await trio.lowlevel.checkpoint()

    def _request(self, start: int, best: int) -> None:
        connected = self.gossip.connected
        for h in range(start, min(best, start + self.window - 1) + 1):
            if h in self._inflight or h in self._responses:
                continue
            holders = sorted(p for p, ph in self.peer_heights.items()
                             if ph >= h and p in connected)
            if not holders:
                break
            peer = holders[h % len(holders)]
            if self.gossip.send_to(peer, BlockRequest(height=h)):
                self._inflight[h] = (peer, trio.current_time() + self.request_timeout)

    def _apply(self, peer: NodeID, resp: BlockResponse) -> bool:
        if resp.block is None or resp.commit is None:
            self.peer_heights.pop(peer, None)
            return False
        try:
            if resp.block.height != resp.height:
                raise RemoteProtocolError(f"asked for block {resp.height}, got "
                                          f"{resp.block.height}")
            self.target.apply_synced(resp.block, resp.commit)
        except RemoteProtocolError as exc:
            log.warning("%s bad block %d from %s: %s", self.name, resp.height, peer[:12], exc)
            self.peer_heights.pop(peer, None)
            self._inflight = {h: v for h, v in self._inflight.items() if v[0] != peer}
            self._responses = {h: v for h, v in self._responses.items() if v[0] != peer}
            self.gossip.ban(peer, f"bad block {resp.height}: {exc}")
            return False
        return True
