"""``p2pakash testnet init|start|stop``: a local testnet of separate node processes.

Rules: ``init`` writes a folder that is absent or empty (nothing is overwritten);
``start`` runs every node as its own process, waits until each answers at height >= 1,
prints a table of nodes, ports and API URLs, and stops them all on SIGINT/SIGTERM (or when
one dies: its log tail is shown, exit 1). ``--detach`` leaves them running; ``stop DIR``
ends them. ``--executor auto`` picks podman when it can run a container here, else fake.
"""

from __future__ import annotations

import signal
import tempfile
import threading
from pathlib import Path

import click

from p2pakash.testnet import LAYOUT_FILE, init_testnet, load_layout


@click.group(name="testnet")
def command() -> None:
    """Create, run and stop a local testnet."""


def resolve_executor(executor: str) -> tuple[str, str]:
    """(executor, why) for ``podman|fake|auto``; ``why`` says why auto chose fake."""
    if executor != "auto":
        return executor, ""
    from p2pakash.executor.podman_setup import podman_unusable_reason

    with tempfile.TemporaryDirectory(prefix="p2pakash-probe-") as tmp:
        reason = podman_unusable_reason(Path(tmp))
    return ("fake", reason) if reason else ("podman", "")


@command.command(name="init")
@click.option("--validators", type=int, default=4, show_default=True)
@click.option("--providers", type=int, default=0, show_default=True)
@click.option("--tenants", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="folder to create")
@click.option("--chain-id", default="p2pakash-testnet", show_default=True)
@click.option("--base-port", type=int, default=26600, show_default=True,
              help="node k listens on BASE+2k (p2p) and BASE+2k+1 (API)")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address the nodes listen on and advertise")
@click.option("--executor", type=click.Choice(["podman", "fake", "auto"]), default="auto",
              show_default=True, help="container runtime of the providers")
def init(validators: int, providers: int, tenants: int, out: Path, chain_id: str,
         base_port: int, host: str, executor: str) -> None:
    """Write a genesis and one home per node into OUT."""
    chosen, why = resolve_executor(executor)
    if why and providers:
        click.echo(f"podman unusable ({why}): providers use the fake executor")
    layout = init_testnet(out, validators=validators, providers=providers, tenants=tenants,
                          chain_id=chain_id, base_port=base_port, executor=chosen, host=host)
    click.echo(f"testnet {layout.chain_id} in {layout.root}: {len(layout.nodes)} nodes, "
               f"genesis hash {layout.genesis_hash}, executor {layout.executor}")
    for entry in layout.nodes:
        click.echo(f"  {entry.name:<12} {entry.role:<9} p2p {entry.p2p:<21} api {entry.url}")
    click.echo(f"faucet account {layout.faucet_address} (key {layout.faucet_key})")
    click.echo(f"start it with: p2pakash testnet start {out}")


@command.command(name="start")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--detach", is_flag=True, help="leave the nodes running and return")
@click.option("--timeout", type=click.FloatRange(min=1.0), default=90.0, show_default=True,
              help="seconds to wait for every node to be up")
def start(directory: Path, detach: bool, timeout: float) -> None:
    """Run every node of DIRECTORY as a separate process."""
    from p2pakash.testnet_run import Testnet, TestnetError

    layout = load_layout(directory)
    net = Testnet(layout)
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_requested.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    detached = False
    try:
        net.start()
        click.echo(f"starting {len(layout.nodes)} nodes of {layout.chain_id} "
                   f"(logs: {layout.root}/NODE/node.log)")
        net.wait_ready(timeout=timeout, progress=lambda line: click.echo(f"  {line}"),
                       stop=stop_requested.is_set)
        click.echo(net.table())
        if detach:
            click.echo(f"running in the background; stop with: p2pakash testnet stop "
                       f"{directory}")
            detached = True
            return
        click.echo("press Ctrl-C to stop the testnet")
        while not stop_requested.wait(0.5):
            net.check_alive()
        click.echo("stopping the testnet")
    except TestnetError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if not detached:
            codes = net.stop()
            bad = {name: code for name, code in codes.items() if code not in (0, None)}
            click.echo("all nodes stopped" + (f" (exit codes: {bad})" if bad else " cleanly"))


@command.command(name="stop")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
def stop(directory: Path) -> None:
    """Stop the nodes a detached ``testnet start DIRECTORY`` left running."""
    from p2pakash.testnet_run import stop_detached

    layout = load_layout(directory)
    stopped = stop_detached(layout)
    if not stopped:
        click.echo(f"nothing running for {layout.root / LAYOUT_FILE}")
        return
    click.echo(f"stopped {', '.join(stopped)}")
