"""Route keys (a prefix as one int) and the packers that encode them straight to the
wire: round trips, the order keys sort in, and byte-for-byte agreement with the
prefix packers."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bgp import (
    AsPath,
    CodecContext,
    Communities,
    LargeCommunities,
    LargeCommunity,
    NextHop,
    Origin,
    OriginAttribute,
    Prefix,
    encode_announcement_keys,
    encode_withdrawal_keys,
    key_is_v6,
    key_of,
    key_prefix,
    pack_announcements,
    pack_withdrawals,
    prefix_key,
)
from protocols.bgp.nlri import encode_key, encode_prefix, key_size, prefix_size

from . import strategies as bs

prefixes = st.one_of(bs.ipv4_prefix(), bs.ipv6_prefix())


def network_key(p: Prefix) -> tuple[int, int, int]:
    return (p.version, int(p.network_address), p.prefixlen)


@given(prefixes)
def test_key_round_trip(prefix: Prefix) -> None:
    key = prefix_key(prefix)
    assert key_prefix(key) == prefix
    assert type(key_prefix(key)) is type(prefix)
    assert key_is_v6(key) == (prefix.version == 6)
    assert key == key_of(prefix.version, int(prefix.network_address), prefix.prefixlen)
    assert encode_key(key) == encode_prefix(prefix)
    assert key_size(key) == prefix_size(prefix)


@given(st.lists(prefixes, max_size=30))
def test_keys_sort_as_networks(ps: list[Prefix]) -> None:
    assert [key_prefix(k) for k in sorted(map(prefix_key, ps))] == sorted(ps, key=network_key)


@given(prefixes, prefixes)
def test_keys_are_equal_exactly_when_prefixes_are(a: Prefix, b: Prefix) -> None:
    assert (prefix_key(a) == prefix_key(b)) == (a == b)


def test_key_edges() -> None:
    for text in ("0.0.0.0/0", "::/0", "255.255.255.255/32", "ffff:" * 7 + "ffff/128",
                 "198.19.0.0/16", "2001:2::/48"):  # fmt: skip
        p = ip_network(text)
        assert key_prefix(prefix_key(p)) == p
        assert encode_key(prefix_key(p)) == encode_prefix(p)
    # The same numbers in the two families are different keys.
    assert prefix_key(ip_network("0.0.0.0/0")) != prefix_key(ip_network("::/0"))


ATTRS = (
    OriginAttribute(value=Origin.IGP),
    AsPath.sequence(65001, 70000),
    NextHop(address=IPv4Address("192.0.2.1")),
    Communities(values=(0xFDE90064,)),
    LargeCommunities(values=(LargeCommunity(global_admin=64512, local1=1, local2=2),)),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(prefixes, max_size=1500, unique=True),
    st.sampled_from(
        [CodecContext(), CodecContext(asn4=False), CodecContext(extended_message=True)]
    ),
    st.booleans(),
    st.booleans(),
)
def test_key_packers_give_the_prefix_packers_bytes(
    ps: list[Prefix], ctx: CodecContext, link_local: bool, ipv4_over_ipv6: bool
) -> None:
    """Byte-identical, also with RFC 8950 (IPv4 in MP_REACH/MP_UNREACH, AFI 1)."""
    ps = sorted(ps, key=network_key)
    keys = [prefix_key(p) for p in ps]
    nh, ll = IPv6Address("2001:db8::1"), IPv6Address("fe80::1") if link_local else None
    over = ipv4_over_ipv6
    packed = pack_announcements(
        ATTRS, ps, ctx, ipv6_next_hop=nh, ipv6_link_local_next_hop=ll, ipv4_over_ipv6=over
    )
    want = [m.encode(ctx) for m in packed]
    encoded = encode_announcement_keys(
        ATTRS, keys, ctx, ipv6_next_hop=nh, ipv6_link_local_next_hop=ll, ipv4_over_ipv6=over
    )
    assert encoded == want
    want = [m.encode(ctx) for m in pack_withdrawals(ps, ctx, ipv4_over_ipv6=over)]
    assert encode_withdrawal_keys(keys, ctx, ipv4_over_ipv6=over) == want
