"""``p2pakash deploy create|list|bids|deposit|close``: the tenant's deployments via its node.

Rules: the tenant is the node the CLI talks to (``--node URL``, else ``--home DIR``'s API,
else http://127.0.0.1:26680): its key signs the order, the lease and the manifest.
``create`` checks the SDL locally first (Akash's message, exit 1, without a node), then
streams the node's progress: bids as they arrive (provider, price, GPU models), declines,
the selection, the lease and the manifest. When no bid comes it prints "Why no bids?"
with every provider's reason. Exit 0 when the lease is active and the manifest accepted,
1 otherwise. ``--json`` prints the events as NDJSON, one object per line, ending with
``{"event": "done", "ok": ...}``. Prices are per block in this chain's ``uakt``; an SDL
priced in another denom needs ``--denom-rate DENOM=UAKT_PER_UNIT`` (explicit conversion).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from p2pakash.cli.query import echo, fmt_uakt, node_options, parse_amount
from p2pakash.client import Json, node_url
from p2pakash.errors import P2PAkashError
from p2pakash.tenant import plan
from p2pakash.tenant.client import TenantClient


def tenant_client(node: str | None, home_dir: Path | None, timeout: float = 60.0
                  ) -> TenantClient:
    try:
        return TenantClient(node_url(node, home_dir), timeout=timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--node") from None


def _short(address: str) -> str:
    return address if len(address) <= 20 else f"{address[:12]}…{address[-6:]}"


def event_line(e: Json) -> str:
    """One line of text for a progress event."""
    kind = e["event"]
    if kind == "order":
        groups = ", ".join(f"{g['name']} (max {g['max_price']} uakt/block)" for g in e["groups"])
        return (f"order {e['dseq']} published: {groups}; deposit {fmt_uakt(e['deposit'])}; "
                f"manifest {e['manifest_hash'][:16]}…")
    if kind == "bid":
        gpus = ", ".join(e["gpus"]) or "no GPU"
        return (f"bid      {e['provider']}  {e['price']} uakt/block  {gpus}  "
                f"(+{e['elapsed_ms']} ms)")
    if kind == "decline":
        return f"decline  {e['provider']}  {e['reason']}: {e['text']}"
    if kind == "bid_refused":
        return f"refused  {e['provider']}  {e['why']}"
    if kind == "selected":
        return f"selected {e['provider']} at {e['price']} uakt/block (group {e['gseq']})"
    if kind == "lease_tx":
        return f"lease tx {e['hash']}"
    if kind == "lease":
        return f"lease {e['lease']} active at height {e['height']} with {e['provider']}"
    if kind == "manifest":
        return (f"manifest accepted by {e['provider']}" if e["accepted"]
                else f"manifest refused by {e['provider']}: {e['error']}")
    if kind == "no_bids":
        out = [f"Why no bids? group {e['group']!r} of deployment {e['dseq']}:"]
        out += [f"  {d['provider']}: {d['reason']}: {d['text']}" for d in e["declines"]]
        if not e["declines"]:
            out.append("  no provider answered (none registered, none reachable, or all "
                       "silent)")
        return "\n".join(out)
    if kind == "done":
        if e["ok"]:
            return f"deployment {e['dseq']} is live: leases {', '.join(e.get('leases', []))}"
        return f"deployment {e['dseq']} failed ({e.get('stage', '?')}): {e.get('error', '')}"
    return json.dumps(e)


class LiveView:
    """A rich table of the answers while waiting; plain lines for everything else."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.header = Text("")
        self.table = Table(title="bids and declines", expand=False)
        for column in ("provider", "answer", "price (uakt/block)", "GPU / reason", "after"):
            self.table.add_column(column)

    def render(self) -> Group:
        return Group(self.header, self.table)

    def add(self, e: Json, live: Live) -> None:
        kind = e["event"]
        if kind == "order":
            self.header = Text(event_line(e))
        elif kind == "bid":
            self.table.add_row(_short(e["provider"]), "[green]bid[/]", str(e["price"]),
                               ", ".join(e["gpus"]) or "-", f"{e['elapsed_ms']} ms")
        elif kind == "decline":
            self.table.add_row(_short(e["provider"]), "[yellow]decline[/]", "-",
                               f"{e['reason']}: {e['text']}", f"{e['elapsed_ms']} ms")
        elif kind == "bid_refused":
            self.table.add_row(_short(e["provider"]), "[red]refused[/]", "-", e["why"], "")
        else:
            live.console.print(event_line(e))
        live.update(self.render())


def show(events: Iterator[Json], as_json: bool) -> Json:
    """Print each event (NDJSON, a live table on a terminal, or lines); the done event."""
    done: Json = {"event": "done", "ok": False, "error": "no answer"}
    console = Console(highlight=False, soft_wrap=True)
    if as_json or not console.is_terminal:
        for e in events:
            click.echo(json.dumps(e, separators=(",", ":")) if as_json else event_line(e))
            if e["event"] == "done":
                done = e
        return done
    view = LiveView(console)
    with Live(view.render(), console=console, refresh_per_second=10) as live:
        for e in events:
            view.add(e, live)
            if e["event"] == "done":
                done = e
    return done


def _dseq(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 2**64:
        raise click.BadParameter(f"{value!r} is not a deployment sequence (a positive integer)",
                                 param_hint="DSEQ")
    return int(value)


@click.group("deploy")
def command() -> None:
    """Create and manage deployments (this node is the tenant)."""


@command.command("create")
@click.argument("sdl_file", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--deposit", "deposit", help="escrow deposit (uakt or akt) [default: chain minimum]")
@click.option("--select", "select", metavar="cheapest|PLUGIN",
              help="how to pick a bid [default: the node's plugins; built-in cheapest]")
@click.option("--wait", "wait", type=click.FloatRange(min=0.1, max=300.0),
              help="seconds to collect bids [default: 10]")
@click.option("--denom-rate", "rates", multiple=True, metavar="DENOM=UAKT_PER_UNIT",
              help="convert SDL prices in DENOM to uakt (e.g. uact=0.25)")
@node_options
def create(sdl_file: Path, deposit: str | None, select: str | None, wait: float | None,
           rates: tuple[str, ...], node: str | None, home_dir: Path | None,
           as_json: bool) -> None:
    """Publish an order for FILE, show bids as they arrive, lease the best, send the manifest."""
    try:
        text = sdl_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise P2PAkashError(f"{sdl_file}: cannot read: {exc}") from None
    denom_rates = dict(plan.parse_rate(r) for r in rates)
    plan.prepare(text, source=str(sdl_file), denom_rates=denom_rates)  # SDLError: exit 1
    amount = None if deposit is None else parse_amount(deposit, "--deposit")
    client = tenant_client(node, home_dir)
    events = client.create(text, source=str(sdl_file), deposit=amount, select=select,
                           wait=wait, denom_rates={d: str(r) for d, r in
                                                   (r.split("=", 1) for r in rates)})
    done = show(events, as_json)
    if not done.get("ok"):
        raise SystemExit(1)


@command.command("list")
@node_options
def list_(node: str | None, home_dir: Path | None, as_json: bool) -> None:
    """This tenant's deployments (on chain and in progress)."""
    def lines(doc: Json) -> list[str]:
        out = []
        for d in doc["deployments"]:
            escrow = d.get("escrow")
            money = f"  escrow {escrow['balance']} uakt" if escrow else ""
            leases = ", ".join(f"{x['lease']} ({x['state']})" for x in d.get("leases", []))
            out.append(f"{d['dseq']}  {d['state']}{money}  leases: {leases or '-'}")
        return out or ["no deployments"]
    echo(tenant_client(node, home_dir).deployments(), as_json, lines)


@command.command("bids")
@click.argument("dseq")
@node_options
def bids(dseq: str, node: str | None, home_dir: Path | None, as_json: bool) -> None:
    """The bids and declines deployment DSEQ drew."""
    def lines(doc: Json) -> list[str]:
        out = [f"deployment {doc['dseq']}: {doc['status']}"]
        out += [event_line(b) for b in doc["bids"]]
        out += [event_line(d) for d in doc["declines"]]
        out += [event_line(r) for r in doc["refused"]]
        if not doc["bids"]:
            out.append("no bids" + (" (see the declines above)" if doc["declines"] else ""))
        return out
    echo(tenant_client(node, home_dir).bids(_dseq(dseq)), as_json, lines)


def tx_lines(doc: Json) -> list[str]:
    out = [f"committed at height {doc['height']}"]
    for e in doc["events"]:
        attrs_ = " ".join(f"{k}={v}" for k, v in e["attributes"].items())
        out.append(f"event: {e['type']} {attrs_}")
    dep = doc.get("deployment")
    if dep is not None:
        out.append(f"deployment {dep['dseq']}: {dep['state']}, escrow "
                   f"{dep['escrow']['balance']} uakt")
    return out


@command.command("deposit")
@click.argument("dseq")
@click.argument("amount")
@node_options
def deposit_(dseq: str, amount: str, node: str | None, home_dir: Path | None,
             as_json: bool) -> None:
    """Add AMOUNT (uakt or akt) to deployment DSEQ's escrow."""
    value = parse_amount(amount)
    echo(tenant_client(node, home_dir).deposit(_dseq(dseq), value), as_json, tx_lines)


@command.command("close")
@click.argument("dseq")
@node_options
def close(dseq: str, node: str | None, home_dir: Path | None, as_json: bool) -> None:
    """Close deployment DSEQ: its leases end, the unspent deposit comes back."""
    echo(tenant_client(node, home_dir).close_deployment(_dseq(dseq)), as_json, tx_lines)
