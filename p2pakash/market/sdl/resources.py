"""Resource values shared by manifests and deployment groups, and their Akash JSON shape.

Rules and invariants:
* Values are frozen attrs holding only int, str, bool, None, IntEnum and tuples, so they
  can be embedded in signed wire messages without conversion: Attribute, SignedBy,
  Endpoint, StorageVolume, GPU and Resources are wire messages (tags 350-355; orders carry
  them). ``Price`` is not: ``amount_atto`` exceeds 64 bits (see ``market/orders.py``).
* ``Price`` keeps the amount exactly as Akash's LegacyDec does: an integer count of
  10^-18 of the denom (``amount_atto``). ``amount`` is its 18-decimal text, ``whole`` the
  integer part (micro-denom per block for ``uakt``/``uact``).
* ``*_json`` functions return exactly what Go's ``json.Marshal`` gives for the matching
  Akash types (chain-sdk ``types/resources/v1beta4``): empty attribute lists are omitted,
  an endpoint's ``kind`` is omitted when it is SHARED_HTTP (0), quantities are strings.
"""

from __future__ import annotations

import enum
import re
from typing import Any

import attrs

from p2pakash import wire
from p2pakash.market.sdl.units import format_dec, parse_dec

DENOM_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9/:._-]{2,127}")


@wire.message(tag=350)
@attrs.frozen(kw_only=True)
class Attribute:
    key: str
    value: str


Attributes = tuple[Attribute, ...]


def attributes_json(attributes: Attributes) -> list[dict[str, str]]:
    return [{"key": a.key, "value": a.value} for a in attributes]


@wire.message(tag=351)
@attrs.frozen(kw_only=True)
class SignedBy:
    """Auditors whose signatures a provider's attributes need. None is Go's nil list."""

    all_of: tuple[str, ...] | None = None
    any_of: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class Price:
    """A per-block price: ``amount_atto`` is the amount in 10^-18 units of ``denom``."""

    denom: str
    amount_atto: int

    @classmethod
    def parse(cls, denom: str, amount: str) -> Price:
        """A price from its decimal text, e.g. ``Price.parse("uakt", "1000")``."""
        return cls(denom=denom, amount_atto=parse_dec(amount))

    @property
    def amount(self) -> str:
        """The exact amount with 18 decimals, as Akash prints it."""
        return format_dec(self.amount_atto)

    @property
    def whole(self) -> int:
        """The integer part of the amount (floor)."""
        return self.amount_atto // 10**18

    def to_json(self) -> dict[str, str]:
        return {"denom": self.denom, "amount": self.amount}


class EndpointKind(enum.IntEnum):
    SHARED_HTTP = 0
    RANDOM_PORT = 1
    LEASED_IP = 2


@wire.message(tag=352)
@attrs.frozen(kw_only=True)
class Endpoint:
    kind: EndpointKind
    sequence_number: int = 0

    def to_json(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.kind != EndpointKind.SHARED_HTTP:
            out["kind"] = int(self.kind)
        out["sequence_number"] = self.sequence_number
        return out


@wire.message(tag=353)
@attrs.frozen(kw_only=True)
class StorageVolume:
    name: str
    size: int
    attributes: Attributes = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "size": {"val": str(self.size)}}
        if self.attributes:
            out["attributes"] = attributes_json(self.attributes)
        return out


@wire.message(tag=354)
@attrs.frozen(kw_only=True)
class GPU:
    """GPU units and attribute keys like ``vendor/nvidia/model/a100/ram/80Gi`` = ``true``."""

    units: int = 0
    attributes: Attributes = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"units": {"val": str(self.units)}}
        if self.attributes:
            out["attributes"] = attributes_json(self.attributes)
        return out


@wire.message(tag=355)
@attrs.frozen(kw_only=True)
class Resources:
    """One resource unit's shape: CPU in millicpu, memory and storage in bytes."""

    id: int
    cpu_millis: int
    memory_bytes: int
    storage: tuple[StorageVolume, ...]
    gpu: GPU = GPU()
    endpoints: tuple[Endpoint, ...] = ()
    cpu_attributes: Attributes = ()

    def to_json(self) -> dict[str, Any]:
        cpu: dict[str, Any] = {"units": {"val": str(self.cpu_millis)}}
        if self.cpu_attributes:
            cpu["attributes"] = attributes_json(self.cpu_attributes)
        return {
            "id": self.id,
            "cpu": cpu,
            "memory": {"size": {"val": str(self.memory_bytes)}},
            "storage": [volume.to_json() for volume in self.storage],
            "gpu": self.gpu.to_json(),
            "endpoints": [endpoint.to_json() for endpoint in self.endpoints],
        }


def sort_endpoints(endpoints: list[Endpoint]) -> tuple[Endpoint, ...]:
    """Go's sort.Sort(Endpoints) (by sequence number; stable, as Go is for <= 12 items)."""
    return tuple(sorted(endpoints, key=lambda e: e.sequence_number))
