"""Helpers for CLI tests: run ``p2pakash.cli.main`` in-process with chosen commands, or the
real console script in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import attrs
import click
import pytest

import p2pakash.cli as cli_pkg

SCRIPT = Path(sys.executable).parent / "p2pakash"


@attrs.frozen(kw_only=True)
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


def run_main(argv: list[str], command: click.Command, capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> Result:
    """Run ``p2pakash.cli.main(argv)`` with only ``command`` registered, so a broken module
    of another command cannot fail these tests; error handling is main's own."""
    monkeypatch.setattr(cli_pkg, "_load_commands", lambda: cli_pkg.cli.add_command(command))
    capsys.readouterr()
    try:
        cli_pkg.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return Result(code=code, out=captured.out, err=captured.err)


def run_script(argv: list[str], cwd: Path) -> Result:
    """Run the installed ``p2pakash`` console script."""
    proc = subprocess.run([str(SCRIPT), *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)
    return Result(code=proc.returncode, out=proc.stdout, err=proc.stderr)
