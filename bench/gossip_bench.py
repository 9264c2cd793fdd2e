#!/usr/bin/env python3
"""Gossip benchmark: our GossipService side by side with py-libp2p's gossipsub.

Reproduces the workload of ``/work/shared/bench/pylibp2p_bench.py`` (consensus_gossip.md §C)
with our stack: N GossipServices in ONE trio process, each on its own 127.0.0.1 TCP port
(authenticated, encrypted ``TcpTransport``), joined by the harness's random connected graph
(ring + chords, ~6-7 links per node, same construction and seed), one topic, gossipsub
defaults (D/D_lo/D_hi = 6/4/12, heartbeat 1 s). Every payload is a 300-byte signed ``Note``
(ed25519, signed by the publisher at publish time) and every node's topic validator verifies
it (``note_validator`` with the node's own VerifyCache, so nothing is shared between nodes).

Phases (as in the harness)
  settle    : wait until every node is connected to its graph neighbours and its mesh holds
              min(D_lo, degree) peers, then ``--settle`` more seconds.
  1 latency : node 0 publishes one message, we wait until the N-1 other nodes' subscriptions
              yield it; ``--rounds`` times, spaced by ``--gap``. Time to all: min/median/p95/max.
  2 throughput: closed loop, at most ``--inflight`` messages not yet at all nodes; msgs/s to
              all nodes, deliveries/s, CPU = process_time of the whole process per message
              (= the whole network) and per message per node, copies per message per node
              (Publish items a node receives per message = 1 + duplicates).
``--memory``: one message to all of ``--memory-nodes`` (1,000) nodes on the in-memory network
under trio's MockClock (virtual time, autojump), in a fresh subprocess so ru_maxrss is clean.

Prints one JSON object, then a human table; ``--against FILE`` adds the py-libp2p harness's
JSON for the same N as a side-by-side column with ratios. Benchmark only: never a test.
Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import json
import math
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing

from p2pakash import wire
from p2pakash.crypto import PrivateKey, VerifyCache
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.notes import make_note, note_validator
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams
from p2pakash.gossip.service import Delivered, GossipService, GossipSettings
from p2pakash.gossip.tcp import TcpTransport
from p2pakash.gossip.transport import Transport

CHAIN = "bench-chain"
TOPIC = "orders"
NONCE_BASE = 1 << 40  # constant-width CBOR nonce, so every message has the same size


def pct(xs: Sequence[float], p: float) -> float:
    """The harness's percentile (nearest rank on the sorted list)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(p / 100.0 * (len(s) - 1))))
    return s[k]


def random_graph(n: int, k: int, rng: random.Random) -> list[tuple[int, int]]:
    """The harness's graph: ring (connectivity) plus random chords up to ~k links per node."""
    edges: set[tuple[int, int]] = set()
    for i in range(n):
        edges.add((min(i, (i + 1) % n), max(i, (i + 1) % n)))
    for i in range(n):
        tries = 0
        while sum(1 for e in edges if i in e) < k and tries < 50:
            j = rng.randrange(n)
            tries += 1
            if j != i:
                edges.add((min(i, j), max(i, j)))
    return sorted(e for e in edges if e[0] != e[1])


def node_key(i: int) -> PrivateKey:
    return PrivateKey.from_seed(hashlib.sha256(f"bench-node-{i}".encode()).digest())


class NoteMaker:
    """Signs notes whose wire encoding is exactly ``size`` bytes (the gossip payload)."""

    def __init__(self, key: PrivateKey, size: int) -> None:
        self.key = key
        self.size = size
        self.timestamp_ms = 1_700_000_000_000
        text = ""
        for length in range(size, -1, -1):  # bounded: at most `size` tries
            text = "x" * length
            if len(self._encode(0, text)) <= size:
                break
        self.text = text
        self.bytes = len(self._encode(0, text))

    def _encode(self, seq: int, text: str) -> bytes:
        note = make_note(self.key, CHAIN, text, timestamp_ms=self.timestamp_ms,
                         nonce=NONCE_BASE + seq)
        return wire.encode(note)

    def make(self, seq: int) -> bytes:
        return self._encode(seq, self.text)


class Tracker:
    """Event-driven completion: counts receiving nodes per message id (no polling)."""

    def __init__(self, need: int) -> None:
        self.need = need
        self.count: dict[bytes, int] = {}
        self.done: dict[bytes, trio.Event] = {}
        self.t_done: dict[bytes, float] = {}
        self.deliveries = 0

    def expect(self, msg_id: bytes) -> trio.Event:
        return self.done.setdefault(msg_id, trio.Event())

    def hit(self, msg_id: bytes) -> None:
        self.deliveries += 1
        c = self.count.get(msg_id, 0) + 1
        self.count[msg_id] = c
        if c == self.need:
            self.t_done[msg_id] = time.perf_counter()
            self.expect(msg_id).set()


class Bench:
    """N services on one graph; each node but the publisher reports receipts to a Tracker."""

    def __init__(self, n: int, edges: Sequence[tuple[int, int]],
                 make_transport: Callable[[int, PrivateKey], Transport],
                 settings: GossipSettings | None = None) -> None:
        self.n = n
        self.keys = [node_key(i) for i in range(n)]
        self.dials: list[list[int]] = [[] for _ in range(n)]
        self.degree = [0] * n
        for a, b in edges:
            self.dials[a].append(b)
            self.degree[a] += 1
            self.degree[b] += 1
        self.make_transport = make_transport
        self.settings = settings
        self.addrs: dict[int, str] = {}
        self.services: list[GossipService | None] = [None] * n
        self.seen: list[dict[bytes, float]] = [{} for _ in range(n)]
        self.tracker = Tracker(n - 1)
        self.params = PubSubParams()

    @property
    def nodes(self) -> list[GossipService]:
        return [s for s in self.services if s is not None]

    async def start(self, nursery: trio.Nursery) -> None:
        """Start nodes last to first, so every dialled peer already listens (no port race)."""
        for i in reversed(range(self.n)):
            persistent = [PeerAddr.parse(f"{self.keys[j].node_id}@{self.addrs[j]}")
                          for j in self.dials[i]]
            service = GossipService(
                transport=self.make_transport(i, self.keys[i]),
                rng=random.Random(1000 + i),
                # Exactly the graph: dial only the persistent edges, accept everyone, no PEX.
                peer_params=PeerParams(max_outbound=0, max_inbound=self.n,
                                       max_per_host=self.n, pex_interval=math.inf),
                pubsub_params=self.params,
                persistent=persistent,
                settings=self.settings,
            )
            service.set_validator(TOPIC, note_validator(CHAIN, VerifyCache()))
            self.addrs[i] = await nursery.start(service.run)
            self.services[i] = service
            nursery.start_soon(self._receive, i, service.subscribe(TOPIC))

    async def _receive(self, i: int, channel: trio.MemoryReceiveChannel[Delivered]) -> None:
        seen = self.seen[i]
        tracker = self.tracker if i else None
        async for item in channel:
            if item.msg_id not in seen:
                seen[item.msg_id] = time.perf_counter()
                if tracker is not None:
                    tracker.hit(item.msg_id)

    def formed(self) -> bool:
        d_lo = self.params.d_lo
        return all(len(s.connected) == self.degree[i]
                   and len(s.pubsub.topic_peers(TOPIC)) == self.degree[i]
                   and len(s.pubsub.mesh(TOPIC)) >= min(d_lo, self.degree[i])
                   for i, s in enumerate(self.nodes))

    async def settle(self, limit: float, extra: float) -> bool:
        with trio.move_on_after(limit):
            while not self.formed():  # noqa: ASYNC110 - bounded by move_on_after
                await trio.sleep(0.05)
        ok = self.formed()
        await trio.sleep(extra)
        return ok

    def counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.nodes:
            for obj in (s.pubsub.stats, s.stats):
                for k, v in attrs.asdict(obj).items():
                    out[k] = out.get(k, 0) + v
        return out

    def shape(self) -> dict[str, Any]:
        mesh = [len(s.pubsub.mesh(TOPIC)) for s in self.nodes]
        conn = [len(s.connected) for s in self.nodes]
        return {"mesh_degree_min_med_max": [min(mesh), statistics.median(mesh), max(mesh)],
                "peers_min_med_max": [min(conn), statistics.median(conn), max(conn)]}


def copies(before: dict[str, int], after: dict[str, int], msgs: int, n: int) -> dict[str, Any]:
    """Per message per node: Publish copies received (first + duplicates), bytes sent."""
    d = {k: after[k] - before[k] for k in after}
    received = d["delivered"] + d["duplicates"] + d["published"]
    per = max(msgs * n, 1)
    return {"copies_per_msg_per_node": round(received / per, 2),
            "publish_sent_per_msg_per_node": round(d["sent"] / per, 2),
            "wire_bytes_out_per_msg_per_node": round(d["bytes_out"] / per, 1),
            "frames_out_per_msg_per_node": round(d["frames_out"] / per, 2),
            "ihave_sent": d["ihave_sent"], "iwant_sent": d["iwant_sent"],
            "dropped_out": d["dropped_out"], "dropped_local": d["dropped_local"],
            "rejected": d["rejected"]}


async def tcp_main(args: argparse.Namespace) -> dict[str, Any]:
    n = args.nodes
    edges = random_graph(n, args.conns, random.Random(args.seed))
    bench = Bench(n, edges, lambda i, key: TcpTransport(key, CHAIN, "127.0.0.1:0"),
                  GossipSettings(flush_interval=args.flush_interval))
    maker = NoteMaker(bench.keys[0], args.size)
    result: dict[str, Any] = {
        "stack": "p2pakash", "nodes": n, "transport": "tcp+secret-connection",
        "signing": "ed25519 Note, verified by every node", "D": bench.params.d,
        "msg_bytes": maker.bytes, "python": sys.version.split()[0], "edges": len(edges),
        "flush_interval_ms": args.flush_interval * 1e3}
    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        with trio.fail_after(120):
            await bench.start(nursery)
        result["startup_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        result["mesh_formed"] = await bench.settle(args.settle_limit, args.settle)
        result["settle_s"] = round(time.perf_counter() - t0, 2)
        result.update(bench.shape())
        tune_gc(args, result)
        # background cost of the idle network (ticks, heartbeats, pings), to net it out below
        cpu_i, t_i = time.process_time(), time.perf_counter()
        await trio.sleep(args.idle)
        idle_rate = (time.process_time() - cpu_i) / (time.perf_counter() - t_i)
        result["idle_cpu_share_of_one_core"] = round(idle_rate, 4)
        pub, tr = bench.nodes[0], bench.tracker
        seq = 0
        # ---- phase 1: latency (one message at a time) ------------------------
        before = bench.counters()
        cpu1, t1 = time.process_time(), time.perf_counter()
        lat: list[float] = []
        med_node: list[float] = []
        for _ in range(args.rounds):
            seq += 1
            ts = time.perf_counter()
            msg_id = pub.publish(TOPIC, maker.make(seq))
            ev = tr.expect(msg_id)
            with trio.move_on_after(10):
                await ev.wait()
            if ev.is_set():
                lat.append(tr.t_done[msg_id] - ts)
                med_node.append(statistics.median(bench.seen[i][msg_id] - ts
                                                  for i in range(1, n)))
            else:
                result["latency_incomplete"] = result.get("latency_incomplete", 0) + 1
            await trio.sleep(args.gap)
        if lat:
            result["latency_all_ms"] = {
                "min": round(min(lat) * 1e3, 2), "median": round(statistics.median(lat) * 1e3, 2),
                "p95": round(pct(lat, 95) * 1e3, 2), "max": round(max(lat) * 1e3, 2)}
            result["latency_median_node_ms"] = round(statistics.median(med_node) * 1e3, 2)
        # minus the idle network's background CPU over the same wall time (gaps included)
        net = (time.process_time() - cpu1) - idle_rate * (time.perf_counter() - t1)
        result["latency_phase_net_cpu_ms_per_msg_per_node"] = round(
            net / max(args.rounds, 1) / n * 1e3, 3)
        result["latency_traffic"] = copies(before, bench.counters(), args.rounds, n)
        # ---- phase 2: closed-loop throughput (window of in-flight messages) ---
        window = trio.Semaphore(args.inflight)
        lat2: list[float] = []
        ids: list[bytes] = []
        before = bench.counters()
        d0 = tr.deliveries
        gc_timer = GcTimer()
        cpu0, t0 = time.process_time(), time.perf_counter()
        deadline = t0 + args.burst_timeout

        async def track(msg_id: bytes, ts: float) -> None:
            with trio.move_on_after(max(0.0, deadline - time.perf_counter())):
                await tr.expect(msg_id).wait()
            if tr.expect(msg_id).is_set():
                lat2.append(tr.t_done[msg_id] - ts)
            window.release()

        async with trio.open_nursery() as bn:
            for _ in range(args.msgs):
                await window.acquire()
                if time.perf_counter() > deadline:
                    window.release()
                    break
                seq += 1
                ts = time.perf_counter()
                msg_id = pub.publish(TOPIC, maker.make(seq))
                tr.expect(msg_id)
                ids.append(msg_id)
                bn.start_soon(track, msg_id, ts)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        gc_cpu = gc_timer.stop()
        complete = sum(1 for i in ids if tr.expect(i).is_set())
        got = tr.deliveries - d0
        await trio.sleep(0.5)  # late duplicates still count as copies
        result["throughput"] = {
            "msgs": args.msgs, "window": args.inflight, "fully_disseminated": complete,
            "wall_s": round(wall, 3),
            "msgs_per_s_to_all_nodes": round(complete / wall, 1),
            "deliveries_per_s": round(got / wall, 1),
            "msg_latency_ms_median_p95": [round(statistics.median(lat2) * 1e3, 1),
                                          round(pct(lat2, 95) * 1e3, 1)] if lat2 else None,
            "cpu_s": round(cpu, 3),
            "cpu_util_of_one_core": round(cpu / wall, 2),
            "cpu_ms_per_msg_whole_network": round(cpu / max(complete, 1) * 1e3, 3),
            "cpu_ms_per_msg_per_node": round(cpu / max(complete, 1) / n * 1e3, 4),
            "cpu_us_per_delivery": round(cpu / max(got, 1) * 1e6, 1),
            "gc_cpu_s": round(gc_cpu, 3),
            "gc_collections_by_generation": gc_timer.by_generation,
            **copies(before, bench.counters(), len(ids), n),
        }
        nursery.cancel_scope.cancel()
    return result


async def memory_main(args: argparse.Namespace) -> dict[str, Any]:
    """One signed message to all of N in-memory nodes; CPU and RSS (run in a fresh process)."""
    n = args.memory_nodes
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu_start = time.process_time()
    edges = random_graph(n, args.conns, random.Random(args.seed))
    network = MemoryNetwork(random.Random(args.seed), latency=args.latency)

    def addr(i: int) -> str:
        return f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:26656"

    bench = Bench(n, edges, lambda i, key: MemoryTransport(network, key, CHAIN, addr(i)))
    maker = NoteMaker(bench.keys[0], args.size)
    result: dict[str, Any] = {"stack": "p2pakash", "transport": "memory", "nodes": n,
                              "edges": len(edges), "clock": "trio MockClock (autojump)",
                              "link_latency_ms": args.latency * 1e3, "msg_bytes": maker.bytes}
    async with trio.open_nursery() as nursery:
        v0 = trio.current_time()
        await bench.start(nursery)
        # 1.1 s extra: every node started at the same virtual instant, so heartbeats (1 s) and
        # ticks (0.25 s) fire in lockstep; publish 0.1 s past them, not on top of them.
        result["mesh_formed"] = await bench.settle(120.0, 1.1)
        result["settle_virtual_s"] = round(trio.current_time() - v0, 2)
        result["setup_cpu_s"] = round(time.process_time() - cpu_start, 2)
        result.update(bench.shape())
        tune_gc(args, result)
        gc_before = sum(st["collections"] for st in gc.get_stats())
        gc_timer = GcTimer()
        before = bench.counters()
        profile = cProfile.Profile() if args.profile else None
        cpu0, v0 = time.process_time(), trio.current_time()
        if profile is not None:
            profile.enable()
        msg_id = bench.nodes[0].publish(TOPIC, maker.make(1))
        ev = bench.tracker.expect(msg_id)
        with trio.move_on_after(60):
            await ev.wait()
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        result["one_msg_reached_all"] = ev.is_set()
        result["one_msg_cpu_s"] = round(time.process_time() - cpu0, 3)
        result["one_msg_cpu_ms_per_node"] = round((time.process_time() - cpu0) / n * 1e3, 3)
        result["one_msg_virtual_time_to_all_ms"] = round((trio.current_time() - v0) * 1e3, 1)
        result["one_msg_gc_collections"] = sum(st["collections"] for st in gc.get_stats()
                                               ) - gc_before
        result["one_msg_gc_cpu_s"] = round(gc_timer.stop(), 3)
        await trio.sleep(0.5)
        result.update(copies(before, bench.counters(), 1, n))
        nursery.cancel_scope.cancel()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["rss_before_mib"] = round(rss0 / 1024, 1)
    result["peak_rss_mib"] = round(rss / 1024, 1)
    result["rss_per_node_kib"] = round((rss - rss0) / n, 1)
    result["total_cpu_s"] = round(time.process_time() - cpu_start, 2)
    return result


def tune_gc(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Apply --gc-freeze / --gc-threshold once the network has settled (before measuring)."""
    if args.gc_threshold:
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    if args.gc_freeze:
        gc.collect()
        gc.freeze()  # move the settled network out of the collector's generations
    result["gc"] = {"freeze": args.gc_freeze, "threshold": list(gc.get_threshold())}


class GcTimer:
    """Sums the CPU time the cyclic garbage collector spends, from now until ``stop``."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0
        self.by_generation = [0, 0, 0]
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.process_time()
            self.by_generation[info["generation"]] += 1
        else:
            self.total += time.process_time() - self._start

    def stop(self) -> float:
        gc.callbacks.remove(self._callback)
        return self.total


def run_memory_subprocess(args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child",
           "--memory-nodes", str(args.memory_nodes), "--seed", str(args.seed),
           "--latency", str(args.latency), "--size", str(args.size)]
    if args.profile:
        cmd += ["--profile", args.profile]
    if args.gc_freeze:
        cmd += ["--gc-freeze"]
    if args.gc_threshold:
        cmd += ["--gc-threshold", str(args.gc_threshold)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"memory benchmark failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


# ---------------------------------------------------------------- reporting

def load_json(path: str) -> dict[str, Any]:
    text = Path(path).read_text()
    data: dict[str, Any] = json.loads(text[text.index("{"):text.rindex("}") + 1])
    return data


ROWS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    # label, getter, ratio: "lower" = smaller is better (ratio theirs/ours), "higher" = ours/theirs
    ("mesh degree min/med/max", lambda r: r.get("mesh_degree_min_med_max"), ""),
    ("time-to-all median (ms)", lambda r: r.get("latency_all_ms", {}).get("median"), "lower"),
    ("time-to-all p95 (ms)", lambda r: r.get("latency_all_ms", {}).get("p95"), "lower"),
    ("median node (ms)", lambda r: r.get("latency_median_node_ms"), "lower"),
    ("msgs/s to all nodes", lambda r: r["throughput"]["msgs_per_s_to_all_nodes"], "higher"),
    ("deliveries/s", lambda r: r["throughput"]["deliveries_per_s"], "higher"),
    ("msg latency under load med (ms)",
     lambda r: (r["throughput"].get("msg_latency_ms_median_p95") or [None])[0], "lower"),
    ("CPU per msg, network (ms)",
     lambda r: r["throughput"]["cpu_ms_per_msg_whole_network"], "lower"),
    ("CPU per msg per node (ms)", lambda r: round(
        r["throughput"]["cpu_ms_per_msg_whole_network"] / r["nodes"], 3), "lower"),
    ("copies per msg per node", lambda r: r["throughput"].get("copies_per_msg_per_node")
     or r.get("copies_per_msg_per_node_both_phases"), ""),
    ("msgs fully delivered", lambda r: f'{r["throughput"]["fully_disseminated"]}'
                                       f'/{r["throughput"]["msgs"]}', ""),
]


def table(ours: dict[str, Any], theirs: dict[str, Any] | None) -> str:
    head = f'N={ours["nodes"]}'
    lines = [f"{head:<34} {'p2pakash':>16}" + (f" {'py-libp2p':>16} {'ratio':>8}" if theirs
                                                else "")]
    for label, get, better in ROWS:
        try:
            a = get(ours)
        except (KeyError, TypeError):
            a = None
        line = f"{label:<34} {fmt(a):>16}"
        if theirs is not None:
            try:
                b = get(theirs)
            except (KeyError, TypeError):
                b = None
            ratio = ""
            if better and isinstance(a, int | float) and isinstance(b, int | float) and a and b:
                ratio = f"{(b / a if better == 'lower' else a / b):.1f}x"
            line += f" {fmt(b):>16} {ratio:>8}"
        lines.append(line)
    if theirs is not None:
        lines.append("ratio = how many times better p2pakash is (>1x: p2pakash wins)")
    return "\n".join(lines)


def memory_table(r: dict[str, Any]) -> str:
    return "\n".join([
        f'in-memory, {r["nodes"]} nodes, {r["clock"]}, link latency {r["link_latency_ms"]} ms',
        f'  mesh degree min/med/max       {r["mesh_degree_min_med_max"]}',
        f'  one message: reached all      {r["one_msg_reached_all"]}',
        f'  one message: CPU              {r["one_msg_cpu_s"]} s '
        f'({r["one_msg_cpu_ms_per_node"]} ms per node)',
        f'  one message: time to all      {r["one_msg_virtual_time_to_all_ms"]} ms (virtual)',
        f'  copies per node               {r["copies_per_msg_per_node"]}',
        f'  setup + mesh formation CPU    {r["setup_cpu_s"]} s '
        f'({r["settle_virtual_s"]} virtual s)',
        f'  peak RSS                      {r["peak_rss_mib"]} MiB '
        f'(before nodes {r["rss_before_mib"]} MiB; {r["rss_per_node_kib"]} KiB per node)',
    ])


def fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, list):
        return "/".join(str(x) for x in v)
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--conns", type=int, default=6, help="target links per node (harness)")
    ap.add_argument("--size", type=int, default=300, help="payload bytes (signed Note)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.2)
    ap.add_argument("--msgs", type=int, default=300)
    ap.add_argument("--inflight", type=int, default=8, help="max in-flight msgs (closed loop)")
    ap.add_argument("--burst-timeout", type=float, default=120.0)
    ap.add_argument("--settle", type=float, default=1.0, help="extra seconds after mesh forms")
    ap.add_argument("--settle-limit", type=float, default=30.0)
    ap.add_argument("--idle", type=float, default=1.0, help="seconds to measure idle CPU")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--flush-interval", type=float, default=0.0,
                    help="GossipSettings.flush_interval (s): how long a batch may wait to fill")
    ap.add_argument("--against", help="py-libp2p harness JSON for the same N (side by side)")
    ap.add_argument("--json-out", help="also write the JSON result here")
    ap.add_argument("--memory", action="store_true",
                    help="run the in-memory N=--memory-nodes test (subprocess) instead of TCP")
    ap.add_argument("--memory-nodes", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.005, help="in-memory link latency (s)")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="gc.freeze() once the mesh has formed (before measuring)")
    ap.add_argument("--gc-threshold", type=int, default=0,
                    help="gc.set_threshold(N, ...) for generation 0 before measuring")
    ap.add_argument("--profile", help="--memory: cProfile the one-message phase into this file")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        clock = trio.testing.MockClock(autojump_threshold=0)
        print(json.dumps(trio.run(memory_main, args, clock=clock)))
        return
    if args.memory:
        result = run_memory_subprocess(args)
        text = memory_table(result)
    else:
        result = trio.run(tcp_main, args)
        theirs = load_json(args.against) if args.against else None
        if theirs is not None:
            result["against"] = theirs
        text = table(result, theirs)
    print(json.dumps(result, indent=1), flush=True)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
