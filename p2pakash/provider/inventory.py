"""The provider's inventory: what it has, what it promised in bids, what it runs (pure).

Rules and invariants:
* Capacity is CPU (millicpu), memory (bytes), storage by class (bytes; a volume without a
  ``class`` attribute is class ``ephemeral``) and physical GPUs (``GPURecord`` from probes).
* An allocation is held under a key (an ``OrderID`` while it backs a bid, a ``LeaseID`` once
  the lease is won). ``reserve`` takes resources only if all of them fit; otherwise it
  raises ``InsufficientCapacity`` naming the first resource short and nothing changes.
  ``commit`` moves a reservation to another key (order -> lease) and clears its expiry;
  ``release`` gives it back; ``expire(now_ms)`` releases reservations whose time is up.
* Always: for every resource, the sum of all allocations <= capacity; a GPU index is held
  by at most one allocation.
* GPUs: a unit with ``gpu.units > 0`` takes that many free GPUs per replica, each matching
  one of the unit's GPU attribute keys (glob, Akash's ``vendor/<v>/model/<m>[/ram/<r>]
  [/interface/<i>]``); a unit without GPU attributes takes any free GPU. Lowest index first.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import attrs

from p2pakash.errors import P2PAkashError
from p2pakash.market.matching import glob_match
from p2pakash.market.sdl.resources import Attribute, Resources, StorageVolume
from p2pakash.plugins.types import GPURecord

EPHEMERAL = "ephemeral"


class InsufficientCapacity(P2PAkashError):
    """A reservation does not fit; the message names the resource."""


def gpu_keys(gpu: GPURecord) -> tuple[str, ...]:
    """The attribute keys this GPU satisfies (without the ``capabilities/gpu/`` prefix)."""
    base = f"vendor/{gpu.vendor}/model/{gpu.model}"
    return (base, f"{base}/ram/{gpu.ram}", f"{base}/interface/{gpu.interface}",
            f"{base}/ram/{gpu.ram}/interface/{gpu.interface}")


def gpu_capabilities(gpus: Sequence[GPURecord]) -> tuple[Attribute, ...]:
    """Provider attributes advertising ``gpus`` the way Akash's inventory labels them."""
    keys = sorted({key for gpu in gpus for key in gpu_keys(gpu)})
    return tuple(Attribute(key=f"capabilities/gpu/{key}", value="true") for key in keys)


def storage_capabilities(classes: Mapping[str, int]) -> tuple[Attribute, ...]:
    """``capabilities/storage/<n>/class`` (and ``persistent``) for each non-ephemeral class."""
    out = []
    for n, name in enumerate(sorted(c for c in classes if c not in (EPHEMERAL, "ram")), 1):
        out.append(Attribute(key=f"capabilities/storage/{n}/class", value=name))
        out.append(Attribute(key=f"capabilities/storage/{n}/persistent", value="true"))
    return tuple(out)


def volume_class(volume: StorageVolume) -> str:
    return next((a.value for a in volume.attributes if a.key == "class"), EPHEMERAL)


@attrs.frozen(kw_only=True)
class Capacity:
    cpu_millis: int
    memory_bytes: int
    storage: Mapping[str, int] = attrs.field(factory=dict)
    gpus: tuple[GPURecord, ...] = ()


@attrs.frozen(kw_only=True)
class Allocation:
    cpu_millis: int
    memory_bytes: int
    storage: tuple[tuple[str, int], ...]  # (class, bytes), sorted by class
    gpus: tuple[int, ...]  # GPU indices, in unit/replica order
    expires_ms: int | None = None  # None: held until released (a lease)


def demand(units: Sequence[tuple[Resources, int]]) -> tuple[int, int, dict[str, int]]:
    """Total (CPU millis, memory bytes, storage bytes by class) of ``units``."""
    cpu = memory = 0
    storage: dict[str, int] = {}
    for res, count in units:
        cpu += res.cpu_millis * count
        memory += res.memory_bytes * count
        for volume in res.storage:
            cls = volume_class(volume)
            storage[cls] = storage.get(cls, 0) + volume.size * count
    return cpu, memory, storage


class Inventory:
    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity
        self.held: dict[Hashable, Allocation] = {}

    # ------------------------------------------------------------ queries

    def used(self) -> tuple[int, int, dict[str, int], set[int]]:
        cpu = memory = 0
        storage: dict[str, int] = {}
        gpus: set[int] = set()
        for a in self.held.values():
            cpu += a.cpu_millis
            memory += a.memory_bytes
            for cls, size in a.storage:
                storage[cls] = storage.get(cls, 0) + size
            gpus.update(a.gpus)
        return cpu, memory, storage, gpus

    def free_gpus(self) -> list[GPURecord]:
        taken = self.used()[3]
        return sorted((g for g in self.capacity.gpus if g.index not in taken),
                      key=lambda g: g.index)

    # ------------------------------------------------------------ changes

    def reserve(self, key: Hashable, units: Sequence[tuple[Resources, int]], *,
                expires_ms: int | None = None) -> Allocation:
        if key in self.held:
            raise InsufficientCapacity(f"{key} already holds resources")
        cap = self.capacity
        cpu, memory, storage = demand(units)
        used_cpu, used_mem, used_storage, _ = self.used()
        if used_cpu + cpu > cap.cpu_millis:
            raise InsufficientCapacity(f"insufficient CPU: want {cpu}m, free "
                                       f"{cap.cpu_millis - used_cpu}m")
        if used_mem + memory > cap.memory_bytes:
            raise InsufficientCapacity(f"insufficient memory: want {memory} bytes, free "
                                       f"{cap.memory_bytes - used_mem}")
        for cls, size in sorted(storage.items()):
            have = cap.storage.get(cls, 0) - used_storage.get(cls, 0)
            if size > have:
                raise InsufficientCapacity(f"insufficient storage of class {cls!r}: want "
                                           f"{size} bytes, free {max(have, 0)}")
        gpus = self._pick_gpus(units)
        allocation = Allocation(cpu_millis=cpu, memory_bytes=memory,
                                storage=tuple(sorted(storage.items())), gpus=gpus,
                                expires_ms=expires_ms)
        self.held[key] = allocation
        return allocation

    def _pick_gpus(self, units: Sequence[tuple[Resources, int]]) -> tuple[int, ...]:
        free = self.free_gpus()
        picked: list[int] = []
        for res, count in units:
            wanted = res.gpu.units * count
            if not wanted:
                continue
            patterns = [a.key for a in res.gpu.attributes]
            fits = [g for g in free if not patterns or any(
                glob_match(p, k) for p in patterns for k in gpu_keys(g))]
            if len(fits) < wanted:
                want = ", ".join(patterns) or "any GPU"
                raise InsufficientCapacity(f"insufficient GPUs: want {wanted} x {want}, "
                                           f"free {len(fits)}")
            chosen = fits[:wanted]
            picked.extend(g.index for g in chosen)
            free = [g for g in free if g not in chosen]
        return tuple(picked)

    def commit(self, key: Hashable, new_key: Hashable) -> Allocation:
        """Move the allocation under ``key`` to ``new_key``, held until released."""
        allocation = attrs.evolve(self.held.pop(key), expires_ms=None)
        self.held[new_key] = allocation
        return allocation

    def release(self, key: Hashable) -> bool:
        return self.held.pop(key, None) is not None

    def expire(self, now_ms: int) -> list[Hashable]:
        """Release every reservation whose expiry is at or before ``now_ms``."""
        gone = [k for k, a in self.held.items()
                if a.expires_ms is not None and a.expires_ms <= now_ms]
        for key in gone:
            del self.held[key]
        return gone
