"""The signing guard: no regression, idempotent re-sign, conflicting data refused, atomic
persistence before the signature leaves (checked by crashing between the steps)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2pakash.consensus.guard import SigningGuard, SignRefused, load_state
from p2pakash.consensus.types import VoteType, verify_proposal, verify_vote
from p2pakash.errors import StorageError
from tests.consensus import CHAIN, KEYS, make_block, make_set

H1 = bytes([1]) * 32
H2 = bytes([2]) * 32


def guard(tmp_path: Path) -> SigningGuard:
    return SigningGuard(KEYS[0], CHAIN, tmp_path / "state.json")


def test_signs_and_persists_before_returning(tmp_path: Path) -> None:
    g = guard(tmp_path)
    vote = g.sign_vote(type=VoteType.PREVOTE, height=5, round=1, block_hash=H1, timestamp_ms=7)
    verify_vote(vote, CHAIN)
    state = load_state(tmp_path / "state.json")
    assert state.hrs == (5, 1, 2) and state.signature == vote.signature


@pytest.mark.parametrize(("height", "round", "type"), [
    (4, 9, VoteType.PRECOMMIT),  # lower height
    (5, 0, VoteType.PRECOMMIT),  # lower round
    (5, 1, VoteType.PREVOTE),  # lower step
])
def test_refuses_any_regression(tmp_path: Path, height: int, round: int, type: VoteType) -> None:
    g = guard(tmp_path)
    g.sign_vote(type=VoteType.PRECOMMIT, height=5, round=1, block_hash=H1, timestamp_ms=7)
    with pytest.raises(SignRefused, match="already signed"):
        g.sign_vote(type=type, height=height, round=round, block_hash=H1, timestamp_ms=8)
    # a fresh guard from the same file refuses too (the state survived)
    with pytest.raises(SignRefused):
        guard(tmp_path).sign_vote(type=type, height=height, round=round, block_hash=H1,
                                  timestamp_ms=8)


def test_same_hrs_same_data_returns_the_stored_signature(tmp_path: Path) -> None:
    g = guard(tmp_path)
    first = g.sign_vote(type=VoteType.PREVOTE, height=3, round=0, block_hash=H1, timestamp_ms=7)
    again = guard(tmp_path).sign_vote(type=VoteType.PREVOTE, height=3, round=0, block_hash=H1,
                                      timestamp_ms=99)  # only the timestamp differs
    assert again == first


def test_same_hrs_conflicting_data_refused(tmp_path: Path) -> None:
    g = guard(tmp_path)
    g.sign_vote(type=VoteType.PREVOTE, height=3, round=0, block_hash=H1, timestamp_ms=7)
    with pytest.raises(SignRefused, match="conflicting data"):
        g.sign_vote(type=VoteType.PREVOTE, height=3, round=0, block_hash=H2, timestamp_ms=7)
    with pytest.raises(SignRefused, match="conflicting data"):
        g.sign_vote(type=VoteType.PREVOTE, height=3, round=0, block_hash=None, timestamp_ms=7)


def test_proposals_guarded_too(tmp_path: Path) -> None:
    vs = make_set(1, 1, 1, 1)
    g = guard(tmp_path)
    a, b = make_block(2, vs, KEYS[0], b"a"), make_block(2, vs, KEYS[0], b"b")
    p = g.sign_proposal(height=2, round=0, pol_round=-1, block=a, timestamp_ms=1)
    verify_proposal(p, CHAIN)
    assert g.sign_proposal(height=2, round=0, pol_round=-1, block=a, timestamp_ms=5) == p
    with pytest.raises(SignRefused, match="conflicting data"):
        g.sign_proposal(height=2, round=0, pol_round=-1, block=b, timestamp_ms=1)
    g.sign_vote(type=VoteType.PREVOTE, height=2, round=0, block_hash=a.hash(), timestamp_ms=1)
    with pytest.raises(SignRefused):
        g.sign_proposal(height=2, round=0, pol_round=-1, block=a, timestamp_ms=1)


def test_crash_before_rename_keeps_old_state_and_withholds_signature(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = guard(tmp_path)
    g.sign_vote(type=VoteType.PREVOTE, height=3, round=0, block_hash=H1, timestamp_ms=7)

    def crash(*args: object) -> None:
        raise OSError("power lost")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StorageError, match="withheld"):
        g.sign_vote(type=VoteType.PRECOMMIT, height=3, round=0, block_hash=H1, timestamp_ms=7)
    monkeypatch.undo()
    assert load_state(tmp_path / "state.json").hrs == (3, 0, 2)
    assert g.last.hrs == (3, 0, 2)  # in memory too: nothing was signed
    # the precommit never left, so the restarted validator may sign it (even differently)
    restarted = guard(tmp_path)
    vote = restarted.sign_vote(type=VoteType.PRECOMMIT, height=3, round=0, block_hash=None,
                               timestamp_ms=8)
    assert vote.block_hash is None


def test_crash_after_temp_file_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = guard(tmp_path)
    g.sign_vote(type=VoteType.PREVOTE, height=3, round=0, block_hash=H1, timestamp_ms=7)
    (tmp_path / ".state.json.tmp").write_text("{half a fi")  # a crash left a torn temp file
    assert guard(tmp_path).last.hrs == (3, 0, 2)
    guard(tmp_path).sign_vote(type=VoteType.PRECOMMIT, height=3, round=0, block_hash=H1,
                              timestamp_ms=7)
    assert load_state(tmp_path / "state.json").hrs == (3, 0, 3)


def test_corrupted_state_file_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(StorageError, match="corrupted signing state"):
        guard(tmp_path)


def test_fsyncs_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    guard(tmp_path).sign_vote(type=VoteType.PREVOTE, height=1, round=0, block_hash=H1,
                              timestamp_ms=1)
    assert len(synced) == 2  # the temp file, then the directory


def test_memory_guard_has_the_same_rules() -> None:
    g = SigningGuard(KEYS[0], CHAIN, None)
    g.sign_vote(type=VoteType.PRECOMMIT, height=2, round=0, block_hash=H1, timestamp_ms=1)
    with pytest.raises(SignRefused):
        g.sign_vote(type=VoteType.PREVOTE, height=2, round=0, block_hash=H1, timestamp_ms=1)
