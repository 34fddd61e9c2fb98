"""What ``speaker show ...`` prints: the text layouts of the records of
:mod:`speaker.view` (which builds them, with FRR's JSON keys).

The layouts follow FRR's (``show bfd peers``, ``show bgp summary``...), so habits
carry over. Everything here is pure and runs in the client (the CLI), on the reply's
data.

Text a peer sends (FQDN hostname and software version capabilities, an RFC 9003
shutdown message, NOTIFICATION data) is a record's value like any other: JSON
output carries it exactly (``json.dumps`` escapes control characters), and every
text layout goes through :func:`printable` first, so a control character, an
escape sequence or a line break is shown escaped (``\x1b``, ``\n``, as Python's
``repr``) and a string longer than :data:`MAX_SHOWN` characters is cut: a peer
cannot forge a line, move the cursor or flood the terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MAX_SHOWN",
    "format_bfd_counters",
    "format_bfd_peers",
    "format_bgp_neighbor",
    "format_config",
    "format_routes",
    "format_status",
    "printable",
]

#: Longest string a text layout shows (escaped characters count as written); the
#: rest is replaced by ``...(N more characters)``. FRR's hostname and shutdown
#: message are at most 255 octets; NOTIFICATION data, shown as hex, can be 8 KB.
MAX_SHOWN = 256


def printable(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` safe to print on a terminal: every character ``str.isprintable``
    refuses (C0/C1 controls, DEL, line and paragraph separators, bidi overrides) is
    written as Python's ``repr`` writes it (``\x1b``, ``\n``, ``\u202e``), and at
    most ``limit`` characters are shown."""
    if len(text) <= limit and text.isprintable():
        return text
    out: list[str] = []
    size = 0
    for i, ch in enumerate(text):
        shown = ch if ch.isprintable() else repr(ch)[1:-1]
        if size + len(shown) > limit:
            return "".join(out) + f"...({len(text) - i} more characters)"
        out.append(shown)
        size += len(shown)
    return "".join(out)


def _safe(value: Any) -> Any:
    """A copy of a record with every string (keys too) through :func:`printable`."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, Mapping):
        return {_safe(k) if isinstance(k, str) else k: _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return value


# ---- BFD ---------------------------------------------------------------------------------


def _interval(ms: int) -> str:
    return f"{ms}ms" if ms else "disabled"


def _duration(seconds: int) -> str:
    """FRR's ``3 second(s)``, ``1 hour(s), 2 minute(s), 3 second(s)``."""
    parts: list[str] = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size or parts:
            parts.append(f"{seconds // size} {unit}(s)")
            seconds %= size
    parts.append(f"{seconds} second(s)")
    return ", ".join(parts)


def _peer_line(record: Mapping[str, Any]) -> str:
    words = ["peer", str(record["peer"])]
    if record.get("multihop"):
        words.append("multihop")
    words += ["local-address", str(record["local"]), "vrf", str(record.get("vrf", "default"))]
    if record.get("interface"):
        words += ["interface", str(record["interface"])]
    return "\t" + " ".join(words)


def format_bfd_peers(records: Iterable[Mapping[str, Any]], header: str = "BFD Peers:") -> str:
    """FRR's ``show bfd peers`` layout (``show bfd peer X``: header ``BFD Peer:``)."""
    lines = [header]
    for r in _safe(list(records)):
        lines.append(_peer_line(r))
        lines.append(f"\t\tID: {r['id']}")
        lines.append(f"\t\tRemote ID: {r['remote-id']}")
        lines.append("\t\tPassive mode" if r.get("passive-mode") else "\t\tActive mode")
        held = " (held until BGP is Established)" if r.get("held-until-bgp-established") else ""
        lines.append(f"\t\tStatus: {r['status']}{held}")
        if "uptime" in r:
            lines.append(f"\t\tUptime: {_duration(int(r['uptime']))}")
        else:
            lines.append(f"\t\tDowntime: {_duration(int(r.get('downtime', 0)))}")
        lines.append(f"\t\tDiagnostics: {r['diagnostic']}")
        lines.append(f"\t\tRemote diagnostics: {r['remote-diagnostic']}")
        lines.append(f"\t\tPeer Type: {r.get('peer-type', 'configured')}")
        if "rtt-min" in r:
            lines.append(f"\t\tRTT min/avg/max: {r['rtt-min']}/{r['rtt-avg']}/{r['rtt-max']} usec")
        if r.get("name"):
            lines.append(f"\t\tPeer name: {r['name']}")
        if r.get("profile"):
            lines.append(f"\t\tProfile: {r['profile']}")
        if r.get("detection-time") is not None:
            lines.append(f"\t\tDetection time: {r['detection-time']:g}ms")
        lines.append("\t\tLocal timers:")
        lines.append(f"\t\t\tDetect-multiplier: {r['detect-multiplier']}")
        lines.append(f"\t\t\tReceive interval: {r['receive-interval']}ms")
        lines.append(f"\t\t\tTransmission interval: {r['transmit-interval']}ms")
        lines.append(f"\t\t\tEcho receive interval: {_interval(r['echo-receive-interval'])}")
        lines.append(f"\t\t\tEcho transmission interval: {_interval(r['echo-transmit-interval'])}")
        lines.append("\t\tRemote timers:")
        lines.append(f"\t\t\tDetect-multiplier: {r['remote-detect-multiplier']}")
        lines.append(f"\t\t\tReceive interval: {r['remote-receive-interval']}ms")
        lines.append(f"\t\t\tTransmission interval: {r['remote-transmit-interval']}ms")
        lines.append(f"\t\t\tEcho receive interval: {_interval(r['remote-echo-receive-interval'])}")
        lines.append("")
    return "\n".join(lines) + "\n"


def format_bfd_counters(
    records: Iterable[Mapping[str, Any]], unmatched: Mapping[str, int] | None = None
) -> str:
    """FRR's ``show bfd peers counters`` layout, plus rejected packets by reason and
    the packets that matched no session at all."""
    lines = ["BFD Peers:"]
    unmatched = _safe(unmatched)
    for r in _safe(list(records)):
        lines.append(_peer_line(r))
        lines.append(f"\t\tControl packet input: {r['control-packet-input']} packets")
        lines.append(f"\t\tControl packet output: {r['control-packet-output']} packets")
        lines.append(f"\t\tEcho packet input: {r['echo-packet-input']} packets")
        lines.append(f"\t\tEcho packet output: {r['echo-packet-output']} packets")
        lines.append(f"\t\tSession up events: {r['session-up']}")
        lines.append(f"\t\tSession down events: {r['session-down']}")
        rejected = r.get("rejected") or {}
        if rejected:
            lines.append("\t\tRejected packets:")
            lines += [f"\t\t\t{reason}: {n}" for reason, n in rejected.items()]
        else:
            lines.append("\t\tRejected packets: 0")
        lines.append("")
    if unmatched:
        lines.append("Packets for no session (by reason):")
        lines += [f"\t{reason}: {n}" for reason, n in sorted(unmatched.items())]
        lines.append("")
    return "\n".join(lines) + "\n"


# ---- BGP ---------------------------------------------------------------------------------


def _error_line(what: str, error: Mapping[str, Any] | None) -> str:
    if error is None:
        return f"  Last error {what}: none"
    text = f' "{error["text"]}"' if error.get("text") else ""
    return (
        f"  Last error {what}: {error['name']} ({error['code']}/{error['subcode']}){text},"
        f" {error['secondsAgo']:.0f} s ago"
    )


def format_bgp_neighbor(r: Mapping[str, Any]) -> str:
    r = _safe(r)
    caps = r["capabilities"]
    lines = [
        f"BGP neighbor is {r['neighbor']} ({r['name']}), remote AS {r['remoteAs']},"
        f" local AS {r['localAs']}, {'internal' if r['remoteAs'] == r['localAs'] else 'external'}"
        " link",
        f"  BGP state = {r['state']}"
        + (f", up for {r['peerUptime']}" if r["state"] == "Established" else "")
        + (f" ({r['stateDetail']})" if r.get("stateDetail") else ""),
        f"  Remote router ID {r['remoteRouterId'] or '-'}, local address"
        f" {r['localAddress'] or '-'}",
        f"  Hold time is {r['holdTime'] if r['holdTime'] is not None else '-'}"
        f" (configured {r['configuredHoldTime']}), keepalive interval is"
        f" {r['keepaliveTime'] if r['keepaliveTime'] is not None else '-'} seconds",
        f"  Address families: {', '.join(r['families']) or '-'}",
        "  Capabilities:",
        f"    advertised: {', '.join(caps.get('advertised') or []) or '-'}",
        f"    received:   {', '.join(caps.get('received') or []) or '-'}",
    ]
    if caps.get("peerHostname"):
        lines.append(f"    peer hostname: {caps['peerHostname']}")
    if caps.get("peerSoftwareVersion"):
        lines.append(f"    peer software: {caps['peerSoftwareVersion']}")
    lines.append("  Message statistics:")
    lines.append(f"    {'':<16}{'Sent':>10}{'Rcvd':>10}")
    sent, rcvd = r["messages"]["sent"], r["messages"]["received"]
    for kind, label in (
        ("open", "Opens"), ("update", "Updates"), ("notification", "Notifications"),
        ("keepalive", "Keepalives"), ("route-refresh", "Route refresh"), ("total", "Total"),
    ):  # fmt: skip
        lines.append(f"    {label + ':':<16}{sent[kind]:>10}{rcvd[kind]:>10}")
    lines.append(
        f"  Prefixes: {r['pfxSnt']} advertised of {r['pfxDesired']} desired, {r['pfxRcd']}"
        f" received; {r['prefixesAnnounced']} announced and {r['prefixesWithdrawn']}"
        " withdrawn in total"
    )
    lines.append(
        f"  Connections established {r['connectionsEstablished']}; dropped"
        f" {r['connectionsDropped']}; connect attempts {r['connectAttempts']}, failures"
        f" {r['connectFailures']}"
    )
    if r.get("lastConnectError"):
        lines.append(f"  Last connect error: {r['lastConnectError']}")
    lines.append(_error_line("sent", r["lastErrorSent"]))
    lines.append(_error_line("received", r["lastErrorReceived"]))
    if r.get("draining"):
        lines.append("  Draining (RFC 8326): every route sent with GRACEFUL_SHUTDOWN 65535:0")
    bfd = r.get("bfd")
    if bfd is None:
        lines.append("  BFD: not configured")
    else:
        lines.append(
            f"  BFD: {bfd['status']} (profile {bfd.get('profile')}, detect-multiplier"
            f" {bfd['detect-multiplier']}, rx {bfd['receive-interval']}ms, tx"
            f" {bfd['transmit-interval']}ms), diagnostic {bfd['diagnostic']}"
        )
    failovers = r.get("failovers") or []
    lines.append(f"  BFD failovers: {len(failovers)}")
    for f in failovers[-5:]:

        def ms(value: float | None) -> str:
            return "?" if value is None else f"{value:.2f} ms"

        lines.append(
            f"    {f['secondsAgo']:.0f} s ago: BFD down ({f['diag']}) -> cancel"
            f" {ms(f['cancelledMs'])} -> NOTIFICATION {ms(f['notificationMs'])} -> closed"
            f" {ms(f['closedMs'])}"
        )
    if r.get("reannounceSeconds"):
        last = r["reannounceSeconds"][-1]
        lines.append(f"  Last teardown to routes announced again: {last:.3f} s")
    return "\n".join(lines) + "\n"


# ---- routes ------------------------------------------------------------------------------


def format_routes(data: Mapping[str, Any]) -> str:
    data = _safe(data)
    lines: list[str] = []
    for peer in data.get("peers", []):
        lines.append(
            f"Peer {peer['name']} ({peer['neighbor']}): BGP {peer['state']}, BFD"
            f" {peer['bfdStatus'] or '-'}" + (", draining" if peer.get("draining") else "")
        )
        routes = peer.get("announced", [])
        if routes:
            lines.append(f"  {'Prefix':<44} {'Sent':<5} Attributes")
            for r in routes:
                attrs_ = [f"origin {r['origin']}"]
                if r["communities"]:
                    attrs_.append("communities " + " ".join(r["communities"]))
                if r["largeCommunities"]:
                    attrs_.append("large " + " ".join(r["largeCommunities"]))
                if r["localPref"] is not None:
                    attrs_.append(f"local-pref {r['localPref']}")
                if r["med"] is not None:
                    attrs_.append(f"med {r['med']}")
                if r.get("gracefulShutdown"):
                    attrs_.append("graceful-shutdown")
                sent = "yes" if r["advertised"] else "no"
                lines.append(f"  {r['prefix']:<44} {sent:<5} {', '.join(attrs_)}")
        elif peer.get("routesListed") is False:
            lines.append("  routes not listed: no BGP session (they are sent when it starts)")
        else:
            lines.append("  no routes to announce")
        entries = peer.get("services", []) + peer.get("pools", [])
        if entries:
            lines.append(f"  {'Service / pool':<24} {'Address':<40} Reason")
            for e in peer.get("services", []):
                lines.append(
                    f"  {e['service']:<24} {e['address'] or '-':<40} {e['reason']}"
                    + (f" ({e['detail']})" if e.get("detail") else "")
                    + (", drained" if e.get("drained") else "")
                )
            for e in peer.get("pools", []):
                lines.append(
                    f"  {'pool ' + e['pool']:<24} {'all addresses':<40} {e['reason']}"
                    + (f" ({e['detail']})" if e.get("detail") else "")
                )
        lines.append("")
    services = data.get("services", [])
    if services:
        lines.append(f"{'Service':<24} {'Address':<40} {'Pool':<16} {'Health':<10} Override")
        for s in services:
            health = "-" if s["healthy"] is None else ("healthy" if s["healthy"] else "unhealthy")
            lines.append(
                f"{s['service']:<24} {s['address'] or '-':<40} {s['pool'] or '-':<16}"
                f" {health:<10} {s['override'] or '-'}" + (" (drained)" if s.get("drained") else "")
            )
    return "\n".join(lines) + "\n"


# ---- status ------------------------------------------------------------------------------


def _stall(what: str, stall: Mapping[str, Any] | None, since: str) -> str:
    if stall is None:
        return f"  {what} {since}: none over 0.5 ms"
    where = f" in {stall['task']}" if stall.get("task") else ""
    cpu = f" ({stall['cpuMs']:.1f} ms on the CPU)" if stall.get("cpuMs") is not None else ""
    return (f"  {what} {since}: {stall['ms']:.1f} ms{cpu}{where},"
            f" {stall['secondsAgo']:.0f} s ago")  # fmt: skip


def _drained(drain: Mapping[str, Any]) -> str:
    if drain.get("stopping"):
        return "every peer, for the planned stop (drain_time)"
    parts = ["the whole node"] if drain.get("node") else []
    parts += [f"peer {p}" for p in drain.get("peers", [])]
    parts += [f"service {s}" for s in drain.get("services", [])]
    return ", ".join(parts) or "nothing drained"


def format_status(data: Mapping[str, Any]) -> str:
    """``speaker show status``: the process, its config, and the event loop's stalls
    (``eventLoop`` from :meth:`speaker.looplag.LoopMonitor.status`)."""
    data = _safe(data)
    last = data.get("lastReload")
    lines = [
        f"speaker {data['version']}, pid {data['pid']}, {data['peers']} peers"
        + (" (stopping)" if data.get("stopping") else ""),
        f"Config {data.get('config') or '-'}" + (" (stale: the last reload was rejected)"
                                                 if data.get("configStale") else ""),
        f"Reloads {data.get('reloads', 0)} applied, {data.get('reloadFailures', 0)} rejected"
        + (f"; last: {last['summary']}" if last else ""),
    ]  # fmt: skip
    drain = data.get("drain")
    if drain is not None:
        lines.append(f"Drain (RFC 8326): {_drained(drain)}")
    loop = data.get("eventLoop")
    if loop is None:
        lines.append("Event loop: not monitored")
    else:
        recent = f"last {loop['windowSeconds']:g} s"
        lines.append("Event loop (budget 2 ms per step; BFD waits as long as a stall):")
        lines.append(_stall("longest step", loop.get("longestStep"), recent))
        lines.append(_stall("longest step", loop.get("longestStepEver"), "since start"))
        lines.append(_stall("most CPU in a step", loop.get("longestStepCpu"), recent))
        lines.append(_stall("late wake", loop.get("maxLag"), recent))
        lines.append(_stall("late wake", loop.get("maxLagEver"), "since start"))
        lines.append(_stall("longest garbage collection", loop.get("longestGc"), recent))
        lines.append(f"  steps over {loop['slowStepMs']:g} ms since start: {loop['slowSteps']}")
        over = loop.get("overBudget") or []
        if over:
            lines.append(f"  steps over {loop['overBudgetMs']:g} ms of CPU since start, by task:")
            lines.extend(f"    {row['task']}: {row['steps']}, most {row['maxCpuMs']:.1f} ms"
                         for row in over)  # fmt: skip
        guard = loop.get("realtimeGuard")
        if guard and (guard.get("demotions") or guard.get("demoted")):
            lines.append(
                f"  real-time policy left {guard['demotions']} times (loop over 85 % of a"
                f" CPU), {guard['demotedSeconds']:g} s in all"
                + ("; at the normal policy now" if guard.get("demoted") else "")
            )
    bfd = data.get("bfd")
    if bfd is not None:
        how = "at timer passes (slow timers)" if bfd.get("readsLazily") else "on arrival"
        if bfd.get("readOnArrivalFor"):
            how += f" ({'; '.join(bfd['readOnArrivalFor'])})"
        lines.append(
            f"BFD: {bfd['sessions']} sessions, packets read {how}; since start"
            f" {bfd['timerWakes']} timer and {bfd['receiveWakes']} receive wake-ups,"
            f" {bfd['datagrams']} datagrams"
        )
    return "\n".join(lines) + "\n"


# ---- config ------------------------------------------------------------------------------


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and non-printables escaped."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            escape = f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, escape))
    return '"' + "".join(out) + '"'


def _key(key: object) -> str:
    return printable(str(key), limit=1 << 30)


def format_config(data: Mapping[str, Any]) -> str:
    """The effective config as TOML-like text (already redacted)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return str(v)
        if v is None:
            return '""'
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, dict):
            items = [f"{_key(k)} = {scalar(x)}" for k, x in v.items() if x is not None]
            return "{ " + ", ".join(items) + " }" if items else "{}"
        return _toml_string(str(v))

    def table(header: str, body: Mapping[str, Any]) -> None:
        lines.append(header)
        for k, v in body.items():
            if v is None:
                continue
            lines.append(f"{_key(k)} = {scalar(v)}")
        lines.append("")

    skip = {"warnings", "source", "router_id", "router_id_reason"}
    for section, value in data.items():
        if section in skip:
            continue
        if isinstance(value, dict):
            table(f"[{_key(section)}]", value)
        elif isinstance(value, list):
            for item in value:
                table(f"[[{_key(section)}]]", item if isinstance(item, dict) else {"value": item})
    if data.get("router_id"):
        why = data.get("router_id_reason")
        why = f" ({printable(str(why))})" if why else ""
        lines.insert(0, f"# effective router_id: {printable(str(data['router_id']))}{why}")
    return "\n".join(lines)
