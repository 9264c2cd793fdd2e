"""Providers and tenants in the simulation: the real ProviderService and TenantService.

Rules and invariants:
* A provider node ``p<i>`` is a full node plus ``ProviderService`` with the ``FakeExecutor``
  (its ``FakeEngine`` outlives crashes, as podman outlives a provider process) and a
  ``PluginManager`` loaded from the scenario: the pricing plugin by name, the ``static``
  GPU probe with the provider's GPUs, the plugin's table from ``providers.node``.
* GPU classes go to providers by largest remainder over their shares, then a seeded
  shuffle: exact proportions, a seed-dependent placement. ``price_spread`` s multiplies
  every number of the pricing plugin's table by one factor per provider drawn from
  U[1-s, 1+s] (seeded), kept as an exact decimal string.
* A tenant node ``t<i>`` is a full node plus ``TenantService``. Its driver waits until
  ``tenants.start``, then deploys at Poisson times (``arrival_rate`` per tenant) a template
  drawn (seeded) from ``sdl_dir``; each deploy runs in its own task under the node, so a
  crash cancels it. With ``lease_seconds`` the tenant closes the deployment after an
  exponential lifetime. Deploys that the tenant refuses up front (budget spent) are
  counted, not retried.
* Time is virtual: the services get the node's ``now_ms`` (virtual, plus its skew); worker
  threads run inline (``determinism.inline_threads``), so nothing depends on wall time.
* ``SharedMarketValidators``: the real market validators, decoding through one
  ``wire.DecodeMemo`` for all nodes (as they share the VerifyCache): each bid, order and
  decline is decoded once per process and its signed body encoded once (it is remembered
  on the shared object); every node still runs every check itself.
* ``MarketStats`` records what tenants see (order, first bid, lease, price, GPU models,
  outcome) at virtual instants, and samples provider utilisation; revenue is read from the
  ledger at the end (accrued plus withdrawn lease payments).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import trio

from p2pakash import wire
from p2pakash.config import ProviderConfig
from p2pakash.crypto import PrivateKey
from p2pakash.errors import P2PAkashError
from p2pakash.ledger import UAKT_PER_AKT, sign_tx
from p2pakash.market import ledger_market as lm
from p2pakash.market.validators import MarketValidators
from p2pakash.plugins.manager import PluginManager
from p2pakash.plugins.types import PluginConfig
from p2pakash.provider.service import ProviderService, provider_attributes, provider_capacity
from p2pakash.sim.scenario import GpuClass, ProvidersSpec, Scenario, TenantsSpec
from p2pakash.tenant import TenantService, plan

log = logging.getLogger(__name__)


class SharedMarketValidators(MarketValidators):
    """``MarketValidators`` decoding through ``memo`` (its ``decoder``), one for all nodes of
    the process: decoding is a pure function of the bytes and messages are frozen, so the
    verdicts are those of ``MarketValidators``."""

    def __init__(self, *, memo: wire.DecodeMemo, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decoder = memo


# ---------------------------------------------------------------- providers


def assign_gpus(spec: ProvidersSpec, rng: random.Random) -> list[GpuClass | None]:
    """One GPU class (or None: no GPUs) per provider index (module rules)."""
    n = spec.count
    if not spec.gpus or n == 0:
        return [None] * n
    total = sum(g.share for g in spec.gpus)
    exact = [g.share / total * n for g in spec.gpus]
    quota = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - quota[i]), i))
    for i in by_remainder[: n - sum(quota)]:
        quota[i] += 1
    out: list[GpuClass | None] = [g if g.count else None
                                  for g, q in zip(spec.gpus, quota, strict=True)
                                  for _ in range(q)]
    rng.shuffle(out)
    return out


def _scale(value: Any, factor: Fraction) -> Any:
    if isinstance(value, Mapping):
        return {k: _scale(v, factor) for k, v in value.items()}
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return value
    try:
        number = Fraction(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return value
    scaled = number * factor
    return str(round(Decimal(scaled.numerator) / Decimal(scaled.denominator), 6))


def provider_config(spec: ProvidersSpec, gpu: GpuClass | None, factor: Fraction,
                    host_uri: str) -> ProviderConfig:
    """The ``[provider]`` table of one simulated provider."""
    tables = dict(spec.node.plugin_tables)
    if spec.pricing in tables and factor != 1:
        tables[spec.pricing] = _scale(tables[spec.pricing], factor)
    if gpu is not None:
        tables["static"] = {"gpus": [{"model": gpu.model, "ram": gpu.ram,
                                      "interface": gpu.interface, "count": gpu.count}]}
    else:
        tables.pop("static", None)
    return attrs.evolve(spec.node, pricing=spec.pricing, gpu_probes=("static",),
                        executor="fake", host_uri=host_uri, plugin_tables=tables)


def registration_tx(key: PrivateKey, chain_id: str, cfg: ProviderConfig,
                    plugins: PluginManager) -> bytes:
    """The provider's own signed ``CreateProvider`` (its first tx), as ``ProviderService``
    would send it at start: the host URI, bond, and attributes from the config and the GPU
    probe; for a genesis that registers the providers."""
    capacity = provider_capacity(cfg, plugins.probe_gpus())
    msg = lm.CreateProvider(host_uri=cfg.host_uri, attributes=provider_attributes(cfg, capacity),
                            bond=cfg.bond)
    return sign_tx(key, chain_id, sequence=0, msgs=(msg,)).encode()


def plugin_manager(cfg: ProviderConfig, where: str = "providers") -> PluginManager:
    return PluginManager.load(PluginConfig.from_table(cfg.plugin_table(), source=where))


def price_factor(spec: ProvidersSpec, rng: random.Random) -> Fraction:
    if spec.price_spread <= 0:
        return Fraction(1)
    u = rng.uniform(1 - spec.price_spread, 1 + spec.price_spread)
    return Fraction(round(u * 10_000), 10_000)


# ---------------------------------------------------------------- templates


@attrs.frozen(kw_only=True)
class Template:
    name: str
    text: str
    gpus: tuple[str, ...]  # GPU models the template asks for ("a100"), for the report


def load_templates(sdl_dir: str) -> list[Template]:
    """Every ``*.yaml``/``*.yml`` of ``sdl_dir``, sorted by name, each prepared (checked)."""
    folder = Path(sdl_dir)
    if not folder.is_dir():
        raise ValueError(f"{sdl_dir}: not a folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))
    if not paths:
        raise ValueError(f"{sdl_dir}: no SDL templates (*.yaml, *.yml)")
    out = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        prepared = plan.prepare(text, source=str(path))
        models = sorted({a.key.split("/")[3] for g in prepared.groups for u in g.resources
                         for a in u.resources.gpu.attributes
                         if a.key.startswith("vendor/") and len(a.key.split("/")) >= 4})
        out.append(Template(name=path.name, text=text, gpus=tuple(models)))
    return out


def check_market(sc: Scenario) -> list[str]:
    """Market problems (``key: what``): the pricing plugin loads, templates prepare."""
    out: list[str] = []
    p = sc.providers
    if p.count:
        gpu = next((g for g in p.gpus if g.count), None)
        try:
            plugin_manager(provider_config(p, gpu, Fraction(1), "p2p://check"),
                           where="providers")
        except P2PAkashError as exc:
            out.append(f"providers.pricing: {exc}")
    t = sc.tenants
    if t.count and t.arrival_rate and t.sdl_dir:
        try:
            load_templates(t.sdl_dir)
        except (P2PAkashError, ValueError, OSError) as exc:
            out.append(f"tenants.sdl_dir: {exc}")
    return out


# ---------------------------------------------------------------- metrics


@attrs.define
class DeployRecord:
    tenant: str
    template: str
    started: float
    dseq: int = 0
    first_bid: float | None = None
    lease_at: float | None = None
    price: int = 0  # uakt per block, summed over groups
    gpus: tuple[str, ...] = ()
    provider: str = ""
    bids: int = 0
    declines: int = 0
    outcome: str = "pending"  # pending | leased | no_bids | failed | refused
    stage: str = ""

    def on_event(self, event: dict[str, Any]) -> None:
        now = trio.current_time()
        kind = event.get("event")
        if kind == "order":
            self.dseq = int(event["dseq"])
        elif kind == "bid" and self.first_bid is None:
            self.first_bid = now
        elif kind == "selected":
            self.price += int(event["price"])
            self.gpus = tuple(sorted({*self.gpus, *(str(g) for g in event.get("gpus", ()))}))
            self.provider = str(event["provider"])
        elif kind == "lease" and self.lease_at is None:
            self.lease_at = now
        elif kind == "done":
            self.bids, self.declines = int(event["bids"]), int(event["declines"])
            if event.get("ok"):
                self.outcome = "leased"
            else:
                self.stage = str(event.get("stage", ""))
                self.outcome = "no_bids" if self.stage == "no_bids" else "failed"


@attrs.define
class MarketStats:
    deploys: list[DeployRecord] = attrs.Factory(list)
    closes: int = 0
    # (t, GPUs leased, GPUs total, CPU millis leased, CPU millis total, providers up)
    utilisation: list[tuple[float, int, int, int, int, int]] = attrs.Factory(list)
    containers_killed: int = 0
    # provider name -> (samples, sum of leased GPU fraction, sum of leased CPU fraction)
    busy: dict[str, tuple[int, float, float]] = attrs.Factory(dict)

    def sample(self, now: float, providers: Mapping[str, ProviderService]) -> None:
        """Leased (not merely reserved) GPUs and CPU of the running providers."""
        gpus = gpus_total = cpu = cpu_total = 0
        for name, service in providers.items():
            engine = service.engine
            if engine is None:
                continue
            inv = engine.inventory
            g = c = 0
            for key, alloc in inv.held.items():
                if isinstance(key, lm.LeaseID):
                    g += len(alloc.gpus)
                    c += alloc.cpu_millis
            total_g, total_c = len(inv.capacity.gpus), inv.capacity.cpu_millis
            gpus, gpus_total, cpu, cpu_total = (gpus + g, gpus_total + total_g, cpu + c,
                                                cpu_total + total_c)
            n, sg, sc = self.busy.get(name, (0, 0.0, 0.0))
            self.busy[name] = (n + 1, sg + (g / total_g if total_g else 0.0),
                               sc + (c / total_c if total_c else 0.0))
        self.utilisation.append((now, gpus, gpus_total, cpu, cpu_total, len(providers)))


# ---------------------------------------------------------------- tenants


async def tenant_driver(name: str, tenant: TenantService, spec: TenantsSpec,
                        templates: list[Template], rng: random.Random,
                        stats: MarketStats) -> None:
    """Deploy at Poisson times until cancelled (module rules)."""
    if spec.arrival_rate <= 0 or not templates:
        return
    deposit = round(spec.deposit * UAKT_PER_AKT)
    await trio.sleep_until(max(trio.current_time(), spec.start))
    async with trio.open_nursery() as nursery:
        while True:
            await trio.sleep(rng.expovariate(spec.arrival_rate))
            template = templates[rng.randrange(len(templates))]
            lifetime = (rng.expovariate(1.0 / spec.lease_seconds) if spec.lease_seconds
                        else 0.0)
            record = DeployRecord(tenant=name, template=template.name,
                                  started=trio.current_time())
            stats.deploys.append(record)
            nursery.start_soon(_deploy, tenant, spec, template, deposit, lifetime, record,
                               stats)


async def _deploy(tenant: TenantService, spec: TenantsSpec, template: Template, deposit: int,
                  lifetime: float, record: DeployRecord, stats: MarketStats) -> None:
    try:
        done = await tenant.deploy(template.text, source=template.name, deposit=deposit,
                                   wait_s=spec.wait, emit=record.on_event)
    except P2PAkashError as exc:  # refused up front: the budget is spent, ...
        record.outcome, record.stage = "refused", str(exc)[:200]
        return
    if not done.get("ok") or not lifetime:
        return
    await trio.sleep(lifetime)
    close = lm.CloseDeployment(deployment=lm.DeploymentID(owner=tenant.address,
                                                          dseq=record.dseq))
    try:
        await tenant.submit((close,))
    except P2PAkashError as exc:
        log.info("tenant %s: closing deployment %d failed: %s", tenant.address, record.dseq,
                 exc)
        return
    stats.closes += 1


def revenue(store: Any, height: int, providers: Mapping[str, str]
            ) -> dict[str, dict[str, int]]:
    """Per provider name: leases won, still active, and uakt earned (withdrawn + accrued;
    an active lease's deployment is settled to ``height`` in a preview, nothing written)."""
    out: dict[str, dict[str, int]] = {}
    for name, address in providers.items():
        leases = lm.provider_leases(store, address)
        earned = 0
        for rec in leases:
            payment = rec.payment
            if rec.state is lm.LeaseState.ACTIVE:
                dep = rec.id.deployment
                active = [r.id for r in lm.deployment_leases(store, dep)
                          if r.state is lm.LeaseState.ACTIVE]
                settled = lm.preview(store, dep, height)
                if settled is not None and rec.id in active:
                    payment = settled.payments[active.index(rec.id)]
            earned += payment.withdrawn + payment.balance
        out[name] = {"leases": len(leases),
                     "active": sum(1 for r in leases if r.state is lm.LeaseState.ACTIVE),
                     "earned_uakt": earned}
    return out


__all__ = ["DeployRecord", "MarketStats", "Template", "assign_gpus", "check_market",
           "load_templates", "plugin_manager", "price_factor", "provider_config", "revenue",
           "tenant_driver"]
