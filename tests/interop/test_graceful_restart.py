"""Graceful restart (RFC 4724 + RFC 8538) of ``speaker run`` against real routers.

FRR 8.4 as operators configure it for a restarting neighbour: ``bgp graceful-restart``
and ``neighbor X bfd check-control-plane-failure`` (bfdd reads our C bit, 0: our BFD
shares fate with the control plane). gobgpd with graceful restart enabled for the
neighbour. What is checked:

* the Graceful Restart capability (restart time, N, F) and our End-of-RIB as the
  router reports them;
* the restart path (SIGUSR2): the router keeps our route as stale while no speaker
  runs, and the restarted speaker (R bit set) refreshes it: not stale after its
  End-of-RIB, and the route never left the router's table;
* the stop path (SIGTERM): the route goes at once (a Hard Reset);
* a real BFD failure while running still withdraws within detection + 100 ms.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime

import pytest

from lab import Lab, faults, wait_until
from lab.frr import FRR, bgpd_config
from lab.gobgp import GoBGP, neighbor_toml
from lab.ours import OurSpeaker
from tests.helpers import Require

pytestmark = pytest.mark.lab

VIP = "198.19.0.10/32"
DETECT_MS = 150  # 50 ms x 3
RESTART_TIME = 60
EXIT_RESTART = 75


def speaker_config(lab: Lab, *, graceful_restart: bool = True, bfd: bool = True) -> str:
    rtr, spk = lab["rtr1"], lab["spk"]
    return f"""
[speaker]
router_id = "{spk.addr4("rtr1")}"
my_asn = 64513
hold_down = "1s"
state_file = "{lab.dir / "speaker-state.json"}"

[[bfd_profiles]]
name = "fast"
transmit_interval = 50
receive_interval = 50
detect_multiplier = 3

[[peers]]
name = "rtr1"
peer_address = "{rtr.addr4("spk")}"
peer_asn = 64512
{'bfd_profile = "fast"' if bfd else ""}
hold_time = "9s"
connect_time = "1s"
graceful_restart = {"true" if graceful_restart else "false"}
graceful_restart_time = "{RESTART_TIME}s"

[[pools]]
name = "vips"
addresses = ["198.19.0.0/24"]

[[advertisements]]
name = "to-routers"

[[services]]
name = "web"
address = "198.19.0.10"
"""


def frr_router(lab: Lab, *, check_cbit: bool = True) -> FRR:
    rtr, spk = lab["rtr1"], lab["spk"]
    s_addr = str(spk.addr4("rtr1"))
    neighbors = [
        f"neighbor {s_addr} remote-as 64513",
        f"neighbor {s_addr} timers 3 9",
        f"neighbor {s_addr} timers connect 1",
        f"neighbor {s_addr} bfd",
        f"neighbor {s_addr} bfd 3 50 50",
    ]
    if check_cbit:
        neighbors.append(f"neighbor {s_addr} bfd check-control-plane-failure")
    return FRR(rtr, bfdd="bfd\n!\n", bgpd=bgpd_config(64512, str(rtr.lo4), neighbors,
               extra=" bgp graceful-restart"), debug=True).start()  # fmt: skip


def route(frr: FRR) -> dict[str, object] | None:
    """Our VIP's path at FRR (``show bgp ipv4 unicast VIP json``), or None."""
    detail = frr.vtysh_json("bgpd", f"show bgp ipv4 unicast {VIP} json")
    paths = detail.get("paths") or []
    return paths[0] if paths else None


def start_speaker(lab: Lab, name: str, **kw: bool) -> OurSpeaker:
    return OurSpeaker(lab["spk"], speaker_config(lab, **kw), name=name).start()


def up(frr: FRR, s_addr: str) -> None:
    frr.wait_bgp_state(s_addr, timeout=30)
    wait_until(lambda: VIP in frr.bgp_routes(), timeout=10, what="our route at FRR")
    frr.wait_bfd_status(s_addr, "up", timeout=15)


def test_frr_sees_the_capability_and_end_of_rib(lab: Lab, lab_require: Require) -> None:
    lab_require("frr")
    frr = frr_router(lab)
    s_addr = str(lab["spk"].addr4("rtr1"))
    speaker = start_speaker(lab, "speaker")
    up(frr, s_addr)
    gr = wait_until(lambda: frr.bgp_neighbor(s_addr).get("gracefulRestartInfo"), timeout=5,
                    what="FRR's graceful restart info")  # fmt: skip
    print("FRR gracefulRestartInfo:", gr)
    assert gr["remoteGrMode"] == "Restart", gr
    assert gr["nBit"] is True, gr
    assert gr["timers"]["receivedRestartTimer"] == RESTART_TIME, gr
    assert gr["rBit"] is False, gr  # a first start, not a restart
    ipv4 = gr["ipv4Unicast"]
    assert ipv4["fBit"] is True, ipv4  # forwarding state preserved
    assert ipv4["endOfRibStatus"]["endOfRibRecv"] is True, ipv4
    assert gr["endOfRibRecv"] == {"ipv4Unicast": True}, gr
    assert speaker.find("End-of-RIB sent for ipv4-unicast")


def _stale(frr: FRR) -> bool | None:
    path = route(frr)
    return None if path is None else bool(path.get("stale"))


@pytest.mark.parametrize("check_cbit", [True, False], ids=["check-cbit", "no-check-cbit"])
def test_restart_path_keeps_the_route_stale_then_refreshes_it(
    lab: Lab, lab_require: Require, check_cbit: bool
) -> None:
    lab_require("frr")
    frr = frr_router(lab, check_cbit=check_cbit)
    rtr = lab["rtr1"]
    s_addr = str(lab["spk"].addr4("rtr1"))
    first = start_speaker(lab, "speaker")
    up(frr, s_addr)
    assert _stale(frr) is False

    assert first.proc is not None
    code = first.proc.stop(timeout=5.0, sig=signal.SIGUSR2)
    assert code == EXIT_RESTART, code
    assert first.find("stopping for a restart (Cease/Administrative Reset"), first.find("bgp rtr1")
    wait_until(lambda: frr.bgp_neighbor(s_addr).get("bgpState") != "Established", timeout=5,
               what="FRR: our session down")  # fmt: skip
    # No speaker runs: FRR keeps the route as stale, BFD's Down notwithstanding, and the
    # kernel route stays (the data plane keeps working).
    wait_until(lambda: (frr.bfd_peer(s_addr) or {}).get("status") != "up", timeout=5,
               what="FRR's BFD session down")  # fmt: skip
    time.sleep(1.0)
    assert _stale(frr) is True, route(frr)
    assert "via" in rtr.run("ip", "route", "show", VIP).stdout
    gone = frr.bgp_neighbor(s_addr)
    print("FRR while we are gone:", gone.get("lastResetDueTo"), gone.get("gracefulRestartInfo"))
    assert gone["gracefulRestartInfo"]["timers"]["restartTimerRemaining"] > 0, gone

    # Back within the restart time: R set, the route refreshed, no longer stale.
    second = start_speaker(lab, "speaker2")
    second.wait_log("graceful restart R bit")
    frr.wait_bgp_state(s_addr, timeout=30)
    second.wait_log("End-of-RIB sent for ipv4-unicast", timeout=10)
    wait_until(lambda: _stale(frr) is False, timeout=10, what="the route refreshed (not stale)")
    info = frr.bgp_neighbor(s_addr)["gracefulRestartInfo"]
    print("FRR after our restart:", info)
    assert info["rBit"] is True and info["remoteGrMode"] == "Restart", info
    frr.wait_bfd_status(s_addr, "up", timeout=15)
    assert "via" in rtr.run("ip", "route", "show", VIP).stdout


def test_restart_without_graceful_restart_loses_the_route(lab: Lab, lab_require: Require) -> None:
    """The same restart path with ``graceful_restart = false``: today's behaviour, the
    route goes as soon as the session does (the test that the one above can fail)."""
    lab_require("frr")
    frr = frr_router(lab)
    s_addr = str(lab["spk"].addr4("rtr1"))
    first = start_speaker(lab, "speaker", graceful_restart=False)
    up(frr, s_addr)
    assert first.proc is not None
    assert first.proc.stop(timeout=5.0, sig=signal.SIGUSR2) == EXIT_RESTART
    assert first.find("graceful restart is not configured")
    wait_until(lambda: route(frr) is None, timeout=5, interval=0.01, what="route gone at FRR")


def test_stop_path_withdraws_at_once(lab: Lab, lab_require: Require) -> None:
    lab_require("frr")
    frr = frr_router(lab)
    s_addr = str(lab["spk"].addr4("rtr1"))
    speaker = start_speaker(lab, "speaker")
    up(frr, s_addr)
    t0 = time.monotonic()
    assert speaker.terminate() == 0
    wait_until(lambda: route(frr) is None, timeout=5, interval=0.01, what="route gone at FRR")
    gone_ms = (time.monotonic() - t0) * 1000
    print(f"stop path: route gone at FRR {gone_ms:.0f} ms after SIGTERM")
    reset = frr.bgp_neighbor(s_addr)
    print("FRR after our stop:", reset.get("lastResetDueTo"), reset.get("lastNotificationReason"))
    assert gone_ms < 2000


@pytest.mark.parametrize("graceful_restart", [True, False], ids=["gr", "no-gr"])
def test_bfd_failure_still_withdraws_at_once(
    lab: Lab, lab_require: Require, graceful_restart: bool
) -> None:
    """A real path failure while we run: Cease/BFD Down (a Hard Reset with N) within
    detection + 100 ms, and FRR drops the route at once (not kept as stale)."""
    lab_require("frr")
    frr = frr_router(lab)
    s_addr = str(lab["spk"].addr4("rtr1"))
    speaker = start_speaker(lab, "speaker", graceful_restart=graceful_restart)
    up(frr, s_addr)
    time.sleep(4.0)  # past FRR's BFD re-creation after Established (field notes)
    fault = faults.drop_bfd(lab["spk"], direction="in")
    wait_until(lambda: frr.bgp_neighbor(s_addr).get("bgpState") != "Established", timeout=5,
               interval=0.002, what="FRR: BGP down")  # fmt: skip
    bgp_down_ms = (time.monotonic() - fault.at.before_mono) * 1000
    wait_until(lambda: route(frr) is None, timeout=5, interval=0.002, what="route gone at FRR")
    gone_ms = (time.monotonic() - fault.at.before_mono) * 1000
    teardown = speaker.wait_log("BGP torn down")
    down = [r for r in speaker.find("UP -> DOWN") if r.get("protocol") == "bfd"][-1]
    detected = datetime.fromisoformat(down["ts"].replace("Z", "+00:00")).timestamp()
    notification_ms = (detected - fault.at.before_wall) * 1000 + teardown["teardown_ms"]
    neighbor = frr.bgp_neighbor(s_addr)
    print(f"BFD cut, graceful_restart={graceful_restart}: NOTIFICATION written "
          f"{notification_ms:.1f} ms, FRR's BGP down {bgp_down_ms:.1f} ms, route gone at FRR "
          f"{gone_ms:.1f} ms; FRR: {neighbor.get('lastResetDueTo')}, "
          f"{neighbor.get('lastNotificationReason')}")  # fmt: skip
    # Our log stamps are whole milliseconds: 1 ms of slack on top.
    assert notification_ms <= DETECT_MS + 100 + 1, f"NOTIFICATION {notification_ms:.0f} ms"
    # FRR's side, polled through vtysh (tens of ms per call), as test_frr_coupled_bfd.
    assert bgp_down_ms <= DETECT_MS + 250, f"FRR saw BGP down {bgp_down_ms:.0f} ms after the cut"
    assert gone_ms <= DETECT_MS + 350, f"route gone {gone_ms:.0f} ms after the cut"
    fault.undo()


def test_gobgpd_sees_capability_and_end_of_rib_and_keeps_the_route(
    lab: Lab, lab_require: Require
) -> None:
    """gobgpd 3.10 with graceful restart (helper) for the neighbour and ipv4-unicast."""
    lab_require("gobgp")
    rtr, spk = lab["rtr1"], lab["spk"]
    s_addr = str(spk.addr4("rtr1"))
    extra = (
        "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n"
        "  [neighbors.graceful-restart.config]\n    enabled = true\n"
        "    restart-time = 120\n    notification-enabled = true\n"
    )
    gobgp = GoBGP(rtr, asn=64512, router_id=str(rtr.addr4("spk")),
                  neighbors=neighbor_toml(s_addr, 64513, families=["ipv4-unicast"],
                                          extra=extra)).start()  # fmt: skip
    first = start_speaker(lab, "speaker", bfd=False)
    gobgp.wait_established(s_addr)
    gobgp.wait_rib(lambda rib: VIP in rib, timeout=10)
    text = gobgp.cli("neighbor", s_addr, check_json=False)
    print(text)
    gr = text[text.index("graceful-restart:") :].split("4-octet-as")[0]
    assert "advertised and received" in gr, gr
    assert f"Remote: restart time {RESTART_TIME} sec, notification flag set" in gr, gr
    assert "ipv4-unicast, forward flag set" in gr, gr
    first.wait_log("End-of-RIB sent for ipv4-unicast")
    (afi_safi,) = gobgp.neighbor(s_addr)["afi_safis"]
    assert afi_safi["mp_graceful_restart"]["state"]["end_of_rib_received"] is True, afi_safi

    assert first.proc is not None
    assert first.proc.stop(timeout=5.0, sig=signal.SIGUSR2) == EXIT_RESTART
    wait_until(lambda: gobgp.session_state(s_addr) != "established", timeout=5,
               what="gobgpd: our session down")  # fmt: skip
    time.sleep(1.0)
    rib = gobgp.rib()
    print("gobgpd rib while we are gone:", rib)
    assert VIP in rib and rib[VIP][0].get("stale") is True, rib
    start_speaker(lab, "speaker2", bfd=False)
    gobgp.wait_established(s_addr)
    wait_until(lambda: VIP in gobgp.rib() and not gobgp.rib()[VIP][0].get("stale"), timeout=10,
               what="gobgpd: the route refreshed")  # fmt: skip
