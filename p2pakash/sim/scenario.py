"""Simulation scenarios: a TOML file structured into frozen attrs classes, strictly.

Rules and invariants:
* Structuring uses the node config's strict cattrs converter (``p2pakash.config``): no
  silent coercion, unknown keys refused, every problem one line ``FILE: key.path: what``.
* Everything is checked before a run starts: node names in partitions and faults exist
  (validators ``v0..``, full nodes ``f0..``, providers ``p0..``, tenants ``t0..``, twins
  ``<validator>-twin``), times are within the run, the region matrix is square and matches
  the regions, fault kinds are known and target the right role. Market checks (the
  pricing plugin loads, every SDL template prepares) are ``market.check_market``'s.
  Problems raise ``ConfigFileError`` naming the key.
* Times are virtual seconds from the start of the run; amounts of AKT are whole AKT.
* ``tenants.sdl_dir`` is relative to the scenario file; loading a file makes it absolute
  (so a report's embedded scenario replays from anywhere).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs

from p2pakash.config import (
    DEFAULT_TOPIC_DEGREE,
    ConfigFileError,
    ProviderConfig,
    _degrees,
    _Invalid,
    _problems,
    _strict_converter,
)
from p2pakash.consensus.core import TimeoutParams
from p2pakash.ledger.params import UAKT_PER_AKT

FAULT_KINDS = ("crash", "equivocate", "withhold", "clock_skew", "twin", "containers_die")
VALIDATOR_ONLY = ("equivocate", "withhold", "twin")
PROVIDER_ONLY = ("containers_die",)


def _positive(inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise _Invalid(f"must be positive, got {value!r}", attribute.name)


def _non_negative(inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        raise _Invalid(f"must not be negative, got {value!r}", attribute.name)


def _fraction(inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise _Invalid(f"must be within 0..1, got {value!r}", attribute.name)


@attrs.frozen(kw_only=True)
class ChainSpec:
    chain_id: str = "p2pakash-sim"
    propose: float = attrs.field(default=0.3, validator=_positive)
    propose_delta: float = attrs.field(default=0.05, validator=_non_negative)
    prevote: float = attrs.field(default=0.1, validator=_positive)
    prevote_delta: float = attrs.field(default=0.05, validator=_non_negative)
    precommit: float = attrs.field(default=0.1, validator=_positive)
    precommit_delta: float = attrs.field(default=0.05, validator=_non_negative)
    commit: float = attrs.field(default=1.0, validator=_non_negative)
    status_interval: float = attrs.field(default=2.0, validator=_positive)  # Status to peers
    catchup_delay: float = attrs.field(default=2.0, validator=_positive)  # 1 behind -> sync
    stall_interval: float = attrs.field(default=1.0, validator=_positive)  # driver resends

    def timeouts(self) -> TimeoutParams:
        return TimeoutParams(propose=self.propose, propose_delta=self.propose_delta,
                             prevote=self.prevote, prevote_delta=self.prevote_delta,
                             precommit=self.precommit, precommit_delta=self.precommit_delta,
                             commit=self.commit)


@attrs.frozen(kw_only=True)
class ValidatorsSpec:
    count: int = attrs.field(default=4, validator=_positive)
    stake: int = attrs.field(default=100, validator=_positive)  # AKT bonded at genesis
    balance: int = attrs.field(default=1_000, validator=_non_negative)  # AKT


@attrs.frozen(kw_only=True)
class FullNodesSpec:
    count: int = attrs.field(default=0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class NetworkSpec:
    latency_ms: float = attrs.field(default=5.0, validator=_non_negative)  # one way
    jitter: float = attrs.field(default=0.0, validator=_fraction)  # +- fraction, uniform
    loss: float = attrs.field(default=0.0, validator=_fraction)
    bandwidth: int = attrs.field(default=0, validator=_non_negative)  # bytes/s; 0: unlimited
    regions: tuple[str, ...] = ()  # nodes are assigned round robin by index
    region_latency_ms: tuple[tuple[float, ...], ...] = ()
    peers_per_node: int = attrs.field(default=6, validator=_positive)  # persistent peers
    max_outbound: int = attrs.field(default=8, validator=_positive)
    max_inbound: int = attrs.field(default=40, validator=_positive)
    resolution_ms: float = attrs.field(default=1.0, validator=_non_negative)  # 0: exact
    # a topic's own gossip mesh degree [d_lo, d, d_hi], as the node's [gossip] topic_degree
    topic_degree: dict[str, tuple[int, ...]] = attrs.field(
        factory=lambda: dict(DEFAULT_TOPIC_DEGREE), validator=_degrees)


@attrs.frozen(kw_only=True)
class WorkloadSpec:
    accounts: int = attrs.field(default=8, validator=_non_negative)  # funded users u0..
    balance: int = attrs.field(default=1_000, validator=_non_negative)  # AKT each
    transfer_rate: float = attrs.field(default=0.0, validator=_non_negative)  # txs / s
    transfer_amount: int = attrs.field(default=1_000, validator=_positive)  # uakt


@attrs.frozen(kw_only=True)
class GpuClass:
    """One kind of GPU server: ``count`` GPUs of ``model`` on a ``share`` of providers."""

    model: str = ""  # Akash model key ("a100"); "" = a provider without GPUs
    ram: str = "24Gi"
    interface: str = "pcie"
    count: int = attrs.field(default=1, validator=_non_negative)  # GPUs per provider
    share: float = attrs.field(default=1.0, validator=_positive)  # relative weight


@attrs.frozen(kw_only=True)
class ProvidersSpec:
    count: int = attrs.field(default=0, validator=_non_negative)
    pricing: str = "linear"  # pricing plugin by name (overrides node.pricing)
    balance: int = attrs.field(default=100, validator=_non_negative)  # AKT each
    price_spread: float = attrs.field(default=0.0, validator=_fraction)  # rates x U[1-s,1+s]
    gpus: tuple[GpuClass, ...] = ()
    node: ProviderConfig = attrs.field(factory=ProviderConfig)  # a node's [provider] table
    genesis: bool = False  # registered in the genesis (their own CreateProvider genesis txs)


@attrs.frozen(kw_only=True)
class TenantsSpec:
    count: int = attrs.field(default=0, validator=_non_negative)
    sdl_dir: str = ""  # SDL templates (*.yaml, *.yml), relative to the scenario file
    arrival_rate: float = attrs.field(default=0.0, validator=_non_negative)  # per tenant, /s
    budget: int = attrs.field(default=100, validator=_non_negative)  # AKT each
    deposit: float = attrs.field(default=0.5, validator=_positive)  # AKT per deployment
    wait: float = attrs.field(default=10.0, validator=_positive)  # bid window, seconds
    lease_seconds: float = attrs.field(default=0.0, validator=_non_negative)  # mean; 0: keep
    start: float = attrs.field(default=5.0, validator=_non_negative)  # first arrivals after


@attrs.frozen(kw_only=True)
class InvariantsSpec:
    resume_within: float = attrs.field(default=30.0, validator=_positive)  # after a heal
    state_checks: bool = True  # supply and market scans on the first node per height


@attrs.frozen(kw_only=True)
class PartitionSpec:
    at: float = attrs.field(validator=_non_negative)
    heal: float = attrs.field(default=0.0, validator=_non_negative)  # 0: never
    groups: tuple[tuple[str, ...], ...] = ()


@attrs.frozen(kw_only=True)
class FaultSpec:
    kind: str
    node: str
    at: float = attrs.field(default=0.0, validator=_non_negative)
    until: float = attrs.field(default=0.0, validator=_non_negative)  # 0: for good
    skew_ms: int = 0  # clock_skew: added to the node's clock


@attrs.frozen(kw_only=True)
class Scenario:
    name: str
    purpose: str = ""
    seed: int = 1
    duration: float = attrs.field(default=600.0, validator=_positive)  # virtual seconds
    wall_limit: float = attrs.field(default=0.0, validator=_non_negative)  # 0: none
    chain: ChainSpec = attrs.field(factory=ChainSpec)
    validators: ValidatorsSpec = attrs.field(factory=ValidatorsSpec)
    full_nodes: FullNodesSpec = attrs.field(factory=FullNodesSpec)
    network: NetworkSpec = attrs.field(factory=NetworkSpec)
    workload: WorkloadSpec = attrs.field(factory=WorkloadSpec)
    providers: ProvidersSpec = attrs.field(factory=ProvidersSpec)
    tenants: TenantsSpec = attrs.field(factory=TenantsSpec)
    invariants: InvariantsSpec = attrs.field(factory=InvariantsSpec)
    partitions: tuple[PartitionSpec, ...] = ()
    faults: tuple[FaultSpec, ...] = ()

    def validator_names(self) -> list[str]:
        return [f"v{i}" for i in range(self.validators.count)]

    def full_node_names(self) -> list[str]:
        return [f"f{i}" for i in range(self.full_nodes.count)]

    def provider_names(self) -> list[str]:
        return [f"p{i}" for i in range(self.providers.count)]

    def tenant_names(self) -> list[str]:
        return [f"t{i}" for i in range(self.tenants.count)]

    def twin_names(self) -> list[str]:
        return [f"{f.node}-twin" for f in self.faults if f.kind == "twin"]

    def node_names(self) -> list[str]:
        return (self.validator_names() + self.full_node_names() + self.provider_names()
                + self.tenant_names() + self.twin_names())

    def not_simulated(self) -> list[str]:
        """Sections the scenario asks for that the simulator does not run (none now)."""
        return []


def check(sc: Scenario) -> list[str]:
    """Cross-field problems (``key.path: what``), empty when the scenario can run."""
    out: list[str] = []
    net = sc.network
    if net.regions:
        n = len(net.regions)
        if len(set(net.regions)) != n:
            out.append("network.regions: region names must be unique")
        if len(net.region_latency_ms) != n or any(len(r) != n for r in net.region_latency_ms):
            out.append(f"network.region_latency_ms: must be a {n}x{n} matrix (one row and "
                       "column per region)")
        elif any(x < 0 for r in net.region_latency_ms for x in r):
            out.append("network.region_latency_ms: latencies must not be negative")
    elif net.region_latency_ms:
        out.append("network.region_latency_ms: given without network.regions")
    validators = set(sc.validator_names())
    plain = set(sc.node_names())  # twins included: they can crash or have a skewed clock
    twins: set[str] = set()
    for i, f in enumerate(sc.faults):
        where = f"faults[{i}]"
        if f.kind not in FAULT_KINDS:
            out.append(f"{where}.kind: unknown fault {f.kind!r} (one of {', '.join(FAULT_KINDS)})")
            continue
        allowed = (validators if f.kind in VALIDATOR_ONLY else
                   set(sc.provider_names()) if f.kind in PROVIDER_ONLY else plain)
        if f.node not in allowed:
            role = ("validator" if f.kind in VALIDATOR_ONLY else
                    "provider" if f.kind in PROVIDER_ONLY else "node")
            out.append(f"{where}.node: no {role} named {f.node!r}")
        if f.at > sc.duration:
            out.append(f"{where}.at: {f.at} is after the end of the run ({sc.duration})")
        if f.until and f.until <= f.at:
            out.append(f"{where}.until: must be after at ({f.at}), got {f.until}")
        if f.kind == "clock_skew" and f.skew_ms == 0:
            out.append(f"{where}.skew_ms: a clock_skew fault needs a non-zero skew_ms")
        if f.kind == "twin":
            if f.node in twins:
                out.append(f"{where}.node: {f.node!r} already has a twin")
            twins.add(f.node)
    names = set(sc.node_names())
    for i, p in enumerate(sc.partitions):
        where = f"partitions[{i}]"
        if p.heal and p.heal <= p.at:
            out.append(f"{where}.heal: must be after at ({p.at}), got {p.heal}")
        if len(p.groups) < 1:
            out.append(f"{where}.groups: at least one group of node names")
        seen: set[str] = set()
        for g, group in enumerate(p.groups):
            for name in group:
                if name not in names:
                    out.append(f"{where}.groups[{g}]: no node named {name!r}")
                elif name in seen:
                    out.append(f"{where}.groups[{g}]: {name!r} is in two groups")
                seen.add(name)
    if sc.providers.count and not sc.providers.pricing:
        out.append("providers.pricing: a pricing plugin name is required")
    for k, gpu in enumerate(sc.providers.gpus):
        if gpu.count and not gpu.model:
            out.append(f"providers.gpus[{k}].model: a GPU model is required when count > 0")
    ps = sc.providers
    if ps.genesis and not ps.node.register:
        out.append("providers.genesis: the providers do not register (providers.node.register"
                   " = false)")
    if ps.genesis and ps.count and ps.balance * UAKT_PER_AKT < ps.node.bond:
        out.append(f"providers.genesis: a balance of {ps.balance} AKT does not cover the bond "
                   f"({ps.node.bond} uakt)")
    t = sc.tenants
    if t.count and t.arrival_rate and not t.sdl_dir:
        out.append("tenants.sdl_dir: a folder of SDL templates is required when tenants "
                   "deploy (arrival_rate > 0)")
    if t.count and t.arrival_rate and not sc.providers.count:
        out.append("tenants.arrival_rate: tenants deploy but there are no providers")
    return out


_CONVERTER = _strict_converter()


def structure_scenario(data: dict[str, Any], *, source: str, base: Path | None = None
                       ) -> Scenario:
    """Structure and check ``data``; a relative ``tenants.sdl_dir`` is made absolute
    against ``base`` (the scenario file's folder) when given."""
    tenants = data.get("tenants")
    if base is not None and isinstance(tenants, dict) and isinstance(tenants.get("sdl_dir"),
                                                                     str):
        sdl_dir = tenants["sdl_dir"]
        if sdl_dir and not Path(sdl_dir).is_absolute():
            data = {**data, "tenants": {**tenants, "sdl_dir": str((base / sdl_dir).resolve())}}
    try:
        sc = _CONVERTER.structure(data, Scenario)
    except Exception as exc:
        raise ConfigFileError([f"{source}: {line}" for line in _problems(exc, "")]) from None
    problems = check(sc)
    if not problems:
        from p2pakash.sim.market import check_market  # the market imports this module

        problems = check_market(sc)
    if problems:
        raise ConfigFileError([f"{source}: {line}" for line in problems])
    return sc


def scenario_data(sc: Scenario) -> dict[str, Any]:
    """The scenario as plain data that ``structure_scenario`` reads back (reports embed it)."""
    data: dict[str, Any] = _CONVERTER.unstructure(sc)
    return data


def load_scenario(path: Path) -> Scenario:
    """Read and check one scenario file; ConfigFileError names the file and the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigFileError([f"{path}: scenario file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError([f"{path}: invalid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigFileError([f"{path}: invalid TOML: not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigFileError([f"{path}: cannot read: {exc.strerror}"]) from None
    return structure_scenario(data, source=str(path), base=path.parent)


__all__ = ["ChainSpec", "FaultSpec", "FullNodesSpec", "GpuClass", "InvariantsSpec",
           "NetworkSpec",
           "PartitionSpec", "ProvidersSpec", "Scenario", "TenantsSpec", "ValidatorsSpec",
           "WorkloadSpec", "check", "load_scenario", "scenario_data", "structure_scenario"]
