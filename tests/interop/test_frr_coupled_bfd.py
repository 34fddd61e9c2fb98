"""The product against FRR as operators configure it: bgpd with ``neighbor X bfd``
(bfdd + zebra), the router active or passive, single-hop or ``ebgp-multihop`` (FRR
creates a multihop BFD session only once BGP's TCP connection exists: on the main
branch of 2026-12-01, which waited for BFD before BGP, it never came up). FRR
re-creates its BFD session right after Established (local 0.0.0.0 -> its real
address); the old one's last packet is a Down with diag 3. The speaker must not
flap on it, and a real BFD failure must still tear BGP down at once."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from lab import Lab, faults, wait_until
from lab.ours import OurSpeaker
from tests.helpers import Require
from tests.helpers.interop import frr_coupled_speaker_config, frr_router

pytestmark = pytest.mark.lab

VIP = "198.19.0.10/32"
#: No flap in the first seconds after Established (the issue asks 30 s; FRR's reset
#: comes ~1.6 ms after Established, so 12 s covers it and keeps the suite fast).
SOAK = 12.0
DETECT_MS = 150  # 50 ms x 3


@pytest.mark.parametrize(
    ("passive", "strict", "multihop"),
    [(False, False, False), (True, False, False), (True, True, False), (False, False, True)],
    ids=["router-active", "router-passive", "router-passive-bfd-strict", "multihop"],
)
def test_frr_neighbor_bfd_no_first_session_flap_and_a_cut_still_tears_down(
    lab: Lab, lab_require: Require, passive: bool, strict: bool, multihop: bool
) -> None:
    """By default BGP is Established before BFD is first Up (BFD's slow start takes a
    second, BGP milliseconds), so FRR's re-created session is never an Up -> Down, at
    either end: this is why FRR on the node keeps BGP up. With ``bfd_strict`` BFD is Up
    first and the deleted session's Down (diag 3) comes while Up: we keep BGP (a reset,
    not a path failure), but FRR 8.4's bgpd tears the session down itself (FRR 10.3
    stopped that: bgpd resets only on a BFD Down later than the BGP session's start)."""
    lab_require("frr")
    frr = frr_router(lab, passive=passive, multihop=multihop)
    s_addr = str(lab["spk"].addr4("rtr1"))
    speaker = OurSpeaker(
        lab["spk"], frr_coupled_speaker_config(lab, strict=strict, multihop=multihop)
    ).start()
    frr.wait_bgp_state(s_addr, timeout=30)
    wait_until(lambda: VIP in frr.bgp_routes(), timeout=10, what="our route at FRR")
    frr.wait_bfd_status(s_addr, "up", timeout=10)
    established = frr.bgp_neighbor(s_addr)
    time.sleep(SOAK)

    frr.wait_bgp_state(s_addr, timeout=10)
    neighbor = frr.bgp_neighbor(s_addr)
    # We never tear down: no BFD teardown, no NOTIFICATION from us.
    assert not speaker.find("BGP torn down"), speaker.find("BGP torn down")
    assert not speaker.find("NOTIFICATION sent"), speaker.find("NOTIFICATION sent")
    if not strict:  # ... and neither does FRR: one session from the start
        assert neighbor.get("connectionsEstablished") == 1, neighbor.get("lastResetDueTo")
        assert neighbor.get("connectionsDropped") == established.get("connectionsDropped")
    assert VIP in frr.bgp_routes()
    assert (frr.bfd_peer(s_addr) or {}).get("status") == "up"
    # With bfd_strict, FRR 8.4's own Cease and its deleted session's Down race: the
    # Down is either kept as a reset (BGP still Established here) or comes after the
    # Cease. Either way no NOTIFICATION from us (above) and BGP is back (below).
    for record in speaker.find("BFD reset by the router") + speaker.find("after the router's"):
        print(record["msg"])

    # A one-way cut: our side stops hearing BFD; detection expires, BGP goes at once.
    fault = faults.drop_bfd(lab["spk"], direction="in")
    wait_until(lambda: frr.bgp_neighbor(s_addr).get("bgpState") != "Established", timeout=5,
               interval=0.002, what="FRR: BGP down")  # fmt: skip
    bgp_down_ms = (time.monotonic() - fault.at.before_mono) * 1000
    wait_until(lambda: VIP not in frr.bgp_routes(), timeout=5, interval=0.005,
               what="our route withdrawn at FRR")  # fmt: skip
    route_gone_ms = (time.monotonic() - fault.at.before_mono) * 1000
    teardown = speaker.wait_log("BGP torn down")
    down = [r for r in speaker.find("UP -> DOWN") if r.get("protocol") == "bfd"][-1]
    detected = datetime.fromisoformat(down["ts"].replace("Z", "+00:00")).timestamp()
    notification_ms = (detected - fault.at.before_wall) * 1000 + teardown["teardown_ms"]
    cell = f"router {'passive' if passive else 'active'}{' bfd_strict' if strict else ''}"
    cell += " multihop" if multihop else ""
    print(f"{cell}: fault -> NOTIFICATION written {notification_ms:.1f} ms, FRR's BGP down "
          f"{bgp_down_ms:.1f} ms, route gone at FRR {route_gone_ms:.1f} ms")  # fmt: skip
    # Our log stamps are whole milliseconds: 1 ms of slack on top.
    assert notification_ms <= DETECT_MS + 100 + 1, f"NOTIFICATION {notification_ms:.0f} ms"
    # FRR's side, polled through vtysh (tens of ms per call): a generous bound.
    assert bgp_down_ms <= DETECT_MS + 250, f"FRR saw BGP down {bgp_down_ms:.0f} ms after the cut"
    fault.undo()
