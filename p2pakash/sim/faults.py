"""Faults: the schedule of timed events, byzantine chain behaviour, and skewed clocks.

Rules and invariants:
* ``schedule(scenario)`` turns ``[[faults]]`` and ``[[partitions]]`` into one list of
  ``Event``s sorted by (time, position in the file): the runner applies them in that
  order, so two runs apply the same events at the same virtual instants.
* A byzantine validator is the real ``ChainService`` with ``broadcast`` overridden
  (``FaultyChain``); nothing of consensus is forked. ``equivocate``: every own vote is
  followed by a second vote of the same type/height/round for a different (random,
  seeded) block — double signing that honest nodes turn into evidence. ``withhold``: own
  votes never leave the node (it still counts them itself).
* ``twin``: a second instance of a validator key with its own node identity and its own
  storage (no shared signing guard), like one key run on two machines. Alone it may double
  sign when the twins see different proposals; with a partition between them it signs on
  both sides (the setup for a safety violation beyond f).
* ``crash``: the node's services are cancelled (nothing flushed on the way out) and, at
  ``until``, restarted from its storage: block store, ledger, WAL and signing state.
* ``clock_skew``: ``skew_ms`` is added to what the node's clock says (its ``now_ms``:
  block times, vote timestamps, expiry checks), from ``at`` until ``until``.
* ``containers_die`` (providers): at ``at`` every container of the provider exits with
  137 and its container engine stops answering (deploys, status and logs fail) until
  ``until``; the provider service itself keeps running.
"""

from __future__ import annotations

import random

import attrs
import trio

from p2pakash.chain import ChainService
from p2pakash.consensus.driver import Message
from p2pakash.consensus.types import Vote, sign_vote
from p2pakash.sim.scenario import Scenario


@attrs.frozen(kw_only=True, order=True)
class Event:
    at: float
    seq: int
    action: str  # crash restart equivocate withhold skew twin_start twin_stop partition heal
    #                containers_die
    node: str = ""
    value: int = 0  # skew_ms; 1/0 to switch a behaviour on/off
    groups: tuple[tuple[str, ...], ...] = ()


def schedule(sc: Scenario) -> list[Event]:
    events: list[Event] = []
    seq = 0

    def add(at: float, action: str, **kw: object) -> None:
        nonlocal seq
        if at <= sc.duration:
            events.append(Event(at=at, seq=seq, action=action, **kw))  # type: ignore[arg-type]
        seq += 1

    for f in sc.faults:
        if f.kind == "crash":
            add(f.at, "crash", node=f.node)
            if f.until:
                add(f.until, "restart", node=f.node)
        elif f.kind in ("equivocate", "withhold", "containers_die"):  # switched on, then off
            add(f.at, f.kind, node=f.node, value=1)
            if f.until:
                add(f.until, f.kind, node=f.node, value=0)
        elif f.kind == "clock_skew":
            add(f.at, "skew", node=f.node, value=f.skew_ms)
            if f.until:
                add(f.until, "skew", node=f.node, value=0)
        elif f.kind == "twin":
            add(f.at, "twin_start", node=f"{f.node}-twin")
            if f.until:
                add(f.until, "twin_stop", node=f"{f.node}-twin")
    for p in sc.partitions:
        add(p.at, "partition", groups=p.groups)
        if p.heal:
            add(p.heal, "heal")
    return sorted(events)


@attrs.define
class NodeClock:
    """A node's wall clock in the simulation: virtual time plus a skew."""

    skew_ms: int = 0

    def now_ms(self) -> int:
        return int(trio.current_time() * 1000) + self.skew_ms


@attrs.define
class Behaviour:
    """Switches of a byzantine validator (changed by events while it runs)."""

    rng: random.Random
    equivocate: bool = False
    withhold: bool = False
    double_signed: int = 0
    withheld: int = 0


class FaultyChain(ChainService):
    """ChainService whose own votes can be doubled (equivocation) or kept back."""

    behaviour: Behaviour | None = None

    def broadcast(self, message: Message) -> None:
        b = self.behaviour
        if b is None or not isinstance(message, Vote) or self.key is None:
            super().broadcast(message)
            return
        if b.withhold:
            b.withheld += 1
            return
        super().broadcast(message)
        if b.equivocate:
            other = sign_vote(self.key, self.chain_id, type=message.type,
                              height=message.height, round=message.round,
                              block_hash=b.rng.randbytes(32),
                              timestamp_ms=message.timestamp_ms)
            b.double_signed += 1
            super().broadcast(other)


__all__ = ["Behaviour", "Event", "FaultyChain", "NodeClock", "schedule"]
