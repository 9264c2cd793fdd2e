"""The deterministic ledger: accounts, staking, slashing, and a handler registry for the market.

Rules: pure over a ``KV`` (no clock, randomness or I/O beyond the KV); amounts are integers
in uakt; consensus state is wire-encoded. See ``app.py`` for the tx and block pipeline.
"""

from __future__ import annotations

from p2pakash.ledger.app import Ledger, VerifyFn, chain_hash
from p2pakash.ledger.blocks import Account, BlockInput, BlockResult, Misbehaviour
from p2pakash.ledger.genesis import (
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
    load_genesis,
    save_genesis,
)
from p2pakash.ledger.handlers import Context, register_end_blocker, register_msg
from p2pakash.ledger.kv import KV, MemoryKV, Overlay
from p2pakash.ledger.kv_sqlite import SqliteKV
from p2pakash.ledger.params import POWER_REDUCTION, UAKT_PER_AKT, Params
from p2pakash.ledger.txs import (
    Code,
    CreateValidator,
    Delegate,
    Event,
    Send,
    Tx,
    TxBatch,
    TxBody,
    TxRejected,
    TxResult,
    Undelegate,
    Unjail,
    decode_tx,
    sign_tx,
    tx_hash,
)

__all__ = [
    "KV", "POWER_REDUCTION", "UAKT_PER_AKT", "Account", "BlockInput", "BlockResult", "Code",
    "Context", "CreateValidator", "Delegate", "Event", "GenesisAccount", "GenesisDoc",
    "GenesisValidator", "Ledger", "MemoryKV", "Misbehaviour", "Overlay", "Params", "Send",
    "SqliteKV", "Tx", "TxBatch", "TxBody", "TxRejected", "TxResult", "Undelegate", "Unjail",
    "VerifyFn", "chain_hash", "decode_tx", "load_genesis", "register_end_blocker",
    "register_msg", "save_genesis", "sign_tx", "tx_hash",
]
