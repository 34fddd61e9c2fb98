"""Prometheus metrics: ``http://[metrics] address/metrics`` (127.0.0.1:7472).

A custom collector builds every metric family from the speaker's state at scrape
time; the tiny HTTP/1.0 server runs in the speaker's Trio loop and calls
``generate_latest`` there, so no thread ever reads the state concurrently.

MetalLB's series keep MetalLB's exact exposed names (label ``peer`` = the peer's
address, as FRR-K8s uses), so its dashboards and alerts work unchanged. MetalLB's FRR
sidecar exposes most message and packet counters as Go counters *without* a
``_total`` suffix (``metallb_bgp_opens_sent``); prometheus_client would append
``_total`` to a counter, so those are exposed as untyped families, which keeps the
names exact (PromQL's ``rate()`` works on them the same). See ``docs/metrics.md``.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector

from protocols.bfd import State as BfdState
from protocols.bgp import State as BgpState
from speaker.app import Speaker
from speaker.control import explain_routes
from speaker.peer import PeerRunner

__all__ = [
    "CONTENT_TYPE",
    "DETECTION_BUCKETS",
    "METALLB_NAMES",
    "REANNOUNCE_BUCKETS",
    "SpeakerCollector",
    "make_registry",
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


class _Histogram:
    """Cumulative bucket counts for one label set (kept by the collector, so the
    histogram stays monotonic when a reload replaces a peer's runner)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        if math.isnan(value):
            return
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == math.inf else repr(bound), float(running)))
        return out


class SpeakerCollector(Collector):
    """Builds every family from ``speaker`` at each ``collect()``."""

    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker
        #: Runners seen at the last scrape (kept alive so that what a runner records
        #: between the last scrape and its removal by a reload is still folded in).
        self._live: list[PeerRunner] = []
        #: How many failovers / re-announce delays of each runner are folded in.
        self._folded: weakref.WeakKeyDictionary[PeerRunner, tuple[int, int]] = (
            weakref.WeakKeyDictionary()
        )
        self._detection: dict[str, _Histogram] = {}
        self._reannounce: dict[str, _Histogram] = {}

    def describe(self) -> Iterable[Metric]:
        return []  # no describe-time collect: state is read only at scrape time

    # -- histograms fed from every runner, including ones a reload replaced --------------

    def _fold(self) -> None:
        current = list(self.speaker.peers.values())
        for runner in {id(r): r for r in [*self._live, *current]}.values():
            label = str(runner.plan.bgp.peer_address)
            failovers, reannounces = self._folded.get(runner, (0, 0))
            detection = self._detection.setdefault(label, _Histogram(DETECTION_BUCKETS))
            for record in runner.failovers.since(failovers):
                end = record.notification_at or record.closed_at
                if end is not None:
                    detection.observe(end - record.detected_at)
            reannounce = self._reannounce.setdefault(label, _Histogram(REANNOUNCE_BUCKETS))
            for delay in runner.reannounce_delays.since(reannounces):
                reannounce.observe(delay)
            self._folded[runner] = (runner.failovers.total, runner.reannounce_delays.total)
        self._live = current

    def collect(self) -> Iterator[Metric]:
        self._fold()
        yield from self._bgp()
        yield from self._bfd()
        yield from self._histograms()
        yield from self._config()
        yield from self._services()

    def _bgp(self) -> Iterator[Metric]:
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
        for runner in self.speaker.peers.values():
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
        yield up
        yield updates
        yield prefixes
        yield from (family for family, _ in untyped)
        yield sent
        yield received
        yield flaps
        yield restarts

    def _bfd(self) -> Iterator[Metric]:
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
        for runner in self.speaker.peers.values():
            if runner.plan.bfd_target is None or runner.plan.bfd_profile is None:
                continue
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
        yield up
        yield from (family for family, _ in untyped)
        yield changes
        yield sent
        yield received
        yield flaps
        yield rejected
        yield unmatched

    def _histograms(self) -> Iterator[Metric]:
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
                family.add_metric([label], histogram.buckets(), histogram.sum)
            yield family

    def _config(self) -> Iterator[Metric]:
        speaker = self.speaker
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
            yield GaugeMetricFamily(name, doc, value=1.0 if value else 0.0)
        reloads = CounterMetricFamily(
            "speaker_config_reloads",
            "Configuration reloads (SIGHUP or speaker reload), by result",
            labels=["result"],
        )
        reloads.add_metric(["applied"], float(speaker.reloads))
        reloads.add_metric(["rejected"], float(speaker.reload_failures))
        yield reloads

    def _services(self) -> Iterator[Metric]:
        speaker = self.speaker
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
        reasons: dict[str, bool] = {s: False for s in speaker.derived.services}
        for row in explain_routes(speaker):
            for entry in row["services"]:
                if entry["reason"] == "announced":
                    reasons[entry["service"]] = True
        for service in speaker.derived.services:
            healthy.add_metric([service], 1.0 if service in speaker.healthy else 0.0)
            announced.add_metric([service], 1.0 if reasons.get(service) else 0.0)
        yield healthy
        yield announced


def make_registry(speaker: Speaker) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SpeakerCollector(speaker))
    return registry


# ---- HTTP/1.0 --------------------------------------------------------------------------------

_MAX_HEADER = 16 * 1024
_READ_TIMEOUT = 5.0


def _response(status: str, body: bytes, content_type: str, *, head: bool = False) -> bytes:
    header = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return header.encode("ascii") + (b"" if head else body)


def render(registry: CollectorRegistry, request_head: bytes, path: str = "/metrics") -> bytes:
    """The whole HTTP response for one request head (request line + headers)."""
    line = request_head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) < 2:
        return _response("400 Bad Request", b"bad request\n", "text/plain")
    method, target = parts[0], parts[1].split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return _response("405 Method Not Allowed", b"GET only\n", "text/plain")
    if target == path:
        return _response("200 OK", generate_latest(registry), CONTENT_TYPE, head=method == "HEAD")
    if target == "/":
        body = f'<html><body><a href="{path}">metrics</a></body></html>\n'.encode()
        return _response("200 OK", body, "text/html", head=method == "HEAD")
    return _response("404 Not Found", b"not found\n", "text/plain", head=method == "HEAD")


async def _handle(registry: CollectorRegistry, stream: trio.SocketStream) -> None:
    async with stream:
        head = bytearray()
        with trio.move_on_after(_READ_TIMEOUT):
            while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < _MAX_HEADER:
                try:
                    chunk = await stream.receive_some(4096)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not chunk:
                    break
                head += chunk
        if not head:
            return
        try:
            response = render(registry, bytes(head))
        except Exception:  # a bug must not take the speaker down
            log.exception("metrics: scrape failed")
            response = _response("500 Internal Server Error", b"error\n", "text/plain")
        try:
            await stream.send_all(response)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def serve_metrics(
    speaker: Speaker,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[list[Any]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` on ``host:port``; ``task_status.started`` gets the
    listeners (a test binding port 0 reads the port from them)."""
    registry = make_registry(speaker)

    async def handler(stream: trio.SocketStream) -> None:
        await _handle(registry, stream)

    # Bound here, before any nursery: a port in use raises a plain OSError.
    listeners = await trio.open_tcp_listeners(port, host=host)
    log.info("metrics at http://%s/metrics",
             f"[{host}]:{port}" if ":" in host else f"{host}:{port}")  # fmt: skip
    task_status.started(listeners)
    await trio.serve_listeners(handler, listeners)
