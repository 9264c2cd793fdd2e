"""The parsed SDL input (services, profiles, deployment), before groups are built.

Rules and invariants:
* Frozen attrs; mappings from the YAML are kept as tuples of (name, value) pairs sorted
  by name, because Akash iterates them in sorted order wherever order matters.
* Quantities are already converted (millicpu, bytes); attribute lists are sorted by key;
  storage volumes are in Akash's volume order (see ``parse.sort_volumes``).
* ``None`` keeps Go's distinction between an absent list (nil, JSON null) and an empty one.
"""

from __future__ import annotations

import attrs

from p2pakash.market.sdl.resources import Attributes, Price, SignedBy, StorageVolume

DEFAULT_NEXT_CASES = ("error", "timeout")


@attrs.frozen(kw_only=True)
class HTTPOptions:
    max_body_size: int = 0
    read_timeout: int = 0
    send_timeout: int = 0
    next_tries: int = 0
    next_timeout: int = 0
    next_cases: tuple[str, ...] = ()
    proxy_buffer_size: int = 0


@attrs.frozen(kw_only=True)
class ExposeTo:
    service: str = ""
    is_global: bool = False
    ip: str = ""


@attrs.frozen(kw_only=True)
class Expose:
    port: int
    external_port: int = 0
    proto: str = ""
    to: tuple[ExposeTo, ...] = ()
    accept: tuple[str, ...] | None = None
    http_options: HTTPOptions = HTTPOptions()


@attrs.frozen(kw_only=True)
class StorageParam:
    name: str
    mount: str = ""
    read_only: bool = False


@attrs.frozen(kw_only=True)
class ServiceParams:
    storage: tuple[StorageParam, ...] = ()
    permissions: tuple[str, ...] | None = None
    has_permissions: bool = False
    tee: str = ""


@attrs.frozen(kw_only=True)
class Credentials:
    host: str = ""
    email: str = ""
    username: str = ""
    password: str = ""


@attrs.frozen(kw_only=True)
class Service:
    name: str
    image: str = ""
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: tuple[str, ...] | None = None
    expose: tuple[Expose, ...] = ()
    params: ServiceParams | None = None
    credentials: Credentials | None = None


@attrs.frozen(kw_only=True)
class ComputeProfile:
    """A compute profile; None marks a resource the SDL left out (Go's nil pointer)."""

    name: str
    cpu_millis: int | None = None
    cpu_attributes: Attributes = ()
    memory_bytes: int | None = None
    storage: tuple[StorageVolume, ...] | None = None
    gpu_units: int | None = None
    gpu_attributes: Attributes = ()


@attrs.frozen(kw_only=True)
class PlacementProfile:
    name: str
    attributes: Attributes | None = None
    signed_by: SignedBy = attrs.field(factory=SignedBy)
    pricing: tuple[tuple[str, Price], ...] = ()

    def price_for(self, profile: str) -> Price | None:
        return dict(self.pricing).get(profile)


@attrs.frozen(kw_only=True)
class DeploymentEntry:
    """``deployment.<service>.<placement>``: which compute profile, how many replicas."""

    service: str
    placement: str
    profile: str = ""
    count: int = 0


@attrs.frozen(kw_only=True)
class SDLInput:
    version: str  # "2.0" or "2.1" (the parser rules in use)
    services: tuple[tuple[str, Service], ...] = ()
    compute: tuple[tuple[str, ComputeProfile], ...] = ()
    placement: tuple[tuple[str, PlacementProfile], ...] = ()
    deployments: tuple[DeploymentEntry, ...] = ()  # sorted by (service, placement)
    endpoints: tuple[tuple[str, str], ...] = ()  # name -> kind
    reclamation_min_window: str | None = None

    def service(self, name: str) -> Service | None:
        return dict(self.services).get(name)

    def compute_profile(self, name: str) -> ComputeProfile | None:
        return dict(self.compute).get(name)

    def placement_profile(self, name: str) -> PlacementProfile | None:
        return dict(self.placement).get(name)
