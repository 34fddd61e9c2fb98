"""bench.stall_watch samples a live process and stops cleanly."""

from __future__ import annotations

import os
import time

from bench.stall_watch import StallWatch


def test_watch_samples_this_process_and_explains_a_busy_stretch() -> None:
    watch = StallWatch(os.getpid(), period=0.002)
    watch.start()
    time.sleep(0.05)
    start = time.time()
    deadline = time.monotonic() + 0.1
    while time.monotonic() < deadline:  # the main thread (the "loop" here) on the CPU
        pass
    end = time.time()
    time.sleep(0.05)
    watch.stop()
    assert not watch.is_alive()
    assert len(watch.walls) >= 10
    why = watch.explain(start, end)
    assert why is not None
    assert why["loop_cpu_ms"] >= 20, why  # 100 ms of spinning, less what a busy CI host takes
    assert watch.explain(start - 60, end) is None  # before the first sample
    totals = watch.totals()
    assert totals is not None and totals["samples"] == len(watch.walls)
