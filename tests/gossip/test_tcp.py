"""The TCP transport over real 127.0.0.1 sockets (real clock, short timeouts)."""

from __future__ import annotations

import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

from p2pakash.crypto import PrivateKey
from p2pakash.errors import HandshakeError, LocalProtocolError, RemoteProtocolError
from p2pakash.gossip import secret
from p2pakash.gossip.tcp import TcpTransport
from p2pakash.gossip.transport import Connection, ConnectionClosed

CHAIN = "tcp-test"
LIMIT = 5.0  # no test step should come near this


def _key(n: int) -> PrivateKey:
    return PrivateKey.from_seed(bytes([n]) * 32)


class Server:
    """A serving transport whose handler echoes frames and reports each connection."""

    def __init__(self, transport: TcpTransport) -> None:
        self.transport = transport
        self.addr = ""
        self.send_conn, self.conns = trio.open_memory_channel[Connection](100)
        self.errors: list[Exception] = []

    async def handler(self, conn: Connection) -> None:
        self.send_conn.send_nowait(conn)
        try:
            while True:
                await conn.send(await conn.receive())
        except RemoteProtocolError as exc:
            self.errors.append(exc)
            raise


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


async def _start(nursery: trio.Nursery, key: PrivateKey, chain: str = CHAIN,
                 **kwargs: Any) -> Server:
    server = Server(TcpTransport(key, chain, "127.0.0.1:0", **kwargs))
    server.addr = await nursery.start(server.transport.serve, server.handler)
    return server


async def _read_until_eof(stream: trio.SocketStream) -> bytes:
    got = b""
    with trio.fail_after(LIMIT):
        try:
            while data := await stream.receive_some(65536):
                got += data
        except trio.BrokenResourceError:  # reset by the peer: as good as EOF here
            pass
    return got


async def test_handshake_identifies_both_sides(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1))
    assert server.addr.startswith("127.0.0.1:") and not server.addr.endswith(":0")
    client = TcpTransport(_key(2), CHAIN, None)
    with trio.fail_after(LIMIT):
        conn = await client.dial(server.addr, expected=_key(1).node_id)
        inbound = await server.conns.receive()
    assert (conn.local_id, conn.remote_id) == (_key(2).node_id, _key(1).node_id)
    assert (inbound.local_id, inbound.remote_id) == (_key(1).node_id, _key(2).node_id)
    assert conn.remote_pubkey == _key(1).public and inbound.remote_pubkey == _key(2).public
    assert conn.outbound and not inbound.outbound
    assert conn.remote_listen_addr == server.addr
    assert inbound.remote_listen_addr == ""  # the client does not listen
    assert conn.remote_host == inbound.remote_host == "127.0.0.1"
    assert conn.remote_version == "p2pakash/0.1"
    with trio.fail_after(LIMIT):
        await conn.send(b"ping")
        assert await conn.receive() == b"ping"
    await conn.aclose()


async def test_listen_address_is_advertised(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1))
    other = await _start(nursery, _key(2))
    with trio.fail_after(LIMIT):
        conn = await other.transport.dial(server.addr)
        inbound = await server.conns.receive()
    assert inbound.remote_listen_addr == other.addr
    await conn.aclose()


async def test_wrong_expected_id(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1))
    client = TcpTransport(_key(2), CHAIN, None)
    wanted = _key(3).node_id
    with trio.fail_after(LIMIT), pytest.raises(
            HandshakeError, match=f"dialled {wanted} but reached {_key(1).node_id}"):
        await client.dial(server.addr, expected=wanted)


async def test_other_chain_gives_clear_message(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1), chain="chain-b")
    client = TcpTransport(_key(2), "chain-a", None)
    with trio.fail_after(LIMIT), pytest.raises(
            HandshakeError, match="peer is on chain 'chain-b', we are on 'chain-a'"):
        await client.dial(server.addr)


async def test_self_connection_refused(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1))
    with trio.fail_after(LIMIT), pytest.raises(HandshakeError, match="ourselves"):
        await server.transport.dial(server.addr)


async def test_garbage_closes_that_connection_only(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1))
    host, port = server.addr.rsplit(":", 1)
    raw = await trio.open_tcp_stream(host, int(port))
    await raw.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10)
    got = await _read_until_eof(raw)  # the server closes us
    assert got == b"" or got.startswith(secret.MAGIC)
    await raw.aclose()
    with trio.fail_after(LIMIT):
        conn = await TcpTransport(_key(2), CHAIN, None).dial(server.addr)
        await conn.send(b"still serving")
        assert await conn.receive() == b"still serving"
    await conn.aclose()


async def test_dialling_a_non_p2pakash_server_fails_fast(nursery: trio.Nursery) -> None:
    async def http(stream: trio.SocketStream) -> None:
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await trio.sleep(LIMIT)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, http, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    client = TcpTransport(_key(2), CHAIN, None, handshake_timeout=LIMIT)
    with trio.fail_after(1.0), pytest.raises(HandshakeError, match="does not speak p2pakash"):
        await client.dial(f"127.0.0.1:{port}")


async def test_refused_dial_is_oserror() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with trio.fail_after(LIMIT), pytest.raises(OSError):
        await TcpTransport(_key(2), CHAIN, None).dial(f"127.0.0.1:{port}")
    with pytest.raises(OSError, match="bad address"):
        await TcpTransport(_key(2), CHAIN, None).dial("no-port")


async def test_oversized_frame_closes_with_remote_protocol_error(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1), max_frame=1000)
    conn = await TcpTransport(_key(2), CHAIN, None).dial(server.addr)
    with trio.fail_after(LIMIT):
        await conn.send(b"x" * 1000)  # at the limit: fine
        assert await conn.receive() == b"x" * 1000
        await conn.send(b"x" * 5000)
        with pytest.raises(ConnectionClosed):
            await conn.receive()
    assert len(server.errors) == 1
    assert "frame of 5016 bytes exceeds the limit of 1016" in str(server.errors[0])
    with pytest.raises(LocalProtocolError, match="exceeds the limit"):
        await conn.send(b"y" * (2 << 20))


async def test_slow_handshake_times_out_and_others_are_served(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1), handshake_timeout=0.3)
    host, port = server.addr.rsplit(":", 1)
    silent = await trio.open_tcp_stream(host, int(port))
    start = trio.current_time()
    with trio.fail_after(LIMIT):
        conn = await TcpTransport(_key(2), CHAIN, None).dial(server.addr)  # served meanwhile
        await conn.send(b"hi")
        assert await conn.receive() == b"hi"
    got = await _read_until_eof(silent)
    assert got.startswith(secret.MAGIC)
    assert len(got) == secret.HELLO_SIZE
    assert 0.25 <= trio.current_time() - start < LIMIT
    await silent.aclose()
    await conn.aclose()


async def test_pending_handshakes_bounded_per_host(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1), handshake_timeout=LIMIT, max_pending_per_host=2)
    host, port = server.addr.rsplit(":", 1)
    silent = [await trio.open_tcp_stream(host, int(port)) for _ in range(2)]
    with trio.fail_after(LIMIT):
        for s in silent:  # both got a hello: their handshakes are pending
            assert len(await s.receive_some(100)) == secret.HELLO_SIZE
        third = await trio.open_tcp_stream(host, int(port))
        assert await _read_until_eof(third) == b""  # over the limit: closed at once
    for s in [*silent, third]:
        await s.aclose()


async def test_a_slow_loris_from_many_hosts_cannot_lock_a_newcomer_out(
        nursery: trio.Nursery) -> None:
    # 4 hosts x 2 silent sockets: twice max_pending, none over the per-host limit. At the
    # total limit the oldest handshake in progress is evicted, so the newcomer still gets in.
    server = await _start(nursery, _key(1), handshake_timeout=30.0, max_pending=4,
                          max_pending_per_host=2)
    host, port = server.addr.rsplit(":", 1)
    silent = []
    for a in range(4):
        for _ in range(2):
            sock = trio.socket.socket()
            await sock.bind((f"127.0.0.{2 + a}", 0))
            await sock.connect((host, int(port)))
            silent.append(trio.SocketStream(sock))
    with trio.fail_after(LIMIT):  # far below the 30 s handshake timeout
        conn = await TcpTransport(_key(2), CHAIN, None).dial(server.addr)
        await server.conns.receive()
        for s in silent[:5]:  # the five oldest were evicted (4 by the loris, 1 by us) ...
            await _read_until_eof(s)
    assert server.transport.evicted == 5
    for s in silent[5:]:  # ... the three youngest still hang
        assert len(await s.receive_some(100)) == secret.HELLO_SIZE
    for s in silent:
        await s.aclose()
    await conn.aclose()


async def test_a_thousand_frames_in_order(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1))
    conn = await TcpTransport(_key(2), CHAIN, None).dial(server.addr)
    frames = [i.to_bytes(4, "big") * (1 + i % 50) for i in range(1000)]
    got: list[bytes] = []

    async def sender() -> None:
        for f in frames:
            await conn.send(f)

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as n:
            n.start_soon(sender)
            for _ in frames:
                got.append(await conn.receive())
    assert got == frames
    assert conn.frames_sent == conn.frames_received == 1001  # plus Auth each way
    await conn.aclose()


async def test_concurrent_senders_never_interleave(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1))
    conn = await TcpTransport(_key(2), CHAIN, None).dial(server.addr)
    inbound = await server.conns.receive()

    def sender(tag: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            for i in range(100):
                await inbound.send(bytes([tag]) * (10 + i * 50))
        return run

    got: list[bytes] = []
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as n:
            for tag in range(5):
                n.start_soon(sender(tag))
            for _ in range(500):
                got.append(await conn.receive())
    for tag in range(5):  # per sender, its frames arrive in its order
        mine = [f for f in got if f[0] == tag]
        assert [len(f) for f in mine] == [10 + i * 50 for i in range(100)]
    await conn.aclose()


async def test_close_is_seen_as_connection_closed(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1))
    conn = await TcpTransport(_key(2), CHAIN, None).dial(server.addr)
    inbound = await server.conns.receive()
    await inbound.aclose()
    with trio.fail_after(LIMIT), pytest.raises(ConnectionClosed):
        await conn.receive()
    with pytest.raises(ConnectionClosed):
        await conn.send(b"after close")
    with pytest.raises(ConnectionClosed):
        await inbound.receive()


async def test_bad_frame_from_server_side_then_closed(nursery: trio.Nursery) -> None:
    server = await _start(nursery, _key(1))
    conn = await TcpTransport(_key(2), CHAIN, None, max_frame=100).dial(server.addr)
    inbound = await server.conns.receive()
    with trio.fail_after(LIMIT):
        await inbound.send(b"small")
        await inbound.send(b"big" * 100)
        assert await conn.receive() == b"small"
        with pytest.raises(RemoteProtocolError, match="316 bytes exceeds the limit of 116"):
            await conn.receive()
        with pytest.raises(ConnectionClosed):
            await conn.receive()
        with pytest.raises(ConnectionClosed):
            await conn.send(b"x")


def test_handshake_failure_lines_are_limited_per_host() -> None:
    from p2pakash.gossip.tcp import _LogLimiter

    limiter = _LogLimiter(10.0, max_keys=2)
    assert limiter.allow("10.0.0.1", 0.0) == 0
    assert [limiter.allow("10.0.0.1", t) for t in (1.0, 2.0, 9.9)] == [None, None, None]
    assert limiter.allow("10.0.0.2", 5.0) == 0  # another host is logged at once
    assert limiter.allow("10.0.0.1", 10.0) == 3  # the next line says what was held back
    assert limiter.allow("10.0.0.1", 11.0) is None
    limiter.allow("10.0.0.3", 12.0)  # a third host: the table is cleared, not grown
    assert len(limiter._last) <= 2
