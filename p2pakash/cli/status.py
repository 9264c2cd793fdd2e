"""``p2pakash status``: a node's chain, height, peers and mempool, through its API.

Rules: the node is found as for ``p2pakash query`` (``--node``, ``--home``, default);
``--json`` prints the node's answer unchanged. An unreachable node is one line, exit 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from p2pakash.cli.query import echo, make_client, node_options
from p2pakash.client import Json


def status_lines(doc: Json) -> list[str]:
    role = f"validator (power {doc['voting_power']})" if doc["validator"] else "full node"
    return [f"chain: {doc['chain_id']}", f"node: {doc['moniker']} ({doc['node_id']})",
            f"role: {role}", f"height: {doc['height']}",
            f"latest block: {doc['latest_block_hash'] or '-'}",
            f"latest block time: {doc['latest_block_time']}", f"node time: {doc['time']}",
            f"peers: {doc['peers']}",
            f"mempool: {doc['mempool_size']} txs, {doc['mempool_bytes']} bytes"]


@click.command(name="status")
@node_options
def command(node: str | None, home_dir: Path | None, as_json: bool) -> None:
    """Show a node's status."""
    echo(make_client(node, home_dir).status(), as_json, status_lines)
