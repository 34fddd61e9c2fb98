"""Our BGP speaker (in spk) against FRR bgpd (in rtr1): announce/withdraw over IPv4 and
IPv6 sessions, and a 500k-prefix table from FRR that must not disturb our session.

Route prefixes come from 198.19.0.0/16 and 2001:2:0:ff::/64 only.
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from lab import Lab
from lab.frr import FRR, bgpd_config
from lab.ours_bgp import OurBgp
from lab.proc import wait_until
from tests.helpers import Require

pytestmark = pytest.mark.lab

FULL_TABLE = 500_000
RSS_LIMIT_KB = 200 * 1024


def test_frr_takes_our_ipv4_and_ipv6_routes_and_withdrawals(lab: Lab, lab_require: Require) -> None:
    lab_require("frr")
    spk, rtr = lab["spk"], lab["rtr1"]
    s4, r4 = str(spk.addr4("rtr1")), str(rtr.addr4("spk"))
    s6, r6 = str(spk.addr6("rtr1")), str(rtr.addr6("spk"))
    frr = FRR(
        rtr,
        bfdd=None,
        bgpd=bgpd_config(
            64512,
            str(rtr.lo4),
            [f"neighbor {s4} remote-as 64513", f"neighbor {s6} remote-as 64513"],
        ),
    ).start()
    routes4 = ["198.19.3.0/24,community=65000:3,med=30", "198.19.4.1/32"]
    routes6 = ["2001:2:0:ff::3/128,community=65000:6", "2001:2:0:ff::100/120"]
    v4 = OurBgp(spk, peer=r4, peer_as=64512, local_as=64513, router_id=str(spk.lo4),
                routes=routes4, name="v4").start()  # fmt: skip
    v6 = OurBgp(spk, peer=r6, peer_as=64512, local_as=64513, router_id=str(spk.lo4),
                routes=routes6, name="v6").start()  # fmt: skip
    v4.wait_state("Established")
    v6.wait_state("Established")
    frr.wait_bgp_state(s4)
    frr.wait_bgp_state(s6)

    def routes(family: str) -> set[str]:
        return set(frr.bgp_routes(family))

    wait_until(lambda: routes("ipv4") == {"198.19.3.0/24", "198.19.4.1/32"}, timeout=10,
               what="FRR: our IPv4 routes")  # fmt: skip
    wait_until(lambda: routes("ipv6") == {"2001:2:0:ff::3/128", "2001:2:0:ff::100/120"}, timeout=10,
               what="FRR: our IPv6 routes")  # fmt: skip
    detail = frr.vtysh_json("bgpd", "show bgp ipv4 unicast 198.19.3.0/24 json")
    (info,) = detail["paths"]
    assert info["aspath"]["string"] == "64513"
    assert info["metric"] == 30
    assert info["community"]["string"] == "65000:3"
    assert info["nexthops"][0]["ip"] == s4
    detail6 = frr.vtysh_json("bgpd", "show bgp ipv6 unicast 2001:2:0:ff::3/128 json")
    hops6 = {h["ip"] for h in detail6["paths"][0]["nexthops"]}
    assert s6 in hops6, detail6["paths"][0]["nexthops"]

    v4.set_routes(routes4[1:])
    v6.set_routes(routes6[:1])
    wait_until(lambda: routes("ipv4") == {"198.19.4.1/32"}, timeout=10, what="IPv4 withdrawal")
    wait_until(lambda: routes("ipv6") == {"2001:2:0:ff::3/128"}, timeout=10, what="v6 withdrawal")
    assert v4.stop() == 0 and v6.stop() == 0
    wait_until(lambda: not routes("ipv4") and not routes("ipv6"), timeout=10, what="all gone")


def test_full_table_from_frr_keeps_session_and_memory_bounded(
    lab: Lab, lab_require: Require
) -> None:
    """FRR sends 500k IPv6 /128s (from 2001:2:0:ff::/64) with hold time 9 s: we stay
    Established, neither side's hold timer expires, and our peak RSS stays bounded."""
    lab_require("frr")
    spk, rtr = lab["spk"], lab["rtr1"]
    s6, r6 = str(spk.addr6("rtr1")), str(rtr.addr6("spk"))
    base = int(ipaddress.IPv6Address("2001:2:0:ff::"))
    networks = [f"{ipaddress.IPv6Address(base + i)}/128" for i in range(FULL_TABLE)]
    config = bgpd_config(
        64512,
        str(rtr.lo4),
        [f"neighbor {s6} remote-as 64513", f"neighbor {s6} timers 3 9"],
        networks6=networks,
    )
    frr = FRR(rtr, bfdd=None, bgpd=config).start(timeout=120)
    ours = OurBgp(spk, peer=r6, peer_as=64512, local_as=64513, router_id=str(spk.lo4),
                  hold=9, name="full").start()  # fmt: skip
    ours.wait_state("Established", timeout=30)
    started = time.monotonic()

    def received() -> int:
        return int(sum(ours.stats()["prefixes_received"].values()))

    wait_until(lambda: received() >= FULL_TABLE, timeout=60, interval=0.5,
               what=f"{FULL_TABLE} prefixes from FRR")  # fmt: skip
    took = time.monotonic() - started
    time.sleep(3.0)  # one more hold-timer period's worth of keepalives after the flood
    stats = ours.stats()
    assert stats["state"] == "Established"
    assert stats["flaps"] == 0
    assert stats["last_error_sent"] is None and stats["last_error_received"] is None
    assert stats["hold_time"] == 9
    assert stats["adj_rib_in"] == {}  # not kept
    assert [s["new"] for s in ours.states()].count("Established") == 1
    neighbor = frr.bgp_neighbor(s6)
    assert neighbor["bgpState"] == "Established"
    assert neighbor.get("connectionsDropped", 0) == 0, neighbor
    assert neighbor.get("connectionsEstablished", 1) == 1, neighbor
    peak = ours.peak_rss_kb()
    assert peak < RSS_LIMIT_KB, f"peak RSS {peak} KiB"
    print(f"\n{FULL_TABLE} prefixes in {took:.1f} s, peak RSS {peak / 1024:.1f} MiB")
