"""Peer manager (sans-IO): backoff, limits, bans, liveness and PEX over a virtual network."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from functools import partial

import attrs
import pytest

from p2pakash.crypto import NodeID
from p2pakash.errors import LocalProtocolError
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.addrbook import AddrBook
from p2pakash.gossip.backoff import Retry, backoff_delay
from p2pakash.gossip.messages import MAX_ADDRS, Goodbye, PexAddrs, PexRequest, Ping, Pong
from p2pakash.gossip.peers import (
    Action,
    Dial,
    Disconnect,
    PeerManager,
    PeerParams,
    SendTo,
)

HOST = "127.0.0.1"


def nid(i: int) -> NodeID:
    return NodeID(f"{i:040x}")


def addr(i: int, host: str = HOST) -> PeerAddr:
    return PeerAddr(node_id=nid(i), host=host, port=26600 + i)


def manager(*, params: PeerParams | None = None, seed: int = 1, **kw: object) -> PeerManager:
    return PeerManager(local_id=nid(0), params=params or PeerParams(), rng=random.Random(seed),
                       **kw)  # type: ignore[arg-type]


def connect(m: PeerManager, now: float, i: int, *, outbound: bool, host: str = HOST,
            listen: str = "") -> list[Action]:
    assert m.accept(now, nid(i), host=host, outbound=outbound) is None
    return m.connected(now, nid(i), host=host, listen_addr=listen, outbound=outbound)


def dials(actions: list[Action]) -> list[PeerAddr]:
    return [a.addr for a in actions if isinstance(a, Dial)]


# no ensure or PEX rounds in the way, so next_deadline() shows the event under test
QUIET = PeerParams(ensure_interval=1e6, pex_interval=1e6)


# ----- backoff -----

def test_backoff_grows_exponentially_and_caps() -> None:
    rng = random.Random(3)
    got = [backoff_delay(n, base=1.0, cap=60.0, jitter=0.0, rng=rng) for n in range(9)]
    assert got == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert backoff_delay(10_000, base=1.0, cap=60.0, jitter=0.0, rng=rng) == 60.0
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(-1, base=1.0, cap=60.0, jitter=0.0, rng=rng)


def test_backoff_jitter_stays_within_bounds_and_varies() -> None:
    rng = random.Random(4)
    for n in range(12):
        nominal = min(2.0**n, 60.0)
        samples = [backoff_delay(n, base=1.0, cap=60.0, jitter=0.25, rng=rng) for _ in range(200)]
        assert all(nominal * 0.75 <= s <= nominal * 1.25 for s in samples)
        assert max(samples) - min(samples) > nominal * 0.3  # jitter really spreads them


def test_retry_counts_attempts() -> None:
    r = Retry()
    delays = [r.fail(100.0, base=0.5, cap=3.0, jitter=0.0, rng=random.Random(1))
              for _ in range(5)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0] and r.attempts == 5 and r.due == 103.0


def test_persistent_backoff_sequence_and_reset_after_success() -> None:
    p = attrs.evolve(QUIET, backoff_base=1.0, backoff_max=16.0, backoff_jitter=0.25)
    m = manager(params=p, persistent=[addr(1)])
    now = 0.0
    assert dials(m.start(now)) == [addr(1)]
    gaps = []
    for _ in range(7):
        m.dial_failed(now, addr(1), "refused")
        due = m.next_deadline()
        assert m.tick(due - 0.01) == []
        assert dials(m.tick(due)) == [addr(1)]
        gaps.append(due - now)
        now = due
    for n, gap in enumerate(gaps):
        nominal = min(2.0**n, 16.0)
        assert nominal * 0.75 <= gap <= nominal * 1.25, (n, gaps)
    # success resets: the next outage starts again from backoff_base
    m.connected(now, nid(1), host=HOST, listen_addr="", outbound=True)
    m.disconnected(now + 100, nid(1))
    due = m.next_deadline()
    assert 0.75 <= due - (now + 100) <= 1.25


def test_persistent_peer_redialled_after_disconnect() -> None:
    m = manager(persistent=[addr(1)])
    assert dials(m.start(0.0)) == [addr(1)]
    connect(m, 1.0, 1, outbound=True)
    assert m.peers() == {nid(1)} and m.outbound_count() == 1
    assert dials(m.tick(2.0)) == []
    m.disconnected(50.0, nid(1))
    assert m.peers() == frozenset()
    assert dials(m.tick(50.1)) == []  # waits the backoff (>= 0.75 s)
    assert dials(m.tick(51.5)) == [addr(1)]
    assert dials(m.tick(52.0)) == []  # being dialled: not twice


def test_persistent_peers_bypass_limits() -> None:
    m = manager(params=PeerParams(max_outbound=0, max_inbound=0), persistent=[addr(1)])
    assert m.accept(0.0, nid(1), host=HOST, outbound=True) is None
    assert m.accept(0.0, nid(1), host=HOST, outbound=False) is None
    assert m.accept(0.0, nid(2), host=HOST, outbound=True) == "too many outbound"
    assert m.accept(0.0, nid(2), host=HOST, outbound=False) == "too many inbound"


# ----- admission -----

def test_limits_refuse_with_reasons() -> None:
    p = PeerParams(max_inbound=3, max_outbound=2, max_per_host=2)
    m = manager(params=p)
    connect(m, 0, 1, outbound=True)
    connect(m, 0, 2, outbound=True)
    assert m.accept(0, nid(3), host=HOST, outbound=True) == "too many outbound"
    connect(m, 0, 4, outbound=False, host="10.0.0.1")
    connect(m, 0, 5, outbound=False, host="10.0.0.1")
    assert m.accept(0, nid(6), host="10.0.0.1", outbound=False) == "too many from host"
    connect(m, 0, 6, outbound=False, host="10.0.0.2")
    assert m.accept(0, nid(7), host="10.0.0.3", outbound=False) == "too many inbound"
    assert (m.inbound_count(), m.outbound_count()) == (3, 2)
    m.disconnected(1, nid(4))
    assert m.accept(1, nid(7), host="10.0.0.1", outbound=False) is None


def test_self_and_duplicate_connections_refused() -> None:
    m = manager()
    assert m.accept(0, nid(0), host=HOST, outbound=False) == "self"
    assert m.accept(0, nid(0), host=HOST, outbound=True) == "self"
    connect(m, 0, 1, outbound=False)
    assert m.accept(0, nid(1), host=HOST, outbound=True) == "already connected"
    assert m.accept(0, nid(1), host=HOST, outbound=False) == "already connected"
    with pytest.raises(LocalProtocolError, match="twice"):
        m.connected(0, nid(1), host=HOST, listen_addr="", outbound=False)


def test_never_dials_self_connected_or_dialling() -> None:
    m = manager(params=PeerParams(max_outbound=10), self_addr=f"{HOST}:26600",
                seeds=[addr(0), addr(1)])
    assert dials(m.start(0.0)) == [addr(1)]  # a seed that is ourselves is dropped
    m.connected(0.1, nid(1), host=HOST, listen_addr="", outbound=True)
    out = m.handle(0.2, nid(1), PexAddrs(addrs=(str(addr(0)), str(addr(2)),
                                                f"{nid(9)}@{HOST}:26600", str(addr(1)))))
    assert [str(a) for a in m.known()] == [str(addr(1)), str(addr(2))]
    assert dials(out) == [addr(2)]  # what PEX taught us is dialled at once
    assert dials(m.tick(5.0)) == []
    assert dials(m.tick(10.0)) == []


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="backoff_jitter"):
        PeerParams(backoff_jitter=1.5)
    with pytest.raises(ValueError, match="pex_share"):
        PeerParams(pex_share=MAX_ADDRS + 1)
    with pytest.raises(ValueError, match="ping_interval"):
        PeerParams(ping_interval=0)


# ----- bans -----

def test_ban_disconnects_refuses_and_expires() -> None:
    m = manager(params=QUIET, persistent=[addr(1)])
    m.start(0.0)
    connect(m, 0.0, 1, outbound=True)
    assert m.ban(1.0, nid(1), "bad block", seconds=100.0) == [Disconnect(nid(1), "bad block")]
    assert m.peers() == frozenset() and m.is_banned(1.0, nid(1))
    assert m.accept(2.0, nid(1), host=HOST, outbound=False) == "banned"
    m.disconnected(2.0, nid(1))
    assert m.accept(2.0, nid(1), host=HOST, outbound=False) == "banned"
    assert m.tick(50.0) == [] and m.next_deadline() == 101.0
    assert not m.is_banned(101.0, nid(1))
    assert m.accept(101.0, nid(1), host=HOST, outbound=False) is None
    assert dials(m.tick(101.0)) == [addr(1)]


def test_host_ban_covers_every_peer_on_that_host() -> None:
    m = manager()
    connect(m, 0, 1, outbound=False, host="10.0.0.9")
    connect(m, 0, 2, outbound=False, host="10.0.0.9")
    connect(m, 0, 3, outbound=False, host="10.0.0.3")
    out = m.ban(0, nid(1), "spam", host="10.0.0.9")
    assert out == [Disconnect(nid(1), "spam"), Disconnect(nid(2), "spam")]
    assert m.accept(1, nid(4), host="10.0.0.9", outbound=False) == "banned"
    assert m.accept(601, nid(4), host="10.0.0.9", outbound=False) is None


# ----- liveness -----

def test_ping_timeout_disconnects_a_silent_peer() -> None:
    m = manager(params=attrs.evolve(QUIET, ping_interval=10.0, ping_timeout=30.0))
    m.start(0.0)
    connect(m, 0.0, 1, outbound=False)
    assert m.next_deadline() == 10.0
    out = m.tick(10.0)
    assert len(out) == 1 and isinstance(out[0], SendTo) and isinstance(out[0].item, Ping)
    assert m.handle(11.0, nid(1), Ping(nonce=7)) == [SendTo(nid(1), Pong(nonce=7))]
    m.handle(12.0, nid(1), Pong(nonce=out[0].item.nonce))
    m.seen(25.0, nid(1))
    out = m.tick(50.0)  # heard from at 25: still alive, pinged again
    assert len(out) == 1 and isinstance(out[0], SendTo) and isinstance(out[0].item, Ping)
    assert m.tick(54.9) == []
    assert m.tick(55.0) == [Disconnect(nid(1), "ping timeout")]
    assert m.tick(70.0) == []  # closing: no second disconnect, no pings
    assert m.peers() == frozenset()
    assert m.accept(70.0, nid(1), host=HOST, outbound=False) == "already connected"
    m.disconnected(71.0, nid(1))
    assert m.accept(71.0, nid(1), host=HOST, outbound=False) is None


# ----- PEX -----

def test_pex_answer_is_bounded_sample_without_asker_and_rate_limited() -> None:
    m = manager(params=PeerParams(pex_share=5, pex_interval=30.0))
    connect(m, 0.0, 1, outbound=False, listen=f"{HOST}:26601")
    for i in range(2, 20):
        connect(m, 0.0, i, outbound=False, host=f"10.0.0.{i}", listen=f"0.0.0.0:{26600 + i}")
    reply = m.handle(1.0, nid(1), PexRequest())
    assert len(reply) == 1 and isinstance(reply[0], SendTo)
    item = reply[0].item
    assert isinstance(item, PexAddrs) and len(item.addrs) == 5
    parsed = [PeerAddr.parse(a) for a in item.addrs]
    assert nid(1) not in {a.node_id for a in parsed}
    assert all(a.host == f"10.0.0.{int(a.node_id, 16)}" for a in parsed)  # unspecified -> seen
    assert m.handle(5.0, nid(1), PexRequest()) == []  # too soon
    assert len(m.handle(11.0, nid(1), PexRequest())) == 1


def test_infinite_pex_interval_turns_pex_off() -> None:
    m = manager(params=PeerParams(pex_interval=float("inf")), seeds=[addr(1)])
    m.start(0.0)
    assert connect(m, 0.0, 1, outbound=True) == []
    assert len(m.handle(1.0, nid(1), PexRequest())) == 1
    assert m.handle(25.0, nid(1), PexRequest()) == []
    assert all(not isinstance(a, SendTo) or isinstance(a.item, Ping)
               for t in range(1, 100) for a in m.tick(float(t)))


def test_unsolicited_pex_addrs_is_misbehaviour() -> None:
    m = manager()
    connect(m, 0.0, 1, outbound=False)
    out = m.handle(1.0, nid(1), PexAddrs(addrs=(str(addr(2)),)))
    assert out == [Disconnect(nid(1), "unsolicited PexAddrs")]
    assert m.known() == [] and m.is_banned(2.0, nid(1))


def test_second_pex_addrs_for_one_request_is_misbehaviour() -> None:
    m = manager()
    out = connect(m, 0.0, 1, outbound=True)
    assert out == [SendTo(nid(1), PexRequest())]
    assert m.handle(1.0, nid(1), PexAddrs(addrs=(str(addr(2)),))) == [Dial(addr(2))]
    out = m.handle(1.5, nid(1), PexAddrs(addrs=(str(addr(3)),)))
    assert out == [Disconnect(nid(1), "unsolicited PexAddrs")]
    assert m.known() == [addr(2)]


def test_malformed_pex_addrs_is_misbehaviour_and_learns_nothing() -> None:
    m = manager()
    connect(m, 0.0, 1, outbound=True)
    out = m.handle(1.0, nid(1), PexAddrs(addrs=(str(addr(2)), "x" * 5000)))
    assert len(out) == 1 and isinstance(out[0], Disconnect)
    assert out[0].reason.startswith("bad address #1 in PexAddrs")
    assert len(Goodbye(reason=out[0].reason).reason) <= 200  # the driver can send it
    assert m.known() == []
    with pytest.raises(ValueError, match="more than"):
        PexAddrs(addrs=tuple(str(addr(i)) for i in range(MAX_ADDRS + 1)))
    forged = object.__new__(PexAddrs)
    object.__setattr__(forged, "addrs", tuple(str(addr(i)) for i in range(2, MAX_ADDRS + 3)))
    connect(m, 200.0, 7, outbound=True)
    out = m.handle(201.0, nid(7), forged)
    assert out and isinstance(out[0], Disconnect) and m.known() == []


def test_pex_floods_do_not_grow_the_book_unboundedly() -> None:
    m = manager(params=PeerParams(max_known=50, max_per_source=30))
    counter = itertools.count(1000)
    for rnd in range(20):
        for peer in (1, 2):
            now = rnd * 30.0 + peer
            assert connect(m, now, peer, outbound=True) == [SendTo(nid(peer), PexRequest())]
            batch = tuple(str(addr(next(counter))) for _ in range(MAX_ADDRS))
            out = m.handle(now, nid(peer), PexAddrs(addrs=batch))
            assert all(isinstance(a, Dial) for a in out)
            m.disconnected(now, nid(peer))
            assert len(m.known()) <= 50
    assert len(m.known()) == 50
    last = next(counter) - MAX_ADDRS  # the last batch: its first 30 (the source cap) got in
    assert {int(a.node_id, 16) for a in m.known()} >= set(range(last, last + 30))


def test_one_source_cannot_fill_the_book() -> None:
    book = AddrBook(max_known=100, max_per_source=5)
    added = [book.add(0.0, addr(i), source=nid(1)) for i in range(10, 17)]
    assert added == [True] * 5 + [False] * 2
    assert book.add(0.0, addr(20), source=nid(2))
    book.remove(nid(10))
    assert book.add(0.0, addr(21), source=nid(1)) and len(book) == 6


def test_book_evicts_oldest_never_connected_first() -> None:
    book = AddrBook(max_known=3, max_per_source=10)
    book.mark_success(0.0, addr(1))
    book.add(1.0, addr(2), source=nid(9))
    book.add(2.0, addr(3), source=nid(9))
    assert book.add(3.0, addr(4), source=nid(9))
    assert sorted(int(e.addr.node_id, 16) for e in book.entries()) == [1, 3, 4]
    # gossip never moves a known node to another host; the node itself may
    assert not book.add(4.0, addr(3, host="6.6.6.6"), source=nid(8))
    assert book.add(4.0, addr(3, host="10.1.1.1"), source=None)
    got = book.get(nid(3))
    assert got is not None and got.addr.host == "10.1.1.1"
    book.mark_success(5.0, addr(3, host="10.1.1.1"))
    book.mark_success(6.0, addr(4))
    assert not book.add(7.0, addr(5), source=nid(9))  # everything has worked once: keep it
    assert book.add(7.0, addr(5), source=None)  # authoritative: evicts oldest success (1)
    assert nid(1) not in book and nid(5) in book


def test_failing_addresses_back_off_and_are_forgotten() -> None:
    p = PeerParams(forget_after_failures=3, ensure_interval=1.0, backoff_max=4.0)
    m = manager(params=p)
    connect(m, 0.0, 1, outbound=True)
    assert dials(m.handle(0.5, nid(1), PexAddrs(addrs=(str(addr(2)),)))) == [addr(2)]
    m.dial_failed(0.5, addr(2), "refused")
    attempts = 1
    for step in range(1, 60):
        for d in dials(m.tick(float(step))):
            assert d == addr(2)
            attempts += 1
            m.dial_failed(float(step), d, "refused")
    assert attempts == 3 and addr(2) not in m.known()


def test_seeds_are_dialled_only_when_the_book_runs_dry() -> None:
    p = PeerParams(max_outbound=2, backoff_base=100.0, backoff_max=100.0, backoff_jitter=0.0)
    m = manager(params=p, seeds=[addr(9)])
    assert dials(m.start(0.0)) == [addr(9)]
    m.dial_failed(0.0, addr(9), "refused")  # the seed is due again at 100
    assert connect(m, 1.0, 4, outbound=True) == [SendTo(nid(4), PexRequest())]
    tried = dials(m.handle(1.5, nid(4), PexAddrs(addrs=(str(addr(1)), str(addr(2)),
                                                         str(addr(3))))))
    assert len(tried) == 1  # one free outbound slot: one learned address dialled at once
    m.dial_failed(1.5, tried[0], "refused")
    for t in (5.0, 10.0):
        got = dials(m.tick(t))
        assert len(got) == 1 and got[0] in {addr(1), addr(2), addr(3)}
        tried += got
        m.dial_failed(t, got[0], "refused")
    assert sorted(tried, key=str) == [addr(1), addr(2), addr(3)]
    assert dials(m.tick(20.0)) == []  # every candidate is backing off, and so is the seed
    assert dials(m.tick(100.0)) == [addr(9)]  # the book ran dry: back to the seed


def test_handle_ignores_other_items_and_unknown_peers() -> None:
    m = manager()
    assert m.handle(0.0, nid(1), Ping(nonce=1)) == []  # not connected
    connect(m, 0.0, 1, outbound=False)
    assert m.handle(1.0, nid(1), Goodbye(reason="bye")) == []
    assert m.handle(1.0, nid(1), object()) == []
    assert m.disconnected(2.0, nid(5)) == [] and m.dial_failed(2.0, addr(5), "x") == []


def test_dial_racing_an_inbound_connection_is_not_a_failure() -> None:
    m = manager(params=QUIET, persistent=[addr(1)])
    assert dials(m.start(0.0)) == [addr(1)]
    connect(m, 0.5, 1, outbound=False)  # it reached us first
    assert m.accept(0.6, nid(1), host=HOST, outbound=True) == "already connected"
    assert m.dialing() == frozenset()  # the refusal ended the dial
    m.dial_failed(0.6, addr(1), "already connected")  # and a late report changes nothing
    m.disconnected(10.0, nid(1))
    assert 10.75 <= m.next_deadline() <= 11.25  # first backoff step, not the second


def test_refused_outbound_connection_counts_as_a_failed_dial() -> None:
    p = PeerParams(max_outbound=1, ensure_interval=1.0, pex_interval=1e6, backoff_jitter=0.0)
    m = manager(params=p)
    connect(m, 0.0, 2, outbound=True)
    m.handle(0.1, nid(2), PexAddrs(addrs=(str(addr(3)),)))
    assert dials(m.tick(1.0)) == []  # the one outbound slot is taken
    m.disconnected(1.5, nid(2))
    assert dials(m.tick(2.0)) == [addr(3)]
    connect(m, 2.1, 5, outbound=True)  # fills the slot while addr(3) is being dialled
    assert m.accept(2.2, nid(3), host=HOST, outbound=True) == "too many outbound"
    assert m.dialing() == frozenset()  # the refusal ended the dial ...
    m.disconnected(2.3, nid(5))
    assert dials(m.tick(3.0)) == []  # ... and addr(3) backs off until 3.2
    assert dials(m.tick(4.0)) == [addr(3)]


def test_dial_timeout_frees_a_stuck_dial() -> None:
    m = manager(params=PeerParams(dial_timeout=20.0), persistent=[addr(1)])
    assert dials(m.start(0.0)) == [addr(1)]
    assert m.dialing() == {nid(1)} and m.next_deadline() <= 20.0
    m.tick(20.0)
    assert m.dialing() == frozenset()
    assert dials(m.tick(22.0)) == [addr(1)]


# ----- a virtual network of managers -----

@attrs.define
class Net:
    """Deterministic wiring: an ideal driver per node, 10 ms links, ticks every 0.5 s."""

    managers: dict[NodeID, PeerManager]
    starts: dict[NodeID, float] = attrs.field(factory=dict)  # boot times (default 0)
    down: set[NodeID] = attrs.field(factory=set)
    links: set[frozenset[NodeID]] = attrs.field(factory=set)
    log: list[str] = attrs.field(factory=list)
    now: float = 0.0
    _queue: list[tuple[float, int, Callable[[], None]]] = attrs.field(factory=list)
    _seq: itertools.count[int] = attrs.field(factory=itertools.count)

    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (t, next(self._seq), fn))

    def __attrs_post_init__(self) -> None:
        for node in sorted(self.managers):
            self.down.add(node)
            self.at(self.starts.get(node, 0.0), partial(self.boot, node))

    def boot(self, node: NodeID) -> None:
        self.down.discard(node)
        self.act(node, self.managers[node].start(self.now))
        self.at(self.now + 0.5, partial(self.tick, node))

    def run(self, until: float, done: Callable[[], bool] = lambda: False) -> None:
        steps = 0
        while self._queue and self._queue[0][0] <= until and not done():
            steps += 1
            assert steps < 500_000, "simulation did not settle"
            self.now, _, fn = heapq.heappop(self._queue)
            fn()

    def tick(self, node: NodeID) -> None:
        if node not in self.down:
            self.act(node, self.managers[node].tick(self.now))
        self.at(self.now + 0.5, partial(self.tick, node))

    def act(self, node: NodeID, actions: list[Action]) -> None:
        for a in actions:
            self.log.append(f"{self.now:.2f} {node[-2:]} {a}")
            if isinstance(a, Dial):
                self.at(self.now + 0.02, partial(self.handshake, node, a.addr))
            elif isinstance(a, SendTo):
                self.at(self.now + 0.01, partial(self.deliver, node, a.peer, a.item))
            else:
                self.at(self.now + 0.01, partial(self.close, node, a.peer))

    def handshake(self, src: NodeID, to: PeerAddr) -> None:
        a, b = self.managers[src], self.managers.get(to.node_id)
        if b is None or to.node_id in self.down:
            return self.act(src, a.dial_failed(self.now, to, "connection refused"))
        why = (a.accept(self.now, to.node_id, host=to.host, outbound=True)
               or b.accept(self.now, src, host=HOST, outbound=False))
        if why:
            return self.act(src, a.dial_failed(self.now, to, why))
        self.links.add(frozenset((src, to.node_id)))
        listen = f"{HOST}:{26600 + int(src, 16)}"
        self.act(src, a.connected(self.now, to.node_id, host=to.host,
                                  listen_addr=to.hostport, outbound=True))
        self.act(to.node_id, b.connected(self.now, src, host=HOST, listen_addr=listen,
                                         outbound=False))

    def deliver(self, src: NodeID, dst: NodeID, item: object) -> None:
        if frozenset((src, dst)) in self.links and dst not in self.down:
            self.managers[dst].seen(self.now, src)
            self.act(dst, self.managers[dst].handle(self.now, src, item))

    def close(self, src: NodeID, dst: NodeID) -> None:
        if frozenset((src, dst)) in self.links:
            self.links.discard(frozenset((src, dst)))
            self.act(src, self.managers[src].disconnected(self.now, dst))
            self.act(dst, self.managers[dst].disconnected(self.now, src))


def pex_net(n: int, seed: int, params: PeerParams, *, chain: bool = False) -> Net:
    """Star: node 0 is everyone's only seed and node i boots at 3*i s. Chain: node i knows
    only node i-1 and all boot at once, so addresses must travel several PEX hops."""
    managers = {nid(i): PeerManager(local_id=nid(i), params=params,
                                    rng=random.Random(seed * 97 + i),
                                    seeds=[addr(i - 1 if chain else 0)] if i else [],
                                    self_addr=f"{HOST}:{26600 + i}")
                for i in range(n)}
    return Net(managers=managers, starts={nid(i): 0.0 if chain else 3.0 * i for i in range(n)})


DISCOVERY = PeerParams(max_per_host=16, pex_interval=10.0, ensure_interval=2.0)


@pytest.mark.parametrize("chain", [False, True], ids=["star", "chain"])
def test_pex_discovery_connects_ten_nodes_that_only_know_a_seed(chain: bool) -> None:
    net = pex_net(10, seed=5, params=DISCOVERY, chain=chain)
    everyone = {nid(i) for i in range(10)}

    def done() -> bool:
        return all(m.peers() == everyone - {me} for me, m in net.managers.items())

    net.run(until=300.0, done=done)
    assert done(), {me[-2:]: sorted(p[-2:] for p in m.peers()) for me, m in net.managers.items()}
    for me, m in net.managers.items():
        assert {a.node_id for a in m.known()} == everyone - {me}
        assert m.inbound_count() + m.outbound_count() == 9
    assert net.now < 120.0
    # keep running: pings, PEX rounds and ensure keep the full mesh without churn
    links, mark = set(net.links), len(net.log)
    net.run(until=net.now + 200.0)
    assert len(links) == 45 and net.links == links
    assert not any("Disconnect" in line or "Dial" in line for line in net.log[mark:])
    assert any("PexRequest" in line for line in net.log[mark:])


def test_same_seed_same_actions_other_seed_other_actions() -> None:
    def trace(seed: int) -> list[str]:
        net = pex_net(6, seed=seed, params=DISCOVERY)
        net.run(until=60.0)
        return net.log

    first = trace(11)
    assert first == trace(11) and len(first) > 100
    assert first != trace(12)


def test_persistent_peer_comes_back_in_the_network() -> None:
    params = PeerParams(backoff_base=1.0, backoff_max=8.0)
    managers = {nid(0): PeerManager(local_id=nid(0), params=params, rng=random.Random(1),
                                    persistent=[addr(1)]),
                nid(1): PeerManager(local_id=nid(1), params=params, rng=random.Random(2))}
    net = Net(managers=managers, starts={nid(1): 30.0})  # node 1 is down until t=30
    net.run(until=29.9)
    assert managers[nid(0)].peers() == frozenset()
    tries = [line for line in net.log if " 00 Dial(" in line]
    assert 5 <= len(tries) <= 8  # at ~0, 1, 3, 7, 15, 23: backing off, not hammering
    net.run(until=50.0)
    assert managers[nid(0)].peers() == {nid(1)}
    net.close(nid(1), nid(0))  # the far side hangs up
    net.run(until=53.0)
    assert managers[nid(0)].peers() == {nid(1)}


def test_parsed_addresses_are_remembered_and_bad_ones_refused_each_time() -> None:
    text = f"{nid(7)}@10.0.0.7:26656"
    first = PeerAddr.parse(text)
    assert PeerAddr.parse(text) is first and str(first) == text
    for _ in range(2):
        with pytest.raises(ValueError, match="port"):
            PeerAddr.parse(f"{nid(7)}@10.0.0.7:0")


def test_pex_answer_never_offers_our_own_address() -> None:
    me = "127.0.0.9:26656"
    m = manager(params=QUIET, self_addr=me)
    connect(m, 0.0, 1, outbound=False)
    book = [PeerAddr(node_id=nid(k), host="127.0.0.9" if k == 5 else f"10.0.0.{k}",
                     port=26656) for k in range(2, 8)]
    for a in book:
        m._book.add(0.0, a, source=None)
    (answer,) = m.handle(1.0, nid(1), PexRequest())
    assert isinstance(answer, SendTo) and isinstance(answer.item, PexAddrs)
    offered = set(answer.item.addrs)
    assert offered and all(not s.endswith("@" + me) for s in offered)
    assert offered == {str(a) for a in book if a.hostport != me}
