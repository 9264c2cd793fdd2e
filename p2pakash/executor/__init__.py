"""Container runtimes behind one protocol (``Executor``): podman (real) and fake (in memory).

``p2pakash.executor.podman`` imports the podman client; import it only where it is used.
"""

from __future__ import annotations

from p2pakash.executor.base import (
    ContainerState,
    ContainerStatus,
    Executor,
    LogLine,
    PortSpec,
    ServiceSpec,
    Workload,
    build_workload,
)
from p2pakash.executor.fake import FakeEngine, FakeExecutor

__all__ = [
    "ContainerState",
    "ContainerStatus",
    "Executor",
    "FakeEngine",
    "FakeExecutor",
    "LogLine",
    "PortSpec",
    "ServiceSpec",
    "Workload",
    "build_workload",
]
