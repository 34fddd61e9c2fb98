"""The BFD runtime: sessions of the sans-IO core driven by Trio sockets and timers.

Task tree::

    BfdEndpoint.run                      (one per process): sockets and demultiplexing
    ├── timer task                       ONE timer for every session (a heap)
    └── receive loop per (family, port, VRF)  drain, decode, GTSM, demultiplex, hand over

    BfdEndpoint.run_session              in the nursery of whoever owns the session
    └── BfdSession.run                   its send socket; raises the session's
                                         failures; echo tasks if enabled

The endpoint owns only the receive sockets and the demultiplexing table: each
session's task runs where its owner starts it (the speaker: in the peer's nursery,
so an exception in one session ends that peer only; :meth:`BfdEndpoint.add_session`
runs it in the endpoint's own nursery, for standalone use and benchmarks).

Wake-ups are what an idle BFD costs (each one ~0.3 ms of CPU in CPython, whatever
it does), and what a thousand sessions cost per packet, so:

* one timer task serves every session: a heap of (deadline, session); each wake
  runs every session due then, and those due within :data:`MERGE_WINDOW` whose
  periodic packet's jitter window is open (the core's ``tx_window``), in one pass;
* a receive wake-up drains every datagram queued on the socket
  (:func:`speaker.bfd.net.receive_batch`), and handling a session's packet also
  sends its periodic packet when the window is open (``transmit_early``): a session
  answering its peer wakes once per packet pair, not twice, and its sends stay in
  RFC 5880 §6.8.7's 75-100 %;
* arrival times are the kernel's (``SO_TIMESTAMPNS``): detection counts from when a
  packet reached the host, and before declaring a session down the timer reads what
  is already queued on the sockets.

Sends are direct non-blocking ``sendto`` calls from whichever pass queued them; a
full socket buffer (EAGAIN) hands the rest to the session's own task, which waits
for the socket and sends them in order, so no pass ever waits. The session's task
otherwise sleeps: it owns the send socket, runs echo, and raises a failure of the
session's input handling (:meth:`BfdSession.fail`) in the owner's nursery, so an
exception in one session ends that peer only. State changes go out two ways:
synchronously to the owner's ``on_change`` callback in the pass that caused them
(the peer's BGP guard: no task switch between detection and teardown), and through
memory channels to any number of subscribers.

A session in a VRF (``SessionKey.vrf``) is received on sockets of that VRF only and
demultiplexed among that VRF's sessions: the same addresses may be in use in two
VRFs. A single-hop session whose interface the route chose may follow the route to
another interface (:meth:`BfdSession.move_to`) without a reset.

One module of 1,100+ lines on purpose: :class:`BfdSession` and :class:`BfdEndpoint`
are one mechanism seen from its two ends. The endpoint's receive loop finds the session
and calls :meth:`BfdSession.deliver` within the packet's step, and its one timer serves
the session's deadlines (``_serve``, the heap entry the session keeps); the session
sends from the endpoint's sockets, ports and RNG. Apart, each would need a public
interface for what is private between them.
"""

from __future__ import annotations

import errno
import functools
import heapq
import ipaddress
import itertools
import logging
import math
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
import trio

from protocols.bfd import (
    BfdDecodeError,
    ControlPacket,
    Diag,
    DiscardReason,
    Session,
    State,
    StateChanged,
    TimersChanged,
)
from speaker.addresses import IPAddress
from speaker.alarm import Alarm
from speaker.bfd import net
from speaker.bfd.echo_link import EchoLink, EchoLinkError, EchoReflector, kernel_forwards
from speaker.bfd.profile import BfdProfile
from speaker.broadcast import Broadcast
from speaker.log import fields
from speaker.looplag import timer_woke
from speaker.netlookup import route_to

__all__ = ["BfdEndpoint", "BfdSession", "BfdStatistics", "SessionKey"]

log = logging.getLogger("speaker.bfd")

_SUBSCRIBER_BUFFER = 64


#: How early to wake for a detection deadline (then spin): a bit over epoll's 1 ms.
DETECTION_EARLY_WAKE = 0.0015
#: The end of that spin is a busy wait of at most this long (no scheduler pass between
#: the clock reaching the deadline and the Down being sent).
DETECTION_BUSY_WAIT = 0.0002
#: A timer pass also serves sessions due this soon after it, when the jitter window
#: of their periodic packet is already open (epoll's own granularity is 1 ms).
MERGE_WINDOW = 0.001
#: Lazy receive (fewer wake-ups at slow timers): while every session is Up with
#: intervals of at least LAZY_MIN_INTERVAL_US both ways, with no Poll Sequence, Echo
#: function or hold, and there are at most LAZY_MAX_SESSIONS, the receive sockets are
#: read when the timer wakes (for one of our transmissions or a detection deadline)
#: instead of on every arrival. Packets count from their kernel arrival stamps, so
#: detection is as exact; what the peer signals (its Down, a Poll) is seen within one
#: of our transmit intervals. A timer pass then also serves the sessions due within
#: LAZY_MERGE_WINDOW whose jitter window is open, so their packets go out together.
LAZY_MIN_INTERVAL_US = 300_000
LAZY_MAX_SESSIONS = 64
LAZY_MERGE_WINDOW = 0.075
#: Batches read from each socket at a lazy pass (a session's peer sends at most two
#: packets between two of our transmissions).
LAZY_READ_BATCHES = 4
#: Sessions served per timer pass, datagrams per receive pass: then the task yields
#: (about 30 us each: well inside the loop's 2 ms step budget).
PASS_LIMIT = 32
#: Batches read from each socket before a detection is declared (a pass then holds
#: the loop ~1 ms per batch at most; more means a loop far behind anyway).
READ_BEFORE_DETECTION = 2
#: Decoded Control packets kept by their bytes: a peer's steady-state packets repeat
#: (no decode per packet); cleared when full.
DECODED_CACHE = 16384
#: A kernel arrival stamp older than this is not trusted (the wall clock stepped):
#: the packet counts as arriving when read.
MAX_STAMP_AGE = 1.0


#: Called synchronously, in the session's task, with every state change.
OnChange = Callable[[StateChanged], None]
#: A receive socket: (family, port, VRF device or None).
ReceiverKey = tuple[int, int, str | None]
#: Demultiplexing by addresses (RFC 5880 §6.8.6): (VRF, peer, local, multihop).
AddressKey = tuple[str | None, IPAddress, IPAddress, bool]


@attrs.frozen(kw_only=True)
class SessionKey:
    """What identifies a session: the peer, our address, single-hop or multihop, and
    the VRF (None: the default one)."""

    peer: IPAddress
    local: IPAddress
    multihop: bool = False
    interface: str | None = None
    vrf: str | None = None

    def __str__(self) -> str:
        hop = " multihop" if self.multihop else ""
        dev = f" dev {self.interface}" if self.interface else ""
        vrf = f" vrf {self.vrf}" if self.vrf else ""
        return f"{self.peer} (local {self.local}{dev}{vrf}{hop})"

    @property
    def send_device(self) -> str | None:
        """The device our packets are bound to: the link (single-hop), else the VRF."""
        if self.interface and not self.multihop:
            return self.interface
        return self.vrf


@attrs.frozen(kw_only=True)
class BfdStatistics:
    """A snapshot of one session, for ``show bfd peers`` and metrics. Times in seconds
    (``trio.current_time()``), intervals in microseconds as on the wire."""

    key: SessionKey
    profile: str
    state: State
    remote_state: State
    local_discriminator: int
    remote_discriminator: int
    local_diag: Diag
    remote_diag: int
    up_since: float | None
    last_change: float | None
    detect_mult: int
    desired_min_tx_us: int
    required_min_rx_us: int
    echo_rx_us: int
    tx_interval_us: int
    detection_time_us: int | None
    echo_tx_interval_us: int | None
    remote_detect_mult: int | None
    remote_desired_min_tx_us: int | None
    remote_required_min_rx_us: int | None
    remote_echo_rx_us: int | None
    control_rx: int
    control_tx: int
    echo_rx: int
    echo_tx: int
    up_events: int
    down_events: int
    discards: dict[str, int]


class BfdSession:
    """The runtime half of one session; run by :meth:`BfdEndpoint.run_session`."""

    def __init__(
        self,
        endpoint: BfdEndpoint,
        key: SessionKey,
        profile: BfdProfile,
        discriminator: int,
        *,
        on_change: OnChange | None = None,
        name: str | None = None,
        admin_down: bool = False,
    ) -> None:
        self.key = key
        #: The peer's name, so BFD log lines say ``peer=NAME`` as BGP's do (the key
        #: for a session without one, e.g. the standalone tool).
        self.label = name or str(key)
        self.profile = profile
        self._endpoint = endpoint
        now = trio.current_time()
        self.core = Session(
            profile.session_config(multihop=key.multihop),
            rng=endpoint.rng,
            now=now,
            local_discriminator=discriminator,
            coalesce=True,
        )
        if admin_down:  # before the first packet: the peer never sees us Down
            self.core.admin_down(now)
        #: The session task's sleep: kicked for a failure, a backlog of sends, echoes.
        self._alarm = Alarm()
        # The endpoint's timer heap: the deadline and sequence number of this
        # session's live entry (older entries are stale; -1: none).
        self._wake_at = math.inf
        self._wake_seq = -1
        self._running = False
        #: Control datagrams the socket refused (EAGAIN), sent by the session's task.
        self._backlog: list[bytes] = []
        self._echo_queue: list[bytes] = []
        self._destination = (str(key.peer), endpoint.peer_ports[key.multihop])
        #: An error in handling one of this session's packets (in the endpoint's
        #: receive loop): raised in the session's own task, so only its peer restarts.
        self._failure: BaseException | None = None
        self._sender: socket.socket | None = None
        self._changes: Broadcast[StateChanged] = Broadcast(_SUBSCRIBER_BUFFER, f"bfd {key}", log)
        self._on_change = on_change
        self._changed = trio.Event()
        self._up_since: float | None = None
        self._last_change: float | None = None
        self._last_remote: ControlPacket | None = None
        self.runtime_discards: Counter[str] = Counter()
        self._scope = trio.CancelScope()
        self._tasks: trio.Nursery | None = None
        self._echo_link: EchoLink | None = None
        self._echo_starting = False
        self._echo_scope: trio.CancelScope | None = None
        self._reflector_scope: trio.CancelScope | None = None
        self._port = 0
        #: Times the session followed its route to another interface (move_to).
        self.moves = 0
        # Single-hop: the link the session is about (deliver drops other arrivals).
        self._arrival = (
            net.InterfaceIndex(key.interface, vrf=key.vrf)
            if key.interface and not key.multihop
            else None
        )
        self._reflector_started = False  # see _run_reflector
        # hold_control: Control packets the core queued, sent once the hold ends.
        self._held_until: float | None = None
        self._held: list[bytes] = []
        #: Whether this session lets the endpoint read lazily (see LAZY_MIN_INTERVAL_US);
        #: kept in step with the endpoint's set of eager sessions by _rearm.
        self._lazy = False

    # ---- queries --------------------------------------------------------------------

    def _fields(self, **more: object) -> dict[str, Any]:
        """A log line's structured fields: ``peer=NAME``, as every BFD, BGP and peer
        line has it (the message starts ``bfd NAME:``)."""
        return fields(peer=self.label, protocol="bfd", **more)

    @property
    def state(self) -> State:
        return self.core.state

    def statistics(self) -> BfdStatistics:
        core, remote, counters = self.core, self._last_remote, self.core.counters
        discards = Counter({r.value: n for r, n in counters.discards.items()})
        discards.update(self.runtime_discards)
        return BfdStatistics(
            key=self.key,
            profile=self.profile.name,
            state=core.state,
            remote_state=core.remote_state,
            local_discriminator=core.local_discriminator,
            remote_discriminator=core.remote_discriminator,
            local_diag=core.local_diag,
            remote_diag=core.remote_diag,
            up_since=self._up_since,
            last_change=self._last_change,
            detect_mult=core.config.detect_mult,
            desired_min_tx_us=core.desired_min_tx_us,
            required_min_rx_us=core.required_min_rx_us,
            echo_rx_us=core.advertised_echo_rx_us,
            tx_interval_us=core.tx_interval_us,
            detection_time_us=core.detection_time_us,
            echo_tx_interval_us=core.echo_tx_interval_us,
            remote_detect_mult=remote.detect_mult if remote else None,
            remote_desired_min_tx_us=remote.desired_min_tx_us if remote else None,
            remote_required_min_rx_us=remote.required_min_rx_us if remote else None,
            remote_echo_rx_us=remote.required_min_echo_rx_us if remote else None,
            control_rx=counters.control_rx,
            control_tx=counters.control_tx,
            echo_rx=counters.echo_rx,
            echo_tx=counters.echo_tx,
            up_events=counters.up_transitions,
            down_events=counters.down_transitions,
            discards=dict(discards),
        )

    # ---- subscriptions -------------------------------------------------------------

    def subscribe(self) -> trio.MemoryReceiveChannel[StateChanged]:
        """A channel of this session's state changes from now on (close it when done).

        A subscriber that falls :data:`_SUBSCRIBER_BUFFER` changes behind is dropped
        (its channel closes) rather than slowing the session down.
        """
        return self._changes.subscribe()

    async def wait_state(self, *states: State) -> State:
        while self.core.state not in states:
            await self._changed.wait()
        return self.core.state

    # ---- commands ------------------------------------------------------------------

    def admin_down(self) -> None:
        self.core.admin_down(trio.current_time())
        self.kick()

    def admin_up(self) -> None:
        self.core.admin_up(trio.current_time())
        self.kick()

    def set_profile(self, profile: BfdProfile) -> None:
        """Apply new timers to the live session: a Poll sequence, never a reset."""
        self.profile = profile
        self.core.set_profile(
            profile.session_config(multihop=self.key.multihop), trio.current_time()
        )
        self.kick()

    def hold_control(self, seconds: float) -> None:
        """Send the Control packets queued from now on ``seconds`` later, in order
        (nothing is dropped; timers and detection run on). Once: the peer's BGP guard
        calls it right after a BFD teardown wrote the Cease, so that the router reads
        the Cease before our Down (see docs/bfd.md, "BFD and BGP together")."""
        self._held_until = trio.current_time() + seconds
        self.kick()

    def kick(self) -> None:
        """Serve the session in the next timer pass (send what the core queued, re-arm
        its timer); within a pass, at its end."""
        self._endpoint.kick(self)

    def move_to(self, interface: str) -> None:
        """Follow the route to the peer onto ``interface`` (single-hop): packets leave
        there from now on, from the same source port (RFC 5881 §4); arrivals are
        checked against it; the echo link and the echo loop reopen on it. The state
        machine carries on (no reset): if the new link works, the peer sees no gap
        longer than the move. Raises OSError if the new send socket cannot be opened
        (the session then keeps its old interface)."""
        old = self.key
        if old.multihop or old.interface == interface or self._sender is None:
            return
        new = attrs.evolve(old, interface=interface)
        try:  # bound to another device, the same address and port do not conflict
            sender, _ = net.open_sender(new.local, interface=new.send_device, port=self._port)
        except OSError:
            self._sender.close()  # free the port, then take it again on the new device
            try:
                sender, _ = net.open_sender(new.local, interface=new.send_device, port=self._port)
            except OSError:
                self._sender, _ = net.open_sender(
                    old.local, interface=old.send_device, port=self._port
                )
                raise
        else:
            self._sender.close()
        self._sender = sender
        self.key = new
        self._endpoint._rekey(self, old)
        self._arrival = net.InterfaceIndex(interface, vrf=new.vrf)
        self.moves += 1
        for scope in (self._echo_scope, self._reflector_scope):
            if scope is not None:
                scope.cancel()
        if self._echo_link is not None:
            self._echo_link.close()
            self._echo_link = None
        self._echo_starting = False  # the next echo opens the link on the new interface
        self._reflector_started = False  # the next Control packet restarts the loop
        self.kick()

    # ---- the task --------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[BfdSession] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The session's task (started by :meth:`BfdEndpoint.run_session`). Raises
        OSError before ``started`` if the send socket cannot be opened (no such
        interface, address not on this host)."""
        self._sender, port = net.open_sender(
            self.key.local,
            interface=self.key.send_device,
            taken=self._endpoint.ports_in_use,
            rng=self._endpoint.rng,
        )
        self._port = port
        log.info("bfd %s: session started for %s, discriminator %d, source port %d,"
                 " profile %s", self.label, self.key, self.core.local_discriminator, port,
                 self.profile.name, extra=self._fields())  # fmt: skip
        try:
            with self._scope:
                async with trio.open_nursery() as tasks:
                    self._tasks = tasks
                    self._running = True
                    self.kick()  # the first packet, in the next timer pass
                    task_status.started(self)
                    await self._task_loop()
        finally:
            self._running = False
            self._wake_seq = -1
            if self._echo_link is not None:
                self._echo_link.close()
            self._endpoint.ports_in_use.discard(port)
            if self._sender is not None:
                self._sender.close()
            self._changes.close()

    async def stop(self, copies: int = 3, spacing: float = 0.01) -> None:
        """AdminDown (so the peer does not see a failure), sent ``copies`` times against
        loss, then end the session's task."""
        self.core.admin_down(trio.current_time())
        self._held_until, self._held = None, []  # the AdminDown supersedes them
        packets = self.core.datagrams_to_send()
        for i in range(copies):
            if i:
                await trio.sleep(spacing)
            await self._send_control(packets)
        self._drain_events()
        self._running = False
        self._scope.cancel()

    def fail(self, exc: BaseException) -> None:
        """Handling input for this session raised ``exc``: end the session's task with
        it (its peer restarts), not the endpoint's receive loop (every session)."""
        if self._failure is None:
            self._failure = exc
        self._alarm.kick()

    async def _task_loop(self) -> None:
        """Sleep; wake for a failure to raise, sends the socket refused, echoes."""
        while True:
            if self._failure is not None:
                raise self._failure
            if self._backlog:
                backlog, self._backlog = self._backlog, []
                await self._send_control(backlog)
                continue
            if self._echo_queue:
                echoes, self._echo_queue = self._echo_queue, []
                await self._send_echoes(echoes)
                continue
            await self._alarm.sleep_until(None)

    # ---- served by the endpoint's passes ----------------------------------------------

    def _serve(self, now: float) -> None:
        """Run the core's due timers (or send its periodic packet early if the jitter
        window is open), send what it queued, re-arm. In a pass of the endpoint."""
        if not self._running or self._failure is not None:
            return
        core = self.core
        try:
            deadline = core.get_timer()
            if deadline is not None and now >= deadline:
                core.handle_timer(now)
            else:
                core.transmit_early(now)
            held = self._held_until
            if core.has_pending or (held is not None and now >= held):
                self._flush()
        except Exception as exc:  # a bug: it ends this session's peer, not the timer
            self.fail(exc)
            return
        self._rearm()

    def _rearm(self) -> None:
        """Put the session's next deadline (the core's timer, or the end of a hold) in
        the endpoint's heap, unless it is there already."""
        deadline = self.core.get_timer()
        at = math.inf if deadline is None else deadline
        held = self._held_until
        if held is not None and held < at:
            at = held
        lazy = self._endpoint.lazy_receive and self.lazy_blocker() is None
        if lazy is not self._lazy:
            self._lazy = lazy
            self.core.follow_peer = not lazy  # read lazily, answering would not jitter
            self._endpoint.note_lazy(self, lazy)
        if at == self._wake_at and self._wake_seq >= 0:
            return
        if at == math.inf:
            self._wake_at, self._wake_seq = math.inf, -1
            return
        self._endpoint.arm(self, at, at == self.core.detection_deadline)

    def lazy_blocker(self) -> str | None:
        """Why this session needs its packets read on arrival (None: it does not).
        Asked after every packet: constant strings, nothing formatted."""
        core = self.core
        if core.state is not State.UP:
            return "not Up"
        if core.poll_active:
            return "poll sequence"
        if self.profile.echo_mode:
            return "echo"
        if self._held_until is not None or self._backlog:
            return "sending held"
        if core.tx_interval_us < LAZY_MIN_INTERVAL_US:
            return "transmit interval under 300 ms"
        if core.receive_interval_us < LAZY_MIN_INTERVAL_US:
            return "receive interval under 300 ms"
        return None

    def _wants_detection(self, now: float) -> bool:
        deadline = self.core.detection_deadline
        return deadline is not None and now >= deadline

    def _flush(self) -> None:
        # Events first: a path failure cancels the BGP session (and writes its Cease)
        # before anything here is sent; logged once the packets are out.
        changes: list[StateChanged] = []
        self._drain_events(changes)
        datagrams = self._releasable(self.core.datagrams_to_send())
        if datagrams:
            self._send_now(datagrams)
        echoes = self.core.echo_datagrams_to_send()
        if echoes:
            self._echo_queue.extend(echoes)
            self._alarm.kick()
        self._drain_events(changes)
        for change in changes:
            self._finish_publish(change)

    def _send_now(self, datagrams: list[bytes]) -> None:
        """Send without waiting; what the socket refuses goes to the session's task."""
        if self._backlog:  # keep the order
            self._backlog.extend(datagrams)
            return
        sender = self._sender
        if sender is None:
            return
        destination = self._destination
        for i, datagram in enumerate(datagrams):
            if not datagram:
                continue
            try:
                sender.sendto(datagram, destination)
            except BlockingIOError:  # socket buffer full: the task waits, nothing dropped
                self._backlog.extend(datagrams[i:])
                self._alarm.kick()
                return
            except OSError as exc:
                # No route, interface down...: the peer will see silence, as with a cut.
                self.runtime_discards[f"send-error-{exc.errno}"] += 1

    def _releasable(self, datagrams: list[bytes]) -> list[bytes]:
        """What may go out now: everything, unless :meth:`hold_control` holds it."""
        if self._held_until is None:
            return datagrams
        if trio.current_time() < self._held_until:
            self._held.extend(datagrams)
            return []
        out, self._held, self._held_until = self._held + datagrams, [], None
        return out

    async def _send_echoes(self, echoes: list[bytes]) -> None:
        link = self._echo_link
        if link is None:
            # The link opens in its own task (it may wait for ARP); echoes produced
            # meanwhile are lost, which the core's echo detection tolerates at start.
            self.runtime_discards["echo-link-not-ready"] += len(echoes)
            if not self._echo_starting and self._tasks is not None:
                self._echo_starting = True
                self._tasks.start_soon(self._run_echo)
            return
        for payload in echoes:
            try:
                await link.send(payload)
            except EchoLinkError:
                self.runtime_discards["echo-send-error"] += 1

    async def _run_echo(self) -> None:
        """Open the AF_PACKET echo link and feed returned echoes to the core (until
        :meth:`move_to` cancels it)."""
        with trio.CancelScope() as scope:
            self._echo_scope = scope
            await self._echo_task()
        if self._echo_scope is scope:
            self._echo_scope = None

    async def _echo_task(self) -> None:
        local, peer, interface = self.key.local, self.key.peer, self.key.interface
        if (
            interface is None
            or not isinstance(local, ipaddress.IPv4Address)
            or not isinstance(peer, ipaddress.IPv4Address)
            or self.key.multihop
        ):
            log.error(
                "bfd %s: echo needs a single-hop IPv4 session with an interface",
                self.label,
                extra=self._fields(),
            )
            self.runtime_discards["echo-unavailable"] += 1
            return
        link = EchoLink(interface, local, peer, next_hop_ip=_echo_next_hop(self.key))
        try:
            await link.open()
        except EchoLinkError as exc:
            log.error("bfd %s: echo link: %s", self.label, exc, extra=self._fields())
            self.runtime_discards["echo-unavailable"] += 1
            self._echo_starting = False
            return
        if self.key.interface != interface:  # moved while the link opened
            link.close()
            self._echo_starting = False
            return
        self._echo_link = link
        log.info("bfd %s: echo link up on %s (peer MAC %s)", self.label, link.ifname,
                 link.peer_mac.hex(":"), extra=self._fields())  # fmt: skip
        while True:
            payload = await link.receive()
            now = trio.current_time()
            self.core.receive_echo(payload, now)
            self._after_input(now)

    async def _run_reflector(self) -> None:
        """Keep the promise our nonzero Required Min Echo RX makes: loop the peer's
        echoes back to it (a node with ip_forward=0 would drop them). If that cannot
        be done and the kernel does not forward, advertise 0 instead. Cancelled by
        :meth:`move_to`."""
        with trio.CancelScope() as scope:
            self._reflector_scope = scope
            await self._reflector_task()
        if self._reflector_scope is scope:
            self._reflector_scope = None

    async def _reflector_task(self) -> None:
        key = self.key
        interface = key.interface
        if interface is None or not isinstance(key.peer, ipaddress.IPv4Address):
            self._no_echo_loop("echo looping needs a single-hop IPv4 session with an interface")
            return
        # The peer may send one echo per our echo_interval; twice that, for jitter.
        reflector = EchoReflector(interface, key.peer, rate=2000 / self.profile.echo_interval,
                                  counters=self.runtime_discards)  # fmt: skip
        try:
            reflector.open()
        except EchoLinkError as exc:
            self._no_echo_loop(str(exc))
            return
        log.info(
            "bfd %s: looping the peer's echoes on %s", self.label, interface, extra=self._fields()
        )
        try:
            await reflector.run()
        except EchoLinkError as exc:
            self._no_echo_loop(str(exc))
        finally:
            reflector.close()

    def _no_echo_loop(self, why: str) -> None:
        if self.key.interface is not None and kernel_forwards(self.key.interface):
            return  # the kernel loops the peer's echoes
        log.warning("bfd %s: cannot loop the peer's echoes (%s): advertising no echo",
                    self.label, why, extra=self._fields())  # fmt: skip
        self.runtime_discards["echo-loop-unavailable"] += 1
        self.core.set_echo_loop(False, trio.current_time())
        self.kick()

    def _drain_events(self, deferred: list[StateChanged] | None = None) -> None:
        """Publish the core's events; ``deferred``: only call ``on_change`` now and
        collect the state changes there, for the caller to finish publishing (the
        subscribers, the log line) once it has sent the packets: our Down should not
        wait for them (a log line alone costs ~0.1 ms)."""
        while (event := self.core.next_event()) is not None:
            if isinstance(event, StateChanged):
                self._publish(event, finish=deferred is None)
                if deferred is not None:
                    deferred.append(event)
            elif isinstance(event, TimersChanged):
                log.debug("bfd %s: timers tx %d us, detection %s us, echo %s us", self.label,
                          event.tx_interval_us, event.detection_time_us,
                          event.echo_tx_interval_us, extra=self._fields())  # fmt: skip

    async def _send_control(self, datagrams: list[bytes]) -> None:
        sender = self._sender
        assert sender is not None
        destination = (str(self.key.peer), self._endpoint.peer_ports[self.key.multihop])
        for datagram in datagrams:
            if not datagram:
                continue
            while True:
                try:
                    sender.sendto(datagram, destination)
                except BlockingIOError:  # socket buffer full: wait, do not drop
                    await trio.lowlevel.wait_writable(sender)
                    continue
                except OSError as exc:
                    # No route, interface down...: the peer will see silence, as with a cut.
                    self.runtime_discards[f"send-error-{exc.errno}"] += 1
                break

    def _publish(self, event: StateChanged, *, finish: bool = True) -> None:
        self._last_change = event.at
        if event.new is State.UP:
            self._up_since = event.at
        elif event.old is State.UP:
            self._up_since = None
        if self._on_change is not None:
            # First, before logging: a path failure's teardown (the Cease on the BGP
            # socket) happens in this task step.
            self._on_change(event)
        if finish:
            self._finish_publish(event)

    def _finish_publish(self, event: StateChanged) -> None:
        """The subscribers, waiters and log line of a state change."""
        self._changes.publish(event)
        self._changed.set()
        self._changed = trio.Event()
        self._log_change(event)

    def _log_change(self, event: StateChanged) -> None:
        level = logging.WARNING if event.path_failure else logging.INFO
        log.log(level, "bfd %s: %s -> %s, diag %s (%s)", self.label, event.old.name,
                event.new.name, event.diag.name, event.reason,
                extra=self._fields(old=event.old.name,
                             new=event.new.name, diag=event.diag.name,
                             reason=event.reason))  # fmt: skip

    # ---- input from the endpoint ------------------------------------------------------

    def _after_input(self, now: float, *, answered: bool = False) -> None:
        """After an input: send the periodic packet now if its window is open (this
        pass costs no extra wake-up; ``answered``: the core did, on a Control packet),
        what the core queued, and re-arm the timer."""
        core = self.core
        if not answered:
            core.transmit_early(now)
        if core.has_pending:
            self._flush()
        self._rearm()

    def deliver(
        self,
        packet: ControlPacket,
        datagram: net.Datagram,
        now: float,
        arrived: float | None = None,
    ) -> None:
        """A decoded Control packet for this session, already demultiplexed; ``arrived``:
        when it reached the host (kernel timestamp, Trio time), default ``now``."""
        minimum = self.profile.minimum_ttl if self.key.multihop else 255
        if datagram.ttl is not None and datagram.ttl < minimum:
            self.runtime_discards["ttl-below-minimum"] += 1
            return
        if self._arrival is not None and not self._arrival.matches(datagram.ifindex, now):
            self.runtime_discards["wrong-interface"] += 1
            return
        source = datagram.source
        if source is not self.key.peer and source != self.key.peer:
            self.runtime_discards["source-mismatch"] += 1
            return
        if self.core.receive_decoded(packet, now, arrived=arrived) is None:
            self._last_remote = packet
            if self.profile.echo_mode and not self._reflector_started and self._tasks:
                self._reflector_started = True
                self._tasks.start_soon(self._run_reflector)
        if self._running:
            self._after_input(now, answered=True)


def _echo_next_hop(key: SessionKey) -> ipaddress.IPv4Address | None:
    """The gateway of the route to the peer when that route leaves on the session's
    interface through one (echo frames then go to the gateway's MAC); None: the peer
    is on the link (or the route cannot tell)."""
    try:
        route = route_to(key.peer, vrf=key.vrf)
    except OSError:
        return None
    if route.interface != key.interface or not isinstance(route.gateway, ipaddress.IPv4Address):
        return None
    return route.gateway


class BfdEndpoint:
    """All BFD sessions of a process, their receive sockets and demultiplexing."""

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        ports: tuple[int, int] | None = None,
        peer_ports: tuple[int, int] | None = None,
        precise_timers: bool = True,
        lazy_receive: bool | None = None,
    ) -> None:
        """``ports`` / ``peer_ports``: (single-hop, multihop) ports to listen on and to
        send to; the RFC's 3784/4784 unless a test runs two endpoints side by side.
        ``precise_timers``: wake early for a detection deadline and spin to it (epoll
        rounds up to whole ms); False under a virtual clock (``trio.testing.MockClock``),
        where a spin would never let time advance. ``lazy_receive``: read the sockets
        at timer passes while every session allows it (LAZY_MIN_INTERVAL_US); by
        default when ``precise_timers`` (it needs the kernel's arrival stamps)."""
        self.rng = rng or random.SystemRandom()
        self.precise_timers = precise_timers
        self.lazy_receive = precise_timers if lazy_receive is None else lazy_receive
        #: Sessions that need their packets read on arrival (see lazy_blocker), and the
        #: event that wakes lazily waiting receive loops when one appears.
        self._eager: set[BfdSession] = set()
        self._eager_event = trio.Event()
        standard = (net.control_port(False), net.control_port(True))
        self.ports = ports or standard
        self.peer_ports = peer_ports or standard
        self.sessions: dict[SessionKey, BfdSession] = {}
        self.ports_in_use: set[int] = set()
        self.discards: Counter[str] = Counter()
        self._by_discriminator: dict[int, BfdSession] = {}
        self._by_addresses: dict[AddressKey, BfdSession] = {}
        self._receivers: dict[ReceiverKey, trio.socket.SocketType] = {}
        #: A VRF receiver's VRF ifindex when it was opened, and its loop's scope: a
        #: VRF deleted and created again gets a new index, and a new socket.
        self._receiver_vrf_index: dict[ReceiverKey, int] = {}
        self._receiver_scopes: dict[ReceiverKey, trio.CancelScope] = {}
        self._receiver_lock = trio.Lock()
        #: What the receive loops read from: plain sockets on the same files, by the
        #: receiver they belong to.
        self._readers: dict[ReceiverKey, tuple[socket.socket, _ReceiveState]] = {}
        self._nursery: trio.Nursery | None = None
        # The one timer: (deadline, sequence, session), stale entries skipped.
        self._heap: list[tuple[float, int, BfdSession]] = []
        self._sequence = itertools.count()
        self._timer_scope: trio.CancelScope | None = None
        self._timer_wake = math.inf
        #: Decoded packets by their bytes (immutable; unauthenticated only).
        self._decoded: dict[bytes, ControlPacket] = {}
        #: Wake-ups and work, for tests and profiles: timer wakes and passes, receive
        #: wakes and datagrams, periodic packets sent early (coalesced).
        self.counts: Counter[str] = Counter()

    @property
    def running(self) -> bool:
        return self._nursery is not None

    async def run(
        self, *, task_status: trio.TaskStatus[BfdEndpoint] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                await self._run_timer()
        finally:
            self._nursery = None
            for sock in self._receivers.values():
                sock.close()
            self._receivers.clear()
            self._receiver_vrf_index.clear()
            self._receiver_scopes.clear()
            for reader, _state in self._readers.values():
                reader.close()
            self._readers.clear()

    # ---- the one timer ----------------------------------------------------------------

    def arm(self, session: BfdSession, at: float, detection: bool = False) -> None:
        """Serve ``session`` at ``at`` (replacing its earlier entry); ``detection``:
        the deadline is a detection deadline, woken for early and spun to (epoll
        rounds its timeout up to whole milliseconds)."""
        seq = next(self._sequence)
        session._wake_at, session._wake_seq = at, seq
        heapq.heappush(self._heap, (at, seq, session))
        wake = at - DETECTION_EARLY_WAKE if detection and self.precise_timers else at
        if wake < self._timer_wake:
            self._set_timer(wake)

    def kick(self, session: BfdSession) -> None:
        """Serve ``session`` now (at the end of the current pass, if one runs)."""
        self.arm(session, trio.current_time())

    def eager_sessions(self) -> list[BfdSession]:
        """The sessions that keep the sockets read on arrival (see reading_lazily)."""
        return list(self._eager)

    @property
    def reading_lazily(self) -> bool:
        """Whether the receive sockets are read at timer passes (LAZY_MIN_INTERVAL_US)
        rather than on every arrival."""
        return self.lazy_receive and not self._eager and 0 < len(self.sessions) <= LAZY_MAX_SESSIONS

    def note_lazy(self, session: BfdSession, lazy: bool) -> None:
        """``session`` allows lazy reading now, or needs its packets on arrival."""
        if lazy:
            self._eager.discard(session)
            return
        self._eager.add(session)
        self._eager_event.set()

    def _set_timer(self, wake: float) -> None:
        self._timer_wake = wake
        if self._timer_scope is not None:
            self._timer_scope.deadline = wake

    def _next_wake(self) -> tuple[float, float]:
        """(deadline, wake) of the earliest live entry: wake is earlier than the
        deadline for a precise detection deadline; (inf, inf) when there is none."""
        heap = self._heap
        while heap:
            at, seq, session = heap[0]
            if session._wake_seq == seq:
                if self.precise_timers and at == session.core.detection_deadline:
                    return at, at - DETECTION_EARLY_WAKE
                return at, at
            heapq.heappop(heap)
        return math.inf, math.inf

    def _retime(self) -> None:
        """Sleep exactly until the earliest live entry: also LATER, when the session
        that was due first sent its packet early (no wake-up for a stale entry)."""
        if self._timer_scope is not None:
            self._set_timer(self._next_wake()[1])

    async def _run_timer(self) -> None:
        while True:
            deadline, wake = self._next_wake()
            now = trio.current_time()
            if now < deadline:
                if now < wake:
                    self._timer_wake = wake
                    with trio.CancelScope(deadline=wake) as scope:
                        self._timer_scope = scope
                        try:
                            await trio.sleep_forever()
                        finally:
                            self._timer_scope = None
                            self._timer_wake = math.inf
                    self.counts["timer-wakes"] += 1
                    if scope.deadline != -math.inf:  # a deadline (not a cancel): on time?
                        timer_woke(scope.deadline, trio.current_time())
                elif deadline - now <= DETECTION_BUSY_WAIT:
                    # The last stretch without yielding (a pass of the loop is longer
                    # than this): a packet that arrives meanwhile is read, with its
                    # kernel stamp, before the detection is declared (_timer_pass).
                    while trio.current_time() < deadline:
                        pass
                else:
                    # Within DETECTION_EARLY_WAKE of a detection deadline: yield-spin
                    # (each checkpoint lets the receive loops run, and a packet that
                    # moves the deadline ends the spin). Only when packets stop.
                    await trio.lowlevel.checkpoint()
                continue
            self._timer_pass(now)
            await trio.lowlevel.checkpoint()

    def _timer_pass(self, now: float) -> None:
        """Serve the sessions due at ``now`` (PASS_LIMIT at most), and those due within
        MERGE_WINDOW whose periodic packet may go now."""
        heap, due = self._heap, list[BfdSession]()
        lazy = self.reading_lazily
        if lazy:  # what arrived since the last pass, stamped, before any deadline
            self.counts["lazy-passes"] += 1
            self._read_queued(LAZY_READ_BATCHES)
            now = trio.current_time()
        limit = now + (LAZY_MERGE_WINDOW if lazy else MERGE_WINDOW)
        while heap and len(due) < PASS_LIMIT:
            at, seq, session = heap[0]
            if session._wake_seq != seq:
                heapq.heappop(heap)
                continue
            if at > limit:
                break
            heapq.heappop(heap)
            session._wake_at, session._wake_seq = math.inf, -1
            due.append(session)
        self.counts["timer-passes"] += 1
        if not lazy and any(s._wants_detection(now) for s in due):
            # Before declaring a session down: what the kernel already received (and
            # stamped) counts, even if this task ran before the receive loop.
            self._read_queued()
            now = trio.current_time()
        for session in due:
            session._serve(now)

    # ---- receiving ----------------------------------------------------------------------

    async def add_session(
        self, key: SessionKey, profile: BfdProfile, *, on_change: OnChange | None = None
    ) -> BfdSession:
        """Create a session and run it in the endpoint's own nursery (standalone use,
        benchmarks); end it with :meth:`remove_session`. ``on_change`` sees every state
        change, the first included (a subscription made after this returns can miss a
        peer that answers at once)."""
        if self._nursery is None:
            raise RuntimeError("BfdEndpoint.run() is not running")
        session: BfdSession = await self._nursery.start(
            functools.partial(self.run_session, key, profile, on_change=on_change)
        )
        return session

    async def run_session(
        self,
        key: SessionKey,
        profile: BfdProfile,
        *,
        on_change: OnChange | None = None,
        name: str | None = None,
        admin_down: bool = False,
        task_status: trio.TaskStatus[BfdSession] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run one session in the caller's nursery: ``session = await
        nursery.start(endpoint.run_session, key, profile)``. It receives packets while
        this runs; ``admin_down`` starts it AdminDown (:meth:`BfdSession.admin_up` then
        enables it); :meth:`BfdSession.stop` (AdminDown) or a cancellation ends it, and an
        exception in its task propagates to the caller's nursery, not to the endpoint.

        Raises:
            RuntimeError: the endpoint is not running.  ValueError: a session with this
            key exists.  OSError: a socket could not be opened (before ``started``).
        """
        if self._nursery is None:
            raise RuntimeError("BfdEndpoint.run() is not running")
        if key in self.sessions:
            raise ValueError(f"a BFD session for {key} exists already")
        family = socket.AF_INET if key.peer.version == 4 else socket.AF_INET6
        receiver: ReceiverKey = (family, self.ports[key.multihop], key.vrf)
        await self._ensure_receiver(receiver, key.multihop)
        discriminator = 0
        while discriminator == 0 or discriminator in self._by_discriminator:
            discriminator = self.rng.getrandbits(32)
        session = BfdSession(
            self, key, profile, discriminator, on_change=on_change, name=name,
            admin_down=admin_down,
        )  # fmt: skip
        self.note_lazy(session, False)  # until Up at slow timers
        self.sessions[key] = session
        self._by_discriminator[discriminator] = session
        self._by_addresses[(key.vrf, key.peer, key.local, key.multihop)] = session
        try:
            await session.run(task_status=task_status)
        finally:
            self._forget(session)

    async def remove_session(self, session: BfdSession) -> None:
        await session.stop()
        self._forget(session)

    async def shutdown(self) -> None:
        """AdminDown on every session (RFC 5882: the peers must not see a failure)."""
        async with trio.open_nursery() as nursery:
            for session in list(self.sessions.values()):
                nursery.start_soon(self.remove_session, session)

    def _forget(self, session: BfdSession) -> None:
        # Only if it is still this session's entry (a successor may hold the key).
        key = session.key
        self._eager.discard(session)
        if self.sessions.get(key) is session:
            del self.sessions[key]
        if self._by_discriminator.get(session.core.local_discriminator) is session:
            del self._by_discriminator[session.core.local_discriminator]
        addresses = (key.vrf, key.peer, key.local, key.multihop)
        if self._by_addresses.get(addresses) is session:
            del self._by_addresses[addresses]

    def _rekey(self, session: BfdSession, old: SessionKey) -> None:
        """``session`` moved from ``old`` to its key now (another interface)."""
        if self.sessions.get(old) is session:
            del self.sessions[old]
        self.sessions[session.key] = session

    async def _ensure_receiver(self, key: ReceiverKey, multihop: bool) -> None:
        """The receive socket of ``key`` open and read; a VRF's reopened if the VRF
        device was created again since (a socket bound to the old one hears nothing).
        Raises OSError (no such VRF device, port taken).

        One at a time: two sessions starting together would otherwise both find no
        socket, both open one (SO_REUSEADDR lets the second bind), and the kernel
        would deliver each datagram to either; a lazy pass reads only the one in
        ``_readers``, so half the peers' packets would wait unread (false Downs)."""
        async with self._receiver_lock:
            await self._ensure_receiver_locked(key, multihop)

    async def _ensure_receiver_locked(self, key: ReceiverKey, multihop: bool) -> None:
        assert self._nursery is not None
        family, port, vrf = key
        index = 0
        if vrf is not None:
            try:
                index = socket.if_nametoindex(vrf)
            except OSError:
                raise OSError(errno.ENODEV, f"no VRF device {vrf!r}") from None
        if key in self._receivers and self._receiver_vrf_index.get(key, 0) == index:
            return
        if key in self._receivers:
            log.info("bfd: VRF %s was created again: new receive socket for port %d", vrf, port)
            self._receiver_scopes.pop(key).cancel()
            self._receivers.pop(key).close()
            # Its loop closes the reader when the cancellation reaches it; until then
            # no detection reads from it (_read_queued).
            self._readers.pop(key, None)
        sock = await net.open_receiver(socket.AddressFamily(family), port, vrf=vrf)
        self._receivers[key] = sock
        self._receiver_vrf_index[key] = index
        scope = trio.CancelScope()
        self._receiver_scopes[key] = scope
        self._nursery.start_soon(self._scoped_receive_loop, scope, key, sock, multihop)

    async def _scoped_receive_loop(
        self, scope: trio.CancelScope, key: ReceiverKey, sock: trio.socket.SocketType,
        multihop: bool,
    ) -> None:  # fmt: skip
        with scope:
            await self._receive_loop(sock, multihop, key)

    async def _receive_loop(
        self, sock: trio.socket.SocketType, multihop: bool, key: ReceiverKey
    ) -> None:
        """Receive and dispatch; keep the socket's buffer sized for its sessions.

        One wake-up reads every datagram queued (PASS_LIMIT at a time), each stamped
        by the kernel on arrival. Single-hop: TTL / hop limit 255 is enforced by a
        filter in the kernel (see :mod:`speaker.bfd.net`), so a flood from afar never
        reaches the buffer; what the kernel dropped is counted as ``kernel-dropped``."""
        version = 4 if sock.family == socket.AF_INET else 6
        if not multihop:
            try:
                net.attach_gtsm_filter(sock)
            except OSError as exc:  # deliver() still checks each packet's TTL
                log.warning("bfd: no kernel TTL filter on the IPv%d socket: %s", version, exc)
        if self.precise_timers:
            net.enable_timestamps(sock)
        # A plain socket on the same open file: non-blocking reads without a
        # scheduler pass each (the Trio socket's recvmsg checkpoints per call).
        vrf = key[2]
        reader = socket.fromfd(sock.fileno(), sock.family, sock.type)
        reader.setblocking(False)
        state = _ReceiveState(multihop, version, vrf)
        entry = (reader, state)
        self._readers[key] = entry
        try:
            while True:
                # A lazy wait can end (a session turned eager) just as _ensure_receiver
                # cancels this loop and closes its socket (a VRF created again).
                await trio.lowlevel.checkpoint_if_cancelled()
                if len(self.sessions) != state.sized_for:
                    state.sized_for = len(self.sessions)
                    intervals = [
                        s.profile.receive_interval
                        for s in self.sessions.values()
                        if s.key.multihop == multihop
                        and s.key.peer.version == version
                        and s.key.vrf == vrf
                    ]
                    net.set_receive_buffer(sock, net.receive_buffer_bytes(intervals))
                if self.reading_lazily:  # the timer's passes read (LAZY_MIN_INTERVAL_US)
                    if self._eager_event.is_set():
                        self._eager_event = trio.Event()
                    self.counts["lazy-waits"] += 1
                    await self._eager_event.wait()
                    continue
                await trio.lowlevel.wait_readable(reader)
                self.counts["receive-wakes"] += 1
                while self._read(reader, state) >= PASS_LIMIT:
                    await trio.lowlevel.checkpoint()
                self._retime()
        finally:
            if self._readers.get(key) is entry:
                del self._readers[key]
            reader.close()

    def _read_queued(self, batches: int = READ_BEFORE_DETECTION) -> None:
        """Read what is queued on every receive socket now (before a detection, or at
        a lazy pass): all of it, up to ``batches`` batches (the packet that counts may
        be behind others)."""
        for reader, state in list(self._readers.values()):
            for _ in range(batches):
                if self._read(reader, state) < PASS_LIMIT:
                    break

    def _read(self, reader: socket.socket, state: _ReceiveState) -> int:
        """One batch: read, stamp and dispatch up to PASS_LIMIT datagrams."""
        try:
            batch = net.receive_batch(reader, PASS_LIMIT)
        except OSError as exc:  # e.g. ICMP errors queued on the socket
            self.discards[f"receive-error-{exc.errno}"] += 1
            return 1
        if not batch:
            return 0
        now = trio.current_time()
        wall = time.time() if self.precise_timers else None
        self.counts["datagrams"] += len(batch)
        for datagram in batch:
            drops = datagram.kernel_drops
            if drops is not None and drops != state.drops_seen:
                self.discards["kernel-dropped"] += (drops - state.drops_seen) & 0xFFFFFFFF
                state.drops_seen = drops
            arrived = None
            if wall is not None and datagram.stamp is not None:
                age = wall - datagram.stamp
                if 0.0 <= age <= MAX_STAMP_AGE:
                    arrived = now - age
            try:
                self.dispatch(datagram, state.multihop, now, arrived, vrf=state.vrf)
            except Exception:  # a bug: lose this packet, never the receive loop
                self.discards["internal-error"] += 1
                if self.discards["internal-error"] == 1:
                    log.exception("bfd: error handling a packet from %s (counted as"
                                  " internal-error; logged once)", datagram.source)  # fmt: skip
        return len(batch)

    def dispatch(
        self,
        datagram: net.Datagram,
        multihop: bool,
        now: float,
        arrived: float | None = None,
        *,
        vrf: str | None = None,
    ) -> None:
        """Find the session a datagram belongs to (RFC 5880 §6.8.6: by Your
        Discriminator, or by addresses while it is zero) and hand it over. ``arrived``:
        when it reached the host (kernel stamp, Trio time). ``vrf``: the VRF of the
        socket it arrived on; only that VRF's sessions can have it."""
        data = datagram.data
        packet = self._decoded.get(data)
        try:
            if packet is None:
                packet = ControlPacket.decode(data)
                if packet.auth is None:  # a peer's steady-state packets: the same bytes
                    if len(self._decoded) >= DECODED_CACHE:
                        self._decoded.clear()
                    self._decoded[data] = packet
        except BfdDecodeError as exc:
            session = self._find(datagram, multihop, vrf)
            reason = getattr(exc, "discard_reason", DiscardReason.MALFORMED).value
            (session.runtime_discards if session else self.discards)[reason] += 1
            return
        if packet.your_discriminator:
            session = self._by_discriminator.get(packet.your_discriminator)
        else:
            session = self._find(datagram, multihop, vrf)
        if session is None or session.key.multihop != multihop or session.key.vrf != vrf:
            self.discards[DiscardReason.NO_SESSION.value] += 1
            return
        try:
            session.deliver(packet, datagram, now, arrived)
        except Exception as exc:  # a bug: it ends this session's peer, not the loop
            session.fail(exc)

    def _find(
        self, datagram: net.Datagram, multihop: bool, vrf: str | None = None
    ) -> BfdSession | None:
        if datagram.destination is None:
            return None
        return self._by_addresses.get((vrf, datagram.source, datagram.destination, multihop))


@attrs.define
class _ReceiveState:
    """What a receive loop keeps between batches."""

    multihop: bool
    version: int
    vrf: str | None = None
    sized_for: int = -1
    drops_seen: int = 0
