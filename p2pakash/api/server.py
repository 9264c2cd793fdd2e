"""The API service: hypercorn on trio serving ``ApiApp``, fed by the chain's block stream.

Rules and invariants:
* ``ApiService.run`` follows the service convention: it subscribes to the chain's blocks
  BEFORE serving, backfills the tx index from the block store for heights it missed (a
  restart; results unknown), binds the listen address and reports ``"host:port"`` as
  actually bound (port 0 picks a free one) through ``task_status``. Failing to bind raises
  the OSError before ``started``.
* Each committed block is indexed (SQLite, one transaction per block) and then pushed to
  the SSE subscribers, in height order, by one task (rendered only if there are any).
* Everything the service opens (the index, the server sockets) closes when ``run`` ends.
* ``TxGossip`` joins the ``txs`` topic for the mempool; ``TxGossip.publish`` is what the
  API (and the tenant and provider) call for each tx admitted. While ``run`` runs, txs are
  buffered and published together as one ``TxBatch`` ``flush_interval`` seconds after the
  first (or at once when ``max_batch_bytes`` or ``MAX_TX_BATCH`` fill): gossip pays its
  per-message cost per batch, not per tx (20 ms by default: at a few thousand tx/s a node
  sends tens of batches a second instead of hundreds, for 20 ms more latency in a block
  time of hundreds). A lone tx goes out as itself; so does every tx published while
  ``run`` is not running.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from p2pakash import wire
from p2pakash.api.app import (
    ApiApp,
    ChainView,
    EventHub,
    Mount,
    NodeInfo,
    block_event_json,
    sse_frame,
)
from p2pakash.api.txindex import TxIndex
from p2pakash.consensus.types import Block
from p2pakash.gossip.service import GossipService
from p2pakash.ledger.blocks import BlockResult
from p2pakash.ledger.txs import MAX_TX_BATCH, TxBatch
from p2pakash.mempool import TOPIC as TX_TOPIC
from p2pakash.mempool import Mempool, tx_validator
from p2pakash.tasks import drain, sole_error

log = logging.getLogger(__name__)


class ChainSource(ChainView, Protocol):
    def subscribe_blocks(self) -> trio.MemoryReceiveChannel[tuple[Block, BlockResult]]: ...


class ApiService:
    def __init__(self, *, chain: ChainSource, mempool: Mempool, info: NodeInfo,
                 listen: str = "127.0.0.1:26680", allow_remote_writes: bool = False,
                 data_dir: Path | None = None, publish: Callable[[bytes], object] | None = None,
                 peers: Callable[[], int] = lambda: 0, clock: Callable[[], float] = time.time,
                 keepalive: float = 15.0, tx_index: bool = True) -> None:
        self.chain = chain
        self.tx_index = tx_index
        self.mempool = mempool
        self.info = info
        self.listen = listen
        self.mounts: list[Mount] = []  # extra route sets (e.g. the tenant's), tried first
        self.allow_remote_writes = allow_remote_writes
        self.data_dir = data_dir
        self.publish = publish
        self.peers = peers
        self.clock = clock
        self.keepalive = keepalive
        self.hub = EventHub()
        self.bound = ""  # "host:port" once serving
        self.app: ApiApp | None = None

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        self.bound = ""
        blocks = self.chain.subscribe_blocks()
        txindex = TxIndex.in_dir(self.data_dir) if self.tx_index else None
        try:
            if txindex is not None:
                self._backfill(txindex)
            self.app = ApiApp(chain=self.chain, mempool=self.mempool, info=self.info,
                              txindex=txindex, hub=self.hub, publish=self.publish,
                              peers=self.peers, allow_remote_writes=self.allow_remote_writes,
                              clock=self.clock, keepalive=self.keepalive,
                              mounts=self.mounts)
            config = Config()
            config.bind = [self.listen]
            config.accesslog = None
            config.errorlog = logging.getLogger("p2pakash.api.hypercorn")
            config.graceful_timeout = 1.0
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._follow, blocks, txindex)
                    app: Any = self.app  # hypercorn's ASGI types are narrower than our dicts
                    binds = await nursery.start(functools.partial(serve, app, config))
                    self.bound = binds[0].split("://", 1)[-1]
                    log.info("API listening on http://%s", self.bound)
                    task_status.started(self.bound)
            except BaseExceptionGroup as group:
                error = sole_error(group)
                if not self.bound and isinstance(error, OSError):
                    raise error from None  # cannot listen: the caller reports one line
                raise
        finally:
            if txindex is not None:
                txindex.close()

    def _backfill(self, txindex: TxIndex) -> None:
        top = self.chain.height
        start = txindex.last_height + 1
        for height in range(start, top + 1):
            block = self.chain.block(height)
            if block is not None:
                txindex.add_block(height, block.txs, None)
        if top >= start:
            log.info("tx index: backfilled heights %d..%d from the block store", start, top)

    async def _follow(self, blocks: trio.MemoryReceiveChannel[tuple[Block, BlockResult]],
                      txindex: TxIndex | None) -> None:
        async with blocks:
            async for block, result in blocks:
                if txindex is not None:
                    txindex.add_block(block.height, block.txs, result.tx_results)
                if len(self.hub):  # rendered only when someone listens
                    self.hub.publish(sse_frame("block", block_event_json(block, result),
                                               block.height))


class TxGossip:
    """The ``txs`` gossip topic: peers' txs enter the mempool through the topic validator
    (admitted -> forwarded, malformed or forged -> the peer is penalised), and txs admitted
    here are published in batches. Delivered copies need no more work: the validator
    admitted them.
    """

    def __init__(self, gossip: GossipService, mempool: Mempool, *,
                 flush_interval: float = 0.02, max_batch_bytes: int = 256 * 1024) -> None:
        self.gossip = gossip
        self.mempool = mempool
        self.flush_interval = flush_interval
        self.max_batch_bytes = max_batch_bytes
        self.published = 0  # gossip messages sent (a batch or a lone tx)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._wake: trio.Event | None = None  # set while ``run`` runs

    def publish(self, tx_bytes: bytes) -> None:
        if self._wake is None:
            self._publish([tx_bytes])
            return
        self._pending.append(tx_bytes)
        self._pending_bytes += len(tx_bytes)
        if self._pending_bytes >= self.max_batch_bytes or len(self._pending) >= MAX_TX_BATCH:
            self.flush()
        else:
            self._wake.set()

    def flush(self) -> None:
        """Publish the buffered txs now."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        if pending:
            self._publish(pending)

    def _publish(self, txs: list[bytes]) -> None:
        self.published += 1
        data = txs[0] if len(txs) == 1 else wire.encode(TxBatch(txs=tuple(txs)))
        self.gossip.publish(TX_TOPIC, data)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        self.gossip.set_validator(TX_TOPIC, tx_validator(self.mempool, self.gossip.node_id))
        channel = self.gossip.subscribe(TX_TOPIC)
        self._wake = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, channel)
                task_status.started()
                while True:
                    await self._wake.wait()
                    if self.flush_interval > 0:
                        await trio.sleep(self.flush_interval)
                    self._wake = trio.Event()
                    self.flush()
        finally:
            self._wake = None



