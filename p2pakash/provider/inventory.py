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
* Cost: running totals (CPU, memory, storage by class, GPU indices taken) change in
  ``reserve``/``release``/``expire``, so a decision costs the same however many
  allocations are held; free GPUs are looked up only for units that want GPUs; reservations
  expire through a heap ordered by ``expires_ms``. ``held`` is a read-only view: every
  change goes through the methods above, so the totals always equal a recomputation.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Mapping, Sequence
from types import MappingProxyType

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
        self._held: dict[Hashable, Allocation] = {}
        self.held: Mapping[Hashable, Allocation] = MappingProxyType(self._held)
        # Running totals of everything in ``_held`` (kept equal to a recomputation).
        self._cpu = 0
        self._memory = 0
        self._storage: dict[str, int] = {}  # class -> bytes; no zero entries
        self._taken: set[int] = set()  # GPU indices held
        self._gpus = tuple(sorted(capacity.gpus, key=lambda g: g.index))
        # (expires_ms, seq, key, allocation); an entry whose allocation is no longer the
        # one held under its key is stale and skipped (lazy deletion).
        self._expiry: list[tuple[int, int, Hashable, Allocation]] = []
        self._seq = 0

    # ------------------------------------------------------------ queries

    def used(self) -> tuple[int, int, dict[str, int], set[int]]:
        """(CPU millis, memory bytes, storage bytes by class, GPU indices) held: O(1) in
        the number of allocations (copies of the running totals)."""
        return self._cpu, self._memory, dict(self._storage), set(self._taken)

    def free_gpus(self) -> list[GPURecord]:
        return [g for g in self._gpus if g.index not in self._taken]

    # ------------------------------------------------------------ changes

    def reserve(self, key: Hashable, units: Sequence[tuple[Resources, int]], *,
                expires_ms: int | None = None) -> Allocation:
        if key in self._held:
            raise InsufficientCapacity(f"{key} already holds resources")
        cap = self.capacity
        cpu, memory, storage = demand(units)
        if self._cpu + cpu > cap.cpu_millis:
            raise InsufficientCapacity(f"insufficient CPU: want {cpu}m, free "
                                       f"{cap.cpu_millis - self._cpu}m")
        if self._memory + memory > cap.memory_bytes:
            raise InsufficientCapacity(f"insufficient memory: want {memory} bytes, free "
                                       f"{cap.memory_bytes - self._memory}")
        for cls, size in sorted(storage.items()):
            have = cap.storage.get(cls, 0) - self._storage.get(cls, 0)
            if size > have:
                raise InsufficientCapacity(f"insufficient storage of class {cls!r}: want "
                                           f"{size} bytes, free {max(have, 0)}")
        gpus = self._pick_gpus(units) if any(r.gpu.units * n for r, n in units) else ()
        allocation = Allocation(cpu_millis=cpu, memory_bytes=memory,
                                storage=tuple(sorted(storage.items())), gpus=gpus,
                                expires_ms=expires_ms)
        self._add(key, allocation)
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
        if new_key in self._held and new_key != key:
            raise InsufficientCapacity(f"{new_key} already holds resources")
        allocation = attrs.evolve(self._held[key], expires_ms=None)
        del self._held[key]  # the totals do not change: the same resources, another key
        self._held[new_key] = allocation
        return allocation

    def release(self, key: Hashable) -> bool:
        allocation = self._held.pop(key, None)
        if allocation is None:
            return False
        self._subtract(allocation)
        return True

    def expire(self, now_ms: int) -> list[Hashable]:
        """Release every reservation whose expiry is at or before ``now_ms`` (in expiry
        order); the cost is the number of heap entries due, not the number held."""
        gone: list[Hashable] = []
        heap = self._expiry
        while heap and heap[0][0] <= now_ms:
            _, _, key, allocation = heapq.heappop(heap)
            if self._held.get(key) is allocation:
                del self._held[key]
                self._subtract(allocation)
                gone.append(key)
        return gone

    # ------------------------------------------------------------ totals

    def _add(self, key: Hashable, allocation: Allocation) -> None:
        self._held[key] = allocation
        self._cpu += allocation.cpu_millis
        self._memory += allocation.memory_bytes
        for cls, size in allocation.storage:
            self._storage[cls] = self._storage.get(cls, 0) + size
        self._taken.update(allocation.gpus)
        if allocation.expires_ms is not None:
            if len(self._expiry) > 2 * len(self._held) + 64:  # mostly stale: rebuild
                self._expiry = [e for e in self._expiry if self._held.get(e[2]) is e[3]]
                heapq.heapify(self._expiry)
            self._seq += 1
            heapq.heappush(self._expiry, (allocation.expires_ms, self._seq, key, allocation))

    def _subtract(self, allocation: Allocation) -> None:
        self._cpu -= allocation.cpu_millis
        self._memory -= allocation.memory_bytes
        for cls, size in allocation.storage:
            left = self._storage[cls] - size
            if left:
                self._storage[cls] = left
            else:
                del self._storage[cls]
        self._taken.difference_update(allocation.gpus)
