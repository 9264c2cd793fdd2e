"""Direct provider <-> tenant wire messages (tags 400-419), sent with ``GossipService.send_to``.

Rules and invariants:
* The tenant sends requests, the provider answers on the same authenticated link:
  ``SendManifest`` -> ``ManifestAck``; ``LeaseStatusRequest`` -> ``LeaseStatus``;
  ``LeaseLogsRequest`` -> ``LeaseLogs``. Both sides must ``register`` handlers for the
  messages they receive (gossip bans a peer that sends an unregistered type).
* Every request is signed by the lease's tenant: ``pubkey`` is the tenant's ed25519 key
  (its address must equal ``lease_id.owner``) and ``signature`` is
  ``key.sign(kind, chain_id, signing_body(msg))`` where ``signing_body`` is the wire encoding
  of the request with ``signature=b""`` and kind is "manifest", "lease-status" or
  "lease-logs". ``issued_ms`` (the tenant's clock, ms since the epoch) bounds replays: the
  provider refuses requests older or newer than ``REQUEST_WINDOW_MS``.
  Use ``sign_request(key, chain_id, msg)`` and ``verify_request(msg, chain_id, now_ms)``.
* ``SendManifest.manifest`` is the WHOLE deployment manifest in Akash's JSON shape (the
  list of groups, ``p2pakash.market.sdl.manifest_json(sdl)``), UTF-8 encoded; send it as
  ``version.sorted_json(manifest_json(sdl))``. The provider recomputes Akash's version hash
  (sha256 of the key-sorted JSON) and compares it with the order's ``manifest_hash``, then
  deploys the group whose name is the leased order group's name.
* Answers carry ``ok``/``error`` text (one line) instead of raising on the tenant's side.
  ``LeaseStatus.state`` is one of ``LEASE_STATES``.
"""

from __future__ import annotations

from typing import TypeVar

import attrs

from p2pakash import crypto, wire
from p2pakash.errors import InvalidSignature, RemoteProtocolError
from p2pakash.market.orders import LeaseID

REQUEST_WINDOW_MS = 5 * 60 * 1000
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_LOG_TAIL = 10_000

# pending: the lease is active, the manifest has not arrived; deploying: containers are
# being started; running/failed: what the executor reports; closed: the lease is over.
LEASE_STATES = ("pending", "deploying", "running", "failed", "closed")


@wire.message(tag=400)
@attrs.frozen(kw_only=True)
class SendManifest:
    lease_id: LeaseID
    manifest: bytes  # Akash manifest JSON (all groups), UTF-8
    issued_ms: int
    pubkey: bytes
    signature: bytes


@wire.message(tag=401)
@attrs.frozen(kw_only=True)
class ManifestAck:
    lease_id: LeaseID
    ok: bool
    error: str


@wire.message(tag=402)
@attrs.frozen(kw_only=True)
class LeaseStatusRequest:
    lease_id: LeaseID
    issued_ms: int
    pubkey: bytes
    signature: bytes


@wire.message(tag=403)
@attrs.frozen(kw_only=True)
class ReplicaStatus:
    """One container (service replica); ``ports`` pairs "<port>/<proto>" with the host port."""

    service: str
    replica: int
    state: str  # executor ContainerState value: running, exited, failed, ...
    ports: tuple[tuple[str, int], ...]
    error: str


@wire.message(tag=404)
@attrs.frozen(kw_only=True)
class LeaseStatus:
    lease_id: LeaseID
    state: str  # one of LEASE_STATES, or "" when the request was refused (see error)
    services: tuple[ReplicaStatus, ...]
    error: str


@wire.message(tag=405)
@attrs.frozen(kw_only=True)
class LeaseLogsRequest:
    lease_id: LeaseID
    service: str  # "" for every service
    tail: int  # the last ``tail`` lines per replica, 1..MAX_LOG_TAIL
    issued_ms: int
    pubkey: bytes
    signature: bytes


@wire.message(tag=406)
@attrs.frozen(kw_only=True)
class LogEntry:
    service: str
    replica: int
    stream: str  # "stdout" | "stderr"
    line: str


@wire.message(tag=407)
@attrs.frozen(kw_only=True)
class LeaseLogs:
    lease_id: LeaseID
    lines: tuple[LogEntry, ...]
    error: str  # "" when served


Request = SendManifest | LeaseStatusRequest | LeaseLogsRequest
R = TypeVar("R", SendManifest, LeaseStatusRequest, LeaseLogsRequest)
_KIND: dict[type, str] = {SendManifest: "manifest", LeaseStatusRequest: "lease-status",
                          LeaseLogsRequest: "lease-logs"}


class RefusedRequest(RemoteProtocolError):
    """A request the provider will not serve; the text is sent back to the requester."""


def signing_body(msg: Request) -> bytes:
    """The bytes a request's signature covers: its encoding with an empty signature."""
    return wire.encode(attrs.evolve(msg, signature=b""))


def sign_request(key: crypto.PrivateKey, chain_id: str, msg: R) -> R:
    """``msg`` with ``pubkey`` set to ``key``'s and signed for ``chain_id``."""
    unsigned = attrs.evolve(msg, pubkey=key.public, signature=b"")
    sig = key.sign(_KIND[type(msg)], chain_id, wire.encode(unsigned))
    return attrs.evolve(unsigned, signature=sig)


def verify_request(msg: Request, chain_id: str, now_ms: int) -> None:
    """Raise RefusedRequest unless the lease's tenant signed ``msg`` recently on ``chain_id``.

    This checks the signer only; whether the lease exists and belongs to this provider
    is the caller's check.
    """
    kind = _KIND[type(msg)]
    owner = msg.lease_id.owner
    if len(msg.pubkey) != 32 or crypto.address(msg.pubkey) != owner:
        raise RefusedRequest(f"{kind} request for lease {msg.lease_id} not signed by its tenant")
    if abs(now_ms - msg.issued_ms) > REQUEST_WINDOW_MS:
        raise RefusedRequest(f"{kind} request for lease {msg.lease_id} is stale "
                             f"(issued_ms {msg.issued_ms}, now {now_ms})")
    try:
        crypto.verify(msg.pubkey, kind, chain_id, signing_body(msg), msg.signature)
    except InvalidSignature:
        raise RefusedRequest(f"{kind} request for lease {msg.lease_id}: bad signature") from None
    if isinstance(msg, SendManifest) and len(msg.manifest) > MAX_MANIFEST_BYTES:
        raise RefusedRequest(f"manifest for lease {msg.lease_id} is larger than "
                             f"{MAX_MANIFEST_BYTES} bytes")
    if isinstance(msg, LeaseLogsRequest) and not 1 <= msg.tail <= MAX_LOG_TAIL:
        raise RefusedRequest(f"logs request tail must be 1..{MAX_LOG_TAIL}, got {msg.tail}")
