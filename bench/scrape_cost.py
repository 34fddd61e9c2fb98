"""What a metrics scrape costs, by number of services (in-process, no lab).

    python -m bench.scrape_cost [--sizes 4096,65536] [--scrapes 20]

For each size: a :class:`speaker.app.Speaker` with that many ``[[services]]`` (one
/32 each, as ``bench.scale_product`` configures it) and one peer, an in-process
passive BGP router on loopback (``bench.route_steps._peer``), Established and holding
every route. Then ``--scrapes`` idle scrapes (``SpeakerCollector.scrape_pieces``, as
the HTTP server sends them), each timed in wall and thread CPU time, with a Trio
Instrument recording the longest step (thread CPU time); then one scrape after one
service's health changed (its route withdrawn: what the announced services are
derived from changed). The heap is frozen and collection paused as ``speaker run``
and the server do (``speaker.gcpause``). Runs against whatever ``speaker`` is on
``PYTHONPATH``: run this file as a script with ``PYTHONPATH=<main checkout>`` for the
"before" figures.
"""

from __future__ import annotations

import argparse
import functools
import gc
import ipaddress
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from bench.common import LongestStep
from bench.route_steps import _peer
from protocols.bgp import State
from speaker.app import Speaker
from speaker.config import loads_config
from speaker.metrics import SpeakerCollector
from speaker.plan import derive

POOL = ipaddress.IPv4Network("198.19.0.0/16")


def config_text(state_dir: Path, port: int, services: int) -> str:
    base = int(POOL.network_address)
    body = "".join(
        f'[[services]]\nname = "s{i}"\naddress = "{ipaddress.IPv4Address(base + i)}"\n'
        for i in range(services)
    )
    return (
        f'[speaker]\nmy_asn = 64513\nrouter_id = "198.18.0.1"\nnode_name = "n"\n'
        f'state_file = "{state_dir}/state.json"\n'
        f'[[peers]]\nname = "r"\npeer_address = "127.0.0.1"\npeer_port = {port}\n'
        f'peer_asn = 64512\nconnect_time = "1s"\n'
        f'[[pools]]\nname = "vips"\naddresses = ["{POOL}"]\n'
        '[[advertisements]]\nname = "to-r"\n' + body
    )


async def timed_scrape(collector: SpeakerCollector) -> tuple[float, float, float]:
    """(wall s, CPU s, longest step CPU s) of one scrape in a task of its own (the
    longest step of any task meanwhile)."""
    steps = LongestStep()
    trio.lowlevel.add_instrument(steps)
    try:
        wall, cpu = time.perf_counter(), time.thread_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collector.scrape_pieces, name="scrape")
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    finally:
        trio.lowlevel.remove_instrument(steps)
    if steps.longest > 0.002:
        print(f"  longest step {steps.longest * 1000:.2f} ms in {steps.task}", file=sys.stderr)
    return wall, cpu, steps.longest


async def measure(size: int, scrapes: int) -> dict[str, float]:
    listener = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    got: list[int] = []
    with tempfile.TemporaryDirectory() as state_dir:
        config = loads_config(config_text(Path(state_dir), listener.getsockname()[1], size))
        speaker = Speaker(derive(config))
        gc.collect()
        gc.freeze()  # as speaker run does once started
        gc.disable()  # as the server does around a scrape (speaker.gcpause)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_peer, listener, got)
                await nursery.start(functools.partial(speaker.run, handle_signals=False))
                runner = speaker.peers["r"]
                while runner.bgp is None or runner.bgp.state is not State.ESTABLISHED:
                    await trio.sleep(0.05)
                await runner.bgp.wait_synchronised()
                while sum(got) < size:
                    await trio.sleep(0.05)
                collector = SpeakerCollector(speaker)
                first = await timed_scrape(collector)  # builds the per-config tables
                text = (await collector.scrape()).decode()
                assert f'speaker_services{{state="announced"}} {float(size)}' in text, text[-600:]
                idle = [await timed_scrape(collector) for _ in range(scrapes)]
                # One service's health changes: its route is withdrawn.
                speaker.healthy.discard("s1")
                speaker._push_routes("s1")
                await runner.bgp.wait_synchronised()
                changed = await timed_scrape(collector)
                text = (await collector.scrape()).decode()
                assert f'speaker_services{{state="announced"}} {float(size - 1)}' in text
                await speaker.shutdown()
                nursery.cancel_scope.cancel()
        finally:
            gc.enable()
            gc.unfreeze()
            listener.close()
    return {
        "first_wall": first[0],
        "first_step": first[2],
        "idle_wall_p50": statistics.median(w for w, _, _ in idle),
        "idle_wall_max": max(w for w, _, _ in idle),
        "idle_cpu_p50": statistics.median(c for _, c, _ in idle),
        "idle_step_max": max(s for _, _, s in idle),
        "changed_wall": changed[0],
        "changed_cpu": changed[1],
        "changed_step": changed[2],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scrape_cost", description=__doc__)
    ap.add_argument("--sizes", default="4096,65536")
    ap.add_argument("--scrapes", type=int, default=20)
    args = ap.parse_args(argv)
    print(
        "| services | first scrape: wall / longest step ms | idle scrape wall p50 / max ms"
        " | idle CPU p50 ms"
        " | idle longest step ms | after one change: wall / CPU / longest step ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        r = trio.run(measure, size, args.scrapes)
        ms = {k: v * 1000 for k, v in r.items()}
        print(f"| {size} | {ms['first_wall']:.1f} / {ms['first_step']:.2f} |"
              f" {ms['idle_wall_p50']:.2f} / {ms['idle_wall_max']:.2f} |"
              f" {ms['idle_cpu_p50']:.2f} | {ms['idle_step_max']:.2f}"
              f" | {ms['changed_wall']:.1f} / {ms['changed_cpu']:.1f} / "
              f"{ms['changed_step']:.2f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
