"""The secret connection's sans-IO cryptography."""

from __future__ import annotations

import nacl.bindings
import pytest

from p2pakash import wire
from p2pakash.crypto import PrivateKey
from p2pakash.errors import HandshakeError, LocalProtocolError, RemoteProtocolError
from p2pakash.gossip import secret
from p2pakash.gossip.messages import Auth

CHAIN = "test-chain"


def _pair() -> tuple[secret.SessionKeys, secret.SessionKeys]:
    a = secret.Ephemeral.from_private(bytes(range(32)))
    b = secret.Ephemeral.from_private(bytes(range(32, 64)))
    return secret.derive_session(a, b.public), secret.derive_session(b, a.public)


def _reader(keys: secret.SessionKeys, max_frame: int = 1 << 20) -> secret.FrameReader:
    return secret.FrameReader(keys.recv_key, max_frame=max_frame)


def test_hkdf_matches_rfc5869_case_1() -> None:
    okm = secret.hkdf_sha256(bytes.fromhex("0b" * 22),
                             salt=bytes.fromhex("000102030405060708090a0b0c"),
                             info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), length=42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_key_agreement_is_symmetric() -> None:
    ka, kb = _pair()
    assert ka.challenge == kb.challenge
    assert ka.send_key == kb.recv_key
    assert ka.recv_key == kb.send_key
    assert ka.send_key != ka.recv_key
    assert len(ka.challenge) == 32


def test_fresh_ephemerals_give_fresh_keys() -> None:
    a, b, c = (secret.Ephemeral.generate() for _ in range(3))
    one, two = secret.derive_session(a, b.public), secret.derive_session(a, c.public)
    assert one.challenge != two.challenge


def test_both_directions_decrypt() -> None:
    ka, kb = _pair()
    a_out, b_out = secret.FrameSealer(ka.send_key), secret.FrameSealer(kb.send_key)
    a_in, b_in = _reader(ka), _reader(kb)
    b_in.feed(a_out.seal(b"hello b"))
    a_in.feed(b_out.seal(b"hello a"))
    assert b_in.next_frame() == b"hello b"
    assert a_in.next_frame() == b"hello a"
    assert a_in.next_frame() is None


def test_counter_progresses_and_nonces_differ() -> None:
    ka, kb = _pair()
    sealer = secret.FrameSealer(ka.send_key)
    first, second = sealer.seal(b"same"), sealer.seal(b"same")
    assert sealer.counter == 2
    assert first != second  # a different nonce each frame
    reader = _reader(kb)
    reader.feed(first + second)
    got = (reader.next_frame(), reader.next_frame(), reader.next_frame())
    assert got == (b"same", b"same", None)
    assert reader.counter == 2


def test_frames_split_across_reads() -> None:
    ka, kb = _pair()
    sealer = secret.FrameSealer(ka.send_key)
    data = b"".join(sealer.seal(bytes([i]) * i) for i in range(50))
    reader = _reader(kb)
    got = []
    for i in range(0, len(data), 7):
        reader.feed(data[i:i + 7])
        while (frame := reader.next_frame()) is not None:
            got.append(frame)
    assert got == [bytes([i]) * i for i in range(50)]
    assert reader.wanted() == secret.LENGTH_SIZE


def test_tampered_ciphertext_rejected() -> None:
    ka, kb = _pair()
    data = bytearray(secret.FrameSealer(ka.send_key).seal(b"pay 10 akt"))
    data[10] ^= 1
    reader = _reader(kb)
    reader.feed(bytes(data))
    with pytest.raises(RemoteProtocolError, match="failed authentication"):
        reader.next_frame()
    with pytest.raises(RemoteProtocolError):  # stays broken
        reader.next_frame()


def test_replayed_frame_rejected() -> None:
    ka, kb = _pair()
    frame = secret.FrameSealer(ka.send_key).seal(b"once")
    reader = _reader(kb)
    reader.feed(frame + frame)
    assert reader.next_frame() == b"once"
    with pytest.raises(RemoteProtocolError, match="replayed"):
        reader.next_frame()


def test_wrong_direction_key_rejected() -> None:
    ka, _ = _pair()
    reader = _reader(ka)  # a's own receive key cannot open a's sends (reflection)
    reader.feed(secret.FrameSealer(ka.send_key).seal(b"x"))
    with pytest.raises(RemoteProtocolError):
        reader.next_frame()


def test_oversize_length_rejected_before_body() -> None:
    _, kb = _pair()
    reader = _reader(kb, max_frame=100)
    reader.feed((1000).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError, match="frame of 1000 bytes exceeds the limit of 116"):
        reader.next_frame()


def test_counter_overflow_refused() -> None:
    ka, _ = _pair()
    sealer = secret.FrameSealer(ka.send_key, counter=secret.MAX_COUNTER - 1)
    sealer.seal(b"last")
    with pytest.raises(LocalProtocolError, match="exhausted"):
        sealer.seal(b"one too many")


def test_hello_and_magic() -> None:
    eph = secret.Ephemeral.generate()
    hello = secret.make_hello(eph.public)
    assert len(hello) == secret.HELLO_SIZE
    assert secret.parse_hello(hello) == eph.public
    secret.check_magic_prefix(hello[:3])  # a prefix of the magic is fine so far
    with pytest.raises(HandshakeError, match="does not speak p2pakash"):
        secret.check_magic_prefix(b"GET / HTTP/1.1")
    with pytest.raises(HandshakeError):
        secret.parse_hello(hello[:-1])


@pytest.mark.parametrize("bad", [bytes(32), (1).to_bytes(32, "little")])
def test_low_order_points_refused(bad: bytes) -> None:
    with pytest.raises(HandshakeError, match="low-order"):
        secret.derive_session(secret.Ephemeral.generate(), bad)


def test_reflected_ephemeral_refused() -> None:
    eph = secret.Ephemeral.generate()
    with pytest.raises(HandshakeError, match="own ephemeral"):
        secret.derive_session(eph, eph.public)


def test_auth_round_trip_and_checks() -> None:
    ka, _ = _pair()
    alice, bob = PrivateKey.from_seed(b"a" * 32), PrivateKey.from_seed(b"b" * 32)
    data = secret.make_auth(alice, CHAIN, ka.challenge, listen_addr="1.2.3.4:26656", version="v")
    got, auth = secret.check_auth(data, chain_id=CHAIN, challenge=ka.challenge,
                                  local_id=bob.node_id, expected=alice.node_id)
    assert got == alice.node_id
    assert auth.listen_addr == "1.2.3.4:26656"
    with pytest.raises(HandshakeError, match="we are on 'other'"):
        secret.check_auth(data, chain_id="other", challenge=ka.challenge, local_id=bob.node_id,
                          expected=None)
    with pytest.raises(HandshakeError, match=f"dialled {bob.node_id} but reached {alice.node_id}"):
        secret.check_auth(data, chain_id=CHAIN, challenge=ka.challenge, local_id=bob.node_id,
                          expected=bob.node_id)
    with pytest.raises(HandshakeError, match="ourselves"):
        secret.check_auth(data, chain_id=CHAIN, challenge=ka.challenge, local_id=alice.node_id,
                          expected=None)
    with pytest.raises(HandshakeError, match="did not sign"):
        secret.check_auth(data, chain_id=CHAIN, challenge=bytes(32), local_id=bob.node_id,
                          expected=None)
    forged = wire.encode(Auth(pubkey=bob.public, signature=wire.decode(data, Auth).signature,
                              chain_id=CHAIN, listen_addr="", version="v"))
    with pytest.raises(HandshakeError, match="did not sign"):
        secret.check_auth(forged, chain_id=CHAIN, challenge=ka.challenge, local_id=alice.node_id,
                          expected=None)
    with pytest.raises(HandshakeError, match="bad Auth"):
        secret.check_auth(b"\x00garbage", chain_id=CHAIN, challenge=ka.challenge,
                          local_id=bob.node_id, expected=None)


def test_frames_agree_with_pynacl_bindings() -> None:
    ka, kb = _pair()
    sealer = secret.FrameSealer(ka.send_key, counter=7)
    for payload in (b"", b"a", bytes(range(256)) * 40):
        data = sealer.seal(payload)
        assert int.from_bytes(data[:4], "big") == len(data) - 4 == len(payload) + 16
        nonce = b"\x00" * 4 + (sealer.counter - 1).to_bytes(8, "little")
        assert nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
            data[4:], None, nonce, kb.recv_key) == payload
    reader = _reader(kb)
    for counter, payload in enumerate((b"", b"z" * 3000)):
        nonce = b"\x00" * 4 + counter.to_bytes(8, "little")
        ct = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(payload, None, nonce,
                                                                      ka.send_key)
        reader.feed(len(ct).to_bytes(4, "big") + ct)
        assert reader.next_frame() == payload


def test_bad_keys_refused() -> None:
    with pytest.raises(LocalProtocolError, match="32 bytes"):
        secret.FrameSealer(b"short")
    with pytest.raises(LocalProtocolError, match="32 bytes"):
        secret.FrameReader(b"short", max_frame=10)
