"""Prometheus metrics: ``http://[metrics] address/metrics`` (127.0.0.1:7472).

:class:`SpeakerCollector` builds every metric family from the speaker's state at
scrape time, in the speaker's Trio loop (no thread ever reads the state), and in
slices: it yields to the loop between peers and while rendering the text, so a
scrape at 1,000 peers or 65,536 services never holds the loop for more than
:data:`speaker.looplag.SLICE`.

A scrape costs the series it emits, not the routes or services behind them: prefix
counts are the sizes of each session's Adj-RIB-Out; the healthy count is the size of
the healthy set; which services are announced is derived from the sessions'
Adj-RIB-Outs once and kept until one of them changes (``AdjRibOut.version``), a
session comes or goes, or the configuration changes; the pools' address counts once
per configuration.

MetalLB's series have exactly the names, types, help texts and labels of MetalLB's
FRR mode (``frr-tools/metrics/collector/bgp.go`` and ``bfd.go`` in metallb/metallb):
``peer`` is ``"ip:port"`` on BGP series and ``"ip"`` on BFD series, ``vrf`` is
``"default"``, and its message and packet counters are counters whose names have no
``_total`` suffix (``metallb_bgp_opens_sent``), as Go's client exposes them. The text
is rendered here (prometheus_client would append ``_total`` to such a counter's
name). See ``docs/metrics.md``.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import trio

from protocols.bfd import State as BfdState
from protocols.bgp import RouteKey
from protocols.bgp import State as BgpState
from speaker import gcpause
from speaker.addresses import address_key
from speaker.app import Speaker
from speaker.bgp import BgpSession
from speaker.control import bfd_status, send_pieces
from speaker.looplag import Histogram, LoopMonitor, Slicer
from speaker.peer import PeerRunner
from speaker.plan import Derived

__all__ = [
    "CONTENT_TYPE",
    "DETECTION_BUCKETS",
    "METALLB_FRR_FAMILIES",
    "METALLB_NAMES",
    "REANNOUNCE_BUCKETS",
    "VRF",
    "Family",
    "SpeakerCollector",
    "bfd_label",
    "bgp_label",
    "respond",
    "serve_metrics",
]

log = logging.getLogger("speaker.metrics")

#: The text exposition format (0.0.4 is what every Prometheus version negotiates).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: The ``vrf`` label of MetalLB's series for a peer in the default VRF (a peer with
#: ``vrf`` has its VRF device's name there).
VRF = "default"

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

# (name, help, totals key) of MetalLB's BGP counters, in its collector's order
# (metallb_bgp_updates_total sits between notifications_sent and updates_total_received).
_BGP_COUNTERS = (
    ("metallb_bgp_opens_sent", "Number of BGP open messages sent", "out:open"),
    ("metallb_bgp_opens_received", "Number of BGP open messages received", "in:open"),
    ("metallb_bgp_notifications_sent", "Number of BGP notification messages sent",
     "out:notification"),
    ("metallb_bgp_updates_total", "Number of BGP UPDATE messages sent", "out:update"),
    ("metallb_bgp_updates_total_received", "Number of BGP UPDATE messages received",
     "in:update"),
    ("metallb_bgp_keepalives_sent", "Number of BGP keepalive messages sent", "out:keepalive"),
    ("metallb_bgp_keepalives_received", "Number of BGP keepalive messages received",
     "in:keepalive"),
    ("metallb_bgp_route_refresh_sent", "Number of BGP route refresh messages sent",
     "out:route-refresh"),
)  # fmt: skip

# (name, help, BFD totals key) of MetalLB's BFD counters; None: up + down events (our
# BFD hands every state change to BGP directly, where FRR's bfdd notifies zebra).
_BFD_COUNTERS = (
    ("metallb_bfd_control_packet_input", "Number of received BFD control packets", "control_rx"),
    ("metallb_bfd_control_packet_output", "Number of sent BFD control packets", "control_tx"),
    ("metallb_bfd_echo_packet_input", "Number of received BFD echo packets", "echo_rx"),
    ("metallb_bfd_echo_packet_output", "Number of sent BFD echo packets", "echo_tx"),
    ("metallb_bfd_session_up_events", "Number of BFD session up events", "up_events"),
    ("metallb_bfd_session_down_events", "Number of BFD session down events", "down_events"),
    ("metallb_bfd_zebra_notifications", "Number of BFD zebra notifications", None),
)

_BGP_UP = ("metallb_bgp_session_up", "BGP session state (1 is up, 0 is down)")
_BGP_PREFIXES = (
    "metallb_bgp_announced_prefixes_total",
    "Number of prefixes currently being advertised on the BGP session",
)
_BGP_TOTALS = (
    ("metallb_bgp_total_sent", "Number of total BGP messages sent", "out:"),
    ("metallb_bgp_total_received", "Number of total BGP messages received", "in:"),
)
_BFD_UP = ("metallb_bfd_session_up", "BFD session state (1 is up, 0 is down)")

#: MetalLB FRR mode's families as this speaker exposes them: (name, type, labels).
METALLB_FRR_FAMILIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (_BGP_UP[0], "gauge", ("peer", "vrf")),
    (_BGP_PREFIXES[0], "gauge", ("peer", "vrf")),
    *((n, "counter", ("peer", "vrf")) for n, _, _ in _BGP_COUNTERS),
    *((n, "counter", ("peer", "vrf")) for n, _, _ in _BGP_TOTALS),
    (_BFD_UP[0], "gauge", ("peer", "vrf")),
    *((n, "counter", ("peer", "vrf")) for n, _, _ in _BFD_COUNTERS),
)

#: Every ``metallb_`` name exposed (exactly as it appears in the text); the three
#: ``metallb_bfd_*_total`` ones are this speaker's own (docs/metrics.md).
METALLB_NAMES = (
    *(n for n, _, _ in METALLB_FRR_FAMILIES),
    "metallb_bfd_session_state_changes_total",
    "metallb_bfd_control_packets_sent_total",
    "metallb_bfd_control_packets_received_total",
    "metallb_allocator_addresses_in_use_total",
    "metallb_allocator_addresses_total",
    "metallb_k8s_client_config_loaded_bool",
    "metallb_k8s_client_config_stale_bool",
)


def _number(value: float) -> str:
    """A sample value as the text format writes it (``1.0``, ``+Inf``, ``NaN``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class Family:
    """One metric family of the text format, its sample lines rendered as they are
    added (``kind``: gauge, counter, histogram, untyped). The name is exposed as
    given: a counter gets no ``_total`` appended."""

    __slots__ = ("doc", "kind", "labels", "lines", "name")

    def __init__(self, name: str, doc: str, kind: str, labels: Sequence[str] = ()) -> None:
        self.name, self.doc, self.kind, self.labels = name, doc, kind, tuple(labels)
        self.lines: list[str] = []

    def add(
        self,
        values: Sequence[str],
        value: float,
        *,
        suffix: str = "",
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        pairs = (*zip(self.labels, values, strict=True), *extra)
        labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs)
        text = f"{{{labels}}}" if labels else ""
        self.lines.append(f"{self.name}{suffix}{text} {_number(value)}\n")

    def add_histogram(self, values: Sequence[str], histogram: Histogram) -> None:
        buckets = histogram.buckets()
        for le, count in buckets:
            self.add(values, count, suffix="_bucket", extra=(("le", le),))
        self.add(values, buckets[-1][1], suffix="_count")
        self.add(values, histogram.sum, suffix="_sum")

    def header(self) -> str:
        doc = self.doc.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.kind}\n"


#: Sample lines joined per step (about 1 us each).
_RENDER_LINES = 256


async def exposition(families: Iterable[Family], slicer: Slicer | None = None) -> list[bytes]:
    """The text format of ``families`` in pieces (to send one by one: joining 3 MB at
    1,000 peers is itself a 2 ms step), :data:`_RENDER_LINES` lines a piece."""
    slicer = slicer or Slicer()
    out: list[bytes] = []
    for family in families:
        out.append(family.header().encode())
        lines = family.lines
        for start in range(0, len(lines), _RENDER_LINES):
            out.append("".join(lines[start : start + _RENDER_LINES]).encode())
            await slicer.tick()
    return out


def bgp_label(runner: PeerRunner) -> str:
    """MetalLB FRR mode's ``peer`` of BGP series: ``ip:port`` (IPv6 unbracketed, as Go
    prints ``fmt.Sprintf("%s:%d", ip, port)``), the configured port."""
    bgp = runner.plan.bgp
    return f"{bgp.peer_address}:{bgp.peer_port}"


def bfd_label(runner: PeerRunner) -> str:
    """MetalLB FRR mode's ``peer`` of BFD series: the BFD peer's address."""
    target = runner.plan.bfd_target
    return str(target.peer if target is not None else runner.plan.bgp.peer_address)


#: Tables of one entry per service are kept as this many small ones: one dict of
#: 65,536 entries grows in a step of 1-2 ms (a set: about 1 ms), small ones in
#: microseconds.
_SHARDS = 64


class _Prefixes:
    """One configuration's services as announced: per service its (advertisement
    index, prefix) pairs, per prefix the services it is the prefix of (sharded)."""

    def __init__(self, derived: Derived) -> None:
        # Weakly: a cache holding the running config would make the one that drops
        # it (a scrape after a reload) free a whole replaced config in one step
        # (27 ms at 65,536 services, measured), after the reload's sliced free.
        self._derived = weakref.ref(derived)
        self._pairs: list[dict[str, list[tuple[int, RouteKey]]]] = [{} for _ in range(_SHARDS)]
        self._services: list[dict[RouteKey, list[str]]] = [{} for _ in range(_SHARDS)]

    def add(self, service: str, pairs: list[tuple[int, RouteKey]]) -> None:
        self._pairs[hash(service) % _SHARDS][service] = pairs
        for _, route in pairs:  # (by address: the low 8 bits of a key are its length)
            self._services[(route >> 8) % _SHARDS].setdefault(route, []).append(service)

    @property
    def derived(self) -> Derived | None:
        return self._derived()

    def pairs(self, service: str) -> list[tuple[int, RouteKey]]:
        return self._pairs[hash(service) % _SHARDS].get(service, [])

    def services(self, route: RouteKey) -> list[str]:
        return self._services[(route >> 8) % _SHARDS].get(route, [])

    def names(self) -> Iterator[str]:
        """Every service with prefixes."""
        for shard in self._pairs:
            yield from shard


class _Names:
    """A set of names kept as :data:`_SHARDS` small sets."""

    def __init__(self) -> None:
        self._shards: list[set[str]] = [set() for _ in range(_SHARDS)]
        self._count = 0

    def __contains__(self, name: str) -> bool:
        return name in self._shards[hash(name) % _SHARDS]

    def __len__(self) -> int:
        return self._count

    def add(self, name: str) -> None:
        shard = self._shards[hash(name) % _SHARDS]
        if name not in shard:
            shard.add(name)
            self._count += 1

    def discard(self, name: str) -> None:
        shard = self._shards[hash(name) % _SHARDS]
        if name in shard:
            shard.remove(name)
            self._count -= 1


class _Announced:
    """The announced services and what they were derived from: the prefix tables,
    the sessions that count (see ``_sessions``), each with the indexes of the
    advertisements that select its peer and the Adj-RIB-Out version looked at."""

    def __init__(
        self,
        prefixes: _Prefixes,
        sessions: tuple[tuple[PeerRunner, BgpSession], ...],
        counted: list[tuple[frozenset[int], BgpSession]],
        versions: list[list[int]],
        announced: _Names,
    ) -> None:
        self.prefixes, self.sessions, self.counted = prefixes, sessions, counted
        self.versions, self.announced = versions, announced


class SpeakerCollector:
    """Builds every family from ``speaker`` at each :meth:`scrape`; ``monitor`` (the
    process's loop monitor) adds the ``speaker_event_loop_*`` families."""

    def __init__(self, speaker: Speaker, monitor: LoopMonitor | None = None) -> None:
        self.speaker = speaker
        self.monitor = monitor
        #: Per config: each service's (advertisement index, prefix) pairs and back.
        self._prefixes: _Prefixes | None = None
        #: Per config: each pool's (addresses in use, addresses).
        # (The caches refer to the config they were made for weakly: see _Prefixes.)
        self._pools: tuple[weakref.ref[Derived], list[tuple[str, int, int]]] | None = None
        #: The announced services and what they were derived from (see _announced).
        self._announced_state: _Announced | None = None
        self._announced_lock = trio.Lock()
        #: Times the announced services were derived from scratch, and services
        #: looked at again since (tests, benchmarks).
        self.announced_computed = 0
        self.announced_updated = 0
        #: The config whose service count was logged as over the series limit.
        self._over_limit: weakref.ref[Derived] | None = None
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
        """The exposition text in pieces, built and rendered in slices (not paced by
        the loop duty: a scrape has a deadline, and is small but after a reload)."""
        slicer = Slicer(paced=False)
        families = await self.families(slicer)
        text = await exposition(families, slicer)
        for family in families:  # 1,000 peers: ~50,000 lines to free, not in one step
            await slicer.release(family.lines)
        return text

    async def families(self, slicer: Slicer | None = None) -> list[Family]:
        slicer = slicer or Slicer()
        await self._fold(slicer)
        runners = list(self.speaker.peers.values())
        return [
            *await self._bgp(runners, slicer),
            *await self._bfd(runners, slicer),
            *await self._histograms(slicer),
            *self._config(),
            *await self._allocator(slicer),
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

    async def _bgp(self, runners: list[PeerRunner], slicer: Slicer) -> list[Family]:
        metallb = ("peer", "vrf")
        up = Family(*_BGP_UP, "gauge", metallb)
        prefixes = Family(*_BGP_PREFIXES, "gauge", metallb)
        counters = [(Family(n, h, "counter", metallb), k) for n, h, k in _BGP_COUNTERS]
        totals_ = [(Family(n, h, "counter", metallb), k) for n, h, k in _BGP_TOTALS]
        flaps = Family("speaker_bgp_session_flaps_total", "BGP sessions that left Established",
                       "counter", ["peer"])  # fmt: skip
        restarts = Family("speaker_peer_restarts_total",
                          "Peers restarted after an unexpected error", "counter",
                          ["peer"])  # fmt: skip
        peer_as = Family("speaker_bgp_peer_as",
                         "The peer's AS: learned from its OPEN (peer_asn internal/external)"
                         " or configured", "gauge", ["peer"])  # fmt: skip
        draining = Family("speaker_peer_draining",
                          "1 while every route to the peer is drained (RFC 8326"
                          " GRACEFUL_SHUTDOWN: speaker drain, drain_time)", "gauge",
                          ["peer"])  # fmt: skip
        for runner in runners:
            await slicer.tick()
            label = [bgp_label(runner), runner.plan.bgp.vrf or VRF]
            ours = [str(runner.plan.bgp.peer_address)]
            totals = runner.totals()
            bgp = runner.bgp
            established = bgp is not None and bgp.state is BgpState.ESTABLISHED
            up.add(label, 1.0 if established else 0.0)
            advertised = len(bgp.rib_out.advertised) if bgp is not None and established else 0
            prefixes.add(label, float(advertised))
            for family, key in counters:
                family.add(label, float(totals.get(key, 0)))
            for family, prefix in totals_:
                family.add(label, float(sum(v for k, v in totals.items() if k.startswith(prefix))))
            flaps.add(ours, float(totals.get("flaps", 0)))
            restarts.add(ours, float(runner.crashes))
            negotiated = bgp.negotiated if bgp is not None else None
            asn = negotiated.peer_asn if negotiated is not None else runner.plan.bgp.peer_asn
            if asn is not None:  # "external" before its first OPEN: no sample
                peer_as.add(ours, float(asn))
            draining.add(ours, 1.0 if runner.drained else 0.0)
        return [up, prefixes, *(f for f, _ in counters), *(f for f, _ in totals_), flaps,
                restarts, peer_as, draining]  # fmt: skip

    async def _bfd(self, runners: list[PeerRunner], slicer: Slicer) -> list[Family]:
        metallb, peer = ("peer", "vrf"), ("peer",)
        up = Family(*_BFD_UP, "gauge", metallb)
        counters = [(Family(n, h, "counter", metallb), k) for n, h, k in _BFD_COUNTERS]
        changes = Family(
            "metallb_bfd_session_state_changes_total",
            "BFD session state changes (into and out of Up)",
            "counter",
            peer,
        )
        sent = Family(
            "metallb_bfd_control_packets_sent_total", "BFD control packets sent", "counter", peer
        )
        received = Family(
            "metallb_bfd_control_packets_received_total",
            "BFD control packets received",
            "counter",
            peer,
        )
        flaps = Family(
            "speaker_bfd_flaps_total", "BFD sessions that went from Up to Down", "counter", peer
        )
        rejected = Family("speaker_bfd_rejected_packets_total",
                          "BFD packets dropped by the session, by reason", "counter",
                          ("peer", "reason"))  # fmt: skip
        for runner in runners:
            if runner.plan.bfd_target is None or runner.plan.bfd_profile is None:
                continue
            await slicer.tick()
            label = [bfd_label(runner), runner.plan.bgp.vrf or VRF]
            ours = [str(runner.plan.bgp.peer_address)]
            bfd = runner.bfd
            up.add(label, 1.0 if bfd is not None and bfd.state is BfdState.UP else 0.0)
            totals = runner.bfd_totals()
            events = totals["up_events"] + totals["down_events"]
            for family, key in counters:
                family.add(label, float(events if key is None else totals.get(key, 0)))
            changes.add(ours, float(events))
            sent.add(ours, float(totals["control_tx"]))
            received.add(ours, float(totals["control_rx"]))
            flaps.add(ours, float(totals["down_events"]))
            if bfd is not None:
                for reason, count in sorted(bfd.statistics().discards.items()):
                    rejected.add([*ours, reason], float(count))
        unmatched = Family("speaker_bfd_unmatched_packets_total",
                           "BFD packets that matched no session, by reason", "counter",
                           ["reason"])  # fmt: skip
        endpoint = self.speaker.endpoint
        if endpoint is not None:
            for reason, count in sorted(endpoint.discards.items()):
                unmatched.add([reason], float(count))
        return [up, *(f for f, _ in counters), changes, sent, received, flaps, rejected,
                unmatched]  # fmt: skip

    async def _histograms(self, slicer: Slicer) -> list[Family]:
        out: list[Family] = []
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
            family = Family(name, doc, "histogram", ["peer"])
            for label, histogram in sorted(table.items()):
                await slicer.tick()
                family.add_histogram([label], histogram)
            out.append(family)
        return out

    def _config(self) -> list[Family]:
        speaker = self.speaker
        out: list[Family] = []
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
            family = Family(name, doc, "gauge")
            family.add([], 1.0 if value else 0.0)
            out.append(family)
        reloads = Family("speaker_config_reloads_total",
                         "Configuration reloads (SIGHUP or speaker reload), by result", "counter",
                         ["result"])  # fmt: skip
        reloads.add(["applied"], float(speaker.reloads))
        reloads.add(["rejected"], float(speaker.reload_failures))
        return [*out, reloads]

    async def _allocator(self, slicer: Slicer) -> list[Family]:
        """MetalLB's allocator gauges per pool: the pool's addresses that a service
        holds (assigned from the pool or fixed in it), and the pool's size. Computed
        once per configuration (addresses change only with it)."""
        derived = self.speaker.derived
        if self._pools is None or self._pools[0]() is not derived:
            config = derived.config
            # Addresses are unique among services (validation, allocation): a count.
            used = dict.fromkeys((pool.name for pool in config.pools), 0)
            for service in config.services:
                await slicer.tick()
                address = service.address or derived.addresses.get(service.name)
                if address is None:
                    continue
                pool = config.pool(service.pool) if service.pool else config.pool_of(address)
                if pool is not None and address in pool:
                    used[pool.name] += 1
            rows = [(pool.name, used[pool.name], pool.size) for pool in config.pools]
            self._pools = (weakref.ref(derived), rows)
        in_use = Family(
            "metallb_allocator_addresses_in_use_total",
            "Number of IP addresses in use, per pool",
            "gauge",
            ["pool"],
        )
        total = Family("metallb_allocator_addresses_total",
                       "Number of usable IP addresses, per pool", "gauge", ["pool"])  # fmt: skip
        for name, held, size in self._pools[1]:
            in_use.add([name], float(held))
            total.add([name], float(size))
        return [in_use, total]

    async def _services(self, slicer: Slicer) -> list[Family]:
        speaker = self.speaker
        services = speaker.derived.services
        announced_services = await self._announced(slicer)
        counts = Family("speaker_services",
                        "Services in the configuration, healthy, announced to an"
                        " established peer, and drained", "gauge", ["state"])  # fmt: skip
        # ``healthy`` holds services of the running configuration only (a reload drops
        # the others from it, a slice at a time): its size, not a walk of the services.
        counts.add(["configured"], float(len(services)))
        counts.add(["healthy"], float(min(len(speaker.healthy), len(services))))
        counts.add(["announced"], float(len(announced_services)))
        counts.add(["drained"], float(len(speaker.drain.services)))  # RFC 8326
        limit = speaker.config.metrics.service_series_limit
        if len(services) > limit:
            if self._over_limit is None or self._over_limit() is not speaker.derived:
                self._over_limit = weakref.ref(speaker.derived)
                log.info("metrics: %d services is over metrics.service_series_limit (%d):"
                         " speaker_service_* series are left out; speaker_services counts"
                         " them", len(services), limit)  # fmt: skip
            return [counts]
        healthy = Family("speaker_service_healthy",
                         "1 when the service's health check passes (or it has none)", "gauge",
                         ["service"])  # fmt: skip
        announced = Family("speaker_service_announced",
                           "1 when the service's address is announced to at least one"
                           " established peer", "gauge", ["service"])  # fmt: skip
        for service in services:
            await slicer.tick()
            healthy.add([service], 1.0 if service in speaker.healthy else 0.0)
            announced.add([service], 1.0 if service in announced_services else 0.0)
        return [counts, healthy, announced]

    async def _service_prefixes(self, slicer: Slicer) -> _Prefixes:
        """Per service: the prefix each advertisement of its pool announces it as;
        per prefix: the services it is the prefix of (computed once per
        configuration)."""
        derived = self.speaker.derived
        if self._prefixes is not None and self._prefixes.derived is derived:
            return self._prefixes
        config = derived.config
        table = _Prefixes(derived)
        for service in config.services:
            await slicer.tick()
            address = service.address or derived.addresses.get(service.name)
            if address is None or service.pool is None:
                continue
            pairs = [
                (i, address_key(address, ad.length_for(address.version)))
                for i, ad in enumerate(config.advertisements)
                if ad.selects_pool(service.pool)
            ]
            table.add(service.name, pairs)
        # The previous configuration's tables (65,536 prefixes) and the announced
        # services derived from them: freed in slices, not at once in whichever step
        # drops them.
        box: list[object] = []
        if self._prefixes is not None:
            box += [self._prefixes._pairs, self._prefixes._services]
        if self._announced_state is not None:
            box.append(self._announced_state.announced._shards)
        self._prefixes, self._announced_state = table, None
        if box:  # (Slicer.free needs something to free)
            await slicer.free(box)
        return table

    async def _sessions(self, slicer: Slicer) -> tuple[tuple[PeerRunner, BgpSession], ...]:
        """The sessions that count: Established, and BFD up if the peer has BFD."""
        out = []
        for runner in list(self.speaker.peers.values()):
            await slicer.tick()
            bgp = runner.bgp
            if (
                bgp is not None
                and bgp.state is BgpState.ESTABLISHED
                and bfd_status(runner) in (None, "up")
            ):
                out.append((runner, bgp))
        return tuple(out)

    async def _announced(self, slicer: Slicer) -> _Names:
        """Services whose prefix an established peer (BFD up, if it has BFD) holds from
        us (desired and advertised in its Adj-RIB-Out), kept up to date by
        difference: the services of the prefixes each such session's Adj-RIB-Out
        logged as changed since the last scrape (``AdjRibOut.changes``) are looked at
        again, a few dict lookups each. Everything is derived again (in slices) only
        when the configuration or the set of such sessions changed, or an
        Adj-RIB-Out changed everything (new table, session up or down) or more than
        its log holds."""
        async with self._announced_lock:
            prefixes = await self._service_prefixes(slicer)
            sessions = await self._sessions(slicer)
            state = self._announced_state
            if state is None or state.prefixes is not prefixes or state.sessions != sessions:
                return await self._derive_announced(prefixes, sessions, slicer)
            touched: set[str] = set()
            for (_, bgp), versions in zip(sessions, state.versions, strict=True):
                rib = bgp.rib_out
                seen, now = versions[0], rib.version
                if now == seen:
                    continue
                if rib.reset_at > seen or now - seen > len(rib.changes):
                    return await self._derive_announced(prefixes, sessions, slicer)
                versions[0] = now
                for prefix in list(rib.changes)[len(rib.changes) - (now - seen) :]:
                    touched.update(prefixes.services(prefix))
                await slicer.tick()
            announced = state.announced
            for service in touched:
                await slicer.tick()
                if self._is_announced(service, prefixes, state.counted):
                    announced.add(service)
                else:
                    announced.discard(service)
            self.announced_updated += len(touched)
            return announced

    async def _derive_announced(
        self,
        prefixes: _Prefixes,
        sessions: tuple[tuple[PeerRunner, BgpSession], ...],
        slicer: Slicer,
    ) -> _Names:
        advertisements = self.speaker.config.advertisements
        counted = []
        versions = []
        for runner, bgp in sessions:
            await slicer.tick()
            ads = frozenset(
                i for i, ad in enumerate(advertisements) if ad.selects_peer(runner.name)
            )
            counted.append((ads, bgp))
            # Read before deriving: what changes meanwhile is looked at again next time.
            versions.append([bgp.rib_out.version])
        announced = _Names()
        if counted:
            for service in prefixes.names():
                await slicer.tick()
                if self._is_announced(service, prefixes, counted):
                    announced.add(service)
        old = self._announced_state
        self._announced_state = _Announced(prefixes, sessions, counted, versions, announced)
        self.announced_computed += 1
        if old is not None:  # 65,536 names at once is a millisecond step: a shard a time
            shards = old.announced._shards
            while shards:
                shards.pop()
                await slicer.tick()
        return announced

    @staticmethod
    def _is_announced(
        service: str, prefixes: _Prefixes, counted: Sequence[tuple[frozenset[int], BgpSession]]
    ) -> bool:
        return any(
            i in ads and prefix in rib.desired and prefix in rib.advertised
            for ads, bgp in counted
            for rib in (bgp.rib_out,)
            for i, prefix in prefixes.pairs(service)
        )

    def _loop(self) -> list[Family]:
        monitor = self.monitor
        if monitor is None:
            return []
        lag = Family("speaker_event_loop_lag_seconds",
                     "How late a periodic sleep in the speaker's event loop woke (BFD packets"
                     " are delayed as much)", "histogram")  # fmt: skip
        lag.add_histogram([], monitor.lag)
        longest = monitor.longest_step()
        step = Family("speaker_event_loop_longest_step_seconds",
                      f"Longest uninterrupted task step of the event loop in the last"
                      f" {monitor.steps.window:g} s", "gauge")  # fmt: skip
        step.add([], 0.0 if longest is None else longest.seconds)
        cpu = monitor.longest_cpu_step()
        cpu_step = Family("speaker_event_loop_longest_step_cpu_seconds",
                          f"CPU time of the task step that used the most in the last"
                          f" {monitor.steps.window:g} s (our own code's part of a stall;"
                          f" the rest of a longer step is the host not running us)",
                          "gauge")  # fmt: skip
        cpu_step.add([], 0.0 if cpu is None else cpu.seconds)
        slow = Family(
            "speaker_event_loop_slow_steps_total",
            f"Task steps longer than {monitor.warn_step * 1000:g} ms",
            "counter",
        )
        slow.add([], float(monitor.slow_steps))
        return [lag, step, cpu_step, slow]


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
                # scanning them
                # (speaker.gcpause), and no replaced config freed by it (speaker.readers).
                with gcpause.paused(), collector.speaker.readers.reading():
                    response = await respond(collector, bytes(head))
            except Exception:  # a bug must not take the speaker down
                log.exception("metrics: scrape failed")
                response = _response("500 Internal Server Error", b"error\n", "text/plain")
            with trio.move_on_after(_READ_TIMEOUT):
                await send_pieces(stream, response)
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
