"""Signed notes: the simplest signed gossip message, for debugging and the demo.

A ``Note`` is a short text signed by its author's ed25519 key (domain "note", bound to
the chain ID). The topic validator rejects anything that does not decode as a Note or
whose signature fails, so a peer forwarding forged notes loses score and, in the end,
its connection.
"""

from __future__ import annotations

import attrs

from p2pakash import wire
from p2pakash.crypto import PrivateKey, VerifyCache, address
from p2pakash.errors import DecodeError, InvalidSignature
from p2pakash.gossip.pubsub import Validator, Verdict

TOPIC = "notes"
MAX_TEXT = 1000


@wire.message(tag=20)
@attrs.frozen(kw_only=True)
class Note:
    author: bytes
    text: str = attrs.field(validator=attrs.validators.max_len(MAX_TEXT))
    timestamp_ms: int
    nonce: int
    signature: bytes

    def body(self) -> bytes:
        return wire.encode((self.author, self.text, self.timestamp_ms, self.nonce))

    @property
    def author_address(self) -> str:
        return address(self.author)


def make_note(key: PrivateKey, chain_id: str, text: str, *, timestamp_ms: int,
              nonce: int) -> Note:
    unsigned = Note(author=key.public, text=text, timestamp_ms=timestamp_ms, nonce=nonce,
                    signature=b"")
    return attrs.evolve(unsigned, signature=key.sign("note", chain_id, unsigned.body()))


def note_validator(chain_id: str, cache: VerifyCache) -> Validator:
    def validate(peer: str, topic: str, data: bytes) -> Verdict:
        try:
            note = wire.decode(data, Note)
            cache.verify(note.author, "note", chain_id, note.body(), note.signature)
        except (DecodeError, InvalidSignature):
            return Verdict.REJECT
        return Verdict.ACCEPT

    return validate
