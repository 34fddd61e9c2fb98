"""Adj-RIB-Out bookkeeping and the text forms of routes, without sockets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_network

import pytest
import trio

from protocols.bgp import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPath,
    CodecContext,
    LargeCommunity,
    LocalPref,
    NextHop,
    Origin,
    Prefix,
    WellKnownCommunity,
    pack_announcements,
    prefix_key,
)
from speaker.bgp import BgpConfigError, RouteAttributes, parse_announce, prefix_range
from speaker.bgp.config import parse_route_entry
from speaker.bgp.rib import AdjRibOut, SentTable, path_attributes
from speaker.bgp.session import _discard


def test_parse_announce_with_every_attribute() -> None:
    prefix, attributes = parse_announce(
        "198.19.0.1/32,community=65000:1,community=no-export,med=10,local-pref=200,"
        "large=4200000001:7:9,origin=incomplete"
    )
    assert prefix == IPv4Network("198.19.0.1/32")
    assert attributes == RouteAttributes(
        origin=Origin.INCOMPLETE,
        med=10,
        local_pref=200,
        communities=(WellKnownCommunity.NO_EXPORT, 65000 << 16 | 1),
        large_communities=(LargeCommunity(global_admin=4200000001, local1=7, local2=9),),
    )
    assert parse_route_entry({"prefix": "2001:2:0:ff::/64", "communities": ["65000:2"]}) == (
        IPv6Network("2001:2:0:ff::/64"),
        RouteAttributes(communities=[65000 << 16 | 2]),
    )
    for bad in ("198.19.0.1/33", "198.19.0.0/16,med=x", "198.19.0.0/16,colour=red"):
        with pytest.raises(BgpConfigError):
            parse_announce(bad)


def test_prefix_range_generates_host_routes() -> None:
    routes = prefix_range("198.19.0.0/16:1000")
    assert len(routes) == 1000 and routes[0] == IPv4Network("198.19.0.0/32")
    assert routes[-1] == IPv4Network("198.19.3.231/32")
    assert prefix_range("2001:2:0:ff::/64:2")[1] == IPv6Network("2001:2:0:ff::1/128")
    with pytest.raises(BgpConfigError):
        prefix_range("198.19.0.0/16:70000")


def test_attributes_differ_between_ebgp_and_ibgp() -> None:
    attributes = RouteAttributes(local_pref=300)
    nh = NextHop(address=IPv4Address("198.18.1.2"))
    ebgp = path_attributes(attributes, local_asn=64513, internal=False, next_hop4=nh)
    ibgp = path_attributes(attributes, local_asn=64513, internal=True, next_hop4=nh)
    assert AsPath.sequence(64513) in ebgp and not any(isinstance(a, LocalPref) for a in ebgp)
    assert AsPath() in ibgp and LocalPref(value=300) in ibgp


def test_adj_rib_out_full_dump_then_only_differences() -> None:
    a, b = RouteAttributes(), RouteAttributes(med=5)
    routes = {ip_network(f"198.19.0.{i}/32"): a for i in range(10)}
    rib = AdjRibOut(routes)
    assert rib.pending == 0  # nothing goes out before the session is up
    rib.session_up([IPV4_UNICAST, IPV6_UNICAST])
    batch = rib.take(1000)
    assert batch.withdraw == [] and len(batch.announce[a]) == 10
    assert rib.take_end_of_rib() == [IPV4_UNICAST, IPV6_UNICAST]
    assert rib.synchronised and rib.take_end_of_rib() == []
    changed = dict(routes)
    changed[ip_network("198.19.0.3/32")] = b
    del changed[ip_network("198.19.0.4/32")]
    changed[ip_network("2001:2:0:ff::1/128")] = a
    rib.replace(changed)
    batch = rib.take(1000)
    # Route keys: the batch goes to the wire as they are.
    assert batch.withdraw == [prefix_key(ip_network("198.19.0.4/32"))]
    assert batch.announce == {
        b: [prefix_key(ip_network("198.19.0.3/32"))],
        a: [prefix_key(ip_network("2001:2:0:ff::1/128"))],
    }
    rib.replace(dict(changed))
    assert rib.pending > 0  # compared a slice at a time, in take()
    assert rib.take(1000).size == 0 and rib.pending == 0
    # Added then removed before being sent: nothing at all goes out.
    rib.announce(ip_network("198.19.0.200/32"))
    rib.withdraw(ip_network("198.19.0.200/32"))
    assert rib.take(1000).size == 0 and rib.pending == 0
    rib.session_down()
    assert rib.advertised == {} and rib.pending == 0


def test_ten_thousand_routes_pack_into_few_full_updates() -> None:
    ctx = CodecContext()
    nh = NextHop(address=IPv4Address("198.18.1.2"))
    path = path_attributes(
        RouteAttributes(communities=[1]), local_asn=64513, internal=False, next_hop4=nh
    )
    prefixes = prefix_range("198.19.0.0/16:10000")
    updates = pack_announcements(path, prefixes, ctx)
    sizes = [len(u.encode(ctx)) for u in updates]
    assert max(sizes) <= 4096 and len(updates) == 13


def _synchronised(size: int, attributes: RouteAttributes) -> AdjRibOut:
    """An Adj-RIB-Out of ``size`` /32s, all sent to an Established peer."""
    routes: dict[Prefix, RouteAttributes] = {
        IPv4Network((0xC6130000 + i, 32)): attributes for i in range(size)
    }
    rib = AdjRibOut(routes)
    rib.session_up([IPV4_UNICAST])
    while not rib.synchronised:
        rib.take(1000)
        rib.take_end_of_rib()
    return rib


def test_session_down_retires_the_big_tables_for_the_owner_to_empty_in_slices() -> None:
    # Dropped at once, a 65,536-entry advertised dict is a 3-11 ms step at the moment
    # BFD fails over (bench.reload_steps); the session empties rib.retired in slices.
    a = RouteAttributes()
    rib = _synchronised(5_000, a)
    sent = rib.sent
    assert len(sent) == 5_000
    rib.session_down()
    assert rib.advertised == {} and rib.pending == 0
    assert any(r is sent for r in rib.retired) and len(sent) == 5_000
    small = AdjRibOut({ip_network("198.19.0.1/32"): a})
    small.session_up([IPV4_UNICAST])
    small.take(10)
    small.session_down()
    assert small.retired == []  # small tables just go


def test_a_retired_sent_table_is_emptied_shard_by_shard() -> None:
    # What the peer held is a SentTable (61 dicts): the session's _discard empties
    # every shard, in slices, and leaves the table counted empty.
    rib = _synchronised(5_000, RouteAttributes())
    sent = rib.sent
    rib.session_down()
    retired = rib.retired
    assert isinstance(retired[0], SentTable) and retired[0] is sent
    assert sum(len(shard) for shard in sent.shards) == 5_000
    rib.retired = []
    trio.run(_discard, retired)
    assert retired == [] and len(sent) == 0
    assert all(not shard for shard in sent.shards)
