"""Whole simulations: invariants hold on healthy and faulty runs, and the checker can fail."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from p2pakash.cli import main
from p2pakash.sim import report
from p2pakash.sim.runner import run
from p2pakash.sim.scenario import Scenario, load_scenario
from tests.sim.conftest import small

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_short_all_invariants_hold(tmp_path: Path) -> None:
    sc = load_scenario(ROOT / "simulations" / "quickstart.toml")
    sc = attrs.evolve(sc, duration=40.0, full_nodes=attrs.evolve(sc.full_nodes, count=1),
                      tenants=attrs.evolve(sc.tenants, arrival_rate=0.1, lease_seconds=10.0))
    result = run(sc)
    rep = report.write_report(result, tmp_path, plots=True)
    assert rep["invariant_violations"] == []
    assert rep["stopped_by"] == "until" and rep["virtual_seconds"] == pytest.approx(40.0)
    assert rep["final_height"] >= 10
    assert rep["txs_committed"] > 0 and rep["invariant_checks"]["supply"] >= 10
    assert rep["not_simulated"] == []
    assert all(n["height"] >= rep["final_height"] - 1 for n in rep["nodes"].values())
    assert set(rep["nodes"]) == {"v0", "v1", "v2", "v3", "f0", "p0", "p1", "p2",
                                 "t0", "t1", "t2", "t3", "t4"}
    assert rep["gossip"]["copies_per_message"] >= 1.0
    for png in ("heights.png", "block_interval.png", "commit_latency.png", "traffic.png",
                "utilisation.png", "prices.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert json.loads((tmp_path / "report.json").read_text()) == rep
    # the market: real tenants deploy, real providers bid, leases are paid
    mk = rep["market"]
    assert mk["deployments"] >= 5 and mk["outcomes"].get("leased", 0) >= 3
    assert 0.5 <= mk["fill_rate"] <= 1.0
    assert 0 < mk["order_to_first_bid"]["p50"] < mk["order_to_lease"]["p50"] < 10
    assert mk["closed_by_tenants"] >= 1
    assert rep["invariant_checks"]["lease-price"] == sum(
        p["leases"] for p in mk["providers"].values())
    assert mk["revenue_uakt"] > 0 and sum(p["won"] for p in mk["providers"].values()) >= 3
    assert {p["gpus"] for p in mk["providers"].values()} == {"4x rtx4090", "8x a100",
                                                             "8x h100"}
    for key, prices in mk["prices_by_gpu"].items():  # below every template's max price
        assert prices["max"] <= {"cpu-only": 100, "nvidia/a100": 2200, "nvidia/h100": 8000,
                                 "nvidia/rtx4090": 700, "nvidia/rtx3090": 700}[key]


def test_twins_beyond_f_fork_is_caught_by_the_safety_invariant() -> None:
    # v2 and v3 (half the power) each run twice, one instance on each side of a partition:
    # both sides hold 3/4 of the power, commit different blocks, and the checker must say so.
    sc = small(duration=30.0, full_nodes={"count": 0},
               faults=[{"kind": "twin", "node": "v2"}, {"kind": "twin", "node": "v3"},
                       {"kind": "clock_skew", "node": "v2-twin", "skew_ms": 40}],
               partitions=[{"at": 0.0, "groups": [["v0", "v2", "v3"],
                                                   ["v1", "v2-twin", "v3-twin"]]}])
    result = run(sc)
    assert result.checker is not None
    violations = result.checker.violations
    assert result.stopped_by == "violation"
    assert violations and violations[0].invariant == "safety"
    assert violations[0].seed == 1 and 0 < violations[0].virtual_time < 30.0
    assert result.virtual_seconds == pytest.approx(violations[0].virtual_time)
    assert "committed block" in violations[0].line() and "seed 1" in violations[0].line()


def test_equivocation_within_f_is_slashed_and_safety_holds() -> None:
    sc = small(duration=25.0, faults=[{"kind": "equivocate", "node": "v3", "at": 2.0}])
    result = run(sc)
    assert result.checker is not None and result.checker.violations == []
    assert result.validators["v3"] == {"tokens": 95_000_000, "jailed": True, "tombstoned": True}
    assert not result.validators["v0"]["jailed"]
    assert max(result.block_hashes) >= 10


def test_partition_heal_resumes_within_bound() -> None:
    sc = small(duration=30.0, partitions=[{"at": 5.0, "heal": 15.0,
                                           "groups": [["v0", "v1", "f0"], ["v2", "v3"]]}],
               invariants={"resume_within": 10.0})
    result = run(sc)
    assert result.checker is not None and result.checker.violations == []
    first_commit = {h: min(t.values()) for h, t in result.commit_times.items()}
    during = [h for h, t in first_commit.items() if 6.0 < t < 15.0]
    after = sorted(t for t in first_commit.values() if t >= 15.0)
    assert not during  # 2/2: no side has quorum
    assert after and after[0] - 15.0 < 10.0
    assert len(after) >= 5


def test_liveness_checker_fails_when_blocks_do_not_resume() -> None:
    # Two validators crash for good at the heal: no quorum, so blocks cannot resume.
    sc = small(duration=30.0, partitions=[{"at": 5.0, "heal": 10.0, "groups": [["v0", "v1"]]}],
               faults=[{"kind": "crash", "node": "v2", "at": 9.0},
                       {"kind": "crash", "node": "v3", "at": 9.0}],
               invariants={"resume_within": 5.0})
    result = run(sc)
    assert result.checker is not None
    assert [v.invariant for v in result.checker.violations] == ["liveness-after-heal"]
    assert result.stopped_by == "violation" and result.virtual_seconds < 17.0


def test_crash_and_restart_from_storage() -> None:
    sc = small(duration=25.0, faults=[{"kind": "crash", "node": "v3", "at": 5.0, "until": 10.0}])
    result = run(sc)
    assert result.checker is not None and result.checker.violations == []
    v3 = next(n for n in result.nodes if n.name == "v3")
    assert v3.starts == 2 and v3.data_dir is not None
    top = max(result.block_hashes)
    assert top >= 10 and max(h for h, t in result.commit_times.items() if "v3" in t) >= top - 1
    # v3 committed nothing while it was down
    assert not [h for h, t in result.commit_times.items() if 5.01 < t.get("v3", 0) < 10.0]


def test_wall_clock_limit_stops_cleanly_and_writes_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "long.toml"
    path.write_text('name = "long"\nduration = 100000.0\n[validators]\ncount = 4\n')
    main(["sim", "run", str(path), "--out", str(tmp_path / "out"), "--wall-limit", "1",
          "--quiet", "--no-plots"])
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["stopped_by"] == "wall_limit"
    assert 0 < rep["virtual_seconds"] < 100000 and rep["final_height"] >= 1
    assert rep["wall_seconds"] < 30
    assert "report:" in capsys.readouterr().out


def test_replay_follows_the_same_chain(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nduration = 25.0\n[chain]\ncommit = 0.5\n'
                    '[workload]\naccounts = 3\ntransfer_rate = 1.0\n')
    main(["sim", "run", str(path), "--out", str(tmp_path / "run"), "--quiet", "--no-plots"])
    main(["sim", "replay", str(tmp_path / "run" / "report.json"), "--until", "20",
          "--out", str(tmp_path / "replay")])
    out = capsys.readouterr().out
    assert "replay matches the report at 2 checkpoints" in out
    trace = (tmp_path / "replay" / "trace.log").read_text()
    assert "committed block" in trace


def _short(sc: Scenario, duration: float = 25.0) -> Scenario:
    """The scenario shrunk for CI: ``duration`` virtual seconds (every time scaled), at most
    4 validators, 2 full nodes, 5 providers and 4 tenants deploying briskly."""
    f = min(1.0, duration / sc.duration)
    return attrs.evolve(
        sc, duration=min(sc.duration, duration), wall_limit=120.0,
        validators=attrs.evolve(sc.validators, count=min(sc.validators.count, 4)),
        full_nodes=attrs.evolve(sc.full_nodes, count=min(sc.full_nodes.count, 2)),
        providers=attrs.evolve(sc.providers, count=min(sc.providers.count, 5)),
        tenants=attrs.evolve(sc.tenants, count=min(sc.tenants.count, 4),
                             start=sc.tenants.start * f, wait=min(sc.tenants.wait, 5.0),
                             arrival_rate=max(sc.tenants.arrival_rate, 0.1),
                             lease_seconds=sc.tenants.lease_seconds * f),
        faults=tuple(attrs.evolve(x, at=x.at * f, until=x.until * f) for x in sc.faults),
        partitions=tuple(attrs.evolve(p, at=p.at * f, heal=p.heal * f)
                         for p in sc.partitions),
        invariants=attrs.evolve(sc.invariants,
                                resume_within=min(sc.invariants.resume_within, 10.0)))


@pytest.mark.parametrize("path", sorted((ROOT / "simulations").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_short_variant_of_every_shipped_scenario_holds_its_invariants(path: Path) -> None:
    full = load_scenario(path)
    sc = _short(full, duration=max(25.0, 4 * full.chain.commit))  # >= 3 heights at any pace
    result = run(sc)
    rep = report.build_report(result)
    assert rep["invariant_violations"] == [], rep["invariant_violations"]
    assert rep["stopped_by"] == "until"
    assert rep["final_height"] >= 3
    if sc.tenants.count and sc.providers.count:
        assert rep["market"]["deployments"] >= 1
        # every lease on chain went through the lease checks (state checks are on)
        leases = sum(p["leases"] for p in rep["market"]["providers"].values())
        assert sc.invariants.state_checks
        assert rep["invariant_checks"].get("order-leased-once", 0) >= leases
        assert rep["invariant_checks"].get("lease-price", 0) >= leases
