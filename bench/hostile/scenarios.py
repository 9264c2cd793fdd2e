"""One coroutine per hostile scenario: ``attack(world, result)`` records facts and failures.

Each attacker uses a fresh key (a banned key stays banned for ``ban_seconds``); the items
an attack sends are built before its flood starts (signing is the bench's CPU, and for the
floods the victim's CPU window is restarted once they are built).
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from typing import Any

import trio

from p2pakash import wire
from p2pakash.gossip import messages as m
from p2pakash.gossip import secret
from tests import hostile_kit as kit

from .world import (
    CHAIN,
    FLOOD_RATE,
    Attack,
    Cutoff,
    Result,
    World,
    expect_ban,
    send_paced,
)

Json = dict[str, Any]

# ---------------------------------------------------------------- scenarios


async def flood(w: World, r: Result) -> None:
    """(1) 10,000 msgs/s of distinct junk publishes over an authenticated connection."""
    items = kit.junk_flood(random.Random(1), 5 * FLOOD_RATE)
    await _ban_after(w, r, "flood", items, rate=FLOOD_RATE)


async def flood_valid(w: World, r: Result) -> None:
    """(1b) 10,000 msgs/s of distinct, correctly signed notes by the attacker's own key.
    Not a ban: every message is valid, and accepted messages are not charged to the
    sender's token bucket (so relays under load are never punished); notes have no
    per-author limit. Reported: what the victim absorbs and what it costs."""
    hostile = await w.attacker("flood-valid")
    items = kit.valid_notes(hostile.key, CHAIN, 5 * FLOOD_RATE, prefix="v:",
                            timestamp_ms=int(time.time() * 1000))
    w.probe.start()  # the window starts when the flood does, not while notes are signed
    cut = Cutoff(hostile, started=time.monotonic())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cut.watch)
        sent = await send_paced(hostile, items, rate=FLOOD_RATE, cut=cut, limit=5.0)
        r.attack_msgs = sent
        took = time.monotonic() - cut.started

        def got() -> int:
            return len(set(re.findall(r"v:(\d+)", w.log_text())))

        with trio.move_on_after(8.0):
            while got() < sent:  # noqa: ASYNC110 - polls another process's log
                await trio.sleep(0.1)
        r.facts["attacker sent"] = f"{sent} valid notes in {took:.1f} s ({sent / took:.0f}/s)"
        r.facts["victim delivered"] = f"{got()} of them, the last" \
                                      f" {time.monotonic() - cut.started - took:.1f} s later"
        r.facts["attacker"] = "still connected (no rule broken)" if cut.closed_after is None \
            else f"cut off after {cut.closed_after:.2f} s: {cut.goodbyes}"
        nursery.cancel_scope.cancel()
    await hostile.aclose()


async def _ban_after(w: World, r: Result, name: str, items: list[m.Publish], *, rate: float,
                     hostile: kit.Hostile | None = None) -> None:
    hostile = hostile or await w.attacker(name)
    cut = Cutoff(hostile, started=time.monotonic())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cut.watch)
        sent = await send_paced(hostile, items, rate=rate, cut=cut, limit=5.0)
        r.attack_msgs += sent
        r.facts["attacker sent"] = f"{sent} msgs in {time.monotonic() - cut.started:.2f} s"
        await expect_ban(w, r, hostile, cut)
        nursery.cancel_scope.cancel()
    await hostile.aclose()


async def oversized(w: World, r: Result) -> None:
    """(2) a sealed frame one byte over the 1 MiB limit, then a bare 1 GiB length header."""
    for label, raw in (("1 MiB + 1 frame", None), ("1 GiB header", (1 << 30).to_bytes(4, "big"))):
        hostile = await w.attacker(f"oversized/{label}")
        cut = Cutoff(hostile, started=time.monotonic())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cut.watch)
            payload = raw or hostile.sealer.seal(kit.oversized_payload(1 << 20))
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await hostile.stream.send_all(payload)
            await expect_ban(w, r, hostile, cut, label=label)
            nursery.cancel_scope.cancel()
        await hostile.aclose()


async def loris(w: World, r: Result) -> None:
    """(3) 200 sockets from 25 source addresses (127.0.0.2-26, 8 each), each stopping
    mid-handshake and reopened as soon as the victim closes it, for 8 s; meanwhile a
    newcomer from 127.0.0.1 tries the real handshake every 0.5 s. Not a ban: nobody is
    identified before the handshake ends; the timeout and the pending bounds answer."""
    victim = w.victim
    opened, closed_at_once, timed_out = [0], [0], [0]
    joins: list[float | None] = []

    async def hold(src: str, i: int) -> None:
        while True:
            sock = trio.socket.socket()
            await sock.bind((src, 0))
            t = time.monotonic()
            try:
                await sock.connect((victim.host, victim.port))
                stream = trio.SocketStream(sock)
                opened[0] += 1
                if i % 2:
                    await stream.send_all(secret.MAGIC + b"\x01" * 10)
                await kit.wait_eof(stream)
            except OSError:
                pass
            finally:
                sock.close()
            (closed_at_once if time.monotonic() - t < 1.0 else timed_out)[0] += 1
            await trio.sleep(0.01)

    async def newcomers() -> None:
        for i in range(12):
            await trio.sleep(0.5)
            t = time.monotonic()
            try:
                with trio.fail_after(6):
                    h = await kit.Hostile.connect(victim, kit.key(f"newcomer/{i}"), chain=CHAIN)
                joins.append(time.monotonic() - t)
                await h.aclose()
            except (OSError, EOFError, trio.TooSlowError, trio.BrokenResourceError,
                    AssertionError):
                joins.append(None)

    async with trio.open_nursery() as nursery:
        for a in range(25):
            for i in range(8):
                nursery.start_soon(hold, f"127.0.0.{2 + a}", i)
        await newcomers()
        nursery.cancel_scope.cancel()
    ok = [j for j in joins if j is not None]
    r.facts["loris sockets"] = f"{opened[0]} opened: {closed_at_once[0]} closed at once," \
                               f" {timed_out[0]} by the handshake timeout"
    r.facts["newcomers from 127.0.0.1"] = (
        f"{len(ok)}/{len(joins)} joined" + (f", handshake max {max(ok) * 1000:.0f} ms"
                                            if ok else ""))
    if len(ok) < len(joins):
        r.failures.append(f"{len(joins) - len(ok)} of {len(joins)} honest newcomers were"
                          f" locked out by the loris")


async def bad_signatures(w: World, r: Result) -> None:
    """(4) forged votes, txs and bids: each claims a real signer, signed by the attacker."""
    order = await _publish_order(w, "badsig")
    now = int(time.time() * 1000)
    # the height window is [H, H + 2] around the victim's height H: aim at H + 2 as read
    # just now, so a block or two committed meanwhile still leaves the votes in it
    height = int((await trio.to_thread.run_sync(w.client.status))["height"])
    kinds = {
        "votes": [kit.forged_vote(w.keys["equivocator"], kit.key(f"forger{i}"), CHAIN,
                                  height=height + 2, round=i, timestamp_ms=now)
                  for i in range(10)],
        "txs": [kit.forged_tx(w.keys["payer"], kit.key("forger"), CHAIN, sequence=i,
                              to=w.keys["tenant"].address) for i in range(10)],
        "bids": [kit.forged_bid(w.keys["provider"], kit.key(f"forger{i}"), order, CHAIN,
                                expiry_ms=now + 60_000) for i in range(10)],
    }
    for label, items in kinds.items():
        hostile = await w.attacker(f"badsig/{label}")
        cut = Cutoff(hostile, started=time.monotonic())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cut.watch)
            r.attack_msgs += await send_paced(hostile, items, rate=100, cut=cut, limit=2.0)
            await expect_ban(w, r, hostile, cut, label=label)
            nursery.cancel_scope.cancel()
        await hostile.aclose()


async def replay(w: World, r: Result) -> None:
    """(5) committed txs replayed: as they were (gossip duplicates) and re-packed into new
    batches (new message IDs, refused by the mempool as already committed)."""
    payer = w.keys["payer"]
    seq = int((await trio.to_thread.run_sync(w.client.account, payer.address))["sequence"])
    txs = kit.send_txs(payer, CHAIN, 20, to=w.keys["tenant"].address, first_sequence=seq)
    hashes = [(await trio.to_thread.run_sync(w.client.submit, tx))["hash"] for tx in txs]
    await trio.to_thread.run_sync(lambda: w.client.wait_for_tx(hashes[-1], timeout=15))
    dups = [kit.publish("txs", tx) for tx in txs] * (FLOOD_RATE // 20)
    hostile = await w.attacker("replay/duplicates")
    cut = Cutoff(hostile, started=time.monotonic())
    ignored0 = await w.metric('p2pakash_gossip_dropped_total{reason="duplicate"}')
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cut.watch)
        sent = await send_paced(hostile, dups, rate=FLOOD_RATE, cut=cut, limit=2.0)
        r.attack_msgs += sent
        await trio.sleep(0.5)
        dup = await w.metric('p2pakash_gossip_dropped_total{reason="duplicate"}') - ignored0
        r.facts["duplicates (10k/s, 1 s)"] = (
            f"{sent} sent, {dup:.0f} dropped as duplicates, "
            + ("still connected: duplicates are the mesh's normal cost" if cut.closed_after
               is None else f"cut off after {cut.closed_after:.2f} s"))
        nursery.cancel_scope.cancel()
    await hostile.aclose()
    batches = kit.replay_batches(txs, 3 * FLOOD_RATE, random.Random(5))
    await _ban_after(w, r, "replay/batches", batches, rate=FLOOD_RATE)


async def equivocation(w: World, r: Result) -> None:
    """(6) the equivocator validator double-signs prevotes (relayed by a peer that breaks no
    rule: the votes are validly signed). Answer: evidence, 5 % slashed, jailed for good."""
    validator = w.keys["equivocator"]
    before = await trio.to_thread.run_sync(w.client.validators)
    tokens0 = next(v["tokens"] for v in before["validators"]
                   if v["pubkey"] == validator.public.hex())
    height0 = int((await trio.to_thread.run_sync(w.client.status))["height"])
    hostile = await w.attacker("equivocation/relay")
    cut = Cutoff(hostile, started=time.monotonic())
    now = int(time.time() * 1000)
    votes = [v for h in (height0 + 1, height0 + 2)
             for v in kit.equivocating_votes(validator, CHAIN, height=h, timestamp_ms=now)]
    t0 = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cut.watch)
        await hostile.send_items(kit.vote_publishes(votes))

        def jailed() -> Json | None:
            for v in w.client.validators()["validators"]:
                if v["pubkey"] == validator.public.hex() and v["jailed"]:
                    return dict(v)
            return None

        rec = None
        with trio.move_on_after(12):
            while (rec := await trio.to_thread.run_sync(jailed)) is None:  # noqa: ASYNC110
                await trio.sleep(0.1)
        if rec is None:
            r.failures.append("the equivocator was not jailed within 12 s")
        else:
            r.facts["jailed after"] = f"{time.monotonic() - t0:.2f} s"
            r.facts["slashed"] = f"{tokens0 - rec['tokens']} uakt of {tokens0}" \
                                 f" ({(tokens0 - rec['tokens']) / tokens0:.1%})," \
                                 f" tombstoned={rec['tombstoned']}"
        h1 = int((await trio.to_thread.run_sync(w.client.status))["height"])
        await trio.sleep(2.0)
        h2 = int((await trio.to_thread.run_sync(w.client.status))["height"])
        r.facts["chain"] = f"height {height0} -> {h1} -> {h2} (2 s later)"
        if h2 <= h1:
            r.failures.append("the chain stopped committing after the equivocation")
        r.facts["relay"] = "still connected (its votes were validly signed)" \
            if cut.closed_after is None else f"cut off after {cut.closed_after:.2f} s"
        nursery.cancel_scope.cancel()
    await hostile.aclose()


async def _publish_order(w: World, tag: str) -> Any:
    order = kit.order(w.keys["tenant"], CHAIN, dseq=int(time.time() * 1000) % 10**9,
                      expiry_ms=int(time.time() * 1000) + 300_000)
    accepted0 = await w.metric('p2pakash_gossip_messages_total{direction="in"}')
    w.sender.gossip.publish("orders", wire.encode(order))
    with trio.move_on_after(3):  # it has arrived once the victim counted a new item in
        while (await w.metric('p2pakash_gossip_messages_total{direction="in"}')  # noqa: ASYNC110
               <= accepted0):
            await trio.sleep(0.05)
    await trio.sleep(0.2)
    return order


async def overprice(w: World, r: Result) -> None:
    """(7) a registered provider's correctly signed bids above the order's max price."""
    order = await _publish_order(w, "overprice")
    items = kit.overpriced_bids(w.keys["provider"], order, CHAIN, 10,
                                expiry_ms=int(time.time() * 1000) + 60_000)
    await _ban_after(w, r, "overprice", items, rate=100)


async def unfunded(w: World, r: Result) -> None:
    """(8) orders from tenants holding nothing: a trickle (IGNOREd: the relay may be a block
    behind; the tenants are struck, then banned by the validator) and a flood (the relay
    is cut off by the rate limit)."""
    expiry = int(time.time() * 1000) + 300_000
    tenants = [kit.key(f"broke/{i}") for i in range(5)]
    trickle = kit.unfunded_orders(tenants, CHAIN, 30, expiry_ms=expiry)
    hostile = await w.attacker("unfunded/trickle")
    cut = Cutoff(hostile, started=time.monotonic())
    ignored0 = await w.metric('p2pakash_gossip_dropped_total{reason="ignored"}')
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cut.watch)
        sent = await send_paced(hostile, trickle, rate=50, cut=cut, limit=5.0)
        r.attack_msgs += sent
        await trio.sleep(0.3)
        ignored = await w.metric('p2pakash_gossip_dropped_total{reason="ignored"}') - ignored0
        r.facts["trickle (50/s)"] = f"{sent} sent, {ignored:.0f} ignored, relay " + (
            "kept" if cut.closed_after is None else "cut off")
        nursery.cancel_scope.cancel()
    await hostile.aclose()
    # the flood: 21 signed orders per tenant (the 20th strike bans the tenant at the
    # validator), then copies under the banned names with random signatures (free to make)
    many = [kit.key(f"broke/flood/{i}") for i in range(20)]
    signed = kit.unfunded_orders(many, CHAIN, 21, expiry_ms=expiry)
    flood_items = signed + kit.resigned_garbage(signed, 2 * FLOOD_RATE, random.Random(8))
    r.facts["flood"] = f"{len(signed)} signed + {len(flood_items) - len(signed)} re-signed"
    w.probe.start()
    await _ban_after(w, r, "unfunded/flood", flood_items, rate=FLOOD_RATE)


async def conns(w: World, r: Result) -> None:
    """(9) 40 authenticated connections (40 keys) from one address; per-host cap answers."""
    kept: list[kit.Hostile] = []
    refused: dict[str, int] = {}
    t0 = time.monotonic()
    for i in range(40):
        h = await w.attacker(f"conns/{i}")
        with trio.move_on_after(0.3):
            frame = await h.next_frame()
            reasons = [] if frame is None else kit.goodbyes(wire.decode(frame, m.Frame).items)
            if reasons or frame is None:
                why = reasons[0] if reasons else "closed"
                refused[why] = refused.get(why, 0) + 1
                await h.aclose()
                continue
        kept.append(h)
    r.facts["connections"] = f"40 tried in {time.monotonic() - t0:.1f} s, {len(kept)} kept," \
                             f" refused {refused}"
    peers = await w.metric("p2pakash_peers")
    r.facts["victim peers"] = f"{peers:.0f} (the sender + {len(kept)})"
    if len(kept) >= 40:
        r.failures.append("no connection from the one address was refused")
    for h in kept:
        await h.aclose()


SCENARIOS: dict[str, Attack] = {
    "flood": flood, "flood-valid": flood_valid, "oversized": oversized, "loris": loris,
    "badsig": bad_signatures, "replay": replay, "equivocation": equivocation,
    "overprice": overprice, "unfunded": unfunded, "conns": conns,
}

