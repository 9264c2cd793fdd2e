"""``p2pakash node``: set up and run a node.

Rules: ``init`` creates HOME/config.toml (with ``home = "."``) and HOME/node_key.json and
overwrites nothing: if either exists it stops with one line and exit 2 before writing.
Options are checked by the same rules as a config file (errors name the option's key).
``start`` ends a node that fails with a P2PAkashError (a full disk, corrupted storage) with
that error's one line and exit 1 (2 for a ConfigError), not a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import click

from p2pakash import crypto, home
from p2pakash.config import dump_config, structure_config
from p2pakash.errors import P2PAkashError


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
@click.option("--genesis", "genesis", default="", metavar="FILE_OR_URL",
              help="join a network: copy its genesis (file or http(s) URL) into the home")
@click.option("--genesis-hash", default="", metavar="HEX",
              help="the network's published genesis hash; any other genesis is refused")
@click.pass_context
def init(ctx: click.Context, home_dir: Path, moniker: str, chain_id: str, listen: str,
         seeds: str, persistent_peers: str, genesis: str, genesis_hash: str) -> None:
    """Create a node home folder with a config file and a new node key."""
    doc = None
    if genesis:  # joining: the chain ID comes from the genesis unless given
        from p2pakash.testnet import fetch_genesis

        doc = fetch_genesis(genesis, expected_hash=genesis_hash)
        if ctx.get_parameter_source("chain_id") is click.core.ParameterSource.DEFAULT:
            chain_id = doc.chain_id
        elif chain_id != doc.chain_id:
            raise click.UsageError(f"--chain-id {chain_id} differs from the genesis's "
                                   f"{doc.chain_id} ({genesis})")
        if home.genesis_path(home_dir).exists():
            raise click.ClickException(f"{home.genesis_path(home_dir)}: already exists; "
                                       f"refusing to overwrite it")
    data: dict[str, Any] = {
        "chain_id": chain_id, "moniker": moniker, "home": ".",
        "p2p": {"listen": listen, "seeds": _split(seeds),
                "persistent_peers": _split(persistent_peers)},
    }
    cfg = structure_config(data, source="node init", base_dir=home_dir)
    key = crypto.PrivateKey.generate()
    text = dump_config(attrs.evolve(cfg, home=Path(".")))
    home.init_home(home_dir, config_toml=text, key=key)
    if doc is not None:
        from p2pakash.ledger.genesis import save_genesis

        save_genesis(home.genesis_path(home_dir), doc)
        click.echo(f"genesis: {home.genesis_path(home_dir)} (chain {doc.chain_id}, hash "
                   f"{doc.genesis_hash().hex()})")
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
        ours = group.subgroup(P2PAkashError)  # e.g. a full disk: one line, exit 1
        if ours is not None:
            raise first_leaf(ours) from None
        raise


def first_leaf(group: BaseExceptionGroup[P2PAkashError]) -> P2PAkashError:
    """The first exception of ``group``, however deeply nested."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, P2PAkashError)
    return error
