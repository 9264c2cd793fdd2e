#!/usr/bin/env python3
"""Hostile-peer bench: one victim node process on 127.0.0.1 against one attacker per scenario.

Setup: a home from ``p2pakash node init`` (``tests/integration/chain_helpers``), a genesis
with two validators — the victim (100 AKT, more than 2/3 of the power alone, so it commits
by itself) and an "equivocator" key (10 AKT, never online except to double-sign) — and
funded tenant, provider and payer accounts; ``signed_blocks_window`` is 100,000 so the
offline equivocator is not jailed for downtime within the run. The victim runs as
``python -m p2pakash node start`` with default p2p/gossip settings. An in-process honest
sender Node (gossip only) dials it and publishes 50 signed notes/s during every scenario;
the victim logs each note it delivers, which is how delivery is counted. Every attacker
completes the real authenticated handshake (``tests/hostile_kit.Hostile``) unless the
scenario is about handshakes.

Per scenario: victim CPU (% of one core, from /proc utime+stime) and RSS before, during and
after; honest delivery (notes in the victim's log / notes sent, >= 99 % required); the time
from the first offending byte until the victim closed the attacker's connection, and a
``banning peer`` line for it in the victim's log — or, where a ban is the wrong answer,
what the victim did instead (slashed and jailed, refused at once, timed out). Exit status
1 if any requirement fails. Every wait is bounded; every process started is stopped.
Benchmark only: never a test.
"""


from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import attrs
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hostile.scenarios import SCENARIOS  # noqa: E402
from hostile.world import CHAIN, Probe, Result, World, load_average, run_scenario  # noqa: E402

from p2pakash import crypto  # noqa: E402
from p2pakash.client import NodeClient  # noqa: E402
from p2pakash.config import NodeConfig, P2PConfig  # noqa: E402
from p2pakash.gossip import notes  # noqa: E402
from p2pakash.gossip.addr import PeerAddr  # noqa: E402
from p2pakash.ledger.genesis import (  # noqa: E402
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
    load_genesis,
    save_genesis,
)
from p2pakash.ledger.params import Params  # noqa: E402
from p2pakash.ledger.txs import sign_tx  # noqa: E402
from p2pakash.node import Node  # noqa: E402
from tests import hostile_kit as kit  # noqa: E402
from tests.integration.chain_helpers import ChainNet, make_homes, poll  # noqa: E402
from tests.integration.conftest import free_ports  # noqa: E402

AKT = 1_000_000


# ---------------------------------------------------------------- setup and report


def setup(root: Path) -> tuple[ChainNet, dict[str, crypto.PrivateKey]]:
    [home] = make_homes(root, 1, chain_id=CHAIN, overrides={"log": {"format": "text"}})
    keys = {name: kit.key(f"bench/{name}") for name in
            ("equivocator", "tenant", "provider", "payer")}
    doc = GenesisDoc(
        chain_id=CHAIN, genesis_time_ms=int(time.time() * 1000),
        accounts=tuple(GenesisAccount(address=keys[n].address, balance=1000 * AKT)
                       for n in ("tenant", "provider", "payer")),
        validators=(GenesisValidator(pubkey=home.key.public, stake=100 * AKT, moniker="victim"),
                    GenesisValidator(pubkey=keys["equivocator"].public, stake=10 * AKT,
                                     moniker="equivocator")),
        params=Params(signed_blocks_window=100_000))
    save_genesis(home.path / "genesis.json", doc)
    net = ChainNet(homes=[home])
    net.start(0)
    client = net.client(0)
    poll(lambda: _height(client) >= 1, limit=30, what="the victim's first block",
         describe=net.tails)
    provider = keys["provider"]
    tx = sign_tx(provider, CHAIN, sequence=0, msgs=(kit.create_provider(),))
    client.wait_for_tx(client.submit(tx.encode())["hash"], timeout=20)
    return net, keys


def _height(client: NodeClient) -> int:
    try:
        return int(client.status()["height"])
    except Exception:
        return -1


def report(results: list[Result], load: str) -> str:
    lines = [f"load average at start: {load}", ""]
    for r in results:
        lines.append(f"## {r.name}: {'FAIL' if r.failures else 'ok'}")
        lines.append("| | before | during | after |")
        lines.append("|---|---|---|---|")
        lines.append(f"| victim CPU % of a core | {r.before.cpu_pct:.0f} | {r.during.cpu_pct:.0f}"
                     f" | {r.after.cpu_pct:.0f} |")
        lines.append(f"| victim RSS MiB (peak) | {r.before.rss_mib:.1f} | {r.during.rss_mib:.1f}"
                     f" | {r.after.rss_mib:.1f} |")
        lines.append(f"| window s | {r.before.seconds:.1f} | {r.during.seconds:.1f}"
                     f" | {r.after.seconds:.1f} |")
        lines.append(f"| honest delivery | | {r.delivered}/{r.sent} = {r.ratio:.1%} | |")
        if r.attack_msgs >= 1000:  # over the idle baseline, per item sent
            extra = (r.during.cpu_pct - r.before.cpu_pct) * r.during.seconds * 1e4
            lines.append(f"| victim CPU per attacker item, over idle | |"
                         f" {max(0.0, extra) / r.attack_msgs:.0f} µs | |")
        for k, v in r.facts.items():
            lines.append(f"| {k} | {v} | | |")
        for f in r.failures:
            lines.append(f"| **FAILED** | {f} | | |")
        lines.append("")
    return "\n".join(lines)


async def main_async(names: list[str], net: ChainNet, keys: dict[str, crypto.PrivateKey]
                     ) -> list[Result]:
    home = net.homes[0]
    victim = PeerAddr.parse(home.peer)
    root = home.path.parent
    [port] = free_ports(1)
    cfg = NodeConfig(chain_id=CHAIN, moniker="sender", home=root / "sender",
                     p2p=P2PConfig(listen=f"127.0.0.1:{port}", persistent_peers=(victim,),
                                   pex=False))
    (root / "sender").mkdir()
    # a follower with the chain (a gossip-only node refuses the chain's Status messages)
    sender = Node(cfg, kit.key("bench/sender"), rng=random.Random(7), in_memory=True, api=False,
                  genesis=load_genesis(home.path / "genesis.json"))
    assert net.nodes[0].proc is not None
    results = []
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        with trio.fail_after(10):
            while not sender.gossip.pubsub.topic_peers(notes.TOPIC):  # noqa: ASYNC110
                await trio.sleep(0.05)
        w = World(net=net, victim=victim, victim_key=home.key, api=home.url, sender=sender,
                  probe=Probe(net.nodes[0].proc.pid), keys=keys)
        for name in names:
            r = await run_scenario(w, name, SCENARIOS[name])
            print(report([r], load_average()), flush=True)
            results.append(r)
        nursery.cancel_scope.cancel()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--keep", type=Path, help="make the victim's home here and keep it")
    args = ap.parse_args()
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    load = load_average()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        net, keys = setup(root)
        try:
            results = trio.run(main_async, names, net, keys)
        finally:
            net.stop_all()
    print(f"# summary (load average {load} at start, {load_average()} at end,"
          f" {time.monotonic() - started:.0f} s)")
    for r in results:
        print(f"{r.name:13} {'FAIL' if r.failures else 'ok  '} delivery {r.ratio:.1%}"
              f" cpu {r.during.cpu_pct:.0f}% rss {r.before.rss_mib:.0f}->{r.during.rss_mib:.0f}"
              f"->{r.after.rss_mib:.0f} MiB {'; '.join(r.failures)}")
    if args.json_out:
        args.json_out.write_text(json.dumps([attrs.asdict(r) for r in results], indent=1))
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
