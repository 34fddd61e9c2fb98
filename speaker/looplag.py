"""How late the Trio loop runs, so an operator sees a stall before BFD does.

BFD runs as Trio tasks in this process: a task step that holds the loop for 150 ms
delays every BFD packet by up to 150 ms, and at 50 ms x 3 that is a false Down. Two
probes measure it, both cheap enough to stay on in production:

- :class:`LoopMonitor` is a Trio :class:`~trio.abc.Instrument`. After each task
  step it reads a clock (one hook and one ``perf_counter`` call per step); a step
  of at least :data:`RECORD_FLOOR` is remembered with its task's name (the worst of
  the last :data:`WINDOW` seconds and since start), one over :data:`WARN_STEP` is
  counted, and logged as a warning at most once per :data:`WARN_EVERY` seconds.
- Lateness of timer wakes, in a histogram (exported as
  ``speaker_event_loop_lag_seconds``): how late a task sleeping until a deadline
  woke. The BFD runtime's timer reports each of its wakes (:func:`timer_woke`: the
  lateness of the timers BFD depends on, at no extra wake-up), and
  :meth:`LoopMonitor.run`, a sentinel task, sleeps only when no timer has reported
  for :data:`INTERVAL` (each report pushes its deadline later), so an idle process
  is not woken 50 times a second to measure it (each wake-up costs ~0.3 ms of CPU).
  It sees what the instrument cannot (the loop's own work between steps, a step of
  an instrument-less run) but not who.

- A ``gc.callbacks`` hook times the cyclic garbage collector, which runs inside
  whatever step allocated last: at 65,536 routes a full collection takes 100+ ms, and
  without it the stall would be blamed on an innocent task.

Install at the process root: ``with monitor.installed():`` (instrument and GC hook)
around a nursery that runs ``monitor.run``.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import itertools
import logging
import math
import sys
import time
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import trio

from speaker import gcpause
from speaker.log import fields
from speaker.realtime import ThrottleGuard

__all__ = [
    "BUDGET",
    "DUTY",
    "INTERVAL",
    "LAG_BUCKETS",
    "RECORD_FLOOR",
    "SLICE",
    "WARN_STEP",
    "WINDOW",
    "BulkLane",
    "Histogram",
    "LoopDuty",
    "LoopMonitor",
    "Slicer",
    "Stall",
    "WorstWindow",
    "bulk_turn",
    "timer_woke",
]

log = logging.getLogger("speaker.loop")
K = TypeVar("K")

#: The monitor installed in this ``trio.run`` (see :meth:`LoopMonitor.installed`).
_ACTIVE: trio.lowlevel.RunVar[LoopMonitor | None] = trio.lowlevel.RunVar(
    "speaker.looplag", default=None
)


def timer_woke(due: float, now: float) -> None:
    """Report a timer's wake to the installed monitor, if any (a lateness sample at
    no extra wake-up: the BFD runtime's timer calls it each time it wakes)."""
    monitor = _ACTIVE.get()
    if monitor is not None:
        monitor.timer_woke(due, now)


#: The longest the loop goes without a lateness sample: the sentinel wakes only
#: this long after the last one (a BFD timer's wake is a sample; see timer_woke).
INTERVAL = 0.5
#: "Recent" in ``show status`` and in the longest-step gauge.
WINDOW = 60.0
#: Steps shorter than this are not even looked at (the common case costs one compare).
RECORD_FLOOR = 0.0005
#: A step this long is a stall worth a warning: the loop's budget is 2 ms per step.
WARN_STEP = 0.005
#: At most one stall warning per this many seconds (the others are counted in it).
WARN_EVERY = 10.0
#: A step that spent this much CPU broke the loop's budget: counted by its task.
BUDGET = 0.002
#: Tasks counted that way, at most (task names include peer names; bounded anyway).
BUDGET_TASKS = 64
#: Buckets of ``speaker_event_loop_lag_seconds``: 0.5 ms to 1 s, fine around the
#: 2 ms step budget and the 5 ms lag target, then 1-2-5 per decade.
LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class Histogram:
    """Cumulative bucket counts of one series (Prometheus ``le`` semantics)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        if math.isnan(value):
            return
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == math.inf else repr(bound), float(running)))
        return out


@attrs.frozen
class Stall:
    """One long step (or late wake): how long, in which task (None: unknown), when
    (on the clock of whoever recorded it)."""

    seconds: float
    task: str | None
    at: float
    #: Of ``seconds``, the time the thread was on the CPU (a task step: our own code;
    #: the rest is the OS not running the process). None where not measured.
    cpu: float | None = None

    def record(self, now: float) -> dict[str, Any]:
        out = {"ms": round(self.seconds * 1000, 3), "task": self.task,
               "secondsAgo": round(max(0.0, now - self.at), 1)}  # fmt: skip
        if self.cpu is not None:
            out["cpuMs"] = round(self.cpu * 1000, 3)
        return out


class WorstWindow:
    """The worst value of the last ``window`` seconds and of all time, kept as the
    worst of each ``window / slots`` slice (constant memory, O(1) per record)."""

    def __init__(self, window: float = WINDOW, slots: int = 6) -> None:
        self.window = window
        self.slot = window / slots
        self._slots: deque[tuple[int, Stall]] = deque(maxlen=slots + 1)
        self.ever: Stall | None = None

    def record(
        self, seconds: float, task: str | None, now: float, cpu: float | None = None
    ) -> None:
        stall = Stall(seconds, task, now, cpu)
        index = int(now // self.slot)
        if self._slots and self._slots[-1][0] == index:
            if seconds > self._slots[-1][1].seconds:
                self._slots[-1] = (index, stall)
        else:
            self._slots.append((index, stall))
        if self.ever is None or seconds > self.ever.seconds:
            self.ever = stall

    def worst(self, now: float) -> Stall | None:
        """The worst of the slices that end less than ``window`` seconds ago."""
        first = int(now // self.slot) - round(self.window / self.slot) + 1
        recent = [stall for index, stall in self._slots if index >= first]
        return max(recent, key=lambda s: s.seconds, default=None)


class LoopMonitor(trio.abc.Instrument):
    """Longest task steps (instrument) and lateness of a periodic sleep (:meth:`run`).

    ``clock`` times the steps (wall time: a step does not advance a MockClock); the
    sentinel uses Trio's clock, so a test drives it with ``MockClock``. ``cpu_clock``
    (the thread's CPU time, 0.3 us a read) splits a long step into our own code's
    work and the time the OS did not run the process: on a busy host a 10 ms stall
    of 0.4 ms CPU is the host's, not the speaker's.
    """

    def __init__(
        self,
        *,
        interval: float = INTERVAL,
        window: float = WINDOW,
        warn_step: float = WARN_STEP,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.thread_time,
        guard: ThrottleGuard | None = None,
    ) -> None:
        self.interval = interval
        #: Fed the step clock's reads every GUARD_EVERY (speaker.realtime).
        self.guard = guard
        self.warn_step = warn_step
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.lag = Histogram(LAG_BUCKETS)
        #: Late wakes of the sentinel, on Trio's clock.
        self.lags = WorstWindow(window)
        #: Long task steps, on ``clock`` (each with its CPU time).
        self.steps = WorstWindow(window)
        #: The same steps by their CPU time: what our own code held the loop for.
        self.cpu_steps = WorstWindow(window)
        #: Garbage collections, on ``clock`` (task: "gc generation N").
        self.collections = WorstWindow(window)
        #: Steps longer than ``warn_step`` since start.
        self.slow_steps = 0
        #: Per task, since start: [steps over BUDGET of CPU, most CPU, longest wall].
        self.over_budget: dict[str, list[float]] = {}
        self._step_started = 0.0
        self._step_cpu = 0.0
        self._gc_started = 0.0
        self._warned_at = -math.inf
        self._unwarned = 0
        #: The sentinel's sleep, pushed later by every other timer's report.
        self._sentinel: trio.CancelScope | None = None
        #: Bulk work's turns, one per pass of the loop (see BulkLane).
        self.lane = BulkLane()

    @contextlib.contextmanager
    def installed(self) -> Iterator[LoopMonitor]:
        """The instrument and the GC hook, for the duration of the block (in trio.run)."""
        self._step_started = self.clock()  # the step that installs it is under way
        self._step_cpu = self.cpu_clock()
        trio.lowlevel.add_instrument(self)
        gc.callbacks.append(self._gc)
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)
            gc.callbacks.remove(self._gc)
            with contextlib.suppress(KeyError):  # trio drops an instrument that raised
                trio.lowlevel.remove_instrument(self)

    def _gc(self, phase: str, info: Mapping[str, int]) -> None:
        if phase == "start":
            self._gc_started = self.clock()
            return
        took = self.clock() - self._gc_started
        if took >= RECORD_FLOOR:
            name = f"gc generation {info.get('generation')}"
            self.collections.record(took, name, self.clock())
            self._warn(took, f"the garbage collector ({name})", name)

    # ---- the instrument (runs after every task step: keep it to a clock read) -------

    # One hook per step rather than two (before/after_task_step): a step is timed from
    # the end of the previous one, or from the end of the loop's wait for I/O when it
    # is the first of a batch. The few microseconds of Trio's own scheduling between
    # two steps count with the step; the wait for I/O (idle time) never does.

    def after_io_wait(self, timeout: float) -> None:
        self.lane.passes += 1
        self._step_started = self.clock()
        self._step_cpu = self.cpu_clock()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        now, cpu = self.clock(), self.cpu_clock()
        guard = self.guard
        if guard is not None and now >= guard.next_at:
            guard.observe(now, cpu)
        took = now - self._step_started
        if took >= RECORD_FLOOR:
            self._long_step(took, cpu - self._step_cpu, task.name)
            # recording it (perhaps a log line) is not the next step
            now, cpu = self.clock(), self.cpu_clock()
        self._step_started, self._step_cpu = now, cpu

    def _long_step(self, took: float, cpu: float, task: str) -> None:
        now = self.clock()
        self.steps.record(took, task, now, cpu)
        self.cpu_steps.record(cpu, task, now, cpu)
        if cpu > BUDGET:
            seen = self.over_budget.get(task)
            if seen is None and len(self.over_budget) < BUDGET_TASKS:
                self.over_budget[task] = [1, cpu, took]
            elif seen is not None:
                seen[0] += 1
                seen[1], seen[2] = max(seen[1], cpu), max(seen[2], took)
        if took > self.warn_step:
            self.slow_steps += 1
            self._warn(took, f"task {task}", task, cpu)

    def _warn(self, took: float, where: str, task: str, cpu: float | None = None) -> None:
        if took <= self.warn_step:
            return
        now = self.clock()
        if now - self._warned_at < WARN_EVERY:
            self._unwarned += 1
            return
        on_cpu = "" if cpu is None else f", {cpu * 1000:.1f} ms of it on the CPU"
        log.warning(
            "event loop stalled %.1f ms in %s%s (BFD packets wait that long; %d more"
            " stalls over %.0f ms since the last warning)",
            took * 1000, where, on_cpu, self._unwarned, self.warn_step * 1000,
            extra=fields(task=task, stall_ms=round(took * 1000, 3), unwarned=self._unwarned,
                         cpu_ms=None if cpu is None else round(cpu * 1000, 3)),
        )  # fmt: skip
        self._warned_at, self._unwarned = now, 0

    # ---- the sentinel -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sleep until no timer has reported for ``interval``; observe how late it woke.

        While other timers report (:meth:`timer_woke`), this never wakes: each report
        moves its deadline to ``interval`` after it."""
        task_status.started()
        due = trio.current_time() + self.interval
        while True:
            with trio.CancelScope(deadline=due) as scope:
                self._sentinel = scope
                try:
                    await trio.sleep_forever()
                finally:
                    self._sentinel = None
            due = scope.deadline  # pushed later by reports while it slept
            self.timer_woke(due, trio.current_time())
            due = trio.current_time() + self.interval

    def timer_woke(self, due: float, now: float) -> None:
        """A task that slept until ``due`` (Trio time) runs at ``now``: one lateness
        sample; the sentinel then sleeps on for ``interval`` from ``now``."""
        late = max(0.0, now - due)
        self.lag.observe(late)
        if late >= RECORD_FLOOR:
            self.lags.record(late, None, now)
        if self._sentinel is not None:
            self._sentinel.deadline = now + self.interval

    # ---- what show status and the metrics read --------------------------------------

    def longest_step(self) -> Stall | None:
        """The longest step of the last window (None: none over the floor)."""
        return self.steps.worst(self.clock())

    def longest_cpu_step(self) -> Stall | None:
        """The step of the last window that spent the most CPU time."""
        return self.cpu_steps.worst(self.clock())

    def over_budget_tasks(self, top: int = 10) -> list[dict[str, Any]]:
        """The tasks whose steps spent over :data:`BUDGET` of CPU since start, most CPU
        first: where the loop's budget is broken, by whom."""
        rows = sorted(self.over_budget.items(), key=lambda kv: -kv[1][1])[:top]
        return [{"task": task, "steps": int(n), "maxCpuMs": round(cpu * 1000, 3),
                 "maxMs": round(wall * 1000, 3)} for task, (n, cpu, wall) in rows]  # fmt: skip

    def status(self) -> dict[str, Any]:
        """``status`` -> ``eventLoop``: worst recent and all-time stall, with its task."""
        step_now, loop_now = self.clock(), trio.current_time()

        def shown(stall: Stall | None, now: float) -> dict[str, Any] | None:
            return None if stall is None else stall.record(now)

        return {
            "windowSeconds": self.steps.window,
            "longestStep": shown(self.steps.worst(step_now), step_now),
            "longestStepEver": shown(self.steps.ever, step_now),
            "longestStepCpu": shown(self.cpu_steps.worst(step_now), step_now),
            "longestStepCpuEver": shown(self.cpu_steps.ever, step_now),
            "slowSteps": self.slow_steps,
            "slowStepMs": self.warn_step * 1000,
            "overBudgetMs": BUDGET * 1000,
            "overBudget": self.over_budget_tasks(),
            "longestGc": shown(self.collections.worst(step_now), step_now),
            "longestGcEver": shown(self.collections.ever, step_now),
            "maxLag": shown(self.lags.worst(loop_now), loop_now),
            "maxLagEver": shown(self.lags.ever, loop_now),
            "lagSamples": self.lag.count,
            "bulkLane": {"turns": self.lane.turns, "waited": self.lane.waited},
            **({} if self.guard is None else {"realtimeGuard": self.guard.status()}),
        }


#: Work in one step before a sliced builder hands the loop back (a quarter of the
#: 2 ms budget, so the step that ends a slice stays well inside it).
SLICE = 0.0005


#: What :meth:`Slicer.free` walks into, beside attrs instances.
_WALKED = (dict, list, tuple, set, frozenset)
#: ... and plain instances of the classes holding a configuration's route table.
_DATA_MODULES = frozenset({"speaker.announce", "speaker.plan"})
#: What it never holds: code and types, shared with everything.
_NOT_DATA = (type, types.ModuleType, types.FunctionType, types.MethodType,
             types.BuiltinFunctionType)  # fmt: skip


#: :meth:`Slicer.free`'s bookkeeping: objects held per list, sets of ids.
FREE_CHUNK = 4096
FREE_SHARDS = 1024


#: Containers whose leaves :meth:`Slicer.free` holds, to free them one by one.
FREE_LARGE = 64
#: :func:`_walked` by type (``attrs.has`` per object costs most of a walk).
_WALKED_TYPES: dict[type, bool] = {}


def _walked(kind: type) -> bool:
    walked = _WALKED_TYPES.get(kind)
    if walked is None:
        # attrs classes of ours only: trio's are attrs too, and a live task reached
        # from the data would lead the walk through the whole run's object graph.
        ours = kind.__module__.partition(".")[0] in ("speaker", "protocols")
        walked = kind in _WALKED or (ours and attrs.has(kind)) or kind.__module__ in _DATA_MODULES
        walked = walked and not issubclass(kind, _NOT_DATA)
        _WALKED_TYPES[kind] = walked
    return walked


def _large(item: Any) -> bool:
    return type(item) in _WALKED and len(item) > FREE_LARGE


def _referents(item: Any) -> Iterator[Any]:
    """What ``item`` refers to, lazily for the plain containers (``gc.get_referents``
    of a 65,536-entry dict builds a list of 131,072 at once). Should the container
    change size meanwhile (it should not), the rest comes from a snapshot."""
    kind = type(item)
    if kind is dict:
        live: Iterator[Any] = itertools.chain.from_iterable(item.items())
    elif kind in (list, tuple, set, frozenset):
        live = iter(item)
    else:
        yield from gc.get_referents(item)
        return
    try:
        yield from live
    except RuntimeError:  # changed size during iteration: hold everything it holds
        yield from gc.get_referents(item)


class _Held:
    """An append-only sequence in lists of :data:`FREE_CHUNK` objects, iterated
    while it grows."""

    def __init__(self, first: list[Any]) -> None:
        self.chunks: list[list[Any]] = [first]

    def append(self, item: Any) -> None:
        last = self.chunks[-1]
        if len(last) >= FREE_CHUNK:
            last = []
            self.chunks.append(last)
        last.append(item)

    def __iter__(self) -> Iterator[Any]:
        number = 0
        while number < len(self.chunks):
            chunk = self.chunks[number]
            index = 0
            while index < len(chunk):
                yield chunk[index]
                index += 1
            number += 1


class BulkLane:
    """Bulk work takes turns: one slice of it per pass of the Trio loop.

    Trio runs every task that is ready in one pass before it looks at timers and I/O
    again, so a BFD timer that comes due waits for the rest of the pass, and for the
    next one if it is late in it. With a ``show routes``, a scrape, a reload's freeing
    and an Adj-RIB-Out in progress at once, a pass held four slices of 0.5-1 ms (twice
    that while a reload's worker thread shares the GIL): timers 4-9 ms late at 65,536
    routes (``bench.loop_batches``). Here bulk tasks wait in line, and in each pass
    only the first in line runs its slice, so a pass holds one slice of bulk work
    whatever the number of bulk tasks. Each task gets the same share of the loop as
    before (the passes are shorter and more frequent, not fewer); one waiting costs a
    few microseconds per pass (a checkpoint).

    ``passes`` is counted by the :class:`LoopMonitor` that owns the lane (after each
    wait for I/O); without a monitor in the run a turn is a plain checkpoint."""

    def __init__(self) -> None:
        #: Passes of the loop since start (the monitor counts them).
        self.passes = 0
        self._line: deque[object] = deque()
        self._taken = -1
        #: Turns given, and turns that had to wait for another task's slice.
        self.turns = 0
        self.waited = 0

    async def turn(self) -> None:
        """A checkpoint, after which this task's slice is the only bulk slice of its
        pass of the loop."""
        me = object()
        line = self._line
        line.append(me)
        waited = False
        try:
            while True:
                await trio.lowlevel.checkpoint()
                if line[0] is me and self._taken != self.passes:
                    self._taken = self.passes
                    self.turns += 1
                    self.waited += waited
                    return
                waited = True
        finally:
            if line[0] is me:
                line.popleft()
            else:  # cancelled while in line
                line.remove(me)


async def bulk_turn() -> None:
    """The turn of the installed monitor's :class:`BulkLane`, or a plain checkpoint
    when none is installed (tests, tools)."""
    monitor = _ACTIVE.get()
    if monitor is None:
        await trio.lowlevel.checkpoint()
    else:
        await monitor.lane.turn()


#: The most of a CPU the loop thread may use while bulk work waits (LoopDuty).
DUTY_LIMIT = 0.8
#: ... measured over any stretch longer than this.
DUTY_BURST = 0.1
#: One wait of bulk work at most: far below anything a reader of it waits for.
DUTY_MAX_WAIT = 0.02


class LoopDuty:
    """Bulk work gives way before the loop runs out of CPU: at most ``limit`` of the
    loop thread's time is spent, over any stretch longer than ``burst``, or the next
    slice waits.

    Why: a loop at 100 % of a CPU has no headroom left for BFD, and under
    ``realtime_priority`` the kernel throttles a SCHED_FIFO thread that used 95 % of a
    second: the loop then stops for the rest of that second (50 ms stalls of little
    CPU). The lab measured exactly that at 65,536 routes under operator load (show
    routes every 5 s, reloads of 10,000 services, a full table from a second peer):
    the loop thread at 0.94-1.0 of a CPU for tens of seconds, loop lag max 50 ms.

    Everything the loop thread does counts (its CPU time, ``time.thread_time``, read at
    each slice); only bulk work waits (:class:`Slicer`, ``speaker.slices``): BFD, BGP
    keepalives and the peers' input (which has its own budget, ``speaker.bgp.link``)
    never do. The credit accrues in Trio time, as the input budget's does."""

    def __init__(
        self,
        limit: float = DUTY_LIMIT,
        burst: float = DUTY_BURST,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.limit = limit
        self.burst = burst
        self.cpu_clock = cpu_clock
        self._credit = burst * limit
        self._at: float | None = None
        self._cpu = 0.0
        #: Times bulk work waited for the loop to cool, and for how long in all (s).
        self.waits = 0
        self.waited = 0.0

    def charge(self) -> float:
        """How long bulk work should wait now (0: not at all)."""
        now, cpu = trio.current_time(), self.cpu_clock()
        if self._at is not None:  # (a new trio.run, a MockClock: never a negative gap)
            gained = max(0.0, now - self._at) * self.limit
            spent = max(0.0, cpu - self._cpu)
            self._credit = min(self.burst * self.limit, self._credit + gained - spent)
        self._at, self._cpu = now, cpu
        if self._credit >= 0:
            return 0.0
        return min(DUTY_MAX_WAIT, -self._credit / self.limit)

    async def pace(self) -> None:
        """A wait when the loop has been too busy, then a turn in the bulk lane (a
        checkpoint)."""
        await self.give_way()
        await bulk_turn()

    async def give_way(self) -> bool:
        """Wait if the loop has been too busy (no checkpoint otherwise); whether it did."""
        wait = self.charge()
        if wait <= 0:
            return False
        self.waits += 1
        self.waited += wait
        await trio.sleep(wait)
        return True


#: The process's loop duty (see LoopDuty).
DUTY = LoopDuty()


#: Walks of a table that keep meeting a change before Slicer.keys copies it at once.
KEY_RESCANS = 2


class Slicer:
    """``await slicer.tick()`` in a loop over something proportional to routes, peers
    or services: a checkpoint once the current step has run for ``budget`` seconds,
    so the loop never waits longer than that for the rest (BFD first); a wait
    instead when the loop has been too busy (:data:`DUTY`)."""

    def __init__(self, budget: float = SLICE, *, paced: bool = True) -> None:
        self.budget = budget
        #: False: only checkpoints, never waits for the loop duty (a metrics scrape:
        #: Prometheus gives up on it after its scrape_timeout, 10 s by default).
        self.paced = paced
        self._since = time.perf_counter()

    async def tick(self) -> None:
        if time.perf_counter() - self._since >= self.budget:
            if self.paced:
                await DUTY.pace()
            else:
                await bulk_turn()
            self._since = time.perf_counter()

    async def release(self, value: object) -> None:
        """Free a big tree of lists and dicts a slice at a time: dropping the last
        reference to a 65,536-route reply frees every object in it in one step
        (tens of milliseconds). Lists and dicts in it are emptied."""
        stack = [value]
        while stack:
            await self.tick()
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(v for v in item.values() if isinstance(v, list | dict))
                item.clear()
            elif isinstance(item, list):
                while item:
                    tail = item[-256:]
                    del item[-256:]
                    stack.extend(v for v in tail if isinstance(v, list | dict))
                    del tail
                    await self.tick()

    async def free(self, box: list[Any]) -> None:
        """Free a big structure of data nobody changes any more (a replaced config and
        route table) a slice at a time, without changing it: what it holds is
        collected first, then let go of parents first, so each release frees one
        object whose children are still held here. Dropping a 65,536-service
        configuration at once is one 25 ms step.

        ``box`` holds the only reference to the structure; it is emptied. Only plain
        containers, attrs instances and the route table's classes are walked into;
        other objects in it are held, not walked (a live object reached from the
        data, such as the shared BGP listener, stays as it is).

        What is held here is itself kept small per object: the held objects in lists
        of :data:`FREE_CHUNK`, the walked ones' ids in :data:`FREE_SHARDS` sets. One
        list of a million objects (or a set of half a million ids) would cost
        milliseconds each time it grows, and in every young garbage collection that
        scans it (up to 8 ms per collection at 65,536 services, measured)."""
        # Automatic collection is paused throughout (speaker.gcpause): every young
        # collection would scan the lists of held objects made since the last one
        # (21 ns per object: 5-9 ms per collection at 65,536 services, measured).
        with gcpause.paused():
            await self._free(box)

    async def _free(self, box: list[Any]) -> None:
        held = _Held(box[:])
        box.clear()
        seen = [set[int]() for _ in range(FREE_SHARDS)]
        for root in held.chunks[0]:
            seen[id(root) % FREE_SHARDS].add(id(root))
        root = None  # no reference left here when the roots are let go
        item: Any = None
        for item in held:
            await self.tick()  # leaves too: half a million of them are seconds
            if not _walked(type(item)):
                continue
            # The leaves (strings, numbers) of a big container are held, each to be
            # freed on its own (65,536 names at once: milliseconds); a small one's go
            # with it, in its own release.
            big = _large(item)
            for position, child in enumerate(_referents(item)):
                if _walked(type(child)):
                    # What is walked into is walked once.
                    shard = seen[id(child) % FREE_SHARDS]
                    if id(child) not in shard:
                        shard.add(id(child))
                        held.append(child)
                elif big and not isinstance(child, _NOT_DATA):
                    held.append(child)  # a leaf may be held twice
                if position % 64 == 63:  # cold memory: about 2 us per child
                    await self.tick()
        del item
        for shard in seen:
            shard.clear()
            await self.tick()
        chunks = held.chunks
        del held
        for number, chunk in enumerate(chunks):
            for index in range(len(chunk)):
                item = chunk[index]
                chunk[index] = None
                # A big container nobody else holds any more (``item`` and the call's
                # argument are the two references) is emptied a slice at a time:
                # releasing a 65,536-entry dict at once is 2 ms of cache misses.
                if _large(item) and sys.getrefcount(item) == 2:
                    await self.discard(item)
                del item
                await self.tick()
            chunks[number] = []
            await self.tick()

    async def discard(self, item: Any) -> None:
        """Empty a dict, list, set or deque only the caller holds, a slice at a time
        (tuples and frozensets cannot be: they go at once)."""
        if isinstance(item, dict):
            while item:
                for _ in range(min(len(item), 256)):
                    item.popitem()
                await self.tick()
        elif isinstance(item, list):
            while item:
                del item[-256:]
                await self.tick()
        elif isinstance(item, set | collections.deque):
            while item:
                for _ in range(min(len(item), 256)):
                    item.pop()
                await self.tick()

    async def keys(self, table: Iterable[K]) -> list[K]:
        """The keys (items) of ``table``, copied in slices (a 65,536-route dict takes about a
        millisecond to copy at once; 512 per slice, since a slice of 2,048 cost 2.7-3.4 ms
        on a loaded machine, the keys' hashes cold).

        Should the table change size between two slices (a reload or a health check
        while ``show routes`` reads), it is walked again, in slices too, skipping the
        keys already copied. Once :data:`KEY_RESCANS` walks each met a change (a
        reload applying), the table as it is now is copied in one C call (``list``:
        1-2.5 ms at 65,536, and complete). Before, the rest was de-duplicated against
        a set of the keys copied so far, in one step: 7-16 ms at 65,536 under load
        (15 ms measured quiet). Two walks at most: a table that changes throughout
        (a reload applying for seconds) would otherwise be walked again and again."""
        keys: list[K] = []
        seen: set[K] | None = None
        rescans = 0
        live = iter(table)
        while True:
            try:
                chunk = list(itertools.islice(live, 512))
            except RuntimeError:  # changed size during iteration
                rescans += 1
                if rescans > KEY_RESCANS:
                    return list(table)
                if seen is None:
                    seen = set()
                    for start in range(0, len(keys), 2048):
                        seen.update(keys[start : start + 2048])
                        await self.tick()
                live = iter(table)
                continue
            if not chunk:
                return keys
            if seen is not None:
                chunk = [k for k in chunk if k not in seen]
                seen.update(chunk)
            keys += chunk
            await self.tick()
