"""``p2pakash deploy|lease`` against a running node API: hypercorn on 127.0.0.1 serving the
tenant node of a real market network (1 validator, 2 providers, the tenant; in-memory
links, real clock) run by trio in a thread; the CLI runs in the test's thread."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from p2pakash.api import ApiService, NodeInfo
from p2pakash.api.tenant_routes import TenantRoutes
from p2pakash.cli import deploy, lease
from p2pakash.client import ApiError
from p2pakash.gossip.memory import MemoryNetwork
from p2pakash.market import ledger_market as lm
from p2pakash.market.validators import TOPIC_BIDS, TOPIC_ORDERS
from p2pakash.tenant import TenantService
from p2pakash.tenant.client import TenantClient
from tests.cli import Result, run_main
from tests.market.helpers_market import SDL_TEXT
from tests.tenant.net import (
    CHAIN,
    CPU_ATTRS,
    CPU_PROVIDER,
    GPU_ATTRS,
    GPU_PROVIDER,
    TENANT,
    MarketNet,
    SimProvider,
    now_ms,
    wait_for,
    wait_tx,
)

COMMANDS = {"deploy": deploy.command, "lease": lease.command}


@attrs.frozen
class Served:
    url: str


async def serve(box: dict[str, Any], ready: threading.Event) -> None:
    async with trio.open_nursery() as nursery:
        net = MarketNet(network=MemoryNetwork(random.Random(5)), nursery=nursery, validators=1)
        validators = await net.start_validators()
        gpu = await net.start(GPU_PROVIDER, 4, validator=False, peers=validators)
        cpu = await net.start(CPU_PROVIDER, 5, validator=False, peers=validators)
        tenant = await net.start(TENANT, 6, validator=False, peers=[*validators, gpu, cpu])
        for m, attributes in ((gpu, GPU_ATTRS), (cpu, CPU_ATTRS)):
            await wait_tx(tenant, m.submit(lm.CreateProvider(
                host_uri=m.peer_addr, attributes=attributes, bond=500_000)), limit=20)
        for sim in (SimProvider(gpu, GPU_ATTRS, price=900), SimProvider(cpu, CPU_ATTRS)):
            await nursery.start(sim.run)
        svc = TenantService(key=TENANT, gossip=tenant.gossip, chain=tenant.chain,
                            mempool=tenant.mempool, publish_tx=tenant.txs.publish, now_ms=now_ms)
        await nursery.start(svc.run)
        api = ApiService(chain=tenant.chain, mempool=tenant.mempool, listen="127.0.0.1:0",
                         publish=tenant.txs.publish,
                         info=NodeInfo(chain_id=CHAIN, node_id=TENANT.node_id, moniker="tenant",
                                       pubkey=TENANT.public))
        bound = await nursery.start(api.run)
        assert api.app is not None
        api.app.mounts.append(TenantRoutes(svc))
        await wait_for(lambda: bool(tenant.gossip.pubsub.mesh(TOPIC_BIDS))
                       and all(bool(m.gossip.pubsub.mesh(TOPIC_ORDERS)) for m in (gpu, cpu)),
                       limit=20)
        box.update(url=f"http://{bound}", cancel=nursery.cancel_scope,
                   token=trio.lowlevel.current_trio_token())
        ready.set()


@pytest.fixture(scope="module")
def node() -> Iterator[Served]:
    box: dict[str, Any] = {}
    ready = threading.Event()

    def thread() -> None:
        try:
            trio.run(serve, box, ready)
        except BaseException as exc:
            box["error"] = exc
        finally:
            ready.set()

    worker = threading.Thread(target=thread, daemon=True)
    worker.start()
    assert ready.wait(60) and "error" not in box, box.get("error")
    yield Served(url=box["url"])
    trio.from_thread.run_sync(box["cancel"].cancel, trio_token=box["token"])
    worker.join(10)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    def run(*argv: str) -> Result:
        return run_main(list(argv), COMMANDS[argv[0]], capsys, monkeypatch)
    return run


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_create_json_stream_then_manage(node: Served, cli: Any, tmp_path: Path) -> None:
    sdl = write(tmp_path, "deploy.yaml", SDL_TEXT)
    result = cli("deploy", "create", str(sdl), "--json", "--wait", "5", "--deposit", "5akt",
                 "--node", node.url)
    assert result.code == 0, result.err + result.out
    events = [json.loads(line) for line in result.out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "order" and kinds[-1] == "done" and events[-1]["ok"] is True
    assert {"bid", "decline", "selected", "lease_tx", "lease", "manifest"} <= set(kinds)
    order = events[0]
    assert order["owner"] == TENANT.address and order["deposit"] == 5_000_000
    assert order["groups"] == [{"gseq": 1, "name": "dc", "max_price": 3000, "units": 1}]
    bid = next(e for e in events if e["event"] == "bid")
    assert (bid["provider"], bid["price"], bid["gpus"]) == (GPU_PROVIDER.address, 900,
                                                            ["nvidia/h100"])
    decline = next(e for e in events if e["event"] == "decline")
    assert (decline["provider"], decline["reason"]) == (CPU_PROVIDER.address,
                                                        "attribute_mismatch")
    dseq = order["dseq"]
    ref = f"{dseq}.1.1"
    assert events[-1]["leases"] == [ref]
    assert next(e for e in events if e["event"] == "manifest")["accepted"] is True

    bids = json.loads(cli("deploy", "bids", str(dseq), "--json", "--node", node.url).out)
    assert bids["status"] == "active" and len(bids["bids"]) == 1 and len(bids["declines"]) == 1
    text = cli("deploy", "bids", str(dseq), "--node", node.url).out
    assert "900 uakt/block" in text and "attribute_mismatch" in text

    leases = json.loads(cli("lease", "list", "--json", "--node", node.url).out)["leases"]
    assert [(x["lease"], x["state"], x["price"]) for x in leases] == [(ref, "active", 900)]
    status = json.loads(cli("lease", "status", str(dseq), "--json", "--node", node.url).out)
    assert status["provider_status"]["state"] == "running" and status["provider_error"] == ""
    logs = cli("lease", "logs", ref, "--tail", "2", "--node", node.url)
    assert logs.code == 0 and logs.out.splitlines() == ["web[0] stdout: line 0",
                                                        "web[0] stdout: line 1"]

    dep = cli("deploy", "deposit", str(dseq), "1akt", "--node", node.url)
    assert dep.code == 0 and "event: deposit" in dep.out, dep.err
    closed = cli("lease", "close", ref, "--json", "--node", node.url)
    assert closed.code == 0, closed.err
    assert any(e["type"] == "lease_closed" for e in json.loads(closed.out)["events"])
    again = cli("lease", "close", ref, "--node", node.url)
    assert again.code == 1 and "is not active" in again.err and again.err.count("\n") == 1
    done = cli("deploy", "close", str(dseq), "--node", node.url)
    assert done.code == 0 and "deployment_closed" in done.out, done.err
    listed = json.loads(cli("deploy", "list", "--json", "--node", node.url).out)
    assert [d["state"] for d in listed["deployments"] if d["dseq"] == dseq] == ["closed"]
    client = TenantClient(node.url)
    one = client.request("GET", f"/deployments/{dseq}")
    assert one == next(d for d in listed["deployments"] if d["dseq"] == dseq)
    assert one["progress"] == "active" and one["bids"] == 1 and len(one["leases"]) == 1
    with pytest.raises(ApiError) as missing:
        client.request("GET", "/deployments/999999")
    assert missing.value.status == 404


def test_no_bids_prints_why(node: Served, cli: Any, tmp_path: Path) -> None:
    sdl = write(tmp_path, "mars.yaml", SDL_TEXT.replace("region: us-west", "region: mars"))
    result = cli("deploy", "create", str(sdl), "--wait", "5", "--node", node.url)
    assert result.code == 1
    assert "Why no bids? group 'dc'" in result.out
    for k in (GPU_PROVIDER, CPU_PROVIDER):
        assert f"  {k.address}: attribute_mismatch: provider lacks placement attributes " \
               f"region=mars" in result.out
    assert "failed (no_bids)" in result.out


def test_bad_input_is_one_line_and_exit_1(node: Served, cli: Any, tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "services: {}\n")
    result = cli("deploy", "create", str(bad), "--node", node.url)
    assert result.code == 1 and result.out == ""
    assert result.err == f"error: {bad}: SDL invalid: no version found\n"
    uact = write(tmp_path, "uact.yaml", SDL_TEXT.replace("denom: uakt", "denom: uact"))
    result = cli("deploy", "create", str(uact), "--node", node.url)
    assert result.code == 1 and "--denom-rate uact=" in result.err
    assert result.err.count("\n") == 1
    result = cli("deploy", "create", str(uact), "--denom-rate", "uact=x", "--node", node.url)
    assert result.code == 1 and "expected DENOM=UAKT_PER_UNIT" in result.err
    result = cli("deploy", "create", str(write(tmp_path, "ok.yaml", SDL_TEXT)),
                 "--deposit", "1", "--node", node.url)
    assert result.code == 1 and "below the chain's minimum" in result.err
    assert cli("deploy", "bids", "999999", "--node", node.url).code == 1
    assert cli("lease", "status", "x.y", "--node", node.url).code == 2
    unreachable = cli("deploy", "list", "--node", "http://127.0.0.1:9")
    assert unreachable.code == 1 and "cannot reach node" in unreachable.err
