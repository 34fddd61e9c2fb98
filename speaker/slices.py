"""Long work cut into slices, so the Trio loop keeps its budget (docs/architecture.md).

A function that may take long is written as a generator of :data:`Steps`: it
yields None between two slices of bounded work, or a callable holding a blocking
system call (a file written and fsync'ed), and returns its result. The runtime
drives it with :func:`run_in_slices`, which checkpoints whenever a slice ran for
``budget`` seconds, so other tasks (BFD) run in between, and runs the callables in a
worker thread (system calls release the GIL; Python code would not, so they hold
none); code outside the loop (``check``, tests, startup before ``trio.run``) takes
the result at once with :func:`run_at_once`. The code stays free of clocks and Trio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TypeVar

import trio

from speaker.looplag import DUTY
from speaker.realtime import in_worker

__all__ = ["STEP_BUDGET", "Blocking", "Steps", "run_at_once", "run_in_slices"]

_T = TypeVar("_T")

#: Work between two yields of a generator is kept far below this; the driver
#: checkpoints once this much has run since the last checkpoint.
STEP_BUDGET = 0.0005

#: What a step yields: None (a slice ended), or a blocking call to make.
Blocking = Callable[[], object] | None
Steps = Generator[Blocking, None, _T]


def run_at_once(steps: Steps[_T]) -> _T:
    """Run ``steps`` to the end without yielding to anybody."""
    while True:
        try:
            call = next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        if call is not None:
            call()


async def run_in_slices(steps: Steps[_T], budget: float = STEP_BUDGET) -> _T:
    """Run ``steps`` to the end, with a Trio checkpoint each ``budget`` seconds and
    its blocking calls in a worker thread."""
    started = time.perf_counter()
    while True:
        try:
            call = next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        if call is not None:
            await trio.to_thread.run_sync(in_worker(call))
            started = time.perf_counter()
        elif time.perf_counter() - started >= budget:
            await DUTY.pace()  # a checkpoint, or a wait when the loop is too busy
            started = time.perf_counter()
