"""``p2pakash doctor [--home DIR]``: is this machine (and this node home) ready?

Rules: one line per check, ``[PASS]``/``[FAIL]``/``[WARN]``/``[SKIP]``, a ``fix:`` line
under each failure; exit code 1 when any check failed, else 0. Without ``--home`` only the
machine is checked (clock, podman, GPUs).
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="doctor")
@click.option("--home", "home_dir", type=click.Path(path_type=Path, file_okay=False),
              help="node home folder to check")
@click.option("--seeds-timeout", type=click.FloatRange(min=0.1), default=5.0,
              show_default=True, help="seconds per seed handshake")
def command(home_dir: Path | None, seeds_timeout: float) -> None:
    """Check ports, key permissions, clock, Podman, GPUs and seeds."""
    from p2pakash.doctor import FAIL, run_checks

    checks = run_checks(home_dir, seeds_timeout=seeds_timeout)
    for check in checks:
        click.echo(check.line())
    failed = [c for c in checks if c.status == FAIL]
    click.echo(f"{len(checks)} checks, {len(failed)} failed")
    if failed:
        raise SystemExit(1)
