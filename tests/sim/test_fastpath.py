"""The simulator's in-memory fast path: item batches, the delivery pump and network clock,
and GossipService.connect outside the outbound budget (found by the simulator)."""

from __future__ import annotations

import hashlib
import random

import pytest
import trio

from p2pakash import wire
from p2pakash.crypto import PrivateKey
from p2pakash.gossip import messages as m
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams
from p2pakash.gossip.service import GossipService
from p2pakash.gossip.service_types import frame_overhead
from p2pakash.gossip.transport import Connection

CHAIN = "fast-chain"


def key(i: int) -> PrivateKey:
    return PrivateKey.from_seed(hashlib.sha256(f"fastpath-{i}".encode()).digest())


def addr(i: int) -> str:
    return f"10.9.0.{i + 1}:26656"


def service(net: MemoryNetwork, i: int, peers: list[int], *, max_outbound: int = 8
            ) -> GossipService:
    return GossipService(
        transport=MemoryTransport(net, key(i), CHAIN, addr(i)), rng=random.Random(i),
        peer_params=PeerParams(max_outbound=max_outbound, max_inbound=20, pex_interval=1e9,
                               backoff_base=0.05, backoff_max=0.3),
        pubsub_params=PubSubParams(),
        persistent=[PeerAddr.parse(f"{key(j).node_id}@{addr(j)}") for j in peers])


def test_frame_overhead_is_exact() -> None:
    for n in (0, 1, 23, 24, 255, 256, 1000):
        items = [wire.encode(m.Ping(nonce=7))] * n
        assert len(wire.encode_batch(m.Frame, items)) == sum(map(len, items)) + \
            frame_overhead(n)


@pytest.mark.parametrize("items", [False, True])
async def test_publish_reaches_everyone_and_counts_the_same_bytes(
        autojump_clock: trio.abc.Clock, items: bool) -> None:
    net = MemoryNetwork(random.Random(1), latency=0.01, items=items, resolution=0.001)
    n = 8
    async with trio.open_nursery() as nursery:
        if items:
            nursery.start_soon(net.run_clock)
        services = [service(net, i, [j for j in range(i)]) for i in range(n)]
        subs = []
        for s in services:
            await nursery.start(s.run)
            subs.append(s.subscribe("t"))
        with trio.fail_after(30):
            while any(len(s.connected) < 1 for s in services):  # noqa: ASYNC110
                await trio.sleep(0.05)
        await trio.sleep(3)  # meshes form on heartbeats
        for k in range(5):
            services[k].publish("t", b"payload-%d" % k)
        got: list[set[bytes]] = [set() for _ in services]
        with trio.fail_after(10):
            for i, sub in enumerate(subs):
                while len(got[i]) < 5:
                    got[i].add((await sub.receive()).data)
        assert all(g == {b"payload-%d" % k for k in range(5)} for g in got)
        out = sum(s.stats.bytes_out for s in services)
        inn = sum(s.stats.bytes_in for s in services)
        assert out == net.bytes_sent and 0 < inn <= out  # some frames are in flight
        assert net.frames_dropped == 0
        nursery.cancel_scope.cancel()


async def test_item_link_is_fifo_with_latency_and_ends_with_none(
        autojump_clock: trio.abc.Clock) -> None:
    net = MemoryNetwork(random.Random(2), latency=0.05, items=True)
    got: list[tuple[float, object]] = []
    ready = trio.Event()

    async def handler(conn: Connection) -> None:
        from p2pakash.gossip.memory import MemoryConnection
        assert isinstance(conn, MemoryConnection) and conn.can_attach
        done = trio.Event()

        def sink(payload: object) -> None:
            got.append((trio.current_time(), payload))
            if payload is None:
                done.set()

        conn.attach(sink)
        ready.set()
        await done.wait()

    server = MemoryTransport(net, key(1), CHAIN, addr(1))
    client = MemoryTransport(net, key(2), CHAIN, addr(2))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(net.run_clock)
        await nursery.start(server.serve, handler)
        await nursery.start(client.serve, handler)
        conn = await client.dial(addr(1), expected=key(1).node_id)
        await ready.wait()
        start = trio.current_time()
        assert conn.send_items((m.Ping(nonce=1),), 10)
        await conn.send(wire.encode(m.Frame(items=(m.Ping(nonce=2),))))  # bytes still work
        assert conn.send_items((m.Ping(nonce=3),), 10)
        await conn.aclose()
        with trio.fail_after(5):
            while not got or got[-1][1] is not None:  # noqa: ASYNC110
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    kinds = [type(p).__name__ for _, p in got]
    assert kinds == ["Batch", "bytes", "Batch", "NoneType"]
    assert all(t - start == pytest.approx(0.05, abs=1e-9) for t, _ in got[:3])
    assert net.frames_sent == 3 and net.bytes_sent == 10 + 10 + len(
        wire.encode(m.Frame(items=(m.Ping(nonce=2),))))


@pytest.mark.parametrize("items", [False, True])
async def test_connect_dials_outside_a_full_outbound_budget(
        autojump_clock: trio.abc.Clock, items: bool) -> None:
    # Node 0 has two persistent peers and max_outbound 2: its budget is full. connect() to
    # node 3 must still give a link (a tenant reaching the provider it leased from).
    net = MemoryNetwork(random.Random(3), latency=0.005, items=items)
    async with trio.open_nursery() as nursery:
        if items:
            nursery.start_soon(net.run_clock)
        others = [service(net, i, []) for i in (1, 2, 3)]
        for s in others:
            await nursery.start(s.run)
        zero = service(net, 0, [1, 2], max_outbound=2)
        await nursery.start(zero.run)
        with trio.fail_after(10):
            while len(zero.connected) < 2:  # noqa: ASYNC110
                await trio.sleep(0.05)
        zero.connect(PeerAddr.parse(f"{key(3).node_id}@{addr(3)}"))
        with trio.fail_after(10):
            while key(3).node_id not in zero.connected:  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert zero.peers.outbound_count() == 3
        nursery.cancel_scope.cancel()


async def test_relay_forwards_a_topic_without_a_local_subscription(
        autojump_clock: trio.abc.Clock) -> None:
    # A line 0 - 1 - 2: node 1 only relays "t"; 2's message reaches 0 through it.
    net = MemoryNetwork(random.Random(4), latency=0.01, items=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run_clock)
        services = [service(net, 0, []), service(net, 1, [0]), service(net, 2, [1])]
        for s in services:
            await nursery.start(s.run)
        sub0 = services[0].subscribe("t")
        services[1].relay("t")
        services[2].subscribe("t")
        assert "t" in services[1].pubsub.subscriptions()
        with trio.fail_after(30):
            while len(services[1].pubsub.mesh("t")) < 2:  # noqa: ASYNC110
                await trio.sleep(0.1)
        services[2].publish("t", b"over the relay")
        with trio.fail_after(5):
            assert (await sub0.receive()).data == b"over the relay"
        assert services[1].pubsub.stats.delivered == 1  # validated and forwarded there
        services[1].relay("t")  # joining twice changes nothing
        nursery.cancel_scope.cancel()


def test_gossip_ticks_run_from_the_event_clock_and_stop_with_the_service() -> None:
    from p2pakash.gossip.memory_clock import EventClock

    async def main() -> tuple[int, int, int]:
        net = MemoryNetwork(random.Random(5), latency=0.01, items=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run_clock)
            services = [service(net, i, [j for j in range(i)]) for i in range(4)]
            scopes = []
            for s in services:
                scope = trio.CancelScope()
                scopes.append(scope)

                async def run(s: GossipService = s, scope: trio.CancelScope = scope,
                              task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                              ) -> None:
                    with scope:
                        await s.run(task_status=task_status)

                await nursery.start(run)
                s.subscribe("t")
            assert all(s._call_at is not None for s in services)  # no ticker task
            await trio.sleep(10.5)
            beats = services[0].pubsub._heartbeats
            meshed = len(services[0].pubsub.mesh("t"))
            scopes[0].cancel()
            await trio.sleep(5)
            after = services[0].pubsub._heartbeats
            nursery.cancel_scope.cancel()
        return beats, meshed, after

    beats, meshed, after = trio.run(main, clock=EventClock())
    assert beats == 10  # one heartbeat a second (the first one second after start)
    assert meshed == 3
    assert after == beats  # the stopped service's scheduled ticks do nothing


def test_shared_decode_table_gives_each_node_the_same_frozen_message() -> None:
    from types import SimpleNamespace

    from p2pakash.chain import ChainService
    from p2pakash.consensus.types import Proposal, Vote, VoteType, sign_vote
    from p2pakash.errors import RemoteProtocolError

    vote = sign_vote(key(1), CHAIN, type=VoteType.PREVOTE, height=3, round=0,
                     block_hash=b"h" * 32, timestamp_ms=5)
    data = wire.encode(vote)
    table = wire.DecodeMemo(8)
    a, b = SimpleNamespace(shared_decoded=table), SimpleNamespace(shared_decoded=table)
    first = ChainService._decode(a, data, Vote)  # type: ignore[arg-type]
    assert first == vote and table.decode(data, Vote) is first
    assert ChainService._decode(b, data, Vote) is first  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError):  # same bytes, other class: decoded (and refused)
        ChainService._decode(b, data, Proposal)  # type: ignore[arg-type]
    alone = ChainService._decode(SimpleNamespace(shared_decoded=None), data, Vote)  # type: ignore[arg-type]
    assert alone == vote and alone is not first
