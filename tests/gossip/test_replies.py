"""Replies: answers routed back along the path of the message they answer (replies.py)."""

from __future__ import annotations

import random
from typing import Any

from p2pakash import wire
from p2pakash.crypto import NodeID
from p2pakash.gossip.messages import Publish, Reply, Subscribe, message_id
from p2pakash.gossip.pubsub import Deliver, PubSub, PubSubParams, Send, Verdict
from p2pakash.gossip.replies import ReplyRoutes, reply_id
from tests.gossip.netsim import NetSim, node_ids, random_graph

ASK, ANSWER = "ask", "answer"
IDS = node_ids(8)
A, B, C, D = IDS[:4]


def core(local: NodeID, seed: int = 0, **kw: Any) -> PubSub:
    ps = PubSub(local_id=local, params=PubSubParams(**kw), rng=random.Random(seed))
    ps.answerable(ASK)
    ps.subscribe(0.0, ASK)
    ps.subscribe(0.0, ANSWER)
    return ps


def connect(ps: PubSub, *peers: NodeID) -> None:
    for q in peers:
        ps.add_peer(0.0, q, outbound=True)
        ps.handle(0.0, q, Subscribe(topic=ASK, subscribe=True))
        ps.handle(0.0, q, Subscribe(topic=ANSWER, subscribe=True))


def build(n: int, seed: int, **kw: Any) -> tuple[NetSim[PubSub], list[NodeID]]:
    rng = random.Random(seed)
    ids = node_ids(n)
    cores = {i: core(i, seed=hash((seed, i)) % 1000, **kw) for i in ids}
    sim = NetSim(cores, rng=rng)
    sim.connect_graph(ids, random_graph(rng, n, degree=6.5, max_degree=10))
    sim.run_for(5.0)
    return sim, ids


def ask(sim: NetSim[PubSub], node: NodeID, data: bytes) -> bytes:
    out: list[bytes] = []

    def go(now: float) -> list[Any]:
        mid, actions = sim.cores[node].publish(now, ASK, data)
        out.append(mid)
        return actions
    sim.call(node, go)
    return out[0]


def answer(sim: NetSim[PubSub], node: NodeID, to: bytes, data: bytes) -> bool:
    ok: list[bool] = []

    def go(now: float) -> list[Any]:
        sent, actions = sim.cores[node].reply(now, to, ANSWER, data)
        ok.append(sent)
        return actions
    sim.call(node, go)
    return ok[0]


def replies_sent(sim: NetSim[PubSub]) -> int:
    return sum(c.stats.replies_sent for c in sim.cores.values())


def test_answers_reach_only_the_asker_in_a_few_hops() -> None:
    sim, ids = build(60, seed=3)
    asker = ids[0]
    to = ask(sim, asker, b"who has a GPU?")
    sim.run_for(2.0)
    answerers = ids[20:60:4]
    for k, node in enumerate(answerers):
        assert answer(sim, node, to, f"me, #{k}".encode())
    sim.run_for(2.0)
    for k, _ in enumerate(answerers):
        rid = reply_id(to, ANSWER, f"me, #{k}".encode())
        assert sim.reached(rid) == {asker}  # delivered once, to the asker only
    # Two ways back per node: a few dozen sends at most, where flooding costs ~6 copies
    # at each of the 60 nodes (21 here); one way back costs only the path's hops.
    per_answer = replies_sent(sim) / len(answerers)
    assert 1 <= per_answer <= 40, per_answer
    single, ids = build(60, seed=3, reply_paths=1)
    to = ask(single, ids[0], b"who has a GPU?")
    single.run_for(2.0)
    for k, node in enumerate(answerers):
        assert answer(single, node, to, f"me, #{k}".encode())
    single.run_for(2.0)
    assert replies_sent(single) / len(answerers) <= 6 < per_answer
    assert sum(c.stats.replies_delivered for c in sim.cores.values()) == len(answerers)


def test_a_dead_relay_on_the_first_path_is_bypassed_by_the_second() -> None:
    sim, ids = build(40, seed=5)
    asker = ids[0]
    to = ask(sim, asker, b"question")
    sim.run_for(2.0)
    far = next(n for n in ids[1:] if len(sim.cores[n]._replies.routes[to]) == 2
               and asker not in sim.cores[n]._replies.routes[to])
    first = sim.cores[far]._replies.routes[to][0]  # the first relay towards the asker
    for q in list(sim.neighbours(first)):
        if q != far:
            sim.cut(first, q)  # the relay still takes the answer, but cannot pass it on
    assert answer(sim, far, to, b"answer")
    sim.run_for(2.0)
    assert sim.reached(reply_id(to, ANSWER, b"answer")) == {asker}


def test_same_seed_same_routes() -> None:
    def routes(seed: int) -> list[list[NodeID]]:
        sim, ids = build(30, seed=seed)
        to = ask(sim, ids[0], b"q")
        sim.run_for(2.0)
        return [sim.cores[n]._replies.routes[to] for n in ids[1:]]
    assert routes(9) == routes(9)


def test_relay_keeps_two_ways_back_and_forwards_once() -> None:
    ps = core(A)
    connect(ps, B, C, D)
    item = Publish(topic=ASK, data=b"q")
    to = message_id(ASK, b"q")
    ps.handle_publish(1.0, B, item)
    ps.handle_publish(1.0, C, item)
    ps.handle_publish(1.0, D, item)  # a third copy: not kept
    assert ps._replies.routes[to] == [B, C]
    reply = Reply(to=to, topic=ANSWER, data=b"a")
    out = ps.handle(1.1, D, reply)
    assert [(a.peer, a.item) for a in out if type(a) is Send] == [(B, reply), (C, reply)]
    assert ps.handle(1.2, B, reply) == []  # the same answer again: dropped, free
    assert ps.stats.duplicates == 3  # two Publish copies and the repeated Reply


def test_reply_from_the_publisher_side_is_delivered_locally() -> None:
    ps = core(A)
    connect(ps, B)
    to, actions = ps.publish(1.0, ASK, b"q")
    assert actions
    out = ps.handle(1.5, B, Reply(to=to, topic=ANSWER, data=b"a"))
    assert out == [Deliver(ANSWER, b"a", reply_id(to, ANSWER, b"a"), B)]


def test_unroutable_replies_cost_the_sender_tokens_then_its_score() -> None:
    ps = core(A, rate_limit_burst=5.0, rate_limit_msgs_per_sec=0.001)
    connect(ps, B)
    for k in range(5):
        assert ps.handle(1.0, B, Reply(to=bytes([k]) * 32, topic=ANSWER, data=b"x")) == []
    assert ps.stats.replies_unroutable == 5
    ps.handle(1.0, B, Reply(to=b"\x09" * 32, topic=ANSWER, data=b"x"))
    assert ps.stats.rate_limited == 1
    assert ps.score(B) < 0


def test_rejected_reply_is_not_forwarded_and_penalises_the_sender() -> None:
    ps = core(A)
    ps.set_validator(ANSWER, lambda src, topic, data: Verdict.REJECT if data == b"bad"
                     else Verdict.ACCEPT)
    connect(ps, B, C)
    ps.handle_publish(1.0, B, Publish(topic=ASK, data=b"q"))
    to = message_id(ASK, b"q")
    assert ps.handle(1.1, C, Reply(to=to, topic=ANSWER, data=b"bad")) == []
    assert ps.stats.rejected == 1
    assert ps.score(C) < 0
    out = ps.handle(1.2, C, Reply(to=to, topic=ANSWER, data=b"good"))
    assert [a.peer for a in out if type(a) is Send] == [B]


def test_reply_to_a_topic_we_do_not_carry_or_not_answerable_is_refused() -> None:
    ps = core(A)
    connect(ps, B, C)
    ps.handle_publish(1.0, B, Publish(topic=ASK, data=b"q"))
    to = message_id(ASK, b"q")
    assert ps.handle(1.1, C, Reply(to=to, topic="elsewhere", data=b"a")) == []
    assert ps.stats.replies_unroutable == 1
    ps.subscribe(1.0, "plain")
    ps.handle(1.0, B, Subscribe(topic="plain", subscribe=True))
    ps.handle_publish(1.0, B, Publish(topic="plain", data=b"q"))
    assert ps.reply(1.2, message_id("plain", b"q"), ANSWER, b"a") == (False, [])


def test_own_reply_refused_by_own_validator_or_without_a_way_back() -> None:
    ps = core(A)
    ps.set_validator(ANSWER, lambda src, topic, data: Verdict.IGNORE)
    connect(ps, B)
    ps.handle_publish(1.0, B, Publish(topic=ASK, data=b"q"))
    assert ps.reply(1.1, message_id(ASK, b"q"), ANSWER, b"a") == (False, [])
    assert ps.reply(1.1, b"\x01" * 32, ANSWER, b"a") == (False, [])


def test_routes_expire_after_reply_ttl_and_are_bounded() -> None:
    ps = core(A, reply_ttl=10.0)
    connect(ps, B)
    ps.handle_publish(1.0, B, Publish(topic=ASK, data=b"q"))
    to = message_id(ASK, b"q")
    ps.heartbeat(9.0)
    assert to in ps._replies.routes
    ps.heartbeat(12.5)
    assert to not in ps._replies.routes
    routes = ReplyRoutes(ttl=60.0, bucket=1.0, max_routes=100)
    for k in range(1000):
        routes.note(float(k) / 100, k.to_bytes(32, "big"), B)
    assert len(routes.routes) <= 100


def test_reply_wire_round_trip_and_bounds() -> None:
    r = Reply(to=b"\x00" * 32, topic=ANSWER, data=b"payload")
    assert wire.decode(wire.encode(r), Reply) == r
    assert reply_id(r.to, ANSWER, b"payload") != message_id(ANSWER, b"payload")


def test_netsim_reply_counts_are_deterministic_per_run() -> None:
    def run(seed: int) -> int:
        sim, ids = build(30, seed=seed)
        to = ask(sim, ids[0], b"q")
        sim.run_for(1.0)
        for node in ids[10:30:2]:
            answer(sim, node, to, node.encode())
        sim.run_for(1.0)
        return replies_sent(sim)
    assert run(2) == run(2)



def test_own_reply_with_every_way_back_gone_is_not_validated_so_a_publish_can_follow() -> None:
    calls: list[bytes] = []

    def validator(src: NodeID, topic: str, data: bytes) -> Verdict:
        calls.append(data)
        return Verdict.ACCEPT
    ps = core(A)
    ps.set_validator(ANSWER, validator)
    connect(ps, B, C)
    ps.handle_publish(1.0, B, Publish(topic=ASK, data=b"q"))
    ps.remove_peer(1.5, B)  # our only way back is gone
    assert ps.reply(2.0, message_id(ASK, b"q"), ANSWER, b"a") == (False, [])
    assert calls == []  # a validator with a replay check would refuse the publish that follows
    _, actions = ps.publish(2.0, ANSWER, b"a")
    assert [a.peer for a in actions if type(a) is Send] == [C] and calls == [b"a"]


def test_relay_with_every_way_back_gone_publishes_the_answer_on_its_topic() -> None:
    ps = core(A)
    connect(ps, B, C, D)
    ps.handle_publish(1.0, B, Publish(topic=ASK, data=b"q"))
    to = message_id(ASK, b"q")
    ps.remove_peer(1.5, B)
    out = ps.handle(2.0, C, Reply(to=to, topic=ANSWER, data=b"a"))
    sent = [(a.peer, a.item) for a in out if type(a) is Send]
    assert sent == [(D, Publish(topic=ANSWER, data=b"a"))]  # the mesh, not back to C
    assert ps.stats.replies_flooded == 1 and ps.seen(message_id(ANSWER, b"a"))
