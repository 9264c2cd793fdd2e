"""The Podman executor against a real podman service (skipped with a reason without one).

Real containers mean the real clock: no autojump clock here. Waits are bounded polls.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from podman import PodmanClient

from p2pakash.errors import ExecutorError
from p2pakash.executor import ContainerState, ContainerStatus, build_workload
from p2pakash.executor.base import LABEL_LEASE, LABEL_REPLICA, LABEL_SERVICE
from p2pakash.executor.podman import PodmanExecutor
from p2pakash.executor.podman_setup import PodmanService
from tests.executor.sdl_texts import group, web_sdl

PREFIX = f"pytest-{os.getpid()}-"
SERVE = '["echo web up; echo oops >&2; echo $GREETING > /www/index.html; ' \
        'exec httpd -f -p 8080 -h /www"]'


def _ours(client: PodmanClient) -> list[Any]:
    found = client.containers.list(all=True, filters={"label": LABEL_LEASE})
    return [c for c in found if c.labels.get(LABEL_LEASE, "").startswith(PREFIX)]


@pytest.fixture
def client(podman_service: PodmanService) -> Iterator[PodmanClient]:
    with PodmanClient(base_url=podman_service.base_url) as podman:
        yield podman
        for container in _ours(podman):  # whatever a failed test left behind
            container.remove(force=True, v=True)


@pytest.fixture
def executor(podman_service: PodmanService, client: PodmanClient) -> Iterator[PodmanExecutor]:
    runtime = PodmanExecutor(podman_service.base_url)
    yield runtime
    runtime.close()


def _lease_containers(client: PodmanClient, lease: str) -> list[Any]:
    return [c for c in _ours(client) if c.labels[LABEL_LEASE] == lease]


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


async def _settled(executor: PodmanExecutor, lease: str) -> ContainerStatus:
    """The first replica's status once it is no longer running (bounded poll)."""
    with trio.fail_after(5):
        for _ in range(100):
            status = (await executor.status(lease))[0]
            if status.state != ContainerState.RUNNING:
                return status
            await trio.sleep(0.05)
    raise AssertionError(f"{lease} kept running")


@pytest.mark.podman
async def test_deploy_limits_http_logs_teardown(executor: PodmanExecutor,
                                                client: PodmanClient) -> None:
    lease = PREFIX + "akash1tenant/7/1/1"
    statuses = await executor.deploy(lease, group(web_sdl(args=SERVE)))
    assert [(s.service, s.replica, s.state, s.error) for s in statuses] == [
        ("web", 0, ContainerState.RUNNING, ""), ("worker", 0, ContainerState.RUNNING, "")]
    web = statuses[0]
    assert set(web.ports) == {"8080/tcp"} and statuses[1].ports == {}

    info = client.containers.get(web.container_id).inspect()
    host = info["HostConfig"]
    assert (host["CpuPeriod"], host["CpuQuota"]) == (100000, 25000)  # cpu 0.25
    assert host["Memory"] == 64 * 2**20
    assert host["PidsLimit"] == executor.pids_limit
    assert {u["Name"] for u in host["Ulimits"]} >= {"RLIMIT_NOFILE", "RLIMIT_NPROC"}
    assert info["Config"]["Labels"][LABEL_SERVICE] == "web"
    assert info["Config"]["Labels"][LABEL_REPLICA] == "0"
    assert "GREETING=hello" in info["Config"]["Env"]
    bindings = info["NetworkSettings"]["Ports"]["8080/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(web.ports["8080/tcp"])}]

    assert (await _fetch(web.ports["8080/tcp"])).strip() == "hello"

    lines = await executor.logs(lease, service="web")
    assert [(x.stream, x.line) for x in lines] == [("stdout", "web up"), ("stderr", "oops")]
    assert await executor.logs(lease, service="web", tail=1) == lines[1:]
    assert await executor.logs(lease, service="worker") == []

    with trio.fail_after(10):
        await executor.teardown(lease)
    assert await executor.status(lease) == []
    assert _lease_containers(client, lease) == []
    await executor.teardown(lease)  # idempotent


@pytest.mark.podman
async def test_restart_adopts_by_label_without_duplicates(
        podman_service: PodmanService, executor: PodmanExecutor, client: PodmanClient) -> None:
    lease = PREFIX + "adopt"
    manifest = group(web_sdl(count=2, args=SERVE))
    first = await executor.deploy(lease, manifest)
    assert [s.state for s in first] == [ContainerState.RUNNING] * 3

    restarted = PodmanExecutor(podman_service.base_url)  # a new provider process
    try:
        assert lease in await restarted.adopt()
        again = await restarted.deploy(lease, manifest)
        assert [(s.service, s.replica, s.container_id, s.ports) for s in again] == [
            (s.service, s.replica, s.container_id, s.ports) for s in first]
        assert len(_lease_containers(client, lease)) == 3

        # A replica removed behind our back is recreated; the others are kept.
        client.containers.get(first[1].container_id).remove(force=True)
        healed = await restarted.deploy(lease, manifest)
        assert [s.state for s in healed] == [ContainerState.RUNNING] * 3
        assert healed[1].container_id != first[1].container_id
        assert (healed[0].container_id, healed[2].container_id) == (
            first[0].container_id, first[2].container_id)
        assert len(_lease_containers(client, lease)) == 3

        await restarted.teardown(lease)
        assert lease not in await restarted.adopt()
        assert await executor.status(lease) == []
    finally:
        restarted.close()


@pytest.mark.podman
async def test_bad_image_and_bad_command_fail_with_reason(
        podman_service: PodmanService, executor: PodmanExecutor, client: PodmanClient) -> None:
    lease = PREFIX + "bad"
    statuses = await executor.deploy(lease, group(web_sdl(image="nonexistent.invalid/nope:1")))
    web, worker = statuses
    assert web.state == ContainerState.FAILED and web.container_id == ""
    assert "image pull failed" in web.error and "nonexistent.invalid" in web.error
    assert worker.state == ContainerState.RUNNING
    await executor.teardown(lease)
    assert await executor.status(lease) == []

    broken = group(web_sdl(command='["/no/such/binary"]', args='["x"]'))
    await executor.deploy(lease, broken)
    web = await _settled(executor, lease)
    assert web.state == ContainerState.FAILED and web.container_id and web.ports == {}
    # The init (catatonit) runs, fails to exec the command and exits 1, saying why.
    assert web.error.startswith("exited with code 1: ") and "failed to exec" in web.error
    restarted = PodmanExecutor(podman_service.base_url)
    try:
        web = (await restarted.deploy(lease, broken))[0]
        assert web.state == ContainerState.FAILED and "failed to exec" in web.error
        assert len(_lease_containers(client, lease)) == 2
    finally:
        restarted.close()
    await executor.teardown(lease)
    assert _lease_containers(client, lease) == []


@pytest.mark.podman
@pytest.mark.skipif(any(os.path.isdir(d) and os.listdir(d) for d in ("/etc/cdi", "/var/run/cdi")),
                    reason="this host has CDI specs: GPUs may resolve")
async def test_gpu_lease_passes_cdi_devices_to_podman(executor: PodmanExecutor) -> None:
    lease = PREFIX + "gpu"
    web, worker = await executor.deploy(lease, group(web_sdl(gpu=1)), gpus=[0])
    # No CDI spec on this host: podman itself refuses the device we passed, by its name.
    assert web.state == ContainerState.FAILED and web.container_id
    assert web.error == "start failed: setting up CDI devices: " \
                        "unresolvable CDI devices nvidia.com/gpu=0"
    assert worker.state == ContainerState.RUNNING
    await executor.teardown(lease)
    assert await executor.status(lease) == []


@pytest.mark.podman
async def test_exited_replica_reports_exit_code(executor: PodmanExecutor) -> None:
    lease = PREFIX + "exit"
    manifest = group(web_sdl(args='["echo bye; exit 3"]'))
    await executor.deploy(lease, manifest)
    web = await _settled(executor, lease)
    assert (web.state, web.exit_code, web.error) == (
        ContainerState.FAILED, 3, "exited with code 3: bye")
    assert [x.line for x in await executor.logs(lease, service="web")] == ["bye"]
    await executor.teardown(lease)


# --- no podman service needed -------------------------------------------------------------


def test_create_kwargs_carry_sdl_limits_gpus_and_ports() -> None:
    runtime = PodmanExecutor("unix:///nonexistent/podman.sock", pids_limit=256)
    spec = build_workload("L", group(web_sdl(gpu=2, cpu="1.5")), gpus=[1, 4]).services[0]
    kwargs = runtime.create_kwargs(spec)
    assert kwargs["devices"] == ["nvidia.com/gpu=1", "nvidia.com/gpu=4"]
    assert (kwargs["cpu_period"], kwargs["cpu_quota"]) == (100000, 150000)
    assert kwargs["mem_limit"] == 64 * 2**20 and kwargs["pids_limit"] == 256
    assert kwargs["ports"] == {"8080/tcp": {"ip": "127.0.0.1"}}  # 9000 is not global
    assert kwargs["entrypoint"] == ["sh", "-c"] and kwargs["init"] is True
    assert kwargs["environment"] == {"GREETING": "hello", "EMPTY": ""}
    assert {u["Name"] for u in kwargs["ulimits"]} == {"nofile", "nproc"}
    assert all(u["Soft"] <= runtime.nofile or u["Name"] == "nproc" for u in kwargs["ulimits"])
    worker = build_workload("L", group(web_sdl()), gpus=[]).services[1]
    assert "devices" not in runtime.create_kwargs(worker)


async def test_unreachable_service_raises_executor_error(tmp_path: Any) -> None:
    runtime = PodmanExecutor(f"unix://{tmp_path}/missing.sock")
    with pytest.raises(ExecutorError, match=r"missing\.sock"):
        await runtime.status("L")
    with pytest.raises(ExecutorError, match=r"missing\.sock"):
        await runtime.adopt()
