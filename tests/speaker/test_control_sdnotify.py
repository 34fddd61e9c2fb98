"""systemd notifications: datagrams to $NOTIFY_SOCKET (a path or an abstract "@name")."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import trio

from speaker import sdnotify


def receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    return sock


def test_notify_to_a_path_and_to_an_abstract_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with receiver(str(path)) as sock:
        assert sdnotify.notify("READY=1\nSTATUS=up", environ={"NOTIFY_SOCKET": str(path)})
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
    name = f"speaker-test-{os.getpid()}"
    with receiver(b"\0" + name.encode()) as sock:
        assert sdnotify.notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"STOPPING=1"


def test_without_notify_socket_nothing_happens_and_failures_do_not_raise(
    tmp_path: Path,
) -> None:
    assert not sdnotify.notify("READY=1", environ={})
    assert not sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process() -> None:
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "4000000"}) == 2.0
    mine = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    assert sdnotify.watchdog_interval(mine) == 0.5
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval({}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "x"}) is None


async def test_watchdog_pings_every_interval(tmp_path: Path, autojump_clock: object) -> None:
    path = tmp_path / "notify"
    with receiver(str(path)) as sock:
        sock.setblocking(False)
        with trio.move_on_after(2.5):
            await sdnotify.watchdog(1.0, environ={"NOTIFY_SOCKET": str(path)})
        got = []
        while True:
            try:
                got.append(sock.recv(100))
            except BlockingIOError:
                break
    assert got == [b"WATCHDOG=1"] * 3  # at 0, 1 and 2 s


def run_speaker(config: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "speaker.cli", "run", "-c", str(config)],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def minimal_config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "speaker.toml"
    config.write_text(
        f'[speaker]\nstate_file = "state.json"\n[control]\nsocket = "s.sock"\n'
        f'[metrics]\naddress = "127.0.0.1:{port}"\n'
    )
    return config


def test_speaker_run_notifies_systemd_and_cleans_up(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = minimal_config(tmp_path, port)
    with receiver(str(tmp_path / "notify")) as notify:
        proc = run_speaker(config, NOTIFY_SOCKET=str(tmp_path / "notify"))
        try:
            ready = notify.recv(4096).decode()
            assert ready.startswith("READY=1\nSTATUS=running")
            assert stat.S_IMODE((tmp_path / "s.sock").stat().st_mode) == 0o600
            proc.send_signal(signal.SIGTERM)
            assert notify.recv(4096) == b"STOPPING=1"
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "s.sock").exists()


def test_speaker_run_refuses_a_configured_socket_or_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = minimal_config(tmp_path, busy.getsockname()[1])
        proc = run_speaker(config)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "metrics address 127.0.0.1:" in err
    assert not (tmp_path / "s.sock").exists()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(tmp_path / "s.sock"))
        other.listen()
        proc = run_speaker(minimal_config(tmp_path, 1))
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "another speaker is listening" in err
