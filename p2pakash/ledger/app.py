"""The Ledger application: genesis, CheckTx, block execution and the app hash.

Rules and invariants:
* Pure over a KV: no clock, no randomness; block time arrives in ``BlockInput``.
* A tx runs in two stages, as Cosmos's ante handler then message router:
  1. *ante* — size <= ``max_tx_bytes``, at least one message, memo <= 256 chars, every
     message type has a handler, ``sender == address(pubkey)``, the signature verifies
     over ("tx", chain_id, encoded body), ``sequence`` equals the account's next
     sequence, ``fee >= min_fee`` and the sender can pay it. A failure here writes nothing.
     Success increments the sequence and moves the fee to the fee collector.
  2. *messages* — each handler in order in an overlay; if one refuses, every message write
     is dropped but the fee and sequence stand (the tx is in the block: code != 0).
* A tx's size, hash and signed body bytes come from its encoding as received (``Tx.encode``
  is the decoded bytes; ``Tx.body_bytes`` a slice of them): nothing is re-encoded.
  A signature that passed is remembered on the ``Tx`` with the verify function and chain ID
  that passed it, so a later check, recheck or delivery of that object with the same pair
  does not verify again (``decode_tx`` hands every reader the same object). Likewise the
  ante checks that depend only on the tx and the params (size, messages, memo, handlers,
  sender = address(pubkey)) are remembered as passed with the params object they passed.
  Chain ID and params are fixed at genesis and read once per ``Ledger``.
* ``check_tx`` runs both stages on a throwaway overlay and raises ``TxRejected``. On a
  ledger from ``copy_for_check`` a passing tx's effects are kept in the copy, so the
  mempool can admit a sender's next sequence; on the committed ledger nothing is written.
  A copy sees later commits of its base, but its own writes go stale, and it checks txs
  against the height and block time of its creation: take a fresh copy after every block
  (and recheck).
* Genesis: accounts, validator stakes, then the document's signed txs (``GenesisDoc.txs``)
  through the ordinary tx path at height 0; a failing one is a ConfigError.
* Block order: evidence (double sign) -> downtime from ``signers`` -> txs -> fees to the
  proposer -> unbonding maturity -> registered end blockers -> validator set (computed
  only when the block wrote a validator record: the set is a function of those records).
* App hash after block H = sha256("p2pakash/apphash/v1\\0" || app_hash(H-1) || u64(H) ||
  for each written key in byte order: u64(len k) || k || (0x00 | 0x01 || u64(len v) || v)),
  over all writes of the block except ``\\x00meta/`` keys; genesis uses 32 zero bytes and
  H = 0. Each block's writes, height and app hash are committed as one KV commit; the
  writes (as hashed) stay readable as ``last_writes`` until the next block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from p2pakash import crypto
from p2pakash.errors import (
    ConfigError,
    DecodeError,
    InvalidSignature,
    LocalProtocolError,
    StorageError,
)
from p2pakash.ledger import bank, slashing, staking
from p2pakash.ledger.blocks import Account, BlockInput, BlockResult
from p2pakash.ledger.genesis import GenesisDoc
from p2pakash.ledger.handlers import Context, end_blockers, handler_for, register_msg
from p2pakash.ledger.kv import KV, Overlay
from p2pakash.ledger.params import Params
from p2pakash.ledger.state import (
    K_APP_HASH,
    K_BURNED,
    K_CHAIN_ID,
    K_HEIGHT,
    K_MINTED,
    K_PARAMS,
    K_SUPPLY,
    META,
    P_SIG,
    P_UNB,
    P_VAL,
    P_VALSET,
    AccountRec,
    SigningInfo,
    Store,
    UnbondingRec,
    ValidatorRec,
    ValSet,
    u64,
)
from p2pakash.ledger.txs import (
    MAX_MEMO,
    Code,
    CreateValidator,
    Delegate,
    Event,
    Send,
    Tx,
    TxRejected,
    TxResult,
    Undelegate,
    Unjail,
    decode_tx,
)

VerifyFn = Callable[[bytes, str, str, bytes, bytes], None]
K_TIME = META + b"time_ms"
ZERO_HASH = bytes(32)
FEE_COLLECTOR = bank.module_address(bank.FEE_COLLECTOR)
_OK = int(Code.OK)

register_msg(Send, bank.send)
register_msg(CreateValidator, staking.create_validator)
register_msg(Delegate, staking.delegate)
register_msg(Undelegate, staking.undelegate)
register_msg(Unjail, slashing.unjail)


def chain_hash(prev: bytes, height: int, writes: list[tuple[bytes, bytes | None]]) -> bytes:
    h = hashlib.sha256(b"p2pakash/apphash/v1\x00")
    h.update(prev)
    h.update(u64(height))
    for key, value in writes:
        if key.startswith(META):
            continue
        h.update(u64(len(key)))
        h.update(key)
        if value is None:
            h.update(b"\x00")
        else:
            h.update(b"\x01")
            h.update(u64(len(value)))
            h.update(value)
    return h.digest()


class Ledger:
    def __init__(self, kv: KV, *, verify: VerifyFn | None = None) -> None:
        self._kv = kv
        self._store = Store(kv)
        self._verify: VerifyFn = verify or crypto.verify
        self._check_copy = False
        self._chain_id: str | None = None  # fixed at genesis: read once
        self._params: Params | None = None
        self._check_at: tuple[int, int] | None = None  # a copy's (next height, time): fixed
        # The last applied block's height and its writes in key order (what the app hash
        # covers), for readers that follow the state block by block; (0, ()) before one.
        self.last_writes: tuple[int, list[tuple[bytes, bytes | None]]] = (0, [])

    # ------------------------------------------------------------ genesis

    @staticmethod
    def init_genesis(kv: KV, genesis: GenesisDoc) -> bytes:
        """Write the genesis state into an empty ``kv``; return the initial app hash."""
        if kv.get(K_HEIGHT) is not None:
            raise StorageError("the state database is already initialised; refusing genesis")
        genesis.validate()
        overlay = Overlay(kv)
        store = Store(overlay)
        store.put(K_CHAIN_ID, genesis.chain_id)
        store.put(K_PARAMS, genesis.params)
        for acc in genesis.accounts:
            bank.add(store, acc.address, acc.balance)
        for val in genesis.validators:
            operator = crypto.address(val.pubkey)
            bank.add(store, operator, val.stake)
            rec = ValidatorRec(pubkey=val.pubkey, moniker=val.moniker, tokens=0, shares=0)
            staking.bond(store, rec, operator, val.stake)
            store.put(P_SIG + val.pubkey, SigningInfo(start_height=1, missed=0))
        store.put_int(K_SUPPLY, genesis.supply())
        store.put_int(K_BURNED, 0)
        store.put_int(K_MINTED, 0)
        if genesis.txs:  # on the accounts and stakes, before the first validator set
            Ledger(overlay)._run_genesis_txs(genesis)
        store.put(P_VALSET + u64(1), ValSet(validators=staking.active_set(store, genesis.params)))
        app_hash = chain_hash(ZERO_HASH, 0, overlay.sorted_writes())
        store.put_int(K_HEIGHT, 0)
        store.put(K_APP_HASH, app_hash)
        store.put_int(K_TIME, genesis.genesis_time_ms)
        overlay.flush()
        kv.commit()
        return app_hash

    def _run_genesis_txs(self, genesis: GenesisDoc) -> None:
        """The genesis txs in order, at height 0 and genesis time (gentxs): each must pass."""
        for i, raw in enumerate(genesis.txs):
            try:
                tx = decode_tx(raw, max_size=self.params().max_tx_bytes)
                self._run_tx(self._kv, tx, len(raw), 0, genesis.genesis_time_ms, self._verify,
                             keep_fee_on_failure=False, quiet=True)
            except DecodeError as exc:
                raise ConfigError(f"genesis: txs[{i}]: does not decode ({exc})") from None
            except TxRejected as exc:
                raise ConfigError(f"genesis: txs[{i}]: refused ({exc.reason})") from None

    # ------------------------------------------------------------ queries

    @property
    def store(self) -> Store:
        """Typed read access to the state (for queries; write only inside handlers)."""
        return self._store

    def height(self) -> int:
        return self._store.get_int(K_HEIGHT)

    def app_hash(self) -> bytes:
        value = self._store.get(K_APP_HASH, bytes)
        return ZERO_HASH if value is None else value

    def time_ms(self) -> int:
        """Block time of the last applied block (the genesis time before block 1)."""
        return self._store.get_int(K_TIME)

    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = self._store.chain_id()
        return self._chain_id

    def params(self) -> Params:
        if self._params is None:
            self._params = self._store.params()
        return self._params

    def supply(self) -> int:
        return bank.supply(self._store)

    def burned(self) -> int:
        return self._store.get_int(K_BURNED)

    def minted(self) -> int:
        return self._store.get_int(K_MINTED)

    def account(self, addr: str) -> Account:
        rec = bank.get_account(self._store, addr)
        return Account(address=addr, balance=rec.balance, sequence=rec.sequence)

    def validators(self) -> tuple[tuple[bytes, int], ...]:
        """The latest computed active set (in force from two heights after it was computed)."""
        return staking.latest_set(self._store).validators

    def validator_set_at(self, height: int) -> tuple[tuple[bytes, int], ...]:
        """The set that signs ``height``, for heights from ``self.height()`` on."""
        return staking.set_at(self._store, height).validators

    def validator(self, pubkey: bytes) -> ValidatorRec | None:
        return self._store.validator(pubkey)

    def delegation(self, validator: bytes, delegator: str) -> int:
        """The uakt ``delegator``'s shares in ``validator`` are worth now."""
        rec = self._store.validator(validator)
        if rec is None:
            return 0
        return staking.token_value(rec, staking.delegation_shares(self._store, validator,
                                                                  delegator))

    def unbondings(self) -> tuple[UnbondingRec, ...]:
        return tuple(rec for _, rec in self._store.scan(P_UNB, UnbondingRec))

    def copy_for_check(self) -> Ledger:
        copy = Ledger(Overlay(self._kv), verify=self._verify)
        copy._check_copy = True
        copy._chain_id, copy._params = self._chain_id, self._params
        copy._check_at = (self.height() + 1, self.time_ms())
        return copy

    # ------------------------------------------------------------ transactions

    def check_tx(self, tx: Tx, *, verify: VerifyFn | None = None) -> None:
        """Raise TxRejected unless ``tx`` would succeed on top of this state."""
        try:
            size = len(tx.encode())
        except LocalProtocolError as exc:
            raise TxRejected(Code.DECODE, f"tx cannot be encoded: {exc}") from None
        # A check copy keeps a passing tx's writes; the committed ledger is never written.
        parent = self._kv if self._check_copy else Overlay(self._kv)
        height, time_ms = self._check_at or (self.height() + 1, self.time_ms())
        self._run_tx(parent, tx, size, height, time_ms, verify or self._verify,
                     keep_fee_on_failure=False, quiet=True)

    def _ante(self, store: Store, tx: Tx, size: int, chain_id: str, params: Params,
              verify: VerifyFn) -> None:
        body = tx.body
        tx_dict = tx.__dict__
        if tx_dict.get("_shape_ok") is not params:  # what depends on the tx and params only
            if size > params.max_tx_bytes:
                raise TxRejected(Code.TOO_LARGE,
                                 f"tx too large: {size} bytes, limit {params.max_tx_bytes}")
            if not body.msgs:
                raise TxRejected(Code.INVALID_MSG, "tx has no messages")
            if len(body.memo) > MAX_MEMO:
                raise TxRejected(Code.INVALID_MSG, f"memo longer than {MAX_MEMO} characters")
            for i, msg in enumerate(body.msgs):
                if handler_for(msg) is None:
                    raise TxRejected(Code.UNKNOWN_MSG,
                                     f"message {i}: unknown message type {type(msg).__name__}")
            if len(tx.pubkey) != 32 or body.sender != crypto.address(tx.pubkey):
                raise TxRejected(Code.BAD_SIGNATURE,
                                 f"sender {body.sender} is not the address of the signing key")
            tx_dict["_shape_ok"] = params
        if tx_dict.get("_verified") != (verify, chain_id):
            try:
                verify(tx.pubkey, "tx", chain_id, tx.body_bytes(), tx.signature)
            except InvalidSignature as exc:
                raise TxRejected(Code.BAD_SIGNATURE, f"bad signature: {exc}") from None
            tx_dict["_verified"] = (verify, chain_id)
        account = bank.get_account(store, body.sender)
        if body.sequence != account.sequence:
            raise TxRejected(Code.WRONG_SEQUENCE,
                             f"wrong sequence for {body.sender}: expected {account.sequence},"
                             f" got {body.sequence}")
        if body.fee < 0:  # checked here: nothing below may raise after the first write
            raise TxRejected(Code.INVALID_MSG, f"fee must be non-negative, got {body.fee}")
        if body.fee < params.min_fee:
            raise TxRejected(Code.INSUFFICIENT_FEE,
                             f"fee {body.fee} uakt below the minimum {params.min_fee}")
        if body.fee > account.balance:
            raise TxRejected(Code.INSUFFICIENT_FUNDS,
                             f"insufficient funds for the fee: {body.sender} has"
                             f" {account.balance} uakt, fee is {body.fee}")
        bank.put_account(store, body.sender, AccountRec(
            balance=account.balance, sequence=account.sequence + 1))
        if body.fee:
            bank.transfer(store, body.sender, FEE_COLLECTOR, body.fee)

    def _run_tx(self, parent: KV, tx: Tx, size: int, height: int, time_ms: int,
                verify: VerifyFn, *, keep_fee_on_failure: bool, quiet: bool = False
                ) -> list[Event]:
        """Run ``tx`` over ``parent``: its writes reach ``parent`` only if it passes, or
        (``keep_fee_on_failure``) the ante stage's when a message fails."""
        chain_id = self.chain_id()
        params = self.params()
        # The ante stage raises before its first write, so when its writes are kept anyway
        # (delivery) they go straight to ``parent`` and the messages get an overlay; without
        # a fee to keep, one overlay serves both stages and any failure drops it all.
        if keep_fee_on_failure:
            self._ante(Store(parent), tx, size, chain_id, params, verify)
            msgs = Overlay(parent)
            store = Store(msgs)
        else:
            msgs = Overlay(parent)
            store = Store(msgs)
            self._ante(store, tx, size, chain_id, params, verify)
        ctx = Context(store=store, height=height, time_ms=time_ms, chain_id=chain_id,
                      params=params, sender=tx.body.sender, pubkey=tx.pubkey, quiet=quiet)
        if not quiet:  # ``ctx.emit("tx", hash=..., ...)``, built directly: one per tx
            body = tx.body
            ctx.events.append(Event(type="tx", attrs=(
                ("hash", tx.hash().hex()), ("sender", body.sender),
                ("sequence", str(body.sequence)), ("fee", str(body.fee)))))
        for i, msg in enumerate(tx.body.msgs):
            handler = handler_for(msg)
            assert handler is not None  # checked in the ante stage
            try:
                handler(ctx, msg)
            except TxRejected as exc:
                raise TxRejected(exc.code, f"message {i} ({type(msg).__name__}): {exc.reason}"
                                 ) from None
        msgs.flush()
        return ctx.events

    def _deliver(self, store: Store, raw: bytes, height: int, time_ms: int) -> TxResult:
        params = self.params()
        if len(raw) > params.max_tx_bytes:
            return TxResult(code=int(Code.TOO_LARGE),
                            log=f"tx too large: {len(raw)} bytes, limit {params.max_tx_bytes}")
        try:
            tx = decode_tx(raw, max_size=params.max_tx_bytes)
        except DecodeError as exc:
            return TxResult(code=int(Code.DECODE), log=f"undecodable tx: {exc}")
        try:
            events = self._run_tx(store.kv, tx, len(raw), height, time_ms, self._verify,
                                  keep_fee_on_failure=True)
        except TxRejected as exc:
            return TxResult(code=int(exc.code), log=exc.reason)
        return TxResult(code=_OK, log="", events=tuple(events))

    # ------------------------------------------------------------ blocks

    def apply_block(self, block: BlockInput) -> BlockResult:
        height = self.height()
        if block.height != height + 1:
            raise LocalProtocolError(
                f"block height {block.height} does not follow the state height {height}")
        if block.time_ms < self.time_ms():
            raise LocalProtocolError(
                f"block time {block.time_ms} ms is before the previous {self.time_ms()} ms")
        if len(block.proposer) != 32:
            raise LocalProtocolError("block proposer must be a 32-byte ed25519 key")
        overlay = Overlay(self._kv)
        store = Store(overlay)
        ctx = Context(store=store, height=block.height, time_ms=block.time_ms,
                      chain_id=self.chain_id(), params=self.params())
        for ev in block.misbehaviour:
            slashing.handle_misbehaviour(ctx, ev.pubkey, ev.height, ev.time_ms)
        slashing.handle_signatures(ctx, block.signers)
        staking.prune_sets(store, block.height - 1)
        results = tuple(self._deliver(store, raw, block.height, block.time_ms)
                        for raw in block.txs)
        fees = bank.balance(store, FEE_COLLECTOR)
        if fees:
            proposer = crypto.address(block.proposer)
            bank.transfer(store, FEE_COLLECTOR, proposer, fees)
            ctx.emit("proposer_fees", proposer=proposer, amount=fees)
        staking.mature_unbondings(ctx)
        for fn in end_blockers():
            fn(ctx)
        updates: tuple[tuple[bytes, int], ...] = ()
        before: dict[bytes, int] = {}
        # The active set is a function of the validator records alone, and the latest set
        # equals it after every block: a block that wrote no validator record keeps it.
        if any(key.startswith(P_VAL) for key in overlay.writes):
            before = dict(staking.latest_set(store).validators)
            updates = staking.end_block_updates(ctx, before)
        for pubkey, power in updates:
            if power and pubkey not in before:  # a fresh window for a validator joining the set
                slashing.reset_window(ctx, pubkey)
        writes = overlay.sorted_writes()
        app_hash = chain_hash(self.app_hash(), block.height, writes)
        store.put_int(K_HEIGHT, block.height)
        store.put(K_APP_HASH, app_hash)
        store.put_int(K_TIME, block.time_ms)
        try:
            overlay.flush()
            self._kv.commit()
        except BaseException:
            rollback = getattr(self._kv, "rollback", None)
            if rollback is not None:
                rollback()
            raise
        self.last_writes = (block.height, writes)
        return BlockResult(app_hash=app_hash, tx_results=results, validator_updates=updates,
                           events=tuple(ctx.events))
