"""The process root of ``speaker run``: one Trio loop, one task tree.

The tree, as docs/architecture.md draws it (the speaker's own part is
:mod:`speaker.app`; a peer's is :mod:`speaker.peer`)::

    trio.run(main)
    └── serve                            root nursery; ends when the speaker ends
        ├── LoopMonitor.run              the loop's lag (status, metrics, log)
        ├── ControlServer.serve          control socket, bound before the speaker starts
        ├── serve_metrics                /metrics, bound before the speaker starts
        └── run_speaker                  systemd: READY=1, STOPPING=1, WATCHDOG=1
            ├── stopping                 STOPPING=1 once a shutdown begins
            ├── sdnotify.watchdog        WATCHDOG=1 (when systemd asks for it)
            └── Speaker.run              the speaker's nursery (speaker/app.py)
                ├── _signals             SIGTERM/SIGINT -> shutdown; SIGHUP -> reload
                ├── BfdEndpoint.run, BgpListener.run, PeerRunner.run (per peer), ...
                └── _serve_reloads       the one task that reloads: SIGHUP and
                                         ``speaker reload`` send it requests on a channel

Both sockets are bound before the speaker starts, so READY=1 means all is up; a
socket that cannot be bound ends the process with exit status 2 before any peer
starts (:class:`StartupError`), except a *default* one another speaker holds (one
per network namespace on one host): that one is logged and left out. When the
speaker stops, everything else stops too.

:func:`run` is what ``speaker run -c FILE`` calls (speaker/cli.py only parses the
arguments): it loads and derives the configuration before the loop starts, sets up
logging and the process-wide settings the latency budget needs, and returns the exit
status.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import sys
from typing import Any

import trio

from speaker import gcpause, lazyimport, realtime, sdnotify
from speaker.allocate import AllocationError, StateFileError
from speaker.app import GIL_SWITCH_INTERVAL, Speaker
from speaker.config import ConfigError, load_config
from speaker.config.model import DEFAULT_CONTROL_SOCKET, DEFAULT_METRICS_ADDRESS

# Imported with this module, before the loop starts, not lazily inside a task:
# importing prometheus-client and the control server is one 20-30 ms step.
from speaker.control import ControlServer
from speaker.log import setup_logging
from speaker.looplag import LoopMonitor
from speaker.metrics import serve_metrics
from speaker.plan import derive
from speaker.shutdown_mode import EXIT_RESTART, ShutdownMode

__all__ = ["EXIT_CONFIG", "EXIT_OK", "StartupError", "run", "run_speaker", "serve"]

log = logging.getLogger("speaker")

#: Exit statuses, as ``speaker check``'s: 2 means the configuration was refused.
EXIT_OK = 0
EXIT_CONFIG = 2


class StartupError(Exception):
    """The control socket or the metrics port could not be opened."""


def run(file: str, *, log_format: str = "logfmt", log_level: str = "info") -> int:
    """``speaker run``: until SIGTERM/SIGINT (exit status 0) or the restart path
    (SIGUSR2, ``speaker restart``: 75, speaker/shutdown_mode.py); 2: the file is
    invalid, its state file unusable, or a socket of the root cannot be opened."""
    try:
        config = load_config(file)
    except ConfigError as exc:
        for issue in exc.errors:
            print(f"{file}: {issue}", file=sys.stderr)
        print(f"{file}: invalid configuration, not starting", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(log_format, log_level)
    # Once, for the process: a reload's worker thread gives the GIL back to the loop
    # within this interval (see speaker.app.GIL_SWITCH_INTERVAL).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    for issue in config.warnings:
        log.warning("config: %s", issue)
    lazyimport.load_for(config)  # OpenSSL now if the file needs it, not on the loop
    try:
        speaker = Speaker(derive(config), config_path=file)
    except (AllocationError, StateFileError, OSError) as exc:
        print(f"{file}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # What start-up built (config, route table: ~46 MiB at 65,536 routes) lives until a
    # reload replaces it: move it out of the collector's reach, so a full collection,
    # which holds the loop for its whole length, scans only what came after
    # (speaker.reload.collections_deferred does the same for each reload).
    gcpause.freeze()
    if (refused := realtime.apply(config.speaker.realtime_priority)) is not None:
        log.warning("realtime_priority %d not applied: %s; the event loop runs at the"
                    " normal policy", config.speaker.realtime_priority, refused)  # fmt: skip
    if (policy := realtime.describe()) is not None:
        log.info("the event loop runs at real-time priority (%s); worker threads do not",
                 policy)  # fmt: skip
    release_free_heap()
    try:
        trio.run(main, speaker)
    except StartupError as exc:
        print(f"{file}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if speaker.shutdown_mode is ShutdownMode.RESTART:
        log.info("speaker stopped for a restart (exit status %d)", EXIT_RESTART)
        return EXIT_RESTART
    log.info("speaker stopped")
    return EXIT_OK


def release_free_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``): what
    loading and deriving the file freed (tomllib's and cattrs' temporaries) would
    otherwise stay in the RSS, 1.6 MiB of an idle speaker's. Before the loop starts:
    it walks the heap. A no-op where the C library has no ``malloc_trim``."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


async def main(speaker: Speaker) -> None:
    """``trio.run``'s task: the loop monitor installed around the whole tree."""
    # The guard acts only while the loop thread runs under a real-time policy.
    with LoopMonitor(guard=realtime.GUARD).installed() as monitor:
        await serve(speaker, monitor)


async def serve(speaker: Speaker, monitor: LoopMonitor | None = None) -> None:
    """The root nursery: the loop monitor, the control socket and the metrics endpoint
    (both bound first), then the speaker. Raises :class:`StartupError` if a socket
    cannot be opened (and no peer has started)."""
    config = speaker.config
    failure: list[str] = []
    async with trio.open_nursery() as root:
        if monitor is not None:
            root.start_soon(monitor.run)

        async def bind(what: str, value: object, default: object, *args: Any) -> bool:
            """Start a server that binds its socket before ``started``: False if it
            could not, and then the root ends (unless it is a default in use)."""
            try:
                await root.start(*args)
            except OSError as exc:
                if not _busy_default(exc, value, default):
                    failure.append(f"{what} {value}: {exc}")
                    root.cancel_scope.cancel()
                    return False
            return True

        control = ControlServer(
            speaker, config.control.socket, config.control.mode_bits, monitor=monitor
        )
        started = await bind(
            "control socket", config.control.socket, DEFAULT_CONTROL_SOCKET, control.serve
        )
        if started and config.metrics.enabled:
            host, port = config.metrics.host_port
            started = await bind(
                "metrics address", config.metrics.address, DEFAULT_METRICS_ADDRESS,
                functools.partial(serve_metrics, monitor=monitor), speaker, host, port,
            )  # fmt: skip
        if started:
            root.start_soon(run_speaker, speaker, root)
    if failure:
        raise StartupError(failure[0])


def _busy_default(exc: OSError, value: object, default: object) -> bool:
    """Another speaker holds a *default* socket (e.g. one per network namespace on one
    host): run without it rather than not at all. A configured one is fatal."""
    if exc.errno != errno.EADDRINUSE or value != default:
        return False
    log.error("%s is in use by another process: running without it (set another in"
              " the configuration)", value)  # fmt: skip
    return True


#: What the stop takes after a drain (the Cease, BFD AdminDown: speaker.app.SHUTDOWN_GRACE)
#: and some margin, for systemd's stop timeout.
DRAIN_STOP_MARGIN = 5.0


def drain_stop_notice(speaker: Speaker) -> str:
    """The stop path's drain (RFC 8326, ``[speaker] drain_time``) for systemd: the
    lines added to STOPPING=1 that extend the unit's stop timeout (TimeoutStopSec) to
    what the drain may take (sending the routes, at most drain_time, then drain_time)
    and the Cease; empty without a drain."""
    drain_time = speaker.config.speaker.drain_time.total_seconds()
    if drain_time <= 0:
        return ""
    usec = int((2 * drain_time + DRAIN_STOP_MARGIN) * 1_000_000)
    return f"\nSTATUS=draining for {drain_time:g} s before the Cease\nEXTEND_TIMEOUT_USEC={usec}"


async def run_speaker(speaker: Speaker, root: trio.Nursery) -> None:
    """The speaker, then systemd's READY=1, STOPPING=1 and watchdog around it; when
    the speaker stops, ``root`` (everything else) stops too."""

    async def stopping() -> None:
        await speaker.shutting_down.wait()
        sdnotify.notify("STOPPING=1" + drain_stop_notice(speaker))

    try:
        async with trio.open_nursery() as tasks:

            async def run(*, task_status: trio.TaskStatus[Speaker]) -> None:
                try:
                    await speaker.run(task_status=task_status)
                finally:
                    tasks.cancel_scope.cancel()

            tasks.start_soon(stopping)
            await tasks.start(run)
            sdnotify.notify(f"READY=1\nSTATUS=running: {len(speaker.peers)} peers")
            interval = sdnotify.watchdog_interval()
            if interval is not None:
                tasks.start_soon(sdnotify.watchdog, interval)
    finally:
        root.cancel_scope.cancel()
