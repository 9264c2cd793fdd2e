"""The run report: ``report.json`` plus PNG plots, from a ``SimResult``.

Rules and invariants:
* Everything in the report except ``WALL_FIELDS`` is a function of the scenario and the
  seed: two runs with the same inputs give byte-identical JSON once those fields are
  removed (``deterministic_view``). Keys are sorted, floats rounded to microseconds.
* ``final_height`` is the highest height any node committed; ``final_block_hash`` is that
  block's hash (hex). The invariant checker guarantees one block per height, so the hash
  does not depend on which node is asked.
* Block intervals come from header times (the proposer's clock), commit latency is the
  virtual time a node committed a block minus the block's header time.
* ``checkpoints`` (every ``CHECKPOINT_EVERY`` virtual seconds: time, height, hash) let a
  replay prove it followed the same chain.
* The report embeds the scenario (as data) so ``sim replay REPORT`` needs nothing else.
* ``market``: deployments by outcome; ``fill_rate`` = leased / deployments that finished
  (a deploy still collecting bids at the end is ``pending`` and not counted); latencies
  from the tenant publishing its order to the first bid it accepted as valid and to the
  CreateLease commit it saw; lease prices (uakt per block) by the GPU models of the chosen
  bid (``cpu-only`` without GPUs); per provider its GPUs, price factor, leases, revenue
  (withdrawn + accrued payments, from the ledger at the end) and mean leased share of its
  GPUs and CPU over the samples.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import attrs

from p2pakash.sim.runner import SimResult
from p2pakash.sim.scenario import scenario_data

WALL_FIELDS = ("wall_seconds", "speedup")
CHECKPOINT_EVERY = 10.0


def _r(x: float) -> float:
    return round(x, 6)


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    v = sorted(values)

    def pct(p: float) -> float:
        return v[min(len(v) - 1, max(0, math.ceil(p * len(v)) - 1))]

    return {"count": len(v), "mean": _r(sum(v) / len(v)), "min": _r(v[0]), "p50": _r(pct(0.5)),
            "p95": _r(pct(0.95)), "max": _r(v[-1])}


def _intervals_and_latency(result: SimResult) -> tuple[list[float], list[float]]:
    """Block intervals (header times) and commit latencies (commit - header time), seconds."""
    times = result.block_times_ms
    intervals = [(times[h] - times[h - 1]) / 1000 for h in sorted(times) if h - 1 in times]
    latency = [t - times[h] / 1000 for h, per in result.commit_times.items()
               for t in per.values()]
    return intervals, latency


def _prices_by_gpu(result: SimResult) -> dict[str, list[int]]:
    """Lease prices (uakt per block) of leased deployments, by the chosen bid's GPU models."""
    prices: dict[str, list[int]] = {}
    for d in result.market.deploys:
        if d.outcome == "leased":
            prices.setdefault(",".join(d.gpus) or "cpu-only", []).append(d.price)
    return prices


def _checkpoints(result: SimResult) -> list[list[Any]]:
    first = sorted((min(times.values()), h) for h, times in result.commit_times.items())
    out: list[list[Any]] = []
    t, i, height = CHECKPOINT_EVERY, 0, 0
    while t <= result.virtual_seconds + 1e-9:
        while i < len(first) and first[i][0] <= t:
            height = max(height, first[i][1])
            i += 1
        if height:
            out.append([_r(t), height, result.block_hashes[height].hex()])
        t += CHECKPOINT_EVERY
    return out


def build_report(result: SimResult) -> dict[str, Any]:
    sc = result.scenario
    checker = result.checker
    final = max(result.block_hashes, default=0)
    intervals, latency = _intervals_and_latency(result)
    per_node: dict[str, dict[str, int]] = {}
    delivered = duplicates = 0
    for node in result.nodes:
        stats_now = node.past  # every incarnation has finished when the report is built
        per_node[node.name] = {
            "messages_in": stats_now.items_in, "messages_out": stats_now.items_out,
            "frames_in": stats_now.frames_in, "frames_out": stats_now.frames_out,
            "bytes_in": stats_now.bytes_in, "bytes_out": stats_now.bytes_out,
            "dropped_out": stats_now.dropped_out, "bans": stats_now.bans,
            "starts": node.starts, "height": node.chain.height if node.chain else 0,
        }
        delivered += node.past_pubsub.get("delivered", 0)
        duplicates += node.past_pubsub.get("duplicates", 0)
    copies = (delivered + duplicates) / delivered if delivered else 0.0
    wall = result.wall_seconds
    report = {
        "scenario": sc.name,
        "purpose": sc.purpose,
        "scenario_data": scenario_data(sc),
        "seed": result.seed,
        "until": _r(result.until),
        "stopped_by": result.stopped_by,
        "virtual_seconds": _r(result.virtual_seconds),
        "wall_seconds": round(wall, 3),
        "speedup": round(result.virtual_seconds / wall, 1) if wall > 0 else 0.0,
        "final_height": final,
        "final_block_hash": result.block_hashes[final].hex() if final else "",
        "invariant_violations": [attrs.asdict(v) for v in checker.violations] if checker else [],
        "invariant_checks": dict(sorted(checker.checks.items())) if checker else {},
        "not_simulated": sc.not_simulated(),
        "block_interval": stats(intervals),
        "commit_latency": stats(latency),
        "gossip": {"copies_per_message": _r(copies), "delivered": delivered,
                   "duplicates": duplicates},
        "network": dict(sorted(result.network.items())),
        "txs_submitted": result.txs_submitted,
        "txs_committed": result.txs_committed,
        "nodes": per_node,
        "validators": result.validators,
        "checkpoints": _checkpoints(result),
        "market": market_report(result),
    }
    return dict(json.loads(json.dumps(report)))  # plain JSON types: tuples become lists


def market_report(result: SimResult) -> dict[str, Any]:
    m = result.market
    names: dict[str, str] = {str(n.key.address): n.name for n in result.nodes}
    outcomes: dict[str, int] = {}
    for d in m.deploys:
        outcomes[d.outcome] = outcomes.get(d.outcome, 0) + 1
    finished = sum(v for k, v in outcomes.items() if k != "pending")
    leased = [d for d in m.deploys if d.outcome == "leased"]
    templates: dict[str, dict[str, int]] = {}
    for d in m.deploys:
        t = templates.setdefault(d.template, {"deployments": 0, "leased": 0})
        t["deployments"] += 1
        t["leased"] += int(d.outcome == "leased")
    providers: dict[str, dict[str, Any]] = {}
    for node in result.nodes:
        if node.engine is None:
            continue
        samples, gpu_busy, cpu_busy = m.busy.get(node.name, (0, 0.0, 0.0))
        gpu = node.gpu
        providers[node.name] = {
            "gpus": f"{gpu.count}x {gpu.model}" if gpu is not None else "",
            "price_factor": _r(float(node.price_factor)),
            **result.revenue.get(node.name, {}),
            "won": sum(1 for d in leased if names.get(d.provider) == node.name),
            "gpu_utilisation": _r(gpu_busy / samples) if samples else 0.0,
            "cpu_utilisation": _r(cpu_busy / samples) if samples else 0.0,
        }
    last = m.utilisation[-1] if m.utilisation else None
    return {
        "deployments": len(m.deploys), "outcomes": dict(sorted(outcomes.items())),
        "fill_rate": _r(len(leased) / finished) if finished else 0.0,
        "order_to_first_bid": stats([d.first_bid - d.started for d in m.deploys
                                     if d.first_bid is not None]),
        "order_to_lease": stats([d.lease_at - d.started for d in leased
                                 if d.lease_at is not None]),
        "prices_by_gpu": {k: stats([float(x) for x in v])
                          for k, v in sorted(_prices_by_gpu(result).items())},
        "by_template": dict(sorted(templates.items())),
        "closed_by_tenants": m.closes, "containers_killed": m.containers_killed,
        "revenue_uakt": sum(p.get("earned_uakt", 0) for p in providers.values()),
        "gpus_leased_at_end": [last[1], last[2]] if last else [0, 0],
        "providers": providers,
    }


def deterministic_view(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the wall-clock fields (what two runs must agree on)."""
    return {k: v for k, v in report.items() if k not in WALL_FIELDS}


def write_plots(result: SimResult, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        made.append(path)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ts = [s[0] for s in result.samples]
    ax.plot(ts, [s[2] for s in result.samples], label="max height")
    ax.plot(ts, [s[1] for s in result.samples], label="min height (running nodes)")
    ax.set_xlabel("virtual seconds")
    ax.set_ylabel("height")
    ax.legend()
    save(fig, "heights.png")

    intervals, latency = _intervals_and_latency(result)
    for name, values, label in (("block_interval.png", intervals, "block interval (s)"),
                                ("commit_latency.png", latency, "commit latency (s)")):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.hist(values or [0.0], bins=40)
        ax.set_xlabel(label)
        ax.set_ylabel("count")
        save(fig, name)

    if result.market.utilisation:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        u = result.market.utilisation
        ax.plot([x[0] for x in u], [x[1] / x[2] if x[2] else 0 for x in u], label="GPUs leased")
        ax.plot([x[0] for x in u], [x[3] / x[4] if x[4] else 0 for x in u], label="CPU leased")
        ax.set_xlabel("virtual seconds")
        ax.set_ylabel("share of provider capacity")
        ax.legend()
        save(fig, "utilisation.png")
        prices = _prices_by_gpu(result)
        if prices:
            fig, ax = plt.subplots(figsize=(7, 3.5))
            keys = sorted(prices)
            ax.boxplot([prices[k] for k in keys])
            ax.set_xticks(range(1, len(keys) + 1), keys, rotation=30)
            ax.set_ylabel("lease price (uakt/block)")
            save(fig, "prices.png")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [n.name for n in result.nodes]
    ax.bar(names, [n.past.bytes_out / 1e6 for n in result.nodes])
    ax.set_ylabel("MB sent")
    ax.tick_params(axis="x", labelrotation=90)
    save(fig, "traffic.png")
    return made


def write_report(result: SimResult, out: Path, *, plots: bool = True) -> dict[str, Any]:
    """Write ``out/report.json`` (and the PNGs); returns the report."""
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(result)
    text = json.dumps(report, sort_keys=True, indent=1)
    tmp = out / "report.json.tmp"
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(out / "report.json")
    if plots:
        write_plots(result, out)
    return report


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"scenario {report['scenario']} seed {report['seed']}: {report['stopped_by']} after "
        f"{report['virtual_seconds']:.1f} virtual s in {report['wall_seconds']:.1f} wall s "
        f"({report['speedup']}x)",
        f"final height {report['final_height']} hash {report['final_block_hash'][:16]}",
        f"block interval mean {report['block_interval'].get('mean', 0):.3f} s, commit latency "
        f"p95 {report['commit_latency'].get('p95', 0):.3f} s, gossip copies/message "
        f"{report['gossip']['copies_per_message']:.2f}",
    ]
    mk = report.get("market", {})
    if mk.get("deployments"):
        lines.append(
            f"market: {mk['deployments']} deployments, fill rate {mk['fill_rate']:.2f}, "
            f"order->first bid p50 {mk['order_to_first_bid'].get('p50', 0):.3f} s, "
            f"order->lease p50 {mk['order_to_lease'].get('p50', 0):.3f} s, provider revenue "
            f"{mk['revenue_uakt'] / 1e6:.3f} AKT")
    if report["not_simulated"]:
        lines.append(f"not simulated yet: {', '.join(report['not_simulated'])}")
    for v in report["invariant_violations"]:
        lines.append(f"VIOLATION {v['invariant']} at virtual time {v['virtual_time']:.3f} s "
                     f"(seed {v['seed']}, node {v['node']}, height {v['height']}): "
                     f"{v['detail']}")
    return "\n".join(lines)


__all__ = ["WALL_FIELDS", "build_report", "deterministic_view", "stats", "summary",
           "write_plots", "write_report"]
