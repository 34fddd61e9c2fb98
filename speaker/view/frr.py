"""FRR 8.4's JSON shapes for the BGP show commands, from a peer's snapshot: ``show bgp
summary json`` (``ipv4Unicast: {routerId, as, peers: {"<addr>": {...}}}``), ``show
bgp neighbors [X] json`` (``{"<addr>": {...}}``) and ``show bgp ipv4|ipv6 unicast
neighbors X advertised-routes json``. Pure: :mod:`speaker.view.live` gathers the
:class:`BgpPeerView` snapshots inside the speaker.

Every key FRR 8.4 writes for the same session is here, with FRR's name and meaning;
a key for something we do not have (a BGP table version, memory per table, FRR's
update groups, the kernel's TCP RTT) is present with ``null`` (``0`` where FRR's text
column needs a number and 0 is true: no inbound queue), so ``jq`` paths work and no
number is made up. docs/operations.md lists each such key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from protocols.bgp import NegotiatedSession
from protocols.bgp.capabilities import (
    AddPathCapability,
    EnhancedRouteRefreshCapability,
    ExtendedMessageCapability,
    FourOctetAsCapability,
    FqdnCapability,
    GracefulRestartCapability,
    LongLivedGracefulRestartCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
    SoftwareVersionCapability,
)
from speaker.bgp.config import RouteAttributes
from speaker.bgp.session import BgpStatistics
from speaker.view.records import error_record

__all__ = [
    "FAMILIES",
    "BgpPeerView",
    "advertised_route",
    "advertised_routes",
    "bgp_neighbor",
    "bgp_summary",
    "family_key",
    "summary_family",
    "summary_peer",
    "up_down",
]

#: (AFI, SAFI) -> FRR's JSON key, in FRR's order.
FAMILIES: dict[tuple[int, int], str] = {(1, 1): "ipv4Unicast", (2, 1): "ipv6Unicast"}
_STAT_NAMES = {(1, 1): "ipv4-unicast", (2, 1): "ipv6-unicast"}


def family_key(family: tuple[int, int]) -> str:
    return FAMILIES.get(family, f"afi{family[0]}Safi{family[1]}")


@attrs.frozen(kw_only=True)
class BgpPeerView:
    """One BGP peer as the FRR-shaped records need it (times: the speaker's clock)."""

    name: str
    address: str
    #: The AS the peer's OPEN brought, else the configured one (or "external").
    remote_as: int | str
    local_as: int
    router_id: str
    #: Configured (advertised) families.
    families: tuple[tuple[int, int], ...]
    stats: BgpStatistics | None
    negotiated: NegotiatedSession | None
    #: ``PeerRunner.totals()``: messages over every session.
    totals: Mapping[str, int]
    #: When BGP last left Established, over all sessions (None: never).
    down_at: float | None
    #: Prefixes in the Adj-RIB-Out sent, by family.
    sent: Mapping[tuple[int, int], int]
    configured_hold_time: int
    configured_keepalive: float | None
    connect_retry: float
    multihop: int | None
    #: Our BFD record (``show bfd peers json``) or None without BFD.
    bfd: Mapping[str, Any] | None
    #: Seconds since the BFD session's last state change (None: no BFD).
    bfd_changed_ago: float | None
    #: The last finished session (its last errors while none runs).
    previous: BgpStatistics | None


def _clock(seconds: float | None) -> str:
    """FRR's peer_uptime: ``00:01:23``, ``2d03h04m`` past a day, ``3w2d01h`` past a
    week, ``never``."""
    if seconds is None:
        return "never"
    s = int(seconds)
    if s < 86400:
        return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    if s < 7 * 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h{s % 3600 // 60:02d}m"
    return f"{s // 604800:02d}w{s % 604800 // 86400}d{s % 86400 // 3600:02d}h"


def up_down(view: BgpPeerView, now: float) -> float | None:
    """FRR's Up/Down: seconds Established, or since BGP last left Established (None:
    it never was)."""
    stats = view.stats
    if stats is not None and stats.state == "Established" and stats.uptime is not None:
        return stats.uptime
    downs = [t for t in (view.down_at, stats.down_at if stats else None) if t is not None]
    return now - max(downs) if downs else None


def _received(stats: BgpStatistics | None, family: tuple[int, int]) -> int:
    if stats is None:
        return 0
    name = _STAT_NAMES.get(family, "")
    if name in stats.adj_rib_in:
        return stats.adj_rib_in[name]
    return max(0, stats.prefixes_received.get(name, 0)
               - stats.prefixes_withdrawn_received.get(name, 0))  # fmt: skip


def _count(totals: Mapping[str, int], key: str) -> int:
    return int(totals.get(key, 0))


def _total(totals: Mapping[str, int], direction: str) -> int:
    return sum(int(v) for k, v in totals.items() if k.startswith(f"{direction}:"))


def _established(view: BgpPeerView) -> bool:
    return view.stats is not None and view.stats.state == "Established"


def _connections(view: BgpPeerView) -> tuple[int, int]:
    dropped = _count(view.totals, "flaps")
    return dropped + (1 if _established(view) else 0), dropped


def summary_peer(
    view: BgpPeerView, family: tuple[int, int], *, now: float, epoch: float
) -> dict[str, Any]:
    stats = view.stats
    since = up_down(view, now)
    established, dropped = _connections(view)
    negotiated = view.negotiated
    record: dict[str, Any] = {}
    if negotiated is not None and negotiated.peer_hostname:
        record["hostname"] = negotiated.peer_hostname
    record.update({
        "remoteAs": view.remote_as,
        "localAs": view.local_as,
        "version": 4,
        "msgRcvd": _total(view.totals, "in"),
        "msgSent": _total(view.totals, "out"),
        "tableVersion": 0,
        "outq": stats.adj_rib_out_pending if stats is not None else 0,
        "inq": 0,
        "peerUptime": _clock(since),
        "peerUptimeMsec": int(since * 1000) if since is not None else 0,
    })  # fmt: skip
    if since is not None:
        record["peerUptimeEstablishedEpoch"] = int(epoch - since)
    record.update({
        "pfxRcd": _received(stats, family),
        "pfxSnt": view.sent.get(family, 0),
        "state": stats.state if stats is not None else "Idle",
        "peerState": "OK",
        "connectionsEstablished": established,
        "connectionsDropped": dropped,
        "desc": view.name,
        "idType": "ipv6" if ":" in view.address else "ipv4",
    })  # fmt: skip
    if negotiated is not None and family not in negotiated.families:
        record["negotiated"] = False  # FRR's text says NoNeg
    return record


def summary_family(
    peers: Mapping[str, Mapping[str, Any]], *, router_id: str | None, asn: Any, rib_count: int
) -> dict[str, Any]:
    """One family's object of ``show bgp summary json`` from its peers' records
    (:func:`summary_peer`, by address)."""
    failed = sum(1 for p in peers.values() if p["state"] != "Established")
    return {
        "routerId": router_id,
        "as": asn,
        "vrfId": 0,
        "vrfName": "default",
        "tableVersion": 0,
        "ribCount": rib_count,
        "ribMemory": None,
        "peerCount": len(peers),
        "peerMemory": None,
        "peers": dict(peers),
        "failedPeers": failed,
        "displayedPeers": len(peers),
        "totalPeers": len(peers),
        "dynamicPeers": 0,
        "bestPath": {"multiPathRelax": "false"},
    }


def bgp_summary(
    views: Iterable[BgpPeerView], *, router_id: str | None, asn: Any, now: float, epoch: float
) -> dict[str, Any]:
    """``show bgp summary json``: one object per family with configured peers (the
    live reader builds the same a peer per slice)."""
    views = list(views)
    out: dict[str, Any] = {}
    for family, key in FAMILIES.items():
        members = [v for v in views if family in v.families]
        if members:
            peers = {v.address: summary_peer(v, family, now=now, epoch=epoch) for v in members}
            rib = sum(v.sent.get(family, 0) for v in members)
            out[key] = summary_family(peers, router_id=router_id, asn=asn, rib_count=rib)
    return out


# ---- show bgp neighbors json --------------------------------------------------------------


def _both(local: bool, peer: bool) -> str | None:
    if local and peer:
        return "advertisedAndReceived"
    if local:
        return "advertised"
    return "received" if peer else None


def _capabilities(negotiated: NegotiatedSession) -> dict[str, Any]:
    mine, theirs = negotiated.local_capabilities, negotiated.peer_capabilities

    def has(caps: Iterable[object], cls: type) -> bool:
        return any(isinstance(c, cls) for c in caps)

    out: dict[str, Any] = {}
    simple: tuple[tuple[str, type], ...] = (
        ("4byteAs", FourOctetAsCapability),
        ("extendedMessage", ExtendedMessageCapability),
    )
    for key, cls in simple:
        if (word := _both(has(mine, cls), has(theirs, cls))) is not None:
            out[key] = word
    add_path: dict[str, dict[str, bool]] = {}
    for side, caps in (("Advertised", mine), ("Received", theirs)):
        for cap in caps:
            if isinstance(cap, AddPathCapability):
                for e in cap.entries:
                    entry = add_path.setdefault(family_key((e.afi, e.safi)), {})
                    if e.send_receive & 1:
                        entry["rx" + side] = True
                    if e.send_receive & 2:
                        entry["tx" + side] = True
    if add_path:
        out["addPath"] = add_path
    llgr = LongLivedGracefulRestartCapability
    if (word := _both(has(mine, llgr), has(theirs, llgr))) is not None:
        out["longLivedGracefulRestart"] = word
    if word := _both(has(mine, RouteRefreshCapability), has(theirs, RouteRefreshCapability)):
        out["routeRefresh"] = word + ("New" if has(theirs, RouteRefreshCapability) else "")
    word = _both(has(mine, EnhancedRouteRefreshCapability),
                 has(theirs, EnhancedRouteRefreshCapability))  # fmt: skip
    if word is not None:
        out["enhancedRouteRefresh"] = word
    mp: dict[str, dict[str, bool]] = {}
    ours = {(c.afi, c.safi) for c in mine if isinstance(c, MultiprotocolCapability)}
    peer = {(c.afi, c.safi) for c in theirs if isinstance(c, MultiprotocolCapability)}
    for family in sorted(ours | peer):
        word = _both(family in ours, family in peer)
        if word is not None:
            mp[family_key(family)] = {word: True}
    if mp:
        out["multiprotocolExtensions"] = mp
    local_fqdn = next((c for c in mine if isinstance(c, FqdnCapability)), None)
    if local_fqdn is not None or negotiated.peer_hostname is not None:
        out["hostName"] = {
            "advHostName": local_fqdn.hostname if local_fqdn else "n/a",
            "advDomainName": (local_fqdn.domain or "n/a") if local_fqdn else "n/a",
            "rcvHostName": negotiated.peer_hostname or "n/a",
            "rcvDomainName": negotiated.peer_domain or "n/a",
        }
    local_version = next((c for c in mine if isinstance(c, SoftwareVersionCapability)), None)
    if local_version is not None or negotiated.peer_software_version is not None:
        out["softwareVersion"] = {
            "advertisedSoftwareVersion": local_version.version if local_version else None,
            "receivedSoftwareVersion": negotiated.peer_software_version,
        }
    word = _both(has(mine, GracefulRestartCapability), has(theirs, GracefulRestartCapability))
    if word is not None:
        out["gracefulRestartCapability"] = word
    return out


def _gr_info(view: BgpPeerView) -> dict[str, Any]:
    negotiated, stats = view.negotiated, view.stats
    mine = negotiated.local_capabilities if negotiated else ()
    local = next((c for c in mine if isinstance(c, GracefulRestartCapability)), None)
    theirs = negotiated.peer_capabilities if negotiated else ()
    remote = next((c for c in theirs if isinstance(c, GracefulRestartCapability)), None)
    if negotiated is None:
        remote_mode = "NotApplicable"
    elif remote is None:
        remote_mode = "Disable"
    else:
        remote_mode = "Restart" if remote.families else "Helper"
    return {
        "endOfRibSend": {family_key(_family(f)): True for f in stats.end_of_rib_sent}
        if stats
        else {},
        "endOfRibRecv": {family_key(_family(f)): True for f in stats.end_of_rib_received}
        if stats
        else {},
        "localGrMode": "Helper" if local is not None else "Disable",
        "remoteGrMode": remote_mode,
        "rBit": bool(remote and remote.restart_state),
        "nBit": bool(remote and remote.notification),
        "timers": {
            "configuredRestartTimer": local.restart_time if local is not None else 0,
            "receivedRestartTimer": remote.restart_time if remote is not None else 0,
        },
    }


def _family(name: str) -> tuple[int, int]:
    for family, stat_name in _STAT_NAMES.items():
        if stat_name == name:
            return family
    return (0, 0)


def _message_stats(view: BgpPeerView) -> dict[str, int]:
    t = view.totals
    stats = view.stats
    return {
        "depthInq": 0,
        "depthOutq": stats.adj_rib_out_pending if stats is not None else 0,
        "opensSent": _count(t, "out:open"),
        "opensRecv": _count(t, "in:open"),
        "notificationsSent": _count(t, "out:notification"),
        "notificationsRecv": _count(t, "in:notification"),
        "updatesSent": _count(t, "out:update"),
        "updatesRecv": _count(t, "in:update"),
        "keepalivesSent": _count(t, "out:keepalive"),
        "keepalivesRecv": _count(t, "in:keepalive"),
        "routeRefreshSent": _count(t, "out:route-refresh"),
        "routeRefreshRecv": _count(t, "in:route-refresh"),
        "capabilitySent": 0,
        "capabilityRecv": 0,
        "totalSent": _total(t, "out"),
        "totalRecv": _total(t, "in"),
    }


def _last_reset(view: BgpPeerView, now: float) -> tuple[float | None, str | None]:
    """Seconds since the last reset and why (FRR's lastResetDueTo, in our words)."""
    last = view.stats or view.previous
    errors = []
    for stats in (view.stats, view.previous):
        if stats is None:
            continue
        if stats.last_error_sent is not None:
            errors.append((stats.last_error_sent.at, "sent", stats.last_error_sent))
        if stats.last_error_received is not None:
            errors.append((stats.last_error_received.at, "received", stats.last_error_received))
    since = None
    downs = [t for t in (view.down_at, last.down_at if last else None) if t is not None]
    if downs:
        since = now - max(downs)
    if not errors:
        return since, None if since is None else "Connection closed"
    at, direction, error = max(errors, key=lambda e: e[0])
    named = error_record(error, now=now) or {}
    return (now - at if since is None else since), f"Notification {direction} ({named['name']})"


def _bfd_info(view: BgpPeerView) -> dict[str, Any] | None:
    bfd = view.bfd
    if bfd is None:
        return None
    ago = int(view.bfd_changed_ago or 0)
    return {
        "type": "multi hop" if bfd.get("multihop") else "single hop",
        "detectMultiplier": bfd.get("detect-multiplier"),
        "rxMinInterval": bfd.get("receive-interval"),
        "txMinInterval": bfd.get("transmit-interval"),
        "status": {"up": "Up", "shutdown": "Admin Down"}.get(str(bfd.get("status")), "Down"),
        "lastUpdate": f"{ago // 86400}:{ago % 86400 // 3600:02d}:{ago % 3600 // 60:02d}:"
        f"{ago % 60:02d}",
    }


def _timers(view: BgpPeerView) -> dict[str, Any]:
    """FRR's timer keys: configured, negotiated (configured before Established)."""
    stats = view.stats
    keepalive = view.configured_keepalive
    if keepalive is None:
        keepalive = view.configured_hold_time / 3
    hold = stats.hold_time if stats is not None and stats.hold_time is not None else None
    alive = stats.keepalive_time if stats is not None else None
    return {
        "bgpTimerLastRead": None,
        "bgpTimerLastWrite": None,
        "bgpInUpdateElapsedTimeMsecs": None,
        "bgpTimerConfiguredHoldTimeMsecs": view.configured_hold_time * 1000,
        "bgpTimerConfiguredKeepAliveIntervalMsecs": int(keepalive * 1000),
        "bgpTimerHoldTimeMsecs": (hold if hold is not None else view.configured_hold_time)
        * 1000,
        "bgpTimerKeepAliveIntervalMsecs": int((alive if alive is not None else keepalive)
                                              * 1000),
        "extendedOptionalParametersLength": False,
        "bgpTimerConfiguredConditionalAdvertisementsSec": None,
    }  # fmt: skip


def bgp_neighbor(view: BgpPeerView, *, now: float, epoch: float) -> dict[str, Any]:
    """One neighbour of ``show bgp neighbors json`` with FRR 8.4's keys, in its order
    (plus ``nbrDesc``: the peer's name, as FRR writes a configured description)."""
    stats, negotiated = view.stats, view.negotiated
    external = view.remote_as not in (view.local_as, "internal")
    record: dict[str, Any] = {
        "remoteAs": view.remote_as,
        "localAs": view.local_as,
        "nbrExternalLink" if external else "nbrInternalLink": True,
        "localRole": "undefined",
        "remoteRole": "undefined",
        "nbrDesc": view.name,
    }
    if negotiated is not None and negotiated.peer_hostname:
        record["hostname"] = negotiated.peer_hostname
    record.update({
        "bgpVersion": 4,
        "remoteRouterId": str(negotiated.peer_router_id) if negotiated else "0.0.0.0",
        "localRouterId": view.router_id,
        "bgpState": stats.state if stats is not None else "Idle",
    })  # fmt: skip
    if _established(view) and stats is not None and stats.uptime is not None:
        record["bgpTimerUpMsec"] = int(stats.uptime * 1000)
        record["bgpTimerUpString"] = _clock(stats.uptime)
        record["bgpTimerUpEstablishedEpoch"] = int(epoch - stats.uptime)
    record.update(_timers(view))
    if negotiated is not None:
        record["neighborCapabilities"] = _capabilities(negotiated)
    record["gracefulRestartInfo"] = _gr_info(view)
    record["messageStats"] = _message_stats(view)
    record["minBtwnAdvertisementRunsTimerMsecs"] = 0
    families: dict[str, Any] = {}
    for family in view.families:
        families[family_key(family)] = {
            "updateGroupId": None,
            "subGroupId": None,
            "packetQueueLength": None,
            "commAttriSentToNbr": "standard",
            "acceptedPrefixCounter": _received(stats, family),
            "sentPrefixCounter": view.sent.get(family, 0),
        }
    record["addressFamilyInfo"] = families
    established, dropped = _connections(view)
    since, why = _last_reset(view, now)
    record.update({
        "connectionsEstablished": established,
        "connectionsDropped": dropped,
        "lastResetTimerMsecs": None if since is None else int(since * 1000),
        "lastResetDueTo": why,
        "lastResetCode": None,
    })  # fmt: skip
    if external:
        record["externalBgpNbrMaxHopsAway"] = view.multihop or 1
    else:
        record["internalBgpNbrMaxHopsAway"] = view.multihop or 255
    hops = stats.next_hops if stats is not None else {}
    record.update({
        "hostLocal": stats.local_address if stats is not None else None,
        "portLocal": None,
        "hostForeign": stats.remote_address if stats is not None else None,
        "portForeign": None,
        "nexthop": hops.get("ipv4"),
        "nexthopGlobal": hops.get("ipv6"),
        "nexthopLocal": hops.get("ipv6_link_local"),
        "bgpConnection": "nonSharedNetwork" if view.multihop else "sharedNetwork",
        "connectRetryTimer": int(view.connect_retry),
        "estimatedRttInMsecs": None,
        "readThread": "on" if stats is not None and stats.local_address else "off",
        "writeThread": "on" if stats is not None and stats.local_address else "off",
    })  # fmt: skip
    bfd = _bfd_info(view)
    if bfd is not None:
        record["peerBfdInfo"] = bfd
    return record


# ---- advertised-routes ----------------------------------------------------------------------


def advertised_route(prefix: Any, attributes: RouteAttributes) -> dict[str, Any]:
    """One entry of FRR's ``advertisedRoutes`` for a route we originate, as FRR shows
    its own ``network`` routes: next hop ``0.0.0.0`` (``::``), weight 32768, an empty
    AS path (the peer receives it with our AS prepended); ``metric`` and ``locPrf``
    when set."""
    record: dict[str, Any] = {
        "addrPrefix": str(prefix.network_address),
        "prefixLen": prefix.prefixlen,
        "network": str(prefix),
        "nextHop": "::" if prefix.version == 6 else "0.0.0.0",
    }
    if attributes.med is not None:
        record["metric"] = attributes.med
    if attributes.local_pref is not None:
        record["locPrf"] = attributes.local_pref
    record.update({
        "weight": 32768,
        "path": "",
        "bgpOriginCode": {"igp": "i", "egp": "e"}.get(attributes.origin.name.lower(), "?"),
        "appliedStatusSymbols": {"*": True, ">": True},
    })  # fmt: skip
    return record


def advertised_routes(
    routes: Mapping[str, Any], *, router_id: str, local_as: int, total: int
) -> dict[str, Any]:
    """``show bgp ipv4|ipv6 unicast neighbors X advertised-routes json``."""
    return {
        "bgpTableVersion": 0,
        "bgpLocalRouterId": router_id,
        "defaultLocPrf": 100,
        "localAS": local_as,
        "bgpStatusCodes": {
            "suppressed": "s",
            "damped": "d",
            "history": "h",
            "valid": "*",
            "best": ">",
            "multipath": "=",
            "internal": "i",
            "ribFailure": "r",
            "stale": "S",
            "removed": "R",
        },
        "bgpOriginCodes": {"igp": "i", "egp": "e", "incomplete": "?"},
        "advertisedRoutes": routes,
        "totalPrefixCounter": total,
        "filteredPrefixCounter": 0,
    }
