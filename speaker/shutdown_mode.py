"""How the speaker ends: the stop path or the restart path, and how each is asked for.

* **Stop** (SIGTERM, SIGINT, ``systemctl stop``): Cease / Administrative Shutdown to
  every peer (a Hard Reset when RFC 8538 was negotiated, so the router drops our
  routes at once), BFD AdminDown; exit status 0.
* **Restart** (SIGUSR2, ``speaker restart``, ``systemctl restart``, a package
  upgrade): the BGP sessions end so that a router with graceful restart (RFC 4724,
  RFC 8538) keeps our routes as stale while we are gone (Cease / Administrative Reset,
  or only the TCP close); BFD says AdminDown after that; a marker file beside the
  state file records when (:func:`write_marker`), so that the next process sets the
  Restart State (R) bit in its OPENs if it comes back within a peer's restart time;
  exit status :data:`EXIT_RESTART` (75), which the systemd unit counts as success and
  restarts on (``SuccessExitStatus=75``, ``RestartForceExitStatus=75``).

Under systemd, ``ExecStop=speaker systemd-stop --unit %n $MAINPID`` tells the two
apart: a ``systemctl restart`` (and ``try-restart``, ``reload-or-restart``, which
package upgrades use) is a job of type ``restart`` while its stop half runs, a
``systemctl stop`` one of type ``stop`` (``systemctl list-jobs``: systemd runs a
restart job as a stop, then patches it into a start). The hook sends SIGUSR2 or
SIGTERM and waits for the main process to exit; anything it cannot read (no
systemctl, no job) takes the stop path: routes withdrawn cleanly rather than kept as
stale for a node that may not come back.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from speaker.files import write_atomically

__all__ = [
    "EXIT_RESTART",
    "MARKER_SUFFIX",
    "ShutdownMode",
    "job_type",
    "marker_path",
    "mode_for_job",
    "mode_for_signal",
    "read_marker",
    "restart_remaining",
    "systemd_stop",
    "write_marker",
]

log = logging.getLogger("speaker")

#: The restart path's exit status (EX_TEMPFAIL): "start me again".
EXIT_RESTART = 75
#: The marker file is the state file's name with this suffix.
MARKER_SUFFIX = ".restart"
#: How long the ExecStop hook waits for the main process to exit.
HOOK_WAIT = 4.0


class ShutdownMode(enum.Enum):
    STOP = "stop"
    RESTART = "restart"


#: Signals and the path each takes.
SIGNALS: dict[int, ShutdownMode] = {
    signal.SIGTERM: ShutdownMode.STOP,
    signal.SIGINT: ShutdownMode.STOP,
    signal.SIGUSR2: ShutdownMode.RESTART,
}

#: systemd job types whose stop half is a restart (``try-restart`` and
#: ``reload-or-restart`` collapse to ``restart`` on an active unit).
RESTART_JOBS = frozenset({"restart", "try-restart", "reload-or-restart", "reload-or-try-restart"})


def mode_for_signal(signum: int) -> ShutdownMode:
    return SIGNALS.get(signum, ShutdownMode.STOP)


def mode_for_job(job: str | None) -> ShutdownMode:
    """The path for the systemd job type running on the unit (None: none found)."""
    return ShutdownMode.RESTART if job in RESTART_JOBS else ShutdownMode.STOP


def job_type(list_jobs: str, unit: str) -> str | None:
    """The type of ``unit``'s job in ``systemctl list-jobs --no-legend --plain``
    output (columns JOB UNIT TYPE STATE), or None."""
    for line in list_jobs.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == unit:
            return parts[2]
    return None


# ---- the marker: we stopped for a restart, and when -----------------------------------


def marker_path(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + MARKER_SUFFIX)


def write_marker(state_file: Path, *, now: float | None = None) -> None:
    """Record that the process is ending on the restart path (wall-clock time: it
    must mean the same to the next process)."""
    stopped_at = time.time() if now is None else now
    text = json.dumps({"stopped_for_restart_at": stopped_at, "version": 1})
    path = marker_path(state_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text + "\n")


def read_marker(state_file: Path) -> float | None:
    """When (wall clock) the previous process stopped for a restart, or None (no
    marker, or an unreadable one). The marker is removed: it is read once, at start."""
    path = marker_path(state_file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("restart marker %s: %s (ignored)", path, exc)
        return None
    try:
        path.unlink()
    except OSError as exc:
        log.warning("restart marker %s: cannot remove it: %s", path, exc)
    try:
        return float(json.loads(text)["stopped_for_restart_at"])
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("restart marker %s: unreadable (%s), ignored", path, exc)
        return None


def restart_remaining(stopped_at: float | None, restart_time: float, *, now: float) -> float:
    """Seconds left of a peer's restart time after a restart that began at
    ``stopped_at`` (0: none left, or no restart): while some is left, our OPENs set R."""
    if stopped_at is None or now < stopped_at:
        return 0.0
    return max(0.0, restart_time - (now - stopped_at))


# ---- the systemd ExecStop hook -----------------------------------------------------------


def _systemctl_job(unit: str) -> str | None:
    try:
        out = subprocess.run(
            ["systemctl", "list-jobs", "--no-legend", "--plain", "--no-pager"],
            capture_output=True, text=True, timeout=2.0, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return job_type(out.stdout, unit) if out.returncode == 0 else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] != "Z"


def systemd_stop(unit: str, pid: int | None, *, wait: float = HOOK_WAIT) -> ShutdownMode:
    """``speaker systemd-stop``: the path systemd's job on ``unit`` asks for, signalled
    to ``pid`` (the unit's main process; None or gone: nothing to do); waits up to
    ``wait`` seconds for it to exit, so that systemd's own SIGTERM after ExecStop finds
    nothing left to cut short."""
    mode = mode_for_job(_systemctl_job(unit))
    if pid is None or pid <= 0 or not _alive(pid):
        return mode
    sig = signal.SIGUSR2 if mode is ShutdownMode.RESTART else signal.SIGTERM
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return mode
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    return mode
