"""``make demo``: the whole marketplace on 127.0.0.1, every node its own process.

Steps: a testnet of 4 validators, 2 providers (one matches the SDL, one does not) and a
tenant is created in a temporary folder and started; ``configs/demo/deploy.yaml`` goes
through order -> bids (and the other provider's decline) -> lease -> manifest -> running
container; lease status, logs and (with Podman) an HTTP GET of the published port are
shown; the lease and deployment are closed and the balances of tenant, provider and escrow
compared; everything is shut down.

Rules: Podman is used when ``podman_unusable_reason`` is None, else one line says why and
the ``fake`` executor runs the lease (``P2PAKASH_DEMO_EXECUTOR=fake|podman`` forces one).
Every wait is bounded; a failed step ends the demo with exit code 1, the step's name and
the tail of the log of the node concerned. The temporary folder is removed at the end
(``P2PAKASH_DEMO_KEEP=1`` keeps it).
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2pakash.client import ApiError, NodeClient, NodeUnreachable
from p2pakash.errors import P2PAkashError
from p2pakash.executor.podman_setup import podman_unusable_reason
from p2pakash.market.ledger_market import ESCROW
from p2pakash.tenant.client import TenantClient
from p2pakash.testnet import Layout, NodeEntry, init_testnet
from p2pakash.testnet_run import Testnet, log_tail

ROOT = Path(__file__).resolve().parent.parent
SDL_FILE = ROOT / "configs" / "demo" / "deploy.yaml"
CHAIN_ID = "p2pakash-demo"
STEPS = 8


class DemoError(P2PAkashError):
    """A step failed; ``node`` names the node whose log explains it (if one does)."""

    def __init__(self, message: str, node: NodeEntry | None = None) -> None:
        super().__init__(message)
        self.node = node


def say(text: str) -> None:
    print(f"  {text}", flush=True)


def free_base_port(count: int, start: int = 27100) -> int:
    """A base port with ``count`` free ports above it on 127.0.0.1."""
    for base in range(start, 60000, 100):
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise DemoError("no free range of ports on 127.0.0.1")


def wait_for(what: str, cond: Callable[[], Any], limit: float, net: Testnet,
             node: NodeEntry | None = None) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        net.check_alive()
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise DemoError(f"gave up waiting for {what} after {limit:g} s", node)


def choose_executor(workdir: Path) -> tuple[str, str]:
    forced = os.environ.get("P2PAKASH_DEMO_EXECUTOR", "")
    if forced in ("fake", "podman"):
        return forced, f"forced by P2PAKASH_DEMO_EXECUTOR={forced}"
    reason = podman_unusable_reason(workdir)
    return ("fake", reason) if reason else ("podman", "")


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.step_no = 0
        self.step_name = ""
        self.net: Testnet | None = None
        self.layout: Layout | None = None
        self.names: dict[str, str] = {}

    def step(self, name: str) -> None:
        self.step_no += 1
        self.step_name = name
        print(f"\n== [{self.step_no}/{STEPS}] {name}", flush=True)

    def name(self, address: str) -> str:
        return self.names.get(address, address[:14] + "...")

    def run(self) -> None:
        started = time.monotonic()
        self.step("Create a testnet: 4 validators, 2 providers, 1 tenant on 127.0.0.1")
        executor, why = choose_executor(self.workdir / "probe")
        if executor == "fake":
            say(f"Podman not used ({why}): the providers run the fake executor")
        else:
            say("Podman works here: the lease runs in a real container")
        base = free_base_port(14)
        layout = init_testnet(self.workdir / "net", validators=4, providers=2, tenants=1,
                              chain_id=CHAIN_ID, base_port=base, executor=executor)
        self.layout = layout
        self.names = {n.address: n.name for n in layout.nodes}
        say(f"{layout.root}: chain {layout.chain_id}, genesis {layout.genesis_hash[:16]}...")
        for entry in layout.by_role("provider"):
            say(f"{entry.name}: {self._attributes(entry)}")

        self.step("Start every node as its own process")
        net = self.net = Testnet(layout)
        net.start()
        took = net.wait_ready(timeout=60.0)
        say(f"all {len(layout.nodes)} nodes answer at height >= 1 after {took:.1f} s")
        for line in net.table().splitlines():
            say(line)
        tenant, provider0 = layout.node("tenant0"), layout.node("provider0")
        api = TenantClient(tenant.url, timeout=10.0)

        self.step("Providers register on chain (CreateProvider)")
        for entry in layout.by_role("provider"):
            wait_for(f"{entry.name} to register", functools.partial(_registered, api, entry),
                     30.0, net, entry)
            say(f"{entry.name} ({entry.address}) registered")
        before = self.balances(api, tenant, provider0)

        self.step(f"Deploy {SDL_FILE.relative_to(ROOT)}: order -> bids -> lease -> manifest")
        dseq, lease = self.deploy(api, tenant)
        after_lease = self.balances(api, tenant, provider0)

        self.step("Lease status, logs" + (" and an HTTP GET" if executor == "podman" else ""))
        self.status_and_logs(api, lease, executor, provider0)

        self.step("Close the lease and the deployment")
        closed = api.close_lease(lease)
        say(f"lease {lease} closed at height {closed.get('height')}")
        done = api.close_deployment(dseq)
        say(f"deployment {dseq} closed at height {done.get('height')}; escrow refunded")
        dep = done.get("deployment") or {}
        leases = dep.get("leases") or [{}]
        paid = int(leases[0].get("withdrawn", 0)) + int(leases[0].get("accrued", 0))
        price = int(leases[0].get("price", 0))

        self.step("How the balances moved (uakt)")
        after = self.balances(api, tenant, provider0)
        self.show_balances(before, after_lease, after, paid, price)

        self.step("Shut everything down")
        codes = net.stop()
        self.net = None
        bad = {n: c for n, c in codes.items() if c not in (0, None)}
        if bad:
            raise DemoError(f"nodes exited with non-zero codes: {bad}")
        say(f"all {len(codes)} nodes stopped cleanly")
        print(f"\n[demo] done in {time.monotonic() - started:.1f} s", flush=True)

    def _attributes(self, entry: NodeEntry) -> str:
        from p2pakash.config import load_config

        assert self.layout is not None
        cfg = load_config(self.layout.home(entry) / "config.toml").provider
        assert cfg is not None
        return ", ".join(f"{k}={v}" for k, v in sorted(cfg.attributes.items()))

    def balances(self, api: NodeClient, tenant: NodeEntry, provider: NodeEntry
                 ) -> dict[str, int]:
        return {"tenant0": int(api.account(tenant.address)["balance"]),
                "provider0": int(api.account(provider.address)["balance"]),
                "escrow": int(api.account(ESCROW)["balance"])}

    def deploy(self, api: TenantClient, tenant: NodeEntry) -> tuple[int, str]:
        sdl = SDL_FILE.read_text()
        final: dict[str, Any] = {}
        lease = ""
        for event in api.create(sdl, source=str(SDL_FILE), deposit=None, select=None,
                                wait=10.0, denom_rates={}):
            kind = event.get("event")
            ms = event.get("elapsed_ms")
            at = f" (+{ms} ms)" if ms is not None else ""
            if kind == "order":
                say(f"order dseq {event['dseq']} published: deposit {event['deposit']} uakt, "
                    f"max price {event['groups'][0]['max_price']} uakt/block")
            elif kind == "bid":
                say(f"bid      from {self.name(event['provider'])}: {event['price']} "
                    f"uakt/block{at}")
            elif kind == "decline":
                say(f"decline  from {self.name(event['provider'])}: {event['reason']}: "
                    f"{event['text']}{at}")
            elif kind == "bid_refused":
                say(f"refused  bid of {self.name(event['provider'])}: {event['why']}{at}")
            elif kind == "selected":
                say(f"selected {self.name(event['provider'])} at {event['price']} uakt/block "
                    f"(by {event['by']})")
            elif kind == "lease":
                lease = str(event["lease"])
                say(f"lease {lease} active at height {event['height']}")
            elif kind == "manifest":
                state = "accepted" if event.get("accepted") else f"refused: {event['error']}"
                say(f"manifest sent to {self.name(event['provider'])}: {state}")
            elif kind == "done":
                final = event
        if not final.get("ok"):
            raise DemoError(f"deployment failed at {final.get('stage')}: {final.get('error')}",
                            tenant)
        return int(final["dseq"]), lease

    def status_and_logs(self, api: TenantClient, lease: str, executor: str,
                        provider: NodeEntry) -> None:
        assert self.net is not None

        def running() -> dict[str, Any] | None:
            st = api.lease_status(lease)
            ps = st.get("provider_status") or {}
            return st if ps.get("state") in ("running", "failed") else None

        status = wait_for(f"lease {lease} to run", running, 60.0, self.net, provider)
        ps = status["provider_status"]
        say(f"lease {lease}: chain state {status['lease']['state']}, price "
            f"{status['lease']['price']} uakt/block, provider state {ps['state']}")
        port = 0
        for svc in ps["services"]:
            say(f"  service {svc['service']} replica {svc['replica']}: {svc['state']}, "
                f"ports {svc['ports']}")
            port = port or next(iter(svc["ports"].values()), 0)
        if ps["state"] != "running":
            raise DemoError(f"the container did not start: {ps.get('error')}", provider)
        if executor == "podman":
            if not port:
                raise DemoError("the provider reported no published port", provider)
            body = wait_for(f"HTTP on 127.0.0.1:{port}", lambda: _http_get(port), 15.0,
                            self.net, provider)
            say(f"GET http://127.0.0.1:{port}/ -> {body.strip()!r}")
        logs = wait_for("the container's first log line",
                        lambda: api.lease_logs(lease, tail=20)["lines"], 20.0, self.net,
                        provider)
        for line in logs:
            say(f"  log {line['service']}/{line['stream']}: {line['line']}")

    def show_balances(self, before: dict[str, int], leased: dict[str, int],
                      after: dict[str, int], paid: int, price: int) -> None:
        say(f"{'account':<10} {'before':>16} {'lease open':>16} {'after close':>16} "
            f"{'change':>12}")
        for name in ("tenant0", "provider0", "escrow"):
            say(f"{name:<10} {before[name]:>16,} {leased[name]:>16,} {after[name]:>16,} "
                f"{after[name] - before[name]:>+12,}")
        blocks = paid // price if price else 0
        say(f"provider0 earned {paid:,} uakt ({blocks} blocks x {price:,} uakt); tenant0 "
            f"paid {before['tenant0'] - after['tenant0']:,} uakt; the deposit went into "
            f"escrow and the rest came back on close")

    def fail(self, exc: BaseException) -> None:
        print(f"\n[demo] FAILED at step {self.step_no} ({self.step_name}): {exc}",
              file=sys.stderr, flush=True)
        node = getattr(exc, "node", None)
        if self.layout is not None and node is not None:
            print(log_tail(self.layout, node, 3000), file=sys.stderr, flush=True)

    def cleanup(self) -> None:
        if self.net is not None:
            self.net.stop()
            self.net = None


def _registered(api: NodeClient, entry: NodeEntry) -> bool:
    try:
        return int(api.account(entry.address)["sequence"]) >= 1
    except (NodeUnreachable, ApiError):
        return False


def _http_get(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
            return str(resp.read().decode(errors="replace"))
    except OSError:
        return ""


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="p2pakash-demo-"))
    demo = Demo(workdir)
    print(f"[demo] p2pakash marketplace demo in {workdir}", flush=True)
    code = 0
    try:
        demo.run()
    except (P2PAkashError, OSError) as exc:  # TestnetError, DemoError, ApiError, ...
        demo.fail(exc)
        code = 1
    except KeyboardInterrupt:
        print("\n[demo] interrupted", file=sys.stderr)
        code = 130
    finally:
        demo.cleanup()
        if os.environ.get("P2PAKASH_DEMO_KEEP") == "1":
            print(f"[demo] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
