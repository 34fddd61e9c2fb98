"""A single-hop BFD session whose interface the route chose follows the route.

spk and rtr1 get a second link (198.18.3.0/24, ``to-rtr1b`` / ``to-spkb``) beside
the lab's first; BGP and BFD run between the loopbacks (198.18.0.1 and 198.18.0.2),
single-hop (TTL 1 BGP with FRR's ``disable-connected-check``, TTL 255 BFD), routed
over link 1. Then both hosts move their route to the other's loopback to link 2: the
speaker's session must move with it (same BFD session, no BGP restart), so that
taking link 1 down costs nothing. Without the move, the session's packets stay bound
to link 1 and the router's arrive on link 2 (counted as ``wrong-interface``): BFD
goes Down and tears BGP down.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from lab import Lab, wait_until
from lab.frr import FRR, bfd_peer_block, bfdd_config, bgpd_config
from lab.ours import REPO, OurSpeaker

pytestmark = pytest.mark.lab

VIP = "198.19.0.10/32"
US, ROUTER = "198.18.0.1", "198.18.0.2"  # spk's and rtr1's loopbacks


def router_bfd(*, echo: bool) -> str:
    """FRR's static session to our loopback. With ``echo``, FRR advertises Required Min
    Echo RX 1000 ms (so our echo runs) but does not run echo itself: with its own
    ``echo-mode`` on, FRR 8.4 signalled Down about 3.7 s after link 1 went down (we
    take it for FRR's echo staying on link 1; not investigated further), which is no
    part of what this test is about."""
    block = bfd_peer_block(US, local=ROUTER, tx=1000, rx=1000, mult=5,
                           echo=1000 if echo else None)  # fmt: skip
    return block.replace("  echo-mode\n", "")


def config(lab: Lab, socket: str, *, echo: bool) -> str:
    echo_keys = "echo_mode = true\necho_interval = 1000\n" if echo else ""
    return f"""
[speaker]
router_id = "{US}"
my_asn = 64513
hold_down = "1s"
state_file = "{lab.dir / "state.json"}"

[control]
socket = "{socket}"

[[bfd_profiles]]
name = "slow"                  # detection 5 s: longer than a route recheck (2 s)
transmit_interval = 1000
receive_interval = 1000
detect_multiplier = 5
{echo_keys}
[[peers]]
name = "rtr1"
peer_address = "{ROUTER}"
peer_asn = 64512
source_address = "{US}"
bfd_profile = "slow"
hold_time = "30s"

[[pools]]
name = "vips"
addresses = ["198.19.0.10/32"]

[[advertisements]]
name = "to-rtr1"

[[services]]
name = "web"
address = "198.19.0.10"
"""


@pytest.mark.parametrize("echo", [False, True], ids=["control", "echo"])
def test_bfd_follows_the_route_to_another_link(lab: Lab, lab_require, echo: bool) -> None:  # type: ignore[no-untyped-def]
    """With ``echo``: echo (1 s, so that the route's own move, up to 2 s before ours,
    loses no more than the 5 s detection allows) reopens on the new link and keeps
    coming back there."""
    lab_require("frr")
    spk, rtr = lab["spk"], lab["rtr1"]
    spk.run("ip", "link", "add", "to-rtr1b", "type", "veth", "peer", "name", "to-spkb",
            "netns", rtr.ns)  # fmt: skip
    for host, dev, address in ((spk, "to-rtr1b", "198.18.3.2"), (rtr, "to-spkb", "198.18.3.1")):
        host.run("ip", "addr", "add", f"{address}/24", "dev", dev)
        host.run("ip", "link", "set", dev, "up")
    frr = FRR(
        rtr,
        bfdd=bfdd_config([router_bfd(echo=echo)]),
        bgpd=bgpd_config(64512, ROUTER, [
            f"neighbor {US} remote-as 64513",
            f"neighbor {US} update-source {ROUTER}",
            f"neighbor {US} disable-connected-check",
            f"neighbor {US} timers 10 30",
            f"neighbor {US} timers connect 1",
        ]),
    ).start()  # fmt: skip
    socket = str(lab.dir / "speaker.sock")
    speaker = OurSpeaker(spk, config(lab, socket, echo=echo)).start()
    frr.wait_bgp_state(US, timeout=30)
    wait_until(lambda: VIP in frr.bgp_routes(), timeout=10, what="our route at FRR")
    frr.wait_bfd_status(US, "up", timeout=15)

    def our_bfd() -> dict[str, object]:
        cp = spk.run("env", f"PYTHONPATH={REPO}", sys.executable, "-m", "speaker.cli",
                     "show", "bfd", "peers", "--json", "-s", socket)  # fmt: skip
        peers = json.loads(cp.stdout)
        assert isinstance(peers, list) and len(peers) == 1
        return peers[0]  # type: ignore[no-any-return]

    def counters() -> dict[str, int]:
        cp = spk.run("env", f"PYTHONPATH={REPO}", sys.executable, "-m", "speaker.cli",
                     "show", "bfd", "peers", "counters", "--json", "-s", socket)  # fmt: skip
        return json.loads(cp.stdout)[0]  # type: ignore[no-any-return]

    assert our_bfd()["interface"] == "to-rtr1"
    if echo:
        speaker.wait_log("echo link up on to-rtr1 ", timeout=15)
    sessions = frr.bgp_neighbor(US).get("connectionsEstablished")

    # Both ends move their route to the other's loopback onto link 2.
    moved_at = time.monotonic()
    spk.run("ip", "route", "replace", f"{ROUTER}/32", "via", "198.18.3.1", "dev", "to-rtr1b")
    rtr.run("ip", "route", "replace", f"{US}/32", "via", "198.18.3.2", "dev", "to-spkb")
    record = speaker.wait_log("BFD follows", timeout=5)
    followed_s = time.monotonic() - moved_at
    print(f"route moved -> BFD followed after {followed_s:.2f} s: {record['msg']}")
    assert "moved from to-rtr1 to to-rtr1b" in record["msg"]
    # Followed on the kernel's route notification (speaker.netwatch), within its
    # SPACING (0.2 s), not the 2 s poll (ROUTE_RECHECK); plus the lab's own delays.
    assert followed_s <= 1.0

    # Link 1 goes away: BFD and BGP carry on over link 2.
    spk.run("ip", "link", "set", "to-rtr1", "down")
    time.sleep(8.0)  # longer than the 5 s detection time
    mine = our_bfd()
    assert not speaker.find("BGP torn down"), speaker.find("BGP torn down")
    assert (frr.bfd_peer(US) or {}).get("status") == "up"
    assert mine["status"] == "up" and mine["interface"] == "to-rtr1b", mine
    assert frr.bgp_neighbor(US).get("connectionsEstablished") == sessions
    assert VIP in frr.bgp_routes()
    assert not [r for r in speaker.find("UP -> DOWN") if r.get("protocol") == "bfd"]
    if echo:
        speaker.wait_log("echo link up on to-rtr1b", timeout=5)
        before = counters()["echo-packet-input"]
        time.sleep(3.0)
        after = counters()["echo-packet-input"]
        print(f"echoes back over link 2 in 3 s: {after - before}")
        assert after - before >= 2
