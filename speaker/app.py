"""The speaker's root task tree.

    Speaker.run                         root nursery
    ├── BfdEndpoint.run                 BFD sockets, demultiplexing (if any peer has BFD)
    ├── PeerRunner.run  (per peer)      BFD session + BGP of one router (speaker/peer.py)
    ├── health.watch    (per checked service, each in its own cancel scope)
    ├── _apply_health                   health changes -> routes of every peer
    ├── _serve_reloads                  the one task that reloads (SIGHUP, ``speaker reload``)
    └── _signals                        SIGTERM/SIGINT: orderly shutdown; SIGHUP: reload

Routes are recomputed from the config and the set of healthy services whenever a
service changes state, and handed to every peer's BGP session, whose Adj-RIB-Out
sends only the difference.

Reload applies only the difference (:meth:`Speaker.reload`): a BFD profile change is
a Poll sequence on the live session; a pool, service or advertisement change is an
incremental UPDATE; only a change of a peer's identity restarts that one session.
Reloads are serialised: SIGHUP and ``speaker reload`` submit a request to one task
(:meth:`Speaker._serve_reloads`), which loads and derives the file in a worker thread
(:func:`speaker.reload.prepare`) so the loop keeps its timing, then applies it.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
from collections import Counter
from collections.abc import Mapping

import attrs
import trio

from protocols.bgp import RouteKey
from protocols.bgp import State as BgpState
from speaker import realtime
from speaker.allocate import OVERRIDE_MODES, read_overrides, write_overrides
from speaker.bfd.runtime import BfdEndpoint
from speaker.bgp.config import RouteAttributes
from speaker.bgp.listener import BgpListener
from speaker.config import Config
from speaker.drain import MAX_DRAINED_SERVICES, DrainState, drain_file, read_drain, write_drain
from speaker.health import HealthChanged, HealthSpec, watch
from speaker.log import fields
from speaker.looplag import Slicer
from speaker.netwatch import NetWatch
from speaker.peer import PeerPlan, PeerRunner, Routes
from speaker.plan import Derived, RouteFunction
from speaker.readers import Readers
from speaker.realtime import in_worker
from speaker.reload import Prepared, ReloadRefused, collections_deferred, prepare
from speaker.shutdown_mode import (
    SIGNALS,
    ShutdownMode,
    mode_for_signal,
    read_marker,
    restart_remaining,
    write_marker,
)

__all__ = ["GIL_SWITCH_INTERVAL", "SHUTDOWN_GRACE", "ReloadResult", "Speaker"]

log = logging.getLogger("speaker")

#: How long a planned stop may take before the rest is cut short (the process must
#: exit within 2 s of SIGTERM).
SHUTDOWN_GRACE = 1.5
#: Reload requests waiting for the reload task. When it is full, a SIGHUP is dropped
#: (the queued requests re-read the file anyway) and a control request waits.
RELOAD_QUEUE = 16
#: Services handled per loop step when a reload walks all of them.
RELOAD_SLICE = 128
#: Services read per loop step when a reload takes a snapshot of their names.
SNAPSHOT_SLICE = 512
#: ``sys.setswitchinterval`` for the process (``speaker run`` sets it once at start):
#: how long a worker thread (the reload's load and derive) may hold the GIL while the
#: Trio thread waits for it. Python's default of 5 ms alone would exceed the loop's
#: 2 ms budget; see "Latency budget" in docs/architecture.md.
GIL_SWITCH_INTERVAL = 0.0005


@attrs.frozen(kw_only=True)
class ReloadResult:
    ok: bool
    errors: tuple[str, ...] = ()
    #: The new file's warnings, and what this host lacks for it (speaker/hostcheck.py).
    warnings: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    retimed: tuple[str, ...] = ()

    def summary(self) -> str:
        if not self.ok:
            return f"reload rejected: {len(self.errors)} errors; the running config stays"
        parts = [
            f"{what} {', '.join(names)}"
            for what, names in (
                ("added", self.added), ("removed", self.removed),
                ("restarted", self.restarted), ("new BFD timers for", self.retimed),
            )
            if names
        ]  # fmt: skip
        return "reload applied" + (": " + "; ".join(parts) if parts else " (routes only)")


def identity(plan: PeerPlan) -> tuple[object, ...]:
    """What a running session cannot change without a restart."""
    bgp = plan.bgp
    return (
        bgp.peer_address, bgp.peer_asn, bgp.local_asn, bgp.peer_port, bgp.password,
        bgp.source_address, bgp.ebgp_multihop, bgp.passive, bgp.listen, bgp.families,
        bgp.router_id, plan.bfd_target, plan.bfd_profile is None, bgp.vrf,
    )  # fmt: skip


class _ReloadRequest:
    """One ``reload`` asked for; ``done`` is set when ``result`` holds its outcome."""

    def __init__(self, *, allow_empty: bool) -> None:
        self.allow_empty = allow_empty
        self.result: ReloadResult | None = None
        self.done = trio.Event()


class Speaker:
    def __init__(
        self,
        derived: Derived,
        *,
        config_path: str | None = None,
        bfd_endpoint: BfdEndpoint | None = None,
    ) -> None:
        """``config_path`` is re-read by :meth:`reload_file` (SIGHUP)."""
        self.derived = derived
        self.config_path = config_path
        self.endpoint = bfd_endpoint
        #: Link and route changes, which peers following a route or a VRF wait on.
        self.netwatch = NetWatch()
        #: Port 179 for every peer (sessions register themselves while they run).
        self.bgp_listener = BgpListener()
        self.healthy: set[str] = {s for s in derived.services if s not in derived.health}
        #: Operator overrides (``speaker announce|withdraw SERVICE``), kept in the state
        #: file across restarts: "announce" ignores health, "withdraw" never announces.
        self.overrides: dict[str, str] = read_overrides(derived.config.speaker.state_file)
        #: RFC 8326: what the operator drained (``speaker drain``), kept in its file
        #: across reloads and restarts (speaker/drain.py).
        self.drain: DrainState = read_drain(drain_file(derived.config.speaker.state_file))
        #: Every peer drained for a planned stop (``[speaker] drain_time``; not kept).
        self.stop_draining = False
        #: The stop's drain wait, which a second SIGTERM/SIGINT cuts short.
        self._stop_drain_scope: trio.CancelScope | None = None
        self._drain_lock = trio.Lock()
        #: packets no session claimed, as they stood at ``clear bfd peers counters``
        self.unmatched_cleared: Counter[str] = Counter()
        self.peers: dict[str, PeerRunner] = {}
        #: Replies and scrapes reading the config across steps (speaker.readers).
        self.readers = Readers()
        self.config_loaded = True
        self.config_stale = False
        self.last_reload: ReloadResult | None = None
        self.reloads = 0
        #: Rejected reloads (invalid file); ``reloads`` counts the applied ones.
        self.reload_failures = 0
        #: The route table whose routes every running session holds (then only
        #: changes are pushed). No session runs yet: every one will take its routes
        #: from this table, brought to the announced services now.
        self._routes_pushed: RouteFunction | None = None
        self._sync_routes()
        for service in self.drain.services:  # before any session takes the routes
            derived.routes.set_drained(service, True)
        self._routes_pushed = derived.routes
        #: While a reload runs: the services whose announcement may have changed
        #: since its new route table was built from ``announced_services()`` (health,
        #: overrides, the reload's own health rules); the table gets only these.
        self._route_journal: set[str] | None = None
        self._health_scopes: dict[str, tuple[HealthSpec, trio.CancelScope]] = {}
        self._health_send: trio.MemorySendChannel[HealthChanged] | None = None
        self._nursery: trio.Nursery | None = None
        self._reload_send, self._reload_receive = trio.open_memory_channel[_ReloadRequest](
            RELOAD_QUEUE
        )
        #: Set when an orderly shutdown begins (systemd STOPPING=1).
        self.shutting_down = trio.Event()
        #: The path the shutdown takes (speaker/shutdown_mode.py), once it began.
        self.shutdown_mode: ShutdownMode | None = None
        #: When the previous process stopped for a restart (wall clock), if it did:
        #: the first sessions of peers with graceful restart set R within its time.
        self.restarted_from: float | None = read_marker(derived.config.speaker.state_file)

    @property
    def config(self) -> Config:
        return self.derived.config

    def announced_services(self) -> frozenset[str]:
        """Healthy services, with the operator's overrides applied."""
        forced = {s for s, mode in self.overrides.items() if mode == "announce"}
        withdrawn = {s for s, mode in self.overrides.items() if mode == "withdraw"}
        return frozenset((self.healthy | forced) - withdrawn)

    def routes_for(self, peer: str) -> Routes:
        """``peer``'s routes now, for a new BGP session to take over (costs the
        changes since the route table was built, not the table)."""
        routes = self.derived.routes
        if routes is not self._routes_pushed:
            pushed = self._routes_pushed
            if self._route_journal is not None and pushed is not None:
                # A reload is installing its new table (_install_routes): take the
                # table the other sessions hold; the new one comes to all of them at
                # once. Bringing the new one up to date here would compare every
                # service at once (17 ms at 65,536).
                try:
                    return pushed.snapshot(peer)
                except KeyError:  # a peer the reload added: its routes come then
                    return {}
            self._sync_routes()  # a new table: no session holds its routes yet
        return routes.snapshot(peer)

    def _sync_routes(self) -> dict[str, dict[RouteKey, RouteAttributes | None]]:
        """Bring the route table to the announced services; the routes that changed."""
        return self.derived.routes.set_announced(self.announced_services(), self._withdrawn())

    def _withdrawn(self) -> frozenset[str]:
        return frozenset(s for s, mode in self.overrides.items() if mode == "withdraw")

    def set_override(self, service: str, mode: str | None) -> None:
        """``mode`` "announce", "withdraw" or None (back to health); persisted first.

        Raises:
            KeyError: no such service.  OSError, StateFileError: state file problems.
        """
        if service not in self.derived.services:
            raise KeyError(service)
        overrides = dict(self.overrides)
        if mode is None:
            overrides.pop(service, None)
        elif mode in OVERRIDE_MODES:
            overrides[service] = mode
        else:
            raise ValueError(f"override must be one of {OVERRIDE_MODES}, not {mode!r}")
        write_overrides(self.config.speaker.state_file, overrides)
        self.overrides = overrides
        log.info("service %s: override %s", service, mode or "cleared",
                 extra=fields(service=service, override=mode))  # fmt: skip
        self._push_routes(service)

    # ---- RFC 8326 drain ----------------------------------------------------------------

    def peer_drained(self, peer: str) -> bool:
        """Whether every route to ``peer`` is drained: the node or the peer is, or a
        planned stop drains everything."""
        return self.stop_draining or self.drain.peer_drained(peer)

    async def set_drain(
        self, *, drained: bool, peer: str | None = None, service: str | None = None
    ) -> DrainState:
        """``speaker drain|undrain [--peer NAME | SERVICE]``: the new state is written
        to its file first (in a worker thread), then applied: a peer's or the node's
        by each BGP session (a switch, then its routes sent again a batch at a time), a
        service's by the route table (that service's routes).

        Raises:
            KeyError: no such service or peer.  OSError: the drain file.
            ValueError: MAX_DRAINED_SERVICES services are drained already.
        """
        if service is not None and service not in self.derived.services:
            raise KeyError(service)
        many = len(self.drain.services) >= MAX_DRAINED_SERVICES
        if service is not None and drained and service not in self.drain.services and many:
            raise ValueError(
                f"{MAX_DRAINED_SERVICES} services are drained one by one already: drain the"
                " node (speaker drain) or a peer (--peer) instead"
            )
        if peer is not None and peer not in self.peers:
            raise KeyError(peer)
        async with self._drain_lock:
            new = self.drain.changed(drained=drained, peer=peer, service=service)
            if new == self.drain:
                return new
            path = drain_file(self.config.speaker.state_file)
            await trio.to_thread.run_sync(write_drain, path, new)
            self.drain = new
        what = f"peer {peer}" if peer else f"service {service}" if service else "node"
        log.info("%s %s (RFC 8326 graceful shutdown)", what, "drained" if drained else "undrained",
                 extra=fields(drain=what, drained=drained))  # fmt: skip
        if service is not None:
            self._push_changes(self.derived.routes.set_drained(service, drained))
        else:
            self._apply_peer_drains()
        return new

    async def undrain_all(self) -> DrainState:
        """``speaker undrain --all``: end every drain (node, peers, services) at once,
        with one write of the file; the services' routes a slice at a time."""
        async with self._drain_lock:
            old = self.drain
            if not old:
                return old
            path = drain_file(self.config.speaker.state_file)
            await trio.to_thread.run_sync(write_drain, path, DrainState())
            self.drain = DrainState()
        log.info("every drain ended (RFC 8326 graceful shutdown)", extra=fields(drained=False))
        self._apply_peer_drains()
        for index, service in enumerate(list(old.services)):
            if service not in self.drain.services:  # drained again meanwhile: kept
                self._push_changes(self.derived.routes.set_drained(service, False))
            await _between_slices(index)
        return self.drain

    def _apply_peer_drains(self) -> None:
        for name, runner in self.peers.items():
            wanted = self.peer_drained(name)
            if runner.drained != wanted:
                runner.set_drained(wanted)

    def _push_changes(self, changes: dict[str, dict[RouteKey, RouteAttributes | None]]) -> None:
        """Changes of the current route table to the sessions, if they hold it (while a
        reload installs a new table, the sessions get that one, changes included)."""
        if self.derived.routes is not self._routes_pushed:
            return
        for name, runner in self.peers.items():
            if name in changes:
                runner.push_routes(changes[name])

    async def _drain_services(self, routes: RouteFunction) -> None:
        """A reload's new route table: the drained services drained in it too, before
        any session gets it (a slice at a time; a drain changed meanwhile went to this
        table already, as it is the speaker's now)."""
        for index, service in enumerate(list(self.drain.services)):
            if service in self.drain.services:
                routes.set_drained(service, True)
            await _between_slices(index)

    async def drain_before_stop(self) -> None:
        """RFC 8326 on a planned stop (``[speaker] drain_time``, 0: nothing): every
        route to every peer announced again with GRACEFUL_SHUTDOWN (LOCAL_PREF 0 on
        iBGP); once the Established sessions have sent them (waiting drain_time at
        most), drain_time more for the routers to move the traffic; then the Cease
        follows as without a drain. A second SIGTERM/SIGINT ends the wait."""
        drain_time = self.config.speaker.drain_time.total_seconds()
        if drain_time <= 0 or self.stop_draining:
            return
        self.stop_draining = True
        self._apply_peer_drains()
        sessions = [
            runner.bgp for runner in self.peers.values()
            if runner.bgp is not None and runner.bgp.state is BgpState.ESTABLISHED
        ]  # fmt: skip
        if not sessions:
            log.info("drain_time: no BGP session is Established, nothing to drain")
            return
        started = trio.current_time()
        sent: float | None = None
        log.info("draining every peer for %.1f s before the Cease (drain_time)", drain_time,
                 extra=fields(drain="stop", drain_time=drain_time))  # fmt: skip
        with trio.CancelScope() as scope:
            self._stop_drain_scope = scope
            with trio.move_on_after(drain_time):
                async with trio.open_nursery() as nursery:
                    for bgp in sessions:
                        nursery.start_soon(bgp.wait_synchronised)
            sent = trio.current_time() - started
            await trio.sleep(drain_time)
        self._stop_drain_scope = None
        sending = "not all sent" if sent is None else f"sent in {sent:.2f} s"
        log.info("drain done: routes %s, %s", sending, "cut short by a second signal"
                 if scope.cancelled_caught else f"then {drain_time:.1f} s",
                 extra=fields(drain="stop"))  # fmt: skip

    # ---- running -----------------------------------------------------------------------

    async def run(
        self,
        *,
        handle_signals: bool = True,
        task_status: trio.TaskStatus[Speaker] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if handle_signals:
                await nursery.start(self._signals)
            await self._ensure_endpoint(self.derived)
            await nursery.start(self.bgp_listener.run)
            await nursery.start(self.netwatch.run)
            wall = time.time()
            for plan in self.derived.plans:
                left = restart_remaining(
                    self.restarted_from, plan.bgp.graceful_restart_time, now=wall
                )
                restarted = left > 0 and plan.bgp.graceful_restart
                deadline = trio.current_time() + left if restarted else None
                if restarted and self.restarted_from is not None:
                    log.info("peer %s: back %.1f s after a restart: the OPEN sets the graceful"
                             " restart R bit (for %.0f s more)", plan.name,
                             wall - self.restarted_from, left,
                             extra=fields(peer=plan.name, protocol="bgp"))  # fmt: skip
                self._start_peer(plan, restart_deadline=deadline)
            send, receive = trio.open_memory_channel[HealthChanged](100)
            self._health_send = send
            for service, spec in self.derived.health.items():
                self._start_health(service, spec)
            nursery.start_soon(self._apply_health, receive)
            nursery.start_soon(self._serve_reloads, name="reloads")
            log.info("speaker running: %d peers, %d health checks", len(self.peers),
                     len(self.derived.health))  # fmt: skip
            task_status.started(self)

    async def _ensure_endpoint(self, derived: Derived) -> None:
        if self.endpoint is None and any(p.bfd_target for p in derived.plans):
            self.endpoint = BfdEndpoint()
        if self.endpoint is not None and self._nursery is not None and not self.endpoint.running:
            await self._nursery.start(self.endpoint.run)

    def _start_peer(self, plan: PeerPlan, *, restart_deadline: float | None = None) -> PeerRunner:
        assert self._nursery is not None
        plan = self._wired(plan)
        runner = PeerRunner(
            plan, endpoint=self.endpoint, routes=self.routes_for,
            hold_down=self.derived.hold_down, restart_deadline=restart_deadline,
            netwatch=self.netwatch,
        )  # fmt: skip
        runner.drained = self.peer_drained(plan.name)
        self.peers[plan.name] = runner
        self._nursery.start_soon(runner.run, name=f"peer {plan.name}")
        return runner

    def _wired(self, plan: PeerPlan) -> PeerPlan:
        """``plan`` whose BGP sessions hand their incoming connections to our listener."""
        return attrs.evolve(plan, bgp=attrs.evolve(plan.bgp, listener=self.bgp_listener))

    def _start_health(self, service: str, spec: HealthSpec) -> None:
        assert self._nursery is not None and self._health_send is not None
        scope = trio.CancelScope()
        self._health_scopes[service] = (spec, scope)
        send = self._health_send.clone()
        healthy = service in self.healthy

        async def run() -> None:
            with scope:
                await watch(service, spec, send, healthy=healthy)

        self._nursery.start_soon(run, name=f"health {service}")

    def _stop_health(self, service: str) -> None:
        _, scope = self._health_scopes.pop(service)
        scope.cancel()

    async def _apply_health(self, changes: trio.MemoryReceiveChannel[HealthChanged]) -> None:
        async with changes:
            async for change in changes:
                if change.service not in self._health_scopes:
                    continue  # the check was removed by a reload meanwhile
                if change.healthy:
                    self.healthy.add(change.service)
                else:
                    self.healthy.discard(change.service)
                log.info("service %s is %s: routes updated on %d peers", change.service,
                         "healthy" if change.healthy else "unhealthy", len(self.peers),
                         extra=fields(service=change.service, healthy=change.healthy,
                                      detail=change.detail))  # fmt: skip
                self._push_routes(change.service)

    def _push_routes(self, service: str | None = None) -> None:
        """Hand every session what changed: the changed prefixes only (``service``:
        only that one changed, which costs its routes only), or (the first time after
        a new route table, e.g. a reload) the new table, which each session compares
        with what it sent a slice at a time."""
        routes = self.derived.routes
        if service is not None and self._route_journal is not None:
            self._route_journal.add(service)
            if routes is not self._routes_pushed:
                return  # a reload is installing a new table: it applies this change
        if service is not None and routes is self._routes_pushed:
            changes = routes.set_service(service, self._is_announced(service))
        else:
            changes = self._sync_routes()
        if routes is not self._routes_pushed:
            self._routes_pushed = routes
            for runner in self.peers.values():
                runner.push_routes()
            return
        for name, runner in self.peers.items():
            if name in changes:
                runner.push_routes(changes[name])

    def _is_announced(self, service: str) -> bool:
        mode = self.overrides.get(service)
        return mode != "withdraw" and (mode == "announce" or service in self.healthy)

    async def _install_routes(self) -> None:
        """A reload's new route table, built in the worker thread from the services
        announced when the reload began: bring it to what changed since (the
        journal), then hand it to every session. Costs the changes, not the table
        (comparing 65,536 services' sets at once is a 17 ms step)."""
        routes, journal = self.derived.routes, self._route_journal
        if journal is None:  # reload() called without _reload_once (tests)
            self._push_routes()
            return
        index = 0
        while journal:
            service = journal.pop()
            routes.set_service(service, self._is_announced(service))
            index += 1
            await _between_slices(index)
        self._route_journal = None
        self._routes_pushed = routes
        for runner in self.peers.values():
            runner.push_routes()

    async def _signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.open_signal_receiver(signal.SIGHUP, *SIGNALS) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP and self.shutting_down.is_set():
                    log.info("SIGHUP while stopping: no reload")
                    continue
                if signum == signal.SIGHUP:
                    log.info("SIGHUP: reloading %s", self.config_path)
                    self._submit_reload(_ReloadRequest(allow_empty=False))
                    continue
                name = signal.Signals(signum).name
                if self._stop_drain_scope is not None:
                    log.info("%s: ending the drain now", name)
                    self._stop_drain_scope.cancel()
                    continue
                if self.shutting_down.is_set():
                    continue
                mode = mode_for_signal(signum)
                assert self._nursery is not None
                self.shutting_down.set()  # now: a second signal must not start another
                if mode is ShutdownMode.RESTART:
                    log.info("%s: shutting down for a restart", name)
                    self._nursery.start_soon(
                        functools.partial(self.shutdown, "speaker restarting", mode=mode)
                    )
                else:
                    log.info("%s: shutting down", name)
                    self._nursery.start_soon(functools.partial(self.shutdown, mode=mode))

    async def shutdown(
        self, message: str = "speaker shutting down", *, mode: ShutdownMode = ShutdownMode.STOP
    ) -> None:
        """The stop path: after the drain of ``[speaker] drain_time``, when set
        (:meth:`drain_before_stop`), BFD AdminDown and Cease/Administrative Shutdown to
        every peer, then stop. The restart path (``mode`` RESTART, no drain: the router
        is to keep our routes): the restart marker first, then every peer's
        :meth:`PeerRunner.stop` with ``restart`` (the router keeps our routes where
        graceful restart was negotiated). A second request changes nothing: the first
        one's path is taken."""
        if self.shutdown_mode is not None:
            return
        self.shutdown_mode = mode
        self.shutting_down.set()
        restart = mode is ShutdownMode.RESTART
        if not restart:
            await self.drain_before_stop()
        with trio.move_on_after(SHUTDOWN_GRACE):
            if restart:
                try:
                    await trio.to_thread.run_sync(write_marker, self.config.speaker.state_file)
                except OSError as exc:
                    log.warning("restart marker not written (%s): the next start will not"
                                " set the graceful restart R bit", exc)  # fmt: skip
            async with trio.open_nursery() as nursery:
                for runner in self.peers.values():
                    nursery.start_soon(functools.partial(runner.stop, message, restart=restart))
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def request_shutdown(self, mode: ShutdownMode, message: str) -> bool:
        """Begin :meth:`shutdown` in the speaker's nursery (a control request gets its
        reply before the process ends); False when one began already."""
        if self.shutdown_mode is not None or self._nursery is None:
            return False
        self._nursery.start_soon(functools.partial(self.shutdown, message, mode=mode))
        return True

    # ---- reload ------------------------------------------------------------------------

    async def reload_file(self, *, allow_empty: bool = False) -> ReloadResult:
        """Re-read the config file; apply it if valid, else keep running the old one.

        The request goes to the one reload task and this waits for its result, so
        reloads never overlap (SIGHUP and ``speaker reload`` at once). ``allow_empty``
        applies a file without peers, pools or services (refused otherwise)."""
        if self._nursery is None:
            return ReloadResult(ok=False, errors=("the speaker is not running",))
        request = _ReloadRequest(allow_empty=allow_empty)
        await self._reload_send.send(request)
        await request.done.wait()
        assert request.result is not None
        return request.result

    async def _free_replaced(self, box: list[object], generation: int) -> None:
        # A show reply or scrape that started before the reload may hold parts of
        # it: it would drop them, and free them all, in one step (speaker.readers).
        await self.readers.finished(generation)
        await Slicer().free(box)

    def _submit_reload(self, request: _ReloadRequest) -> None:
        try:
            self._reload_send.send_nowait(request)
        except trio.WouldBlock:
            log.info("reload already pending: it will read the file as it is now")

    async def _serve_reloads(self) -> None:
        """The one task that reloads. Requests that arrive while a reload runs are
        answered together by one more reload (the file is read after each of them
        asked); requests with and without ``allow_empty`` are answered separately."""
        async for first in self._reload_receive:
            batch = [first]
            while True:
                try:
                    batch.append(self._reload_receive.receive_nowait())
                except trio.WouldBlock:
                    break
            for allow_empty in dict.fromkeys(r.allow_empty for r in batch):
                result = await self._reload_once(allow_empty=allow_empty)
                for request in batch:
                    if request.allow_empty == allow_empty:
                        request.result = result
                        request.done.set()

    async def _reload_once(self, *, allow_empty: bool) -> ReloadResult:
        if self.config_path is None:
            return self._reject(["no config file to reload"])
        # From the moment the new table's services are read (announced_services()
        # below), every change is journalled for _install_routes.
        self._route_journal = set()
        try:
            return await self._reload_journalled(allow_empty=allow_empty)
        finally:
            self._route_journal = None

    async def _reload_journalled(self, *, allow_empty: bool) -> ReloadResult:
        assert self.config_path is not None
        try:
            # Load, validate and derive off the loop: tomllib, cattrs, allocation and
            # plans take 0.2-0.5 s at 10,000 services. Only frozen data crosses over.
            with collections_deferred():
                announced = await self._announced_in_slices()
                prepared: Prepared = await trio.to_thread.run_sync(
                    functools.partial(
                        in_worker(_prepare_in_thread),
                        self.config_path,
                        self.config,
                        allow_empty=allow_empty,
                        announced=announced,
                        withdrawn=self._withdrawn(),
                    ),
                    abandon_on_cancel=True,  # a shutdown does not wait for it
                )
        except ReloadRefused as exc:
            return self._reject(exc.errors)
        for warning in prepared.warnings:
            log.warning("reload: %s", warning, extra=fields(warning=warning))
        try:
            result = await self.reload(prepared.derived)
        except Exception as exc:
            # A bug while applying: the reload fails, the speaker does not.
            log.exception("reload: applying the new configuration failed")
            return self._reject([f"applying the new configuration failed: {exc!r}"])
        result = attrs.evolve(result, warnings=prepared.warnings)
        self.last_reload = result
        return result

    async def _announced_in_slices(self) -> list[list[str]]:
        """:meth:`announced_services`, read a slice at a time (one frozenset of 65,536
        names is a 5-8 ms step): the journal already runs, so a service that changes
        while this reads is brought up to date when the new table is installed."""
        services = self.derived.services
        chunks = [[s for s, mode in self.overrides.items() if mode == "announce"]]
        for start in range(0, len(services), SNAPSHOT_SLICE):
            chunk = services[start : start + SNAPSHOT_SLICE]
            chunks.append([s for s in chunk if self._is_announced(s)])
            await trio.lowlevel.checkpoint()
        return chunks

    def _reject(self, errors: list[str]) -> ReloadResult:
        self.config_stale = True
        self.reload_failures += 1
        result = ReloadResult(ok=False, errors=tuple(errors))
        self.last_reload = result
        for error in errors:
            log.error("reload: %s", error, extra=fields(error=error))
        log.error(result.summary())
        return result

    async def reload(self, new: Derived) -> ReloadResult:
        """Apply ``new`` by difference; never resets a session that did not change."""
        old = self.derived
        new_plans = {p.name: p for p in new.plans}
        added: list[str] = []
        removed: list[str] = []
        restarted: list[str] = []
        retimed: list[str] = []
        # Removed peers stop while the running config still knows them: another one of
        # them that reconnects meanwhile asks for its routes by name.
        for name in [n for n in self.peers if n not in new_plans]:
            removed.append(name)
            await self.peers.pop(name).stop("peer removed", deconfigured=True)
        self.derived = new
        replaced = self.readers.replaced()
        priority = new.config.speaker.realtime_priority
        changed = priority != old.config.speaker.realtime_priority
        if changed and (refused := realtime.apply(priority)) is not None:
            log.warning("realtime_priority %d not applied: %s", priority, refused)
        await self._ensure_endpoint(new)
        for name, plan in new_plans.items():
            current = self.peers.get(name)
            if current is None:
                added.append(name)
                self._start_peer(plan)
            elif identity(current.plan) != identity(plan):
                restarted.append(name)
                del self.peers[name]
                await current.stop("peer configuration changed")
                self._start_peer(plan)
            else:
                if current.plan.bfd_profile != plan.bfd_profile:
                    retimed.append(name)
                current.update(self._wired(plan), hold_down=new.hold_down)
        await self._reload_health(old.health, new.health, new.services, old.services)
        await self._drain_services(new.routes)
        await self._install_routes()
        # The old config and route table: freed a slice at a time, in the background
        # (at once, dropping 65,536 services is a 25 ms step), once no reader holds it.
        box: list[object] = [old]
        del old
        if self._nursery is not None:
            self._nursery.start_soon(self._free_replaced, box, replaced, name="free old config")
        self.config_stale = False
        self.reloads += 1
        result = ReloadResult(
            ok=True, added=tuple(added), removed=tuple(removed),
            restarted=tuple(restarted), retimed=tuple(retimed),
        )  # fmt: skip
        self.last_reload = result
        log.info(result.summary())
        return result

    async def _reload_health(
        self,
        old: Mapping[str, HealthSpec],
        new: Mapping[str, HealthSpec],
        services: tuple[str, ...],
        old_services: tuple[str, ...],
    ) -> None:
        """Services without a check are healthy; a new check starts unhealthy; a
        changed check keeps the service's current state until it says otherwise.

        In slices of :data:`RELOAD_SLICE` services (17 ms in one step at 10,000
        checked services). Between slices ``_apply_health`` may record changes, so
        ``healthy`` is edited in place, and a check that goes is stopped before its
        service's state is set (its last change is then ignored, not applied over).
        Nothing proportional to the services is copied in one step: ``healthy`` only
        ever holds services of the running config, so the old config's names are
        walked instead of a copy of it."""
        for index, service in enumerate(list(self._health_scopes)):
            if new.get(service) != self._health_scopes[service][0]:
                self._stop_health(service)
            await _between_slices(index)
        wanted: set[str] = set()
        for start in range(0, len(services), SNAPSHOT_SLICE):
            wanted.update(services[start : start + SNAPSHOT_SLICE])
            await trio.lowlevel.checkpoint()
        for index, service in enumerate(old_services):
            if service in self.healthy and service not in wanted:
                self._set_healthy(service, False)
            await _between_slices(index)
        for index, service in enumerate(services):
            if service not in new:
                self._set_healthy(service, True)
            elif service not in old:
                self._set_healthy(service, False)
            await _between_slices(index)
        for index, (service, spec) in enumerate(new.items()):
            if service not in self._health_scopes:
                self._start_health(service, spec)
            await _between_slices(index)

    def _set_healthy(self, service: str, healthy: bool) -> None:
        """A reload's health rule: journalled when it changes what is announced."""
        if (service in self.healthy) == healthy:
            return
        if healthy:
            self.healthy.add(service)
        else:
            self.healthy.discard(service)
        if self._route_journal is not None:
            self._route_journal.add(service)


def _prepare_in_thread(
    path: str,
    running: Config,
    *,
    allow_empty: bool,
    announced: list[list[str]],
    withdrawn: frozenset[str],
) -> Prepared:
    """:func:`speaker.reload.prepare` in the worker thread, with the announced
    services gathered there from the loop's slices (a set grown a slice at a time
    lets the loop take the GIL between them)."""
    healthy: set[str] = set()
    for chunk in announced:
        healthy.update(chunk)
    return prepare(path, running, allow_empty=allow_empty, healthy=healthy, withdrawn=withdrawn)


async def _between_slices(index: int) -> None:
    if index % RELOAD_SLICE == RELOAD_SLICE - 1:
        await trio.lowlevel.checkpoint()
