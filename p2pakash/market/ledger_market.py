"""The market's on-chain handlers: providers, audits, leases and per-block escrow.

Rules and invariants:
* Orders and bids live off chain; ``CreateLease{order, bid}`` (sent by the order's owner)
  carries both signed messages and the chain checks everything Akash checks at MsgCreateBid
  and MsgCreateLease: both signatures, the bid answers this exact order (ID and digest),
  bid not expired at block time, ``price <= group max``, the offer covers the group
  (``matching.check_offer``), the provider is registered and its attributes, audits, storage
  classes and GPUs match (``matching.match_group``), the order ID never had a lease and the
  group has no active one. The first lease of a deployment opens its escrow account with
  the order's deposit (>= ``min_deposit``, default 0.5 AKT); later leases of the same
  deployment need the same manifest hash and draw on the same account.
* Money: deposits sit in the module account ``market_escrow``, provider bonds in
  ``market_bonds`` (both blocked for Send). Escrow module balance == sum over deployments of
  escrow balance + sum over leases of accrued payment balance, always.
* Settlement is lazy (escrow.py) and runs on every touch (CreateLease, Deposit, Withdraw,
  CloseLease, CloseDeployment). Overdraws are still found the block they happen: each open
  account is indexed under ``mkt/due/<due height><deployment>`` and the end blocker
  "market" settles only the accounts due at this height — a range scan, O(due) per block.
  An overdraw pays out the remainder, closes every active lease with state
  INSUFFICIENT_FUNDS / reason 20000 and closes the deployment, emitting ``lease_closed``
  (per lease), ``escrow_overdrawn`` and ``deployment_closed`` events.
* Messages, records and enums live in ``chain_types.py`` and are re-exported here.
* Close reasons are Akash's: a tenant closes with OWNER; a provider with UNSTABLE,
  DECOMMISSION, UNSPECIFIED or MANIFEST_TIMEOUT; INSUFFICIENT_FUNDS is the chain's alone.
* Keys (prefix ``mkt/``): ``params``; ``prov/<addr>``; ``aud/<provider>/<auditor>``;
  ``dep/<owner>/<dseq u64>``; ``lease/<owner>/<dseq u64><gseq u64><oseq u64><provider>``;
  ``grp/<owner>/<dseq><gseq>`` -> active LeaseID; ``ord/<owner>/<dseq><gseq><oseq>`` ->
  lease height; ``plea/<provider>/<lease key>`` -> LeaseID; ``due/<height u64><dep key>``.
"""

from __future__ import annotations

import re

import attrs

from p2pakash import crypto
from p2pakash.errors import InvalidSignature
from p2pakash.ledger import bank
from p2pakash.ledger.handlers import Context, register_end_blocker, register_msg
from p2pakash.ledger.state import Store, u64
from p2pakash.ledger.txs import Code, TxRejected
from p2pakash.market import escrow, matching
from p2pakash.market.chain_types import (
    PROVIDER_REASONS,
    AuditRec,
    CloseDeployment,
    CloseLease,
    CreateLease,
    CreateProvider,
    DeleteProviderAttributes,
    DeploymentRec,
    DeploymentState,
    Deposit,
    LeaseCloseReason,
    LeaseRec,
    LeaseState,
    MarketParams,
    ProviderRec,
    SignProviderAttributes,
    UpdateProvider,
    Withdraw,
)
from p2pakash.market.escrow import Payment, PaymentState
from p2pakash.market.orders import (
    MAX_TEXT,
    Bid,
    DeploymentID,
    GroupID,
    InvalidMarketMessage,
    LeaseID,
    Order,
    OrderID,
    check_attributes,
    check_bid,
    check_order,
    verify,
)
from p2pakash.market.sdl.resources import Attribute

__all__ = [
    "BONDS", "ESCROW", "PROVIDER_REASONS", "AuditRec", "CloseDeployment", "CloseLease",
    "CreateLease", "CreateProvider", "DeleteProviderAttributes", "DeploymentID",
    "DeploymentRec", "DeploymentState", "Deposit", "LeaseCloseReason", "LeaseID", "LeaseRec",
    "LeaseState", "LedgerView", "MarketParams", "ProviderRec", "SignProviderAttributes",
    "UpdateProvider", "Withdraw", "deployment_leases", "get_audits", "get_deployment",
    "get_lease", "get_provider", "market_params", "owner_deployments", "preview",
    "provider_leases", "set_market_params",
]

ESCROW = bank.module_address("market_escrow")
BONDS = bank.module_address("market_bonds")
PROVIDER_KEY_RE = re.compile(r"[a-zA-Z][\w/.\-]{1,126}", re.ASCII)  # no wildcard
_VERIFY = crypto.VerifyCache(capacity=20_000)


# ---------------------------------------------------------------- keys and queries

P = b"mkt/"
K_PARAMS = P + b"params"
P_DUE = P + b"due/"


def _dep_suffix(d: DeploymentID) -> bytes:
    return d.owner.encode() + b"/" + u64(d.dseq)


def _lease_suffix(lid: LeaseID) -> bytes:
    return _dep_suffix(lid.deployment) + u64(lid.gseq) + u64(lid.oseq) + lid.provider.encode()


def _group_key(g: GroupID) -> bytes:
    return P + b"grp/" + _dep_suffix(g.deployment) + u64(g.gseq)


def _order_key(o: OrderID) -> bytes:
    return P + b"ord/" + _dep_suffix(o.deployment) + u64(o.gseq) + u64(o.oseq)


def _due_key(height: int, d: DeploymentID) -> bytes:
    return P_DUE + u64(height) + _dep_suffix(d)


def market_params(store: Store) -> MarketParams:
    return store.get(K_PARAMS, MarketParams) or MarketParams()


def set_market_params(store: Store, params: MarketParams) -> None:
    """Genesis/tests: store the market parameters (defaults apply when absent)."""
    store.put(K_PARAMS, params)


def get_provider(store: Store, addr: str) -> ProviderRec | None:
    return store.get(P + b"prov/" + addr.encode(), ProviderRec)


def get_audits(store: Store, provider: str) -> dict[str, tuple[Attribute, ...]]:
    """auditor address -> the attributes it signed for ``provider``."""
    return {rec.auditor: rec.attributes
            for _, rec in store.scan(P + b"aud/" + provider.encode() + b"/", AuditRec)}


def get_deployment(store: Store, d: DeploymentID) -> DeploymentRec | None:
    return store.get(P + b"dep/" + _dep_suffix(d), DeploymentRec)


def get_lease(store: Store, lid: LeaseID) -> LeaseRec | None:
    return store.get(P + b"lease/" + _lease_suffix(lid), LeaseRec)


def deployment_leases(store: Store, d: DeploymentID) -> list[LeaseRec]:
    return [rec for _, rec in store.scan(P + b"lease/" + _dep_suffix(d), LeaseRec)]


def provider_leases(store: Store, provider: str) -> list[LeaseRec]:
    """Every lease ever won by ``provider`` (filter on ``state`` for the active ones)."""
    out = []
    for _, lid in store.scan(P + b"plea/" + provider.encode() + b"/", LeaseID):
        rec = get_lease(store, lid)
        if rec is not None:
            out.append(rec)
    return out


def owner_deployments(store: Store, owner: str) -> list[DeploymentRec]:
    return [rec for _, rec in store.scan(P + b"dep/" + owner.encode() + b"/", DeploymentRec)]


def preview(store: Store, d: DeploymentID, height: int) -> escrow.Settlement | None:
    """What settling deployment ``d`` at ``height`` would give (nothing is written)."""
    dep = get_deployment(store, d)
    if dep is None:
        return None
    return escrow.settle(dep.escrow, [rec.payment for rec in _active(store, d)], height)


@attrs.frozen
class LedgerView:
    """The read-only view gossip validators need, over a store (``Ledger.store``)."""

    store: Store

    def balance(self, address: str) -> int:
        return bank.balance(self.store, address)

    def provider(self, address: str) -> ProviderRec | None:
        return get_provider(self.store, address)

    def audits(self, provider: str) -> dict[str, tuple[Attribute, ...]]:
        return get_audits(self.store, provider)


# ---------------------------------------------------------------- internals


def _reject(text: str, code: Code = Code.INVALID_MSG) -> TxRejected:
    return TxRejected(code, text)


def _put_lease(store: Store, rec: LeaseRec) -> None:
    store.put(P + b"lease/" + _lease_suffix(rec.id), rec)


def _put_dep(store: Store, dep: DeploymentRec, payments: list[Payment]) -> DeploymentRec:
    """Write ``dep`` and move it in the overdraw index to its new due height."""
    due = escrow.due_height(dep.escrow, payments) or 0
    if dep.due_height and dep.due_height != due:
        store.delete(_due_key(dep.due_height, dep.id))
    if due:
        store.put(_due_key(due, dep.id), dep.id)
    dep = attrs.evolve(dep, due_height=due)
    store.put(P + b"dep/" + _dep_suffix(dep.id), dep)
    return dep


def _active(store: Store, d: DeploymentID) -> list[LeaseRec]:
    return [rec for rec in deployment_leases(store, d) if rec.state is LeaseState.ACTIVE]


def _close_lease(ctx: Context, rec: LeaseRec, state: LeaseState, reason: LeaseCloseReason,
                 pay_state: PaymentState) -> LeaseRec:
    """Pay out a settled lease's accrued balance and close it."""
    payment, amount = escrow.close_payment(rec.payment, pay_state)
    if amount:
        bank.transfer(ctx.store, ESCROW, rec.id.provider, amount)
    rec = attrs.evolve(rec, state=state, reason=reason, closed_on=ctx.height, payment=payment)
    _put_lease(ctx.store, rec)
    ctx.store.delete(_group_key(rec.id.group))
    lid = rec.id
    ctx.emit("lease_closed", owner=lid.owner, dseq=lid.dseq, gseq=lid.gseq, oseq=lid.oseq,
             provider=lid.provider, reason=int(reason), reason_name=reason.name.lower(),
             paid=amount)
    return rec


def _settle(ctx: Context, dep: DeploymentRec) -> tuple[DeploymentRec, list[LeaseRec]]:
    """Settle ``dep`` at this height; on overdraw close its leases and the deployment.

    Returns the deployment and its (still) active leases, all written back.
    """
    leases = _active(ctx.store, dep.id)
    result = escrow.settle(dep.escrow, [rec.payment for rec in leases], ctx.height)
    leases = [attrs.evolve(rec, payment=p) for rec, p in zip(leases, result.payments,
                                                             strict=True)]
    dep = attrs.evolve(dep, escrow=result.account)
    if not result.overdrawn:
        for rec in leases:
            _put_lease(ctx.store, rec)
        return _put_dep(ctx.store, dep, [rec.payment for rec in leases]), leases
    d = dep.id
    ctx.emit("escrow_overdrawn", owner=d.owner, dseq=d.dseq, height=ctx.height)
    for rec in leases:
        _close_lease(ctx, rec, LeaseState.INSUFFICIENT_FUNDS,
                     LeaseCloseReason.INSUFFICIENT_FUNDS, PaymentState.OVERDRAWN)
    dep = attrs.evolve(dep, state=DeploymentState.CLOSED, closed_at=ctx.height)
    ctx.emit("deployment_closed", owner=d.owner, dseq=d.dseq, reason="insufficient_funds")
    return _put_dep(ctx.store, dep, []), []


def _check_seqs(*values: int) -> None:
    if not all(1 <= v < 2**64 for v in values):
        raise _reject(f"sequence numbers must be 1..2^64-1, got {values}")


def _known_deployment(store: Store, d: DeploymentID) -> DeploymentRec:
    _check_seqs(d.dseq)
    dep = get_deployment(store, d)
    if dep is None:
        raise _reject(f"deployment {d} not found")
    return dep


def _known_lease(store: Store, lid: LeaseID) -> LeaseRec:
    _check_seqs(lid.dseq, lid.gseq, lid.oseq)
    rec = get_lease(store, lid)
    if rec is None:
        raise _reject(f"lease {lid} not found")
    return rec


# ---------------------------------------------------------------- providers and audits


def _check_provider_fields(msg: CreateProvider | UpdateProvider, params: MarketParams) -> None:
    uri = msg.host_uri
    if not uri or len(uri) > MAX_TEXT or any(c.isspace() for c in uri):
        raise _reject(f"host_uri must be 1..{MAX_TEXT} characters without spaces, got {uri!r}")
    if len(msg.email) > MAX_TEXT or len(msg.website) > MAX_TEXT:
        raise _reject(f"email and website are limited to {MAX_TEXT} characters")
    try:
        check_attributes(msg.attributes, "provider", key_re=PROVIDER_KEY_RE)
    except InvalidMarketMessage as exc:
        raise _reject(str(exc)) from None
    if msg.bond < params.min_provider_bond:
        raise _reject(f"provider bond {msg.bond} uakt is below the minimum "
                      f"{params.min_provider_bond}")


def create_provider(ctx: Context, msg: CreateProvider) -> None:
    store = ctx.store
    if get_provider(store, ctx.sender) is not None:
        raise _reject(f"provider {ctx.sender} already exists")
    _check_provider_fields(msg, market_params(store))
    bank.transfer(store, ctx.sender, BONDS, msg.bond)
    store.put(P + b"prov/" + ctx.sender.encode(), ProviderRec(
        owner=ctx.sender, host_uri=msg.host_uri, attributes=msg.attributes, bond=msg.bond,
        email=msg.email, website=msg.website, created_at=ctx.height))
    ctx.emit("provider_created", owner=ctx.sender, host_uri=msg.host_uri, bond=msg.bond)


def update_provider(ctx: Context, msg: UpdateProvider) -> None:
    store = ctx.store
    old = get_provider(store, ctx.sender)
    if old is None:
        raise _reject(f"provider {ctx.sender} not found")
    _check_provider_fields(msg, market_params(store))
    if msg.bond > old.bond:
        bank.transfer(store, ctx.sender, BONDS, msg.bond - old.bond)
    elif msg.bond < old.bond:
        bank.transfer(store, BONDS, ctx.sender, old.bond - msg.bond)
    store.put(P + b"prov/" + ctx.sender.encode(), attrs.evolve(
        old, host_uri=msg.host_uri, attributes=msg.attributes, bond=msg.bond, email=msg.email,
        website=msg.website))
    ctx.emit("provider_updated", owner=ctx.sender, host_uri=msg.host_uri, bond=msg.bond)


def sign_provider_attributes(ctx: Context, msg: SignProviderAttributes) -> None:
    store = ctx.store
    if get_provider(store, msg.provider) is None:
        raise _reject(f"provider {msg.provider} not found")
    if not msg.attributes:
        raise _reject("no attributes to sign")
    key = P + b"aud/" + msg.provider.encode() + b"/" + ctx.sender.encode()
    old = store.get(key, AuditRec)
    merged = {a.key: a for a in (old.attributes if old else ())}
    merged.update({a.key: a for a in msg.attributes})
    attributes = tuple(merged[k] for k in sorted(merged))
    try:
        check_attributes(msg.attributes, "signed attributes", key_re=PROVIDER_KEY_RE)
        check_attributes(attributes, "signed attributes", key_re=PROVIDER_KEY_RE)
    except InvalidMarketMessage as exc:
        raise _reject(str(exc)) from None
    store.put(key, AuditRec(provider=msg.provider, auditor=ctx.sender, attributes=attributes))
    ctx.emit("provider_attributes_signed", provider=msg.provider, auditor=ctx.sender,
             keys=",".join(a.key for a in msg.attributes))


def delete_provider_attributes(ctx: Context, msg: DeleteProviderAttributes) -> None:
    key = P + b"aud/" + msg.provider.encode() + b"/" + ctx.sender.encode()
    old = ctx.store.get(key, AuditRec)
    if old is None:
        raise _reject(f"no attributes of {msg.provider} signed by {ctx.sender}")
    kept = tuple(a for a in old.attributes if msg.keys and a.key not in msg.keys)
    if kept:
        ctx.store.put(key, attrs.evolve(old, attributes=kept))
    else:
        ctx.store.delete(key)
    ctx.emit("provider_attributes_deleted", provider=msg.provider, auditor=ctx.sender)


# ---------------------------------------------------------------- leases and escrow


def _check_lease_pair(ctx: Context, order: Order, bid: Bid) -> None:
    try:
        check_order(order.body)
        check_bid(bid.body)
    except InvalidMarketMessage as exc:
        raise _reject(str(exc)) from None
    if ctx.sender != order.owner:
        raise _reject(f"only the order's owner {order.owner} may create its lease")
    for what, msg in (("order", order), ("bid", bid)):
        try:
            verify(msg, ctx.chain_id, _VERIFY)
        except InvalidSignature as exc:
            raise _reject(f"{what} signature: {exc}", Code.BAD_SIGNATURE) from None
    oid = bid.body.order
    if (oid.deployment != order.body.deployment or oid.oseq != order.body.oseq
            or bid.body.order_digest != order.digest):
        raise _reject(f"bid answers order {oid}, not this order")
    try:
        group = order.group(oid.gseq)
    except InvalidMarketMessage as exc:
        raise _reject(str(exc)) from None
    if bid.body.expiry_ms < ctx.time_ms:
        raise _reject(f"bid expired at {bid.body.expiry_ms} ms (block time {ctx.time_ms} ms)")
    if bid.body.price > group.max_price:
        raise _reject(f"bid price {bid.body.price} uakt exceeds the group's max price "
                      f"{group.max_price} uakt per block")
    problem = matching.check_offer(group, bid.body.resources)
    if problem:
        raise _reject(f"bid does not match the order: {problem}")
    provider = get_provider(ctx.store, bid.provider)
    if provider is None:
        raise _reject(f"provider {bid.provider} is not registered")
    mismatch = matching.match_group(group, provider.attributes,
                                    get_audits(ctx.store, bid.provider))
    if mismatch is not None:
        raise _reject(f"provider does not match the order: {mismatch.text}")


def create_lease(ctx: Context, msg: CreateLease) -> None:
    order, bid = msg.order, msg.bid
    _check_lease_pair(ctx, order, bid)
    store, oid, lid = ctx.store, bid.body.order, bid.lease_id
    if store.get(_order_key(oid), int) is not None:
        raise _reject(f"order {oid} already had a lease")
    active = store.get(_group_key(oid.group), LeaseID)
    if active is not None:
        raise _reject(f"group {oid.group} already has an active lease with {active.provider}")
    dep = get_deployment(store, oid.deployment)
    if dep is None:
        params = market_params(store)
        if order.body.deposit < params.min_deposit:
            raise _reject(f"deposit {order.body.deposit} uakt is below the minimum "
                          f"{params.min_deposit}")
        bank.transfer(store, order.owner, ESCROW, order.body.deposit)
        dep = DeploymentRec(id=oid.deployment, state=DeploymentState.ACTIVE,
                            manifest_hash=order.body.manifest_hash, created_at=ctx.height,
                            escrow=escrow.open_account(order.body.deposit, ctx.height))
        ctx.emit("deployment_created", owner=oid.owner, dseq=oid.dseq,
                 deposit=order.body.deposit)
        leases: list[LeaseRec] = []
    else:
        if dep.state is not DeploymentState.ACTIVE:
            raise _reject(f"deployment {dep.id} is closed")
        if dep.manifest_hash != order.body.manifest_hash:
            raise _reject(f"order manifest hash differs from deployment {dep.id}'s")
        dep, leases = _settle(ctx, dep)
        if dep.state is not DeploymentState.ACTIVE:
            raise _reject(f"deployment {dep.id} escrow is overdrawn", Code.INSUFFICIENT_FUNDS)
    rec = LeaseRec(id=lid, state=LeaseState.ACTIVE, price=bid.body.price, created_at=ctx.height,
                   payment=Payment(rate=bid.body.price), order_digest=order.digest)
    _put_lease(store, rec)
    store.put(_group_key(oid.group), lid)
    store.put_int(_order_key(oid), ctx.height)
    store.put(P + b"plea/" + lid.provider.encode() + b"/" + _lease_suffix(lid), lid)
    _put_dep(store, dep, [*(r.payment for r in leases), rec.payment])
    ctx.emit("lease_created", owner=lid.owner, dseq=lid.dseq, gseq=lid.gseq, oseq=lid.oseq,
             provider=lid.provider, price=rec.price)


def deposit(ctx: Context, msg: Deposit) -> None:
    if msg.amount <= 0:
        raise _reject(f"deposit amount must be positive, got {msg.amount}")
    dep, leases = _settle(ctx, _known_deployment(ctx.store, msg.deployment))
    if dep.state is not DeploymentState.ACTIVE:
        raise _reject(f"deployment {dep.id} is closed")
    bank.transfer(ctx.store, ctx.sender, ESCROW, msg.amount)
    dep = attrs.evolve(dep, escrow=escrow.deposit(dep.escrow, msg.amount))
    _put_dep(ctx.store, dep, [rec.payment for rec in leases])
    ctx.emit("deposit", owner=dep.id.owner, dseq=dep.id.dseq, depositor=ctx.sender,
             amount=msg.amount, balance=dep.escrow.balance)


def withdraw(ctx: Context, msg: Withdraw) -> None:
    rec = _known_lease(ctx.store, msg.lease)
    if ctx.sender != rec.id.provider:
        raise _reject(f"only the lease's provider {rec.id.provider} may withdraw")
    if rec.state is not LeaseState.ACTIVE:
        raise _reject(f"lease {rec.id} is not active ({rec.state.name.lower()})")
    _, leases = _settle(ctx, _known_deployment(ctx.store, rec.id.deployment))
    for rec in leases:  # after an overdraw there are none: closing paid the provider
        if rec.id == msg.lease:
            payment, amount = escrow.withdraw(rec.payment)
            if amount:
                bank.transfer(ctx.store, ESCROW, rec.id.provider, amount)
            _put_lease(ctx.store, attrs.evolve(rec, payment=payment))
            ctx.emit("withdraw", lease=str(rec.id), provider=rec.id.provider, amount=amount)


def close_lease(ctx: Context, msg: CloseLease) -> None:
    rec = _known_lease(ctx.store, msg.lease)
    lid, reason = rec.id, msg.reason
    if ctx.sender == lid.owner:
        if reason is not LeaseCloseReason.OWNER:
            raise _reject(f"a tenant closes a lease with reason owner, not {reason.name.lower()}")
    elif ctx.sender == lid.provider:
        if reason not in PROVIDER_REASONS:
            raise _reject(f"a provider may not close a lease with reason {reason.name.lower()}")
    else:
        raise _reject(f"only the tenant or the provider may close lease {lid}")
    if rec.state is not LeaseState.ACTIVE:
        raise _reject(f"lease {lid} is not active ({rec.state.name.lower()})")
    dep, leases = _settle(ctx, _known_deployment(ctx.store, lid.deployment))
    remaining = []
    for rec in leases:
        if rec.id == lid:
            _close_lease(ctx, rec, LeaseState.CLOSED, reason, PaymentState.CLOSED)
        else:
            remaining.append(rec.payment)
    if dep.state is DeploymentState.ACTIVE:
        _put_dep(ctx.store, dep, remaining)


def close_deployment(ctx: Context, msg: CloseDeployment) -> None:
    dep = _known_deployment(ctx.store, msg.deployment)
    if ctx.sender != dep.id.owner:
        raise _reject(f"only the owner {dep.id.owner} may close deployment {dep.id}")
    if dep.state is not DeploymentState.ACTIVE:
        raise _reject(f"deployment {dep.id} is already closed")
    dep, leases = _settle(ctx, dep)
    if dep.state is not DeploymentState.ACTIVE:
        return  # the settlement overdrew it: already closed, providers paid
    for rec in leases:
        _close_lease(ctx, rec, LeaseState.CLOSED, LeaseCloseReason.OWNER, PaymentState.CLOSED)
    account, refund = escrow.close_account(dep.escrow)
    if refund:
        bank.transfer(ctx.store, ESCROW, dep.id.owner, refund)
    dep = attrs.evolve(dep, escrow=account, state=DeploymentState.CLOSED, closed_at=ctx.height)
    _put_dep(ctx.store, dep, [])
    ctx.emit("deployment_closed", owner=dep.id.owner, dseq=dep.id.dseq, reason="owner",
             refund=refund)


def end_block(ctx: Context) -> None:
    """Settle the accounts due to overdraw at this height (and only those)."""
    due = []
    for key, did in ctx.store.scan(P_DUE, DeploymentID):
        if int.from_bytes(key[len(P_DUE):len(P_DUE) + 8], "big") > ctx.height:
            break
        due.append(did)
    for did in due:
        dep = get_deployment(ctx.store, did)
        if dep is not None and dep.state is DeploymentState.ACTIVE:
            _settle(ctx, dep)


bank.block_address(ESCROW)
bank.block_address(BONDS)
register_msg(CreateProvider, create_provider)
register_msg(UpdateProvider, update_provider)
register_msg(SignProviderAttributes, sign_provider_attributes)
register_msg(DeleteProviderAttributes, delete_provider_attributes)
register_msg(CreateLease, create_lease)
register_msg(Deposit, deposit)
register_msg(Withdraw, withdraw)
register_msg(CloseLease, close_lease)
register_msg(CloseDeployment, close_deployment)
register_end_blocker("market", end_block)
