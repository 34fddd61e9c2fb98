"""Our BGP speaker (``python -m speaker.bgp`` in spk) against gobgpd (passive, in rtr1).

Route prefixes come from 198.19.0.0/16 and 2001:2:0:ff::/64 only.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from lab import Lab
from lab.gobgp import GoBGP, neighbor_toml, path_attrs
from lab.ours_bgp import OurBgp
from tests.helpers import Require

pytestmark = pytest.mark.lab

ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF, COMMUNITIES, MP_REACH, LARGE = 1, 2, 3, 4, 5, 8, 14, 32

ROUTES = [
    "198.19.0.1/32,community=65000:1,med=10",
    "198.19.0.2/32,community=65000:1,med=10",
    "198.19.1.0/24,community=65000:2,community=no-export,large=4200000001:7:9",
    "198.19.2.0/24,local-pref=250",
]


def as_path(path: dict[str, Any]) -> list[int]:
    attr = path_attrs(path).get(AS_PATH)
    if not attr or not attr.get("as_paths"):
        return []
    return [asn for seg in attr["as_paths"] for asn in seg["asns"]]


def gobgp_router(lab: Lab, asn: int, neighbors: str) -> GoBGP:
    rtr = lab["rtr1"]
    return GoBGP(rtr, asn=asn, router_id=str(rtr.lo4), neighbors=neighbors).start()


def our(lab: Lab, peer: str, peer_as: int, local_as: int, **kw: Any) -> OurBgp:
    spk = lab["spk"]
    kw.setdefault("router_id", str(spk.lo4))
    return OurBgp(spk, peer=peer, peer_as=peer_as, local_as=local_as, **kw).start()


def check_ebgp_routes(router: GoBGP, local_as: int, next_hop: str) -> None:
    rib = router.wait_rib(lambda r: len(r) == 4, what="4 routes")
    assert set(rib) == {"198.19.0.1/32", "198.19.0.2/32", "198.19.1.0/24", "198.19.2.0/24"}
    for prefix, paths in rib.items():
        (path,) = paths
        attrs = path_attrs(path)
        assert attrs[ORIGIN]["value"] == 0, prefix  # IGP
        assert as_path(path) == [local_as], prefix
        assert attrs[NEXT_HOP]["nexthop"] == next_hop, prefix
        assert LOCAL_PREF not in attrs, prefix  # eBGP: never sent
    one = path_attrs(rib["198.19.0.1/32"][0])
    assert one[MED]["metric"] == 10
    assert one[COMMUNITIES]["communities"] == [65000 << 16 | 1]
    big = path_attrs(rib["198.19.1.0/24"][0])
    assert sorted(big[COMMUNITIES]["communities"]) == [65000 << 16 | 2, 0xFFFFFF01]
    large = big[LARGE]["value"]
    assert [(c["ASN"], c["LocalData1"], c["LocalData2"]) for c in large] == [(4200000001, 7, 9)]
    assert MED not in path_attrs(rib["198.19.2.0/24"][0])


def test_ebgp_ipv4_attributes_then_withdraw(lab: Lab, lab_require: Require) -> None:
    lab_require("gobgp")
    spk, rtr = lab["spk"], lab["rtr1"]
    s_addr, r_addr = str(spk.addr4("rtr1")), str(rtr.addr4("spk"))
    router = gobgp_router(lab, 64512, neighbor_toml(s_addr, 64513))
    speaker = our(lab, r_addr, 64512, 64513, routes=ROUTES)
    speaker.wait_state("Established")
    router.wait_established(s_addr)
    check_ebgp_routes(router, 64513, s_addr)
    speaker.set_routes(ROUTES[1:3])
    rib = router.wait_rib(lambda r: len(r) == 2, what="withdrawal of two")
    assert set(rib) == {"198.19.0.2/32", "198.19.1.0/24"}
    stats = speaker.stats()
    assert stats["state"] == "Established"
    assert stats["prefixes_withdrawn"] == 2 and stats["prefixes_announced"] == 4
    assert stats["end_of_rib_sent"] == ["ipv4-unicast"]
    assert stats["messages_out"]["open"] == 1
    # TTL 1 towards a directly connected eBGP peer.
    assert speaker.stop() == 0
    (cease,) = [n for n in speaker.events("notification") if n["direction"] == "sent"]
    assert (cease["code"], cease["subcode"]) == (6, 2)
    router.wait_rib(lambda r: not r, what="routes gone after our Cease")


def test_ebgp_four_octet_local_asn(lab: Lab, lab_require: Require) -> None:
    lab_require("gobgp")
    spk, rtr = lab["spk"], lab["rtr1"]
    s_addr, r_addr = str(spk.addr4("rtr1")), str(rtr.addr4("spk"))
    router = gobgp_router(lab, 64512, neighbor_toml(s_addr, 4200000001))
    speaker = our(lab, r_addr, 64512, 4200000001, routes=ROUTES)
    speaker.wait_state("Established")
    check_ebgp_routes(router, 4200000001, s_addr)


def test_ibgp_four_octet_sends_local_pref_and_empty_as_path(lab: Lab, lab_require: Require) -> None:
    lab_require("gobgp")
    spk, rtr = lab["spk"], lab["rtr1"]
    s_addr, r_addr = str(spk.addr4("rtr1")), str(rtr.addr4("spk"))
    router = gobgp_router(lab, 4200000001, neighbor_toml(s_addr, 4200000001))
    speaker = our(lab, r_addr, 4200000001, 4200000001, routes=ROUTES)
    speaker.wait_state("Established")
    rib = router.wait_rib(lambda r: len(r) == 4, what="4 routes")
    for prefix, (path,) in rib.items():
        attrs = path_attrs(path)
        assert as_path(path) == [], prefix
        expected = 250 if prefix == "198.19.2.0/24" else 100
        assert attrs[LOCAL_PREF]["value"] == expected, prefix
        assert attrs[NEXT_HOP]["nexthop"] == s_addr


def test_ipv6_session_announces_with_global_and_link_local_next_hop(
    lab: Lab, lab_require: Require
) -> None:
    lab_require("gobgp")
    spk, rtr = lab["spk"], lab["rtr1"]
    s_addr, r_addr = str(spk.addr6("rtr1")), str(rtr.addr6("spk"))
    router = gobgp_router(lab, 64512, neighbor_toml(s_addr, 64513))
    routes = ["2001:2:0:ff::10/128,community=65000:6", "2001:2:0:ff::/120,med=7"]
    speaker = our(lab, r_addr, 64512, 64513, routes=routes)
    speaker.wait_state("Established")
    rib = router.wait_rib(lambda r: len(r) == 2, family="ipv6", what="2 IPv6 routes")
    assert set(rib) == {"2001:2:0:ff::10/128", "2001:2:0:ff::/120"}
    reach = path_attrs(rib["2001:2:0:ff::10/128"][0])[MP_REACH]
    assert reach["nexthop"] == s_addr
    hops = speaker.stats()["next_hops"]
    assert hops["ipv6"] == s_addr and hops["ipv6_link_local"].startswith("fe80::"), hops
    assert as_path(rib["2001:2:0:ff::/120"][0]) == [64513]
    assert path_attrs(rib["2001:2:0:ff::/120"][0])[MED]["metric"] == 7
    speaker.set_routes(routes[:1])
    rib = router.wait_rib(lambda r: len(r) == 1, family="ipv6", what="IPv6 withdrawal")
    assert set(rib) == {"2001:2:0:ff::10/128"}


def test_md5_right_password_establishes_wrong_never(lab: Lab, lab_require: Require) -> None:
    lab_require("gobgp")
    spk, rtr = lab["spk"], lab["rtr1"]
    s_addr, r_addr = str(spk.addr4("rtr1")), str(rtr.addr4("spk"))
    router = gobgp_router(lab, 64512, neighbor_toml(s_addr, 64513, password="Pa55word"))
    right = our(lab, r_addr, 64512, 64513, password="Pa55word", routes=ROUTES[:1], name="right")
    right.wait_state("Established")
    router.wait_rib(lambda r: "198.19.0.1/32" in r, what="route over MD5")
    assert "Pa55word" not in right.log_text()
    right.stop()
    router.wait_rib(lambda r: not r, what="route gone")

    wrong = our(lab, r_addr, 64512, 64513, password="Wr0ngPass", connect_time=1.0, name="bad")
    time.sleep(4.0)
    assert wrong.state() != "Established"
    assert router.session_state(s_addr) != "established"
    assert "Wr0ngPass" not in wrong.log_text()
    assert "TCP MD5 password set" in wrong.log_text()


def test_ebgp_multihop_between_loopbacks(lab: Lab, lab_require: Require) -> None:
    lab_require("gobgp")
    spk, rtr = lab["spk"], lab["rtr1"]
    s_lo, r_lo = str(spk.lo4), str(rtr.lo4)
    router = gobgp_router(
        lab, 64512, neighbor_toml(s_lo, 64513, local_address=r_lo, multihop_ttl=2)
    )
    speaker = our(lab, r_lo, 64512, 64513, source=s_lo, multihop=2, routes=ROUTES[:2])
    speaker.wait_state("Established")
    rib = router.wait_rib(lambda r: len(r) == 2, what="2 routes over multihop")
    assert path_attrs(rib["198.19.0.1/32"][0])[NEXT_HOP]["nexthop"] == s_lo


def test_gobgpd_restart_we_reconnect_and_announce_again(lab: Lab, lab_require: Require) -> None:
    lab_require("gobgp")
    spk, rtr = lab["spk"], lab["rtr1"]
    s_addr, r_addr = str(spk.addr4("rtr1")), str(rtr.addr4("spk"))
    neighbors = neighbor_toml(s_addr, 64513)
    router = gobgp_router(lab, 64512, neighbors)
    speaker = our(lab, r_addr, 64512, 64513, routes=ROUTES, connect_retry=0.5)
    speaker.wait_state("Established")
    router.wait_rib(lambda r: len(r) == 4, what="4 routes")
    router.stop()
    down = len(speaker.states())
    speaker.wait_state("Idle", after=down - 1, timeout=10)
    time.sleep(2.0)  # refused connections meanwhile: backoff
    router = GoBGP(rtr, asn=64512, router_id=str(rtr.lo4), neighbors=neighbors, name="gobgpd2")
    router.start()
    speaker.wait_state("Established", after=down, timeout=30)
    rib = router.wait_rib(lambda r: len(r) == 4, what="4 routes again")
    assert len(rib) == 4
    stats = speaker.stats()
    assert stats["flaps"] == 1
    assert stats["connect_failures"] >= 1
    assert stats["end_of_rib_sent"] == ["ipv4-unicast", "ipv4-unicast"]
