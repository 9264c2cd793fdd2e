"""``p2pakash sim``: run a simulation scenario, or replay a report up to a virtual time.

Rules: the scenario is checked before anything runs (a bad key ends in one line naming
the file and the key, exit code 2). A run always writes ``DIR/report.json`` and its plots,
also when it stops on a violation (exit code 1) or on the wall-clock limit (exit code 0,
``stopped_by: wall_limit``). ``replay`` re-runs the scenario and seed embedded in a report
up to ``--until`` with debug tracing (``DIR/trace.log``, each line stamped with virtual
time) and checks that its chain matches the report's checkpoints.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click
import trio

from p2pakash.errors import ConfigError
from p2pakash.sim import report as sim_report
from p2pakash.sim.runner import Runner, SimResult, run
from p2pakash.sim.scenario import Scenario, load_scenario, structure_scenario


class _ProgressBar:
    """A rich progress bar on stderr: virtual time, height, leases, speed-up."""

    def __init__(self, total: float, name: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]{task.fields[name]}"), BarColumn(),
                                 TextColumn("{task.completed:.0f}/{task.total:.0f} vs"),
                                 TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=Console(stderr=True), auto_refresh=False)
        self.task = self.progress.add_task("", total=total, name=name)
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, runner: Runner) -> None:
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        vt = runner.result.virtual_seconds
        height = max((n.height for n in runner.nodes), default=0)
        speed = vt / max(1e-9, now - self.started)
        leases = sum(1 for d in runner.result.market.deploys if d.outcome == "leased")
        self.progress.update(self.task, completed=vt,
                             description=f"height {height}  leases {leases}  {speed:.0f}x")
        self.progress.refresh()


def _run(sc: Scenario, *, seed: int | None, until: float | None, wall_limit: float | None,
         out: Path, plots: bool, quiet: bool) -> tuple[SimResult, dict[str, Any]]:
    for name in sc.not_simulated():
        click.echo(f"note: [{name}] is not simulated yet (its service does not exist); "
                   "the run goes on without it", err=True)
    bar = None if quiet else _ProgressBar(until if until is not None else sc.duration, sc.name)
    if bar is not None:
        bar.progress.start()
    try:
        result = run(sc, seed=seed, until=until, wall_limit=wall_limit, progress=bar)
    finally:
        if bar is not None:
            bar.progress.stop()
    return result, sim_report.write_report(result, out, plots=plots)


@click.group("sim")
def command() -> None:
    """Run whole networks in one process on virtual time (see docs/simulation.md)."""


@command.command("run")
@click.argument("scenario_file", metavar="SCENARIO.toml",
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder (default: sim-out/<scenario>-<seed>).")
@click.option("--until", type=float, default=None, help="Stop at this virtual second.")
@click.option("--wall-limit", type=float, default=None,
              help="Stop after this many wall-clock seconds (report still written).")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run_cmd(scenario_file: Path, seed: int | None, out: Path | None, until: float | None,
            wall_limit: float | None, no_plots: bool, quiet: bool) -> None:
    """Run SCENARIO.toml and write DIR/report.json plus plots."""
    sc = load_scenario(scenario_file)
    if until is not None and until <= 0:
        raise click.BadParameter("must be positive", param_hint="--until")
    out = out or Path("sim-out") / f"{sc.name}-{sc.seed if seed is None else seed}"
    _, rep = _run(sc, seed=seed, until=until, wall_limit=wall_limit, out=out,
                  plots=not no_plots, quiet=quiet)
    click.echo(sim_report.summary(rep))
    click.echo(f"report: {out / 'report.json'}")
    if rep["invariant_violations"]:
        v = rep["invariant_violations"][0]
        click.echo(f"replay: p2pakash sim replay {out / 'report.json'} --until "
                   f"{v['virtual_time']:.3f}", err=True)
        sys.exit(1)


class _VirtualTime(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.vt = f"{trio.current_time():12.6f}"
        except RuntimeError:
            record.vt = " " * 12
        return True


@command.command("replay")
@click.argument("report_file", metavar="REPORT",
                type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--until", type=float, required=True, help="Virtual second to stop at.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the replay's report and trace (default: beside REPORT).")
def replay_cmd(report_file: Path, until: float, out: Path | None) -> None:
    """Re-run the scenario and seed of REPORT up to --until with tracing on."""
    try:
        original = json.loads(report_file.read_text(encoding="utf-8"))
        data, seed = original["scenario_data"], original["seed"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{report_file}: not a simulation report ({exc})") from None
    sc = structure_scenario(data, source=f"{report_file}: scenario_data")
    out = out or report_file.parent / f"replay-{until:g}"
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "trace.log", mode="w", encoding="utf-8")
    handler.addFilter(_VirtualTime())
    handler.setFormatter(logging.Formatter("%(vt)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("p2pakash")
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        _, rep = _run(sc, seed=seed, until=until, wall_limit=None, out=out, plots=False,
                      quiet=True)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    click.echo(sim_report.summary(rep))
    theirs = {round(c[0], 6): c for c in original.get("checkpoints", [])}
    mismatched = [c for c in rep["checkpoints"] if c[0] in theirs and theirs[c[0]] != c]
    compared = sum(1 for c in rep["checkpoints"] if c[0] in theirs)
    click.echo(f"trace: {out / 'trace.log'}")
    if mismatched:
        click.echo(f"replay DIVERGED from the report at virtual time {mismatched[0][0]}: "
                   f"{mismatched[0]} vs {theirs[mismatched[0][0]]}", err=True)
        sys.exit(1)
    click.echo(f"replay matches the report at {compared} checkpoints")
