"""The secret connection's cryptography, sans-IO (modelled on CometBFT's SecretConnection).

Protocol (``tcp.py`` does the I/O, this module only computes):

1. Each side sends ``HELLO_SIZE`` bytes in clear: the 8-byte ``MAGIC`` (protocol name and
   version) and its 32-byte ephemeral X25519 public key. Anything else -> HandshakeError.
2. ``shared = X25519(own ephemeral private, peer ephemeral public)``; an all-zero result
   (a low-order point) or equal ephemeral keys -> HandshakeError. The transcript hash is
   ``sha256(DOMAIN + lower eph pub + higher eph pub + shared)``; HKDF-SHA256 over it gives
   96 bytes: the key for lower->higher frames, the key for higher->lower frames and the
   32-byte challenge. A side knows its send key by comparing its ephemeral key with the peer's.
3. Every later frame is ChaCha20-Poly1305-IETF with the nonce ``4 zero bytes + 8-byte
   little-endian counter``; each direction has its own key and counter, so a nonce is never
   reused. A counter at its maximum refuses to go on (the connection must close). On the wire
   a frame is a 4-byte big-endian ciphertext length followed by the ciphertext.
4. The first frame each way is the ``Auth`` message (see ``make_auth``/``check_auth``): the
   identity key signs the challenge (kind ``"handshake"``), proving who holds this session.

Invariants: a frame whose length exceeds ``max_frame + TAG_SIZE``, or that fails its tag
check, raises RemoteProtocolError and leaves the reader unusable (the caller closes the
connection). Replayed, reordered or dropped frames fail the tag check because the receive
counter does not match. Nothing here does I/O, reads a clock or uses module-level randomness
(ephemeral keys come from libsodium's CSPRNG).
"""

from __future__ import annotations

import hashlib
import hmac

import attrs
import nacl.bindings
import nacl.exceptions
from nacl._sodium import ffi, lib  # type: ignore[import-not-found]

from p2pakash import crypto, wire
from p2pakash.crypto import NodeID, PrivateKey
from p2pakash.errors import (
    DecodeError,
    HandshakeError,
    InvalidSignature,
    LocalProtocolError,
    RemoteProtocolError,
)
from p2pakash.gossip.messages import Auth

MAGIC = b"p2pak\x00\x01\x00"  # protocol name, NUL, version 1.0
HELLO_SIZE = len(MAGIC) + 32
DOMAIN = b"p2pakash/secret-connection/v1\x00"
TAG_SIZE = nacl.bindings.crypto_aead_chacha20poly1305_ietf_ABYTES  # 16
LENGTH_SIZE = 4
MAX_COUNTER = 2**64 - 1
HANDSHAKE_KIND = "handshake"

_NONCE_PREFIX = b"\x00\x00\x00\x00"
# PyNaCl's wrappers format their error texts on every call (about 5 us of 7); the frame path
# calls libsodium through PyNaCl's own cffi handle instead. Tests cross-check both ways.
_AEAD_ENCRYPT = lib.crypto_aead_chacha20poly1305_ietf_encrypt
_AEAD_DECRYPT = lib.crypto_aead_chacha20poly1305_ietf_decrypt
_NULL = ffi.NULL


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with SHA-256."""
    if length > 255 * 32:
        raise LocalProtocolError("HKDF-SHA256 output is at most 8160 bytes")
    prk = hmac.new(salt or b"\x00" * 32, ikm, hashlib.sha256).digest()
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


@attrs.frozen(kw_only=True, repr=False)
class Ephemeral:
    """An X25519 key pair used for one connection only."""

    private: bytes
    public: bytes

    @classmethod
    def generate(cls) -> Ephemeral:
        public, private = nacl.bindings.crypto_box_keypair()
        return cls(private=private, public=public)

    @classmethod
    def from_private(cls, private: bytes) -> Ephemeral:
        if len(private) != 32:
            raise LocalProtocolError("an X25519 private key is 32 bytes")
        return cls(private=private, public=nacl.bindings.crypto_scalarmult_base(private))

    def __repr__(self) -> str:
        return f"Ephemeral(public={self.public.hex()})"


def make_hello(ephemeral_public: bytes) -> bytes:
    """The clear-text opening message: magic and ephemeral public key."""
    if len(ephemeral_public) != 32:
        raise LocalProtocolError("an X25519 public key is 32 bytes")
    return MAGIC + ephemeral_public


def check_magic_prefix(data: bytes | bytearray) -> None:
    """Fail fast: raise HandshakeError as soon as the first bytes cannot be our magic."""
    head = bytes(data[: len(MAGIC)])
    if not MAGIC.startswith(head):
        raise HandshakeError(f"peer does not speak p2pakash (opening bytes {head!r})")


def parse_hello(data: bytes) -> bytes:
    """The peer's ephemeral public key from its ``HELLO_SIZE``-byte opening message."""
    if len(data) != HELLO_SIZE:
        raise HandshakeError(f"hello of {len(data)} bytes, expected {HELLO_SIZE}")
    check_magic_prefix(data)
    return data[len(MAGIC):]


@attrs.frozen(kw_only=True, repr=False)
class SessionKeys:
    send_key: bytes
    recv_key: bytes
    challenge: bytes

    def __repr__(self) -> str:
        return "SessionKeys(<secret>)"


def derive_session(ephemeral: Ephemeral, peer_public: bytes) -> SessionKeys:
    """Agree on the two frame keys and the challenge (both sides get mirror-image keys)."""
    if len(peer_public) != 32:
        raise HandshakeError("peer ephemeral key is not 32 bytes")
    if peer_public == ephemeral.public:
        raise HandshakeError("peer sent our own ephemeral key back")
    try:
        shared = nacl.bindings.crypto_scalarmult(ephemeral.private, peer_public)
    except nacl.exceptions.RuntimeError:  # libsodium refuses an all-zero result
        raise HandshakeError("peer ephemeral key is a low-order point") from None
    if not any(shared):
        raise HandshakeError("peer ephemeral key is a low-order point")
    we_are_low = ephemeral.public < peer_public
    low, high = (ephemeral.public, peer_public) if we_are_low else (peer_public, ephemeral.public)
    transcript = hashlib.sha256(DOMAIN + low + high + shared).digest()
    okm = hkdf_sha256(transcript, salt=DOMAIN, info=b"keys and challenge", length=96)
    low_to_high, high_to_low, challenge = okm[:32], okm[32:64], okm[64:]
    if we_are_low:
        return SessionKeys(send_key=low_to_high, recv_key=high_to_low, challenge=challenge)
    return SessionKeys(send_key=high_to_low, recv_key=low_to_high, challenge=challenge)


def _check_key(key: bytes) -> bytes:
    if type(key) is not bytes or len(key) != 32:
        raise LocalProtocolError("a frame key is 32 bytes")
    return key


def _nonce(counter: int) -> bytes:
    return _NONCE_PREFIX + counter.to_bytes(8, "little")


class FrameSealer:
    """Encrypts outgoing frames of one direction; the counter advances once per frame."""

    __slots__ = ("_key", "counter")

    def __init__(self, key: bytes, *, counter: int = 0) -> None:
        self._key = _check_key(key)
        self.counter = counter

    def seal(self, payload: bytes) -> bytes:
        """The wire bytes (length header and ciphertext) of one frame."""
        counter = self.counter
        if counter >= MAX_COUNTER:
            raise LocalProtocolError("send nonce counter exhausted; the connection must close")
        self.counter = counter + 1
        if type(payload) is not bytes:
            payload = bytes(payload)
        size = len(payload) + TAG_SIZE
        out = ffi.new("unsigned char[]", LENGTH_SIZE + size)
        ffi.memmove(out, size.to_bytes(4, "big"), LENGTH_SIZE)
        rc = _AEAD_ENCRYPT(out + LENGTH_SIZE, _NULL, payload, len(payload), _NULL, 0, _NULL,
                           _NONCE_PREFIX + counter.to_bytes(8, "little"), self._key)
        if rc != 0:  # libsodium documents none; never send what it did not seal
            raise LocalProtocolError(f"libsodium failed to encrypt (rc {rc})")
        data: bytes = ffi.buffer(out)[:]
        return data


class FrameReader:
    """Buffers incoming bytes of one direction and yields decrypted frames in order.

    ``feed`` the bytes as they arrive, then call ``next_frame`` until it returns None.
    ``wanted`` tells how many more bytes complete the pending frame (a read-size hint).
    """

    __slots__ = ("_buf", "_key", "_pos", "broken", "counter", "max_frame")

    def __init__(self, key: bytes, *, max_frame: int, counter: int = 0,
                 initial: bytes = b"") -> None:
        self._key = _check_key(key)
        self.max_frame = max_frame
        self.counter = counter
        self._buf = bytearray(initial)
        self._pos = 0
        self.broken = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    def wanted(self) -> int:
        avail = len(self._buf) - self._pos
        if avail < LENGTH_SIZE:
            return LENGTH_SIZE - avail
        length = int.from_bytes(self._buf[self._pos:self._pos + LENGTH_SIZE], "big")
        return max(0, LENGTH_SIZE + length - avail)

    def next_frame(self) -> bytes | None:
        """The next decrypted payload, None when more bytes are needed."""
        if self.broken:
            raise RemoteProtocolError("connection already failed")
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < LENGTH_SIZE:
            return None
        length = int.from_bytes(buf[pos:pos + LENGTH_SIZE], "big")
        if length > self.max_frame + TAG_SIZE or length < TAG_SIZE:
            self.broken = True
            raise RemoteProtocolError(
                f"frame of {length} bytes exceeds the limit of {self.max_frame + TAG_SIZE}"
                if length >= TAG_SIZE else f"frame of {length} bytes is shorter than its tag")
        end = pos + LENGTH_SIZE + length
        if len(buf) < end:
            return None
        ciphertext = bytes(buf[pos + LENGTH_SIZE:end])
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end > 65536:
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        counter = self.counter
        if counter >= MAX_COUNTER:
            self.broken = True
            raise RemoteProtocolError("receive nonce counter exhausted")
        size = length - TAG_SIZE
        out = ffi.new("unsigned char[]", size or 1)
        rc = _AEAD_DECRYPT(out, _NULL, _NULL, ciphertext, length, _NULL, 0, _nonce(counter),
                           self._key)
        if rc != 0:
            self.broken = True
            raise RemoteProtocolError(
                f"frame {counter} failed authentication (tampered, replayed or reordered)")
        self.counter = counter + 1
        payload: bytes = ffi.buffer(out, size)[:]
        return payload


# ---------------------------------------------------------------- Auth (first frame)


def make_auth(key: PrivateKey, chain_id: str, challenge: bytes, *, listen_addr: str,
              version: str) -> bytes:
    """The encoded ``Auth`` message proving that ``key`` holds this session."""
    return wire.encode(Auth(pubkey=key.public, signature=key.sign(HANDSHAKE_KIND, chain_id,
                                                                   challenge),
                            chain_id=chain_id, listen_addr=listen_addr, version=version))


def check_peer(*, local_id: NodeID, chain_id: str, peer_chain_id: str, peer_pubkey: bytes,
               expected: NodeID | None) -> NodeID:
    """The identity checks every transport applies; returns the peer's node ID."""
    if peer_chain_id != chain_id:
        raise HandshakeError(f"peer is on chain {peer_chain_id!r}, we are on {chain_id!r}")
    if len(peer_pubkey) != 32:
        raise HandshakeError(f"peer public key is {len(peer_pubkey)} bytes, expected 32")
    got = crypto.node_id(peer_pubkey)
    if got == local_id:
        raise HandshakeError("connected to ourselves")
    if expected is not None and got != expected:
        raise HandshakeError(f"dialled {expected} but reached {got}")
    return got


def check_auth(data: bytes, *, chain_id: str, challenge: bytes, local_id: NodeID,
               expected: NodeID | None) -> tuple[NodeID, Auth]:
    """Decode and verify the peer's ``Auth`` frame; HandshakeError names what is wrong."""
    try:
        auth = wire.decode(data, Auth, max_size=4096)
    except DecodeError as exc:
        raise HandshakeError(f"bad Auth message: {exc}") from None
    peer = check_peer(local_id=local_id, chain_id=chain_id, peer_chain_id=auth.chain_id,
                      peer_pubkey=auth.pubkey, expected=expected)
    try:
        crypto.verify(auth.pubkey, HANDSHAKE_KIND, chain_id, challenge, auth.signature)
    except InvalidSignature:
        raise HandshakeError(f"peer {peer} did not sign this session's challenge") from None
    return peer, auth


__all__ = [
    "DOMAIN", "HELLO_SIZE", "LENGTH_SIZE", "MAGIC", "MAX_COUNTER", "TAG_SIZE", "Ephemeral",
    "FrameReader", "FrameSealer", "SessionKeys", "check_auth", "check_magic_prefix",
    "check_peer", "derive_session", "hkdf_sha256", "make_auth", "make_hello", "parse_hello",
]
