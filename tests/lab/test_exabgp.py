"""The ExaBGP wrapper (lab/exabgp.py): static routes reach gobgpd."""

from __future__ import annotations

import pytest

from lab import Lab
from lab.exabgp import ExaBGP, exabgp_path, neighbor_block
from lab.gobgp import GoBGP, neighbor_toml, path_attrs
from tests.helpers import IN_CI, Require

pytestmark = pytest.mark.lab


def test_exabgp_announces_static_routes_to_gobgpd(lab: Lab, lab_require: Require) -> None:
    lab_require("gobgp")
    if exabgp_path() is None:
        reason = "exabgp not installed (pip install 'exabgp>=5' into the virtualenv)"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    spk, rtr = lab["spk"], lab["rtr1"]
    s_addr, r_addr = str(spk.addr6("rtr1")), str(rtr.addr6("spk"))
    router = GoBGP(rtr, asn=64512, router_id=str(rtr.lo4),
                   neighbors=neighbor_toml(s_addr, 64513)).start()  # fmt: skip
    routes = [f"2001:2:0:ff::{i}/128" for i in range(1, 4)]
    config = neighbor_block(r_addr, local_address=s_addr, local_as=64513, peer_as=64512,
                            router_id=str(spk.lo4), routes=routes)  # fmt: skip
    exa = ExaBGP(spk, config=config).start()
    router.wait_established(s_addr)
    rib = router.wait_rib(lambda r: set(r) == set(routes), family="ipv6", what="3 routes")
    for prefix in routes:
        attrs = path_attrs(rib[prefix][0])
        assert attrs[2]["as_paths"][0]["asns"] == [64513]
        assert attrs[14]["nexthop"] == s_addr  # next-hop self
    exa.stop()
    router.wait_rib(lambda r: not r, family="ipv6", what="routes withdrawn with the session")
