"""The in-memory network's delivery clock, and ``EventClock``, the simulator's virtual time.

Rules and invariants:
* ``DeliveryClock.schedule(at, target)`` asks for ``target.deliver_head()`` at virtual time
  ``at``. Targets are delivered in ``(at, schedule order)`` order, so one pipe's frames
  (scheduled with non-decreasing ``at``) stay FIFO and the whole order is a function of
  the event order: deterministic. Targets due at one time share a slot (a list, in
  schedule order) and the heap holds each due time once: frames on the network's delivery
  grid cost a dict lookup and an append, not a heap push and pop each.
* ``Inbox`` (one per receiving transport): its frames due, by time, in slots of its own;
  the clock holds an inbox once, at its earliest due time, and at that time the inbox
  delivers that slot in one go (a receiver's frames of one instant together). So the
  clock's structures grow with the receivers and timers, an inbox's with the frames in
  flight to it, and nothing with the frames in flight network-wide. Order: time, then the
  order in which the clock was asked; within an inbox's slot, put order (one pipe stays
  FIFO).
* ``EventClock`` is a ``trio.abc.Clock`` of virtual time. Trio asks it how long to sleep
  until the next deadline only when no task can run; it then first asks its idle hooks,
  and with none taking the turn it jumps straight to that deadline (sleeping 0 real
  seconds), so time moves only when every task waits, like an autojumping MockClock
  (unlike one, it does not wait for idle I/O first: the simulator has none, and
  ``wait_all_tasks_blocked`` wakes only once no event is left).
* A running DeliveryClock is an idle hook: it delivers the frames due now, then runs the
  flushes asked of it (``flush_later``: each ask is one call, in ask order) once the
  instant is quiet: no frame due, no task runnable and no trio deadline due at this
  instant (those tasks' items join the same frames: one frame per link and instant); with
  nothing due it moves the clock straight to the earlier of its next frame (delivered at
  once) and trio's next deadline (which trio then expires as usual). So a
  delivery costs no task step, cancel scope, timer or exception, and the tasks it wakes
  run in the same scheduler pass. Sinks and flushes run outside any task: they must be
  synchronous and must not ask for the current task. An exception in one stops the
  DeliveryClock: its ``run`` raises it.
* One idle call runs instant after instant while none of them wakes a task and trio's next
  deadline is later (at most ``MAX_INSTANTS``): the same events in the same order as one
  trio loop pass per instant, without the passes that would find nothing to run. It reads
  trio's run queue and deadlines (private: ``_trio_runner``); without them, one instant
  per call.
* ``call_at(when, fn)`` runs a synchronous timer callback from the same heap (the
  simulator's gossip tickers: no task wake, cancel scope or Cancelled per tick).
* On any other clock ``run`` sleeps until its next frame by a deadline and takes no
  flushes or timers (``flush_later``/``call_at`` return False; callers do it themselves).
* When it stops, pending flushes are run (nobody must wait on a request forever); frames
  still in the heap stay undelivered.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any, Protocol

import trio

IdleHook = Callable[["EventClock", float], bool]
IDLE_FOREVER = 86_400.0  # real seconds trio may sleep when no event is left at all
MAX_INSTANTS = 256  # instants one idle call may run while none wakes a task


def _trio_runner() -> Any:
    """trio's Runner, for its run queue and next deadline (private API of trio 0.2x-0.3x),
    or None when this trio has no such thing (then every instant is one trio loop pass)."""
    run = getattr(getattr(trio, "_core", None), "_run", None)
    runner = getattr(getattr(run, "GLOBAL_RUN_CONTEXT", None), "runner", None)
    deadlines = getattr(runner, "deadlines", None)
    if hasattr(runner, "runq") and callable(getattr(deadlines, "next_deadline", None)):
        return runner
    return None


class EventClock(trio.abc.Clock):
    """Virtual time that jumps from event to event (module rules). Starts at 0."""

    def __init__(self) -> None:
        self._now = 0.0
        self.idle_hooks: list[IdleHook] = []

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self._now

    def advance_to(self, when: float) -> None:
        if when < self._now:
            raise ValueError(f"time can't go backwards (from {self._now} to {when})")
        self._now = when

    def deadline_to_sleep_time(self, deadline: float) -> float:
        # trio asks this only when no task can run: the moment to move virtual time.
        for hook in list(self.idle_hooks):
            if hook(self, deadline):
                return 0.0
        if deadline == math.inf:
            return IDLE_FOREVER  # nothing will ever happen: sleep like a deadlock does
        if deadline > self._now:
            self._now = deadline
        return 0.0


class Target(Protocol):
    def deliver_head(self) -> None: ...


class _Call:
    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    def deliver_head(self) -> None:
        self.fn()


class Inbox:
    """One receiver's due frames (module rules): ``put(at, target)``."""

    __slots__ = ("_clock", "_due", "_queued_at", "slots")

    def __init__(self, clock: DeliveryClock) -> None:
        self._clock = clock
        self._due: list[float] = []  # heap of the times in ``slots``
        # due time -> targets; a caller may append to an existing slot itself (``put``'s
        # first case: ``MemoryNetwork._carry`` does, saving a call per frame)
        self.slots: dict[float, list[Target]] = {}
        self._queued_at = math.inf  # the time the clock holds this inbox at (one entry)

    def __len__(self) -> int:
        return len(self._due)

    def put(self, at: float, target: Target) -> None:
        slot = self.slots.get(at)
        if slot is not None:
            slot.append(target)
            return
        self.slots[at] = [target]
        heapq.heappush(self._due, at)
        if at < self._queued_at:  # an entry at a later time goes stale (deliver_head)
            self._queued_at = at
            self._clock.schedule(at, self)

    def deliver_head(self) -> None:
        """The clock's call at ``_queued_at``: this instant's slot, then queue again."""
        at = self._clock.delivering_at
        if at != self._queued_at:
            return  # stale: an earlier slot arrived and took its place
        self._queued_at = math.inf
        due, slots = self._due, self.slots
        n = 0
        while due and due[0] <= at:
            slot = slots.pop(heapq.heappop(due))
            for target in slot:
                target.deliver_head()
            n += len(slot)
        self._clock.delivered += n
        if due and due[0] < self._queued_at:
            self._queued_at = due[0]
            self._clock.schedule(due[0], self)


class DeliveryClock:
    def __init__(self) -> None:
        self._due: list[float] = []  # heap of the times in ``_slots``
        self._slots: dict[float, list[Target]] = {}
        self._flushes: list[Callable[[], None]] = []
        self._scope: trio.CancelScope | None = None
        self._lot = trio.lowlevel.ParkingLot()
        self._error: BaseException | None = None
        self.running = False
        self.idle = False  # an EventClock's idle hook (module rules)
        self.jumps = 0  # times it moved virtual time
        self.delivered = 0
        self.delivering_at = -math.inf  # the time of the slot being delivered
        self._runner: Any = None  # trio's, while running on an EventClock
        self.now: Callable[[], float] = trio.current_time  # the EventClock's, while on one

    def inbox(self) -> Inbox:
        """A receiver's inbox on this clock (module rules)."""
        return Inbox(self)

    def schedule(self, at: float, target: Target) -> None:
        slot = self._slots.get(at)
        if slot is not None:
            slot.append(target)
            return
        self._slots[at] = [target]
        heapq.heappush(self._due, at)
        scope = self._scope
        if scope is not None and at < scope.deadline:
            scope.deadline = at

    def call_at(self, when: float, fn: Callable[[], None]) -> bool:
        """Call ``fn`` at virtual time ``when`` (as a frame due then: same heap, same order
        rules, from the idle hook). False (not taken) unless on an EventClock."""
        if not self.idle:
            return False
        self.schedule(when, _Call(fn))
        return True

    def flush_later(self, flush: Callable[[], None]) -> bool:
        if not self.idle:
            return False
        self._flushes.append(flush)
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        if self.running:
            raise RuntimeError("the network clock is already running")
        clock = trio.lowlevel.current_clock()
        self.running = True
        self._error = None
        try:
            if isinstance(clock, EventClock):
                self.idle = True
                self._runner = _trio_runner()
                self.now = clock.current_time
                clock.idle_hooks.append(self._on_idle)
                task_status.started()
                try:
                    while self._error is None:
                        await self._lot.park()
                    raise self._error
                finally:
                    clock.idle_hooks.remove(self._on_idle)
            else:
                await self._deadline_loop(task_status)
        finally:
            self.running = self.idle = False
            self._scope = self._runner = None
            self.now = trio.current_time
            self._run_flushes()

    def _on_idle(self, clock: EventClock, timer: float) -> bool:
        """No task can run: deliver, flush, or move to the next event (module rules). False
        when this clock has nothing to do before ``timer``, trio's next deadline (the
        EventClock then moves there itself)."""
        if self._error is not None:
            return False
        try:
            return self._steps(clock, timer)
        except BaseException as exc:  # raised by a sink or a flush: stop, and say it
            self._error = exc
            self._lot.unpark_all()
            return True

    def _steps(self, clock: EventClock, timer: float) -> bool:
        runner = self._runner
        due = self._due
        for step in range(MAX_INSTANTS):
            now = clock.current_time()
            if due and due[0] <= now:
                self._deliver_due(now)
            elif self._flushes:
                if timer <= now:
                    return True  # trio's deadline of this instant first: its tasks' items join
                self._run_flushes()
            elif due and due[0] <= timer:
                clock.advance_to(due[0])  # wakes nobody: deliver at the next step
                self.jumps += 1
                continue
            else:
                return step > 0
            if runner is None or runner.runq:
                return True
            timer = runner.deadlines.next_deadline()
        return True

    def _deliver_due(self, now: float) -> None:
        """Every slot due by ``now``, in time order; a slot's targets in schedule order
        (one scheduled meanwhile for the same time opens a new slot, delivered next)."""
        due, slots = self._due, self._slots
        while due and due[0] <= now:
            at = self.delivering_at = heapq.heappop(due)
            for target in slots.pop(at):
                target.deliver_head()
                if type(target) is not Inbox:
                    self.delivered += 1

    def _run_flushes(self) -> None:
        while self._flushes:
            flushes, self._flushes = self._flushes, []
            for flush in flushes:
                flush()

    async def _deadline_loop(self, task_status: trio.TaskStatus[None]) -> None:
        due = self._due
        task_status.started()
        while True:
            self._deliver_due(trio.current_time())
            with trio.CancelScope(deadline=due[0] if due else math.inf) as scope:
                self._scope = scope
                await self._lot.park()
            self._scope = None


__all__ = ["DeliveryClock", "EventClock", "IdleHook", "Inbox", "Target"]
