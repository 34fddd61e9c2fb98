from __future__ import annotations

import sys

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from speaker.health import HealthChanged, HealthSpec, HealthTracker, probe, watch


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 5), st.integers(1, 5))
def test_tracker_flips_only_after_rise_or_fall_in_a_row(
    results: list[bool], rise: int, fall: int
) -> None:
    t = HealthTracker(rise=rise, fall=fall)
    healthy, run_ok, run_bad = False, 0, 0
    for ok in results:
        run_ok, run_bad = (run_ok + 1, 0) if ok else (0, run_bad + 1)
        flipped = t.record(ok)
        if not healthy and run_ok >= rise:
            healthy = True
            assert flipped
        elif healthy and run_bad >= fall:
            healthy = False
            assert flipped
        else:
            assert not flipped
        assert t.healthy == healthy


def test_spec_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError):
        HealthSpec()
    with pytest.raises(ValueError):
        HealthSpec(tcp="127.0.0.1:1", exec=("true",))


async def test_tcp_probe_against_a_listener() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    ok, detail = await probe(HealthSpec(tcp=f"127.0.0.1:{port}", timeout=2))
    assert ok, detail
    for listener in listeners:
        await listener.aclose()
    ok, detail = await probe(HealthSpec(tcp=f"127.0.0.1:{port}", timeout=2))
    assert not ok and "failed" in detail


async def serve_status(status: int, nursery: trio.Nursery) -> int:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(4096)
        await stream.send_all(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await stream.aclose()

    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    return int(listeners[0].socket.getsockname()[1])


@pytest.mark.parametrize(
    ("status", "expected", "healthy"), [(200, 200, True), (503, 200, False), (204, 204, True)]
)
async def test_http_probe_checks_the_status(
    nursery: trio.Nursery, status: int, expected: int, healthy: bool
) -> None:
    port = await serve_status(status, nursery)
    ok, detail = await probe(
        HealthSpec(http=f"http://127.0.0.1:{port}/health", expected_status=expected)
    )
    assert ok is healthy, detail


async def test_exec_probe_uses_the_exit_code() -> None:
    assert (await probe(HealthSpec(exec=(sys.executable, "-c", "pass"))))[0]
    ok, detail = await probe(HealthSpec(exec=(sys.executable, "-c", "import sys; sys.exit(3)")))
    assert not ok and detail.startswith("exit 3")


async def test_probe_times_out(autojump_clock: trio.testing.MockClock) -> None:
    ok, detail = await probe(
        HealthSpec(exec=(sys.executable, "-c", "import time; time.sleep(30)"), timeout=0.5)
    )
    assert not ok and "timed out" in detail


async def test_watch_reports_rise_and_fall_within_the_schedule(nursery: trio.Nursery) -> None:
    flag = trio.Path(await trio.Path("/tmp").resolve()) / f"speaker-health-{id(nursery)}"
    await flag.write_text("")
    script = f"import os, sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 1)"
    spec = HealthSpec(exec=(sys.executable, "-c", script), interval=0.1, timeout=2, rise=2, fall=2)
    send, receive = trio.open_memory_channel[HealthChanged](10)
    nursery.start_soon(watch, "web", spec, send)
    with trio.fail_after(5):
        up = await receive.receive()
    assert up.healthy and up.service == "web"
    await flag.unlink()
    t0 = trio.current_time()
    with trio.fail_after(5):
        down = await receive.receive()
    assert not down.healthy
    # fall=2 at 0.1 s: gone within interval x fall + one probe's duration.
    assert down.at - t0 <= 0.1 * 2 + 1.0
    nursery.cancel_scope.cancel()
