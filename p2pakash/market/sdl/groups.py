"""Deployment group specs and the group builder (Go ``groupBuilder_v2.go``/``_v2_1.go``).

Rules and invariants:
* One group per placement name, groups sorted by name. Requirements: the placement's
  attributes sorted by key (plus ``tee/type`` when a service asks for a TEE) and signedBy.
* v2.0: one ResourceUnit per (service, placement), ids 1..n in (service, placement) order.
  v2.1: services of one placement using the same compute profile share a unit: counts add
  up and endpoints are concatenated then sorted by sequence number.
* Endpoints: a global expose needs SHARED_HTTP when it is TCP on external port 80, else
  RANDOM_PORT, plus LEASED_IP when it names an IP endpoint. IP endpoint sequence numbers
  reproduce Go's ``computeEndpointSequenceNumbers`` exactly (including its quirks).
* ``validate_groups`` applies ``ValidateDeploymentGroups``: one denomination, unit limits
  (cpu 10m..384, memory 1Mi..2Ti, storage 5Mi..32Ti per volume, gpu <= 24), price
  <= 10,000,000 per unit, at most 20 units per group.
"""

from __future__ import annotations

from typing import Any

import attrs

from p2pakash import wire
from p2pakash.errors import SDLError
from p2pakash.market.sdl import manifest as mf
from p2pakash.market.sdl.model import DEFAULT_NEXT_CASES, Expose, SDLInput
from p2pakash.market.sdl.resources import (
    GPU,
    Attribute,
    Attributes,
    Price,
    Resources,
    SignedBy,
    attributes_json,
    sort_endpoints,
)

KI = 1024
UNIT_LIMITS = {"cpu": (10, 384_000), "gpu": (0, 24), "memory": (KI**2, 2 * KI**4),
               "storage": (5 * KI**2, 32 * KI**4)}
MAX_UNIT_PRICE = 10_000_000
MAX_UNIT_COUNT = 50
MAX_GROUP_UNITS = 20
NEXT_CASES = ("error", "timeout", "500", "502", "503", "504", "403", "404", "429", "off")


@wire.message(tag=356)
@attrs.frozen(kw_only=True)
class Requirements:
    signed_by: SignedBy = attrs.field(factory=SignedBy)
    attributes: Attributes | None = None

    def to_json(self) -> dict[str, Any]:
        signed = self.signed_by
        return {
            "signed_by": {
                "all_of": list(signed.all_of) if signed.all_of is not None else None,
                "any_of": list(signed.any_of) if signed.any_of is not None else None,
            },
            "attributes": attributes_json(self.attributes) if self.attributes else None,
        }


@attrs.frozen(kw_only=True)
class ResourceUnit:
    """``count`` replicas of ``resources`` offered at ``price`` per block each."""

    resources: Resources
    count: int
    price: Price

    def to_json(self) -> dict[str, Any]:
        return {"resource": self.resources.to_json(), "count": self.count,
                "price": self.price.to_json()}


@attrs.frozen(kw_only=True)
class GroupSpec:
    name: str
    requirements: Requirements
    resources: tuple[ResourceUnit, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "requirements": self.requirements.to_json(),
                "resources": [unit.to_json() for unit in self.resources]}


def group_specs_json(groups: tuple[GroupSpec, ...]) -> list[dict[str, Any]]:
    return [group.to_json() for group in groups]


def endpoint_sequence_numbers(sdl: SDLInput) -> dict[str, int]:
    names: list[str] = []
    for svc_name in sorted({d.service for d in sdl.deployments}):
        svc = sdl.service(svc_name)
        for expose in svc.expose if svc else ():
            names.extend(to.ip for to in expose.to if not (to.is_global and not to.ip))
    return {name: number for number, name in enumerate(sorted(names), start=1)}


def manifest_exposes(exposes: tuple[Expose, ...], seq: dict[str, int]
                     ) -> tuple[mf.ServiceExpose, ...]:
    result = []
    for expose in exposes:
        proto = expose.proto.upper()
        if proto not in ("TCP", "UDP", ""):
            raise SDLError("unknown service protocol")
        http = _http_options(expose)
        base = mf.ServiceExpose(port=expose.port, external_port=expose.external_port,
                                proto=proto or "TCP", service="", is_global=False,
                                hosts=expose.accept, http_options=http)
        for to in expose.to:
            number = seq.get(to.ip, 0) if to.is_global and to.ip else 0
            result.append(attrs.evolve(base, service=to.service, is_global=to.is_global,
                                       ip=to.ip, endpoint_sequence_number=number))
        if not expose.to:
            result.append(base)
    return tuple(sorted(result, key=mf.ServiceExpose.sort_key))


def _http_options(expose: Expose) -> mf.HTTPOptions:
    ho = expose.http_options
    not_allowed = "http option not allowed"
    if ho.max_body_size > 104_857_600:
        raise SDLError(f"{not_allowed}: body size cannot be greater than 104857600 bytes")
    if ho.read_timeout > 60_000:
        raise SDLError(f"{not_allowed}: read timeout cannot be greater than 60000 ms")
    if ho.send_timeout > 60_000:
        raise SDLError(f"{not_allowed}: send timeout cannot be greater than 60000 ms")
    if ho.proxy_buffer_size > 1_048_576:
        raise SDLError(f"{not_allowed}: proxy buffer size cannot be greater than 1048576 bytes")
    for case in ho.next_cases:
        if case == "off" and len(ho.next_cases) != 1:
            raise SDLError("if 'off' is specified, no other cases may be specified")
        if case not in NEXT_CASES:
            raise SDLError(f'next case is unknown: "{case}"')
    return mf.HTTPOptions(
        max_body_size=ho.max_body_size or 1_048_576, read_timeout=ho.read_timeout or 60_000,
        send_timeout=ho.send_timeout or 60_000, next_tries=ho.next_tries or 3,
        next_timeout=ho.next_timeout, next_cases=ho.next_cases or DEFAULT_NEXT_CASES,
        proxy_buffer_size=ho.proxy_buffer_size)


@attrs.define
class _Group:
    name: str
    requirements: Requirements
    units: list[ResourceUnit] = attrs.field(factory=list)
    services: list[mf.ManifestService] = attrs.field(factory=list)
    bound: dict[str, int] = attrs.field(factory=dict)
    tee: str = ""


def build(sdl: SDLInput) -> tuple[tuple[GroupSpec, ...], tuple[mf.ManifestGroup, ...]]:
    """Deployment groups and manifest groups for a validated SDL."""
    seq = endpoint_sequence_numbers(sdl)
    groups: dict[str, _Group] = {}
    for entry in sdl.deployments:
        compute = sdl.compute_profile(entry.profile)
        svc = sdl.service(entry.service)
        placement = sdl.placement_profile(entry.placement)
        price = placement.price_for(entry.profile) if placement else None
        assert compute is not None and svc is not None and placement is not None
        assert price is not None
        group = groups.get(entry.placement)
        if group is None:
            group = groups[entry.placement] = _Group(entry.placement, Requirements(
                signed_by=placement.signed_by, attributes=placement.attributes))
        params = svc.params
        tee = params.tee if params is not None else ""
        if tee:
            if tee == "cpu-gpu" and not (compute.gpu_units or 0) > 0:
                raise SDLError('sdl: tee type requires gpu resources: "cpu-gpu" specified but '
                               "no gpu resources defined")
            if group.tee and group.tee != tee:
                raise SDLError(f'sdl: conflicting tee types in the same placement group: group '
                               f'"{group.name}" has "{group.tee}" and "{tee}"')
            if not group.tee:
                group.tee = tee
                attributes = [*(group.requirements.attributes or ()),
                              Attribute(key="tee/type", value=tee)]
                group.requirements = attrs.evolve(group.requirements, attributes=tuple(
                    sorted(attributes, key=lambda a: a.key)))
        expose = manifest_exposes(svc.expose, seq)
        endpoints = tuple(e for x in expose for e in x.endpoints())
        resources = Resources(
            id=0, cpu_millis=compute.cpu_millis or 0, cpu_attributes=compute.cpu_attributes,
            memory_bytes=compute.memory_bytes or 0, storage=compute.storage or (),
            gpu=GPU(units=compute.gpu_units or 0, attributes=compute.gpu_attributes),
            endpoints=endpoints)
        location = group.bound.get(entry.profile) if sdl.version != "2.0" else None
        if location is None:
            resources = attrs.evolve(resources, id=len(group.units) + 1)
            group.units.append(ResourceUnit(resources=resources, count=entry.count, price=price))
            group.bound[entry.profile] = len(group.units) - 1
        else:
            unit = group.units[location]
            resources = attrs.evolve(resources, id=unit.resources.id)
            merged = sort_endpoints([*unit.resources.endpoints, *endpoints])
            group.units[location] = attrs.evolve(
                unit, count=unit.count + entry.count,
                resources=attrs.evolve(unit.resources, endpoints=merged))
        group.services.append(mf.ManifestService(
            name=svc.name, image=svc.image, command=svc.command, args=svc.args, env=svc.env,
            resources=resources, count=entry.count, expose=expose,
            params=_manifest_params(svc.params),
            credentials=_credentials(svc.credentials, trim=sdl.version != "2.0")))
    names = sorted(groups)
    specs = tuple(GroupSpec(name=n, requirements=groups[n].requirements,
                            resources=tuple(groups[n].units)) for n in names)
    manifest = tuple(mf.ManifestGroup(name=n, services=tuple(
        sorted(groups[n].services, key=lambda s: s.name))) for n in names)
    return specs, manifest


def _manifest_params(params: Any) -> mf.ServiceParams | None:
    if params is None:
        return None
    return mf.ServiceParams(
        storage=tuple(mf.StorageParams(name=p.name, mount=p.mount, read_only=p.read_only)
                      for p in params.storage),
        permissions=params.permissions, has_permissions=params.has_permissions,
        tee=mf.TEEParams(type=params.tee) if params.tee else None)


def _credentials(creds: Any, *, trim: bool) -> mf.ImageCredentials | None:
    if creds is None:
        return None
    if not trim:
        return mf.ImageCredentials(host=creds.host, email="", username=creds.username,
                                   password=creds.password)
    return mf.ImageCredentials(host=creds.host.strip(), email=creds.email.strip(),
                               username=creds.username.strip(), password=creds.password.strip())


def validate_groups(groups: tuple[GroupSpec, ...]) -> None:
    if not groups:
        raise SDLError("invalid deployment groups: no groups (the deployment section is empty)")
    denom = groups[0].resources[0].price.denom if groups[0].resources else ""
    for group in groups:
        group_denom = group.resources[0].price.denom if group.resources else ""
        for unit in group.resources:
            if unit.price.denom != group_denom:
                raise SDLError(f"group {group.name}: multi-denomination group: "
                               f"({unit.price.denom} == {group_denom} fails)")
        if group_denom != denom:
            raise SDLError(f"invalid price: inconsistent group denomination: "
                           f"{denom} != {group_denom}")
        if len(group.resources) > MAX_GROUP_UNITS:
            raise SDLError(f"group {group.name}: too many units "
                           f"({len(group.resources)} > {MAX_GROUP_UNITS})")
        for unit in group.resources:
            _validate_unit(group.name, unit)


def _validate_unit(group: str, unit: ResourceUnit) -> None:
    res = unit.resources
    checks = [("CPU", "cpu", res.cpu_millis), ("GPU", "gpu", res.gpu.units),
              ("memory", "memory", res.memory_bytes)]
    checks += [("storage", "storage", volume.size) for volume in res.storage]
    for label, key, value in checks:
        low, high = UNIT_LIMITS[key]
        if not low <= value <= high:
            raise SDLError(f"group {group}: error: invalid unit {label} "
                           f"({high} > {value} > {low} fails)")
    if not res.storage:
        raise SDLError(f"group {group}: error: invalid unit storage, cannot be nil")
    if res.gpu.units == 0 and res.gpu.attributes:
        raise SDLError(f"group {group}: error: invalid GPU state. attributes cannot be present "
                       "if units == 0")
    if unit.price.amount_atto > MAX_UNIT_PRICE * 10**18:
        raise SDLError(f"group {group}: error: invalid unit price ({MAX_UNIT_PRICE} > "
                       f"{unit.price.amount}{unit.price.denom} fails)")
    if unit.count > MAX_UNIT_COUNT:
        raise SDLError(f"group {group}: error: invalid unit count "
                       f"({MAX_UNIT_COUNT} > {unit.count} > 1 fails)")
