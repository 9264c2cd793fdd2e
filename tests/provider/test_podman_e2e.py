"""[podman] The provider with the real Podman executor (real clock; skipped without podman).

busybox httpd SDL -> bid -> lease -> manifest -> container running with the SDL's CPU and
memory limits -> HTTP reachable on the published port -> logs reach the tenant -> the provider
restarts mid-lease and adopts the containers (no duplicates) -> escrow runs out -> removed.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from podman import PodmanClient

from p2pakash.config import ProviderConfig
from p2pakash.executor.base import LABEL_LEASE
from p2pakash.executor.podman import PodmanExecutor
from p2pakash.executor.podman_setup import PodmanService
from p2pakash.market import ledger_market as lm
from tests.executor.sdl_texts import web_sdl
from tests.provider.netkit import PROVIDER, market, plugins_with, wait_for
from tests.provider.test_service import lease_for, lease_rec, manifest_bytes, registered

SERVE = '["echo web up; echo $GREETING > /www/index.html; exec httpd -f -p 8080 -h /www"]'
SDL_TEXT = web_sdl(args=SERVE.replace("/www", "/tmp/www").replace(
    "echo web up;", "echo web up; mkdir -p /tmp/www;")).replace("amount: 100}",
                                                             "amount: 200000}")
PRICE = 25_000  # the deposit (1,000,000) lasts 40 blocks
CFG = ProviderConfig(executor="podman", cpu=2.0, memory="2Gi", storage={"ephemeral": "1Gi"},
                     manifest_timeout=30.0, withdraw_period=1.0, gpu_probes=())


def _ours(client: PodmanClient) -> list[Any]:
    found = client.containers.list(all=True, filters={"label": LABEL_LEASE})
    return [c for c in found if c.labels.get(LABEL_LEASE, "").endswith(PROVIDER.address)]


@pytest.fixture
def client(podman_service: PodmanService) -> Iterator[PodmanClient]:
    with PodmanClient(base_url=podman_service.base_url) as podman:
        for container in _ours(podman):
            container.remove(force=True, v=True)
        yield podman
        for container in _ours(podman):
            container.remove(force=True, v=True)


def _http_get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
        return str(response.read().decode())


async def _fetch(port: int) -> str:
    with trio.fail_after(5):
        for _ in range(100):
            try:
                return await trio.to_thread.run_sync(_http_get, port)
            except OSError:
                await trio.sleep(0.05)
    raise AssertionError(f"no HTTP answer on 127.0.0.1:{port}")


@pytest.mark.podman
async def test_busybox_lease_on_podman(podman_service: PodmanService, client: PodmanClient,
                                       tmp_path: Path) -> None:
    async with market(seed=5) as m:
        executor = PodmanExecutor(podman_service.base_url)
        await m.start_provider(CFG, executor, plugins_with(PRICE), state_dir=tmp_path)
        await registered(m)
        _, _, lid = await lease_for(m, 11, price=PRICE, text=SDL_TEXT)
        ack = await m.tenant.ask(m.tenant.manifest(lid, manifest_bytes(SDL_TEXT)))
        assert ack.ok, ack.error
        assert m.provider is not None
        svc = m.provider
        await wait_for(lambda: svc.leases[lid].state != "deploying", limit=20)
        assert svc.leases[lid].state == "running", svc.leases[lid].error

        status = await m.tenant.ask(m.tenant.status(lid))
        assert [(s.service, s.state) for s in status.services] == [
            ("web", "running"), ("worker", "running")]
        port = dict(status.services[0].ports)["8080/tcp"]
        assert (await _fetch(port)).strip() == "hello"

        containers = _ours(client)
        assert len(containers) == 2
        web = next(c for c in containers if c.labels["p2pakash.service"] == "web")
        host = web.inspect()["HostConfig"]
        assert (host["CpuPeriod"], host["CpuQuota"]) == (100000, 25000)  # cpu 0.25
        assert host["Memory"] == 64 * 2**20

        logs = await m.tenant.ask(m.tenant.logs(lid, service="web"))
        assert logs.error == "" and "web up" in [x.line for x in logs.lines]

        # the provider process restarts mid-lease: same containers, none added
        ids = sorted(c.id for c in containers)
        m.stop_provider()
        executor.close()
        executor = PodmanExecutor(podman_service.base_url)
        svc = await m.start_provider(CFG, executor, plugins_with(PRICE), state_dir=tmp_path)
        await wait_for(lambda: lid in svc.leases and svc.leases[lid].state == "running",
                       limit=20)
        assert sorted(c.id for c in _ours(client)) == ids
        status = await m.tenant.ask(m.tenant.status(lid))
        assert status.state == "running"

        # the escrow runs out: the lease closes and the containers are removed
        await wait_for(lambda: (rec := lease_rec(m, lid)) is not None
                       and rec.state is lm.LeaseState.INSUFFICIENT_FUNDS, limit=30)
        await wait_for(lambda: not _ours(client), limit=15, step=0.1)
        executor.close()
