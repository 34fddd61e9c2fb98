"""The router ID rule (speaker/routerid.py): router_id, else the first IPv4
source_address of this node, else the host's highest loopback (then any) IPv4 address
as FRR's zebra picks it, else a CRC-32 of node_name; and the reason given with it."""

from __future__ import annotations

import ipaddress
import socket
import struct
import zlib
from collections.abc import Callable

from speaker.config import Config, loads_config
from speaker.plan import derive_router_id, plans_for
from speaker.routerid import (
    _address_of,
    choose_router_id,
    pick_host_address,
    read_ipv4_addresses,
)
from speaker.show import format_config

V4 = ipaddress.IPv4Address

CONFIG = """
[speaker]
my_asn = 64512
node_name = "node-7"
labels = {{ rack = "r1" }}
{speaker}

[[peers]]
name = "elsewhere"
peer_address = "198.18.9.1"
peer_asn = 65000
source_address = "198.18.9.200"
node_selectors = [{{ match_labels = {{ rack = "r2" }} }}]

[[peers]]
name = "v6"
peer_address = "2001:2::1"
peer_asn = 65000
{v6_source}

[[peers]]
name = "tor"
peer_address = "198.18.1.1"
peer_asn = 65000
{tor_source}

[[pools]]
name = "vips"
addresses = ["198.19.0.0/24"]
"""


def config(*, speaker: str = "", tor: str | None = None, v6: str | None = None) -> Config:
    return loads_config(
        CONFIG.format(
            speaker=speaker,
            tor_source=f'source_address = "{tor}"' if tor else "",
            v6_source=f'source_address = "{v6}"' if v6 else "",
        )
    )


HOST = [
    ("lo", V4("127.0.0.1")),
    ("lo", V4("198.18.0.7")),
    ("eth0", V4("198.18.200.1")),  # higher, but not on a loopback
    ("eth0", V4("169.254.10.10")),
    ("eth1", V4("198.18.1.2")),
]


def host(addresses: list[tuple[str, V4]] = HOST) -> Callable[[], list[tuple[str, V4]]]:
    return lambda: addresses


def test_explicit_router_id_wins() -> None:
    choice = choose_router_id(config(speaker='router_id = "10.0.0.1"', tor="198.18.1.2"), host())
    assert (choice.address, choice.rule) == (V4("10.0.0.1"), "configured")
    assert str(choice) == "10.0.0.1 (router_id in [speaker])"


def test_first_ipv4_source_address_of_this_node_in_file_order() -> None:
    # "elsewhere" is first in the file but not for this node; "v6" is not IPv4.
    choice = choose_router_id(config(tor="198.18.1.2", v6="2001:2::2"), host())
    assert (choice.address, choice.rule) == (V4("198.18.1.2"), "source_address")
    assert choice.reason == 'source_address of peer "tor", the first IPv4 one of this node'


def test_else_the_highest_loopback_address_as_frr() -> None:
    choice = choose_router_id(config(), host())
    assert (choice.address, choice.rule) == (V4("198.18.0.7"), "host")
    assert "loopback interface, lo" in choice.reason and "FRR" in choice.reason


def test_dummy_interfaces_count_as_loopbacks_and_the_highest_wins() -> None:
    addresses = [*HOST, ("dummy0", V4("198.18.0.9")), ("lo", V4("198.18.0.8"))]
    assert pick_host_address(addresses) == ("dummy0", V4("198.18.0.9"))


def test_without_a_loopback_address_the_highest_anywhere() -> None:
    no_lo = [a for a in HOST if a[0] != "lo"] + [("lo", V4("127.0.0.1"))]
    choice = choose_router_id(config(), host(no_lo))
    assert (choice.address, choice.rule) == (V4("198.18.200.1"), "host")
    assert "on eth0 (none on a loopback interface)" in choice.reason


def test_service_addresses_and_special_ranges_are_never_chosen() -> None:
    # A pool address on lo (a service bound locally) moves between nodes: skipped.
    addresses = [*HOST, ("lo", V4("198.19.0.10")), ("lo", V4("224.0.0.5"))]
    assert choose_router_id(config(), host(addresses)).address == V4("198.18.0.7")
    only_special = [("lo", V4("127.0.0.1")), ("eth0", V4("169.254.1.1")), ("eth0", V4("0.0.0.0"))]
    assert pick_host_address(only_special) is None


def test_crc_of_the_node_name_only_without_any_ipv4_address() -> None:
    choice = choose_router_id(config(v6="2001:2::2"), host([("lo", V4("127.0.0.1"))]))
    assert choice.rule == "node_name"
    assert choice.address == V4(zlib.crc32(b"node-7"))
    assert "no usable IPv4 address on this host" in choice.reason and "'node-7'" in choice.reason


def test_every_session_uses_the_chosen_id() -> None:
    cfg = config(tor="198.18.1.2")
    assert derive_router_id(cfg) == V4("198.18.1.2")
    assert {p.bgp.router_id for p in plans_for(cfg, {})} == {V4("198.18.1.2")}


def test_show_config_prints_the_effective_id_and_why() -> None:
    text = format_config({"router_id": "198.18.0.7", "router_id_reason": "because"})
    assert text.splitlines()[0] == "# effective router_id: 198.18.0.7 (because)"
    assert "router_id_reason" not in text


def _newaddr(index: int, **attributes: bytes) -> bytes:
    kinds = {"address": 1, "local": 2, "label": 3}
    body = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, index)
    for name, value in attributes.items():
        length = 4 + len(value)
        body += struct.pack("=HH", length, kinds[name]) + value + b"\0" * (-length % 4)
    return body


def test_netlink_message_local_address_over_the_point_to_point_peer() -> None:
    names = {7: "tun0"}
    message = _newaddr(
        7, address=bytes([198, 18, 9, 2]), label=b"tun0\0", local=bytes([198, 18, 9, 1])
    )
    assert _address_of(message, names) == ("tun0", V4("198.18.9.1"))
    assert _address_of(_newaddr(7, address=bytes([198, 18, 9, 5])), names) == (
        "tun0",
        V4("198.18.9.5"),
    )
    assert _address_of(_newaddr(7, label=b"x\0"), names) is None


def test_the_kernel_lists_loopback() -> None:
    assert ("lo", V4("127.0.0.1")) in read_ipv4_addresses()
