#!/usr/bin/env python3
"""Market benchmark: SDL validation wall time, and the tenant's deploy path over real TCP.

Part ``sdl``: ``.venv/bin/p2pakash sdl validate`` on every SDL file of the corpus
(``/work/shared/corpus/sdl/MANIFEST.tsv`` rows whose ``expected`` is valid or invalid; the
n/a rows are Akash's golden JSON output, not SDL), ``--sdl-reps`` times, wall clock, like
hyperfine. Also timed: the CLI's start-up alone (``p2pakash --version``) and the in-process
parse + validate + version hash of all files, to split start-up from work.

Part ``net`` (``--executor fake`` and/or ``podman``): six real ``Node`` objects (node.py,
exactly as ``p2pakash node start`` wires them: gossip, chain, mempool, tx gossip, market
validators, tenant service, provider daemon) **in one process, one trio run**, each with its
own ``TcpTransport`` on 127.0.0.1 (authenticated, encrypted), full mesh: 4 validators with
the default consensus timeouts, 1 provider (``[provider]``: ``linear`` pricing, fake or
podman executor), 1 tenant. No HTTP API. The tenant runs ``TenantService.deploy`` ``--reps``
times; its ``emit`` callback stamps each event with ``time.perf_counter``:
  order -> first bid : the ``order`` event (emitted right before the gossip publish) to the
                       first ``bid`` event (the bid screened and shown to the tenant);
  order -> lease     : to the ``lease`` event (the CreateLease tx committed, lease ACTIVE,
                       seen by the tenant's node);
  lease -> running   : from the ``lease`` event to the provider's executor ``deploy``
                       returning with every replica running (a timing wrapper around the
                       node's own executor); includes the manifest's trip to the provider.
Between deploys the tenant closes the deployment (CloseDeployment) and the bench waits for
the containers' teardown. Reported from "lease closed" (the CloseDeployment tx committed, seen
by the tenant's node): teardown starts (the provider's executor ``teardown`` is called),
service down (podman only: a thread probing the published port with an HTTP GET every 2 ms
sees its first non-HTTP answer — refused or a 50 ms timeout — and never HTTP again) and
teardown done (``teardown`` returned: every container removed). Block intervals are the
tenant node's block arrival times during the deploys.

Every loop is bounded in count and time; the podman service started here is stopped.
Benchmark only: never a test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from _common import free_ports, pct, wait_until

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from p2pakash.config import NodeConfig, P2PConfig, ProviderConfig  # noqa: E402
from p2pakash.crypto import PrivateKey  # noqa: E402
from p2pakash.executor.base import ContainerState, ContainerStatus, Executor  # noqa: E402
from p2pakash.gossip.addr import PeerAddr  # noqa: E402
from p2pakash.ledger import (  # noqa: E402
    UAKT_PER_AKT,
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
)
from p2pakash.market import ledger_market as lm  # noqa: E402
from p2pakash.market.orders import DeploymentID  # noqa: E402
from p2pakash.market.sdl import ManifestGroup, parse_sdl  # noqa: E402
from p2pakash.node import Node  # noqa: E402
from p2pakash.runtime import tune_gc  # noqa: E402

CORPUS = Path("/work/shared/corpus/sdl")
CHAIN = "market-bench"
Json = dict[str, Any]

# One web service (busybox httpd, a published port), as a tenant's small deployment.
SDL = """\
version: "2.0"
services:
  web:
    image: localhost/busybox:latest
    command: ["sh", "-c"]
    args: ["mkdir -p /tmp/www; echo hello > /tmp/www/index.html; exec httpd -f -p 8080 -h /tmp/www"]
    expose:
      - port: 8080
        as: 80
        to: [{global: true}]
profiles:
  compute:
    web:
      resources:
        cpu: {units: 0.1}
        memory: {size: 64Mi}
        storage: {size: 16Mi}
  placement:
    dc:
      attributes:
        region: local
      pricing:
        web: {denom: uakt, amount: 1000}
deployment:
  web:
    dc: {profile: web, count: 1}
"""


# ---------------------------------------------------------------- helpers


def summary(values: Sequence[float], digits: int = 1) -> Json:
    if not values:
        return {"n": 0}
    return {"n": len(values), "median": round(statistics.median(values), digits),
            "p95": round(pct(values, 95), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def key(name: str) -> PrivateKey:
    return PrivateKey.from_seed(hashlib.sha256(f"market-bench-{name}".encode()).digest())


# ---------------------------------------------------------------- part 1: sdl validate


def corpus_files() -> list[str]:
    rows = (CORPUS / "MANIFEST.tsv").read_text().splitlines()[1:]
    files = []
    for row in rows:
        cols = row.split("\t")
        if len(cols) >= 3 and cols[2] in ("valid", "invalid"):
            files.append(str(CORPUS / cols[0]))
    return files


def time_cmd(argv: list[str], reps: int) -> tuple[list[float], int, str]:
    """Wall seconds per run (one warm-up run first), the last exit code and stdout."""
    times: list[float] = []
    code, out = 0, ""
    for i in range(reps + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        elapsed = time.perf_counter() - t0
        code, out = proc.returncode, proc.stdout
        if i:
            times.append(elapsed)
    return times, code, out


def bench_sdl(reps: int) -> Json:
    files = corpus_files()
    exe = str(ROOT / ".venv" / "bin" / "p2pakash")
    wall, code, _ = time_cmd([exe, "sdl", "validate", *files], reps)
    _, _, out = time_cmd([exe, "sdl", "validate", "--json", *files], 0)
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    startup, _, _ = time_cmd([exe, "--version"], reps)
    texts = [Path(f).read_text(encoding="utf-8-sig") for f in files]
    inproc: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for path, text in zip(files, texts, strict=True):
            try:
                parse_sdl(text, source=path).version_hash()
            except Exception:  # invalid fixtures raise SDLError
                continue
        inproc.append(time.perf_counter() - t0)
    ms = 1000.0
    med = statistics.median(wall)
    return {
        "files": len(files), "exit_code": code,
        "valid": sum(r["valid"] for r in records), "invalid": sum(not r["valid"] for r in records),
        "command": f".venv/bin/p2pakash sdl validate <{len(files)} files>",
        "wall_ms": summary([t * ms for t in wall]),
        "cli_startup_ms": summary([t * ms for t in startup]),
        "in_process_parse_validate_hash_ms": summary([t * ms for t in inproc]),
        "target_ms": 2000, "met": med <= 2.0,
    }


# ---------------------------------------------------------------- part 2: the network


VALIDATORS = [key(f"validator-{i}") for i in range(4)]
PROVIDER = key("provider")
TENANT = key("tenant")
ALL = [*VALIDATORS, PROVIDER, TENANT]


def genesis() -> GenesisDoc:
    return GenesisDoc(
        chain_id=CHAIN, genesis_time_ms=int(time.time() * 1000),
        accounts=tuple(GenesisAccount(address=k.address, balance=1_000_000 * UAKT_PER_AKT)
                       for k in (PROVIDER, TENANT)),
        validators=tuple(GenesisValidator(pubkey=k.public, stake=100 * UAKT_PER_AKT,
                                          moniker=f"v{i}") for i, k in enumerate(VALIDATORS)))


class TimedExecutor:
    """The node's own executor, with the wall time each deploy and teardown finished."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.name = inner.name
        self.deployed: dict[str, tuple[float, float, list[ContainerStatus]]] = {}
        self.teardown_started: dict[str, float] = {}
        self.torn_down: dict[str, float] = {}

    async def deploy(self, lease_id: str, group: ManifestGroup, *,
                     gpus: Sequence[int] = ()) -> list[ContainerStatus]:
        start = time.perf_counter()
        statuses = await self.inner.deploy(lease_id, group, gpus=gpus)
        self.deployed[lease_id] = (start, time.perf_counter(), statuses)
        return statuses

    async def status(self, lease_id: str) -> list[ContainerStatus]:
        return await self.inner.status(lease_id)

    async def logs(self, lease_id: str, *, service: str | None = None,
                   tail: int = 100) -> Any:
        return await self.inner.logs(lease_id, service=service, tail=tail)

    async def teardown(self, lease_id: str) -> None:
        self.teardown_started.setdefault(lease_id, time.perf_counter())
        await self.inner.teardown(lease_id)
        self.torn_down[lease_id] = time.perf_counter()

    async def adopt(self) -> list[str]:
        return await self.inner.adopt()


def probe_http(port: int, stop: list[bool], limit: float) -> float | None:
    """Wall time (perf_counter) of the first non-HTTP answer on ``port`` after which no HTTP
    answer came again; None if it still answered at the end. Runs in a thread."""
    down: float | None = None
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline and not (stop and down is not None):
        t = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.05) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                ok = conn.recv(16).startswith(b"HTTP")
        except OSError:
            ok = False
        if ok:
            down = None
        elif down is None:
            down = t
        time.sleep(0.002)
    return down


async def run_net(executor: str, reps: int, socket_url: str, seed: int) -> Json:
    gen = genesis()
    ports = free_ports(len(ALL))
    addrs = [f"127.0.0.1:{p}" for p in ports]
    rng = random.Random(seed)
    nodes: list[Node] = []
    for i, k in enumerate(ALL):
        peers = tuple(PeerAddr.parse(f"{ALL[j].node_id}@{addrs[j]}") for j in range(i))
        provider = None
        if k is PROVIDER:
            provider = ProviderConfig(
                attributes={"region": "local"}, executor=executor, podman_socket=socket_url,
                cpu=16.0, memory="32Gi", storage={"ephemeral": "100Gi"}, gpu_probes=(),
                entry_points=False, manifest_timeout=60.0)
        cfg = NodeConfig(chain_id=CHAIN, moniker=f"n{i}", home=Path(tempfile.gettempdir()),
                         p2p=P2PConfig(listen=addrs[i], persistent_peers=peers, pex=False),
                         provider=provider)
        nodes.append(Node(cfg, k, rng=random.Random(seed * 100 + i), genesis=gen,
                          in_memory=True, api=False))
    prov, ten = nodes[4], nodes[5]
    assert prov.provider is not None and ten.tenant is not None and ten.chain is not None
    timed = TimedExecutor(prov.provider.executor)
    prov.provider.executor = timed
    tenant = ten.tenant
    chain = ten.chain
    result: Json = {"executor": executor, "nodes": "4 validators + 1 provider + 1 tenant, "
                    "one process, TcpTransport each, full mesh"}
    block_times: list[tuple[float, int, int]] = []  # (arrival, height, header time_ms)

    async def follow(channel: trio.MemoryReceiveChannel[Any]) -> None:
        async for block, _ in channel:
            block_times.append((time.perf_counter(), block.height, block.header.time_ms))

    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        for node in nodes:
            await nursery.start(node.run)
        nursery.start_soon(follow, chain.subscribe_blocks())
        ready = await wait_until(
            lambda: all(len(n.gossip.connected) == len(nodes) - 1 for n in nodes)
            and chain.height >= 2
            and lm.get_provider(chain.ledger.store, PROVIDER.address) is not None, 60, 0.05)
        if not ready:
            raise SystemExit("network not ready in 60 s (peers, blocks, provider registration)")
        result["startup_s"] = round(time.perf_counter() - t0, 2)
        tune_gc()
        await trio.sleep(1.0)
        first_block = len(block_times)
        runs: list[Json] = []
        for rep in range(reps):
            await trio.sleep(rng.uniform(0.05, 0.4))  # sample different block phases
            runs.append(await one_deploy(tenant, prov, timed, rep))
        result["block_interval_ms"] = summary(
            [(b[0] - a[0]) * 1000 for a, b in zip(block_times[first_block:],
                                                  block_times[first_block + 1:], strict=False)])
        result["block_header_interval_ms"] = summary(
            [float(b[2] - a[2]) for a, b in zip(block_times[first_block:],
                                                block_times[first_block + 1:], strict=False)])
        nursery.cancel_scope.cancel()
    result["runs"] = runs
    ok = [r for r in runs if r["ok"]]
    result["deploys_ok"] = f"{len(ok)}/{len(runs)}"
    for name in ("order_to_first_bid_ms", "order_to_lease_ms", "lease_to_running_ms",
                 "lease_to_manifest_ack_ms", "lease_to_deploy_start_ms", "executor_deploy_ms",
                 "close_to_teardown_start_ms", "close_to_service_down_ms",
                 "close_to_teardown_ms", "teardown_call_ms"):
        result[name] = summary([r[name] for r in ok if r.get(name) is not None])
    interval = result["block_interval_ms"].get("median", float("nan"))
    result["order_to_lease_in_block_intervals"] = summary(
        [r["order_to_lease_ms"] / interval for r in ok], 2)
    result["manifest_refusals"] = prov.provider.stats.get("manifests_refused", 0)
    return result


async def one_deploy(tenant: Any, prov: Node, timed: TimedExecutor, rep: int) -> Json:
    stamps: dict[str, float] = {}
    events: list[Json] = []

    def emit(event: Json) -> None:
        stamps.setdefault(event["event"], time.perf_counter())
        events.append(event)

    manifest_start = prov.provider.stats.get("manifests_refused", 0) if prov.provider else 0
    with trio.fail_after(60):
        done = await tenant.deploy(SDL, source="bench.yaml", wait_s=10.0, emit=emit)
    out: Json = {"rep": rep, "ok": bool(done.get("ok")), "error": done.get("error", "")}
    if not out["ok"]:
        return out
    dseq = done["dseq"]
    lid = next(str(lease) for lease in (prov.provider.leases if prov.provider else {})
               if lease.dseq == dseq and lease.owner == TENANT.address)
    running = await wait_until(lambda: lid in timed.deployed, 20, 0.005)
    ms = 1000.0
    t_order, t_lease = stamps["order"], stamps["lease"]
    out["order_to_first_bid_ms"] = (stamps["bid"] - t_order) * ms
    out["order_to_lease_ms"] = (t_lease - t_order) * ms
    out["lease_to_manifest_ack_ms"] = (stamps["manifest"] - t_lease) * ms
    out["manifest_refusals"] = (prov.provider.stats.get("manifests_refused", 0)
                                if prov.provider else 0) - manifest_start
    if running:
        t_start, t_run, statuses = timed.deployed[lid]
        out["states"] = [str(s.state) for s in statuses]
        all_running = all(s.state is ContainerState.RUNNING for s in statuses)
        out["lease_to_running_ms"] = (t_run - t_lease) * ms if all_running else None
        out["lease_to_deploy_start_ms"] = (t_start - t_lease) * ms
        out["executor_deploy_ms"] = (t_run - t_start) * ms
    # close: CloseDeployment committed -> teardown starts, the service stops answering,
    # the provider's teardown is done (containers removed)
    port = next((s.ports.get("8080/tcp") for s in timed.deployed[lid][2]), None) if (
        running and timed.name == "podman") else None
    stop: list[bool] = []
    down: list[float | None] = []

    async def probe() -> None:
        assert port is not None
        down.append(await trio.to_thread.run_sync(probe_http, port, stop, 20.0))

    async with trio.open_nursery() as nursery:
        if port is not None:
            nursery.start_soon(probe)
        with trio.fail_after(30):
            await tenant.submit((lm.CloseDeployment(
                deployment=DeploymentID(owner=TENANT.address, dseq=dseq)),))
        t_closed = time.perf_counter()
        if await wait_until(lambda: lid in timed.torn_down, 20, 0.005):
            out["close_to_teardown_ms"] = (timed.torn_down[lid] - t_closed) * ms
            out["close_to_teardown_start_ms"] = (timed.teardown_started[lid] - t_closed) * ms
            out["teardown_call_ms"] = (timed.torn_down[lid] - timed.teardown_started[lid]) * ms
        stop.append(True)
    if down and down[0] is not None:
        out["close_to_service_down_ms"] = (down[0] - t_closed) * ms
    return out


def net_table(r: Json) -> str:
    rows = [("order -> first bid at the tenant", r["order_to_first_bid_ms"], "<= 100 ms"),
            ("order -> lease ACTIVE", r["order_to_lease_ms"], "<= 2 block intervals"),
            ("  ... in block intervals", r["order_to_lease_in_block_intervals"], "<= 2"),
            ("block interval (arrivals)", r["block_interval_ms"], ""),
            ("lease ACTIVE -> manifest ack", r["lease_to_manifest_ack_ms"], ""),
            ("lease ACTIVE -> executor deploy starts", r["lease_to_deploy_start_ms"], ""),
            ("executor deploy call", r["executor_deploy_ms"], ""),
            ("lease ACTIVE -> container running", r["lease_to_running_ms"], "<= 1500 ms"),
            ("lease closed -> teardown starts", r["close_to_teardown_start_ms"], ""),
            ("lease closed -> service down (podman)", r["close_to_service_down_ms"], ""),
            ("lease closed -> teardown done", r["close_to_teardown_ms"], "<= 1 block"),
            ("executor teardown call", r["teardown_call_ms"], "")]
    lines = [f"executor {r['executor']}: {r['deploys_ok']} deploys ok, "
             f"manifest refusals {r['manifest_refusals']}",
             f"| {'':38} | median | p95 | min | max | target |", "|---|---|---|---|---|---|"]
    for name, s, target in rows:
        if s.get("n"):
            lines.append(f"| {name:38} | {s['median']} | {s['p95']} | {s['min']} | {s['max']}"
                         f" | {target} |")
    return "\n".join(lines)


def sdl_table(r: Json) -> str:
    return "\n".join([
        f"sdl validate: {r['files']} files ({r['valid']} valid, {r['invalid']} invalid), "
        f"exit {r['exit_code']}",
        "| | median | p95 | min | max |", "|---|---|---|---|---|",
        *(f"| {name} | {r[k]['median']} | {r[k]['p95']} | {r[k]['min']} | {r[k]['max']} |"
          for name, k in (("sdl validate wall ms", "wall_ms"),
                          ("CLI start-up (--version) ms", "cli_startup_ms"),
                          ("in-process parse+validate+hash ms",
                           "in_process_parse_validate_hash_ms")))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="sdl,fake,podman",
                    help="comma list of sdl, fake, podman (default all)")
    ap.add_argument("--sdl-reps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=20, help="deploys with the fake executor")
    ap.add_argument("--podman-reps", type=int, default=10, help="deploys with podman")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    parts = set(args.parts.split(","))
    result: Json = {"python": sys.version.split()[0], "load_average_before": load_average()}
    if "sdl" in parts:
        result["sdl"] = bench_sdl(args.sdl_reps)
        print(sdl_table(result["sdl"]), flush=True)
    if "fake" in parts:
        result["fake"] = trio.run(run_net, "fake", args.reps, "", args.seed)
        print(net_table(result["fake"]), flush=True)
    if "podman" in parts:
        from p2pakash.executor.podman_setup import podman_unusable_reason, running_service

        with tempfile.TemporaryDirectory(prefix="p2pakash-bench-podman-") as tmp:
            reason = podman_unusable_reason(Path(tmp))
            if reason is not None:
                result["podman"] = {"skipped": reason}
            else:
                with running_service(Path(tmp)) as service:
                    result["podman"] = trio.run(run_net, "podman", args.podman_reps,
                                                service.base_url, args.seed)
                print(net_table(result["podman"]), flush=True)
    result["load_average_after"] = load_average()
    text = json.dumps(result, indent=1)
    if args.json_out:
        args.json_out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
