"""Fuzz the secret connection: frame decoding (length header, AEAD) and the handshake.

Properties:
* ``FrameReader`` fed any bytes in any chunking yields only payloads that were sealed with
  its key, in order, or raises RemoteProtocolError (and stays broken); while it waits for
  more bytes, ``wanted()`` never asks for more than one maximal frame, so a declared
  length can never become a huge read or allocation.
* The real handshake of ``TcpTransport`` (hello, key agreement, the Auth frame) run against
  a peer that sends fuzz bytes — raw garbage, or a valid hello followed by sealed mutated
  Auth messages or unsealed garbage — ends in HandshakeError or, only for a valid Auth, a
  connection; never another exception, and never past the (virtual) handshake timeout.
"""

from __future__ import annotations

import itertools

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from p2pakash import wire
from p2pakash.crypto import PrivateKey
from p2pakash.errors import HandshakeError, RemoteProtocolError
from p2pakash.gossip import secret
from p2pakash.gossip.messages import Auth
from p2pakash.gossip.tcp import TcpConnection, TcpTransport
from tests.fuzz.cbor_gen import mutated
from tests.fuzz.support import bounded_memory, fuzz_settings, only_ours

KEY = bytes(range(32))
MAX_FRAME = 1024
CHAIN = "fuzz-chain"
LOCAL = PrivateKey.from_seed(b"\x01" * 32)
PEER = PrivateKey.from_seed(b"\x02" * 32)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def drain(reader: secret.FrameReader, chunks: list[bytes]) -> list[bytes]:
    """Feed ``chunks``, collect frames; stop at the first RemoteProtocolError."""
    out: list[bytes] = []
    for chunk in chunks:
        reader.feed(chunk)
        for _ in range(len(chunk) + 1):  # at most one frame per byte fed, plus the None
            frame = only_ours(reader.next_frame, allowed=(RemoteProtocolError,))
            if frame is None:
                if reader.broken:
                    return out
                limit = secret.LENGTH_SIZE + reader.max_frame + secret.TAG_SIZE
                assert 0 < reader.wanted() <= limit
                break
            out.append(frame)
    return out


@fuzz_settings(300)
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6))
def test_frame_reader_random_bytes(data: bytes, cuts: list[int]) -> None:
    reader = secret.FrameReader(KEY, max_frame=MAX_FRAME)
    assert drain(reader, chunked(data, cuts)) == []  # forging a tag is not on the table


@fuzz_settings(300)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=5), st.data())
def test_frame_reader_tampered_stream(payloads: list[bytes], data: st.DataObject) -> None:
    sealer = secret.FrameSealer(KEY)
    stream = b"".join(sealer.seal(p) for p in payloads)
    bad = data.draw(mutated(stream) | st.just(stream), label="stream")
    cuts = data.draw(st.lists(st.integers(0, len(bad) + 1), max_size=6), label="cuts")
    reader = secret.FrameReader(KEY, max_frame=MAX_FRAME)
    got = drain(reader, chunked(bad, cuts))
    assert got == payloads[:len(got)]  # only what was sealed, in order
    if bad == stream:
        assert got == payloads


@fuzz_settings(100)
@given(st.sampled_from([MAX_FRAME + secret.TAG_SIZE + 1, 2**31, 2**32 - 1]),
       st.binary(max_size=64))
def test_frame_reader_declared_length_is_refused_without_allocating(length: int,
                                                                   tail: bytes) -> None:
    reader = secret.FrameReader(KEY, max_frame=MAX_FRAME)
    with bounded_memory(64 << 10):
        assert drain(reader, [length.to_bytes(4, "big") + tail]) == []
    assert reader.broken


@fuzz_settings(300)
@given(st.binary(max_size=80), st.binary(min_size=32, max_size=32))
def test_hello_parsing(data: bytes, own_seed: bytes) -> None:
    only_ours(secret.check_magic_prefix, data, allowed=(HandshakeError,))
    peer_public = only_ours(secret.parse_hello, data, allowed=(HandshakeError,))
    if peer_public is not None:
        eph = secret.Ephemeral.from_private(own_seed)
        only_ours(secret.derive_session, eph, peer_public, allowed=(HandshakeError,))


# ---------------------------------------------------------------- the whole handshake


async def _peer(stream: trio.testing.MemoryStreamPair, script: list[object]) -> None:
    """Play a hostile peer: raw bytes, or ("hello",) then ("sealed", payload) steps."""
    ephemeral = secret.Ephemeral.from_private(b"\x07" * 32)
    keys: secret.SessionKeys | None = None
    sealer: secret.FrameSealer | None = None
    for step in script:
        if isinstance(step, bytes):
            await stream.send_all(step)
        elif step == "hello":
            await stream.send_all(secret.make_hello(ephemeral.public))
            buf = b""
            while len(buf) < secret.HELLO_SIZE:
                data = await stream.receive_some(4096)
                if not data:
                    return
                buf += data
            keys = secret.derive_session(ephemeral, buf[8:secret.HELLO_SIZE])
            sealer = secret.FrameSealer(keys.send_key)
        elif isinstance(step, tuple) and sealer is not None and keys is not None:
            payload = step[1]
            if step[0] == "flip":  # a valid Auth for this session with one bit flipped
                auth = bytearray(secret.make_auth(PEER, CHAIN, keys.challenge,
                                                  listen_addr="10.0.0.1:26656", version="x"))
                position, bit = step[1], step[2]
                if position >= 0:
                    auth[position % len(auth)] ^= 1 << bit
                payload = bytes(auth)
            assert isinstance(payload, bytes)
            await stream.send_all(sealer.seal(payload))
    await stream.aclose()


def run_handshake(script: list[object], *, expected: bool) -> TcpConnection | None:
    transport = TcpTransport(LOCAL, CHAIN, None, handshake_timeout=5.0)

    async def main() -> TcpConnection | None:
        ours, theirs = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_peer, theirs, script)
            try:
                return await transport._handshake(
                    ours, outbound=True, expected=PEER.node_id if expected else None,
                    remote_host="fuzz")  # type: ignore[arg-type]
            except HandshakeError as exc:
                assert str(exc)
                return None
            finally:
                nursery.cancel_scope.cancel()

    clock = trio.testing.MockClock(autojump_threshold=0)
    result: TcpConnection | None = trio.run(main, clock=clock)
    assert clock.current_time() <= 5.0 + 1e-6
    return result


AUTH_TEMPLATE = wire.encode(Auth(pubkey=PEER.public, signature=bytes(64), chain_id=CHAIN,
                                 listen_addr="1.2.3.4:5", version="x"))


def _sealed() -> st.SearchStrategy[tuple[object, ...]]:
    payloads = st.binary(max_size=100) | mutated(AUTH_TEMPLATE)
    flips = st.tuples(st.just("flip"), st.integers(0, 200), st.integers(0, 7))
    return payloads.map(lambda p: ("sealed", p)) | flips


@fuzz_settings(150)
@given(st.lists(st.binary(max_size=60) | st.sampled_from([secret.MAGIC, secret.MAGIC[:3]]),
                max_size=4), st.booleans())
def test_handshake_against_raw_garbage(script: list[bytes], expected: bool) -> None:
    assert run_handshake(list(script), expected=expected) is None


@fuzz_settings(150)
@given(st.lists(_sealed() | st.binary(min_size=1, max_size=40), min_size=1, max_size=3),
       st.booleans())
def test_handshake_after_a_valid_hello(steps: list[object], expected: bool) -> None:
    conn = run_handshake(["hello", *steps], expected=expected)
    # a flip in listen_addr or version leaves the signature valid: that peer may connect
    assert conn is None or (conn.remote_id == PEER.node_id and steps[0][0] == "flip")


def test_handshake_with_a_valid_auth_connects() -> None:
    # the harness itself is sound: an honest script does connect
    conn = run_handshake(["hello", ("flip", -1, 0)], expected=True)
    assert conn is not None and conn.remote_id == PEER.node_id

