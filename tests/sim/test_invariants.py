"""The invariant checker's incremental state checks: same answers as a full scan, and a
bad write is caught from the block's writes alone."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import attrs
import pytest

from p2pakash.ledger import UAKT_PER_AKT, Send
from p2pakash.ledger.state import P_ACC, AccountRec, encode_record
from p2pakash.sim import invariants
from p2pakash.sim.invariants import Checker, Mirror
from p2pakash.sim.runner import run
from p2pakash.sim.scenario import load_scenario
from tests.ledger.helpers import USERS, Chain, new_ledger

ROOT = Path(__file__).resolve().parents[2]


def _contents(m: Mirror) -> dict[str, Any]:
    return {k: v for k, v in vars(m).items() if k != "height"}


def test_incremental_mirror_equals_a_full_scan_at_every_height(
        monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[int] = []
    compared: list[int] = []
    real_apply, real_check = Mirror.apply, Checker._check_state

    def apply(self: Mirror, height: int, writes: Any) -> None:
        applied.append(height)
        real_apply(self, height, writes)

    def check(self: Checker, node: str, chain: Any, h: int, now: float) -> None:
        self.rescan_every = 10**9  # incremental all the way (the rebuilds are the reference)
        real_check(self, node, chain, h, now)
        if chain.ledger.height() == h and self._mirror is not None:
            assert _contents(self._mirror) == _contents(Mirror.scan(chain.ledger.store, h)), h
            compared.append(h)

    monkeypatch.setattr(Mirror, "apply", apply)
    monkeypatch.setattr(Checker, "_check_state", check)
    sc = load_scenario(ROOT / "simulations" / "quickstart.toml")
    sc = attrs.evolve(sc, duration=40.0, full_nodes=attrs.evolve(sc.full_nodes, count=0),
                      tenants=attrs.evolve(sc.tenants, arrival_rate=0.3, lease_seconds=8.0))
    result = run(sc)
    assert result.checker is not None and result.checker.violations == []
    assert len(applied) >= 10 and len(compared) >= 10
    assert result.checker.checks["order-leased-once"] > 0  # leases were in the mirror


def _ledger_chain() -> tuple[Chain, types.SimpleNamespace]:
    ledger = new_ledger()
    return Chain(ledger), types.SimpleNamespace(ledger=ledger)


def test_money_made_by_a_block_is_caught_from_its_writes() -> None:
    chain, node = _ledger_chain()
    supply = chain.ledger.supply()
    checker = Checker(seed=7, genesis_supply=supply)
    for _ in range(3):
        chain.block(chain.tx(USERS[0], Send(to=USERS[1].address, amount=UAKT_PER_AKT)))
        checker._check_state("n0", node, chain.ledger.height(), 1.0)  # type: ignore[arg-type]
    assert checker.violations == [] and checker._mirror is not None
    assert checker._mirror.height == chain.ledger.height() == 3
    # block 4 "mints" 5 uakt into an account without touching the supply
    chain.block(chain.tx(USERS[1], Send(to=USERS[2].address, amount=1)))
    key = P_ACC + USERS[3].address.encode()
    rec = AccountRec(balance=chain.ledger.account(USERS[3].address).balance + 5, sequence=0)
    raw = encode_record(rec)
    chain.ledger._kv.set(key, raw)
    h, writes = chain.ledger.last_writes
    chain.ledger.last_writes = (h, sorted([*writes, (key, raw)]))
    checker._check_state("n0", node, 4, 2.0)  # type: ignore[arg-type]
    assert [v.invariant for v in checker.violations] == ["supply"]
    assert "balances sum to" in checker.violations[0].line()


def test_a_gap_in_the_writes_rebuilds_the_mirror_from_the_state() -> None:
    chain, node = _ledger_chain()
    checker = Checker(seed=7, genesis_supply=chain.ledger.supply())
    chain.block()
    checker._check_state("n0", node, 1, 1.0)  # type: ignore[arg-type]
    scans = []
    real = Mirror.scan

    def counting(store: Any, height: int) -> Mirror:
        scans.append(height)
        return real(store, height)

    invariants.Mirror.scan = counting  # type: ignore[method-assign]
    try:
        chain.block()
        chain.block()  # height 2 was never checked: its writes are gone
        checker._check_state("n0", node, 3, 2.0)  # type: ignore[arg-type]
        chain.block()
        checker._check_state("n0", node, 4, 3.0)  # type: ignore[arg-type]
    finally:
        invariants.Mirror.scan = real  # type: ignore[method-assign]
    assert scans == [3] and checker.violations == []
    assert checker._mirror is not None and checker._mirror.height == 4
