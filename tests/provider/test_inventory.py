"""Inventory: capacity accounting, GPU picking, commit/release/expiry; sans-IO cores."""

from __future__ import annotations

import ast
import contextlib
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pakash.market.orders import LeaseID, OrderID
from p2pakash.market.sdl.resources import GPU, Attribute, Resources, StorageVolume
from p2pakash.plugins.types import GPURecord
from p2pakash.provider.inventory import (
    Capacity,
    InsufficientCapacity,
    Inventory,
    gpu_capabilities,
    gpu_keys,
    storage_capabilities,
)

GI = 1024**3
OWNER = "akash1" + "q" * 38


def gpu(index: int, model: str = "h100", ram: int = 80, iface: str = "sxm") -> GPURecord:
    return GPURecord(index=index, uuid=f"GPU-{index}", vendor="nvidia", model=model,
                     memory_bytes=ram * GI, interface=iface)


def res(cpu: int = 1000, mem: int = GI, storage: int = GI, cls: str | None = None,
        gpus: int = 0, gpu_key: str | None = None) -> Resources:
    attrs = (Attribute(key="class", value=cls),) if cls else ()
    g = GPU(units=gpus, attributes=(Attribute(key=gpu_key, value="true"),) if gpu_key else ())
    return Resources(id=1, cpu_millis=cpu, memory_bytes=mem,
                     storage=(StorageVolume(name="default", size=storage, attributes=attrs),),
                     gpu=g)


def oid(n: int) -> OrderID:
    return OrderID(owner=OWNER, dseq=n, gseq=1, oseq=1)


def inventory() -> Inventory:
    return Inventory(Capacity(cpu_millis=4000, memory_bytes=8 * GI,
                              storage={"ephemeral": 10 * GI, "beta2": 100 * GI},
                              gpus=(gpu(0), gpu(1), gpu(2, "a100", 40, "pcie"))))


def test_reserve_until_cpu_runs_out_then_release() -> None:
    inv = inventory()
    inv.reserve(oid(1), [(res(cpu=1500), 2)])
    with pytest.raises(InsufficientCapacity, match="insufficient CPU: want 1500m, free 1000m"):
        inv.reserve(oid(2), [(res(cpu=1500), 1)])
    assert inv.release(oid(1))
    inv.reserve(oid(2), [(res(cpu=1500), 1)])
    assert not inv.release(oid(1))


def test_memory_and_storage_classes() -> None:
    inv = inventory()
    with pytest.raises(InsufficientCapacity, match="memory"):
        inv.reserve(oid(1), [(res(cpu=100, mem=9 * GI), 1)])
    with pytest.raises(InsufficientCapacity, match="storage of class 'beta3'"):
        inv.reserve(oid(1), [(res(cpu=100, cls="beta3"), 1)])
    a = inv.reserve(oid(1), [(res(cpu=100, storage=60 * GI, cls="beta2"), 1)])
    assert a.storage == (("beta2", 60 * GI),)
    with pytest.raises(InsufficientCapacity, match="beta2"):
        inv.reserve(oid(2), [(res(cpu=100, storage=50 * GI, cls="beta2"), 1)])
    assert inv.held.keys() == {oid(1)}  # a failed reservation changes nothing


def test_gpus_by_model_glob_and_exclusive() -> None:
    inv = inventory()
    a = inv.reserve(oid(1), [(res(gpus=1, gpu_key="vendor/nvidia/model/h100"), 1)])
    b = inv.reserve(oid(2), [(res(gpus=1, gpu_key="vendor/nvidia/model/*/ram/80Gi"), 1)])
    assert (a.gpus, b.gpus) == ((0,), (1,))
    with pytest.raises(InsufficientCapacity, match="insufficient GPUs"):
        inv.reserve(oid(3), [(res(gpus=1, gpu_key="vendor/nvidia/model/h100"), 1)])
    c = inv.reserve(oid(3), [(res(gpus=1), 1)])  # no model asked: any free GPU
    assert c.gpus == (2,)


def test_commit_moves_to_lease_and_expire_skips_it() -> None:
    inv = inventory()
    inv.reserve(oid(1), [(res(), 1)], expires_ms=1000)
    inv.reserve(oid(2), [(res(), 1)], expires_ms=1000)
    lease = LeaseID(owner=OWNER, dseq=1, gseq=1, oseq=1, provider=OWNER)
    committed = inv.commit(oid(1), lease)
    assert committed.expires_ms is None
    assert inv.expire(999) == []
    assert inv.expire(1000) == [oid(2)]
    assert set(inv.held) == {lease}


def test_capability_attributes() -> None:
    keys = [a.key for a in gpu_capabilities([gpu(0), gpu(1)])]
    assert keys == sorted(f"capabilities/gpu/{k}" for k in gpu_keys(gpu(0)))
    assert "capabilities/gpu/vendor/nvidia/model/h100/ram/80Gi/interface/sxm" in keys
    storage = storage_capabilities({"ephemeral": 1, "beta2": 2})
    assert [(a.key, a.value) for a in storage] == [
        ("capabilities/storage/1/class", "beta2"), ("capabilities/storage/1/persistent", "true")]


def test_commit_onto_a_held_key_is_refused() -> None:
    inv = inventory()
    inv.reserve(oid(1), [(res(), 1)])
    inv.reserve(oid(2), [(res(), 1)])
    with pytest.raises(InsufficientCapacity, match="already holds"):
        inv.commit(oid(1), oid(2))
    assert inv.used()[0] == 2000 and set(inv.held) == {oid(1), oid(2)}


def test_held_is_read_only() -> None:
    inv = inventory()
    inv.reserve(oid(1), [(res(), 1)])
    with pytest.raises(TypeError):
        inv.held[oid(2)] = inv.held[oid(1)]  # type: ignore[index]


def recomputed(inv: Inventory) -> tuple[int, int, dict[str, int], set[int]]:
    """The totals as the sum over every held allocation (what ``used`` must equal)."""
    cpu = memory = 0
    storage: dict[str, int] = {}
    gpus: set[int] = set()
    for a in inv.held.values():
        cpu += a.cpu_millis
        memory += a.memory_bytes
        for cls, size in a.storage:
            storage[cls] = storage.get(cls, 0) + size
        assert not gpus & set(a.gpus), "a GPU held twice"
        gpus.update(a.gpus)
    return cpu, memory, storage, gpus


UNITS = st.builds(
    lambda cpu, mem, size, cls, n_gpu, key, count: [(res(
        cpu=cpu, mem=mem * GI, storage=size * GI, cls=cls, gpus=n_gpu, gpu_key=key), count)],
    st.sampled_from([100, 500, 1500]), st.integers(1, 3), st.integers(1, 40),
    st.sampled_from([None, "beta2"]), st.integers(0, 2),
    st.sampled_from([None, "vendor/nvidia/model/h100", "vendor/nvidia/model/a100"]),
    st.integers(1, 2))
STEP = st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, 7), UNITS,
              st.one_of(st.none(), st.integers(0, 100))),
    st.tuples(st.just("commit"), st.integers(0, 7), st.integers(0, 7)),
    st.tuples(st.just("release"), st.integers(0, 7)),
    st.tuples(st.just("expire"), st.integers(0, 100)))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(STEP, max_size=40))
def test_running_totals_equal_a_recomputation(steps: list[tuple[Any, ...]]) -> None:
    inv = inventory()
    cap = inv.capacity
    for step in steps:
        op = step[0]
        if op == "reserve":
            with contextlib.suppress(InsufficientCapacity):
                inv.reserve(oid(step[1]), step[2], expires_ms=step[3])
        elif op == "commit":
            if oid(step[1]) in inv.held:
                with contextlib.suppress(InsufficientCapacity):
                    inv.commit(oid(step[1]), ("lease", step[2]))
        elif op == "release":
            inv.release(oid(step[1]) if step[1] % 2 else ("lease", step[1]))
        else:
            due = {k for k, a in inv.held.items()
                   if a.expires_ms is not None and a.expires_ms <= step[1]}
            assert set(inv.expire(step[1])) == due
            assert all(a.expires_ms is None or a.expires_ms > step[1]
                       for a in inv.held.values())
        cpu, memory, storage, gpus = inv.used()
        assert (cpu, memory, storage, gpus) == recomputed(inv)
        assert cpu <= cap.cpu_millis and memory <= cap.memory_bytes
        assert all(size <= cap.storage[cls] for cls, size in storage.items())
        assert [g.index for g in inv.free_gpus()] == sorted(
            g.index for g in cap.gpus if g.index not in gpus)


def lines_run(call: Callable[[], object]) -> int:
    """How many lines of inventory.py ``call`` executes (a count, not a time)."""
    target = str(Path(__file__).resolve().parents[2] / "p2pakash" / "provider" / "inventory.py")
    count = 0

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if frame.f_code.co_filename != target:
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(None)
    return count


def big_inventory(held: int) -> Inventory:
    inv = Inventory(Capacity(cpu_millis=10**9, memory_bytes=10**15,
                             storage={"ephemeral": 10**18}, gpus=(gpu(0), gpu(1))))
    for n in range(held):
        inv.reserve(("order", n), [(res(cpu=100), 1)], expires_ms=10_000 + n)
    return inv


def test_decision_cost_does_not_grow_with_reservations_held() -> None:
    costs = []
    for held in (1, 3000):
        inv = big_inventory(held)
        costs.append((
            lines_run(functools.partial(inv.reserve, ("new", 0), [(res(cpu=100), 2)],
                                        expires_ms=5)),
            lines_run(inv.used),
            lines_run(functools.partial(inv.reserve, ("gpu", 0), [(res(gpus=1), 1)])),
            lines_run(functools.partial(inv.expire, 5)),  # one due: the "new" reservation
            lines_run(functools.partial(inv.release, ("order", 0)))))
    assert costs[0] == costs[1]


PURE = ["inventory.py", "bidengine.py", "messages.py", "manifest_json.py"]


@pytest.mark.parametrize("name", PURE)
def test_provider_cores_are_sans_io(name: str) -> None:
    path = Path(__file__).resolve().parents[2] / "p2pakash" / "provider" / name
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        for n in names:
            assert n.split(".")[0] not in {"trio", "time", "socket", "subprocess", "random",
                                           "podman", "asyncio"}, f"{name} imports {n}"
