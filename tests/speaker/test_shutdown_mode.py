"""speaker/shutdown_mode.py: which path a signal or a systemd job takes, the restart
marker, and the ExecStop hook against a stand-in systemctl and a real child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speaker.shutdown_mode import (
    ShutdownMode,
    job_type,
    marker_path,
    mode_for_job,
    mode_for_signal,
    read_marker,
    restart_remaining,
    systemd_stop,
    write_marker,
)

LIST_JOBS = """\
  81 speaker.service       restart running
  82 network-online.target start   waiting
"""


def test_signals_and_jobs_choose_a_path() -> None:
    assert mode_for_signal(signal.SIGTERM) is ShutdownMode.STOP
    assert mode_for_signal(signal.SIGINT) is ShutdownMode.STOP
    assert mode_for_signal(signal.SIGUSR2) is ShutdownMode.RESTART
    assert job_type(LIST_JOBS, "speaker.service") == "restart"
    assert job_type(LIST_JOBS, "other.service") is None
    assert job_type("", "speaker.service") is None
    for job in ("restart", "try-restart", "reload-or-restart"):
        assert mode_for_job(job) is ShutdownMode.RESTART
    for other in ("stop", "start", None):
        assert mode_for_job(other) is ShutdownMode.STOP


def test_marker_is_read_once_and_bounds_the_r_bit_window(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert read_marker(state) is None
    write_marker(state, now=1000.0)
    assert marker_path(state).exists()
    assert read_marker(state) == 1000.0
    assert not marker_path(state).exists()  # consumed: a later start is not a restart
    assert read_marker(state) is None
    assert restart_remaining(1000.0, 120, now=1030.0) == 90.0
    assert restart_remaining(1000.0, 120, now=1200.0) == 0.0
    assert restart_remaining(None, 120, now=1030.0) == 0.0
    assert restart_remaining(1000.0, 120, now=900.0) == 0.0  # the clock went back
    marker_path(state).write_text("not json")
    assert read_marker(state) is None
    assert not marker_path(state).exists()


def _fake_systemctl(directory: Path, output: str, status: int = 0) -> None:
    script = directory / "systemctl"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}EOF\nexit {status}\n")
    script.chmod(0o755)


CHILD = """
import signal, sys, time
got = []
signal.signal(signal.SIGUSR2, lambda *a: got.append("USR2"))
signal.signal(signal.SIGTERM, lambda *a: got.append("TERM"))
print("ready", flush=True)
while not got:
    time.sleep(0.01)
sys.exit(75 if got[0] == "USR2" else 0)
"""


@pytest.mark.parametrize(
    "case",
    [
        (LIST_JOBS, 0, ShutdownMode.RESTART, 75),
        ("  81 speaker.service stop running\n", 0, ShutdownMode.STOP, 0),
        ("", 1, ShutdownMode.STOP, 0),  # systemctl fails: the stop path
    ],
    ids=["restart-job", "stop-job", "no-systemd"],
)
def test_hook_signals_the_main_process_and_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: tuple[str, int, ShutdownMode, int]
) -> None:
    listing, status, mode, code = case
    _fake_systemctl(tmp_path, listing, status)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        started = time.monotonic()
        assert systemd_stop("speaker.service", child.pid, wait=5.0) is mode
        assert time.monotonic() - started < 4.0
        assert child.wait(timeout=5) == code
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_hook_without_a_main_process_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_systemctl(tmp_path, LIST_JOBS)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    assert systemd_stop("speaker.service", None) is ShutdownMode.RESTART
    assert sent == []
