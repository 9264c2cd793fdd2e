"""The in-memory transport under trio's MockClock (virtual time)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from trio import Nursery
from trio.testing import MockClock

from p2pakash.crypto import NodeID, PrivateKey
from p2pakash.errors import HandshakeError, LocalProtocolError, RemoteProtocolError
from p2pakash.gossip.memory import MemoryNetwork, MemoryTransport
from p2pakash.gossip.transport import Connection, ConnectionClosed

CHAIN = "mem-test"


def _key(n: int) -> PrivateKey:
    return PrivateKey.from_seed(bytes([n]) * 32)


class Node:
    def __init__(self, net: MemoryNetwork, n: int, *, chain: str = CHAIN,
                 max_frame: int = 1 << 20) -> None:
        self.transport = MemoryTransport(net, _key(n), chain, f"10.0.0.{n}:26656",
                                         max_frame=max_frame)
        self.id = self.transport.node_id
        self.addr = self.transport.listen
        self.send_conn, self.conns = trio.open_memory_channel[Connection](100)

    async def handler(self, conn: Connection) -> None:
        self.send_conn.send_nowait(conn)
        await trio.sleep_forever()  # the test drives the connection


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


async def _serve(nursery: trio.Nursery, net: MemoryNetwork, n: int, **kw: object) -> Node:
    node = Node(net, n, **kw)  # type: ignore[arg-type]
    assert await nursery.start(node.transport.serve, node.handler) == node.addr
    return node


async def _pair(nursery: trio.Nursery, net: MemoryNetwork,
                **kw: object) -> tuple[Node, Node, Connection, Connection]:
    a, b = await _serve(nursery, net, 1), await _serve(nursery, net, 2, **kw)
    out = await a.transport.dial(b.addr, expected=b.id)
    inbound = await b.conns.receive()
    return a, b, out, inbound


async def test_identities_and_latency_in_virtual_time(nursery: Nursery,
                                                      autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(1), latency=0.05)
    start = trio.current_time()
    a, b, out, inbound = await _pair(nursery, net)
    assert trio.current_time() - start == pytest.approx(0.1)  # dial = one round trip
    assert (out.local_id, out.remote_id, inbound.remote_id) == (a.id, b.id, a.id)
    assert out.outbound and not inbound.outbound
    assert out.remote_pubkey == _key(2).public and inbound.remote_pubkey == _key(1).public
    assert out.remote_listen_addr == b.addr and inbound.remote_listen_addr == a.addr
    assert (out.remote_host, inbound.remote_host) == ("10.0.0.2", "10.0.0.1")
    sent_at = trio.current_time()
    await out.send(b"hello")
    assert await inbound.receive() == b"hello"
    assert trio.current_time() - sent_at == pytest.approx(0.05)
    assert (net.frames_sent, net.bytes_sent, net.frames_dropped) == (1, 5, 0)


async def test_fifo_under_jittered_latency(nursery: Nursery, autojump_clock: MockClock) -> None:
    def jitter(src: NodeID, dst: NodeID, rng: random.Random) -> float:
        return rng.uniform(0.001, 0.2)

    net = MemoryNetwork(random.Random(2), latency=jitter)
    _, _, out, inbound = await _pair(nursery, net)
    for i in range(200):
        await out.send(i.to_bytes(2, "big"))
    times, got = [], []
    for _ in range(200):
        got.append(int.from_bytes(await inbound.receive(), "big"))
        times.append(trio.current_time())
    assert got == list(range(200))
    assert times == sorted(times) and times[-1] > times[0]


async def test_loss_rate_follows_config(nursery: Nursery, autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(3), loss=0.2, buffer_frames=4096)
    _, _, out, inbound = await _pair(nursery, net)
    for i in range(2000):
        await out.send(i.to_bytes(2, "big"))
    await out.aclose()
    got = []
    with pytest.raises(ConnectionClosed):
        for _ in range(2001):
            got.append(int.from_bytes(await inbound.receive(), "big"))
    assert got == sorted(got)  # what survives stays in order
    assert net.frames_sent == 2000
    assert net.frames_dropped == 2000 - len(got)
    assert 0.17 < net.frames_dropped / 2000 < 0.23


async def test_partition_and_heal(nursery: Nursery, autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(4), latency=0.01)
    a, b, out, inbound = await _pair(nursery, net)
    c = await _serve(nursery, net, 3)
    net.partition([{a.id, c.id}, {b.id}])
    assert not net.connected(a.id, b.id) and net.connected(a.id, c.id)
    await out.send(b"lost")
    with trio.move_on_after(5):
        await inbound.receive()
        pytest.fail("a frame crossed a partition")
    assert net.frames_dropped == 1
    with pytest.raises(OSError, match="unreachable"):
        await a.transport.dial(b.addr)
    await a.transport.dial(c.addr)  # same side: fine
    net.heal()
    await out.send(b"through")
    assert await inbound.receive() == b"through"
    await b.transport.dial(a.addr)
    with pytest.raises(ValueError, match="two partition groups"):
        net.partition([{a.id}, {a.id}])


async def test_bandwidth_delays_frames(nursery: Nursery, autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(5), latency=0.1, bandwidth=1000.0)
    _, _, out, inbound = await _pair(nursery, net)
    t0 = trio.current_time()
    for _ in range(3):
        await out.send(b"x" * 500)
    arrivals = []
    for _ in range(3):
        await inbound.receive()
        arrivals.append(trio.current_time() - t0)
    assert arrivals == pytest.approx([0.6, 1.1, 1.6])


async def test_set_link_overrides_one_pair(nursery: Nursery, autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(6), latency=0.01)
    a, b, out, inbound = await _pair(nursery, net)
    net.set_link(a.id, b.id, latency=0.5)
    assert net.link_latency(b.id, a.id) == 0.5
    net.set_link(b.id, a.id, latency=0.2, directed=True)
    assert (net.link_latency(a.id, b.id), net.link_latency(b.id, a.id)) == (0.5, 0.2)
    t0 = trio.current_time()
    await out.send(b"slow")
    await inbound.receive()
    assert trio.current_time() - t0 == pytest.approx(0.5)
    net.set_link(a.id, b.id, loss=1.0)  # latency override kept, every frame lost
    assert net.link_latency(a.id, b.id) == 0.5
    await out.send(b"gone")
    assert net.frames_dropped == 1
    net.clear_links()
    assert net.link_latency(a.id, b.id) == 0.01


async def test_close_drains_then_ends(nursery: Nursery, autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(7), latency=0.05)
    _, _, out, inbound = await _pair(nursery, net)
    for i in range(3):
        await out.send(bytes([i]))
    await out.aclose()
    with pytest.raises(ConnectionClosed):
        await out.send(b"after close")
    with pytest.raises(ConnectionClosed):
        await out.receive()
    assert [await inbound.receive() for _ in range(3)] == [b"\x00", b"\x01", b"\x02"]
    with pytest.raises(ConnectionClosed, match="peer closed"):
        await inbound.receive()
    with pytest.raises(ConnectionClosed, match="peer closed"):
        await inbound.send(b"to nobody")


async def test_own_close_wakes_a_blocked_receive(nursery: Nursery,
                                                  autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(8))
    _, _, out, _ = await _pair(nursery, net)
    outcome: list[str] = []

    async def reader() -> None:
        try:
            await out.receive()
        except ConnectionClosed:
            outcome.append("closed")

    async with trio.open_nursery() as n:
        n.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await out.aclose()
    assert outcome == ["closed"]


async def test_back_pressure_when_buffer_full(nursery: Nursery, autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(9), buffer_frames=4)
    _, _, out, inbound = await _pair(nursery, net)
    sent = 0
    with trio.move_on_after(10):
        for _ in range(10):
            await out.send(b"f")
            sent += 1
    assert sent == 4

    async def sender() -> None:
        for _ in range(6):
            await out.send(b"g")

    async with trio.open_nursery() as n:
        n.start_soon(sender)
        got = [await inbound.receive() for _ in range(10)]
    assert got == [b"f"] * 4 + [b"g"] * 6


async def test_oversize_frame_closes_receiver(nursery: Nursery, autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(10))
    _, _, out, inbound = await _pair(nursery, net, max_frame=100)
    await out.send(b"x" * 100)
    assert await inbound.receive() == b"x" * 100
    await out.send(b"x" * 101)
    with pytest.raises(RemoteProtocolError, match="frame of 101 bytes exceeds the limit of 100"):
        await inbound.receive()
    with pytest.raises(ConnectionClosed):
        await inbound.receive()
    with pytest.raises(ConnectionClosed):
        await out.send(b"more")
    with pytest.raises(LocalProtocolError, match="exceeds the limit"):
        await inbound.send(b"y" * 101)


async def test_identity_checks(nursery: Nursery, autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(11))
    a, b = await _serve(nursery, net, 1), await _serve(nursery, net, 2)
    other = await _serve(nursery, net, 3, chain="other-chain")
    with pytest.raises(HandshakeError, match=f"dialled {a.id} but reached {b.id}"):
        await a.transport.dial(b.addr, expected=a.id)
    with pytest.raises(HandshakeError,
                       match="peer is on chain 'other-chain', we are on 'mem-test'"):
        await a.transport.dial(other.addr)
    with pytest.raises(HandshakeError, match="ourselves"):
        await a.transport.dial(a.addr)
    with pytest.raises(OSError, match=r"nobody listens on 10\.9\.9\.9:1"):
        await a.transport.dial("10.9.9.9:1")
    with pytest.raises(OSError, match="already in use"):
        await MemoryTransport(net, _key(4), CHAIN, b.addr).serve(b.handler)
    assert b.conns.statistics().current_buffer_used == 0  # no failed dial reached a handler


async def test_dial_fails_after_serve_ends(autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(12))
    dialer = MemoryTransport(net, _key(1), CHAIN, "10.0.0.1:1")
    async with trio.open_nursery() as n:
        node = await _serve(n, net, 2)
        conn = await dialer.dial(node.addr)
        n.cancel_scope.cancel()
    with pytest.raises(OSError, match="nobody listens"):
        await dialer.dial(node.addr)
    with pytest.raises(ConnectionClosed):  # the handler's end was closed with serve
        await conn.receive()


async def test_peer_faults_in_a_handler_do_not_stop_serve(nursery: Nursery,
                                                          autojump_clock: MockClock) -> None:
    net = MemoryNetwork(random.Random(13))
    seen: list[NodeID] = []

    async def strict(conn: Connection) -> None:
        seen.append(conn.remote_id)
        raise RemoteProtocolError("bad peer")

    server = MemoryTransport(net, _key(1), CHAIN, "10.0.0.1:26656")
    await nursery.start(server.serve, strict)
    for n in (2, 3):
        conn = await MemoryTransport(net, _key(n), CHAIN, f"10.0.0.{n}:26656").dial(server.listen)
        with pytest.raises(ConnectionClosed):
            await conn.receive()
    assert seen == [_key(2).node_id, _key(3).node_id]


class _Jittered:
    """A ``LinkLatency``: 30 ms +- 50 %, so the network takes each frame's draw itself."""

    def __call__(self, src: NodeID, dst: NodeID, rng: random.Random) -> float:
        return max(0.0, 0.03 * (1.0 + 0.5 * (2.0 * rng.random() - 1.0)))

    def link(self, src: NodeID, dst: NodeID) -> tuple[float, float]:
        return 0.03, 0.5


async def test_short_carry_path_times_frames_as_the_general_path(nursery: Nursery,
                                                                 autojump_clock: MockClock
                                                                 ) -> None:
    """``_carry``'s short path (known pipe latency, nothing to drop or override) gives the
    arrival times of the general one (forced by an override that sets nothing)."""
    nets = [MemoryNetwork(random.Random(5), latency=_Jittered(), resolution=0.001)
            for _ in range(2)]
    pairs = [await _pair(nursery, net) for net in nets]
    a, b = pairs[1][0], pairs[1][1]
    nets[1].set_link(a.id, b.id)  # (None, None): same latency and loss, general path
    arrivals: list[list[float]] = [[], []]

    async def drain(k: int) -> None:
        for i in range(50):
            assert await pairs[k][3].receive() == bytes([i])
            arrivals[k].append(trio.current_time())

    async with trio.open_nursery() as inner:
        inner.start_soon(drain, 0)
        inner.start_soon(drain, 1)
        for i in range(50):
            for _, _, out, _ in pairs:
                await out.send(bytes([i]))
            if i % 3 == 0:
                await trio.sleep(0.01)
    assert arrivals[0] == arrivals[1] and len(set(arrivals[0])) > 10
