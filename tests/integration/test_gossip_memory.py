"""Many real gossip services in one process over the in-memory network (virtual time).

These run the same GossipService, PeerManager and PubSub code a TCP node runs; only the
transport differs.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from p2pakash.crypto import PrivateKey
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams, Verdict
from p2pakash.gossip.service import Delivered, GossipService

CHAIN = "test-chain"
TOPIC = "t"


@attrs.define
class Net:
    network: MemoryNetwork
    services: list[GossipService]
    inboxes: list[list[Delivered]]


def _key(i: int) -> PrivateKey:
    return PrivateKey.from_seed(hashlib.sha256(f"node-{i}".encode()).digest())


def _addr(i: int) -> str:
    return f"10.0.{i // 200}.{i % 200 + 1}:26656"


async def wait_for(cond: Callable[[], bool], *, limit: float = 60.0, step: float = 0.05) -> None:
    """Wait (virtual time) until ``cond()``; fail after ``limit`` virtual seconds."""
    with trio.fail_after(limit):
        while not cond():  # noqa: ASYNC110 - polls a condition in virtual time
            await trio.sleep(step)


@asynccontextmanager
async def gossip_network(n: int, *, seed: int = 1, loss: float = 0.0, links: int = 3,
                         latency: float = 0.005) -> AsyncIterator[Net]:
    rng = random.Random(seed)
    network = MemoryNetwork(random.Random(seed), latency=latency, loss=loss)
    keys = [_key(i) for i in range(n)]
    services: list[GossipService] = []
    for i in range(n):
        # A random connected graph: each node keeps persistent links to `links` earlier nodes.
        earlier = sorted(rng.sample(range(i), min(i, links))) if i else []
        persistent = [PeerAddr.parse(f"{keys[j].node_id}@{_addr(j)}") for j in earlier]
        services.append(GossipService(
            transport=MemoryTransport(network, keys[i], CHAIN, _addr(i)),
            rng=random.Random(seed * 1000 + i),
            peer_params=PeerParams(max_outbound=links, max_inbound=20, pex_interval=1e9),
            pubsub_params=PubSubParams(),
            persistent=persistent,
        ))
    inboxes: list[list[Delivered]] = [[] for _ in range(n)]

    async def collect(channel: trio.MemoryReceiveChannel[Delivered], box: list[Delivered]
                      ) -> None:
        async for item in channel:
            box.append(item)

    async with trio.open_nursery() as nursery:
        for i, service in enumerate(services):
            service.set_validator(TOPIC, lambda peer, topic, data: Verdict.ACCEPT)
            await nursery.start(service.run)
            nursery.start_soon(collect, service.subscribe(TOPIC), inboxes[i])
        net = Net(network=network, services=services, inboxes=inboxes)
        # Every node in some mesh. (A node whose few neighbours all have full meshes may
        # stay at one mesh peer for a prune backoff, as in go-libp2p; flood publish and
        # IHAVE gossip still reach it.)
        await wait_for(lambda: all(s.pubsub.mesh(TOPIC) for s in services))
        yield net
        nursery.cancel_scope.cancel()


def _missing(net: Net, wanted: list[bytes]) -> str:
    lines = []
    for service, box in zip(net.services, net.inboxes, strict=True):
        got = {d.data for d in box}
        miss = [w for w in wanted if w not in got]
        if miss:
            by_id = {s.node_id: s for s in net.services}
            back = [service.node_id in by_id[p].connected for p in sorted(service.connected)]
            lines.append(f"{service.node_id[:8]} misses {miss}: connected "
                         f"{len(service.connected)} (they see us: {back}), mesh "
                         f"{len(service.pubsub.mesh(TOPIC))}, {service.pubsub.stats},"
                         f" {service.stats}")
    return "\n".join(lines)


def _received(net: Net, data: bytes) -> int:
    return sum(any(d.data == data for d in box) for box in net.inboxes)


async def test_one_publish_reaches_all_50(autojump_clock: trio.abc.Clock) -> None:
    async with gossip_network(50) as net:
        net.services[17].publish(TOPIC, b"hello everyone")
        await wait_for(lambda: _received(net, b"hello everyone") == 50, limit=5)
        for box in net.inboxes:
            assert sum(d.data == b"hello everyone" for d in box) == 1  # delivered once each


async def test_each_node_receives_each_message_a_bounded_number_of_times(
        autojump_clock: trio.abc.Clock) -> None:
    async with gossip_network(50) as net:
        before = [s.pubsub.stats.duplicates for s in net.services]
        for k in range(20):
            net.services[k].publish(TOPIC, f"m{k}".encode())
        await wait_for(lambda: all(_received(net, f"m{k}".encode()) == 50 for k in range(20)),
                       limit=10)
        pairs = zip(net.services, before, strict=True)
        copies = [(s.pubsub.stats.duplicates - b) / 20 + 1 for s, b in pairs]
        params = PubSubParams()
        assert max(copies) <= params.d_hi + 1
        assert sum(copies) / len(copies) < params.d + 1


async def test_ten_percent_loss_still_reaches_all(autojump_clock: trio.abc.Clock) -> None:
    # Dense enough that every node has neighbours outside its mesh: IHAVE gossip goes to
    # non-mesh peers (gossipsub), so a node whose every neighbour meshes with it and whose
    # eager copies were all lost would have nobody to tell it.
    async with gossip_network(50, loss=0.10, seed=3, links=8) as net:
        for k in range(10):
            net.services[k * 3].publish(TOPIC, f"lossy{k}".encode())
        try:
            await wait_for(lambda: all(_received(net, f"lossy{k}".encode()) == 50
                                       for k in range(10)), limit=30)
        except trio.TooSlowError:
            wanted = [f"lossy{k}".encode() for k in range(10)]
            raise AssertionError("not repaired:\n" + _missing(net, wanted)) from None
        assert net.network.frames_dropped > 0


async def test_partition_heals(autojump_clock: trio.abc.Clock) -> None:
    async with gossip_network(20, seed=5) as net:
        ids = [s.node_id for s in net.services]
        net.network.partition([ids[:10], ids[10:]])
        net.services[0].publish(TOPIC, b"during")
        await wait_for(lambda: _received(net, b"during") >= 10, limit=5)
        await trio.sleep(2)
        assert _received(net, b"during") == 10  # nothing crossed the partition
        net.network.heal()
        await trio.sleep(5)  # links redial / resume; the mesh repairs
        net.services[15].publish(TOPIC, b"after")
        await wait_for(lambda: _received(net, b"after") == 20, limit=60)
