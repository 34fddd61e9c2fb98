"""One router: its BFD session and its BGP session, and the coupling between them.

Task tree of a peer (inside :meth:`PeerRunner.run`, which never lets a failure
escape to the other peers)::

    PeerRunner.run            supervisor: logs a crash with the peer's name, backs off
    └── _attempt              one life of the peer
        ├── BFD session       (in the shared BfdEndpoint; removed when the peer ends)
        └── loop:  wait BFD Up and stable for hold_down  (RFC 5882 §3.2)
                   BGP session inside a cancel scope that BFD cancels *synchronously*
                   on a path failure -> Cease/BFD Down (RFC 9384), close, loop

A peer without a BFD profile runs its BGP session directly.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping

import attrs
import trio

from protocols.bfd import State as BfdState
from protocols.bfd import StateChanged as BfdStateChanged
from protocols.bgp import CeaseSubcode, Prefix
from speaker.bfd.profile import BfdProfile
from speaker.bfd.runtime import BfdEndpoint, BfdSession, SessionKey
from speaker.bgp.config import BgpPeerConfig, RouteAttributes
from speaker.bgp.session import BgpSession, BgpStatistics
from speaker.log import fields

__all__ = ["FailoverRecord", "PeerPlan", "PeerRunner"]

log = logging.getLogger("speaker.peer")

Routes = Mapping[Prefix, RouteAttributes]
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 60.0)


@attrs.frozen(kw_only=True)
class PeerPlan:
    """Everything needed to run one peer (derived from the config)."""

    name: str
    bgp: BgpPeerConfig
    bfd_key: SessionKey | None = None
    bfd_profile: BfdProfile | None = None


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
        self.failovers: list[FailoverRecord] = []
        #: Seconds from a BFD teardown to the routes being announced again (the new
        #: session Established and its initial routes + End-of-RIB sent).
        self.reannounce_delays: list[float] = []
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
        self.sessions = 0
        self.crashes = 0
        self.scope = trio.CancelScope()
        self._stopping = False

    @property
    def name(self) -> str:
        return self.plan.name

    # ---- commands from the app -----------------------------------------------------

    def push_routes(self) -> None:
        """The desired routes changed: hand them to a running BGP session (its
        Adj-RIB-Out sends only the difference)."""
        if self.bgp is not None:
            self.bgp.set_routes(self.routes(self.name))

    def update(self, plan: PeerPlan, *, hold_down: float) -> None:
        """A reload changed nothing that needs a restart: new BFD timers go to the live
        session as a Poll sequence; other BGP settings apply to the next session."""
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
            if self.bfd is not None and self.endpoint is not None:
                nursery.start_soon(self.endpoint.remove_session, self.bfd)
        self.scope.cancel()

    # ---- the task --------------------------------------------------------------------

    async def run(self) -> None:
        with self.scope:
            while not self._stopping:
                try:
                    await self._attempt()
                except Exception:
                    # A bug or an unexpected error in this peer: log it with the peer's
                    # name, start the peer afresh after a backoff; nobody else notices.
                    self.crashes += 1
                    delay = RESTART_BACKOFF[min(self.crashes, len(RESTART_BACKOFF)) - 1]
                    log.exception("peer %s crashed; restarting in %.0f s", self.name, delay,
                                  extra=fields(peer=self.name, restarts=self.crashes))  # fmt: skip
                    await trio.sleep(delay)

    async def _attempt(self) -> None:
        plan = self.plan
        if plan.bfd_key is None or plan.bfd_profile is None or self.endpoint is None:
            await self._run_bgp(None)
            return
        self.bfd = await self.endpoint.add_session(plan.bfd_key, plan.bfd_profile)
        try:
            while True:
                await self._wait_bfd_stable(self.bfd)
                await self._run_bgp(self.bfd)
        finally:
            if self.bfd is not None and not self._stopping:
                with trio.CancelScope(shield=True):
                    await self.endpoint.remove_session(self.bfd)
            if self.bfd is not None:
                self.bfd_retired.update(_bfd_counters(self.bfd))
            self.bfd = None

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

    async def _run_session(self, bgp: BgpSession) -> None:
        """Run ``bgp``; after a failover, note when its routes are out again."""
        last = self.failovers[-1] if self.failovers else None
        async with trio.open_nursery() as nursery:
            if last is not None and len(self.reannounce_delays) < len(self.failovers):
                since = last.closed_at or last.detected_at
                nursery.start_soon(self._note_reannounce, bgp, since)
            await bgp.run()
            nursery.cancel_scope.cancel()

    async def _note_reannounce(self, bgp: BgpSession, since: float) -> None:
        await bgp.wait_synchronised()
        self.reannounce_delays.append(trio.current_time() - since)

    async def _run_bgp(self, bfd: BfdSession | None) -> None:
        bgp = BgpSession(self.plan.bgp, routes=self.routes(self.name))
        self.bgp = bgp
        self.sessions += 1
        down: list[BfdStateChanged] = []
        scope = trio.CancelScope()
        try:
            if bfd is None:
                await self._run_session(bgp)
                return
            with bfd.subscribe() as changes:
                fast = _Teardown(bgp, scope)
                with scope, bgp.cease_on_cancel(scope, CeaseSubcode.BFD_DOWN), \
                        bfd.cancel_on_failure(fast):  # fmt: skip
                    await self._run_session(bgp)
                # The change that cancelled the scope is waiting in the channel.
                while True:
                    try:
                        change = changes.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    if change.path_failure:
                        down.append(change)
        finally:
            self.bgp = None
            last = bgp.statistics()
            self.retired.update(_session_counters(last))
            self.last_session = last
        if scope.cancelled_caught:
            failure = down[0] if down else None
            record = FailoverRecord(
                detected_at=failure.at if failure else bgp.cancelled_at or math.nan,
                cancelled_at=bgp.cancelled_at,
                notification_at=bgp.notification_written_at,
                closed_at=bgp.closed_at,
                diag=failure.diag.name if failure else "unknown",
            )
            self.failovers.append(record)
            teardown = record.teardown_ms
            log.warning(
                "peer %s: BFD down (%s) -> BGP torn down, NOTIFICATION %s ms after detection",
                self.name, record.diag, "?" if teardown is None else f"{teardown:.2f}",
                extra=fields(peer=self.name, protocol="bgp", old="Established", new="Idle",
                             error="cease/bfd-down", teardown_ms=teardown),
            )  # fmt: skip


class _Teardown:
    """What BFD cancels on a path failure: the Cease goes on the wire first, in the
    same task step as the detection, then the BGP session's scope is cancelled."""

    def __init__(self, bgp: BgpSession, scope: trio.CancelScope) -> None:
        self.bgp, self.scope = bgp, scope

    def cancel(self) -> None:
        self.bgp.cease_now(CeaseSubcode.BFD_DOWN)
        self.scope.cancel()


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
