"""Reload without flaps: SIGHUP applies the difference; an invalid file changes nothing."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from lab import Lab, wait_until
from lab.gobgp import path_attrs
from lab.ours import OurSpeaker
from speaker.control import request
from tests.helpers import Require
from tests.helpers.interop import SERVICES, gobgp_and_bfdd, speaker_config

pytestmark = pytest.mark.lab

VIP, VIP2, VIP3 = "198.19.0.10/32", "198.19.0.11/32", "198.19.0.12/32"


def test_reload_adds_service_changes_bfd_and_community_without_resets(
    lab: Lab, lab_require: Require
) -> None:
    lab_require("frr", "gobgp")
    gobgp, bfd = gobgp_and_bfdd(lab, "rtr1", ms=50)
    spk_addr = str(lab["spk"].addr4("rtr1"))
    speaker = OurSpeaker(lab["spk"], speaker_config(lab, ["rtr1"], extra=SERVICES)).start()
    gobgp.wait_rib(lambda r: VIP in r and VIP2 in r, timeout=20, what="initial routes")
    bfd.wait_bfd_status(spk_addr, "up")
    time.sleep(1.0)
    resets = gobgp.resets(spk_addr)
    assert resets[1] == 1
    bfd_downs = bfd.bfd_counters()[0]["session-down"]

    new = speaker_config(lab, ["rtr1"], extra=SERVICES + """
[[services]]
name = "db"
address = "198.19.0.12"
""", ms=100).replace('"65000:100"', '"65000:200"')  # fmt: skip
    record = speaker.reload(new)
    assert record["msg"].startswith("reload applied"), record
    rib = gobgp.wait_rib(
        lambda r: VIP3 in r and 65000 << 16 | 200 in path_attrs(r[VIP][0])[8]["communities"],
        timeout=10, what="new service and community",
    )  # fmt: skip
    assert 65000 << 16 | 100 not in path_attrs(rib[VIP][0])[8]["communities"]
    wait_until(lambda: (bfd.bfd_peer(spk_addr) or {}).get("remote-receive-interval") == 100,
               timeout=10, what="new BFD interval at FRR")  # fmt: skip
    time.sleep(1.0)
    assert gobgp.resets(spk_addr) == resets, "BGP session was reset"
    assert gobgp.session_state(spk_addr) == "established"
    assert bfd.bfd_counters()[0]["session-down"] == bfd_downs, "BFD session went down"
    assert (bfd.bfd_peer(spk_addr) or {}).get("status") == "up"

    # An invalid file: rejected, nothing changes, the error is logged.
    record = speaker.reload(new.replace("hold_time", "hold_tme"))
    assert record["msg"].startswith("reload rejected"), record
    assert speaker.find("hold_tme"), "the error names the bad key"
    time.sleep(0.5)
    assert VIP3 in gobgp.rib() and gobgp.session_state(spk_addr) == "established"

    # Removing a service withdraws just that route, still without a reset.
    speaker.reload(
        new.replace(
            'name = "db"\naddress = "198.19.0.12"',
            'name = "db"\npool = "vips"\naddress = "198.19.0.13"',
        )
    )
    time.sleep(1.0)
    assert gobgp.resets(spk_addr) == resets


def test_empty_reload_is_refused_and_concurrent_reloads_restart_a_peer_once(
    lab: Lab, lab_require: Require
) -> None:
    """An empty file (SIGHUP) is refused: routes and sessions stay. Then SIGHUP and two
    ``speaker reload`` at the same moment, with a new router ID (a restart): the peer
    restarts once and one session runs (on main, several runners fought for it)."""
    lab_require("frr", "gobgp")
    gobgp, _bfd = gobgp_and_bfdd(lab, "rtr1", ms=50)
    spk_addr = str(lab["spk"].addr4("rtr1"))
    sock = lab.dir / "speaker.sock"
    config = speaker_config(lab, ["rtr1"], extra=SERVICES + f'\n[control]\nsocket = "{sock}"\n')
    speaker = OurSpeaker(lab["spk"], config).start()
    gobgp.wait_rib(lambda r: VIP in r and VIP2 in r, timeout=20, what="initial routes")
    time.sleep(1.0)
    resets = gobgp.resets(spk_addr)

    assert speaker.proc is not None
    seen = len(speaker.find("reload rejected"))
    speaker.config_path.write_text("")
    speaker.proc.send_signal(signal.SIGHUP)
    speaker.wait_log("reload rejected", after=seen)
    assert speaker.find("the file has no [[peers]]")
    time.sleep(1.0)
    assert gobgp.resets(spk_addr) == resets
    assert VIP in gobgp.rib() and gobgp.session_state(spk_addr) == "established"

    new = config.replace(f'router_id = "{spk_addr}"', 'router_id = "198.18.255.1"')
    assert new != config
    speaker.config_path.write_text(new)
    replies: list[dict[str, object]] = []
    controls = [
        threading.Thread(target=lambda: replies.append(request(sock, "reload"))) for _ in range(2)
    ]
    for control in controls:
        control.start()
    speaker.proc.send_signal(signal.SIGHUP)
    for control in controls:
        control.join(30)
    assert len(replies) == 2 and all(r["applied"] for r in replies), replies
    gobgp.wait_rib(lambda r: VIP in r and VIP2 in r, timeout=20, what="routes after restart")
    time.sleep(3.0)  # two runners would keep resetting each other's session by now
    flops, opens = gobgp.resets(spk_addr)
    assert opens == resets[1] + 1, (resets, (flops, opens))
    assert gobgp.session_state(spk_addr) == "established"
