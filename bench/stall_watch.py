"""Where the loop's stalls went: the loop thread and the host, sampled from outside.

A stall of the speaker's loop is wall time in which its loop thread did not run our
code. The loop monitor measures the stall and the loop thread's own CPU time in it;
the rest is one of:

* **waiting for a CPU** (runnable, not running: another thread of equal or higher
  priority on every CPU, or the kernel's real-time throttling): the thread's
  ``run_delay`` in ``/proc/<pid>/task/<tid>/schedstat``;
* **waiting for the GIL** while one of the speaker's worker threads runs Python (the
  loop thread asleep, the workers' CPU time growing);
* **the hypervisor not running the vCPU** (steal time, ``/proc/stat``; counted in
  ticks of 10 ms, so a stall's share of it is coarse).

:class:`StallWatch` samples those counters every few milliseconds (about 1 % of a CPU
in the bench process) and :meth:`StallWatch.explain` says, for a stretch of wall time
(a stall warning, a gap between two of the node's BFD packets), how much of each the
stretch held.

Each sample's counters were read at some moment between the wall times taken before
and after the reads (the reads release the GIL, and getting it back can take a few
milliseconds in a busy process), so a stretch is enclosed by a sample that ended before
it and one that began after it. The kernel brings a running thread's CPU time up to
date at its scheduler tick, so the loop's CPU time in a stretch can read a tick short.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path
from typing import Any

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def _schedstat(path: Path) -> tuple[int, int]:
    """(ns on the CPU, ns runnable but waiting for one)."""
    run, wait, _ = path.read_text().split()
    return int(run), int(wait)


def _steal_ticks() -> int:
    """Steal time of every CPU, in clock ticks."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


class StallWatch(threading.Thread):
    """Samples (wall, loop CPU ns, loop wait ns, workers' CPU ns, steal ticks) every
    ``period`` seconds until :meth:`stop`."""

    def __init__(self, pid: int, period: float = 0.004) -> None:
        super().__init__(name="stall-watch", daemon=True)
        self.pid, self.period = pid, period
        self.loop = Path(f"/proc/{pid}/task/{pid}/schedstat")
        self.walls: list[float] = []  # when each sample's reads began
        self.ends: list[float] = []  # ... and ended
        self.samples: list[tuple[int, int, int, int]] = []
        self._halt = threading.Event()
        self._workers: list[Path] = []
        self._listed = 0.0

    def _worker_ns(self) -> int:
        now = time.monotonic()
        if now - self._listed > 1.0:  # worker threads come and go (Trio's thread cache)
            self._listed = now
            tids = [t for t in os.listdir(f"/proc/{self.pid}/task") if t != str(self.pid)]
            self._workers = [Path(f"/proc/{self.pid}/task/{t}/schedstat") for t in tids]
        total = 0
        for path in self._workers:
            try:
                total += _schedstat(path)[0]
            except OSError:  # gone since the listing
                continue
        return total

    def run(self) -> None:
        while not self._halt.is_set():
            began = time.time()
            try:
                run, wait = _schedstat(self.loop)
                sample = (run, wait, self._worker_ns(), _steal_ticks())
            except OSError:  # the process ended
                return
            self.ends.append(time.time())
            self.walls.append(began)
            self.samples.append(sample)
            time.sleep(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def explain(self, start: float, end: float) -> dict[str, Any] | None:
        """What the samples around [start, end] (wall time) say; None outside them."""
        i = bisect.bisect_right(self.ends, start) - 1  # read wholly before the start
        j = bisect.bisect_left(self.walls, end)  # read wholly after the end
        if i < 0 or j >= len(self.walls):
            return None
        (r0, w0, k0, s0), (r1, w1, k1, s1) = self.samples[i], self.samples[j]
        return {
            "span_ms": round((end - start) * 1000, 1),
            "sampled_ms": round((self.walls[j] - self.walls[i]) * 1000, 1),
            "loop_cpu_ms": round((r1 - r0) / 1e6, 1),
            "loop_waiting_for_cpu_ms": round((w1 - w0) / 1e6, 1),
            "workers_cpu_ms": round((k1 - k0) / 1e6, 1),
            "steal_ms": round((s1 - s0) * TICK_MS, 1),
        }

    def pauses(self, floor: float = 0.1) -> list[tuple[float, float]]:
        """Stretches over ``floor`` seconds in which the sampler itself did not run: the
        whole machine stopped (a VM paused or snapshotted by its host: the kernel logs
        "crng reseeded due to virtual machine fork" after one) or the bench starved."""
        return [(a, b) for a, b in zip(self.walls, self.walls[1:], strict=False) if b - a > floor]

    def totals(self) -> dict[str, Any] | None:
        """Over everything sampled: per second of wall time."""
        if len(self.walls) < 2:
            return None
        secs = self.walls[-1] - self.walls[0]
        (r0, w0, k0, s0), (r1, w1, k1, s1) = self.samples[0], self.samples[-1]
        return {
            "seconds": round(secs, 1),
            "samples": len(self.walls),
            "loop_cpu_ms_per_s": round((r1 - r0) / 1e6 / secs, 1),
            "loop_waiting_for_cpu_ms_per_s": round((w1 - w0) / 1e6 / secs, 2),
            "workers_cpu_ms_per_s": round((k1 - k0) / 1e6 / secs, 1),
            "steal_ms_per_s": round((s1 - s0) * TICK_MS / secs, 2),
            "pauses_over_100ms": [[round(a, 3), round(b - a, 3)] for a, b in self.pauses()],
            "max_sample_gap_ms": round(
                max(b - a for a, b in zip(self.walls, self.walls[1:], strict=False)) * 1000, 1
            ),
        }
