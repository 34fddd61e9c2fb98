"""RouteTable: routes_for_peer kept up to date by difference, and built in slices."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bgp import key_prefix
from speaker.addresses import IPNetwork
from speaker.announce import RouteTable, routes_for_peer
from speaker.config import loads_config
from speaker.slices import run_at_once
from tests.helpers.configs import ANNOUNCE_CONFIG, many_services

T = TypeVar("T")
SERVICES = ["www", "api", "static", "v6", "assigned"]
ASSIGNED = {"assigned": ipaddress.ip_address("203.0.113.9")}
CONFIG_ = loads_config(ANNOUNCE_CONFIG)
subsets = st.frozensets(st.sampled_from(SERVICES))


def by_prefix(routes: Mapping[int, T]) -> dict[IPNetwork, T]:
    """A table keyed by route key (as the table gives them) keyed by network."""
    return {key_prefix(k): v for k, v in routes.items()}


@settings(max_examples=200, deadline=None)
@given(first=st.tuples(subsets, subsets), later=st.lists(st.tuples(subsets, subsets), max_size=8))
def test_table_follows_routes_for_peer(
    first: tuple[frozenset[str], frozenset[str]],
    later: list[tuple[frozenset[str], frozenset[str]]],
) -> None:
    healthy, withdrawn = first
    table = run_at_once(RouteTable.build(CONFIG_, ASSIGNED, healthy=healthy, withdrawn=withdrawn))
    held = {p: table.routes(p) for p in table.peers}
    for peer in table.peers:
        assert held[peer] == routes_for_peer(CONFIG_, peer, healthy, ASSIGNED, withdrawn)
    for healthy, withdrawn in later:
        changes = table.set_announced(healthy, withdrawn)
        for peer in table.peers:
            # Applying the returned changes to what the peer held gives the new routes.
            for prefix, attributes in by_prefix(changes.get(peer, {})).items():
                assert held[peer].get(prefix) != attributes
                if attributes is None:
                    del held[peer][prefix]
                else:
                    held[peer][prefix] = attributes
            expected = routes_for_peer(CONFIG_, peer, healthy, ASSIGNED, withdrawn)
            assert held[peer] == expected == table.routes(peer)
            base, overlay = map(by_prefix, table.layers(peer))
            assert {**base, **overlay} == {**expected, **dict.fromkeys(overlay.keys() - expected)}


def test_one_health_change_costs_its_routes_only() -> None:
    config = loads_config(many_services(5000))
    healthy = frozenset(f"s{i}" for i in range(0, 5000, 2))
    table = run_at_once(RouteTable.build(config, {}, healthy=healthy))
    assert len(table.routes("p")) == 2500 + 20
    changes = table.set_announced(healthy | {"s1"})
    assert list(changes) == ["p"] and len(changes["p"]) == 1  # its /32; its /24 is up already
    changes = table.set_announced(healthy)
    assert list(changes["p"].values()) == [None]


def test_build_yields_in_small_slices() -> None:
    config = loads_config(many_services(5000))
    steps = RouteTable.build(config, {}, healthy={f"s{i}" for i in range(5000)})
    slices = 0
    try:
        while True:
            next(steps)
            slices += 1
    except StopIteration as done:
        table = done.value
    assert len(table.routes("p")) == 5000 + 20
    assert slices >= 2 * 5000 // 128  # contributions (two advertisements) then the base


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SERVICES), st.booleans()), max_size=12))
def test_single_service_changes_follow_routes_for_peer(moves: list[tuple[str, bool]]) -> None:
    table = run_at_once(RouteTable.build(CONFIG_, ASSIGNED))
    announced = {s for s in SERVICES if CONFIG_.service(s).health is None}
    held = {p: table.routes(p) for p in table.peers}
    for service, on in moves:
        changes = table.set_service(service, on)
        announced = announced | {service} if on else announced - {service}
        for peer in table.peers:
            for prefix, attributes in by_prefix(changes.get(peer, {})).items():
                if attributes is None:
                    del held[peer][prefix]
                else:
                    held[peer][prefix] = attributes
            expected = routes_for_peer(
                CONFIG_, peer, announced, ASSIGNED, withdrawn=set(SERVICES) - announced
            )
            assert held[peer] == expected == table.routes(peer)
