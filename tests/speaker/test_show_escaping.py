"""Text a peer sends (FQDN hostname, software version, RFC 9003 shutdown message,
NOTIFICATION data) reaches ``speaker show`` escaped: no control character, no line
break, bounded in length; the JSON output carries it exactly."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from protocols.bgp import NegotiatedSession
from protocols.bgp.capabilities import FqdnCapability, SoftwareVersionCapability
from speaker import show, show_frr, view
from speaker.bgp.session import ErrorRecord
from tests.helpers.show import TOTALS, bfd_stats, bgp_stats, summary

FORGED = "bye\n  Last error sent: none\r\x1b[2K\x1b]0;pwned\x07\x00\u202e"


def negotiated(hostname: str, version: str) -> NegotiatedSession:
    peer_caps = (FqdnCapability(hostname=hostname, domain=""),
                 SoftwareVersionCapability(version=version))  # fmt: skip
    return NegotiatedSession(
        local_asn=64513, peer_asn=64512, peer_router_id=ipaddress.IPv4Address("198.18.1.1"),
        hold_time=9, keepalive_time=3.0, asn4=True, families=frozenset({(1, 1)}),
        route_refresh=True, enhanced_route_refresh=False, extended_message=False,
        extended_next_hop=frozenset(), graceful_restart=None, peer_capabilities=peer_caps,
        local_capabilities=(), peer_hostname=hostname, peer_software_version=version,
    )  # fmt: skip


def neighbor(text: str, hostname: str = "rtr1", version: str = "FRR 8.4") -> dict[str, Any]:
    stats = bgp_stats(
        last_error_received=ErrorRecord(code=6, subcode=2, text=text, at=6.0),
        last_error_sent=ErrorRecord(code=6, subcode=4, text=text, at=5.0),
    )
    bfd = view.bfd_peer_record(bfd_stats(), now=200.0, name="rtr1")
    return view.bgp_neighbor_record(
        summary(stats), stats=stats, negotiated=negotiated(hostname, version), totals=TOTALS,
        configured_hold_time=9, bfd=bfd, failovers=[], reannounce_delays=[], crashes=0,
        now=200.0,
    )  # fmt: skip


def assert_clean(text: str) -> None:
    for line in text.split("\n"):
        bad = [c for c in line if not c.isprintable() and c != "\t"]
        assert not bad, f"unescaped {bad!r} in {line!r}"


def test_a_shutdown_message_cannot_forge_a_line() -> None:
    text = show.format_bgp_neighbor(neighbor(FORGED))
    assert_clean(text)
    lines = text.splitlines()
    assert sum(line.startswith("  Last error sent:") for line in lines) == 1
    received = next(line for line in lines if line.startswith("  Last error received:"))
    assert r'"bye\n  Last error sent: none\r\x1b[2K\x1b]0;pwned\x07\x00\u202e"' in received, (
        received
    )


def test_hostname_and_software_version_are_escaped() -> None:
    text = show.format_bgp_neighbor(neighbor("x", hostname="evil\x1b[31m\nhost", version="v\r1"))
    assert_clean(text)
    assert r"    peer hostname: evil\x1b[31m\nhost" in text.splitlines()
    assert r"    peer software: v\r1" in text.splitlines()


def test_nul_and_other_controls_are_escaped_like_python_repr() -> None:
    cases = [("\x00", r"\x00"), ("\x7f", r"\x7f"), ("\x9b", r"\x9b"), ("\t", r"\t"),
             ("\u2028", r"\u2028"), ("caf\u00e9", "caf\u00e9"), ("a\\b", "a\\b")]  # fmt: skip
    for raw, shown in cases:
        assert show.printable(raw) == shown


def test_very_long_peer_text_is_bounded_in_text_output() -> None:
    long = "A" * 10_000 + "\n" + "\x1b" * 5000
    text = show.format_bgp_neighbor(neighbor(long, hostname="h" * 5000))
    assert_clean(text)
    for line in text.splitlines():
        assert len(line) < 2 * show.MAX_SHOWN, line[:80]
    assert "more characters)" in text
    assert len(show.printable("\x1b" * 5000)) <= show.MAX_SHOWN + 40


def test_json_carries_peer_text_exactly_and_escaped() -> None:
    record = neighbor(FORGED, hostname="evil\x1b[31m\x00")
    encoded = json.dumps(record, default=str)  # as the control server and CLI encode
    assert not any(c < " " for c in encoded)
    back = json.loads(encoded)
    assert back["lastErrorReceived"]["text"] == FORGED
    assert back["capabilities"]["peerHostname"] == "evil\x1b[31m\x00"


def test_every_text_layout_escapes_its_strings() -> None:
    bad = "x\x1b[2J\ny"
    bfd = view.bfd_peer_record(bfd_stats(), now=200.0, name=bad, profile=None)
    bfd["interface"] = bad
    assert_clean(show.format_bfd_peers([bfd]))
    counters = view.bfd_counters_record(bfd_stats(), name=bad)
    assert_clean(show.format_bfd_counters([counters], {bad: 1}))
    peer = {"remoteAs": 1, "state": bad, "peerUptime": bad, "desc": bad, "hostname": bad}
    family = {"routerId": bad, "as": 1, "vrfName": bad, "peers": {bad: peer}}
    assert_clean(show_frr.format_bgp_summary({"ipv4Unicast": family}))
    assert_clean(show_frr.format_bgp_neighbors({bad: {"bgpState": bad, "hostname": bad,
                                                      "lastResetDueTo": bad}}))  # fmt: skip
    advertised = {"advertisedRoutes": {bad: {"nextHop": bad, "path": bad}}}
    assert_clean(show_frr.format_advertised_routes(advertised))
    assert_clean(show_frr.format_bfd_brief([bfd]))
    routes = {"peers": [{"name": bad, "neighbor": bad, "state": bad, "bfdStatus": bad,
                         "announced": [], "routesListed": True,
                         "services": [{"service": bad, "address": bad, "reason": bad,
                                       "detail": bad}],
                         "pools": []}],
              "services": [{"service": bad, "address": None, "pool": bad, "healthy": True,
                            "override": bad}]}  # fmt: skip
    assert_clean(show.format_routes(routes))
    assert_clean(show.format_config({"speaker": {"node_name": bad}}))
