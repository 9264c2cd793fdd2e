"""``providers.genesis``: every provider is registered by its own CreateProvider genesis tx,
sends no registration of its own, and still bids with its registered attributes."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from p2pakash.config import ConfigFileError
from p2pakash.ledger import decode_tx
from p2pakash.market import ledger_market as lm
from p2pakash.sim.determinism import deterministic_run
from p2pakash.sim.runner import Runner
from p2pakash.sim.scenario import Scenario, load_scenario, scenario_data, structure_scenario

ROOT = Path(__file__).resolve().parents[2]


def _quickstart(genesis: bool) -> Scenario:
    sc = load_scenario(ROOT / "simulations" / "quickstart.toml")
    return attrs.evolve(sc, duration=30.0, full_nodes=attrs.evolve(sc.full_nodes, count=0),
                        providers=attrs.evolve(sc.providers, genesis=genesis),
                        tenants=attrs.evolve(sc.tenants, start=2.0, arrival_rate=0.15,
                                             lease_seconds=0.0))


def test_genesis_registers_the_providers_as_their_services_would() -> None:
    sc = _quickstart(True)
    runner = Runner(sc)
    txs = [decode_tx(raw) for raw in runner.genesis.txs]
    assert len(txs) == 3 and all(type(t.body.msgs[0]) is lm.CreateProvider for t in txs)
    seen = {"height": 0, "registrations": 0, "checked": 0}

    def watch(r: Runner) -> None:  # reads v0's blocks and the providers while running
        node = r.by_name["v0"]
        assert node.chain is not None
        store = node.chain.ledger.store
        for h in range(seen["height"] + 1, node.height + 1):
            block = node.chain.block(h)
            assert block is not None
            seen["registrations"] += sum(type(m) in (lm.CreateProvider, lm.UpdateProvider)
                                         for raw in block.txs for m in decode_tx(raw).body.msgs)
        seen["height"] = node.height
        for p in r.nodes:
            if p.provider is None or p.provider.engine is None:
                continue
            rec = lm.get_provider(store, p.key.address)
            assert rec is not None and rec.created_at == 0
            assert p.provider.engine.attributes == rec.attributes  # bidding as registered
            seen["checked"] += 1

    runner.progress = watch
    result = deterministic_run(runner.main, seed=runner.seed)
    assert result.checker is not None and not result.checker.violations
    assert seen["height"] >= 10 and seen["checked"] > 3
    assert seen["registrations"] == 0  # nobody registered again
    assert {t.body.sender for t in txs} == {n.key.address for n in result.nodes
                                            if n.name.startswith("p")}
    assert any(d.outcome == "leased" for d in result.market.deploys)


def test_genesis_providers_must_register_and_afford_the_bond() -> None:
    data = scenario_data(load_scenario(ROOT / "simulations" / "quickstart.toml"))
    data["providers"] = {**data["providers"], "genesis": True, "balance": 0}
    with pytest.raises(ConfigFileError, match=r"providers\.genesis: a balance of 0 AKT"):
        structure_scenario(data, source="test")
    data["providers"] = {**data["providers"], "balance": 100,
                         "node": {**data["providers"]["node"], "register": False}}
    with pytest.raises(ConfigFileError, match=r"providers\.genesis: the providers do not"):
        structure_scenario(data, source="test")
