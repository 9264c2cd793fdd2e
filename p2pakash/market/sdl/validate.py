"""Cross-reference rules of an SDL (Go ``v2.validate`` / ``v2_1.validate``), Akash wording.

Rules, checked in Go's order (services and placements in sorted order):
* reclamation ``min_window`` is a positive Go duration;
* endpoint names match ``^[a-z]+[a-z-_0-9]+$`` and have kind ``ip``;
* every ``deployment.<svc>.<placement>`` names an existing compute profile, placement
  profile, pricing entry and service; credentials have host, username and password;
* an expose ``to`` with ``ip`` is global, names a declared endpoint, and no two services
  use the same endpoint/port/protocol; every declared endpoint is used;
* ``params.storage`` volumes exist in the compute profile, mount at absolute paths, not
  twice at the same path; persistent volumes are mounted; (2.1) ram volumes are not
  read-only;
* deployment counts are at least 1 (the schema's ``minimum: 1``).
"""

from __future__ import annotations

import posixpath
import re

from p2pakash.errors import SDLError
from p2pakash.market.sdl.model import SDLInput, ServiceParams
from p2pakash.market.sdl.resources import StorageVolume

ENDPOINT_NAME = re.compile(r"[a-z]+[a-z\-_0-9]+")
_DURATION = re.compile(r"([0-9]*(\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6,
                   "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
INVALID = "SDL invalid"


def go_duration_ns(text: str) -> int:
    """time.ParseDuration in nanoseconds (ValueError when Go would refuse it)."""
    rest = text
    sign = -1 if rest.startswith("-") else 1
    rest = rest.lstrip("+-") if rest[:1] in "+-" else rest
    if rest == "0":
        return 0
    if rest == "":
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    while rest:
        match = _DURATION.match(rest)
        if match is None or match.group(1) in ("", "."):
            raise ValueError(f'time: invalid duration "{text}"')
        if not match.group(3):
            raise ValueError(f'time: missing unit in duration "{text}"')
        total += float(match.group(1)) * _DURATION_UNITS[match.group(3)]
        rest = rest[match.end():]
    return sign * int(total)


def validate(sdl: SDLInput) -> None:
    if sdl.reclamation_min_window is not None:
        window = sdl.reclamation_min_window
        try:
            nanos = go_duration_ns(window)
        except ValueError as exc:
            raise SDLError(f'{INVALID}: invalid reclamation min_window "{window}": {exc}') from None
        if nanos <= 0:
            raise SDLError(f"{INVALID}: reclamation min_window must be > 0")
    for name, kind in sdl.endpoints:
        if not ENDPOINT_NAME.fullmatch(name):
            raise SDLError(f'{INVALID}: endpoint named "{name}" is not a valid name')
        if not kind:
            raise SDLError(f'{INVALID}: endpoint named "{name}" has no kind')
        if kind != "ip":
            raise SDLError(f'{INVALID}: endpoint named "{name}", unknown kind "{kind}"')
    endpoints = dict(sdl.endpoints)
    endpoints_used: set[str] = set()
    ports_used: dict[str, str] = {}
    for entry in sdl.deployments:
        where = f"{entry.service}.{entry.placement}"
        compute = sdl.compute_profile(entry.profile)
        if compute is None:
            raise SDLError(f"{INVALID}: {where}: no compute profile named {entry.profile}")
        placement = sdl.placement_profile(entry.placement)
        if placement is None:
            raise SDLError(f"{INVALID}: {where}: no placement profile named {entry.placement}")
        if placement.price_for(entry.profile) is None:
            raise SDLError(f"{INVALID}: {where}: no pricing for profile {entry.profile}")
        svc = sdl.service(entry.service)
        if svc is None:
            raise SDLError(f"{INVALID}: {where}: no service profile named {entry.service}")
        if entry.count < 1:
            raise SDLError(f"{INVALID}: {where}: count must be >= 1 (got {entry.count})")
        creds = svc.credentials
        if creds is not None:
            for field, label in (("host", "Host"), ("username", "Username"),
                                 ("password", "Password")):
                if not getattr(creds, field).strip():
                    raise SDLError(f"{INVALID}: {where}: service Credentials missing {label}")
        for expose in svc.expose:
            for to in expose.to:
                if not to.ip:
                    continue
                if not to.is_global:
                    raise SDLError(f'{INVALID}: error on "{svc.name}" if an IP is declared '
                                   "the directive must be declared as global")
                if to.ip not in endpoints:
                    raise SDLError(f'{INVALID}: error on service "{svc.name}" no endpoint '
                                   f'named "{to.ip}" exists')
                endpoints_used.add(to.ip)
                key = f"{to.ip}-{expose.external_port}-{expose.proto}"
                other = ports_used.get(key)
                if other is not None:
                    raise SDLError(
                        f'{INVALID}: IP endpoint "{to.ip}" port: {expose.port} protocol: '
                        f'{expose.proto} specified by service "{svc.name}" already in use by '
                        f'"{other}"')
                ports_used[key] = svc.name
        _validate_storage(sdl, svc.name, compute.storage or (), svc.params)
    for name, _kind in sdl.endpoints:
        if name not in endpoints_used:
            raise SDLError(f'{INVALID}: endpoint "{name}" declared but never used')


def _validate_storage(sdl: SDLInput, svc_name: str, volumes: tuple[StorageVolume, ...],
                      params: ServiceParams | None) -> None:
    by_name = {v.name: v for v in volumes}
    mounted: dict[str, str] = {}
    storage = params.storage if params is not None else ()
    for param in storage:
        volume = by_name.get(param.name)
        if volume is None:
            raise SDLError(f'{INVALID}: service "{svc_name}" references to no-existing compute '
                           f'volume named "{param.name}"')
        if not posixpath.isabs(param.mount):
            raise SDLError(f'{INVALID}: invalid value for "service.{svc_name}.params.'
                           f'{param.name}.mount" parameter. expected absolute path')
        if param.mount in mounted:
            raise SDLError(f'sdl: duplicated mount point: mount "{param.mount}" already in '
                           f'use by volume "{mounted[param.mount]}"')
        mounted[param.mount] = param.name
        attrs = {a.key: a.value for a in volume.attributes}
        if sdl.version != "2.0" and attrs.get("class") == "ram" and param.read_only:
            raise SDLError(f"{INVALID}: services.{svc_name}.params.storage.{param.name} has "
                           'readOnly=true which is not allowed for storage class "ram"')
    checked = volumes if sdl.version == "2.0" else [by_name[p.name] for p in storage]
    mounts = {p.name: p.mount for p in storage}
    for volume in checked:
        persistent = any(a.key == "persistent" and a.value == "true" for a in volume.attributes)
        if persistent and not mounts.get(volume.name):
            raise SDLError(f"{INVALID}: compute.storage.{volume.name} has persistent=true which "
                           f"requires service.{svc_name}.params.storage.{volume.name} to have "
                           "mount")
