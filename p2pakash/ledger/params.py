"""Ledger parameters, fixed at genesis and stored in state (so they are part of the app hash).

Rules and invariants:
* Every parameter is an integer (no floats anywhere near consensus): fractions are basis
  points (1 bp = 0.01 %), durations are seconds of *block* time.
* Defaults follow Cosmos SDK x/staking and x/slashing (reference/consensus_gossip.md §A6):
  100 validators, 21-day unbonding, window 100, min signed 50 %, 600 s downtime jail,
  1 % downtime slash, 5 % double-sign slash. ``min_fee`` defaults to 0 for local nets.
* ``POWER_REDUCTION``: one unit of consensus power per bonded AKT (1,000,000 uakt), as on
  Cosmos chains; stake below one AKT gives power 0 and no seat.
"""

from __future__ import annotations

import attrs

from p2pakash import wire

UAKT_PER_AKT = 1_000_000
POWER_REDUCTION = UAKT_PER_AKT
BASIS_POINTS = 10_000


def _positive(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative integer, got {value!r}")


def _bps(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 0 <= value <= BASIS_POINTS:
        raise ValueError(f"{attribute.name} must be 0..{BASIS_POINTS} basis points, got {value!r}")


@wire.message(tag=240)
@attrs.frozen(kw_only=True)
class Params:
    max_validators: int = attrs.field(default=100, validator=_positive)
    unbonding_time_s: int = attrs.field(default=21 * 86_400, validator=_non_negative)
    min_fee: int = attrs.field(default=0, validator=_non_negative)
    max_tx_bytes: int = attrs.field(default=1_048_576, validator=_positive)
    min_self_stake: int = attrs.field(default=UAKT_PER_AKT, validator=_positive)
    signed_blocks_window: int = attrs.field(default=100, validator=_positive)
    min_signed_bps: int = attrs.field(default=5_000, validator=_bps)
    downtime_jail_s: int = attrs.field(default=600, validator=_non_negative)
    slash_downtime_bps: int = attrs.field(default=100, validator=_bps)
    slash_double_sign_bps: int = attrs.field(default=500, validator=_bps)

    @property
    def max_missed(self) -> int:
        """Jail when a validator missed *more* than this many of the last window blocks."""
        return self.signed_blocks_window - (
            self.signed_blocks_window * self.min_signed_bps // BASIS_POINTS)


PARAM_NAMES: tuple[str, ...] = tuple(f.name for f in attrs.fields(Params))
