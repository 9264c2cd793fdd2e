"""The peer manager: whom to dial, whom to accept, liveness and PEX (sans-IO).

A driver feeds events in (``start``, ``tick``, ``accept``, ``connected``, ``dial_failed``,
``disconnected``, ``seen``, ``handle``, ``ban``) and carries out the returned actions
(``Dial``, ``SendTo``, ``Disconnect``). Time arrives as ``now``; randomness comes from the
injected ``random.Random``; sets are sorted before any sampling, so one seed gives one
sequence of actions. Modelled on CometBFT's p2p switch and PEX reactor.

Driver contract:
* after ``Dial(addr)`` comes ``dial_failed(addr)``, ``connected(addr.node_id,
  outbound=True)`` or a refusal by ``accept(addr.node_id, outbound=True)`` (which counts as
  the dial failing; a later ``dial_failed`` for it is ignored). A dial with no answer
  within ``dial_timeout`` is given up;
* every authenticated connection goes through ``accept`` and, when it returns None,
  ``connected`` in the same step (no await between), and ``disconnected`` once it closes;
* ``Disconnect`` means: send ``Goodbye(reason)`` if possible, close, then call
  ``disconnected``. Until then the peer is "closing": not in ``peers()``, not re-accepted.
* Known limit: two nodes dialling each other at the same instant may each refuse the
  other's second connection as "already connected" and so drop both; the jittered
  backoff makes the retry succeed.

Rules and invariants:
* never dial or accept ourselves, a banned node or host, or a node already connected;
  never dial a node being dialled. Persistent peers bypass the inbound/outbound limits;
* persistent peers are redialled forever with exponential backoff + jitter (``backoff``),
  reset by a successful connection; other addresses back off the same way and are
  forgotten after ``forget_after_failures`` failures if they never worked;
* every ``ensure_interval`` the manager dials random known addresses until
  ``max_outbound`` outbound connections exist (pending dials count); seeds are dialled at
  start and whenever the book has too few candidates;
* a peer gets a ``Ping`` once nothing has arrived from it for ``ping_interval`` (a busy
  link carries no pings: its traffic proves it alive); nothing received for
  ``ping_timeout`` disconnects it with "ping timeout". ``tick`` looks at the connections
  only once one of them may be due (a lower bound kept as they change), and
  ``next_deadline`` is that bound, not a poll: an idle node's tick costs O(1) per link;
* PEX: while the book has room or outbound slots are free, we ask new outbound peers and,
  every ``pex_interval``, one random peer not asked for that long; a peer may
  answer only what we asked (one ``PexAddrs`` per outstanding request), with well-formed
  addresses, else it misbehaved: disconnect and ban for ``misbehave_ban_seconds``.
  Requests from one peer are answered at most once per ``pex_interval / 3`` (the rest
  are ignored); answers are a random sample of known, not-failing addresses, never the
  asker's own. ``pex_interval=inf`` turns PEX off: we never ask (and answer once per
  connection).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from random import Random
from typing import Any

import attrs

from p2pakash.crypto import NodeID
from p2pakash.errors import LocalProtocolError
from p2pakash.gossip.addr import PeerAddr, split_host_port
from p2pakash.gossip.addrbook import AddrBook
from p2pakash.gossip.backoff import Retry
from p2pakash.gossip.messages import MAX_ADDRS, PexAddrs, PexRequest, Ping, Pong

REFUSE_SELF = "self"
REFUSE_BANNED = "banned"
REFUSE_DUPLICATE = "already connected"
REFUSE_INBOUND = "too many inbound"
REFUSE_OUTBOUND = "too many outbound"
REFUSE_HOST = "too many from host"
PING_TIMEOUT = "ping timeout"
DIAL_TIMEOUT = "dial timed out"

MAX_REASON = 200  # Goodbye.reason's bound: longer reasons are cut
_UNSPECIFIED_HOSTS = frozenset({"", "0.0.0.0", "::"})


def _positive(inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"peer params: {attribute.name} must be > 0, got {value!r}")


def _non_negative(inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"peer params: {attribute.name} must be >= 0, got {value!r}")


def _fraction(inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"peer params: {attribute.name} must be in [0, 1), got {value!r}")


def _share(inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= MAX_ADDRS:
        raise ValueError(f"peer params: {attribute.name} must be 1..{MAX_ADDRS}, got {value!r}")


@attrs.frozen(kw_only=True)
class PeerParams:
    max_inbound: int = attrs.field(default=40, validator=_non_negative)
    max_outbound: int = attrs.field(default=10, validator=_non_negative)
    max_per_host: int = attrs.field(default=8, validator=_positive)  # inbound, per remote host
    backoff_base: float = attrs.field(default=1.0, validator=_positive)
    backoff_max: float = attrs.field(default=60.0, validator=_positive)
    backoff_jitter: float = attrs.field(default=0.25, validator=_fraction)
    ping_interval: float = attrs.field(default=10.0, validator=_positive)
    ping_timeout: float = attrs.field(default=30.0, validator=_positive)
    pex_interval: float = attrs.field(default=30.0, validator=_positive)
    ensure_interval: float = attrs.field(default=5.0, validator=_positive)
    ban_seconds: float = attrs.field(default=600.0, validator=_non_negative)
    max_known: int = attrs.field(default=1000, validator=_positive)
    pex_share: int = attrs.field(default=30, validator=_share)
    # Additions beyond the first sketch:
    max_per_source: int = attrs.field(default=250, validator=_positive)  # book entries per PEX peer
    dial_timeout: float = attrs.field(default=30.0, validator=_positive)  # forget a silent Dial
    misbehave_ban_seconds: float = attrs.field(default=60.0, validator=_non_negative)
    forget_after_failures: int = attrs.field(default=5, validator=_positive)


@attrs.frozen
class Dial:
    addr: PeerAddr


@attrs.frozen
class SendTo:
    peer: NodeID
    item: object


@attrs.frozen
class Disconnect:
    peer: NodeID
    reason: str


Action = Dial | SendTo | Disconnect


@attrs.define
class _Conn:
    host: str
    outbound: bool
    last_seen: float
    next_ping: float
    closing: bool = False
    ping_nonce: int | None = None
    pex_asked_at: float | None = None  # when we last sent this peer a PexRequest
    pex_owed: bool = False  # one PexAddrs from this peer is welcome
    pex_answered_at: float | None = None  # when we last answered its PexRequest


class PeerManager:
    def __init__(self, *, local_id: NodeID, params: PeerParams, rng: Random,
                 seeds: Sequence[PeerAddr] = (), persistent: Sequence[PeerAddr] = (),
                 self_addr: str = "") -> None:
        self.local_id = local_id
        self.params = params
        self._rng = rng
        self._seeds = {a.node_id: a for a in seeds if a.node_id != local_id}
        self._persistent = {a.node_id: a for a in persistent if a.node_id != local_id}
        self._persistent_sorted = [self._persistent[n] for n in sorted(self._persistent)]
        self._next_expire = 0.0  # bans and retry records are swept at most this often
        # self_addr: our own "host:port" or "ID@host:port"; addresses there are never dialled
        self._self_hostport = self_addr.rpartition("@")[2]
        try:  # compared as (host, port): no formatting per address checked
            self._self_hp: tuple[str, int] | None = split_host_port(self._self_hostport)
        except ValueError:
            self._self_hp = None
        self._book = AddrBook(max_known=params.max_known, max_per_source=params.max_per_source)
        self._conns: dict[NodeID, _Conn] = {}
        self._dialing: dict[NodeID, tuple[PeerAddr, float]] = {}
        self._retry: dict[NodeID, Retry] = {}
        self._bans: dict[NodeID, float] = {}
        self._host_bans: dict[str, float] = {}
        self._next_ensure = 0.0
        self._next_pex = 0.0
        # No live connection needs a ping or times out before this (a lower bound: traffic
        # only moves those times later); ``tick`` looks at the connections only then.
        self._conns_due = math.inf

    # ----- queries -----

    def peers(self) -> frozenset[NodeID]:
        return frozenset(p for p, c in self._conns.items() if not c.closing)

    def outbound_count(self) -> int:
        return sum(1 for c in self._conns.values() if c.outbound and not c.closing)

    def inbound_count(self) -> int:
        return sum(1 for c in self._conns.values() if not c.outbound and not c.closing)

    def known(self) -> list[PeerAddr]:
        return [e.addr for e in self._book.entries()]

    def dialing(self) -> frozenset[NodeID]:
        return frozenset(self._dialing)

    def is_banned(self, now: float, peer: NodeID) -> bool:
        return self._bans.get(peer, -math.inf) > now

    def next_deadline(self) -> float:
        times = [self._next_ensure, self._next_pex, self._conns_due]
        times += [started + self.params.dial_timeout for _, started in self._dialing.values()]
        for node in self._persistent:
            if node not in self._conns and node not in self._dialing:
                retry = self._retry.get(node)
                times.append(max(retry.due if retry else 0.0, self._bans.get(node, 0.0)))
        return min(times)

    # ----- events -----

    def start(self, now: float) -> list[Action]:
        self._next_ensure = now + self.params.ensure_interval
        self._next_pex = now + self.params.pex_interval
        targets = list(self._persistent.values()) + list(self._seeds.values())
        return self._dial_all(now, sorted(targets, key=str))

    def tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if now >= self._next_expire:  # a sweep (expired bans already count as expired)
            self._next_expire = now + self.params.ensure_interval
            self._expire(now)
        for node in sorted(self._dialing):
            addr, started = self._dialing[node]
            if started + self.params.dial_timeout <= now:
                actions += self.dial_failed(now, addr, DIAL_TIMEOUT)
        if now >= self._conns_due:
            actions += self._check_conns(now)
        actions += self._dial_all(now, self._persistent_sorted)
        if not self._conns and not self._dialing:
            # Alone: retry the seeds on their own backoff rather than waiting for ensure.
            actions += self._dial_all(now, [self._seeds[n] for n in sorted(self._seeds)])
        if now >= self._next_ensure:
            self._next_ensure = now + self.params.ensure_interval
            actions += self._ensure(now)
        if now >= self._next_pex:
            self._next_pex = now + self.params.pex_interval
            actions += self._pex_round(now)
        return actions

    def _check_conns(self, now: float) -> list[Action]:
        """Pings for silent links, drops for dead ones; sets ``_conns_due``."""
        actions: list[Action] = []
        p = self.params
        due = math.inf
        for node in sorted(self._conns):
            conn = self._conns[node]
            if conn.closing:
                continue
            if now - conn.last_seen >= p.ping_timeout:
                actions.append(self._drop(node, PING_TIMEOUT))
                continue
            if now >= conn.next_ping:
                if now - conn.last_seen < p.ping_interval:
                    conn.next_ping = conn.last_seen + p.ping_interval  # heard lately
                else:
                    conn.ping_nonce = self._rng.getrandbits(32)
                    conn.next_ping = now + p.ping_interval
                    actions.append(SendTo(node, Ping(nonce=conn.ping_nonce)))
            due = min(due, self._due(conn))
        self._conns_due = due
        return actions

    def _due(self, conn: _Conn) -> float:
        """When ``conn`` next needs a ping or times out, unless traffic comes first."""
        p = self.params
        return min(max(conn.next_ping, conn.last_seen + p.ping_interval),
                   conn.last_seen + p.ping_timeout)

    def dial_failed(self, now: float, addr: PeerAddr, reason: str) -> list[Action]:
        """A dial to ``addr`` failed (``reason`` is for logs). Unknown dials are ignored."""
        if self._dialing.pop(addr.node_id, None) is None or addr.node_id in self._conns:
            return []  # unknown dial, or the peer reached us first: nothing failed
        self._backoff(now, addr.node_id)
        entry = self._book.mark_failure(addr.node_id)
        if (entry is not None and entry.last_success is None
                and entry.failures >= self.params.forget_after_failures):
            self._book.remove(addr.node_id)
        return []

    def accept(self, now: float, peer: NodeID, *, host: str, outbound: bool) -> str | None:
        """None to accept a new authenticated connection, else why it is refused."""
        refusal = self._refusal(now, peer, host=host, outbound=outbound)
        if refusal is not None and outbound and peer in self._dialing:
            self.dial_failed(now, self._dialing[peer][0], refusal)
        return refusal

    def _refusal(self, now: float, peer: NodeID, *, host: str, outbound: bool) -> str | None:
        if peer == self.local_id:
            return REFUSE_SELF
        if self.is_banned(now, peer) or self._host_bans.get(host, -math.inf) > now:
            return REFUSE_BANNED
        if peer in self._conns:
            return REFUSE_DUPLICATE
        if peer in self._persistent:
            return None
        if outbound:
            return REFUSE_OUTBOUND if self.outbound_count() >= self.params.max_outbound else None
        if self.inbound_count() >= self.params.max_inbound:
            return REFUSE_INBOUND
        from_host = sum(1 for c in self._conns.values()
                        if not c.outbound and not c.closing and c.host == host)
        return REFUSE_HOST if from_host >= self.params.max_per_host else None

    def connected(self, now: float, peer: NodeID, *, host: str, listen_addr: str,
                  outbound: bool) -> list[Action]:
        """An accepted connection is up. ``listen_addr`` ("host:port" or "") is learned."""
        if peer in self._conns:
            raise LocalProtocolError(f"peer manager: connected({peer}) twice without "
                                     "disconnected(); call accept() first")
        conn = _Conn(host=host, outbound=outbound, last_seen=now,
                     next_ping=now + self.params.ping_interval)
        self._conns[peer] = conn
        self._conns_due = min(self._conns_due, conn.next_ping)
        self._retry.pop(peer, None)
        dialled = self._dialing.pop(peer, None) if outbound else None
        if dialled is not None:
            self._book.mark_success(now, dialled[0])
        elif listen_addr:
            try:
                lhost, lport = split_host_port(listen_addr)
            except ValueError:
                pass  # a peer's odd listen address only costs it being dialled back
            else:
                addr = PeerAddr(node_id=peer, host=host if lhost in _UNSPECIFIED_HOSTS else lhost,
                                port=lport)
                if self._dialable_addr(now, addr):
                    self._book.add(now, addr, source=None)
        if outbound and self._wants_addrs():
            return [self._ask(now, peer, conn)]
        return []

    def disconnected(self, now: float, peer: NodeID) -> list[Action]:
        """The connection to ``peer`` closed. Its redial (if any) waits a backoff."""
        if self._conns.pop(peer, None) is None:
            return []
        self._backoff(now, peer)
        self._conns_due = min((self._due(c) for c in self._conns.values() if not c.closing),
                              default=math.inf)
        return []

    def seen(self, now: float, peer: NodeID) -> None:
        """Something arrived from ``peer``: it is alive."""
        conn = self._conns.get(peer)
        if conn is not None and now > conn.last_seen:
            conn.last_seen = now

    def handle(self, now: float, peer: NodeID, item: object) -> list[Action]:
        """A peer-management message from ``peer``; other items are ignored (return [])."""
        conn = self._conns.get(peer)
        if conn is None or conn.closing:
            return []
        conn.last_seen = max(conn.last_seen, now)
        if isinstance(item, Ping):
            return [SendTo(peer, Pong(nonce=item.nonce))]
        if isinstance(item, Pong):
            if item.nonce == conn.ping_nonce:
                conn.ping_nonce = None
            return []
        if isinstance(item, PexRequest):
            return self._answer_pex(now, peer, conn)
        if isinstance(item, PexAddrs):
            return self._learn_pex(now, peer, conn, item)
        return []  # Goodbye (the close follows) and other layers' items

    def ban(self, now: float, peer: NodeID, reason: str, *, seconds: float | None = None,
            host: str | None = None) -> list[Action]:
        """Disconnect ``peer`` (and, with ``host``, every peer from that host) and refuse
        dialling or accepting them for ``seconds`` (default ``ban_seconds``)."""
        until = now + (self.params.ban_seconds if seconds is None else seconds)
        self._bans[peer] = max(self._bans.get(peer, -math.inf), until)
        if host is not None:
            self._host_bans[host] = max(self._host_bans.get(host, -math.inf), until)
        actions: list[Action] = []
        for node in sorted(self._conns):
            conn = self._conns[node]
            if not conn.closing and (node == peer or (host is not None and conn.host == host)):
                actions.append(self._drop(node, reason))
        return actions

    # ----- internals -----

    def _drop(self, peer: NodeID, reason: str) -> Disconnect:
        self._conns[peer].closing = True
        return Disconnect(peer, reason[:MAX_REASON])

    def _backoff(self, now: float, node: NodeID) -> None:
        p = self.params
        self._retry.setdefault(node, Retry()).fail(
            now, base=p.backoff_base, cap=p.backoff_max, jitter=p.backoff_jitter, rng=self._rng)

    def _expire(self, now: float) -> None:
        self._bans = {n: t for n, t in self._bans.items() if t > now}
        self._host_bans = {h: t for h, t in self._host_bans.items() if t > now}
        keep = self._persistent.keys() | self._seeds.keys()
        self._retry = {n: r for n, r in self._retry.items()
                       if n in keep or n in self._book or r.due > now}

    def _dialable_addr(self, now: float, addr: PeerAddr) -> bool:
        return (addr.node_id != self.local_id and (addr.host, addr.port) != self._self_hp
                and not self.is_banned(now, addr.node_id)
                and self._host_bans.get(addr.host, -math.inf) <= now)

    def _can_dial(self, now: float, addr: PeerAddr) -> bool:
        retry = self._retry.get(addr.node_id)
        return (addr.node_id not in self._conns and addr.node_id not in self._dialing
                and (retry is None or retry.due <= now) and self._dialable_addr(now, addr))

    def _dial_all(self, now: float, addrs: Iterable[PeerAddr]) -> list[Action]:
        actions: list[Action] = []
        for addr in addrs:
            if self._can_dial(now, addr):
                self._dialing[addr.node_id] = (addr, now)
                actions.append(Dial(addr))
        return actions

    def _ensure(self, now: float) -> list[Action]:
        need = self.params.max_outbound - self.outbound_count() - len(self._dialing)
        if need <= 0:
            return []
        candidates = [e.addr for e in self._book.entries() if self._can_dial(now, e.addr)]
        chosen = self._rng.sample(candidates, min(need, len(candidates)))
        actions = self._dial_all(now, chosen)
        if len(chosen) < need:
            seeds = [self._seeds[n] for n in sorted(self._seeds)]
            seeds = [s for s in seeds if self._can_dial(now, s)]
            actions += self._dial_all(now, self._rng.sample(seeds, min(need - len(chosen),
                                                                       len(seeds))))
        return actions

    def _ask(self, now: float, peer: NodeID, conn: _Conn) -> SendTo:
        conn.pex_asked_at, conn.pex_owed = now, True
        return SendTo(peer, PexRequest())

    def _wants_addrs(self) -> bool:
        if not math.isfinite(self.params.pex_interval):
            return False  # PEX off
        return self._book.has_room() or self.outbound_count() < self.params.max_outbound

    def _pex_round(self, now: float) -> list[Action]:
        if not self._wants_addrs():
            return []
        interval = self.params.pex_interval
        askable = [n for n in sorted(self._conns) if not self._conns[n].closing
                   and (self._conns[n].pex_asked_at is None
                        or now - (self._conns[n].pex_asked_at or 0.0) >= interval)]
        if not askable:
            return []
        peer = self._rng.choice(askable)
        return [self._ask(now, peer, self._conns[peer])]

    def _answer_pex(self, now: float, peer: NodeID, conn: _Conn) -> list[Action]:
        last = conn.pex_answered_at
        if last is not None and now - last < self.params.pex_interval / 3:
            return []  # rate limit: too frequent requests go unanswered
        conn.pex_answered_at = now
        good = [e.addr for e in self._book.entries()
                if e.addr.node_id != peer and (e.last_success is not None or e.failures == 0)
                and self._dialable_addr(now, e.addr)]
        share = self._rng.sample(good, min(self.params.pex_share, len(good)))
        return [SendTo(peer, PexAddrs(addrs=tuple(str(a) for a in share)))]

    def _learn_pex(self, now: float, peer: NodeID, conn: _Conn, item: PexAddrs) -> list[Action]:
        if not conn.pex_owed:
            return self._misbehaved(now, peer, "unsolicited PexAddrs")
        conn.pex_owed = False
        if not isinstance(item.addrs, tuple) or len(item.addrs) > MAX_ADDRS:
            return self._misbehaved(now, peer, f"PexAddrs with more than {MAX_ADDRS} addresses")
        addrs: list[PeerAddr] = []
        for i, text in enumerate(item.addrs):
            try:
                if not isinstance(text, str):
                    raise ValueError(f"expected a string, got {type(text).__name__}")
                addrs.append(PeerAddr.parse(text))
            except ValueError as exc:
                reason = f"bad address #{i} in PexAddrs: {exc}"
                return self._misbehaved(now, peer, reason)
        for addr in addrs:
            if self._dialable_addr(now, addr):
                self._book.add(now, addr, source=peer)
        return self._ensure(now)  # dial what we just learned now, not at the next ensure tick

    def _misbehaved(self, now: float, peer: NodeID, reason: str) -> list[Action]:
        return self.ban(now, peer, reason, seconds=self.params.misbehave_ban_seconds)
