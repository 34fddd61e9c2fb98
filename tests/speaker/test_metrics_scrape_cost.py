"""A scrape costs the series it emits, not the services behind them: which services
are announced is kept up to date from the changes the sessions' Adj-RIB-Outs log
(``AdjRibOut.changes``), derived from scratch only when everything may have changed;
and what it says is what a from-scratch derivation says."""

from __future__ import annotations

import functools
import re
from collections import deque
from pathlib import Path

import attrs
import trio
import trio.testing

from speaker.app import Speaker
from speaker.config import loads_config
from speaker.metrics import SpeakerCollector
from speaker.plan import derive
from tests.helpers.bgp_peer import Peer, peer_core, wait_for
from tests.helpers.configs import loopback_peer_config
from tests.helpers.metrics import value

ANNOUNCED = re.compile(r'^speaker_service_announced\{service="([^"]+)"\} 1\.0$', re.M)


async def announced(collector: SpeakerCollector) -> set[str]:
    return set(ANNOUNCED.findall((await collector.scrape()).decode()))


async def test_announced_services_follow_each_change_without_a_walk(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    peer = Peer(peer_core())
    port = await nursery.start(peer.serve)
    config = loads_config(loopback_peer_config(tmp_path, port, 50))
    healthy = {f"s{i}" for i in range(1, 41)}
    speaker = Speaker(attrs.evolve(derive(config, healthy=healthy), health={}))
    speaker.healthy = set(healthy)
    speaker._push_routes()
    await nursery.start(functools.partial(speaker.run, handle_signals=False))
    await wait_for(lambda: speaker.peers["r"].bgp is not None)
    bgp = speaker.peers["r"].bgp
    assert bgp is not None
    await bgp.wait_synchronised()
    await wait_for(lambda: len(peer.announced()) == 40)

    collector = SpeakerCollector(speaker)
    assert await announced(collector) == healthy
    assert collector.announced_computed == 1
    # Idle: nothing derived again, nothing looked at.
    text = (await collector.scrape()).decode()
    assert value(text, "speaker_services", state="announced") == 40
    assert (collector.announced_computed, collector.announced_updated) == (1, 0)

    # A health change and an override: those two services are looked at, no other.
    speaker.healthy.add("s41")
    speaker._push_routes("s41")
    speaker.set_override("s1", "withdraw")
    await bgp.wait_synchronised()
    now = await announced(collector)
    assert now == (healthy | {"s41"}) - {"s1"}
    assert (collector.announced_computed, collector.announced_updated) == (1, 2)
    assert now == await announced(SpeakerCollector(speaker))  # as derived from scratch

    # More changes than the Adj-RIB-Out's log holds: derived again, still right.
    bgp.rib_out.changes = deque(maxlen=2)
    for name in ("s2", "s3", "s4"):
        speaker.set_override(name, "withdraw")
    await bgp.wait_synchronised()
    now = await announced(collector)
    assert now == (healthy | {"s41"}) - {"s1", "s2", "s3", "s4"}
    assert collector.announced_computed == 2

    # A new route table (as a reload installs): everything may differ, derived again.
    speaker.derived = attrs.evolve(derive(config, healthy=speaker.announced_services()), health={})
    speaker._push_routes()
    await bgp.wait_synchronised()
    assert await announced(collector) == now
    assert collector.announced_computed == 3

    # The session goes down: nothing is announced.
    speaker.peers["r"].scope.cancel()
    await wait_for(lambda: speaker.peers["r"].bgp is None or speaker.peers["r"].bgp is not bgp)
    assert await announced(collector) == set()
