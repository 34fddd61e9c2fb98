"""``speaker show`` records and text layouts, from fabricated statistics."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

from protocols.bfd import Diag
from protocols.bfd import State as BfdState
from speaker import show, view
from speaker.bfd.runtime import SessionKey
from speaker.bgp.config import RouteAttributes
from speaker.config import loads_config
from speaker.peer import FailoverRecord
from speaker.view import records
from tests.helpers.configs import SECRETS
from tests.helpers.show import KEY, PROFILE, TOTALS, bfd_stats, bgp_stats, summary

# The keys of FRR's `show bfd peers json` (FRR 8-10), which scripts rely on.
FRR_PEER_KEYS = {
    "multihop", "peer", "local", "vrf", "interface", "id", "remote-id", "passive-mode",
    "status", "diagnostic", "remote-diagnostic", "receive-interval", "transmit-interval",
    "echo-receive-interval", "echo-transmit-interval", "detect-multiplier",
    "remote-receive-interval", "remote-transmit-interval", "remote-echo-receive-interval",
    "remote-detect-multiplier",
}  # fmt: skip
FRR_COUNTER_KEYS = {
    "multihop", "peer", "local", "vrf", "interface", "control-packet-input",
    "control-packet-output", "echo-packet-input", "echo-packet-output", "session-up",
    "session-down",
}  # fmt: skip


def test_bfd_peer_record_has_frrs_keys_and_values() -> None:
    record = view.bfd_peer_record(bfd_stats(), now=3725.0, name="rtr1", profile=PROFILE)
    assert set(record) >= FRR_PEER_KEYS
    assert record["peer"] == "198.18.1.1" and record["local"] == "198.18.1.2"
    assert record["interface"] == "to-rtr1" and record["vrf"] == "default"
    assert record["id"] == 1234 and record["remote-id"] == 5678
    assert record["status"] == "up" and record["uptime"] == 3625
    assert "downtime" not in record
    assert record["diagnostic"] == "ok" and record["remote-diagnostic"] == "ok"
    assert (record["receive-interval"], record["transmit-interval"]) == (50, 50)
    assert record["echo-transmit-interval"] == 0  # echo off, as FRR shows it
    assert record["remote-transmit-interval"] == 300
    assert record["remote-receive-interval"] == 50
    assert record["remote-echo-receive-interval"] == 50
    assert record["detect-multiplier"] == 3 and record["remote-detect-multiplier"] == 3
    assert record["name"] == "rtr1" and record["profile"] == "fast"
    assert record["detection-time"] == 150
    json.dumps(record)


def test_bfd_peer_record_down_uses_downtime_and_frr_diagnostic_words() -> None:
    stats = bfd_stats(
        state=BfdState.DOWN, up_since=None, last_change=90.0,
        local_diag=Diag.CONTROL_DETECTION_TIME_EXPIRED, remote_diag=7,
    )  # fmt: skip
    record = view.bfd_peer_record(stats, now=100.0)
    assert record["status"] == "down" and record["downtime"] == 10 and "uptime" not in record
    assert record["diagnostic"] == "control detection time expired"
    assert record["remote-diagnostic"] == "administratively down"
    admin = view.bfd_peer_record(bfd_stats(state=BfdState.ADMIN_DOWN), now=100.0)
    assert admin["status"] == "shutdown" and "held-until-bgp-established" not in admin
    held = view.bfd_peer_record(bfd_stats(state=BfdState.ADMIN_DOWN), now=100.0, held=True)
    assert held["held-until-bgp-established"] is True
    assert "Status: shutdown (held until BGP is Established)" in show.format_bfd_peers([held])
    assert view.diag_text(29) == "unknown diagnostic (29)"


def test_bfd_peers_text_follows_frrs_layout() -> None:
    record = view.bfd_peer_record(bfd_stats(), now=3725.0, name="rtr1", profile=PROFILE)
    text = show.format_bfd_peers([record])
    lines = text.splitlines()
    assert lines[0] == "BFD Peers:"
    assert lines[1] == "\tpeer 198.18.1.1 local-address 198.18.1.2 vrf default interface to-rtr1"
    for line in (
        "\t\tID: 1234", "\t\tRemote ID: 5678", "\t\tActive mode", "\t\tStatus: up",
        "\t\tUptime: 1 hour(s), 0 minute(s), 25 second(s)", "\t\tDiagnostics: ok",
        "\t\tRemote diagnostics: ok", "\t\tLocal timers:", "\t\t\tDetect-multiplier: 3",
        "\t\t\tReceive interval: 50ms", "\t\t\tTransmission interval: 50ms",
        "\t\t\tEcho receive interval: disabled", "\t\t\tEcho transmission interval: disabled",
        "\t\tRemote timers:", "\t\t\tTransmission interval: 300ms",
        "\t\t\tEcho receive interval: 50ms",
    ):  # fmt: skip
        assert line in lines, line
    assert lines.index("\t\tLocal timers:") < lines.index("\t\tRemote timers:")
    down = view.bfd_peer_record(bfd_stats(state=BfdState.DOWN, last_change=99.0), now=100.0)
    assert "\t\tDowntime: 1 second(s)" in show.format_bfd_peers([down]).splitlines()
    multihop = SessionKey(peer=KEY.peer, local=KEY.local, multihop=True)
    text = show.format_bfd_peers([view.bfd_peer_record(bfd_stats(key=multihop), now=100.0)])
    assert "\tpeer 198.18.1.1 multihop local-address 198.18.1.2 vrf default" in text


def test_bfd_counters_record_and_text_show_rejected_packets_by_reason() -> None:
    totals = {"control_rx": 1000, "control_tx": 1001, "echo_rx": 5, "echo_tx": 6,
              "up_events": 2, "down_events": 1}  # fmt: skip
    record = view.bfd_counters_record(bfd_stats(), name="rtr1", totals=totals)
    assert set(record) >= FRR_COUNTER_KEYS
    assert record["control-packet-input"] == 1000 and record["session-down"] == 1
    assert record["rejected"] == {"auth-bad-digest": 2, "ttl-below-minimum": 3}
    text = show.format_bfd_counters([record], {"no-session": 7})
    for line in (
        "\t\tControl packet input: 1000 packets", "\t\tControl packet output: 1001 packets",
        "\t\tEcho packet input: 5 packets", "\t\tEcho packet output: 6 packets",
        "\t\tSession up events: 2", "\t\tSession down events: 1", "\t\tRejected packets:",
        "\t\t\tttl-below-minimum: 3", "\t\t\tauth-bad-digest: 2", "\tno-session: 7",
    ):  # fmt: skip
        assert line in text.splitlines(), line
    # Without totals, the session's own counters.
    assert view.bfd_counters_record(bfd_stats())["control-packet-output"] == 75


def test_bgp_summary_row() -> None:
    """Our per-peer rows (the summary's ``peers`` list); FRR's layout is tested in
    test_show_frr.py."""
    row = summary(bgp_stats())
    assert row["state"] == "Established" and row["peerUptime"] == "00:01:23"
    assert row["pfxSnt"] == 2 and row["pfxRcd"] == 3
    assert row["msgRcvd"] == 43 and row["msgSent"] == 48
    assert row["connectionsDropped"] == 1 and row["connectionsEstablished"] == 2
    idle = summary(None, bfd="down")
    assert idle["state"] == "Idle" and idle["stateDetail"] == "waiting for BFD"
    assert idle["pfxSnt"] == 0 and idle["peerUptime"] == "never"
    assert records._clock(2 * 86400 + 3 * 3600 + 4 * 60) == "2d03h04m"


def test_bgp_neighbor_record_and_text_show_errors_bfd_and_failover_timeline() -> None:
    bfd = view.bfd_peer_record(bfd_stats(), now=200.0, name="rtr1", profile=PROFILE)
    failover = FailoverRecord(
        detected_at=150.0, cancelled_at=150.0001, notification_at=150.0004,
        closed_at=150.0006, diag="CONTROL_DETECTION_TIME_EXPIRED",
    )  # fmt: skip
    record = view.bgp_neighbor_record(
        summary(bgp_stats()), stats=bgp_stats(), negotiated=None, totals=TOTALS,
        configured_hold_time=9, bfd=bfd, failovers=[failover], reannounce_delays=[3.25],
        crashes=0, now=200.0,
    )  # fmt: skip
    assert record["lastErrorSent"]["name"] == "Cease/Bfd Down"
    assert record["lastErrorReceived"]["text"] == "maintenance"
    assert record["failovers"][0]["notificationMs"] == 0.4
    assert record["failovers"][0]["teardownMs"] == 0.4
    assert record["messages"]["sent"]["update"] == 4
    assert record["messages"]["received"]["total"] == 43
    json.dumps(record)
    text = show.format_bgp_neighbor(record)
    assert "BGP neighbor is 198.18.1.1 (rtr1), remote AS 64512, local AS 64513" in text
    assert "BGP state = Established, up for 00:01:23" in text
    assert "Hold time is 9 (configured 9)" in text
    assert "Last error sent: Cease/Bfd Down (6/10)" in text
    assert 'Last error received: Cease/Administrative Shutdown (6/2) "maintenance"' in text
    assert "BFD: up (profile fast" in text
    assert "50 s ago: BFD down (CONTROL_DETECTION_TIME_EXPIRED) -> cancel 0.10 ms" in text
    assert "NOTIFICATION 0.40 ms -> closed 0.60 ms" in text
    assert "Last teardown to routes announced again: 3.250 s" in text
    assert "Updates:" in text and "Route refresh:" in text


def test_routes_text_lists_attributes_and_reasons() -> None:
    route = view.route_record(
        ipaddress.ip_network("198.19.0.10/32"),
        RouteAttributes(communities=(65000 << 16 | 100,), local_pref=200),
        advertised=True,
    )
    assert route["communities"] == ["65000:100"] and route["localPref"] == 200
    data = {
        "peers": [{
            "name": "rtr1", "neighbor": "198.18.1.1", "state": "Established",
            "bfdStatus": "up", "announced": [route],
            "services": [
                {"service": "web", "address": "198.19.0.10", "reason": "announced"},
                {"service": "api", "address": "198.19.0.11", "reason": "unhealthy"},
            ],
            "pools": [{"pool": "all", "reason": "announced", "detail": "announce_all"}],
        }],
        "services": [{"service": "web", "address": "198.19.0.10", "pool": "vips",
                      "healthy": None, "override": "announce"}],
    }  # fmt: skip
    text = show.format_routes(data)
    assert "Peer rtr1 (198.18.1.1): BGP Established, BFD up" in text
    assert "198.19.0.10/32" in text and "communities 65000:100, local-pref 200" in text
    assert any(line.split()[:3] == ["api", "198.19.0.11", "unhealthy"]
               for line in text.splitlines())  # fmt: skip
    assert "pool all" in text and "announce" in text.splitlines()[-1]


def secret_config(tmp_path: Path) -> str:
    (tmp_path / "tor.key").write_text("file-SECRET-2\n")
    return f"""
[speaker]
my_asn = 64513
state_file = "{tmp_path / "state.json"}"

[[bfd_profiles]]
name = "auth"
[bfd_profiles.auth]
type = "meticulous-keyed-sha1"
keys = {{ "1" = "bfd-SECRET-3", "2" = "bfd-SECRET-4" }}
send_key_id = 1

[[peers]]
name = "a"
peer_address = "198.18.1.1"
peer_asn = 64512
password = "md5-SECRET-1"
bfd_profile = "auth"

[[peers]]
name = "b"
peer_address = "198.18.2.1"
peer_asn = 64512
password_file = "tor.key"

[[pools]]
name = "vips"
addresses = ["198.19.0.0/24", "198.19.1.1-198.19.1.9"]

[[advertisements]]
name = "all"
communities = ["65000:1", "large:1:2:3"]

[[services]]
name = "web"
address = "198.19.0.10"
health = {{ http = "http://admin:url-SECRET-5@127.0.0.1:8080/healthz" }}
"""


def test_redact_hides_every_secret_and_keeps_the_rest(tmp_path: Path) -> None:
    config = loads_config(secret_config(tmp_path), base_dir=tmp_path)
    data = view.redact(config)
    dumped = json.dumps(data)
    text = show.format_config(data)
    for secret in SECRETS:
        assert secret not in dumped and secret not in text, secret
    assert data["peers"][0]["password"] == view.REDACTED
    assert data["peers"][1]["password"] == view.REDACTED
    assert data["peers"][1]["password_file"] == str(tmp_path / "tor.key")
    assert data["bfd_profiles"][0]["auth"]["keys"] == view.REDACTED
    assert data["bfd_profiles"][0]["auth"]["type"] == "meticulous-keyed-sha1"
    assert data["peers"][0]["bfd_profile"] == "auth"
    assert data["services"][0]["health"]["http"] == "http://<redacted>@127.0.0.1:8080/healthz"
    assert data["pools"][0]["addresses"] == ["198.19.0.0/24", "198.19.1.1-198.19.1.9"]
    assert data["advertisements"][0]["communities"] == ["65000:1", "large:1:2:3"]
    assert data["peers"][0]["hold_time"] == "1m30s"
    assert '[[peers]]\nname = "a"' in text and 'password = "<redacted>"' in text
    # Unset secrets stay unset (no "<redacted>" for a peer without a password).
    no_secret = loads_config(
        '[speaker]\nmy_asn = 1\n[[peers]]\nname = "x"\npeer_address = "192.0.2.1"\npeer_asn = 2\n'
    )
    assert view.redact(no_secret)["peers"][0]["password"] is None


def test_status_text_says_where_the_loop_stalled() -> None:
    stall = {"ms": 41.25, "task": "peer rtr1", "secondsAgo": 12.0}
    data: dict[str, Any] = {
        "version": "0.1.0", "pid": 42, "peers": 2, "stopping": False,
        "config": "/etc/speaker/speaker.toml", "configStale": True, "reloads": 1,
        "reloadFailures": 1, "lastReload": {"summary": "reload rejected: 1 errors"},
        "eventLoop": {"windowSeconds": 60.0, "longestStep": stall, "longestStepEver": stall,
                      "slowSteps": 3, "slowStepMs": 5.0, "maxLag": None,
                      "maxLagEver": {"ms": 43.0, "task": None, "secondsAgo": 3600.0},
                      "longestGc": None, "longestGcEver": None, "lagSamples": 10},
    }  # fmt: skip
    lines = show.format_status(data).splitlines()
    assert "(stale: the last reload was rejected)" in lines[1]
    assert "  longest step last 60 s: 41.2 ms in peer rtr1, 12 s ago" in lines
    assert "  late wake last 60 s: none over 0.5 ms" in lines
    assert "  late wake since start: 43.0 ms, 3600 s ago" in lines
    assert "  steps over 5 ms since start: 3" in lines
    assert not any("real-time policy" in line for line in lines)
    data["eventLoop"]["realtimeGuard"] = {"demoted": True, "demotions": 2,
                                          "demotedSeconds": 1.5}  # fmt: skip
    assert ("  real-time policy left 2 times (loop over 85 % of a CPU), 1.5 s in all;"
            " at the normal policy now") in show.format_status(data).splitlines()  # fmt: skip
    data["eventLoop"] = None
    assert "Event loop: not monitored" in show.format_status(data)


def test_status_text_says_how_bfd_reads() -> None:
    data: dict[str, Any] = {
        "version": "0.1.0", "pid": 42, "peers": 2, "config": None, "reloads": 0,
        "eventLoop": None,
        "bfd": {"sessions": 2, "readsLazily": False, "timerWakes": 10, "receiveWakes": 20,
                "lazyPasses": 0, "datagrams": 30, "readOnArrivalFor": ["rtr1: poll sequence"]},
    }  # fmt: skip
    text = show.format_status(data)
    assert (
        "BFD: 2 sessions, packets read on arrival (rtr1: poll sequence); since start 10 timer"
        " and 20 receive wake-ups, 30 datagrams"
    ) in text
    data["bfd"] = {**data["bfd"], "readsLazily": True, "readOnArrivalFor": []}
    assert "packets read at timer passes (slow timers);" in show.format_status(data)
