"""``p2pakash tx|query|status`` against a running API (hypercorn on 127.0.0.1 in a thread,
a real ledger, blocks made from the mempool every 50 ms)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import click
import pytest
import trio

from p2pakash import crypto
from p2pakash.api import ApiService, NodeInfo
from p2pakash.cli import query, status, tx
from p2pakash.config import ApiConfig, NodeConfig, dump_config
from p2pakash.mempool import Mempool
from tests.api import CHAIN, VALS, LocalChain
from tests.cli import Result, run_main
from tests.ledger.helpers import USERS

ALICE, BOB, CAROL = USERS[0], USERS[1], USERS[2]
COMMANDS = {"tx": tx.command, "query": query.command, "status": status.command}


@attrs.frozen
class Served:
    url: str
    chain: LocalChain


@pytest.fixture
def node() -> Iterator[Served]:
    box: dict[str, Any] = {}
    ready = threading.Event()

    async def main() -> None:
        chain = LocalChain()
        pool = Mempool.for_ledger(chain.ledger)
        info = NodeInfo(chain_id=CHAIN, node_id=VALS[0].node_id, moniker="cli-node",
                        pubkey=VALS[0].public)
        svc = ApiService(chain=chain, mempool=pool, info=info, listen="127.0.0.1:0")
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(svc.run)
            nursery.start_soon(chain.produce, pool)
            box.update(url=f"http://{bound}", chain=chain, cancel=nursery.cancel_scope,
                       token=trio.lowlevel.current_trio_token())
            ready.set()

    def thread() -> None:
        try:
            trio.run(main)
        except BaseException as exc:
            box["error"] = exc
        finally:
            ready.set()

    worker = threading.Thread(target=thread, daemon=True)
    worker.start()
    assert ready.wait(10) and "error" not in box, box.get("error")
    yield Served(url=box["url"], chain=box["chain"])
    trio.from_thread.run_sync(box["cancel"].cancel, trio_token=box["token"])
    worker.join(10)
    assert not worker.is_alive()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    def run(*argv: str) -> Result:
        return run_main(list(argv), COMMANDS[argv[0]], capsys, monkeypatch)
    return run


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "alice_key.json"
    crypto.save_key(path, ALICE)
    return path


def test_status_text_and_json(node: Served, cli: Any) -> None:
    result = cli("status", "--node", node.url)
    assert result.code == 0, result.err
    assert f"chain: {CHAIN}" in result.out and "role: validator (power 10)" in result.out
    assert "height: 0" in result.out and "mempool: 0 txs" in result.out
    doc = json.loads(cli("status", "--node", node.url, "--json").out)
    assert doc["moniker"] == "cli-node" and doc["node_id"] == VALS[0].node_id


def test_send_and_wait_then_query(node: Served, cli: Any, keyfile: Path) -> None:
    result = cli("tx", "send", "--from", str(keyfile), "--node", node.url, BOB.address,
                 "1.5akt", "--wait", "--memo", "hi")
    assert result.code == 0, result.err
    first, second = result.out.splitlines()
    assert first.startswith("tx ") and f"sender {ALICE.address}, sequence 0" in first
    assert second.startswith("committed at height ")
    tx_hash = first.split()[1]
    bob = json.loads(cli("query", "account", BOB.address, "--node", node.url, "--json").out)
    assert bob["balance"] == 101_500_000
    text = cli("query", "account", ALICE.address, "--node", node.url).out
    assert "balance: 98500000 uakt (98.5 AKT)" in text and "sequence: 1" in text
    found = cli("query", "tx", tx_hash, "--node", node.url)
    assert found.code == 0 and "status: ok" in found.out and "event: tx " in found.out
    height = json.loads(cli("query", "tx", tx_hash, "--node", node.url, "--json").out)["height"]
    block = cli("query", "block", str(height), "--node", node.url)
    assert f"height: {height}" in block.out and f"  {tx_hash}" in block.out
    assert "commit: round 0, 3 signatures" in block.out
    assert cli("query", "block", "latest", "--node", node.url).code == 0


def test_back_to_back_sends_use_pending_sequences(node: Served, cli: Any,
                                                  keyfile: Path) -> None:
    base = ["tx", "send", "--from", str(keyfile), "--node", node.url, CAROL.address]
    first = cli(*base, "100", "--json")
    second = cli(*base, "200uakt", "--json", "--wait")
    assert first.code == 0 and second.code == 0, first.err + second.err
    assert json.loads(first.out)["sequence"] == 0
    doc = json.loads(second.out)
    assert doc["sequence"] == 1 and doc["result"]["code"] == 0
    carol = json.loads(cli("query", "account", CAROL.address, "--node", node.url,
                           "--json").out)
    assert carol["balance"] == 100_000_300  # seq 0 is in the block of seq 1 or before it


def test_refused_tx_is_one_line(node: Served, cli: Any, keyfile: Path) -> None:
    result = cli("tx", "send", "--from", str(keyfile), "--node", node.url, BOB.address,
                 "1000akt")
    assert result.code == 1 and result.out == ""
    assert result.err.startswith(f"error: tx refused by {node.url}: ")
    assert "insufficient funds" in result.err and result.err.count("\n") == 1


def test_validators_and_staking(node: Served, cli: Any, tmp_path: Path) -> None:
    carol_key = tmp_path / "carol_key.json"
    crypto.save_key(carol_key, CAROL)
    made = cli("tx", "stake", "create-validator", "--from", str(carol_key), "--node", node.url,
               "--self-stake", "5akt", "--moniker", "carol-val", "--wait")
    assert made.code == 0, made.err
    delegated = cli("tx", "stake", "delegate", CAROL.address, "2akt", "--from",
                    str(carol_key), "--node", node.url, "--wait")
    assert delegated.code == 0, delegated.err
    doc = json.loads(cli("query", "validators", "--node", node.url, "--json").out)
    carol = next(v for v in doc["validators"] if v["moniker"] == "carol-val")
    assert carol["tokens"] == 7_000_000 and carol["pubkey"] == CAROL.public.hex()
    text = cli("query", "validators", "--node", node.url).out
    assert "carol-val" in text and "v0" in text
    out = cli("tx", "stake", "undelegate", CAROL.public.hex(), "1akt", "--from",
              str(carol_key), "--node", node.url, "--wait")
    assert out.code == 0, out.err


def test_home_gives_key_and_node(node: Served, cli: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    listen = node.url.removeprefix("http://")
    cfg = NodeConfig(chain_id=CHAIN, home=Path("."), api=ApiConfig(listen=listen))
    (home / "config.toml").write_text(dump_config(cfg))
    crypto.save_key(home / "node_key.json", VALS[0])
    result = cli("status", "--home", str(home))
    assert result.code == 0 and "node: cli-node" in result.out
    unjail = cli("tx", "stake", "unjail", "--home", str(home))
    assert unjail.code == 1 and "error: tx refused" in unjail.err and "not jailed" in unjail.err


def test_unreachable_node(cli: Any, keyfile: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        url = f"http://127.0.0.1:{port}"
        for argv in (["status", "--node", url], ["query", "validators", "--node", url],
                     ["tx", "send", "--from", str(keyfile), "--node", url, BOB.address, "1"]):
            result = cli(*argv)
            assert result.code == 1
            assert result.err.startswith(f"error: cannot reach node at {url}: ")
            assert result.err.count("\n") == 1


def test_unknown_objects_and_bad_arguments(node: Served, cli: Any, keyfile: Path) -> None:
    missing = cli("query", "tx", "ab" * 32, "--node", node.url)
    assert (missing.code, missing.err) == (1, f"error: tx {'ab' * 32} not found\n")
    assert cli("query", "block", "9", "--node", node.url).err.startswith(
        "error: block 9 not found")
    assert cli("query", "account", "akash1xyz", "--node", node.url).code == 1
    assert cli("query", "block", "zero", "--node", node.url).code == 2
    assert cli("query", "tx", "nothex", "--node", node.url).code == 2
    bad_amount = cli("tx", "send", "--from", str(keyfile), "--node", node.url, BOB.address,
                     "1.0000001akt")
    assert bad_amount.code == 2 and "not a positive amount" in bad_amount.err
    assert cli("tx", "send", "--node", node.url, BOB.address, "1").code == 2  # no key
    bad_to = cli("tx", "send", "--from", str(keyfile), "--node", node.url, "bob", "1")
    assert bad_to.code == 2 and "TO" in bad_to.err
    assert cli("status", "--node", "ftp://x").code == 2


def test_parse_amount_units_and_zero() -> None:
    assert query.parse_amount("1000") == query.parse_amount("1000uakt") == 1000
    assert query.parse_amount("1.5AKT") == 1_500_000
    for zero in ("0", "0uakt", "0akt", " 0.0akt "):
        assert query.parse_amount(zero, "--fee", zero_ok=True) == 0
        with pytest.raises(click.BadParameter, match="is not a positive amount"):
            query.parse_amount(zero)
    for bad in ("-1", "0.5", "infakt", "akt", "nan"):
        with pytest.raises(click.BadParameter, match="is not a non-negative amount"):
            query.parse_amount(bad, "--fee", zero_ok=True)
