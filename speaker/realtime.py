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
import os
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["apply", "describe", "in_worker"]

_P = ParamSpec("_P")
_T = TypeVar("_T")
_REALTIME = {getattr(os, "SCHED_FIFO", -1): "fifo", getattr(os, "SCHED_RR", -2): "rr"}
_dropped = threading.local()


class _Applied:
    """The priority :func:`apply` set on the loop's thread (0: none)."""

    priority = 0


_applied = _Applied


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
            return None
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
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
