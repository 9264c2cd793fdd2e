"""ApiApp called directly over ASGI: client addresses, body limits, subscriber limits."""

from __future__ import annotations

import json
from typing import Any

import cbor2
import pytest
import trio

from p2pakash.api import ApiApp, EventHub, NodeInfo, TxIndex
from p2pakash.api.app import iso_ms
from p2pakash.ledger import Send, sign_tx
from p2pakash.mempool import Mempool
from tests.api import CHAIN, VALS, LocalChain, asgi_call
from tests.ledger.helpers import USERS

INFO = NodeInfo(chain_id=CHAIN, node_id=VALS[1].node_id, moniker="m", pubkey=USERS[3].public)


def make_app(*, allow_remote_writes: bool = False, hub: EventHub | None = None,
             max_tx_bytes: int = 1 << 20, tx_index: bool = True) -> ApiApp:
    chain = LocalChain()
    pool = Mempool.for_ledger(chain.ledger, max_tx_bytes=max_tx_bytes)
    return ApiApp(chain=chain, mempool=pool, info=INFO,
                  txindex=TxIndex(None) if tx_index else None, hub=hub,
                  allow_remote_writes=allow_remote_writes)


def tx_body(seq: int = 0) -> bytes:
    tx = sign_tx(USERS[0], CHAIN, sequence=seq, msgs=(Send(to=USERS[1].address, amount=1),))
    return json.dumps({"tx": tx.encode().hex()}).encode()


@pytest.mark.parametrize("host", ["10.0.0.5", "192.168.1.2", "2001:db8::1", "localhost-ish"])
async def test_remote_writes_are_refused(host: str) -> None:
    app = make_app()
    status, body = await asgi_call(app, "POST", "/tx", tx_body(), client=(host, 5555))
    assert status == 403
    assert body["error"] == (f"writes are accepted only from loopback clients, not from {host}"
                             " (set api.allow_remote_writes to allow them)")
    assert app.mempool.size == 0
    status, _ = await asgi_call(app, "GET", "/status", client=(host, 5555))
    assert status == 200  # reads stay open


async def test_unknown_client_counts_as_remote() -> None:
    status, body = await asgi_call(make_app(), "POST", "/tx", tx_body(), client=None)
    assert status == 403 and "an unknown address" in body["error"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
async def test_loopback_writes_are_served(host: str) -> None:
    status, body = await asgi_call(make_app(), "POST", "/tx", tx_body(), client=(host, 1))
    assert status == 200 and body["accepted"] is True


async def test_allow_remote_writes() -> None:
    app = make_app(allow_remote_writes=True)
    status, body = await asgi_call(app, "POST", "/tx", tx_body(), client=("10.0.0.5", 1))
    assert status == 200 and body["accepted"] is True


async def test_oversize_body_is_refused() -> None:
    app = make_app(max_tx_bytes=100)
    status, body = await asgi_call(app, "POST", "/tx", b"x" * (app.max_body + 1))
    assert status == 413 and body == {"error": f"request body larger than {app.max_body} bytes"}


async def test_tx_over_the_pool_limit_is_refused_with_its_size() -> None:
    app = make_app(max_tx_bytes=100)
    status, body = await asgi_call(app, "POST", "/tx", tx_body())
    assert status == 400 and body["error"].startswith("tx too large:")


async def test_non_json_body() -> None:
    status, body = await asgi_call(make_app(), "POST", "/tx", b"\xff{")
    assert status == 400 and body["error"].startswith("request body is not JSON")


async def test_event_subscriber_limit() -> None:
    app = make_app(hub=EventHub(max_subscribers=0))
    status, body = await asgi_call(app, "GET", "/events")
    assert (status, body) == (503, {"error": "too many event subscribers (limit 0)"})
    status, body = await asgi_call(app, "POST", "/events")
    assert status == 405


async def test_slow_subscriber_is_cut_off() -> None:
    hub = EventHub(buffer=2)
    with hub.subscription() as frames:
        for i in range(3):
            hub.publish(b"frame%d" % i)
        assert len(hub) == 0 and hub.dropped == 1
        assert [frames.receive_nowait(), frames.receive_nowait()] == [b"frame0", b"frame1"]
        with pytest.raises(trio.EndOfChannel):
            frames.receive_nowait()


async def test_without_a_tx_index_a_tx_is_found_only_while_pending() -> None:
    app = make_app(tx_index=False)
    raw = sign_tx(USERS[0], CHAIN, sequence=0, msgs=(Send(to=USERS[1].address, amount=1),))
    status, body = await asgi_call(app, "POST", "/tx", tx_body(), client=("127.0.0.1", 1))
    assert status == 200 and body["accepted"]
    status, body = await asgi_call(app, "GET", f"/tx/{raw.hash().hex()}")
    assert status == 200 and body == {"hash": raw.hash().hex(), "pending": True}
    other = "ab" * 32
    status, body = await asgi_call(app, "GET", f"/tx/{other}")
    assert status == 404 and body["error"] == (
        f"tx {other} is not pending here, and this node keeps no tx index"
        " ([api] tx_index = false): ask a node that does")


async def test_status_for_a_non_validator() -> None:
    status, body = await asgi_call(make_app(), "GET", "/status")
    assert status == 200 and body["validator"] is False and body["voting_power"] == 0
    assert body["latest_block_hash"] == "" and body["height"] == 0


def test_iso_ms() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"


def batch_body(*seqs: int) -> bytes:
    txs = [sign_tx(USERS[0], CHAIN, sequence=s, msgs=(Send(to=USERS[1].address, amount=1),))
           for s in seqs]
    return json.dumps({"txs": [tx.encode().hex() for tx in txs]}).encode()


async def test_batch_submit_answers_each_tx_in_order() -> None:
    published: list[bytes] = []
    app = make_app()
    app.publish = published.append
    status, body = await asgi_call(app, "POST", "/txs", batch_body(0, 1, 1, 5))
    assert status == 200 and body["accepted"] == 2
    assert [(r["index"], r["status"], r["accepted"]) for r in body["refused"]] == [
        (2, "duplicate", False), (3, "invalid", False)]
    assert body["refused"][1]["reason"].startswith("wrong sequence for")
    assert body["refused"][1]["code"] == 4 and len(body["refused"][1]["hash"]) == 64
    assert app.mempool.size == 2 and len(published) == 2


@pytest.mark.parametrize(("payload", "error"), [
    (b'{"tx": "00"}', 'expected a JSON object {"txs": ["<hex of an encoded tx>", ...]}'),
    (b'[1]', 'expected a JSON object {"txs": ["<hex of an encoded tx>", ...]}'),
    (b'{"txs": ["00", 7]}', "field txs[1]: expected a hex string"),
    (b'{"txs": ["zz"]}', "field txs[0]: not a hex string"),
])
async def test_batch_submit_bad_input(payload: bytes, error: str) -> None:
    app = make_app()
    status, body = await asgi_call(app, "POST", "/txs", payload)
    assert (status, body) == (400, {"error": error}) and app.mempool.size == 0


async def test_batch_submit_is_a_write() -> None:
    app = make_app()
    status, body = await asgi_call(app, "POST", "/txs", batch_body(0), client=("10.0.0.5", 1))
    assert status == 403 and app.mempool.size == 0
    status, body = await asgi_call(app, "GET", "/txs")
    assert status == 405 and body["error"] == "method GET not allowed on /txs (use POST)"


async def cbor_call(app: Any, body: bytes) -> tuple[int, dict[str, Any]]:
    """``POST /txs`` with ``content-type: application/cbor``."""
    scope = {"type": "http", "method": "POST", "path": "/txs", "client": ("127.0.0.1", 1),
             "headers": [(b"content-type", b"application/cbor")]}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent))


async def test_batch_submit_takes_a_cbor_array_of_tx_bytes() -> None:
    published: list[bytes] = []
    app = make_app()
    app.publish = published.append
    txs = [sign_tx(USERS[0], CHAIN, sequence=s, msgs=(Send(to=USERS[1].address, amount=1),))
           for s in (0, 1, 1, 5)]
    status, body = await cbor_call(app, cbor2.dumps([tx.encode() for tx in txs]))
    assert status == 200 and body["accepted"] == 2 and "full_from" not in body
    assert [(r["index"], r["status"]) for r in body["refused"]] == [(2, "duplicate"),
                                                                     (3, "invalid")]
    assert published == [txs[0].encode(), txs[1].encode()]


@pytest.mark.parametrize(("payload", "error"), [
    (b"\xff", "request body is not CBOR"),
    (b"\x80\x00", "request body: 1 bytes after the array"),
    (b"\xa0", "expected a CBOR array of byte strings (each an encoded tx), got dict"),
    (b"\x82\x41\x00\x61a", "item 1: expected a byte string, got str"),
    (b"\x5b\xff\xff\xff\xff\xff\xff\xff\x00", "request body is not CBOR"),
])
async def test_batch_submit_bad_cbor(payload: bytes, error: str) -> None:
    app = make_app()
    status, body = await cbor_call(app, payload)
    assert status == 400 and body["error"].startswith(error) and app.mempool.size == 0


async def test_batch_submit_stops_at_the_first_tx_the_full_mempool_refuses() -> None:
    app = make_app()
    app.mempool.max_txs = 2
    status, body = await asgi_call(app, "POST", "/txs", batch_body(0, 1, 2, 3))
    assert status == 200 and body["accepted"] == 2 and body["full_from"] == 2
    assert [(r["index"], r["status"]) for r in body["refused"]] == [(2, "full")]
    assert app.mempool.size == 2
