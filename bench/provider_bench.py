#!/usr/bin/env python3
"""Provider benchmark: the ``linear`` bid decision per order, and orders/s one provider evaluates.

Part ``decision``: the provider's bid engine and plugin manager exactly as ProviderService
builds them (``BidEngine`` over an ``Inventory``, attributes from ``provider_attributes``,
``PluginManager`` with the built-in ``linear`` pricing and the ``static`` GPU probe). One
decision = ``engine.consider(order)`` (match, GPU offer, reserve) + ``plugins.bid_price`` for
each reserved group + ``engine.priced`` -> the BidBody or DeclineBody. Each order is timed
alone with ``perf_counter``; its reservation is released afterwards (another provider won),
outside the timing. Workloads (pre-signed orders, one dseq each):
  web    : 2 services (cpu 0.25 + 0.1) -> a bid;
  gpu    : 1 H100 80Gi SXM + cpu/memory/storage, the provider has 8 H100s -> a bid;
  corpus : every valid SDL of /work/shared/corpus/sdl priced in uakt/uact (uact taken 1:1),
           against a provider with region=local and 8 H100s -> a bid, or a decline when
           the placement or GPU model does not match.
Part ``pipeline``: what the provider process does per order, synchronously: wire decode +
``check_order`` + signature verify (a cold ``VerifyCache``, as the node's gossip validator
pays it) + the decision + ``sign_bid``/``sign_decline`` + wire encode. 1 / its median is the
single-core bound on orders per second.
Part ``service``: a real provider ``Node`` (node.py; fake executor) and a publisher ``Node``
(the chain's single validator) in one process, one trio run, each with its own
``TcpTransport`` on 127.0.0.1. The publisher gossips ``--orders`` pre-signed orders from
``--orders // 15`` tenant accounts (the market validators allow 20 orders per tenant in a
burst, 5/s sustained) in batches of ``--batch`` per 10 ms; the provider's stats
(``orders``, ``bids``, ``declines``) are sampled until every order is answered or
``--limit`` seconds pass. Orders/s = orders answered / (last answer - first publish).
``--handoff``: ``node`` (default) leaves the provider as node.py builds it; ``on`` hands it
the node's ``MarketValidators`` (``ProviderService.market``), so it takes each order as the
gossip validator decoded and verified it; ``off`` makes it decode and verify every order
again (the behaviour before that hand-off existed).

Every loop is bounded in count and time. Benchmark only: never a test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import trio
from _common import free_ports, pct, wait_until

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from p2pakash import wire  # noqa: E402
from p2pakash.config import NodeConfig, P2PConfig, ProviderConfig  # noqa: E402
from p2pakash.crypto import PrivateKey, VerifyCache  # noqa: E402
from p2pakash.gossip.addr import PeerAddr  # noqa: E402
from p2pakash.ledger import (  # noqa: E402
    UAKT_PER_AKT,
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
)
from p2pakash.market.orders import (  # noqa: E402
    BidBody,
    DeclineBody,
    LeaseID,
    Order,
    check_order,
    make_order,
    sign_bid,
    sign_decline,
    verify,
)
from p2pakash.market.validators import TOPIC_ORDERS  # noqa: E402
from p2pakash.node import Node  # noqa: E402
from p2pakash.plugins.manager import PluginManager  # noqa: E402
from p2pakash.plugins.types import PluginConfig  # noqa: E402
from p2pakash.provider.bidengine import BidEngine, PriceRequest  # noqa: E402
from p2pakash.provider.inventory import Capacity, Inventory  # noqa: E402
from p2pakash.provider.service import provider_attributes  # noqa: E402
from p2pakash.runtime import tune_gc  # noqa: E402
from p2pakash.tenant import plan  # noqa: E402

CORPUS = Path("/work/shared/corpus/sdl")
CHAIN = "provider-bench"
Json = dict[str, Any]
GI = 1024**3
H100S = {"static": {"gpus": [{"model": "h100", "ram": "80Gi", "interface": "sxm",
                              "count": 8}]}}

WEB = """\
version: "2.0"
services:
  web:
    image: nginx:1.25
    expose:
      - port: 80
        as: 80
        to: [{global: true}]
  worker:
    image: busybox:1.36
    command: ["sleep", "3600"]
profiles:
  compute:
    web:
      resources: {cpu: {units: 0.25}, memory: {size: 256Mi}, storage: {size: 1Gi}}
    worker:
      resources: {cpu: {units: 0.1}, memory: {size: 64Mi}, storage: {size: 512Mi}}
  placement:
    dc:
      pricing:
        web: {denom: uakt, amount: 1000}
        worker: {denom: uakt, amount: 100}
deployment:
  web: {dc: {profile: web, count: 1}}
  worker: {dc: {profile: worker, count: 1}}
"""

GPU = """\
version: "2.0"
services:
  llm:
    image: vllm/vllm-openai:v0.6.3
    expose:
      - port: 8000
        as: 80
        to: [{global: true}]
profiles:
  compute:
    llm:
      resources:
        cpu: {units: 8}
        memory: {size: 64Gi}
        storage: {size: 100Gi}
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: h100
                  ram: 80Gi
  placement:
    dc:
      pricing:
        llm: {denom: uakt, amount: 100000}
deployment:
  llm: {dc: {profile: llm, count: 1}}
"""


def summary(values: Sequence[float], digits: int = 3) -> Json:
    return {"n": len(values), "median": round(statistics.median(values), digits),
            "p95": round(pct(values, 95), digits), "p99": round(pct(values, 99), digits),
            "max": round(max(values), digits)}


def key(name: str) -> PrivateKey:
    return PrivateKey.from_seed(hashlib.sha256(f"provider-bench-{name}".encode()).digest())


PROVIDER = key("provider")
OTHER = key("other-provider")
TENANT = key("tenant")


# ---------------------------------------------------------------- orders


def orders_from(texts: Sequence[str], count: int, tenant: PrivateKey = TENANT,
                first_dseq: int = 1, expiry_ms: int | None = None) -> list[Order]:
    """``count`` signed orders cycling over ``texts`` (each a fresh dseq)."""
    prepared = [plan.prepare(t, denom_rates={"uact": Fraction(1)}) for t in texts]
    expiry = expiry_ms or int(time.time() * 1000) + 3_600_000
    return [make_order(tenant, CHAIN, dseq=first_dseq + i, groups=p.groups,
                       manifest_hash=p.manifest_hash, deposit=500_000, expiry_ms=expiry)
            for i, p in enumerate(prepared[i % len(prepared)] for i in range(count))]


def corpus_texts() -> list[str]:
    texts = []
    for row in (CORPUS / "MANIFEST.tsv").read_text().splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 3 or cols[2] != "valid":
            continue
        text = (CORPUS / cols[0]).read_text(encoding="utf-8-sig")
        try:
            prepared = plan.prepare(text, denom_rates={"uact": Fraction(1)})
            make_order(TENANT, CHAIN, dseq=1, groups=prepared.groups,
                       manifest_hash=prepared.manifest_hash, deposit=500_000,
                       expiry_ms=2**40)
        except Exception:  # other denominations (ibc/...), or a group the order refuses
            continue
        texts.append(text)
    return texts


# ---------------------------------------------------------------- the provider's pieces


def provider_setup() -> tuple[BidEngine, PluginManager]:
    cfg = ProviderConfig(attributes={"region": "local"}, cpu=100_000.0, memory="100000Gi",
                         storage={"ephemeral": "1000000Gi", "beta3": "1000000Gi"},
                         gpu_probes=("static",), entry_points=False, executor="fake",
                         plugin_tables=H100S)
    plugins = PluginManager.load(PluginConfig.from_table(cfg.plugin_table()))
    gpus = plugins.probe_gpus()
    capacity = Capacity(cpu_millis=cfg.cpu_millis, memory_bytes=cfg.memory_bytes,
                        storage=cfg.storage_bytes, gpus=tuple(gpus))
    engine = BidEngine(provider=PROVIDER.address,
                       attributes=provider_attributes(cfg, capacity),
                       inventory=Inventory(capacity))
    return engine, plugins


def decide(engine: BidEngine, plugins: PluginManager, order: Order, now_ms: int
           ) -> list[BidBody | DeclineBody]:
    out: list[BidBody | DeclineBody] = []
    for item in engine.consider(order, now_ms, {}):
        if isinstance(item, PriceRequest):
            answer = plugins.bid_price(item.group, item.resources, item.context)
            body = engine.priced(item, answer, now_ms)
            if body is not None:
                out.append(body)
        else:
            out.append(item)
    return out


def release(engine: BidEngine, order: Order) -> None:
    """Another provider won every group: the reservations go back (not timed)."""
    d = order.body.deployment
    for gseq in range(1, len(order.body.groups) + 1):
        engine.lease_created(LeaseID(owner=d.owner, dseq=d.dseq, gseq=gseq,
                                     oseq=order.body.oseq, provider=OTHER.address))


def bench_decision(orders: list[Order], keep: bool = False) -> Json:
    """``keep``: never release, so reservations pile up as for a provider bidding on every
    order (each is held for the bid's TTL + grace, 330 s by default)."""
    engine, plugins = provider_setup()
    now = int(time.time() * 1000)
    for order in orders[:20]:  # warm-up (not in the numbers)
        decide(engine, plugins, order, now)
        release(engine, order)
    engine.seen.clear()
    times: list[float] = []
    bids = declines = 0
    for order in orders:
        t0 = time.perf_counter()
        out = decide(engine, plugins, order, now)
        times.append((time.perf_counter() - t0) * 1000)
        bids += sum(isinstance(b, BidBody) for b in out)
        declines += sum(isinstance(b, DeclineBody) for b in out)
        if not keep:
            release(engine, order)
    tail = times[-max(1, len(times) // 10):]
    return {"orders": len(orders), "bids": bids, "declines": declines,
            "decision_ms": summary(times), "last_10pct_ms": summary(tail),
            "held_at_end": len(engine.inventory.held),
            "decisions_per_s_single_core": round(len(times) / (sum(times) / 1000))}


def bench_pipeline(orders: list[Order]) -> Json:
    engine, plugins = provider_setup()
    now = int(time.time() * 1000)
    data = [wire.encode(o) for o in orders]
    cache = VerifyCache()
    times: list[float] = []
    for raw in data:
        t0 = time.perf_counter()
        order = wire.decode(raw, Order)
        check_order(order.body)
        verify(order, CHAIN, cache)
        for body in decide(engine, plugins, order, now):
            signed = (sign_bid(PROVIDER, CHAIN, body) if isinstance(body, BidBody)
                      else sign_decline(PROVIDER, CHAIN, body))
            wire.encode(signed)
        times.append((time.perf_counter() - t0) * 1000)
        release(engine, order)
    return {"orders": len(orders), "pipeline_ms": summary(times),
            "orders_per_s_single_core": round(len(times) / (sum(times) / 1000))}


# ---------------------------------------------------------------- the service over TCP


def service_genesis(n_orders: int, genesis_time_ms: int) -> tuple[GenesisDoc, list[PrivateKey]]:
    tenants = [key(f"tenant-{i}") for i in range(max(1, -(-n_orders // 15)))]
    validator = key("validator")
    gen = GenesisDoc(
        chain_id=CHAIN, genesis_time_ms=genesis_time_ms,
        accounts=tuple(GenesisAccount(address=k.address, balance=100 * UAKT_PER_AKT)
                       for k in (PROVIDER, *tenants)),
        validators=(GenesisValidator(pubkey=validator.public, stake=100 * UAKT_PER_AKT,
                                     moniker="v0"),))
    return gen, tenants


async def publisher(spec: Json) -> None:
    """The child process: the chain's validator; gossips the orders once the provider is in.

    Prints ``START <monotonic>`` and ``SENT <monotonic>``; exits when stdin closes."""
    gen, tenants = service_genesis(spec["orders"], spec["genesis_time_ms"])
    expiry = int(time.time() * 1000) + 300_000  # the validators refuse > 600 s ahead
    orders = [o for i, t in enumerate(tenants)
              for o in orders_from([WEB], 15, tenant=t, first_dseq=1 + i * 100,
                                   expiry_ms=expiry)][:spec["orders"]]
    data = [wire.encode(o) for o in orders]
    node = Node(NodeConfig(chain_id=CHAIN, moniker="publisher", home=Path(tempfile.gettempdir()),
                           p2p=P2PConfig(listen=spec["listen"], pex=False)),
                key("validator"), genesis=gen, in_memory=True, api=False)
    batch = spec["batch"]
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        print("LISTENING", flush=True)
        if not await wait_until(lambda: len(node.gossip.connected) == 1, 30):
            raise SystemExit("publisher: the provider did not connect in 30 s")
        tune_gc()
        await trio.sleep(1.0)
        print("START", time.monotonic(), flush=True)
        for i in range(0, len(data), batch):
            for raw in data[i:i + batch]:
                node.gossip.publish(TOPIC_ORDERS, raw)
            await trio.sleep(0.01)
        print("SENT", time.monotonic(), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # until the parent is done
        nursery.cancel_scope.cancel()


def run_service(n_orders: int, batch: int, limit: float, handoff: str = "node") -> Json:
    """The provider node here; the publisher in a child process (its own core)."""
    genesis_time_ms = int(time.time() * 1000)
    addrs = [f"127.0.0.1:{p}" for p in free_ports(2)]
    spec = {"orders": n_orders, "batch": batch, "listen": addrs[0],
            "genesis_time_ms": genesis_time_ms}
    child = subprocess.Popen([sys.executable, __file__, "--publisher-child", json.dumps(spec)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        return trio.run(bench_service, spec, addrs, child.stdout, limit, handoff)
    finally:
        child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


async def bench_service(spec: Json, addrs: list[str], stdout: Any, limit: float,
                        handoff: str) -> Json:
    n_orders, batch = spec["orders"], spec["batch"]
    gen, tenants = service_genesis(n_orders, spec["genesis_time_ms"])
    pcfg = ProviderConfig(attributes={"region": "local"}, executor="fake", cpu=100_000.0,
                          memory="100000Gi", storage={"ephemeral": "1000000Gi"},
                          gpu_probes=(), entry_points=False)
    peer = PeerAddr.parse(f"{key('validator').node_id}@{addrs[0]}")
    prov = Node(NodeConfig(chain_id=CHAIN, moniker="provider", home=Path(tempfile.gettempdir()),
                           p2p=P2PConfig(listen=addrs[1], persistent_peers=(peer,), pex=False),
                           provider=pcfg),
                PROVIDER, genesis=gen, in_memory=True, api=False)
    svc = prov.provider
    assert svc is not None
    if handoff == "on":
        svc.market = prov.market
    elif handoff == "off":
        svc.market = None

    def answered() -> int:
        return svc.stats.get("bids", 0) + svc.stats.get("declines", 0)

    marks: dict[str, float] = {}

    async def read_child() -> None:
        while True:
            line = await trio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
            if not line:
                return
            word, *rest = line.split()
            marks[word] = float(rest[0]) if rest else time.monotonic()

    out: Json = {"orders": n_orders, "tenants": len(tenants), "batch_per_10ms": batch,
                 "nodes": "provider node here, publisher node (the validator) in a child "
                          "process; TcpTransport each", "handoff": handoff,
                 "provider_has_validator_handle": svc.market is not None}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_child)
        if not await wait_until(lambda: "LISTENING" in marks, 30):
            raise SystemExit("publisher child did not start in 30 s")
        await nursery.start(prov.run)
        if not await wait_until(lambda: "START" in marks, 40):
            raise SystemExit("publisher child did not start publishing")
        tune_gc()
        cpu0 = time.process_time()
        samples: list[tuple[float, int]] = []
        with trio.move_on_after(limit):
            while answered() < n_orders:
                samples.append((time.monotonic(), answered()))
                await trio.sleep(0.005)
        final = answered()
        samples.append((time.monotonic(), final))
        t_last = next(t for t, a in samples if a == final)
        cpu = time.process_time() - cpu0
        span = t_last - marks["START"]
        out.update({
            "publish_s": round(marks.get("SENT", float("nan")) - marks["START"], 3),
            "orders_seen": svc.stats.get("orders", 0), "bids": svc.stats.get("bids", 0),
            "declines": svc.stats.get("declines", 0), "answered_in_s": round(span, 3),
            "orders_decoded_twice": svc.stats.get("orders_checked_here", 0),
            "orders_per_s": round(final / max(span, 1e-9), 1),
            "provider_process_cpu_s": round(cpu, 3),
            "provider_cpu_ms_per_order": round(cpu * 1000 / max(final, 1), 3)})
        nursery.cancel_scope.cancel()
    return out


# ---------------------------------------------------------------- main


def table(r: Json) -> str:
    lines = ["| workload | orders | bids | declines | median ms | p95 ms | p99 ms | max ms |"
             " per s (1 core) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, d in r.get("decision", {}).items():
        s = d["decision_ms"]
        lines.append(f"| decision: {name} | {d['orders']} | {d['bids']} | {d['declines']} | "
                     f"{s['median']} | {s['p95']} | {s['p99']} | {s['max']} | "
                     f"{d['decisions_per_s_single_core']} |")
        if d["held_at_end"]:
            t = d["last_10pct_ms"]
            lines.append(f"| ... last 10 %, {d['held_at_end']} held | | | | {t['median']} | "
                         f"{t['p95']} | {t['p99']} | {t['max']} | |")
    for name, d in r.get("pipeline", {}).items():
        s = d["pipeline_ms"]
        lines.append(f"| pipeline: {name} | {d['orders']} | | | {s['median']} | {s['p95']} | "
                     f"{s['p99']} | {s['max']} | {d['orders_per_s_single_core']} |")
    if "service" in r:
        s = r["service"]
        lines.append(f"\nservice over TCP: {s['orders']} orders -> {s['bids']} bids + "
                     f"{s['declines']} declines in {s['answered_in_s']} s = "
                     f"**{s['orders_per_s']} orders/s** (provider process CPU "
                     f"{s['provider_cpu_ms_per_order']} ms per order; handoff "
                     f"{s['handoff']}, {s['orders_decoded_twice']} orders decoded twice)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="decision,pipeline,service")
    ap.add_argument("--n", type=int, default=2000, help="orders per decision workload")
    ap.add_argument("--orders", type=int, default=1500, help="orders in the service part")
    ap.add_argument("--batch", type=int, default=10, help="orders published per 10 ms")
    ap.add_argument("--limit", type=float, default=60.0)
    ap.add_argument("--handoff", choices=("node", "on", "off"), default="node",
                    help="service part: give the provider the node's market validators")
    ap.add_argument("--profile", type=Path, help="cProfile the decision loops into FILE")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--publisher-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.publisher_child:
        trio.run(publisher, json.loads(args.publisher_child))
        return
    parts = set(args.parts.split(","))
    result: Json = {"python": sys.version.split()[0],
                    "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    corpus = corpus_texts()
    workloads = {"web": orders_from([WEB], args.n), "gpu": orders_from([GPU], args.n),
                 "corpus": orders_from(corpus, max(args.n, len(corpus)))}
    result["corpus_sdls"] = len(corpus)
    if "decision" in parts:
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        result["decision"] = {name: bench_decision(o) for name, o in workloads.items()}
        result["decision"]["web, reservations kept"] = bench_decision(workloads["web"], keep=True)
        if args.profile:
            prof.disable()
            prof.dump_stats(str(args.profile))
    if "pipeline" in parts:
        result["pipeline"] = {name: bench_pipeline(o) for name, o in workloads.items()}
    if "service" in parts:
        result["service"] = run_service(args.orders, args.batch, args.limit, args.handoff)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=1)
    if args.json_out:
        args.json_out.write_text(text)
    print(text)
    print(table(result))


if __name__ == "__main__":
    main()
