"""The market's on-chain messages, state records and enums (wire tags 320-349).

Rules and invariants:
* Messages (320-328) are sent in ledger txs; their handlers are in ``ledger_market.py``.
  Records (337-341) are what the market keeps in state under ``mkt/``; escrow records
  (335-336) are in ``escrow.py``. Amounts are integer uakt; heights are block heights.
* Lease states and close reasons carry Akash's numbers (market/v1 ``types.proto``).
"""

from __future__ import annotations

import enum

import attrs

from p2pakash import wire
from p2pakash.market.escrow import EscrowAccount, Payment
from p2pakash.market.orders import Bid, DeploymentID, LeaseID, Order
from p2pakash.market.sdl.resources import Attribute


class LeaseState(enum.IntEnum):
    ACTIVE = 1
    INSUFFICIENT_FUNDS = 2
    CLOSED = 3


class LeaseCloseReason(enum.IntEnum):
    NONE = 0  # still active
    OWNER = 1
    UNSTABLE = 10000
    DECOMMISSION = 10001
    UNSPECIFIED = 10002
    MANIFEST_TIMEOUT = 10003
    INSUFFICIENT_FUNDS = 20000


PROVIDER_REASONS = frozenset({LeaseCloseReason.UNSTABLE, LeaseCloseReason.DECOMMISSION,
                              LeaseCloseReason.UNSPECIFIED, LeaseCloseReason.MANIFEST_TIMEOUT})


class DeploymentState(enum.IntEnum):
    ACTIVE = 1
    CLOSED = 2


# ---------------------------------------------------------------- messages


@wire.message(tag=320)
@attrs.frozen(kw_only=True)
class CreateProvider:
    host_uri: str
    attributes: tuple[Attribute, ...]
    bond: int  # uakt locked while registered (>= min_provider_bond)
    email: str = ""
    website: str = ""


@wire.message(tag=321)
@attrs.frozen(kw_only=True)
class UpdateProvider:
    host_uri: str
    attributes: tuple[Attribute, ...]
    bond: int  # the new total bond; the difference moves in or back out
    email: str = ""
    website: str = ""


@wire.message(tag=322)
@attrs.frozen(kw_only=True)
class SignProviderAttributes:
    """Sent by an auditor: it vouches for ``attributes`` of ``provider`` (merged by key)."""

    provider: str
    attributes: tuple[Attribute, ...]


@wire.message(tag=323)
@attrs.frozen(kw_only=True)
class DeleteProviderAttributes:
    provider: str
    keys: tuple[str, ...] = ()  # empty: all of this auditor's attributes


@wire.message(tag=324)
@attrs.frozen(kw_only=True)
class CreateLease:
    order: Order
    bid: Bid


@wire.message(tag=325)
@attrs.frozen(kw_only=True)
class Deposit:
    deployment: DeploymentID
    amount: int


@wire.message(tag=326)
@attrs.frozen(kw_only=True)
class Withdraw:
    lease: LeaseID


@wire.message(tag=327)
@attrs.frozen(kw_only=True)
class CloseLease:
    lease: LeaseID
    reason: LeaseCloseReason = LeaseCloseReason.OWNER


@wire.message(tag=328)
@attrs.frozen(kw_only=True)
class CloseDeployment:
    deployment: DeploymentID


# ---------------------------------------------------------------- records


@wire.message(tag=337)
@attrs.frozen(kw_only=True)
class MarketParams:
    min_deposit: int = 500_000  # deployment min_deposits (Akash default 0.5 AKT)
    min_provider_bond: int = 500_000  # mirrors Akash's bid_min_deposit


@wire.message(tag=338)
@attrs.frozen(kw_only=True)
class ProviderRec:
    owner: str
    host_uri: str
    attributes: tuple[Attribute, ...]
    bond: int
    email: str
    website: str
    created_at: int


@wire.message(tag=339)
@attrs.frozen(kw_only=True)
class AuditRec:
    provider: str
    auditor: str
    attributes: tuple[Attribute, ...]


@wire.message(tag=340)
@attrs.frozen(kw_only=True)
class DeploymentRec:
    id: DeploymentID
    state: DeploymentState
    manifest_hash: bytes
    created_at: int
    escrow: EscrowAccount
    closed_at: int = 0
    due_height: int = 0  # where this account sits in the overdraw index (0: nowhere)


@wire.message(tag=341)
@attrs.frozen(kw_only=True)
class LeaseRec:
    id: LeaseID
    state: LeaseState
    price: int  # uakt per block
    created_at: int
    payment: Payment
    order_digest: bytes
    closed_on: int = 0
    reason: LeaseCloseReason = LeaseCloseReason.NONE
