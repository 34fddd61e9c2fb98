"""speaker.gcpause: overlapping pauses keep the collector off until the last ends."""

from __future__ import annotations

import gc
import threading
import time

from speaker import gcpause
from speaker.gcpause import paused


def test_overlapping_pauses_resume_collection_once_the_last_ends() -> None:
    assert gc.isenabled()
    first, second = paused(), paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # not nested: the first ends before the second
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_pause_in_a_thread_and_one_on_the_loop_share_the_count() -> None:
    inside, release = threading.Event(), threading.Event()

    def worker() -> None:
        with paused():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=worker)
    thread.start()
    inside.wait(5)
    with paused():
        release.set()
        thread.join(5)
        assert not gc.isenabled()  # the thread's pause ended, ours has not
    assert gc.isenabled()


def test_collection_stays_off_if_it_was_off_before() -> None:
    gc.disable()
    try:
        with paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_a_pause_kept_does_not_wait_for_the_next_young_collection() -> None:
    # A scrape after a reload rebuilds 65,536-entry tables during its pause: left in
    # the young generations, the first young collection after it scanned them all in
    # one step (8-19 ms in the lab). They go to the oldest generation (or the frozen
    # heap) when the pause ends.
    gc.collect()
    with paused():
        kept = [[i] for i in range(50_000)]
    young = {id(o) for g in (0, 1) for o in gc.get_objects(generation=g)}
    assert id(kept[0]) not in young and id(kept[-1]) not in young
    gc.unfreeze()  # back as it was: this test process keeps no frozen heap
    del kept


def test_a_small_pause_leaves_the_generations_alone() -> None:
    gc.collect()
    with paused():
        kept = [[i] for i in range(100)]
    young = {id(o) for g in (0, 1) for o in gc.get_objects(generation=g)}
    assert id(kept[0]) in young
    del kept


def test_a_long_pause_ages_survivors_the_count_does_not_see() -> None:
    old = [[i] for i in range(60_000)]  # tracked objects, aged out of the young generation
    gc.collect()
    with gcpause.paused():
        young = []
        while old:  # each older object freed takes one off the count
            old.pop()
            young.append([0])
        assert gc.get_count()[0] <= gcpause.YOUNG_SURVIVORS  # the count hides them
        time.sleep(gcpause.LONG_PAUSE)
    assert len(gc.get_objects(generation=0)) < 1_000  # 60,000 survivors aged
    assert len(young) == 60_000


def test_a_short_pause_with_few_survivors_leaves_them_young() -> None:
    gc.collect()
    with gcpause.paused():
        young = [[0] for _ in range(100)]
    assert any(o is young[0] for o in gc.get_objects(generation=0))
