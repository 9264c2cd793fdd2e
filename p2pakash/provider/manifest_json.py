"""A manifest received from a tenant: Akash JSON in, checked ``ManifestGroup`` values out (pure).

Rules and invariants:
* The manifest travels as Akash's JSON (the list of groups; ``manifest_groups_json``). The
  version hash is computed as Akash does: sha256 of the key-sorted JSON of what was
  received (``version.manifest_version``), and must equal the order's ``manifest_hash``.
* ``parse_manifest`` rebuilds the typed groups and then requires that they serialise back
  to exactly the JSON received: whatever the parser does not understand, or a field of
  the wrong type, makes the round trip differ and the manifest is refused.
* ``check_against_order`` is Akash's ``CheckAgainstDeployment``: for every resource unit of
  the leased order group, the services using that unit ID have the same resources (GPU
  attributes aside: the order may name a wildcard) and their counts add up to the unit's.
* Every refusal is ``ManifestError`` with one line naming what is wrong.
"""

from __future__ import annotations

import json
from typing import Any

from p2pakash.errors import P2PAkashError, SDLError
from p2pakash.market.orders import OrderGroup
from p2pakash.market.sdl.manifest import (
    HTTPOptions,
    ImageCredentials,
    ManifestGroup,
    ManifestService,
    ServiceExpose,
    ServiceParams,
    StorageParams,
    TEEParams,
    manifest_groups_json,
    validate_manifest,
)
from p2pakash.market.sdl.resources import (
    GPU,
    Attribute,
    Endpoint,
    EndpointKind,
    Resources,
    StorageVolume,
)
from p2pakash.market.sdl.version import manifest_version, sorted_json


class ManifestError(P2PAkashError):
    """A manifest that cannot be accepted for a lease."""


def _tuple_or_none(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _attrs(value: Any) -> tuple[Attribute, ...]:
    return tuple(Attribute(key=a["key"], value=a["value"]) for a in value or ())


def _resources(j: dict[str, Any]) -> Resources:
    gpu = j["gpu"]
    return Resources(
        id=j["id"], cpu_millis=int(j["cpu"]["units"]["val"]),
        cpu_attributes=_attrs(j["cpu"].get("attributes")),
        memory_bytes=int(j["memory"]["size"]["val"]),
        storage=tuple(StorageVolume(name=s["name"], size=int(s["size"]["val"]),
                                    attributes=_attrs(s.get("attributes")))
                      for s in j["storage"]),
        gpu=GPU(units=int(gpu["units"]["val"]), attributes=_attrs(gpu.get("attributes"))),
        endpoints=tuple(Endpoint(kind=EndpointKind(e.get("kind", 0)),
                                 sequence_number=e["sequence_number"])
                        for e in j["endpoints"]))


def _expose(j: dict[str, Any]) -> ServiceExpose:
    h = j["httpOptions"]
    return ServiceExpose(
        port=j["port"], external_port=j["externalPort"], proto=j["proto"],
        service=j["service"], is_global=j["global"], hosts=_tuple_or_none(j["hosts"]),
        http_options=HTTPOptions(
            max_body_size=h["maxBodySize"], read_timeout=h["readTimeout"],
            send_timeout=h["sendTimeout"], next_tries=h["nextTries"],
            next_timeout=h["nextTimeout"], next_cases=tuple(h["nextCases"]),
            proxy_buffer_size=h.get("proxyBufferSize", 0)),
        ip=j["ip"], endpoint_sequence_number=j["endpointSequenceNumber"])


def _params(j: dict[str, Any] | None) -> ServiceParams | None:
    if j is None:
        return None
    perms = j.get("permissions")
    tee = j.get("tee")
    return ServiceParams(
        storage=tuple(StorageParams(name=s["name"], mount=s["mount"], read_only=s["readOnly"])
                      for s in j["storage"] or ()),
        permissions=tuple(perms["read"]) if perms and perms.get("read") else None,
        has_permissions=perms is not None,
        tee=None if tee is None else TEEParams(type=tee["type"],
                                               attestation=tee["attestation"]))


def _service(j: dict[str, Any]) -> ManifestService:
    creds = j["credentials"]
    return ManifestService(
        name=j["name"], image=j["image"], command=_tuple_or_none(j["command"]),
        args=_tuple_or_none(j["args"]), env=_tuple_or_none(j["env"]),
        resources=_resources(j["resources"]), count=j["count"],
        expose=tuple(_expose(e) for e in j["expose"]), params=_params(j.get("params")),
        credentials=None if creds is None else ImageCredentials(**creds))


def parse_manifest(data: bytes) -> tuple[tuple[ManifestGroup, ...], bytes]:
    """(groups, version hash) of a manifest in Akash JSON; ManifestError if malformed."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"manifest is not JSON: {exc}") from None
    if not isinstance(raw, list):
        raise ManifestError("manifest must be a JSON list of groups")
    try:
        groups = tuple(ManifestGroup(name=g["name"],
                                     services=tuple(_service(s) for s in g["services"]))
                       for g in raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(f"manifest is malformed: {type(exc).__name__}: {exc}") from None
    if sorted_json(manifest_groups_json(groups)) != sorted_json(raw):
        raise ManifestError("manifest has fields or values this provider does not understand")
    try:
        validate_manifest(groups)
    except SDLError as exc:
        raise ManifestError(str(exc)) from None
    return groups, manifest_version(raw)


def _shape(res: Resources) -> tuple[object, ...]:
    return (res.cpu_millis, res.memory_bytes, res.storage, res.gpu.units)


def check_against_order(group: ManifestGroup, order_group: OrderGroup) -> None:
    """Akash ``CheckAgainstDeployment`` for one group; ManifestError naming the unit."""
    for unit in order_group.resources:
        rid = unit.resources.id
        users = [s for s in group.services if s.resources.id == rid]
        for svc in users:
            if _shape(svc.resources) != _shape(unit.resources):
                raise ManifestError(f'service "{svc.name}": resources differ from the '
                                    f"order's unit {rid}")
        total = sum(s.count for s in users)
        if total != unit.count:
            raise ManifestError(f"resource unit {rid}: manifest runs {total} replicas, the "
                                f"order {unit.count}")
    known = {u.resources.id for u in order_group.resources}
    for svc in group.services:
        if svc.resources.id not in known:
            raise ManifestError(f'service "{svc.name}": resource unit {svc.resources.id} is '
                                "not in the order")


def group_for(groups: tuple[ManifestGroup, ...], name: str) -> ManifestGroup:
    for group in groups:
        if group.name == name:
            return group
    raise ManifestError(f'manifest has no group "{name}" (the leased order group)')
