"""systemd's notify protocol (``sd_notify``), without a dependency.

With ``Type=notify`` systemd passes ``$NOTIFY_SOCKET`` (a path, or an abstract
socket name starting with ``@``); the service sends datagrams such as ``READY=1``,
``STOPPING=1``, ``STATUS=...`` and, with ``WatchdogSec=``, ``WATCHDOG=1`` every
``$WATCHDOG_USEC / 2``. Without ``$NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

import trio

__all__ = ["notify", "watchdog", "watchdog_interval"]

log = logging.getLogger("speaker")


def _address(path: str) -> str | bytes:
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


def notify(message: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (``"READY=1"``, several lines allowed) to systemd.

    Returns whether it was sent; never raises (a failure is logged once per call).
    """
    env = os.environ if environ is None else environ
    path = env.get("NOTIFY_SOCKET")
    if not path:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.connect(_address(path))
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify %s to %s failed: %s", message.split("\n", maxsplit=1)[0], path, exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two ``WATCHDOG=1`` (half of ``$WATCHDOG_USEC``), or None when
    the watchdog is off or meant for another process (``$WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2 / 1_000_000 if value > 0 else None


async def watchdog(interval: float, *, environ: Mapping[str, str] | None = None) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` seconds, forever. A stalled Trio loop
    stops the pings, so systemd restarts a hung speaker."""
    while True:
        notify("WATCHDOG=1", environ=environ)
        await trio.sleep(interval)
