"""Routers that connect to us: `speaker run` (not passive) with FRR bgpd active.

- FRR's connection reaches Established through our listener (our own connects go to a
  closed port, so the listener is the only way), with and without TCP MD5;
- both sides active at once: one session, no flap (collision resolution);
- a wrong TCP MD5 password is reported at the first expired attempt;
- IPv6 routes come back after a link flap removed the IPv6 address and it is re-added.

Addresses: the lab's 198.18.0.0/15 and 2001:2::/48; routes from 198.19.0.0/16 and
2001:2:0:ff::/64.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from lab import Lab, faults, wait_until
from lab.frr import FRR, bgpd_config
from lab.ours import OurSpeaker
from tests.helpers import Require

pytestmark = pytest.mark.lab

VIP4 = "198.19.0.10/32"
VIP6 = "2001:2:0:ff::10/128"


def speaker_toml(
    lab: Lab, peer: str, *, extra_peer: str = "", v6: bool = False, router_id: str | None = None
) -> str:
    spk, rtr = lab["spk"], lab["rtr1"]
    pools = '["198.19.0.0/24", "2001:2:0:ff::/120"]' if v6 else '["198.19.0.0/24"]'
    services = '\n[[services]]\nname = "web6"\naddress = "2001:2:0:ff::10"\n' if v6 else ""
    return f"""
[speaker]
router_id = "{router_id or spk.addr4("rtr1")}"
my_asn = 64513
state_file = "{lab.dir / "speaker-state.json"}"

[[peers]]
name = "rtr1"
peer_address = "{peer}"
peer_asn = 64512
hold_time = "9s"
{extra_peer}

[[pools]]
name = "vips"
addresses = {pools}

[[advertisements]]
name = "all"

[[services]]
name = "web"
address = "198.19.0.10"
{services}
# {rtr.name}
"""


def frr_active(lab: Lab, *, password: str | None = None) -> FRR:
    rtr, spk = lab["rtr1"], lab["spk"]
    s4 = str(spk.addr4("rtr1"))
    lines = [f"neighbor {s4} remote-as 64513", f"neighbor {s4} timers connect 1"]
    if password:
        lines.append(f"neighbor {s4} password {password}")
    return FRR(rtr, bfdd=None, bgpd=bgpd_config(64512, str(rtr.lo4), lines)).start()


@pytest.mark.parametrize("password", [None, "s3cret"])
def test_frr_active_reaches_established_through_our_listener(
    lab: Lab,
    lab_require: Require,
    password: str | None,
) -> None:
    lab_require("frr")
    rtr, spk = lab["rtr1"], lab["spk"]
    frr = frr_active(lab, password=password)
    extra = "peer_port = 1179  # nothing there: only FRR's connect can succeed\n"
    if password:
        extra += f'password = "{password}"\n'
    speaker = OurSpeaker(spk, speaker_toml(lab, str(rtr.addr4("spk")), extra_peer=extra))
    speaker.start()
    frr.wait_bgp_state(str(spk.addr4("rtr1")), timeout=15)
    wait_until(lambda: VIP4 in frr.bgp_routes("ipv4"), timeout=10, what="FRR: our route")
    (connected,) = speaker.find("TCP connected")
    assert "(theirs)" in connected["msg"], connected
    assert speaker.terminate() == 0


@pytest.mark.parametrize(("our_id", "kept"), [("198.18.1.2", "we"), ("198.18.0.1", "the peer")])
def test_both_active_one_session_no_flap(
    lab: Lab, lab_require: Require, our_id: str, kept: str
) -> None:
    """FRR (id 198.18.0.2, connecting every second) and we both connect, our packets
    held 700 ms so that both connections are often up before either OPEN exchange
    ends (RFC 4271 §6.8). One session comes up and stays up, FRR counts one, and a
    collision, when there was one, kept the connection of the higher identifier."""
    lab_require("frr")
    rtr, spk = lab["rtr1"], lab["spk"]
    frr = frr_active(lab)
    held = faults.delay(spk, "meta l4proto tcp", direction="out", delay_ms=700)
    try:
        toml = speaker_toml(lab, str(rtr.addr4("spk")), router_id=our_id)
        speaker = OurSpeaker(spk, toml).start()
        frr.wait_bgp_state(str(spk.addr4("rtr1")), timeout=15)
        wait_until(lambda: VIP4 in frr.bgp_routes("ipv4"), timeout=10, what="FRR: our route")
        time.sleep(3)
    finally:
        held.undo()
    assert len(speaker.find("established with")) == 1, speaker.find("established with")
    neighbor = frr.bgp_neighbor(str(spk.addr4("rtr1")))
    assert neighbor.get("connectionsEstablished") == 1, neighbor
    for record in speaker.find("connection collision: keeping"):
        assert f"keeping the connection {kept} opened" in record["msg"], record
    print("collisions:", len(speaker.find("connection collision: keeping")))
    assert speaker.terminate() == 0


def test_wrong_md5_reported_within_connect_time_plus_one_second(
    lab: Lab, lab_require: Require
) -> None:
    """FRR (active, password "right") and we (password "wrong", connect_time 10 s by
    default): both sides' SYNs are dropped by the other's kernel. On main each attempt
    was cut by the retry timer and nothing was reported for 27 s."""
    lab_require("frr")
    rtr, spk = lab["rtr1"], lab["spk"]
    frr_active(lab, password="right")
    speaker = OurSpeaker(
        spk, speaker_toml(lab, str(rtr.addr4("spk")), extra_peer='password = "wrong"\n')
    )
    speaker.start()
    record = speaker.wait_log("connect to", timeout=14)
    assert "TCP MD5 password set" in record["msg"], record
    assert "timed out after 10 s" in record["msg"], record
    (starting,) = speaker.find("bgp rtr1: starting")
    took = _seconds(record["ts"]) - _seconds(starting["ts"])
    print(f"wrong MD5 reported {took:.2f} s after the session started")
    assert took <= 10 + 1, took  # connect_time + 1 s
    assert speaker.find("bgp rtr1: connect to") == [record]  # one line, not one a second
    assert speaker.terminate() == 0


def _seconds(stamp: str) -> float:
    """A log record's ISO time ("2026-12-01T19:58:22.778Z") as epoch seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_ipv6_routes_return_after_a_link_flap_removed_the_address(
    lab: Lab, lab_require: Require
) -> None:
    """IPv4 session carrying IPv6 routes. The link flaps (keep_addr_on_down=0: our IPv6
    address is gone) and the session restarts before the address is learnt again: the
    new session has no IPv6 next hop. When the address is back, the IPv6 routes must
    go out again with it (on main they stayed unannounced until the next session)."""
    lab_require("frr")
    rtr, spk = lab["rtr1"], lab["spk"]
    s6 = str(spk.addr6("rtr1"))
    dev = spk.iface("rtr1")
    frr = frr_active(lab)
    speaker = OurSpeaker(spk, speaker_toml(lab, str(rtr.addr4("spk")), v6=True)).start()
    wait_until(lambda: VIP6 in frr.bgp_routes("ipv6"), timeout=15, what="FRR: our IPv6 route")
    spk.sysctl(f"net.ipv6.conf.{dev}.keep_addr_on_down", "0")
    spk.run("ip", "link", "set", dev, "down")
    spk.run("ip", "link", "set", dev, "up")
    assert s6 not in spk.run("ip", "-6", "addr", "show", "dev", dev).stdout
    frr.vtysh("bgpd", "clear bgp *")
    speaker.wait_log("no next hop for ipv6-unicast", timeout=15)
    wait_until(lambda: VIP4 in frr.bgp_routes("ipv4"), timeout=15, what="FRR: IPv4 route back")
    assert VIP6 not in frr.bgp_routes("ipv6")
    spk.run("ip", "-6", "addr", "add", f"{s6}/64", "dev", dev, "nodad")
    wait_until(lambda: VIP6 in frr.bgp_routes("ipv6"), timeout=3, what="FRR: IPv6 route back")
    detail = frr.vtysh_json("bgpd", f"show bgp ipv6 unicast {VIP6} json")
    assert s6 in {h["ip"] for h in detail["paths"][0]["nexthops"]}
    assert speaker.terminate() == 0


def test_route_back_soon_after_frr_no_neighbor_shutdown(lab: Lab, lab_require: Require) -> None:
    """FRR `neighbor X shutdown` then `no neighbor shutdown`, three times: FRR
    connects to us after its `timers connect 1` and our listener takes it at once,
    though our own restart wait is still running, and FRR's administrative Cease is
    not damped as an oscillation (measured 1.1 s each; 13.3 s on main)."""
    lab_require("frr")
    rtr, spk = lab["rtr1"], lab["spk"]
    s4 = str(spk.addr4("rtr1"))
    frr = frr_active(lab)
    speaker = OurSpeaker(spk, speaker_toml(lab, str(rtr.addr4("spk")))).start()
    wait_until(lambda: VIP4 in frr.bgp_routes("ipv4"), timeout=15, what="FRR: our route")
    figures = []
    for _ in range(3):
        frr.configure("bgpd", "router bgp 64512", f"neighbor {s4} shutdown")
        wait_until(lambda: VIP4 not in frr.bgp_routes("ipv4"), timeout=5, what="route gone")
        time.sleep(1.0)
        started = time.monotonic()
        frr.configure("bgpd", "router bgp 64512", f"no neighbor {s4} shutdown")
        wait_until(lambda: VIP4 in frr.bgp_routes("ipv4"), timeout=5, what="route back",
                   interval=0.02)  # fmt: skip
        figures.append(time.monotonic() - started)
    print(f"route back after no neighbor shutdown: {[round(f, 2) for f in figures]} s")
    assert max(figures) < 3.0, figures
    assert speaker.terminate() == 0
