"""The speaker's root task tree.

    Speaker.run                         root nursery
    ├── BfdEndpoint.run                 BFD sockets (if any peer has a BFD profile)
    ├── PeerRunner.run  (per peer)      BFD + BGP of one router (speaker/peer.py)
    ├── health.watch    (per checked service)
    ├── _apply_health                   health changes -> routes of every peer
    └── _signals                        SIGTERM/SIGINT: orderly shutdown

Routes are recomputed from the config and the set of healthy services whenever a
service changes state, and handed to every peer's BGP session, whose Adj-RIB-Out
sends only the difference.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Mapping, Sequence

import trio

from speaker.bfd.runtime import BfdEndpoint
from speaker.health import HealthChanged, HealthSpec, watch
from speaker.log import fields
from speaker.peer import PeerPlan, PeerRunner, Routes

__all__ = ["SHUTDOWN_GRACE", "Speaker"]

log = logging.getLogger("speaker")

#: How long a planned stop may take before the rest is cut short (the process must
#: exit within 2 s of SIGTERM).
SHUTDOWN_GRACE = 1.5


class Speaker:
    def __init__(
        self,
        plans: Sequence[PeerPlan],
        *,
        routes: Callable[[str, frozenset[str]], Routes],
        health: Mapping[str, HealthSpec],
        services: Sequence[str],
        hold_down: float = 1.0,
        bfd_endpoint: BfdEndpoint | None = None,
    ) -> None:
        """``routes(peer, healthy)`` computes a peer's routes; ``services`` are all
        service names, those in ``health`` start unhealthy, the others are healthy."""
        self.plans = list(plans)
        self._routes = routes
        self.health_specs = dict(health)
        self.healthy: set[str] = {s for s in services if s not in self.health_specs}
        self.hold_down = hold_down
        self.endpoint = bfd_endpoint
        self.peers: dict[str, PeerRunner] = {}
        self._nursery: trio.Nursery | None = None
        self.stopping = False

    def routes_for(self, peer: str) -> Routes:
        return self._routes(peer, frozenset(self.healthy))

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
            if any(p.bfd_key for p in self.plans):
                if self.endpoint is None:
                    self.endpoint = BfdEndpoint()
                await nursery.start(self.endpoint.run)
            for plan in self.plans:
                runner = PeerRunner(
                    plan, endpoint=self.endpoint, routes=self.routes_for, hold_down=self.hold_down
                )
                self.peers[plan.name] = runner
                nursery.start_soon(runner.run, name=f"peer {plan.name}")
            send, receive = trio.open_memory_channel[HealthChanged](100)
            async with send:
                for service, spec in self.health_specs.items():
                    nursery.start_soon(watch, service, spec, send.clone(), name=f"health {service}")
            nursery.start_soon(self._apply_health, receive)
            log.info("speaker running: %d peers, %d health checks", len(self.plans),
                     len(self.health_specs))  # fmt: skip
            task_status.started(self)

    async def _apply_health(self, changes: trio.MemoryReceiveChannel[HealthChanged]) -> None:
        async with changes:
            async for change in changes:
                if change.healthy:
                    self.healthy.add(change.service)
                else:
                    self.healthy.discard(change.service)
                log.info("service %s is %s: routes updated on %d peers", change.service,
                         "healthy" if change.healthy else "unhealthy", len(self.peers),
                         extra=fields(service=change.service, healthy=change.healthy,
                                      detail=change.detail))  # fmt: skip
                for runner in self.peers.values():
                    runner.push_routes()

    async def _signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                log.info("%s: shutting down", signal.Signals(signum).name)
                await self.shutdown()
                return

    async def shutdown(self, message: str = "speaker shutting down") -> None:
        """BFD AdminDown and Cease/Administrative Shutdown to every peer, then stop."""
        self.stopping = True
        with trio.move_on_after(SHUTDOWN_GRACE):
            async with trio.open_nursery() as nursery:
                for runner in self.peers.values():
                    nursery.start_soon(runner.stop, message)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
