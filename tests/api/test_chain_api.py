"""The API on real nodes: two validators (GossipService + ChainService over the in-memory
network, real clock), each with its mempool, tx gossip and ApiService on 127.0.0.1.

A tx submitted to one node's API reaches the other node's mempool by gossip, is committed,
and both nodes' tx indexes and block endpoints agree."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import attrs
import trio

from p2pakash import wire
from p2pakash.api import ApiService, NodeInfo, TxGossip
from p2pakash.chain import ChainService
from p2pakash.consensus.core import TimeoutParams
from p2pakash.crypto import PrivateKey, VerifyCache
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams, Verdict
from p2pakash.gossip.service import GossipService
from p2pakash.ledger import (
    UAKT_PER_AKT,
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
    Send,
    Tx,
    TxBatch,
    sign_tx,
)
from p2pakash.mempool import TOPIC, Mempool, tx_validator
from tests.api import ahttp

CHAIN = "api-chain"
FAST = TimeoutParams(propose=0.2, propose_delta=0.05, prevote=0.05, prevote_delta=0.02,
                     precommit=0.05, precommit_delta=0.02, commit=0.02)
KEYS = [PrivateKey.from_seed(hashlib.sha256(f"api-val-{i}".encode()).digest())
        for i in range(2)]
USER = PrivateKey.from_seed(hashlib.sha256(b"api-user").digest())


def genesis() -> GenesisDoc:
    return GenesisDoc(
        chain_id=CHAIN, genesis_time_ms=0,
        accounts=(GenesisAccount(address=USER.address, balance=50 * UAKT_PER_AKT),),
        validators=tuple(GenesisValidator(pubkey=k.public, stake=100 * UAKT_PER_AKT,
                                          moniker=f"v{i}") for i, k in enumerate(KEYS)))


@attrs.frozen
class ApiNode:
    url: str
    chain: ChainService
    mempool: Mempool


async def start_node(nursery: trio.Nursery, net: MemoryNetwork, i: int,
                     cache: VerifyCache) -> ApiNode:
    key = KEYS[i]
    peers = [PeerAddr.parse(f"{k.node_id}@10.2.0.{j + 1}:26656")
             for j, k in enumerate(KEYS) if j != i]
    gossip = GossipService(
        transport=MemoryTransport(net, key, CHAIN, f"10.2.0.{i + 1}:26656"),
        rng=random.Random(i), peer_params=PeerParams(pex_interval=1e9, backoff_base=0.05,
                                                     backoff_max=0.2),
        pubsub_params=PubSubParams(), persistent=peers)
    chain = ChainService(gossip=gossip, key=key, genesis=genesis(), timeouts=FAST,
                         verify_cache=cache, status_interval=0.2, name=f"n{i}")
    mempool = Mempool.for_ledger(chain.ledger)
    chain.mempool = mempool
    # no batching delay: with these 20 ms commits, a tx could be committed before a 20 ms
    # batch flushes, and an honest node does not gossip a tx it no longer holds
    txs = TxGossip(gossip, mempool, flush_interval=0.0)
    api = ApiService(chain=chain, mempool=mempool, listen="127.0.0.1:0", publish=txs.publish,
                     peers=lambda: len(gossip.connected),
                     info=NodeInfo(chain_id=CHAIN, node_id=key.node_id, moniker=f"v{i}",
                                   pubkey=key.public))
    await nursery.start(gossip.run)
    await nursery.start(txs.run)
    bound = await nursery.start(api.run)
    await nursery.start(chain.run)
    return ApiNode(url=f"http://{bound}", chain=chain, mempool=mempool)


async def wait_until(cond: Callable[[], bool], limit: float = 10.0) -> None:
    with trio.fail_after(limit):
        while not cond():  # noqa: ASYNC110 - polls state another task changes, bounded
            await trio.sleep(0.02)


async def test_tx_submitted_to_one_node_is_gossiped_and_committed(
        nursery: trio.Nursery) -> None:
    net = MemoryNetwork(random.Random(7))
    cache = VerifyCache()  # one cache for the process, as a simulation would share it
    a = await start_node(nursery, net, 0, cache)
    b = await start_node(nursery, net, 1, cache)
    await wait_until(lambda: a.chain.height >= 1 and b.chain.height >= 1)
    # b must know a takes the txs topic, or a would only see the tx in a block (a race).
    await wait_until(lambda: a.chain.gossip.node_id in b.chain.gossip.pubsub.topic_peers(TOPIC))
    verdicts: list[tuple[str, Verdict]] = []  # node a's txs-topic validator, observed
    validate = tx_validator(a.mempool, a.chain.gossip.node_id)

    def observed(peer: str, topic: str, data: bytes) -> Verdict:
        verdicts.append((peer, validate(peer, topic, data)))
        return verdicts[-1][1]

    a.chain.gossip.set_validator(TOPIC, observed)

    raw = sign_tx(USER, CHAIN, sequence=0,
                  msgs=(Send(to=KEYS[0].address, amount=5),)).encode()
    h = wire.decode(raw, Tx).hash()
    status, body = await ahttp(b.url + "/tx", "POST", {"tx": raw.hex()})
    assert status == 200 and body["accepted"], body
    status, body = await ahttp(b.url + "/tx", "POST", {"tx": raw.hex()})
    assert status == 409

    async def committed(url: str) -> dict[str, object]:
        with trio.fail_after(10):
            while True:
                status, found = await ahttp(url + f"/tx/{h.hex()}")
                if status == 200 and not found["pending"]:
                    return found
                await trio.sleep(0.05)

    on_a, on_b = await committed(a.url), await committed(b.url)
    assert verdicts == [(b.chain.gossip.node_id, Verdict.ACCEPT)]  # a got it by gossip
    assert on_a == on_b and on_a["code"] == 0
    height = on_a["height"]
    assert isinstance(height, int)
    block_a = (await ahttp(a.url + f"/block/{height}"))[1]
    block_b = (await ahttp(b.url + f"/block/{height}"))[1]
    assert block_a["hash"] == block_b["hash"] and h.hex() in block_a["txs"]
    assert block_a["commit"] is not None
    account = (await ahttp(a.url + f"/account/{USER.address}"))[1]
    assert account["sequence"] == 1 and account["balance"] == 50 * UAKT_PER_AKT - 5
    await wait_until(lambda: a.mempool.size == 0 and b.mempool.size == 0)
    status = (await ahttp(a.url + "/status"))[1]
    assert status["peers"] == 1 and status["validator"] is True
    nursery.cancel_scope.cancel()


async def test_txs_admitted_together_are_gossiped_as_one_batch(nursery: trio.Nursery) -> None:
    net = MemoryNetwork(random.Random(8))
    cache = VerifyCache()
    a = await start_node(nursery, net, 0, cache)
    b = await start_node(nursery, net, 1, cache)
    await wait_until(lambda: len(a.chain.gossip.connected) == 1
                     and TOPIC in b.chain.gossip.pubsub.subscriptions())
    seen: list[bytes] = []
    validate = tx_validator(a.mempool, a.chain.gossip.node_id)

    def observed(peer: str, topic: str, data: bytes) -> Verdict:
        seen.append(data)
        return validate(peer, topic, data)

    a.chain.gossip.set_validator(TOPIC, observed)
    raws = [sign_tx(USER, CHAIN, sequence=s, msgs=(Send(to=KEYS[0].address, amount=1),)
                    ).encode() for s in range(5)]
    status, body = await ahttp(b.url + "/txs", "POST", {"txs": [r.hex() for r in raws]})
    assert status == 200 and body["accepted"] == 5, body
    await wait_until(lambda: all(a.mempool.has(wire.decode(r, Tx).hash()) for r in raws)
                     or a.chain.ledger.account(USER.address).sequence == 5)
    assert seen == [wire.encode(TxBatch(txs=tuple(raws)))]  # one gossip message, in order
    await wait_until(lambda: a.chain.ledger.account(USER.address).sequence == 5)
    nursery.cancel_scope.cancel()
