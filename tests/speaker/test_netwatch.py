"""speaker.netwatch against the kernel: a route change wakes the watchers. The route
is in a table of its own (250) on lo, in the benchmarking range, and removed after."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from speaker.netwatch import NetWatch

ROUTE = ["198.18.255.254/32", "dev", "lo", "table", "250"]


@pytest.fixture
def route_cleanup() -> Iterator[None]:
    yield None
    subprocess.run(["ip", "route", "del", *ROUTE], check=False, capture_output=True, timeout=5)


async def test_a_route_change_wakes_the_watchers(
    nursery: trio.Nursery, route_cleanup: None
) -> None:
    watch = NetWatch()
    await nursery.start(watch.run)
    if not watch.available:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root on Linux: the rtnetlink subscription must work")
        pytest.skip("no rtnetlink subscription here")
    seen = watch.generation
    with trio.move_on_after(0.5):  # nothing of ours changes meanwhile
        seen = await watch.wait_change(seen, 0.5)
    subprocess.run(["ip", "route", "add", *ROUTE], check=True, timeout=5)
    with trio.fail_after(5):
        now = await watch.wait_change(seen, 10)
    assert now > seen
    assert await watch.wait_change(seen, 10) == now  # already past seen: at once


async def test_without_a_subscription_watchers_poll(autojump_clock: trio.testing.MockClock) -> None:
    watch = NetWatch()  # not running: not available
    t0 = trio.current_time()
    assert await watch.wait_change(0, 2.0) == 0
    assert trio.current_time() - t0 == 2.0
