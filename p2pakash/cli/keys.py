"""``p2pakash keys``: create and show node keys.

Rules: a key file is written 0600 and never overwritten; ``show`` never prints the seed
and refuses a key file that group or others can read (one line with the chmod fix, exit
2). The key location is ``--home DIR`` (DIR/node_key.json) or ``--file PATH``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from p2pakash import crypto, home


def _key_file(home_dir: Path | None, file: Path | None) -> Path:
    if file is not None and home_dir is None:
        return file
    if home_dir is not None and file is None:
        return home.key_path(home_dir)
    raise click.UsageError("give exactly one of --home DIR or --file PATH")


def _print_key(key: crypto.PrivateKey, path: Path, as_json: bool) -> None:
    info = {"node_id": key.node_id, "address": key.address,
            "public_key": key.public.hex(), "file": str(path)}
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        for name, value in info.items():
            click.echo(f"{name}: {value}")


_home_option = click.option("--home", "home_dir", type=click.Path(path_type=Path),
                            help="node home folder (key at DIR/node_key.json)")
_file_option = click.option("--file", "file", type=click.Path(path_type=Path),
                            help="key file path")
_json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")


@click.group(name="keys")
def command() -> None:
    """Create and show node identity keys."""


@command.command(name="new")
@_home_option
@_file_option
@_json_option
def new(home_dir: Path | None, file: Path | None, as_json: bool) -> None:
    """Generate a new key (mode 0600; refuses to overwrite)."""
    path = _key_file(home_dir, file)
    key = crypto.PrivateKey.generate()
    crypto.save_key(path, key)
    _print_key(key, path, as_json)


@command.command(name="show")
@_home_option
@_file_option
@_json_option
def show(home_dir: Path | None, file: Path | None, as_json: bool) -> None:
    """Show a key's node ID, address and public key (never the seed)."""
    path = _key_file(home_dir, file)
    _print_key(crypto.load_key(path), path, as_json)
