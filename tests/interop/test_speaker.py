"""The product in the lab: `speaker run -c FILE` in spk, routers with gobgpd (BGP)
and FRR bfdd (BFD) at the same address. Acceptance of the speaker issue."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab import Lab, faults, wait_until
from lab.gobgp import path_attrs
from lab.ours import OurSpeaker
from tests.helpers import Require
from tests.helpers.interop import (
    SERVICES,
    VIP,
    VIP2,
    established_and_announced,
    gobgp_and_bfdd,
    speaker_config,
)

pytestmark = pytest.mark.lab


def test_routes_and_bfd_failover_within_detection_plus_50ms(lab: Lab, lab_require: Require) -> None:
    lab_require("frr", "gobgp")
    gobgp, bfd = gobgp_and_bfdd(lab, "rtr1")
    spk_addr = str(lab["spk"].addr4("rtr1"))
    speaker = OurSpeaker(lab["spk"], speaker_config(lab, ["rtr1"], extra=SERVICES)).start()
    established_and_announced(gobgp, VIP, VIP2)
    path = gobgp.rib()[VIP][0]
    attrs = path_attrs(path)
    assert attrs[1]["value"] == 0  # ORIGIN IGP
    assert attrs[2]["as_paths"][0]["asns"] == [64513]
    assert attrs[3]["nexthop"] == spk_addr
    assert sorted(attrs[8]["communities"]) == sorted([65000 << 16 | 100, 0xFFFFFF01])
    assert attrs[32]["value"] == [{"ASN": 64513, "LocalData1": 1, "LocalData2": 2}]
    bfd.wait_bfd_status(spk_addr, "up")
    wait_until(lambda: (bfd.bfd_peer(spk_addr) or {}).get("remote-receive-interval") == 50,
               timeout=5, what="fast BFD")  # fmt: skip
    time.sleep(0.5)

    fault = faults.drop_bfd(lab["spk"], direction="in")
    gone = gobgp.wait_rib(lambda r: VIP not in r, timeout=5, interval=0.005, what="withdrawal")
    elapsed_ms = (time.monotonic() - fault.at.before_mono) * 1000
    assert VIP2 not in gone
    # Detection 150 ms (the last packet arrived up to one interval before the fault)
    # + at most 50 ms for teardown and the router's withdrawal, polling included.
    assert elapsed_ms <= 150 + 50, f"routes left gobgpd {elapsed_ms:.0f} ms after the fault"
    teardown = speaker.wait_log("BGP torn down")
    print(f"fault -> routes gone at gobgpd: {elapsed_ms:.1f} ms; "
          f"BFD down -> NOTIFICATION: {teardown['teardown_ms']:.2f} ms")  # fmt: skip
    assert teardown["teardown_ms"] is not None and teardown["teardown_ms"] < 5

    fault.undo()
    restored = time.monotonic()
    established_and_announced(gobgp, VIP, VIP2, timeout=30)
    assert gobgp.resets(spk_addr)[1] == 2, "the teardown shows as a reset at the router"
    # BFD slow start (~1-2 s) + the 1 s hold-down + BGP establishment.
    assert time.monotonic() - restored >= 1.0


def test_ecmp_failing_one_router_leaves_the_other_untouched(lab: Lab, lab_require: Require) -> None:
    lab_require("frr", "gobgp")
    g1, b1 = gobgp_and_bfdd(lab, "rtr1")
    g2, b2 = gobgp_and_bfdd(lab, "rtr2")
    OurSpeaker(lab["spk"], speaker_config(lab, ["rtr1", "rtr2"], extra=SERVICES)).start()
    established_and_announced(g1, VIP, VIP2)
    established_and_announced(g2, VIP, VIP2)
    spk2 = str(lab["spk"].addr4("rtr2"))
    # BGP starts at once; BFD guards it from its first Up on.
    b1.wait_bfd_status(str(lab["spk"].addr4("rtr1")), "up")
    b2.wait_bfd_status(spk2, "up")
    before = g2.resets(spk2)
    r1 = str(lab["rtr1"].addr4("spk"))
    faults.drop(lab["spk"], f"ip saddr {r1} udp dport 3784", direction="in")
    g1.wait_rib(lambda r: VIP not in r, timeout=5, what="withdrawal at rtr1")
    time.sleep(1.0)
    assert VIP in g2.rib() and VIP2 in g2.rib()
    assert g2.resets(spk2) == before
    assert g2.session_state(spk2) == "established"
    assert (b2.bfd_peer(spk2) or {}).get("status") == "up"


def test_failing_health_check_withdraws_exactly_that_service(
    lab: Lab, lab_require: Require, tmp_path: Path
) -> None:
    lab_require("frr", "gobgp")
    gobgp, _ = gobgp_and_bfdd(lab, "rtr1")
    flag = lab.dir / "web-healthy"
    flag.write_text("")
    services = f"""
[[services]]
name = "web"
address = "198.19.0.10"
[services.health]
exec = ["test", "-e", "{flag}"]
interval = "500ms"
timeout = "1s"
rise = 2
fall = 2

[[services]]
name = "api"
address = "198.19.0.11"
"""
    OurSpeaker(lab["spk"], speaker_config(lab, ["rtr1"], extra=services)).start()
    established_and_announced(gobgp, VIP, VIP2)
    flag.unlink()
    t = time.monotonic()
    gobgp.wait_rib(lambda r: VIP not in r, timeout=5, what="web withdrawn")
    assert time.monotonic() - t <= 0.5 * 2 + 1.0
    assert VIP2 in gobgp.rib()
    flag.write_text("")
    established_and_announced(gobgp, VIP, timeout=5)


def test_sigterm_withdraws_at_once_and_bfd_goes_admin_down(lab: Lab, lab_require: Require) -> None:
    lab_require("frr", "gobgp")
    gobgp, bfd = gobgp_and_bfdd(lab, "rtr1")
    spk_addr = str(lab["spk"].addr4("rtr1"))
    speaker = OurSpeaker(lab["spk"], speaker_config(lab, ["rtr1"], extra=SERVICES)).start()
    established_and_announced(gobgp, VIP, VIP2)
    bfd.wait_bfd_status(spk_addr, "up")
    t = time.monotonic()
    assert speaker.terminate() == 0
    assert time.monotonic() - t < 2.0
    gobgp.wait_rib(lambda r: VIP not in r and VIP2 not in r, timeout=1.0, what="withdrawal")
    peer = bfd.wait_bfd_status(spk_addr, "down", timeout=2)
    assert peer["remote-diagnostic"] == "administratively down"
    assert peer["diagnostic"] == "neighbor signaled session down"
