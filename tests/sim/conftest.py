"""Small scenarios for the simulator tests (a few virtual seconds, a handful of nodes)."""

from __future__ import annotations

from typing import Any

from p2pakash.sim.scenario import Scenario, structure_scenario


def small(**over: Any) -> Scenario:
    """4 validators, 1 full node, transfers, 1 s blocks; ``over`` replaces top-level keys."""
    data: dict[str, Any] = {
        "name": "small", "seed": 1, "duration": 20.0,
        "chain": {"chain_id": "sim-test", "commit": 0.5},
        "validators": {"count": 4}, "full_nodes": {"count": 1},
        "network": {"latency_ms": 10.0, "jitter": 0.2, "peers_per_node": 3},
        "workload": {"accounts": 4, "transfer_rate": 2.0},
    }
    data.update(over)
    return structure_scenario(data, source="test")
