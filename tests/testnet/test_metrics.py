"""``/metrics`` of real nodes in one process (real TCP and HTTP, real clock).

A validator and a provider (fake executor) made by ``init_testnet`` run as ``Node``s with
``NodeMetrics`` wired the way node.py wires it; the scrape shows height, round, peers,
mempool, gossip in/out/dropped, the provider's registration, leases and escrow.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import trio

from p2pakash import crypto, home
from p2pakash.config import load_config
from p2pakash.metrics import NodeMetrics
from p2pakash.node import Node
from p2pakash.testnet import init_testnet
from tests.testnet.helpers import free_base


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["content-type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["content-type"], exc.read().decode()


def value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in the scrape:\n{text[:3000]}")


async def test_metrics_of_a_validator_and_a_provider(tmp_path: Path) -> None:
    layout = init_testnet(tmp_path / "net", validators=1, providers=1, chain_id="t-metrics",
                          base_port=free_base(4), executor="fake")
    nodes, metrics = [], []
    for entry in layout.nodes:
        cfg = load_config(home.config_path(layout.home(entry)))
        node = Node(cfg, crypto.load_key(cfg.key_path))
        assert node.api is not None
        m = NodeMetrics(node)
        node.api.mounts.append(m.mount)
        nodes.append(node)
        metrics.append(m)
    validator, provider = layout.nodes
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for node, m in zip(nodes, metrics, strict=True):
                await nursery.start(m.run)
                await nursery.start(node.run)
            chain = nodes[1].chain
            assert chain is not None
            while chain.height < 4 or chain.ledger.account(provider.address).sequence < 1:  # noqa: ASYNC110 - bounded by fail_after
                await trio.sleep(0.05)
            status, ctype, text = await trio.to_thread.run_sync(
                get, f"{provider.url}/metrics")
            _, _, vtext = await trio.to_thread.run_sync(get, f"{validator.url}/metrics")
            bad = await trio.to_thread.run_sync(
                lambda: get(f"{validator.url}/metrics/x"))
            nursery.cancel_scope.cancel()
    assert status == 200 and ctype.startswith("text/plain"), (status, ctype)
    assert value(text, "p2pakash_height") >= 4
    assert value(text, "p2pakash_peers") == 1
    assert value(text, "p2pakash_providers") == 1
    assert value(text, "p2pakash_mempool_txs") >= 0
    assert value(text, "p2pakash_escrow_uakt") == 0
    assert value(text, 'p2pakash_leases{state="active"}') == 0
    assert value(text, 'p2pakash_gossip_messages_total{direction="in"}') > 0
    assert value(text, 'p2pakash_gossip_messages_total{direction="out"}') > 0
    assert 'p2pakash_gossip_dropped_total{reason="duplicate"}' in text
    assert 'p2pakash_provider_events_total{kind="bids"} 0.0' in text
    assert value(vtext, "p2pakash_consensus_round") >= 0
    assert value(vtext, "p2pakash_block_interval_seconds_count") >= 2
    assert value(vtext, "p2pakash_commit_round_count") >= 3
    assert "p2pakash_provider_events_total" not in vtext
    assert bad[0] == 404
