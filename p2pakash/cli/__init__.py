"""The ``p2pakash`` command.

Rules: every sub-command group lives in its own module in this package and exposes a
click command or group named ``command``; they are found here by module scan, so adding a
module adds a command. Bad user input ends in one line naming what and where, and exit
code 2 (usage, config, key) or 1 (an invalid document or a failed operation); never a
traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from p2pakash import __version__
from p2pakash.errors import ConfigError, P2PAkashError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="p2pakash")
def cli() -> None:
    """p2pakash: a peer-to-peer GPU and compute marketplace (Akash-compatible)."""


def _load_commands() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        command = getattr(module, "command", None)
        if isinstance(command, click.Command):
            cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    _load_commands()
    try:
        cli.main(args=argv, prog_name="p2pakash", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except P2PAkashError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
