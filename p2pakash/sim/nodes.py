"""The simulator's records: one node across its incarnations, and a run's result.

Rules and invariants:
* ``SimNode`` outlives crashes: the runner replaces its services at each start and keeps
  the counters of finished incarnations (``past``, ``past_pubsub``); a provider's
  ``FakeEngine`` lives here too (containers outlive a crashed provider, as under podman).
* ``SimResult`` is filled while the run goes (commits, samples, market) and is what the
  report is built from; nothing in it reads the wall clock but ``wall_seconds``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import attrs
import trio

from p2pakash.chain import ChainService
from p2pakash.crypto import NodeID, PrivateKey
from p2pakash.executor.fake import FakeEngine
from p2pakash.gossip.service import GossipService, GossipStats
from p2pakash.mempool import Mempool
from p2pakash.provider.service import ProviderService
from p2pakash.sim import market
from p2pakash.sim.faults import Behaviour, NodeClock
from p2pakash.sim.invariants import Checker
from p2pakash.sim.scenario import GpuClass, Scenario
from p2pakash.tenant import TenantService


@attrs.define(eq=False)
class SimNode:
    name: str
    index: int
    key: PrivateKey  # gossip identity
    validator_key: PrivateKey | None
    addr: str
    data_dir: Path | None
    clock: NodeClock = attrs.Factory(NodeClock)
    behaviour: Behaviour | None = None
    gossip: GossipService | None = None
    chain: ChainService | None = None
    mempool: Mempool | None = None
    provider: ProviderService | None = None
    tenant: TenantService | None = None
    engine: FakeEngine | None = None  # a provider's containers (outlive crashes)
    gpu: GpuClass | None = None
    price_factor: Fraction = Fraction(1)
    scope: trio.CancelScope | None = None
    done: trio.Event | None = None
    starts: int = 0
    past: GossipStats = attrs.Factory(GossipStats)  # counters of finished incarnations
    past_pubsub: dict[str, int] = attrs.Factory(dict)

    @property
    def node_id(self) -> NodeID:
        return self.key.node_id

    @property
    def running(self) -> bool:
        return self.scope is not None and not self.scope.cancel_called

    @property
    def height(self) -> int:
        return 0 if self.chain is None else self.chain.height


@attrs.define
class SimResult:
    scenario: Scenario
    seed: int
    until: float
    virtual_seconds: float = 0.0
    wall_seconds: float = 0.0
    stopped_by: str = "until"  # until | violation | wall_limit
    checker: Checker | None = None
    nodes: list[SimNode] = attrs.Factory(list)
    commit_times: dict[int, dict[str, float]] = attrs.Factory(dict)  # height -> node -> t
    block_times_ms: dict[int, int] = attrs.Factory(dict)  # height -> header time
    block_hashes: dict[int, bytes] = attrs.Factory(dict)
    samples: list[tuple[float, int, int]] = attrs.Factory(list)  # t, min, max height
    txs_submitted: int = 0
    txs_committed: int = 0
    network: dict[str, int] = attrs.Factory(dict)
    validators: dict[str, dict[str, int | bool]] = attrs.Factory(dict)  # at the end
    market: market.MarketStats = attrs.Factory(market.MarketStats)
    revenue: dict[str, dict[str, int]] = attrs.Factory(dict)  # provider -> earned, leases


__all__ = ["SimNode", "SimResult"]
