"""One router: its BFD session and its BGP session, and the coupling between them.

Task tree of a peer (inside :meth:`PeerRunner.run`, which never lets a failure
escape to the other peers)::

    PeerRunner.run              supervisor: one line or a traceback naming the peer,
    │                           backoff (reset after a healthy run), start afresh
    ├── RouterWatch.run         unnumbered peers only: our RAs out, the router's
    │                           link-local address from its RAs (bgp/unnumbered.py)
    └── _attempt                one life of the peer: resolve, then its own nursery
                                (unnumbered: to the router's address; ended when it
                                changes, the next attempt follows the new one)
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

One module of 600+ lines on purpose: :class:`PeerRunner` is one supervisor, and its
parts (restart loop, BFD hold and release, the guard that tears BGP down inside the
BFD task's step, the failover record) share the runner's state in that synchronous
callback. What could leave, the counter sums at the end, is 40 lines.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping
from ipaddress import IPv6Address
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
from speaker.bgp.net import link_local_of
from speaker.bgp.session import BgpSession, BgpStatistics
from speaker.bgp.unnumbered import RouterWatch, scoped
from speaker.log import fields
from speaker.netlookup import (
    interface_exists,
    interface_of,
    local_address_for,
    route_to,
    vrf_index,
    vrf_problem,
)
from speaker.netwatch import SPACING, NetWatch

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
#: An unnumbered peer waits this long for its router's first Router Advertisement
#: before the attempt fails (logged, retried with backoff; the watch keeps listening).
ROUTER_WAIT = 30.0
#: On the restart path, BFD's AdminDown follows the closed BGP connection by this
#: much, so that the router has read the Cease (or the close) first.
RESTART_BFD_AFTER = CEASE_FIRST
#: How often a running peer asks the kernel again for what it looked up at start: the
#: route to the peer (a single-hop BFD session whose interface the route chose follows
#: it, echo included) and its VRF device (gone or created again: the peer restarts).
#: One rtnetlink request each, about 25 us: cheap enough for every peer.
ROUTE_RECHECK = 2.0
#: ... and with the host's change notifications (speaker.netwatch): after each change,
#: and this often in any case.
ROUTE_RECHECK_WATCHED = 30.0

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
    vrf: str | None = None

    @property
    def follows_route(self) -> bool:
        """Single-hop with no configured interface: the route to the peer names it."""
        return not self.multihop and self.interface is None

    def route_interface(self) -> str | None:
        """The output interface of the kernel's route to the peer (in the VRF), None
        when there is no route or it names no interface."""
        try:
            return route_to(self.peer, vrf=self.vrf).interface
        except OSError:
            return None

    def resolve(self) -> SessionKey:
        """Raises:
        PeerSetupError: no route to the peer, or the interface does not exist."""
        local = self.source
        where = f" in VRF {self.vrf}" if self.vrf else ""
        if local is None:
            try:
                local = local_address_for(self.peer, vrf=self.vrf)
            except OSError as exc:
                raise PeerSetupError(
                    f"no local address towards {self.peer}{where} for BFD"
                    f" ({exc.strerror or exc}); set source_address or add a route"
                ) from None
        interface = None
        if not self.multihop:
            # As FRR: the interface of the route to the peer (echo goes out there);
            # the interface holding our address if the route names none.
            interface = self.interface or self.route_interface() or interface_of(local)
            if interface is not None and not interface_exists(interface):
                raise PeerSetupError(f"interface {interface!r} does not exist")
        return SessionKey(peer=self.peer, local=local, multihop=self.multihop,
                          interface=interface, vrf=self.vrf)  # fmt: skip


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
        restart_deadline: float | None = None,
        netwatch: NetWatch | None = None,
    ) -> None:
        """``restart_deadline`` (trio time): the process came back from a restart; a
        BGP session started before it sets the Graceful Restart R bit. ``netwatch``:
        the host's link and route changes (without one, the route to the router and
        the VRF are asked every ROUTE_RECHECK)."""
        self.plan = plan
        self.netwatch = netwatch
        self.restart_deadline = restart_deadline
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
        #: Set by the restart path: BFD says AdminDown once the BGP session has ended.
        self._restart_bfd: trio.Event | None = None
        self._backoff_step = 0
        self._guard: _Guard | None = None
        #: This BFD session is held AdminDown until BGP is first Established.
        self.bfd_held = False
        #: Unnumbered peers: the router's link-local address on the interface, learnt
        #: from its Router Advertisements (speaker/bgp/unnumbered.py).
        self.router_watch: RouterWatch | None = None
        #: An unnumbered peer's router as this attempt uses it (``fe80::x%IFNAME``).
        self._router: IPv6Address | None = None
        #: RFC 8326: every route to this peer is drained (:meth:`set_drained`).
        self.drained = False

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

    def set_drained(self, drained: bool) -> None:
        """Drain every route to this peer (RFC 8326) or end it: the running BGP
        session sends them again (a batch at a time); a later session starts so."""
        self.drained = drained
        if self.bgp is not None:
            self.bgp.set_drained(drained)

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
        self,
        message: str = "speaker shutting down",
        *,
        deconfigured: bool = False,
        restart: bool = False,
    ) -> None:
        """Planned stop: Cease (Administrative Shutdown with ``message``, or Peer
        De-configured), BFD AdminDown. ``restart``: the restart path instead
        (:meth:`_stop_for_restart`)."""
        self._stopping = True
        if restart:
            await self._stop_for_restart(message)
            return
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

    async def _stop_for_restart(self, message: str) -> None:
        """The restart path: BGP ends so that a router with graceful restart keeps our
        routes as stale (:meth:`BgpSession.stop_for_restart`); only once that is on
        the wire and the connection closed, and RESTART_BFD_AFTER later, does BFD say
        AdminDown, which is no path failure (RFC 5882 §3.2). The router is then in
        graceful restart (FRR: NSF mode) before it hears from BFD, so a router that
        checks our C bit (0: BFD shares fate with the control plane), as FRR's
        ``bfd check-control-plane-failure``, ignores the BFD Down that follows, and
        one that does not has no BGP session left for BFD to tear down."""
        bgp, bfd = self.bgp, self.bfd
        if bgp is None:  # no session (BFD not stable yet): the router has no routes of ours
            if bfd is not None:
                await bfd.stop()
            self.scope.cancel()
            return
        done = self._restart_bfd = trio.Event() if bfd is not None else None
        bgp.stop_for_restart(message)
        await bgp.wait_stopped()
        if done is not None:  # _attempt sends the AdminDown once the session has ended
            with trio.move_on_after(RESTART_BFD_AFTER + 1.0):
                await done.wait()
        self.scope.cancel()

    # ---- the task --------------------------------------------------------------------

    async def run(self) -> None:
        with self.scope:
            interface = self.plan.bgp.interface
            if not self.plan.bgp.unnumbered or interface is None:
                await self._run_attempts()
                return
            async with trio.open_nursery() as nursery:
                self.router_watch = RouterWatch(interface, name=self.name)
                nursery.start_soon(self.router_watch.run)
                await self._run_attempts()
                nursery.cancel_scope.cancel()

    async def _run_attempts(self) -> None:
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

    def _check_vrf(self) -> int | None:
        """The ifindex of the peer's VRF device (None: the default VRF).

        Raises:
            PeerSetupError: the VRF device is missing or is not a VRF."""
        vrf = self.plan.bgp.vrf
        if vrf is None:
            return None
        problem = vrf_problem(vrf)
        index = vrf_index(vrf) if problem is None else None
        if index is None:
            raise PeerSetupError(problem or f"no VRF device {vrf!r} on this host")
        return index

    async def _watch_host(
        self, started_in: int | None, bfd: BfdSession | None, target: BfdTarget | None
    ) -> None:
        """Every ROUTE_RECHECK: the VRF device is still the one the peer started in (a
        socket bound to a deleted VRF hears nothing: the peer restarts), and a BFD
        session that follows the route is on the route's interface."""
        vrf = self.plan.bgp.vrf
        watch = self.netwatch
        seen = watch.generation if watch is not None else 0
        while True:
            if watch is None:
                await trio.sleep(ROUTE_RECHECK)
            else:
                await trio.sleep(SPACING)  # a burst of changes: one question
                wait = ROUTE_RECHECK_WATCHED if watch.available else ROUTE_RECHECK
                seen = await watch.wait_change(seen, wait)
            if vrf is not None and vrf_index(vrf) != started_in:
                raise PeerSetupError(f"VRF {vrf!r} went away (deleted or created again)")
            if bfd is None or target is None or not target.follows_route:
                continue
            interface = target.route_interface()
            if interface is None or interface == bfd.key.interface:
                continue
            before = bfd.key.interface
            try:
                bfd.move_to(interface)
            except OSError as exc:
                log.warning("peer %s: the route to %s moved from %s to %s, but BFD cannot"
                            " follow: %s", self.name, target.peer, before, interface,
                            exc.strerror or exc,
                            extra=fields(peer=self.name, protocol="bfd"))  # fmt: skip
                continue
            log.info("peer %s: the route to %s moved from %s to %s: BFD follows (echo too)",
                     self.name, target.peer, before, interface,
                     extra=fields(peer=self.name, protocol="bfd"))  # fmt: skip

    async def _attempt(self) -> None:
        watch = self.router_watch
        if watch is None:
            await self._attempt_with(self.plan.bfd_target)
            return
        with trio.move_on_after(ROUTER_WAIT):
            router = await watch.wait_router()
        if watch.router is None:
            why = watch.last_error or f"no Router Advertisement on {watch.interface}"
            raise PeerSetupError(f"{why} within {ROUTER_WAIT:.0f} s: the router's link-local"
                                 " address is not known (FRR sends RAs on an interface with"
                                 " `neighbor IFNAME interface`)")  # fmt: skip
        await self._unnumbered_attempt(watch, router)

    async def _unnumbered_attempt(self, watch: RouterWatch, router: IPv6Address) -> None:
        """One life of an unnumbered peer: the session to ``router%IFNAME``, BFD between
        the two link-local addresses; a new router address ends it (the next attempt
        starts at once with the new one)."""
        interface = watch.interface
        self._router = scoped(router, interface)
        target = None
        if self.plan.bfd_target is not None:
            local = link_local_of(interface)
            if local is None:
                raise PeerSetupError(f"interface {interface!r} has no IPv6 link-local address")
            target = BfdTarget(peer=router, source=local, interface=interface)
        async with trio.open_nursery() as nursery:

            async def follow() -> None:
                new = await watch.wait_change(router)
                log.warning("peer %s: the router's address on %s changed %s -> %s:"
                            " restarting the session", self.name, interface, router, new,
                            extra=fields(peer=self.name, protocol="bgp"))  # fmt: skip
                nursery.cancel_scope.cancel()

            nursery.start_soon(follow)
            await self._attempt_with(target)
            nursery.cancel_scope.cancel()

    async def _attempt_with(self, bfd_target: BfdTarget | None) -> None:
        plan = self.plan
        started_in = self._check_vrf()
        if bfd_target is None or plan.bfd_profile is None or self.endpoint is None:
            if started_in is None:
                await self._run_bgp()
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_host, started_in, None, None)
                await self._run_bgp()
                nursery.cancel_scope.cancel()
            return
        key = bfd_target.resolve()
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
            if started_in is not None or bfd_target.follows_route:
                nursery.start_soon(self._watch_host, started_in, bfd, bfd_target)
            try:
                await self._guarded_bgp(bfd)
            finally:
                done = self._restart_bfd
                if done is not None:  # the restart path: AdminDown after the BGP close
                    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                        await trio.sleep(RESTART_BFD_AFTER)
                        await bfd.stop()
                    done.set()
                elif not self._stopping:
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

    def _bgp_config(self) -> BgpPeerConfig:
        """The next BGP session's configuration: the plan's (a reload may have changed
        it), with an unnumbered peer's placeholder replaced by its router's address."""
        if self._router is None or not self.plan.bgp.unnumbered:
            return self.plan.bgp
        return attrs.evolve(self.plan.bgp, peer_address=self._router)

    async def _run_bgp(self) -> None:
        """One BGP session, until it ends: only a BFD teardown (or an error) ends it."""
        deadline = self.restart_deadline
        restarting = deadline is not None and trio.current_time() < deadline
        bgp = BgpSession(self._bgp_config(), routes=self.routes(self.name), restarting=restarting)
        if self.drained:
            bgp.set_drained(True)
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
            if stats is not None and stats.end_of_rib_sent:
                self.restart_deadline = None  # the restart is over: later OPENs do not set R
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
