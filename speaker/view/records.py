"""The records operators see, built from the runtime's statistics snapshots: pure
functions, no Trio, no speaker (the live readers in :mod:`speaker.view.live` call
them inside the speaker; tests call them with fabricated snapshots).

The BFD records use the keys of FRR's ``show bfd peers json`` and ``show bfd peers
counters json`` (``peer``, ``id``, ``remote-id``, ``status``, ``uptime``,
``receive-interval``...), so scripts and habits carry over. BGP records use FRR's
``show bgp summary json`` names where one exists (``remoteAs``, ``msgRcvd``,
``pfxSnt``...).

Secrets never reach a record: :func:`redact` replaces every attrs field declared
``repr=False`` (passwords, BFD keys) and URL credentials by ``"<redacted>"``.
Peer-supplied text (hostname, software version, shutdown message) is kept exactly;
the text layouts of :mod:`speaker.show` escape it.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from protocols.bfd import Diag
from protocols.bfd import State as BfdState
from protocols.bgp import CeaseSubcode, NegotiatedSession
from protocols.bgp.communities import LargeCommunity, format_community
from protocols.bgp.constants import NotifCode
from speaker.bfd.profile import BfdProfile
from speaker.bfd.runtime import BfdStatistics, SessionKey
from speaker.bgp.config import RouteAttributes
from speaker.bgp.session import BgpStatistics, ErrorRecord, family_name
from speaker.config.durations import format_duration
from speaker.config.model import AddressRange, Community, Peer

__all__ = [
    "DIAG_TEXT",
    "REDACTED",
    "STATUS_TEXT",
    "bfd_counters_record",
    "bfd_peer_record",
    "bgp_neighbor_record",
    "bgp_summary_row",
    "diag_text",
    "error_record",
    "redact",
    "redact_fields",
    "route_record",
]

REDACTED = "<redacted>"

#: FRR's words for the diagnostic codes (``show bfd peers``).
DIAG_TEXT = {
    Diag.NO_DIAGNOSTIC: "ok",
    Diag.CONTROL_DETECTION_TIME_EXPIRED: "control detection time expired",
    Diag.ECHO_FUNCTION_FAILED: "echo function failed",
    Diag.NEIGHBOR_SIGNALED_SESSION_DOWN: "neighbor signaled session down",
    Diag.FORWARDING_PLANE_RESET: "forwarding plane reset",
    Diag.PATH_DOWN: "path down",
    Diag.CONCATENATED_PATH_DOWN: "concatenated path down",
    Diag.ADMINISTRATIVELY_DOWN: "administratively down",
    Diag.REVERSE_CONCATENATED_PATH_DOWN: "reverse concatenated path down",
}

#: FRR's words for the states (AdminDown is "shutdown" there).
STATUS_TEXT = {
    BfdState.ADMIN_DOWN: "shutdown",
    BfdState.DOWN: "down",
    BfdState.INIT: "init",
    BfdState.UP: "up",
}


def diag_text(code: int) -> str:
    try:
        return DIAG_TEXT[Diag(code)]
    except ValueError:
        return f"unknown diagnostic ({code})"


def _ms(us: int | None) -> int:
    return 0 if us is None else us // 1000


# ---- BFD ---------------------------------------------------------------------------------


def _bfd_header(key: SessionKey, name: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "multihop": key.multihop,
        "peer": str(key.peer),
        "local": str(key.local),
        "vrf": key.vrf or "default",
    }
    if key.interface and not key.multihop:
        record["interface"] = key.interface
    if name is not None:
        record["name"] = name
    return record


def bfd_peer_record(
    stats: BfdStatistics,
    *,
    now: float,
    name: str | None = None,
    profile: BfdProfile | None = None,
    held: bool = False,
    rtt_us: Sequence[int] = (),
) -> dict[str, Any]:
    """One entry of ``show bfd peers json``, as FRR writes it (plus ``name``,
    ``profile``, ``remote-status``, ``detection-time``, and
    ``held-until-bgp-established`` while ``held``: the peer holds the session
    AdminDown until its BGP session is first Established).

    Intervals are milliseconds; the local ones are the configured (profile) values
    as FRR shows them, the remote ones what the peer's last packet carried.
    ``rtt-min``/``rtt-avg``/``rtt-max`` are FRR's: microseconds over the last returned
    echoes (``rtt_us``, the core's ``echo_rtts_us``), 0 without echo, as FRR.
    """
    record = _bfd_header(stats.key, name)
    record["id"] = stats.local_discriminator
    record["remote-id"] = stats.remote_discriminator
    record["passive-mode"] = bool(profile and profile.passive_mode)
    record["status"] = STATUS_TEXT[stats.state]
    if stats.state is BfdState.UP and stats.up_since is not None:
        record["uptime"] = max(0, int(now - stats.up_since))
    else:
        since = stats.last_change
        record["downtime"] = 0 if since is None else max(0, int(now - since))
    record["diagnostic"] = diag_text(stats.local_diag)
    record["remote-diagnostic"] = diag_text(stats.remote_diag)
    if profile is not None:
        rx, tx = profile.receive_interval, profile.transmit_interval
        echo_tx = profile.echo_interval if profile.echo_mode and not stats.key.multihop else 0
    else:
        rx, tx = _ms(stats.required_min_rx_us), _ms(stats.desired_min_tx_us)
        echo_tx = _ms(stats.echo_tx_interval_us)
    record["receive-interval"] = rx
    record["transmit-interval"] = tx
    record["echo-receive-interval"] = _ms(stats.echo_rx_us)
    record["echo-transmit-interval"] = echo_tx
    record["detect-multiplier"] = stats.detect_mult
    record["remote-receive-interval"] = _ms(stats.remote_required_min_rx_us)
    record["remote-transmit-interval"] = _ms(stats.remote_desired_min_tx_us)
    record["remote-echo-receive-interval"] = _ms(stats.remote_echo_rx_us)
    record["remote-detect-multiplier"] = stats.remote_detect_mult or 0
    record["rtt-min"] = min(rtt_us, default=0)
    record["rtt-avg"] = sum(rtt_us) // len(rtt_us) if rtt_us else 0
    record["rtt-max"] = max(rtt_us, default=0)
    record["peer-type"] = "configured"
    record["profile"] = stats.profile
    record["remote-status"] = STATUS_TEXT[stats.remote_state]
    record["detection-time"] = (
        None if stats.detection_time_us is None else stats.detection_time_us / 1000
    )
    record["operational-transmit-interval"] = stats.tx_interval_us / 1000
    if held:
        record["held-until-bgp-established"] = True
    return record


def bfd_counters_record(
    stats: BfdStatistics,
    *,
    name: str | None = None,
    totals: Mapping[str, int] | None = None,
    rejected: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """One entry of ``show bfd peers counters json`` (FRR's keys) plus ``rejected``
    (packets dropped by reason). ``totals`` (from ``PeerRunner.shown_bfd_counters()``)
    makes the counters cover every session this peer had since the last clear, as
    FRR's do; ``rejected`` likewise replaces the session's own discards."""
    t = totals or {
        "control_rx": stats.control_rx, "control_tx": stats.control_tx,
        "echo_rx": stats.echo_rx, "echo_tx": stats.echo_tx,
        "up_events": stats.up_events, "down_events": stats.down_events,
    }  # fmt: skip
    record = _bfd_header(stats.key, name)
    record.update({
        "control-packet-input": t.get("control_rx", 0),
        "control-packet-output": t.get("control_tx", 0),
        "echo-packet-input": t.get("echo_rx", 0),
        "echo-packet-output": t.get("echo_tx", 0),
        "session-up": t.get("up_events", 0),
        "session-down": t.get("down_events", 0),
        "rejected": dict(sorted(
            (k, v) for k, v in (stats.discards if rejected is None else rejected).items() if v
        )),
    })  # fmt: skip
    return record


# ---- BGP ---------------------------------------------------------------------------------


def _clock(seconds: float | None) -> str:
    """FRR's peerUptime: ``00:01:23``, ``2d03h04m`` past a day, ``never``."""
    if seconds is None:
        return "never"
    s = int(seconds)
    if s < 86400:
        return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h{s % 3600 // 60:02d}m"


def _messages(totals: Mapping[str, int], direction: str) -> dict[str, int]:
    kinds = ("open", "update", "notification", "keepalive", "route-refresh")
    out = {k: int(totals.get(f"{direction}:{k}", 0)) for k in kinds}
    out["total"] = sum(v for k, v in totals.items() if k.startswith(f"{direction}:"))
    return out


def remote_as(
    peer_asn: int | None, dynamic_asn: str | None, negotiated: NegotiatedSession | None
) -> int | str:
    """The peer's AS for show: the one its OPEN brought (``peer_asn = "external"`` is
    learned there), else the configured one, else the word (not learned yet)."""
    if negotiated is not None:
        return negotiated.peer_asn
    if peer_asn is not None:
        return peer_asn
    return dynamic_asn or "?"


def bgp_summary_row(
    *,
    name: str,
    peer: str,
    remote_as: int | str,
    local_as: int,
    stats: BgpStatistics | None,
    totals: Mapping[str, int],
    bfd_status: str | None,
    sessions: int = 0,
) -> dict[str, Any]:
    """One neighbour of ``show bgp summary json``. ``totals`` is
    ``PeerRunner.totals()`` (monotonic over reconnects, like FRR's counters);
    ``bfd_status`` is FRR's word for the BFD session (None without BFD)."""
    state = stats.state if stats is not None else "Idle"
    detail = None
    if stats is None:
        detail = "waiting for BFD" if bfd_status not in (None, "up") else "starting"
    uptime = stats.uptime if stats is not None else None
    received = 0
    if stats is not None:
        received = sum(stats.adj_rib_in.values()) or max(
            0, sum(stats.prefixes_received.values())
            - sum(stats.prefixes_withdrawn_received.values()),
        )  # fmt: skip
    return {
        "name": name,
        "neighbor": peer,
        "remoteAs": remote_as,
        "localAs": local_as,
        "state": state,
        "stateDetail": detail,
        "peerUptime": _clock(uptime) if state == "Established" else "never",
        "peerUptimeMsec": int(uptime * 1000) if uptime is not None else 0,
        "pfxRcd": received,
        "pfxSnt": stats.adj_rib_out_advertised if stats is not None else 0,
        "pfxDesired": stats.adj_rib_out_desired if stats is not None else 0,
        "msgRcvd": _messages(totals, "in")["total"],
        "msgSent": _messages(totals, "out")["total"],
        "connectionsEstablished": int(totals.get("flaps", 0))
        + (1 if state == "Established" else 0),
        "connectionsDropped": int(totals.get("flaps", 0)),
        "sessions": sessions,
        "bfdStatus": bfd_status,
    }


def error_record(error: ErrorRecord | None, *, now: float) -> dict[str, Any] | None:
    """A NOTIFICATION sent or received, named (``Cease/BFD Down``)."""
    if error is None:
        return None
    try:
        code = NotifCode(error.code).name.replace("_", " ").title()
    except ValueError:
        code = f"code {error.code}"
    sub = str(error.subcode)
    if error.code == NotifCode.CEASE:
        with contextlib.suppress(ValueError):
            sub = CeaseSubcode(error.subcode).name.replace("_", " ").title()
    return {
        "code": error.code,
        "subcode": error.subcode,
        "name": f"{code}/{sub}",
        "text": error.text,
        "secondsAgo": round(now - error.at, 3),
    }


def _capability_name(cap: object) -> str:
    cls = type(cap).__name__.removesuffix("Capability")
    words = re.sub(r"(?<!^)(?=[A-Z])", "-", cls).lower()
    afi, safi = getattr(cap, "afi", None), getattr(cap, "safi", None)
    if afi is not None and safi is not None:
        return f"{words} {family_name((int(afi), int(safi)))}"
    if words == "unknown":
        return f"unknown ({getattr(cap, 'code', '?')})"
    return words


def bgp_neighbor_record(
    summary: Mapping[str, Any],
    *,
    stats: BgpStatistics | None,
    negotiated: NegotiatedSession | None,
    totals: Mapping[str, int],
    configured_hold_time: int,
    bfd: Mapping[str, Any] | None,
    failovers: Iterable[Any],
    reannounce_delays: Iterable[float],
    crashes: int,
    now: float,
    previous: BgpStatistics | None = None,
) -> dict[str, Any]:
    """``show bgp neighbor NAME json``: the summary row plus negotiation, last errors
    both ways (from ``previous``, the last finished session, while none runs), BFD,
    and the failover timeline (``failovers`` are ``peer.FailoverRecord``: detection ->
    cancel -> NOTIFICATION -> close)."""
    record = dict(summary)
    caps: dict[str, Any] = {"advertised": [], "received": []}
    if negotiated is not None:
        caps = {
            "advertised": [_capability_name(c) for c in negotiated.local_capabilities],
            "received": [_capability_name(c) for c in negotiated.peer_capabilities],
            "fourOctetAs": negotiated.asn4,
            "routeRefresh": negotiated.route_refresh,
            "extendedMessage": negotiated.extended_message,
            "gracefulRestart": negotiated.graceful_restart is not None,
            "peerHostname": negotiated.peer_hostname,
            "peerSoftwareVersion": negotiated.peer_software_version,
        }
    last = stats or previous
    timeline = []
    for f in failovers:

        def rel(t: float | None, base: float = f.detected_at) -> float | None:
            return None if t is None else round((t - base) * 1000, 3)

        timeline.append({
            "diag": f.diag,
            "secondsAgo": round(now - f.detected_at, 3),
            "cancelledMs": rel(f.cancelled_at),
            "notificationMs": rel(f.notification_at),
            "closedMs": rel(f.closed_at),
            "teardownMs": None if f.teardown_ms is None else round(f.teardown_ms, 3),
        })  # fmt: skip
    record.update({
        "localAddress": stats.local_address if stats else None,
        "remoteAddress": stats.remote_address if stats else None,
        "remoteRouterId": str(negotiated.peer_router_id) if negotiated else None,
        "holdTime": stats.hold_time if stats else None,
        "keepaliveTime": stats.keepalive_time if stats else None,
        "configuredHoldTime": configured_hold_time,
        "families": list(stats.families) if stats else [],
        "nextHops": dict(stats.next_hops) if stats else {},
        "capabilities": caps,
        "messages": {"received": _messages(totals, "in"), "sent": _messages(totals, "out")},
        "prefixesAnnounced": int(totals.get("prefixes_announced", 0)),
        "prefixesWithdrawn": int(totals.get("prefixes_withdrawn", 0)),
        "endOfRibSent": list(stats.end_of_rib_sent) if stats else [],
        "endOfRibReceived": list(stats.end_of_rib_received) if stats else [],
        "lastErrorSent": error_record(last.last_error_sent if last else None, now=now),
        "lastErrorReceived": error_record(last.last_error_received if last else None, now=now),
        "connectAttempts": stats.connect_attempts if stats else 0,
        "connectFailures": stats.connect_failures if stats else 0,
        "lastConnectError": stats.last_connect_error if stats else None,
        "crashes": crashes,
        "bfd": dict(bfd) if bfd is not None else None,
        "failovers": timeline,
        "reannounceSeconds": [round(d, 3) for d in reannounce_delays],
    })  # fmt: skip
    return record


# ---- routes ------------------------------------------------------------------------------


def route_record(
    prefix: object, attributes: RouteAttributes, *, advertised: bool
) -> dict[str, Any]:
    return {
        "prefix": str(prefix),
        "communities": [format_community(c) for c in attributes.communities],
        "largeCommunities": [_large(c) for c in attributes.large_communities],
        "localPref": attributes.local_pref,
        "med": attributes.med,
        "origin": attributes.origin.name.lower(),
        "gracefulShutdown": attributes.graceful_shutdown,
        "advertised": advertised,
    }


def _large(c: LargeCommunity) -> str:
    return f"{c.global_admin}:{c.local1}:{c.local2}"


# ---- config ------------------------------------------------------------------------------

_SECRET_NAMES = frozenset({"password", "keys", "secret", "secrets"})


def _redact_url(text: str) -> str:
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if parts.scheme in ("http", "https") and (parts.username or parts.password):
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))
    return text


def redact_fields(value: Any) -> Iterator[tuple[str, Any, bool]]:
    """The fields of an attrs config object as ``(name, item, done)``: ``done`` when
    ``item`` is final (a secret replaced, a BFD profile shown by name), else ``item``
    still goes through :func:`redact` (the control server redacts a big config's
    lists an element at a time)."""
    for field in attrs.fields(type(value)):
        if not field.init:
            continue
        name = field.alias or field.name.lstrip("_")
        item = getattr(value, field.name)
        if item is not None and (field.repr is False or name in _SECRET_NAMES):
            yield name, REDACTED, True
        elif isinstance(value, Peer) and isinstance(item, BfdProfile):
            yield name, item.name, True  # the profile is shown in [[bfd_profiles]]
        else:
            yield name, item, False


def redact(value: Any) -> Any:
    """A JSON-ready copy of ``value`` (a config object) with secrets replaced.

    Every attrs field declared ``repr=False`` (the project's mark for a secret:
    ``password``, BFD ``keys``) and every field named like a secret becomes
    ``"<redacted>"`` when set; ``user:password@`` in URLs likewise. Durations are
    written as in the file (``"90s"``), addresses and paths as strings.
    """
    if isinstance(value, AddressRange | Community):
        return str(value)  # as written in the file
    if attrs.has(type(value)):
        return {name: item if done else redact(item) for name, item, done in redact_fields(value)}
    if isinstance(value, Mapping):
        return {str(k): redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        return _redact_url(value)
    if isinstance(value, Path | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    return _redact_url(str(value))
