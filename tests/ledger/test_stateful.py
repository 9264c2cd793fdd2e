"""Hypothesis state machine over random sends, stakes, unbondings, slashes and blocks.

Two ledgers (memory KV and SQLite KV) are fed the same blocks; after every step: app
hashes and results agree, supply equals the sum of balances and genesis supply minus the
slashed amounts reported in events, no balance is negative, pools mirror staking state,
and replayed txs are refused.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from p2pakash import crypto
from p2pakash.ledger import (
    BlockInput,
    Code,
    CreateValidator,
    Delegate,
    Ledger,
    MemoryKV,
    Misbehaviour,
    Params,
    Send,
    SqliteKV,
    Tx,
    TxRejected,
    Undelegate,
    Unjail,
    sign_tx,
)
from p2pakash.ledger.bank import BONDED_POOL, UNBONDING_POOL, module_address
from p2pakash.ledger.state import P_ACC, AccountRec
from tests.ledger.helpers import CHAIN, USERS, VALS, genesis

PARAMS = Params(unbonding_time_s=60, signed_blocks_window=10, downtime_jail_s=20,
                min_self_stake=1_000_000)
KEYS = [*VALS, *USERS]

idx = st.integers(min_value=0, max_value=len(KEYS) - 1)
amount = st.integers(min_value=0, max_value=30_000_000)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        doc = genesis(PARAMS)
        self.ledgers = [Ledger(MemoryKV()), Ledger(SqliteKV(":memory:"))]
        hashes = {Ledger.init_genesis(led.store.kv, doc) for led in self.ledgers}
        assert len(hashes) == 1
        self.genesis_supply = doc.supply()
        self.slashed = 0
        self.pending: list[Tx] = []
        self.evidence: list[Misbehaviour] = []
        self.committed: list[Tx] = []
        self.mempool = self.ledgers[0].copy_for_check()

    @property
    def main(self) -> Ledger:
        return self.ledgers[0]

    def _submit(self, signer: crypto.PrivateKey, msg: object, fee: int = 0) -> None:
        seq = self.mempool.account(signer.address).sequence
        tx = sign_tx(signer, CHAIN, sequence=seq, msgs=(msg,), fee=fee)
        try:
            self.mempool.check_tx(tx)
        except TxRejected:
            return  # the mempool refuses it; a Byzantine proposer is modelled by `replay`
        self.pending.append(tx)

    @rule(a=idx, b=idx, n=amount, fee=st.integers(0, 3))
    def send(self, a: int, b: int, n: int, fee: int) -> None:
        self._submit(KEYS[a], Send(to=KEYS[b].address, amount=n), fee)

    @rule(a=idx, v=idx, n=amount)
    def delegate(self, a: int, v: int, n: int) -> None:
        self._submit(KEYS[a], Delegate(validator=KEYS[v].public, amount=n))

    @rule(a=idx, v=idx, n=amount)
    def undelegate(self, a: int, v: int, n: int) -> None:
        self._submit(KEYS[a], Undelegate(validator=KEYS[v].public, amount=n))

    @rule(a=idx, n=amount)
    def create_validator(self, a: int, n: int) -> None:
        self._submit(KEYS[a], CreateValidator(pubkey=KEYS[a].public, self_stake=n, moniker="x"))

    @rule(a=idx)
    def unjail(self, a: int) -> None:
        self._submit(KEYS[a], Unjail())

    @rule(v=idx, back=st.integers(0, 3))
    def double_sign(self, v: int, back: int) -> None:
        h = max(1, self.main.height() - back)
        self.evidence.append(Misbehaviour(pubkey=KEYS[v].public, height=h,
                                          time_ms=self.main.time_ms()))

    @precondition(lambda self: bool(self.committed))
    @rule(i=st.integers(min_value=0), in_block=st.booleans())
    def replay(self, i: int, in_block: bool) -> None:
        tx = self.committed[i % len(self.committed)]
        for ledger in (self.main, self.mempool):
            try:
                ledger.check_tx(tx)
            except TxRejected as exc:
                assert exc.code == Code.WRONG_SEQUENCE
            else:
                raise AssertionError("a replayed tx passed check_tx")
        if in_block:
            self.pending.append(tx)

    @rule(dt=st.integers(min_value=1, max_value=30_000), data=st.data())
    def block(self, dt: int, data: st.DataObject) -> None:
        height = self.main.height() + 1
        expected = [pk for pk, _ in self.main.validator_set_at(height - 1)]
        signers = tuple(pk for pk in expected if data.draw(st.booleans(), label="signs"))
        block = BlockInput(height=height, time_ms=self.main.time_ms() + dt,
                           proposer=VALS[height % len(VALS)].public,
                           txs=tuple(t.encode() for t in self.pending), signers=signers,
                           misbehaviour=tuple(self.evidence))
        replays = {t.encode() for t in self.committed}
        results = [led.apply_block(block) for led in self.ledgers]
        assert results[0] == results[1]  # memory KV and SQLite KV agree on everything
        result = results[0]
        for tx, res in zip(self.pending, result.tx_results, strict=True):
            if tx.encode() in replays:
                assert res.code == Code.WRONG_SEQUENCE, res.log
            elif res.code == Code.OK:
                self.committed.append(tx)
        events = list(result.events) + [e for r in result.tx_results for e in r.events]
        self.slashed += sum(int(e.get("amount") or 0) for e in events if e.type == "slash")
        self.pending.clear()
        self.evidence.clear()
        self.mempool = self.main.copy_for_check()

    @invariant()
    def hashes_agree(self) -> None:
        assert self.ledgers[0].app_hash() == self.ledgers[1].app_hash()
        assert self.ledgers[0].height() == self.ledgers[1].height()

    @invariant()
    def supply_conserved(self) -> None:
        led = self.main
        records = [rec for _, rec in led.store.scan(P_ACC, AccountRec)]
        assert all(r.balance >= 0 for r in records)
        assert all(r.balance or r.sequence for r in records)  # empty records are deleted
        balances = [r.balance for r in records]
        assert led.supply() == sum(balances)
        assert led.supply() == self.genesis_supply - self.slashed
        assert led.burned() == self.slashed and led.minted() == 0

    @invariant()
    def pools_mirror_staking(self) -> None:
        led = self.main
        bonded = led.account(module_address(BONDED_POOL)).balance
        assert bonded == sum(v.tokens for v in led.store.validators())
        unbonding = led.account(module_address(UNBONDING_POOL)).balance
        assert unbonding == sum(u.amount for u in led.unbondings())
        assert all(u.completion_ms > led.time_ms() for u in led.unbondings())

    @invariant()
    def active_set_is_well_formed(self) -> None:
        for pk, power in self.main.validators():
            rec = self.main.validator(pk)
            assert rec is not None and not rec.jailed and power == rec.power > 0


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(
    max_examples=30, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow], derandomize=True)
