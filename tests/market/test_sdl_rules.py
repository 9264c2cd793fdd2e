"""Akash SDL rules one by one: group building, endpoints, TEE, limits, YAML edge cases."""

from __future__ import annotations

import copy
from typing import Any

import attrs
import pytest
import yaml

from p2pakash.errors import SDLError
from p2pakash.market.sdl import (
    EndpointKind,
    GroupSpec,
    ResourceUnit,
    groups_json,
    manifest_json,
    parse_sdl,
)

BASE: dict[str, Any] = {
    "version": "2.0",
    "services": {
        "web": {"image": "nginx", "expose": [{"port": 80, "as": 80, "to": [{"global": True}]}]},
    },
    "profiles": {
        "compute": {"web": {"resources": {"cpu": {"units": 0.5}, "memory": {"size": "512Mi"},
                                          "storage": {"size": "1Gi"}}}},
        "placement": {"dc": {"attributes": {"region": "us-west"},
                             "pricing": {"web": {"denom": "uakt", "amount": 100}}}},
    },
    "deployment": {"web": {"dc": {"profile": "web", "count": 1}}},
}


def doc(edit: Any = None) -> str:
    data = copy.deepcopy(BASE)
    if edit is not None:
        edit(data)
    return yaml.safe_dump(data, sort_keys=False)


def two_services(data: dict[str, Any]) -> None:
    data["services"]["api"] = {"image": "api", "expose": [{"port": 8080, "to": [{"global": True}]}]}
    data["deployment"]["api"] = {"dc": {"profile": "web", "count": 2}}


def rejects(text: str, needle: str) -> str:
    with pytest.raises(SDLError) as info:
        parse_sdl(text, source="t.yaml")
    message = str(info.value)
    assert message.startswith("t.yaml: ")
    assert needle in message, message
    return message


def test_minimal_sdl_builds_one_group() -> None:
    sdl = parse_sdl(doc())
    (group,) = sdl.groups()
    assert group.name == "dc"
    assert [(a.key, a.value) for a in group.requirements.attributes or ()] == [("region",
                                                                               "us-west")]
    (unit,) = group.resources
    assert unit.resources.cpu_millis == 500
    assert unit.resources.memory_bytes == 512 * 1024**2
    assert unit.count == 1 and unit.price.whole == 100
    assert [e.kind for e in unit.resources.endpoints] == [EndpointKind.SHARED_HTTP]


def test_v20_keeps_one_unit_per_service_v21_merges_same_profile() -> None:
    v20 = parse_sdl(doc(two_services)).groups()[0]
    assert [(u.resources.id, u.count) for u in v20.resources] == [(1, 2), (2, 1)]

    def v21(data: dict[str, Any]) -> None:
        two_services(data)
        data["version"] = "2.1"

    sdl = parse_sdl(doc(v21))
    (unit,) = sdl.groups()[0].resources
    assert unit.count == 3
    assert sorted(e.kind for e in unit.resources.endpoints) == [EndpointKind.SHARED_HTTP,
                                                                 EndpointKind.RANDOM_PORT]
    services = sdl.manifest()[0].services
    assert [s.name for s in services] == ["api", "web"]
    assert {s.resources.id for s in services} == {1}
    assert [len(s.resources.endpoints) for s in services] == [1, 1]


def test_ip_endpoint_sequence_numbers_follow_go() -> None:
    def ips(data: dict[str, Any]) -> None:
        two_services(data)
        data["endpoints"] = {"ip-b": {"kind": "ip"}, "ip-a": {"kind": "ip"}}
        data["services"]["web"]["expose"][0]["to"] = [{"global": True, "ip": "ip-b"}]
        data["services"]["api"]["expose"][0]["to"] = [{"global": True, "ip": "ip-a"},
                                                      {"service": "web"}]

    sdl = parse_sdl(doc(ips))
    exposes = {s.name: s.expose for s in sdl.manifest()[0].services}
    # Go numbers every non-plain-global target, the internal one ("") included: "" -> 1.
    assert [(x.ip, x.endpoint_sequence_number) for x in exposes["api"]] == [("ip-a", 2),
                                                                             ("", 0)]
    assert exposes["web"][0].endpoint_sequence_number == 3
    leased = [e for u in sdl.groups()[0].resources for e in u.resources.endpoints
              if e.kind == EndpointKind.LEASED_IP]
    assert sorted(e.sequence_number for e in leased) == [2, 3]


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda d: d["endpoints"].update({"Bad": {"kind": "ip"}}), "is not a valid name"),
    (lambda d: d["endpoints"].update({"spare": {"kind": "ip"}}), "declared but never used"),
    (lambda d: d["endpoints"]["myip"].update({"kind": "dns"}), 'unknown kind "dns"'),
    (lambda d: d["services"]["web"]["expose"][0]["to"][0].update({"ip": "nope"}),
     'no endpoint named "nope" exists'),
])
def test_endpoint_rules(edit: Any, needle: str) -> None:
    def setup(data: dict[str, Any]) -> None:
        data["endpoints"] = {"myip": {"kind": "ip"}}
        data["services"]["web"]["expose"][0]["to"] = [{"global": True, "ip": "myip"}]
        edit(data)

    rejects(doc(setup), needle)


def test_tee_is_projected_and_checked() -> None:
    def tee(data: dict[str, Any]) -> None:
        data["version"] = "2.1"
        data["services"]["web"]["params"] = {"tee": "cpu"}

    group = parse_sdl(doc(tee)).groups()[0]
    assert ("tee/type", "cpu") in [(a.key, a.value) for a in group.requirements.attributes or ()]

    def mixed(data: dict[str, Any]) -> None:
        tee(data)
        two_services(data)
        data["services"]["api"]["params"] = {"tee": "cpu-gpu"}
        data["profiles"]["compute"]["gpu"] = copy.deepcopy(data["profiles"]["compute"]["web"])
        data["profiles"]["compute"]["gpu"]["resources"]["gpu"] = {
            "units": 1, "attributes": {"vendor": {"nvidia": [{"model": "h100"}]}}}
        data["profiles"]["placement"]["dc"]["pricing"]["gpu"] = {"denom": "uakt", "amount": 9}
        data["deployment"]["api"]["dc"]["profile"] = "gpu"

    rejects(doc(mixed), "conflicting tee types in the same placement group")
    rejects(doc(lambda d: (tee(d), d["services"]["web"]["params"].update({"tee": "cpu-gpu"}))),
            "tee type requires gpu resources")
    rejects(doc(lambda d: (tee(d), d["services"]["web"]["params"].update({"tee": "sgx"}))),
            "unsupported tee type")


def gpu(attributes: Any, units: int = 1) -> Any:
    def edit(data: dict[str, Any]) -> None:
        data["profiles"]["compute"]["web"]["resources"]["gpu"] = {"units": units,
                                                                  "attributes": attributes}
    return edit


def test_gpu_attribute_keys() -> None:
    nvidia = {"vendor": {"nvidia": [{"model": "a100", "ram": "80Gi", "interface": "sxm"},
                                    {"model": "h100"}]}}
    unit = parse_sdl(doc(gpu(nvidia))).groups()[0].resources[0]
    assert [a.key for a in unit.resources.gpu.attributes] == [
        "vendor/nvidia/model/a100/ram/80Gi/interface/sxm", "vendor/nvidia/model/h100"]
    any_model = parse_sdl(doc(gpu({"vendor": {"nvidia": None}}))).groups()[0].resources[0]
    assert [a.key for a in any_model.resources.gpu.attributes] == ["vendor/nvidia/model/*"]
    amd = parse_sdl(doc(gpu({"vendor": {"amd": [{"model": "mi300x"}]}}))).groups()[0]
    assert [a.key for a in amd.resources[0].resources.gpu.attributes] == [
        "vendor/amd/model/mi300x"]
    rejects(doc(gpu({"vendor": {"intel": None}})), "unsupported GPU vendor (intel)")
    rejects(doc(gpu({"vendor": {"nvidia": [{"model": "a100", "interface": "nvlink"}]}})),
            "invalid GPU interface nvlink")
    rejects(doc(gpu({"vendor": {"nvidia": None}, "extra": 1})), "unsupported attribute (extra)")
    rejects(doc(gpu({"vendor": {"nvidia": None}}, units=0)), "attributes cannot be present")
    rejects(doc(gpu({"vendor": {"nvidia": None}}, units=25)), "invalid unit GPU")


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda d: d.update({"extra": 1}), "sdl: unexpected field extra"),
    (lambda d: d.update({"version": "1.0"}), "config: unsupported version"),
    (lambda d: d.update({"version": "banana"}), "invalid version"),
    (lambda d: d.pop("version"), "SDL invalid: no version found"),
    (lambda d: d["deployment"]["web"]["dc"].update({"profile": "x"}),
     "web.dc: no compute profile named x"),
    (lambda d: d["deployment"]["web"].update({"nowhere": {"profile": "web", "count": 1}}),
     "web.nowhere: no placement profile named nowhere"),
    (lambda d: d["services"]["web"].update({"image": ""}), 'service "web" has empty image name'),
    (lambda d: d["services"]["web"].update({"env": ["1BAD=x"]}), 'invalid name "1BAD"'),
    (lambda d: d["services"]["web"]["expose"][0].update({"proto": "sctp"}),
     "unknown service protocol"),
    (lambda d: d["services"]["web"]["expose"][0].update({"http_options": {"next_cases": [
        "off", "error"]}}), "if 'off' is specified, no other cases may be specified"),
    (lambda d: d["services"]["web"]["expose"][0].update({"http_options": {"read_timeout":
                                                                          60001}}),
     "read timeout cannot be greater than 60000 ms"),
    (lambda d: d["services"]["web"]["expose"][0].update({"accept": ["Bad_Host"]}),
     'has invalid hostname "Bad_Host"'),
    (lambda d: d["services"]["web"]["expose"].append(
        {"port": 81, "accept": ["a.com"], "to": [{"global": True}]}) or
     d["services"]["web"]["expose"][0].update({"accept": ["a.com"]}),
     'hostname "a.com" is duplicated'),
    (lambda d: d["services"]["web"]["expose"][0]["to"][0].update({"global": False}),
     "zero global services"),
    (lambda d: d["profiles"]["compute"]["web"]["resources"]["cpu"].update({"units": "5m"}),
     "invalid unit CPU"),
    (lambda d: d["profiles"]["compute"]["web"]["resources"]["cpu"].update({"arch": "x"}),
     "unsupported field (arch) for CPU resource"),
    (lambda d: d["profiles"]["compute"]["web"]["resources"].update({"storage": {
        "size": "1Gi", "attributes": {"class": "beta2"}}}),
     "ephemeral storage should not set attribute class"),
    (lambda d: d["profiles"]["compute"]["web"]["resources"].update({"storage": [
        {"size": "1Gi"}, {"size": "2Gi"}]}), "sdl: duplicated volume name"),
    (lambda d: d["profiles"]["compute"]["web"]["resources"].update({"storage": {
        "size": "1Gi", "attributes": {"persistent": True, "speed": "fast"}}}),
     "unsupported storage attribute: speed"),
    (lambda d: d["profiles"]["placement"]["dc"]["pricing"]["web"].update({"amount": 0}),
     "invalid coin amount: amount is zero"),
    (lambda d: d["profiles"]["placement"]["dc"]["pricing"]["web"].update({"amount": -5}),
     "negative value not allowed"),
    (lambda d: d["profiles"]["placement"]["dc"]["pricing"]["web"].update({"amount": 10**8}),
     "invalid unit price"),
    (lambda d: (two_services(d), d["profiles"]["compute"].update(
        {"api": d["profiles"]["compute"]["web"]}),
        d["profiles"]["placement"]["dc"]["pricing"].update(
        {"api": {"denom": "uact", "amount": 1}}),
        d["deployment"]["api"]["dc"].update({"profile": "api"})),
     "multi-denomination group"),
    (lambda d: d["profiles"]["placement"].update({"other": {"pricing": {"web": {
        "denom": "uact", "amount": 1}}}}) or d["deployment"]["web"].update(
        {"other": {"profile": "web", "count": 1}}), "inconsistent group denomination"),
])
def test_rule_messages(edit: Any, needle: str) -> None:
    rejects(doc(edit), needle)


def test_storage_volumes_are_ordered_like_go() -> None:
    def volumes(data: dict[str, Any]) -> None:
        data["profiles"]["compute"]["web"]["resources"]["storage"] = [
            {"name": "data", "size": "10Gi", "attributes": {"persistent": True}},
            {"size": "1Gi"},
            {"name": "cache", "size": "10Gi", "attributes": {"class": "ram"}},
        ]
        data["services"]["web"]["params"] = {"storage": {
            "data": {"mount": "/data"}, "cache": {"mount": "/cache"}}}

    unit = parse_sdl(doc(volumes)).groups()[0].resources[0]
    storage = unit.resources.storage
    assert [v.name for v in storage] == ["default", "cache", "data"]
    assert [(a.key, a.value) for a in storage[2].attributes] == [("class", "default"),
                                                                 ("persistent", "true")]


def test_yaml_edge_cases() -> None:
    rejects("", "no version found")
    rejects("- a\n- b\n", "expected a mapping at the top level")
    rejects("version: '2.0'\nversion: '2.1'\n", "already defined at line 1")
    rejects("version: [\n", "yaml: line")
    rejects("a: &a [*a]\n", "refers to itself")
    rejects("[" * 100_000, "nesting deeper")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    rejects(bomb, "document too large")
    rejects("\x00\x01", "not a text file")
    rejects(doc() + "---\nnot: read\n" + "x" * (1024 * 1024), "too large")


def test_yaml_scalars_reach_string_fields_as_written() -> None:
    text = doc(lambda d: d["services"]["web"].update({"args": ["yes", 3, 1.50, "on"]}))
    text = text.replace("- 1.5\n", "- 1.50\n").replace("- 'yes'", "- yes").replace(
        "- 'on'", "- on")
    (service,) = parse_sdl(text).manifest()[0].services
    assert service.args == ("yes", "3", "1.50", "on")


def test_merge_keys_and_first_document_only() -> None:
    # Unknown keys inside profiles are ignored, as Go's decoder ignores them.
    parse_sdl(doc().replace("profiles:\n", "profiles:\n  defaults: &p {}\n", 1))
    anchors = """
version: "2.0"
services:
  web:
    image: nginx
    expose: [{port: 80, as: 80, to: [{global: true}]}]
profiles:
  compute:
    web:
      resources: &res
        cpu: {units: 1}
        memory: {size: 1Gi}
        storage: {size: 1Gi}
    big:
      resources:
        <<: *res
        cpu: {units: 4}
  placement:
    dc:
      pricing:
        web: {denom: uakt, amount: 1}
        big: {denom: uakt, amount: 1}
deployment:
  web:
    dc: {profile: big, count: 1}
---
this: [is not read
"""
    unit = parse_sdl(anchors).groups()[0].resources[0]
    assert unit.resources.cpu_millis == 4000 and unit.resources.memory_bytes == 1024**3


def test_lenient_sizes_in_an_sdl() -> None:
    edit = lambda d: d["profiles"]["compute"]["web"]["resources"].update(  # noqa: E731
        {"memory": {"size": "2GB"}, "storage": {"size": "4gi"}})
    resources = parse_sdl(doc(edit)).groups()[0].resources[0].resources
    assert resources.memory_bytes == 2 * 10**9
    assert resources.storage[0].size == 4 * 1024**3


def test_values_are_frozen_plain_and_hashable() -> None:
    sdl = parse_sdl(doc(two_services))
    group = sdl.groups()[0]
    assert isinstance(group, GroupSpec) and isinstance(group.resources[0], ResourceUnit)
    hash(group)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        group.name = "x"  # type: ignore[misc]

    def plain(value: Any) -> None:
        if attrs.has(type(value)):
            for field in attrs.fields(type(value)):
                plain(getattr(value, field.name))
        elif isinstance(value, tuple):
            for item in value:
                plain(item)
        else:
            assert value is None or isinstance(value, int | str), value

    plain(group)
    assert parse_sdl(doc(two_services)).groups() == sdl.groups()
    rebuilt = GroupSpec(name=group.name, requirements=group.requirements,
                        resources=group.resources)
    assert rebuilt == group
    assert groups_json(sdl)[0]["resources"][0]["price"]["amount"] == "100.000000000000000000"
    assert manifest_json(sdl)[0]["services"][0]["name"] == "api"
