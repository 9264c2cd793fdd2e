"""The node: one process (or one simulated peer) with all its services.

Rules and invariants:
* ``Node.run`` owns the one root nursery of the node; every service is started with
  ``await nursery.start(service.run)`` and stops when the nursery is cancelled.
* The transport and the random generator are injected: a real node gets TCP and a
  generator seeded from the OS; a simulated one gets the in-memory transport and a
  seeded generator, and runs unchanged.
* Services grow with the road (consensus, ledger, market, provider); each is a separate
  module with its own ``run``; this file only wires them together.
* A home with a ``genesis.json`` runs the chain (a validator when its key is in the active
  set, a follower otherwise) with a mempool and the HTTP API; a home without one runs the
  gossip layer only and says so once.
* Start order: gossip, tx gossip, chain, API; a port already in use before start-up
  completes surfaces as a bare OSError for the caller's one-line message.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable

import trio

from p2pakash import home as home_layout
from p2pakash import wire
from p2pakash.api import ApiService, NodeInfo, TxGossip
from p2pakash.api.tenant_routes import TenantRoutes
from p2pakash.chain import ChainService
from p2pakash.config import NodeConfig, topic_degree_params
from p2pakash.consensus.core import TimeoutParams
from p2pakash.crypto import PrivateKey, VerifyCache
from p2pakash.errors import ConfigError, DecodeError
from p2pakash.executor.fake import FakeExecutor
from p2pakash.gossip import notes
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams
from p2pakash.gossip.service import GossipService, GossipSettings
from p2pakash.gossip.tcp import TcpTransport
from p2pakash.gossip.transport import Transport
from p2pakash.ledger.genesis import GenesisDoc, load_genesis
from p2pakash.market.ledger_market import LedgerView
from p2pakash.market.validators import (
    TOPIC_BIDS,
    TOPIC_DECLINES,
    TOPIC_ORDERS,
    MarketValidators,
)
from p2pakash.mempool import Mempool
from p2pakash.metrics import NodeMetrics
from p2pakash.plugins.manager import PluginManager
from p2pakash.plugins.types import PluginConfig
from p2pakash.provider.service import ProviderService
from p2pakash.tasks import drain, sole_error
from p2pakash.tenant import TenantService

log = logging.getLogger(__name__)
MARKET_TOPICS = (TOPIC_ORDERS, TOPIC_BIDS, TOPIC_DECLINES)


def peer_params(cfg: NodeConfig) -> PeerParams:
    p = cfg.p2p
    return PeerParams(max_inbound=p.max_inbound, max_outbound=p.max_outbound,
                      max_per_host=p.max_per_host, ping_interval=p.ping_interval,
                      ping_timeout=p.ping_timeout, ban_seconds=p.ban_seconds,
                      pex_interval=30.0 if p.pex else float("inf"))


def pubsub_params(cfg: NodeConfig) -> PubSubParams:
    g = cfg.gossip
    return PubSubParams(d=g.d, d_lo=g.d_lo, d_hi=g.d_hi, heartbeat_interval=g.heartbeat_interval,
                        seen_ttl=g.seen_ttl, flood_publish=g.flood_publish,
                        rate_limit_msgs_per_sec=g.max_msgs_per_sec,
                        rate_limit_burst=2 * g.max_msgs_per_sec,
                        topic_degree=topic_degree_params(g.topic_degree))


def timeout_params(cfg: NodeConfig) -> TimeoutParams:
    c = cfg.consensus
    return TimeoutParams(propose=c.timeout_propose, propose_delta=c.timeout_propose_delta,
                         prevote=c.timeout_prevote, prevote_delta=c.timeout_prevote_delta,
                         precommit=c.timeout_precommit,
                         precommit_delta=c.timeout_precommit_delta, commit=c.timeout_commit)


def tcp_transport(cfg: NodeConfig, key: PrivateKey) -> TcpTransport:
    return TcpTransport(key, cfg.chain_id, cfg.p2p.listen, max_frame=cfg.p2p.max_frame_size,
                        handshake_timeout=cfg.p2p.handshake_timeout,
                        advertise=cfg.p2p.external or None)


class Node:
    def __init__(self, cfg: NodeConfig, key: PrivateKey, *, transport: Transport | None = None,
                 rng: random.Random | None = None, verify_cache: VerifyCache | None = None,
                 genesis: GenesisDoc | None = None, in_memory: bool = False,
                 now_ms: Callable[[], int] | None = None, api: bool = True) -> None:
        self.cfg = cfg
        self.key = key
        self.rng = rng or random.Random(os.urandom(16))
        self.verify_cache = verify_cache or VerifyCache()
        self.gossip = GossipService(
            transport=transport or tcp_transport(cfg, key),
            rng=self.rng,
            peer_params=peer_params(cfg),
            pubsub_params=pubsub_params(cfg),
            seeds=cfg.p2p.seeds,
            persistent=cfg.p2p.persistent_peers,
            settings=GossipSettings(max_frame=cfg.p2p.max_frame_size,
                                    flush_interval=cfg.gossip.flush_interval),
            self_addr=cfg.p2p.advertised,
        )
        self.gossip.set_validator(notes.TOPIC, notes.note_validator(cfg.chain_id,
                                                                     self.verify_cache))
        if genesis is None and cfg.genesis_path.exists():
            genesis = load_genesis(cfg.genesis_path)
        self.genesis = genesis
        self.chain: ChainService | None = None
        self.mempool: Mempool | None = None
        self.api: ApiService | None = None
        self.tx_gossip: TxGossip | None = None
        self.tenant: TenantService | None = None
        self.provider: ProviderService | None = None
        self.metrics: NodeMetrics | None = None
        if genesis is None:
            return
        if genesis.chain_id != cfg.chain_id:
            raise ConfigError(f"{cfg.genesis_path}: chain_id {genesis.chain_id!r} differs from"
                              f" the config's {cfg.chain_id!r}")
        self.chain = ChainService(
            gossip=self.gossip, key=key, genesis=genesis,
            data_dir=None if in_memory else cfg.data_dir, timeouts=timeout_params(cfg),
            verify_cache=self.verify_cache, now_ms=now_ms,
            max_block_bytes=cfg.consensus.max_block_bytes,
            follow_votes=cfg.consensus.follow_votes, name=cfg.moniker)
        self.mempool = Mempool.for_ledger(self.chain.ledger, verify=self.verify_cache.verify)
        self.chain.mempool = self.mempool
        self.tx_gossip = TxGossip(self.gossip, self.mempool)
        self.market = MarketValidators(
            chain_id=cfg.chain_id, view=LedgerView(self.chain.ledger.store),
            now_ms=self.chain.now_ms, cache=self.verify_cache)
        self.market.install(self.gossip.pubsub)
        self.tenant = TenantService(key=key, gossip=self.gossip, chain=self.chain,
                                    mempool=self.mempool, publish_tx=self.tx_gossip.publish,
                                    now_ms=self.chain.now_ms, verify_cache=self.verify_cache)
        if cfg.provider is not None:
            self.provider = self._provider(cfg, key, in_memory=in_memory, now_ms=now_ms)
        if api:
            self.api = ApiService(
                chain=self.chain, mempool=self.mempool, listen=cfg.api.listen,
                allow_remote_writes=cfg.api.allow_remote_writes, tx_index=cfg.api.tx_index,
                data_dir=None if in_memory else cfg.data_dir, publish=self.tx_gossip.publish,
                peers=lambda: len(self.gossip.connected),
                info=NodeInfo(chain_id=cfg.chain_id, node_id=key.node_id, moniker=cfg.moniker,
                              pubkey=key.public))
            self.metrics = NodeMetrics(self)
            self.api.mounts.append(self.metrics.mount)

    def _provider(self, cfg: NodeConfig, key: PrivateKey, *, in_memory: bool,
                  now_ms: Callable[[], int] | None) -> ProviderService:
        pcfg = cfg.provider
        assert pcfg is not None and self.chain is not None and self.mempool is not None
        assert self.tx_gossip is not None
        plugins = PluginManager.load(PluginConfig.from_table(
            pcfg.plugin_table(), source=f"{home_layout.config_path(cfg.home)}: [provider]"))
        executor = plugins.executor()
        if executor is None:
            if pcfg.executor == "fake":
                executor = FakeExecutor()
            else:  # imported here: the podman client costs ~0.1 s at every node start
                from p2pakash.executor.podman import PodmanExecutor
                executor = PodmanExecutor(pcfg.podman_socket
                                          or "unix:///run/podman/podman.sock")
        return ProviderService(
            key=key, cfg=pcfg, gossip=self.gossip, chain=self.chain, mempool=self.mempool,
            publish=self.tx_gossip.publish, plugins=plugins, executor=executor,
            host_uri=pcfg.host_uri or f"p2p://{key.node_id}@{cfg.p2p.advertised}",
            state_dir=None if in_memory else cfg.data_dir / "provider", now_ms=now_ms,
            market=self.market)

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        started = False
        try:
            async with trio.open_nursery() as nursery:
                listen = await nursery.start(self.gossip.run)
                notes_in = self.gossip.subscribe(notes.TOPIC)
                nursery.start_soon(self._log_notes, notes_in)
                if self.chain is not None and self.tx_gossip is not None:
                    await nursery.start(self.tx_gossip.run)
                    for topic in MARKET_TOPICS:  # every node relays the market's topics
                        nursery.start_soon(drain, self.gossip.subscribe(topic))
                    if self.tenant is not None:
                        await nursery.start(self.tenant.run)
                    if self.api is not None:
                        if self.tenant is not None:
                            self.api.mounts.append(TenantRoutes(self.tenant))
                        api_addr = await nursery.start(self.api.run)
                        log.info("node API on http://%s", api_addr)
                    if self.metrics is not None:
                        await nursery.start(self.metrics.run)
                    await nursery.start(self.chain.run)
                    if self.provider is not None:
                        await nursery.start(self.provider.run)
                else:
                    log.info("no genesis at %s: running the gossip layer only",
                             self.cfg.genesis_path)
                log.info("node %s (%s) listening on %s, chain %s", self.cfg.moniker,
                         self.key.node_id, listen, self.cfg.chain_id)
                started = True
                task_status.started(listen)
        except BaseExceptionGroup as group:
            # Before start-up completes, failing to listen (port in use, address not
            # available) is the caller's to report in one line: raise the OSError bare,
            # not wrapped in one exception group per nursery it crossed.
            error = sole_error(group)
            if not started and isinstance(error, OSError):
                raise error from None
            raise

    async def _log_notes(self, channel: trio.MemoryReceiveChannel[object]) -> None:
        async for item in channel:
            data = getattr(item, "data", b"")
            try:
                note = wire.decode(data, notes.Note)
            except DecodeError:
                continue
            log.info("note from %s: %s", note.author_address, note.text)



