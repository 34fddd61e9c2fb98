"""BFD echo with no ``interface`` configured: the interface of the kernel's route to the
peer is used (as FRR does), so a MetalLB manifest whose BFD profile has ``echoMode``
imports without ``--interface`` and runs. Against FRR: bgpd, and bfdd with echo-mode
(it advertises Required Min Echo RX, so our echoes go out through rtr1's forwarding
plane; its echoes are looped by our node)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from lab import Lab, faults, wait_until
from lab.frr import FRR, bfd_peer_block, bfdd_config, bgpd_config
from lab.ours import REPO, OurSpeaker, our_env
from tests.helpers import Require

pytestmark = pytest.mark.lab

VIP = "198.19.0.10/32"
ECHO_MS = 50
DETECT_MS = 3 * ECHO_MS

MANIFESTS = """
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata:
  name: aggressive
  namespace: metallb-system
spec:
  receiveInterval: 300
  transmitInterval: 300
  detectMultiplier: 3
  echoMode: true
  echoInterval: 50
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata:
  name: tor
  namespace: metallb-system
spec:
  myASN: 64513
  peerASN: 64512
  peerAddress: 198.18.1.1
  holdTime: 9s
  bfdProfile: aggressive
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: vips
  namespace: metallb-system
spec:
  addresses:
  - 198.19.0.10/32
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: to-tor
  namespace: metallb-system
spec:
  ipAddressPools: [vips]
"""


def cli(lab: Lab, socket: str, *args: str) -> object:
    cp = lab["spk"].run("env", f"PYTHONPATH={REPO}", sys.executable, "-m", "speaker.cli",
                        *args, "-s", socket)  # fmt: skip
    return json.loads(cp.stdout)


def test_echo_without_interface_uses_the_routes_and_a_cut_is_detected(
    lab: Lab, lab_require: Require
) -> None:
    lab_require("frr")
    rtr, spk = lab["rtr1"], lab["spk"]
    r_addr, s_addr = str(rtr.addr4("spk")), str(spk.addr4("rtr1"))
    manifests = lab.dir / "metallb.yaml"
    manifests.write_text(MANIFESTS)
    converted = subprocess.run(
        [sys.executable, "-m", "speaker.cli", "import-metallb", "--announce-all", str(manifests)],
        capture_output=True, text=True, check=False, cwd=REPO, env=our_env(),
    )  # fmt: skip
    assert converted.returncode == 0, converted.stderr
    assert "\ninterface = " not in converted.stdout  # nothing names the interface
    socket = str(lab.dir / "speaker.sock")
    config = (
        converted.stdout.replace(
            "[speaker]", f'[speaker]\nstate_file = "{lab.dir / "state.json"}"', 1
        )
        + f'\n[control]\nsocket = "{socket}"\n'
    )

    frr = FRR(
        rtr,
        bfdd=bfdd_config([bfd_peer_block(s_addr, local=r_addr, interface="to-spk",
                                         tx=300, rx=300, echo=ECHO_MS)]),
        bgpd=bgpd_config(64512, r_addr, [f"neighbor {s_addr} remote-as 64513",
                                         f"neighbor {s_addr} timers 3 9",
                                         f"neighbor {s_addr} timers connect 1"]),
    ).start()  # fmt: skip
    speaker = OurSpeaker(spk, config).start()
    frr.wait_bgp_state(s_addr, timeout=30)
    wait_until(lambda: VIP in frr.bgp_routes(), timeout=10, what="our route at FRR")
    frr.wait_bfd_status(s_addr, "up", timeout=15)
    speaker.wait_log("echo link up on to-rtr1", timeout=10)

    peers = cli(lab, socket, "show", "bfd", "peers", "--json")
    assert isinstance(peers, list) and len(peers) == 1
    assert peers[0]["interface"] == "to-rtr1" and peers[0]["status"] == "up"
    time.sleep(1.0)
    counters = cli(lab, socket, "show", "bfd", "peers", "counters", "--json")
    assert isinstance(counters, list)
    echo_out, echo_in = counters[0]["echo-packet-output"], counters[0]["echo-packet-input"]
    print(f"after 1 s Up: echo out {echo_out}, echo in {echo_in} (ours and FRR's looped)")
    assert echo_out >= 10, counters[0]

    # The cut: rtr1 stops forwarding our echoes; control packets still flow, so only
    # the echo function can see it.
    seen = len(speaker.find("UP -> DOWN"))
    fault = faults.drop(rtr, "udp dport 3785", direction="forward")
    wait_until(lambda: VIP not in frr.bgp_routes(), timeout=5, interval=0.005,
               what="our route withdrawn at FRR")  # fmt: skip
    gone_ms = (time.monotonic() - fault.at.before_mono) * 1000
    down = speaker.wait_log("UP -> DOWN", after=seen, timeout=5)
    teardown = speaker.wait_log("BGP torn down", timeout=5)
    print(f"echo cut -> route gone at FRR {gone_ms:.0f} ms; {teardown['msg']}")
    assert "ECHO_FUNCTION_FAILED" in down["msg"] or down.get("diag") == "ECHO_FUNCTION_FAILED", down
    assert gone_ms < DETECT_MS + 1000  # FRR polled through vtysh: a generous bound
    fault.undo()
    wait_until(lambda: VIP in frr.bgp_routes(), timeout=30, what="our route back at FRR")
