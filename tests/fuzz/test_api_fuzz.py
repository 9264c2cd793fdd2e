"""Fuzz the HTTP API's request parsing: method, path, path arguments and JSON bodies.

Property: ``ApiApp`` (on a real ledger-backed chain, called over ASGI) answers every request
with a JSON body and a status below 500 (500 means a handler raised: the parsing let bad
input through); an error answer carries ``{"error": ...}``. GET /events is left out (it
streams until the client goes away).
"""

from __future__ import annotations

import functools
import json

import trio
from hypothesis import example, given
from hypothesis import strategies as st

from p2pakash.api import ApiApp, NodeInfo, TxIndex
from p2pakash.api.app import HttpError
from p2pakash.api.tenant_routes import _int as tenant_int
from p2pakash.api.tenant_routes import _json as tenant_json
from p2pakash.ledger.txs import Send, sign_tx
from p2pakash.mempool import Mempool
from tests.api import CHAIN, VALS, LocalChain, asgi_call
from tests.fuzz.support import fuzz_settings, only_ours
from tests.ledger.helpers import USERS


@functools.cache
def app() -> ApiApp:
    chain = LocalChain()
    chain.make_block()
    info = NodeInfo(chain_id=CHAIN, node_id=VALS[1].node_id, moniker="m", pubkey=USERS[3].public)
    pool = Mempool.for_ledger(chain.ledger)
    return ApiApp(chain=chain, mempool=pool, info=info, txindex=TxIndex(None))


TX_HEX = sign_tx(USERS[0], CHAIN, sequence=0, msgs=(Send(to=USERS[1].address, amount=1),)
                 ).encode().hex()
ARGS = st.sampled_from(["1", "0", "latest", "99999999999999999999", "²", "٣", "-1", "%00",
                        "a" * 64, USERS[0].address, USERS[0].address.upper(), "akash1", ""])
paths = st.tuples(st.sampled_from(["status", "validators", "block", "account", "tx", "txs",
                                   "events", "", "deployments", "leases"]),
                  st.lists(ARGS | st.text(max_size=6), max_size=2)).map(
    lambda p: "/" + "/".join([p[0], *p[1]]))
bodies = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"{}", b"[]", b"null", b'{"tx": 1}', b'{"tx": "zz"}',
                     b'{"txs": {}}', b'{"txs": [1]}', b"[" * 5000, b"1" * 5000,
                     json.dumps({"tx": TX_HEX}).encode(),
                     json.dumps({"txs": [TX_HEX, "00", TX_HEX[:-2]]}).encode()]),
    st.dictionaries(st.sampled_from(["tx", "txs", "x"]),
                    st.text(max_size=8) | st.lists(st.text(max_size=8), max_size=3)
                    | st.integers() | st.none(), max_size=2).map(lambda d: json.dumps(d).encode()),
)


@fuzz_settings(300)
@given(st.sampled_from(["GET", "POST", "PUT", "DELETE"]), paths, bodies)
@example("GET", "/block/²", b"")  # found by this test: int('²') raised, a 500
@example("POST", "/tx", b"[" * 100_000)  # found by this test: RecursionError, a 500
def test_api_requests(method: str, path: str, body: bytes) -> None:
    if path == "/events" and method == "GET":
        return

    async def call() -> tuple[int, dict[str, object]]:
        return await asgi_call(app(), method, path, body)

    status, answer = trio.run(call)
    assert status < 500, answer
    assert status < 400 or isinstance(answer.get("error"), str)


@fuzz_settings(200)
@given(ARGS | st.text(max_size=8), st.binary(max_size=30) | bodies)
@example("²", b"")  # found by this test: int('²') raised ValueError
@example("1", b"[" * 100_000)  # found by this test: RecursionError
def test_tenant_route_arguments(text: str, body: bytes) -> None:
    only_ours(tenant_int, text, "dseq", allowed=(HttpError,))
    value = only_ours(tenant_json, body, allowed=(HttpError,))
    assert value is None or isinstance(value, dict)
