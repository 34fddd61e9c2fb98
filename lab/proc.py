"""Processes the lab starts: tracked by PID, always stopped by PID.

Every daemon and capture the lab launches is a :class:`Process` registered in
:data:`REGISTRY`; :func:`stop_all` (run by the lab's teardown and at interpreter exit)
stops whatever is still alive. Nothing here ever signals a process by name.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class LabError(RuntimeError):
    """A lab operation failed (a command, a daemon that never became ready, ...)."""


class ProcessDied(LabError):
    """A process the lab started exited while we waited for it: no point waiting on."""


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 20.0,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, bounded in time, capturing its output."""
    try:
        cp = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and cp.returncode != 0:
        raise LabError(
            f"exit {cp.returncode}: {' '.join(argv)}\n{cp.stderr.strip() or cp.stdout.strip()}"
        )
    return cp


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something truthy; return that, or raise LabError.

    Probe exceptions of type LabError count as "not yet" (a daemon's socket that is not
    up yet, say); the last one is shown if the deadline passes. ProcessDied ends the
    wait at once.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
        except ProcessDied:
            raise
        except LabError as exc:
            result, last_error = None, exc
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f": {last_error}" if last_error else ""
            raise LabError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


class Process:
    """A child process started by the lab, stopped by its PID only."""

    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches pytest, not the daemons
            env=env,
        )
        REGISTRY[self.pid] = self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self, what: str = "") -> None:
        """Raise ProcessDied, with the end of its log, if the process has exited."""
        if not self.alive():
            raise ProcessDied(
                f"{what or self.name} exited with {self.popen.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
        """Ask politely, then kill; always reaps. Returns the exit status."""
        if self.alive():
            try:
                os.kill(self.pid, sig)
                os.kill(self.pid, signal.SIGCONT)  # a SIGSTOPped daemon must see SIGTERM
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5.0)
        REGISTRY.pop(self.pid, None)
        self._log.close()
        return self.popen.returncode

    def __repr__(self) -> str:
        state = "alive" if self.alive() else f"exited {self.popen.returncode}"
        return f"<Process {self.name} pid={self.pid} {state}>"


REGISTRY: dict[int, Process] = {}


def stop_all() -> None:
    for proc in list(REGISTRY.values()):
        proc.stop(timeout=2.0)


def alive_processes() -> list[Process]:
    return [p for p in REGISTRY.values() if p.alive()]


atexit.register(stop_all)


class Daemon:
    """Base of the lab's wrappers around one daemon process they started (gobgpd, bird,
    exabgp): its PID, and stop by that PID."""

    proc: Process | None = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid
