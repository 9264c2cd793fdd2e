"""The node: one process (or one simulated peer) with all its services.

Rules and invariants:
* ``Node.run`` owns the one root nursery of the node; every service is started with
  ``await nursery.start(service.run)`` and stops when the nursery is cancelled.
* The transport and the random generator are injected: a real node gets TCP and a
  generator seeded from the OS; a simulated one gets the in-memory transport and a
  seeded generator, and runs unchanged.
* Services grow with the road (consensus, ledger, market, provider); each is a separate
  module with its own ``run``; this file only wires them together.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import trio

from p2pakash import wire
from p2pakash.config import NodeConfig, load_config
from p2pakash.crypto import PrivateKey, VerifyCache, load_key
from p2pakash.errors import DecodeError
from p2pakash.gossip import notes
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams
from p2pakash.gossip.service import GossipService, GossipSettings
from p2pakash.gossip.tcp import TcpTransport
from p2pakash.gossip.transport import Transport

log = logging.getLogger(__name__)


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
                        rate_limit_burst=2 * g.max_msgs_per_sec)


def tcp_transport(cfg: NodeConfig, key: PrivateKey) -> TcpTransport:
    return TcpTransport(key, cfg.chain_id, cfg.p2p.listen, max_frame=cfg.p2p.max_frame_size,
                        handshake_timeout=cfg.p2p.handshake_timeout,
                        advertise=cfg.p2p.external or None)


class Node:
    def __init__(self, cfg: NodeConfig, key: PrivateKey, *, transport: Transport | None = None,
                 rng: random.Random | None = None, verify_cache: VerifyCache | None = None
                 ) -> None:
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

    @classmethod
    def from_config_file(cls, path: Path) -> Node:
        cfg = load_config(path)
        return cls(cfg, load_key(cfg.key_path))

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        started = False
        try:
            async with trio.open_nursery() as nursery:
                listen = await nursery.start(self.gossip.run)
                notes_in = self.gossip.subscribe(notes.TOPIC)
                nursery.start_soon(self._log_notes, notes_in)
                log.info("node %s (%s) listening on %s, chain %s", self.cfg.moniker,
                         self.key.node_id, listen, self.cfg.chain_id)
                started = True
                task_status.started(listen)
        except BaseExceptionGroup as group:
            # Before start-up completes, failing to listen (port in use, address not
            # available) is the caller's to report in one line: raise the OSError bare,
            # not wrapped in one exception group per nursery it crossed.
            error = _sole_error(group)
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


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one leaf of nested single-member exception groups (else the group itself)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
