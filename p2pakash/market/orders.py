"""Market IDs and the signed off-chain messages: Order, Bid, Decline (wire tags 300-310, 357-359).

Rules and invariants:
* IDs follow Akash: ``DeploymentID{owner, dseq}`` -> ``GroupID{+gseq}`` (gseq = index + 1 of
  the order's groups) -> ``OrderID{+oseq}`` (a tenant re-ordering a deployment bumps oseq)
  -> ``LeaseID{+provider}`` (== Akash's BidID with bseq 0; ``BidID`` is the same class).
* Each message is ``{body, pubkey, signature}``; the signature is ``key.sign(kind, chain_id,
  wire.encode(body))`` with kind "order", "bid" or "decline", and the signer's address must
  be the body's owner (order) or provider (bid, decline). ``verify_*`` checks both.
* An order carries its groups as ``OrderGroup`` (the SDL ``GroupSpec`` with a 64-bit-safe
  price: ``WirePrice{whole, frac_atto}``; ``to_spec``/``from_spec`` convert exactly).
* Prices are per block. Rule (Akash ``GroupSpec.Price``): a group's max price is
  sum(unit price x count); the chain pays integer uakt, so a bid's ``price`` is an integer
  uakt per block and must satisfy ``1 <= price <= floor(max)``. Only ``uakt`` is accepted.
* A bid names the exact order it answers (``order_digest`` = sha256 of the order body's
  encoding), so a bid can never be attached to another order with the same ID.
* ``body_bytes`` (the body's encoding, which the signature covers) and ``digest`` (its
  sha256) are computed once per message object and kept in slots (``functools.cached_property``
  on the slotted attrs class): not attrs fields, so never encoded, compared or hashed.
  Messages and their bodies are immutable, so they never go stale.
* ``check_*`` raise ``InvalidMarketMessage`` (a RemoteProtocolError) naming the field.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
from collections.abc import Sequence

import attrs

from p2pakash import crypto, wire
from p2pakash.errors import InvalidSignature, RemoteProtocolError, SDLError
from p2pakash.market.sdl.groups import GroupSpec, Requirements, ResourceUnit, validate_groups
from p2pakash.market.sdl.resources import Attribute, Price, Resources

CHAIN_DENOM = "uakt"
ATTO = 10**18
HASH_SIZE = 32
MAX_GROUPS = 20
MAX_UNITS = 20
MAX_ATTRIBUTES = 64
MAX_TEXT = 256
KEY_RE = re.compile(r"[a-zA-Z][\w/.\-]{1,126}[\w*]?", re.ASCII)  # Akash, wildcard allowed


class InvalidMarketMessage(RemoteProtocolError):
    """An order, bid or decline that breaks a rule; the message names the field."""


# ---------------------------------------------------------------- IDs


@wire.message(tag=300)
@attrs.frozen(kw_only=True, order=True)
class DeploymentID:
    owner: str
    dseq: int

    def __str__(self) -> str:
        return f"{self.owner}/{self.dseq}"


@wire.message(tag=301)
@attrs.frozen(kw_only=True, order=True)
class GroupID:
    owner: str
    dseq: int
    gseq: int

    @property
    def deployment(self) -> DeploymentID:
        return DeploymentID(owner=self.owner, dseq=self.dseq)

    def __str__(self) -> str:
        return f"{self.owner}/{self.dseq}/{self.gseq}"


@wire.message(tag=302)
@attrs.frozen(kw_only=True, order=True)
class OrderID:
    owner: str
    dseq: int
    gseq: int
    oseq: int

    @property
    def deployment(self) -> DeploymentID:
        return DeploymentID(owner=self.owner, dseq=self.dseq)

    @property
    def group(self) -> GroupID:
        return GroupID(owner=self.owner, dseq=self.dseq, gseq=self.gseq)

    def __str__(self) -> str:
        return f"{self.owner}/{self.dseq}/{self.gseq}/{self.oseq}"


@wire.message(tag=303)
@attrs.frozen(kw_only=True, order=True)
class LeaseID:
    owner: str
    dseq: int
    gseq: int
    oseq: int
    provider: str

    @property
    def deployment(self) -> DeploymentID:
        return DeploymentID(owner=self.owner, dseq=self.dseq)

    @property
    def group(self) -> GroupID:
        return GroupID(owner=self.owner, dseq=self.dseq, gseq=self.gseq)

    @property
    def order(self) -> OrderID:
        return OrderID(owner=self.owner, dseq=self.dseq, gseq=self.gseq, oseq=self.oseq)

    def __str__(self) -> str:
        return f"{self.owner}/{self.dseq}/{self.gseq}/{self.oseq}/{self.provider}"


BidID = LeaseID


# ---------------------------------------------------------------- groups on the wire


def _frac(_inst: object, _attr: object, value: int) -> None:
    if type(value) is not int or not 0 <= value < ATTO:
        raise ValueError(f"frac_atto must be in 0..10^18-1, got {value!r}")


@wire.message(tag=357)
@attrs.frozen(kw_only=True)
class WirePrice:
    """A per-block unit price: ``whole + frac_atto / 10^18`` of ``denom``."""

    denom: str
    whole: int
    frac_atto: int = attrs.field(default=0, validator=_frac)

    @property
    def amount_atto(self) -> int:
        return self.whole * ATTO + self.frac_atto

    @classmethod
    def from_price(cls, price: Price) -> WirePrice:
        whole, frac = divmod(price.amount_atto, ATTO)
        return cls(denom=price.denom, whole=whole, frac_atto=frac)

    def to_price(self) -> Price:
        return Price(denom=self.denom, amount_atto=self.amount_atto)


@wire.message(tag=358)
@attrs.frozen(kw_only=True)
class OrderUnit:
    resources: Resources
    count: int
    price: WirePrice


@wire.message(tag=359)
@attrs.frozen(kw_only=True)
class OrderGroup:
    """An SDL ``GroupSpec`` as it travels in an order (same fields, wire-safe price)."""

    name: str
    requirements: Requirements
    resources: tuple[OrderUnit, ...]

    @classmethod
    def from_spec(cls, spec: GroupSpec) -> OrderGroup:
        return cls(name=spec.name, requirements=spec.requirements, resources=tuple(
            OrderUnit(resources=u.resources, count=u.count, price=WirePrice.from_price(u.price))
            for u in spec.resources))

    def to_spec(self) -> GroupSpec:
        return GroupSpec(name=self.name, requirements=self.requirements, resources=tuple(
            ResourceUnit(resources=u.resources, count=u.count, price=u.price.to_price())
            for u in self.resources))

    @property
    def max_price_atto(self) -> int:
        """Akash ``GroupSpec.Price()``: sum of unit price x count, exact (10^-18 units)."""
        return sum(u.price.amount_atto * u.count for u in self.resources)

    @property
    def max_price(self) -> int:
        """The highest integer bid (uakt per block) this group admits."""
        return self.max_price_atto // ATTO


# ---------------------------------------------------------------- order


@wire.message(tag=304)
@attrs.frozen(kw_only=True)
class OrderBody:
    deployment: DeploymentID
    oseq: int
    groups: tuple[OrderGroup, ...]
    manifest_hash: bytes  # the SDL version hash (sha256 of the sorted manifest JSON)
    deposit: int  # uakt the tenant will move into escrow with the first lease
    expiry_ms: int  # bids are welcome until this time


@wire.message(tag=305)
@attrs.frozen(kw_only=True)
class Order:
    body: OrderBody
    pubkey: bytes
    signature: bytes

    @property
    def owner(self) -> str:
        return self.body.deployment.owner

    @functools.cached_property
    def body_bytes(self) -> bytes:
        """The body's canonical encoding (what the signature covers), computed once (a slot,
        not an attrs field: never on the wire, not in ``==`` or ``hash``)."""
        return wire.encode(self.body)

    @functools.cached_property
    def digest(self) -> bytes:
        """sha256 of the body's encoding (``wire.digest(body)``), computed once."""
        return hashlib.sha256(self.body_bytes).digest()

    def order_id(self, gseq: int) -> OrderID:
        d = self.body.deployment
        return OrderID(owner=d.owner, dseq=d.dseq, gseq=gseq, oseq=self.body.oseq)

    def group(self, gseq: int) -> OrderGroup:
        """The group with sequence ``gseq`` (1-based); InvalidMarketMessage if absent."""
        if not 1 <= gseq <= len(self.body.groups):
            raise InvalidMarketMessage(
                f"order {self.body.deployment} has no group {gseq} (it has "
                f"{len(self.body.groups)})")
        return self.body.groups[gseq - 1]


# ---------------------------------------------------------------- bid


@wire.message(tag=306)
@attrs.frozen(kw_only=True)
class OfferedUnit:
    """What a provider offers for one order unit: same id and count, concrete GPU keys."""

    resources: Resources
    count: int


@wire.message(tag=307)
@attrs.frozen(kw_only=True)
class BidBody:
    order: OrderID
    order_digest: bytes  # Order.digest of the order this bid answers
    provider: str
    price: int  # uakt per block for the whole group
    resources: tuple[OfferedUnit, ...]
    expiry_ms: int  # the provider holds this price until then


@wire.message(tag=308)
@attrs.frozen(kw_only=True)
class Bid:
    body: BidBody
    pubkey: bytes
    signature: bytes

    @property
    def provider(self) -> str:
        return self.body.provider

    @property
    def lease_id(self) -> LeaseID:
        o = self.body.order
        return LeaseID(owner=o.owner, dseq=o.dseq, gseq=o.gseq, oseq=o.oseq,
                       provider=self.body.provider)

    @functools.cached_property
    def body_bytes(self) -> bytes:
        """As ``Order.body_bytes``: computed once, never on the wire."""
        return wire.encode(self.body)

    @functools.cached_property
    def digest(self) -> bytes:
        """As ``Order.digest``: computed once, never on the wire."""
        return hashlib.sha256(self.body_bytes).digest()


# ---------------------------------------------------------------- decline


class DeclineReason(enum.IntEnum):
    UNSPECIFIED = 0
    NO_CAPACITY = 1
    ATTRIBUTE_MISMATCH = 2
    GPU_MODEL_UNAVAILABLE = 3
    PRICE_BELOW_COST = 4
    STORAGE_MISMATCH = 5
    SIGNED_BY_MISSING = 6


@wire.message(tag=309)
@attrs.frozen(kw_only=True)
class DeclineBody:
    order: OrderID
    order_digest: bytes
    provider: str
    reason: DeclineReason
    text: str  # one line for the tenant, at most 256 characters
    expiry_ms: int


@wire.message(tag=310)
@attrs.frozen(kw_only=True)
class Decline:
    body: DeclineBody
    pubkey: bytes
    signature: bytes

    @property
    def provider(self) -> str:
        return self.body.provider

    @functools.cached_property
    def body_bytes(self) -> bytes:
        """As ``Order.body_bytes``: computed once, never on the wire."""
        return wire.encode(self.body)


# ---------------------------------------------------------------- signing

Signed = Order | Bid | Decline
_KIND: dict[type, str] = {OrderBody: "order", BidBody: "bid", DeclineBody: "decline"}


def sign_order(key: crypto.PrivateKey, chain_id: str, body: OrderBody) -> Order:
    return Order(body=body, pubkey=key.public,
                 signature=key.sign("order", chain_id, wire.encode(body)))


def sign_bid(key: crypto.PrivateKey, chain_id: str, body: BidBody) -> Bid:
    return Bid(body=body, pubkey=key.public,
               signature=key.sign("bid", chain_id, wire.encode(body)))


def sign_decline(key: crypto.PrivateKey, chain_id: str, body: DeclineBody) -> Decline:
    return Decline(body=body, pubkey=key.public,
                   signature=key.sign("decline", chain_id, wire.encode(body)))


def signer(msg: Signed) -> str:
    """The address that must have signed ``msg``: the order's owner or the provider."""
    return msg.body.deployment.owner if isinstance(msg, Order) else msg.body.provider


def verify(msg: Signed, chain_id: str, cache: crypto.VerifyCache | None = None) -> None:
    """Raise InvalidSignature unless ``msg`` is signed by its owner/provider on ``chain_id``."""
    kind = _KIND[type(msg.body)]
    if len(msg.pubkey) != 32 or crypto.address(msg.pubkey) != signer(msg):
        raise InvalidSignature(f"{kind} signed by a key that is not {signer(msg)}'s")
    body = msg.body_bytes
    if cache is None:
        crypto.verify(msg.pubkey, kind, chain_id, body, msg.signature)
    else:
        cache.verify(msg.pubkey, kind, chain_id, body, msg.signature)


def make_order(key: crypto.PrivateKey, chain_id: str, *, dseq: int,
               groups: Sequence[GroupSpec], manifest_hash: bytes, deposit: int,
               expiry_ms: int, oseq: int = 1) -> Order:
    """Build, check and sign an order from SDL group specs (``SDL.groups()``)."""
    body = OrderBody(deployment=DeploymentID(owner=key.address, dseq=dseq), oseq=oseq,
                     groups=tuple(OrderGroup.from_spec(g) for g in groups),
                     manifest_hash=manifest_hash, deposit=deposit, expiry_ms=expiry_ms)
    check_order(body)
    return sign_order(key, chain_id, body)


# ---------------------------------------------------------------- checks


def _bad(what: str) -> InvalidMarketMessage:
    return InvalidMarketMessage(what)


def _address(value: str, where: str) -> None:
    try:
        crypto.address_bytes(value)
    except ValueError as exc:
        raise _bad(f"{where}: {exc}") from None


def _positive(value: int, where: str) -> None:
    if value < 1:
        raise _bad(f"{where} must be at least 1, got {value}")


def check_attributes(attributes: Sequence[Attribute], where: str, *,
                     key_re: re.Pattern[str] = KEY_RE) -> None:
    """Akash's attribute rules: key regexp, no duplicate keys; plus our size bounds."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise _bad(f"{where}: more than {MAX_ATTRIBUTES} attributes")
    seen: set[str] = set()
    for a in attributes:
        if not key_re.fullmatch(a.key):
            raise _bad(f"{where}: attribute key {a.key!r} does not match regexp")
        if a.key in seen:
            raise _bad(f"{where}: attributes cannot have duplicate keys ({a.key!r})")
        if len(a.value) > MAX_TEXT:
            raise _bad(f"{where}: attribute {a.key!r} value longer than {MAX_TEXT}")
        seen.add(a.key)


def check_order(body: OrderBody) -> None:
    """Stateless rules of an order; InvalidMarketMessage names the first broken one."""
    d = body.deployment
    _address(d.owner, "order owner")
    _positive(d.dseq, "order dseq")
    _positive(body.oseq, "order oseq")
    if len(body.manifest_hash) != HASH_SIZE:
        raise _bad(f"order manifest_hash must be {HASH_SIZE} bytes, got {len(body.manifest_hash)}")
    _positive(body.deposit, "order deposit")
    _positive(body.expiry_ms, "order expiry_ms")
    if not 1 <= len(body.groups) <= MAX_GROUPS:
        raise _bad(f"order must have 1..{MAX_GROUPS} groups, has {len(body.groups)}")
    names: set[str] = set()
    for gseq, group in enumerate(body.groups, start=1):
        where = f"order group {gseq} ({group.name!r})"
        if not group.name or len(group.name) > MAX_TEXT or group.name in names:
            raise _bad(f"{where}: group names must be unique, 1..{MAX_TEXT} characters")
        names.add(group.name)
        if not 1 <= len(group.resources) <= MAX_UNITS:
            raise _bad(f"{where}: must have 1..{MAX_UNITS} resource units")
        ids = [u.resources.id for u in group.resources]
        if len(set(ids)) != len(ids):
            raise _bad(f"{where}: duplicate resource unit ids {ids}")
        for unit in group.resources:
            if unit.price.denom != CHAIN_DENOM:
                raise _bad(f"{where}: price denom {unit.price.denom!r} is not supported; "
                           f"this chain pays in {CHAIN_DENOM}")
            _positive(unit.count, f"{where}: unit {unit.resources.id} count")
            _positive(unit.price.amount_atto, f"{where}: unit {unit.resources.id} price")
        if group.max_price < 1:
            raise _bad(f"{where}: max price below 1 {CHAIN_DENOM} per block")
        req = group.requirements
        check_attributes(req.attributes or (), f"{where}: placement")
        for auditor in (*(req.signed_by.all_of or ()), *(req.signed_by.any_of or ())):
            _address(auditor, f"{where}: signedBy")
    try:
        validate_groups(tuple(g.to_spec() for g in body.groups))
    except SDLError as exc:
        raise _bad(f"order groups: {exc}") from None


def check_bid(body: BidBody) -> None:
    """Stateless rules of a bid (the order-dependent ones need the order: ``matching.check_offer``
    and the price bound, applied by the validators, the chain and the tenant)."""
    _address(body.provider, "bid provider")
    _address(body.order.owner, "bid order owner")
    for name in ("dseq", "gseq", "oseq"):
        _positive(getattr(body.order, name), f"bid order {name}")
    if len(body.order_digest) != HASH_SIZE:
        raise _bad(f"bid order_digest must be {HASH_SIZE} bytes")
    _positive(body.price, "bid price")
    _positive(body.expiry_ms, "bid expiry_ms")
    if not 1 <= len(body.resources) <= MAX_UNITS:
        raise _bad(f"bid must offer 1..{MAX_UNITS} resource units")


def check_decline(body: DeclineBody) -> None:
    _address(body.provider, "decline provider")
    _address(body.order.owner, "decline order owner")
    if len(body.order_digest) != HASH_SIZE:
        raise _bad(f"decline order_digest must be {HASH_SIZE} bytes")
    if len(body.text) > MAX_TEXT or "\n" in body.text:
        raise _bad(f"decline text must be one line of at most {MAX_TEXT} characters")
    _positive(body.expiry_ms, "decline expiry_ms")
