"""speaker.realtime: under a real-time policy the loop's thread keeps it and the
worker threads (a reload's load and derive) run at the normal policy, nice -20."""

from __future__ import annotations

import os
import threading

import pytest

from speaker import realtime


def _fifo_allowed() -> bool:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (AttributeError, PermissionError, OSError):
        return False
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return True


def test_normal_policy_is_described_as_none() -> None:
    assert realtime.describe() is None


def test_workers_drop_the_real_time_policy_the_loop_keeps() -> None:
    if not _fifo_allowed():
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: SCHED_FIFO must be allowed")
        pytest.skip("SCHED_FIFO needs root (CAP_SYS_NICE)")
    seen: dict[str, str | None] = {}

    def in_thread() -> None:
        seen["worker"] = realtime.describe()
        seen["worker nice"] = str(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    def untouched() -> None:
        seen["raw worker"] = realtime.describe()

    def loop_thread() -> None:
        # Threads of its own (Trio's worker cache may hold threads of earlier tests,
        # made at the normal policy): each made by this real-time thread.
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        seen["loop"] = realtime.describe()
        for target in (untouched, realtime.in_worker(in_thread)):
            worker = threading.Thread(target=target)
            worker.start()
            worker.join()
        seen["loop after"] = realtime.describe()

    # A thread of its own: the test process's main thread keeps its policy.
    thread = threading.Thread(target=loop_thread)
    thread.start()
    thread.join()
    assert seen["loop"] == "fifo 10" and seen["loop after"] == "fifo 10"
    assert seen["raw worker"] == "fifo 10", "Linux threads inherit their creator's policy"
    # Not real-time (one using a whole CPU is throttled, GIL held), but ahead of
    # normal processes.
    assert seen["worker"] is None and seen["worker nice"] == "-20"


def test_apply_sets_and_reverts_only_its_own_priority() -> None:
    if not _fifo_allowed():
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: SCHED_FIFO must be allowed")
        pytest.skip("SCHED_FIFO needs root (CAP_SYS_NICE)")
    seen: list[str | None] = []

    def loop_thread() -> None:
        assert realtime.apply(0) is None
        seen.append(realtime.describe())  # 0 leaves the normal policy alone
        assert realtime.apply(20) is None
        seen.append(realtime.describe())
        assert realtime.apply(0) is None  # a reload back to 0
        seen.append(realtime.describe())

    thread = threading.Thread(target=loop_thread)
    thread.start()
    thread.join()
    assert seen == [None, "fifo 20", None]


def test_apply_without_the_right_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    assert realtime.apply(50) == "Operation not permitted (needs root or CAP_SYS_NICE)"


def test_realtime_priority_is_checked() -> None:
    from speaker.config import ConfigError, loads_config

    with pytest.raises(ConfigError) as refused:
        loads_config("[speaker]\nrealtime_priority = 100\n")
    assert "speaker.realtime_priority" in str(refused.value.errors[0])
