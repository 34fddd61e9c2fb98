"""The loop monitor: the sentinel's lateness (MockClock), the worst-of-a-window
bookkeeping, the step instrument with its rate-limited warning, and what ``status``,
``speaker show status`` and /metrics show of it."""

from __future__ import annotations

import itertools
import logging
import time
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from speaker import looplag, show
from speaker.control import ControlServer, request
from speaker.looplag import (
    DUTY_MAX_WAIT,
    LAG_BUCKETS,
    WARN_EVERY,
    LoopDuty,
    LoopMonitor,
    Slicer,
    WorstWindow,
    timer_woke,
)
from speaker.metrics import SpeakerCollector
from tests.helpers.metrics import samples, value
from tests.helpers.running import running_speaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def task(name: str) -> Any:
    return SimpleNamespace(name=name)


def test_worst_window_keeps_the_worst_of_the_last_window_and_of_all_time() -> None:
    window = WorstWindow(60.0, slots=6)
    assert window.worst(0.0) is None and window.ever is None
    window.record(0.003, "a", 5.0)
    window.record(0.009, "b", 7.0)
    window.record(0.004, "c", 30.0)
    worst = window.worst(30.0)
    assert worst is not None and (worst.task, worst.seconds) == ("b", 0.009)
    # 60 s later b's slice [0, 10) is out of the window; c's [30, 40) still in.
    worst = window.worst(75.0)
    assert worst is not None and worst.task == "c"
    assert window.worst(100.0) is None
    assert window.ever is not None and window.ever.task == "b"
    # Memory stays bounded however many slices pass.
    for t in range(1000):
        window.record(0.001, "x", float(t * 10))
    assert len(window._slots) <= 7


def test_the_sentinel_measures_how_late_the_loop_wakes() -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def main() -> LoopMonitor:
        monitor = LoopMonitor(interval=0.02)
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            await trio.sleep(0.2)  # on time: every wake exactly when due
            assert monitor.lag.count == 10 and monitor.lag.sum == 0.0
            assert monitor.status()["maxLag"] is None
            await trio.sleep(0.005)
            clock.jump(0.035)  # this task "runs" 35 ms: the sentinel was due in 15
            await trio.sleep(0.1)
            lag = monitor.status()["maxLag"]
            assert lag == {"ms": 20.0, "task": None, "secondsAgo": pytest.approx(0.1, abs=0.03)}
            # 20 ms (on a float clock: the 20 or the 50 ms bucket), in none below 10 ms
            between = slice(LAG_BUCKETS.index(0.01) + 1, LAG_BUCKETS.index(0.05) + 1)
            assert sum(monitor.lag.counts[between]) == 1 == sum(monitor.lag.counts[1:])
            await trio.sleep(61.0)  # out of the window, but not of "since start"
            status = monitor.status()
            assert status["maxLag"] is None and status["maxLagEver"]["ms"] == 20.0
            nursery.cancel_scope.cancel()
        return monitor

    monitor = trio.run(main, clock=clock)
    assert monitor.lag.count > 3000


def test_timer_reports_are_samples_and_keep_the_sentinel_asleep() -> None:
    """An idle process must not wake 50 times a second to measure its lag: a timer
    that wakes anyway (the BFD runtime's) reports its lateness, and the sentinel
    sleeps until no report has come for ``interval``."""
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def reporter() -> None:  # a timer woken every 0.3 s, 1 ms late each time
        while True:
            due = trio.current_time() + 0.3
            await trio.sleep_until(due + 0.001)
            timer_woke(due, trio.current_time())

    async def main() -> LoopMonitor:
        monitor = LoopMonitor(interval=0.5)
        with monitor.installed():
            async with trio.open_nursery() as nursery:
                await nursery.start(monitor.run)
                nursery.start_soon(reporter)
                await trio.sleep(3.05)
                # The reporter's wakes only: the sentinel samples each time it wakes.
                assert monitor.lag.count == 10
                assert monitor.lag.sum == pytest.approx(0.010)
                nursery.cancel_scope.cancel()
                await trio.sleep(0)
            # Without reports the sentinel samples every interval.
            async with trio.open_nursery() as nursery:
                await nursery.start(monitor.run)
                await trio.sleep(2.01)
                assert monitor.lag.count == 14
                nursery.cancel_scope.cancel()
        return monitor

    trio.run(main, clock=clock)


def test_the_instrument_records_long_steps_and_warns_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, cpu = FakeClock(), FakeClock()
    monitor = LoopMonitor(clock=clock, cpu_clock=cpu)

    def step(name: str, seconds: float, on_cpu: float | None = None) -> None:
        monitor.after_io_wait(0.0)  # the loop woke; the step follows at once
        clock.now += seconds
        cpu.now += seconds if on_cpu is None else on_cpu
        monitor.after_task_step(task(name))

    with caplog.at_level(logging.WARNING, logger="speaker.loop"):
        step("quick", 0.0001)
        assert monitor.steps.ever is None  # under the floor: not even recorded
        step("peer r1", 0.003)
        assert monitor.slow_steps == 0 and not caplog.records
        step("show routes", 0.012, on_cpu=0.0005)  # the host did not run us
        step("scrape", 0.008)
        step("scrape", 0.020, on_cpu=0.003)
    longest = monitor.longest_step()
    assert longest is not None and longest.task == "scrape"
    assert longest.seconds == pytest.approx(0.020) and longest.cpu == pytest.approx(0.003)
    # By CPU time, the longest is the 8 ms scrape that ran all along.
    most_cpu = monitor.longest_cpu_step()
    assert most_cpu is not None and most_cpu.seconds == pytest.approx(0.008)
    assert monitor.slow_steps == 3
    # Over the 2 ms budget of CPU, by task, most CPU first: "show routes" (0.5 ms of
    # CPU) is not there; the 3 ms "peer r1" step is, under its 5 ms warning.
    assert monitor.over_budget_tasks() == [
        {"task": "scrape", "steps": 2, "maxCpuMs": 8.0, "maxMs": 20.0},
        {"task": "peer r1", "steps": 1, "maxCpuMs": 3.0, "maxMs": 3.0},
    ]
    # One warning (the first), naming the task; the next ones wait WARN_EVERY.
    assert [r.getMessage() for r in caplog.records] == [
        "event loop stalled 12.0 ms in task show routes, 0.5 ms of it on the CPU (BFD"
        " packets wait that long; 0 more stalls over 5 ms since the last warning)"
    ]
    caplog.clear()
    clock.now += WARN_EVERY
    with caplog.at_level(logging.WARNING, logger="speaker.loop"):
        step("reload", 0.006)
    assert "in task reload" in caplog.records[0].getMessage()
    assert "2 more stalls" in caplog.records[0].getMessage()


def test_a_long_garbage_collection_is_named_as_such() -> None:
    clock = FakeClock()
    monitor = LoopMonitor(clock=clock)
    monitor._gc("start", {"generation": 2})
    clock.now += 0.150
    monitor._gc("stop", {"generation": 2})
    assert monitor.collections.ever is not None
    assert monitor.collections.ever.task == "gc generation 2"


async def test_a_real_stall_is_seen_with_its_task_name() -> None:
    monitor = LoopMonitor(interval=0.02)  # no other timer reports here
    with monitor.installed():

        async def hog() -> None:
            time.sleep(0.060)  # holds the loop, as a slow builder would (longer than noise)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(monitor.run)
            await trio.sleep(0.05)
            nursery.start_soon(hog, name="hog")
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    longest = monitor.longest_step()
    assert longest is not None and longest.task == "hog" and longest.seconds >= 0.060
    lag = monitor.lags.ever
    assert lag is not None and lag.seconds >= 0.002  # the sentinel woke late too


async def test_the_slicer_checkpoints_only_when_a_slice_is_spent() -> None:
    steps: list[float] = []

    class Count(trio.abc.Instrument):
        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            steps.append(time.perf_counter())

    table = {i: None for i in range(100_000)}
    slicer = Slicer(budget=0.0005)
    trio.lowlevel.add_instrument(Count())
    keys = await slicer.keys(table)
    assert keys == list(table)
    big = {"rows": [{"a": [1, 2], "b": {"c": list(range(100))}} for _ in range(20_000)]}
    await slicer.release(big)
    assert big == {}
    assert len(steps) > 5  # it yielded, more than once


async def test_status_and_show_status_and_metrics_carry_the_loop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monitor = LoopMonitor(interval=0.02)
    async with running_speaker(tmp_path) as spk:
        path = tmp_path / "monitored.sock"
        with monitor.installed():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(monitor.run)
                await nursery.start(ControlServer(spk.speaker, path, monitor=monitor).serve)

                async def hog() -> None:
                    time.sleep(0.060)

                nursery.start_soon(hog, name="hog")
                await trio.sleep(0.1)
                status = await trio.to_thread.run_sync(request, path, "status")
                loop = status["eventLoop"]
                assert loop["longestStep"]["task"] == "hog" and loop["longestStep"]["ms"] >= 60
                assert loop["slowSteps"] >= 1 and loop["lagSamples"] > 0
                text = show.format_status(status)
                assert "longest step last 60 s: " in text and " in hog, " in text
                assert await spk.cli("show", "status", "-s", str(path)) == 0
                assert "Event loop (budget 2 ms per step" in capsys.readouterr().out
                # The default socket's server has no monitor: said so, not an error.
                assert (await spk.ask("status"))["eventLoop"] is None
                text = (await SpeakerCollector(spk.speaker, monitor).scrape()).decode()
                nursery.cancel_scope.cancel()
    found = samples(text)
    assert value(text, "speaker_event_loop_longest_step_seconds") >= 0.060
    assert value(text, "speaker_event_loop_slow_steps_total") >= 1
    assert value(text, "speaker_event_loop_lag_seconds_count") > 0
    buckets = {s.labels["le"] for s in found["speaker_event_loop_lag_seconds_bucket"]}
    assert buckets == {repr(b) for b in LAG_BUCKETS} | {"+Inf"}


async def test_slicer_keys_survive_a_table_changing_between_slices() -> None:
    table = dict.fromkeys(range(200_000))
    original = set(table)

    async def churn() -> None:
        for i in range(50):
            table[-1 - i] = None  # a session changing its routes meanwhile
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(churn)
        keys = await Slicer(budget=0.0).keys(table)
    assert len(keys) == len(set(keys))  # each key once
    assert original <= set(keys)


async def test_slicer_keys_walk_a_changed_table_again_in_slices() -> None:
    """A table that changes size while it is copied is walked again slice by slice,
    never copied in one step (65,536 services: a 7-16 ms step under load)."""
    table = dict.fromkeys(range(100_000))
    original = set(table)
    pulled = [0]
    most_in_a_step = [0]

    class Counted:
        def __iter__(self) -> Any:
            for key in table:  # raises RuntimeError once ``table`` changed size
                pulled[0] += 1
                yield key

    async def churn() -> None:
        for i in range(looplag.KEY_RESCANS):
            await trio.sleep(0)
            table[-1 - i] = None

    async def watch() -> None:
        while True:
            most_in_a_step[0] = max(most_in_a_step[0], pulled[0])
            pulled[0] = 0
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        nursery.start_soon(churn)
        keys = await Slicer(budget=0.0).keys(Counted())
        most_in_a_step[0] = max(most_in_a_step[0], pulled[0])  # the last step's
        nursery.cancel_scope.cancel()
    assert len(keys) == len(set(keys)) and original <= set(keys)
    assert most_in_a_step[0] <= 2 * 512


async def test_slicer_keys_of_a_table_that_keeps_changing_is_it_as_it_is_now() -> None:
    table = dict.fromkeys(range(20_000))

    async def churn() -> None:
        for i in range(1_000):
            table[-1 - i] = None
            if i % 3 == 0:
                del table[i]
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(churn)
        keys = await Slicer(budget=0.0).keys(table)
        assert keys == list(table)  # a copy at the moment the walks gave up
        nursery.cancel_scope.cancel()


async def test_free_releases_everything_without_changing_what_others_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slicer.free: every object of the structure is freed, in many short steps, and a
    container someone else still holds is left as it was."""

    @attrs.frozen
    class Leaf:
        name: str

    shared = {"kept": [1, 2, 3]}
    leaves = [Leaf(f"l{i}") for i in range(20_000)]
    freed: list[int] = []
    probes = [weakref.ref(leaves[i], lambda _: freed.append(1)) for i in (0, 9_999, 19_999)]
    box: list[object] = [{"leaves": leaves, "shared": shared, "nested": (leaves[:100], {1: 2})}]
    del leaves
    slicer = Slicer(budget=0.0001)
    checkpoints = 0
    real_checkpoint = trio.lowlevel.checkpoint

    async def counting() -> None:
        nonlocal checkpoints
        checkpoints += 1
        await real_checkpoint()

    monkeypatch.setattr(trio.lowlevel, "checkpoint", counting)
    await slicer.free(box)
    assert box == [] and len(freed) == 3 and all(p() is None for p in probes)
    assert shared == {"kept": [1, 2, 3]}
    assert checkpoints > 10


async def test_free_empties_big_containers_it_alone_holds_and_leaves_shared_ones() -> None:
    """Slicer.free: a big dict or list the structure alone holds is emptied a slice at a
    time (no single release of 65,536 entries); one that someone else also holds (a
    BGP session still scanning an old route table) is left whole, never mutated."""
    shared_dict = {i: str(i) for i in range(5_000)}
    shared_list = list(range(5_000))
    own = {i: [i] for i in range(5_000)}
    emptied: list[int] = []
    real_empty = Slicer.discard

    async def spy(self: Slicer, item: Any) -> None:
        emptied.append(len(item))
        await real_empty(self, item)

    box: list[object] = [{"own": own, "shared": (shared_dict, shared_list)}]
    del own
    slicer = Slicer(budget=0.0001)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Slicer, "discard", spy)
        await slicer.free(box)
    assert box == []
    assert 5_000 in emptied  # the dict only the structure held
    assert shared_dict == {i: str(i) for i in range(5_000)}
    assert shared_list == list(range(5_000))


async def test_free_of_nothing() -> None:
    box: list[object] = []
    await Slicer().free(box)
    assert box == []


async def test_loop_duty_makes_bulk_work_wait_when_the_loop_is_too_busy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The loop's CPU (a fake clock here) may be at most 80 % of the time, over any
    stretch longer than the 100 ms burst: bulk work that spent more waits for the
    difference, 20 ms at most a wait."""
    cpu = FakeClock()
    duty = LoopDuty(limit=0.8, burst=0.1, cpu_clock=cpu)
    assert duty.charge() == 0.0  # the first reading only starts the account
    await trio.sleep(0.1)
    cpu.now += 0.05  # 50 % busy: under the limit
    assert duty.charge() == 0.0 and duty.waits == 0
    # Bulk work busy all along: 100 slices of 10 ms of CPU each, no time passing but
    # the waits. The burst's credit (80 ms) goes first, then 12.5 ms of wait per slice.
    started = trio.current_time()
    for _ in range(100):
        cpu.now += 0.01
        await duty.pace()
    elapsed = trio.current_time() - started
    assert elapsed == pytest.approx((1.0 - 0.08) / 0.8, abs=0.02)
    assert duty.waits >= 90 and duty.waited == pytest.approx(elapsed, abs=1e-6)
    # A long debt waits 20 ms at most per slice (a reader of the work never stalls).
    cpu.now += 1.0
    assert duty.charge() == pytest.approx(DUTY_MAX_WAIT)
    # ... and a new account (another trio.run: Trio's clock behind) never goes wrong.
    duty._at = trio.current_time() + 100
    assert 0.0 <= duty.charge() <= DUTY_MAX_WAIT


async def test_slicer_waits_for_the_loop_duty(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu = FakeClock()
    busy = LoopDuty(limit=0.5, burst=0.01, cpu_clock=cpu)
    monkeypatch.setattr(looplag, "DUTY", busy)
    slicer = Slicer(budget=0.0)  # every tick ends a slice
    await slicer.tick()
    assert busy.waits == 0
    cpu.now += 1.0  # a second of the loop's CPU since: far over 50 %
    before = trio.current_time()
    await slicer.tick()
    assert busy.waits == 1 and trio.current_time() - before == pytest.approx(DUTY_MAX_WAIT)
    # A scrape's slicer is not paced: it has a deadline (Prometheus' scrape_timeout).
    scrape = Slicer(budget=0.0, paced=False)
    cpu.now += 1.0
    before = trio.current_time()
    await scrape.tick()
    assert busy.waits == 1 and trio.current_time() == before


# ---- the bulk lane ---------------------------------------------------------------------------


async def test_bulk_lane_runs_one_slice_per_pass_of_the_loop() -> None:
    """Three bulk tasks slicing at once: every slice starts in a pass of the loop of its
    own (Trio would otherwise run all three in each pass, and a BFD timer due meanwhile
    would wait for all of them), they take turns, and a task that needs no turn (a
    timer) runs in every pass regardless."""
    starts: dict[int, list[int]] = {}
    ticks: list[int] = []
    with LoopMonitor().installed() as monitor:
        lane = monitor.lane

        async def bulk(number: int) -> None:
            for _ in range(30):
                await looplag.bulk_turn()
                starts.setdefault(number, []).append(lane.passes)

        async def timer() -> None:
            for _ in range(60):
                await trio.lowlevel.checkpoint()
                ticks.append(lane.passes)

        async with trio.open_nursery() as nursery:
            for number in range(3):
                nursery.start_soon(bulk, number)
            nursery.start_soon(timer)
    every = [p for slices in starts.values() for p in slices]
    assert len(every) == 90 and len(set(every)) == 90  # never two slices in one pass
    # Turns go round: while all three wait, each slice's task differs from the last.
    order = sorted((p, n) for n, slices in starts.items() for p in slices)
    assert all(a[1] != b[1] for a, b in itertools.pairwise(order[:60]))
    assert len(set(ticks)) == 60  # the timer was never held back a pass
    assert lane.turns == 90 and lane.waited > 0
    assert not lane._line


async def test_bulk_lane_forgets_a_task_cancelled_in_line() -> None:
    """A task cancelled while it waits in line leaves the line: the others keep getting
    their turns (a lane stuck behind a dead task would stop every show and reload)."""
    done: list[str] = []
    with LoopMonitor().installed() as monitor:
        lane = monitor.lane

        async def bulk(name: str, turns: int) -> None:
            for _ in range(turns):
                await looplag.bulk_turn()
            done.append(name)

        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def cancelled() -> None:
                with scope:
                    await bulk("cancelled", 10_000)

            nursery.start_soon(cancelled)
            nursery.start_soon(bulk, "other", 20)
            for _ in range(5):
                await trio.lowlevel.checkpoint()
            assert len(lane._line) == 2  # both in line
            scope.cancel()
    assert done == ["other"] and not lane._line


async def test_bulk_turn_without_a_monitor_is_a_checkpoint() -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await looplag.bulk_turn()
