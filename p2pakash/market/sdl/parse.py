"""Decode an SDL node tree into ``SDLInput`` with Akash's decode-time rules and messages.

Rules (chain-sdk ``go/sdl``: sdl.go, v2.go, cpu.go, gpu.go, storage.go, units.go, coin.go):
* ``version`` is semver-tolerant: exactly 2.0.0 uses the v2.0 rules, >= 2.1.0 the v2.1
  rules, anything else is ``config: unsupported version``.
* Top-level keys other than version/include/services/profiles/deployment/endpoints/
  reclamation are ``sdl: unexpected field``. Inside services and profiles unknown keys are
  ignored (Go's default decoding), except in cpu, gpu and storage attributes, which refuse
  them as Go does.
* GPU vendors: ``nvidia`` as in Go; ``amd`` is also accepted (Akash providers count
  ``amd.com/gpu``); any other vendor, or an empty vendor map, is refused (the Console's rule).
Every error is an SDLError whose message contains Akash's wording.
"""

from __future__ import annotations

import re

from p2pakash.errors import SDLError
from p2pakash.market.sdl import nodes
from p2pakash.market.sdl.model import (
    ComputeProfile,
    Credentials,
    DeploymentEntry,
    Expose,
    ExposeTo,
    HTTPOptions,
    PlacementProfile,
    SDLInput,
    Service,
    ServiceParams,
    StorageParam,
)
from p2pakash.market.sdl.nodes import Node, fail, mapping, string, strings, uint
from p2pakash.market.sdl.resources import (
    DENOM_RE,
    Attribute,
    Attributes,
    Price,
    SignedBy,
    StorageVolume,
)
from p2pakash.market.sdl.units import format_gi, parse_cpu, parse_dec, parse_size, parse_uint

TOP_LEVEL = ("version", "include", "services", "profiles", "deployment", "endpoints",
             "reclamation")
STORAGE_CLASSES = ("default", "beta1", "beta2", "beta3", "ram")
TEE_TYPES = ("cpu", "cpu-gpu")
GPU_VENDORS = ("nvidia", "amd")
_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
_GO_BOOL = {"1": "true", "t": "true", "T": "true", "TRUE": "true", "true": "true",
            "True": "true", "0": "false", "f": "false", "F": "false", "FALSE": "false",
            "false": "false", "False": "false"}


def parser_version(text: str) -> str:
    """The rule set ("2.0" or "2.1") for a ``version`` value (semver.ParseTolerant)."""
    parts = text.strip().removeprefix("v").split(".", 2)
    parts = [p.lstrip("0") or "0" if len(p) > 1 and p[:1] == "0" else p for p in parts]
    while len(parts) < 3:
        parts.append("0")
    match = _SEMVER.fullmatch(".".join(parts))
    if match is None:
        raise SDLError(f"SDL invalid: invalid version {text!r}")
    number = (int(match[1]), int(match[2]), int(match[3]))
    prerelease = match[4] is not None
    if number == (2, 0, 0) and not prerelease:
        return "2.0"
    if number > (2, 1, 0) or (number == (2, 1, 0) and not prerelease):
        return "2.1"
    raise SDLError(f'SDL invalid: config: unsupported version "{".".join(parts)}"')


def decode(root: Node | None) -> SDLInput:
    if root is None:
        raise SDLError("SDL invalid: no version found (empty document)")
    if root.kind != "map":
        raise fail(root, "sdl", f"SDL invalid: expected a mapping at the top level, got "
                                f"{nodes.describe(root)}")
    top = mapping(root, "sdl")
    found = dict(top)
    if "version" not in found:
        raise SDLError("SDL invalid: no version found")
    version = parser_version(string(found["version"], "version"))
    for key, value in top:
        if key not in TOP_LEVEL:
            raise fail(value, key, f"sdl: unexpected field {key}")
    strings(found.get("include"), "include")
    profiles = dict(mapping(found.get("profiles"), "profiles"))
    deployments: list[DeploymentEntry] = []
    for svc, placements in mapping(found.get("deployment"), "deployment"):
        for placement, entry in mapping(placements, f"deployment.{svc}"):
            path = f"deployment.{svc}.{placement}"
            fields = dict(mapping(entry, path))
            deployments.append(DeploymentEntry(
                service=svc, placement=placement,
                profile=string(fields.get("profile"), f"{path}.profile"),
                count=uint(fields.get("count"), f"{path}.count")))
    deployments.sort(key=lambda d: (d.service, d.placement))
    endpoints = [(name, string(dict(mapping(node, f"endpoints.{name}")).get("kind"),
                               f"endpoints.{name}.kind"))
                 for name, node in mapping(found.get("endpoints"), "endpoints")]
    reclamation = None
    if "reclamation" in found:
        fields = dict(mapping(found["reclamation"], "reclamation"))
        reclamation = string(fields.get("min_window"), "reclamation.min_window")
    return SDLInput(
        version=version,
        services=_sorted((name, _service(name, node))
                         for name, node in mapping(found.get("services"), "services")),
        compute=_sorted((name, _compute(name, node)) for name, node in
                        mapping(profiles.get("compute"), "profiles.compute")),
        placement=_sorted((name, _placement(name, node)) for name, node in
                          mapping(profiles.get("placement"), "profiles.placement")),
        deployments=tuple(deployments),
        endpoints=_sorted(endpoints),
        reclamation_min_window=reclamation,
    )


def _sorted(pairs: object) -> tuple:  # type: ignore[type-arg]
    return tuple(sorted(pairs, key=lambda p: p[0]))  # type: ignore[call-overload]


def _service(name: str, node: Node) -> Service:
    path = f"services.{name}"
    fields = dict(mapping(node, path))
    expose = nodes.sequence(fields.get("expose"), f"{path}.expose") or []
    for dep in nodes.sequence(fields.get("dependencies"), f"{path}.dependencies") or []:
        mapping(dep, f"{path}.dependencies")
    return Service(
        name=name,
        image=string(fields.get("image"), f"{path}.image"),
        command=strings(fields.get("command"), f"{path}.command"),
        args=strings(fields.get("args"), f"{path}.args"),
        env=strings(fields.get("env"), f"{path}.env"),
        expose=tuple(_expose(item, f"{path}.expose[{i}]") for i, item in enumerate(expose)),
        params=_params(fields["params"], f"{path}.params")
        if "params" in fields and not fields["params"].is_null else None,
        credentials=_credentials(fields["credentials"], f"{path}.credentials")
        if "credentials" in fields and not fields["credentials"].is_null else None,
    )


def _expose(node: Node, path: str) -> Expose:
    fields = dict(mapping(node, path))
    to = []
    for i, item in enumerate(nodes.sequence(fields.get("to"), f"{path}.to") or []):
        to_fields = dict(mapping(item, f"{path}.to[{i}]"))
        to.append(ExposeTo(service=string(to_fields.get("service"), f"{path}.to[{i}].service"),
                           is_global=nodes.boolean(to_fields.get("global"),
                                                   f"{path}.to[{i}].global"),
                           ip=string(to_fields.get("ip"), f"{path}.to[{i}].ip")))
    accept = strings(fields.get("accept"), f"{path}.accept")
    for host in accept or ():
        if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in host) or "/" in host:
            raise fail(node, f"{path}.accept", f'parse "http://{host}": invalid host name')
    http = dict(mapping(fields.get("http_options"), f"{path}.http_options"))
    hpath = f"{path}.http_options"
    return Expose(
        port=uint(fields.get("port"), f"{path}.port"),
        external_port=uint(fields.get("as"), f"{path}.as"),
        proto=string(fields.get("proto"), f"{path}.proto"),
        to=tuple(to),
        accept=accept,
        http_options=HTTPOptions(
            max_body_size=uint(http.get("max_body_size"), f"{hpath}.max_body_size"),
            read_timeout=uint(http.get("read_timeout"), f"{hpath}.read_timeout"),
            send_timeout=uint(http.get("send_timeout"), f"{hpath}.send_timeout"),
            next_tries=uint(http.get("next_tries"), f"{hpath}.next_tries"),
            next_timeout=uint(http.get("next_timeout"), f"{hpath}.next_timeout"),
            next_cases=strings(http.get("next_cases"), f"{hpath}.next_cases") or (),
            proxy_buffer_size=uint(http.get("proxy_buffer_size"), f"{hpath}.proxy_buffer_size"),
        ),
    )


def _params(node: Node, path: str) -> ServiceParams:
    fields = dict(mapping(node, path))
    storage = []
    for name, value in mapping(fields.get("storage"), f"{path}.storage"):
        vol = dict(mapping(value, f"{path}.storage.{name}"))
        storage.append(StorageParam(
            name=name, mount=string(vol.get("mount"), f"{path}.storage.{name}.mount"),
            read_only=nodes.boolean(vol.get("readOnly"), f"{path}.storage.{name}.readOnly")))
    permissions = None
    has_permissions = "permissions" in fields and not fields["permissions"].is_null
    if has_permissions:
        perm = dict(mapping(fields["permissions"], f"{path}.permissions"))
        permissions = strings(perm.get("read"), f"{path}.permissions.read")
    tee = ""
    if "tee" in fields and not fields["tee"].is_null:
        tee = string(fields["tee"], f"{path}.tee")
        if tee == "":
            raise fail(fields["tee"], f"{path}.tee", "sdl: tee type is required")
        if tee not in TEE_TYPES:
            raise fail(fields["tee"], f"{path}.tee",
                       f'sdl: unsupported tee type: "{tee}" (allowed: cpu, cpu-gpu)')
    return ServiceParams(storage=tuple(sorted(storage, key=lambda s: s.name)),
                         permissions=permissions, has_permissions=has_permissions, tee=tee)


def _credentials(node: Node, path: str) -> Credentials:
    fields = dict(mapping(node, path))
    return Credentials(**{key: string(fields.get(key), f"{path}.{key}")
                          for key in ("host", "email", "username", "password")})


def _quantity(node: Node, path: str, what: str, *, gpu_ram: bool = False) -> int:
    if node.kind != "scalar":
        raise fail(node, path, f"invalid {what}: expected a size, got {nodes.describe(node)}")
    try:
        return parse_size(node.text, memory_suffixes_only=gpu_ram)
    except ValueError as exc:
        raise fail(node, path, f"invalid {what} {node.text!r}: {exc}") from None


def _compute(name: str, node: Node) -> ComputeProfile:
    path = f"profiles.compute.{name}"
    resources_node = dict(mapping(node, path)).get("resources")
    if resources_node is None or resources_node.is_null:
        return ComputeProfile(name=name)
    path += ".resources"
    res = dict(mapping(resources_node, path))
    cpu_millis, cpu_attrs = _cpu(res["cpu"], f"{path}.cpu") if _present(res, "cpu") else (None, ())
    memory = None
    if _present(res, "memory"):
        mem = dict(mapping(res["memory"], f"{path}.memory"))
        size = mem.get("size")
        memory = _quantity(size, f"{path}.memory.size", "memory") if size is not None else 0
    storage = _storage(res["storage"], f"{path}.storage") if _present(res, "storage") else None
    gpu_units, gpu_attrs = _gpu(res["gpu"], f"{path}.gpu") if _present(res, "gpu") else (None, ())
    return ComputeProfile(name=name, cpu_millis=cpu_millis, cpu_attributes=cpu_attrs,
                          memory_bytes=memory, storage=storage, gpu_units=gpu_units,
                          gpu_attributes=gpu_attrs)


def _present(fields: dict[str, Node], key: str) -> bool:
    return key in fields and not fields[key].is_null


def _cpu(node: Node, path: str) -> tuple[int, Attributes]:
    millis, attributes = 0, []
    for key, value in mapping(node, path):
        if key == "units":
            if value.kind != "scalar":
                raise fail(value, f"{path}.units", "invalid cpu units")
            try:
                millis = parse_cpu(value.text)
            except ValueError as exc:
                raise fail(value, f"{path}.units", str(exc)) from None
        elif key == "attributes":
            for attr, attr_value in mapping(value, f"{path}.attributes"):
                if attr != "arch":
                    raise fail(attr_value, f"{path}.attributes",
                               f'unsupported cpu attribute "{attr}"')
                attributes.append(Attribute(key=attr, value=string(attr_value, path)))
        else:
            raise fail(value, path, f"sdl: unsupported field ({key}) for CPU resource")
    return millis, tuple(sorted(attributes, key=lambda a: a.key))


def _gpu(node: Node, path: str) -> tuple[int, Attributes]:
    units = 0
    attributes_found: Attributes = ()
    for key, value in mapping(node, path):
        if key == "units":
            try:
                units = parse_uint(string(value, f"{path}.units"))
            except ValueError as exc:
                raise fail(value, f"{path}.units", str(exc)) from None
        elif key == "attributes":
            if not value.is_null:
                attributes_found = _gpu_attributes(value, f"{path}.attributes")
        else:
            raise fail(value, path, f"sdl: unsupported field ({key}) for GPU resource")
    if units > 0 and not attributes_found:
        raise fail(node, path, "sdl: GPU attributes must be present if units > 0")
    return units, attributes_found


def _gpu_attributes(node: Node, path: str) -> Attributes:
    vendors: list[tuple[str, Node]] | None = None
    for key, value in mapping(node, path):
        if key != "vendor":
            raise fail(value, path, f"sdl: unsupported attribute ({key}) for GPU resource")
        if not value.is_null:
            vendors = mapping(value, f"{path}.vendor")
    if not vendors:
        raise fail(node, path, "sdl: invalid GPU attributes. at least one vendor must be set")
    result: list[Attribute] = []
    for vendor, models in vendors:
        vpath = f"{path}.vendor.{vendor}"
        if vendor not in GPU_VENDORS:
            raise fail(models, vpath, f"sdl: unsupported GPU vendor ({vendor}); "
                                      f"expected one of {', '.join(GPU_VENDORS)}")
        entries = nodes.sequence(models, vpath) or []
        for i, entry in enumerate(entries):
            fields = dict(mapping(entry, f"{vpath}[{i}]"))
            key = f"vendor/{vendor}/model/{string(fields.get('model'), f'{vpath}[{i}].model')}"
            if _present(fields, "ram"):
                ram = _quantity(fields["ram"], f"{vpath}[{i}].ram", "GPU ram", gpu_ram=True)
                key += f"/ram/{format_gi(ram)}"
            if _present(fields, "interface"):
                interface = string(fields["interface"], f"{vpath}[{i}].interface")
                if interface not in ("pcie", "sxm"):
                    raise fail(fields["interface"], f"{vpath}[{i}].interface",
                               f'sdl: invalid GPU interface {interface}. expected "pcie|sxm"')
                key += f"/interface/{interface}"
            result.append(Attribute(key=key, value="true"))
        if not entries:
            result.append(Attribute(key=f"vendor/{vendor}/model/*", value="true"))
    return tuple(sorted(result, key=lambda a: a.key))


def _storage(node: Node, path: str) -> tuple[StorageVolume, ...]:
    if node.kind == "map":
        volumes = [_volume(node, path, "default", fixed_name=True)]
    elif node.kind == "seq":
        volumes = [_volume(item, f"{path}[{i}]", "default") for i, item in enumerate(node.items)]
    else:
        raise fail(node, path, "expected a mapping or a sequence of volumes")
    names: set[str] = set()
    for volume in volumes:
        if volume.name in names:
            raise fail(node, path, "sdl: duplicated volume name")
        names.add(volume.name)
    return sort_volumes(volumes)


def _volume(node: Node, path: str, default: str, *, fixed_name: bool = False) -> StorageVolume:
    fields = dict(mapping(node, path))
    name = string(fields.get("name"), f"{path}.name")
    size = _quantity(fields["size"], f"{path}.size", "storage") if _present(fields, "size") else 0
    attributes: Attributes = ()
    if _present(fields, "attributes"):
        attributes = _storage_attributes(fields["attributes"], f"{path}.attributes")
    return StorageVolume(name=default if fixed_name or not name else name, size=size,
                         attributes=attributes)


def _storage_attributes(node: Node, path: str) -> Attributes:
    raw = {key: string(value, f"{path}.{key}") for key, value in mapping(node, path)}
    raw.setdefault("persistent", "false")
    persistent, storage_class = raw["persistent"], raw.get("class", "")
    if storage_class == "":
        if persistent == "true":
            raw["class"] = "default"
    elif storage_class == "ram":
        if persistent != "false":
            raise fail(node, path, "sdl: ram storage class cannot be persistent")
    elif persistent == "false":
        raise fail(node, path, "sdl: ephemeral storage should not set attribute class")
    for key, value in raw.items():
        if key == "persistent":
            if value not in _GO_BOOL:
                raise fail(node, path, f'sdl: invalid value for attribute "{key}". expected bool')
            raw[key] = _GO_BOOL[value]
        elif key == "class":
            if value not in STORAGE_CLASSES:
                raise fail(node, path, "sdl: invalid value for attribute class")
        else:
            raise fail(node, path, f"sdl: unsupported storage attribute: {key}")
    return tuple(Attribute(key=k, value=v) for k, v in sorted(raw.items()))


def sort_volumes(volumes: list[StorageVolume]) -> tuple[StorageVolume, ...]:
    """Go's sort.SliceStable with storage.go's (non-strict) less; insertion sort."""

    def persistent(v: StorageVolume) -> str | None:
        return next((a.value for a in v.attributes if a.key == "persistent"), None)

    def less(a: StorageVolume, b: StorageVolume) -> bool:
        if a.size != b.size:
            return a.size < b.size
        a_p, b_p = persistent(a), persistent(b)
        if (a_p is None and b_p is not None) or (a_p is not None and b_p is not None
                                                 and a_p < b_p):
            return True
        if a_p is not None and b_p is None:
            return False
        if a_p != "true":
            return True
        if b_p != "true":
            return False
        return a.name < b.name

    items = list(volumes)
    for i in range(1, len(items)):
        j = i
        while j > 0 and less(items[j], items[j - 1]):
            items[j], items[j - 1] = items[j - 1], items[j]
            j -= 1
    return tuple(items)


def _placement(name: str, node: Node) -> PlacementProfile:
    path = f"profiles.placement.{name}"
    fields = dict(mapping(node, path))
    attributes = None
    if _present(fields, "attributes"):
        pairs = [Attribute(key=k, value=string(v, f"{path}.attributes.{k}"))
                 for k, v in mapping(fields["attributes"], f"{path}.attributes")]
        attributes = tuple(sorted(pairs, key=lambda a: a.key)) or None
    signed = dict(mapping(fields.get("signedBy"), f"{path}.signedBy"))
    pricing = []
    for profile, coin in mapping(fields.get("pricing"), f"{path}.pricing"):
        pricing.append((profile, _price(coin, f"{path}.pricing.{profile}")))
    return PlacementProfile(
        name=name, attributes=attributes,
        signed_by=SignedBy(all_of=strings(signed.get("allOf"), f"{path}.signedBy.allOf"),
                           any_of=strings(signed.get("anyOf"), f"{path}.signedBy.anyOf")),
        pricing=tuple(sorted(pricing, key=lambda p: p[0])))


def _price(node: Node, path: str) -> Price:
    fields = dict(mapping(node, path))
    amount = string(fields.get("amount"), f"{path}.amount")
    denom = string(fields.get("denom"), f"{path}.denom")
    try:
        atto = parse_dec(amount)
    except ValueError as exc:
        raise fail(node, f"{path}.amount", f"invalid coin amount: {exc}") from None
    if atto == 0:
        raise fail(node, f"{path}.amount", "invalid coin amount: amount is zero")
    if atto < 0:
        raise fail(node, f"{path}.amount",
                   f'invalid: negative value not allowed: amount "{amount}" is negative')
    if not DENOM_RE.fullmatch(denom):
        raise fail(node, f"{path}.denom", f"invalid denom: {denom!r}")
    return Price(denom=denom, amount_atto=atto)
