"""The loop during a reload's load and derive: on the loop, or in a worker thread.

    .venv/bin/python -m bench.reload_loop [--quick] [--services 10000] [--trials 5]

A configuration of ``--services`` services (each taking its address from a pool: the
allocator's worst case) and one ``announce_all`` pool of 65,536 routes, with 4 peers,
is read, validated and derived (:func:`speaker.reload.prepare`, what a reload does
before it touches the running speaker) while a ticker task stands in for BFD: it
sleeps 1 ms at a time, and a Trio Instrument records every task step. Variants:

* ``on the loop``: ``prepare`` called in a Trio task (today's main: one step);
* ``thread, switch 5 ms``: ``trio.to_thread.run_sync`` with Python's default
  ``sys.setswitchinterval``;
* ``thread, switch 0.5 ms``: the same with the interval ``speaker run`` sets
  (:data:`speaker.app.GIL_SWITCH_INTERVAL`);
* ``collections deferred``: the same inside :func:`speaker.reload.collections_deferred`
  (no garbage collection during the load, whose objects then join the oldest
  generation unscanned): what ``speaker run`` does.

``--heap N`` keeps N extra long-lived containers alive, standing in for the running
speaker's heap (RIBs, sessions): a full collection scans all of it, in whichever
thread it runs, holding the GIL throughout.

Per variant: the longest uninterrupted Trio step, the ticker's worst lateness (what a
BFD timer would feel) and the wall time of the prepare. No network, no lab: one
process, in-process. Writes ``bench/results/<date>-reload-loop[-quick].{json,md}``.

On a shared machine the figures include other processes preempting ours (also while
our worker thread holds the GIL, so the loop waits for the worker's next time slice).
Run under ``chrt -r 10`` (real-time round robin: only the kernel preempts it) to see
what the process itself does; the result is then named ``reload-loop-rt``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench.common import new_data, summary, write_results
from speaker.app import GIL_SWITCH_INTERVAL
from speaker.config import load_config
from speaker.reload import collections_deferred, prepare

NAME = "reload-loop"
TICK = 0.001


def config_text(state_file: Path, services: int) -> str:
    peers = "".join(
        f'[[peers]]\nname = "r{i}"\npeer_address = "127.0.0.{i + 1}"\npeer_asn = 64512\n\n'
        for i in range(4)
    )
    # Services from 198.18.0.0/17 (32,768 addresses), announced per address; routes
    # of the announce_all pool 198.19.0.0/16 (65,536 /32s).
    lines = [
        '[speaker]\nmy_asn = 64513\nrouter_id = "10.0.0.1"\nnode_name = "n1"\n'
        f'state_file = "{state_file}"\nallocation = "node-local"\n\n',
        peers,
        '[[pools]]\nname = "svc"\naddresses = ["198.18.0.0/17"]\n\n',
        '[[pools]]\nname = "all"\naddresses = ["198.19.0.0/16"]\nannounce_all = true\n\n',
        '[[advertisements]]\nname = "everything"\n\n',
    ]
    lines += [f'[[services]]\nname = "s{i}"\npool = "svc"\n\n' for i in range(services)]
    return "".join(lines)


class StepTimer(trio.abc.Instrument):
    """The longest task step (and whose), from before_task_step to after_task_step."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.longest_task = ""
        self._start = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._start = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        took = time.perf_counter() - self._start
        if took > self.longest:
            self.longest, self.longest_task = took, task.name


async def ticker(lateness: list[float], stop: trio.Event) -> None:
    while not stop.is_set():
        deadline = trio.current_time() + TICK
        await trio.sleep_until(deadline)
        lateness.append(trio.current_time() - deadline)


class GcPauses:
    """Garbage collections (each holds the GIL from start to end, whichever thread)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._start))


async def one(
    path: Path, running: Any, mode: str, timer: StepTimer, idle_s: float
) -> dict[str, Any]:
    lateness: list[float] = []
    stop = trio.Event()
    call = functools.partial(prepare, path, running, allow_empty=False)
    collections = GcPauses()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker, lateness, stop)
        await trio.sleep(0.05)
        timer.longest, lateness[:] = 0.0, []
        gc.callbacks.append(collections)
        start = time.perf_counter()
        if mode == "thread":
            await trio.to_thread.run_sync(call)
        elif mode == "deferred":
            with collections_deferred():
                await trio.to_thread.run_sync(call)
        elif mode == "loop":
            call()
        else:
            await trio.sleep(idle_s)
        wall = time.perf_counter() - start
        gc.callbacks.remove(collections)
        stop.set()
    return {
        "wall_s": wall,
        "longest_step_ms": timer.longest * 1000,
        "longest_step_task": timer.longest_task,
        "tick_lateness_ms": summary([x * 1000 for x in lateness]),
        "ticks": len(lateness),
        "gc_longest_ms": max((p for _, p in collections.pauses), default=0.0) * 1000,
        "gc_gen2": sum(1 for g, _ in collections.pauses if g == 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.reload_loop", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1,000 services, 2 trials")
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--heap", type=int, default=0, help="extra long-lived containers")
    args = ap.parse_args(argv)
    services, trials = (1000, 2) if args.quick else (args.services, args.trials)
    realtime = os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR)
    result_name = NAME + ("-rt" if realtime else "")
    parameters = {"services": services, "routes": 65536, "trials": trials, "tick_s": TICK,
                  "heap": args.heap, "realtime": realtime}  # fmt: skip
    data = new_data(result_name, args.quick, parameters)
    variants = [("no reload (the machine's floor)", "idle", None),
                ("on the loop", "loop", None), ("thread, switch 5 ms", "thread", 0.005),
                ("thread, switch 0.5 ms", "thread", GIL_SWITCH_INTERVAL),
                ("thread, switch 0.5 ms, collections deferred (the speaker)", "deferred",
                 GIL_SWITCH_INTERVAL)]  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speaker.toml"
        path.write_text(config_text(Path(tmp) / "state.json", services))
        running = load_config(path)
        heap = [{"i": [i]} for i in range(args.heap)]
        default_interval = sys.getswitchinterval()
        idle_s = 0.5
        for trial in range(trials):
            for name, mode, interval in variants:
                (Path(tmp) / "state.json").unlink(missing_ok=True)  # allocate from scratch
                sys.setswitchinterval(interval or default_interval)
                timer = StepTimer()
                result = trio.run(one, path, running, mode, timer, idle_s, instruments=[timer])
                if mode == "loop":
                    idle_s = result["wall_s"]  # the floor is measured over as long
                results[name].append(result)
                print(f"trial {trial + 1} {name}: prepare {result['wall_s']:.2f} s, longest"
                      f" step {result['longest_step_ms']:.2f} ms"
                      f" ({result['longest_step_task']}), tick lateness max"
                      f" {result['tick_lateness_ms']['max']:.2f} ms, GC max"
                      f" {result['gc_longest_ms']:.1f} ms ({result['gc_gen2']} full)",
                      flush=True)  # fmt: skip
        sys.setswitchinterval(default_interval)
        del heap
    data["results"] = results
    rows = []
    for name, _, _ in variants:
        runs = results[name]
        steps = summary([r["longest_step_ms"] for r in runs])
        late = summary([r["tick_lateness_ms"]["max"] for r in runs])
        p99 = summary([r["tick_lateness_ms"]["p99"] for r in runs])
        wall = summary([r["wall_s"] for r in runs])
        gcs = summary([r["gc_longest_ms"] for r in runs])
        rows.append(f"| {name} | {wall['p50']:.2f} | {steps['p50']:.2f} / {steps['max']:.2f} |"
                    f" {p99['p50']:.2f} | {late['p50']:.2f} / {late['max']:.2f} |"
                    f" {gcs['max']:.1f} |")  # fmt: skip
    markdown = "\n".join([
        f"Reload load + validate + derive of {services:,} pool-assigned services and a"
        " 65,536-route announce_all pool (4 peers), while a 1 ms ticker runs;"
        f" {trials} trials per variant (figures: median / worst over the trials)"
        + (", real-time scheduling (chrt -r 10)." if realtime else ", normal scheduling."),
        "",
        "| variant | prepare (s) | longest Trio step (ms) | tick lateness p99 (ms) |"
        " tick lateness max (ms) | longest GC pause (ms) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ])  # fmt: skip
    print(markdown)
    write_results(result_name, args.quick, data, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
