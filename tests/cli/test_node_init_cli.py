"""``p2pakash node init``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from p2pakash import crypto
from p2pakash.cli import node
from p2pakash.config import load_config
from p2pakash.gossip.addr import PeerAddr
from tests.cli import Result, Run, run_main, run_script

NID = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    return lambda *argv: run_main(["node", *argv], node.command, capsys, monkeypatch)


def _fields(result: Result) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in result.out.splitlines())


def test_init_creates_config_and_key(run: Run, tmp_path: Path) -> None:
    home = tmp_path / "n1"
    result = run("init", "--home", str(home), "--moniker", "n1", "--chain-id", "test-1",
                 "--listen", "127.0.0.1:27000", "--seeds", f"{NID}@127.0.0.1:26656",
                 "--persistent-peers", f"{NID}@a:1, {NID}@b:2")
    assert result.code == 0, result.err
    key = crypto.load_key(home / "node_key.json")
    assert stat.S_IMODE((home / "node_key.json").stat().st_mode) == 0o600
    assert _fields(result) == {"node_id": key.node_id,
                               "peer": f"{key.node_id}@127.0.0.1:27000",
                               "config": str(home / "config.toml"),
                               "key": str(home / "node_key.json")}
    assert 'home = "."' in (home / "config.toml").read_text()
    cfg = load_config(home / "config.toml")
    assert cfg.home == home and cfg.key_path == home / "node_key.json"
    assert (cfg.chain_id, cfg.moniker, cfg.p2p.listen) == ("test-1", "n1", "127.0.0.1:27000")
    assert cfg.p2p.seeds == (PeerAddr.parse(f"{NID}@127.0.0.1:26656"),)
    assert [str(p) for p in cfg.p2p.persistent_peers] == [f"{NID}@a:1", f"{NID}@b:2"]


def test_init_defaults(run: Run, tmp_path: Path) -> None:
    assert run("init", "--home", str(tmp_path / "d")).code == 0
    cfg = load_config(tmp_path / "d" / "config.toml")
    assert (cfg.chain_id, cfg.moniker, cfg.p2p.listen, cfg.p2p.seeds) == (
        "p2pakash-local", "node0", "127.0.0.1:26656", ())


@pytest.mark.parametrize("existing", ["config.toml", "node_key.json"])
def test_init_refuses_an_existing_home(run: Run, tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("keep me")
    result = run("init", "--home", str(tmp_path))
    assert result.code == 2
    assert result.err == f"error: {tmp_path / existing}: already exists; refusing to overwrite it\n"
    assert result.out == ""
    assert [p.name for p in tmp_path.iterdir()] == [existing]
    assert (tmp_path / existing).read_text() == "keep me"


@pytest.mark.parametrize(("args", "message"), [
    (["--seeds", "foo"], "node init: p2p.seeds[0]: expected 'ID@host:port', got 'foo'"),
    (["--persistent-peers", f"{NID}@h:1,bar"],
     "node init: p2p.persistent_peers[1]: expected 'ID@host:port', got 'bar'"),
    (["--listen", "nowhere"], "node init: p2p.listen: expected 'host:port', got 'nowhere'"),
    (["--chain-id", "a b"],
     "node init: chain_id: expected 1-50 characters of [a-zA-Z0-9._-], got 'a b'"),
])
def test_init_checks_options_before_writing(run: Run, tmp_path: Path, args: list[str],
                                            message: str) -> None:
    result = run("init", "--home", str(tmp_path / "h"), *args)
    assert (result.code, result.err) == (2, f"error: {message}\n")
    assert not (tmp_path / "h").exists()


def test_init_needs_home(run: Run) -> None:
    result = run("init")
    assert result.code == 2
    assert "--home" in result.err


def test_console_script_node_init(tmp_path: Path) -> None:
    first = run_script(["node", "init", "--home", "h", "--moniker", "x"], cwd=tmp_path)
    assert first.code == 0, first.err
    node_id = first.out.splitlines()[0].removeprefix("node_id: ")
    assert crypto.is_node_id(node_id)
    assert f"peer: {node_id}@127.0.0.1:26656\n" in first.out
    again = run_script(["node", "init", "--home", "h"], cwd=tmp_path)
    assert again.code == 2
    assert again.err == "error: h/config.toml: already exists; refusing to overwrite it\n"
    check = run_script(["config", "check", "h/config.toml"], cwd=tmp_path)
    assert (check.code, check.out) == (0, "h/config.toml: ok\n")
    shown = run_script(["keys", "show", "--home", "h"], cwd=tmp_path)
    assert shown.out.splitlines()[0] == f"node_id: {node_id}"
