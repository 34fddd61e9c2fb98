"""FRR-exact show: our records have every key FRR 8.4 wrote for the same lab session
(tests/data/frr84/), and our text layouts line up with FRR's column by column."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

from protocols.bgp import NegotiatedSession
from protocols.bgp.capabilities import (
    FourOctetAsCapability,
    FqdnCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
)
from speaker import show, show_frr, view
from speaker.bgp.config import RouteAttributes
from speaker.view import frr
from tests.helpers.show import PROFILE, TOTALS, bfd_stats, bgp_stats

FRR84 = Path(__file__).resolve().parents[1] / "data" / "frr84"


def frr_json(name: str) -> Any:
    return json.loads((FRR84 / name).read_text())


def frr_lines(name: str) -> list[str]:
    return (FRR84 / name).read_text().splitlines()


def negotiated() -> NegotiatedSession:
    mine = (MultiprotocolCapability(afi=1, safi=1), RouteRefreshCapability(),
            FourOctetAsCapability(asn=64513),
            FqdnCapability(hostname="spk", domain=""))  # fmt: skip
    theirs = (MultiprotocolCapability(afi=1, safi=1), MultiprotocolCapability(afi=2, safi=1),
              RouteRefreshCapability(), FourOctetAsCapability(asn=64512),
              FqdnCapability(hostname="rtr1", domain=""))  # fmt: skip
    return NegotiatedSession(
        local_asn=64513, peer_asn=64512, peer_router_id=ipaddress.IPv4Address("198.18.0.2"),
        hold_time=9, keepalive_time=3.0, asn4=True, families=frozenset({(1, 1)}),
        route_refresh=True, enhanced_route_refresh=False, extended_message=False,
        extended_next_hop=frozenset(), graceful_restart=None, peer_capabilities=theirs,
        local_capabilities=mine, peer_hostname="rtr1",
    )  # fmt: skip


def peer_view(**changes: Any) -> frr.BgpPeerView:
    values: dict[str, Any] = {
        "name": "rtr1", "address": "198.18.1.1", "remote_as": 64512, "local_as": 64513,
        "router_id": "198.18.1.2", "families": ((1, 1), (2, 1)),
        "stats": bgp_stats(uptime=5.0), "negotiated": negotiated(), "totals": TOTALS,
        "down_at": None, "sent": {(1, 1): 1}, "configured_hold_time": 9,
        "configured_keepalive": None, "connect_retry": 1.0, "multihop": None,
        "bfd": view.bfd_peer_record(bfd_stats(), now=200.0, name="rtr1", profile=PROFILE),
        "bfd_changed_ago": 4.0, "previous": None,
    }  # fmt: skip
    values.update(changes)
    return frr.BgpPeerView(**values)


def summary(*views: frr.BgpPeerView, now: float = 200.0) -> dict[str, Any]:
    return frr.bgp_summary(views or [peer_view()], router_id="198.18.1.2", asn=64513, now=now,
                           epoch=1.8e9)  # fmt: skip


def test_summary_json_is_shaped_like_frrs_with_every_key() -> None:
    ours, theirs = summary(), frr_json("bgp_summary.json")
    assert set(ours) == set(theirs) == {"ipv4Unicast", "ipv6Unicast"}
    for family in theirs:
        assert set(theirs[family]) <= set(ours[family]), family
        (their_peer,) = theirs[family]["peers"].values()
        our_peer = ours[family]["peers"]["198.18.1.1"]
        assert set(their_peer) <= set(our_peer), set(their_peer) - set(our_peer)
    peer = ours["ipv4Unicast"]["peers"]["198.18.1.1"]
    assert peer["state"] == "Established" and peer["peerUptime"] == "00:00:05"
    assert peer["pfxRcd"] == 3 and peer["pfxSnt"] == 1 and peer["version"] == 4
    assert peer["hostname"] == "rtr1" and peer["desc"] == "rtr1" and peer["idType"] == "ipv4"
    assert ours["ipv4Unicast"]["routerId"] == "198.18.1.2" and ours["ipv4Unicast"]["as"] == 64513
    assert ours["ipv6Unicast"]["peers"]["198.18.1.1"]["negotiated"] is False
    json.dumps(ours)


def test_summary_text_lines_up_with_frrs_columns() -> None:
    theirs = frr_lines("bgp_summary.txt")
    # The same numbers as FRR's row (5 received, 4 sent...), desc as FRR's (none: N/A).
    stats = bgp_stats(uptime=5.0, adj_rib_in={"ipv4-unicast": 1})
    totals = {"in:open": 1, "in:update": 2, "in:keepalive": 2, "out:open": 1,
              "out:update": 1, "out:keepalive": 2}  # fmt: skip
    mine = peer_view(address="198.18.1.2", name="N/A", remote_as=64513, local_as=64512,
                     stats=stats, totals=totals)  # fmt: skip
    data = frr.bgp_summary([mine], router_id="198.18.0.2", asn=64512, now=200.0, epoch=1.8e9)
    ours = show_frr.format_bgp_summary(data).splitlines()
    header = next(i for i, line in enumerate(theirs) if line.startswith("Neighbor"))
    assert ours[header] == theirs[header]
    assert ours[header + 1] == theirs[header + 1]
    assert ours[1] == theirs[1] == "IPv4 Unicast Summary (VRF default):"
    assert ours[2] == theirs[2]
    assert ours[header - 1] == "" and ours[header + 3] == theirs[header + 3]
    v6 = ours.index("IPv6 Unicast Summary (VRF default):")
    assert ours[v6 + 7].split()[-3:] == ["NoNeg", "NoNeg", "N/A"]


def test_after_a_failover_up_down_is_the_time_since_it_went_down_and_the_state() -> None:
    down = peer_view(stats=bgp_stats(state="Active", uptime=None, established_at=None),
                     down_at=196.0, sent={})  # fmt: skip
    peer = summary(down)["ipv4Unicast"]["peers"]["198.18.1.1"]
    assert peer["peerUptime"] == "00:00:04" and peer["state"] == "Active"
    assert peer["peerUptimeMsec"] == 4000
    row = show_frr.format_bgp_summary(summary(down)).splitlines()[8]
    assert row.split()[8:10] == ["00:00:04", "Active"], row
    # ... the session object's own drop counts too (a hold timer expiry, say).
    inner = peer_view(stats=bgp_stats(state="Connect", uptime=None, down_at=190.0))
    assert summary(inner)["ipv4Unicast"]["peers"]["198.18.1.1"]["peerUptime"] == "00:00:10"
    never = peer_view(stats=None, negotiated=None, sent={})
    assert summary(never)["ipv4Unicast"]["peers"]["198.18.1.1"]["peerUptime"] == "never"
    # FRR's own capture of the same moment: its Up/Down counts from the drop too.
    (frr_peer,) = frr_json("fail_summary.json")["ipv4Unicast"]["peers"].values()
    assert frr_peer["peerUptime"] == "00:00:04" and frr_peer["state"] != "Established"


def test_neighbors_json_has_frrs_keys() -> None:
    (theirs,) = frr_json("bgp_neighbor.json").values()
    ours = frr.bgp_neighbor(peer_view(), now=200.0, epoch=1.8e9)
    missing = set(theirs) - set(ours)
    assert not missing, missing
    for key in ("messageStats", "peerBfdInfo", "gracefulRestartInfo"):
        assert set(theirs[key]) <= set(ours[key]), key
    assert set(theirs["addressFamilyInfo"]["ipv4Unicast"]) <= set(
        ours["addressFamilyInfo"]["ipv4Unicast"]
    )
    assert ours["bgpState"] == "Established" and ours["bgpTimerUpString"] == "00:00:05"
    assert ours["remoteRouterId"] == "198.18.0.2" and ours["hostname"] == "rtr1"
    assert ours["messageStats"]["updatesSent"] == 4 and ours["messageStats"]["totalRecv"] == 43
    assert ours["neighborCapabilities"]["4byteAs"] == "advertisedAndReceived"
    assert ours["neighborCapabilities"]["routeRefresh"] == "advertisedAndReceivedNew"
    assert ours["neighborCapabilities"]["multiprotocolExtensions"] == {
        "ipv4Unicast": {"advertisedAndReceived": True}, "ipv6Unicast": {"received": True},
    }  # fmt: skip
    assert ours["peerBfdInfo"] == {"type": "single hop", "detectMultiplier": 3,
                                   "rxMinInterval": 50, "txMinInterval": 50, "status": "Up",
                                   "lastUpdate": "0:00:00:04"}  # fmt: skip
    assert ours["lastResetDueTo"] == "Notification received (Cease/Administrative Shutdown)"
    json.dumps(ours)
    text = show_frr.format_bgp_neighbors({"198.18.1.1": ours}).splitlines()
    assert text[0] == "BGP neighbor is 198.18.1.1, remote AS 64512, local AS 64513, external link"
    for line in ("  BGP state = Established, up for 00:00:05",
                 "  Hold time is 9 seconds, keepalive interval is 3 seconds",
                 "    4 Byte AS: advertised and received",
                 "    Route refresh: advertised and received(new)",
                 "  Status: Up, Last update: 0:00:00:04"):  # fmt: skip
        assert line in text, line
    frr_text = frr_lines("bgp_neighbor.txt")
    start = frr_text.index("                         Sent       Rcvd")
    assert text[text.index("                         Sent       Rcvd") + 1].startswith(
        frr_text[start + 1][:24]
    )  # "    Opens:              " then the counts, right-aligned as FRR's


def test_advertised_routes_json_and_text_as_frrs() -> None:
    prefix = ipaddress.ip_network("198.19.0.10/32")
    routes = {str(prefix): frr.advertised_route(prefix, RouteAttributes())}
    ours = frr.advertised_routes(routes, router_id="198.18.0.2", local_as=64512, total=1)
    theirs = frr_json("bgp_adv.json")
    assert set(theirs) <= set(ours)
    assert set(theirs["advertisedRoutes"]["198.19.0.10/32"]) <= set(routes[str(prefix)])
    text = show_frr.format_advertised_routes(ours).splitlines()
    frr_text = frr_lines("bgp_adv.txt")
    assert text[1:9] == frr_text[1:9]  # codes, column titles
    assert text[0] == frr_text[0].replace("version is 1", "version is 0")
    # FRR's own line is for a route it learned (weight 0, path 64513); ours are
    # originated, as FRR shows its own network routes: weight 32768, no path.
    assert text[9] == "*> 198.19.0.10/32   0.0.0.0                            32768 i"
    assert len(text[9].split("32768")[0]) == len(frr_text[9].split("      0 ")[0]) + 2
    assert text[-1] == frr_text[-1] == "Total number of prefixes 1"
    med = frr.advertised_route(prefix, RouteAttributes(med=30, local_pref=200))
    assert med["metric"] == 30 and med["locPrf"] == 200
    v6 = ipaddress.ip_network("2001:2:0:ff::100/120")
    long_text = show_frr.format_advertised_routes(
        {"advertisedRoutes": {str(v6): frr.advertised_route(v6, RouteAttributes())}}
    ).splitlines()
    assert long_text[9] == "*> 2001:2:0:ff::100/120" and long_text[10].startswith(" " * 20 + "::")


def test_bfd_peer_brief_and_rtt_as_frrs() -> None:
    theirs = frr_json("bfd_peer.json")
    ours = view.bfd_peer_record(bfd_stats(), now=200.0, name="rtr1", profile=PROFILE,
                                rtt_us=(210, 190, 260))  # fmt: skip
    assert set(theirs) <= set(ours), set(theirs) - set(ours)
    assert (ours["rtt-min"], ours["rtt-avg"], ours["rtt-max"]) == (190, 220, 260)
    no_echo = view.bfd_peer_record(bfd_stats(), now=200.0)
    assert (no_echo["rtt-min"], no_echo["rtt-avg"], no_echo["rtt-max"]) == (0, 0, 0)
    text = show.format_bfd_peers([no_echo], header="BFD Peer:").splitlines()
    frr_text = frr_lines("bfd_peer.txt")
    assert text[0] == frr_text[0] == "BFD Peer:"
    assert "\t\tRTT min/avg/max: 0/0/0 usec" in text and "\t\tRTT min/avg/max: 0/0/0 usec" in (
        frr_text
    )
    # FRR's own record through our brief layout gives FRR's lines.
    assert show_frr.format_bfd_brief([theirs]).splitlines() == frr_lines("bfd_brief.txt")


def test_clock_past_a_week_is_frrs() -> None:
    assert frr._clock(8 * 86400 + 3600) == "01w1d01h"
    assert frr._clock(3 * 86400 + 3600 + 120) == "3d01h02m"
