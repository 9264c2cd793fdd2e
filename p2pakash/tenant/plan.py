"""The tenant's pure steps: SDL -> order parts, bid screening, selection, JSON renderings.

Rules and invariants:
* ``prepare`` parses the SDL (Akash's messages, prefixed by the file name) and refuses a
  price in any denomination but ``uakt`` with one line naming the placement, the profile
  and the two fixes: change the SDL's ``denom`` to ``uakt``, or pass an explicit
  ``--denom-rate DENOM=UAKT_PER_UNIT``. A rate converts exactly (fractions, rounded down
  to 10^-18 uakt); the manifest (and so its version hash) carries no prices and is unchanged.
* ``screen_bid`` is the tenant's own check of a bid before it is shown or chosen: signed by
  its provider on this chain, answers this exact order (ID and digest) and an existing
  group, not expired, price within the group's max, offer covering the group, provider
  registered and matching the group (the same rules the chain applies to CreateLease).
* ``select`` returns one of the given bids or None: "cheapest" is the built-in rule; any
  other name asks that plugin's ``p2pakash_select_bid``; no name asks the plugin manager
  (whose built-in last resort is cheapest).
* Pure: no trio, clock or I/O; time arrives as ``now_ms``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Protocol

import attrs

from p2pakash import crypto
from p2pakash.errors import InvalidSignature, P2PAkashError, PluginError, SDLError
from p2pakash.market import matching
from p2pakash.market.orders import CHAIN_DENOM, Bid, Decline, LeaseID, Order, verify
from p2pakash.market.sdl import SDL, GroupSpec, manifest_json, parse_sdl
from p2pakash.market.sdl.resources import Attribute, Price
from p2pakash.market.sdl.version import sorted_json
from p2pakash.plugins.select_cheapest import cheapest

CHEAPEST = "cheapest"
GPU_PREFIX = "vendor/"


class TenantError(P2PAkashError):
    """A tenant operation that cannot go on; the message is one line for the user."""


class ProviderView(Protocol):
    def provider(self, address: str) -> Any: ...  # ProviderRec or None

    def audits(self, provider: str) -> Mapping[str, Sequence[Attribute]]: ...


class BidSelector(Protocol):
    def select_bid(self, order: Order, bids: Sequence[Bid]) -> Bid | None: ...

    def get_plugin(self, name: str) -> Any: ...

    def names(self) -> list[str]: ...


@attrs.frozen(kw_only=True)
class Prepared:
    sdl: SDL
    groups: tuple[GroupSpec, ...]  # prices in uakt
    manifest: bytes  # Akash manifest JSON, key-sorted (what the provider hashes)
    manifest_hash: bytes


# ---------------------------------------------------------------- SDL


def parse_rate(text: str) -> tuple[str, Fraction]:
    """``DENOM=UAKT_PER_UNIT`` (e.g. ``uact=0.25``) -> (denom, rate); TenantError if bad."""
    denom, sep, value = text.partition("=")
    denom = denom.strip()
    try:
        rate = Fraction(Decimal(value.strip()))
    except (InvalidOperation, ValueError):
        rate = Fraction(-1)
    if not sep or not denom or rate <= 0:
        raise TenantError(f"--denom-rate {text!r}: expected DENOM=UAKT_PER_UNIT with a "
                          f"positive number, e.g. uact=0.25")
    return denom, rate


def prepare(text: str, *, source: str = "<sdl>",
            denom_rates: Mapping[str, Fraction] | None = None) -> Prepared:
    """Parse and check an SDL for an order on this chain (see the module rules)."""
    sdl = parse_sdl(text, source=source)
    rates = dict(denom_rates or {})
    for name, placement in sdl.input.placement:
        for profile, price in placement.pricing:
            if price.denom != CHAIN_DENOM and price.denom not in rates:
                raise SDLError(
                    f"{source}: profiles.placement.{name}.pricing.{profile} is priced in "
                    f"{price.denom!r}, but this chain pays in {CHAIN_DENOM}: change its denom "
                    f"to {CHAIN_DENOM} (amount in {CHAIN_DENOM} per block), or convert "
                    f"explicitly with --denom-rate {price.denom}=<{CHAIN_DENOM} per "
                    f"{price.denom}>")
    groups = tuple(convert_group(g, rates) for g in sdl.groups())
    manifest = sorted_json(manifest_json(sdl))
    return Prepared(sdl=sdl, groups=groups, manifest=manifest,
                    manifest_hash=sdl.version_hash())


def convert_group(group: GroupSpec, rates: Mapping[str, Fraction]) -> GroupSpec:
    """``group`` with every unit price in uakt (exact, rounded down to 10^-18 uakt)."""
    units = []
    for unit in group.resources:
        price = unit.price
        if price.denom != CHAIN_DENOM:
            amount = Fraction(price.amount_atto) * rates[price.denom]
            price = Price(denom=CHAIN_DENOM, amount_atto=amount.numerator // amount.denominator)
        units.append(attrs.evolve(unit, price=price))
    return attrs.evolve(group, resources=tuple(units))


# ---------------------------------------------------------------- bids


def screen_bid(order: Order, bid: Bid, *, chain_id: str, now_ms: int, view: ProviderView,
               cache: crypto.VerifyCache | None = None) -> str | None:
    """Why the tenant refuses ``bid`` for ``order`` (None when it is acceptable)."""
    oid = bid.body.order
    if (oid.deployment != order.body.deployment or oid.oseq != order.body.oseq
            or bid.body.order_digest != order.digest):
        return "answers another order"
    if not 1 <= oid.gseq <= len(order.body.groups):
        return f"names group {oid.gseq}, the order has {len(order.body.groups)}"
    try:
        verify(bid, chain_id, cache)
    except InvalidSignature as exc:
        return f"bad signature: {exc}"
    if bid.body.expiry_ms <= now_ms:
        return "expired"
    group = order.group(oid.gseq)
    if bid.body.price > group.max_price:
        return f"price {bid.body.price} over the group's max {group.max_price}"
    problem = matching.check_offer(group, bid.body.resources)
    if problem is not None:
        return f"offer does not match: {problem}"
    rec = view.provider(bid.provider)
    if rec is None:
        return "provider is not registered on chain"
    mismatch = matching.match_group(group, rec.attributes, view.audits(bid.provider))
    if mismatch is not None:
        return f"provider does not match: {mismatch.text}"
    return None


def check_select(how: str | None, plugins: BidSelector | None) -> Callable[..., Any] | None:
    """The named plugin's ``p2pakash_select_bid`` (None for the built-in rules);
    TenantError naming the loaded plugins when there is no such plugin."""
    if how is None or how in ("", CHEAPEST):
        return None
    plugin = plugins.get_plugin(how) if plugins is not None else None
    hook = getattr(plugin, "p2pakash_select_bid", None)
    if not callable(hook):
        known = ", ".join(plugins.names()) if plugins is not None else "none loaded"
        raise TenantError(f"--select {how!r}: no plugin of that name implements "
                          f"p2pakash_select_bid (use 'cheapest'; plugins: {known})")
    return hook  # type: ignore[no-any-return]


def select(order: Order, bids: Sequence[Bid], how: str | None,
           plugins: BidSelector | None) -> Bid | None:
    """The bid to accept among ``bids`` (one group's); TenantError for an unknown plugin."""
    hook = check_select(how, plugins)
    if not bids:
        return None
    if hook is None:
        if how == CHEAPEST or plugins is None:
            return cheapest(bids)
        return plugins.select_bid(order, bids)
    try:
        chosen = hook(order=order, bids=bids)
    except Exception as exc:
        raise PluginError(f"plugin {how!r} raised in p2pakash_select_bid: "
                          f"{type(exc).__name__}: {exc}") from exc
    if chosen is not None and not any(chosen is b or chosen == b for b in bids):
        raise PluginError(f"plugin {how!r}: p2pakash_select_bid returned something that is "
                          f"not one of the offered bids")
    return chosen  # type: ignore[no-any-return]


def gpu_models(bid: Bid) -> list[str]:
    """The concrete GPU models a bid offers, e.g. ``["nvidia/h100"]`` (sorted, unique)."""
    out: set[str] = set()
    for unit in bid.body.resources:
        for attr in unit.resources.gpu.attributes:
            parts = attr.key.split("/")
            if len(parts) >= 4 and parts[0] == "vendor" and parts[2] == "model":
                out.add(f"{parts[1]}/{parts[3]}")
            else:
                out.add(attr.key)
    return sorted(out)


# ---------------------------------------------------------------- JSON


def lease_ref(lid: LeaseID) -> str:
    """The short lease name used by the API and CLI: ``DSEQ.GSEQ.OSEQ``."""
    return f"{lid.dseq}.{lid.gseq}.{lid.oseq}"


def parse_lease_ref(text: str) -> tuple[int, int, int]:
    """``DSEQ[.GSEQ[.OSEQ]]`` (dots or slashes; a full ``owner/d/g/o/provider`` too)."""
    parts = text.replace("/", ".").split(".")
    if len(parts) == 5 and parts[0].startswith("akash1"):
        parts = parts[1:4]
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() and 0 < len(p) <= 19 for p in parts):
        raise TenantError(f"invalid lease {text!r}: expected DSEQ[.GSEQ[.OSEQ]], e.g. 42.1.1")
    nums = [int(p) for p in parts] + [1] * (3 - len(parts))
    if not all(1 <= n < 2**64 for n in nums):
        raise TenantError(f"invalid lease {text!r}: numbers must be 1..2^64-1")
    return nums[0], nums[1], nums[2]


def bid_json(bid: Bid, elapsed_ms: int) -> dict[str, Any]:
    return {"event": "bid", "dseq": bid.body.order.dseq, "gseq": bid.body.order.gseq,
            "provider": bid.provider, "price": bid.body.price, "gpus": gpu_models(bid),
            "expiry_ms": bid.body.expiry_ms, "elapsed_ms": elapsed_ms}


def decline_json(decline: Decline, elapsed_ms: int) -> dict[str, Any]:
    return {"event": "decline", "dseq": decline.body.order.dseq,
            "gseq": decline.body.order.gseq, "provider": decline.provider,
            "reason": decline.body.reason.name.lower(), "text": decline.body.text,
            "elapsed_ms": elapsed_ms}


def order_json(order: Order, prepared: Prepared) -> dict[str, Any]:
    b = order.body
    return {"event": "order", "owner": order.owner, "dseq": b.deployment.dseq, "oseq": b.oseq,
            "manifest_hash": b.manifest_hash.hex(), "deposit": b.deposit,
            "expiry_ms": b.expiry_ms, "sdl_version": prepared.sdl.version,
            "groups": [{"gseq": i, "name": g.name, "max_price": g.max_price,
                        "units": len(g.resources)} for i, g in enumerate(b.groups, start=1)]}
