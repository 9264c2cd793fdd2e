"""Genesis txs: signed txs the ledger runs at genesis through the ordinary tx path
(providers registered by their own CreateProvider before block 1)."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from p2pakash import crypto
from p2pakash.cli import main
from p2pakash.errors import ConfigError
from p2pakash.ledger import Ledger, decode_tx, sign_tx
from p2pakash.ledger.genesis import check_doc, load_genesis, save_genesis
from p2pakash.ledger.kv import MemoryKV
from p2pakash.market import ledger_market as lm
from tests.ledger.helpers import CHAIN, USERS, VALS, genesis
from tests.market.helpers_market import create_provider

PROVIDER = USERS[1]


def _gentx(signer: crypto.PrivateKey = PROVIDER, chain: str = CHAIN, bond: int = 500_000,
           sequence: int = 0) -> bytes:
    return sign_tx(signer, chain, sequence=sequence,
                   msgs=(create_provider(bond=bond),)).encode()


def test_a_genesis_tx_registers_the_provider_before_block_one() -> None:
    plain, doc = genesis(), attrs.evolve(genesis(), txs=(_gentx(),))
    kv = MemoryKV()
    app_hash = Ledger.init_genesis(kv, doc)
    ledger = Ledger(kv)
    rec = lm.get_provider(ledger.store, PROVIDER.address)
    assert rec is not None and rec.attributes == create_provider().attributes
    assert rec.bond == 500_000 and rec.created_at == 0
    assert ledger.account(PROVIDER.address).sequence == 1
    assert ledger.account(PROVIDER.address).balance == plain.accounts[1].balance - 500_000
    assert ledger.supply() == doc.supply() == plain.supply()  # the bond moved, nothing minted
    assert app_hash != Ledger.init_genesis(MemoryKV(), plain)
    assert doc.genesis_hash() != plain.genesis_hash()
    again = check_doc(json.loads(json.dumps(doc.to_json())), "genesis.json")
    assert again == doc and again.genesis_hash() == doc.genesis_hash()
    assert "txs" not in plain.to_json()  # documents without txs keep their JSON


@pytest.mark.parametrize(("tx", "why"), [
    (_gentx(chain="other-chain"), "txs\\[1\\]: refused \\(bad signature"),
    (_gentx(USERS[2], bond=10**15), "txs\\[1\\]: refused .*insufficient"),
    (_gentx(sequence=0), "txs\\[1\\]: refused \\(wrong sequence"),  # the second from one key
])
def test_a_failing_genesis_tx_is_refused_by_index(tx: bytes, why: str) -> None:
    doc = attrs.evolve(genesis(), txs=(_gentx(), tx))
    with pytest.raises(ConfigError, match=why):
        Ledger.init_genesis(MemoryKV(), doc)


@pytest.mark.parametrize(("value", "why"), [
    ("zz", "genesis.json: txs\\[0\\]: not hex"),
    ("a1b2", "genesis.json: txs\\[0\\]: not a signed tx"),
    (7, "genesis.json: txs\\[0\\]: must be a string"),
])
def test_genesis_json_txs_must_be_hex_signed_txs(value: object, why: str) -> None:
    raw = {**genesis().to_json(), "txs": [value]}
    with pytest.raises(ConfigError, match=why):
        check_doc(raw, "genesis.json")
    with pytest.raises(ConfigError, match=r"genesis\.json: txs: must be a list"):
        check_doc({**genesis().to_json(), "txs": "00"}, "genesis.json")


def test_cli_adds_a_provider_at_genesis(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    out, val_file, prov_file = (tmp_path / n for n in ("genesis.json", "v.json", "p.json"))
    crypto.save_key(val_file, VALS[0])
    crypto.save_key(prov_file, PROVIDER)
    main(["genesis", "new", "--chain-id", "cli-net", "--out", str(out)])
    main(["genesis", "add-validator", str(out), "--key", str(val_file), "--stake", "3000000"])
    with pytest.raises(SystemExit) as info:  # no account to pay the bond from
        main(["genesis", "add-provider", str(out), "--key", str(prov_file),
              "--host-uri", "prov.example:8443"])
    assert info.value.code == 2 and "less than the bond" in capsys.readouterr().err
    main(["genesis", "add-account", str(out), PROVIDER.address, "2000000"])
    for region in ("eu", "us"):  # the second registration is refused when run
        main(["genesis", "add-provider", str(out), "--key", str(prov_file),
              "--host-uri", "prov.example:8443", "--attr", f"region={region}"])
    with pytest.raises(SystemExit) as info:
        main(["genesis", "validate", str(out)])
    assert info.value.code == 2
    assert "txs[1]: refused (message 0 (CreateProvider): provider" in capsys.readouterr().err
    doc = load_genesis(out)
    assert [decode_tx(raw).body.sequence for raw in doc.txs] == [0, 1]
    main(["genesis", "add-tx", str(out), doc.txs[0].hex()])  # any signed tx, as hex
    assert load_genesis(out).txs[-1] == doc.txs[0]
    single = attrs.evolve(load_genesis(out), txs=doc.txs[:1])
    save_genesis(out, single)
    capsys.readouterr()
    main(["genesis", "validate", str(out)])
    assert "1 txs" in capsys.readouterr().out
    ledger_kv = MemoryKV()
    Ledger.init_genesis(ledger_kv, load_genesis(out))
    rec = lm.get_provider(Ledger(ledger_kv).store, PROVIDER.address)
    assert rec is not None and [(a.key, a.value) for a in rec.attributes] == [("region", "eu")]
