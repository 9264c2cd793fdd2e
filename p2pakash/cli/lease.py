"""``p2pakash lease list|status|logs|close``: this tenant's leases, via its node.

Rules: a lease is named ``DSEQ[.GSEQ[.OSEQ]]`` (GSEQ and OSEQ default to 1; slashes work
too). ``status`` shows the chain's record and asks the provider (directly, signed by the
tenant) for the containers' state; a provider that does not answer is reported, not an
error. ``logs`` needs the provider (exit 1 when it cannot be reached). ``--json`` prints
the node's JSON answer unchanged.
"""

from __future__ import annotations

from pathlib import Path

import click

from p2pakash.cli.deploy import tenant_client, tx_lines
from p2pakash.cli.query import echo, node_options
from p2pakash.client import Json
from p2pakash.tenant import plan


def _lease(text: str) -> str:
    try:
        dseq, gseq, oseq = plan.parse_lease_ref(text)
    except plan.TenantError as exc:
        raise click.BadParameter(str(exc), param_hint="LEASE") from None
    return f"{dseq}.{gseq}.{oseq}"


def lease_line(x: Json) -> str:
    closed = f", closed at {x['closed_on']} ({x['reason']})" if x["state"] != "active" else ""
    return (f"{x['lease']}  {x['state']}  {x['provider']}  {x['price']} uakt/block  "
            f"since {x['created_at']}{closed}  accrued {x['accrued']}  withdrawn "
            f"{x['withdrawn']}")


@click.group("lease")
def command() -> None:
    """Inspect and close leases (this node is the tenant)."""


@command.command("list")
@node_options
def list_(node: str | None, home_dir: Path | None, as_json: bool) -> None:
    """Every lease of this tenant."""
    echo(tenant_client(node, home_dir).leases(), as_json,
         lambda doc: [lease_line(x) for x in doc["leases"]] or ["no leases"])


@command.command("status")
@click.argument("lease")
@node_options
def status(lease: str, node: str | None, home_dir: Path | None, as_json: bool) -> None:
    """LEASE on chain and as its provider runs it."""
    def lines(doc: Json) -> list[str]:
        out = [lease_line(doc["lease"])]
        prov = doc["provider_status"]
        if doc["provider_error"]:
            out.append(f"provider: unreachable: {doc['provider_error']}")
        elif prov is not None:
            out.append(f"provider: {prov['state'] or 'refused'}"
                       + (f": {prov['error']}" if prov["error"] else ""))
            for r in prov["services"]:
                ports = ", ".join(f"{k}->{v}" for k, v in r["ports"].items())
                out.append(f"  {r['service']}[{r['replica']}] {r['state']}"
                           + (f"  {ports}" if ports else "")
                           + (f"  {r['error']}" if r["error"] else ""))
        return out
    echo(tenant_client(node, home_dir).lease_status(_lease(lease)), as_json, lines)


@command.command("logs")
@click.argument("lease")
@click.option("--service", "service", default="", help="only this service")
@click.option("--tail", "tail", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="last N lines per replica")
@node_options
def logs(lease: str, service: str, tail: int, node: str | None, home_dir: Path | None,
         as_json: bool) -> None:
    """The containers' logs of LEASE, from its provider."""
    def lines(doc: Json) -> list[str]:
        if doc["error"]:
            return [f"provider: {doc['error']}"]
        return [f"{x['service']}[{x['replica']}] {x['stream']}: {x['line']}"
                for x in doc["lines"]]
    echo(tenant_client(node, home_dir).lease_logs(_lease(lease), service=service, tail=tail),
         as_json, lines)


@command.command("close")
@click.argument("lease")
@node_options
def close(lease: str, node: str | None, home_dir: Path | None, as_json: bool) -> None:
    """Close LEASE (the provider is paid up to now; the deployment stays open)."""
    echo(tenant_client(node, home_dir).close_lease(_lease(lease)), as_json, tx_lines)
