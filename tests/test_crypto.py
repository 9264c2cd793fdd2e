"""crypto: identities, domain-separated signatures, the verify cache and key files."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import bech32
import pytest

from p2pakash import crypto
from p2pakash.errors import InvalidSignature, KeyFileError, LocalProtocolError

SEED = hashlib.sha256(b"test-crypto").digest()
KEY = crypto.PrivateKey.from_seed(SEED)
OTHER = crypto.PrivateKey.from_seed(hashlib.sha256(b"other").digest())


def test_from_seed_is_deterministic() -> None:
    again = crypto.PrivateKey.from_seed(SEED)
    assert again.public == KEY.public
    assert again.seed == SEED
    assert len(KEY.public) == 32


def test_from_seed_needs_32_bytes() -> None:
    with pytest.raises(LocalProtocolError):
        crypto.PrivateKey.from_seed(b"short")


def test_node_id_format() -> None:
    nid = KEY.node_id
    assert nid == hashlib.sha256(KEY.public).digest()[:20].hex()
    assert len(nid) == 40 and nid == nid.lower()
    assert crypto.is_node_id(nid)
    for bad in (nid.upper(), nid[:-1], nid + "0", "g" * 40, "", nid + "\n"):
        assert not crypto.is_node_id(bad)


def test_address_round_trip() -> None:
    addr = KEY.address
    assert addr.startswith("akash1")
    assert crypto.address_bytes(addr) == bytes.fromhex(KEY.node_id)
    assert crypto.address(KEY.public) == addr
    assert OTHER.address != addr


def test_address_bytes_refuses_non_addresses() -> None:
    addr = KEY.address
    words = bech32.convertbits(bytes.fromhex(KEY.node_id), 8, 5)
    short_words = bech32.convertbits(b"\x01" * 10, 8, 5)
    assert words is not None and short_words is not None
    wrong_prefix = bech32.bech32_encode("cosmos", words)
    short = bech32.bech32_encode("akash", short_words)
    bad_checksum = addr[:-1] + ("q" if addr[-1] != "q" else "p")
    for bad in (wrong_prefix, short, bad_checksum, "akash1", "", KEY.node_id):
        with pytest.raises(ValueError):
            crypto.address_bytes(bad)


def test_repr_never_shows_the_seed() -> None:
    assert SEED.hex() not in repr(KEY)
    assert KEY.node_id in repr(KEY)


def test_sign_and_verify() -> None:
    sig = KEY.sign("vote", "chain-a", b"body")
    assert len(sig) == crypto.SIGNATURE_SIZE
    crypto.verify(KEY.public, "vote", "chain-a", b"body", sig)


def test_domain_separation_by_kind() -> None:
    sig = KEY.sign("vote", "chain-a", b"body")
    with pytest.raises(InvalidSignature):
        crypto.verify(KEY.public, "proposal", "chain-a", b"body", sig)


def test_chain_binding() -> None:
    sig = KEY.sign("vote", "chain-a", b"body")
    with pytest.raises(InvalidSignature):
        crypto.verify(KEY.public, "vote", "chain-b", b"body", sig)


def test_kind_chain_boundary_is_unambiguous() -> None:
    # a NUL in the chain ID could move bytes between chain and body, so it is refused
    with pytest.raises(LocalProtocolError):
        crypto.signing_bytes("tx", "a\x00", b"b")
    for bad_kind in ("Vote", "vote/v2", "", "1vote", "vo te", "vote\n"):
        with pytest.raises(LocalProtocolError):
            crypto.signing_bytes(bad_kind, "c", b"")


def test_signing_bytes_layout() -> None:
    assert crypto.signing_bytes("vote", "c1", b"xy") == b"p2pakash/vote/v1\x00c1\x00xy"


def test_wrong_key_or_body() -> None:
    sig = KEY.sign("vote", "c", b"body")
    with pytest.raises(InvalidSignature):
        crypto.verify(OTHER.public, "vote", "c", b"body", sig)
    with pytest.raises(InvalidSignature):
        crypto.verify(KEY.public, "vote", "c", b"bodz", sig)


@pytest.mark.parametrize("mangle", [
    lambda s: s[:-1],
    lambda s: s + b"\x00",
    lambda s: b"",
    lambda s: bytes([s[0] ^ 1]) + s[1:],
    lambda s: s[:32] + b"\xff" * 32,
    lambda s: b"\x00" * 64,
])
def test_malformed_signature(mangle: object) -> None:
    sig = KEY.sign("vote", "c", b"body")
    bad = mangle(sig)  # type: ignore[operator]
    with pytest.raises(InvalidSignature):
        crypto.verify(KEY.public, "vote", "c", b"body", bad)


@pytest.mark.parametrize("public", [b"", b"\x00" * 31, b"\x00" * 33, b"\xff" * 32])
def test_malformed_public_key(public: bytes) -> None:
    sig = KEY.sign("vote", "c", b"body")
    with pytest.raises(InvalidSignature):
        crypto.verify(public, "vote", "c", b"body", sig)


def test_sign_raw_has_no_domain() -> None:
    sig = KEY.sign_raw(b"transcript")
    crypto.verify_raw(KEY.public, b"transcript", sig)
    with pytest.raises(InvalidSignature):
        crypto.verify(KEY.public, "vote", "c", b"transcript", sig)


# ---------------------------------------------------------------- verify cache


def test_verify_cache_hits_and_misses() -> None:
    cache = crypto.VerifyCache()
    sig = KEY.sign("vote", "c", b"m")
    cache.verify(KEY.public, "vote", "c", b"m", sig)
    cache.verify(KEY.public, "vote", "c", b"m", sig)
    cache.verify(KEY.public, "vote", "c", b"m", sig)
    assert (cache.hits, cache.misses) == (2, 1)


def test_verify_cache_does_not_remember_failures() -> None:
    cache = crypto.VerifyCache()
    sig = KEY.sign("vote", "c", b"m")
    for _ in range(2):
        with pytest.raises(InvalidSignature):
            cache.verify(KEY.public, "vote", "other-chain", b"m", sig)
    assert (cache.hits, cache.misses) == (0, 2)


def test_verify_cache_key_covers_domain_and_key() -> None:
    cache = crypto.VerifyCache()
    sig = KEY.sign("vote", "c", b"m")
    cache.verify(KEY.public, "vote", "c", b"m", sig)
    with pytest.raises(InvalidSignature):
        cache.verify(KEY.public, "proposal", "c", b"m", sig)
    with pytest.raises(InvalidSignature):
        cache.verify(OTHER.public, "vote", "c", b"m", sig)
    assert cache.hits == 0


def test_verify_cache_evicts_least_recently_used() -> None:
    cache = crypto.VerifyCache(capacity=2)
    sigs = [KEY.sign("vote", "c", bytes([i])) for i in range(3)]
    cache.verify(KEY.public, "vote", "c", b"\x00", sigs[0])
    cache.verify(KEY.public, "vote", "c", b"\x01", sigs[1])
    cache.verify(KEY.public, "vote", "c", b"\x00", sigs[0])  # hit: 0 becomes most recent
    cache.verify(KEY.public, "vote", "c", b"\x02", sigs[2])  # evicts 1
    assert (cache.hits, cache.misses) == (1, 3)
    cache.verify(KEY.public, "vote", "c", b"\x00", sigs[0])
    assert (cache.hits, cache.misses) == (2, 3)
    cache.verify(KEY.public, "vote", "c", b"\x01", sigs[1])
    assert (cache.hits, cache.misses) == (2, 4)


# ---------------------------------------------------------------- key files


def test_key_file_round_trip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "node_key.json"
    crypto.save_key(path, KEY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc == {"type": "ed25519", "seed": SEED.hex(), "node_id": KEY.node_id,
                   "address": KEY.address}
    assert crypto.load_key(path).public == KEY.public


def test_key_file_mode_ignores_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        crypto.save_key(tmp_path / "k.json", KEY)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.json").stat().st_mode) == 0o600


def test_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    crypto.save_key(path, KEY)
    with pytest.raises(KeyFileError, match="already exists; refusing to overwrite"):
        crypto.save_key(path, OTHER)
    assert crypto.load_key(path).public == KEY.public


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o010])
def test_refuses_group_or_world_access_with_chmod_hint(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.json"
    crypto.save_key(path, KEY)
    path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        crypto.load_key(path)
    message = str(info.value)
    assert message == (f"{path}: key file is accessible by group/others (mode {mode:04o});"
                       f" run: chmod 600 {path}")
    assert "\n" not in message


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="key file not found"):
        crypto.load_key(tmp_path / "nope.json")


@pytest.mark.parametrize("content", [
    "not json",
    "[]",
    '{"type": "rsa", "seed": "00"}',
    '{"type": "ed25519"}',
    '{"type": "ed25519", "seed": "zz"}',
    '{"type": "ed25519", "seed": "0011"}',
    '{"type": "ed25519", "seed": 5}',
    "\xff\xfe not utf-8",
])
def test_malformed_key_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "k.json"
    path.write_bytes(content.encode("latin-1"))
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=r"malformed key file \(") as info:
        crypto.load_key(path)
    assert str(info.value).startswith(f"{path}: ")
    assert SEED.hex() not in str(info.value)
