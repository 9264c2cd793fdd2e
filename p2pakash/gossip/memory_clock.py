"""The in-memory network's delivery clock: one heap of due frames, one task to deliver them.

Rules and invariants:
* ``schedule(at, target)`` asks for ``target.deliver_head()`` at virtual time ``at``.
  Targets are delivered in ``(at, schedule order)`` order, so one pipe's frames (scheduled
  with non-decreasing ``at``) stay FIFO and the whole order is a function of the event
  order: deterministic.
* Under an autojumping ``MockClock`` (rate 0, autojump threshold 0, the simulator's) the
  clock is the event loop of virtual time. It waits until every task is blocked
  (``wait_all_tasks_blocked``: no cancel scope, no timer, no exception per wake), then:
  runs the flushes asked of it (``flush_later``: each ask is one call, in ask order) and
  delivers the frames due now, flushing again after them; when there is neither, it jumps
  the clock straight to the earlier of its next frame and trio's next deadline (trio then
  expires that deadline as usual) and delivers its frames at once when they come first.
  While it waits, trio's own autojump stands aside (trio wakes idle waiters instead), so
  exactly one party moves the time. With no frame and no deadline anywhere it parks until
  the next ``schedule``/``flush_later``.
* On any other clock it sleeps until its next frame by a deadline and takes no flushes
  (``flush_later`` returns False; callers flush by themselves).
* When it stops, pending flushes are run (nobody must wait on a request forever);
  frames still in the heap stay undelivered.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Protocol

import trio
import trio.testing


class Target(Protocol):
    def deliver_head(self) -> None: ...


class DeliveryClock:
    def __init__(self) -> None:
        self._due: list[tuple[float, int, Target]] = []
        self._seq = 0
        self._flushes: list[Callable[[], None]] = []
        self._scope: trio.CancelScope | None = None
        self._lot = trio.lowlevel.ParkingLot()
        self.running = False
        self.idle = False  # jumping a MockClock itself (module rules)
        self.jumps = 0  # times it moved virtual time (idle mode)
        self.delivered = 0

    def schedule(self, at: float, target: Target) -> None:
        self._seq += 1
        heapq.heappush(self._due, (at, self._seq, target))
        if self._lot:
            self._lot.unpark_all()
        scope = self._scope
        if scope is not None and at < scope.deadline:
            scope.deadline = at

    def flush_later(self, flush: Callable[[], None]) -> bool:
        if not self.idle:
            return False
        self._flushes.append(flush)
        if self._lot:
            self._lot.unpark_all()
        return True

    async def run(self) -> None:
        if self.running:
            raise RuntimeError("the network clock is already running")
        clock = trio.lowlevel.current_clock()
        self.running = True
        try:
            if (isinstance(clock, trio.testing.MockClock) and clock.rate == 0
                    and clock.autojump_threshold == 0):
                self.idle = True
                while True:
                    await trio.testing.wait_all_tasks_blocked()
                    if not self._idle_step(clock):
                        await self._lot.park()
            else:
                await self._deadline_loop()
        finally:
            self.running = self.idle = False
            self._scope = None
            self._run_flushes()

    def _idle_step(self, clock: trio.testing.MockClock) -> bool:
        """Every task is blocked: flush and deliver, or jump to the next event. False when
        there is no next event at all."""
        now = clock.current_time()
        due = self._due
        if self._flushes or (due and due[0][0] <= now):
            self._deliver(now)
            return True
        head = due[0][0] if due else math.inf
        timer = now + trio.lowlevel.current_statistics().seconds_to_next_deadline
        target = min(head, timer)
        if target == math.inf:
            return False
        if target > now:
            clock.jump(target - now)
            self.jumps += 1
        if head <= target:
            self._deliver(head)  # the jump may land an ulp short of ``head``: use ``head``
        return True

    def _deliver(self, now: float) -> None:
        due = self._due
        self._run_flushes()
        n = 0
        while due and due[0][0] <= now:
            heapq.heappop(due)[2].deliver_head()
            n += 1
        self.delivered += n
        self._run_flushes()

    def _run_flushes(self) -> None:
        while self._flushes:
            flushes, self._flushes = self._flushes, []
            for flush in flushes:
                flush()

    async def _deadline_loop(self) -> None:
        due = self._due
        while True:
            now = trio.current_time()
            while due and due[0][0] <= now:
                heapq.heappop(due)[2].deliver_head()
                self.delivered += 1
            with trio.CancelScope(deadline=due[0][0] if due else math.inf) as scope:
                self._scope = scope
                await self._lot.park()
            self._scope = None


__all__ = ["DeliveryClock", "Target"]
