"""FRR 8.4's text layouts for the BGP commands (``show bgp summary``, ``show bgp
neighbors``, ``... advertised-routes``) and ``show bfd peers brief``, from the records
of :mod:`speaker.view.frr`. Column widths and words are FRR's (bgpd's
``bgp_show_summary``, ``bgp_show_peer``, ``route_vty_out``); what we do not have is
shown as ``-``, lines about FRR's memory accounting are left out (docs/operations.md).
Like :mod:`speaker.show`, every string goes through :func:`speaker.show.printable`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from speaker.show import _safe

__all__ = [
    "format_advertised_routes",
    "format_bfd_brief",
    "format_bgp_neighbors",
    "format_bgp_summary",
]

_TITLES = {"ipv4Unicast": "IPv4 Unicast", "ipv6Unicast": "IPv6 Unicast"}
#: FRR truncates a description to this in the summary (without ``wide``).
_DESC = 20


def _title(key: str) -> str:
    return _TITLES.get(key, key)


def _family_block(key: str, f: Mapping[str, Any]) -> list[str]:
    peers: Mapping[str, Any] = f.get("peers") or {}
    width = max([16] + [len(a) + 1 for a in peers])
    lines = [
        "",
        f"{_title(key)} Summary (VRF {f.get('vrfName', 'default')}):",
        f"BGP router identifier {f.get('routerId')}, local AS number {f.get('as')} vrf-id"
        f" {f.get('vrfId', 0)}",
        f"BGP table version {f.get('tableVersion', 0)}",
        f"RIB entries {f.get('ribCount', 0)}",
        f"Peers {f.get('peerCount', len(peers))}",
        "",
        f"{'Neighbor':<{width}}V {'AS':>10} {'MsgRcvd':>9} {'MsgSent':>9} {'TblVer':>8}"
        f" {'InQ':>4} {'OutQ':>4} {'Up/Down':>8} {'State/PfxRcd':>12} {'PfxSnt':>8} Desc",
    ]
    for address, p in peers.items():
        state = p.get("state", "Idle")
        if state != "Established":
            received, sent = state, str(p.get("pfxSnt", 0))
        elif p.get("negotiated") is False:
            received, sent = "NoNeg", "NoNeg"
        else:
            received, sent = str(p.get("pfxRcd", 0)), str(p.get("pfxSnt", 0))
        desc = str(p.get("desc") or "N/A")[:_DESC]
        lines.append(
            f"{address:<{width}}4 {p.get('remoteAs')!s:>10} {p.get('msgRcvd', 0):>9}"
            f" {p.get('msgSent', 0):>9} {p.get('tableVersion', 0):>8} {p.get('inq', 0):>4}"
            f" {p.get('outq', 0):>4} {p.get('peerUptime', 'never'):>8} {received:>12}"
            f" {sent:>8} {desc}"
        )
    lines += ["", f"Total number of neighbors {len(peers)}"]
    return lines


def format_bgp_summary(data: Mapping[str, Any]) -> str:
    """FRR's ``show bgp summary``: a block per address family."""
    data = _safe(data)
    blocks = [k for k in _TITLES if isinstance(data.get(k), Mapping)]
    if not blocks:
        return "% No BGP neighbors found in VRF default\n"
    lines: list[str] = []
    for key in blocks:
        lines += _family_block(key, data[key])
    return "\n".join(lines) + "\n"


# ---- show bgp neighbors -----------------------------------------------------------------------

_WORDS = {
    "advertisedAndReceived": "advertised and received",
    "advertisedAndReceivedNew": "advertised and received(new)",
    "advertised": "advertised",
    "received": "received",
    "receivedNew": "received(new)",
}
_CAPS = (
    ("4byteAs", "4 Byte AS"),
    ("extendedMessage", "Extended Message"),
    ("longLivedGracefulRestart", "Long-lived Graceful Restart"),
    ("routeRefresh", "Route refresh"),
    ("enhancedRouteRefresh", "Enhanced Route Refresh"),
)


def _ms_clock(ms: int | None) -> str:
    if ms is None:
        return "-"
    s = ms // 1000
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _secs(ms: int | None) -> str:
    return "-" if ms is None else f"{ms // 1000}"


def _capability_lines(caps: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    if caps:
        lines.append("  Neighbor capabilities:")
        for key, label in _CAPS:
            if key in caps:
                lines.append(f"    {label}: {_WORDS.get(caps[key], caps[key])}")
        for family, sides in (caps.get("addPath") or {}).items():
            words = ", ".join(f"{k[:2].upper()} {k[2:].lower()}" for k in sides)
            lines.append(f"    AddPath: {_title(family)}: {words}")
        for family, sides in (caps.get("multiprotocolExtensions") or {}).items():
            word = next(iter(sides), "")
            lines.append(f"    Address Family {_title(family)}: {_WORDS.get(word, word)}")
        host = caps.get("hostName")
        if host:
            lines.append(
                f"    Hostname Capability: advertised (name: {host['advHostName']},domain name:"
                f" {host['advDomainName']}) received (name: {host['rcvHostName']},domain"
                f" name: {host['rcvDomainName']})"
            )
        version = caps.get("softwareVersion")
        if version:
            lines.append(
                f"    Version Capability: advertised {version['advertisedSoftwareVersion']},"
                f" received {version['receivedSoftwareVersion']}"
            )
        if "gracefulRestartCapability" in caps:
            word = caps["gracefulRestartCapability"]
            lines.append(f"    Graceful Restart Capability: {_WORDS.get(word, word)}")
    return lines


def _statistics_lines(r: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    gr = r.get("gracefulRestartInfo") or {}
    if gr:
        lines += [
            "  Graceful restart information:",
            f"    Local GR Mode: {gr.get('localGrMode')}",
            f"    Remote GR Mode: {gr.get('remoteGrMode')}",
            f"    R bit: {gr.get('rBit')}",
            f"    N bit: {gr.get('nBit')}",
            "    Timers:",
            f"      Configured Restart Time(sec): {gr['timers']['configuredRestartTimer']}",
            f"      Received Restart Time(sec): {gr['timers']['receivedRestartTimer']}",
        ]
    m = r.get("messageStats") or {}
    lines += [
        "  Message statistics:",
        f"    Inq depth is {m.get('depthInq', 0)}",
        f"    Outq depth is {m.get('depthOutq', 0)}",
        f"    {'':<14} {'Sent':>10} {'Rcvd':>10}",
    ]
    for label, key in (("Opens:", "opens"), ("Notifications:", "notifications"),
                       ("Updates:", "updates"), ("Keepalives:", "keepalives"),
                       ("Route Refresh:", "routeRefresh"), ("Capability:", "capability"),
                       ("Total:", "total")):  # fmt: skip
        lines.append(f"    {label:<14} {m.get(key + 'Sent', 0):>10} {m.get(key + 'Recv', 0):>10}")
    lines.append(
        "  Minimum time between advertisement runs is"
        f" {(r.get('minBtwnAdvertisementRunsTimerMsecs') or 0) // 1000} seconds"
    )
    return lines


def _neighbor(address: str, r: Mapping[str, Any]) -> list[str]:
    link = "external" if r.get("nbrExternalLink") else "internal"
    lines = [
        f"BGP neighbor is {address}, remote AS {r.get('remoteAs')}, local AS"
        f" {r.get('localAs')}, {link} link",
        f"  Local Role: {r.get('localRole', 'undefined')}",
        f"  Remote Role: {r.get('remoteRole', 'undefined')}",
    ]
    if r.get("nbrDesc"):
        lines.append(f" Description: {r['nbrDesc']}")
    if r.get("hostname"):
        lines.append(f"Hostname: {r['hostname']}")
    lines.append(
        f"  BGP version 4, remote router ID {r.get('remoteRouterId')}, local router ID"
        f" {r.get('localRouterId')}"
    )
    state = f"  BGP state = {r.get('bgpState')}"
    if r.get("bgpTimerUpString"):
        state += f", up for {r['bgpTimerUpString']}"
    lines.append(state)
    lines.append(
        f"  Last read {_ms_clock(r.get('bgpTimerLastRead'))}, Last write"
        f" {_ms_clock(r.get('bgpTimerLastWrite'))}"
    )
    lines.append(
        f"  Hold time is {_secs(r.get('bgpTimerHoldTimeMsecs'))} seconds, keepalive interval"
        f" is {_secs(r.get('bgpTimerKeepAliveIntervalMsecs'))} seconds"
    )
    lines.append(
        f"  Configured hold time is {_secs(r.get('bgpTimerConfiguredHoldTimeMsecs'))}"
        f" seconds, keepalive interval is"
        f" {_secs(r.get('bgpTimerConfiguredKeepAliveIntervalMsecs'))} seconds"
    )
    lines += _capability_lines(r.get("neighborCapabilities") or {})
    lines += _statistics_lines(r)
    for family, info in (r.get("addressFamilyInfo") or {}).items():
        lines += [
            "",
            f" For address family: {_title(family)}",
            f"  Community attribute sent to this neighbor({info.get('commAttriSentToNbr')})",
            f"  {info.get('acceptedPrefixCounter', 0)} accepted prefixes",
        ]
        if "sentPrefixCounter" in info:
            lines.append(f"  {info['sentPrefixCounter']} sent prefixes")
    lines.append("")
    lines.append(
        f"  Connections established {r.get('connectionsEstablished', 0)}; dropped"
        f" {r.get('connectionsDropped', 0)}"
    )
    if r.get("lastResetDueTo"):
        lines.append(
            f"  Last reset {_ms_clock(r.get('lastResetTimerMsecs'))},  {r['lastResetDueTo']}"
        )
    else:
        lines.append("  Last reset never")
    hops = r.get("externalBgpNbrMaxHopsAway")
    if hops is not None:
        lines.append(f"  External BGP neighbor may be up to {hops} hops away.")
    lines += [
        f"Local host: {r.get('hostLocal') or '-'}, Local port: {r.get('portLocal') or '-'}",
        f"Foreign host: {r.get('hostForeign') or '-'}, Foreign port: {r.get('portForeign') or '-'}",
        f"Nexthop: {r.get('nexthop') or '-'}",
        f"Nexthop global: {r.get('nexthopGlobal') or '-'}",
        f"Nexthop local: {r.get('nexthopLocal') or '-'}",
        "BGP connection: "
        + ("shared network" if r.get("bgpConnection") == "sharedNetwork" else "non shared network"),
        f"BGP Connect Retry Timer in Seconds: {r.get('connectRetryTimer')}",
    ]
    bfd = r.get("peerBfdInfo")
    if bfd:
        lines += [
            "",
            f"  BFD: Type: {bfd.get('type')}",
            f"  Detect Multiplier: {bfd.get('detectMultiplier')}, Min Rx interval:"
            f" {bfd.get('rxMinInterval')}, Min Tx interval: {bfd.get('txMinInterval')}",
            f"  Status: {bfd.get('status')}, Last update: {bfd.get('lastUpdate')}",
        ]
    lines.append("")
    return lines


def format_bgp_neighbors(data: Mapping[str, Any]) -> str:
    """FRR's ``show bgp neighbors [X]``."""
    data = _safe(data)
    lines: list[str] = []
    for address, record in data.items():
        lines += _neighbor(address, record)
    return "\n".join(lines) + "\n"


# ---- advertised-routes ----------------------------------------------------------------------


def format_advertised_routes(data: Mapping[str, Any]) -> str:
    """FRR's ``show bgp ipv4|ipv6 unicast neighbors X advertised-routes``."""
    data = _safe(data)
    lines = [
        f"BGP table version is {data.get('bgpTableVersion', 0)}, local router ID is"
        f" {data.get('bgpLocalRouterId')}, vrf id 0",
        f"Default local pref {data.get('defaultLocPrf', 100)}, local AS {data.get('localAS')}",
        "Status codes:  s suppressed, d damped, h history, * valid, > best, = multipath,",
        "               i internal, r RIB-failure, S Stale, R Removed",
        "Nexthop codes: @NNN nexthop's vrf id, < announce-nh-self",
        "Origin codes:  i - IGP, e - EGP, ? - incomplete",
        "RPKI validation codes: V valid, I invalid, N Not found",
        "",
        "   Network          Next Hop            Metric LocPrf Weight Path",
    ]
    routes: Mapping[str, Any] = data.get("advertisedRoutes") or {}
    for network, r in routes.items():
        lead = f"*> {network:<17}" if len(network) < 18 else f"*> {network}\n{'':20}"
        metric = f"{r['metric']:>10}" if r.get("metric") is not None else " " * 10
        pref = f"{r['locPrf']:>7}" if r.get("locPrf") is not None else " " * 7
        path = f"{r['path']} " if r.get("path") else ""
        lines.append(
            f"{lead}{r.get('nextHop', ''):<16}{metric}{pref}{r.get('weight', 0):>7}"
            f" {path}{r.get('bgpOriginCode', '?')}"
        )
    lines += ["", f"Total number of prefixes {data.get('totalPrefixCounter', len(routes))}"]
    return "\n".join(lines) + "\n"


# ---- show bfd peers brief -------------------------------------------------------------------


def format_bfd_brief(records: Iterable[Mapping[str, Any]]) -> str:
    """FRR's ``show bfd peers brief``."""
    rows: list[Mapping[str, Any]] = _safe(list(records))
    lines = [
        f"Session count: {len(rows)}",
        f"{'SessionId':<10} {'LocalAddress':<40} {'PeerAddress':<39} {'Status':<15}",
        f"{'=========':<10} {'============':<40} {'===========':<39} {'======':<15}",
    ]
    for r in rows:
        lines.append(
            f"{r.get('id', 0)!s:<10} {r.get('local') or '0.0.0.0':<40} {r.get('peer'):<39}"
            f" {r.get('status'):<15}"
        )
    return "\n".join(lines) + "\n"
