"""Shared fixtures for ledger tests: deterministic keys, a small genesis, a block driver."""

from __future__ import annotations

from p2pakash import crypto
from p2pakash.ledger import (
    UAKT_PER_AKT as AKT,
)
from p2pakash.ledger import (
    BlockInput,
    BlockResult,
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
    Ledger,
    MemoryKV,
    Misbehaviour,
    Params,
    Tx,
    sign_tx,
)
from p2pakash.ledger.kv import KV

CHAIN = "ledger-test"
GENESIS_MS = 1_000_000


def key(i: int) -> crypto.PrivateKey:
    return crypto.PrivateKey.from_seed(bytes([i + 1]) * 32)


VALS = [key(i) for i in range(3)]  # genesis validators
USERS = [key(10 + i) for i in range(4)]  # funded accounts


def genesis(params: Params | None = None, *, stakes: tuple[int, ...] = (10, 10, 10),
            balance: int = 100 * AKT) -> GenesisDoc:
    return GenesisDoc(
        chain_id=CHAIN, genesis_time_ms=GENESIS_MS,
        accounts=tuple(GenesisAccount(address=u.address, balance=balance) for u in USERS),
        validators=tuple(GenesisValidator(pubkey=v.public, stake=s * AKT, moniker=f"v{i}")
                         for i, (v, s) in enumerate(zip(VALS, stakes, strict=False))),
        params=params or Params(unbonding_time_s=60))


def new_ledger(params: Params | None = None, kv: KV | None = None, **kw: object) -> Ledger:
    kv = MemoryKV() if kv is None else kv
    Ledger.init_genesis(kv, genesis(params, **kw))  # type: ignore[arg-type]
    return Ledger(kv)


class Chain:
    """Feeds blocks to a ledger at one block per second, all validators signing by default."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.seqs: dict[str, int] = {}

    def tx(self, signer: crypto.PrivateKey, *msgs: object, fee: int = 0,
           sequence: int | None = None) -> Tx:
        seq = self.ledger.account(signer.address).sequence if sequence is None else sequence
        return sign_tx(signer, CHAIN, sequence=seq, msgs=tuple(msgs), fee=fee)

    def block(self, *txs: Tx | bytes, signers: tuple[bytes, ...] | None = None,
              misbehaviour: tuple[Misbehaviour, ...] = (), dt_ms: int = 1000,
              proposer: bytes | None = None) -> BlockResult:
        h = self.ledger.height() + 1
        if signers is None:
            signers = tuple(pk for pk, _ in self.ledger.validator_set_at(h - 1))
        raw = tuple(t if isinstance(t, bytes) else t.encode() for t in txs)
        return self.ledger.apply_block(BlockInput(
            height=h, time_ms=self.ledger.time_ms() + dt_ms,
            proposer=proposer or VALS[0].public, txs=raw, signers=signers,
            misbehaviour=misbehaviour))

    def run(self, tx: Tx) -> BlockResult:
        """One block holding ``tx``; asserts it was included successfully."""
        result = self.block(tx)
        assert result.tx_results[0].code == 0, result.tx_results[0].log
        return result


def total_balances(ledger: Ledger) -> int:
    from p2pakash.ledger.state import P_ACC, AccountRec
    return sum(rec.balance for _, rec in ledger.store.scan(P_ACC, AccountRec))
