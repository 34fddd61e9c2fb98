"""BIRD 2 must read our Cease before its BFD reports our Down (docs/bfd.md, "BFD and
BGP together"): else ``bgp_bfd_notify`` arms its 60 s ``error wait time`` and the
route stays away for a minute after the path is back.

In the matrix this is a race (BIRD's BFD thread against its main loop reading the
BGP socket) that a loaded host loses now and then. Here it is made certain: our
BGP packets to BIRD are held 10 ms on the way out (lab.nfqdelay), so a Down packet
sent as soon as the Cease is written arrives first. With the speaker's Down held
CEASE_FIRST (50 ms) after the Cease, BIRD still reads the Cease first.
"""

from __future__ import annotations

import time

import pytest

from lab import Lab, faults
from lab.matrix import Cell, Ends, speaker_toml, start_router
from lab.ours import OurSpeaker
from tests.helpers import Require
from tests.helpers.interop import Ours, poll

pytestmark = pytest.mark.lab

BGP_DELAY_MS = 10.0


def test_bird_reads_our_cease_before_our_bfd_down(lab: Lab, lab_require: Require) -> None:
    lab_require("bird")
    spk, rtr = lab["spk"], lab["rtr1"]
    cell = Cell("bird")
    ends = Ends.of(cell, spk, rtr)
    router = start_router(cell, lab, ends, bfd_ms=100)
    try:
        socket = lab.dir / "speaker.sock"
        speaker = OurSpeaker(spk, speaker_toml(cell, ends, lab=lab, control=socket,
                                               bfd_ms=100)).start()  # fmt: skip
        ours = Ours(speaker, str(socket))
        up, _ = poll(lambda: router.established() and router.has_route()
                     and ours.bfd().get("status") == "up" and router.bfd_up(), 15.0)  # fmt: skip
        assert up is not None, f"not up: {router.describe()}"
        # Whichever side connected, our BGP segments to BIRD are held BGP_DELAY_MS.
        slow = [
            faults.delay(spk, f"tcp {port} 179", direction="out", delay_ms=BGP_DELAY_MS)
            for port in ("dport", "sport")
        ]
        try:
            cut = faults.drop_bfd(spk, direction="in")
            gone, _ = poll(lambda: not router.has_route(), 5.0)
            assert gone is not None, "the route stayed at the router after the BFD cut"
            time.sleep(0.3)
            lifted = cut.undo()
            back, _ = poll(router.has_route, 10.0)
        finally:
            for fault in slow:
                fault.undo()
        assert back is not None, (
            "route not back 10 s after the cut was lifted: BIRD saw our BFD Down before "
            f"our Cease (error wait)\n{router.describe()}"
        )
        assert back - lifted.before_mono <= 3.0
    finally:
        router.close()
