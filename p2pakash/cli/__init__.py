"""The ``p2pakash`` command.

Rules: every sub-command group lives in its own module in this package and exposes a
click command or group named ``command``; the module's name (less a ``_cmd`` suffix) is the
command's name, so adding a module adds a command. Modules are imported only when their
command runs. Bad user input ends in one line naming what and where, and exit
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


class _LazyGroup(click.Group):
    """Sub-commands are imported only when used, so ``p2pakash sdl validate`` does not pay
    for importing the node, the simulator and every other command first."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_modules()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        module_name = _modules().get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"{__name__}.{module_name}")
        command = getattr(module, "command", None)
        if not isinstance(command, click.Command):
            return None
        self.add_command(command, cmd_name)
        return command


def _modules() -> dict[str, str]:
    """Command name -> module name: a module ``foo.py`` or ``foo_cmd.py`` is command ``foo``."""
    return {info.name.removesuffix("_cmd"): info.name
            for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")}


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="p2pakash")
def cli() -> None:
    """p2pakash: a peer-to-peer GPU and compute marketplace (Akash-compatible)."""


def _load_commands() -> None:
    """Import every command now (tests that drive ``cli`` with click's runner use it)."""
    for name in _modules():
        cli.get_command(click.Context(cli), name)


def main(argv: list[str] | None = None) -> None:
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
