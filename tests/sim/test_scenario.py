"""Scenario files: shipped ones load; bad ones are refused before a run, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pakash.cli import main
from p2pakash.config import ConfigFileError
from p2pakash.sim.faults import schedule
from p2pakash.sim.scenario import load_scenario, structure_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "simulations").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_shipped_scenarios_load(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.name == path.stem
    assert sc.purpose


def test_quickstart_is_the_issue_s_market() -> None:
    sc = load_scenario(ROOT / "simulations" / "quickstart.toml")
    assert sc.validators.count == 4 and sc.duration == 600.0
    assert sc.providers.count == 3 and sc.tenants.count == 5
    assert sc.not_simulated() == []
    assert Path(sc.tenants.sdl_dir).is_absolute()  # resolved against the scenario file
    assert Path(sc.tenants.sdl_dir) == ROOT / "simulations" / "sdl"


SDL = ROOT / "simulations" / "sdl"
MARKET = {"providers": {"count": 1}, "tenants": {"count": 1, "arrival_rate": 0.1,
                                                   "sdl_dir": str(SDL)}}


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "x", "colour": "red"}, "colour: unknown key"),
    ({"name": "x", "network": {"latncy_ms": 3}}, "network.latncy_ms: unknown key"),
    ({"name": "x", "network": {"topic_degree": {"consensus/vote": [0, 1, 2]}}},
     "network.topic_degree.consensus/vote: expected [d_lo, d, d_hi]"),
    ({"name": "x", "faults": [{"kind": "crash", "node": "v1", "bogus": 1}]},
     "faults[0].bogus: unknown key"),
    ({"name": "x", "duration": "ten"}, "duration: expected a number"),
    ({"name": "x", "validators": {"count": 0}}, "validators.count: must be positive"),
    ({"name": "x", "faults": [{"kind": "crash", "node": "v9"}]},
     "faults[0].node: no node named 'v9'"),
    ({"name": "x", "faults": [{"kind": "melt", "node": "v0"}]}, "faults[0].kind: unknown fault"),
    ({"name": "x", "full_nodes": {"count": 1}, "faults": [{"kind": "equivocate", "node": "f0"}]},
     "faults[0].node: no validator named 'f0'"),
    ({"name": "x", "partitions": [{"at": 5.0, "heal": 2.0, "groups": [["v0"]]}]},
     "partitions[0].heal: must be after at"),
    ({"name": "x", "partitions": [{"at": 1.0, "groups": [["v0"], ["v0", "v1"]]}]},
     "partitions[0].groups[1]: 'v0' is in two groups"),
    ({"name": "x", "network": {"regions": ["a", "b"], "region_latency_ms": [[1, 2]]}},
     "network.region_latency_ms: must be a 2x2 matrix"),
    ({"name": "x", **MARKET, "providers": {"count": 1, "pricing": "no-such-plugin"}},
     "providers.pricing: "),
    ({"name": "x", **MARKET, "providers": {"count": 1, "node": {"cpuu": 3}}},
     "providers.node.cpuu: unknown key"),
    ({"name": "x", **MARKET, "tenants": {"count": 1, "arrival_rate": 0.1}},
     "tenants.sdl_dir: a folder of SDL templates is required"),
    ({"name": "x", **MARKET, "tenants": {"count": 1, "arrival_rate": 0.1,
                                         "sdl_dir": "/nonexistent-sdl"}},
     "tenants.sdl_dir: /nonexistent-sdl: not a folder"),
    ({"name": "x", "tenants": {"count": 2, "arrival_rate": 0.1, "sdl_dir": str(SDL)}},
     "tenants.arrival_rate: tenants deploy but there are no providers"),
    ({"name": "x", **MARKET, "faults": [{"kind": "containers_die", "node": "t0"}]},
     "faults[0].node: no provider named 't0'"),
    ({"name": "x", "providers": {"count": 2, "gpus": [{"count": 2}]}},
     "providers.gpus[0].model: a GPU model is required"),
])
def test_bad_scenarios_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigFileError) as info:
        structure_scenario(data, source="s.toml")
    assert any(line.startswith("s.toml: ") and message in line for line in info.value.problems), \
        info.value.problems


def test_cli_refuses_unknown_key_before_running(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\n[validators]\ncount = 4\nsteak = 10\n')
    with pytest.raises(SystemExit) as info:
        main(["sim", "run", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    assert info.value.code == 2
    assert f"{path}: validators.steak: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_schedule_orders_events_by_time_then_file_order() -> None:
    sc = structure_scenario({
        "name": "x", "duration": 100.0,
        "faults": [{"kind": "crash", "node": "v1", "at": 30.0, "until": 40.0},
                   {"kind": "clock_skew", "node": "v2", "at": 10.0, "skew_ms": 50},
                   {"kind": "twin", "node": "v3", "at": 30.0}],
        "partitions": [{"at": 10.0, "heal": 200.0, "groups": [["v0", "v3-twin"]]}],
    }, source="t")
    events = [(e.at, e.action, e.node) for e in schedule(sc)]
    assert events == [(10.0, "skew", "v2"), (10.0, "partition", ""), (30.0, "crash", "v1"),
                      (30.0, "twin_start", "v3-twin"), (40.0, "restart", "v1")]


def test_a_bad_sdl_template_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text((SDL / "busybox-web.yaml").read_text())
    (tmp_path / "bad.yaml").write_text("version: '2.0'\nservices: {}\n")
    data = {"name": "x", **MARKET, "tenants": {"count": 1, "arrival_rate": 0.1,
                                                "sdl_dir": str(tmp_path)}}
    with pytest.raises(ConfigFileError) as info:
        structure_scenario(data, source="s.toml")
    assert any(line.startswith("s.toml: tenants.sdl_dir: ") and "bad.yaml" in line
               for line in info.value.problems), info.value.problems
