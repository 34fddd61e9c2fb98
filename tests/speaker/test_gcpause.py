"""speaker.gcpause: overlapping pauses keep the collector off until the last ends."""

from __future__ import annotations

import gc
import threading

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
