"""The simulated network: region latencies on top of ``gossip.memory.MemoryNetwork``.

Rules and invariants:
* Nodes are placed in regions round robin by their index in the scenario's node list;
  with no regions every pair has the scenario's ``latency_ms``.
* One-way latency of a frame = base(region of src, region of dst) * (1 + jitter * u),
  u uniform in [-1, 1] drawn from the network's own seeded ``random.Random`` (the
  MemoryNetwork's), so draws happen in frame order and are reproducible. Per-direction
  FIFO is kept by the MemoryNetwork itself.
* Partitions are applied by node name and map to node IDs; a node named in no group is
  cut off from every group (it forms one more group with the other unnamed nodes).
* Loss and bandwidth are the MemoryNetwork's (global); ``set_link`` overrides still win.
* ``link(src, dst)`` gives the pair's (base, jitter) (``gossip.memory.LinkLatency``): the
  network asks once per pipe, so a node is placed before its first connection (the runner
  places every node when it builds them) and a node keeps its region.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from p2pakash.crypto import NodeID
from p2pakash.gossip.memory import MemoryNetwork
from p2pakash.sim.scenario import NetworkSpec


class RegionLatency:
    """A ``LatencyModel``: region matrix plus uniform jitter."""

    def __init__(self, spec: NetworkSpec) -> None:
        self.spec = spec
        self.region_of: dict[NodeID, int] = {}
        if spec.regions:
            self.matrix = [[ms / 1000.0 for ms in row] for row in spec.region_latency_ms]
        else:
            self.matrix = [[spec.latency_ms / 1000.0]]
        self.jitter = spec.jitter

    def place(self, node: NodeID, index: int) -> str:
        """Put ``node`` (the index-th in the scenario) in its region; returns the name."""
        region = index % len(self.matrix)
        self.region_of[node] = region
        return self.spec.regions[region] if self.spec.regions else "default"

    def base(self, src: NodeID, dst: NodeID) -> float:
        return self.matrix[self.region_of.get(src, 0)][self.region_of.get(dst, 0)]

    def link(self, src: NodeID, dst: NodeID) -> tuple[float, float]:
        """(base, jitter) of the pair (``gossip.memory.LinkLatency``: the network caches it
        per pipe and draws the jitter exactly as ``__call__`` does)."""
        return self.base(src, dst), self.jitter

    def __call__(self, src: NodeID, dst: NodeID, rng: random.Random) -> float:
        region = self.region_of
        base = self.matrix[region.get(src, 0)][region.get(dst, 0)]
        jitter = self.jitter
        if jitter <= 0.0:
            return base
        return max(0.0, base * (1.0 + jitter * (2.0 * rng.random() - 1.0)))


def build_network(spec: NetworkSpec, rng: random.Random) -> tuple[MemoryNetwork, RegionLatency]:
    model = RegionLatency(spec)
    net = MemoryNetwork(rng, latency=model, loss=spec.loss,
                        bandwidth=float(spec.bandwidth) if spec.bandwidth else None,
                        items=True, resolution=spec.resolution_ms / 1000.0)
    return net, model


def partition(net: MemoryNetwork, groups: Sequence[Sequence[str]],
              ids: Mapping[str, NodeID]) -> None:
    """Cut the network into ``groups`` of node names (see the module rules)."""
    net.partition([[ids[name] for name in group] for group in groups])


__all__ = ["RegionLatency", "build_network", "partition"]
