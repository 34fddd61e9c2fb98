"""One TCP connection of a BGP session: its socket, the reader, the writer, the
synchronous Cease write, and the counting of messages by type.

The session (speaker/bgp/session.py) owns the core; a link only moves bytes. Whatever
the core wants written is pushed onto the link's queue as whole messages, and only
the writer (:meth:`Link.write_loop`) sends them. The writer uses a non-blocking
``os.write`` and accounts for it before its next checkpoint, so whenever it is
suspended :attr:`Link.partial` is exactly what has not reached the kernel: a BFD
teardown can then write the Cease at once, after the rest of the message in flight
(:meth:`Link.write_now`), with no task switch in between.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from collections.abc import Callable

import trio

from protocols.bgp import MessageType
from speaker.bgp import net
from speaker.bgp.config import IPAddress
from speaker.looplag import DUTY, bulk_turn

__all__ = [
    "HIGH_WATER",
    "INPUT",
    "READ_CHUNK",
    "WRITE_CHUNK",
    "InputBudget",
    "Link",
    "MessageCounter",
]

#: Bytes read (and decoded) per task step: decoding costs about 0.5-1 ms per KiB
#: (prefix objects), so 2 KiB keeps a step near 1 ms (docs/architecture.md, Latency
#: budget). A message completes in one step at most, whatever its size.
READ_CHUNK = 2 * 1024
WRITE_CHUNK = 64 * 1024
HIGH_WATER = 128 * 1024  # queued bytes above which no more UPDATEs are generated

_TYPE_NAMES = {t.value: t.name.lower().replace("_", "-") for t in MessageType}


#: The longest one sleep for the input budget (the credit may stay negative after it).
MAX_WAIT = 0.05


class InputBudget:
    """How much of the loop the peers' input may take: at most ``share`` of the time,
    over any stretch longer than ``burst`` seconds.

    What peers send us is work that can wait: we keep none of their routes, and TCP
    holds back a sender we read slowly. Unbounded, a peer sending a full table (or
    a flood) keeps the loop busy for seconds; under ``realtime_priority`` that is a
    SCHED_FIFO thread at 100 % of a CPU, which the kernel throttles (no real-time
    task on it runs for the rest of its 1 s period: a BFD failure at 10 ms timers).
    Each reader charges the time its delivery took; when the credit is spent it
    sleeps until the credit is back, so the rest of the loop, and the rest of the
    node, keep at least 1 - ``share``. One budget for all peers of a process
    (:data:`INPUT`). The credit accrues in Trio time (virtual under a MockClock);
    the work is the loop thread's CPU time (a step the OS preempted did not use the
    loop that long), and one sleep is :data:`MAX_WAIT` at most, far below any hold
    time, so a reader never falls silent for long."""

    def __init__(self, share: float = 0.5, burst: float = 0.02) -> None:
        self.share = share
        self.burst = burst
        self._credit = burst * share
        self._at: float | None = None
        #: Times a reader slept for the budget, and for how long in all (seconds).
        self.waits = 0
        self.waited = 0.0

    def charge(self, work: float) -> float:
        """``work`` seconds were spent on input: how long to sleep now (0: none)."""
        now = trio.current_time()
        if self._at is not None:  # (a new trio.run, a MockClock: never a negative gap)
            gained = max(0.0, now - self._at) * self.share
            self._credit = min(self.burst * self.share, self._credit + gained)
        self._at = now
        self._credit -= work
        if self._credit >= 0:
            return 0.0
        return min(MAX_WAIT, -self._credit / self.share)

    async def spend(self, work: float) -> None:
        wait = self.charge(work)
        if wait > 0:
            self.waits += 1
            self.waited += wait
            await trio.sleep(wait)
        else:
            # While the loop is over its duty (speaker.looplag.LoopDuty) input gives way
            # with the bulk work, so a flooding peer does not take the room an
            # operator's show or a reload needs (the lab's hostile flood: show routes at
            # 65,536 routes then never answered within 60 s).
            await DUTY.give_way()


#: The process's budget for what peers send (see InputBudget).
INPUT = InputBudget()


class MessageCounter:
    """Counts BGP messages by type in a byte stream, from the 19-octet headers."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._skip = 0
        self._header = bytearray()

    def feed(self, data: bytes | memoryview) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                continue
            part = data[pos : pos + 19 - len(self._header)]
            self._header += part
            pos += len(part)
            if len(self._header) == 19:
                length = int.from_bytes(self._header[16:18], "big")
                kind = self._header[18]
                self.counts[_TYPE_NAMES.get(kind, str(kind))] += 1
                self._skip = max(length - 19, 0)
                self._header.clear()


#: Called with the link and the reason when its socket fails.
Failed = Callable[["Link", str], None]


class Link:
    """One TCP connection: its socket, the writer's queue of whole messages.

    ``sent`` counts what reaches the kernel (the session's counter, shared by all its
    links); what is read is counted by the session, which alone knows whether the core
    took it (the link may no longer be the session's)."""

    def __init__(self, sock: trio.socket.SocketType, *, sent: MessageCounter) -> None:
        self.sock = sock
        self.local: IPAddress = net.local_address(sock)
        self.remote: IPAddress = net.remote_address(sock)
        self.sent = sent
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.partial: memoryview | None = None  # the rest of the chunk being sent
        self.scope = trio.CancelScope()
        self.closing = False
        self.has_data = trio.Event()
        self.outgoing = True  # we opened it (False: accepted from the peer)

    def push(self, data: bytes) -> None:
        self.queue.append(data)
        self.queued += len(data)
        self.has_data.set()

    async def read_loop(self, deliver: Callable[[Link, bytes], bool], failed: Failed) -> None:
        """:data:`READ_CHUNK` per recv, one recv per step, each to ``deliver`` (which
        returns False when the link is no longer the session's); ends at EOF (after
        delivering ``b""``) or a socket error (``failed``). The time ``deliver`` takes
        is charged to the process's :data:`INPUT` budget, which may make it sleep."""
        budget = INPUT
        while True:
            try:
                data = await self.sock.recv(READ_CHUNK)
            except OSError as exc:
                failed(self, exc.strerror or str(exc))
                return
            started = time.thread_time()
            if not deliver(self, data) or not data:
                return
            await budget.spend(time.thread_time() - started)
            if len(data) == READ_CHUNK:
                # A full read: a table or a flood is coming, bulk work that takes its
                # turn (speaker.looplag.BulkLane); a keepalive's read never waits.
                await bulk_turn()

    async def write_loop(self, drained: Callable[[Link], None], failed: Failed) -> None:
        """The only task writing to the socket, until the link closes (and its queue is
        empty) or fails. ``drained`` is called whenever less than :data:`HIGH_WATER`
        is queued after a write (the session then generates more UPDATEs)."""
        while True:
            if self.partial is None:
                if not self.queue:
                    if self.closing:
                        self.scope.cancel()
                        return
                    self.has_data = trio.Event()
                    await self.has_data.wait()
                    continue
                chunk: list[bytes] = []
                size = 0
                while self.queue and size < WRITE_CHUNK:
                    item = self.queue.popleft()
                    chunk.append(item)
                    size += len(item)
                self.partial = memoryview(b"".join(chunk))
            # Sent synchronously (the socket is non-blocking) and accounted for before
            # the next checkpoint: whenever this task is suspended, self.partial is
            # exactly what has not reached the kernel, so write_now() can take over.
            try:
                sent = os.write(self.sock.fileno(), self.partial)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.sock)
                continue
            except OSError as exc:
                failed(self, exc.strerror or str(exc))
                return
            self.sent.feed(self.partial[:sent])
            self.queued -= sent
            self.partial = self.partial[sent:] if sent < len(self.partial) else None
            if self.queued < HIGH_WATER:
                drained(self)
            await trio.lowlevel.checkpoint()

    def write_now(self, data: bytes) -> bool:
        """Write the rest of the chunk in flight, then ``data``, synchronously (trio
        sockets are non-blocking: this never waits); messages queued but not started
        are dropped. What the socket does not take stays in :attr:`partial` (for
        :meth:`send_rest`). Returns whether everything was written."""
        payload = (bytes(self.partial) if self.partial is not None else b"") + data
        self.queue.clear()
        try:
            sent = os.write(self.sock.fileno(), payload)
        except OSError:
            sent = 0
        self.partial = memoryview(payload)[sent:] if sent < len(payload) else None
        self.sent.feed(payload[:sent])
        return self.partial is None

    async def send_rest(self, data: bytes) -> bool:
        """Send the rest of the chunk in flight, then ``data``, waiting as needed;
        whether there was anything to send. Raises OSError."""
        pending = bytes(self.partial) if self.partial is not None else b""
        view = memoryview(pending + data)
        while view:
            sent = await self.sock.send(view)
            self.sent.feed(view[:sent])
            view = view[sent:]
        return bool(pending or data)
