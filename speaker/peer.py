"""One router: its BFD session and its BGP session, and the coupling between them.

Task tree of a peer (inside :meth:`PeerRunner.run`, which never lets a failure
escape to the other peers)::

    PeerRunner.run              supervisor: one line or a traceback naming the peer,
    │                           backoff (reset after a healthy run), start afresh
    └── _attempt                one life of the peer: resolve, then its own nursery
        ├── BFD session         BfdEndpoint.run_session: this peer's task (the endpoint
        │                       only demultiplexes to it); on_change -> _on_bfd_change
        └── loop:  [bfd_strict or after a BFD teardown: wait BFD Up + hold_down]
                   BGP session; BFD Up -> Down (path failure) writes the Cease
                   *synchronously* in the BFD task step, then cancels it (RFC 9384)

By default BGP starts at once, beside BFD (routers that create their BFD session
only once BGP's TCP connection exists, such as FRR multihop, need that), with BFD
held AdminDown until BGP is first Established (``_release_bfd``: routers that
re-create their BFD session then, such as FRR 8.4); BFD guards it from the first Up
on. A BFD teardown holds our first Down packet CEASE_FIRST, so that the router reads
the Cease first (BIRD), and the next session waits for BFD to be Up for
``hold_down`` (RFC 5882 §3.2). ``bfd_strict`` waits before the first session too
(and BFD is not held). A peer without a BFD profile runs its BGP session directly.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import TypeVar

import attrs
import trio

from protocols.bfd import Diag as BfdDiag
from protocols.bfd import State as BfdState
from protocols.bfd import StateChanged as BfdStateChanged
from protocols.bgp import CeaseSubcode, RouteKey
from protocols.bgp import State as BgpState
from speaker.addresses import IPAddress
from speaker.bfd.profile import BfdProfile
from speaker.bfd.runtime import BfdEndpoint, BfdSession, SessionKey
from speaker.bgp.config import BgpPeerConfig, RouteAttributes
from speaker.bgp.session import BgpSession, BgpStatistics
from speaker.log import fields
from speaker.netlookup import interface_exists, interface_of, local_address_for

__all__ = ["BfdTarget", "FailoverRecord", "History", "PeerPlan", "PeerRunner", "PeerSetupError"]

log = logging.getLogger("speaker.peer")

Routes = Mapping[RouteKey, RouteAttributes]  # by route key (protocols.bgp.RouteKey)
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 60.0)
#: A peer that ran this long before failing starts its backoff from the first step.
HEALTHY_AFTER = 60.0
#: Entries of ``failovers`` / ``reannounce_delays`` kept for ``show`` (metrics fold
#: every entry as it comes: they count from ``History.total``).
HISTORY = 64
#: A router's BFD session reset right after BGP Established (see
#: :meth:`PeerRunner._is_session_reset`): within this many seconds of Established ...
RESET_WINDOW = 3.0
#: ... BGP is kept while BFD comes back Up within this many seconds (else torn down).
RESET_RECOVERY = 3.0
#: Without ``bfd_strict``, BFD is held AdminDown until the peer's first BGP session
#: is Established, and enabled this long after (the router re-creates its BFD session
#: then, see :meth:`PeerRunner._release_bfd`) ...
BFD_RELEASE_DELAY = 0.5
#: ... or once BGP has not been Established for this long (a router that waits for
#: BFD Up before it lets BGP reach Established must not wait for ever).
BFD_HOLD_MAX = 5.0
#: After a BFD teardown wrote the Cease, our Down packet waits this long, so that a
#: router whose BFD runs apart from its BGP (BIRD) reads the Cease first.
CEASE_FIRST = 0.05

T = TypeVar("T")


class History(deque[T]):
    """The last ``maxlen`` entries, and ``total``: how many were ever appended."""

    def __init__(self, maxlen: int = HISTORY) -> None:
        super().__init__(maxlen=maxlen)
        self.total = 0

    def append(self, item: T) -> None:
        super().append(item)
        self.total += 1

    def since(self, total: int) -> list[T]:
        """The entries appended after ``total`` had been reached (those still held)."""
        new = min(self.total - total, len(self))
        return list(self)[len(self) - new :] if new > 0 else []


class PeerSetupError(Exception):
    """What this peer needs from the host is missing (no route, no interface, a
    socket refused): logged as one line naming the peer, retried with backoff."""


@attrs.frozen(kw_only=True)
class BfdTarget:
    """A peer's BFD session as configured; :meth:`resolve` asks the kernel for the rest
    when the peer starts (``source`` and ``interface`` may be left to the routes)."""

    peer: IPAddress
    source: IPAddress | None = None
    interface: str | None = None
    multihop: bool = False

    def resolve(self) -> SessionKey:
        """Raises:
        PeerSetupError: no route to the peer, or the interface does not exist."""
        local = self.source
        if local is None:
            try:
                local = local_address_for(self.peer)
            except OSError as exc:
                raise PeerSetupError(
                    f"no local address towards {self.peer} for BFD ({exc.strerror or exc});"
                    " set source_address or add a route"
                ) from None
        interface = None
        if not self.multihop:
            interface = self.interface or interface_of(local)
            if interface is not None and not interface_exists(interface):
                raise PeerSetupError(f"interface {interface!r} does not exist")
        return SessionKey(peer=self.peer, local=local, multihop=self.multihop, interface=interface)


@attrs.frozen(kw_only=True)
class PeerPlan:
    """Everything needed to run one peer (derived from the config)."""

    name: str
    bgp: BgpPeerConfig
    bfd_target: BfdTarget | None = None
    bfd_profile: BfdProfile | None = None
    #: Wait for BFD Up (+ hold-down) before the first BGP session too.
    bfd_strict: bool = False


@attrs.frozen(kw_only=True)
class FailoverRecord:
    """One BFD-triggered teardown, in trio time (seconds)."""

    detected_at: float
    cancelled_at: float | None
    notification_at: float | None
    closed_at: float | None
    diag: str

    @property
    def teardown_ms(self) -> float | None:
        end = self.notification_at or self.closed_at
        return None if end is None else (end - self.detected_at) * 1000


class _Guard:
    """The BGP session BFD guards now, and the failure that tore it down if any."""

    def __init__(self, bgp: BgpSession, nursery: trio.Nursery) -> None:
        self.bgp = bgp
        self.nursery = nursery
        self.failure: BfdStateChanged | None = None
        self.was_established = False
        #: A router's BFD reset was tolerated once already (only the first counts).
        self.reset_seen = False

    def tear_down(self, failure: BfdStateChanged) -> bool:
        """The fast path: the Cease goes on the wire first (synchronously, in the
        caller's task step), then the BGP session is cancelled. Returns whether the
        Cease was written now."""
        if self.failure is not None:
            return False
        self.failure = failure
        self.was_established = self.bgp.state is BgpState.ESTABLISHED
        written = self.bgp.cease_now(CeaseSubcode.BFD_DOWN)
        self.bgp.cancel(CeaseSubcode.BFD_DOWN)
        return written


class PeerRunner:
    def __init__(
        self,
        plan: PeerPlan,
        *,
        endpoint: BfdEndpoint | None,
        routes: Callable[[str], Routes],
        hold_down: float = 1.0,
    ) -> None:
        self.plan = plan
        self.endpoint = endpoint
        self.routes = routes
        self.hold_down = hold_down
        self.bfd: BfdSession | None = None
        self.bgp: BgpSession | None = None
        self.failovers: History[FailoverRecord] = History()
        #: Seconds from a BFD teardown to the routes being announced again (the new
        #: session Established and its initial routes + End-of-RIB sent).
        self.reannounce_delays: History[float] = History()
        #: Message counters of this peer's finished BGP sessions, so totals stay
        #: monotonic across reconnects: keys "in:<type>", "out:<type>", "updates_in",
        #: "updates_out", "prefixes_announced", "prefixes_withdrawn", "flaps".
        self.retired: Counter[str] = Counter()
        #: BFD counters of this peer's finished BFD sessions (see :meth:`bfd_totals`).
        self.bfd_retired: Counter[str] = Counter()
        # ``clear bfd peers counters``: what the counters stood at, subtracted in ``show``
        # only (Prometheus counters never go back). Rejected packets are per session.
        self.bfd_cleared: Counter[str] = Counter()
        self.bfd_rejected_cleared: tuple[BfdSession | None, Counter[str]] = (None, Counter())
        #: Statistics of this peer's last finished BGP session (``show bgp neighbor``
        #: shows its last errors while no session runs).
        self.last_session: BgpStatistics | None = None
        #: When this peer's BGP last left Established, over all its sessions (FRR's
        #: Up/Down while it is down; None: never Established).
        self.bgp_down_at: float | None = None
        self.sessions = 0
        #: Restarts after an unexpected error (a bug), over the runner's life.
        self.crashes = 0
        #: Starts that failed for want of something on the host (route, interface...).
        self.setup_failures = 0
        #: Why the peer last failed to start or crashed.
        self.last_error: str | None = None
        #: BFD resets by the router right after Established that kept BGP up.
        self.session_resets_kept = 0
        self.scope = trio.CancelScope()
        self._stopping = False
        self._backoff_step = 0
        self._guard: _Guard | None = None
        #: This BFD session is held AdminDown until BGP is first Established.
        self.bfd_held = False

    @property
    def name(self) -> str:
        return self.plan.name

    # ---- commands from the app -----------------------------------------------------

    def push_routes(self, changes: Mapping[RouteKey, RouteAttributes | None] | None = None) -> None:
        """The desired routes changed: hand ``changes`` (None withdraws a prefix) to a
        running BGP session, or without ``changes`` the whole new routes (its
        Adj-RIB-Out compares them with what it sent, a slice at a time)."""
        if self.bgp is None:
            return
        if changes is None:
            self.bgp.set_routes(self.routes(self.name))
        else:
            self.bgp.update_routes(changes)

    def update(self, plan: PeerPlan, *, hold_down: float) -> None:
        """A reload changed nothing that needs a restart: new BFD timers go to the live
        session as a Poll sequence; other settings (``bfd_strict`` too) apply to the
        next session."""
        old, self.plan, self.hold_down = self.plan, plan, hold_down
        if (
            self.bfd is not None
            and plan.bfd_profile is not None
            and plan.bfd_profile != old.bfd_profile
        ):
            self.bfd.set_profile(plan.bfd_profile)

    async def stop(
        self, message: str = "speaker shutting down", *, deconfigured: bool = False
    ) -> None:
        """Planned stop: Cease (Administrative Shutdown with ``message``, or Peer
        De-configured), BFD AdminDown."""
        self._stopping = True
        async with trio.open_nursery() as nursery:
            if self.bgp is not None:
                bgp = self.bgp
                if deconfigured:
                    bgp.cancel(CeaseSubcode.PEER_DECONFIGURED)
                else:
                    bgp.cancel(CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, message)
                nursery.start_soon(bgp.wait_stopped)
            if self.bfd is not None:
                nursery.start_soon(self.bfd.stop)
        self.scope.cancel()

    # ---- the task --------------------------------------------------------------------

    async def run(self) -> None:
        with self.scope:
            while not self._stopping:
                started = trio.current_time()
                failure: Exception | None = None
                try:
                    await self._attempt()
                except Exception as exc:
                    failure = exc
                if trio.current_time() - started >= HEALTHY_AFTER:
                    self._backoff_step = 0  # it ran healthy: a new problem, not the old one
                if failure is not None:
                    # Whatever it was, it was this peer's: it starts afresh after a
                    # backoff and nobody else notices.
                    await self._back_off(failure)

    async def _back_off(self, failure: Exception) -> None:
        cause, trace = _describe(failure)
        self._backoff_step += 1
        if trace:
            self.crashes += 1
        else:
            self.setup_failures += 1
        self.last_error = cause
        delay = RESTART_BACKOFF[min(self._backoff_step, len(RESTART_BACKOFF)) - 1]
        extra = fields(peer=self.name, restarts=self.crashes + self.setup_failures, error=cause)
        if trace:
            log.error("peer %s crashed; restarting in %.0f s", self.name, delay, extra=extra,
                      exc_info=failure)  # fmt: skip
        else:
            log.error("peer %s: cannot start: %s; retrying in %.0f s", self.name, cause, delay,
                      extra=extra)  # fmt: skip
        await trio.sleep(delay)

    async def _attempt(self) -> None:
        plan = self.plan
        if plan.bfd_target is None or plan.bfd_profile is None or self.endpoint is None:
            await self._run_bgp()
            return
        key = plan.bfd_target.resolve()
        # Held AdminDown until BGP is first Established (see _release_bfd); bfd_strict
        # needs BFD Up first.
        held = not plan.bfd_strict
        async with trio.open_nursery() as nursery:
            # The session runs in this nursery: an exception in it ends this peer's
            # attempt (and PeerRunner.run restarts it), never the endpoint or others.
            run_bfd = functools.partial(
                _run_bfd, self.endpoint, key, plan.bfd_profile, self._on_bfd_change,
                name=self.name, admin_down=held,
            )  # fmt: skip
            bfd: BfdSession = await nursery.start(run_bfd)
            self.bfd, self.bfd_held = bfd, held
            try:
                await self._guarded_bgp(bfd)
            finally:
                if not self._stopping:
                    with trio.CancelScope(shield=True):
                        await bfd.stop()
                self.bfd_retired.update(_bfd_counters(bfd))
                self.bfd, self.bfd_held = None, False
                nursery.cancel_scope.cancel()

    async def _guarded_bgp(self, bfd: BfdSession) -> None:
        wait = self.plan.bfd_strict
        while True:
            if wait:
                await self._wait_bfd_stable(bfd)
            # Returns only after a BFD-caused teardown; the next session waits for BFD
            # to be stable (RFC 5882 §3.2), then connects at once (a new session's first
            # attempt starts with its run).
            await self._run_bgp()
            if self._stopping:
                return
            wait = True

    async def _wait_bfd_stable(self, bfd: BfdSession) -> None:
        """Until BFD has been Up for ``hold_down`` without a break (a flapping link must
        not flap routes)."""
        while True:
            await bfd.wait_state(BfdState.UP)
            with trio.move_on_after(self.hold_down) as held:
                await bfd.wait_state(BfdState.DOWN, BfdState.ADMIN_DOWN, BfdState.INIT)
            if held.cancelled_caught:
                return
            log.info("peer %s: BFD left Up during the %.1f s hold-down", self.name,
                     self.hold_down, extra=fields(peer=self.name, protocol="bfd"))  # fmt: skip

    async def _release_bfd(self, bgp: BgpSession, bfd: BfdSession) -> None:
        """Enable the BFD session held AdminDown since the peer started, once BGP is
        Established and BFD_RELEASE_DELAY later.

        A router that ties its BFD session to the BGP neighbour may re-create it right
        after Established (FRR 8.4 ``neighbor X bfd``: local 0.0.0.0 replaced by its
        real address); if its old session had been Up, its bgpd sees Up -> Down and
        sends Cease/BFD Down itself. Held AdminDown, ours never lets it come Up, and
        AdminDown is no path failure for the router (RFC 5882 §3.2). Only the first
        session: after a BFD teardown the next one waits for BFD (RFC 5882 §3.2).
        A router that waits for BFD Up before Established gets it BFD_HOLD_MAX after
        the peer started."""
        with trio.move_on_after(BFD_HOLD_MAX) as waited:
            await bgp.wait_established()
        if not waited.cancelled_caught:
            await trio.sleep(BFD_RELEASE_DELAY)
        if self.bfd is not bfd or not self.bfd_held:
            return
        self.bfd_held = False
        why = "not Established yet" if waited.cancelled_caught else "Established"
        log.info("peer %s: BGP %s: BFD enabled (held AdminDown until now)", self.name, why,
                 extra=fields(peer=self.name, protocol="bfd"))  # fmt: skip
        bfd.admin_up()

    # ---- the coupling: called synchronously in the BFD session's task ---------------------

    def _on_bfd_change(self, change: BfdStateChanged) -> None:
        guard = self._guard
        if guard is None:
            return
        if change.path_failure:
            if self._is_session_reset(guard, change):
                guard.reset_seen = True
                after = change.at - (guard.bgp.established_at or change.at)
                guard.nursery.start_soon(self._await_bfd_return, guard, change, after)
            elif guard.tear_down(change) and self.bfd is not None:
                # Our Down packet is queued in this very step: let the Cease lead.
                self.bfd.hold_control(CEASE_FIRST)
        elif change.new is BfdState.UP and guard.bgp.state is not BgpState.ESTABLISHED:
            guard.bgp.connect_now()  # the path works now: do not wait out a backoff

    def _is_session_reset(self, guard: _Guard, change: BfdStateChanged) -> bool:
        """A router that re-creates its BFD session right after BGP Established (FRR
        with ``neighbor X bfd`` replaces its session with local 0.0.0.0 by one with its
        real address): the deleted session's last packet says Down with diag 3
        (Neighbor Signaled Session Down), which it cannot mean, as we never signalled
        Down; the path delivered that very packet. Only in the first RESET_WINDOW
        seconds of the session; a detection-time or echo expiry at either end (diag
        1, 2), or any Down later, tears down at once."""
        bfd, established = self.bfd, guard.bgp.established_at
        return (
            bfd is not None
            and not guard.reset_seen
            and change.diag is BfdDiag.NEIGHBOR_SIGNALED_SESSION_DOWN
            and bfd.core.remote_diag == BfdDiag.NEIGHBOR_SIGNALED_SESSION_DOWN
            and established is not None
            and change.at - established <= RESET_WINDOW
        )

    async def _await_bfd_return(
        self, guard: _Guard, change: BfdStateChanged, after_established: float
    ) -> None:
        bfd = self.bfd
        assert bfd is not None
        log.info("peer %s: BFD reset by the router %.1f ms after BGP Established (diag %s);"
                 " keeping BGP while BFD comes back (%.0f s at most)", self.name,
                 after_established * 1000, change.diag.name, RESET_RECOVERY,
                 extra=fields(peer=self.name, protocol="bfd"))  # fmt: skip
        with trio.move_on_after(RESET_RECOVERY):
            await bfd.wait_state(BfdState.UP)
            self.session_resets_kept += 1
            log.info("peer %s: BFD Up again after the router's reset; BGP kept", self.name,
                     extra=fields(peer=self.name, protocol="bfd"))  # fmt: skip
            return
        guard.tear_down(change)

    # ---- counters ----------------------------------------------------------------------

    def bfd_totals(self) -> Counter[str]:
        """BFD counters over every BFD session of this peer so far: keys "control_rx",
        "control_tx", "echo_rx", "echo_tx", "up_events", "down_events"."""
        out = Counter(self.bfd_retired)
        if self.bfd is not None:
            out.update(_bfd_counters(self.bfd))
        return out

    def clear_bfd_counters(self) -> None:
        """Zero the BFD counters ``show bfd peers counters`` prints, as FRR's ``clear bfd
        peers counters`` does; metrics keep counting."""
        self.bfd_cleared = self.bfd_totals()
        rejected = self.bfd.statistics().discards if self.bfd is not None else {}
        self.bfd_rejected_cleared = (self.bfd, Counter(rejected))

    def shown_bfd_counters(self) -> tuple[Counter[str], dict[str, int]]:
        """BFD totals and rejected packets by reason since the last clear."""
        totals = self.bfd_totals()
        totals.subtract(self.bfd_cleared)
        session, before = self.bfd_rejected_cleared
        rejected = Counter(self.bfd.statistics().discards if self.bfd is not None else {})
        if session is self.bfd:
            rejected.subtract(before)
        return totals, {k: v for k, v in rejected.items() if v > 0}

    def totals(self) -> Counter[str]:
        """Counters over every BGP session of this peer so far (see ``retired``)."""
        out = Counter(self.retired)
        if self.bgp is not None:
            out.update(_session_counters(self.bgp.statistics()))
        return out

    # ---- one BGP session -------------------------------------------------------------

    async def _note_reannounce(self, bgp: BgpSession, since: float) -> None:
        await bgp.wait_synchronised()
        self.reannounce_delays.append(trio.current_time() - since)

    async def _run_bgp(self) -> None:
        """One BGP session, until it ends: only a BFD teardown (or an error) ends it."""
        bgp = BgpSession(self.plan.bgp, routes=self.routes(self.name))
        self.bgp = bgp
        self.sessions += 1
        last = self.failovers[-1] if self.failovers else None
        guard: _Guard | None = None
        try:
            async with trio.open_nursery() as nursery:
                guard = _Guard(bgp, nursery)
                if self.bfd is not None:
                    self._guard = guard
                await nursery.start(bgp.run)
                if self.bfd is not None and self.bfd_held:
                    nursery.start_soon(self._release_bfd, bgp, self.bfd)
                if last is not None and self.reannounce_delays.total < self.failovers.total:
                    since = last.closed_at or last.detected_at
                    nursery.start_soon(self._note_reannounce, bgp, since)
                await bgp.wait_stopped()
                nursery.cancel_scope.cancel()
        finally:
            self._guard = None
            self.bgp = None
            stats = bgp.statistics()
            self.retired.update(_session_counters(stats))
            self.last_session = stats
            self._note_down(stats)
        if guard is not None and guard.failure is not None:
            self._record_teardown(bgp, guard.failure, established=guard.was_established)

    def _note_down(self, stats: BgpStatistics | None) -> None:
        """Keep when BGP last left Established (FRR's Up/Down), from a session that
        just ended (statistics None: a stand-in session of the tests)."""
        if stats is None:
            return
        if stats.established_at is not None:  # it ended while Established
            self.bgp_down_at = stats.closed_at or trio.current_time()
        elif stats.down_at is not None:
            self.bgp_down_at = stats.down_at

    def _record_teardown(
        self, bgp: BgpSession, failure: BfdStateChanged, *, established: bool
    ) -> None:
        if not established:
            log.info("peer %s: BFD down (%s) before BGP was Established; BGP restarts once BFD"
                     " is stable", self.name, failure.diag.name,
                     extra=fields(peer=self.name, protocol="bgp"))  # fmt: skip
            return
        record = FailoverRecord(
            detected_at=failure.at,
            cancelled_at=bgp.cancelled_at,
            notification_at=bgp.notification_written_at,
            closed_at=bgp.closed_at,
            diag=failure.diag.name,
        )
        self.failovers.append(record)
        teardown = record.teardown_ms
        written = (
            "no NOTIFICATION written (the connection was closed or its socket full)"
            if teardown is None
            else f"NOTIFICATION written {teardown:.2f} ms after detection"
        )
        log.warning(
            "peer %s: BFD down (%s) -> BGP torn down, %s", self.name, record.diag, written,
            extra=fields(peer=self.name, protocol="bgp", old="Established", new="Idle",
                         error="cease/bfd-down", teardown_ms=teardown),
        )  # fmt: skip


async def _run_bfd(
    endpoint: BfdEndpoint,
    key: SessionKey,
    profile: BfdProfile,
    on_change: Callable[[BfdStateChanged], None],
    *,
    name: str,
    admin_down: bool,
    task_status: trio.TaskStatus[BfdSession] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await endpoint.run_session(
            key,
            profile,
            on_change=on_change,
            name=name,
            admin_down=admin_down,
            task_status=task_status,
        )
    except OSError as exc:  # before started: its send socket (no device, no address)
        raise PeerSetupError(f"BFD session {key}: {exc.strerror or exc}") from None


def _describe(exc: BaseException) -> tuple[str, bool]:
    """The cause of a peer's failure in one line, and whether it deserves a traceback
    (a bug does; a missing route, interface or refused socket does not)."""
    leaves: list[BaseException] = []
    pending = [exc]
    while pending:  # the exceptions a nursery grouped
        item = pending.pop()
        if isinstance(item, BaseExceptionGroup):
            pending.extend(item.exceptions)
        else:
            leaves.append(item)
    bugs = [e for e in leaves if not isinstance(e, PeerSetupError | OSError)]
    if bugs:
        return "; ".join(f"{type(e).__name__}: {e}" for e in bugs), True
    return "; ".join(
        str(e) if isinstance(e, PeerSetupError) else (str(e) or type(e).__name__) for e in leaves
    ), False


def _session_counters(stats: BgpStatistics) -> Counter[str]:
    out: Counter[str] = Counter()
    for kind, count in stats.messages_in.items():
        out[f"in:{kind}"] += count
    for kind, count in stats.messages_out.items():
        out[f"out:{kind}"] += count
    out["updates_in"] += stats.updates_in
    out["updates_out"] += stats.updates_out
    out["prefixes_announced"] += stats.prefixes_announced
    out["prefixes_withdrawn"] += stats.prefixes_withdrawn
    out["flaps"] += stats.flaps
    return out


def _bfd_counters(session: BfdSession) -> Counter[str]:
    stats = session.statistics()
    return Counter(
        control_rx=stats.control_rx, control_tx=stats.control_tx, echo_rx=stats.echo_rx,
        echo_tx=stats.echo_tx, up_events=stats.up_events, down_events=stats.down_events,
    )  # fmt: skip
