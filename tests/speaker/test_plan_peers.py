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
