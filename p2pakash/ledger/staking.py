"""Validators, delegations, unbonding and the active set (a simplified Cosmos SDK x/staking).

Rules and invariants:
* A validator is named by its consensus key, which is also its operator's account key
  (see txs.py). ``tokens`` is the uakt bonded to it; delegators hold *shares*, so a slash
  (which lowers ``tokens`` only) hits every delegator in proportion, as in Cosmos.
* Bonded tokens sit in the module account ``bonded_tokens_pool``, unbonding tokens in
  ``not_bonded_tokens_pool``; the sum of ``tokens`` over validators equals the bonded
  pool's balance, and the sum of unbonding entries equals the unbonding pool's.
* Power = tokens // 1,000,000 (one power per bonded AKT). The active set is the top
  ``max_validators`` by (power desc, pubkey asc) among validators that are not jailed and
  have power > 0.
* Simplifications of Cosmos: no Bonded/Unbonding/Unbonded validator status — stake is
  locked and unbonds over the full period whether or not the validator is in the active
  set; no redelegation, commission or rewards (fees go to the block proposer).
* Validator-set contract (CometBFT, reference §A7): the set computed at the end of block H
  is stored as in force from height H+2 (``vs/<H+2>``) and its diff is returned in that
  block's result; the consensus driver applies it at H+2. ``set_at(h)`` answers which set
  signs height h (used for downtime tracking of ``last_commit`` signers).
"""

from __future__ import annotations

import attrs

from p2pakash.ledger import bank
from p2pakash.ledger.handlers import Context
from p2pakash.ledger.params import BASIS_POINTS, Params
from p2pakash.ledger.state import (
    K_UNB_SEQ,
    P_DEL,
    P_SIG,
    P_UNB,
    P_VALSET,
    DelegationRec,
    SigningInfo,
    Store,
    UnbondingRec,
    ValidatorRec,
    ValSet,
    u64,
)
from p2pakash.ledger.txs import (
    MAX_MONIKER,
    Code,
    CreateValidator,
    Delegate,
    TxRejected,
    Undelegate,
)

BONDED = bank.module_address(bank.BONDED_POOL)
UNBONDING = bank.module_address(bank.UNBONDING_POOL)


def _positive_amount(amount: int) -> None:
    if amount <= 0:
        raise TxRejected(Code.INVALID_MSG, f"amount must be positive, got {amount}")


def _known(store: Store, pubkey: bytes) -> ValidatorRec:
    rec = store.validator(pubkey)
    if rec is None:
        raise TxRejected(Code.UNKNOWN_VALIDATOR, f"unknown validator {pubkey.hex()}")
    return rec


def del_key(validator: bytes, delegator: str) -> bytes:
    return P_DEL + validator + delegator.encode()


def delegation_shares(store: Store, validator: bytes, delegator: str) -> int:
    rec = store.get(del_key(validator, delegator), DelegationRec)
    return 0 if rec is None else rec.shares


def token_value(rec: ValidatorRec, shares: int) -> int:
    """The uakt that ``shares`` of validator ``rec`` are worth now (rounded down)."""
    return 0 if rec.shares == 0 else shares * rec.tokens // rec.shares


def bond(store: Store, rec: ValidatorRec, delegator: str, amount: int) -> ValidatorRec:
    """Move ``amount`` from ``delegator`` into the bonded pool as shares of ``rec``."""
    if rec.shares == 0:
        issued = amount
    elif rec.tokens == 0:
        raise TxRejected(Code.INVALID_MSG, "validator has been slashed to zero tokens")
    else:
        issued = amount * rec.shares // rec.tokens
    if issued <= 0:
        raise TxRejected(Code.INVALID_MSG, f"amount {amount} buys no shares")
    bank.transfer(store, delegator, BONDED, amount)
    shares = delegation_shares(store, rec.pubkey, delegator) + issued
    store.put(del_key(rec.pubkey, delegator), DelegationRec(shares=shares))
    new = attrs.evolve(rec, tokens=rec.tokens + amount, shares=rec.shares + issued)
    store.put_validator(new)
    return new


def create_validator(ctx: Context, msg: CreateValidator) -> None:
    if msg.pubkey != ctx.pubkey:
        raise TxRejected(Code.INVALID_MSG,
                         "CreateValidator.pubkey must be the tx signer's key (consensus key"
                         " = operator key)")
    if len(msg.moniker) > MAX_MONIKER:
        raise TxRejected(Code.INVALID_MSG, f"moniker longer than {MAX_MONIKER} characters")
    if ctx.store.validator(msg.pubkey) is not None:
        raise TxRejected(Code.VALIDATOR_EXISTS, f"validator {msg.pubkey.hex()} already exists")
    if msg.self_stake < ctx.params.min_self_stake:
        raise TxRejected(Code.INSUFFICIENT_STAKE,
                         f"self stake {msg.self_stake} below the minimum"
                         f" {ctx.params.min_self_stake} uakt")
    rec = ValidatorRec(pubkey=msg.pubkey, moniker=msg.moniker, tokens=0, shares=0)
    bond(ctx.store, rec, ctx.sender, msg.self_stake)
    ctx.store.put(P_SIG + msg.pubkey, SigningInfo(start_height=ctx.height, missed=0))
    ctx.emit("create_validator", validator=msg.pubkey, operator=ctx.sender,
             self_stake=msg.self_stake, moniker=msg.moniker)


def delegate(ctx: Context, msg: Delegate) -> None:
    _positive_amount(msg.amount)
    rec = _known(ctx.store, msg.validator)
    if rec.tombstoned:
        raise TxRejected(Code.TOMBSTONED, f"validator {msg.validator.hex()} is tombstoned")
    bond(ctx.store, rec, ctx.sender, msg.amount)
    ctx.emit("delegate", validator=msg.validator, delegator=ctx.sender, amount=msg.amount)


def undelegate(ctx: Context, msg: Undelegate) -> None:
    _positive_amount(msg.amount)
    store = ctx.store
    rec = _known(store, msg.validator)
    held = delegation_shares(store, msg.validator, ctx.sender)
    value = token_value(rec, held)
    if msg.amount > value:
        raise TxRejected(Code.INSUFFICIENT_FUNDS,
                         f"insufficient delegation: {ctx.sender} has {value} uakt bonded to"
                         f" {msg.validator.hex()}, asked to undelegate {msg.amount}")
    removed = -(-msg.amount * rec.shares // rec.tokens)  # ceil: never over-pay the leaver
    left = held - removed
    if left:
        store.put(del_key(msg.validator, ctx.sender), DelegationRec(shares=left))
    else:
        store.delete(del_key(msg.validator, ctx.sender))
    store.put_validator(attrs.evolve(rec, tokens=rec.tokens - msg.amount,
                                     shares=rec.shares - removed))
    bank.transfer(store, BONDED, UNBONDING, msg.amount)
    completion = ctx.time_ms + ctx.params.unbonding_time_s * 1000
    seq = store.get_int(K_UNB_SEQ)
    store.put_int(K_UNB_SEQ, seq + 1)
    store.put(P_UNB + u64(completion) + u64(seq), UnbondingRec(
        delegator=ctx.sender, validator=msg.validator, amount=msg.amount,
        creation_height=ctx.height, completion_ms=completion))
    ctx.emit("undelegate", validator=msg.validator, delegator=ctx.sender, amount=msg.amount,
             completion_ms=completion)


def mature_unbondings(ctx: Context) -> None:
    """Pay out every unbonding entry whose completion time is at or before block time."""
    for key, entry in list(ctx.store.scan(P_UNB, UnbondingRec)):
        if entry.completion_ms > ctx.time_ms:
            break
        ctx.store.delete(key)
        if entry.amount:
            bank.transfer(ctx.store, UNBONDING, entry.delegator, entry.amount)
        ctx.emit("complete_unbonding", delegator=entry.delegator, validator=entry.validator,
                 amount=entry.amount)


def slash(ctx: Context, rec: ValidatorRec, bps: int, *,
          infraction_height: int | None = None) -> tuple[ValidatorRec, int]:
    """Burn ``bps`` of the validator's tokens (and, for an infraction at a known height, of
    its unbonding entries begun at or after it). Returns the new record and the amount burned.

    Simplification of Cosmos: the fraction applies to the tokens bonded *now*, not to the
    power at the infraction height."""
    store = ctx.store
    burned = 0
    if infraction_height is not None:
        for key, entry in list(store.scan(P_UNB, UnbondingRec)):
            if entry.validator != rec.pubkey or entry.creation_height < infraction_height:
                continue
            cut = entry.amount * bps // BASIS_POINTS
            if cut:
                bank.burn(store, UNBONDING, cut)
                store.put(key, attrs.evolve(entry, amount=entry.amount - cut))
                burned += cut
    cut = rec.tokens * bps // BASIS_POINTS
    if cut:
        bank.burn(store, BONDED, cut)
        burned += cut
    new = attrs.evolve(rec, tokens=rec.tokens - cut)
    store.put_validator(new)
    ctx.emit("slash", validator=rec.pubkey, amount=burned, fraction_bps=bps)
    return new, burned


# ---------------------------------------------------------------- the active set


def active_set(store: Store, params: Params) -> tuple[tuple[bytes, int], ...]:
    ranked = sorted((-rec.power, rec.pubkey) for rec in store.validators()
                     if not rec.jailed and rec.power > 0)
    return tuple((pk, -neg) for neg, pk in ranked[: params.max_validators])


def set_at(store: Store, height: int) -> ValSet:
    """The validator set that signs ``height`` (the latest one in force at or before it)."""
    found = ValSet(validators=())
    for key, vs in store.scan(P_VALSET, ValSet):
        if int.from_bytes(key[len(P_VALSET):], "big") > height:
            break
        found = vs
    return found


def latest_set(store: Store) -> ValSet:
    found = ValSet(validators=())
    for _, vs in store.scan(P_VALSET, ValSet):
        found = vs
    return found


def prune_sets(store: Store, height: int) -> None:
    """Forget sets no longer needed to answer ``set_at(h)`` for any h >= ``height``."""
    keys = [k for k, _ in store.kv.iterate(P_VALSET)]
    live = [k for k in keys if int.from_bytes(k[len(P_VALSET):], "big") <= height]
    for key in live[:-1]:
        store.delete(key)


def end_block_updates(ctx: Context, old: dict[bytes, int]) -> tuple[tuple[bytes, int], ...]:
    """Compute the active set after block ``ctx.height``; store it as in force from
    ``ctx.height + 2`` and return the diff (power 0 = removal) from ``old`` (the
    ``latest_set`` as a dict, which the caller has at hand), ordered by pubkey."""
    new = active_set(ctx.store, ctx.params)
    new_map = dict(new)
    updates = [(pk, p) for pk, p in new if old.get(pk) != p]
    updates += [(pk, 0) for pk in old if pk not in new_map]
    if updates:
        ctx.store.put(P_VALSET + u64(ctx.height + 2), ValSet(validators=new))
    return tuple(sorted(updates))
