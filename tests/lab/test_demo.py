"""The README's first command runs this demo; it must keep working."""

from __future__ import annotations

import re

import pytest

from lab import demo
from speaker.peer import CEASE_FIRST
from tests.helpers import Require

pytestmark = pytest.mark.lab


def test_demo_prints_a_failover_timeline(
    lab_require: Require, capsys: pytest.CaptureFixture[str]
) -> None:
    lab_require("frr", "gobgp", "capture")
    assert demo.main(["--rounds", "1"]) == 0  # our speaker in spk
    out = capsys.readouterr().out
    times = {
        label: float(ms)
        for label, ms in re.findall(
            r"(BFD Down on the wire|NOTIFICATION from spk|gone from gobgpd)\s+t\+\s*([\d.]+) ms",
            out,
        )
    }
    assert set(times) == {"BFD Down on the wire", "NOTIFICATION from spk", "gone from gobgpd"}, out
    # 50/50/3: detection within 150 ms of the cut (plus the fault's own latency); the
    # Cease is written in the detection step.
    assert times["NOTIFICATION from spk"] <= 160
    # Our own BFD Down follows the Cease by CEASE_FIRST (50 ms), so that the router
    # reads the Cease first (BIRD's error wait, docs/bfd.md).
    gap = times["BFD Down on the wire"] - times["NOTIFICATION from spk"]
    assert CEASE_FIRST * 1000 - 5 <= gap <= CEASE_FIRST * 1000 + 15, gap
    # Wire stamps (kernel) against a polled RIB (userspace, ~10 ms per gobgp call):
    # allow a few ms of skew.
    assert times["NOTIFICATION from spk"] <= times["gone from gobgpd"] + 5
    assert "route back after" in out
