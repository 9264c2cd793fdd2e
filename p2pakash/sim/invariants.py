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
* The state checks are incremental: the checker keeps a mirror of what they sum (account
  balances, deployment escrow and lease payment balances, the provider of each leased
  order) and moves it forward by the block's own writes (``Ledger.last_writes``), so a
  height costs O(its writes), not O(state). When the writes of exactly the next height
  are not at hand (the node applied more blocks before its subscriber ran, a restart) and
  every ``rescan_every`` heights, the mirror is rebuilt by a full scan of the state.
* The first violation is kept with the seed and the virtual time; the runner stops the run.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import attrs

from p2pakash.chain import ChainService
from p2pakash.consensus.types import Block
from p2pakash.errors import DecodeError
from p2pakash.ledger import BlockResult, decode_tx
from p2pakash.ledger.bank import balance
from p2pakash.ledger.state import P_ACC, AccountRec, Store, decode_record
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
    def __init__(self, *, seed: int, genesis_supply: int, state_checks: bool = True,
                 rescan_every: int = 64) -> None:
        self.seed = seed
        self.rescan_every = rescan_every
        self._mirror: Mirror | None = None
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
                tx = decode_tx(raw)  # memoised: the nodes decoded it already
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
        at, writes = ledger.last_writes
        if (self._mirror is None or self._mirror.height != h - 1 or at != h
                or ledger.height() != h or h % self.rescan_every == 0):
            self._mirror = Mirror.scan(ledger.store, ledger.height())
        else:
            self._mirror.apply(h, writes)
        m = self._mirror
        self.checks["supply"] += 1
        supply = ledger.supply()
        expected = self.genesis_supply - ledger.burned() + ledger.minted()
        if m.total != supply or supply != expected:
            self._fail("supply", f"balances sum to {m.total}, supply is {supply}, genesis - "
                       f"burned + minted is {expected}", node, h, now)
            return
        self.checks["escrow"] += 1
        if m.negative_deps:
            dep = m.negative_deps[min(m.negative_deps)]
            self._fail("escrow", f"deployment {dep.id} has a negative escrow balance "
                       f"{dep.escrow.balance}", node, h, now)
            return
        if m.negative_leases:
            lease = m.negative_leases[min(m.negative_leases)]
            self._fail("escrow", f"lease {lease.id} has a negative payment balance",
                       node, h, now)
            return
        self.checks["order-leased-once"] += len(m.leases)
        if m.shared_orders:
            oid = min(m.shared_orders)
            first, second = sorted(m.orders[oid])[:2]
            self._fail("order-leased-once", f"order {oid} leased to {first} and to "
                       f"{second}", node, h, now)
            return
        held = balance(ledger.store, ESCROW)
        escrowed = m.escrowed + m.paid
        if held != escrowed:
            self._fail("escrow", f"the escrow module holds {held} uakt but deployments and "
                       f"leases account for {escrowed}", node, h, now)


OrderID = tuple[str, int, int, int]
DEP_PREFIX, LEASE_PREFIX = MARKET + b"dep/", MARKET + b"lease/"


class Mirror:
    """What the state checks sum, at ``height``, updated by a block's writes."""

    def __init__(self, height: int) -> None:
        self.height = height
        self.balances: dict[bytes, int] = {}
        self.total = 0
        self.deps: dict[bytes, int] = {}  # key -> escrow balance
        self.escrowed = 0
        self.negative_deps: dict[bytes, DeploymentRec] = {}
        self.leases: dict[bytes, tuple[int, OrderID, str]] = {}  # key -> (payment, order, prov)
        self.paid = 0
        self.negative_leases: dict[bytes, LeaseRec] = {}
        self.orders: dict[OrderID, collections.Counter[str]] = {}  # order -> providers' leases
        self.shared_orders: set[OrderID] = set()  # orders leased to two providers or more

    @classmethod
    def scan(cls, store: Store, height: int) -> Mirror:
        m = cls(height)
        for key, raw in store.kv.iterate(P_ACC):
            m._set(key, raw)
        for key, raw in store.kv.iterate(DEP_PREFIX):
            m._set(key, raw)
        for key, raw in store.kv.iterate(LEASE_PREFIX):
            m._set(key, raw)
        return m

    def apply(self, height: int, writes: Sequence[tuple[bytes, bytes | None]]) -> None:
        for key, raw in writes:
            if key.startswith((P_ACC, DEP_PREFIX, LEASE_PREFIX)):
                self._drop(key)
                if raw is not None:
                    self._set(key, raw)
        self.height = height

    def _set(self, key: bytes, raw: bytes) -> None:
        if key.startswith(P_ACC):
            amount = decode_record(raw, AccountRec).balance
            self.balances[key] = amount
            self.total += amount
        elif key.startswith(DEP_PREFIX):
            dep = decode_record(raw, DeploymentRec)
            self.deps[key] = dep.escrow.balance
            self.escrowed += dep.escrow.balance
            if dep.escrow.balance < 0:
                self.negative_deps[key] = dep
        else:
            lease = decode_record(raw, LeaseRec)
            lid = lease.id
            oid = (lid.owner, lid.dseq, lid.gseq, lid.oseq)
            self.leases[key] = (lease.payment.balance, oid, lid.provider)
            self.paid += lease.payment.balance
            if lease.payment.balance < 0:
                self.negative_leases[key] = lease
            providers = self.orders.setdefault(oid, collections.Counter())
            providers[lid.provider] += 1
            if len(providers) > 1:
                self.shared_orders.add(oid)

    def _drop(self, key: bytes) -> None:
        if key.startswith(P_ACC):
            self.total -= self.balances.pop(key, 0)
        elif key.startswith(DEP_PREFIX):
            self.escrowed -= self.deps.pop(key, 0)
            self.negative_deps.pop(key, None)
        else:
            old = self.leases.pop(key, None)
            if old is None:
                return
            paid, oid, provider = old
            self.paid -= paid
            self.negative_leases.pop(key, None)
            providers = self.orders[oid]
            providers[provider] -= 1
            if providers[provider] <= 0:
                del providers[provider]
            if len(providers) <= 1:
                self.shared_orders.discard(oid)
            if not providers:
                del self.orders[oid]


__all__ = ["Checker", "Mirror", "Violation"]
