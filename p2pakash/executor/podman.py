"""The Podman executor: one container per service replica, through the Podman REST API.

Rules and invariants:
* The ``podman`` client is synchronous: every call runs in ``trio.to_thread.run_sync`` under
  one CapacityLimiter per executor. No podman call happens on the trio thread.
* Containers carry the labels ``p2pakash.lease``, ``p2pakash.group``, ``p2pakash.service``,
  ``p2pakash.replica`` and a name derived from them; the labels are the only state that
  survives a provider restart. ``deploy`` creates only the replicas no container exists for,
  so a redeploy or a restarted provider never duplicates a container.
* Limits from the SDL: ``cpu_period=100000, cpu_quota=cpu_millis*100`` (4.3.1 ignores
  ``nano_cpus``), ``mem_limit`` = the memory size, ``pids_limit``, nofile/nproc ulimits (both,
  since passing one replaces the defaults) within the host's limits; ``init=True`` and a short
  stop timeout (busybox as PID 1 ignores SIGTERM). Storage sizes are not enforced (overlay
  without quotas). GPUs go in as CDI devices ``nvidia.com/gpu=<index>``.
* Global exposes are published on ``publish_ip`` with a host port podman chooses; status
  reports ``{"<port>/<proto>": host_port}``. Non-global exposes are not published.
* A replica that cannot be pulled, created or started is FAILED with the reason; the reason
  is remembered in memory until teardown (podman keeps no record of a failed start). One
  that exited non-zero is FAILED with its exit code and its last line of output (where
  catatonit, the init, says why an exec failed). Ports are reported only while running.
  Errors talking to the service itself raise ExecutorError, and so does an answer of the
  wrong shape: every container list entry is checked (``_check_container``) in the thread
  that fetched it, before the trio side reads its fields.
* Teardown is one ``DELETE /containers/{id}?force=true&timeout=0&v=true`` per replica (killed
  at once: a closed lease gets no stop grace), all replicas of the lease concurrently, at most
  ``max_threads`` podman calls at a time. Podman's own cleanup of a bridge-networked
  container (netavark) dominates: ~0.15-0.25 s each on the reference machine.
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import trio
from podman import PodmanClient
from podman.errors import PodmanError
from requests.exceptions import RequestException

from p2pakash.errors import ExecutorError
from p2pakash.executor.base import (
    LABEL_LEASE,
    LABEL_REPLICA,
    LABEL_SERVICE,
    ContainerState,
    ContainerStatus,
    LogLine,
    ServiceSpec,
    build_workload,
    check_lease_id,
)
from p2pakash.executor.podman_setup import host_ulimits
from p2pakash.market.sdl.manifest import ManifestGroup

T = TypeVar("T")
Key = tuple[str, int]
CPU_PERIOD = 100_000
_STREAMS = {1: "stdout", 2: "stderr"}
_START_STATES = ("created", "configured", "initialized")


def _reason(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip() or type(exc).__name__


class PodmanExecutor:
    name = "podman"

    def __init__(self, base_url: str, *, publish_ip: str = "127.0.0.1",
                 pids_limit: int = 4096, stop_timeout: int = 2, pull_timeout: float = 300.0,
                 max_threads: int = 4, network_mode: str | None = None,
                 api_timeout: float = 60.0) -> None:
        self.base_url = base_url
        self.publish_ip = publish_ip
        self.pids_limit = pids_limit
        self.stop_timeout = stop_timeout
        self.pull_timeout = pull_timeout
        self.network_mode = network_mode
        nofile, nproc = host_ulimits()
        self.nofile, self.nproc = min(nofile, 65536), min(nproc, 65536)
        self._client = PodmanClient(base_url=base_url, timeout=api_timeout)
        self._limiter = trio.CapacityLimiter(max_threads)
        self._failures: dict[str, dict[Key, str]] = {}
        self._locks: dict[str, trio.Lock] = {}

    async def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return await trio.to_thread.run_sync(fn, limiter=self._limiter)
        except (PodmanError, RequestException, OSError) as exc:
            raise ExecutorError(f"podman at {self.base_url}: {what}: {_reason(exc)}") from None
        except Exception as exc:  # an answer of the wrong shape (podman-py raises Exception)
            # the cause stays chained: a bug of ours inside ``fn`` must remain traceable
            raise ExecutorError(f"podman at {self.base_url}: {what}: unexpected answer "
                                f"({type(exc).__name__}: {exc})") from exc

    # --- protocol --------------------------------------------------------------------

    async def deploy(self, lease_id: str, group: ManifestGroup, *,
                     gpus: Sequence[int] = ()) -> list[ContainerStatus]:
        workload = build_workload(lease_id, group, gpus)
        async with self._locks.setdefault(lease_id, trio.Lock()):
            containers = await self._call(functools.partial(self._list, lease_id), "list")
            existing = {_key(c): c for c in containers}
            failures = self._failures.setdefault(lease_id, {})
            async with trio.open_nursery() as nursery:
                for spec in workload.services:
                    container = existing.get((spec.service, spec.replica))
                    if container is None:
                        nursery.start_soon(self._run_replica, spec, failures)
                    elif container.get("State") in _START_STATES:
                        nursery.start_soon(self._start_replica, spec, container["Id"], failures)
        return await self.status(lease_id)

    async def status(self, lease_id: str) -> list[ContainerStatus]:
        check_lease_id(lease_id)
        containers = await self._call(functools.partial(self._list, lease_id), "list")
        failures = self._failures.get(lease_id, {})
        result: dict[Key, ContainerStatus] = {}
        for container in containers:
            key = _key(container)
            result[key] = await self._status_of(container, failures.get(key, ""))
        for key, reason in failures.items():
            if key not in result:
                result[key] = ContainerStatus(service=key[0], replica=key[1], container_id="",
                                              state=ContainerState.FAILED, error=reason)
        return [result[key] for key in sorted(result)]

    async def logs(self, lease_id: str, *, service: str | None = None,
                   tail: int = 100) -> list[LogLine]:
        check_lease_id(lease_id)
        if tail < 0:
            raise ExecutorError(f"logs: tail {tail} is negative")
        containers = await self._call(functools.partial(self._list, lease_id), "list")
        lines: list[LogLine] = []
        for container in sorted(containers, key=_key):
            name, replica = _key(container)
            if service is not None and name != service:
                continue
            raw = await self._call(functools.partial(self._logs, container["Id"], tail), "logs")
            lines.extend(LogLine(service=name, replica=replica, stream=stream, line=text)
                         for stream, text in raw)
        return lines

    async def teardown(self, lease_id: str) -> None:
        check_lease_id(lease_id)
        async with self._locks.setdefault(lease_id, trio.Lock()):
            containers = await self._call(functools.partial(self._list, lease_id), "list")
            async with trio.open_nursery() as nursery:
                for container in containers:
                    nursery.start_soon(self._call,
                                       functools.partial(self._remove, container["Id"]), "remove")
            self._failures.pop(lease_id, None)
        lock = self._locks.get(lease_id)
        if lock is not None and not lock.locked() and not lock.statistics().tasks_waiting:
            del self._locks[lease_id]

    async def adopt(self) -> list[str]:
        def running() -> list[dict[str, Any]]:
            found = self._client.containers.list(filters={"label": LABEL_LEASE})
            return [_check_container(c.attrs) for c in found]
        containers = await self._call(running, "list")
        return sorted({str(c["Labels"][LABEL_LEASE]) for c in containers
                       if c.get("State") == "running" and LABEL_LEASE in c["Labels"]})

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    # --- per replica (trio side) -------------------------------------------------------

    async def _run_replica(self, spec: ServiceSpec, failures: dict[Key, str]) -> None:
        key = (spec.service, spec.replica)
        failures.pop(key, None)
        try:
            error = await trio.to_thread.run_sync(self._ensure_image, spec.image,
                                                  limiter=self._limiter)
            if error:
                failures[key] = error
                return
            cid = await trio.to_thread.run_sync(self._create, spec, limiter=self._limiter)
        except (PodmanError, RequestException, OSError) as exc:
            failures[key] = f"create failed: {_reason(exc)}"
            return
        await self._start_replica(spec, cid, failures)

    async def _start_replica(self, spec: ServiceSpec, cid: str,
                             failures: dict[Key, str]) -> None:
        try:
            await trio.to_thread.run_sync(self._start, cid, limiter=self._limiter)
        except (PodmanError, RequestException, OSError) as exc:
            failures[(spec.service, spec.replica)] = f"start failed: {_reason(exc)}"

    async def _status_of(self, container: dict[str, Any], remembered: str) -> ContainerStatus:
        name, replica = _key(container)
        state = str(container.get("State", "unknown"))
        exit_code: int | None = None
        error = remembered
        if state in ("exited", "stopped"):
            exit_code = int(container.get("ExitCode", 0))
        if state not in ("running", "paused") and not error:
            details = await self._call(functools.partial(self._inspect_state, container["Id"]),
                                       "inspect")
            error = str(details.get("Error") or "")
            if exit_code is not None and exit_code != 0 and not error:
                error = f"exited with code {exit_code}"
                if details.get("OOMKilled") or exit_code == 137:
                    error += " (killed; out of memory?)"
                last = await self._call(functools.partial(self._logs, container["Id"], 1), "logs")
                if last:
                    error += f": {last[-1][1][:300]}"
        if error:
            mapped = ContainerState.FAILED
        elif state in ("exited", "stopped"):
            mapped = ContainerState.EXITED if exit_code == 0 else ContainerState.FAILED
        else:
            mapped = _STATE_MAP.get(state, ContainerState.UNKNOWN)
        ports = {f"{p['container_port']}/{p.get('protocol', 'tcp')}": int(p["host_port"])
                 for p in container.get("Ports") or () if p.get("host_port")
                 if mapped == ContainerState.RUNNING}
        return ContainerStatus(service=name, replica=replica, container_id=container["Id"],
                               state=mapped, exit_code=exit_code, ports=ports, error=error)

    # --- blocking calls (run in threads) -----------------------------------------------

    def _list(self, lease_id: str) -> list[dict[str, Any]]:
        found = self._client.containers.list(all=True,
                                             filters={"label": f"{LABEL_LEASE}={lease_id}"})
        checked = [_check_container(c.attrs) for c in found]
        return [c for c in checked if c["Labels"].get(LABEL_LEASE) == lease_id]

    def _ensure_image(self, image: str) -> str:
        """'' when ``image`` is present or pulled, else why not."""
        if self._client.images.exists(image):
            return ""
        response = self._client.api.post(
            "/images/pull", params={"reference": image, "policy": "missing", "quiet": True},
            timeout=self.pull_timeout)
        if response.status_code != 200:
            return f"image pull failed ({response.status_code}): {response.text.strip()[:300]}"
        for raw in response.text.splitlines():
            try:
                item = json.loads(raw)
            except ValueError:
                continue
            if isinstance(item, dict) and item.get("error"):
                return f"image pull failed: {item['error']}"
        return ""

    def create_kwargs(self, spec: ServiceSpec) -> dict[str, Any]:
        """The podman-py ``containers.create`` arguments for one replica."""
        kwargs: dict[str, Any] = {
            "image": spec.image,
            "name": spec.container_name,
            "labels": spec.labels,
            "environment": dict(spec.env),
            "cpu_period": CPU_PERIOD,
            "cpu_quota": spec.cpu_millis * CPU_PERIOD // 1000,
            "mem_limit": spec.memory_bytes,
            "pids_limit": self.pids_limit,
            "ulimits": [{"Name": "nofile", "Soft": self.nofile, "Hard": self.nofile},
                        {"Name": "nproc", "Soft": self.nproc, "Hard": self.nproc}],
            "init": True,
            "stop_timeout": self.stop_timeout,
            "ports": {p.key: {"ip": self.publish_ip} for p in spec.ports if p.is_global},
        }
        if spec.command is not None:
            kwargs["entrypoint"] = list(spec.command)
        if spec.args is not None:
            kwargs["command"] = list(spec.args)
        if spec.gpus:
            kwargs["devices"] = list(spec.cdi_devices)
        if self.network_mode is not None:
            kwargs["network_mode"] = self.network_mode
        return kwargs

    def _create(self, spec: ServiceSpec) -> str:
        kwargs = self.create_kwargs(spec)
        container = self._client.containers.create(kwargs.pop("image"), **kwargs)
        return str(container.id)

    def _start(self, cid: str) -> None:
        response = self._client.api.post(f"/containers/{cid}/start")
        response.raise_for_status()

    def _inspect_state(self, cid: str) -> dict[str, Any]:
        response = self._client.api.get(f"/containers/{cid}/json")
        if response.status_code == 404:
            return {}
        response.raise_for_status()
        data = response.json()
        state = data.get("State") if isinstance(data, dict) else None
        return state if isinstance(state, dict) else {}

    def _logs(self, cid: str, tail: int) -> list[tuple[str, str]]:
        response = self._client.api.get(f"/containers/{cid}/logs", params={
            "stdout": True, "stderr": True, "tail": str(tail)})
        if response.status_code == 404:
            return []
        response.raise_for_status()
        lines = [(stream, text) for stream, data in _frames(response.content)
                 for text in data.decode(errors="replace").splitlines()]
        return lines[max(0, len(lines) - tail):]

    def _remove(self, cid: str) -> None:
        # One call: force with a zero timeout kills at once (SIGKILL, no SIGTERM grace) and
        # removes the container and its anonymous volumes; 404 means it is already gone.
        response = self._client.api.delete(f"/containers/{cid}",
                                           params={"force": True, "v": True, "timeout": 0})
        if response.status_code != 404:
            response.raise_for_status()


_STATE_MAP = {"running": ContainerState.RUNNING, "paused": ContainerState.PAUSED,
              "created": ContainerState.CREATED, "configured": ContainerState.CREATED,
              "initialized": ContainerState.CREATED}


def _check_container(attrs: Any) -> dict[str, Any]:
    """A container list entry with the fields we read of the types we read them as, with
    ``Labels`` a map (podman gives null for none); ValueError naming the field otherwise."""
    if not isinstance(attrs, dict):
        raise ValueError(f"a container list entry is a {type(attrs).__name__}, not a map")
    if not isinstance(attrs.get("Id"), str):
        raise ValueError("container list entry without a string Id")
    labels = attrs.get("Labels") or {}
    if not isinstance(labels, dict):
        raise ValueError(f"container {attrs['Id']}: Labels is not a map")
    if not isinstance(attrs.get("State", ""), str):
        raise ValueError(f"container {attrs['Id']}: State is not a string")
    if type(attrs.get("ExitCode", 0)) is not int:
        raise ValueError(f"container {attrs['Id']}: ExitCode is not an integer")
    ports = attrs.get("Ports") or []
    if not isinstance(ports, list) or not all(
            isinstance(p, dict) and "container_port" in p
            and (not p.get("host_port") or type(p["host_port"]) is int) for p in ports):
        raise ValueError(f"container {attrs['Id']}: malformed Ports")
    return {**attrs, "Labels": labels, "Ports": ports}


def _key(container: dict[str, Any]) -> Key:
    labels = container.get("Labels")
    if not isinstance(labels, dict):  # podman answered something other than a label map
        return "?", -1
    try:
        return str(labels[LABEL_SERVICE]), int(labels[LABEL_REPLICA])
    except (KeyError, ValueError, TypeError):
        return str(labels.get(LABEL_SERVICE, "?")), -1


def _frames(content: bytes) -> list[tuple[str, bytes]]:
    """Split a multiplexed log body (8-byte headers: stream, 3 pad, big-endian length)."""
    frames, index = [], 0
    while len(content) - index >= 8:
        stream, length = struct.unpack_from(">BxxxL", content, index)
        frames.append((_STREAMS.get(stream, "stdout"), content[index + 8:index + 8 + length]))
        index += 8 + length
    return frames
