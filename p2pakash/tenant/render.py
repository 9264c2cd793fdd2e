"""JSON views of the tenant's on-chain deployments and leases (pure reads of the store).

Rules: amounts are integer uakt; escrow and lease balances are shown as of ``height`` (a
settlement preview: nothing is written), so ``escrow.balance`` is what is left now and
``accrued`` what the provider could withdraw now. Leases are named ``DSEQ.GSEQ.OSEQ``.
"""

from __future__ import annotations

from typing import Any

from p2pakash.ledger.state import Store
from p2pakash.market import escrow
from p2pakash.market import ledger_market as lm
from p2pakash.market.chain_types import DeploymentRec, LeaseRec, LeaseState
from p2pakash.market.escrow import EscrowAccount
from p2pakash.market.orders import DeploymentID
from p2pakash.tenant.plan import lease_ref


def lease_json(rec: LeaseRec, accrued: int | None = None) -> dict[str, Any]:
    lid = rec.id
    return {"lease": lease_ref(lid), "owner": lid.owner, "dseq": lid.dseq, "gseq": lid.gseq,
            "oseq": lid.oseq, "provider": lid.provider, "state": rec.state.name.lower(),
            "price": rec.price, "created_at": rec.created_at, "closed_on": rec.closed_on,
            "reason": rec.reason.name.lower(), "reason_code": int(rec.reason),
            "accrued": rec.payment.balance if accrued is None else accrued,
            "withdrawn": rec.payment.withdrawn}


def _settled(store: Store, dep: DeploymentRec, height: int
             ) -> tuple[EscrowAccount, list[dict[str, Any]]]:
    """``dep``'s escrow account and all its leases as JSON, settled as of ``height`` (one
    scan of the leases, one settlement)."""
    leases = lm.deployment_leases(store, dep.id)
    active = [r for r in leases if r.state is LeaseState.ACTIVE]
    result = escrow.settle(dep.escrow, [r.payment for r in active], height)
    accrued = {r.id: p.balance for r, p in zip(active, result.payments, strict=True)}
    return result.account, [lease_json(r, accrued.get(r.id)) for r in leases]


def deployment_json(store: Store, dep: DeploymentRec, height: int) -> dict[str, Any]:
    account, leases = _settled(store, dep, height)
    return {"dseq": dep.id.dseq, "owner": dep.id.owner, "state": dep.state.name.lower(),
            "created_at": dep.created_at, "closed_at": dep.closed_at,
            "manifest_hash": dep.manifest_hash.hex(),
            "escrow": {"balance": account.balance, "deposited": account.deposited,
                       "transferred": account.transferred, "settled_at": account.settled_at,
                       "state": account.state.name.lower()},
            "leases": leases}


def owner_leases(store: Store, owner: str, height: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for dep in lm.owner_deployments(store, owner):
        out.extend(_settled(store, dep, height)[1])
    return out


def find_lease(store: Store, owner: str, dseq: int, gseq: int, oseq: int) -> LeaseRec | None:
    for rec in lm.deployment_leases(store, DeploymentID(owner=owner, dseq=dseq)):
        if rec.id.gseq == gseq and rec.id.oseq == oseq:
            return rec
    return None
