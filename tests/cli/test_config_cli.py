"""``p2pakash config check``."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pakash.cli import config_cmd
from tests.cli import Run, run_main, run_script

CONFIGS = Path(__file__).resolve().parent.parent.parent / "configs"


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    return lambda *argv: run_main(["config", *argv], config_cmd.command, capsys, monkeypatch)


def test_good_files(run: Run) -> None:
    files = [CONFIGS / "node0.toml", *sorted(CONFIGS.glob("local/node*/config.toml"))]
    assert len(files) == 6
    result = run("check", *map(str, files))
    assert result.code == 0, result.err
    assert result.out == "".join(f"{f}: ok\n" for f in files)
    assert result.err == ""


def test_bad_files_list_every_problem_and_exit_2(run: Run, tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('chain_id = "c"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('chain_id = "c"\n[p2p]\nsedes = []\nmax_inbound = "ten"\n')
    broken = tmp_path / "broken.toml"
    broken.write_text("chain_id = \n")
    missing = tmp_path / "missing.toml"
    result = run("check", str(good), str(bad), str(broken), str(missing))
    assert result.code == 2
    assert result.out == f"{good}: ok\n"
    assert result.err.splitlines() == [
        f"error: {bad}: p2p.max_inbound: expected an integer, got 'ten'",
        f"error: {bad}: p2p.sedes: unknown key",
        f"error: {broken}: invalid TOML: Invalid value (at line 1, column 12)",
        f"error: {missing}: config file not found",
    ]


def test_needs_a_file(run: Run) -> None:
    result = run("check")
    assert result.code == 2
    assert "Missing argument" in result.err


def test_console_script_config_check(tmp_path: Path) -> None:
    (tmp_path / "x.toml").write_text('chain_id = "c"\n[p2p]\nseeds = ["foo"]\n')
    bad = run_script(["config", "check", "x.toml"], cwd=tmp_path)
    assert (bad.code, bad.out) == (2, "")
    assert bad.err == "error: x.toml: p2p.seeds[0]: expected 'ID@host:port', got 'foo'\n"
    good = run_script(["config", "check", str(CONFIGS / "node0.toml")], cwd=tmp_path)
    assert (good.code, good.out) == (0, f"{CONFIGS / 'node0.toml'}: ok\n")
