"""``p2pakash faucet serve|request``: a rate-limited testnet faucet and its client.

Rules: ``serve`` signs with ``--home DIR``'s node key (and talks to that node's API) or with
``--from KEYFILE`` and ``--node URL``; it binds 127.0.0.1:26690 unless ``--listen`` says
otherwise, and stops on SIGINT/SIGTERM. ``request ADDRESS`` asks a faucet (``--url``) and
prints the tx hash and height, or the faucet's reason in one line (exit 1).
"""

from __future__ import annotations

import json
import signal
import threading
import urllib.error
import urllib.request
from pathlib import Path

import click

from p2pakash import crypto, home
from p2pakash.cli.query import check_address, parse_amount
from p2pakash.client import NodeClient, node_url, normalize_url
from p2pakash.errors import P2PAkashError

DEFAULT_FAUCET = "http://127.0.0.1:26690"


@click.group(name="faucet")
def command() -> None:
    """Hand out testnet tokens (rate-limited per address and per day)."""


@command.command(name="serve")
@click.option("--home", "home_dir", type=click.Path(path_type=Path, file_okay=False),
              help="sign with DIR/node_key.json and use DIR's node API")
@click.option("--from", "from_file", type=click.Path(path_type=Path, dir_okay=False),
              help="sign with this key file instead")
@click.option("--node", "node", metavar="URL", help="node API URL (default: --home's)")
@click.option("--amount", required=True, help="amount per grant (uakt or e.g. 100akt)")
@click.option("--listen", default="127.0.0.1:26690", show_default=True, help="HOST:PORT")
@click.option("--per-address", type=click.IntRange(min=1), default=1, show_default=True,
              help="grants per address per day")
@click.option("--daily-cap", default="0", show_default=True,
              help="total given per day (0: no cap)")
def serve(home_dir: Path | None, from_file: Path | None, node: str | None, amount: str,
          listen: str, per_address: int, daily_cap: str) -> None:
    """Serve POST /request {"address": ...} until SIGINT or SIGTERM."""
    from p2pakash.faucet import Allowance, Faucet, make_server
    from p2pakash.logs import setup_logging

    if (home_dir is None) == (from_file is None):
        raise click.UsageError("give exactly one of --home DIR or --from KEYFILE")
    key = crypto.load_key(from_file if from_file is not None
                          else home.key_path(home_dir))  # type: ignore[arg-type]
    cap = parse_amount(daily_cap, "--daily-cap", zero_ok=True)
    allowance = Allowance(amount=parse_amount(amount, "--amount"), per_address=per_address,
                          daily_cap=cap)
    client = NodeClient(node_url(node, home_dir), timeout=10.0)
    faucet = Faucet(key=key, client=client, allowance=allowance)
    setup_logging("info", name="faucet")
    try:
        server = make_server(faucet, listen)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"--listen {listen}: {getattr(exc, 'strerror', None) or exc}"
                                   ) from None
    host, port = str(server.server_address[0]), int(server.server_address[1])
    click.echo(f"faucet {key.address} on http://{host}:{port}: {allowance.amount} uakt per "
               f"grant, {per_address} per address per day, node {client.url}")

    def on_signal(signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        for s, handler in old.items():
            signal.signal(s, handler)
    click.echo("faucet stopped")


@command.command(name="request")
@click.argument("address")
@click.option("--url", default=DEFAULT_FAUCET, show_default=True, help="the faucet's URL")
@click.option("--timeout", type=click.FloatRange(min=1.0), default=60.0, show_default=True)
def request(address: str, url: str, timeout: float) -> None:
    """Ask the faucet at --url for tokens for ADDRESS."""
    check_address(address)
    try:
        target = normalize_url(url) + "/request"
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    req = urllib.request.Request(target, data=json.dumps({"address": address}).encode(),
                                 method="POST", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            why = json.loads(exc.read()).get("error", f"HTTP {exc.code}")
        except ValueError:
            why = f"HTTP {exc.code}"
        raise P2PAkashError(f"faucet at {url} refused: {why}") from None
    except (OSError, ValueError) as exc:
        raise P2PAkashError(f"cannot reach the faucet at {url}: "
                            f"{getattr(exc, 'reason', exc)}") from None
    click.echo(f"received {doc['amount']} uakt at {doc['address']}: tx {doc['hash']} "
               f"committed at height {doc['height']}")
