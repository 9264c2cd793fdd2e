"""An in-memory executor with the same protocol as podman, for tests and the simulator.

Rules and invariants:
* ``FakeEngine`` plays the container engine (it outlives executors, as podman outlives a
  provider process); ``FakeExecutor`` is the client. A new FakeExecutor over the same engine
  is a restarted provider: ``adopt`` finds the leases whose containers still run.
* Deterministic: container IDs count up from 1, host ports from ``port_base`` in creation
  order; lists come back sorted by (service, replica); no time, no randomness, no I/O.
* Failures are configured, never random: an image in ``fail_images`` or a service in
  ``fail_services`` gives a FAILED replica with that reason; ``down = True`` makes every
  call raise ExecutorError as an unreachable engine would.
* Deploy of a deployed lease creates only missing replicas; teardown is idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from p2pakash.errors import ExecutorError
from p2pakash.executor.base import (
    ContainerState,
    ContainerStatus,
    LogLine,
    ServiceSpec,
    build_workload,
    check_lease_id,
)
from p2pakash.market.sdl.manifest import ManifestGroup

Key = tuple[str, int]


@attrs.define(kw_only=True)
class FakeContainer:
    spec: ServiceSpec
    container_id: str
    state: ContainerState
    ports: dict[str, int]
    exit_code: int | None = None
    error: str = ""
    log: list[LogLine] = attrs.field(factory=list)

    def status(self) -> ContainerStatus:
        return ContainerStatus(service=self.spec.service, replica=self.spec.replica,
                               container_id=self.container_id, state=self.state,
                               exit_code=self.exit_code, ports=self.ports, error=self.error)


@attrs.define(kw_only=True)
class FakeEngine:
    """The containers that exist, by lease and (service, replica)."""

    fail_images: dict[str, str] = attrs.field(factory=dict)
    fail_services: dict[str, str] = attrs.field(factory=dict)
    port_base: int = 30000
    down: bool = False
    leases: dict[str, dict[Key, FakeContainer]] = attrs.field(factory=dict)
    created: int = 0
    next_port: int = 0

    def check_up(self) -> None:
        if self.down:
            raise ExecutorError("fake engine is down")

    def run(self, spec: ServiceSpec) -> FakeContainer:
        self.created += 1
        container_id = f"fake{self.created:012d}"
        reason = self.fail_images.get(spec.image) or self.fail_services.get(spec.service)
        if reason:
            return FakeContainer(spec=spec, container_id=container_id,
                                 state=ContainerState.FAILED, ports={}, error=reason)
        ports = {}
        for port in spec.ports:
            if port.is_global:
                ports[port.key] = self.port_base + self.next_port
                self.next_port += 1
        words = (spec.command or ()) + (spec.args or ())
        started = LogLine(service=spec.service, replica=spec.replica, stream="stdout",
                          line=f"started {spec.image} {' '.join(words)}".rstrip())
        return FakeContainer(spec=spec, container_id=container_id,
                             state=ContainerState.RUNNING, ports=ports, log=[started])

    def container(self, lease_id: str, service: str, replica: int) -> FakeContainer:
        try:
            return self.leases[lease_id][(service, replica)]
        except KeyError:
            raise ExecutorError(f"no container for lease {lease_id!r} service "
                                f"{service!r} replica {replica}") from None

    def emit(self, lease_id: str, service: str, replica: int, line: str,
             stream: str = "stdout") -> None:
        """A container writes a line of output."""
        self.container(lease_id, service, replica).log.append(
            LogLine(service=service, replica=replica, stream=stream, line=line))

    def exit(self, lease_id: str, service: str, replica: int, code: int) -> None:
        """A container's process ends with ``code``."""
        box = self.container(lease_id, service, replica)
        box.state = ContainerState.EXITED if code == 0 else ContainerState.FAILED
        box.exit_code = code
        if code:
            box.error = f"exited with code {code}"


class FakeExecutor:
    name = "fake"

    def __init__(self, engine: FakeEngine | None = None, *,
                 fail_images: Mapping[str, str] | None = None,
                 fail_services: Mapping[str, str] | None = None) -> None:
        self.engine = engine if engine is not None else FakeEngine()
        self.engine.fail_images.update(fail_images or {})
        self.engine.fail_services.update(fail_services or {})

    async def deploy(self, lease_id: str, group: ManifestGroup, *,
                     gpus: Sequence[int] = ()) -> list[ContainerStatus]:
        workload = build_workload(lease_id, group, gpus)
        self.engine.check_up()
        boxes = self.engine.leases.setdefault(lease_id, {})
        for spec in workload.services:
            key = (spec.service, spec.replica)
            if key not in boxes:
                boxes[key] = self.engine.run(spec)
        return await self.status(lease_id)

    async def status(self, lease_id: str) -> list[ContainerStatus]:
        check_lease_id(lease_id)
        self.engine.check_up()
        boxes = self.engine.leases.get(lease_id, {})
        return [boxes[key].status() for key in sorted(boxes)]

    async def logs(self, lease_id: str, *, service: str | None = None,
                   tail: int = 100) -> list[LogLine]:
        check_lease_id(lease_id)
        if tail < 0:
            raise ExecutorError(f"logs: tail {tail} is negative")
        self.engine.check_up()
        boxes = self.engine.leases.get(lease_id, {})
        lines: list[LogLine] = []
        for key in sorted(boxes):
            if service is None or key[0] == service:
                log = boxes[key].log
                lines.extend(log[max(0, len(log) - tail):])
        return lines

    async def teardown(self, lease_id: str) -> None:
        check_lease_id(lease_id)
        self.engine.check_up()
        self.engine.leases.pop(lease_id, None)

    async def adopt(self) -> list[str]:
        self.engine.check_up()
        return sorted(lease for lease, boxes in self.engine.leases.items()
                      if any(b.state == ContainerState.RUNNING for b in boxes.values()))
