"""The BFD runtime: sessions of the sans-IO core driven by Trio sockets and timers.

Task tree::

    BfdEndpoint.run                      (one per process): sockets and demultiplexing
    └── receive loop per (family, port, VRF)  decode, GTSM, demultiplex, hand to session

    BfdEndpoint.run_session              in the nursery of whoever owns the session
    └── BfdSession.run                   timers, sends, events; echo tasks if enabled

The endpoint owns only the receive sockets and the demultiplexing table: each
session's task runs where its owner starts it (the speaker: in the peer's nursery,
so an exception in one session ends that peer only; :meth:`BfdEndpoint.add_session`
runs it in the endpoint's own nursery, for standalone use and benchmarks).

All sends happen in the session's own task: an input (packet, admin change, profile
change) only updates the core and "kicks" the task, so a receive loop never waits on
a send. A received packet kicks it only when the core has something to send or report
or an earlier deadline (a steady-state packet just pushes detection later): one task
wake-up per packet. Sends are direct non-blocking ``sendto`` calls (no scheduler pass).
State changes go out two ways: synchronously to the owner's ``on_change`` callback
(the peer's BGP guard: no task switch between detection and teardown), and through
memory channels to any number of subscribers.

A session in a VRF (``SessionKey.vrf``) is received on sockets of that VRF only and
demultiplexed among that VRF's sessions: the same addresses may be in use in two
VRFs. A single-hop session whose interface the route chose may follow the route to
another interface (:meth:`BfdSession.move_to`) without a reset.

One module of 700+ lines on purpose: :class:`BfdSession` and :class:`BfdEndpoint` are
one mechanism seen from its two ends. The endpoint's receive loop finds the session and
calls :meth:`BfdSession.deliver` within the packet's step; the session sends from the
endpoint's sockets, ports and RNG. Apart, each would need a public interface for what
is private between them.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import random
import socket
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
from speaker.netlookup import route_to

__all__ = ["BfdEndpoint", "BfdSession", "BfdStatistics", "SessionKey"]

log = logging.getLogger("speaker.bfd")

_SUBSCRIBER_BUFFER = 64


#: How early to wake for a detection deadline (then spin): a bit over epoll's 1 ms.
DETECTION_EARLY_WAKE = 0.0015


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
        )
        if admin_down:  # before the first packet: the peer never sees us Down
            self.core.admin_down(now)
        self._alarm = Alarm()
        self._precise = True
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
        """Make the session task run now (send what the core queued, re-arm timers)."""
        self._alarm.kick()

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
                    task_status.started(self)
                    await self._timer_loop()
        finally:
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
        self._scope.cancel()

    def fail(self, exc: BaseException) -> None:
        """Handling input for this session raised ``exc``: end the session's task with
        it (its peer restarts), not the endpoint's receive loop (every session)."""
        if self._failure is None:
            self._failure = exc
        self.kick()

    async def _timer_loop(self) -> None:
        self._precise = self._endpoint.precise_timers
        while True:
            if self._failure is not None:
                raise self._failure
            now = trio.current_time()
            deadline = self.core.get_timer()
            if deadline is not None and now >= deadline:
                self.core.handle_timer(now)
            await self._flush()
            deadline = self.core.get_timer()
            wake_at = self._wake_at(deadline)
            if self._held_until is not None:
                wake_at = min(wake_at, self._held_until)
            await self._alarm.sleep_until(wake_at)
            if wake_at != deadline and deadline is not None:
                await self._spin_until(deadline)

    def _wake_at(self, deadline: float | None) -> float:
        if deadline is None:
            return math.inf
        if self._precise and deadline == self.core.detection_deadline:
            # epoll rounds its timeout up to whole milliseconds, so a detection
            # would fire up to 1 ms late: wake early, finish in _spin_until.
            return deadline - DETECTION_EARLY_WAKE
        return deadline

    def _input_done(self) -> None:
        """After an input (received packet or echo): wake the task only if the core
        has something to send or report, or its next timer moved before the armed
        wake. A steady-state packet only pushes detection later, so the task sleeps
        on to its next transmission: one wake-up per packet, not two."""
        armed = self._alarm.deadline
        if armed is None or self.core.has_pending or self._wake_at(self.core.get_timer()) < armed:
            self.kick()

    async def _spin_until(self, deadline: float) -> None:
        """Yield-spin (about DETECTION_EARLY_WAKE at most) until a detection deadline.

        Only for the detection deadline, which is reached only when packets stop
        arriving, so this costs nothing in steady state. Each checkpoint lets the
        receive loop run (epoll with a zero timeout), and a packet that moves the
        deadline ends the spin."""
        while trio.current_time() < deadline and self.core.detection_deadline == deadline:
            if deadline - trio.current_time() > 2 * DETECTION_EARLY_WAKE:
                return  # woken by a kick well before the deadline: nothing to refine
            await trio.lowlevel.checkpoint()

    async def _flush(self) -> None:
        # Events first: a path failure cancels the BGP session (and writes its Cease)
        # before anything here yields to the scheduler.
        self._drain_events()
        await self._send_control(self._releasable(self.core.datagrams_to_send()))
        echoes = self.core.echo_datagrams_to_send()
        if echoes:
            await self._send_echoes(echoes)
        self._drain_events()

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
            self.core.receive_echo(payload, trio.current_time())
            self._input_done()

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

    def _drain_events(self) -> None:
        while (event := self.core.next_event()) is not None:
            if isinstance(event, StateChanged):
                self._publish(event)
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

    def _publish(self, event: StateChanged) -> None:
        self._last_change = event.at
        if event.new is State.UP:
            self._up_since = event.at
        elif event.old is State.UP:
            self._up_since = None
        if self._on_change is not None:
            # First, before logging: a path failure's teardown (the Cease on the BGP
            # socket) happens in this task step.
            self._on_change(event)
        level = logging.WARNING if event.path_failure else logging.INFO
        log.log(level, "bfd %s: %s -> %s, diag %s (%s)", self.label, event.old.name,
                event.new.name, event.diag.name, event.reason,
                extra=self._fields(old=event.old.name,
                             new=event.new.name, diag=event.diag.name,
                             reason=event.reason))  # fmt: skip
        self._changes.publish(event)
        self._changed.set()
        self._changed = trio.Event()

    # ---- input from the endpoint ------------------------------------------------------

    def deliver(self, packet: ControlPacket, datagram: net.Datagram, now: float) -> None:
        """A decoded Control packet for this session, already demultiplexed."""
        minimum = self.profile.minimum_ttl if self.key.multihop else 255
        if datagram.ttl is not None and datagram.ttl < minimum:
            self.runtime_discards["ttl-below-minimum"] += 1
            return
        if self._arrival is not None and not self._arrival.matches(datagram.ifindex, now):
            self.runtime_discards["wrong-interface"] += 1
            return
        if datagram.source != self.key.peer:
            self.runtime_discards["source-mismatch"] += 1
            return
        if self.core.receive_decoded(packet, now) is None:
            self._last_remote = packet
            if self.profile.echo_mode and not self._reflector_started and self._tasks:
                self._reflector_started = True
                self._tasks.start_soon(self._run_reflector)
        self._input_done()


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
    ) -> None:
        """``ports`` / ``peer_ports``: (single-hop, multihop) ports to listen on and to
        send to; the RFC's 3784/4784 unless a test runs two endpoints side by side.
        ``precise_timers``: wake early for a detection deadline and spin to it (epoll
        rounds up to whole ms); False under a virtual clock (``trio.testing.MockClock``),
        where a spin would never let time advance."""
        self.rng = rng or random.SystemRandom()
        self.precise_timers = precise_timers
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
        self._nursery: trio.Nursery | None = None

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
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for sock in self._receivers.values():
                sock.close()
            self._receivers.clear()
            self._receiver_vrf_index.clear()
            self._receiver_scopes.clear()

    async def add_session(self, key: SessionKey, profile: BfdProfile) -> BfdSession:
        """Create a session and run it in the endpoint's own nursery (standalone use,
        benchmarks); end it with :meth:`remove_session`."""
        if self._nursery is None:
            raise RuntimeError("BfdEndpoint.run() is not running")
        session: BfdSession = await self._nursery.start(self.run_session, key, profile)
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
        Raises OSError (no such VRF device, port taken)."""
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
        sock = await net.open_receiver(socket.AddressFamily(family), port, vrf=vrf)
        self._receivers[key] = sock
        self._receiver_vrf_index[key] = index
        scope = trio.CancelScope()
        self._receiver_scopes[key] = scope
        self._nursery.start_soon(self._scoped_receive_loop, scope, sock, multihop, vrf)

    async def _scoped_receive_loop(
        self, scope: trio.CancelScope, sock: trio.socket.SocketType, multihop: bool,
        vrf: str | None,
    ) -> None:  # fmt: skip
        with scope:
            await self._receive_loop(sock, multihop, vrf)

    async def _receive_loop(
        self, sock: trio.socket.SocketType, multihop: bool, vrf: str | None = None
    ) -> None:
        """Receive and dispatch; keep the socket's buffer sized for its sessions.

        Single-hop: TTL / hop limit 255 is enforced by a filter in the kernel (see
        :mod:`speaker.bfd.net`), so a flood from afar never reaches the buffer; what
        the kernel dropped is counted as ``kernel-dropped``."""
        version = 4 if sock.family == socket.AF_INET else 6
        if not multihop:
            try:
                net.attach_gtsm_filter(sock)
            except OSError as exc:  # deliver() still checks each packet's TTL
                log.warning("bfd: no kernel TTL filter on the IPv%d socket: %s", version, exc)
        sized_for, drops_seen = -1, 0
        while True:
            if len(self.sessions) != sized_for:
                sized_for = len(self.sessions)
                intervals = [
                    s.profile.receive_interval
                    for s in self.sessions.values()
                    if s.key.multihop == multihop
                    and s.key.peer.version == version
                    and s.key.vrf == vrf
                ]
                net.set_receive_buffer(sock, net.receive_buffer_bytes(intervals))
            try:
                datagram = await net.receive(sock)
            except OSError as exc:  # e.g. ICMP errors queued on the socket
                self.discards[f"receive-error-{exc.errno}"] += 1
                continue
            if datagram.kernel_drops is not None and datagram.kernel_drops != drops_seen:
                self.discards["kernel-dropped"] += (datagram.kernel_drops - drops_seen) & 0xFFFFFFFF
                drops_seen = datagram.kernel_drops
            try:
                self.dispatch(datagram, multihop, trio.current_time(), vrf=vrf)
            except Exception:  # a bug: lose this packet, never the receive loop
                self.discards["internal-error"] += 1
                if self.discards["internal-error"] == 1:
                    log.exception("bfd: error handling a packet from %s (counted as"
                                  " internal-error; logged once)", datagram.source)  # fmt: skip

    def dispatch(
        self, datagram: net.Datagram, multihop: bool, now: float, *, vrf: str | None = None
    ) -> None:
        """Find the session a datagram belongs to (RFC 5880 §6.8.6: by Your
        Discriminator, or by addresses while it is zero) and hand it over. ``vrf``: the
        VRF of the socket it arrived on; only that VRF's sessions can have it."""
        try:
            packet = ControlPacket.decode(datagram.data)
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
            session.deliver(packet, datagram, now)
        except Exception as exc:  # a bug: it ends this session's peer, not the loop
            session.fail(exc)

    def _find(
        self, datagram: net.Datagram, multihop: bool, vrf: str | None = None
    ) -> BfdSession | None:
        if datagram.destination is None:
            return None
        return self._by_addresses.get((vrf, datagram.source, datagram.destination, multihop))
