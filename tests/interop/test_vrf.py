"""Peers in a Linux VRF (MetalLB's BGPPeer ``vrf``), against FRR (bgpd + bfdd).

In spk: ``ip link add red type vrf table 10`` and the link to rtr1 enslaved to it.
The link to rtr2 stays in the default VRF and is given the *same* addresses as the
link to rtr1 (198.18.1.1 for the router, 198.18.1.2 for us), so one peer address
exists in two VRFs: peer "red-tor" (``vrf = "red"``) and peer "blue-tor" (default
VRF) must be two sessions, each on its own link, with its own BFD session, and a
connection arriving in the VRF must reach the VRF's peer. FRR runs in the routers'
default VRFs, as a ToR that knows nothing of our VRF.

This needs a kernel with the VRF driver (CONFIG_NET_VRF); the test skips, naming
that, where ``ip link add ... type vrf`` is refused (the kernel of the development
machines of 2026-12-02 is one: tests/speaker/test_vrf_sockets.py covers what can be
covered there).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from lab import Lab, faults, wait_until
from lab.frr import FRR, bfd_peer_block, bfdd_config, bgpd_config
from lab.netns import Host
from lab.ours import REPO, OurSpeaker
from tests.helpers import Require

pytestmark = pytest.mark.lab

VIP = "198.19.0.10/32"
ROUTER, US = "198.18.1.1", "198.18.1.2"
DETECT_MS = 150  # 50 ms x 3


def make_vrf(spk: Host) -> None:
    """``red`` (table 10) in spk with the link to rtr1 in it; skip without a VRF driver."""
    made = spk.run("ip", "link", "add", "red", "type", "vrf", "table", "10", check=False)
    if made.returncode != 0:
        pytest.skip(f"this kernel has no VRF support (CONFIG_NET_VRF): {made.stderr.strip()}")
    spk.run("ip", "link", "set", "red", "up")
    spk.run("ip", "link", "set", "to-rtr1", "master", "red")


def same_addresses_on_link_2(lab: Lab) -> None:
    """rtr2-spk readdressed as rtr1-spk: 198.18.1.1 (router) and 198.18.1.2 (us)."""
    for host, address in ((lab["rtr2"], ROUTER), (lab["spk"], US)):
        dev = "to-spk" if host.name == "rtr2" else "to-rtr2"
        host.run("ip", "addr", "flush", "dev", dev, "scope", "global")
        host.run("ip", "addr", "add", f"{address}/24", "dev", dev)


def frr(host: Host, *, passive: bool) -> FRR:
    neighbors = [
        f"neighbor {US} remote-as 64513",
        f"neighbor {US} timers 3 9",
        f"neighbor {US} timers connect 1",
    ]
    if passive:
        neighbors.append(f"neighbor {US} passive")
    return FRR(
        host,
        bfdd=bfdd_config([bfd_peer_block(US, local=ROUTER, interface="to-spk", tx=50, rx=50)]),
        bgpd=bgpd_config(64512, str(host.lo4), neighbors),
    ).start()


def config(lab: Lab, *, red_passive: bool, socket: str, red_vrf: str = "red") -> str:
    return f"""
[speaker]
router_id = "198.18.0.1"
my_asn = 64513
hold_down = "1s"
state_file = "{lab.dir / "state.json"}"

[control]
socket = "{socket}"

[[bfd_profiles]]
name = "fast"
transmit_interval = 50
receive_interval = 50
detect_multiplier = 3

[[peers]]
name = "red-tor"
peer_address = "{ROUTER}"
peer_asn = 64512
vrf = "{red_vrf}"
bfd_profile = "fast"
hold_time = "9s"
passive = {"true" if red_passive else "false"}

[[peers]]
name = "blue-tor"
peer_address = "{ROUTER}"
peer_asn = 64512
bfd_profile = "fast"
hold_time = "9s"

[[pools]]
name = "vips"
addresses = ["198.19.0.10/32"]

[[advertisements]]
name = "to-routers"

[[services]]
name = "web"
address = "198.19.0.10"
"""


def speaker_cli(lab: Lab, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return lab["spk"].run("env", f"PYTHONPATH={REPO}", sys.executable, "-m", "speaker.cli",
                          *args, check=check)  # fmt: skip


@pytest.mark.parametrize("red_passive", [False, True], ids=["we-connect", "router-connects"])
def test_a_peer_in_a_vrf_and_one_at_the_same_address_in_the_default_vrf(
    lab: Lab, lab_require: Require, red_passive: bool
) -> None:
    lab_require("frr")
    spk = lab["spk"]
    make_vrf(spk)
    same_addresses_on_link_2(lab)
    socket = str(lab.dir / "speaker.sock")
    text = config(lab, red_passive=red_passive, socket=socket)

    # speaker check: this host has what the file asks; a wrong VRF is an error.
    path = lab.dir / "check.toml"
    path.write_text(text)
    checked = speaker_cli(lab, "check", "-c", str(path), check=False)
    assert checked.returncode == 0, checked.stderr
    path.write_text(config(lab, red_passive=red_passive, socket=socket, red_vrf="blue"))
    checked = speaker_cli(lab, "check", "-c", str(path), check=False)
    assert checked.returncode == 2 and 'peers[0].vrf: no VRF "blue" on this host' in checked.stderr

    red, blue = frr(lab["rtr1"], passive=not red_passive), frr(lab["rtr2"], passive=False)
    speaker = OurSpeaker(spk, text).start()
    for router in (red, blue):
        router.wait_bgp_state(US, timeout=30)
        wait_until(lambda r=router: VIP in r.bgp_routes(), timeout=10,  # type: ignore[misc]
                   what=f"our route at {router.host.name}")  # fmt: skip
        router.wait_bfd_status(US, "up", timeout=10)

    peers = json.loads(speaker_cli(lab, "show", "bfd", "peers", "--json", "-s", socket).stdout)
    by_name = {p["name"]: p for p in peers}
    assert by_name["red-tor"]["vrf"] == "red" and by_name["red-tor"]["interface"] == "to-rtr1"
    assert by_name["blue-tor"]["vrf"] == "default"
    assert by_name["blue-tor"]["interface"] == "to-rtr2"
    assert all(p["status"] == "up" for p in peers)
    # Each router's one BGP connection came from our link to it.
    assert red.bgp_neighbor(US).get("connectionsEstablished") == 1
    assert blue.bgp_neighbor(US).get("connectionsEstablished") == 1

    # A BFD cut towards the VRF's router: only the VRF's peer is torn down.
    fault = faults.drop_bfd(lab["rtr1"], direction="out")
    wait_until(lambda: VIP not in red.bgp_routes(), timeout=5, interval=0.005,
               what="our route withdrawn at rtr1")  # fmt: skip
    gone_ms = (time.monotonic() - fault.at.before_mono) * 1000
    teardown = speaker.wait_log("BGP torn down", timeout=5)
    print(f"vrf red: BFD cut -> route gone at rtr1 {gone_ms:.0f} ms; {teardown['msg']}")
    assert teardown["msg"].startswith("peer red-tor:")
    assert VIP in blue.bgp_routes() and (blue.bfd_peer(US) or {}).get("status") == "up"
    assert gone_ms <= DETECT_MS + 250
    fault.undo()
    wait_until(lambda: VIP in red.bgp_routes(), timeout=30, what="our route back at rtr1")
    assert blue.bgp_neighbor(US).get("connectionsEstablished") == 1  # never disturbed
