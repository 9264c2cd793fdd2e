"""``p2pakash keys new|show``."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from p2pakash import crypto
from p2pakash.cli import keys
from tests.cli import Result, Run, run_main, run_script


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    return lambda *argv: run_main(["keys", *argv], keys.command, capsys, monkeypatch)


def _fields(result: Result) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in result.out.splitlines())


def test_new_with_home_writes_a_private_key(run: Run, tmp_path: Path) -> None:
    result = run("new", "--home", str(tmp_path / "h"))
    assert result.code == 0, result.err
    path = tmp_path / "h" / "node_key.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = crypto.load_key(path)
    assert _fields(result) == {"node_id": key.node_id, "address": key.address,
                               "public_key": key.public.hex(), "file": str(path)}
    assert key.seed.hex() not in result.out


def test_new_with_file_and_json(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    result = run("new", "--file", str(path), "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    key = crypto.load_key(path)
    assert doc == {"node_id": key.node_id, "address": key.address,
                   "public_key": key.public.hex(), "file": str(path)}


def test_new_refuses_to_overwrite(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    assert run("new", "--file", str(path)).code == 0
    before = path.read_bytes()
    result = run("new", "--file", str(path))
    assert result.code == 2
    assert result.err == f"error: {path}: key file already exists; refusing to overwrite it\n"
    assert path.read_bytes() == before


def test_show_never_prints_the_seed(run: Run, tmp_path: Path) -> None:
    key = crypto.PrivateKey.from_seed(b"\x07" * 32)
    crypto.save_key(tmp_path / "node_key.json", key)
    for args in (["--home", str(tmp_path)], ["--file", str(tmp_path / "node_key.json")]):
        text = run("show", *args)
        assert text.code == 0, text.err
        assert _fields(text)["node_id"] == key.node_id
        as_json = run("show", *args, "--json")
        assert json.loads(as_json.out)["address"] == key.address
        for result in (text, as_json):
            assert key.seed.hex() not in result.out + result.err


def test_show_refuses_a_readable_key_with_chmod_hint(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "node_key.json"
    crypto.save_key(path, crypto.PrivateKey.from_seed(b"\x07" * 32))
    path.chmod(0o644)
    result = run("show", "--home", str(tmp_path))
    assert result.code == 2
    assert result.out == ""
    assert result.err == (f"error: {path}: key file is accessible by group/others (mode 0644);"
                          f" run: chmod 600 {path}\n")


def test_show_missing_and_malformed(run: Run, tmp_path: Path) -> None:
    missing = run("show", "--file", str(tmp_path / "none.json"))
    assert missing.code == 2
    assert missing.err == f"error: {tmp_path / 'none.json'}: key file not found\n"
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    bad.chmod(0o600)
    result = run("show", "--file", str(bad))
    assert result.code == 2
    assert result.err.startswith(f"error: {bad}: malformed key file (")
    assert result.err.count("\n") == 1


@pytest.mark.parametrize("args", [[], ["--home", "a", "--file", "b"]])
def test_home_or_file_is_required(run: Run, args: list[str]) -> None:
    result = run("show", *args)
    assert result.code == 2
    assert "give exactly one of --home DIR or --file PATH" in result.err


def test_console_script_keys(tmp_path: Path) -> None:
    new = run_script(["keys", "new", "--home", "h", "--json"], cwd=tmp_path)
    assert new.code == 0, new.err
    created = json.loads(new.out)
    show = run_script(["keys", "show", "--home", "h", "--json"], cwd=tmp_path)
    assert show.code == 0, show.err
    assert json.loads(show.out) == created
    (tmp_path / "h" / "node_key.json").chmod(0o640)
    refused = run_script(["keys", "show", "--home", "h"], cwd=tmp_path)
    assert refused.code == 2
    assert refused.err == ("error: h/node_key.json: key file is accessible by group/others"
                           " (mode 0640); run: chmod 600 h/node_key.json\n")
