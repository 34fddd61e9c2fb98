"""bench.stall_watch samples a live process and stops cleanly."""

from __future__ import annotations

import os
import time

from bench.stall_watch import StallWatch


def test_watch_samples_this_process_and_explains_a_busy_stretch() -> None:
    watch = StallWatch(os.getpid(), period=0.002)
    watch.start()
    time.sleep(0.05)
    start, cpu0 = time.time(), time.thread_time()
    deadline = time.monotonic() + 5.0
    # The main thread (the "loop" here) on the CPU until it used 50 ms of it, however
    # much of the wall time a busy host (or the watch, for the GIL) takes from it.
    while time.thread_time() - cpu0 < 0.05 and time.monotonic() < deadline:
        pass
    end, used_ms = time.time(), (time.thread_time() - cpu0) * 1000
    time.sleep(0.05)
    watch.stop()
    assert not watch.is_alive()
    assert len(watch.walls) >= 10
    why = watch.explain(start, end)
    assert why is not None
    # The samples enclose the span, so they hold the CPU the thread counted in it, but
    # for the kernel's lag in counting a running thread's time (a tick or so).
    assert why["loop_cpu_ms"] >= used_ms - 10, (why, used_ms)
    assert used_ms >= 20, used_ms  # it did spin
    assert watch.explain(start - 60, end) is None  # before the first sample
    totals = watch.totals()
    assert totals is not None and totals["samples"] == len(watch.walls)
