"""Builders shared by the market tests: keys, an SDL in uakt, orders, bids, a chain."""

from __future__ import annotations

from typing import Any

import attrs

from p2pakash import crypto
from p2pakash.market import ledger_market as lm
from p2pakash.market import matching
from p2pakash.market.orders import (
    Bid,
    BidBody,
    DeploymentID,
    OfferedUnit,
    Order,
    make_order,
    sign_bid,
)
from p2pakash.market.sdl import SDL, parse_sdl
from p2pakash.market.sdl.resources import Attribute

CHAIN = "ledger-test"  # tests/ledger/helpers.CHAIN

SDL_TEXT = """
version: "2.0"
services:
  web:
    image: nginx
    expose:
      - port: 80
        to: [{global: true}]
    params:
      storage:
        data: {mount: /data}
profiles:
  compute:
    gpu1:
      resources:
        cpu: {units: 2}
        memory: {size: 4Gi}
        storage:
          - size: 1Gi
          - name: data
            size: 10Gi
            attributes: {persistent: true, class: beta3}
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: a100
                - model: h100
  placement:
    dc:
      attributes: {region: us-west}
      pricing:
        gpu1: {denom: uakt, amount: 1500}
deployment:
  web:
    dc: {profile: gpu1, count: 2}
"""

GPU_PROVIDER_ATTRS = (
    Attribute(key="region", value="us-west"),
    Attribute(key="capabilities/storage/1/class", value="beta3"),
    Attribute(key="capabilities/storage/1/persistent", value="true"),
    Attribute(key="capabilities/gpu/vendor/nvidia/model/h100", value="true"),
)
CPU_PROVIDER_ATTRS = (Attribute(key="region", value="eu-central"),)


def key(i: int) -> crypto.PrivateKey:
    return crypto.PrivateKey.from_seed(bytes([i + 1]) * 32)


def sdl(text: str = SDL_TEXT) -> SDL:
    return parse_sdl(text, source="test.yaml")


def order(owner: crypto.PrivateKey, *, dseq: int = 7, deposit: int = 5_000_000,
          expiry_ms: int = 2_000_000, oseq: int = 1, text: str = SDL_TEXT,
          chain: str = CHAIN) -> Order:
    doc = sdl(text)
    return make_order(owner, chain, dseq=dseq, groups=doc.groups(),
                      manifest_hash=doc.version_hash(), deposit=deposit, expiry_ms=expiry_ms,
                      oseq=oseq)


def bid(provider: crypto.PrivateKey, o: Order, *, price: int = 2000, gseq: int = 1,
        expiry_ms: int = 2_000_000, attributes: tuple[Attribute, ...] = GPU_PROVIDER_ATTRS,
        chain: str = CHAIN, **changes: Any) -> Bid:
    group = o.group(gseq)
    offer = matching.offer_for(group, attributes)
    assert offer is not None
    body = BidBody(order=o.order_id(gseq), order_digest=o.digest, provider=provider.address,
                   price=price, expiry_ms=expiry_ms,
                   resources=tuple(OfferedUnit(resources=r, count=c) for r, c in offer))
    return sign_bid(provider, chain, attrs.evolve(body, **changes))


def deployment_id(o: Order) -> DeploymentID:
    return o.body.deployment


def create_provider(attributes: tuple[Attribute, ...] = GPU_PROVIDER_ATTRS,
                    bond: int = 500_000) -> lm.CreateProvider:
    return lm.CreateProvider(host_uri="prov.example:8443", attributes=attributes, bond=bond)
