"""The lab proves itself with real daemons before any of our code runs in it."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time

import pytest

from lab import Lab, faults
from lab.bird import BfdNeighbor, Bird, bfd_protocol
from lab.capture import BFD_FIELDS, BGP_FIELDS, Capture
from lab.frr import FRR, bfd_peer_block, bfdd_config, bgpd_config
from lab.gobgp import GoBGP, neighbor_toml, path_attrs
from lab.netns import lab_namespaces, sweep_leftovers
from lab.proc import REGISTRY, LabError
from tests.helpers import Require

pytestmark = pytest.mark.lab

BENCH4 = ipaddress.IPv4Network("198.18.0.0/15")
BENCH6 = ipaddress.IPv6Network("2001:2::/48")


def frr_bfd_pair(lab: Lab, ms: int) -> tuple[FRR, FRR, str, str]:
    rtr, spk = lab["rtr1"], lab["spk"]
    r_addr, s_addr = str(rtr.addr4("spk")), str(spk.addr4("rtr1"))
    r = FRR(rtr, bfdd=bfdd_config([
        bfd_peer_block(s_addr, local=r_addr, interface="to-spk", tx=ms, rx=ms)
    ])).start()  # fmt: skip
    s = FRR(spk, bfdd=bfdd_config([
        bfd_peer_block(r_addr, local=s_addr, interface="to-rtr1", tx=ms, rx=ms)
    ])).start()  # fmt: skip
    return r, s, r_addr, s_addr


def test_addresses_are_benchmarking_ranges_and_links_work(lab: Lab) -> None:
    for host in lab.hosts.values():
        out = host.run("ip", "-j", "addr", "show").stdout
        import json

        for iface in json.loads(out):
            for a in iface.get("addr_info", []):
                addr = ipaddress.ip_address(a["local"])
                if addr.is_loopback or addr.is_link_local:
                    continue
                assert addr in (BENCH4 if addr.version == 4 else BENCH6), (host.name, addr)
        for peer in host.links:
            other = lab[peer]
            for target in (other.addr4(host.name), other.addr6(host.name), other.lo4, other.lo6):
                host.run("ping", "-c1", "-W2", str(target))
    for router in ("rtr1", "rtr2"):
        assert lab[router].run("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
        assert lab[router].run("sysctl", "-n", "net.ipv6.conf.all.forwarding").stdout.strip() == "1"
    assert lab["spk"].run("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"


def test_frr_bfd_up_then_one_way_drop_brings_it_down(lab: Lab, lab_require: Require) -> None:
    """Two FRR bfdd at 50/50/3; spk stops sending; rtr1 declares Down with diag 1 on the
    wire within detection time (150 ms) + one interval of spk's last packet."""
    lab_require("frr", "capture")
    cap = Capture(lab["rtr1"], "to-spk", "udp port 3784").start()
    r, _s, r_addr, s_addr = frr_bfd_pair(lab, 50)
    r.wait_bfd_status(s_addr, "up", timeout=5)
    peer = r.bfd_peer(s_addr)
    assert peer is not None and peer["remote-transmit-interval"] == 50
    time.sleep(0.3)
    fault = faults.drop_bfd(lab["spk"], direction="out")
    down = r.wait_bfd_status(s_addr, "down", timeout=3)
    assert down["diagnostic"] == "control detection time expired"
    cap.stop()
    pkts = cap.packets(BFD_FIELDS)
    last_spk = max(p["time"] for p in pkts if p.get("ip.src") == s_addr)
    assert last_spk < fault.t_wall
    rtr_down = [
        p for p in pkts if p.get("ip.src") == r_addr and p["bfd.sta"] == 1 and p["time"] > last_spk
    ]
    assert rtr_down and rtr_down[0]["bfd.diag"] == 1
    detect_ms = (rtr_down[0]["time"] - last_spk) * 1000
    assert 150 <= detect_ms <= 150 + 50, detect_ms
    assert (rtr_down[0]["time"] - fault.t_wall) * 1000 <= 150 + 10


def test_gobgp_pair_exchanges_routes(lab: Lab, lab_require: Require) -> None:
    lab_require("gobgp")
    rtr, spk = lab["rtr1"], lab["spk"]
    router = GoBGP(
        rtr, asn=64512, router_id=str(rtr.addr4("spk")),
        neighbors=neighbor_toml(str(spk.addr4("rtr1")), 64513, passive=True)
        + neighbor_toml(str(spk.addr6("rtr1")), 64513, passive=True),
    ).start()  # fmt: skip
    speaker = GoBGP(
        spk, asn=64513, router_id=str(spk.addr4("rtr1")),
        neighbors=neighbor_toml(str(rtr.addr4("spk")), 64512, passive=False)
        + neighbor_toml(str(rtr.addr6("spk")), 64512, passive=False),
    ).start()  # fmt: skip
    router.wait_established(str(spk.addr4("rtr1")))
    router.wait_established(str(spk.addr6("rtr1")))
    speaker.add_route("198.19.0.10/32", "nexthop", str(spk.addr4("rtr1")), "community", "65000:100")
    speaker.add_route("2001:2:0:ff::10/128", "nexthop", str(spk.addr6("rtr1")), family="ipv6")
    rib = router.wait_rib(lambda r: "198.19.0.10/32" in r, what="198.19.0.10/32")
    (path,) = rib["198.19.0.10/32"]
    attrs = path_attrs(path)
    assert attrs[3]["nexthop"] == str(spk.addr4("rtr1"))
    assert attrs[2]["as_paths"][0]["asns"] == [64513]
    assert attrs[8]["communities"] == [65000 << 16 | 100]
    rib6 = router.wait_rib(lambda r: "2001:2:0:ff::10/128" in r, family="ipv6", what="v6 route")
    mp_reach = path_attrs(rib6["2001:2:0:ff::10/128"][0])[14]
    assert mp_reach["nexthop"] == str(spk.addr6("rtr1")), mp_reach
    speaker.del_route("198.19.0.10/32")
    router.wait_rib(lambda r: "198.19.0.10/32" not in r, what="withdrawal")


def test_frr_bgpd_takes_routes_over_ebgp_without_policy(lab: Lab, lab_require: Require) -> None:
    """FRR's RFC 8212 default is switched off by the fixture: an eBGP route is accepted."""
    lab_require("frr", "gobgp")
    rtr, spk = lab["rtr1"], lab["spk"]
    s_addr = str(spk.addr4("rtr1"))
    frr = FRR(
        rtr,
        bgpd=bgpd_config(64512, str(rtr.addr4("spk")), [f"neighbor {s_addr} remote-as 64513"]),
    ).start()
    speaker = GoBGP(
        spk, asn=64513, router_id=s_addr,
        neighbors=neighbor_toml(str(rtr.addr4("spk")), 64512, passive=False),
    ).start()  # fmt: skip
    frr.wait_bgp_state(s_addr)
    speaker.add_route("198.19.0.20/32", "nexthop", s_addr)

    def has_route() -> bool:
        return "198.19.0.20/32" in frr.bgp_routes()

    from lab import wait_until

    wait_until(has_route, timeout=10, what="route in FRR")
    summary = frr.bgp_summary()
    assert summary["ipv4Unicast"]["peers"][s_addr]["pfxRcd"] == 1


def test_bird_runs_bfd_with_frr_and_reports_sessions(lab: Lab, lab_require: Require) -> None:
    lab_require("frr", "bird")
    rtr, spk = lab["rtr1"], lab["spk"]
    r_addr, s_addr = str(rtr.addr4("spk")), str(spk.addr4("rtr1"))
    bird = Bird(
        rtr,
        router_id=r_addr,
        config=bfd_protocol(
            [BfdNeighbor(address=s_addr, local=r_addr, interface="to-spk", interval_ms=100)]
        ),
    ).start()
    frr = FRR(spk, bfdd=bfdd_config([
        bfd_peer_block(r_addr, local=s_addr, interface="to-rtr1", tx=100, rx=100)
    ])).start()  # fmt: skip
    session = bird.wait_bfd_state(s_addr, "Up", timeout=5)
    assert session["interface"] == "to-spk"
    assert "bfd1" in bird.protocols_all()
    frr.wait_bfd_status(r_addr, "up")
    faults.drop_bfd(lab["spk"], direction="out")
    bird.wait_bfd_state(s_addr, "Down", timeout=3)


def test_fault_helpers_take_effect_and_undo(lab: Lab, lab_require: Require) -> None:
    lab_require("frr")
    spk = lab["spk"]
    target = str(lab["rtr1"].addr4("spk"))

    def rtt_ms() -> float:
        out = spk.run("ping", "-c1", "-W2", target).stdout
        return float(out.split("time=")[1].split()[0])

    lossy = faults.loss(spk, "icmp type echo-request", direction="out", percent=100)
    assert lossy.at.before_mono <= lossy.t_mono and lossy.at.before_wall <= lossy.t_wall
    assert spk.run("ping", "-c1", "-W1", target, check=False).returncode != 0
    lossy.undo()
    half = faults.loss(spk, "icmp type echo-request", direction="out", percent=50)
    out = spk.run("ping", "-c200", "-i0.002", "-W1", "-q", target, check=False).stdout
    lost_pct = float(out.split("% packet loss")[0].rsplit(" ", 1)[1])
    assert 30 <= lost_pct <= 70, out
    half.undo()

    slow = faults.delay(spk, "icmp type echo-request", direction="out", delay_ms=40)
    assert rtt_ms() >= 40
    slow.undo()
    assert rtt_ms() < 40

    down = faults.link_down(spk, "to-rtr1")
    assert spk.run("ping", "-c1", "-W1", target, check=False).returncode != 0
    down.undo()
    spk.run("ping", "-c1", "-W2", target)

    # Frozen daemon: the peer's BFD goes Down; thawed, it comes back Up.
    r, s, _r_addr, s_addr = frr_bfd_pair(lab, 100)
    r.wait_bfd_status(s_addr, "up", timeout=5)
    frozen = faults.freeze(s.procs["bfdd"])
    r.wait_bfd_status(s_addr, "down", timeout=3)
    frozen.undo()
    r.wait_bfd_status(s_addr, "up", timeout=10)


def test_capture_decodes_bgp_notification(lab: Lab, lab_require: Require) -> None:
    lab_require("gobgp", "capture")
    rtr, spk = lab["rtr1"], lab["spk"]
    cap = Capture(rtr, "to-spk", "tcp port 179").start()
    router = GoBGP(
        rtr, asn=64512, router_id=str(rtr.addr4("spk")),
        neighbors=neighbor_toml(str(spk.addr4("rtr1")), 64513),
    ).start()  # fmt: skip
    speaker = GoBGP(
        spk, asn=64513, router_id=str(spk.addr4("rtr1")),
        neighbors=neighbor_toml(str(rtr.addr4("spk")), 64512, passive=False),
    ).start()  # fmt: skip
    router.wait_established(str(spk.addr4("rtr1")))
    speaker.cli("neighbor", str(rtr.addr4("spk")), "shutdown", check_json=False)
    router.wait_rib(lambda r: True)
    time.sleep(0.3)
    cap.stop()
    notes = cap.packets(BGP_FIELDS, "bgp.type == 3")
    assert notes, "no NOTIFICATION on the wire"
    assert notes[0]["bgp.notify.major_error"] == 6  # Cease
    assert notes[0]["bgp.notify.minor_error_cease"] == 2  # Administrative Shutdown


def test_failed_daemon_start_is_reported_with_its_log(lab: Lab) -> None:
    with pytest.raises(LabError, match="gobgpd in rtr1 exited"):
        GoBGP(lab["rtr1"], asn=64512, router_id="not-an-address").start(timeout=5)


def test_leftovers_of_dead_runs_are_swept() -> None:
    from lab.requirements import missing

    if (reason := missing()) is not None:
        pytest.skip(reason)
    # A namespace named as if by a process that has exited.
    dead = subprocess.Popen(["true"])
    dead.wait()
    ns = f"sl{dead.pid}-1-spk"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        assert ns in sweep_leftovers()
        assert ns not in lab_namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def test_lab_close_stops_daemons_by_pid(lab_require: Require) -> None:
    lab_require("gobgp")
    from lab import default_lab

    with default_lab() as lab:
        g = GoBGP(lab["rtr1"], asn=64512, router_id="198.18.1.1").start()
        pid = g.pid
        assert pid in REGISTRY
    assert pid not in REGISTRY
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not [ns for ns in lab_namespaces() if ns.startswith(lab.prefix)]
