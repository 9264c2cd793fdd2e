"""Keys, identities and domain-separated signatures.

Rules and invariants:
* Identity keys are ed25519 (PyNaCl). A node ID is the lowercase hex of the first 20
  bytes of sha256(public key), as CometBFT does; an account address is the same 20 bytes
  in bech32 with the prefix ``akash``.
* Every signature covers ``b"p2pakash/<kind>/v1\\x00" + chain_id + b"\\x00" + body``: a
  signature made for one kind of message or one chain never verifies for another.
* Key files are written with mode 0600 and refused when group or others can read them.
* Nothing here reads a clock or module-level randomness; ``PrivateKey.from_seed`` makes
  deterministic keys for simulations.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import stat
from collections import OrderedDict
from pathlib import Path
from typing import NewType

import bech32
import nacl.exceptions
import nacl.signing

from p2pakash.errors import InvalidSignature, KeyFileError, LocalProtocolError

PublicKey = NewType("PublicKey", bytes)  # 32 bytes, ed25519
NodeID = NewType("NodeID", str)  # 40 lowercase hex characters
Address = NewType("Address", str)  # bech32, prefix "akash"

ADDRESS_PREFIX = "akash"
SIGNATURE_SIZE = 64
_KIND = re.compile(r"^[a-z][a-z0-9-]*$")
_NODE_ID = re.compile(r"^[0-9a-f]{40}$")


def signing_bytes(kind: str, chain_id: str, body: bytes) -> bytes:
    """The exact bytes a signature of ``kind`` on ``chain_id`` covers."""
    if not _KIND.fullmatch(kind):
        raise LocalProtocolError(f"bad signature domain {kind!r}")
    if "\x00" in chain_id:
        raise LocalProtocolError("chain ID may not contain NUL")
    return b"p2pakash/" + kind.encode() + b"/v1\x00" + chain_id.encode() + b"\x00" + body


class PrivateKey:
    """An ed25519 signing key. Never logged: repr shows only the node ID."""

    __slots__ = ("_key", "public")

    def __init__(self, key: nacl.signing.SigningKey) -> None:
        self._key = key
        self.public = PublicKey(bytes(key.verify_key))

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        if len(seed) != 32:
            raise LocalProtocolError("an ed25519 seed is 32 bytes")
        return cls(nacl.signing.SigningKey(seed))

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    @property
    def node_id(self) -> NodeID:
        return node_id(self.public)

    @property
    def address(self) -> Address:
        return address(self.public)

    def sign(self, kind: str, chain_id: str, body: bytes) -> bytes:
        return self._key.sign(signing_bytes(kind, chain_id, body)).signature

    def sign_raw(self, data: bytes) -> bytes:
        """Sign bytes that already carry their own domain (the transport handshake)."""
        return self._key.sign(data).signature

    def __repr__(self) -> str:
        return f"PrivateKey(node_id={self.node_id})"


def _id_bytes(public: bytes) -> bytes:
    return hashlib.sha256(public).digest()[:20]


@functools.lru_cache(maxsize=65536)
def node_id(public: bytes) -> NodeID:
    return NodeID(_id_bytes(public).hex())


@functools.lru_cache(maxsize=65536)  # bech32 is slow and accounts recur: a pure function
def address(public: bytes) -> Address:
    words = bech32.convertbits(_id_bytes(public), 8, 5)
    assert words is not None  # 20 bytes always convert
    return Address(bech32.bech32_encode(ADDRESS_PREFIX, words))


@functools.lru_cache(maxsize=65536)
def address_bytes(addr: str) -> bytes:
    """The 20 bytes behind a bech32 ``akash1...`` address; ValueError when it is not one."""
    hrp, data = bech32.bech32_decode(addr)
    if hrp != ADDRESS_PREFIX or data is None:
        raise ValueError(f"not an {ADDRESS_PREFIX} bech32 address: {addr!r}")
    raw = bech32.convertbits(data, 5, 8, False)
    if raw is None or len(raw) != 20:
        raise ValueError(f"address {addr!r} does not hold 20 bytes")
    return bytes(raw)


def is_node_id(text: str) -> bool:
    return bool(_NODE_ID.fullmatch(text))


def verify(public: bytes, kind: str, chain_id: str, body: bytes, signature: bytes) -> None:
    """Raise InvalidSignature unless ``signature`` is ``public``'s over (kind, chain, body)."""
    verify_raw(public, signing_bytes(kind, chain_id, body), signature)


def verify_raw(public: bytes, data: bytes, signature: bytes) -> None:
    if len(public) != 32 or len(signature) != SIGNATURE_SIZE:
        raise InvalidSignature("malformed public key or signature")
    try:
        nacl.signing.VerifyKey(public).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        raise InvalidSignature("signature does not verify") from None


class VerifyCache:
    """Remembers signatures that verified, so each is checked at most once.

    Verification is a pure function, so one cache may serve every node of a process
    (a simulation). Only successes are cached; the key covers key, bytes and signature.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def verify(
        self, public: bytes, kind: str, chain_id: str, body: bytes, signature: bytes
    ) -> None:
        data = signing_bytes(kind, chain_id, body)
        key = hashlib.sha256(public + signature + data).digest()
        if key in self._seen:
            self.hits += 1
            self._seen.move_to_end(key)
            return
        self.misses += 1
        verify_raw(public, data, signature)
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


# ---------------------------------------------------------------- key files


def save_key(path: Path, key: PrivateKey) -> None:
    """Write a key file readable only by its owner; never overwrite an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"type": "ed25519", "seed": key.seed.hex(), "node_id": key.node_id,
           "address": key.address}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: key file already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def load_key(path: Path) -> PrivateKey:
    """Read a key file; refuse it when group or others may read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: key file is accessible by group/others (mode {stat.S_IMODE(mode):04o});"
            f" run: chmod 600 {path}")
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or doc.get("type") != "ed25519":
            raise ValueError("type must be 'ed25519'")
        seed = bytes.fromhex(doc["seed"])
        key = PrivateKey.from_seed(seed)
    except (ValueError, KeyError, TypeError, LocalProtocolError) as exc:
        raise KeyFileError(f"{path}: malformed key file ({exc})") from None
    return key
