"""Bad input on the control socket costs only its own connection: each is answered
with an error naming the problem, the speaker keeps running (no Cease to anyone),
and a normal request still works. Connections are bounded in number and idle time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from speaker.control import MAX_CONNECTIONS, MAX_LINE, ControlServer
from tests.helpers.running import Running, running_speaker


async def exchange(
    path: Path, data: bytes, *, until_closed: bool = False
) -> tuple[list[dict[str, Any]], bool]:
    """Send ``data`` on a new connection: the reply lines (one per line sent, or all
    until the server closes, with ``until_closed``), and whether it closed."""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(data)
        received = b""
        closed = False
        with trio.move_on_after(2.0):
            while True:
                try:
                    chunk = await stream.receive_some(1 << 16)
                except trio.BrokenResourceError:
                    chunk = b""
                if not chunk:
                    closed = True
                    break
                received += chunk
                answered = data.count(b"\n") <= received.count(b"\n")
                if received.endswith(b"\n") and answered and not until_closed:
                    break
    return [json.loads(line) for line in received.splitlines()], closed


async def still_running(spk: Running) -> None:
    status = await spk.ask("status")
    assert status["peers"] == 2 and not status["stopping"]
    assert not spk.speaker.shutting_down.is_set()


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"[" * 50000, "bad request: JSON nested too deeply"),
        (b'{"command": "st\xffatus"}', "bad request: not UTF-8 (byte 0xff at 15)"),
        (b"[1, 2]", "bad request: not a JSON object (got list)"),
        (b'"status"', "bad request: not a JSON object (got str)"),
        (b"\x00\x01garbage", "bad request: Expecting value"),
    ],
    ids=["deep-nesting", "not-utf8", "array", "string", "binary"],
)
async def test_bad_lines_are_answered_and_the_speaker_keeps_running(
    tmp_path: Path, line: bytes, error: str
) -> None:
    async with running_speaker(tmp_path) as spk:
        replies, _ = await exchange(spk.path, line + b"\n" + b'{"command": "status"}\n')
        assert replies[0]["ok"] is False and replies[0]["error"].startswith(error)
        # The same connection goes on serving; so do new ones.
        assert replies[1]["ok"] is True and replies[1]["data"]["peers"] == 2
        await still_running(spk)


async def test_a_line_over_the_limit_is_refused_and_its_connection_closed(
    tmp_path: Path,
) -> None:
    async with running_speaker(tmp_path) as spk:
        # A whole (valid) JSON line, but too long...
        big = b'{"command": "status", "pad": "' + b"x" * MAX_LINE + b'"}\n'
        replies, closed = await exchange(spk.path, big, until_closed=True)
        assert replies == [{"ok": False, "error": f"request too long (over {MAX_LINE} bytes)"}]
        assert closed
        # ...and the same without a newline ever coming.
        replies, closed = await exchange(spk.path, b"[" * (MAX_LINE + 10), until_closed=True)
        assert replies[0]["error"].startswith("request too long") and closed
        await still_running(spk)


async def test_a_failing_command_is_an_error_reply_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import attrs

    from speaker import commands

    async def broken(context: Any) -> Any:
        raise RuntimeError("boom")

    async with running_speaker(tmp_path) as spk:
        command = attrs.evolve(commands.BY_NAME["show config"], run=broken)
        monkeypatch.setitem(commands.BY_NAME, "show config", command)
        replies, _ = await exchange(spk.path, b'{"command": "show config"}\n')
        assert replies == [{"ok": False, "error": "internal error: RuntimeError('boom')"}]
        await still_running(spk)


async def test_600_idle_connections_leave_room_for_the_operator(tmp_path: Path) -> None:
    async with running_speaker(tmp_path) as spk:
        held = [await trio.open_unix_socket(str(spk.path)) for _ in range(600)]
        try:
            await trio.sleep(0.2)
            # The server closed all but the newest MAX_CONNECTIONS, each with a reason.
            closed, reasons = 0, set()
            for stream in held:
                with trio.move_on_after(0.01):
                    data = await stream.receive_some(4096)
                    if data:
                        reasons.add(json.loads(data)["error"])
                    closed += 1
            assert closed >= 600 - MAX_CONNECTIONS
            assert reasons == {"connection closed to make room for a new one (too many idle)"}
            # A normal request still works (it closes the oldest idle one).
            await still_running(spk)
        finally:
            for stream in held:
                await stream.aclose()


async def test_an_idle_connection_is_closed_and_busy_ones_refuse_newcomers(
    tmp_path: Path,
) -> None:
    async with running_speaker(tmp_path) as spk:
        path = tmp_path / "other.sock"
        server = ControlServer(spk.speaker, path, max_connections=2, idle_timeout=0.2)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            replies, closed = await exchange(path, b"", until_closed=True)
            assert replies == [{"ok": False, "error": "idle for 0.2 s: connection closed"}]
            assert closed
            # Two connections in the middle of a request are not idle: a third is refused.
            partial = [await trio.open_unix_socket(str(path)) for _ in range(2)]
            for stream in partial:
                await stream.send_all(b'{"command": "reload"')  # no newline yet
            await trio.sleep(0.05)
            server._idle.clear()  # as if both were busy answering
            replies, closed = await exchange(path, b'{"command": "status"}\n', until_closed=True)
            assert closed and replies == [
                {"ok": False, "error": "too many control connections (limit 2, none idle)"}
            ]
            for stream in partial:
                await stream.aclose()
            nursery.cancel_scope.cancel()
        await still_running(spk)
