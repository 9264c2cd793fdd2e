"""The container runtime protocol and the values it speaks in.

Rules and invariants:
* ``Executor`` is what the provider daemon calls, from trio. Every executor runs one
  container per service replica of a manifest group, labels each with its lease, service and
  replica, and answers ``status``/``logs``/``teardown``/``adopt`` by those labels.
* ``deploy`` of a lease that is already deployed creates nothing new: replicas that exist are
  kept, only missing ones are created. ``teardown`` is idempotent.
* A replica that cannot run is reported with state FAILED and a reason in ``error``; runtime
  trouble reaching the engine itself raises ExecutorError.
* ``build_workload`` is pure: it turns (lease ID, manifest group, GPU indices) into one
  ``ServiceSpec`` per replica, in manifest order (services sorted by name, replicas 0..n-1),
  handing GPU indices out in order. Too few GPUs is an ExecutorError naming the service.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs

from p2pakash.errors import ExecutorError
from p2pakash.market.sdl.manifest import ManifestGroup, ManifestService

LABEL_LEASE = "p2pakash.lease"
LABEL_SERVICE = "p2pakash.service"
LABEL_REPLICA = "p2pakash.replica"
LABEL_GROUP = "p2pakash.group"
CDI_GPU = "nvidia.com/gpu"
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


class ContainerState(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    EXITED = "exited"  # stopped with exit code 0
    FAILED = "failed"  # could not be created or started, or exited non-zero
    UNKNOWN = "unknown"


@attrs.frozen(kw_only=True)
class PortSpec:
    """One SDL expose: ``port``/``proto`` inside the container; global ones are published."""

    port: int
    proto: str  # "tcp" | "udp"
    is_global: bool
    external_port: int = 0

    @property
    def key(self) -> str:
        return f"{self.port}/{self.proto}"


@attrs.frozen(kw_only=True)
class ServiceSpec:
    """One container to run: a replica of a manifest service within a lease."""

    lease_id: str
    group: str
    service: str
    replica: int
    image: str
    command: tuple[str, ...] | None  # the SDL's ``command``: replaces the entrypoint
    args: tuple[str, ...] | None
    env: tuple[tuple[str, str], ...]
    cpu_millis: int
    memory_bytes: int
    storage_bytes: int
    gpus: tuple[int, ...] = ()
    ports: tuple[PortSpec, ...] = ()

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_LEASE: self.lease_id, LABEL_GROUP: self.group,
                LABEL_SERVICE: self.service, LABEL_REPLICA: str(self.replica)}

    @property
    def container_name(self) -> str:
        """Unique per (lease, service, replica); the lease is hashed (it may hold '/')."""
        return container_name(self.lease_id, self.service, self.replica)

    @property
    def cdi_devices(self) -> tuple[str, ...]:
        return tuple(f"{CDI_GPU}={index}" for index in self.gpus)


@attrs.frozen(kw_only=True)
class Workload:
    lease_id: str
    group: str
    services: tuple[ServiceSpec, ...]


def _port_map(value: Mapping[str, int]) -> dict[str, int]:
    return dict(value)


@attrs.frozen(kw_only=True)
class ContainerStatus:
    """One replica's state; ``ports`` maps ``"<port>/<proto>"`` to the published host port."""

    service: str
    replica: int
    container_id: str  # "" when no container could be created
    state: ContainerState
    exit_code: int | None = None
    ports: dict[str, int] = attrs.field(factory=dict, converter=_port_map, hash=False)
    error: str = ""


@attrs.frozen(kw_only=True)
class LogLine:
    service: str
    replica: int
    stream: str  # "stdout" | "stderr"
    line: str


class Executor(Protocol):
    name: str

    async def deploy(self, lease_id: str, group: ManifestGroup, *,
                     gpus: Sequence[int] = ()) -> list[ContainerStatus]: ...

    async def status(self, lease_id: str) -> list[ContainerStatus]: ...

    async def logs(self, lease_id: str, *, service: str | None = None,
                   tail: int = 100) -> list[LogLine]: ...

    async def teardown(self, lease_id: str) -> None: ...

    async def adopt(self) -> list[str]: ...


def container_name(lease_id: str, service: str, replica: int) -> str:
    digest = hashlib.sha256(lease_id.encode()).hexdigest()[:16]
    return f"p2pakash-{digest}-{_NAME_UNSAFE.sub('_', service)}-{replica}"


def check_lease_id(lease_id: str) -> None:
    if not lease_id or len(lease_id) > 512 or not lease_id.isprintable():
        raise ExecutorError(f"invalid lease ID {lease_id!r}: want 1..512 printable characters")


def parse_env(service: str, items: tuple[str, ...] | None) -> tuple[tuple[str, str], ...]:
    result = []
    for item in items or ():
        name, sep, value = item.partition("=")
        if not name:
            raise ExecutorError(f'service "{service}": env entry {item!r} has no name')
        result.append((name, value if sep else ""))
    return tuple(result)


def _ports(svc: ManifestService) -> tuple[PortSpec, ...]:
    seen: dict[str, PortSpec] = {}
    for expose in svc.expose:
        spec = PortSpec(port=expose.port, proto=expose.proto.lower(),
                        is_global=expose.is_global, external_port=expose.external_port)
        previous = seen.get(spec.key)
        if previous is None or (spec.is_global and not previous.is_global):
            seen[spec.key] = spec
    return tuple(seen.values())


def build_workload(lease_id: str, group: ManifestGroup, gpus: Sequence[int] = ()) -> Workload:
    """One ServiceSpec per service replica; GPU indices handed out in order."""
    check_lease_id(lease_id)
    if not group.services:
        raise ExecutorError(f'group "{group.name}" has no services')
    free = list(gpus)
    if len(set(free)) != len(free) or any(index < 0 for index in free):
        raise ExecutorError(f"GPU indices {list(gpus)} must be distinct and non-negative")
    specs = []
    for svc in group.services:
        if svc.count < 1:
            raise ExecutorError(f'service "{svc.name}": count {svc.count} is below 1')
        env, ports = parse_env(svc.name, svc.env), _ports(svc)
        storage = sum(volume.size for volume in svc.resources.storage)
        for replica in range(svc.count):
            wanted = svc.resources.gpu.units
            if wanted > len(free):
                raise ExecutorError(
                    f'service "{svc.name}" replica {replica} needs {wanted} GPU(s), '
                    f"the lease has {len(gpus)} in all")
            taken, free = tuple(free[:wanted]), free[wanted:]
            specs.append(ServiceSpec(
                lease_id=lease_id, group=group.name, service=svc.name, replica=replica,
                image=svc.image, command=svc.command, args=svc.args, env=env,
                cpu_millis=svc.resources.cpu_millis, memory_bytes=svc.resources.memory_bytes,
                storage_bytes=storage, gpus=taken, ports=ports))
    return Workload(lease_id=lease_id, group=group.name, services=tuple(specs))
