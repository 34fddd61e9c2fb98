"""Reading the running speaker: the records of :mod:`speaker.view.records` for its
peers, BFD sessions, routes, services and config, called in its Trio loop.

Replies whose size grows with peers, services or routes are built in slices (a
checkpoint every :data:`speaker.looplag.SLICE` of work), so a ``show routes`` at
65,536 routes never holds the loop for more than a slice: each peer's row is a
consistent snapshot, two rows may be a few milliseconds apart.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections import Counter
from typing import Any

import trio

from protocols.bgp import State as BgpState
from protocols.bgp import key_prefix
from speaker import __version__
from speaker.app import Speaker
from speaker.bfd.runtime import BfdEndpoint, BfdSession
from speaker.looplag import LoopMonitor, Slicer
from speaker.peer import PeerRunner
from speaker.view.errors import RequestError
from speaker.view.records import (
    STATUS_TEXT,
    bfd_counters_record,
    bfd_peer_record,
    bgp_neighbor_record,
    bgp_summary_row,
    redact,
    redact_fields,
    remote_as,
    route_record,
)

__all__ = [
    "EncodedArray",
    "bfd_counters",
    "bfd_peers",
    "bfd_record",
    "bfd_runners",
    "bfd_status",
    "bgp_neighbor",
    "bgp_summary",
    "config_view",
    "explain_routes",
    "find_runner",
    "routes",
    "status",
]


class EncodedArray:
    """A JSON array whose items are already encoded, in comma-separated runs (the
    reply encoder writes them as they are). ``show routes`` keeps its 65,536 route
    records this way: as dicts they would be half a million objects alive at once,
    enough to trigger full garbage collections of 20-200 ms in the middle of BFD."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.count = 0

    def extend(self, items: list[Any]) -> None:
        if items:
            self.runs.append(json.dumps(items, default=str)[1:-1])
            self.count += len(items)


def bfd_status(runner: PeerRunner) -> str | None:
    """FRR's word for the peer's BFD state; None when the peer has no BFD."""
    if runner.plan.bfd_target is None or runner.plan.bfd_profile is None:
        return None
    if runner.bfd is None:
        return "down"
    return STATUS_TEXT[runner.bfd.state]


def bfd_runners(speaker: Speaker) -> list[PeerRunner]:
    return [r for r in speaker.peers.values() if r.bfd is not None]


async def bfd_peers(speaker: Speaker) -> list[dict[str, Any]]:
    slicer = Slicer()
    out = []
    for runner in bfd_runners(speaker):
        await slicer.tick()
        if (bfd := runner.bfd) is None:
            continue  # its session ended while we were yielding
        out.append(bfd_record(runner, bfd))
    return out


def bfd_record(runner: PeerRunner, bfd: BfdSession) -> dict[str, Any]:
    """``runner``'s entry of ``show bfd peers json`` (its running session ``bfd``)."""
    return bfd_peer_record(
        bfd.statistics(), now=trio.current_time(), name=runner.name, profile=bfd.profile,
        held=runner.bfd_held, rtt_us=bfd.core.echo_rtts_us,
    )  # fmt: skip


async def bfd_counters(speaker: Speaker) -> dict[str, Any]:
    slicer = Slicer()
    peers = []
    for runner in bfd_runners(speaker):
        await slicer.tick()
        if (bfd := runner.bfd) is None:
            continue
        totals, rejected = runner.shown_bfd_counters()
        peers.append(bfd_counters_record(
            bfd.statistics(), name=runner.name, totals=totals, rejected=rejected
        ))  # fmt: skip
    endpoint = speaker.endpoint
    unmatched = Counter(endpoint.discards) if endpoint is not None else Counter()
    unmatched.subtract(speaker.unmatched_cleared)
    return {"peers": peers, "unmatched": {k: v for k, v in unmatched.items() if v > 0}}


def _summary_row(runner: PeerRunner) -> dict[str, Any]:
    bgp = runner.plan.bgp
    return bgp_summary_row(
        name=runner.name,
        peer=str(bgp.peer_address),
        remote_as=remote_as(
            bgp.peer_asn, bgp.dynamic_asn, runner.bgp.negotiated if runner.bgp else None
        ),
        local_as=bgp.local_asn,
        stats=runner.bgp.statistics() if runner.bgp is not None else None,
        totals=runner.totals(),
        bfd_status=bfd_status(runner),
        sessions=runner.sessions,
    )


def _router_id(speaker: Speaker) -> str | None:
    for runner in speaker.peers.values():
        return str(runner.plan.bgp.router_id)
    rid = speaker.config.router_id
    return None if rid is None else str(rid)


async def bgp_summary(speaker: Speaker) -> dict[str, Any]:
    runners = list(speaker.peers.values())
    asns = {r.plan.bgp.local_asn for r in runners}
    slicer = Slicer()
    rows = []
    for runner in runners:
        await slicer.tick()
        rows.append(_summary_row(runner))
    return {
        "routerId": _router_id(speaker),
        "as": next(iter(asns)) if len(asns) == 1 else sorted(asns),
        "peers": rows,
    }


def find_runner(speaker: Speaker, name: str) -> PeerRunner:
    runner = speaker.peers.get(name)
    if runner is None:
        for candidate in speaker.peers.values():
            if str(candidate.plan.bgp.peer_address) == name:
                return candidate
        known = ", ".join(speaker.peers) or "none"
        raise RequestError(f'no peer named "{name}" on this node (peers: {known})')
    return runner


def bgp_neighbor(speaker: Speaker, name: str) -> dict[str, Any]:
    runner = find_runner(speaker, name)
    now = trio.current_time()
    bgp = runner.bgp
    bfd = None
    if runner.bfd is not None:
        bfd = bfd_record(runner, runner.bfd)
    elif runner.plan.bfd_profile is not None:
        bfd = {"status": "down", "profile": runner.plan.bfd_profile.name,
               "detect-multiplier": runner.plan.bfd_profile.detect_multiplier,
               "receive-interval": runner.plan.bfd_profile.receive_interval,
               "transmit-interval": runner.plan.bfd_profile.transmit_interval,
               "diagnostic": "ok"}  # fmt: skip
    record = bgp_neighbor_record(
        _summary_row(runner),
        stats=bgp.statistics() if bgp is not None else None,
        negotiated=bgp.negotiated if bgp is not None else None,
        totals=runner.totals(),
        configured_hold_time=runner.plan.bgp.hold_time,
        bfd=bfd,
        failovers=runner.failovers,
        reannounce_delays=runner.reannounce_delays,
        crashes=runner.crashes,
        now=now,
        previous=runner.last_session,
    )
    record["draining"] = speaker.peer_drained(runner.name)  # RFC 8326, speaker/drain.py
    return record


def _session_reason(runner: PeerRunner) -> str | None:
    """Why nothing reaches this peer right now, or None when its session is up (BGP
    runs beside BFD: Established is what counts)."""
    if runner.bgp is not None and runner.bgp.state is BgpState.ESTABLISHED:
        return None
    if bfd_status(runner) not in (None, "up") and not runner.bfd_held:
        return "bfd-down"  # (held AdminDown, it waits for BGP, not the other way)
    return "session-not-established"


#: Route records encoded per ``json.dumps`` call (about 3 us each, 10 under load: a
#: run of 128 made steps of 2-4 ms with the slice's own 0.5 ms).
_ROUTES_PER_RUN = 32


async def _announced_services(speaker: Speaker, slicer: Slicer) -> set[str]:
    """``Speaker.announced_services()`` in slices (65,536 services: a 5 ms step)."""
    forced = {s for s, mode in speaker.overrides.items() if mode == "announce"}
    withdrawn = {s for s, mode in speaker.overrides.items() if mode == "withdraw"}
    out = set(forced - withdrawn)
    for service in await slicer.keys(speaker.healthy):
        if service not in withdrawn:
            out.add(service)
        await slicer.tick()
    return out


async def explain_routes(speaker: Speaker) -> list[dict[str, Any]]:
    """Per configured peer: what is announced, and for every service (and every
    ``announce_all`` pool) why it is or is not announced to that peer.

    Reasons: ``announced``, ``pending`` (being sent), ``unhealthy``,
    ``withdrawn-by-operator``, ``no-advertisement-selects-peer``,
    ``session-not-established``, ``bfd-down``, ``not-for-this-node``, ``no-address``.

    Built in slices (routes, services and peers each yield to the loop): the routes
    of a peer with a BGP session are its Adj-RIB-Out's desired set, read in place;
    ``announced`` is an :class:`EncodedArray` of :func:`route_record` records.
    A peer without a session (waiting for BFD) lists no routes (``routesListed``
    false): each service's reason is then the session's (``bfd-down``...), or
    ``unhealthy`` / ``withdrawn-by-operator``.
    """
    config = speaker.config
    addresses = speaker.derived.addresses
    slicer = Slicer()
    wanted = await _announced_services(speaker, slicer)
    out = []
    for peer in config.peers:
        await slicer.tick()
        runner = speaker.peers.get(peer.name)
        row: dict[str, Any] = {
            "name": peer.name,
            "neighbor": str(peer.peer_address),
            "state": "-",
            "bfdStatus": None,
            "announced": [],
            "services": [],
            "pools": [],
        }
        out.append(row)
        if runner is None:
            for service in config.services:
                await slicer.tick()
                address = service.address or addresses.get(service.name)
                row["services"].append({
                    "service": service.name, "address": str(address) if address else None,
                    "pool": service.pool, "prefix": None, "reason": "not-for-this-node",
                    "detail": "the peer's node_selectors do not select this node",
                })  # fmt: skip
            for pool in config.pools:
                if pool.announce_all:
                    row["pools"].append({"pool": pool.name, "reason": "not-for-this-node"})
            continue
        bgp = runner.bgp
        row["draining"] = speaker.peer_drained(peer.name)
        row["state"] = bgp.state.value if bgp is not None else "Idle"
        row["bfdStatus"] = bfd_status(runner)
        down = _session_reason(runner)
        # Without a session nothing is sent and there is no route list to read:
        # computing one (Speaker.routes_for) is O(routes) in a single step, the very
        # stall that would cost the other peers' BFD while this one is down.
        rib = bgp.rib_out if bgp is not None else None
        desired = rib.desired if rib is not None else None
        advertised = rib.advertised if rib is not None else {}
        announced = row["announced"] = EncodedArray()
        row["routesListed"] = rib is not None
        batch: list[dict[str, Any]] = []
        # By route key; a network is made for each record only (in the slices).
        for route in await slicer.keys(rib.desired_keys) if rib is not None else ():
            attributes = rib.want(route) if rib is not None else None
            if attributes is not None and rib is not None:
                batch.append(route_record(key_prefix(route), attributes,
                                          advertised=route in rib.sent))  # fmt: skip
            if len(batch) == _ROUTES_PER_RUN:
                announced.extend(batch)
                batch = []
            # Every route: a run of 128 records costs 1-3 ms of CPU under load (the
            # lab's show routes at 65,536: 1,274 steps over the 2 ms budget in 90 s).
            await slicer.tick()
        announced.extend(batch)
        for service in config.services:
            await slicer.tick()
            address = service.address or addresses.get(service.name)
            entry: dict[str, Any] = {
                "service": service.name,
                "address": str(address) if address else None,
                "pool": service.pool,
                "prefix": None,
                "detail": None,
                "drained": service.name in speaker.drain.services,
            }
            row["services"].append(entry)
            if address is None or service.pool is None:
                entry["reason"] = "no-address"
                continue
            ads = [
                ad for ad in config.advertisements
                if ad.selects_peer(peer.name) and ad.selects_pool(service.pool)
            ]  # fmt: skip
            prefixes = [
                ipaddress.ip_network((address, ad.length_for(address.version)), strict=False)
                for ad in ads
            ]
            override = speaker.overrides.get(service.name)
            if not ads:
                entry["reason"] = "no-advertisement-selects-peer"
                continue
            if desired is not None:
                prefix = next((p for p in prefixes if p in desired), None)
            else:  # no session: what would be sent (an aggregate's cover is not known)
                prefix = prefixes[0] if service.name in wanted else None
            if prefix is None:
                if override == "withdraw":
                    entry["reason"] = "withdrawn-by-operator"
                elif service.name not in wanted or service.name not in speaker.healthy:
                    entry["reason"] = "unhealthy"
                else:
                    entry["reason"] = "not-announced"
                continue
            entry["prefix"] = str(prefix)
            entry["detail"] = _why_covered(speaker, service.name, service.pool, prefix, address)
            if down is not None:
                entry["reason"] = down
            else:
                entry["reason"] = "announced" if prefix in advertised else "pending"
        for pool in config.pools:
            if not pool.announce_all:
                continue
            selected = any(
                ad.selects_peer(peer.name) and ad.selects_pool(pool.name)
                for ad in config.advertisements
            )
            reason = "no-advertisement-selects-peer" if not selected else down or "announced"
            row["pools"].append({"pool": pool.name, "reason": reason, "detail": "announce_all"})
    return out


def _why_covered(
    speaker: Speaker, service: str, pool: str, prefix: Any, address: Any
) -> str | None:
    """A note when a service is announced for another reason than its own health."""
    override = speaker.overrides.get(service)
    if speaker.config.pool(pool).announce_all:
        return "announce_all pool" + (" (override withdraw has no effect)" if
                                      override == "withdraw" else "")  # fmt: skip
    if override == "withdraw":
        return f"aggregate {prefix} announced for other services"
    if override == "announce":
        return "forced by operator"
    if service not in speaker.healthy:
        return f"aggregate {prefix} announced for other services"
    if prefix.prefixlen != prefix.max_prefixlen:
        return f"aggregate {prefix}"
    del address
    return None


async def routes(speaker: Speaker) -> dict[str, Any]:
    config = speaker.config
    slicer = Slicer()
    services = []
    for service in config.services:
        await slicer.tick()
        address = service.address or speaker.derived.addresses.get(service.name)
        services.append({
            "service": service.name,
            "address": str(address) if address else None,
            "pool": service.pool,
            "healthy": None if service.health is None else service.name in speaker.healthy,
            "override": speaker.overrides.get(service.name),
            "drained": service.name in speaker.drain.services,
        })  # fmt: skip
    return {"peers": await explain_routes(speaker), "services": services}


async def config_view(speaker: Speaker) -> dict[str, Any]:
    """``show redact(config)``, its lists (services, peers...) an element per slice:
    10,000 services take ~0.5 s to redact."""
    slicer = Slicer()
    data: dict[str, Any] = {}
    for name, item, done in redact_fields(speaker.config):
        if done or not isinstance(item, list | tuple):
            data[name] = item if done else redact(item)
            await slicer.tick()
            continue
        elements = data[name] = []
        for element in item:
            await slicer.tick()
            elements.append(redact(element))
    addresses = data["assigned_addresses"] = {}
    for service, address in list(speaker.derived.addresses.items()):
        await slicer.tick()
        addresses[service] = str(address)
    data["overrides"] = dict(speaker.overrides)
    if speaker.derived.router_id is not None:  # the one the sessions use, and why
        data["router_id"] = str(speaker.derived.router_id.address)
        data["router_id_reason"] = speaker.derived.router_id.reason
    return data


def status(speaker: Speaker, monitor: LoopMonitor | None = None) -> dict[str, Any]:
    """``eventLoop`` is the loop monitor's worst recent stall (None without one)."""
    last = speaker.last_reload
    return {
        "version": __version__,
        "pid": os.getpid(),
        "config": speaker.config_path,
        "configStale": speaker.config_stale,
        "reloads": speaker.reloads,
        "reloadFailures": speaker.reload_failures,
        "lastReload": None if last is None else {
            "ok": last.ok, "summary": last.summary(), "errors": list(last.errors),
        },
        "peers": len(speaker.peers),
        "stopping": speaker.shutting_down.is_set(),
        "drain": {**speaker.drain.record(), "stopping": speaker.stop_draining},
        "eventLoop": None if monitor is None else monitor.status(),
        "bfd": None if speaker.endpoint is None else bfd_endpoint(speaker.endpoint),
    }  # fmt: skip


def bfd_endpoint(endpoint: BfdEndpoint) -> dict[str, Any]:
    """How the process's BFD endpoint reads and wakes (docs/bfd.md, Wake-ups)."""
    counts = endpoint.counts
    return {
        "sessions": len(endpoint.sessions),
        "readsLazily": endpoint.reading_lazily,
        "timerWakes": counts["timer-wakes"],
        "receiveWakes": counts["receive-wakes"],
        "lazyPasses": counts["lazy-passes"],
        "datagrams": counts["datagrams"],
        "readOnArrivalFor": [
            f"{s.label}: {s.lazy_blocker() or 'just changed'}"
            for s in endpoint.eager_sessions()[:5]
        ],
    }
