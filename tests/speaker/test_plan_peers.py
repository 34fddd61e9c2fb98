"""plans_for: what a peer's plan holds (BFD looked up later, in the peer's task) and
the ``bfd_strict`` key (BGP BFD strict mode, capability 74)."""

from __future__ import annotations

import ipaddress

import pytest

from protocols.bgp import BfdStrictModeCapability, encode_capability
from speaker.config import ConfigError, loads_config
from speaker.peer import BfdTarget
from speaker.plan import plans_for

CONFIG = """
[speaker]
my_asn = 64512

[[bfd_profiles]]
name = "basic"

[[peers]]
name = "tor"
peer_address = "198.18.200.1"
peer_asn = 65000
bfd_profile = "basic"
{extra}

[[peers]]
name = "plain"
peer_address = "198.18.200.2"
peer_asn = 65000
"""


def test_deriving_a_plan_asks_the_kernel_nothing_even_without_a_route() -> None:
    # 198.18.200.1 has no route in the tests: deriving must not raise (ENETUNREACH
    # used to end `speaker run` with exit 2, naming no peer).
    tor, plain = plans_for(loads_config(CONFIG.format(extra='interface = "nope0"')), {})
    assert tor.bfd_target == BfdTarget(
        peer=ipaddress.IPv4Address("198.18.200.1"), source=None, interface="nope0"
    )
    assert plain.bfd_target is None and not tor.bfd_strict


def test_bfd_strict_waits_and_advertises_capability_74() -> None:
    tor, plain = plans_for(loads_config(CONFIG.format(extra="bfd_strict = true")), {})
    assert tor.bfd_strict and tor.bgp.bfd_strict
    caps = tor.bgp.session_config().capabilities()
    assert BfdStrictModeCapability() in caps
    assert encode_capability(BfdStrictModeCapability()) == bytes((74, 0))
    assert BfdStrictModeCapability() not in plain.bgp.session_config().capabilities()


def test_bfd_strict_needs_a_bfd_profile() -> None:
    text = CONFIG.replace('name = "plain"', 'name = "plain"\nbfd_strict = true').format(extra="")
    with pytest.raises(ConfigError) as info:
        loads_config(text)
    assert any("peers[1].bfd_strict" in str(e) for e in info.value.errors)


POOLS = """
[[pools]]
name = "dual"
addresses = ["198.19.0.0/30", "2001:2:0:ff::/126"]

[[advertisements]]
name = "all"
{peers}
"""


def test_dynamic_asn_router_id_and_disable_mp_reach_the_session() -> None:
    text = CONFIG.replace("peer_asn = 65000", 'peer_asn = "external"', 1).replace(
        'name = "plain"\npeer_address = "198.18.200.2"\npeer_asn = 65000',
        'name = "plain"\npeer_address = "198.18.200.2"\npeer_asn = "internal"',
    )
    text = text.format(extra='router_id = "198.18.0.77"\ndisable_mp = true') + POOLS.format(
        peers=""
    )
    tor, plain = plans_for(loads_config(text), {})
    # "external": any AS but ours, checked against the OPEN by the core
    assert (tor.bgp.peer_asn, tor.bgp.dynamic_asn, tor.bgp.internal) == (None, "external", False)
    core = tor.bgp.session_config()
    assert (core.peer_asn, core.dynamic_asn) == (None, "external")
    # "internal": our AS exactly
    assert (plain.bgp.peer_asn, plain.bgp.dynamic_asn, plain.bgp.internal) == (
        64512,
        "internal",
        True,
    )
    # a router ID of its own; the other peer keeps the node's
    assert str(tor.bgp.router_id) == "198.18.0.77" != str(plain.bgp.router_id)
    # disable_mp: the IPv4 session carries IPv4 only; without it, both families
    assert tor.bgp.families == ((1, 1),)
    assert plain.bgp.families == ((1, 1), (2, 1))


def test_disable_mp_warns_about_the_pools_it_leaves_out() -> None:
    text = CONFIG.format(extra="disable_mp = true") + POOLS.format(peers='peers = ["tor"]')
    config = loads_config(text)
    assert [str(w) for w in config.warnings] == [
        'advertisements[0].peers: the IPv6 addresses of pool "dual" are not sent to peer'
        ' "tor": it has disable_mp, so its session carries IPv4 only (peer at an IPv6'
        " address for them)"
    ]
