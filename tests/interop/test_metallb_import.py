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
