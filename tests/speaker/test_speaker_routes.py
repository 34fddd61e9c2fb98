"""The speaker hands its BGP sessions only what changed: one service's health or
override costs that service's routes (``update_routes``); a new route table (a
reload) goes to each session once as a whole (``set_routes``), then changes again."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing

from speaker.app import Speaker
from speaker.config import loads_config
from speaker.plan import derive
from tests.helpers.bgp_peer import Peer, peer_core, wait_for
from tests.helpers.configs import loopback_peer_config


async def test_health_changes_push_only_that_service(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    peer = Peer(peer_core())
    port = await nursery.start(peer.serve)
    config = loads_config(loopback_peer_config(tmp_path, port, 50))
    healthy = {f"s{i}" for i in range(1, 41)}
    # The checks themselves do not run: the test says which service is healthy.
    speaker = Speaker(attrs.evolve(derive(config, healthy=healthy), health={}))
    speaker.healthy = set(healthy)
    speaker._push_routes()  # no session yet: brings the table to these
    await nursery.start(functools.partial(speaker.run, handle_signals=False))
    await wait_for(lambda: speaker.peers["r"].bgp is not None)
    bgp = speaker.peers["r"].bgp
    assert bgp is not None
    await bgp.wait_synchronised()
    calls: list[tuple[str, int]] = []
    for name in ("set_routes", "update_routes"):
        method = getattr(bgp, name)

        def spy(routes: Any, _name: str = name, _method: Any = method) -> None:
            calls.append((_name, len(routes)))
            _method(routes)

        setattr(bgp, name, spy)
    await wait_for(lambda: len(peer.announced()) == 40)
    seen = len(peer.updates)

    # s41 passes its check: its route only.
    speaker.healthy.add("s41")
    speaker._push_routes("s41")
    # The operator withdraws s1: its route only.
    speaker.set_override("s1", "withdraw")
    await bgp.wait_synchronised()
    await wait_for(lambda: len(peer.updates) >= seen + 2)
    await trio.sleep(1)
    assert calls == [("update_routes", 1), ("update_routes", 1)]
    new = [u for _, u in peer.updates[seen:]]
    assert [str(p) for u in new for p in u.announced] == ["198.19.0.41/32"]
    assert [str(p) for u in new for p in u.withdrawn_prefixes] == ["198.19.0.1/32"]

    # A new table (as a reload hands over): once as a whole, then changes again.
    calls.clear()
    speaker.derived = attrs.evolve(derive(config, healthy=speaker.announced_services()), health={})
    speaker._push_routes()
    speaker.healthy.discard("s2")
    speaker._push_routes("s2")
    await bgp.wait_synchronised()
    await trio.sleep(1)
    assert calls == [("set_routes", 40), ("update_routes", 1)]
    assert sorted(str(p) for p in peer.announced()) == sorted(
        f"198.19.0.{i}/32" for i in range(3, 42)
    )
    speaker.peers["r"].scope.cancel()
