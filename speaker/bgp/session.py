"""The BGP runtime: one peer session of the sans-IO core driven by Trio.

Task tree (all inside :meth:`BgpSession.run`'s cancel scope)::

    BgpSession.run
    ├── driver          timers (handle_timer), Adj-RIB-Out batches, End-of-RIB
    ├── listener        passive / listen: accepts only the configured peer
    ├── connect         one per ShouldConnect, bounded by connect_time
    ├── candidate       the peer's connection during a collision (speaker/bgp/collision.py)
    └── link            one per TCP connection (speaker/bgp/link.py)
        ├── reader      recv 2 KiB -> core.receive_data (one chunk per scheduling turn)
        └── writer      the only task writing to the socket

Every task touches the core only synchronously; whatever the core wants written
goes into the link's queue (whole messages), and only the writer sends. The writer
always knows how much of a message is on the wire: when the session is cancelled,
the message in flight is completed and the Cease NOTIFICATION follows it (bounded by
``cease_timeout``, shielded); a BFD teardown writes it at once (:meth:`cease_now`).
Statistics and their records are in speaker/bgp/stats.py.

Resource handling: the sockets are closed when their link (or the session) ends.
Error handling: socket errors are TCP failures for the core (it backs off and
reconnects); a socket option that cannot be set (MD5 on a kernel without it) ends
:meth:`BgpSession.run` with :class:`~speaker.bgp.net.BgpSocketError`.

Why this module is long (about 950 lines): what is left here is one state, the core
and the connection it is on (the current link, the connect attempt, a collision's
candidate, the Cease owed), and every method reads or changes it in the same task
step as the core call it follows. Splitting the FSM events, connections and
collisions into classes would pass that state between them and spread the one
invariant (the core's output goes to the link it was produced for) over several
files; the parts that do not share it (the link's I/O, statistics, the collision
decision) are the modules named above.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
from collections.abc import Iterator
from typing import Any, assert_never

import attrs
import trio

from protocols.bgp import (
    CeaseSubcode,
    Connection,
    EndOfRib,
    Established,
    Event,
    NegotiatedSession,
    NextHop,
    NotifCode,
    NotificationReceived,
    NotificationSent,
    OpenReceived,
    PathAttribute,
    Prefix,
    RouteKey,
    RouteRefreshReceived,
    ShouldClose,
    ShouldConnect,
    State,
    StateChanged,
    UpdateReceived,
    encode_announcement_keys,
    encode_withdrawal_keys,
)
from protocols.bgp.constants import IPV4_UNICAST, IPV6_UNICAST
from speaker.addresses import IPAddress
from speaker.alarm import Alarm
from speaker.bgp import net
from speaker.bgp.collision import OPENING, Candidate, collision_outcome, peer_id
from speaker.bgp.config import BgpPeerConfig, RouteAttributes
from speaker.bgp.link import HIGH_WATER, READ_CHUNK, Link, MessageCounter
from speaker.bgp.listener import BgpListener
from speaker.bgp.rib import (
    AdjRibIn,
    AdjRibOut,
    AnyChanges,
    AnyRoutes,
    OutBatch,
    SentTable,
    keyed,
    path_attributes,
)
from speaker.bgp.stats import (
    NOTE_LOG_INTERVAL,
    BgpStatistics,
    ErrorRecord,
    NoteLog,
    family_name,
    notification_name,
    snapshot,
)
from speaker.broadcast import Broadcast
from speaker.log import fields
from speaker.looplag import Slicer, bulk_turn

__all__ = [
    "BATCH_PREFIXES",
    "NOTE_LOG_INTERVAL",
    "BgpSession",
    "BgpStatistics",
    "ErrorRecord",
    "SessionReport",
    "family_name",
]

log = logging.getLogger("speaker.bgp")

#: Prefixes compared, packed and encoded per driver step: about 2 µs each, so a
#: batch costs about 0.5 ms (bench/route_steps.py measures it).
BATCH_PREFIXES = 256
NEXT_HOP_RECHECK = 1.0  # s, while a negotiated family has no next hop
NEXT_HOP_REFRESH = 10.0  # s, otherwise (an address may change under the session)
_SUBSCRIBER_BUFFER = 256


@attrs.frozen(kw_only=True)
class SessionReport:
    """An event of the session as published to subscribers, with its time."""

    at: float
    event: StateChanged | Established | NotificationSent | NotificationReceived | EndOfRib


class BgpSession:
    """One BGP peer: connects (or accepts), keeps the session up, announces routes.

    Run it with ``await nursery.start(session.run)``; end it with
    :meth:`cancel` (Cease with the given subcode) or by cancelling a scope registered
    with :meth:`cease_on_cancel`.
    """

    def __init__(
        self,
        config: BgpPeerConfig,
        *,
        routes: AnyRoutes | None = None,
        rng: random.Random | None = None,
        restarting: bool = False,
    ) -> None:
        """``restarting``: our OPEN sets the Graceful Restart R bit (the process came
        back from a restart within the restart time; only with ``graceful_restart``)."""
        routes = {} if routes is None else keyed(routes)
        # families set (the speaker always sets them): no walk over the routes.
        self.config = config if config.families else config.with_families_for(routes)
        self._rng: random.Random = rng or random.SystemRandom()
        self.restarting = restarting and self.config.graceful_restart
        self.core = Connection(
            self.config.session_config(restarting=self.restarting), rng=self._rng
        )
        self.rib_out = AdjRibOut(routes)  # taken over, not copied
        self.rib_in = AdjRibIn(keep=self.config.keep_adj_rib_in)
        self.negotiated: NegotiatedSession | None = None
        self.next_hops: net.NextHops | None = None
        #: IPv4 routes go with our IPv6 next hops (RFC 8950) on this session.
        self.ipv4_over_ipv6 = False
        self._link: Link | None = None
        self._attempt: trio.CancelScope | None = None
        self._listener: BgpListener | None = None
        self._candidate: Candidate | None = None
        self._nursery: trio.Nursery | None = None
        self._scope = trio.CancelScope()
        self._alarm = Alarm()
        self._in_driver = False
        self._changed = trio.Event()
        self._stopped = trio.Event()
        self._reports: Broadcast[SessionReport] = Broadcast(
            _SUBSCRIBER_BUFFER, f"bgp {config.name}", log
        )
        self._owner_scopes: list[tuple[trio.CancelScope, int, str | None]] = []
        self._cancel_reason: tuple[int, str | None] | None = None
        self._ceased = False
        self._notified = False
        #: The session ends on the restart path (:meth:`stop_for_restart`).
        self._for_restart = False
        self._fatal: BaseException | None = None
        self._attr_cache: dict[RouteAttributes, list[PathAttribute]] = {}
        #: A NOTIFICATION went either way since the session was last Established (then
        #: its end is no graceful restart of the peer: :meth:`_help_restart`).
        self._notified_since_up = False
        #: The reconnect loop of :meth:`_follow_restart`, while one runs (one at most).
        self._restart_watch: trio.CancelScope | None = None
        #: BGP messages by type, over all of this session's connections
        self.received = MessageCounter()
        self.sent = MessageCounter()
        self.notes = NoteLog(self.name)
        # counters and timestamps
        self.established_at: float | None = None
        #: When the session last left Established (FRR's Up/Down while it is down).
        self.down_at: float | None = None
        self.flaps = 0
        self.updates_in = 0
        self.updates_out = 0
        self.prefixes_announced = 0
        self.prefixes_withdrawn = 0
        self.connect_attempts = 0
        self.connect_failures = 0
        self.last_connect_error: str | None = None
        self.collisions = 0
        self.end_of_rib_sent: list[tuple[int, int]] = []
        self.last_error_sent: ErrorRecord | None = None
        self.last_error_received: ErrorRecord | None = None
        self.cancelled_at: float | None = None
        self.notification_written_at: float | None = None
        self.closed_at: float | None = None

    # ---- queries ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state(self) -> State:
        return self.core.state

    def _fields(self, **more: object) -> dict[str, Any]:
        """A log line's structured fields: ``peer=NAME``, as every BFD, BGP and peer
        line has it (the message starts ``bgp NAME:``)."""
        return fields(peer=self.name, protocol="bgp", **more)

    @property
    def link(self) -> Link | None:
        """The session's TCP connection, if it has one."""
        return self._link

    def statistics(self) -> BgpStatistics:
        return snapshot(self)

    def subscribe(self) -> trio.MemoryReceiveChannel[SessionReport]:
        """A channel of state changes, Established, NOTIFICATIONs and End-of-RIBs from
        now on. A subscriber that falls behind by 256 reports is dropped (closed)."""
        return self._reports.subscribe()

    async def wait_state(self, *states: State) -> State:
        while self.core.state not in states:
            await self._changed.wait()
        return self.core.state

    async def wait_established(self) -> None:
        await self.wait_state(State.ESTABLISHED)

    async def wait_synchronised(self) -> None:
        """Until the peer holds exactly the desired routes (and End-of-RIB went out)."""
        while not (self.core.state is State.ESTABLISHED and self.rib_out.synchronised):
            await self._changed.wait()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # ---- commands ---------------------------------------------------------------------

    def set_routes(self, routes: AnyRoutes) -> None:
        """Replace the desired routes; the difference goes out as incremental UPDATEs
        (or with the next full dump if the session is not Established). ``routes`` is
        taken over (not copied): do not change it afterwards. Costs nothing
        proportional to the table here when it is keyed by route key (a
        :class:`~speaker.bgp.rib.LayeredRoutes`, an int-keyed dict); a table of
        networks is copied into keys first. The driver compares it a batch at a time."""
        self.rib_out.replace(routes)
        self._kick()

    def update_routes(self, changes: AnyChanges) -> None:
        """Apply ``changes`` to the desired routes (None withdraws a prefix); costs
        ``len(changes)``. The way for an owner that keeps its own table up to date."""
        self.rib_out.update(changes)
        self._kick()

    def set_drained(self, drained: bool) -> None:
        """RFC 8326 drain of this session (or its end): every route is sent again with
        GRACEFUL_SHUTDOWN (and LOCAL_PREF 0 on iBGP), or again without; a batch per
        driver step, as any change of the Adj-RIB-Out (:meth:`AdjRibOut.set_drained`).
        Kept across the session's reconnections (it is the Adj-RIB-Out's)."""
        self.rib_out.set_drained(drained)
        self._kick()

    @property
    def drained(self) -> bool:
        return self.rib_out.drained

    def announce(
        self, prefix: Prefix | RouteKey, attributes: RouteAttributes | None = None
    ) -> None:
        self.rib_out.announce(prefix, attributes or RouteAttributes())
        self._kick()

    def resend_all(self) -> list[str]:
        """Send the whole Adj-RIB-Out again (``clear bgp X soft out``), as for a
        ROUTE-REFRESH of every family the session carries; returns those families."""
        families = sorted(self.negotiated.families) if self.negotiated is not None else []
        for family in families:
            self.rib_out.resend(family)
        self._kick()
        return [family_name(f) for f in families]

    def withdraw(self, prefix: Prefix | RouteKey) -> None:
        self.rib_out.withdraw(prefix)
        self._kick()

    def cancel(
        self, subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, message: str | None = None
    ) -> None:
        """End the session: Cease with ``subcode`` (RFC 9003 ``message`` for subcodes 2
        and 4) if the socket takes it within ``cease_timeout``, then close."""
        if self._cancel_reason is None:
            self._cancel_reason = (subcode, message)
            self.cancelled_at = trio.current_time()
        self._scope.cancel(reason=f"BGP {self.name}: cease {subcode} {message or ''}".strip())

    def stop_for_restart(self, message: str | None = None) -> None:
        """End the session for a restart of ours, so that the router keeps our routes
        as stale (RFC 4724 §4, RFC 8538 §4): with N on both sides Cease /
        Administrative Reset, never a Hard Reset; with graceful restart but no N only
        the TCP close; without graceful restart the same Cease (the router drops the
        routes either way). A BFD teardown already under way keeps its Cease."""
        if self._cancel_reason is None:
            self._for_restart = True
        self.cancel(CeaseSubcode.ADMINISTRATIVE_RESET, message)

    def retained_families(self) -> list[tuple[int, int]]:
        """The families the router keeps our routes for if this session ends on the
        restart path now (empty: graceful restart not negotiated)."""
        neg = self.negotiated
        if neg is None or neg.graceful_restart_negotiation is None:
            return []
        return sorted(neg.graceful_restart_negotiation.retained_families)

    @contextlib.contextmanager
    def cease_on_cancel(
        self, scope: trio.CancelScope, subcode: int, message: str | None = None
    ) -> Iterator[trio.CancelScope]:
        """While inside, a cancellation of ``scope`` (which the owner wraps around
        :meth:`run`, e.g. a scope BFD cancels on failure) makes the session send Cease
        with ``subcode``::

            with trio.CancelScope() as scope, session.cease_on_cancel(
                scope, CeaseSubcode.BFD_DOWN
            ), bfd.cancel_on_failure(scope):
                await session.run()
        """
        entry = (scope, subcode, message)
        self._owner_scopes.append(entry)
        try:
            yield scope
        finally:
            self._owner_scopes.remove(entry)

    # ---- the task ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the session until cancelled (see the module docstring for the tasks)."""
        log.info("bgp %s: starting, peer %s AS %s, local AS %d, %s%s", self.name,
                 self.config.peer_address, self.config.peer_asn or self.config.dynamic_asn,
                 self.config.local_asn,
                 "iBGP" if self.config.internal else "eBGP",
                 ", passive" if self.config.passive else "", extra=self._fields())  # fmt: skip
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._after(self.core.start(trio.current_time()))
                    await self._listen(nursery)  # started: a held connection is taken
                    task_status.started()
                    await self._driver()
        finally:
            self._nursery = None
            if self._listener is not None:
                self._listener.unregister(self)
            with trio.move_on_after(self.config.cease_timeout, shield=True):
                await self._goodbye()
            self._reports.close()
            self._stopped.set()
        if self._fatal is not None:
            raise self._fatal

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
        self._scope.cancel(reason=str(exc))

    async def _driver(self) -> None:
        while True:
            self._in_driver = True
            now = trio.current_time()
            deadline = self.core.get_timer()
            if deadline is not None and now >= deadline:
                self._after(self.core.handle_timer(now))
            more = self._pump(now)
            self._in_driver = False
            if more:
                # More to send: bulk work, it comes back in its turn (speaker.looplag).
                await bulk_turn()
                continue
            await self._alarm.sleep_until(self.core.get_timer())

    def _kick(self) -> None:
        """Wake the driver (from any other task) and whoever waits for a change."""
        self._changed.set()
        self._changed = trio.Event()
        if not self._in_driver:
            self._alarm.kick()

    # ---- core output and events -------------------------------------------------------

    def _after(self, events: list[Event]) -> None:
        """After every core call: queue its output on the current link, handle events."""
        data = self.core.data_to_send()
        if data and self._link is not None:
            self._link.push(data)
        for event in events:
            self._on_event(event)
        self._kick()

    def _discard_retired(self) -> None:
        retired, self.rib_out.retired = self.rib_out.retired, []
        if retired and self._nursery is not None:
            self._nursery.start_soon(_discard, retired, name=f"bgp {self.name} retired routes")

    def _on_event(self, event: Event) -> None:
        now = trio.current_time()
        match event:
            case StateChanged():
                log.info("bgp %s: %s -> %s (%s)", self.name, event.old.value, event.new.value,
                         event.reason, extra=self._fields(address=str(self.config.peer_address),
                         old=event.old.value, new=event.new.value,
                         reason=event.reason))  # fmt: skip
                if event.old is State.ESTABLISHED:
                    self._help_restart(self.negotiated)
                    self.flaps += 1
                    self.established_at = None
                    self.down_at = now
                    self.negotiated = None
                    self.rib_out.session_down()
                    self._discard_retired()
                    self.rib_in.clear()
                self._publish(now, event)
            case ShouldConnect():
                self._start_connect()
            case ShouldClose():
                if self._attempt is not None:
                    self._attempt.cancel()
                    self._attempt = None
                    if self.core.state is State.CONNECT:  # the attempt's time ran out
                        self._connect_failed(event.reason, silent=True)
                if self._link is not None:
                    self._close_link(self._link, event.reason)
            case OpenReceived():
                peer_open = event.open
                log.debug("bgp %s: OPEN from %s AS %d hold %d", self.name,
                          peer_open.bgp_identifier, peer_open.asn, peer_open.hold_time,
                          extra=self._fields())  # fmt: skip
                self._resolve_collision()
            case Established():
                self._on_established(now, event)
            case UpdateReceived():
                self.updates_in += 1
                self.rib_in.apply(event)
                if event.notes or event.suppressed:
                    self.notes.add(event, now)
            case EndOfRib():
                self.rib_in.end_of_rib.add((event.afi, event.safi))
                log.info("bgp %s: End-of-RIB received for %s", self.name,
                         family_name((event.afi, event.safi)), extra=self._fields())  # fmt: skip
                self._publish(now, event)
            case RouteRefreshReceived():
                self.rib_out.resend((event.afi, event.safi))
            case NotificationReceived():
                self._notified_since_up = True
                text = event.shutdown_message or event.data.hex()
                self.last_error_received = ErrorRecord(
                    code=event.code, subcode=event.subcode, text=text, at=now
                )
                log.warning("bgp %s: NOTIFICATION received %d/%d %s", self.name, event.code,
                            event.subcode, text, extra=self._fields(
                            error=notification_name(event.code, event.subcode),
                            notification=f"received {event.code}/{event.subcode}"))  # fmt: skip
                self._publish(now, event)
            case NotificationSent():
                self._notified_since_up = True
                self.last_error_sent = ErrorRecord(
                    code=event.code, subcode=event.subcode, text=event.reason, at=now
                )
                if not self._ceased:  # a stop's Cease: one line once written, below
                    self._log_notification(logging.WARNING, event.code, event.subcode)
                self._publish(now, event)
            case _:
                assert_never(event)

    def _on_established(self, now: float, event: Established) -> None:
        neg = event.negotiated
        self.negotiated = neg
        self._notified_since_up = False
        self.established_at = now
        self._attr_cache.clear()
        families = set(neg.families)
        link = self._link
        hops = net.next_hops(link.local, self.config) if link else None
        self.next_hops = hops
        # RFC 8950: IPv4 routes with our IPv6 next hops, when both sides offered it and
        # we have no IPv4 next hop (an unnumbered session); fixed for the session.
        self.ipv4_over_ipv6 = neg.ipv6_next_hop_for(*IPV4_UNICAST) and (
            hops is None or hops.ipv4 is None
        )
        for family in (IPV4_UNICAST, IPV6_UNICAST):
            if self._hop_of(family, hops) is None:
                families.discard(family)
        for missing in set(neg.families) - families:
            log.warning("bgp %s: no next hop for %s on this session: not announcing it",
                        self.name, family_name(missing), extra=self._fields())  # fmt: skip
        # End-of-RIB goes out for every negotiated family, even one we cannot send.
        self.rib_out.session_up(families, end_of_rib=neg.families)
        log.info("bgp %s: established with %s (AS %d, id %s), hold %d s, families %s, "
                 "%d routes to send", self.name, link.remote if link else "?", neg.peer_asn,
                 neg.peer_router_id, neg.hold_time,
                 ",".join(family_name(f) for f in sorted(neg.families)),
                 len(self.rib_out.desired), extra=self._fields())  # fmt: skip
        self._publish(now, event)
        if link is not None and self._nursery is not None and not self._fixed_next_hops():
            self._nursery.start_soon(self._follow_next_hops, link)

    # ---- the peer restarting gracefully (RFC 4724 §4.2, helper) --------------------------

    def _help_restart(self, negotiated: NegotiatedSession | None) -> None:
        """The session left Established. If the peer had advertised graceful restart
        and the session ended without a NOTIFICATION (its TCP connection went away:
        the router's BGP is restarting), reconnect every ``connect_retry`` for the
        Restart Time it advertised instead of backing off: we keep nothing of its
        routes (we use none), but ours must be back, with End-of-RIB, as soon as it
        listens again, within its Restart Time (RFC 4724 §4.2)."""
        if negotiated is None or self._nursery is None or self.config.passive:
            return
        restart_time = negotiated.graceful_restart_negotiation.peer_restart_time
        if not restart_time:
            return
        if self._restart_watch is not None:  # the peer went again: start over
            self._restart_watch.cancel()
        self._restart_watch = trio.CancelScope()
        self._nursery.start_soon(self._follow_restart, float(restart_time), self._restart_watch)

    def _established(self) -> bool:
        return self.core.state is State.ESTABLISHED

    async def _follow_restart(self, restart_time: float, scope: trio.CancelScope) -> None:
        retry = self.config.connect_retry
        until = trio.current_time() + restart_time
        with scope:
            await trio.sleep(retry)  # the events of the session's end are all in by then
            if self._notified_since_up or self._established():
                return  # a NOTIFICATION: a reset, not a restart (the backoff applies)
            log.info("bgp %s: the peer closed the session without a NOTIFICATION and"
                     " advertised graceful restart (%.0f s): reconnecting every %.1f s"
                     " meanwhile", self.name, restart_time, retry,
                     extra=self._fields())  # fmt: skip
            while trio.current_time() < until and not self._established():
                if self.core.state is State.IDLE:  # waiting out a backoff: try now instead
                    self._after(self.core.connect_now(trio.current_time()))
                await trio.sleep(retry)
        if self._restart_watch is scope:
            self._restart_watch = None

    # ---- next hops that follow the interface's addresses --------------------------------

    def _fixed_next_hops(self) -> bool:
        """Whether configuration sets every next hop (nothing to follow)."""
        return self.config.next_hop4 is not None and self.config.next_hop6 is not None

    async def _follow_next_hops(self, link: Link) -> None:
        """While ``link`` is the Established connection, re-derive its next hops (every
        second while a negotiated family has none, else every 10 s): an IPv6 address
        removed by a link flap (``keep_addr_on_down=0``) and learnt again brings its
        family's routes out; a changed address sends them again with the new one."""
        while True:
            missing = self._missing_families()
            await trio.sleep(NEXT_HOP_RECHECK if missing else NEXT_HOP_REFRESH)
            if self._link is not link or self.core.state is not State.ESTABLISHED:
                return
            hops = net.next_hops(link.local, self.config)
            old = self.next_hops
            if hops == old:
                continue
            self.next_hops = hops
            self._attr_cache.clear()
            for family, before, after in (
                (f, self._hop_of(f, old), self._hop_of(f, hops))
                for f in (IPV4_UNICAST, IPV6_UNICAST)
            ):
                negotiated = self.negotiated is not None and family in self.negotiated.families
                if before == after or after is None or not negotiated:
                    continue  # unchanged, gone (keep what the peer has), or not ours
                log.info("bgp %s: next hop for %s is now %s: sending its routes", self.name,
                         family_name(family), after, extra=self._fields())  # fmt: skip
                if family in missing:
                    self.rib_out.add_family(family)  # scanned a batch per driver step
                else:
                    self.rib_out.resend(family)
            self._kick()

    def _missing_families(self) -> set[tuple[int, int]]:
        neg, hops = self.negotiated, self.next_hops
        if neg is None:
            return set()
        return {
            family
            for family in (IPV4_UNICAST, IPV6_UNICAST)
            if family in neg.families and self._hop_of(family, hops) is None
        }

    def _hop_of(self, family: tuple[int, int], hops: net.NextHops | None) -> IPAddress | None:
        """The next hop a family's routes go with on this session (None: cannot send):
        IPv4's is our IPv6 one on an RFC 8950 session (:attr:`ipv4_over_ipv6`)."""
        if hops is None:
            return None
        if family == IPV4_UNICAST:
            return hops.ipv6 if self.ipv4_over_ipv6 else hops.ipv4
        return hops.ipv6

    def _publish(
        self,
        now: float,
        event: StateChanged | Established | NotificationSent | NotificationReceived | EndOfRib,
    ) -> None:
        self._reports.publish(SessionReport(at=now, event=event))

    # ---- Adj-RIB-Out --------------------------------------------------------------------

    def _pump(self, now: float) -> bool:
        """Send one batch of Adj-RIB-Out changes if there is room; True if more remain."""
        link = self._link
        if self.core.state is not State.ESTABLISHED or link is None or link.closing:
            return False
        if link.queued >= HIGH_WATER:
            return False  # the writer kicks us when it drains
        if self.rib_out.pending:
            batch = self.rib_out.take(BATCH_PREFIXES)
            for message in self._encode(batch):
                self.core.send_encoded_update(message, now)
                self.updates_out += 1
            self.prefixes_withdrawn += len(batch.withdraw)
            self.prefixes_announced += batch.size - len(batch.withdraw)
        for family in self.rib_out.take_end_of_rib():
            self.core.send_end_of_rib(family[0], family[1], now)
            self.end_of_rib_sent.append(family)
            log.info("bgp %s: End-of-RIB sent for %s (%d prefixes advertised)", self.name,
                     family_name(family), len(self.rib_out.advertised),
                     extra=self._fields())  # fmt: skip
        self._after([])
        return self.rib_out.pending > 0 and link.queued < HIGH_WATER

    def _encode(self, batch: OutBatch) -> list[bytes]:
        """The batch as encoded UPDATEs, from route keys straight to the wire (keys
        sort as the networks would: IPv4 first, then by address)."""
        ctx = self.core.codec_context
        hops = self.next_hops
        assert hops is not None and self.negotiated is not None
        out: list[bytes] = []
        over6 = self.ipv4_over_ipv6
        if batch.withdraw:
            out += encode_withdrawal_keys(sorted(batch.withdraw), ctx, ipv4_over_ipv6=over6)
        for attributes, prefixes in batch.announce.items():
            path = self._attr_cache.get(attributes)
            if path is None:
                path = path_attributes(
                    attributes,
                    local_asn=self.config.local_asn,
                    internal=self.negotiated.internal,
                    next_hop4=NextHop(address=hops.ipv4) if hops.ipv4 and not over6 else None,
                )
                self._attr_cache[attributes] = path
            out += encode_announcement_keys(
                path,
                sorted(prefixes),
                ctx,
                ipv6_next_hop=hops.ipv6,
                ipv6_link_local_next_hop=hops.ipv6_link_local,
                ipv4_over_ipv6=over6,
            )
        return out

    # ---- connections ------------------------------------------------------------------

    def connect_now(self) -> bool:
        """Reset the connect backoff and start a connection attempt at once (abandoning
        one in progress, which is not counted as a failure): for the owner that knows
        the path is back, e.g. BFD Up and stable after a BFD-caused teardown. Returns
        whether an attempt started (not when passive, not running, or connected)."""
        if self._nursery is None:
            return False
        if self._attempt is not None:
            self._attempt.cancel()
            self._attempt = None
        events = self.core.connect_now(trio.current_time())
        self._after(events)
        return any(isinstance(e, ShouldConnect) for e in events)

    async def _listen(self, nursery: trio.Nursery) -> None:
        """Register with the shared listener; a passive session without one listens on
        its own port (a bind failure is then fatal: nothing else would connect)."""
        cfg = self.config
        listener = cfg.listener
        if listener is None and cfg.passive:
            source = (cfg.source_address,) if cfg.source_address else ()
            listener = BgpListener(port=cfg.listen_port, addresses=source, required=True)
            await nursery.start(listener.run)
        if listener is None or not (cfg.listen or cfg.passive):
            return
        listener.register(self)
        self._listener = listener

    def take_connection(self, sock: trio.socket.SocketType) -> None:
        """An incoming connection from our peer's address (the listener checked it):
        adopt it, run it beside ours as a collision (RFC 4271 §6.8), or refuse it."""
        cfg = self.config
        try:
            local = net.local_address(sock)
            net.apply_ttl(sock, cfg)
        except OSError as exc:  # gone already, or a socket option failed
            sock.close()
            log.info("bgp %s: incoming connection lost at once: %s", self.name, exc,
                     extra=self._fields())  # fmt: skip
            return
        why = None
        if self._nursery is None:
            why = "the session is stopping"
        elif self._candidate is not None:
            why = "a collision is being resolved"
        elif cfg.source_address is not None and local != cfg.source_address:
            why = f"it came to {local}, not to source_address {cfg.source_address}"
        elif self._link is not None:
            # A collision needs our own connection opening, or theirs still waiting for
            # its OPEN (the router may have given that one up: FRR does, and a rebooted
            # router's half-open connection would block it until our hold time).
            # Otherwise a second one of theirs (or one while Established, RFC 4271
            # §6.8) is refused.
            replaceable = self._link.outgoing or self.core.state is State.OPEN_SENT
            if not replaceable or self.core.state not in OPENING:
                why = f"a connection exists in state {self.core.state.value}"
        elif not self.core.accepts_incoming:
            why = f"state {self.core.state.value}"
        if why is not None:
            log.info("bgp %s: refused a connection from %s: %s", self.name,
                     cfg.peer_address, why, extra=self._fields())  # fmt: skip
            sock.close()
            return
        assert self._nursery is not None
        if self._link is not None:
            candidate = Candidate(self._new_link(sock), self._rng, cfg)
            self._nursery.start_soon(self._run_candidate, candidate)
            return
        if self._attempt is not None:  # theirs made it first: ours is not needed
            self._attempt.cancel()
            self._attempt = None
        self._adopt(sock, outgoing=False)

    def _start_connect(self) -> None:
        if self.config.passive or self._nursery is None:
            return
        if self._attempt is not None:
            self._attempt.cancel()
        scope = trio.CancelScope()
        self._attempt = scope
        self.connect_attempts += 1
        self._nursery.start_soon(self._connect, scope)

    async def _connect(self, scope: trio.CancelScope) -> None:
        """One attempt; the core's connect retry timer (connect_time) bounds it."""
        cfg = self.config
        sock: trio.socket.SocketType | None = None
        reason = ""
        with scope:
            try:
                sock = await net.open_connection(cfg)
            except net.BgpSocketError as exc:
                self._fail(exc)
                return
            except OSError as exc:
                reason = exc.strerror or str(exc)
        if self._attempt is not scope:  # abandoned (timed out, incoming, stop)
            if sock is not None:
                sock.close()
            return
        self._attempt = None
        if sock is None:
            self._connect_failed(reason, silent=False)
            self._after(self.core.connection_failed(trio.current_time()))
            return
        self._adopt(sock, outgoing=True)

    def _connect_failed(self, reason: str, *, silent: bool) -> None:
        """Count and report a failed attempt: refused or unreachable, or ``silent``
        (no answer within connect_time)."""
        cfg = self.config
        if silent and cfg.password is not None:
            reason += (
                " (TCP MD5 password set: a wrong or missing password on either side makes"
                " the peer drop our SYNs silently)"
            )
        self.connect_failures += 1
        self.last_connect_error = reason
        log.warning("bgp %s: connect to %s port %d failed: %s", self.name,
                    cfg.peer_address, cfg.peer_port, reason,
                    extra=self._fields(error="connect failed"))  # fmt: skip

    def _adopt(self, sock: trio.socket.SocketType, *, outgoing: bool) -> None:
        assert self._nursery is not None
        try:
            link = self._new_link(sock)
        except OSError as exc:  # the connection died already (getpeername)
            sock.close()
            log.warning("bgp %s: connection lost at once: %s", self.name, exc,
                        extra=self._fields())  # fmt: skip
            self._after(self.core.connection_failed(trio.current_time()))
            return
        link.outgoing = outgoing
        self._link = link
        self.next_hops = None
        log.info("bgp %s: TCP connected %s -> %s (%s)", self.name, link.local, link.remote,
                 "ours" if outgoing else "theirs", extra=self._fields())  # fmt: skip
        self._nursery.start_soon(self._run_link, link)
        self._after(self.core.connection_made(trio.current_time()))

    # ---- connection collisions (RFC 4271 §6.8) ------------------------------------------

    async def _run_candidate(self, cand: Candidate) -> None:
        """The peer's connection while ours is opening: a second core sends our OPEN on
        it and reads theirs; once a BGP Identifier is known the loser gets Cease/7. If
        theirs wins it becomes the session's connection and the usual reader takes over."""
        link = cand.link
        self._candidate = cand
        self.collisions += 1
        assert self._link is not None
        log.info("bgp %s: connection collision: the peer connected while %s is %s",
                 self.name, "ours" if self._link.outgoing else "its earlier connection",
                 self.core.state.value, extra=self._fields())  # fmt: skip
        won = False
        try:
            with link.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, link)
                    now = trio.current_time()
                    cand.core.start(now)
                    self._cand_after(cand, cand.core.connection_made(now))
                    won = await self._candidate_reader(cand)
                    if won:
                        await self._reader(link)
                    else:
                        self._close_link(link, "connection collision lost")
        finally:
            if self._candidate is cand:
                self._candidate = None
            if not won or self._link is not link:
                link.sock.close()

    async def _candidate_reader(self, cand: Candidate) -> bool:
        """Feed the candidate core one message at a time (so it stops at OpenConfirm)
        until the collision is decided; True if the peer's connection won."""
        link, core = cand.link, cand.core
        while True:
            outcome = self._collision_outcome(cand)
            if outcome is not None:
                return self._settle(cand, outcome)
            if core.state is State.IDLE or self._candidate is not cand:
                return False  # it failed on its own (error, EOF) or ours went away
            message = cand.next_message()
            if message is not None:
                self.received.feed(message)
                self._cand_after(cand, core.receive_data(message, trio.current_time()))
                continue
            deadline = core.get_timer()
            cand.wake = trio.CancelScope(deadline=math.inf if deadline is None else deadline)
            with cand.wake:
                try:
                    data = await link.sock.recv(READ_CHUNK)
                except OSError:
                    data = b""
                if not data:
                    self._cand_after(cand, core.receive_data(b"", trio.current_time()))
                    return False
                cand.buffer += data
            now = trio.current_time()
            if deadline is not None and now >= deadline:
                self._cand_after(cand, core.handle_timer(now))

    def _cand_after(self, cand: Candidate, events: list[Event]) -> None:
        data = cand.core.data_to_send()
        if data:
            cand.link.push(data)
        for event in events:
            if isinstance(event, StateChanged):
                log.debug("bgp %s: peer's connection %s -> %s (%s)", self.name,
                          event.old.value, event.new.value, event.reason,
                          extra=self._fields())  # fmt: skip
            elif isinstance(event, NotificationSent | NotificationReceived):
                log.info("bgp %s: peer's connection: NOTIFICATION %s %d/%d", self.name,
                         "sent" if isinstance(event, NotificationSent) else "received",
                         event.code, event.subcode, extra=self._fields())  # fmt: skip

    def _resolve_collision(self) -> None:
        """Our connection got the peer's OPEN: let the candidate decide (in its task)."""
        cand = self._candidate
        if cand is not None and cand.wake is not None:
            cand.wake.cancel()

    def _collision_outcome(self, cand: Candidate) -> bool | None:
        """Whether the candidate wins (True) or is closed (False); None: not yet."""
        link = self._link
        ours_outgoing = None if link is None else link.outgoing
        return collision_outcome(self.core, cand.core, ours_outgoing, self.config.router_id)

    def _settle(self, cand: Candidate, candidate_wins: bool) -> bool:
        """Close the losing connection with Cease/7; True if the candidate won."""
        link = self._link
        ours_closed = link is not None and candidate_wins
        now = trio.current_time()
        if link is not None and not link.outgoing:  # both the peer's: no identifiers
            log.info("bgp %s: connection collision: keeping the peer's %s connection, the "
                     "first to bring its OPEN", self.name,
                     "earlier" if not ours_closed else "newer",
                     extra=self._fields())  # fmt: skip
        else:
            log.info("bgp %s: connection collision: keeping the connection %s opened "
                     "(BGP Identifier %s vs ours %s)", self.name,
                     "we" if link is not None and not ours_closed else "the peer",
                     peer_id(self.core, cand.core), self.config.router_id,
                     extra=self._fields())  # fmt: skip
        if not ours_closed and link is not None:
            self._cand_after(cand, cand.core.collision_dump(now))
            return False
        if link is not None:
            self._after(self.core.collision_dump(now))
        if self._attempt is not None:  # ours failed meanwhile and the core retried
            self._attempt.cancel()
            self._attempt = None
        old_state = self.core.state
        self.core = cand.core
        self._candidate = None
        self._link = cand.link
        self.next_hops = None
        reason = "connection collision: the peer's connection"
        self._on_event(StateChanged(old=old_state, new=self.core.state, reason=reason))
        rest = bytes(cand.buffer)
        cand.buffer.clear()
        if rest:
            self.received.feed(rest)
        self._after(self.core.receive_data(rest, now) if rest else [])
        return True

    def _close_link(self, link: Link, reason: str) -> None:
        """Flush what is queued (NOTIFICATION included) within cease_timeout, then close."""
        link.closing = True
        link.has_data.set()
        link.scope.deadline = min(
            link.scope.deadline, trio.current_time() + self.config.cease_timeout
        )
        if self._link is link:
            self._link = None
            self._resolve_collision()  # a candidate waiting for the peer takes over
        log.debug("bgp %s: closing the connection: %s", self.name, reason, extra=self._fields())

    def _link_failed(self, link: Link, reason: str) -> None:
        if self._link is link:
            log.warning("bgp %s: connection failed: %s", self.name, reason, extra=self._fields())
            self._after(self.core.connection_failed(trio.current_time()))
        link.scope.cancel()

    async def _run_link(self, link: Link) -> None:
        try:
            with link.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader, link)
                    nursery.start_soon(self._writer, link)
        finally:
            if self._link is not link:  # the session still owns it otherwise (goodbye)
                link.sock.close()
                self.closed_at = trio.current_time()

    def _new_link(self, sock: trio.socket.SocketType) -> Link:
        """Raises OSError if the connection died already (getpeername)."""
        return Link(sock, sent=self.sent)

    async def _reader(self, link: Link) -> None:
        await link.read_loop(self._link_received, self._link_failed)

    def _link_received(self, link: Link, data: bytes) -> bool:
        """What ``link`` read, to the core; False when it is no longer our link."""
        if self._link is not link:
            return False
        self.received.feed(data)
        self._after(self.core.receive_data(data, trio.current_time()))
        return True

    async def _writer(self, link: Link) -> None:
        await link.write_loop(self._link_drained, self._link_failed)

    def _link_drained(self, link: Link) -> None:
        if self._link is link:
            self._kick()  # room for more UPDATEs

    def cease_now(self, subcode: int, message: str | None = None) -> bool:
        """Write the Cease NOTIFICATION at once, synchronously, if the socket takes it
        without blocking (after the rest of the chunk in flight), and drop UPDATEs not
        yet started. The fast path of a BFD teardown: no task switch between the
        detection and the NOTIFICATION. The caller cancels the session right after;
        :meth:`_goodbye` then finishes whatever the socket did not take, and closes.
        Returns whether the NOTIFICATION is fully written."""
        link = self._link
        if link is None or self._ceased:
            return False
        now = trio.current_time()
        if self._cancel_reason is None:
            self._cancel_reason = (subcode, message)
            self.cancelled_at = now
        events = self.core.stop(now, subcode, message)
        self._ceased = True
        written = link.write_now(self.core.data_to_send())
        if written:  # stamp before any logging below
            self.notification_written_at = trio.current_time()
        for event in events:
            self._on_event(event)
        if written:
            self._notification_done(subcode, message)
        return written

    def _notification_done(self, subcode: int, message: str | None) -> None:
        self._notified = True
        if self.notification_written_at is None:
            self.notification_written_at = trio.current_time()
        # The one line of a stop's Cease, once it is on the wire: a BFD teardown's is
        # a warning (the failover line follows), a planned stop's is not.
        level = logging.WARNING if subcode == CeaseSubcode.BFD_DOWN else logging.INFO
        self._log_notification(level, NotifCode.CEASE, subcode, message)

    def _log_notification(
        self, level: int, code: int, subcode: int, message: str | None = None
    ) -> None:
        """``NOTIFICATION sent C/S (reason)``: the reason the core gave it (it is the
        last one sent), and a Cease's RFC 9003 message."""
        sent = self.last_error_sent
        reason = sent.text if sent is not None else "?"
        text = f", message {json.dumps(message)}" if message else ""
        log.log(level, "bgp %s: NOTIFICATION sent %d/%d (%s)%s", self.name, code, subcode,
                reason, text, extra=self._fields(error=notification_name(code, subcode),
                notification=f"sent {code}/{subcode}"))  # fmt: skip

    async def _goodbye(self) -> None:
        """Cease to the peer (after the message in flight), close. Runs shielded."""
        now = trio.current_time()
        subcode, message = self._cancel_reason or self._owner_reason()
        if self.cancelled_at is None and self._fatal is None:
            self.cancelled_at = now
        link = self._link
        self._link = None
        notifies = True
        if self._ceased:  # cease_now() ran: only its unsent rest remains
            data = b""
        else:
            self._ceased = True
            if self._for_restart:
                self._log_restart_stop()
                events = self.core.stop_for_restart(now, message)
            else:
                events = self.core.stop(now, subcode, message)
            data = self.core.data_to_send()
            notifies = bool(data)  # graceful restart without N: the TCP close only
            for event in events:
                self._on_event(event)
        if link is None:
            return
        try:
            if await link.send_rest(data) and notifies and not self._notified:
                self._notification_done(subcode, message)
        except OSError as exc:
            log.info("bgp %s: NOTIFICATION %d/%d not sent: %s", self.name, NotifCode.CEASE,
                     subcode, exc, extra=self._fields(error=notification_name(NotifCode.CEASE,
                     subcode)))  # fmt: skip
        finally:
            link.sock.close()
            self.closed_at = trio.current_time()

    def _log_restart_stop(self) -> None:
        """What the router will do with our routes when the restart path ends us."""
        neg = self.negotiated
        gr = neg.graceful_restart_negotiation if neg is not None else None
        kept = self.retained_families()
        if gr is None or not kept:
            why = "not configured" if not self.config.graceful_restart else "not negotiated"
            log.warning("bgp %s: stopping for a restart, but graceful restart is %s: the"
                        " router drops our routes", self.name, why,
                        extra=self._fields())  # fmt: skip
            return
        how = ("Cease/Administrative Reset (RFC 8538 N bit)" if gr.notification
               else "TCP close, no NOTIFICATION (RFC 4724)")  # fmt: skip
        log.info("bgp %s: stopping for a restart (%s): the router keeps our routes for %s"
                 " as stale for up to %d s", self.name, how,
                 ",".join(family_name(f) for f in kept), self.config.graceful_restart_time,
                 extra=self._fields())  # fmt: skip

    def _owner_reason(self) -> tuple[int, str | None]:
        for scope, subcode, message in self._owner_scopes:
            if scope.cancel_called:
                return subcode, message
        return CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, None


async def _discard(retired: list[Any]) -> None:
    """Empty what a session retired (speaker.bgp.rib.AdjRibOut.retired) in slices (a
    :class:`SentTable` shard by shard)."""
    slicer = Slicer()
    while retired:
        item = retired.pop()
        if isinstance(item, SentTable):
            for shard in item.shards:
                await slicer.discard(shard)
            item.count = 0
        else:
            await slicer.discard(item)
