"""Placement matching as Akash does it; shared by the chain and the provider's bid engine.

Rules (chain-sdk ``types/attributes/v1/attribute.go``, ``deployment/v1beta4/groupspec.go``):
* ``glob_match`` is Go's ``filepath.Match`` with ``/`` as separator: ``*`` and ``?`` never
  match ``/`` (a class ``[...]``/``[^...]`` may, as in Go), ``\\`` escapes; a malformed
  pattern matches nothing. A required attribute is satisfied by a provider attribute when
  the required *key* globs the provider key and the values are equal (``SubsetOf``).
* Placement: every required attribute must be satisfied by the provider's own attributes;
  with ``signedBy``, each ``allOf`` auditor and at least one ``anyOf`` auditor must have
  signed attributes satisfying all of them (``GroupSpec.MatchRequirements``).
* Storage: a volume with attributes (``class``, ``persistent``) must be a subset of one
  provider group ``capabilities/storage/<n>/<key>``; volumes without attributes match.
* GPU: units > 0 with attributes need *any* requested key (``vendor/<v>/model/<m>[/ram/..]
  [/interface/..]``, wildcards allowed) to glob some provider ``capabilities/gpu/<rest>``
  key with an equal value (``AnyIN``). ``concrete_gpu`` picks that provider key, so a bid
  names the model the tenant will get.
* A bid's offer must cover each order unit exactly once (same id, count, CPU, memory,
  storage sizes and endpoints; Akash checks only id and count) and its GPU keys must be
  concrete provider keys the requested keys glob.
Everything here is a pure function; results are deterministic (sorted iteration).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs

from p2pakash.market.orders import DeclineReason
from p2pakash.market.sdl.groups import Requirements
from p2pakash.market.sdl.resources import GPU, Attribute, Resources

Attrs = Sequence[Attribute]


class UnitLike(Protocol):
    @property
    def resources(self) -> Resources: ...

    @property
    def count(self) -> int: ...


class GroupLike(Protocol):
    """An SDL ``GroupSpec`` or an order's ``OrderGroup``."""

    @property
    def requirements(self) -> Requirements: ...

    @property
    def resources(self) -> Sequence[UnitLike]: ...


@attrs.frozen(kw_only=True)
class Mismatch:
    reason: DeclineReason
    text: str


# ---------------------------------------------------------------- globs


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str] | None:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            if i + 1 >= n:
                return None
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            cls, i = _char_class(pattern, i + 1)
            if cls is None:
                return None
            out.append(cls)
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _char_class(pattern: str, i: int) -> tuple[str | None, int]:
    """Translate a Go class starting after ``[``; returns (regex, index after ``]``)."""
    n = len(pattern)
    negate = i < n and pattern[i] == "^"
    i += negate
    ranges: list[str] = []
    first = True
    while True:
        if i >= n:
            return None, i
        if pattern[i] == "]" and not first:
            break
        first = False
        lo, i = _class_char(pattern, i)
        if lo is None:
            return None, i
        hi = lo
        if i < n and pattern[i] == "-":
            upper, i = _class_char(pattern, i + 1)
            if upper is None or upper < lo:
                return None, i
            hi = upper
        ranges.append(re.escape(lo) + ("-" + re.escape(hi) if hi != lo else ""))
    body = "".join(ranges)
    # As in Go, a class (negated or not) may match the separator; only * and ? may not.
    return (f"[^{body}]" if negate else f"[{body}]"), i + 1


def _class_char(pattern: str, i: int) -> tuple[str | None, int]:
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        return None, i
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            return None, i
    return pattern[i], i + 1


def glob_match(pattern: str, name: str) -> bool:
    """Go ``filepath.Match(pattern, name)`` on a ``/``-separated system (error -> False)."""
    compiled = _compile(pattern)
    return compiled is not None and compiled.fullmatch(name) is not None


def attribute_satisfied(required: Attribute, have: Attribute) -> bool:
    return glob_match(required.key, have.key) and required.value == have.value


def attributes_subset(required: Attrs, have: Attrs) -> bool:
    """Akash ``AttributesSubsetOf``: each required attribute is satisfied by some of ``have``."""
    return all(any(attribute_satisfied(r, h) for h in have) for r in required)


def attributes_any(required: Attrs, have: Attrs) -> bool:
    """Akash ``AttributesAnyOf``: some required attribute is satisfied by some of ``have``."""
    return any(attribute_satisfied(r, h) for r in required for h in have)


# ---------------------------------------------------------------- capabilities


def capabilities_groups(provider: Attrs, prefix: str) -> list[tuple[Attribute, ...]]:
    """``GetCapabilitiesGroup``: ``capabilities/<prefix>/<n>/<key>`` grouped by ``<n>``."""
    groups: dict[str, list[Attribute]] = {}
    for a in provider:
        if not a.key.startswith("capabilities/" + prefix):
            continue
        tokens = a.key[len("capabilities/"):].split("/")
        if len(tokens) != 3:
            continue
        groups.setdefault(tokens[1], []).append(Attribute(key=tokens[2], value=a.value))
    return [tuple(groups[name]) for name in sorted(groups)]


def capabilities_map(provider: Attrs, prefix: str) -> tuple[Attribute, ...]:
    """``GetCapabilitiesMap``: ``capabilities/<prefix>/<rest>`` as ``<rest>`` (>= 2 parts)."""
    out = []
    for a in provider:
        if not a.key.startswith("capabilities/" + prefix):
            continue
        tokens = a.key[len("capabilities/"):].split("/")
        if len(tokens) >= 3:
            out.append(Attribute(key="/".join(tokens[1:]), value=a.value))
    return tuple(out)


# ---------------------------------------------------------------- groups vs providers


def match_placement(req: Requirements, provider: Attrs,
                    audits: Mapping[str, Attrs]) -> Mismatch | None:
    """Placement attributes and ``signedBy`` against a provider and its auditors' records."""
    wanted = req.attributes or ()
    if not attributes_subset(wanted, provider):
        missing = [f"{a.key}={a.value}" for a in wanted
                   if not any(attribute_satisfied(a, h) for h in provider)]
        return Mismatch(reason=DeclineReason.ATTRIBUTE_MISMATCH,
                        text=f"provider lacks placement attributes {', '.join(missing)}")
    all_of = req.signed_by.all_of or ()
    any_of = req.signed_by.any_of or ()
    for auditor in all_of:
        if auditor not in audits or not attributes_subset(wanted, audits[auditor]):
            return Mismatch(reason=DeclineReason.SIGNED_BY_MISSING,
                            text=f"attributes not signed by auditor {auditor} (allOf)")
    if any_of and not any(a in audits and attributes_subset(wanted, audits[a]) for a in any_of):
        return Mismatch(reason=DeclineReason.SIGNED_BY_MISSING,
                        text=f"attributes not signed by any of {', '.join(any_of)} (anyOf)")
    return None


def match_resources(group: GroupLike, provider: Attrs) -> Mismatch | None:
    """Storage classes and GPU models against the provider's capabilities."""
    storage = capabilities_groups(provider, "storage")
    gpus = capabilities_map(provider, "gpu")
    for unit in group.resources:
        res = unit.resources
        for volume in res.storage:
            if volume.attributes and not any(attributes_subset(volume.attributes, g)
                                             for g in storage):
                wanted = ", ".join(f"{a.key}={a.value}" for a in volume.attributes)
                return Mismatch(reason=DeclineReason.STORAGE_MISMATCH,
                                text=f"no storage class for volume {volume.name!r} ({wanted})")
        if res.gpu.units > 0 and res.gpu.attributes and not attributes_any(
                res.gpu.attributes, gpus):
            wanted = ", ".join(a.key for a in res.gpu.attributes)
            return Mismatch(reason=DeclineReason.GPU_MODEL_UNAVAILABLE,
                            text=f"no GPU matching {wanted}")
    return None


def match_group(group: GroupLike, provider: Attrs,
                audits: Mapping[str, Attrs]) -> Mismatch | None:
    """Everything a provider's attributes decide about a group; None when it may bid."""
    return match_placement(group.requirements, provider, audits) or match_resources(
        group, provider)


def concrete_gpu(gpu: GPU, provider: Attrs) -> GPU | None:
    """The GPU request rewritten to the first provider GPU key (sorted) it globs, or None."""
    if gpu.units == 0 or not gpu.attributes:
        return gpu
    for cap in sorted(capabilities_map(provider, "gpu"), key=lambda a: a.key):
        if any(attribute_satisfied(r, cap) for r in gpu.attributes):
            return GPU(units=gpu.units, attributes=(Attribute(key=cap.key, value=cap.value),))
    return None


# ---------------------------------------------------------------- offers


def _shape(res: Resources) -> tuple[object, ...]:
    return (res.cpu_millis, res.memory_bytes, tuple((v.size, v.attributes) for v in res.storage),
            res.endpoints, res.cpu_attributes, res.gpu.units)


def check_offer(group: GroupLike, offer: Sequence[UnitLike]) -> str | None:
    """Why ``offer`` does not answer ``group`` (None when it does)."""
    wanted = {u.resources.id: u for u in group.resources}
    seen: set[int] = set()
    for item in offer:
        rid = item.resources.id
        unit = wanted.get(rid)
        if unit is None or rid in seen:
            return f"offer names resource unit {rid} which the group lacks or names twice"
        seen.add(rid)
        if item.count != unit.count:
            return f"unit {rid}: offer count {item.count} != order count {unit.count}"
        if _shape(item.resources) != _shape(unit.resources):
            return f"unit {rid}: offered resources differ from the order's"
        gpu = item.resources.gpu
        for have in gpu.attributes:
            if not any(attribute_satisfied(r, have) for r in unit.resources.gpu.attributes):
                return f"unit {rid}: offered GPU {have.key} does not match the request"
        if gpu.units and unit.resources.gpu.attributes and not gpu.attributes:
            return f"unit {rid}: offer must name the concrete GPU model"
    missing = sorted(set(wanted) - seen)
    if missing:
        return f"offer lacks resource units {missing}"
    return None


def offer_for(group: GroupLike, provider: Attrs) -> tuple[tuple[Resources, int], ...] | None:
    """(resources, count) per unit with GPUs made concrete; None if a GPU is unavailable."""
    out = []
    for unit in group.resources:
        gpu = concrete_gpu(unit.resources.gpu, provider)
        if gpu is None:
            return None
        out.append((attrs.evolve(unit.resources, gpu=gpu), unit.count))
    return tuple(out)
