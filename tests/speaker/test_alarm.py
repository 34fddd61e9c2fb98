"""speaker.alarm: the sleep that BFD's and BGP's session tasks re-arm after every
core call (virtual time)."""

from __future__ import annotations

import math

import trio
import trio.testing

from speaker.alarm import Alarm


async def test_sleeps_until_the_deadline_or_for_ever(
    autojump_clock: trio.testing.MockClock,
) -> None:
    alarm = Alarm()
    start = trio.current_time()
    await alarm.sleep_until(start + 2.5)
    assert trio.current_time() - start == 2.5
    with trio.move_on_after(100):
        await alarm.sleep_until(None)
    assert trio.current_time() - start == 102.5


async def test_a_kick_wakes_the_sleeper_at_once(autojump_clock: trio.testing.MockClock) -> None:
    alarm = Alarm()
    woke: list[float] = []

    async def sleeper() -> None:
        await alarm.sleep_until(trio.current_time() + 60)
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await trio.sleep(1)
        assert alarm.deadline == 60
        alarm.kick()
        assert alarm.deadline == -math.inf
    assert woke == [1]
    assert alarm.deadline is None  # awake


async def test_a_kick_while_awake_is_not_lost(autojump_clock: trio.testing.MockClock) -> None:
    alarm = Alarm()
    alarm.kick()  # e.g. input arrived while the task was sending
    start = trio.current_time()
    await alarm.sleep_until(start + 60)
    assert trio.current_time() == start  # returned at once
    await alarm.sleep_until(start + 60)  # the kick is used up: sleeps now
    assert trio.current_time() == start + 60
