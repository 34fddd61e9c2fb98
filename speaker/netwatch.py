"""Changes to this host's links and routes, as the kernel announces them.

A peer whose BFD session follows the route to the router, or that lives in a VRF,
must notice when the route moves or the VRF goes away. Asking the kernel every two
seconds per peer costs a wake-up each time on an idle node; one socket subscribed to
rtnetlink's link and route groups wakes only when something changed. :class:`NetWatch`
is that socket's task; peers wait on :meth:`NetWatch.wait_change` and ask again.

It only says that *something* changed (no message is parsed: the watchers ask the
question they care about, as before). A burst (a routing daemon installing a table)
is read in one wake-up, and the watchers space their questions (:data:`SPACING`). If
the socket cannot be opened, or the kernel dropped messages (ENOBUFS), watchers fall
back on asking at their own interval, so nothing is missed for longer than that.
"""

from __future__ import annotations

import errno
import logging
import socket

import trio

__all__ = ["SPACING", "NetWatch"]

log = logging.getLogger("speaker.netwatch")

NETLINK_ROUTE = 0
#: Multicast groups (linux/rtnetlink.h, the legacy RTMGRP_* bit masks).
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR
GROUPS |= RTMGRP_IPV6_ROUTE
#: A watcher asks again at most this often, however many changes come.
SPACING = 0.2
_RECEIVE = 65536
_BUFFER = 1 << 20


class NetWatch:
    """One rtnetlink socket subscribed to link, address and route changes."""

    def __init__(self) -> None:
        #: Whether the subscription works (False: watchers poll at their interval).
        self.available = False
        #: Counts the wake-ups that read changes: a watcher compares it with the value
        #: it saw at its last question (:meth:`wait_change`).
        self.generation = 0
        #: Reads that found the kernel had dropped messages (each counts as a change).
        self.overruns = 0
        self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        except OSError as exc:
            log.warning("netwatch: no rtnetlink socket (%s): routes and VRFs are asked"
                        " every few seconds instead", exc)  # fmt: skip
            task_status.started()
            return
        with sock:
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
                sock.bind((0, GROUPS))
            except OSError as exc:
                log.warning("netwatch: cannot subscribe to rtnetlink groups (%s): routes and"
                            " VRFs are asked every few seconds instead", exc)  # fmt: skip
                task_status.started()
                return
            self.available = True
            task_status.started()
            try:
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    self._drain(sock)
                    self.notify()
            finally:
                self.available = False
                self._changed.set()  # watchers fall back on polling

    def notify(self) -> None:
        """Something changed: wake the watchers (the socket's task calls this)."""
        self.generation += 1
        self._changed.set()
        self._changed = trio.Event()

    def _drain(self, sock: socket.socket) -> None:
        """Read everything queued without yielding (one datagram per read)."""
        for _ in range(1024):  # bounded: the rest of a flood waits for the next wake-up
            try:
                if not sock.recv(_RECEIVE):
                    return
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overruns += 1  # the kernel dropped messages: that is a change too

    async def wait_change(self, seen: int, timeout: float) -> int:
        """Return once :attr:`generation` is past ``seen`` (at once if it is already),
        or after ``timeout`` seconds at the latest; the generation then. Without a
        working subscription this sleeps ``timeout``: the caller polls."""
        if not self.available:
            await trio.sleep(timeout)
        elif self.generation == seen:
            with trio.move_on_after(timeout):
                await self._changed.wait()
        return self.generation
