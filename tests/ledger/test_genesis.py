"""Genesis documents: loading errors name file and key; the hash; the ``genesis`` CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from p2pakash import crypto
from p2pakash.cli import main
from p2pakash.errors import ConfigError
from p2pakash.ledger import GenesisDoc, Ledger, MemoryKV, Params, load_genesis, save_genesis
from tests.ledger.helpers import USERS, VALS, genesis


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(doc))
    return path


def test_save_load_roundtrip_and_hash(tmp_path: Path) -> None:
    doc = genesis(Params(max_validators=7))
    path = tmp_path / "g.json"
    save_genesis(path, doc)
    loaded = load_genesis(path)
    assert loaded == doc
    assert loaded.genesis_hash() == doc.genesis_hash()
    assert doc.genesis_hash() != genesis().genesis_hash()
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.pop("chain_id"), "chain_id: missing"),
    (lambda d: d.update(chain_id=""), "chain_id: must be 1..64"),
    (lambda d: d.update(extra=1), "extra: unknown key"),
    (lambda d: d["accounts"][1].update(balance=-1), r"accounts\[1\].balance: must be an integer"),
    (lambda d: d["accounts"][0].update(address="cosmos1xyz"), r"accounts\[0\].address"),
    (lambda d: d["accounts"].append(dict(d["accounts"][0])), r"accounts\[4\].address: duplicate"),
    (lambda d: d["validators"][0].update(pubkey="abcd"), r"validators\[0\].pubkey: .*32 bytes"),
    (lambda d: d["validators"][2].update(stake=999_999), r"validators\[2\].stake"),
    (lambda d: d.update(validators=[]), "at least one validator"),
    (lambda d: d["params"].update(min_signed_bps=20_000), r"params: min_signed_bps must be"),
    (lambda d: d["params"].update(max_validators="3"), r"params.max_validators: must be an int"),
    (lambda d: d["params"].update(bogus=3), r"params.bogus: unknown key"),
])
def test_bad_genesis_names_file_and_key(tmp_path: Path, mutate: Any, message: str) -> None:
    raw = genesis().to_json()
    mutate(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError, match=message) as info:
        load_genesis(path)
    assert str(path) in str(info.value)


def test_invalid_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text('{\n"chain_id": "x",\n}')
    with pytest.raises(ConfigError, match="line 3: invalid JSON"):
        load_genesis(path)
    with pytest.raises(ConfigError, match="not found"):
        load_genesis(tmp_path / "missing.json")


def test_init_genesis_conserves_supply() -> None:
    doc = genesis()
    kv = MemoryKV()
    Ledger.init_genesis(kv, doc)
    ledger = Ledger(kv)
    assert ledger.supply() == doc.supply() == 4 * 100_000_000 + 30_000_000
    assert ledger.account(USERS[0].address).balance == 100_000_000
    assert ledger.account(VALS[0].address).balance == 0  # all of it is bonded
    assert ledger.delegation(VALS[0].public, VALS[0].address) == 10_000_000
    assert ledger.chain_id() == doc.chain_id and ledger.height() == 0


def test_cli_builds_a_valid_genesis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "genesis.json"
    key_file = tmp_path / "val.json"
    crypto.save_key(key_file, VALS[0])
    main(["genesis", "new", "--chain-id", "cli-net", "--out", str(out),
          "--genesis-time-ms", "5"])
    main(["genesis", "add-account", str(out), USERS[0].address, "42000000"])
    main(["genesis", "add-validator", str(out), "--key", str(key_file), "--stake", "3000000",
          "--moniker", "first"])
    capsys.readouterr()
    main(["genesis", "validate", str(out)])
    doc = load_genesis(out)
    assert capsys.readouterr().out.strip().endswith(doc.genesis_hash().hex())
    assert doc == GenesisDoc(chain_id="cli-net", genesis_time_ms=5, accounts=doc.accounts,
                             validators=doc.validators)
    assert doc.accounts[0].balance == 42_000_000
    assert (doc.validators[0].pubkey, doc.validators[0].stake) == (VALS[0].public, 3_000_000)


def test_cli_errors_exit_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "genesis.json"
    main(["genesis", "new", "--chain-id", "x", "--out", str(out)])
    before = out.read_text()
    with pytest.raises(SystemExit) as info:
        main(["genesis", "new", "--chain-id", "x", "--out", str(out)])
    assert info.value.code == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["genesis", "validate", str(out)])  # no validators yet
    assert info.value.code == 2
    assert "at least one validator" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["genesis", "add-account", str(out), USERS[0].address, "lots"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["genesis", "add-account", str(out), USERS[0].address, "1"])
        main(["genesis", "add-account", str(out), USERS[0].address, "1"])
    assert "already in the genesis" in capsys.readouterr().err
    assert json.loads(out.read_text())["accounts"] != json.loads(before)["accounts"]
