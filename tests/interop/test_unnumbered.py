"""Unnumbered BGP against FRR as data centres configure it (issue 15, "Peer shapes").

The router: FRR ``neighbor to-spk interface remote-as external`` (and the ``interface
v6only`` variant) with ``bfd``, sending Router Advertisements on the link as bgpd has
zebra do for interface neighbours. The speaker: a peer with ``interface = "to-spk"``
towards... ``to-rtr1`` and no ``peer_address``. The link carries no IPv4 address at
all; in the ``v6only`` cell not even a global IPv6 address on our side, so our only
next hop is the link-local one.

Checked on the wire's results: BGP Established over the two link-local addresses, the
extended next hop capability negotiated (RFC 8950), our IPv4 route at FRR with our
IPv6 next hop(s) and installed by zebra in rtr1's kernel via our link-local address,
BFD Up between the link-local addresses, a BFD cut withdrawing the route, and the
session following the router when its link-local address changes.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from lab import Lab, faults, wait_until
from lab.frr import FRR
from lab.netns import Host
from lab.ours import OurSpeaker

pytestmark = pytest.mark.lab

VIP = "198.19.0.10/32"
VIP6 = "2001:2:0:ff::10/128"
DETECT_MS = 150  # 50 ms x 3


def link_local(host: Host, dev: str) -> str:
    out = host.run("ip", "-j", "-6", "addr", "show", "dev", dev).stdout
    (entry,) = json.loads(out)
    (addr,) = [a["local"] for a in entry["addr_info"] if a.get("scope") == "link"]
    return str(addr)


def make_unnumbered(lab: Lab, *, keep_global6: bool) -> None:
    """No IPv4 on the rtr1-spk link (and no global IPv6 on spk's side unless kept)."""
    rtr, spk = lab["rtr1"], lab["spk"]
    for host, peer in ((rtr, "spk"), (spk, "rtr1")):
        host.run("ip", "addr", "del", f"{host.addr4(peer)}/24", "dev", host.iface(peer))
    if not keep_global6:
        spk.run("ip", "-6", "addr", "del", f"{spk.addr6('rtr1')}/64", "dev", "to-rtr1")
        # zebra's RAs carry the link's prefix: without this spk would make a SLAAC
        # address from it (the interface cell shows that one is not preferred).
        spk.sysctl("net.ipv6.conf.to-rtr1.accept_ra", "0")


def frr_router(lab: Lab, *, v6only: bool, ra_interval: int | None = None) -> FRR:
    rtr = lab["rtr1"]
    how = "interface v6only" if v6only else "interface"
    bgpd = "\n".join([
        "router bgp 64512",
        f" bgp router-id {rtr.lo4}",
        " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast",
        f" neighbor to-spk {how} remote-as external",
        " neighbor to-spk timers 3 9",
        " neighbor to-spk timers connect 1",
        " neighbor to-spk bfd",
        " neighbor to-spk bfd 3 50 50",
        " address-family ipv4 unicast",
        "  neighbor to-spk activate",
        " exit-address-family",
        " address-family ipv6 unicast",
        "  neighbor to-spk activate",
        " exit-address-family",
        "!",
    ]) + "\n"  # fmt: skip
    frr = FRR(rtr, bfdd="bfd\n!\n", bgpd=bgpd, debug=True)
    if ra_interval is not None:
        frr.configs["zebra"] += f"interface to-spk\n ipv6 nd ra-interval {ra_interval}\n!\n"
    return frr.start()


def speaker_config(lab: Lab) -> str:
    return f"""
[speaker]
router_id = "198.18.0.1"
my_asn = 64513
hold_down = "1s"
state_file = "{lab.dir / "speaker-state.json"}"

[[bfd_profiles]]
name = "fast"
transmit_interval = 50
receive_interval = 50
detect_multiplier = 3

[[peers]]
name = "tor"
interface = "to-rtr1"
peer_asn = 64512
bfd_profile = "fast"
hold_time = "9s"

[[pools]]
name = "vips"
addresses = ["198.19.0.0/24", "2001:2:0:ff::/64"]

[[advertisements]]
name = "to-routers"

[[services]]
name = "web"
address = "198.19.0.10"

[[services]]
name = "web6"
address = "2001:2:0:ff::10"
"""


def kernel_route(lab: Lab, prefix: str) -> str:
    family = "-6" if ":" in prefix else "-4"
    return str(lab["rtr1"].run("ip", family, "route", "show", prefix).stdout.strip())


@pytest.mark.parametrize("v6only", [False, True], ids=["interface", "interface-v6only"])
def test_unnumbered_against_frr(lab: Lab, lab_require, v6only: bool) -> None:  # type: ignore[no-untyped-def]
    lab_require("frr")
    make_unnumbered(lab, keep_global6=not v6only)
    frr = frr_router(lab, v6only=v6only)
    ours_ll = link_local(lab["spk"], "to-rtr1")
    theirs_ll = link_local(lab["rtr1"], "to-spk")
    speaker = OurSpeaker(lab["spk"], speaker_config(lab)).start()
    started = time.monotonic()

    frr.wait_bgp_state("to-spk", timeout=30)
    established_s = time.monotonic() - started
    neighbor = frr.bgp_neighbor("to-spk")
    print(f"Established {established_s:.1f} s after start; FRR: local"
          f" {neighbor.get('hostLocal')}, foreign {neighbor.get('hostForeign')}")  # fmt: skip
    # FRR's side of the TCP connection is ours link-local address.
    assert str(neighbor.get("hostForeign", "")).split("%")[0] == ours_ll, neighbor
    enhe = neighbor["neighborCapabilities"].get("extendedNexthop")
    assert enhe in ("advertisedAndReceived",), neighbor["neighborCapabilities"]
    learnt = speaker.wait_log("router on to-rtr1 is")
    assert theirs_ll in learnt["msg"]

    wait_until(lambda: VIP in frr.bgp_routes(), timeout=10, what="our IPv4 route at FRR")
    (path,) = frr.bgp_routes()[VIP]
    hops = {h.get("ip"): h for h in path["nexthops"]}
    print(f"FRR's next hops for {VIP}: {path['nexthops']}")
    assert ours_ll in hops, hops  # the link-local next hop: RFC 8950 with RFC 2545 §3
    if not v6only:
        assert str(lab["spk"].addr6("rtr1")) in hops, hops  # and our global one
    else:  # our only next hop: the link-local address, alone (16 octets)
        assert set(hops) <= {ours_ll, "::"}, hops
    # zebra installed it in rtr1's kernel: an IPv4 route via an IPv6 gateway.
    wait_until(lambda: "via inet6" in kernel_route(lab, VIP), timeout=10,
               what="IPv4 route via inet6 in rtr1's kernel")  # fmt: skip
    route = kernel_route(lab, VIP)
    print(f"rtr1 kernel: {route}")
    assert ours_ll in route and "dev to-spk" in route
    wait_until(lambda: VIP6 in frr.bgp_routes("ipv6"), timeout=10, what="our IPv6 route at FRR")

    bfd = frr.wait_bfd_status(ours_ll, "up", timeout=15)
    assert bfd.get("interface") == "to-spk", bfd

    # A BFD cut: our side stops hearing BFD; the session and the route go at once.
    fault = faults.drop_bfd(lab["spk"], direction="in")
    wait_until(lambda: VIP not in frr.bgp_routes(), timeout=5, interval=0.005,
               what="route withdrawn at FRR")  # fmt: skip
    gone_ms = (time.monotonic() - fault.at.before_mono) * 1000
    teardown = speaker.wait_log("BGP torn down")
    down = [r for r in speaker.find("UP -> DOWN") if r.get("protocol") == "bfd"][-1]
    detected = datetime.fromisoformat(down["ts"].replace("Z", "+00:00")).timestamp()
    notification_ms = (detected - fault.at.before_wall) * 1000 + teardown["teardown_ms"]
    print(f"BFD cut -> NOTIFICATION written {notification_ms:.1f} ms, route gone at FRR"
          f" {gone_ms:.0f} ms (vtysh polling)")  # fmt: skip
    # Detection 150 ms (50 x 3); our log stamps are whole milliseconds.
    assert notification_ms <= DETECT_MS + 100 + 1, f"NOTIFICATION {notification_ms:.0f} ms"
    # FRR's RIB through vtysh (tens of ms a call on a loaded 2-core machine): generous.
    assert gone_ms <= DETECT_MS + 850, f"route gone {gone_ms:.0f} ms after the cut"
    assert frr.bgp_neighbor("to-spk").get("bgpState") != "Established"
    fault.undo()
    frr.wait_bgp_state("to-spk", timeout=30)
    wait_until(lambda: VIP in frr.bgp_routes(), timeout=10, what="route back at FRR")
    speaker.terminate()


def test_unnumbered_follows_a_new_router_address(lab: Lab, lab_require) -> None:  # type: ignore[no-untyped-def]
    """The router's link-local address changes (a replaced line card, a new MAC): its
    RAs now come from the new address; the old one is silent. The session restarts
    towards the new address and the route is back at FRR."""
    lab_require("frr")
    make_unnumbered(lab, keep_global6=True)
    frr = frr_router(lab, v6only=False, ra_interval=1)
    old = link_local(lab["rtr1"], "to-spk")
    speaker = OurSpeaker(lab["spk"], speaker_config(lab)).start()
    frr.wait_bgp_state("to-spk", timeout=30)
    wait_until(lambda: VIP in frr.bgp_routes(), timeout=10, what="our route at FRR")

    new = "fe80::99:1"
    rtr = lab["rtr1"]
    rtr.run("ip", "-6", "addr", "add", f"{new}/64", "dev", "to-spk", "nodad")
    rtr.run("ip", "-6", "addr", "del", f"{old}/64", "dev", "to-spk")
    connects = len(speaker.find("TCP connected"))
    changed = time.monotonic()
    speaker.wait_log(f"changed {old} -> {new}", timeout=20)
    follow_s = time.monotonic() - changed
    speaker.wait_log("TCP connected", after=connects, timeout=30)
    frr.wait_bgp_state("to-spk", timeout=30)
    wait_until(lambda: VIP in frr.bgp_routes(), timeout=10, what="our route at FRR again")
    print(f"router address {old} -> {new}: followed after {follow_s:.1f} s")
    bgp = [r for r in speaker.find("TCP connected")][-1]
    assert new in bgp["msg"], bgp["msg"]
    speaker.terminate()
