"""Placement matching: Go filepath.Match globs, attributes, signedBy, storage, GPU, offers."""

from __future__ import annotations

import attrs
import pytest

from p2pakash.market import matching as m
from p2pakash.market.orders import DeclineReason, OfferedUnit
from p2pakash.market.sdl.groups import Requirements
from p2pakash.market.sdl.resources import GPU, Attribute, SignedBy
from tests.market.helpers_market import (
    CPU_PROVIDER_ATTRS,
    GPU_PROVIDER_ATTRS,
    SDL_TEXT,
    key,
    order,
    sdl,
)


def A(k: str, v: str = "true") -> Attribute:
    return Attribute(key=k, value=v)


# Expected values are Go's filepath.Match on Linux.
@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("region", "region", True),
    ("region", "regions", False),
    ("reg*", "region", True),
    ("*", "", True),
    ("*", "a/b", False),
    ("a/*", "a/b", True),
    ("a/*/c", "a/b/c", True),
    ("vendor/nvidia/model/*", "vendor/nvidia/model/a100", True),
    ("vendor/nvidia/model/*", "vendor/nvidia/model/a100/ram/80Gi", False),
    ("vendor/nvidia/model/*/ram/80Gi", "vendor/nvidia/model/h100/ram/80Gi", True),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("[a-c]x", "bx", True),
    ("[a-c]x", "dx", False),
    ("[^a-c]x", "dx", True),
    ("[^a]x", "/x", True),  # Go lets a class match the separator
    ("[!a]", "b", False),  # '!' is not negation in Go
    ("[]a]", "a", False),  # bad pattern
    ("[a", "a", False),  # bad pattern
    ("a\\*", "a*", True),
    ("a\\*", "ab", False),
    ("a\\", "a", False),  # bad pattern
    ("[z-a]", "m", False),  # bad range
    ("a.b", "axb", False),  # no regex leaks
])
def test_glob_is_go_filepath_match(pattern: str, name: str, expected: bool) -> None:
    assert m.glob_match(pattern, name) is expected


def test_attribute_subset_globs_keys_and_compares_values() -> None:
    have = (A("region", "us-west"), A("tier", "community"))
    assert m.attributes_subset((A("region", "us-west"),), have)
    assert m.attributes_subset((A("reg*", "us-west"),), have)
    assert not m.attributes_subset((A("region", "us-*"),), have)  # values are exact
    assert not m.attributes_subset((A("region", "us-west"), A("gpu", "yes")), have)
    assert m.attributes_subset((), have)
    assert m.attributes_any((A("x"), A("tier", "community")), have)
    assert not m.attributes_any((), have)


def test_capabilities_grouping() -> None:
    attrs_ = (A("capabilities/storage/1/class", "beta3"), A("capabilities/storage/1/persistent"),
              A("capabilities/storage/2/class", "ram"), A("capabilities/storage/x"),
              A("capabilities/gpu/vendor/nvidia/model/a100"), A("capabilities/gpu/x"))
    assert m.capabilities_groups(attrs_, "storage") == [
        (A("class", "beta3"), A("persistent")), (A("class", "ram"),)]
    assert m.capabilities_map(attrs_, "gpu") == (A("vendor/nvidia/model/a100"),)


def _req(attributes: tuple[Attribute, ...] = (A("region", "us-west"),), *,
         all_of: tuple[str, ...] | None = None,
         any_of: tuple[str, ...] | None = None) -> Requirements:
    return Requirements(signed_by=SignedBy(all_of=all_of, any_of=any_of), attributes=attributes)


def test_placement_attributes() -> None:
    assert m.match_placement(_req(), GPU_PROVIDER_ATTRS, {}) is None
    miss = m.match_placement(_req(), CPU_PROVIDER_ATTRS, {})
    assert miss is not None and miss.reason is DeclineReason.ATTRIBUTE_MISMATCH
    assert "region=us-west" in miss.text


def test_signed_by_all_of_and_any_of() -> None:
    a1, a2, a3 = (key(i).address for i in (30, 31, 32))
    signed = (A("region", "us-west"), A("tier", "1"))
    audits: dict[str, tuple[Attribute, ...]] = {a1: signed, a2: (A("tier", "1"),)}
    assert m.match_placement(_req(all_of=(a1,)), GPU_PROVIDER_ATTRS, audits) is None
    miss = m.match_placement(_req(all_of=(a1, a2)), GPU_PROVIDER_ATTRS, audits)
    assert miss is not None and miss.reason is DeclineReason.SIGNED_BY_MISSING
    assert a2 in miss.text
    assert m.match_placement(_req(any_of=(a3, a1)), GPU_PROVIDER_ATTRS, audits) is None
    assert m.match_placement(_req(any_of=(a2, a3)), GPU_PROVIDER_ATTRS, audits) is not None
    assert m.match_placement(_req(all_of=(a1,), any_of=(a2,)), GPU_PROVIDER_ATTRS,
                             audits) is not None
    assert m.match_placement(_req(any_of=(a1,)), GPU_PROVIDER_ATTRS, {}) is not None


def _group(text: str = SDL_TEXT) -> m.GroupLike:
    return order(key(10), text=text).body.groups[0]


def test_storage_class_and_persistence_must_be_offered() -> None:
    group = _group()
    assert m.match_resources(group, GPU_PROVIDER_ATTRS) is None
    beta2 = tuple(A(a.key, "beta2") if a.key.endswith("class") else a for a in GPU_PROVIDER_ATTRS)
    miss = m.match_resources(group, beta2)
    assert miss is not None and miss.reason is DeclineReason.STORAGE_MISMATCH
    assert "'data'" in miss.text
    not_persistent = tuple(a for a in GPU_PROVIDER_ATTRS if not a.key.endswith("persistent"))
    assert m.match_resources(group, not_persistent) is not None
    # a volume without attributes (the default one) needs nothing
    plain = SDL_TEXT.replace("attributes: {persistent: true, class: beta3}", "")
    plain = plain.replace("    params:\n      storage:\n        data: {mount: /data}\n", "")
    assert m.match_resources(_group(plain), (A("region", "us-west"),
                                             *[a for a in GPU_PROVIDER_ATTRS if "gpu" in a.key]
                                             )) is None


def test_gpu_models_and_wildcards() -> None:
    group = _group()  # a100 or h100
    assert m.match_resources(group, GPU_PROVIDER_ATTRS) is None
    other = tuple(A("capabilities/gpu/vendor/nvidia/model/t4") if "gpu" in a.key else a
                  for a in GPU_PROVIDER_ATTRS)
    miss = m.match_resources(group, other)
    assert miss is not None and miss.reason is DeclineReason.GPU_MODEL_UNAVAILABLE
    assert "vendor/nvidia/model/a100" in miss.text
    wildcard = SDL_TEXT.replace("                - model: a100\n                - model: h100\n",
                                "                -\n")
    wildcard = wildcard.replace("nvidia:\n                -\n", "nvidia:\n")
    wild_group = _group(wildcard)
    keys = [a.key for a in wild_group.resources[0].resources.gpu.attributes]
    assert keys == ["vendor/nvidia/model/*"]
    assert m.match_resources(wild_group, other) is None
    with_ram = SDL_TEXT.replace("- model: h100", "- {model: h100, ram: 80Gi}")
    assert m.match_resources(_group(with_ram), other) is not None
    ram_provider = (*GPU_PROVIDER_ATTRS, A("capabilities/gpu/vendor/nvidia/model/h100/ram/80Gi"))
    assert m.match_resources(_group(with_ram), ram_provider) is None


def test_concrete_gpu_picks_a_provider_model() -> None:
    wanted = GPU(units=2, attributes=(A("vendor/nvidia/model/*"),))
    provider = (A("capabilities/gpu/vendor/nvidia/model/h100"),
                A("capabilities/gpu/vendor/nvidia/model/a100"))
    got = m.concrete_gpu(wanted, provider)
    assert got == GPU(units=2, attributes=(A("vendor/nvidia/model/a100"),))  # sorted first
    assert m.concrete_gpu(GPU(units=1, attributes=(A("vendor/nvidia/model/t4"),)),
                          provider) is None
    assert m.concrete_gpu(GPU(), provider) == GPU()


def test_match_group_reports_the_first_problem() -> None:
    group = _group()
    assert m.match_group(group, GPU_PROVIDER_ATTRS, {}) is None
    miss = m.match_group(group, CPU_PROVIDER_ATTRS, {})
    assert miss is not None and miss.reason is DeclineReason.ATTRIBUTE_MISMATCH
    spec = sdl().groups()[0]  # the SDL GroupSpec works as well as the OrderGroup
    assert m.match_group(spec, GPU_PROVIDER_ATTRS, {}) is None


def _offer(group: m.GroupLike) -> list[OfferedUnit]:
    found = m.offer_for(group, GPU_PROVIDER_ATTRS)
    assert found is not None
    return [OfferedUnit(resources=r, count=c) for r, c in found]


def test_offer_must_cover_the_group_exactly() -> None:
    group = _group()
    offer = _offer(group)
    assert m.check_offer(group, offer) is None
    assert "count" in (m.check_offer(group, [attrs.evolve(offer[0], count=1)]) or "")
    assert "lacks resource units [1]" in (m.check_offer(group, []) or "")
    assert "names twice" in (m.check_offer(group, offer * 2) or "")
    smaller = attrs.evolve(offer[0], resources=attrs.evolve(offer[0].resources, cpu_millis=1000))
    assert "differ" in (m.check_offer(group, [smaller]) or "")
    t4 = attrs.evolve(offer[0].resources, gpu=GPU(units=1, attributes=(
        A("vendor/nvidia/model/t4"),)))
    assert "t4" in (m.check_offer(group, [attrs.evolve(offer[0], resources=t4)]) or "")
    vague = attrs.evolve(offer[0].resources, gpu=GPU(units=1))
    assert "concrete" in (m.check_offer(group, [attrs.evolve(offer[0], resources=vague)]) or "")


def test_offer_for_fails_without_the_gpu() -> None:
    assert m.offer_for(_group(), CPU_PROVIDER_ATTRS) is None
