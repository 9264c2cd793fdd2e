"""The pubsub core: single-core unit tests and multi-node runs on the netsim harness."""

from __future__ import annotations

import functools
import random
import statistics
from typing import Any

import pytest

from p2pakash.crypto import NodeID
from p2pakash.errors import ConfigError, LocalProtocolError
from p2pakash.gossip.caches import MessageCache, SeenCache, TokenBucket
from p2pakash.gossip.messages import (
    Graft,
    IDontWant,
    IHave,
    IWant,
    Ping,
    Prune,
    Publish,
    Subscribe,
    message_id,
)
from p2pakash.gossip.pubsub import (
    Deliver,
    Disconnect,
    PubSub,
    PubSubParams,
    Send,
    Verdict,
)
from tests.gossip.netsim import NetSim, node_ids, random_graph

T = "t"
IDS = node_ids(40)
A, B, C, D = IDS[:4]


def make(local: NodeID = A, seed: int = 0, **kw: Any) -> PubSub:
    return PubSub(local_id=local, params=PubSubParams(**kw), rng=random.Random(seed))


def sends(actions: list[Any], kind: type | None = None) -> list[Any]:
    return [a for a in actions if type(a) is Send and (kind is None or type(a.item) is kind)]


def join(ps: PubSub, peers: list[NodeID], now: float = 0.0, *, outbound: bool = False) -> None:
    """Connect peers that subscribe to T (not yet in our mesh)."""
    for q in peers:
        ps.add_peer(now, q, outbound=outbound)
        ps.handle(now, q, Subscribe(topic=T, subscribe=True))


def build(n: int, seed: int, *, loss: float = 0.0, record: bool = False, degree: float = 6.5,
          settle: float = 5.0, bandwidth: float | None = None,
          **kw: Any) -> tuple[NetSim[PubSub], list[NodeID]]:
    rng = random.Random(seed)
    ids = node_ids(n)
    params = PubSubParams(**kw)
    cores = {i: PubSub(local_id=i, params=params, rng=random.Random(f"{seed}/{i}")) for i in ids}
    sim = NetSim(cores, rng=rng, loss=loss, record=record, bandwidth=bandwidth)
    for i in ids:
        sim.call(i, functools.partial(cores[i].subscribe, topic=T))
    sim.connect_graph(ids, random_graph(rng, n, degree=degree, max_degree=int(degree) + 4))
    sim.run_for(settle)
    return sim, ids


def publish(sim: NetSim[PubSub], node: NodeID, data: bytes) -> bytes:
    core: PubSub = sim.cores[node]
    result: list[bytes] = []

    def go(now: float) -> list[Any]:
        mid, actions = core.publish(now, T, data)
        result.append(mid)
        return actions
    sim.call(node, go)
    return result[0]


def everyone_has(sim: NetSim[PubSub], ids: list[NodeID], publisher: NodeID, mid: bytes) -> bool:
    return sim.reached(mid) | {publisher} == set(ids)


# ------------------------------------------------------------------ multi-node


def test_one_publish_reaches_all_50_with_bounded_copies() -> None:
    sim, ids = build(50, seed=1)
    p = PubSubParams()
    mids = [(ids[k], publish(sim, ids[k], f"hello {k}".encode())) for k in range(0, 50, 5)]
    sim.run_for(2.0)
    copies = []
    for src, mid in mids:
        assert everyone_has(sim, ids, src, mid)
        for n in ids:
            if n != src:
                assert 1 <= sim.copies[(n, mid)] <= p.d_hi + 1
                copies.append(sim.copies[(n, mid)])
    # eager push over a degree ~6 mesh: a handful of copies per node, far below flooding
    assert 1.5 < statistics.mean(copies) < p.d + 1


def test_mesh_degrees_converge_into_bounds() -> None:
    sim, ids = build(50, seed=2, settle=10.0)
    p = PubSubParams()
    for n in ids:
        ps: PubSub = sim.cores[n]
        mesh = ps.mesh(T)
        assert len(mesh) <= p.d_hi
        assert len(mesh) >= min(p.d_lo, len(sim.neighbours(n)))
        assert mesh <= set(sim.neighbours(n))
        for q in mesh:  # links are symmetric once the mesh is quiet
            assert n in sim.cores[q].mesh(T)


def test_ten_percent_loss_repaired_by_ihave_iwant() -> None:
    # a sparse graph: many nodes have only mesh links, so IHAVE must go to mesh peers too
    sim, ids = build(50, seed=3, loss=0.1)
    mids = [(ids[k], publish(sim, ids[k], f"lossy {k}".encode())) for k in range(0, 50, 5)]
    sim.run_for(0.5)
    eager = sum(len(sim.reached(mid)) for _, mid in mids)
    sim.run_for(3.5)
    for src, mid in mids:
        assert everyone_has(sim, ids, src, mid)
    cores: list[PubSub] = list(sim.cores.values())
    assert sum(c.stats.iwant_served for c in cores) > 0
    assert eager <= sum(len(sim.reached(mid)) for _, mid in mids)


def test_partition_heal_repairs_through_ihave_within_mcache_window() -> None:
    sim, ids = build(40, seed=4)
    left, right = set(ids[:20]), set(ids[20:])
    cross = [(a, b) for a in sorted(left) for b in sim.neighbours(a) if b in right]
    assert cross
    for a, b in cross:
        sim.cut(a, b)
    sim.run_for(3.0)  # each side re-forms its own mesh
    mid = publish(sim, ids[0], b"during the partition")
    sim.run_for(0.5)
    assert sim.reached(mid) | {ids[0]} == left
    for a, b in cross:
        sim.connect(a, b)
    sim.run_for(3.0)
    assert everyone_has(sim, ids, ids[0], mid)


def test_long_blocked_partition_later_messages_get_through() -> None:
    sim, ids = build(40, seed=5)
    left, right = ids[:20], ids[20:]
    sim.partition(left, right)
    old = publish(sim, ids[0], b"lost to the other side")
    sim.run_for(10.0)  # longer than the mcache window
    assert not sim.reached(old) & set(right)
    sim.heal()
    sim.run_for(2.0)
    new = publish(sim, ids[1], b"after healing")
    sim.run_for(3.0)
    assert everyone_has(sim, ids, ids[1], new)


def test_idontwant_cuts_copies_of_large_messages() -> None:
    totals = []
    for min_size in (1024, 10**9):  # 4 kB messages over 200 kB/s links: 20 ms each
        sim, ids = build(30, seed=6, idontwant_min_size=min_size, bandwidth=200_000.0)
        mids = [(ids[k], publish(sim, ids[k], bytes([k]) * 4000)) for k in range(0, 30, 3)]
        sim.run_for(3.0)
        for src, mid in mids:
            assert everyone_has(sim, ids, src, mid)
        totals.append(sum(sim.copies[(n, mid)] for _, mid in mids for n in ids))
    assert totals[0] < totals[1]


def test_invalid_publisher_is_disconnected_by_its_neighbours() -> None:
    sim, ids = build(20, seed=7)
    for i in ids:
        sim.cores[i].set_validator(
            T, lambda src, topic, data: Verdict.REJECT if data.startswith(b"bad")
            else Verdict.ACCEPT)
    evil = ids[0]
    victims = sim.neighbours(evil)
    for k in range(5):
        sim.apply(evil, [Send(v, Publish(topic=T, data=b"bad %d" % k)) for v in victims])
        sim.run_for(0.1)
    assert {(n, q) for _, n, q, _ in sim.disconnects} == {(v, evil) for v in victims}
    assert not sim.neighbours(evil)
    mid = publish(sim, ids[1], b"good")
    sim.run_for(2.0)
    assert sim.reached(mid) | {ids[1]} == set(ids) - {evil}


def _run_trace(seed: int) -> list[tuple[float, NodeID, str]]:
    sim, ids = build(30, seed=seed, loss=0.05, record=True)
    for k in range(5):
        publish(sim, ids[k * 3], b"m%d" % k)
        sim.run_for(0.3)
    sim.run_for(2.0)
    assert sim.trace is not None
    return sim.trace


def test_same_seed_same_trace_different_seed_different_trace() -> None:
    first = _run_trace(11)
    assert first == _run_trace(11)
    assert first != _run_trace(12)


# ------------------------------------------------------------------ single core


def test_publish_validates_dedupes_and_floods_to_all_topic_peers() -> None:
    ps = make()
    ps.subscribe(0.0, T)
    join(ps, IDS[1:11])
    ps.heartbeat(1.0)
    assert len(ps.mesh(T)) == 6
    calls = []
    ps.set_validator(T, lambda src, t, d: calls.append(src) or Verdict.ACCEPT)  # type: ignore[func-returns-value]
    mid, actions = ps.publish(1.5, T, b"x")
    assert mid == message_id(T, b"x") and calls == [A]
    assert {s.peer for s in sends(actions, Publish)} == set(IDS[1:11])  # flood: not just mesh
    assert not [a for a in actions if type(a) is Deliver]
    assert ps.publish(1.6, T, b"x") == (mid, [])  # same content, same id: already seen
    assert ps.handle(1.7, B, Publish(topic=T, data=b"x")) == [] and ps.stats.duplicates == 1
    assert calls == [A] and ps.stats.published == 1


def test_forward_to_mesh_except_source_and_deliver_once() -> None:
    ps = make()
    ps.subscribe(0.0, T)
    join(ps, IDS[1:9])
    ps.heartbeat(1.0)
    mesh = ps.mesh(T)
    src = sorted(mesh)[0]
    actions = ps.handle(2.0, src, Publish(topic=T, data=b"y"))
    assert actions[0] == Deliver(T, b"y", message_id(T, b"y"), src)
    assert {s.peer for s in sends(actions, Publish)} == mesh - {src}
    assert ps.handle(2.1, sorted(mesh)[1], Publish(topic=T, data=b"y")) == []
    assert ps.handle(2.2, src, Publish(topic="other", data=b"z")) == []
    assert ps.stats.delivered == 1 and ps.stats.unsubscribed == 1


def test_reject_penalises_squared_and_disconnects_once_then_graylisted() -> None:
    ps = make()
    ps.subscribe(0.0, T)
    join(ps, [B, C])
    calls: list[bytes] = []

    def validator(src: NodeID, topic: str, data: bytes) -> Verdict:
        calls.append(data)
        return Verdict.REJECT if data.startswith(b"bad") else Verdict.ACCEPT
    ps.set_validator(T, validator)
    assert ps.handle(1.0, B, Publish(topic=T, data=b"bad1")) == []
    assert ps.score(B) == -10.0
    ps.handle(1.0, C, Publish(topic=T, data=b"bad1"))  # seen: C is not blamed, no revalidation
    assert calls == [b"bad1"] and ps.score(C) == 0.0
    ps.handle(1.1, B, Publish(topic=T, data=b"bad2"))
    assert ps.score(B) == -40.0
    actions = ps.handle(1.2, B, Publish(topic=T, data=b"bad3"))
    assert actions == [Disconnect(B, "gossip score -90.0 below -80.0")]
    assert ps.handle(1.3, B, Publish(topic=T, data=b"good")) == []
    assert ps.stats.graylisted == 1 and ps.stats.rejected == 3
    assert ps.heartbeat(2.0) == [] or not [a for a in ps.heartbeat(3.0) if type(a) is Disconnect]
    assert [a for a in ps.handle(1.4, C, Publish(topic=T, data=b"good")) if type(a) is Deliver]


def test_graylisted_peer_ignored_until_its_score_decays() -> None:
    ps = make(graylist_threshold=-60.0, disconnect_threshold=-1000.0)
    ps.subscribe(0.0, T)
    join(ps, [B, C])
    ps.set_validator(T, lambda s, t, d: Verdict.REJECT if d[:1] == b"!" else Verdict.ACCEPT)
    for k in range(3):
        ps.handle(0.5, B, Publish(topic=T, data=b"!%d" % k))
    assert ps.score(B) == -90.0
    assert ps.handle(1.0, B, Publish(topic=T, data=b"fine")) == []
    assert ps.handle(1.0, B, IHave(topic=T, ids=(b"\x01" * 32,))) == []
    assert ps.handle(1.0, B, Graft(topic=T)) == [] and B not in ps.mesh(T)
    assert ps.stats.graylisted == 3 and ps.stats.delivered == 0
    for k in range(60):
        ps.heartbeat(2.0 + k)
    assert ps.score(B) > -60.0
    assert [a for a in ps.handle(70.0, B, Publish(topic=T, data=b"fine")) if type(a) is Deliver]


def _c_only(peer: str, topic: str, data: bytes) -> Verdict:
    """Accept C's messages; ignore everything else (junk such as expired orders)."""
    return Verdict.ACCEPT if data.startswith(b"c") else Verdict.IGNORE


def test_rate_limit_drops_a_flood_of_junk_while_others_deliver() -> None:
    ps = make(graylist_threshold=-1e12, disconnect_threshold=-1e12, publish_threshold=-1e11)
    ps.subscribe(0.0, T)
    ps.set_validator(T, _c_only)
    join(ps, [B, C])
    from_c = 0
    for k in range(10_000):
        now = k / 10_000
        ps.handle(now, B, Publish(topic=T, data=b"b%d" % k))
        if k % 100 == 0:
            from_c += sum(type(a) is Deliver
                          for a in ps.handle(now, C, Publish(topic=T, data=b"c%d" % k)))
    validated = ps.stats.ignored
    assert 2900 <= validated <= 3100  # burst 2000 + 1000/s for one second
    assert ps.stats.rate_limited == 10_000 - validated  # dropped before validation
    assert from_c == 100
    assert ps.score(B) < -1000 and ps.score(C) >= 0


def test_valid_messages_are_not_rate_limited() -> None:
    # An honest relay forwards bursts from many publishers: valid messages cost no tokens.
    ps = make()
    ps.subscribe(0.0, T)
    join(ps, [B, C])
    delivered = 0
    for k in range(10_000):
        got = ps.handle(k / 10_000, B, Publish(topic=T, data=b"b%d" % k))
        delivered += sum(type(a) is Deliver for a in got)
    assert delivered == 10_000 and ps.stats.rate_limited == 0 and ps.score(B) >= 0


def test_rate_limit_flood_with_default_thresholds_disconnects_the_flooder() -> None:
    ps = make()
    ps.subscribe(0.0, T)
    ps.set_validator(T, _c_only)
    join(ps, [B, C])
    out: list[Any] = []
    for k in range(10_000):
        out += ps.handle(k / 10_000, B, Publish(topic=T, data=b"b%d" % k))
    disconnects = [a for a in out if type(a) is Disconnect]
    assert len(disconnects) == 1 and disconnects[0].peer == B
    assert 0 < ps.stats.rate_limited < 100
    assert [a for a in ps.handle(1.0, C, Publish(topic=T, data=b"c")) if type(a) is Deliver]


def test_prune_down_to_d_keeps_outbound_quota_and_backoff_is_enforced() -> None:
    ps = make(seed=3)
    ps.subscribe(0.0, T)
    inbound, outbound = IDS[1:16], IDS[16:19]
    join(ps, inbound)
    join(ps, outbound, outbound=True)
    replies = [ps.handle(0.5, q, Graft(topic=T)) for q in inbound + outbound]
    assert len(ps.mesh(T)) == 12 + 3  # inbound grafts stop at d_hi; outbound always accepted
    assert all(r == [] for r in replies[:12]) and all(sends(r, Prune) for r in replies[12:15])
    actions = ps.heartbeat(1.0)
    mesh = ps.mesh(T)
    assert len(mesh) == 6 and len(mesh & set(outbound)) >= 2
    pruned = {s.peer for s in sends(actions, Prune)}
    assert len(pruned) == 15 - 6 and not pruned & mesh
    assert all(s.item.backoff == 60 for s in sends(actions, Prune))
    again = sorted(pruned)[0]
    reply = ps.handle(2.0, again, Graft(topic=T))  # GRAFT during backoff: penalised, PRUNEd
    assert sends(reply, Prune) and again not in ps.mesh(T) and ps.score(again) < 0
    for q in sorted(mesh):  # mesh collapses: the pruned peers stay out while backed off
        ps.remove_peer(3.0, q)
    assert not sends(ps.heartbeat(4.0), Graft) and not ps.mesh(T)
    for k in range(70):
        ps.heartbeat(5.0 + k)
    # backoff over and the penalty decayed: grafting resumes, topped up to the outbound quota
    assert 6 <= len(ps.mesh(T)) <= 7 and set(outbound) & ps.peers() <= ps.mesh(T)


def test_received_prune_sets_backoff_and_graft_for_unsubscribed_topic_is_pruned() -> None:
    ps = make()
    ps.subscribe(0.0, T)
    join(ps, IDS[1:5])
    ps.heartbeat(1.0)
    assert len(ps.mesh(T)) == 4
    ps.handle(1.5, B, Prune(topic=T, backoff=30, px=()))
    assert B not in ps.mesh(T)
    assert B not in ps.mesh(T) | {s.peer for s in sends(ps.heartbeat(2.0), Graft)}
    for k in range(30):
        ps.heartbeat(3.0 + k)
    assert B in ps.mesh(T)
    reply = ps.handle(40.0, B, Graft(topic="elsewhere"))
    assert reply == [Send(B, Prune(topic="elsewhere", backoff=0, px=()))]
    assert ps.score(B) >= 0


def test_ihave_iwant_round_trip_retransmission_limit_and_budget() -> None:
    a, b = make(A, max_iwant_per_heartbeat=10), make(B)
    for ps in (a, b):
        ps.subscribe(0.0, T)
    join(a, [B, *IDS[4:12]])
    join(b, [A])
    a.heartbeat(1.0)
    assert B in a.mesh(T)
    a.handle(1.2, B, Prune(topic=T, backoff=60, px=()))
    mid, _ = a.publish(1.5, T, b"gossip me")
    ihaves = [s for s in sends(a.heartbeat(2.0), IHave) if s.peer == B]
    assert ihaves and ihaves[0].item.ids == (mid,)
    iwant = sends(b.handle(2.1, A, ihaves[0].item))
    assert iwant == [Send(A, IWant(ids=(mid,)))]
    assert b.handle(2.1, A, ihaves[0].item) == []  # already asked this heartbeat
    served = [a.handle(2.2, B, iwant[0].item) for _ in range(5)]
    assert [len(s) for s in served] == [1, 1, 1, 0, 0] and a.stats.iwant_served == 3
    assert served[0][0] == Send(B, Publish(topic=T, data=b"gossip me"))
    many = tuple(bytes([k]) * 32 for k in range(50))
    b2 = make(B, max_iwant_per_heartbeat=10)
    b2.subscribe(0.0, T)
    join(b2, [A])
    first = sends(b2.handle(1.0, A, IHave(topic=T, ids=many)))
    assert len(first[0].item.ids) == 10
    assert b2.handle(1.0, A, IHave(topic=T, ids=many[10:])) == []  # budget spent
    b2.heartbeat(2.0)
    assert len(sends(b2.handle(2.5, A, IHave(topic=T, ids=many[10:])))[0].item.ids) == 10


def test_ihave_names_only_ids_the_peer_is_not_known_to_hold() -> None:
    ps = make(A)
    ps.subscribe(0.0, T)
    join(ps, [B, C, D])
    ps.heartbeat(1.0)
    assert ps.mesh(T) == {B, C, D}  # a sparse graph: IHAVE goes to mesh peers too
    m1, m2, m3 = (Publish(topic=T, data=bytes([k]) * 10) for k in range(3))
    id1, id2, id3 = (message_id(T, x.data) for x in (m1, m2, m3))
    ps.handle(1.1, B, m1)  # B sent it: holds m1
    ps.handle(1.2, C, m1)  # a duplicate from C: C holds m1 too
    ps.handle(1.3, C, m2)
    ps.handle(1.4, D, IDontWant(ids=(id2,)))  # D holds m2
    ps.handle(1.5, D, IHave(topic=T, ids=(id1,)))  # and says it holds m1
    ps.publish(1.6, T, m3.data)  # ours: nobody is known to hold it
    told = {s.peer: set(s.item.ids) for s in sends(ps.heartbeat(2.0), IHave)}
    assert told == {B: {id2, id3}, C: {id3}, D: {id3}}
    ps.handle(2.1, B, IHave(topic=T, ids=(id2, id3)))
    ps.handle(2.2, C, m3)
    ps.handle(2.3, D, m3)
    assert sends(ps.heartbeat(3.0), IHave) == []  # everyone holds everything: no IHAVE


def test_idontwant_sent_for_large_first_copies_and_honoured() -> None:
    ps = make()
    ps.subscribe(0.0, T)
    join(ps, [B, C, D])
    ps.heartbeat(1.0)
    assert ps.mesh(T) == {B, C, D}
    big = b"z" * 2000
    mid = message_id(T, big)
    ps.handle(1.1, C, IDontWant(ids=(mid,)))
    actions = ps.handle(1.2, B, Publish(topic=T, data=big))
    assert {s.peer for s in sends(actions, IDontWant)} == {C, D}
    assert {s.peer for s in sends(actions, Publish)} == {D}
    assert ps.stats.suppressed == 1
    small = ps.handle(1.3, B, Publish(topic=T, data=b"small"))
    assert not sends(small, IDontWant) and {s.peer for s in sends(small, Publish)} == {C, D}
    for k in range(4):  # IDONTWANT memory expires after a few heartbeats
        ps.heartbeat(2.0 + k)
    _, again = ps.publish(7.0, T, b"z" * 2000 + b"!")
    assert {s.peer for s in sends(again, Publish)} == {B, C, D}


def test_seen_cache_expiry_allows_redelivery() -> None:
    ps = make(seen_ttl=5.0)
    ps.subscribe(0.0, T)
    join(ps, [B])
    item = Publish(topic=T, data=b"again")
    assert [a for a in ps.handle(0.0, B, item) if type(a) is Deliver]
    assert ps.handle(1.0, B, item) == [] and ps.seen(message_id(T, b"again"))
    for k in range(1, 8):
        ps.heartbeat(float(k))
    assert not ps.seen(message_id(T, b"again"))
    assert [a for a in ps.handle(8.0, B, item) if type(a) is Deliver]


def test_fanout_when_not_subscribed_and_expiry() -> None:
    ps = make(flood_publish=False)
    join(ps, IDS[1:11])
    _, actions = ps.publish(0.0, T, b"f")
    targets = {s.peer for s in sends(actions, Publish)}
    assert len(targets) == 6 and ps.fanout(T) == targets and not ps.mesh(T)
    _, actions = ps.publish(1.0, T, b"g")
    assert {s.peer for s in sends(actions, Publish)} == targets
    ps.heartbeat(30.0)
    assert ps.fanout(T) == targets
    ps.heartbeat(62.0)
    assert not ps.fanout(T)
    ps.subscribe(63.0, T)
    assert len(ps.mesh(T)) == 6


def test_subscribe_grafts_and_unsubscribe_prunes_with_short_backoff() -> None:
    ps = make()
    join(ps, [B, C])
    actions = ps.subscribe(0.0, T)
    assert {(s.peer, type(s.item)) for s in sends(actions)} == {
        (B, Subscribe), (C, Subscribe), (B, Graft), (C, Graft)}
    assert ps.add_peer(0.5, D, outbound=True) == [Send(D, Subscribe(topic=T, subscribe=True))]
    actions = ps.unsubscribe(1.0, T)
    assert {s.item.backoff for s in sends(actions, Prune)} == {10}
    assert len(sends(actions, Subscribe)) == 3 and not ps.mesh(T)
    assert ps.unsubscribe(1.0, T) == []


def test_peer_unsubscribe_and_removal_clear_mesh_and_score_is_retained() -> None:
    ps = make()
    ps.subscribe(0.0, T)
    join(ps, [B, C])
    ps.heartbeat(1.0)
    ps.handle(1.5, B, Subscribe(topic=T, subscribe=False))
    assert ps.mesh(T) == {C} and ps.topic_peers(T) == {C}
    ps.handle(2.0, B, Graft(topic=T))  # not subscribed to T: refused
    ps.set_validator(T, lambda s, t, d: Verdict.REJECT)
    ps.handle(2.5, C, Publish(topic=T, data=b"x"))
    assert ps.score(C) == pytest.approx(-10.0, abs=0.1)  # P4 minus a little P1
    ps.remove_peer(3.0, C)
    assert not ps.mesh(T) and ps.score(C) == 0.0
    ps.add_peer(4.0, C, outbound=False)
    assert ps.score(C) < 0  # reconnecting does not wipe a penalty


def test_retained_scores_expire_in_order_of_their_last_removal() -> None:
    ps = make(retain_score=100.0)
    ps.subscribe(0.0, T)
    ps.set_validator(T, lambda s, t, d: Verdict.REJECT)
    for k, q in enumerate((B, C)):
        ps.add_peer(0.0, q, outbound=False)
        ps.handle(0.0, q, Subscribe(topic=T, subscribe=True))
        ps.handle(0.5, q, Publish(topic=T, data=b"bad%d" % k))
    ps.remove_peer(1.0, B)
    ps.remove_peer(2.0, C)
    ps.add_peer(3.0, B, outbound=False)
    ps.remove_peer(50.0, B)  # B's record is now the newer one
    ps.heartbeat(101.5)  # C's (until 102) stays, B's (until 150) stays
    assert set(ps._retained) == {B, C}
    ps.heartbeat(102.5)
    assert set(ps._retained) == {B}
    ps.add_peer(103.0, B, outbound=False)
    assert ps.score(B) < 0  # still retained, so still penalised
    ps.remove_peer(104.0, B)
    ps.heartbeat(210.0)
    assert not ps._retained


def test_bad_local_calls_raise_clear_errors() -> None:
    ps = make()
    ps.add_peer(0.0, B, outbound=False)
    with pytest.raises(LocalProtocolError, match="already connected"):
        ps.add_peer(0.0, B, outbound=False)
    with pytest.raises(LocalProtocolError, match="Ping"):
        ps.handle(0.0, B, Ping(nonce=1))
    with pytest.raises(LocalProtocolError, match="topic"):
        ps.publish(0.0, "x" * 65, b"")
    assert ps.handle(0.0, C, Publish(topic=T, data=b"")) == []  # unknown peer: ignored
    with pytest.raises(ConfigError, match="d_lo"):
        PubSubParams(d_lo=7)
    with pytest.raises(ConfigError, match="topic_degree of 'v'"):
        PubSubParams(topic_degree=(("v", 3, 2, 4),))


def test_a_topic_degree_gives_that_topic_its_own_mesh_bounds() -> None:
    v = "v"
    sim, ids = build(40, seed=4, degree=9.0, topic_degree=((v, 2, 3, 4),))
    for i in ids:
        sim.call(i, functools.partial(sim.cores[i].subscribe, topic=v))
    sim.run_for(10.0)
    narrow = [len(sim.cores[i].mesh(v)) for i in ids]
    wide = [len(sim.cores[i].mesh(T)) for i in ids]
    assert max(narrow) <= 4 and min(narrow) >= 2
    assert statistics.mean(wide) > statistics.mean(narrow) + 1.5
    mv = []
    for k in range(5):
        core = sim.cores[ids[k]]
        msg = f"vote {k}".encode()
        sim.call(ids[k], lambda now, core=core, msg=msg: core.publish(now, v, msg)[1])
        mv.append((ids[k], message_id(v, msg)))
    mt = [(ids[k], publish(sim, ids[k], f"other {k}".encode())) for k in range(5)]
    sim.run_for(2.0)
    for src, mid in mv + mt:
        assert everyone_has(sim, ids, src, mid)
    copies = {topic: statistics.mean(sim.copies[(n, mid)] for _, mid in ms for n in ids
                                     if (n, mid) in sim.copies)
              for topic, ms in ((v, mv), (T, mt))}
    assert copies[v] < copies[T] - 1.0, copies


def test_caches_are_bounded() -> None:
    seen = SeenCache(ttl=10.0, bucket=1.0, max_size=100)
    for k in range(250):
        seen.add(k / 10, bytes([k % 256, k // 256]))
    assert len(seen) <= 100 + 10
    assert seen.expire(100.0) == len(seen) or not len(seen)
    mc = MessageCache(length=3, gossip=2, max_size=6)
    for k in range(7):
        mc.put(bytes([k]), Publish(topic=T, data=bytes([k])))
    assert len(mc) == 6
    mc.shift()
    assert not mc.put(b"x", Publish(topic=T, data=b"x"))  # full until a window drops
    mc.shift()
    mc.shift()
    assert len(mc) == 0
    mc.put(b"n", Publish(topic=T, data=b"n"))
    assert mc.gossip_ids(T) == [b"n"] and mc.gossip_ids("other") == []
    mc.shift()
    assert mc.gossip_ids(T) == [b"n"] and mc.get(b"n") is not None
    mc.shift()
    assert mc.gossip_ids(T) == [] and mc.get(b"n") is not None
    mc.shift()
    assert mc.get(b"n") is None
    bucket = TokenBucket(rate=10.0, burst=2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.1) and not bucket.take(0.1)


def test_ignore_verdict_drops_silently_and_validator_errors_count_as_reject() -> None:
    from p2pakash.errors import DecodeError

    ps = make()
    ps.subscribe(0.0, T)
    join(ps, [B, C])
    ps.heartbeat(1.0)

    def validator(src: NodeID, topic: str, data: bytes) -> Verdict:
        if data == b"garbage":
            raise DecodeError("not a transaction")
        return Verdict.IGNORE
    ps.set_validator(T, validator)
    assert ps.handle(1.5, B, Publish(topic=T, data=b"stale")) == []
    assert ps.score(B) >= 0 and ps.stats.ignored == 1
    assert not sends(ps.handle(1.6, B, Publish(topic=T, data=b"garbage")), Publish)
    assert ps.score(B) < 0 and ps.stats.rejected == 1
    _, actions = ps.publish(2.0, T, b"mine")  # our own publish is validated too
    assert actions == [] and ps.stats.published == 0
