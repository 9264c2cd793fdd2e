"""EventClock and the network's DeliveryClock: virtual time that jumps from event to event,
frames delivered from the clock's idle hook, flushes run once no task can run."""

from __future__ import annotations

import hashlib
import random
import time

import pytest
import trio

from p2pakash.crypto import PrivateKey
from p2pakash.gossip import messages as m
from p2pakash.gossip.memory import MemoryConnection, MemoryNetwork, MemoryTransport
from p2pakash.gossip.memory_clock import DeliveryClock, EventClock
from p2pakash.gossip.transport import Connection

CHAIN = "clock-chain"


@pytest.fixture
def event_clock() -> EventClock:
    return EventClock()


class Recorder:
    """A delivery target that logs (virtual time, label) for each head delivered."""

    def __init__(self, log: list[tuple[float, str]], label: str) -> None:
        self.log = log
        self.label = label

    def deliver_head(self) -> None:
        self.log.append((trio.current_time(), self.label))


async def test_event_clock_jumps_to_deadlines_without_real_sleep(event_clock: EventClock
                                                                 ) -> None:
    start_wall = time.monotonic()
    woke: list[float] = []

    async def sleeper(t: float) -> None:
        await trio.sleep_until(t)
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for t in (30.0, 1.5, 3600.0):
            nursery.start_soon(sleeper, t)
    assert woke == [1.5, 30.0, 3600.0]
    assert trio.current_time() == 3600.0
    assert time.monotonic() - start_wall < 5.0  # an hour of virtual time, no real sleeping
    with pytest.raises(ValueError, match="backwards"):
        event_clock.advance_to(1.0)


async def test_frames_and_deadlines_interleave_in_time_order(event_clock: EventClock) -> None:
    clock = DeliveryClock()
    log: list[tuple[float, str]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        clock.schedule(0.05, Recorder(log, "a"))
        clock.schedule(0.02, Recorder(log, "b"))
        clock.schedule(0.05, Recorder(log, "c"))  # same time as "a": schedule order
        await trio.sleep(0.03)
        log.append((trio.current_time(), "timer"))
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert log == [(0.02, "b"), (0.03, "timer"), (0.05, "a"), (0.05, "c")]
    assert clock.delivered == 3 and clock.jumps >= 2


async def test_inbox_delivers_an_instant_together_in_time_order(event_clock: EventClock
                                                                ) -> None:
    clock = DeliveryClock()
    log: list[tuple[float, str]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        one, two = clock.inbox(), clock.inbox()
        one.put(0.05, Recorder(log, "1a"))
        two.put(0.05, Recorder(log, "2a"))
        clock.schedule(0.05, Recorder(log, "timer"))
        one.put(0.05, Recorder(log, "1b"))  # joins 1a: an inbox's instant goes together
        one.put(0.02, Recorder(log, "1c"))  # earlier than the inbox's queued time
        one.put(0.09, Recorder(log, "1d"))
        assert len(one) == 3 and len(clock._due) == 2  # times 0.02 and 0.05
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert log == [(0.02, "1c"), (0.05, "1a"), (0.05, "1b"), (0.05, "2a"), (0.05, "timer"),
                   (0.09, "1d")]
    assert clock.delivered == 6 and len(one) == len(two) == 0 and not clock._slots


async def test_instants_that_wake_nobody_share_one_idle_call(event_clock: EventClock
                                                              ) -> None:
    clock = DeliveryClock()
    log: list[tuple[float, str]] = []
    calls = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        (hook,) = event_clock.idle_hooks

        def counted(c: EventClock, timer: float) -> bool:
            nonlocal calls
            calls += 1
            return hook(c, timer)

        event_clock.idle_hooks[:] = [counted]
        for k in range(50):
            clock.schedule(0.001 * (k + 1), Recorder(log, f"f{k}"))
        await trio.sleep(0.0255)  # a trio deadline among the frames
        log.append((trio.current_time(), "timer"))
        await trio.sleep(0.1)
        event_clock.idle_hooks[:] = [hook]
        nursery.cancel_scope.cancel()
    times = [t for t, _ in log]
    assert times == sorted(times) and len(log) == 51 and log[25] == (0.0255, "timer")
    assert calls <= 8  # not one trio loop pass (and idle call) per instant


async def test_flushes_wait_for_the_tasks_due_at_the_same_instant(event_clock: EventClock
                                                                   ) -> None:
    clock = DeliveryClock()
    order: list[str] = []

    class Asks:
        def deliver_head(self) -> None:
            order.append("frame")
            clock.flush_later(lambda: order.append(f"flush at {trio.current_time()}"))

    async def timer_task() -> None:
        await trio.sleep_until(0.05)
        order.append("task")

    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        nursery.start_soon(timer_task)
        clock.schedule(0.05, Asks())
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert order == ["frame", "task", "flush at 0.05"]  # one flush after both, same instant


async def test_flushes_run_once_no_task_can_run(event_clock: EventClock) -> None:
    clock = DeliveryClock()
    order: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        assert clock.flush_later(lambda: order.append("first"))
        assert clock.flush_later(lambda: order.append("second"))
        for _ in range(3):  # still runnable: the flushes wait
            await trio.lowlevel.checkpoint()
            order.append("busy")
        await trio.sleep(0.001)
        assert order == ["busy", "busy", "busy", "first", "second"]
        assert trio.current_time() == 0.001
        nursery.cancel_scope.cancel()
    assert not clock.flush_later(lambda: None)  # not running: the caller flushes itself


async def test_an_exception_in_a_sink_stops_the_clock(event_clock: EventClock) -> None:
    clock = DeliveryClock()

    class Boom:
        def deliver_head(self) -> None:
            raise RuntimeError("sink failed")

    clock.schedule(1.0, Boom())
    with pytest.raises(RuntimeError, match="sink failed"):
        await clock.run()
    assert not clock.running and event_clock.current_time() == 1.0


async def test_flush_later_is_refused_on_other_clocks(autojump_clock: trio.abc.Clock) -> None:
    clock = DeliveryClock()
    log: list[tuple[float, str]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        assert not clock.flush_later(lambda: None)
        clock.schedule(0.25, Recorder(log, "x"))  # the deadline loop delivers it
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert log == [(0.25, "x")]


def _key(i: int) -> PrivateKey:
    return PrivateKey.from_seed(hashlib.sha256(f"clock-{i}".encode()).digest())


async def _trace(seed: int) -> list[tuple[float, int, int]]:
    """Three links with jittered latency, items sent at random virtual times."""
    net = MemoryNetwork(random.Random(seed), latency=lambda a, b, rng: 0.01 + rng.random() / 50,
                        items=True, resolution=0.001)
    got: list[tuple[float, int, int]] = []

    def handler_for(i: int):  # type: ignore[no-untyped-def]
        async def handler(conn: Connection) -> None:
            assert isinstance(conn, MemoryConnection)
            done = trio.Event()

            def sink(payload: object) -> None:
                if payload is None:
                    done.set()
                else:
                    for item in payload.items:  # type: ignore[attr-defined]
                        got.append((trio.current_time(), i, item.nonce))

            conn.attach(sink)
            await done.wait()
        return handler

    rng = random.Random(seed)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run_clock)
        servers = [MemoryTransport(net, _key(i), CHAIN, f"10.8.0.{i}:1") for i in range(3)]
        for i, s in enumerate(servers):
            await nursery.start(s.serve, handler_for(i))
        conns = [await servers[0].dial(f"10.8.0.{i}:1") for i in (1, 2)]
        for n in range(40):
            await trio.sleep(rng.random() / 100)
            assert conns[n % 2].send_items((m.Ping(nonce=n),), 10)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    return got


def test_delivery_trace_is_a_function_of_the_seed() -> None:
    a = trio.run(_trace, 4, clock=EventClock())
    b = trio.run(_trace, 4, clock=EventClock())
    assert len(a) == 40 and a == b
    for dst in (1, 2):  # per-direction FIFO under jitter
        nonces = [n for _, d, n in a if d == dst]
        assert nonces == sorted(nonces)
    assert trio.run(_trace, 5, clock=EventClock()) != a
