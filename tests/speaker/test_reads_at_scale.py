"""Operators' reads never hold the loop: a metrics scrape, ``show routes`` and
``show bgp summary`` at 65,536 routes and at 1,000 peers, each with no task step over
a generous 10 ms (the budget is 2 ms; figures belong in bench/, this is a regression
bound).

Steps are timed in thread CPU time (``time.thread_time``): the machine the tests run
on is shared, and a step the kernel preempted is not a step that did more work. The
cyclic garbage collector is frozen and paused while measuring: a full collection at
65,536 routes takes 20-170 ms in whatever step allocated last, whoever it is; it is a
process-wide matter (the loop monitor reports it as "gc generation 2"), not one of
these builders.
"""

from __future__ import annotations

import functools
import gc
import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from bench.common import LongestStep
from speaker.app import Speaker
from speaker.bfd.runtime import BfdEndpoint
from speaker.config import loads_config
from speaker.control import Slicer, encode_reply, handle
from speaker.metrics import SpeakerCollector
from speaker.plan import derive
from tests.helpers.running import free_port

BOUND = 0.010


def config_text(
    tmp_path: Path, *, peers: int, pool: str, bfd: bool = False, services: int = 1
) -> str:
    port = free_port()  # nothing listens: every session stays in Connect/Active
    text = f"""
[speaker]
my_asn = 64513
router_id = "10.0.0.1"
node_name = "n1"
state_file = "{tmp_path / "state.json"}"
allocation = "node-local"
[[bfd_profiles]]
name = "fast"
transmit_interval = 50
receive_interval = 50
[[pools]]
name = "all"
addresses = ["{pool}"]
announce_all = true
[[advertisements]]
name = "to-p0"
peers = ["p0"]
"""
    base = int(ipaddress.ip_network(pool).network_address)
    for i in range(services):
        address = ipaddress.IPv4Address(base + i)
        name = "web" if i == 0 else f"s{i}"
        text += f'[[services]]\nname = "{name}"\naddress = "{address}"\n'
    for i in range(peers):
        text += (
            f'[[peers]]\nname = "p{i}"\npeer_address = "127.1.{i // 250}.{1 + i % 250}"\n'
            f'peer_port = {port}\npeer_asn = 64512\nconnect_time = "60s"\n'
            + ('bfd_profile = "fast"\nbfd_strict = true\n' if bfd else "")
        )
    return text


@asynccontextmanager
async def speaker_at(
    tmp_path: Path, *, peers: int, pool: str, bfd: bool = False, services: int = 1
) -> AsyncIterator[Speaker]:
    """``bfd``: every peer has strict BFD (``bfd_strict``) towards a port nobody
    listens on (BFD stays Down, so no BGP session ever starts)."""
    endpoint = None
    if bfd:
        mine, theirs = free_port(), free_port()
        endpoint = BfdEndpoint(ports=(mine, mine + 1), peer_ports=(theirs, theirs + 1))
    config = loads_config(config_text(tmp_path, peers=peers, pool=pool, bfd=bfd, services=services))
    speaker = Speaker(derive(config), bfd_endpoint=endpoint)
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(speaker.run, handle_signals=False))
        await trio.sleep(0.5)  # every session built and its first connect refused
        try:
            yield speaker
        finally:
            await speaker.shutdown()
            nursery.cancel_scope.cancel()


async def measured(work: Callable[[], Awaitable[Any]]) -> tuple[float, float, str]:
    """(wall seconds, longest step in CPU seconds, its task) of ``work`` run in a task
    of its own while the instrument watches."""
    gc.collect()
    gc.freeze()
    gc.disable()
    steps = LongestStep()
    trio.lowlevel.add_instrument(steps)
    try:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(work, name="read")
        elapsed = time.perf_counter() - start
    finally:
        trio.lowlevel.remove_instrument(steps)
        gc.enable()
        gc.unfreeze()
    return elapsed, steps.longest, steps.task


async def show(speaker: Speaker, command: str) -> None:
    reply = await handle(speaker, {"command": command})
    assert reply["ok"]
    await encode_reply(reply)
    await Slicer().release(reply)


@pytest.mark.parametrize(
    ("peers", "pool", "routes", "services"),
    [
        (1, "198.18.0.0/20", 4096, 1),
        (1, "198.18.0.0/16", 65536, 1),
        (1000, "198.18.0.0/24", 256, 1),
        (1, "198.18.0.0/16", 65536, 10000),
    ],
    ids=["4k-routes", "65k-routes", "1000-peers", "10k-services"],
)
async def test_reads_never_hold_the_loop(
    tmp_path: Path, peers: int, pool: str, routes: int, services: int
) -> None:
    async with speaker_at(tmp_path, peers=peers, pool=pool, services=services) as speaker:
        bgp = speaker.peers["p0"].bgp
        assert bgp is not None and len(bgp.rib_out.desired) == routes
        collector = SpeakerCollector(speaker)
        reads: dict[str, Callable[[], Awaitable[Any]]] = {
            "scrape": collector.scrape_pieces,  # as the server sends it
            "show routes": functools.partial(show, speaker, "show routes"),
            "show bgp summary": functools.partial(show, speaker, "show bgp summary"),
            "show bgp neighbors": functools.partial(show, speaker, "show bgp neighbors"),
            "show bfd peers": functools.partial(show, speaker, "show bfd peers"),
            "show config": functools.partial(show, speaker, "show config"),
        }
        for name, work in reads.items():
            elapsed, longest, task = await measured(work)
            print(f"{peers} peers, {routes} routes, {services} services: {name}"
                  f" {elapsed * 1000:.1f} ms, longest step {longest * 1000:.2f} ms"
                  f" ({task})")  # fmt: skip
            assert longest < BOUND, (name, longest, task)
        text = (await collector.scrape()).decode()
        port = speaker.peers["p0"].plan.bgp.peer_port
        assert (f'metallb_bgp_announced_prefixes_total{{peer="127.1.0.1:{port}",vrf="default"}}'
                " 0.0") in text  # fmt: skip
        assert text.count("metallb_bgp_session_up{") == peers


async def test_show_routes_of_a_peer_waiting_for_bfd_computes_no_routes(tmp_path: Path) -> None:
    async with speaker_at(tmp_path, peers=1, pool="198.18.0.0/16", bfd=True) as speaker:
        assert speaker.peers["p0"].bgp is None  # waiting for BFD
        holder: dict[str, Any] = {}

        async def read() -> None:
            holder["reply"] = await handle(speaker, {"command": "show routes"})

        _, longest, task = await measured(read)
        print(f"show routes, 65536 routes, BFD down: longest step {longest * 1000:.2f} ms")
        assert longest < BOUND, (longest, task)
    row = holder["reply"]["data"]["peers"][0]
    assert row["routesListed"] is False and row["announced"].count == 0
    assert row["bfdStatus"] == "down"
    assert row["services"] == [{"service": "web", "address": "198.18.0.0", "pool": "all",
                                "prefix": "198.18.0.0/32", "detail": "announce_all pool",
                                "reason": "bfd-down", "drained": False}]  # fmt: skip


@pytest.mark.parametrize("services", [3, 1001])
async def test_per_service_series_only_up_to_the_limit(tmp_path: Path, services: int) -> None:
    """``metrics.service_series_limit`` (1000): above it a scrape carries the counts
    only, not two series per service."""
    async with speaker_at(tmp_path, peers=1, pool="198.18.0.0/20", services=services) as speaker:
        text = (await SpeakerCollector(speaker).scrape()).decode()
    assert f'speaker_services{{state="configured"}} {float(services)}' in text
    assert f'speaker_services{{state="healthy"}} {float(services)}' in text
    assert 'speaker_services{state="announced"} 0.0' in text  # nothing is established
    per_service = text.count("speaker_service_healthy{")
    assert per_service == (services if services <= 1000 else 0)
