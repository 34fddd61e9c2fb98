"""The product's longest loop steps at scale, in-process, with what each one was doing.

    python -m bench.reload_steps [--services 65536] [--churn 10000] [--rounds 4]

A :class:`speaker.app.Speaker` with one ``[[services]]`` entry per /32 (one pool, one
advertisement, one health check that flaps) sends its table to a passive BGP peer
on loopback (an in-process :class:`protocols.bgp.Connection`; its own steps are not
counted), then reloads ``--rounds`` times, removing and adding back ``--churn``
services, with the health check flapping between reloads. Every task step is timed
in thread CPU time (the host's scheduling does not count), and a sampling thread
records the main thread's stack every 0.2 ms, so each step over 2 ms is printed with
where it ran and any garbage collection inside it, and bracketed by where the task
resumed and where it stopped (exact, where the sampler's view is biased to the
points at which threads swap the GIL). This is how the reload's long steps of
issue 11 were found (docs/architecture.md, "Latency budget"). No lab, no root;
prints, writes nothing.

``--socket`` serves the control socket for real: ``show`` and ``reload`` come from a
client process, as ``speaker show`` sends them. ``--feed N``: a second peer sends the
speaker N routes (the lab's 500,000-route feeder, in-process).
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import ipaddress
import os
import random
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from bench.route_steps import _peer as passive_peer
from protocols.bgp import IPV4_UNICAST, Connection, SessionConfig
from protocols.bgp.aspath import AsPath
from protocols.bgp.attributes import NextHop, OriginAttribute
from protocols.bgp.fsm import State
from protocols.bgp.update import UpdateMessage
from speaker import gcpause
from speaker.app import GIL_SWITCH_INTERVAL, Speaker
from speaker.config import loads_config
from speaker.control import ControlServer, encode_reply, handle
from speaker.looplag import Slicer
from speaker.metrics import SpeakerCollector
from speaker.plan import derive

SLOW = 0.002
_MAIN = threading.main_thread().ident
_SKIP = ("_run.py", "_traps.py", "_ki.py", "_instrumentation.py", "reload_steps.py")


def config_text(
    directory: Path, port: int, services: int, removed: range, feed_port: int | None = None
) -> str:
    parts = [
        f'[speaker]\nmy_asn = 64513\nrouter_id = "198.18.0.1"\nnode_name = "n1"\n'
        f'state_file = "{directory / "state.json"}"\n'
        '[[pools]]\nname = "vips"\naddresses = ["198.19.0.0/16"]\n'
        '[[advertisements]]\nname = "a"\n'
        f'[[peers]]\nname = "p0"\npeer_address = "127.0.0.1"\npeer_port = {port}\n'
        "peer_asn = 64512\n"
    ]
    if feed_port is not None:
        parts.append(f'[[peers]]\nname = "feed"\npeer_address = "127.0.0.2"\n'
                     f"peer_port = {feed_port}\npeer_asn = 64514\n")  # fmt: skip
    for i in range(services - 1):
        if i not in removed:
            parts.append(f'[[services]]\nname = "s{i}"\naddress = "198.19.{i // 256}.{i % 256}"\n')
    i = services - 1
    parts.append(
        f'[[services]]\nname = "flap"\naddress = "198.19.{i // 256}.{i % 256}"\n'
        f'health = {{ exec = ["test", "-e", "{directory / "flag"}"], interval = "1s", '
        'timeout = "1s", rise = 1, fall = 1 }\n'
    )
    return "".join(parts)


class Sampler(threading.Thread):
    """The main thread's stack every 0.2 ms, counted per task step."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.step = 0
        self.samples: dict[int, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            time.sleep(0.0002)
            frame = sys._current_frames().get(_MAIN or 0)
            where: list[str] = []
            while frame is not None and len(where) < 6:
                name = os.path.basename(frame.f_code.co_filename)
                if not name.startswith(_SKIP):
                    where.append(f"{name}:{frame.f_lineno}({frame.f_code.co_name})")
                frame = frame.f_back
            self.samples[self.step][" < ".join(where)] += 1


def suspended_at(task: trio.lowlevel.Task) -> str:
    """Where ``task`` waits: the innermost frames of its coroutine chain, ours only."""
    where: list[str] = []
    coro: Any = task.coro
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        name = os.path.basename(frame.f_code.co_filename)
        if not name.startswith(_SKIP):
            where.append(f"{name}:{frame.f_lineno}({frame.f_code.co_name})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " > ".join(where[-4:])


class Steps(trio.abc.Instrument):
    """Each task step's thread CPU time; the slow ones with their phase and task."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.phase = "start"
        self.longest: dict[str, tuple[float, str]] = {}
        self.slow: list[tuple[float, str, str, int]] = []
        self._started: dict[trio.lowlevel.Task, float] = {}
        self.collections: dict[int, tuple[float, int]] = {}
        self._gc_started = 0.0
        self._resumed_at = ""
        self.brackets: dict[int, tuple[str, str]] = {}
        self.walls: dict[int, float] = {}
        self._wall = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.sampler.step += 1
        self._resumed_at = suspended_at(task)
        self._wall = time.perf_counter()
        self._started[task] = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        took = time.thread_time() - self._started.pop(task, time.thread_time())
        wall = time.perf_counter() - self._wall
        if task.name.startswith("__main__.") or task.name in ("passive_peer", "feed_peer"):
            return  # the benchmark's own tasks
        if took > self.longest.get(self.phase, (0.0, ""))[0]:
            self.longest[self.phase] = (took, task.name)
        if took > SLOW:
            self.slow.append((took, self.phase, task.name, self.sampler.step))
            # Where the task resumed and where it stopped bracket the slow code
            # exactly (the sampler's view is biased to where threads swap the GIL).
            self.brackets[self.sampler.step] = (self._resumed_at, suspended_at(task))
            self.walls[self.sampler.step] = wall

    def gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.thread_time()
            return
        took = time.thread_time() - self._gc_started
        if took > 0.001:
            self.collections[self.sampler.step] = (took, info["generation"])


async def shows(speaker: Speaker) -> None:
    """``show routes`` and ``show bgp neighbor p0`` every 5 s, as the socket serves them."""
    while True:
        await trio.sleep(5)
        for request in ({"command": "show routes"},
                        {"command": "show bgp neighbor", "name": "p0"}):  # fmt: skip
            with gcpause.paused(), speaker.readers.reading():  # as ControlServer._reply does
                reply = await handle(speaker, request)
                await encode_reply(reply)
                await Slicer().release(reply)


async def feed_peer(listener: trio.socket.SocketType, routes: int) -> None:
    """A second router that sends the speaker ``routes`` /32s (cycling through
    198.18.0.0/15, so a route seen again replaces itself), 512 to an UPDATE, as the
    lab's FRR feeder does with its IPv6 table; it reads what the speaker sends."""
    core = Connection(
        SessionConfig(local_asn=64514, peer_asn=None, passive=True, extended_message=False,
                      router_id=ipaddress.IPv4Address("198.18.0.3"), families=(IPV4_UNICAST,),
                      hold_time=90),
        rng=random.Random(2),
    )  # fmt: skip
    attributes = (OriginAttribute(value=0), AsPath.sequence(64514),
                  NextHop(address=ipaddress.IPv4Address("127.0.0.2")))  # fmt: skip
    base = int(ipaddress.IPv4Address("198.18.0.0"))
    sock, _ = await listener.accept()
    now = trio.current_time()
    core.start(now)
    core.connection_made(now)
    sent_routes = 0
    with sock:
        while True:
            out = core.data_to_send()
            while out:
                sent = await sock.send(out)
                out = out[sent:]
            if core.state is State.ESTABLISHED and sent_routes < routes:
                batch = tuple(
                    ipaddress.IPv4Network(base + (sent_routes + i) % (1 << 17))
                    for i in range(min(512, routes - sent_routes))
                )
                core.send_update(UpdateMessage(attributes=attributes, nlri=batch))
                sent_routes += len(batch)
                with trio.move_on_after(0):
                    data = await sock.recv(65536)
                    if not data:
                        return
                    core.receive_data(data, trio.current_time())
                continue
            data = await sock.recv(65536)
            if not data:
                return
            core.receive_data(data, trio.current_time())


#: The client ``speaker show`` is: a process of its own on the control socket.
_CLIENT = """
import sys
from speaker.control import request
for command, args in ([(sys.argv[2], {})] if sys.argv[2] == "reload" else
                      [("show routes", {}), ("show bgp neighbor", {"name": "p0"})]):
    request(sys.argv[1], command, timeout=120, **args)
"""


async def socket_client(path: Path, what: str) -> None:
    await trio.run_process([sys.executable, "-c", _CLIENT, str(path), what])


async def socket_shows(path: Path) -> None:
    """``show routes`` and ``show bgp neighbor p0`` every 5 s from another process."""
    while True:
        await trio.sleep(5)
        await socket_client(path, "show")


async def scrapes(collector: SpeakerCollector) -> None:
    """A metrics scrape every second, as the HTTP server runs it."""
    while True:
        await trio.sleep(1)
        with gcpause.paused(), collector.speaker.readers.reading():  # as the HTTP server does
            await collector.scrape_pieces()


async def main(args: argparse.Namespace, steps: Steps) -> None:
    directory = Path(tempfile.mkdtemp(prefix="reload-steps-"))
    (directory / "flag").touch()
    listener = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    path = directory / "speaker.toml"
    churn = range(args.services - 1 - args.churn, args.services - 1)
    feed_port: int | None = None
    if args.feed:
        feeder = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await feeder.bind(("127.0.0.2", 0))
        feeder.listen(1)
        feed_port = feeder.getsockname()[1]
    texts = [config_text(directory, port, args.services, r, feed_port) for r in (range(0), churn)]
    path.write_text(texts[0])
    speaker = Speaker(derive(loads_config(texts[0])), config_path=str(path))
    gc.collect()
    gcpause.freeze()  # as `speaker run` does
    trio.lowlevel.add_instrument(steps)
    got: list[int] = []  # prefixes per UPDATE the router took
    async with trio.open_nursery() as nursery:
        nursery.start_soon(passive_peer, listener, got, name="passive_peer")
        if args.feed:
            nursery.start_soon(feed_peer, feeder, args.feed, name="feed_peer")
        await nursery.start(functools.partial(speaker.run, handle_signals=False))
        control = directory / "control.sock"
        if args.socket:
            await nursery.start(ControlServer(speaker, control).serve)
        if args.scrape:
            nursery.start_soon(scrapes, SpeakerCollector(speaker), name="metrics scrape")
        if args.reads and args.socket:
            nursery.start_soon(socket_shows, control)
        elif args.reads:
            nursery.start_soon(shows, speaker, name="control connection")
        started = time.monotonic()
        with trio.fail_after(120):
            while sum(got) < args.services:
                await trio.sleep(0.05)
        print(f"full table: {sum(got):,} prefixes in {time.monotonic() - started:.2f} s")

        async def reload() -> str:
            if args.socket:
                await socket_client(control, "reload")
                return "over the control socket"
            return (await speaker.reload_file()).summary()

        await reload_rounds(
            args.rounds, path, texts, directory / "flag", probe=steps, reload=reload
        )
        trio.lowlevel.remove_instrument(steps)
        await speaker.shutdown()
        nursery.cancel_scope.cancel()


async def reload_rounds(rounds: int, path: Path, texts: list[str], flag: Path, *, probe: Any,
                        reload: Callable[[], Awaitable[str]]) -> None:  # fmt: skip
    """``rounds`` reloads, each of the two ``texts`` in turn written to ``path``, then
    the health check's ``flag`` flipped; ``probe.phase`` says which is under way."""
    for round_ in range(rounds):
        removing = round_ % 2 == 0
        probe.phase = "reload -churn" if removing else "reload +churn"
        await trio.to_thread.run_sync(path.write_text, texts[1 if removing else 0])
        started = time.monotonic()
        summary = await reload()
        print(f"{probe.phase}: {summary} in {time.monotonic() - started:.2f} s")
        probe.phase = "after the reload"
        await trio.sleep(1.5)
        probe.phase = "health flap"
        if flag.exists():
            flag.unlink()
        else:
            flag.touch()
        await trio.sleep(1.5)


def run(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=65_536)
    ap.add_argument("--churn", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--scrape", action="store_true", help="a metrics scrape every second")
    ap.add_argument("--reads", action="store_true", help="show routes + neighbor every 5 s")
    ap.add_argument(
        "--socket",
        action="store_true",
        help="serve the control socket; reads and reloads come from a client process",
    )
    ap.add_argument("--feed", type=int, default=0, help="routes a second peer sends the speaker")
    ap.add_argument("--show", type=int, default=12, help="slow steps to print")
    args = ap.parse_args(argv)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)  # as `speaker run` does
    sampler = Sampler()
    steps = Steps(sampler)
    gc.callbacks.append(steps.gc_callback)
    sampler.start()
    try:
        trio.run(main, args, steps)
    finally:
        sampler.stop.set()
        gc.callbacks.remove(steps.gc_callback)
    print(f"\nlongest task step by phase (thread CPU time), {args.services:,} services:")
    for phase, (took, task) in steps.longest.items():
        print(f"  {phase:18} {took * 1000:6.2f} ms  in {task}")
    print(f"\nsteps over {SLOW * 1000:g} ms: {len(steps.slow)}; the longest, with where they ran:")
    for took, phase, task, step in sorted(steps.slow, reverse=True)[: args.show]:
        print(f"  {took * 1000:6.2f} ms  {phase}, {task} (wall {steps.walls[step] * 1000:.2f} ms)")
        if step in steps.collections:
            gc_took, generation = steps.collections[step]
            print(f"           of which a generation-{generation} collection: "
                  f"{gc_took * 1000:.2f} ms")  # fmt: skip
        if step in steps.brackets:
            resumed, stopped = steps.brackets[step]
            print(f"           from {resumed}\n           to   {stopped}")
        for where, count in steps.sampler.samples[step].most_common(2):
            print(f"           {count} x {where}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
