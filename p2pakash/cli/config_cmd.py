"""``p2pakash config``: check node config files.

Rules: ``check`` reads every file given; a good file prints ``FILE: ok`` on stdout; each
problem of a bad file is one line ``error: FILE: key.path: what`` on stderr; the exit
code is 0 when all are good, else 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from p2pakash.config import ConfigFileError, load_config


@click.group(name="config")
def command() -> None:
    """Work with node config files."""


@command.command(name="check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def check(files: tuple[Path, ...]) -> None:
    """Check config FILES; print FILE: ok or one line per problem."""
    failed = False
    for path in files:
        try:
            load_config(path)
        except ConfigFileError as exc:
            failed = True
            for line in exc.problems:
                click.echo(f"error: {line}", err=True)
        else:
            click.echo(f"{path}: ok")
    if failed:
        sys.exit(2)
