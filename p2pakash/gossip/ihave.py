"""One topic's IHAVE gossip at a heartbeat (gossipsub, consensus_gossip.md §B1): whom to
tell which message IDs. Called by ``PubSub.heartbeat``.

Rules and invariants (sans-IO; randomness only from the caller's ``random.Random``, drawn
over sorted candidates, so one seed and one state give one choice):
* The offer is the topic's gossip-window entries (the caller samples ``max_ihave_length``).
  A peer is told only the IDs it is not known to hold (``CacheEntry.holders``); a peer
  that holds them all is no candidate at all.
* Targets: ``max(d_lazy, gossip_factor x candidates)`` candidates outside ``members`` (the
  mesh or fanout); on a sparse graph (fewer than ``d_lazy`` of those) mesh members fill up
  to ``d_lazy``, so a message whose only copies were lost still gets repaired.
* Peers told the same IDs share one ``IHave`` object (sized once by the in-memory network).
* ``wanted``: the IDs of a received IHAVE to ask for: not seen, not asked already this
  heartbeat, well-formed, within the budget; the IDs we hold mark the sender a holder.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Container, Iterable

from p2pakash.crypto import NodeID
from p2pakash.gossip.caches import CacheEntry, MessageCache, SeenCache
from p2pakash.gossip.messages import MSG_ID_LEN, IHave
from p2pakash.gossip.pubsub_types import Send, sample
from p2pakash.gossip.score import PubSubParams


def topic_gossip(rng: random.Random, p: PubSubParams, topic: str,
                 entries: Collection[CacheEntry], peers: Iterable[NodeID],
                 members: Container[NodeID]) -> list[Send]:
    """The IHAVE sends of ``topic`` to ``peers`` (those we may gossip to) (module rules)."""
    wants: dict[NodeID, list[bytes]] = {}
    ok = set(peers)
    for entry in entries:
        for q in ok - entry.holders:
            missing = wants.get(q)
            if missing is None:
                wants[q] = [entry.msg_id]
            else:
                missing.append(entry.msg_id)
    if not wants:
        return []
    cands = [q for q in wants if q not in members]
    chosen = sample(rng, cands, max(p.d_lazy, int(p.gossip_factor * len(cands))))
    if len(chosen) < p.d_lazy:
        chosen += sample(rng, [q for q in wants if q in members], p.d_lazy - len(chosen))
    out: list[Send] = []
    made: dict[tuple[bytes, ...], IHave] = {}
    for q in chosen:
        ids = tuple(wants[q])
        ihave = made.get(ids)
        if ihave is None:
            ihave = made[ids] = IHave(topic=topic, ids=ids)
        out.append(Send(q, ihave))
    return out


def wanted(ids: tuple[bytes, ...], sender: NodeID, budget: int, *, seen: SeenCache,
           pending: set[bytes], mcache: MessageCache) -> list[bytes]:
    """The IDs of ``sender``'s IHAVE to ask for (module rules); they join ``pending``."""
    want: list[bytes] = []
    held: list[bytes] = []
    for mid in ids:
        if mid in seen:
            held.append(mid)
        elif len(want) < budget and len(mid) == MSG_ID_LEN and mid not in pending:
            want.append(mid)
            pending.add(mid)
    if held:
        mcache.mark_held(tuple(held), sender)
    return want


__all__ = ["topic_gossip", "wanted"]
