"""The victim's probes, the bench world, the scenario runner and the attacker plumbing.

Rules: the victim is a separate process, so CPU (utime + stime) and RSS come from
/proc/PID; an honest sender Node in this process publishes ``HONEST_RATE`` signed notes/s
while a scenario runs, and delivery is counted from the victim's log (it logs every note
it delivers). Every wait is bounded in time; a scenario's attack gets at most 20 s.
"""

from __future__ import annotations

import contextlib
import re
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import trio

from p2pakash import crypto, wire
from p2pakash.client import NodeClient
from p2pakash.gossip import messages as m
from p2pakash.gossip import notes
from p2pakash.gossip.addr import PeerAddr
from p2pakash.node import Node
from tests import hostile_kit as kit
from tests.integration.chain_helpers import ChainNet

CHAIN = "hostile-bench"
HONEST_RATE = 50.0  # notes/s from the honest sender
FLOOD_RATE = 10_000  # msgs/s for the floods
COUNTERS = ("p2pakash_gossip_dropped_total", "p2pakash_gossip_bans_total")


def _short(metric: str) -> str:
    """``p2pakash_gossip_dropped_total{reason="ignored"}`` -> ``ignored``."""
    return metric.partition('"')[2].rstrip('"}') or metric.removeprefix("p2pakash_gossip_")

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
    attack_msgs: int = 0  # items the attackers sent (for the victim's CPU per item)
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
            with contextlib.suppress(Exception):  # only Goodbye reasons are of interest
                self.goodbyes += kit.goodbyes(wire.decode(frame, m.Frame).items)
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
    pattern = re.compile(rf"banning peer {hostile.id[:12]}: ([^\n]*)")
    line = None
    with trio.move_on_after(2.0):  # the victim may close the socket before its log flushes
        while (line := pattern.search(w.log_text())) is None:  # noqa: ASYNC110
            await trio.sleep(0.02)
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
        counters0 = await trio.to_thread.run_sync(w.metrics)
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
    counters1 = await trio.to_thread.run_sync(w.metrics)
    changed = {_short(k): v - counters0.get(k, 0.0) for k, v in counters1.items()
               if k.startswith(COUNTERS) and v != counters0.get(k, 0.0)}
    r.facts["victim counters"] = ", ".join(f"{k} +{v:.0f}" for k, v in sorted(changed.items()))
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


