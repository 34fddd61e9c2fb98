"""Prometheus metrics: ``http://[metrics] address/metrics`` (127.0.0.1:7472).

:class:`SpeakerCollector` builds every metric family from the speaker's state at
scrape time, in the speaker's Trio loop (no thread ever reads the state), and in
slices: it yields to the loop between peers, between services and while rendering
the text, so a scrape at 1,000 peers or 65,536 routes never holds the loop for more
than :data:`speaker.looplag.SLICE`. Nothing in a scrape walks the routes: prefix
counts are the sizes of each session's Adj-RIB-Out, and whether a service is
announced is a lookup of its own prefixes in them.

MetalLB's series keep MetalLB's exact exposed names (label ``peer`` = the peer's
address, as FRR-K8s uses), so its dashboards and alerts work unchanged. MetalLB's FRR
sidecar exposes most message and packet counters as Go counters *without* a
``_total`` suffix (``metallb_bgp_opens_sent``); prometheus_client would append
``_total`` to a counter, so those are exposed as untyped families, which keeps the
names exact (PromQL's ``rate()`` works on them the same). See ``docs/metrics.md``.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import weakref
from collections.abc import Iterable
from typing import Any

import trio
from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector

from protocols.bfd import State as BfdState
from protocols.bgp import Prefix
from protocols.bgp import State as BgpState
from speaker import gcpause
from speaker.app import Speaker
from speaker.control import bfd_status
from speaker.looplag import Histogram, LoopMonitor, Slicer
from speaker.peer import PeerRunner
from speaker.plan import Derived

__all__ = [
    "CONTENT_TYPE",
    "DETECTION_BUCKETS",
    "METALLB_NAMES",
    "REANNOUNCE_BUCKETS",
    "SpeakerCollector",
    "respond",
    "serve_metrics",
]

log = logging.getLogger("speaker.metrics")

#: The text exposition format generate_latest writes (0.0.4 is what every Prometheus
#: version negotiates).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DETECTION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
REANNOUNCE_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

# (exposed name, help, totals key) of MetalLB's untyped BGP counters.
_BGP_UNTYPED = (
    ("metallb_bgp_opens_sent", "Number of BGP open messages sent", "out:open"),
    ("metallb_bgp_opens_received", "Number of BGP open messages received", "in:open"),
    (
        "metallb_bgp_notifications_sent",
        "Number of BGP notification messages sent",
        "out:notification",
    ),
    ("metallb_bgp_updates_total_received", "Number of BGP UPDATE messages received", "in:update"),
    ("metallb_bgp_keepalives_sent", "Number of BGP keepalive messages sent", "out:keepalive"),
    (
        "metallb_bgp_keepalives_received",
        "Number of BGP keepalive messages received",
        "in:keepalive",
    ),
    (
        "metallb_bgp_route_refresh_sent",
        "Number of BGP route refresh messages sent",
        "out:route-refresh",
    ),
)

_BFD_UNTYPED = (
    ("metallb_bfd_control_packet_input", "Number of received BFD control packets", "control_rx"),
    ("metallb_bfd_control_packet_output", "Number of sent BFD control packets", "control_tx"),
    ("metallb_bfd_echo_packet_input", "Number of received BFD echo packets", "echo_rx"),
    ("metallb_bfd_echo_packet_output", "Number of sent BFD echo packets", "echo_tx"),
    ("metallb_bfd_session_up_events", "Number of BFD session up events", "up_events"),
    ("metallb_bfd_session_down_events", "Number of BFD session down events", "down_events"),
)

#: Every MetalLB-compatible name exposed (exactly as it appears in the text).
METALLB_NAMES = (
    "metallb_bgp_session_up",
    "metallb_bgp_updates_total",
    "metallb_bgp_announced_prefixes_total",
    *(n for n, _, _ in _BGP_UNTYPED),
    "metallb_bgp_total_sent",
    "metallb_bgp_total_received",
    "metallb_bfd_session_up",
    *(n for n, _, _ in _BFD_UNTYPED),
    "metallb_bfd_session_state_changes_total",
    "metallb_bfd_control_packets_sent_total",
    "metallb_bfd_control_packets_received_total",
    "metallb_k8s_client_config_loaded_bool",
    "metallb_k8s_client_config_stale_bool",
)


class _Families(Collector):
    """What ``generate_latest`` renders: families already built."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


#: Samples rendered per step (about 5 us each).
_RENDER_SAMPLES = 128


async def exposition(families: Iterable[Metric], slicer: Slicer | None = None) -> list[bytes]:
    """The text format of ``families`` in pieces (to send one by one: joining 3 MB at
    1,000 peers is itself a 2 ms step), rendered by ``generate_latest`` a slice of
    samples at a time (a continuation slice without its HELP and TYPE lines)."""
    slicer = slicer or Slicer()
    out: list[bytes] = []
    for family in families:
        samples = family.samples
        for start in range(0, max(len(samples), 1), _RENDER_SAMPLES):
            part = copy.copy(family)
            part.samples = samples[start : start + _RENDER_SAMPLES]
            text = generate_latest(_Families([part]))
            out.append(text if start == 0 else text.split(b"\n", 2)[2])
            await slicer.tick()
    return out


class SpeakerCollector:
    """Builds every family from ``speaker`` at each :meth:`scrape`; ``monitor`` (the
    process's loop monitor) adds the ``speaker_event_loop_*`` families."""

    def __init__(self, speaker: Speaker, monitor: LoopMonitor | None = None) -> None:
        self.speaker = speaker
        self.monitor = monitor
        #: Per config: each service's (advertisement index, prefix) pairs.
        self._prefixes: tuple[Derived, dict[str, list[tuple[int, Prefix]]]] | None = None
        #: The config whose service count was logged as over the series limit.
        self._over_limit: Derived | None = None
        #: Runners seen at the last scrape (kept alive so that what a runner records
        #: between the last scrape and its removal by a reload is still folded in).
        self._live: list[PeerRunner] = []
        #: How many failovers / re-announce delays of each runner are folded in.
        self._folded: weakref.WeakKeyDictionary[PeerRunner, tuple[int, int]] = (
            weakref.WeakKeyDictionary()
        )
        self._detection: dict[str, Histogram] = {}
        self._reannounce: dict[str, Histogram] = {}

    async def scrape(self) -> bytes:
        """The exposition text, in one piece (tests; the server sends the pieces)."""
        return b"".join(await self.scrape_pieces())

    async def scrape_pieces(self) -> list[bytes]:
        """The exposition text in pieces, built and rendered in slices."""
        slicer = Slicer()
        families = await self.families(slicer)
        text = await exposition(families, slicer)
        for family in families:  # 1,000 peers: ~50,000 samples to free, not in one step
            await slicer.release(family.samples)
        return text

    async def families(self, slicer: Slicer | None = None) -> list[Metric]:
        slicer = slicer or Slicer()
        await self._fold(slicer)
        runners = list(self.speaker.peers.values())
        return [
            *await self._bgp(runners, slicer),
            *await self._bfd(runners, slicer),
            *await self._histograms(slicer),
            *self._config(),
            *await self._services(slicer),
            *self._loop(),
        ]

    # -- histograms fed from every runner, including ones a reload replaced --------------

    async def _fold(self, slicer: Slicer) -> None:
        current = list(self.speaker.peers.values())
        for runner in {id(r): r for r in [*self._live, *current]}.values():
            await slicer.tick()
            label = str(runner.plan.bgp.peer_address)
            failovers, reannounces = self._folded.get(runner, (0, 0))
            detection = self._detection.setdefault(label, Histogram(DETECTION_BUCKETS))
            for record in runner.failovers.since(failovers):
                end = record.notification_at or record.closed_at
                if end is not None:
                    detection.observe(end - record.detected_at)
            reannounce = self._reannounce.setdefault(label, Histogram(REANNOUNCE_BUCKETS))
            for delay in runner.reannounce_delays.since(reannounces):
                reannounce.observe(delay)
            self._folded[runner] = (runner.failovers.total, runner.reannounce_delays.total)
        self._live = current

    async def _bgp(self, runners: list[PeerRunner], slicer: Slicer) -> list[Metric]:
        peer = ["peer"]
        up = GaugeMetricFamily(
            "metallb_bgp_session_up", "BGP session state (1 is up, 0 is down)", labels=peer
        )
        updates = CounterMetricFamily(
            "metallb_bgp_updates", "Number of BGP UPDATE messages sent", labels=peer
        )
        prefixes = GaugeMetricFamily(
            "metallb_bgp_announced_prefixes_total",
            "Number of prefixes currently being advertised on the BGP session",
            labels=peer,
        )
        untyped = [(UnknownMetricFamily(n, h, labels=peer), k) for n, h, k in _BGP_UNTYPED]
        sent = UnknownMetricFamily(
            "metallb_bgp_total_sent", "Number of total BGP messages sent", labels=peer
        )
        received = UnknownMetricFamily(
            "metallb_bgp_total_received", "Number of total BGP messages received", labels=peer
        )
        flaps = CounterMetricFamily(
            "speaker_bgp_session_flaps", "BGP sessions that left Established", labels=peer
        )
        restarts = CounterMetricFamily(
            "speaker_peer_restarts", "Peers restarted after an unexpected error", labels=peer
        )
        for runner in runners:
            await slicer.tick()
            label = [str(runner.plan.bgp.peer_address)]
            totals = runner.totals()
            bgp = runner.bgp
            established = bgp is not None and bgp.state is BgpState.ESTABLISHED
            up.add_metric(label, 1.0 if established else 0.0)
            updates.add_metric(label, float(totals.get("out:update", 0)))
            advertised = len(bgp.rib_out.advertised) if bgp is not None and established else 0
            prefixes.add_metric(label, float(advertised))
            for family, key in untyped:
                family.add_metric(label, float(totals.get(key, 0)))
            sent.add_metric(label, float(sum(v for k, v in totals.items() if k.startswith("out:"))))
            received.add_metric(
                label, float(sum(v for k, v in totals.items() if k.startswith("in:")))
            )
            flaps.add_metric(label, float(totals.get("flaps", 0)))
            restarts.add_metric(label, float(runner.crashes))
        return [up, updates, prefixes, *(family for family, _ in untyped), sent, received,
                flaps, restarts]  # fmt: skip

    async def _bfd(self, runners: list[PeerRunner], slicer: Slicer) -> list[Metric]:
        peer = ["peer"]
        up = GaugeMetricFamily(
            "metallb_bfd_session_up", "BFD session state (1 is up, 0 is down)", labels=peer
        )
        untyped = [(UnknownMetricFamily(n, h, labels=peer), k) for n, h, k in _BFD_UNTYPED]
        changes = CounterMetricFamily(
            "metallb_bfd_session_state_changes",
            "BFD session state changes (into and out of Up)",
            labels=peer,
        )
        sent = CounterMetricFamily(
            "metallb_bfd_control_packets_sent", "BFD control packets sent", labels=peer
        )
        received = CounterMetricFamily(
            "metallb_bfd_control_packets_received", "BFD control packets received", labels=peer
        )
        flaps = CounterMetricFamily(
            "speaker_bfd_flaps", "BFD sessions that went from Up to Down", labels=peer
        )
        rejected = CounterMetricFamily(
            "speaker_bfd_rejected_packets",
            "BFD packets dropped by the session, by reason",
            labels=["peer", "reason"],
        )
        for runner in runners:
            if runner.plan.bfd_target is None or runner.plan.bfd_profile is None:
                continue
            await slicer.tick()
            label = [str(runner.plan.bgp.peer_address)]
            bfd = runner.bfd
            up.add_metric(label, 1.0 if bfd is not None and bfd.state is BfdState.UP else 0.0)
            totals = runner.bfd_totals()
            for family, key in untyped:
                family.add_metric(label, float(totals.get(key, 0)))
            changes.add_metric(label, float(totals["up_events"] + totals["down_events"]))
            sent.add_metric(label, float(totals["control_tx"]))
            received.add_metric(label, float(totals["control_rx"]))
            flaps.add_metric(label, float(totals["down_events"]))
            if bfd is not None:
                for reason, count in sorted(bfd.statistics().discards.items()):
                    rejected.add_metric([*label, reason], float(count))
        unmatched = CounterMetricFamily(
            "speaker_bfd_unmatched_packets",
            "BFD packets that matched no session, by reason",
            labels=["reason"],
        )
        endpoint = self.speaker.endpoint
        if endpoint is not None:
            for reason, count in sorted(endpoint.discards.items()):
                unmatched.add_metric([reason], float(count))
        return [up, *(family for family, _ in untyped), changes, sent, received, flaps,
                rejected, unmatched]  # fmt: skip

    async def _histograms(self, slicer: Slicer) -> list[Metric]:
        out: list[Metric] = []
        for name, doc, table in (
            (
                "speaker_bfd_detection_to_teardown_seconds",
                "From BFD detecting a path failure to the BGP Cease NOTIFICATION being written"
                " (to the socket closing when no NOTIFICATION went out)",
                self._detection,
            ),
            (
                "speaker_bgp_teardown_to_reannounce_seconds",
                "From a BFD teardown to the routes being announced again",
                self._reannounce,
            ),
        ):
            family = HistogramMetricFamily(name, doc, labels=["peer"])
            for label, histogram in sorted(table.items()):
                await slicer.tick()
                family.add_metric([label], histogram.buckets(), histogram.sum)
            out.append(family)
        return out

    def _config(self) -> list[Metric]:
        speaker = self.speaker
        out: list[Metric] = []
        for name, doc, value in (
            (
                "speaker_config_loaded",
                "1 when a valid configuration is loaded",
                speaker.config_loaded,
            ),
            (
                "speaker_config_stale",
                "1 when the last reload was rejected: the running configuration is not the file's",
                speaker.config_stale,
            ),
            (
                "metallb_k8s_client_config_loaded_bool",
                "1 if the MetalLB configuration was successfully loaded at least once",
                speaker.config_loaded,
            ),
            (
                "metallb_k8s_client_config_stale_bool",
                "1 if running on a stale configuration, because the latest config failed to load",
                speaker.config_stale,
            ),
        ):
            out.append(GaugeMetricFamily(name, doc, value=1.0 if value else 0.0))
        reloads = CounterMetricFamily(
            "speaker_config_reloads",
            "Configuration reloads (SIGHUP or speaker reload), by result",
            labels=["result"],
        )
        reloads.add_metric(["applied"], float(speaker.reloads))
        reloads.add_metric(["rejected"], float(speaker.reload_failures))
        return [*out, reloads]

    async def _services(self, slicer: Slicer) -> list[Metric]:
        speaker = self.speaker
        services = speaker.derived.services
        announced_services = await self._announced(slicer)
        counts = GaugeMetricFamily(
            "speaker_services",
            "Services in the configuration, healthy, and announced to an established peer",
            labels=["state"],
        )
        healthy_count = 0
        for service in services:  # 65,536 lookups at once: a 5-20 ms step
            healthy_count += service in speaker.healthy
            await slicer.tick()
        counts.add_metric(["configured"], float(len(services)))
        counts.add_metric(["healthy"], float(healthy_count))
        counts.add_metric(["announced"], float(len(announced_services)))
        limit = speaker.config.metrics.service_series_limit
        if len(services) > limit:
            if self._over_limit is not speaker.derived:
                self._over_limit = speaker.derived
                log.info("metrics: %d services is over metrics.service_series_limit (%d):"
                         " speaker_service_* series are left out; speaker_services counts"
                         " them", len(services), limit)  # fmt: skip
            return [counts]
        healthy = GaugeMetricFamily(
            "speaker_service_healthy",
            "1 when the service's health check passes (or it has none)",
            labels=["service"],
        )
        announced = GaugeMetricFamily(
            "speaker_service_announced",
            "1 when the service's address is announced to at least one established peer",
            labels=["service"],
        )
        for service in services:
            await slicer.tick()
            healthy.add_metric([service], 1.0 if service in speaker.healthy else 0.0)
            announced.add_metric([service], 1.0 if service in announced_services else 0.0)
        return [counts, healthy, announced]

    async def _service_prefixes(self, slicer: Slicer) -> dict[str, list[tuple[int, Prefix]]]:
        """Per service: the prefix each advertisement of its pool announces it as
        (computed once per configuration)."""
        derived = self.speaker.derived
        if self._prefixes is not None and self._prefixes[0] is derived:
            return self._prefixes[1]
        config, out = derived.config, {}
        for service in config.services:
            await slicer.tick()
            address = service.address or derived.addresses.get(service.name)
            if address is None or service.pool is None:
                continue
            out[service.name] = [
                (i, ipaddress.ip_network((address, ad.length_for(address.version)), strict=False))
                for i, ad in enumerate(config.advertisements)
                if ad.selects_pool(service.pool)
            ]
        # The previous configuration's table (65,536 prefixes): freed in slices, not
        # at once in whichever step drops it.
        box: list[object] = [self._prefixes]
        self._prefixes = (derived, out)
        await slicer.free(box)
        return out

    async def _announced(self, slicer: Slicer) -> set[str]:
        """Services whose prefix an established peer (BFD up, if it has BFD) holds from
        us: a few dict lookups per service and peer, whatever the number of routes."""
        prefixes = await self._service_prefixes(slicer)
        advertisements = self.speaker.config.advertisements
        sessions = []
        for runner in list(self.speaker.peers.values()):
            await slicer.tick()
            bgp = runner.bgp
            if bgp is None or bgp.state is not BgpState.ESTABLISHED:
                continue
            if bfd_status(runner) not in (None, "up"):
                continue
            ads = frozenset(
                i for i, ad in enumerate(advertisements) if ad.selects_peer(runner.name)
            )
            sessions.append((ads, bgp.rib_out.desired, bgp.rib_out.advertised))
        out = set()
        for service, pairs in prefixes.items():
            await slicer.tick()
            if any(
                i in ads and prefix in desired and prefix in advertised
                for ads, desired, advertised in sessions
                for i, prefix in pairs
            ):
                out.add(service)
        return out

    def _loop(self) -> list[Metric]:
        monitor = self.monitor
        if monitor is None:
            return []
        lag = HistogramMetricFamily(
            "speaker_event_loop_lag_seconds",
            "How late a periodic sleep in the speaker's event loop woke (BFD packets are"
            " delayed as much)",
        )
        lag.add_metric([], monitor.lag.buckets(), monitor.lag.sum)
        longest = monitor.longest_step()
        step = GaugeMetricFamily(
            "speaker_event_loop_longest_step_seconds",
            f"Longest uninterrupted task step of the event loop in the last"
            f" {monitor.steps.window:g} s",
            value=0.0 if longest is None else longest.seconds,
        )
        slow = CounterMetricFamily(
            "speaker_event_loop_slow_steps",
            f"Task steps longer than {monitor.warn_step * 1000:g} ms",
            value=float(monitor.slow_steps),
        )
        return [lag, step, slow]


# ---- HTTP/1.0 --------------------------------------------------------------------------------

_MAX_HEADER = 16 * 1024
_READ_TIMEOUT = 5.0


def _response(
    status: str, body: bytes | list[bytes], content_type: str, *, head: bool = False
) -> list[bytes]:
    pieces = [body] if isinstance(body, bytes) else body
    header = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {sum(len(p) for p in pieces)}\r\nConnection: close\r\n\r\n"
    )
    return [header.encode("ascii"), *([] if head else pieces)]


async def respond(
    collector: SpeakerCollector, request_head: bytes, path: str = "/metrics"
) -> list[bytes]:
    """The whole HTTP response for one request head (request line + headers), in
    pieces to send one after the other."""
    line = request_head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) < 2:
        return _response("400 Bad Request", b"bad request\n", "text/plain")
    method, target = parts[0], parts[1].split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return _response("405 Method Not Allowed", b"GET only\n", "text/plain")
    if target == path:
        pieces = await collector.scrape_pieces()
        return _response("200 OK", pieces, CONTENT_TYPE, head=method == "HEAD")
    if target == "/":
        body = f'<html><body><a href="{path}">metrics</a></body></html>\n'.encode()
        return _response("200 OK", body, "text/html", head=method == "HEAD")
    return _response("404 Not Found", b"not found\n", "text/plain", head=method == "HEAD")


async def _handle(collector: SpeakerCollector, stream: trio.SocketStream) -> None:
    # Nothing may escape into the listener's nursery (the process root).
    trio.lowlevel.current_task().name = "metrics scrape"  # as the loop monitor says
    try:
        async with stream:
            head = bytearray()
            with trio.move_on_after(_READ_TIMEOUT):
                while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < _MAX_HEADER:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    head += chunk
            if not head:
                return
            try:
                # The scrape's samples live over many loop steps: no full collection
                # scanning them (speaker.gcpause).
                with gcpause.paused():
                    response = await respond(collector, bytes(head))
            except Exception:  # a bug must not take the speaker down
                log.exception("metrics: scrape failed")
                response = _response("500 Internal Server Error", b"error\n", "text/plain")
            with trio.move_on_after(_READ_TIMEOUT):
                for piece in response:
                    await stream.send_all(piece)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    except Exception:
        log.exception("metrics: connection failed")


async def serve_metrics(
    speaker: Speaker,
    host: str,
    port: int,
    *,
    monitor: LoopMonitor | None = None,
    task_status: trio.TaskStatus[list[Any]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` on ``host:port``; ``task_status.started`` gets the
    listeners (a test binding port 0 reads the port from them). ``monitor`` adds the
    event loop's lag."""
    collector = SpeakerCollector(speaker, monitor)

    async def handler(stream: trio.SocketStream) -> None:
        await _handle(collector, stream)

    # Bound here, before any nursery: a port in use raises a plain OSError.
    listeners = await trio.open_tcp_listeners(port, host=host)
    log.info("metrics at http://%s/metrics",
             f"[{host}]:{port}" if ":" in host else f"{host}:{port}")  # fmt: skip
    task_status.started(listeners)
    await trio.serve_listeners(handler, listeners)
