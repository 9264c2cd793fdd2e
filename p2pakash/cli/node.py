"""``p2pakash node``: set up and run a node.

Rules: ``init`` creates HOME/config.toml (with ``home = "."``) and HOME/node_key.json and
overwrites nothing: if either exists it stops with one line and exit 2 before writing.
Options are checked by the same rules as a config file (errors name the option's key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import click

from p2pakash import crypto, home
from p2pakash.config import dump_config, structure_config


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@click.group(name="node")
def command() -> None:
    """Set up and run a p2pakash node."""


@command.command(name="init")
@click.option("--home", "home_dir", required=True, type=click.Path(path_type=Path),
              help="home folder to create")
@click.option("--moniker", default="node0", show_default=True, help="human-readable name")
@click.option("--chain-id", default="p2pakash-local", show_default=True)
@click.option("--listen", default="127.0.0.1:26656", show_default=True, help="HOST:PORT")
@click.option("--seeds", default="", help="comma-separated ID@HOST:PORT")
@click.option("--persistent-peers", default="", help="comma-separated ID@HOST:PORT")
def init(home_dir: Path, moniker: str, chain_id: str, listen: str, seeds: str,
         persistent_peers: str) -> None:
    """Create a node home folder with a config file and a new node key."""
    data: dict[str, Any] = {
        "chain_id": chain_id, "moniker": moniker, "home": ".",
        "p2p": {"listen": listen, "seeds": _split(seeds),
                "persistent_peers": _split(persistent_peers)},
    }
    cfg = structure_config(data, source="node init", base_dir=home_dir)
    key = crypto.PrivateKey.generate()
    text = dump_config(attrs.evolve(cfg, home=Path(".")))
    home.init_home(home_dir, config_toml=text, key=key)
    click.echo(f"node_id: {key.node_id}")
    click.echo(f"peer: {key.node_id}@{cfg.p2p.listen}")
    click.echo(f"config: {home.config_path(home_dir)}")
    click.echo(f"key: {home.key_path(home_dir)}")


@command.command(name="start")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="node config file")
@click.option("--home", "home_dir", type=click.Path(path_type=Path, file_okay=False),
              help="node home folder (uses HOME/config.toml)")
def start(config_file: Path | None, home_dir: Path | None) -> None:
    """Run a node until SIGINT or SIGTERM."""
    import trio

    from p2pakash.config import load_config
    from p2pakash.logs import setup_logging
    from p2pakash.node import Node
    from p2pakash.runtime import tune_gc

    if (config_file is None) == (home_dir is None):
        raise click.UsageError("give exactly one of --config FILE or --home DIR")
    path = config_file if config_file is not None else home.config_path(home_dir)  # type: ignore[arg-type]
    cfg = load_config(path)
    key = crypto.load_key(cfg.key_path)
    setup_logging(cfg.log.level, cfg.log.format, name=cfg.moniker)
    node = Node(cfg, key)

    async def run() -> None:
        import signal

        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                try:
                    await nursery.start(node.run)
                    tune_gc()
                except OSError as exc:
                    raise click.ClickException(
                        f"{path}: p2p.listen {cfg.p2p.listen}: {exc.strerror or exc}") from None
                async for signum in signals:
                    click.echo(f"{cfg.moniker}: {signal.Signals(signum).name}, shutting down",
                               err=True)
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(run)
    except BaseExceptionGroup as group:
        click_errors = group.subgroup(click.ClickException)
        if click_errors is not None:
            raise click_errors.exceptions[0] from None
        raise
