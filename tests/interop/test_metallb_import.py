"""MetalLB manifests, imported, run in the lab: the routes reach the router."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab import Lab
from lab.gobgp import path_attrs
from lab.ours import REPO, OurSpeaker, our_env
from tests.helpers import Require
from tests.helpers.interop import gobgp_and_bfdd

pytestmark = pytest.mark.lab

MANIFESTS = """
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata:
  name: fast
  namespace: metallb-system
spec:
  receiveInterval: 50
  transmitInterval: 50
  detectMultiplier: 3
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
  sourceAddress: 198.18.1.2
  holdTime: 9s
  bfdProfile: fast
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: vips
  namespace: metallb-system
spec:
  addresses:
  - 198.19.0.8/30
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: to-tor
  namespace: metallb-system
spec:
  ipAddressPools: [vips]
  communities: [65000:300]
"""


def test_imported_metallb_config_runs_and_announces(lab: Lab, lab_require: Require) -> None:
    lab_require("frr", "gobgp")
    manifests = lab.dir / "metallb.yaml"
    manifests.write_text(MANIFESTS)
    converted = subprocess.run(
        [sys.executable, "-m", "speaker.cli", "import-metallb", "--announce-all",
         "--interface", "tor=to-rtr1", str(manifests)],
        capture_output=True, text=True, check=False, cwd=REPO, env=our_env(),
    )  # fmt: skip
    assert converted.returncode == 0, converted.stderr
    state = lab.dir / "metallb-state.json"
    # The lab keeps its state file in the lab directory, not /var/lib/speaker.
    config = converted.stdout.replace("[speaker]", f'[speaker]\nstate_file = "{state}"', 1)
    gobgp, bfd = gobgp_and_bfdd(lab, "rtr1")
    OurSpeaker(lab["spk"], config).start()
    wanted = {f"198.19.0.{i}/32" for i in range(8, 12)}
    rib = gobgp.wait_rib(lambda r: wanted <= set(r), timeout=20, what="the pool's /32s")
    assert set(rib) == wanted
    assert path_attrs(rib["198.19.0.9/32"][0])[8]["communities"] == [65000 << 16 | 300]
    bfd.wait_bfd_status(str(lab["spk"].addr4("rtr1")), "up")


DYNAMIC = """
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {{name: fast, namespace: metallb-system}}
spec: {{receiveInterval: 50, transmitInterval: 50, detectMultiplier: 3}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: rtr1, namespace: metallb-system}}
spec:
  myASN: 64513
  dynamicASN: external
  peerAddress: {rtr1}
  routerID: 198.18.0.77
  holdTime: 9s
  bfdProfile: fast
  passwordSecret: {{}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: rtr2, namespace: metallb-system}}
spec:
  myASN: 64513
  dynamicASN: internal
  peerAddress: {rtr2}
  routerID: 198.18.0.78
  holdTime: 9s
  bfdProfile: fast
  dualStackAddressFamily: true
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: vips, namespace: metallb-system}}
spec: {{addresses: [198.19.0.8/30, "2001:2:0:ff::8/126"]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: all, namespace: metallb-system}}
"""


def test_dynamic_asn_router_ids_and_families_against_frr(lab: Lab, lab_require) -> None:  # type: ignore[no-untyped-def]
    """MetalLB's dynamicASN external (FRR rtr1 in AS 64512) and internal (FRR rtr2 in
    our AS 64513), a routerID per peer, and the families: rtr1 without
    dualStackAddressFamily gets IPv4 only (disable_mp), rtr2 with it both; BFD Up on
    both, and a BFD cut towards rtr1 withdraws our routes there."""
    from lab import faults, wait_until
    from lab.frr import FRR, bgpd_config
    from tests.interop.test_operations import cli

    lab_require("frr")
    spk, rtr1, rtr2 = lab["spk"], lab["rtr1"], lab["rtr2"]
    s1, s2 = str(spk.addr4("rtr1")), str(spk.addr4("rtr2"))
    routers = {}
    for rtr, asn, s_addr in ((rtr1, 64512, s1), (rtr2, 64513, s2)):
        neighbors = [f"neighbor {s_addr} remote-as 64513", f"neighbor {s_addr} timers 3 9",
                     f"neighbor {s_addr} timers connect 1", f"neighbor {s_addr} bfd",
                     f"neighbor {s_addr} bfd 3 50 50"]  # fmt: skip
        routers[rtr.name] = FRR(
            rtr, bfdd="bfd\n!\n", bgpd=bgpd_config(asn, str(rtr.lo4), neighbors)
        ).start()
    manifests = lab.dir / "dynamic.yaml"
    manifests.write_text(DYNAMIC.format(rtr1=rtr1.addr4("spk"), rtr2=rtr2.addr4("spk")))
    converted = subprocess.run(
        [sys.executable, "-m", "speaker.cli", "import-metallb", "--announce-all", str(manifests)],
        capture_output=True, text=True, check=False, cwd=REPO, env=our_env(),
    )  # fmt: skip
    assert converted.returncode == 0, converted.stderr
    assert 'peer_asn = "external"' in converted.stdout
    assert 'peer_asn = "internal"' in converted.stdout
    socket = str(lab.dir / "dynamic.sock")
    config = converted.stdout.replace(
        "[speaker]",
        f'[control]\nsocket = "{socket}"\n\n[metrics]\naddress = "127.0.0.1:17479"\n\n'
        f'[speaker]\nstate_file = "{lab.dir / "dyn.json"}"',
        1,
    )
    OurSpeaker(spk, config).start()
    v4 = {f"198.19.0.{i}/32" for i in range(8, 12)}
    v6 = {f"2001:2:0:ff::{i:x}/128" for i in range(8, 12)}
    frr1, frr2 = routers["rtr1"], routers["rtr2"]
    for frr, s_addr in ((frr1, s1), (frr2, s2)):
        frr.wait_bgp_state(s_addr, timeout=30)
        frr.wait_bfd_status(s_addr, "up", timeout=15)
    wait_until(lambda: v4 <= set(frr1.bgp_routes("ipv4")), timeout=10, what="rtr1: IPv4")
    wait_until(lambda: v4 <= set(frr2.bgp_routes("ipv4")), timeout=10, what="rtr2: IPv4")
    wait_until(lambda: v6 <= set(frr2.bgp_routes("ipv6")), timeout=10, what="rtr2: IPv6")
    assert not set(frr1.bgp_routes("ipv6"))  # disable_mp: the IPv4 session carries IPv4
    # each session's own BGP identifier (routerID)
    assert frr1.bgp_neighbor(s1)["remoteRouterId"] == "198.18.0.77"
    assert frr2.bgp_neighbor(s2)["remoteRouterId"] == "198.18.0.78"
    # show prints the AS each router's OPEN brought
    rows = {r["name"]: r for r in cli(lab, socket, "show", "bgp", "summary", "--json")["peers"]}
    assert (rows["rtr1"]["remoteAs"], rows["rtr2"]["remoteAs"]) == (64512, 64513)
    assert rows["rtr1"]["state"] == rows["rtr2"]["state"] == "Established"
    # ... and so do the metrics
    scraped = spk.run(
        sys.executable,
        "-c",
        "import urllib.request; print(urllib.request"
        ".urlopen('http://127.0.0.1:17479/metrics', timeout=5).read().decode())",
    )
    lines = scraped.stdout.splitlines()
    assert f'speaker_bgp_peer_as{{peer="{rtr1.addr4("spk")}"}} 64512.0' in lines, [
        line for line in lines if "peer_as" in line
    ]
    assert f'speaker_bgp_peer_as{{peer="{rtr2.addr4("spk")}"}} 64513.0' in lines

    fault = faults.drop_bfd(spk, direction="in")
    wait_until(lambda: not v4 & set(frr1.bgp_routes("ipv4")), timeout=5, interval=0.01,
               what="rtr1: our routes withdrawn after the BFD cut")  # fmt: skip
    fault.undo()
