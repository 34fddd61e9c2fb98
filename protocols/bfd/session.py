"""One BFD session, sans-IO (RFC 5880 §6, asynchronous mode, optional Echo).

The runtime drives a :class:`Session` like an aioquic connection::

    session = Session(config, rng=random.Random(), now=clock())
    loop:
        sleep until session.get_timer()          # absolute, seconds
        session.handle_timer(clock())
        send session.datagrams_to_send()         # Control packets, encoded + signed
        send session.echo_datagrams_to_send()    # Echo packets (port 3785)
        on a Control datagram: session.receive_packet(data, clock()), then send again
        on a returned Echo:    session.receive_echo(data, clock())
        drain session.next_event()
        when awake anyway:     session.transmit_early(clock())   # coalescing, below

Every entry point leaves the session consistent: packets it wants sent now are queued,
and :meth:`Session.get_timer` is the next instant :meth:`Session.handle_timer` is due.

Transmission decisions (§6.8.7):

* periodic packets every max(DesiredMinTx in use, bfd.RemoteMinRxInterval), jittered
  to 75-100% (75-90% when DetectMult is 1); none while Passive and bfd.RemoteDiscr is
  0, none while bfd.RemoteMinRxInterval is 0, none while Demand mode is active on the
  remote system and no Poll is outstanding (the MUST of §6.8.6; we never set D
  ourselves, so our side stays asynchronous and keeps detecting by timer);
* an extra packet as soon as its contents would differ from the last one sent (state,
  diag, discriminators, intervals, Detect Mult), which also restarts the periodic
  timer, but at most one such packet per 75 % of the transmit interval: a change
  within that time waits, coalesced with later ones, for the end of it or the next
  periodic packet. Changes the peer's packets cause can therefore never be answered
  faster than the negotiated rate (two systems answering every change at once keep
  each other flapping at wire speed). Exempt: a packet with F set in reply to every
  accepted P, and the packet of a local command (admin, profile, path signal).

Coalescing (fewer wake-ups): the periodic packet may go out anywhere in its jitter
window, from 75 % of the interval after the previous one (``earliest``) to the
deadline :meth:`Session.get_timer` reports (``latest``); see :meth:`Session.tx_window`.
A runtime that is awake anyway (a received packet, another session's timer) calls
:meth:`Session.transmit_early`, which sends it then if the window is open: the
interval stays within the 75-100 % §6.8.7 requires, and a task that answers each
received packet with its own periodic one wakes once per packet pair instead of
twice. ``latest`` is the randomly drawn deadline, except right after a packet sent
early (``coalesce=True``) while the peer sends at least as often as we do: then it
is the window's end (100 %, 90 % with DetectMult 1), because the peer's next packet
will come before it and be answered at once. Our transmissions then follow the
peer's jittered ones; the window's end is only reached if that packet is lost, and
the interval after it is drawn again. Two such systems facing each other settle
with one drawing its intervals and the other answering (its window is closed when
the answer arrives). Without ``coalesce``, or with :attr:`Session.follow_peer` turned
off (a runtime that reads the peer's packets only when its own timer wakes), the
drawn deadline always holds.

Arrival times: :meth:`Session.receive_decoded` takes ``arrived``, when the packet
reached the host (a kernel timestamp), apart from ``now``, when it is processed; the
Detection Time counts from the arrival, every transmission from ``now``.

Timer changes (§6.8.3) always run as a Poll Sequence: P rides on the packets sent
while it is outstanding; a new change waits for the Final and then starts the next
Poll from the current target values. While Up, a larger DesiredMinTx is used for the
transmit interval, and a smaller RequiredMinRx for the Detection Time, only once the
Final arrives. The targets are: DesiredMinTx = configured, raised to 1 s while not Up
(slow start), and RequiredMinRx = configured, raised to 1 s while the Echo function
is active (§6.8.3 SHOULD). Leaving Up abandons an outstanding Poll (its ordering rules
only protect an Up session) and starts one for the slow-start values.
"""

from __future__ import annotations

import collections
import math

from . import fsm
from .auth import sequence_in_window, sign, verify
from .config import SessionConfig
from .constants import MAX_U32, SLOW_INTERVAL_US, Diag, State
from .counters import SessionCounters
from .echo import EchoPacket
from .errors import BfdDecodeError, DiscardReason
from .events import Event, StateChanged, TimersChanged
from .packet import ControlPacket, DigestAuth
from .poll import IntervalNegotiation
from .timers import (
    Rng,
    detection_time_us,
    jitter_bounds,
    jittered_interval_us,
    transmit_interval_us,
    us_to_s,
)

__all__ = [
    "ECHO_HOLDOFF_INITIAL_S",
    "ECHO_HOLDOFF_MAX_S",
    "ECHO_STABLE_S",
    "Session",
    "SessionCounters",
]

#: After an echo failure the Echo function stays off this long, doubling with each
#: failure up to the maximum; it goes back to the initial hold-off once echo has run
#: for ECHO_STABLE_S with echoes coming back. Without it a session whose echo path is
#: broken (a peer that does not forward) goes Up on control, starts echo, fails, and
#: does so several times a second for ever.
ECHO_HOLDOFF_INITIAL_S = 1.0
ECHO_HOLDOFF_MAX_S = 60.0
ECHO_STABLE_S = 10.0
#: Returned echoes whose round trips :attr:`Session.echo_rtts_us` keeps (FRR's
#: ``BFD_RTT_SAMPLE``: its ``rtt-min/avg/max`` are over the last 8).
ECHO_RTT_SAMPLES = 8

# Content of a Control packet other than P and F: a change triggers an immediate send.
_ContentKey = tuple[State, int, int, int, int, int, int]


class Session:
    """A BFD session; see the module docstring for the calling convention.

    ``local_discriminator`` must be unique among the runtime's sessions (§6.8.1); when
    omitted a random nonzero one is drawn from ``rng``, and uniqueness is the caller's
    problem. ``rng`` also supplies jitter, bfd.XmitAuthSeq and the echo secret.
    ``coalesce``: a received packet is answered at once when the window of our
    periodic packet is open, as :meth:`transmit_early` would (see the module
    docstring); the runtime calls that when awake for anything else.
    """

    def __init__(
        self,
        config: SessionConfig,
        *,
        rng: Rng,
        now: float,
        local_discriminator: int | None = None,
        coalesce: bool = False,
    ) -> None:
        self._config = config
        self._rng = rng
        #: The runtime calls transmit_early when awake (see the module docstring).
        self._coalesce = coalesce
        #: After a packet sent early, wait for the peer's next one (see follow_peer).
        self._follow = coalesce
        self._early = False
        if local_discriminator is None:
            local_discriminator = 0
            while local_discriminator == 0:
                local_discriminator = rng.getrandbits(32)
        elif not 1 <= local_discriminator <= MAX_U32:
            raise ValueError("local_discriminator must be a nonzero 32-bit value")
        self._local_discr = local_discriminator

        # §6.8.1 state variables.
        self._state = State.DOWN
        self._remote_state = State.DOWN
        self._remote_discr = 0
        self._local_diag = Diag.NO_DIAGNOSTIC
        self._remote_diag: int = Diag.NO_DIAGNOSTIC
        self._remote_min_rx_us = 1
        self._remote_desired_tx_us = 0
        self._remote_detect_mult = 0  # 0 until a packet has been accepted
        self._remote_min_echo_rx_us = 0
        self._remote_demand = False
        # The C bit of the peer's last accepted packet (RFC 5880 §4.1); ours is always 0.
        self._remote_cpi = False
        self._xmit_auth_seq = rng.getrandbits(32)
        self._rcv_auth_seq = 0
        self._auth_seq_known = False

        # Advertised bfd.DesiredMinTxInterval / bfd.RequiredMinRxInterval, and the
        # values in use for the transmit interval and the Detection Time (they differ
        # only during a Poll Sequence, §6.8.3).
        self._timers = IntervalNegotiation.start(*self._target_intervals())
        self._final_due = False

        # Timers: absolute deadlines in seconds, None when not running.
        self._last_rx_at: float | None = None
        self._detect_at: float | None = None
        self._next_tx_at: float | None = None
        self._last_tx_at: float | None = None
        self._scheduled_interval_us = 0
        self._last_sent: _ContentKey | None = None
        # The last encoded unauthenticated packet and what it encodes: a periodic
        # packet is the same bytes as the one before it (no encode per packet).
        self._encoded: tuple[tuple[_ContentKey, bool, bool], bytes] | None = None
        # When the last packet with changed contents went out, and the spacing in
        # force then (§6.8.7; see _change_due).
        self._change_sent_at = -math.inf
        self._change_spacing_s = 0.0

        # Echo function.
        self._echo_secret = rng.getrandbits(128).to_bytes(16, "big")
        self._echo_seq = rng.getrandbits(32)
        self._echo_active = False
        self._echo_started_us = 0
        self._echo_last_ok_at: float | None = None
        self._echo_detect_at: float | None = None
        self._echo_next_at: float | None = None
        self._echo_rtt: float | None = None
        self._echo_rtts: collections.deque[int] = collections.deque(maxlen=ECHO_RTT_SAMPLES)
        self._echo_returned = 0  # echoes back since the Echo function (re)started
        # Hold-off after an echo failure (see _echo_failed): no echo before this time.
        self._echo_held_until: float | None = None
        self._echo_holdoff_s = ECHO_HOLDOFF_INITIAL_S
        self._echo_failures = 0
        self._echo_loop_ok = True  # see set_echo_loop

        self._outbox: list[bytes] = []
        self._echo_outbox: list[bytes] = []
        self._events: collections.deque[Event] = collections.deque()
        self._control_rx = self._control_tx = self._echo_rx = self._echo_tx = 0
        self._ups = self._downs = 0
        self._discards: dict[DiscardReason, int] = {}
        self._timers_seen = self._timers_key()
        self._refresh(now)

    # ------------------------------------------------------------------ queries

    @property
    def config(self) -> SessionConfig:
        return self._config

    @property
    def state(self) -> State:
        return self._state

    @property
    def remote_state(self) -> State:
        return self._remote_state

    @property
    def local_discriminator(self) -> int:
        return self._local_discr

    @property
    def remote_discriminator(self) -> int:
        """bfd.RemoteDiscr: 0 until heard from, and again after a silent Detection Time."""
        return self._remote_discr

    @property
    def local_diag(self) -> Diag:
        return self._local_diag

    @property
    def remote_diag(self) -> int:
        """Diag of the last accepted packet (a Diag member unless a reserved code)."""
        return self._remote_diag

    @property
    def desired_min_tx_us(self) -> int:
        """Advertised bfd.DesiredMinTxInterval."""
        return self._timers.advertised_tx_us

    @property
    def required_min_rx_us(self) -> int:
        """Advertised bfd.RequiredMinRxInterval."""
        return self._timers.advertised_rx_us

    @property
    def remote_min_rx_us(self) -> int:
        return self._remote_min_rx_us

    @property
    def tx_interval_us(self) -> int:
        """Negotiated periodic transmit interval, before jitter (§6.8.7)."""
        return transmit_interval_us(self._timers.in_use_tx_us, self._remote_min_rx_us)

    @property
    def detection_time_us(self) -> int | None:
        """Detection Time (§6.8.4), or None while no packet from the peer counts."""
        if self._last_rx_at is None:
            return None
        return detection_time_us(
            self._remote_detect_mult, self._timers.in_use_rx_us, self._remote_desired_tx_us
        )

    @property
    def echo_active(self) -> bool:
        return self._echo_active

    @property
    def echo_tx_interval_us(self) -> int | None:
        """Echo transmit interval (before jitter), None while echo is not active."""
        if not self._echo_active:
            return None
        return max(self._config.echo_interval_us, self._remote_min_echo_rx_us)

    @property
    def advertised_echo_rx_us(self) -> int:
        """The Required Min Echo RX Interval we advertise: the profile's, or 0 while
        the runtime cannot loop the peer's echoes (:meth:`set_echo_loop`)."""
        return self._config.advertised_echo_rx_us if self._echo_loop_ok else 0

    @property
    def echo_held_until(self) -> float | None:
        """While the Echo function is held off after a failure: until when."""
        return self._echo_held_until

    @property
    def echo_failures(self) -> int:
        """Echo failures so far (each one starts a hold-off; see ECHO_HOLDOFF_*)."""
        return self._echo_failures

    @property
    def echo_rtt(self) -> float | None:
        """Round trip of the last valid returned echo, in seconds."""
        return self._echo_rtt

    @property
    def echo_rtts_us(self) -> tuple[int, ...]:
        """Round trips of the last :data:`ECHO_RTT_SAMPLES` valid returned echoes
        since the echo function last started, in microseconds."""
        return tuple(self._echo_rtts)

    @property
    def poll_active(self) -> bool:
        return self._timers.polling

    @property
    def follow_peer(self) -> bool:
        """With ``coalesce``: after a packet sent early, the next deadline is the end of
        the window (the peer's next packet is answered at once). A runtime that reads
        the peer's packets only when it wakes for its own timers turns this off: the
        drawn deadline then always holds, so the intervals stay jittered."""
        return self._follow

    @follow_peer.setter
    def follow_peer(self, on: bool) -> None:
        self._follow = on and self._coalesce

    @property
    def receive_interval_us(self) -> int:
        """How often the peer sends to us (before its jitter): max(its DesiredMinTx,
        our RequiredMinRx in use), §6.8.7 seen from its side."""
        return max(self._remote_desired_tx_us, self._timers.in_use_rx_us)

    @property
    def remote_demand_mode(self) -> bool:
        """bfd.RemoteDemandMode: the D bit of the last accepted packet."""
        return self._remote_demand

    @property
    def remote_control_plane_independent(self) -> bool:
        """The C bit of the peer's last accepted packet (RFC 5880 §4.1): True when its
        BFD does not share fate with its control plane. False before any packet and
        after a Detection Time without one. We always send C = 0: this implementation
        runs in the speaker's process and shares its fate."""
        return self._remote_cpi

    @property
    def counters(self) -> SessionCounters:
        return SessionCounters(
            control_rx=self._control_rx,
            control_tx=self._control_tx,
            echo_rx=self._echo_rx,
            echo_tx=self._echo_tx,
            discards=dict(self._discards),
            up_transitions=self._ups,
            down_transitions=self._downs,
        )

    @property
    def detection_deadline(self) -> float | None:
        """When the session declares Down if nothing arrives before (control or echo
        detection), or None: lets a runtime wake for this deadline more precisely
        than for transmissions."""
        detect, echo = self._detect_at, self._echo_detect_at
        if echo is None:
            return detect
        return echo if detect is None or echo < detect else detect

    def get_timer(self) -> float | None:
        """Next absolute time (seconds) at which :meth:`handle_timer` must be called."""
        first = self._next_tx_at
        for t in (self._detect_at, self._echo_next_at, self._echo_detect_at,
                  self._echo_held_until):  # fmt: skip
            if t is not None and (first is None or t < first):
                first = t
        return first

    def tx_window(self) -> tuple[float, float] | None:
        """When the next periodic Control packet may go out: ``(earliest, latest)``,
        absolute seconds, or None while none is scheduled. ``latest`` is the drawn
        deadline (in :meth:`get_timer`); ``earliest`` is 75 % of the transmit interval
        after the previous packet (§6.8.7's jitter bound), never after ``latest``."""
        latest = self._next_tx_at
        if latest is None:
            return None
        if self._last_tx_at is None:
            return latest, latest
        low, _high = jitter_bounds(self._config.detect_mult)
        earliest = self._last_tx_at + us_to_s(low * self.tx_interval_us)
        return min(earliest, latest), latest

    def transmit_early(self, now: float) -> bool:
        """Send the next periodic packet now if its :meth:`tx_window` is open (the
        runtime is awake anyway, so the packet costs no wake-up of its own); True if
        one was queued. Detection and echo timers are not touched."""
        if not self._window_open(now):
            return False
        sent = self._control_tx
        self._early = True
        try:
            self._refresh(now, periodic_due=True)
        finally:
            self._early = False
        return self._control_tx != sent

    def _window_open(self, now: float) -> bool:
        window = self.tx_window()
        return window is not None and window[0] <= now < window[1]

    @property
    def has_pending(self) -> bool:
        """Whether packets or events are queued: a runtime that sleeps until
        :meth:`get_timer` needs to act now only if this is true or the timer moved
        earlier (most received packets do neither, they only push detection later)."""
        return bool(self._outbox or self._echo_outbox or self._events)

    def datagrams_to_send(self) -> list[bytes]:
        """Control packets queued so far (encoded, authenticated); clears the queue."""
        out, self._outbox = self._outbox, []
        return out

    def echo_datagrams_to_send(self) -> list[bytes]:
        """Echo packets queued so far; clears the queue."""
        out, self._echo_outbox = self._echo_outbox, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ inputs

    def receive_packet(
        self, data: bytes, now: float, *, arrived: float | None = None
    ) -> DiscardReason | None:
        """Decode and process one Control datagram; ``None`` when accepted."""
        try:
            packet = ControlPacket.decode(data)
        except BfdDecodeError as exc:
            return self._discard(exc.discard_reason)
        return self.receive_decoded(packet, now, arrived=arrived)

    def receive_decoded(
        self, packet: ControlPacket, now: float, *, arrived: float | None = None
    ) -> DiscardReason | None:
        """Process a packet already decoded by the runtime's demultiplexer (§6.8.6).

        ``arrived``: when the packet reached the host (a kernel timestamp; at most
        ``now``, default ``now``): the Detection Time counts from it.

        Digests are verified on ``packet.encode()``, which reproduces the received
        bytes exactly (see :mod:`.packet`).
        """
        reason = self._check(packet)
        if reason is not None:
            return self._discard(reason)
        self._control_rx += 1
        if isinstance(packet.auth, DigestAuth):
            self._rcv_auth_seq = packet.auth.sequence
            self._auth_seq_known = True
        self._remote_discr = packet.my_discriminator
        self._remote_state = packet.state
        self._remote_demand = packet.demand
        self._remote_cpi = packet.control_plane_independent
        self._remote_min_rx_us = packet.required_min_rx_us
        self._remote_desired_tx_us = packet.desired_min_tx_us
        self._remote_detect_mult = packet.detect_mult
        self._remote_min_echo_rx_us = packet.required_min_echo_rx_us
        self._remote_diag = packet.diag
        if packet.final and self._timers.polling:
            self._timers.finish()
        # Counts as received for the detection timer. In AdminDown too: the peer is
        # alive, so bfd.RemoteDiscr should not be aged out.
        self._last_rx_at = now if arrived is None or arrived > now else arrived
        if self._state is State.ADMIN_DOWN:
            self._refresh(now)
            return self._discard(DiscardReason.LOCAL_ADMIN_DOWN)
        self._apply(fsm.received(packet.state), now)
        if packet.poll:
            self._final_due = True
        if self._coalesce and self._window_open(now):
            # Answered in this very call (what transmit_early would do next).
            self._early = True
            try:
                self._refresh(now, periodic_due=True)
            finally:
                self._early = False
        else:
            self._refresh(now)
        return None

    def receive_echo(self, data: bytes, now: float) -> DiscardReason | None:
        """Process one of our Echo packets looped back by the peer (§6.8.8)."""
        try:
            echo = EchoPacket.decode(data)
        except BfdDecodeError as exc:
            return self._discard(exc.discard_reason)
        if echo.discriminator != self._local_discr:
            return self._discard(DiscardReason.ECHO_WRONG_DISCRIMINATOR)
        if not echo.tag_valid(self._echo_secret):
            return self._discard(DiscardReason.ECHO_BAD_TAG)
        interval = self.echo_tx_interval_us
        if interval is None:
            return self._discard(DiscardReason.ECHO_NOT_ACTIVE)
        age_us = _to_us(now) - echo.timestamp_us
        if echo.timestamp_us < self._echo_started_us or not (
            0 <= age_us <= self._config.detect_mult * interval
        ):
            return self._discard(DiscardReason.ECHO_STALE)
        self._echo_rx += 1
        self._echo_returned += 1
        self._echo_rtt = us_to_s(age_us)
        self._echo_rtts.append(age_us)
        self._echo_last_ok_at = now
        if now - us_to_s(self._echo_started_us) >= ECHO_STABLE_S:
            self._echo_holdoff_s = ECHO_HOLDOFF_INITIAL_S
        self._refresh(now)
        return None

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now``: detection, echo detection, transmissions."""
        if self._detect_at is not None and now >= self._detect_at:
            self._detection_expired(now)
        if self._echo_detect_at is not None and now >= self._echo_detect_at:
            self._echo_failed(now)
        if self._echo_held_until is not None and now >= self._echo_held_until:
            self._echo_held_until = None
        self._update_echo(now)  # a failure above stops the echo before it is sent
        if self._echo_next_at is not None and now >= self._echo_next_at:
            self._send_echo(now)
        periodic_due = self._next_tx_at is not None and now >= self._next_tx_at
        self._refresh(now, periodic_due=periodic_due)

    def admin_down(self, now: float, diag: Diag = Diag.ADMINISTRATIVELY_DOWN) -> None:
        """§6.8.16: enter AdminDown with ``diag``; AdminDown packets keep flowing."""
        self._local_diag = diag
        if self._state is not State.ADMIN_DOWN:
            self._change_state(State.ADMIN_DOWN, diag, "administratively disabled", now)
        self._refresh(now, local=True)

    def admin_up(self, now: float) -> None:
        """§6.8.16: leave AdminDown for Down (no-op in any other state)."""
        if self._state is State.ADMIN_DOWN:
            self._change_state(State.DOWN, None, "administratively enabled", now)
        self._refresh(now, local=True)

    def declare_down(self, now: float, diag: Diag) -> None:
        """Local signal that the path failed, e.g. Forwarding Plane Reset (§6.8.15) or
        Path Down (§6.8.17): set bfd.LocalDiag and go Down unless AdminDown."""
        self._local_diag = diag
        if self._state in (State.INIT, State.UP):
            self._change_state(State.DOWN, diag, f"local signal: {diag.name}", now)
        self._refresh(now, local=True)

    def set_echo_loop(self, able: bool, now: float) -> None:
        """Whether the peer's echoes get looped back to it (our forwarding plane, or
        the runtime's reflector). A nonzero Required Min Echo RX Interval promises
        that (§6.4, §6.8.9); while ``able`` is false we advertise 0 instead."""
        self._echo_loop_ok = able
        self._refresh(now, local=True)

    def set_profile(self, config: SessionConfig, now: float) -> None:
        """Apply new parameters without resetting the session (§6.8.3 Poll Sequence).

        Keys may change (rollover) but not the authentication type, nor ``multihop``.
        """
        old = self._config
        old_type = None if old.auth is None else old.auth.type
        new_type = None if config.auth is None else config.auth.type
        if old_type is not new_type:
            raise ValueError("the authentication type of a live session cannot change")
        if old.multihop != config.multihop:
            raise ValueError("multihop cannot change on a live session")
        self._config = config
        self._refresh(now, local=True)

    # ------------------------------------------------------------------ reception

    def _check(self, packet: ControlPacket) -> DiscardReason | None:
        """The discard rules of §6.8.6 (plus P and F together, which §6.8.7 forbids)."""
        if packet.detect_mult == 0:
            return DiscardReason.ZERO_DETECT_MULT
        if packet.multipoint:
            return DiscardReason.MULTIPOINT
        if packet.my_discriminator == 0:
            return DiscardReason.ZERO_MY_DISCRIMINATOR
        if packet.your_discriminator not in (0, self._local_discr):
            return DiscardReason.YOUR_DISCRIMINATOR_MISMATCH
        if packet.your_discriminator == 0 and packet.state not in (State.DOWN, State.ADMIN_DOWN):
            return DiscardReason.ZERO_YOUR_DISCRIMINATOR
        if packet.poll and packet.final:
            return DiscardReason.POLL_AND_FINAL
        reason = verify(packet, self._config.auth)
        if reason is not None:
            return reason
        auth = packet.auth
        if (
            isinstance(auth, DigestAuth)
            and self._config.auth is not None
            and self._auth_seq_known
            and not sequence_in_window(
                auth.sequence,
                self._rcv_auth_seq,
                packet.detect_mult,
                meticulous=self._config.auth.meticulous,
            )
        ):
            return DiscardReason.AUTH_SEQUENCE_OUT_OF_WINDOW
        return None

    def _discard(self, reason: DiscardReason) -> DiscardReason:
        self._discards[reason] = self._discards.get(reason, 0) + 1
        return reason

    def _detection_expired(self, now: float) -> None:
        """A Detection Time without a valid packet (§6.8.1, §6.8.4, §6.8.18)."""
        self._last_rx_at = None
        self._remote_discr = 0
        self._auth_seq_known = False
        self._remote_min_rx_us = 1
        self._remote_min_echo_rx_us = 0
        self._remote_demand = False
        self._remote_cpi = False
        self._apply(fsm.Input.DETECTION_TIMEOUT, now)

    # ------------------------------------------------------------------ state changes

    def _apply(self, event: fsm.Input, now: float) -> None:
        step = fsm.transition(self._state, event)
        if step is not None:
            self._change_state(step.new_state, step.diag, step.reason, now, step.remote_admin_down)

    def _change_state(
        self,
        new: State,
        diag: Diag | None,
        reason: str,
        now: float,
        remote_admin_down: bool = False,
    ) -> None:
        old = self._state
        self._state = new
        if diag is not None:
            self._local_diag = diag
        if new is State.UP:
            self._ups += 1
        elif old is State.UP:
            self._downs += 1
            # The ordering rules of an outstanding Poll only protect an Up session.
            self._timers.finish()
        self._events.append(
            StateChanged(
                old=old,
                new=new,
                diag=self._local_diag,
                reason=reason,
                at=now,
                remote_admin_down=remote_admin_down,
            )
        )

    # ------------------------------------------------------------------ timers

    def _target_intervals(self) -> tuple[int, int]:
        """Where DesiredMinTx/RequiredMinRx should be now (§6.8.3)."""
        tx = self._config.desired_min_tx_us
        if self._state is not State.UP:
            tx = max(tx, SLOW_INTERVAL_US)
        rx = self._config.required_min_rx_us
        if self._echo_wanted():
            rx = max(rx, SLOW_INTERVAL_US)
        return tx, rx

    def _update_parameters(self) -> None:
        """Start a Poll Sequence when the targets moved and none is outstanding."""
        tx, rx = self._target_intervals()
        self._timers.request(tx, rx, up=self._state is State.UP)

    def _echo_wanted(self) -> bool:
        """§6.8.9: only when Up and the peer loops echoes back."""
        cfg = self._config
        return (
            cfg.echo_mode
            and not cfg.multihop
            and self._state is State.UP
            and self._remote_min_echo_rx_us > 0
            and self._echo_held_until is None
        )

    def _echo_failed(self, now: float) -> None:
        """DetectMult echo intervals without a returned echo (§6.8.5).

        If echoes came back since the Echo function started, the path failed: Down
        with diag 2. If none ever did, the echo path never worked (the peer does not
        loop echoes, whatever it advertises): that is no forwarding failure, so the
        session stays on control packets. Either way echo is held off, for longer
        after each failure, so a broken echo path cannot make the session flap."""
        self._echo_failures += 1
        if self._echo_returned:
            self._apply(fsm.Input.ECHO_FAILURE, now)
        self._echo_held_until = now + self._echo_holdoff_s
        self._echo_holdoff_s = min(2 * self._echo_holdoff_s, ECHO_HOLDOFF_MAX_S)

    def _update_echo(self, now: float) -> None:
        wanted = self._echo_wanted()
        if wanted and not self._echo_active:
            self._echo_active = True
            self._echo_returned = 0
            self._echo_rtts.clear()
            self._echo_started_us = _to_us(now)
            self._echo_last_ok_at = now
            self._echo_next_at = now
        elif not wanted and self._echo_active:
            self._echo_active = False
            self._echo_last_ok_at = self._echo_next_at = self._echo_detect_at = None
        interval = self.echo_tx_interval_us
        if interval is not None and self._echo_last_ok_at is not None:
            # §6.8.5: DetectMult echo intervals without a returned echo.
            self._echo_detect_at = self._echo_last_ok_at + us_to_s(
                self._config.detect_mult * interval
            )

    def _send_echo(self, now: float) -> None:
        interval = self.echo_tx_interval_us
        if interval is None:
            self._echo_next_at = None
            return
        self._echo_seq = (self._echo_seq + 1) & MAX_U32
        echo = EchoPacket(
            discriminator=self._local_discr, sequence=self._echo_seq, timestamp_us=_to_us(now)
        ).sealed(self._echo_secret)
        self._echo_outbox.append(echo.encode())
        self._echo_tx += 1
        # Jittered like Control packets but never below the peer's Required Min Echo
        # RX Interval, which §6.8.9 forbids undercutting.
        gap = max(
            jittered_interval_us(interval, self._config.detect_mult, self._rng),
            self._remote_min_echo_rx_us,
        )
        self._echo_next_at = now + us_to_s(gap)

    def _update_detection(self) -> None:
        detection = self.detection_time_us
        if detection is None or self._last_rx_at is None:
            self._detect_at = None
        else:
            self._detect_at = self._last_rx_at + us_to_s(detection)

    def _timers_key(self) -> tuple[int, int | None, int | None]:
        return (self.tx_interval_us, self.detection_time_us, self.echo_tx_interval_us)

    def _refresh(self, now: float, *, periodic_due: bool = False, local: bool = False) -> None:
        """Bring parameters, timers and the outbox in line with the current state.

        ``local``: the change comes from a local command (admin, profile, path signal),
        whose packet goes out at once; see :meth:`_transmit` for everything else."""
        self._update_parameters()
        self._update_echo(now)
        self._update_detection()
        self._transmit(now, periodic_due=periodic_due, local=local)
        key = self._timers_key()
        if key != self._timers_seen:
            self._timers_seen = key
            self._events.append(
                TimersChanged(
                    tx_interval_us=key[0],
                    detection_time_us=key[1],
                    echo_tx_interval_us=key[2],
                    at=now,
                )
            )

    # ------------------------------------------------------------------ transmission

    def _content_key(self) -> _ContentKey:
        return (
            self._state,
            self._local_diag,
            self._remote_discr,
            self._timers.advertised_tx_us,
            self._timers.advertised_rx_us,
            self.advertised_echo_rx_us,
            self._config.detect_mult,
        )

    def _transmit(self, now: float, *, periodic_due: bool, local: bool) -> None:
        """Queue what §6.8.7 allows now and set the next transmission time.

        Out of schedule go: a Final for every accepted Poll (the RFC exempts it from
        every limit), a local command's packet, and at most one packet with changed
        contents per spacing interval (:meth:`_spacing_s`). A change that arrives
        within that interval waits, coalesced with any later one, for the earlier of
        the next periodic packet and the end of the interval. Without the limit, two
        systems that each answer every state change at once keep each other flapping
        as fast as the link carries packets once stale or duplicated packets are in
        flight (seen with FRR: ~2,700 Up/Down cycles a second, for minutes).
        """
        if self._config.passive and self._remote_discr == 0:
            # §6.8.7: a Passive system stays silent until it knows the peer.
            self._final_due = False
            self._next_tx_at = None
            return
        remote_demand = (
            self._remote_demand and self._state is State.UP and self._remote_state is State.UP
        )
        periodic_ok = self._remote_min_rx_us != 0 and (not remote_demand or self._timers.polling)
        changed = self._content_key() != self._last_sent
        sent = False
        if self._final_due:
            self._final_due = False
            self._send(now, final=True)
            sent = changed  # the Final carried the change: the periodic timer restarts
        elif (periodic_due and periodic_ok) or (changed and (local or now >= self._change_due())):
            opening = self._last_sent is None
            self._send(now, final=False)
            # A local command's packet (admin up: our Down after AdminDown) opens the
            # exchange like the first packet does: the peer's answer is not held back.
            if changed and not opening and not local:
                self._change_sent_at, self._change_spacing_s = now, self._spacing_s()
            sent = True
        if sent or periodic_due or (periodic_ok and self._next_tx_at is None):
            self._next_tx_at = None
            if periodic_ok:
                self._schedule_next(now)
        elif periodic_ok and self._next_tx_at is not None:
            interval = self.tx_interval_us
            if interval < self._scheduled_interval_us and self._last_tx_at is not None:
                # §6.8.3: a lower interval is honoured at once, counting from the
                # previous transmission.
                sooner = self._last_tx_at + us_to_s(
                    jittered_interval_us(interval, self._config.detect_mult, self._rng)
                )
                self._next_tx_at = min(self._next_tx_at, max(sooner, now))
                self._scheduled_interval_us = interval
        elif not periodic_ok:
            self._next_tx_at = None
        if self._content_key() != self._last_sent:
            # A change held back by the spacing: out once the interval is over (or
            # with the periodic packet, if that comes first).
            due = max(self._change_due(), now)
            self._next_tx_at = due if self._next_tx_at is None else min(self._next_tx_at, due)

    def _change_due(self) -> float:
        """When the next packet with changed contents may go out of schedule: one
        spacing after the last, by the shorter of the intervals in force then and
        now (leaving Up switches to the 1 s slow-start interval at once, and the
        Down must not wait for it; reaching Up shortens it)."""
        return self._change_sent_at + min(self._change_spacing_s, self._spacing_s())

    def _spacing_s(self) -> float:
        """Minimum time between two packets with changed contents: the shortest
        jittered transmit interval in force (75 % of it, §6.8.7), so they never come
        faster than periodic packets may."""
        low, _high = jitter_bounds(self._config.detect_mult)
        return us_to_s(low * self.tx_interval_us)

    def _schedule_next(self, now: float) -> None:
        interval = self.tx_interval_us
        self._scheduled_interval_us = interval
        if self._last_tx_at is None:
            self._next_tx_at = now  # never sent yet: send on the first handle_timer
            return
        if self._early and self._follow and self._peer_answers_within(interval):
            # The packet just sent answered the peer's; its next one is due before
            # the end of our window: wait for it (up to the window's end) and answer
            # it again. Our intervals are then the peer's, jittered by its timer;
            # were it silent, the window's end holds, and the next is drawn.
            _low, high = jitter_bounds(self._config.detect_mult)
            self._next_tx_at = self._last_tx_at + us_to_s(high * interval)
            return
        gap = jittered_interval_us(interval, self._config.detect_mult, self._rng)
        self._next_tx_at = self._last_tx_at + us_to_s(gap)

    def _peer_answers_within(self, interval_us: int) -> bool:
        """Whether the peer's periodic packets come at most every ``interval_us``: it
        sends every max(its DesiredMinTx, our RequiredMinRx), jittered down (§6.8.7)."""
        return (
            self._state is State.UP
            and self._last_rx_at is not None
            and max(self._remote_desired_tx_us, self._timers.advertised_rx_us) <= interval_us
        )

    def _send(self, now: float, *, final: bool) -> None:
        key = self._content_key()
        poll = self._timers.polling and not final
        auth = self._config.auth
        encoded = self._encoded
        if auth is None and encoded is not None and encoded[0] == (key, poll, final):
            self._outbox.append(encoded[1])
            self._control_tx += 1
            self._last_sent = key
            self._last_tx_at = now
            return
        packet = ControlPacket(
            state=self._state,
            diag=self._local_diag,
            poll=poll,
            final=final,
            # RFC 5880 §4.1: C = 0, our BFD shares fate with the control plane (it
            # runs in the speaker's process), so a router may keep our routes while
            # we restart under graceful restart instead of treating it as a failure.
            control_plane_independent=False,
            detect_mult=self._config.detect_mult,
            my_discriminator=self._local_discr,
            your_discriminator=self._remote_discr,
            desired_min_tx_us=self._timers.advertised_tx_us,
            required_min_rx_us=self._timers.advertised_rx_us,
            required_min_echo_rx_us=self.advertised_echo_rx_us,
        )
        if auth is not None:
            # §6.7.3: meticulous types advance on every packet; plain keyed types when
            # the contents change (the SHOULD of §6.7.3/§6.7.4).
            if auth.meticulous or (self._last_sent is not None and key != self._last_sent):
                self._xmit_auth_seq = (self._xmit_auth_seq + 1) & MAX_U32
            packet = sign(packet, auth, self._xmit_auth_seq)
            data = packet.encode()
        else:
            data = packet.encode()
            self._encoded = ((key, poll, final), data)
        self._outbox.append(data)
        self._control_tx += 1
        self._last_sent = key
        self._last_tx_at = now


def _to_us(now: float) -> int:
    return round(now * 1_000_000)
