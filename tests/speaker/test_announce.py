"""routes_for_peer: a pure function of config, health and assigned addresses."""

from __future__ import annotations

import ipaddress
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.bgp import LargeCommunity
from speaker.addresses import network_key
from speaker.announce import routes_for_peer
from speaker.bgp.config import RouteAttributes
from speaker.config import Config, loads_config
from tests.helpers.configs import ANNOUNCE_CONFIG, many_services

NO_ADVERTISE = 0xFFFFFF02


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def comm(high: int, low: int) -> int:
    return high << 16 | low


@pytest.fixture(scope="module")
def config() -> Config:
    return loads_config(ANNOUNCE_CONFIG)


def test_healthy_services_host_routes_with_merged_communities(config: Config) -> None:
    routes = routes_for_peer(config, "ibgp", healthy={"www"})
    both = RouteAttributes(
        communities=frozenset({comm(64512, 1), comm(64512, 2), NO_ADVERTISE}),
        large_communities=frozenset({LargeCommunity(global_admin=64512, local1=9, local2=9)}),
        local_pref=150,
    )
    assert routes == {
        net("198.51.100.8/30"): RouteAttributes(),
        net("203.0.113.1/32"): both,
        net("203.0.113.3/32"): both,  # no health check: always announced
        net("2001:db8:1::5/128"): both,
    }


def test_unhealthy_service_is_not_announced(config: Config) -> None:
    assert net("203.0.113.2/32") not in routes_for_peer(config, "ibgp", healthy={"www"})
    assert net("203.0.113.2/32") in routes_for_peer(config, "ibgp", healthy={"www", "api"})


def test_local_pref_only_on_ibgp_and_peers_filter(config: Config) -> None:
    routes = routes_for_peer(config, "ebgp", healthy=set())
    hosts = RouteAttributes(communities=frozenset({comm(64512, 1)}))
    assert routes == {
        net("198.51.100.8/30"): RouteAttributes(),
        net("203.0.113.0/28"): RouteAttributes(),
        net("203.0.113.3/32"): hosts,
        net("2001:db8:1::/120"): RouteAttributes(),
        net("2001:db8:1::5/128"): hosts,
    }


def test_aggregation_deduplicates(config: Config) -> None:
    routes = routes_for_peer(config, "ebgp", healthy={"www", "api"})
    assert list(routes).count(net("203.0.113.0/28")) == 1
    assert [n for n in routes if n.version == 4 and n.prefixlen == 32] == [
        net("203.0.113.1/32"),
        net("203.0.113.2/32"),
        net("203.0.113.3/32"),
    ]


def test_assigned_addresses(config: Config) -> None:
    assigned = {"assigned": ipaddress.ip_address("203.0.113.9")}
    assert net("203.0.113.9/32") not in routes_for_peer(config, "ibgp", set(), assigned)
    routes = routes_for_peer(config, "ibgp", {"assigned"}, assigned)
    assert net("203.0.113.9/32") in routes
    # Without an assignment, a pool service is not announced.
    assert net("203.0.113.9/32") not in routes_for_peer(config, "ibgp", {"assigned"})


def test_announce_all_ignores_health(config: Config) -> None:
    for peer in ("ibgp", "ebgp"):
        assert net("198.51.100.8/30") in routes_for_peer(config, peer, set())


def test_announce_all_host_routes() -> None:
    config = loads_config(
        ANNOUNCE_CONFIG.replace("aggregation_length = 30\n", "").replace(
            '"198.51.100.8-198.51.100.11"', '"198.51.100.8-198.51.100.10", "2001:db8:9::/127"'
        )
    )
    anycast = [
        n
        for n in routes_for_peer(config, "ebgp", set())
        if str(n).startswith(("198", "2001:db8:9"))
    ]
    assert anycast == [
        net("198.51.100.8/32"),
        net("198.51.100.9/32"),
        net("198.51.100.10/32"),
        net("2001:db8:9::/128"),
        net("2001:db8:9::1/128"),
    ]


def test_sorted_and_deterministic(config: Config) -> None:
    a = routes_for_peer(config, "ibgp", healthy={"api", "www"})
    b = routes_for_peer(config, "ibgp", healthy=["www", "api"])
    assert list(a.items()) == list(b.items())
    keys = list(a)
    assert keys == sorted(keys, key=network_key)


def test_routes_are_ordered_by_family_then_address_then_length() -> None:
    ordered = ["10.0.0.0/8", "10.0.0.0/24", "10.0.1.0/24", "::/0", "2001:db8::/32"]
    shuffled = [ordered[i] for i in (4, 2, 1, 3, 0)]
    assert sorted(map(net, shuffled), key=network_key) == list(map(net, ordered))


def test_unknown_peer(config: Config) -> None:
    with pytest.raises(KeyError):
        routes_for_peer(config, "nope", set())


def test_no_advertisement_for_peer() -> None:
    text = ANNOUNCE_CONFIG.replace(
        'name = "anycast"\npools', 'name = "anycast"\npeers = ["ibgp"]\npools'
    )
    text = text.replace('name = "hosts"\npools', 'name = "hosts"\npeers = ["ibgp"]\npools')
    text = text.replace('peers = ["ebgp"]', 'peers = ["ibgp"]')
    assert routes_for_peer(loads_config(text), "ebgp", {"www", "api"}) == {}


def test_merge_keeps_first_local_pref() -> None:
    a = RouteAttributes(communities=frozenset({1}), local_pref=None)
    b = RouteAttributes(communities=frozenset({2}), local_pref=200)
    assert a.merge(b) == RouteAttributes(communities=frozenset({1, 2}), local_pref=200)
    assert b.merge(a).local_pref == 200
    assert a.merge(a) is a


def test_fast_for_thousands_of_services() -> None:
    config = loads_config(many_services(5000))
    healthy = {f"s{i}" for i in range(0, 5000, 2)}
    start = time.perf_counter()
    routes = routes_for_peer(config, "p", healthy)
    elapsed = time.perf_counter() - start
    assert len(routes) == 2500 + 20  # host routes + the /24s holding them
    assert elapsed < 0.5


addresses_v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


@given(st.lists(addresses_v4, min_size=1, max_size=20, unique=True), st.integers(8, 32))
def test_aggregate_always_contains_the_address(
    addresses: list[ipaddress.IPv4Address], length: int
) -> None:
    services = "".join(
        f'[[services]]\nname = "s{i}"\naddress = "{a}"\n' for i, a in enumerate(addresses)
    )
    text = (
        '[speaker]\nmy_asn = 64512\nnode_name = "n"\n'
        '[[peers]]\nname = "p"\npeer_address = "192.0.2.1"\npeer_asn = 65000\n'
        '[[pools]]\nname = "all"\naddresses = ["0.0.0.0/0"]\n'
        f'[[advertisements]]\nname = "a"\naggregation_length = {length}\n' + services
    )
    routes = routes_for_peer(loads_config(text), "p", set())
    assert all(n.prefixlen == length for n in routes)
    for a in addresses:
        assert sum(a in n for n in routes) == 1
    assert all(any(a in n for a in addresses) for n in routes)


def test_operator_withdrawal_applies_to_services_without_a_check() -> None:
    config = loads_config(
        """
[speaker]
my_asn = 64513
[[peers]]
name = "r"
peer_address = "198.18.1.1"
peer_asn = 64512
[[pools]]
name = "p"
addresses = ["198.19.0.0/24"]
[[advertisements]]
name = "a"
[[services]]
name = "web"
address = "198.19.0.10"
[[services]]
name = "api"
address = "198.19.0.11"
"""
    )
    assert len(routes_for_peer(config, "r")) == 2
    routes = routes_for_peer(config, "r", withdrawn={"web"})
    assert [str(p) for p in routes] == ["198.19.0.11/32"]
