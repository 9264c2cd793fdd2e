"""Manifest groups (Akash ``manifest/v2beta3``): types, JSON shape and manifest validation.

Rules and invariants:
* A manifest is a tuple of groups sorted by name; services in a group are sorted by
  name; a service's exposes are sorted by (service, port, proto, global first), as Go does.
* ``manifest_groups_json`` is exactly Go's ``json.Marshal`` of the manifest: ``params`` is
  omitted when the service has none, ``command``/``args``/``env``/``hosts``/
  ``credentials`` are null when absent, ``storage`` inside params is null when empty.
* ``validate_manifest`` applies ``Manifest.Validate`` (service names, images, env names,
  ports, protocols, hostnames unique across the manifest, at least one global expose).
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from p2pakash.errors import SDLError
from p2pakash.market.sdl.resources import Endpoint, EndpointKind, Resources

SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
INVALID_MANIFEST = "invalid manifest"


@attrs.frozen(kw_only=True)
class HTTPOptions:
    max_body_size: int
    read_timeout: int
    send_timeout: int
    next_tries: int
    next_timeout: int
    next_cases: tuple[str, ...]
    proxy_buffer_size: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "maxBodySize": self.max_body_size, "readTimeout": self.read_timeout,
            "sendTimeout": self.send_timeout, "nextTries": self.next_tries,
            "nextTimeout": self.next_timeout, "nextCases": list(self.next_cases),
        }
        if self.proxy_buffer_size:
            out["proxyBufferSize"] = self.proxy_buffer_size
        return out


@attrs.frozen(kw_only=True)
class ServiceExpose:
    port: int
    external_port: int
    proto: str  # "TCP" | "UDP"
    service: str
    is_global: bool
    hosts: tuple[str, ...] | None
    http_options: HTTPOptions
    ip: str = ""
    endpoint_sequence_number: int = 0

    @property
    def is_ingress(self) -> bool:
        """Served through the provider's shared HTTP ingress (global TCP on port 80)."""
        return self.proto == "TCP" and self.is_global and (self.external_port or self.port) == 80

    def endpoints(self) -> tuple[Endpoint, ...]:
        """ServiceExpose.GetEndpoints: what this expose needs from the provider."""
        if not self.is_global:
            return ()
        result = []
        if self.ip:
            result.append(Endpoint(kind=EndpointKind.LEASED_IP,
                                   sequence_number=self.endpoint_sequence_number))
        kind = EndpointKind.SHARED_HTTP if self.is_ingress else EndpointKind.RANDOM_PORT
        result.append(Endpoint(kind=kind))
        return tuple(sorted(result, key=lambda e: e.sequence_number))

    def sort_key(self) -> tuple[str, int, str, bool]:
        return (self.service, self.port, self.proto, not self.is_global)

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port, "externalPort": self.external_port, "proto": self.proto,
            "service": self.service, "global": self.is_global,
            "hosts": list(self.hosts) if self.hosts is not None else None,
            "httpOptions": self.http_options.to_json(), "ip": self.ip,
            "endpointSequenceNumber": self.endpoint_sequence_number,
        }


@attrs.frozen(kw_only=True)
class StorageParams:
    name: str
    mount: str
    read_only: bool


@attrs.frozen(kw_only=True)
class TEEParams:
    type: str
    attestation: bool = True


@attrs.frozen(kw_only=True)
class ServiceParams:
    storage: tuple[StorageParams, ...] = ()
    permissions: tuple[str, ...] | None = None
    has_permissions: bool = False
    tee: TEEParams | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "storage": [{"name": s.name, "mount": s.mount, "readOnly": s.read_only}
                        for s in self.storage] or None,
        }
        if self.has_permissions:
            out["permissions"] = {"read": list(self.permissions)} if self.permissions else {}
        if self.tee is not None:
            out["tee"] = {"type": self.tee.type, "attestation": self.tee.attestation}
        return out


@attrs.frozen(kw_only=True)
class ImageCredentials:
    host: str
    email: str
    username: str
    password: str


@attrs.frozen(kw_only=True)
class ManifestService:
    name: str
    image: str
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    env: tuple[str, ...] | None
    resources: Resources
    count: int
    expose: tuple[ServiceExpose, ...]
    params: ServiceParams | None = None
    credentials: ImageCredentials | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "image": self.image,
            "command": _list_or_none(self.command), "args": _list_or_none(self.args),
            "env": _list_or_none(self.env), "resources": self.resources.to_json(),
            "count": self.count, "expose": [e.to_json() for e in self.expose],
        }
        if self.params is not None:
            out["params"] = self.params.to_json()
        out["credentials"] = attrs.asdict(self.credentials) if self.credentials else None
        return out


@attrs.frozen(kw_only=True)
class ManifestGroup:
    name: str
    services: tuple[ManifestService, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "services": [s.to_json() for s in self.services]}


def _list_or_none(items: tuple[str, ...] | None) -> list[str] | None:
    return list(items) if items is not None else None


def manifest_groups_json(groups: tuple[ManifestGroup, ...]) -> list[dict[str, Any]]:
    return [group.to_json() for group in groups]


def validate_manifest(groups: tuple[ManifestGroup, ...]) -> None:
    if not groups:
        raise SDLError(f"{INVALID_MANIFEST}: manifest is empty")
    hostnames: set[str] = set()
    global_count = 0
    names: set[str] = set()
    for group in groups:
        if not group.services:
            raise SDLError(f'{INVALID_MANIFEST}: group "{group.name}" contains no services')
        for svc in group.services:
            _validate_service(svc)
            for expose in svc.expose:
                try:
                    _validate_expose(expose, hostnames)
                except ValueError as exc:
                    raise SDLError(f'{INVALID_MANIFEST}: service "{svc.name}": {exc}') from None
                global_count += expose.is_global
        if group.name in names:
            raise SDLError(f'{INVALID_MANIFEST}: duplicate group "{group.name}"')
        names.add(group.name)
    if global_count == 0:
        raise SDLError(f"{INVALID_MANIFEST}: zero global services")


def _validate_service(svc: ManifestService) -> None:
    if not svc.name:
        raise SDLError(f"{INVALID_MANIFEST}: service name is empty")
    if not SERVICE_NAME.fullmatch(svc.name):
        raise SDLError(f'{INVALID_MANIFEST}: service "{svc.name}" name is invalid')
    if not svc.image:
        raise SDLError(f'{INVALID_MANIFEST}: service "{svc.name}" has empty image name')
    for variable in svc.env or ():
        name = variable.split("=", 1)[0]
        if not ENV_NAME.fullmatch(name):
            raise SDLError(f'{INVALID_MANIFEST}: service "{svc.name}" defines an env. var. '
                           f'with an invalid name "{name}"')


def _validate_expose(expose: ServiceExpose, hostnames: set[str]) -> None:
    if expose.port == 0 or expose.port > 65535:
        raise ValueError("port value must be 0 < value <= 65535")
    if expose.proto not in ("TCP", "UDP"):
        raise ValueError(f'protocol "{expose.proto}" unknown')
    for host in expose.hosts or ():
        if len(host) > 253 or not DNS1123_SUBDOMAIN.fullmatch(host):
            raise ValueError(f'has invalid hostname "{host}"')
        if host in hostnames:
            raise ValueError(f'hostname "{host}" is duplicated, this is not allowed')
        hostnames.add(host)
