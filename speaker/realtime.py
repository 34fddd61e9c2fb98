"""Real-time scheduling for the loop's thread only, when the operator asks for it.

BFD at 10-50 ms needs the loop to run when its packet is due, on a node whose other
work may keep every CPU busy; the loop's own steps are short (the latency budget,
docs/architecture.md), but a normal-priority process still waits behind whatever the
kernel runs first. Started under a real-time policy (systemd's
``CPUSchedulingPolicy=fifo``, or ``chrt``), the speaker keeps it for the loop
thread, which only ever runs short steps, and puts its worker threads (a reload's
load and derive: seconds of CPU at 65,536 services) at the normal policy with nice
-20: not real-time (a real-time thread that keeps a CPU busy is throttled, with the
GIL held), but ahead of normal processes, since a worker that the kernel preempted
while it held the GIL would keep the loop waiting for it. Linux
threads inherit their creator's policy, so each worker sets its own, once, before
its first job.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["GUARD", "ThrottleGuard", "apply", "describe", "in_worker"]

_P = ParamSpec("_P")
_T = TypeVar("_T")
_REALTIME = {getattr(os, "SCHED_FIFO", -1): "fifo", getattr(os, "SCHED_RR", -2): "rr"}
_dropped = threading.local()


class _Applied:
    """The priority :func:`apply` set on the loop's thread (0: none)."""

    priority = 0


_applied = _Applied
log = logging.getLogger("speaker.realtime")


def describe() -> str | None:
    """``"fifo 50"`` when the calling thread runs under a real-time policy, else None."""
    try:
        policy = os.sched_getscheduler(0)
        priority = os.sched_getparam(0).sched_priority
    except (AttributeError, OSError):  # not Linux
        return None
    name = _REALTIME.get(policy)
    return f"{name} {priority}" if name else None


def apply(priority: int) -> str | None:
    """The calling thread (the loop's) under SCHED_FIFO at ``priority``, or back to the
    normal policy for 0 (unless it was started under a real-time policy: systemd's
    ``CPUSchedulingPolicy``, which ``[speaker] realtime_priority = 0`` leaves alone).
    Returns why it could not, else None."""
    try:
        if priority == 0:
            if _applied.priority:  # ours, from an earlier apply: back to normal
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
                _applied.priority = 0
                GUARD.forget()
            return None
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        GUARD.forget()  # a policy set now is not one the guard took away
    except (AttributeError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"{reason} (needs root or CAP_SYS_NICE)"
    _applied.priority = priority
    return None


#: The workers' nice value under a real-time loop (see _drop).
WORKER_NICE = -20


def _drop() -> None:
    if getattr(_dropped, "done", False):
        return
    _dropped.done = True
    if describe() is None:
        return
    # The calling thread only (pid 0): the loop's thread keeps its policy. The normal
    # policy at nice -20, not a real-time one: a worker runs for seconds (a reload at
    # 65,536 services), and a real-time thread that uses a whole CPU is throttled by
    # the kernel (sched_rt_runtime_us: stopped for the rest of each second, 50 ms)
    # while it holds the GIL, which then keeps the loop waiting 50 ms (measured:
    # stalls of 50 ms wall and 0.2 ms CPU, once a second during reloads, at priority
    # 1). At nice -20 the kernel still runs the worker before normal processes, so
    # it is seldom preempted holding the GIL (at nice 0: 50 ms steps of 16 ms CPU).
    _to_normal_policy()


def _to_normal_policy() -> None:
    """The calling thread at the normal policy with nice WORKER_NICE (when allowed)."""
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    with contextlib.suppress(OSError):  # no CAP_SYS_NICE: the normal nice
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)


def in_worker(function: Callable[_P, _T]) -> Callable[_P, _T]:
    """``function`` for ``trio.to_thread.run_sync``: the worker thread it runs in is
    at the normal policy first."""

    @functools.wraps(function)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        _drop()
        return function(*args, **kwargs)

    return run


# ---- staying clear of the kernel's real-time throttling ---------------------------------

#: The loop thread's share of a CPU, over the last GUARD_WINDOW, above which it leaves
#: the real-time policy (the kernel throttles at 95 %: ``kernel.sched_rt_runtime_us``
#: 950,000 of ``sched_rt_period_us`` 1,000,000), and below which it takes it back.
GUARD_HIGH = 0.85
GUARD_LOW = 0.70
#: The kernel's period, which the share is measured over.
GUARD_WINDOW = 1.0
#: How often the share is read (the loop monitor calls :meth:`ThrottleGuard.observe`
#: after task steps; this bounds the overshoot past GUARD_HIGH to 5 % of a second).
GUARD_EVERY = 0.05


class ThrottleGuard:
    """Keeps a real-time loop thread out of the kernel's real-time throttling.

    A SCHED_FIFO thread that used 95 % of a CPU in the kernel's 1 s period is stopped
    for the rest of it: 50 ms in which BFD sends nothing (the lab at 65,536 routes
    under operator load: TX gaps of 80-92 ms, each holding 49-50 ms of the loop
    thread waiting for a CPU, bench.stall_watch). The loop's duty (80 %,
    speaker.looplag.LoopDuty) paces only bulk work, so a busy second can still get
    there. So once the loop thread has used more than GUARD_HIGH of the last second,
    it runs at the normal policy (nice -20, as the workers) until its share is back
    under GUARD_LOW: still ahead of normal processes, and never stopped outright.

    ``observe`` is called with the loop monitor's clock reads (wall and the thread's
    CPU time), so it costs a compare per task step and a little arithmetic every
    GUARD_EVERY. A no-op unless the calling thread runs under a real-time policy.
    """

    def __init__(
        self,
        *,
        getter: Callable[[], tuple[int, int]] | None = None,
        setter: Callable[[int, int], None] | None = None,
    ) -> None:
        self._get = getter or _current_policy
        self._set = setter or _set_policy
        self._samples: deque[tuple[float, float]] = deque()
        #: The real-time (policy, priority) taken away; None while it runs as set.
        self.demoted: tuple[int, int] | None = None
        self.demotions = 0
        self.demoted_seconds = 0.0
        self._demoted_at = 0.0
        #: When the next observe is due (the monitor compares, to skip the call).
        self.next_at = -math.inf
        self._logged_at = -math.inf

    def observe(self, now: float, cpu: float) -> None:
        """The loop thread at wall time ``now`` has used ``cpu`` seconds in all."""
        self.next_at = now + GUARD_EVERY
        samples = self._samples
        samples.append((now, cpu))
        while len(samples) > 2 and now - samples[1][0] >= GUARD_WINDOW:
            samples.popleft()
        then, cpu_then = samples[0]
        if now - then < GUARD_WINDOW * 0.5:
            return  # not enough history to judge
        share = (cpu - cpu_then) / (now - then)
        if self.demoted is None and share > GUARD_HIGH:
            policy = self._get()
            if policy[0] not in _REALTIME:
                return
            try:
                self._set(os.SCHED_OTHER, 0)
            except OSError:
                return
            self.demoted, self._demoted_at = policy, now
            self.demotions += 1
            if now - self._logged_at >= 60.0:
                self._logged_at = now
                log.info(
                    "the event loop used %.0f%% of a CPU over the last second: at the normal"
                    " policy until it is under %.0f%% (the kernel stops a real-time thread"
                    " at 95%%); %d times since start",
                    share * 100, GUARD_LOW * 100, self.demotions,
                )  # fmt: skip
        elif self.demoted is not None and share < GUARD_LOW:
            policy, self.demoted = self.demoted, None
            self.demoted_seconds += now - self._demoted_at
            with contextlib.suppress(OSError):
                self._set(*policy)

    def forget(self) -> None:
        """The policy was set anew (``realtime_priority`` applied): nothing to restore."""
        self.demoted = None

    def status(self) -> dict[str, object]:
        return {"demoted": self.demoted is not None, "demotions": self.demotions,
                "demotedSeconds": round(self.demoted_seconds, 3)}  # fmt: skip


def _current_policy() -> tuple[int, int]:
    return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority


def _set_policy(policy: int, priority: int) -> None:
    if policy == os.SCHED_OTHER:
        _to_normal_policy()
    else:
        os.sched_setscheduler(0, policy, os.sched_param(priority))


#: The process's guard, for the loop thread (speaker.looplag.LoopMonitor feeds it).
GUARD = ThrottleGuard()
