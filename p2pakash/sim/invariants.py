"""Invariants checked continuously during a simulation, on every committed block.

Rules and invariants (each has the name a violation carries):
* ``safety``: no two different blocks committed at one height, across all nodes (twins
  included).
* ``app-hash``: every node's ledger reports the same app hash after applying a height.
* ``supply``: the sum of all account balances equals the ledger's supply, and supply ==
  genesis supply - burned + minted.
* ``escrow``: no escrow or payment balance is negative, and the market escrow module's
  balance equals the sum of deployment escrow balances plus accrued lease payments.
* ``order-leased-once``: no order (owner, dseq, gseq, oseq) has leases with two providers.
* ``lease-price``: every successful CreateLease in a block has bid price <= the group's
  max price.
* ``liveness-after-heal``: after a partition heals, some node commits a new height within
  ``resume_within`` virtual seconds (checked by the runner's monitor through ``liveness``).
* State checks (supply, escrow, leases) run once per height, on the first node that commits
  it: all nodes agree on the app hash, so one copy of the state stands for all.
* The first violation is kept with the seed and the virtual time; the runner stops the run.
"""

from __future__ import annotations

import collections

import attrs

from p2pakash import wire
from p2pakash.chain import ChainService
from p2pakash.consensus.types import Block
from p2pakash.errors import DecodeError
from p2pakash.ledger import BlockResult, Tx
from p2pakash.ledger.bank import balance
from p2pakash.ledger.state import P_ACC, AccountRec
from p2pakash.market.ledger_market import ESCROW, CreateLease, DeploymentRec, LeaseRec
from p2pakash.market.ledger_market import P as MARKET  # the market's key prefix


@attrs.frozen(kw_only=True)
class Violation:
    invariant: str
    detail: str
    node: str
    height: int
    virtual_time: float
    seed: int

    def line(self) -> str:
        return (f"invariant {self.invariant!r} violated at virtual time "
                f"{self.virtual_time:.3f} s (seed {self.seed}, node {self.node}, height "
                f"{self.height}): {self.detail}")


class Checker:
    def __init__(self, *, seed: int, genesis_supply: int, state_checks: bool = True) -> None:
        self.seed = seed
        self.genesis_supply = genesis_supply
        self.state_checks = state_checks
        self.blocks: dict[int, tuple[bytes, str]] = {}
        self.app_hashes: dict[int, tuple[bytes, str]] = {}
        self.violations: list[Violation] = []
        self.checks = collections.Counter[str]()

    @property
    def failed(self) -> bool:
        return bool(self.violations)

    def _fail(self, invariant: str, detail: str, node: str, height: int, now: float) -> None:
        self.violations.append(Violation(invariant=invariant, detail=detail, node=node,
                                         height=height, virtual_time=now, seed=self.seed))

    def on_commit(self, node: str, chain: ChainService, block: Block, result: BlockResult,
                  now: float) -> None:
        h = block.height
        digest = block.hash()
        self.checks["safety"] += 1
        first = self.blocks.setdefault(h, (digest, node))
        if first[0] != digest:
            self._fail("safety", f"{node} committed block {digest.hex()[:16]} at height {h} "
                       f"but {first[1]} committed {first[0].hex()[:16]}", node, h, now)
            return
        self.checks["app-hash"] += 1
        known = self.app_hashes.setdefault(h, (result.app_hash, node))
        if known[0] != result.app_hash:
            self._fail("app-hash", f"{node} has app hash {result.app_hash.hex()[:16]} after "
                       f"height {h}, {known[1]} has {known[0].hex()[:16]}", node, h, now)
            return
        if first[1] == node and self.state_checks:
            self._check_block_leases(node, block, result, now)
            if not self.failed:
                self._check_state(node, chain, h, now)

    def liveness(self, *, healed_at: float, last_commit_at: float, resume_within: float,
                 now: float, height: int) -> None:
        if now - healed_at > resume_within and last_commit_at < healed_at:
            self._fail("liveness-after-heal", f"no block committed within {resume_within:g} s "
                       f"after the partition healed at {healed_at:.3f} s", "*", height, now)

    # ------------------------------------------------------------ state

    def _check_block_leases(self, node: str, block: Block, result: BlockResult,
                            now: float) -> None:
        for raw, res in zip(block.txs, result.tx_results, strict=False):
            if not res.ok:
                continue
            try:
                tx = wire.decode(raw, Tx)
            except DecodeError:
                continue
            for msg in tx.body.msgs:
                if not isinstance(msg, CreateLease):
                    continue
                self.checks["lease-price"] += 1
                gseq = msg.bid.body.order.gseq
                limit = msg.order.group(gseq).max_price
                if msg.bid.body.price > limit:
                    self._fail("lease-price", f"lease for {msg.bid.body.order} at price "
                               f"{msg.bid.body.price} above the max {limit}", node,
                               block.height, now)

    def _check_state(self, node: str, chain: ChainService, h: int, now: float) -> None:
        ledger = chain.ledger
        store = ledger.store
        self.checks["supply"] += 1
        total = sum(rec.balance for _, rec in store.scan(P_ACC, AccountRec))
        supply = ledger.supply()
        expected = self.genesis_supply - ledger.burned() + ledger.minted()
        if total != supply or supply != expected:
            self._fail("supply", f"balances sum to {total}, supply is {supply}, genesis - "
                       f"burned + minted is {expected}", node, h, now)
            return
        self.checks["escrow"] += 1
        escrowed = 0
        for _, dep in store.scan(MARKET + b"dep/", DeploymentRec):
            if dep.escrow.balance < 0:
                self._fail("escrow", f"deployment {dep.id} has a negative escrow balance "
                           f"{dep.escrow.balance}", node, h, now)
                return
            escrowed += dep.escrow.balance
        orders: dict[tuple[str, int, int, int], str] = {}
        for _, lease in store.scan(MARKET + b"lease/", LeaseRec):
            if lease.payment.balance < 0:
                self._fail("escrow", f"lease {lease.id} has a negative payment balance",
                           node, h, now)
                return
            escrowed += lease.payment.balance
            self.checks["order-leased-once"] += 1
            oid = (lease.id.owner, lease.id.dseq, lease.id.gseq, lease.id.oseq)
            other = orders.setdefault(oid, lease.id.provider)
            if other != lease.id.provider:
                self._fail("order-leased-once", f"order {oid} leased to {other} and to "
                           f"{lease.id.provider}", node, h, now)
                return
        held = balance(store, ESCROW)
        if held != escrowed:
            self._fail("escrow", f"the escrow module holds {held} uakt but deployments and "
                       f"leases account for {escrowed}", node, h, now)


__all__ = ["Checker", "Violation"]
