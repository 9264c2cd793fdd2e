"""JSON views of the tenant's on-chain deployments and leases (pure reads of the store).

Rules: amounts are integer uakt; escrow and lease balances are shown as of ``height`` (a
settlement preview: nothing is written), so ``escrow.balance`` is what is left now and
``accrued`` what the provider could withdraw now. Leases are named ``DSEQ.GSEQ.OSEQ``.
"""

from __future__ import annotations

from typing import Any

from p2pakash.ledger.state import Store
from p2pakash.market import ledger_market as lm
from p2pakash.market.chain_types import DeploymentRec, LeaseRec, LeaseState
from p2pakash.market.orders import DeploymentID
from p2pakash.tenant.plan import lease_ref


def _accrued(store: Store, dep: DeploymentRec, height: int) -> dict[str, int]:
    """Lease key -> accrued payment balance at ``height`` (active leases of ``dep``)."""
    settlement = lm.preview(store, dep.id, height)
    active = [r for r in lm.deployment_leases(store, dep.id) if r.state is LeaseState.ACTIVE]
    if settlement is None:
        return {}
    return {str(r.id): p.balance for r, p in zip(active, settlement.payments, strict=True)}


def lease_json(rec: LeaseRec, accrued: int | None = None) -> dict[str, Any]:
    lid = rec.id
    return {"lease": lease_ref(lid), "owner": lid.owner, "dseq": lid.dseq, "gseq": lid.gseq,
            "oseq": lid.oseq, "provider": lid.provider, "state": rec.state.name.lower(),
            "price": rec.price, "created_at": rec.created_at, "closed_on": rec.closed_on,
            "reason": rec.reason.name.lower(), "reason_code": int(rec.reason),
            "accrued": rec.payment.balance if accrued is None else accrued,
            "withdrawn": rec.payment.withdrawn}


def deployment_json(store: Store, dep: DeploymentRec, height: int) -> dict[str, Any]:
    settlement = lm.preview(store, dep.id, height)
    account = dep.escrow if settlement is None else settlement.account
    accrued = _accrued(store, dep, height)
    leases = lm.deployment_leases(store, dep.id)
    return {"dseq": dep.id.dseq, "owner": dep.id.owner, "state": dep.state.name.lower(),
            "created_at": dep.created_at, "closed_at": dep.closed_at,
            "manifest_hash": dep.manifest_hash.hex(),
            "escrow": {"balance": account.balance, "deposited": account.deposited,
                       "transferred": account.transferred, "settled_at": account.settled_at,
                       "state": account.state.name.lower()},
            "leases": [lease_json(r, accrued.get(str(r.id))) for r in leases]}


def owner_leases(store: Store, owner: str, height: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for dep in lm.owner_deployments(store, owner):
        accrued = _accrued(store, dep, height)
        out.extend(lease_json(r, accrued.get(str(r.id)))
                   for r in lm.deployment_leases(store, dep.id))
    return out


def find_lease(store: Store, owner: str, dseq: int, gseq: int, oseq: int) -> LeaseRec | None:
    for rec in lm.deployment_leases(store, DeploymentID(owner=owner, dseq=dseq)):
        if rec.id.gseq == gseq and rec.id.oseq == oseq:
            return rec
    return None
