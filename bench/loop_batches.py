"""How late a BFD-like timer wakes while the product works at scale, and what ran
in the loop meanwhile, in-process.

    python -m bench.loop_batches [--services 65536] [--feed 500000] [--period 0.01]

The load of :mod:`bench.reload_steps` with ``--socket --reads --scrape`` (reloads
removing and adding ``--churn`` services, health flaps, ``show`` from a client
process, a scrape a second, a second peer's table with ``--feed``), the routers in a
process of their own (as in the field: their work is not the loop's), and beside it
a task that sleeps ``--period`` again and again, as a BFD session's timer does.
Each wake's lateness is a sample; for each late wake over ``--over`` the steps that
ran between its due time and its wake are printed (task, wall and CPU time), with
the Trio loop's passes between them: how a lag is made up (one long step, or several
bulk slices in one pass of the loop). The probe is one ``perf_counter`` and one
``thread_time`` per step, kept in a ring. ``--gil`` adds a thread that names what the
other threads ran whenever it got the GIL late. Run it under ``chrt -f 50`` to see the
loop as ``realtime_priority = 50`` runs it. No lab; prints, writes nothing.
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trio

from bench import reload_steps
from bench.route_steps import _peer as passive_peer
from speaker import gcpause, realtime
from speaker.app import GIL_SWITCH_INTERVAL, Speaker
from speaker.config import loads_config
from speaker.control import ControlServer
from speaker.looplag import LoopMonitor
from speaker.metrics import SpeakerCollector
from speaker.plan import derive

#: Steps kept for the explanation of a late wake.
RING = 4096


class Probe(trio.abc.Instrument):
    """Each step's start, wall and CPU time, and each pass of the loop, in a ring."""

    def __init__(self) -> None:
        self.phase = "start"
        # (start, wall, cpu, task name) for a step; (start, -1, 0, "") for a loop pass.
        self.ring: collections.deque[tuple[float, float, float, str]] = collections.deque(
            maxlen=RING
        )
        self._wall = 0.0
        self._cpu = 0.0

    def after_io_wait(self, timeout: float) -> None:
        self.ring.append((time.perf_counter(), -1.0, 0.0, ""))

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        now = time.perf_counter()
        self.ring.append((self._wall, now - self._wall, time.thread_time() - self._cpu, task.name))

    def between(self, start: float, end: float) -> list[tuple[float, float, float, str]]:
        # The newest steps only, from the end: the timer's own step stays short.
        out = []
        for step in reversed(self.ring):
            if step[0] + max(step[1], 0) < start:
                break
            if step[0] <= end:
                out.append(step)
        return out[::-1]


class GilWatch(threading.Thread):
    """Where the other threads stood each time this one got the GIL late: a thread
    that sleeps 0.2 ms again and again waits for the GIL after each sleep, so a late
    wake names the code (a long C call in a worker) that held it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.held: collections.Counter[str] = collections.Counter()
        self.worst: dict[str, float] = {}

    def run(self) -> None:
        me, main = threading.get_ident(), threading.main_thread().ident
        while not self.stop.is_set():
            started = time.perf_counter()
            time.sleep(0.0002)
            late = time.perf_counter() - started - 0.0002
            if late < 0.002:
                continue
            for ident, top in sys._current_frames().items():
                if ident in (me, main):
                    continue
                where: list[str] = []
                frame: Any = top
                while frame is not None and len(where) < 3:
                    where.append(f"{os.path.basename(frame.f_code.co_filename)}:"
                                 f"{frame.f_lineno}({frame.f_code.co_name})")  # fmt: skip
                    frame = frame.f_back
                key = " < ".join(where)
                self.held[key] += 1
                self.worst[key] = max(self.worst.get(key, 0.0), late)


async def timer(probe: Probe, period: float, over: float,
                lags: list[float], late: list[tuple[float, str, list[Any]]]) -> None:  # fmt: skip
    while True:
        due = time.perf_counter() + period
        await trio.sleep(period)
        woke = time.perf_counter()
        lag = woke - due
        lags.append(lag)
        if lag > over and len(late) < 200:
            late.append((lag, probe.phase, probe.between(due, woke)))


async def routers(feed: int) -> None:
    """The routers' process: the passive router and the feeder, their ports on the first
    line of stdout, then the prefixes the router took, a line each time it grows."""
    listener = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    feeder = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await feeder.bind(("127.0.0.2", 0))
    feeder.listen(1)
    print(listener.getsockname()[1], feeder.getsockname()[1], flush=True)
    got: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(passive_peer, listener, got)
        if feed:
            nursery.start_soon(reload_steps.feed_peer, feeder, feed)
        shown = 0
        while True:
            await trio.sleep(0.05)
            if sum(got) != shown:
                shown = sum(got)
                print(shown, flush=True)


async def main(args: argparse.Namespace, probe: Probe, lags: list[float],
               late: list[tuple[float, str, list[Any]]]) -> None:  # fmt: skip
    directory = Path(tempfile.mkdtemp(prefix="loop-batches-"))
    (directory / "flag").touch()
    path = directory / "speaker.toml"
    churn = range(args.services - 1 - args.churn, args.services - 1)
    async with trio.open_nursery() as nursery:
        process = await nursery.start(functools.partial(
            trio.run_process, [*NORMAL, sys.executable, "-m", "bench.loop_batches", "--routers",
                               str(args.feed)], stdout=subprocess.PIPE, check=False))  # fmt: skip
        lines = line_reader(process.stdout)
        port, feed_port = (int(x) for x in (await anext(lines)).split())
        texts = [reload_steps.config_text(directory, port, args.services, r,
                                          feed_port if args.feed else None)
                 for r in (range(0), churn)]  # fmt: skip
        path.write_text(texts[0])
        speaker = Speaker(derive(loads_config(texts[0])), config_path=str(path))
        gc.collect()
        gcpause.freeze()  # as `speaker run` does
        trio.lowlevel.add_instrument(probe)
        nursery.start_soon(timer, probe, args.period, args.over, lags, late, name="probe timer")
        await nursery.start(functools.partial(speaker.run, handle_signals=False))
        control = directory / "control.sock"
        await nursery.start(ControlServer(speaker, control).serve)
        nursery.start_soon(reload_steps.scrapes, SpeakerCollector(speaker), name="metrics scrape")
        nursery.start_soon(reload_steps.socket_shows, control)
        started = time.monotonic()
        with trio.fail_after(120):
            async for line in lines:
                if int(line) >= args.services:
                    break
        print(f"full table in {time.monotonic() - started:.2f} s")
        nursery.start_soon(drain, lines)

        async def reload() -> str:
            await socket_client(control, "reload")
            return "over the control socket"

        await reload_steps.reload_rounds(args.rounds, path, texts, directory / "flag",
                                         probe=probe, reload=reload)  # fmt: skip
        trio.lowlevel.remove_instrument(probe)
        await speaker.shutdown()
        nursery.cancel_scope.cancel()


#: Other processes at the normal policy when this one runs under a real-time one
#: (``chrt -f 50 python -m bench.loop_batches``, as ``realtime_priority = 50`` runs).
NORMAL = ["chrt", "-o", "0"]


async def socket_client(path: Path, what: str) -> None:
    await trio.run_process([*NORMAL, sys.executable, "-c", reload_steps._CLIENT, str(path), what])


async def line_reader(stream: Any) -> Any:
    buffer = b""
    while True:
        while b"\n" not in buffer:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            buffer += chunk
        line, _, buffer = buffer.partition(b"\n")
        yield line.decode()


async def drain(lines: Any) -> None:
    async for _ in lines:
        pass


def run(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=65_536)
    ap.add_argument("--churn", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--feed", type=int, default=0)
    ap.add_argument("--period", type=float, default=0.01)
    ap.add_argument("--over", type=float, default=0.003, help="explain wakes later than this")
    ap.add_argument("--show", type=int, default=8)
    ap.add_argument("--gil", action="store_true", help="name what held the GIL (perturbs)")
    ap.add_argument("--routers", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.routers is not None:
        trio.run(routers, args.routers)
        return 0
    reload_steps.socket_client = socket_client  # (socket_shows calls it too)
    if os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR):
        # as speaker.daemon does under realtime_priority: workers at the normal policy
        realtime.apply(os.sched_getparam(0).sched_priority)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    probe = Probe()
    lags: list[float] = []
    late: list[tuple[float, str, list[Any]]] = []

    async def monitored() -> None:
        # as speaker.daemon runs the speaker: the loop monitor (and its real-time guard)
        with LoopMonitor(guard=realtime.GUARD).installed() as monitor:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(monitor.run)
                await main(args, probe, lags, late)
                nursery.cancel_scope.cancel()
        print(f"loop monitor: {monitor.status()}")

    watch = GilWatch()
    if args.gil:
        watch.start()
    trio.run(monitored)
    watch.stop.set()
    if args.gil:
        print("\nthe GIL came late (over 2 ms) while other threads stood at:")
        for key, count in watch.held.most_common(12):
            print(f"  {count:4} x, worst {watch.worst[key] * 1000:6.2f} ms  {key}")
    lags.sort()
    n = len(lags)
    print(f"\n{n} wakes of a {args.period * 1000:g} ms timer: lag p50 {lags[n // 2] * 1000:.2f}"
          f" ms, p99 {lags[int(n * 0.99)] * 1000:.2f}, p99.9 {lags[int(n * 0.999)] * 1000:.2f},"
          f" max {lags[-1] * 1000:.2f}; over 5 ms: {sum(x > 0.005 for x in lags)},"
          f" over {args.over * 1000:g} ms: {sum(x > args.over for x in lags)}")  # fmt: skip
    for lag, phase, steps in sorted(late, key=lambda x: -x[0])[: args.show]:
        passes = sum(1 for s in steps if s[1] < 0)
        print(f"\n  {lag * 1000:.2f} ms late ({phase}); {passes} loop passes:")
        for _start, wall, cpu, name in steps:
            if wall < 0:
                print("    -- pass")
            elif wall > 0.0002:
                print(f"    {wall * 1000:6.2f} ms wall {cpu * 1000:6.2f} cpu  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
