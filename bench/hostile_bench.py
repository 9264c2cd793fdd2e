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
import re
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from p2pakash import crypto, wire  # noqa: E402
from p2pakash.client import NodeClient  # noqa: E402
from p2pakash.config import NodeConfig, P2PConfig  # noqa: E402
from p2pakash.gossip import messages as m  # noqa: E402
from p2pakash.gossip import notes  # noqa: E402
from p2pakash.gossip import secret  # noqa: E402
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

CHAIN = "hostile-bench"
HONEST_RATE = 50.0  # notes/s from the honest sender
FLOOD_RATE = 10_000  # msgs/s for the floods
AKT = 1_000_000
Json = dict[str, Any]


# ---------------------------------------------------------------- victim process probes


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@attrs.define
class Window:
    """CPU % of one core and peak RSS of the victim over one stretch of wall time."""

    cpu_pct: float = 0.0
    rss_mib: float = 0.0
    seconds: float = 0.0


class Probe:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._t = 0.0
        self._cpu = 0.0

    def start(self) -> None:
        self._t, self._cpu, self.peak = time.monotonic(), cpu_seconds(self.pid), rss_mib(self.pid)

    def stop(self) -> Window:
        dt = time.monotonic() - self._t
        return Window(cpu_pct=100 * (cpu_seconds(self.pid) - self._cpu) / max(dt, 1e-9),
                      rss_mib=max(self.peak, rss_mib(self.pid)), seconds=dt)

    async def sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mib(self.pid))
            await trio.sleep(0.1)


# ---------------------------------------------------------------- the bench world


@attrs.define(eq=False)
class World:
    net: ChainNet
    victim: PeerAddr
    victim_key: crypto.PrivateKey
    api: str
    sender: Node
    probe: Probe
    keys: dict[str, crypto.PrivateKey]
    log_offset: int = 0

    @property
    def client(self) -> NodeClient:
        return NodeClient(self.api, timeout=5.0)

    def log_text(self) -> str:
        return self.net.nodes[0].text()

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"{self.api}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    async def metric(self, name: str) -> float:
        return (await trio.to_thread.run_sync(self.metrics)).get(name, 0.0)

    async def attacker(self, name: str) -> kit.Hostile:
        return await kit.Hostile.connect(self.victim, kit.key(f"attacker/{name}"), chain=CHAIN)


@attrs.define
class Result:
    name: str
    before: Window
    during: Window
    after: Window
    sent: int = 0
    delivered: int = 0
    facts: dict[str, str] = attrs.Factory(dict)
    failures: list[str] = attrs.Factory(list)

    @property
    def ratio(self) -> float:
        return self.delivered / self.sent if self.sent else 0.0


@attrs.define(eq=False)
class Cutoff:
    """Reads an attacker's connection until the victim closes it; the time it took."""

    hostile: kit.Hostile
    started: float = 0.0
    closed_after: float | None = None
    goodbyes: list[str] = attrs.Factory(list)

    async def watch(self) -> None:
        while (frame := await self.hostile.next_frame()) is not None:
            try:
                self.goodbyes += kit.goodbyes(wire.decode(frame, m.Frame).items)
            except Exception:  # noqa: BLE001 - only the Goodbye reasons are of interest
                pass
        self.closed_after = time.monotonic() - self.started


async def send_paced(hostile: kit.Hostile, items: list[m.Publish], *, rate: float,
                     cut: Cutoff, limit: float) -> int:
    """Send ``items`` at ``rate`` per second (batches every 10 ms) until all are sent, the
    victim cut us off, or ``limit`` s passed; how many went out."""
    per_tick, sent, t0 = max(1, int(rate / 100)), 0, time.monotonic()
    with trio.move_on_after(limit):
        while sent < len(items) and cut.closed_after is None:
            try:
                await hostile.send_items(items[sent:sent + per_tick])
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            sent += per_tick
            await trio.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
    return min(sent, len(items))


async def expect_ban(w: World, r: Result, hostile: kit.Hostile, cut: Cutoff, *,
                     limit: float = 10.0, label: str = "") -> None:
    with trio.move_on_after(limit):
        while cut.closed_after is None:  # noqa: ASYNC110 - bounded, the watcher sets it
            await trio.sleep(0.01)
    tag = f" ({label})" if label else ""
    if cut.closed_after is None:
        r.failures.append(f"attacker{tag} still connected after {limit:g} s")
        return
    r.facts[f"cut off after{tag}"] = f"{cut.closed_after * 1000:.0f} ms"
    line = re.search(rf"banning peer {hostile.id[:12]}: ([^\n]*)", w.log_text())
    if line is None:
        r.failures.append(f"no 'banning peer {hostile.id[:12]}' line in the victim's log{tag}")
    else:
        r.facts[f"ban reason{tag}"] = line.group(1)[:70]


async def honest_stream(w: World, name: str, counter: list[int]) -> None:
    key = w.sender.key
    for i in range(10**6):
        note = notes.make_note(key, CHAIN, f"h:{name}:{i}", timestamp_ms=int(time.time() * 1000),
                               nonce=i)
        w.sender.gossip.publish(notes.TOPIC, wire.encode(note))
        counter[0] = i + 1
        await trio.sleep(1 / HONEST_RATE)


def delivered(w: World, name: str) -> int:
    return len(set(re.findall(rf"h:{re.escape(name)}:(\d+)", w.log_text())))


Attack = Callable[[World, Result], Awaitable[None]]


async def run_scenario(w: World, name: str, attack: Attack) -> Result:
    counter = [0]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(honest_stream, w, name, counter)
        nursery.start_soon(w.probe.sample)
        w.probe.start()
        await trio.sleep(1.5)
        r = Result(name=name, before=w.probe.stop(), during=Window(), after=Window())
        w.probe.start()
        with trio.move_on_after(20) as scope:
            await attack(w, r)
        if scope.cancelled_caught:
            r.failures.append("the attack did not finish within 20 s")
        r.during = w.probe.stop()
        w.probe.start()
        await trio.sleep(2.0)
        r.after = w.probe.stop()
        nursery.cancel_scope.cancel()
    r.sent = counter[0]
    with trio.move_on_after(3.0):
        while delivered(w, name) < r.sent:  # noqa: ASYNC110 - bounded wait for the log
            await trio.sleep(0.05)
    r.delivered = delivered(w, name)
    if r.ratio < 0.99:
        r.failures.append(f"honest delivery {r.ratio:.1%} < 99 %")
    if not w.net.nodes[0].alive:
        r.failures.append("the victim process died")
    return r


# ---------------------------------------------------------------- scenarios


async def flood(w: World, r: Result) -> None:
    """(1) 10,000 msgs/s of distinct junk publishes over an authenticated connection."""
    items = kit.junk_flood(random.Random(1), 5 * FLOOD_RATE)
    await _ban_after(w, r, "flood", items, rate=FLOOD_RATE)


async def flood_valid(w: World, r: Result) -> None:
    """(1b) 10,000 msgs/s of distinct, correctly signed notes by the attacker's own key."""
    hostile = await w.attacker("flood-valid")
    items = kit.valid_notes(hostile.key, CHAIN, 3 * FLOOD_RATE, prefix="v:",
                            timestamp_ms=int(time.time() * 1000))
    await _ban_after(w, r, "flood-valid", items, rate=FLOOD_RATE, hostile=hostile)


async def _ban_after(w: World, r: Result, name: str, items: list[m.Publish], *, rate: float,
                     hostile: kit.Hostile | None = None) -> None:
    hostile = hostile or await w.attacker(name)
    cut = Cutoff(hostile, started=time.monotonic())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cut.watch)
        sent = await send_paced(hostile, items, rate=rate, cut=cut, limit=5.0)
        r.facts["attacker sent"] = f"{sent} msgs"
        await expect_ban(w, r, hostile, cut)
        nursery.cancel_scope.cancel()
    await hostile.aclose()


async def oversized(w: World, r: Result) -> None:
    """(2) a sealed frame one byte over the 1 MiB limit, then a bare 1 GiB length header."""
    for label, raw in (("1 MiB + 1 frame", None), ("1 GiB header", (1 << 30).to_bytes(4, "big"))):
        hostile = await w.attacker(f"oversized/{label}")
        cut = Cutoff(hostile, started=time.monotonic())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cut.watch)
            payload = raw or hostile.sealer.seal(kit.oversized_payload(1 << 20))
            try:
                await hostile.stream.send_all(payload)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await expect_ban(w, r, hostile, cut, label=label)
            nursery.cancel_scope.cancel()
        await hostile.aclose()


async def loris(w: World, r: Result) -> None:
    """(3) 200 sockets opened at once, each stopping mid-handshake (not a ban: nobody is
    identified before the handshake ends; the timeout and the pending bounds answer)."""
    victim = w.victim
    closed: list[float] = []
    t0 = time.monotonic()

    async def one(i: int) -> None:
        stream = await trio.open_tcp_stream(victim.host, victim.port)
        try:
            if i % 2:
                await stream.send_all(secret.MAGIC + b"\x01" * 10)
            await kit.wait_eof(stream)
        except (trio.BrokenResourceError, OSError):
            pass
        closed.append(time.monotonic() - t0)
        await stream.aclose()

    with trio.move_on_after(15):
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(one, i)
    quick = sum(1 for c in closed if c < 1.0)
    r.facts["sockets closed"] = f"{len(closed)}/200 ({quick} at once, {len(closed) - quick}" \
                                f" by the handshake timeout, last after {max(closed):.1f} s)"
    if len(closed) < 200:
        r.failures.append(f"{200 - len(closed)} loris sockets still open after 15 s")


async def bad_signatures(w: World, r: Result) -> None:
    """(4) forged votes, txs and bids: each claims a real signer, signed by the attacker."""
    height = int((await trio.to_thread.run_sync(w.client.status))["height"])
    order = await _publish_order(w, "badsig")
    now = int(time.time() * 1000)
    kinds = {
        "votes": [kit.forged_vote(w.keys["equivocator"], kit.key(f"forger{i}"), CHAIN,
                                  height=height + 1, round=i, timestamp_ms=now)
                  for i in range(10)],
        "txs": [kit.forged_tx(w.keys["payer"], kit.key("forger"), CHAIN, sequence=i,
                              to=w.keys["tenant"].address) for i in range(10)],
        "bids": [kit.forged_bid(w.keys["provider"], kit.key(f"forger{i}"), order, CHAIN,
                                expiry_ms=now + 60_000) for i in range(10)],
    }
    for label, items in kinds.items():
        hostile = await w.attacker(f"badsig/{label}")
        cut = Cutoff(hostile, started=time.monotonic())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cut.watch)
            await send_paced(hostile, items, rate=100, cut=cut, limit=2.0)
            await expect_ban(w, r, hostile, cut, label=label)
            nursery.cancel_scope.cancel()
        await hostile.aclose()


async def replay(w: World, r: Result) -> None:
    """(5) committed txs replayed: as they were (gossip duplicates) and re-packed into new
    batches (new message IDs, refused by the mempool as already committed)."""
    payer = w.keys["payer"]
    seq = int((await trio.to_thread.run_sync(w.client.account, payer.address))["sequence"])
    txs = kit.send_txs(payer, CHAIN, 20, to=w.keys["tenant"].address, first_sequence=seq)
    hashes = [(await trio.to_thread.run_sync(w.client.submit, tx))["hash"] for tx in txs]
    await trio.to_thread.run_sync(lambda: w.client.wait_for_tx(hashes[-1], timeout=15))
    dups = [kit.publish("txs", tx) for tx in txs] * (FLOOD_RATE // 20)
    hostile = await w.attacker("replay/duplicates")
    cut = Cutoff(hostile, started=time.monotonic())
    ignored0 = await w.metric('p2pakash_gossip_dropped_total{reason="duplicate"}')
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cut.watch)
        sent = await send_paced(hostile, dups, rate=FLOOD_RATE, cut=cut, limit=2.0)
        await trio.sleep(0.5)
        dup = await w.metric('p2pakash_gossip_dropped_total{reason="duplicate"}') - ignored0
        r.facts["duplicates (10k/s, 1 s)"] = (
            f"{sent} sent, {dup:.0f} dropped as duplicates, "
            + ("still connected: duplicates are the mesh's normal cost" if cut.closed_after
               is None else f"cut off after {cut.closed_after:.2f} s"))
        nursery.cancel_scope.cancel()
    await hostile.aclose()
    batches = kit.replay_batches(txs, 3 * FLOOD_RATE, random.Random(5))
    await _ban_after(w, r, "replay/batches", batches, rate=FLOOD_RATE)


async def equivocation(w: World, r: Result) -> None:
    """(6) the equivocator validator double-signs prevotes (relayed by a peer that breaks no
    rule: the votes are validly signed). Answer: evidence, 5 % slashed, jailed for good."""
    validator = w.keys["equivocator"]
    before = await trio.to_thread.run_sync(w.client.validators)
    tokens0 = next(v["tokens"] for v in before["validators"]
                   if v["pubkey"] == validator.public.hex())
    height0 = int((await trio.to_thread.run_sync(w.client.status))["height"])
    hostile = await w.attacker("equivocation/relay")
    cut = Cutoff(hostile, started=time.monotonic())
    now = int(time.time() * 1000)
    votes = [v for h in (height0 + 1, height0 + 2)
             for v in kit.equivocating_votes(validator, CHAIN, height=h, timestamp_ms=now)]
    t0 = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cut.watch)
        await hostile.send_items(kit.vote_publishes(votes))

        def jailed() -> Json | None:
            for v in w.client.validators()["validators"]:
                if v["pubkey"] == validator.public.hex() and v["jailed"]:
                    return dict(v)
            return None

        rec = None
        with trio.move_on_after(12):
            while (rec := await trio.to_thread.run_sync(jailed)) is None:
                await trio.sleep(0.1)
        if rec is None:
            r.failures.append("the equivocator was not jailed within 12 s")
        else:
            r.facts["jailed after"] = f"{time.monotonic() - t0:.2f} s"
            r.facts["slashed"] = f"{tokens0 - rec['tokens']} uakt of {tokens0}" \
                                 f" ({(tokens0 - rec['tokens']) / tokens0:.1%})," \
                                 f" tombstoned={rec['tombstoned']}"
        h1 = int((await trio.to_thread.run_sync(w.client.status))["height"])
        await trio.sleep(2.0)
        h2 = int((await trio.to_thread.run_sync(w.client.status))["height"])
        r.facts["chain"] = f"height {height0} -> {h1} -> {h2} (2 s later)"
        if h2 <= h1:
            r.failures.append("the chain stopped committing after the equivocation")
        r.facts["relay"] = "still connected (its votes were validly signed)" \
            if cut.closed_after is None else f"cut off after {cut.closed_after:.2f} s"
        nursery.cancel_scope.cancel()
    await hostile.aclose()


async def _publish_order(w: World, tag: str) -> Any:
    order = kit.order(w.keys["tenant"], CHAIN, dseq=int(time.time() * 1000) % 10**9,
                      expiry_ms=int(time.time() * 1000) + 300_000)
    accepted0 = await w.metric('p2pakash_gossip_messages_total{direction="in"}')
    w.sender.gossip.publish("orders", wire.encode(order))
    with trio.move_on_after(3):  # it has arrived once the victim counted a new item in
        while await w.metric('p2pakash_gossip_messages_total{direction="in"}') <= accepted0:
            await trio.sleep(0.05)
    await trio.sleep(0.2)
    return order


async def overprice(w: World, r: Result) -> None:
    """(7) a registered provider's correctly signed bids above the order's max price."""
    order = await _publish_order(w, "overprice")
    items = kit.overpriced_bids(w.keys["provider"], order, CHAIN, 10,
                                expiry_ms=int(time.time() * 1000) + 60_000)
    await _ban_after(w, r, "overprice", items, rate=100)


async def unfunded(w: World, r: Result) -> None:
    """(8) orders from tenants holding nothing: a trickle (IGNOREd: the relay may be a block
    behind; the tenants are struck, then banned by the validator) and a flood (the relay
    is cut off by the rate limit)."""
    expiry = int(time.time() * 1000) + 300_000
    tenants = [kit.key(f"broke/{i}") for i in range(5)]
    trickle = kit.unfunded_orders(tenants, CHAIN, 30, expiry_ms=expiry)
    hostile = await w.attacker("unfunded/trickle")
    cut = Cutoff(hostile, started=time.monotonic())
    ignored0 = await w.metric('p2pakash_gossip_dropped_total{reason="ignored"}')
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cut.watch)
        sent = await send_paced(hostile, trickle, rate=50, cut=cut, limit=5.0)
        await trio.sleep(0.3)
        ignored = await w.metric('p2pakash_gossip_dropped_total{reason="ignored"}') - ignored0
        r.facts["trickle (50/s)"] = f"{sent} sent, {ignored:.0f} ignored, relay " + (
            "kept" if cut.closed_after is None else "cut off")
        nursery.cancel_scope.cancel()
    await hostile.aclose()
    many = [kit.key(f"broke/flood/{i}") for i in range(20)]
    flood_items = kit.unfunded_orders(many, CHAIN, 150, expiry_ms=expiry)
    await _ban_after(w, r, "unfunded/flood", flood_items, rate=FLOOD_RATE)


async def conns(w: World, r: Result) -> None:
    """(9) 40 authenticated connections (40 keys) from one address; per-host cap answers."""
    kept: list[kit.Hostile] = []
    refused: dict[str, int] = {}
    t0 = time.monotonic()
    for i in range(40):
        h = await w.attacker(f"conns/{i}")
        with trio.move_on_after(0.3):
            frame = await h.next_frame()
            reasons = [] if frame is None else kit.goodbyes(wire.decode(frame, m.Frame).items)
            if reasons or frame is None:
                why = reasons[0] if reasons else "closed"
                refused[why] = refused.get(why, 0) + 1
                await h.aclose()
                continue
        kept.append(h)
    r.facts["connections"] = f"40 tried in {time.monotonic() - t0:.1f} s, {len(kept)} kept," \
                             f" refused {refused}"
    peers = await w.metric("p2pakash_peers")
    r.facts["victim peers"] = f"{peers:.0f} (the sender + {len(kept)})"
    if len(kept) >= 40:
        r.failures.append("no connection from the one address was refused")
    for h in kept:
        await h.aclose()


SCENARIOS: dict[str, Attack] = {
    "flood": flood, "flood-valid": flood_valid, "oversized": oversized, "loris": loris,
    "badsig": bad_signatures, "replay": replay, "equivocation": equivocation,
    "overprice": overprice, "unfunded": unfunded, "conns": conns,
}


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
    except Exception:  # noqa: BLE001 - starting up
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
            while not sender.gossip.pubsub.topic_peers(notes.TOPIC):
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
