"""The API served by hypercorn on 127.0.0.1 (real sockets, real clock), against a real ledger."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.lowlevel

from p2pakash import wire
from p2pakash.api import ApiService, NodeInfo
from p2pakash.ledger import Send, Tx, sign_tx
from p2pakash.mempool import Mempool
from tests.api import CHAIN, VALS, LocalChain, ahttp
from tests.ledger.helpers import USERS

ALICE, BOB = USERS[0], USERS[1]
INFO = NodeInfo(chain_id=CHAIN, node_id=VALS[0].node_id, moniker="api-test", pubkey=VALS[0].public)


def send_tx(seq: int, amount: int = 7, key: Any = ALICE) -> bytes:
    return sign_tx(key, CHAIN, sequence=seq, msgs=(Send(to=BOB.address, amount=amount),)).encode()


@attrs.frozen
class Running:
    url: str
    chain: LocalChain
    pool: Mempool
    svc: ApiService
    published: list[bytes]


async def start(nursery: trio.Nursery, data_dir: Path | None = None,
                chain: LocalChain | None = None, tx_index: bool = True) -> Running:
    chain = chain or LocalChain()
    pool = Mempool.for_ledger(chain.ledger)
    published: list[bytes] = []
    svc = ApiService(chain=chain, mempool=pool, info=INFO, listen="127.0.0.1:0",
                     data_dir=data_dir, publish=published.append, peers=lambda: 3,
                     clock=lambda: 1_700_000_000.25, tx_index=tx_index)
    bound = await nursery.start(svc.run)
    return Running(url=f"http://{bound}", chain=chain, pool=pool, svc=svc, published=published)


async def indexed(run: Running, height: int) -> None:
    assert run.svc.app is not None and run.svc.app.txindex is not None
    for _ in range(1000):
        if run.svc.app.txindex.last_height >= height:
            return
        await trio.lowlevel.checkpoint()
    raise AssertionError(f"tx index did not reach height {height}")


@pytest.fixture
async def api(nursery: trio.Nursery) -> Running:
    return await start(nursery)


async def test_status(api: Running) -> None:
    api.chain.make_block()
    status, body = await ahttp(api.url + "/status")
    assert status == 200
    assert body["chain_id"] == CHAIN and body["moniker"] == "api-test"
    assert body["node_id"] == VALS[0].node_id and body["height"] == 1
    assert body["latest_block_hash"] == api.chain.latest_block_hash.hex()
    assert body["latest_block_time_ms"] == 1_001_000
    assert body["latest_block_time"] == "1970-01-01T00:16:41.000Z"
    assert body["time"] == "2023-11-14T22:13:20.250Z"
    assert body["peers"] == 3 and body["validator"] is True and body["voting_power"] == 10
    assert body["mempool_size"] == 0 and body["mempool_bytes"] == 0


async def test_block_by_height(api: Running) -> None:
    status, body = await ahttp(api.url + "/block/1")
    assert status == 404 and body == {"error": "block 1 not found (latest height is 0)"}
    raw = send_tx(0)
    api.chain.make_block()
    block, _ = api.chain.make_block([raw])
    status, body = await ahttp(api.url + "/block/2")
    assert status == 200
    assert body["hash"] == block.hash().hex() and body["num_txs"] == 1
    assert body["txs"] == [wire.decode(raw, Tx).hash().hex()]
    assert body["header"]["proposer"] == VALS[0].public.hex()
    assert body["header"]["last_block_hash"] == api.chain.blocks[0].hash().hex()
    assert body["commit"]["signatures"] == 3 and body["commit"]["block_hash"] == body["hash"]
    assert body["last_commit"]["height"] == 1
    assert (await ahttp(api.url + "/block/latest"))[1]["height"] == 2
    status, body = await ahttp(api.url + "/block/two")
    assert status == 400 and "invalid height 'two'" in body["error"]


async def test_account_counts_pending_txs(api: Running) -> None:
    status, body = await ahttp(api.url + f"/account/{ALICE.address}")
    assert status == 200
    assert body == {"address": ALICE.address, "balance": 100_000_000, "sequence": 0,
                    "pending_txs": 0, "next_sequence": 0}
    assert api.pool.add(send_tx(0)).accepted
    body = (await ahttp(api.url + f"/account/{ALICE.address}"))[1]
    assert body["sequence"] == 0 and body["next_sequence"] == 1
    status, body = await ahttp(api.url + "/account/akash1nope")
    assert status == 400 and body["error"].startswith("invalid address")


async def test_validators(api: Running) -> None:
    status, body = await ahttp(api.url + "/validators")
    assert status == 200 and body["height"] == 1 and body["total_power"] == 30
    assert sorted(v["pubkey"] for v in body["validators"]) == sorted(k.public.hex()
                                                                    for k in VALS)
    first = body["validators"][0]
    assert first["power"] == 10 and first["active"] and not first["jailed"]
    assert first["address"].startswith("akash1") and first["moniker"].startswith("v")


async def test_submit_pending_then_indexed(api: Running) -> None:
    raw = send_tx(0)
    h = wire.decode(raw, Tx).hash().hex()
    status, body = await ahttp(api.url + "/tx", "POST", {"tx": raw.hex()})
    assert status == 200
    assert body == {"hash": h, "accepted": True, "reason": "", "status": "admitted", "code": 0}
    assert api.published == [raw]
    assert await ahttp(api.url + f"/tx/{h}") == (200, {"hash": h, "pending": True})
    api.chain.commit_pool(api.pool)
    await indexed(api, 1)
    status, body = await ahttp(api.url + f"/tx/{h.upper()}")
    assert status == 200 and body["pending"] is False
    assert (body["height"], body["index"], body["code"], body["log"]) == (1, 0, 0, "")
    types = [e["type"] for e in body["events"]]
    assert "tx" in types and body["events"][0]["attributes"]["sender"] == ALICE.address


async def test_a_node_without_tx_index_writes_none_and_says_so(nursery: trio.Nursery,
                                                               tmp_path: Path) -> None:
    run = await start(nursery, tmp_path, tx_index=False)
    raw = send_tx(0)
    h = wire.decode(raw, Tx).hash().hex()
    assert (await ahttp(run.url + "/tx", "POST", {"tx": raw.hex()}))[0] == 200
    assert await ahttp(run.url + f"/tx/{h}") == (200, {"hash": h, "pending": True})
    run.chain.commit_pool(run.pool)
    for _ in range(100):  # the block reaches the API's follower (which indexes nothing)
        if not run.pool.has(bytes.fromhex(h)):
            break
        await trio.sleep(0.01)
    status, body = await ahttp(run.url + f"/tx/{h}")
    assert status == 404 and "keeps no tx index ([api] tx_index = false)" in body["error"]
    assert not (tmp_path / "txindex.sqlite").exists()
    status, body = await ahttp(run.url + "/block/1")
    assert status == 200 and h in body["txs"]


async def test_refused_txs(api: Running) -> None:
    raw = send_tx(0)
    assert (await ahttp(api.url + "/tx", "POST", {"tx": raw.hex()}))[0] == 200
    status, body = await ahttp(api.url + "/tx", "POST", {"tx": raw.hex()})
    assert status == 409 and body["error"] == "duplicate tx: already in the mempool"
    status, body = await ahttp(api.url + "/tx", "POST", {"tx": send_tx(0, amount=8).hex()})
    assert status == 400 and body["accepted"] is False and body["status"] == "invalid"
    assert "wrong sequence" in body["error"] and "expected 1, got 0" in body["reason"]
    forged = attrs.evolve(wire.decode(send_tx(0, key=BOB), Tx), signature=bytes(64)).encode()
    status, body = await ahttp(api.url + "/tx", "POST", {"tx": forged.hex()})
    assert status == 400 and body["error"].startswith("bad signature")
    status, body = await ahttp(api.url + "/tx", "POST", {"tx": "abcd"})
    assert status == 400 and body["error"].startswith("malformed tx")
    status, body = await ahttp(api.url + "/tx", "POST", {"tx": "xyz"})
    assert (status, body) == (400, {"error": "field tx: not a hex string"})
    status, body = await ahttp(api.url + "/tx", "POST", [1, 2])
    assert status == 400 and "expected a JSON object" in body["error"]
    assert api.published == [raw]


async def test_unknown_tx_path_and_method(api: Running) -> None:
    status, body = await ahttp(api.url + "/tx/" + "00" * 32)
    assert (status, body) == (404, {"error": f"tx {'00' * 32} not found"})
    status, body = await ahttp(api.url + "/tx/xyz")
    assert status == 400 and "64 hex characters" in body["error"]
    assert (await ahttp(api.url + "/nope"))[1] == {"error": "no such endpoint: /nope"}
    status, body = await ahttp(api.url + "/status", "POST", {})
    assert (status, body) == (405, {"error": "method POST not allowed on /status (use GET)"})
    assert (await ahttp(api.url + "/tx"))[0] == 405


async def read_until(stream: trio.SocketStream, buf: bytearray, marker: bytes) -> bytes:
    """Read from ``stream`` into ``buf`` until ``marker``; return and consume up to it."""
    with trio.move_on_after(5):
        while marker not in buf:
            data = await stream.receive_some(65536)
            assert data, f"connection closed after {bytes(buf)!r}"
            buf.extend(data)
    assert marker in buf, f"no {marker!r} in {bytes(buf)!r}"
    end = buf.index(marker) + len(marker)
    out = bytes(buf[:end])
    del buf[:end]
    return out


async def test_event_stream(api: Running) -> None:
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        # HTTP/1.0: a close-delimited body, so the frames arrive without chunk headers
        await stream.send_all(b"GET /events HTTP/1.0\r\nHost: x\r\n\r\n")
        buf = bytearray()
        head = await read_until(stream, buf, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
        assert b": connected to api-test at height 0" in await read_until(stream, buf, b"\n\n")
        assert len(api.svc.hub) == 1  # subscribed before the hello was sent
        raw = send_tx(0)
        block, _ = api.chain.make_block([raw])
        frame = (await read_until(stream, buf, b"\n\n")).decode()
        assert frame.startswith("event: block\nid: 1\ndata: "), frame
        event = json.loads(frame.split("data: ", 1)[1])
        assert event["height"] == 1 and event["hash"] == block.hash().hex()
        assert event["num_txs"] == 1 and event["txs"][0]["code"] == 0
        assert event["txs"][0]["hash"] == wire.decode(raw, Tx).hash().hex()
        assert event["validator_updates"] == [] and isinstance(event["events"], list)


async def test_restart_backfills_missed_blocks(nursery: trio.Nursery, tmp_path: Path) -> None:
    chain = LocalChain()
    raw = send_tx(0)
    async with trio.open_nursery() as first_run:
        first = await start(first_run, tmp_path, chain)
        chain.make_block([raw])
        await indexed(first, 1)
        first_run.cancel_scope.cancel()
    h = wire.decode(raw, Tx).hash().hex()
    missed = send_tx(1)
    chain.make_block([missed], notify=False)  # committed while the API was down
    again = await start(nursery, tmp_path, chain)
    status, body = await ahttp(again.url + f"/tx/{h}")
    assert status == 200 and body["code"] == 0 and body["height"] == 1
    status, body = await ahttp(again.url + f"/tx/{wire.decode(missed, Tx).hash().hex()}")
    assert status == 200 and body["height"] == 2 and body["code"] is None


async def test_port_in_use_fails_before_started(nursery: trio.Nursery) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        chain = LocalChain()
        svc = ApiService(chain=chain, mempool=Mempool.for_ledger(chain.ledger), info=INFO,
                         listen=f"127.0.0.1:{port}")
        with pytest.raises(OSError):
            await nursery.start(svc.run)
