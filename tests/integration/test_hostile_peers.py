"""Honest nodes over real TCP on 127.0.0.1 against a hostile peer that speaks valid crypto.

The hostile client is built from the real handshake pieces (``gossip/secret.py``): it
completes the secret-connection handshake with its own key, then misbehaves — garbage
frames, an oversized length header, a handshake it never finishes, a flood of publishes,
the wrong chain ID, forged notes. Each test asserts what the honest side did about it
(a ban recorded in ``stats.bans`` and ``peers.is_banned``, the socket closed, a clear log
line) and that honest gossip still reaches every honest node. Real clock, short timeouts,
every wait bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

from p2pakash import wire
from p2pakash.config import GossipConfig, NodeConfig, P2PConfig
from p2pakash.crypto import NodeID, PrivateKey
from p2pakash.errors import HandshakeError
from p2pakash.gossip import messages as m
from p2pakash.gossip import notes, secret
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.pubsub import Verdict
from p2pakash.gossip.service import Delivered
from p2pakash.gossip.tcp import TcpTransport
from p2pakash.node import Node
from tests.integration.conftest import free_ports

CHAIN = "hostile-test"
LIMIT = 10.0  # no single wait comes near this on an idle machine
HANDSHAKE_TIMEOUT = 1.0
LORIS_TIMEOUT = 1.5  # long enough for an honest handshake to finish while the loris hang
FLOOD_TOPIC = "flood"


def _key(name: str) -> PrivateKey:
    return PrivateKey.from_seed(hashlib.sha256(name.encode()).digest())


async def wait_for(cond: Callable[[], bool], what: str, *, limit: float = LIMIT,
                   describe: Callable[[], str] = lambda: "") -> None:
    """Poll ``cond`` on the real clock every 10 ms, failing after ``limit`` seconds."""
    with trio.move_on_after(limit):
        while not cond():  # noqa: ASYNC110 - polls state that has no event to wait on
            await trio.sleep(0.01)
        return
    pytest.fail(f"gave up after {limit:g} s waiting for {what}\n{describe()}")


# ---------------------------------------------------------------- honest side


@attrs.define(eq=False)
class Honest:
    node: Node
    addr: PeerAddr
    inbox: list[Delivered] = attrs.Factory(list)
    flood_inbox: list[Delivered] = attrs.Factory(list)
    neighbours: set[NodeID] = attrs.Factory(set)  # honest peers it must stay connected to

    @property
    def id(self) -> NodeID:
        return self.node.key.node_id

    def texts(self) -> list[str]:
        return [wire.decode(d.data, notes.Note).text for d in self.inbox]

    def is_banned(self, peer: NodeID) -> bool:
        return self.node.gossip.peers.is_banned(trio.current_time(), peer)

    def publish_note(self, text: str, nonce: int) -> None:
        note = notes.make_note(self.node.key, CHAIN, text, timestamp_ms=1_700_000_000_000,
                               nonce=nonce)
        self.node.gossip.publish(notes.TOPIC, wire.encode(note))


async def _collect(channel: trio.MemoryReceiveChannel[Delivered], box: list[Delivered]
                   ) -> None:
    async for item in channel:
        box.append(item)


def _ok_or_ignore(peer: str, topic: str, data: bytes) -> Verdict:
    return Verdict.ACCEPT if data.startswith(b"ok:") else Verdict.IGNORE


@asynccontextmanager
async def honest_network(n: int = 3, *, links: Sequence[tuple[int, int]] | None = None,
                         handshake_timeout: float = HANDSHAKE_TIMEOUT
                         ) -> AsyncIterator[list[Honest]]:
    """``n`` honest Nodes, all connected: each has every earlier node as a persistent peer
    (or, given ``links``, (i, j) with j < i means node i keeps node j as one). Only node 0
    subscribes to ``FLOOD_TOPIC``."""
    if links is None:
        links = [(i, j) for i in range(n) for j in range(i)]
    ports = free_ports(n)
    keys = [_key(f"honest-{i}") for i in range(n)]
    addrs = [PeerAddr.parse(f"{k.node_id}@127.0.0.1:{p}") for k, p in zip(keys, ports,
                                                                             strict=True)]
    honest: list[Honest] = []
    async with trio.open_nursery() as nursery:
        for i in range(n):
            cfg = NodeConfig(
                chain_id=CHAIN, moniker=f"honest{i}",
                p2p=P2PConfig(listen=addrs[i].hostport,
                              persistent_peers=tuple(addrs[b] for a, b in links if a == i),
                              handshake_timeout=handshake_timeout, pex=False),
                gossip=GossipConfig(heartbeat_interval=0.2))
            h = Honest(node=Node(cfg, keys[i], rng=random.Random(i)), addr=addrs[i])
            await nursery.start(h.node.run)
            nursery.start_soon(_collect, h.node.gossip.subscribe(notes.TOPIC), h.inbox)
            if i == 0:
                # Like an order topic's validator facing expired or unfunded orders: junk
                # is ignored (not rejected), so only the rate limit stops a flood of it.
                h.node.gossip.set_validator(FLOOD_TOPIC, _ok_or_ignore)
                nursery.start_soon(_collect, h.node.gossip.subscribe(FLOOD_TOPIC),
                                   h.flood_inbox)
            honest.append(h)
        for i, h in enumerate(honest):
            h.neighbours = ({honest[b].id for a, b in links if a == i}
                            | {honest[a].id for a, b in links if b == i})
        await wait_for(lambda: all(_joined(h, h.neighbours) for h in honest),
                       "the honest nodes to connect and learn each other's topics")
        yield honest
        nursery.cancel_scope.cancel()


def _joined(h: Honest, neighbours: set[NodeID]) -> bool:
    return (neighbours <= h.node.gossip.connected
            and neighbours <= h.node.gossip.pubsub.topic_peers(notes.TOPIC))


async def assert_honest_delivery(honest: Sequence[Honest], text: str, *, nonce: int,
                                 sender: int = -1) -> None:
    """A note from one honest node reaches every honest node exactly once."""
    honest[sender].publish_note(text, nonce)
    await wait_for(lambda: all(text in h.texts() for h in honest),
                   f"{text!r} at every honest node", describe=lambda: _state(honest))
    assert all(h.texts().count(text) == 1 for h in honest)
    for h in honest:  # and the honest links are intact
        assert h.neighbours <= h.node.gossip.connected, _state(honest)


def _state(honest: Sequence[Honest]) -> str:
    return "\n".join(f"{h.node.cfg.moniker} {h.id[:12]}: connected to"
                     f" {sorted(p[:12] for p in h.node.gossip.connected)},"
                     f" bans {h.node.gossip.stats.bans}, notes {h.texts()}" for h in honest)


# ---------------------------------------------------------------- hostile side


class Hostile:
    """A client that completes the real secret handshake, then does as the test says."""

    def __init__(self, stream: trio.SocketStream, sealer: secret.FrameSealer,
                 reader: secret.FrameReader, key: PrivateKey, remote_id: NodeID) -> None:
        self.stream = stream
        self.sealer = sealer
        self.reader = reader
        self.key = key
        self.remote_id = remote_id

    @property
    def id(self) -> NodeID:
        return self.key.node_id

    @classmethod
    async def connect(cls, target: PeerAddr, key: PrivateKey, *, chain: str = CHAIN
                      ) -> Hostile:
        with trio.fail_after(LIMIT):
            stream = await trio.open_tcp_stream(target.host, target.port)
            ephemeral = secret.Ephemeral.generate()
            await stream.send_all(secret.make_hello(ephemeral.public))
            buf = await _receive_exactly(stream, secret.HELLO_SIZE)
            keys = secret.derive_session(ephemeral, secret.parse_hello(buf))
            sealer = secret.FrameSealer(keys.send_key)
            reader = secret.FrameReader(keys.recv_key, max_frame=1 << 20)
            await stream.send_all(sealer.seal(secret.make_auth(
                key, chain, keys.challenge, listen_addr="", version="hostile/0.1")))
            client = cls(stream, sealer, reader, key, NodeID(""))
            auth = await client.next_frame()
            assert auth is not None, "the honest node closed during the handshake"
            client.remote_id, _ = secret.check_auth(auth, chain_id=chain,
                                                    challenge=keys.challenge,
                                                    local_id=key.node_id, expected=target.node_id)
        return client

    async def send_items(self, items: Sequence[object]) -> None:
        """One validly framed, sealed Frame holding ``items``."""
        await self.send_payload(wire.encode_batch(m.Frame, [wire.encode(i) for i in items]))

    async def send_payload(self, payload: bytes) -> None:
        await self.stream.send_all(self.sealer.seal(payload))

    async def next_frame(self) -> bytes | None:
        """The next decrypted frame, or None once the honest side has closed."""
        while True:
            frame = self.reader.next_frame()
            if frame is not None:
                return frame
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self.reader.feed(data)

    async def read_until_closed(self) -> list[object]:
        """Every item the honest side sends until it closes the connection."""
        items: list[object] = []
        with trio.fail_after(LIMIT):
            while (frame := await self.next_frame()) is not None:
                items.extend(wire.decode(frame, m.Frame).items)
        return items

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        data = await stream.receive_some(size - len(buf))
        if not data:
            raise EOFError(f"closed after {len(buf)} of {size} bytes")
        buf += data
    return buf


async def _wait_eof(stream: trio.SocketStream) -> None:
    """Drain a raw socket until the other side closes it (EOF or reset)."""
    try:
        while await stream.receive_some(65536):
            pass
    except trio.BrokenResourceError:
        pass


def _goodbyes(items: Sequence[object]) -> list[str]:
    return [i.reason for i in items if isinstance(i, m.Goodbye)]


async def assert_banned(target: Honest, hostile: Hostile, bans_before: int) -> None:
    """The hostile peer is banned by ID, disconnected, and refused when it comes back."""
    await wait_for(lambda: hostile.id not in target.node.gossip.connected,
                   "the hostile peer to be dropped")
    assert target.node.gossip.stats.bans == bans_before + 1
    assert target.is_banned(hostile.id)
    await hostile.aclose()
    again = await Hostile.connect(target.addr, hostile.key)  # the handshake itself works ...
    assert _goodbyes(await again.read_until_closed()) == ["banned"]  # ... then: refused
    await again.aclose()
    assert target.node.gossip.stats.bans == bans_before + 1
    assert hostile.id not in target.node.gossip.connected


# ---------------------------------------------------------------- (a) garbage frames


@pytest.mark.parametrize("kind", ["sealed-garbage", "raw-garbage"])
async def test_garbage_after_handshake_bans_and_honest_gossip_continues(
        kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="p2pakash.gossip.service")
    rng = random.Random(1)
    async with honest_network() as honest:
        target = honest[0]
        hostile = await Hostile.connect(target.addr, _key("hostile-a"))
        await wait_for(lambda: hostile.id in target.node.gossip.connected, "hostile accepted")
        if kind == "sealed-garbage":  # valid encryption, bytes that are no CBOR Frame
            await hostile.send_payload(b"\xff\x00" + rng.randbytes(300))
        else:  # a length header and bytes that fail the authentication tag
            await hostile.stream.send_all((300).to_bytes(4, "big") + rng.randbytes(300))
        await hostile.read_until_closed()
        await assert_banned(target, hostile, bans_before=0)
        why = "failed authentication" if kind == "raw-garbage" else "protocol error"
        assert f"banning peer {hostile.id[:12]}: protocol error: " in caplog.text
        assert why in caplog.text
        await assert_honest_delivery(honest, f"after {kind}", nonce=1)
        await assert_honest_delivery(honest, f"from the target after {kind}", nonce=2,
                                     sender=0)
        assert all(h.node.gossip.stats.bans == 0 for h in honest[1:])


# ---------------------------------------------------------------- (b) oversized frame


async def test_oversized_length_header_disconnects_without_reading_the_body(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="p2pakash.gossip.service")
    async with honest_network() as honest:
        target = honest[0]
        hostile = await Hostile.connect(target.addr, _key("hostile-b"))
        await wait_for(lambda: hostile.id in target.node.gossip.connected, "hostile accepted")
        limit = target.node.cfg.p2p.max_frame_size + secret.TAG_SIZE
        # only the 4-byte header of a frame one byte too large: no body ever follows, so
        # the honest node must act on the header alone
        await hostile.stream.send_all((limit + 1).to_bytes(4, "big"))
        await hostile.read_until_closed()
        await assert_banned(target, hostile, bans_before=0)
        assert (f"banning peer {hostile.id[:12]}: protocol error: frame of {limit + 1} bytes"
                f" exceeds the limit of {limit}") in caplog.text
        await assert_honest_delivery(honest, "after the oversized header", nonce=3)


async def test_oversized_frame_during_the_handshake_is_refused_at_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="p2pakash.gossip.tcp")
    async with honest_network(2) as honest:
        target = honest[0]
        stream = await trio.open_tcp_stream(target.addr.host, target.addr.port)
        await stream.send_all(secret.make_hello(secret.Ephemeral.generate().public))
        await _receive_exactly(stream, secret.HELLO_SIZE)
        await stream.send_all((1 << 30).to_bytes(4, "big"))  # "Auth" of 1 GiB
        with trio.fail_after(LIMIT):
            await _wait_eof(stream)
        await stream.aclose()
        assert "frame of 1073741824 bytes exceeds the limit of" in caplog.text
        assert "timed out" not in caplog.text  # refused on the header, not by the timeout
        await assert_honest_delivery(honest, "after the 1 GiB auth", nonce=4)


# ---------------------------------------------------------------- (c) slow loris


async def test_slow_loris_handshakes_time_out_while_honest_peers_connect(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="p2pakash.gossip.tcp")
    timeout = LORIS_TIMEOUT
    async with honest_network(2, handshake_timeout=timeout) as honest:
        target = honest[0]
        started = trio.current_time()
        loris: list[trio.SocketStream] = []
        for i in range(6):
            stream = await trio.open_tcp_stream(target.addr.host, target.addr.port)
            if i % 3 == 1:  # half a hello
                await stream.send_all(secret.MAGIC + b"\x01" * 10)
            elif i % 3 == 2:  # a whole hello, then no Auth ever
                await stream.send_all(secret.make_hello(secret.Ephemeral.generate().public))
            loris.append(stream)

        # while the six hang, an honest peer still completes its handshake and is accepted
        # the real handshake, by a newcomer that behaves
        late = await Hostile.connect(target.addr, _key("late-honest"))
        await wait_for(lambda: late.id in target.node.gossip.connected, "the newcomer")
        assert "timed out" not in caplog.text  # accepted while all six still hang

        closed_at: list[float] = []

        async def watch(stream: trio.SocketStream) -> None:
            await _wait_eof(stream)
            closed_at.append(trio.current_time() - started)

        with trio.fail_after(timeout + LIMIT):
            async with trio.open_nursery() as nursery:
                for stream in loris:
                    nursery.start_soon(watch, stream)
        assert len(closed_at) == 6
        assert min(closed_at) >= timeout * 0.9  # closed by the timeout ...
        # one line per host per LOG_EVERY seconds, however many sockets it held
        assert caplog.text.count(f"handshake timed out after {timeout:g} s") == 1
        assert target.node.gossip.transport.failed_inbound == 6
        for stream in loris:
            await stream.aclose()
        assert target.node.gossip.stats.bans == 0  # ... not a ban: nobody was identified
        assert late.id in target.node.gossip.connected
        await assert_honest_delivery(honest, "after the slow loris", nonce=5)
        await late.aclose()


# ---------------------------------------------------------------- (d) publish flood


async def test_publish_flood_is_rate_limited_and_the_flooder_dropped(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="p2pakash.gossip.service")
    rng = random.Random(4)
    async with honest_network() as honest:
        target = honest[0]
        hostile = await Hostile.connect(target.addr, _key("hostile-d"))
        await wait_for(lambda: hostile.id in target.node.gossip.connected, "hostile accepted")
        flood = [m.Publish(topic=FLOOD_TOPIC, data=rng.randbytes(32)) for _ in range(10_000)]
        sent = 0
        started = trio.current_time()
        with contextlib.suppress(trio.BrokenResourceError):  # cut off mid-flood: the point
            for start in range(0, len(flood), 1000):
                await hostile.send_items(flood[start:start + 1000])
                sent += 1000
        honest[1].publish_note("during the flood", 6)
        # a Goodbye may be lost to a reset (we kept sending after being cut off)
        for reason in _goodbyes(await hostile.read_until_closed()):
            assert reason.startswith("gossip score") and "below -80" in reason
        elapsed = trio.current_time() - started  # the bucket refills meanwhile
        stats = target.node.gossip.pubsub.stats
        rate = target.node.cfg.gossip.max_msgs_per_sec
        burst = 2 * rate
        assert stats.rate_limited > 0
        await assert_banned(target, hostile, bans_before=0)
        assert f"banning peer {hostile.id[:12]}: gossip score" in caplog.text
        # the flood got no further than the token bucket allowed (its burst plus what it
        # refilled while the flood lasted, however slow the machine): the rest was dropped
        # before validation
        assert target.flood_inbox == []
        assert 0 < stats.ignored <= burst + rate * elapsed + 50, (stats.ignored, elapsed)
        assert stats.ignored + stats.rate_limited <= sent + 1000
        await wait_for(lambda: all("during the flood" in h.texts() for h in honest),
                       "the note published during the flood")
        await assert_honest_delivery(honest, "after the flood", nonce=7)


# ---------------------------------------------------------------- (e) wrong chain


async def test_wrong_chain_is_refused_with_a_clear_message(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="p2pakash.gossip.tcp")
    async with honest_network(2) as honest:
        target = honest[0]
        stranger = TcpTransport(_key("hostile-e"), "other-chain", None,
                                handshake_timeout=HANDSHAKE_TIMEOUT)
        with trio.fail_after(LIMIT), pytest.raises(
                HandshakeError, match=f"peer is on chain '{CHAIN}', we are on 'other-chain'"):
            await stranger.dial(target.addr.hostport, expected=target.id)
        await wait_for(lambda: "peer is on chain 'other-chain'" in caplog.text,
                       "the honest node's log line")
        assert (f"inbound handshake from 127.0.0.1 failed: peer is on chain 'other-chain',"
                f" we are on '{CHAIN}'") in caplog.text
        assert _key("hostile-e").node_id not in target.node.gossip.connected
        assert target.node.gossip.stats.bans == 0  # another network is no offence
        await assert_honest_delivery(honest, "after the stranger", nonce=8)


# ---------------------------------------------------------------- (f) forged notes


async def test_forged_notes_drop_the_score_and_the_connection() -> None:
    async with honest_network() as honest:
        target = honest[0]
        hostile = await Hostile.connect(target.addr, _key("hostile-f"))
        await wait_for(lambda: hostile.id in target.node.gossip.connected, "hostile accepted")
        victim = _key("impersonated")
        forged = []
        for i in range(10):  # the victim's name, the hostile's signature
            note = notes.make_note(victim, CHAIN, f"forged {i}", timestamp_ms=1, nonce=i)
            bad_sig = hostile.key.sign("note", CHAIN, note.body())
            forged.append(m.Publish(topic=notes.TOPIC,
                                    data=wire.encode(attrs.evolve(note, signature=bad_sig))))
        await hostile.send_items(forged)
        [reason] = _goodbyes(await hostile.read_until_closed())
        assert reason == "gossip score -90.0 below -80.0"  # 3 rejects: -10 * 3**2
        stats = target.node.gossip.pubsub.stats
        assert stats.rejected == 3  # then it was cut off; the other 7 were never validated
        await assert_banned(target, hostile, bans_before=0)
        await assert_honest_delivery(honest, "after the forgeries", nonce=9)
        for h in honest:  # no forgery reached anyone, nor was any forwarded
            assert not [t for t in h.texts() if t.startswith("forged")]
            assert h.node.gossip.pubsub.stats.rejected == (3 if h is target else 0)


# ---------------------------------------------------------------- relays under load


async def test_a_relay_for_two_busy_publishers_is_not_banned_by_its_neighbour() -> None:
    # A=1 and B=2 each publish one burst's worth of valid notes through the hub H=0; the
    # leaf C=3 hears both bursts from H alone. Nobody misbehaves: no one may be banned.
    async with honest_network(4, links=[(1, 0), (2, 0), (3, 0)]) as honest:
        hub, a, b, leaf = honest
        per_publisher = int(2 * hub.node.cfg.gossip.max_msgs_per_sec)  # one full burst
        for i in range(per_publisher):
            a.publish_note(f"a{i}", nonce=i)
            b.publish_note(f"b{i}", nonce=i)
        expected = 2 * per_publisher
        await wait_for(lambda: (len(leaf.inbox) >= expected
                                or hub.id not in leaf.node.gossip.connected),
                       "every note at the leaf (or the leaf dropping the hub)")
        assert [h.node.gossip.stats.bans for h in honest] == [0, 0, 0, 0]
        assert len(leaf.inbox) == expected
