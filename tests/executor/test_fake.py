"""The fake executor's full lifecycle, and the pure workload builder it shares with podman."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from p2pakash.errors import ExecutorError
from p2pakash.executor import (
    ContainerState,
    Executor,
    FakeEngine,
    FakeExecutor,
    LogLine,
    build_workload,
)
from p2pakash.executor.base import LABEL_LEASE, container_name
from tests.executor.sdl_texts import BUSYBOX, group, web_sdl

LEASE = "akash1tenant/42/1/1/akash1provider"


def test_workload_one_spec_per_replica_with_gpus_in_order() -> None:
    workload = build_workload(LEASE, group(web_sdl(count=2, gpu=1)), gpus=[3, 5])
    assert [(s.service, s.replica, s.gpus) for s in workload.services] == [
        ("web", 0, (3,)), ("web", 1, (5,)), ("worker", 0, ())]
    web = workload.services[0]
    assert web.cpu_millis == 250 and web.memory_bytes == 64 * 2**20
    assert web.command == ("sh", "-c") and web.env == (("GREETING", "hello"), ("EMPTY", ""))
    assert [(p.key, p.is_global) for p in web.ports] == [("8080/tcp", True), ("9000/tcp", False)]
    assert web.cdi_devices == ("nvidia.com/gpu=3",)
    assert web.labels[LABEL_LEASE] == LEASE
    assert web.container_name == container_name(LEASE, "web", 0)
    assert "/" not in web.container_name
    assert len({s.container_name for s in workload.services}) == 3


def test_workload_refuses_too_few_gpus_and_bad_ids() -> None:
    with pytest.raises(ExecutorError, match='service "web" replica 1 needs 1 GPU'):
        build_workload(LEASE, group(web_sdl(count=2, gpu=1)), gpus=[0])
    with pytest.raises(ExecutorError, match="distinct"):
        build_workload(LEASE, group(web_sdl(gpu=1)), gpus=[1, 1])
    with pytest.raises(ExecutorError, match="invalid lease ID"):
        build_workload("", group(web_sdl()))
    with pytest.raises(ExecutorError, match="invalid lease ID"):
        build_workload("bad\nid", group(web_sdl()))


async def test_fake_full_lifecycle() -> None:
    engine = FakeEngine(port_base=31000)
    executor: Executor = FakeExecutor(engine)
    assert await executor.status(LEASE) == []
    statuses = await executor.deploy(LEASE, group(web_sdl(count=2)))
    assert [(s.service, s.replica, s.state) for s in statuses] == [
        ("web", 0, ContainerState.RUNNING), ("web", 1, ContainerState.RUNNING),
        ("worker", 0, ContainerState.RUNNING)]
    assert [s.ports for s in statuses] == [{"8080/tcp": 31000}, {"8080/tcp": 31001}, {}]
    assert len({s.container_id for s in statuses}) == 3

    engine.emit(LEASE, "web", 1, "GET / 200", stream="stderr")
    lines = await executor.logs(LEASE, service="web")
    assert lines[-1] == LogLine(service="web", replica=1, stream="stderr", line="GET / 200")
    assert lines[0].line.startswith(f"started {BUSYBOX} sh -c")
    assert {line.service for line in await executor.logs(LEASE)} == {"web", "worker"}
    assert await executor.logs(LEASE, service="web", tail=1) == [lines[0], lines[-1]]
    assert await executor.logs(LEASE, tail=0) == []

    engine.exit(LEASE, "worker", 0, 3)
    worker = (await executor.status(LEASE))[-1]
    assert (worker.state, worker.exit_code, worker.error) == (
        ContainerState.FAILED, 3, "exited with code 3")
    engine.exit(LEASE, "web", 0, 0)
    assert (await executor.status(LEASE))[0].state == ContainerState.EXITED

    await executor.teardown(LEASE)
    assert await executor.status(LEASE) == []
    assert await executor.logs(LEASE) == []
    await executor.teardown(LEASE)  # idempotent
    assert await executor.adopt() == []


async def test_fake_redeploy_and_restart_adopt_without_duplicates() -> None:
    engine = FakeEngine()
    first = FakeExecutor(engine)
    deployed = await first.deploy(LEASE, group(web_sdl()))
    await first.deploy("other-lease", group(web_sdl()))
    again = await first.deploy(LEASE, group(web_sdl()))
    assert again == deployed
    assert engine.created == 4

    restarted = FakeExecutor(engine)  # a new provider process, same engine
    assert await restarted.adopt() == [LEASE, "other-lease"]
    assert await restarted.deploy(LEASE, group(web_sdl())) == deployed
    assert engine.created == 4
    # A lease whose containers all stopped is not adopted.
    engine.exit("other-lease", "web", 0, 0)
    engine.exit("other-lease", "worker", 0, 0)
    assert await restarted.adopt() == [LEASE]


async def test_fake_configured_failures_are_reported_not_raised() -> None:
    executor = FakeExecutor(fail_images={"ghcr.io/nope:1": "image pull failed: not found"})
    statuses = await executor.deploy(LEASE, group(web_sdl(image="ghcr.io/nope:1")))
    web, worker = statuses
    assert (web.state, web.error) == (ContainerState.FAILED, "image pull failed: not found")
    assert web.ports == {}
    assert worker.state == ContainerState.RUNNING

    by_service = FakeExecutor(fail_services={"worker": "start failed: boom"})
    worker = (await by_service.deploy(LEASE, group(web_sdl())))[-1]
    assert (worker.state, worker.error) == (ContainerState.FAILED, "start failed: boom")


async def test_fake_engine_down_raises_executor_error() -> None:
    engine = FakeEngine()
    executor = FakeExecutor(engine)
    await executor.deploy(LEASE, group(web_sdl()))
    engine.down = True
    for call in (executor.status(LEASE), executor.logs(LEASE), executor.teardown(LEASE),
                 executor.adopt(), executor.deploy(LEASE, group(web_sdl()))):
        with pytest.raises(ExecutorError, match="fake engine is down"):
            await call
    engine.down = False
    assert len(await executor.status(LEASE)) == 2


async def test_fake_logs_bad_tail_and_unknown_container() -> None:
    engine = FakeEngine()
    executor = FakeExecutor(engine)
    with pytest.raises(ExecutorError, match="tail -1 is negative"):
        await executor.logs(LEASE, tail=-1)
    with pytest.raises(ExecutorError, match="no container for lease"):
        engine.emit(LEASE, "web", 0, "x")


def test_base_and_fake_are_sans_io() -> None:
    """The simulator drives the fake executor under virtual time: no I/O, clocks or threads."""
    import p2pakash.executor as package

    forbidden = {"trio", "socket", "time", "asyncio", "podman", "subprocess", "random",
                 "threading", "p2pakash.executor.podman", "p2pakash.executor.podman_setup"}
    for name in ("base.py", "fake.py"):
        tree = ast.parse((Path(package.__file__).parent / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found = {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                found = {node.module or ""}
            else:
                continue
            assert not found & forbidden, f"{name} imports {found & forbidden}"
