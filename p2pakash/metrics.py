"""Prometheus metrics of one node, served at ``GET /metrics`` by the node API (a mount).

Rules and invariants:
* One ``CollectorRegistry`` per node (never the global one: a simulation runs many nodes in
  one process). Gauges and counters are read from the services at scrape time by a custom
  collector, so nothing on the hot paths changes; only the block-interval histogram is fed,
  by ``run``, from the chain's committed-block stream.
* Reads happen on trio's thread between checkpoints (the mount is an async ASGI handler),
  so a block is never half-applied under a scrape. Scanning leases costs one ledger prefix
  scan per scrape.
* Metric names start with ``p2pakash_``; amounts are uakt; ``*_total`` are counters since
  the process started.
* Wiring (node.py): ``metrics = NodeMetrics(node)``; ``api.mounts.append(metrics.mount)``;
  ``await nursery.start(metrics.run)`` before the chain starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from p2pakash.market import ledger_market as lm
from p2pakash.market.chain_types import LeaseRec

if TYPE_CHECKING:
    from p2pakash.node import Node

BLOCK_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class _NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        gossip = node.gossip
        yield GaugeMetricFamily("p2pakash_peers", "connected peers", value=len(gossip.connected))
        messages = CounterMetricFamily("p2pakash_gossip_messages", "gossip items by direction",
                                       labels=["direction"])
        messages.add_metric(["in"], gossip.stats.items_in)
        messages.add_metric(["out"], gossip.stats.items_out)
        yield messages
        frames = CounterMetricFamily("p2pakash_gossip_bytes", "gossip frame bytes",
                                     labels=["direction"])
        frames.add_metric(["in"], gossip.stats.bytes_in)
        frames.add_metric(["out"], gossip.stats.bytes_out)
        yield frames
        ps = gossip.pubsub.stats
        dropped = CounterMetricFamily("p2pakash_gossip_dropped", "gossip items dropped, by why",
                                      labels=["reason"])
        for reason, value in (("send_queue_full", gossip.stats.dropped_out),
                              ("local_queue_full", gossip.stats.dropped_local),
                              ("duplicate", ps.duplicates), ("rejected", ps.rejected),
                              ("ignored", ps.ignored), ("rate_limited", ps.rate_limited),
                              ("graylisted", ps.graylisted)):
            dropped.add_metric([reason], value)
        yield dropped
        yield CounterMetricFamily("p2pakash_gossip_bans", "peers banned", value=gossip.stats.bans)
        if node.chain is not None:
            yield from self._chain(node)
        if node.provider is not None:
            stats = node.provider.stats
            provider = CounterMetricFamily("p2pakash_provider_events",
                                           "provider: orders seen, bids, declines, leases won",
                                           labels=["kind"])
            for kind in ("orders", "bids", "declines", "leases", "manifests_refused"):
                provider.add_metric([kind], stats.get(kind, 0))
            yield provider
        if node.tenant is not None:
            runs = list(node.tenant.runs.values())
            yield GaugeMetricFamily("p2pakash_tenant_bids_received",
                                    "bids received for the deployments this node remembers",
                                    value=sum(len(r.bids) for r in runs))

    def _chain(self, node: Node) -> Iterator[Metric]:
        chain = node.chain
        assert chain is not None
        yield GaugeMetricFamily("p2pakash_height", "latest committed height", value=chain.height)
        yield GaugeMetricFamily("p2pakash_consensus_round", "current consensus round",
                                value=max(0, chain.driver.core.round))
        if node.mempool is not None:
            yield GaugeMetricFamily("p2pakash_mempool_txs", "txs in the mempool",
                                    value=node.mempool.size)
            yield GaugeMetricFamily("p2pakash_mempool_bytes", "bytes in the mempool",
                                    value=node.mempool.bytes)
        store = chain.ledger.store
        states: dict[str, int] = {s.name.lower(): 0 for s in lm.LeaseState}
        for _, rec in store.scan(lm.P + b"lease/", LeaseRec):
            states[rec.state.name.lower()] = states.get(rec.state.name.lower(), 0) + 1
        leases = GaugeMetricFamily("p2pakash_leases", "leases on chain by state",
                                   labels=["state"])
        for state, count in sorted(states.items()):
            leases.add_metric([state], count)
        yield leases
        providers = sum(1 for _ in store.scan(lm.P + b"prov/", lm.ProviderRec))
        yield GaugeMetricFamily("p2pakash_providers", "registered providers", value=providers)
        yield GaugeMetricFamily("p2pakash_escrow_uakt", "uakt held in market escrow",
                                value=chain.ledger.account(lm.ESCROW).balance)
        yield GaugeMetricFamily("p2pakash_supply_uakt", "total supply", value=chain.ledger.supply())


class NodeMetrics:
    def __init__(self, node: Node, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.node = node
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_NodeCollector(node))
        self.block_interval = Histogram(
            "p2pakash_block_interval_seconds",
            "wall time between consecutive blocks committed by this node (one height)",
            buckets=BLOCK_BUCKETS, registry=self.registry)
        self.commit_rounds = Histogram(
            "p2pakash_commit_round", "the round in which each height was decided",
            buckets=(0, 1, 2, 3, 5, 10), registry=self.registry)
        self._last: float | None = None

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        chain = self.node.chain
        if chain is None:
            task_status.started()
            return
        blocks = chain.subscribe_blocks()
        task_status.started()
        async with blocks:
            async for block, _result in blocks:
                now = self.clock()
                if self._last is not None:
                    self.block_interval.observe(now - self._last)
                self._last = now
                commit = chain.commit(block.height)
                if commit is not None:
                    self.commit_rounds.observe(commit.round)

    async def mount(self, app: Any, scope: dict[str, Any], receive: Any, send: Any) -> bool:
        """An ``ApiApp`` mount: answers ``GET /metrics`` in Prometheus' text format."""
        if scope.get("path") != "/metrics":
            return False
        if scope.get("method") not in ("GET", "HEAD"):
            body, status = b'{"error": "method not allowed here (use GET)"}\n', 405
            ctype = b"application/json"
        else:
            body, status, ctype = self.render(), 200, CONTENT_TYPE_LATEST.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return True
