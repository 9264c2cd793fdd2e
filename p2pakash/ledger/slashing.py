"""Downtime and double-sign punishment, and Unjail (a simplified Cosmos SDK x/slashing).

Rules and invariants:
* Downtime: for block H (H >= 2) every validator of the set that signed height H-1 is
  marked signed or missed by whether its key is among ``BlockInput.signers`` (the
  ``last_commit``). Over a sliding window of ``signed_blocks_window`` (100) heights, a
  validator that missed *more* than ``max_missed`` (50) is slashed ``slash_downtime_bps``
  (1 %), jailed until block time + ``downtime_jail_s`` (600 s), and its window is reset.
  Deviations from Cosmos: no grace period of one full window after a validator starts
  (more than 50 misses is more than half of the last 100 blocks whatever the start), and
  window slots are indexed by height rather than by a per-validator counter, so a block
  where everyone signs writes nothing (Cosmos rewrites every signing info every block).
  Jailed or tombstoned validators are not tracked.
* Double sign: a ``Misbehaviour`` for a known, not yet tombstoned validator, at a height
  not above the current one and younger than the unbonding period, slashes
  ``slash_double_sign_bps`` (5 %) of its bonded tokens and of its unbonding entries begun at
  or after the infraction height, jails it for good and tombstones it (it can never
  unjail). Evidence for an unknown, tombstoned or too old validator is ignored with an
  ``evidence_ignored`` event. Consensus has already verified the two votes.
* Slashed amounts are burned: supply falls by exactly the amount in the ``slash`` event.
* Unjail succeeds only for the signer's own validator, jailed, not tombstoned, at or
  after its jail time, with a self-delegation still worth at least ``min_self_stake``.
"""

from __future__ import annotations

import attrs

from p2pakash.ledger import staking
from p2pakash.ledger.handlers import Context
from p2pakash.ledger.state import P_MISS, P_SIG, SigningInfo, ValidatorRec
from p2pakash.ledger.txs import Code, TxRejected, Unjail

JAILED_FOREVER_MS = 2**63 - 1


def _miss_key(pubkey: bytes, slot: int) -> bytes:
    return P_MISS + pubkey + slot.to_bytes(2, "big")


def _signing_info(ctx: Context, pubkey: bytes) -> SigningInfo:
    info = ctx.store.get(P_SIG + pubkey, SigningInfo)
    return SigningInfo(start_height=ctx.height, missed=0) if info is None else info


def reset_window(ctx: Context, pubkey: bytes) -> None:
    """Forget a validator's misses (on jail, unjail and entry into the active set)."""
    for key, _ in list(ctx.store.kv.iterate(P_MISS + pubkey)):
        ctx.store.delete(key)
    ctx.store.put(P_SIG + pubkey, SigningInfo(start_height=ctx.height, missed=0))


def _jail(rec: ValidatorRec, until_ms: int, *, tombstone: bool = False) -> ValidatorRec:
    return attrs.evolve(rec, jailed=True, tombstoned=rec.tombstoned or tombstone,
                        jailed_until_ms=until_ms)


def handle_signatures(ctx: Context, signers: tuple[bytes, ...]) -> None:
    """Track ``last_commit`` signatures of block ``ctx.height`` (they sign height-1).

    Slot h % window holds whether the validator missed height h. A validator is tracked
    for every height it is in the set (its window is reset when it joins, is jailed or is
    unjailed), so each slot is overwritten once per window: the set bits are exactly its
    misses among the last ``window`` heights. A signature over an unset slot writes nothing.
    """
    if ctx.height < 2:
        return
    signed = set(signers)
    slot = (ctx.height - 1) % ctx.params.signed_blocks_window
    for pubkey, _power in staking.set_at(ctx.store, ctx.height - 1).validators:
        key = _miss_key(pubkey, slot)
        was_missed = ctx.store.kv.get(key) is not None
        is_missed = pubkey not in signed
        if not was_missed and not is_missed:
            continue  # the common case: no reads beyond one key, no writes
        rec = ctx.store.validator(pubkey)
        if rec is None or rec.jailed or rec.tombstoned:
            continue
        info = _signing_info(ctx, pubkey)
        missed = info.missed
        if is_missed:
            ctx.emit("liveness", validator=pubkey, missed_blocks=missed + (not was_missed),
                     height=ctx.height - 1)
        if was_missed == is_missed:
            continue
        if is_missed:
            ctx.store.kv.set(key, b"")
            missed += 1
        else:
            ctx.store.delete(key)
            missed -= 1
        if missed > ctx.params.max_missed:
            rec, burned = staking.slash(ctx, rec, ctx.params.slash_downtime_bps)
            until = ctx.time_ms + ctx.params.downtime_jail_s * 1000
            ctx.store.put_validator(_jail(rec, until))
            reset_window(ctx, pubkey)
            ctx.emit("jail", validator=pubkey, reason="missing_signature",
                     jailed_until_ms=until, burned=burned)
            continue
        ctx.store.put(P_SIG + pubkey, SigningInfo(start_height=info.start_height, missed=missed))


def handle_misbehaviour(ctx: Context, pubkey: bytes, height: int, time_ms: int) -> None:
    rec = ctx.store.validator(pubkey)
    max_age_ms = ctx.params.unbonding_time_s * 1000
    reason = ""
    if rec is None:
        reason = "unknown validator"
    elif rec.tombstoned:
        reason = "validator already tombstoned"
    elif height > ctx.height or height < 1:
        reason = f"infraction height {height} outside 1..{ctx.height}"
    elif time_ms + max_age_ms < ctx.time_ms:
        reason = "evidence older than the unbonding period"
    if rec is None or reason:
        ctx.emit("evidence_ignored", validator=pubkey, height=height, reason=reason)
        return
    rec, burned = staking.slash(ctx, rec, ctx.params.slash_double_sign_bps,
                                infraction_height=height)
    ctx.store.put_validator(_jail(rec, JAILED_FOREVER_MS, tombstone=True))
    ctx.emit("jail", validator=pubkey, reason="double_sign", jailed_until_ms=JAILED_FOREVER_MS,
             burned=burned, infraction_height=height)


def unjail(ctx: Context, msg: Unjail) -> None:
    rec = ctx.store.validator(ctx.pubkey)
    if rec is None:
        raise TxRejected(Code.UNKNOWN_VALIDATOR, f"no validator with key {ctx.pubkey.hex()}")
    if rec.tombstoned:
        raise TxRejected(Code.TOMBSTONED,
                         f"validator {ctx.pubkey.hex()} is tombstoned (double sign): it can"
                         " never unjail")
    if not rec.jailed:
        raise TxRejected(Code.NOT_JAILED, f"validator {ctx.pubkey.hex()} is not jailed")
    if ctx.time_ms < rec.jailed_until_ms:
        raise TxRejected(Code.JAILED,
                         f"validator {ctx.pubkey.hex()} is jailed until {rec.jailed_until_ms} ms"
                         f" (block time {ctx.time_ms} ms)")
    own = staking.token_value(rec, staking.delegation_shares(ctx.store, rec.pubkey, ctx.sender))
    if own < ctx.params.min_self_stake:
        raise TxRejected(Code.INSUFFICIENT_STAKE,
                         f"self delegation {own} uakt below the minimum"
                         f" {ctx.params.min_self_stake}")
    ctx.store.put_validator(attrs.evolve(rec, jailed=False, jailed_until_ms=0))
    reset_window(ctx, rec.pubkey)
    ctx.emit("unjail", validator=rec.pubkey)
