"""Sans-IO BGP connection: the RFC 4271 §8 FSM plus timers, in the style of h2/h11.

The runtime owns the socket and the clock.  It calls the input methods with the
current monotonic time (seconds); each returns the list of :mod:`.events` that
resulted.  After every call it should write ``data_to_send()`` to the socket,
act on :class:`ShouldConnect` / :class:`ShouldClose`, and sleep until
``get_timer()`` (an absolute deadline, or None) before calling ``handle_timer``.

One :class:`Connection` drives one peer session over one TCP connection at a
time and restarts automatically (after an IdleHoldTimer with backoff/damping)
until :meth:`Connection.stop`.  For a connection collision (RFC 4271 §6.8) the
runtime runs a second Connection for the other TCP connection and uses
:func:`~protocols.bgp.fsm.resolve_collision` + :meth:`Connection.collision_dump`.

Graceful restart (RFC 4724, RFC 8538): when both sides set N, every NOTIFICATION
that RFC 8538 §5.1 marks "Hard Reset" goes out wrapped in a Hard Reset (Cease 9), so
the peer drops our routes at once; :meth:`Connection.stop_for_restart` ends the
session so that the peer keeps them (see :mod:`.graceful_restart`).
"""

from __future__ import annotations

import attrs

from .backoff import Damper, Rng, backoff_delay
from .constants import (
    CeaseSubcode,
    FsmSubcode,
    NotifCode,
    OpenSubcode,
    RouteRefreshSubtype,
)
from .context import DEFAULT_CONTEXT, CodecContext
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    EndOfRib,
    Established,
    Event,
    NegotiatedSession,
    NotificationReceived,
    NotificationSent,
    OpenReceived,
    RouteRefreshReceived,
    ShouldClose,
    ShouldConnect,
    StateChanged,
    UpdateReceived,
)
from .fsm import FsmEvent, State, is_fsm_error, next_state
from .graceful_restart import hard_reset_cause, outgoing_notification
from .messages import (
    KeepaliveMessage,
    Message,
    MessageReader,
    NotificationMessage,
    OpenMessage,
    RouteRefreshMessage,
)
from .negotiation import SessionConfig, negotiate
from .update import DecodedUpdate, UpdateMessage, end_of_rib

_CONNECTED = (State.OPEN_SENT, State.OPEN_CONFIRM, State.ESTABLISHED)

_FSM_ERROR_SUBCODES = {
    State.OPEN_SENT: FsmSubcode.UNEXPECTED_MESSAGE_IN_OPEN_SENT,
    State.OPEN_CONFIRM: FsmSubcode.UNEXPECTED_MESSAGE_IN_OPEN_CONFIRM,
    State.ESTABLISHED: FsmSubcode.UNEXPECTED_MESSAGE_IN_ESTABLISHED,
}

_ERROR_EVENTS: dict[int, FsmEvent] = {
    NotifCode.MESSAGE_HEADER_ERROR: FsmEvent.BGP_HEADER_ERR,
    NotifCode.OPEN_MESSAGE_ERROR: FsmEvent.BGP_OPEN_MSG_ERR,
}


@attrs.define
class _Timers:
    """Absolute deadlines (monotonic seconds) of the RFC 4271 §8 timers, None = stopped."""

    connect_retry: float | None = None
    hold: float | None = None
    keepalive: float | None = None
    idle_hold: float | None = None

    def clear(self) -> None:
        self.connect_retry = self.hold = self.keepalive = self.idle_hold = None

    def earliest(self) -> float | None:
        armed = [
            t
            for t in (self.connect_retry, self.hold, self.keepalive, self.idle_hold)
            if t is not None
        ]
        return min(armed) if armed else None


class Connection:
    """One BGP peer session (see the module docstring for the calling convention)."""

    def __init__(self, config: SessionConfig, *, rng: Rng | None = None) -> None:
        self.config = config
        self._rng = rng
        self.state = State.IDLE
        self._out = bytearray()
        self._reader = MessageReader()
        self._ctx: CodecContext = DEFAULT_CONTEXT
        self._timers = _Timers()
        self._admin_up = False
        self._tcp_up = False
        self._failures = 0
        self._damper = Damper(
            base=config.damp_base, max_delay=config.damp_max, stable_time=config.damp_stable_time
        )
        self._established_at: float | None = None
        self.negotiated: NegotiatedSession | None = None
        self.peer_open: OpenMessage | None = None
        self._events: list[Event] = []

    # ------------------------------------------------------------------ queries

    @property
    def codec_context(self) -> CodecContext:
        """Context for encoding UPDATEs on this session (default before OPEN exchange)."""
        return self._ctx

    @property
    def accepts_incoming(self) -> bool:
        """Whether an incoming TCP connection may be handed to :meth:`connection_made`.

        In Connect and Active; and in Idle while an automatic restart is pending after
        failed attempts or an isolated reset (RFC 4271 goes to Active there, listening,
        where this FSM waits in Idle), but not while a flapping peer is damped.
        """
        if self.state in (State.CONNECT, State.ACTIVE):
            return True
        return (
            self.state is State.IDLE
            and self._admin_up
            and self._timers.idle_hold is not None
            and self._damper.flaps <= 1
        )

    @property
    def consecutive_failures(self) -> int:
        """Failed attempts since the last Established (drives the backoff)."""
        return self._failures

    def get_timer(self) -> float | None:
        """Earliest absolute deadline at which :meth:`handle_timer` must be called."""
        return self._timers.earliest()

    def data_to_send(self) -> bytes:
        """Bytes to write to the TCP connection (and forget)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> list[Event]:
        """ManualStart (event 1, or 4 when passive): begin connecting/listening."""
        if self._admin_up:
            return []
        self._admin_up = True
        self._failures = 0
        self._timers.clear()
        self._begin(now, manual=True)
        return self._flush()

    def stop(
        self,
        now: float,
        cease_subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN,
        message: str | None = None,
    ) -> list[Event]:
        """ManualStop (event 2): send Cease (with RFC 9003 ``message``) if open, go Idle.

        No automatic restart happens until :meth:`start` is called again.
        """
        self._admin_up = False
        if self.state is State.IDLE:
            self._timers.clear()
            return self._flush()
        notif = None
        if self._tcp_up and self.state in _CONNECTED:
            with_text = cease_subcode in (
                CeaseSubcode.ADMINISTRATIVE_SHUTDOWN,
                CeaseSubcode.ADMINISTRATIVE_RESET,
            )
            notif = NotificationMessage.cease(cease_subcode, message if with_text else None)
        # The reason names the Cease ("stop: bfd down"), as the log line of the
        # NOTIFICATION shows it; RFC 4271 calls this event ManualStop whatever the cause.
        try:
            cause = CeaseSubcode(cease_subcode).name.lower().replace("_", " ")
        except ValueError:
            cause = f"cease subcode {cease_subcode}"
        self._down(now, FsmEvent.MANUAL_STOP, f"stop: {cause}", notif, count=False)
        return self._flush()

    def stop_for_restart(self, now: float, message: str | None = None) -> list[Event]:
        """ManualStop before a restart of ours, ending the session so that the peer
        keeps our routes when graceful restart was negotiated.

        Both sides set N (RFC 8538 §4): Cease / Administrative Reset (with the RFC 9003
        ``message``), never wrapped in a Hard Reset. Graceful restart without N (RFC
        4724 §4): no NOTIFICATION at all, only the TCP close. No graceful restart: the
        same Cease / Administrative Reset (the peer drops the routes either way).
        ``negotiated.graceful_restart_negotiation.retained_families`` says, before
        the call, which families the peer will keep.
        """
        neg = self.negotiated
        gr = neg.graceful_restart_negotiation if neg is not None else None
        silent = gr is not None and gr.negotiated and not gr.notification
        self._admin_up = False
        if self.state is State.IDLE:
            self._timers.clear()
            return self._flush()
        notif = None
        if self._tcp_up and self.state in _CONNECTED and not silent:
            notif = NotificationMessage.cease(CeaseSubcode.ADMINISTRATIVE_RESET, message)
        reason = "stop: restart" + (" (graceful restart, no NOTIFICATION)" if silent else "")
        self._down(now, FsmEvent.MANUAL_STOP, reason, notif, count=False, wrap=False)
        return self._flush()

    def connection_made(self, now: float) -> list[Event]:
        """TCP is up (event 16 for our connect, 17 for an accepted one): send OPEN."""
        if not self.accepts_incoming:
            raise LocalProtocolError(f"connection_made in state {self.state.value}")
        if self.state is State.IDLE:  # the peer connected during our restart wait
            self._timers.idle_hold = None
            self._transition(FsmEvent.AUTOMATIC_START_PASSIVE, "incoming connection")
        event = (
            FsmEvent.TCP_CR_ACKED
            if self.state is State.CONNECT
            else FsmEvent.TCP_CONNECTION_CONFIRMED
        )
        self._tcp_up = True
        self._reader = MessageReader()
        self._ctx = DEFAULT_CONTEXT
        self._timers.connect_retry = None
        self._out += self.config.open_message().encode()
        self._timers.hold = now + self.config.open_hold_time
        self._transition(event, "TCP connection established")
        return self._flush()

    def connection_failed(self, now: float) -> list[Event]:
        """TCP connect failed or the connection was lost (event 18)."""
        if self.state is State.CONNECT or self._tcp_up:
            self._down(now, FsmEvent.TCP_CONNECTION_FAILS, "TCP connection failed", None)
        return self._flush()

    def connect_now(self, now: float) -> list[Event]:
        """Reset the backoff and try at once: from the Idle wait of an automatic
        restart, or by abandoning the attempt in progress for a fresh one (the owner
        knows the path is back, e.g. BFD Up). Nothing happens when passive, stopped
        or already connected."""
        if not self._admin_up or self.config.passive:
            return []
        self._failures = 0
        if self.state is State.IDLE:
            self._timers.idle_hold = None
            self._begin(now, manual=False)
        elif self.state is State.CONNECT:
            self._events.append(ShouldClose(reason="connecting again at once"))
            self._arm_connect_retry(now)
            self._events.append(ShouldConnect())
        return self._flush()

    def collision_dump(self, now: float) -> list[Event]:
        """OpenCollisionDump (event 23): send Cease/7 and stop this connection for good."""
        self._admin_up = False
        notif = None
        if self._tcp_up and self.state in _CONNECTED:
            notif = NotificationMessage.cease(CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
        self._down(now, FsmEvent.OPEN_COLLISION_DUMP, "connection collision", notif, count=False)
        return self._flush()

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Bytes received from the peer; ``b""`` means EOF.

        Ignored (returns []) when no TCP connection is current, e.g. after an error
        made this connection send a NOTIFICATION and ask to be closed.
        """
        if not self._tcp_up:
            return []
        if not data:
            self._down(now, FsmEvent.TCP_CONNECTION_FAILS, "peer closed the connection", None)
            return self._flush()
        self._reader.feed(data)
        while self._tcp_up:
            try:
                msg = self._reader.next_message(self._ctx)
            except RemoteProtocolError as exc:
                event = _ERROR_EVENTS.get(exc.code, FsmEvent.UPDATE_MSG_ERR)
                notification = NotificationMessage.from_error(exc)
                self._down(now, event, f"received malformed message: {exc}", notification)
                break
            if msg is None:
                break
            try:
                self._dispatch(msg, now)
            except RemoteProtocolError as exc:
                event = _ERROR_EVENTS.get(exc.code, FsmEvent.UPDATE_MSG_ERR)
                notification = NotificationMessage.from_error(exc)
                self._down(now, event, f"rejected message: {exc}", notification)
                break
        return self._flush()

    def handle_timer(self, now: float) -> list[Event]:
        """Run every timer whose deadline is <= ``now``."""
        t = self._timers
        if t.hold is not None and t.hold <= now:
            notif = NotificationMessage(code=NotifCode.HOLD_TIMER_EXPIRED)
            self._down(now, FsmEvent.HOLD_TIMER_EXPIRES, "hold timer expired", notif)
        if t.keepalive is not None and t.keepalive <= now and self.negotiated is not None:
            # RFC 4271 §8.2.2 event 11: send KEEPALIVE, restart the KeepaliveTimer.
            self._send_keepalive(now)
            self._transition(FsmEvent.KEEPALIVE_TIMER_EXPIRES, "keepalive timer")
        if t.connect_retry is not None and t.connect_retry <= now:
            # Event 9 in Connect: abandon the attempt, back off, try again.
            self._failures += 1
            reason = "connect retry timer expired"
            if self.config.connect_time is not None:
                reason = f"connect attempt timed out after {self.config.connect_time:g} s"
            self._events.append(ShouldClose(reason=reason))
            self._transition(FsmEvent.CONNECT_RETRY_TIMER_EXPIRES, "connect retry timer expired")
            self._arm_connect_retry(now)
            self._events.append(ShouldConnect())
        if t.idle_hold is not None and t.idle_hold <= now:
            # Event 13 triggers AutomaticStart (event 3, or 5 when passive).
            t.idle_hold = None
            if self._admin_up and self.state is State.IDLE:
                self._begin(now, manual=False)
        return self._flush()

    # ------------------------------------------------------------------ sending

    def send_update(self, update: UpdateMessage, now: float | None = None) -> None:
        """Queue an UPDATE (Established only); ``now`` restarts the KeepaliveTimer."""
        if self.state is not State.ESTABLISHED:
            raise LocalProtocolError(f"cannot send UPDATE in state {self.state.value}")
        self._out += update.encode(self._ctx)
        if now is not None and self.negotiated is not None and self.negotiated.hold_time:
            self._timers.keepalive = now + self.negotiated.keepalive_time

    def send_encoded_update(self, message: bytes, now: float | None = None) -> None:
        """:meth:`send_update` of an UPDATE already encoded (header included), as
        :func:`.packing.encode_announcement_keys` makes them."""
        if self.state is not State.ESTABLISHED:
            raise LocalProtocolError(f"cannot send UPDATE in state {self.state.value}")
        self._out += message
        if now is not None and self.negotiated is not None and self.negotiated.hold_time:
            self._timers.keepalive = now + self.negotiated.keepalive_time

    def send_end_of_rib(self, afi: int, safi: int, now: float | None = None) -> None:
        """Queue an End-of-RIB marker (RFC 4724 §2) for ``(afi, safi)``."""
        self.send_update(end_of_rib(afi, safi), now)

    def send_route_refresh(
        self, afi: int, safi: int, subtype: int = RouteRefreshSubtype.NORMAL
    ) -> None:
        """Queue a ROUTE-REFRESH (requires the capability on both sides)."""
        if self.state is not State.ESTABLISHED or self.negotiated is None:
            raise LocalProtocolError(f"cannot send ROUTE-REFRESH in state {self.state.value}")
        if not self.negotiated.route_refresh:
            raise LocalProtocolError("route refresh capability not negotiated")
        if subtype != RouteRefreshSubtype.NORMAL and not self.negotiated.enhanced_route_refresh:
            raise LocalProtocolError("enhanced route refresh not negotiated")
        self._out += RouteRefreshMessage(afi=afi, safi=safi, subtype=subtype).encode(self._ctx)

    # ------------------------------------------------------------------ internals

    def _flush(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _transition(self, event: FsmEvent, reason: str) -> None:
        old = self.state
        new = next_state(old, event)
        self.state = new
        if new is not old:
            self._events.append(StateChanged(old=old, new=new, reason=reason))

    def _begin(self, now: float, *, manual: bool) -> None:
        if self.config.passive:
            event = FsmEvent.MANUAL_START_PASSIVE if manual else FsmEvent.AUTOMATIC_START_PASSIVE
            self._transition(event, "start (passive)")
            return
        event = FsmEvent.MANUAL_START if manual else FsmEvent.AUTOMATIC_START
        self._transition(event, "start")
        self._arm_connect_retry(now)
        self._events.append(ShouldConnect())

    def _retry_delay(self) -> float:
        attempt = max(self._failures - 1 - self.config.connect_retry_steady, 0)
        cfg = self.config
        return backoff_delay(attempt, cfg.connect_retry_time, cfg.connect_retry_max, self._rng)

    def _arm_connect_retry(self, now: float) -> None:
        # The time allowed for one TCP connection attempt: connect_time, else the
        # backoff delay. A silent peer (SYNs dropped, e.g. a TCP MD5 mismatch) is thus
        # given all of connect_time; the kernel retransmits the SYN meanwhile.
        timeout = self.config.connect_time
        self._timers.connect_retry = now + (self._retry_delay() if timeout is None else timeout)

    def _send_keepalive(self, now: float) -> None:
        self._out += KeepaliveMessage().encode()
        if self.negotiated is not None and self.negotiated.hold_time:
            self._timers.keepalive = now + self.negotiated.keepalive_time
        else:
            self._timers.keepalive = None

    def _down(
        self,
        now: float,
        event: FsmEvent,
        reason: str,
        notification: NotificationMessage | None,
        *,
        count: bool = True,
        damp: bool = True,
        wrap: bool = True,
    ) -> None:
        """Leave the session: optional NOTIFICATION, close, go Idle, arm the restart
        (``damp``: an Established session's reset counts as an oscillation; ``wrap``:
        a Hard Reset when RFC 8538 asks for one)."""
        if notification is not None:
            if wrap and self.negotiated is not None:
                notification = outgoing_notification(
                    notification, self.negotiated.graceful_restart_negotiation
                )
            self._out += notification.encode()
            self._events.append(
                NotificationSent(
                    code=notification.code,
                    subcode=notification.subcode,
                    data=notification.data,
                    reason=reason,
                )
            )
        if self._tcp_up or self.state is State.CONNECT:
            self._events.append(ShouldClose(reason=reason))
        was_established = self.state is State.ESTABLISHED
        self._tcp_up = False
        self._reader = MessageReader()
        self._ctx = DEFAULT_CONTEXT
        self._timers.clear()
        self.negotiated = None
        self._transition(event, reason)
        if not count:
            return
        if was_established and damp:
            up_for = now - (self._established_at if self._established_at is not None else now)
            delay = self._damper.on_reset(up_for, self._rng)
        else:
            self._failures += 1
            delay = self._retry_delay()
        if self._admin_up:
            self._timers.idle_hold = now + delay

    def _dispatch(self, msg: Message | DecodedUpdate, now: float) -> None:
        if isinstance(msg, NotificationMessage):
            self._on_notification(msg, now)
            return
        if isinstance(msg, OpenMessage):
            event = FsmEvent.BGP_OPEN
        elif isinstance(msg, KeepaliveMessage):
            event = FsmEvent.KEEPALIVE_MSG
        else:
            event = FsmEvent.UPDATE_MSG
        if is_fsm_error(self.state, event):
            raise RemoteProtocolError(
                NotifCode.FSM_ERROR,
                _FSM_ERROR_SUBCODES[self.state],
                reason=f"unexpected {type(msg).__name__} in {self.state.value}",
            )
        neg = self.negotiated
        if self.state in (State.OPEN_CONFIRM, State.ESTABLISHED) and neg and neg.hold_time:
            self._timers.hold = now + neg.hold_time
        if isinstance(msg, OpenMessage):
            self._on_open(msg, now)
        elif isinstance(msg, KeepaliveMessage):
            if self.state is State.OPEN_CONFIRM:
                self._established_at = now
                self._failures = 0
                self._transition(FsmEvent.KEEPALIVE_MSG, "KEEPALIVE received")
                assert self.negotiated is not None
                self._events.append(Established(negotiated=self.negotiated))
        elif isinstance(msg, DecodedUpdate):
            eor = msg.update.end_of_rib
            if eor is not None and not msg.notes:
                self._events.append(EndOfRib(afi=eor[0], safi=eor[1]))
            else:
                self._events.append(
                    UpdateReceived(update=msg.update, notes=msg.notes, suppressed=msg.suppressed)
                )
        elif isinstance(msg, RouteRefreshMessage):
            self._on_route_refresh(msg)

    def _on_open(self, msg: OpenMessage, now: float) -> None:
        negotiated = negotiate(self.config, msg)
        self.peer_open = msg
        self.negotiated = negotiated
        self._ctx = negotiated.codec_context
        self._out += KeepaliveMessage().encode()
        if negotiated.hold_time:
            self._timers.hold = now + negotiated.hold_time
            self._timers.keepalive = now + negotiated.keepalive_time
        else:
            self._timers.hold = self._timers.keepalive = None
        self._transition(FsmEvent.BGP_OPEN, "OPEN received")
        self._events.append(OpenReceived(open=msg))

    def _on_notification(self, msg: NotificationMessage, now: float) -> None:
        # RFC 8538 §3: a Hard Reset stands for the NOTIFICATION in its data.
        cause = hard_reset_cause(msg) or msg
        self._events.append(
            NotificationReceived(
                code=msg.code,
                subcode=msg.subcode,
                data=msg.data,
                shutdown_message=cause.shutdown_message,
            )
        )
        version_error = (
            msg.code == NotifCode.OPEN_MESSAGE_ERROR
            and msg.subcode == OpenSubcode.UNSUPPORTED_VERSION_NUMBER
        )
        event = FsmEvent.NOTIF_MSG_VER_ERR if version_error else FsmEvent.NOTIF_MSG
        # The router's operator shut or reset the session: no oscillation to damp
        # (the router connects again at once, e.g. FRR's "no neighbor shutdown").
        administrative = cause.code == NotifCode.CEASE and cause.subcode in (
            CeaseSubcode.ADMINISTRATIVE_SHUTDOWN,
            CeaseSubcode.ADMINISTRATIVE_RESET,
        )
        reason = f"NOTIFICATION {msg.code}/{msg.subcode} received"
        self._down(now, event, reason, None, damp=not administrative)

    def _on_route_refresh(self, msg: RouteRefreshMessage) -> None:
        neg = self.negotiated
        if neg is None or (msg.afi, msg.safi) not in neg.families:
            return  # RFC 2918 §4: ignore families that were not negotiated
        if msg.subtype not in (0, 1, 2):
            return  # RFC 7313 §5: ignore unknown subtypes
        self._events.append(RouteRefreshReceived(afi=msg.afi, safi=msg.safi, subtype=msg.subtype))
