"""speaker.readers: the free of a replaced config waits for the readers that started
before the reload (a show reply or scrape holding parts of it), and only for those."""

from __future__ import annotations

import trio
import trio.testing

from speaker.readers import Readers


async def test_finished_waits_for_the_readers_of_that_generation_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    readers = Readers()
    done: list[float] = []
    release_old, release_new = trio.Event(), trio.Event()

    async def read(until: trio.Event) -> None:
        with readers.reading():
            await until.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, release_old)
        await trio.testing.wait_all_tasks_blocked()
        replaced = readers.replaced()  # a reload: generation 0 is the old config
        nursery.start_soon(read, release_new)  # a reader of the new config
        await trio.testing.wait_all_tasks_blocked()
        assert readers.active(replaced) == 1

        async def free() -> None:
            await readers.finished(replaced)
            done.append(trio.current_time())

        nursery.start_soon(free)
        await trio.sleep(5)
        assert done == [], "the old config's reader still runs"
        release_old.set()
        await trio.sleep(1)
        assert done == [5.0], "the new config's reader does not hold the old one's free"
        release_new.set()


async def test_finished_returns_at_once_without_readers() -> None:
    readers = Readers()
    with trio.fail_after(1):
        await readers.finished(readers.replaced())
