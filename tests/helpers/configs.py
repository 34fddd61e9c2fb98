"""Configuration texts and fragments that more than one test module loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from speaker.config import (
    ConfigError,
    loads_config,
)

SECRETS = ("md5-SECRET-1", "file-SECRET-2", "bfd-SECRET-3", "bfd-SECRET-4", "url-SECRET-5")


def loopback_peer_config(tmp_path: Path, port: int, services: int) -> str:
    body = "".join(
        f'[[services]]\nname = "s{i}"\naddress = "198.19.0.{i}"\n'
        f'health = {{ tcp = "127.0.0.1:1" }}\n'
        for i in range(1, services + 1)
    )
    return (
        f'[speaker]\nmy_asn = 64513\nrouter_id = "198.18.0.1"\nnode_name = "n"\n'
        f'state_file = "{tmp_path}/state.json"\n'
        f'[[peers]]\nname = "r"\npeer_address = "127.0.0.1"\npeer_port = {port}\n'
        'peer_asn = 64512\n[[pools]]\nname = "vips"\naddresses = ["198.19.0.0/24"]\n'
        '[[advertisements]]\nname = "hosts"\n' + body
    )


ANNOUNCE_CONFIG = """
[speaker]
my_asn = 64512
node_name = "lb-1"
allocation = "node-local"

[[peers]]
name = "ibgp"
peer_address = "192.0.2.1"
peer_asn = 64512

[[peers]]
name = "ebgp"
peer_address = "192.0.2.2"
peer_asn = 65000

[[pools]]
name = "web"
addresses = ["203.0.113.0/28", "2001:db8:1::/120"]

[[pools]]
name = "anycast"
addresses = ["198.51.100.8-198.51.100.11"]
auto_assign = false
announce_all = true

[[advertisements]]
name = "hosts"
pools = ["web"]
local_pref = 150
communities = ["64512:1"]

[[advertisements]]
name = "hosts-again"
pools = ["web"]
communities = ["64512:2", "no-advertise", "large:64512:9:9"]
peers = ["ibgp"]

[[advertisements]]
name = "aggregate"
pools = ["web"]
aggregation_length = 28
aggregation_length_v6 = 120
peers = ["ebgp"]

[[advertisements]]
name = "anycast"
pools = ["anycast"]
aggregation_length = 30

[[services]]
name = "www"
address = "203.0.113.1"
health = { tcp = "127.0.0.1:80" }

[[services]]
name = "api"
address = "203.0.113.2"
health = { tcp = "127.0.0.1:81" }

[[services]]
name = "static"
address = "203.0.113.3"

[[services]]
name = "v6"
pool = "web"
address = "2001:db8:1::5"

[[services]]
name = "assigned"
pool = "web"
health = { tcp = "127.0.0.1:82" }
"""


def many_services(count: int) -> str:
    """A config with ``count`` services and both a host and an aggregate advertisement."""
    services = "".join(
        f'[[services]]\nname = "s{i}"\naddress = "10.{i // 65536}.{i // 256 % 256}.{i % 256}"\n'
        f'health = {{ tcp = "127.0.0.1:{1 + i % 60000}" }}\n'
        for i in range(count)
    )
    return (
        '[speaker]\nmy_asn = 64512\nnode_name = "n"\n'
        '[[peers]]\nname = "p"\npeer_address = "192.0.2.1"\npeer_asn = 65000\n'
        '[[pools]]\nname = "big"\naddresses = ["10.0.0.0/16"]\n'
        '[[advertisements]]\nname = "hosts"\n'
        '[[advertisements]]\nname = "agg"\naggregation_length = 24\ncommunities = ["1:1"]\n'
        + services
    )


BASE_CONFIG = """
[speaker]
my_asn = 64512
node_name = "lb-1"
labels = { rack = "r1" }

[[bfd_profiles]]
name = "basic"

[[peers]]
name = "tor"
peer_address = "192.0.2.1"
peer_asn = 65000
source_address = "192.0.2.10"
bfd_profile = "basic"

[[pools]]
name = "web"
addresses = ["203.0.113.0/28"]

[[advertisements]]
name = "all"

[[services]]
name = "www"
address = "203.0.113.1"
"""


def config_errors(text: str) -> list[str]:
    """The errors loading ``text`` reports (it must fail)."""
    with pytest.raises(ConfigError) as info:
        loads_config(text)
    return [str(issue) for issue in info.value.errors]
