"""Inventory: capacity accounting, GPU picking, commit/release/expiry; sans-IO cores."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
