"""`speaker run` with one good router and two broken peers: one whose address has no
route (and no source_address), one whose interface does not exist. Each broken peer
logs one line naming it and retries; the good router gets its routes. On the main
branch of 2026-12-01 `speaker run` exited 2 at start (ENETUNREACH while deriving)."""

from __future__ import annotations

import time

import pytest

from lab import Lab
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

UNROUTED = "198.18.250.1"  # nothing in the lab routes there


def test_unreachable_peer_and_missing_interface_cost_only_their_peer(
    lab: Lab, lab_require: Require
) -> None:
    lab_require("frr", "gobgp")
    gobgp, _ = gobgp_and_bfdd(lab, "rtr1")
    broken = f"""
[[peers]]
name = "lost"
peer_address = "{UNROUTED}"
peer_asn = 64512
bfd_profile = "fast"
hold_time = "9s"

[[peers]]
name = "typo"
peer_address = "{lab["rtr2"].addr4("spk")}"
peer_asn = 64512
source_address = "{lab["spk"].addr4("rtr2")}"
interface = "to-rtr9"
bfd_profile = "fast"
hold_time = "9s"
"""
    speaker = OurSpeaker(lab["spk"], speaker_config(lab, ["rtr1"], extra=SERVICES + broken)).start()
    established_and_announced(gobgp, VIP, VIP2)
    lost = speaker.wait_log("peer lost: cannot start")
    typo = speaker.wait_log("peer typo: cannot start")
    assert f"no local address towards {UNROUTED}" in lost["msg"], lost["msg"]
    assert "interface 'to-rtr9' does not exist" in typo["msg"], typo["msg"]
    time.sleep(3.5)  # backoff 1, 2 s: they retry, one line each time, no traceback
    for name in ("lost", "typo"):
        lines = speaker.find(f"peer {name}:")
        assert len(lines) >= 2, lines
        assert all("Traceback" not in str(r) for r in lines)
    assert speaker.proc is not None and speaker.proc.alive()  # still running
    established_and_announced(gobgp, VIP, VIP2, timeout=1)
