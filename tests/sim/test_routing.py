"""Route by role in the simulator: full nodes follow commits, validators peer with validators."""

from __future__ import annotations

from pathlib import Path

from p2pakash.sim.runner import VALIDATOR_PEERS, Runner, run
from tests.sim.conftest import small


def test_full_nodes_follow_commits_and_are_checked() -> None:
    sc = small(duration=15.0, full_nodes={"count": 3},
               network={"latency_ms": 10.0, "jitter": 0.2, "peers_per_node": 2})
    result = run(sc)
    checker = result.checker
    assert checker is not None and checker.violations == []
    top = max(result.block_hashes)
    assert top >= 8
    by_name = {n.name: n for n in result.nodes}
    for name in ("f0", "f1", "f2"):
        chain = by_name[name].chain
        assert chain is not None
        assert chain.height >= top - 1
        assert chain.relay.applied >= top - 3  # from consensus/commit, not the votes
        assert chain.driver.core.height == 0  # never ran consensus
        # the invariant checker saw every block this node committed
        assert all(name in result.commit_times[h] for h in range(1, chain.height + 1))
    validators = [by_name[f"v{i}"].chain for i in range(4)]
    assert all(c is not None and c.relay.applied == 0 for c in validators)
    assert sum(c.relay.published for c in validators if c is not None) >= top - 1


def test_every_validator_links_to_validators(tmp_path: Path) -> None:
    sc = small(validators={"count": 12}, full_nodes={"count": 60},
               network={"latency_ms": 10.0, "peers_per_node": 3})
    runner = Runner(sc)
    runner._build_nodes(tmp_path)
    links: dict[str, set[str]] = {n.name: set() for n in runner.nodes}
    for name, dialled in runner._dial.items():
        for other in dialled:
            links[name].add(other)
            links[other].add(name)
    vnames = {f"v{i}" for i in range(12)}
    for v in sorted(vnames):
        assert len(links[v] & vnames) >= VALIDATOR_PEERS, v
    # the same seed gives the same graph
    again = Runner(sc)
    again._build_nodes(tmp_path)
    assert again._dial == runner._dial
