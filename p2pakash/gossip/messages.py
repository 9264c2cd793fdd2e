"""Wire messages of the gossip layer (tags 1-99).

Rules: tags are stable and never reused. Everything a peer sends after the handshake is
one ``Frame`` per encrypted transport frame, holding a batch of messages of any layer;
receivers dispatch on the type of each item. Topic and peer-address strings are
bounded here so a peer cannot make us hold large strings.
"""

from __future__ import annotations

import hashlib

import attrs

from p2pakash import wire

MAX_TOPIC_LEN = 64
MAX_IDS = 5000
MAX_ADDRS = 100
MSG_ID_LEN = 32


@wire.message(tag=1)
@attrs.frozen(kw_only=True)
class Frame:
    """A batch of messages sharing one transport frame."""

    items: tuple[object, ...]


@wire.message(tag=2)
@attrs.frozen(kw_only=True)
class Auth:
    """Second handshake message, sent encrypted: who I am, proven by a transcript signature."""

    pubkey: bytes
    signature: bytes
    chain_id: str = attrs.field(validator=wire.max_chars(MAX_TOPIC_LEN))
    listen_addr: str = attrs.field(validator=wire.max_chars(300))
    version: str = attrs.field(validator=wire.max_chars(MAX_TOPIC_LEN))


@wire.message(tag=3)
@attrs.frozen(kw_only=True)
class Ping:
    nonce: int


@wire.message(tag=4)
@attrs.frozen(kw_only=True)
class Pong:
    nonce: int


@wire.message(tag=5)
@attrs.frozen(kw_only=True)
class PexRequest:
    """Ask a peer for addresses it knows."""


@wire.message(tag=6)
@attrs.frozen(kw_only=True)
class PexAddrs:
    """Peer addresses as ``ID@host:port``."""

    addrs: tuple[str, ...] = attrs.field(validator=wire.max_items(MAX_ADDRS))


@wire.message(tag=7)
@attrs.frozen(kw_only=True)
class Subscribe:
    topic: str = attrs.field(validator=wire.max_chars(MAX_TOPIC_LEN))
    subscribe: bool


@wire.message(tag=8)
@attrs.frozen(kw_only=True)
class Publish:
    """A gossiped message. Its ID is the hash of its content (see ``message_id``)."""

    topic: str = attrs.field(validator=wire.max_chars(MAX_TOPIC_LEN))
    data: bytes


@wire.message(tag=9)
@attrs.frozen(kw_only=True)
class IHave:
    topic: str = attrs.field(validator=wire.max_chars(MAX_TOPIC_LEN))
    ids: tuple[bytes, ...] = attrs.field(validator=wire.max_items(MAX_IDS))


@wire.message(tag=10)
@attrs.frozen(kw_only=True)
class IWant:
    ids: tuple[bytes, ...] = attrs.field(validator=wire.max_items(MAX_IDS))


@wire.message(tag=11)
@attrs.frozen(kw_only=True)
class Graft:
    topic: str = attrs.field(validator=wire.max_chars(MAX_TOPIC_LEN))


@wire.message(tag=12)
@attrs.frozen(kw_only=True)
class Prune:
    topic: str = attrs.field(validator=wire.max_chars(MAX_TOPIC_LEN))
    backoff: int
    px: tuple[str, ...] = attrs.field(validator=wire.max_items(MAX_ADDRS))


@wire.message(tag=13)
@attrs.frozen(kw_only=True)
class IDontWant:
    """gossipsub v1.2: I already have these; do not send them to me."""

    ids: tuple[bytes, ...] = attrs.field(validator=wire.max_items(MAX_IDS))


@wire.message(tag=14)
@attrs.frozen(kw_only=True)
class Goodbye:
    """Sent before a deliberate disconnect (ban, shutdown), so the peer can log why."""

    reason: str = attrs.field(validator=wire.max_chars(200))


@wire.message(tag=15)
@attrs.frozen(kw_only=True)
class Reply:
    """An answer to message ``to``, sent back along the path ``to`` came (``replies.py``);
    delivered to the publisher of ``to`` as a message of ``topic``."""

    to: bytes = attrs.field(validator=attrs.validators.max_len(MSG_ID_LEN))
    topic: str = attrs.field(validator=wire.max_chars(MAX_TOPIC_LEN))
    data: bytes


def message_id(topic: str, data: bytes) -> bytes:
    """Content hash: the same topic and data always have the same ID, whoever sends it."""
    return hashlib.sha256(topic.encode() + b"\x00" + data).digest()
