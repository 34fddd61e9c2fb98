"""RFC 8950: IPv4 NLRI with an IPv6 next hop (unnumbered BGP).

The Extended Next Hop Encoding capability (code 5) and its negotiation, and IPv4
prefixes packed into MP_REACH_NLRI / MP_UNREACH_NLRI with AFI 1 and a 16- or 32-octet
IPv6 next hop: what FRR ``neighbor IFNAME interface`` sends and expects.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bgp import (
    AFI,
    IPV4_UNICAST,
    IPV4_UNICAST_IPV6_NEXT_HOP,
    IPV6_UNICAST,
    SAFI,
    AsPath,
    CodecContext,
    Established,
    ExtendedNextHopCapability,
    ExtendedNextHopEntry,
    MpReachNlri,
    MpUnreachNlri,
    NextHop,
    Origin,
    OriginAttribute,
    UpdateMessage,
    decode_capabilities,
    decode_message,
    encode_capability,
    pack_announcements,
    pack_withdrawals,
)
from tests.helpers.bgp_core import ConnectionPair, config, config_b, of

from . import strategies as bs

ATTRS = (
    OriginAttribute(value=Origin.IGP),
    AsPath.sequence(65001),
    NextHop(address=IPv4Address("198.18.1.2")),
)
GLOBAL = IPv6Address("2001:2:0:1::2")
LINK_LOCAL = IPv6Address("fe80::2")

link_locals = st.integers(1, 2**64 - 1).map(lambda i: IPv6Address((0xFE80 << 112) + i))


def test_capability_wire_form_is_frr_s() -> None:
    """FRR's OPEN for an interface neighbour carries 05 06 0001 0001 0002."""
    wire = encode_capability(ExtendedNextHopCapability(entries=(IPV4_UNICAST_IPV6_NEXT_HOP,)))
    assert wire == bytes.fromhex("0506000100010002")
    (decoded,) = decode_capabilities(wire)
    assert decoded == ExtendedNextHopCapability(
        entries=(ExtendedNextHopEntry(afi=1, safi=1, next_hop_afi=2),)
    )


def _negotiated(
    ours: tuple[ExtendedNextHopEntry, ...], theirs: tuple[ExtendedNextHopEntry, ...]
) -> Established:
    families = (IPV4_UNICAST, IPV6_UNICAST)
    pair = ConnectionPair(
        config(families=families, extended_next_hop=ours),
        config_b(families=families, extended_next_hop=theirs),
    )
    pair.establish(0.0)
    (est,) = of(pair.a_events, Established)
    assert isinstance(est, Established)
    return est


def test_negotiated_when_both_list_the_tuple() -> None:
    neg = _negotiated((IPV4_UNICAST_IPV6_NEXT_HOP,), (IPV4_UNICAST_IPV6_NEXT_HOP,)).negotiated
    assert neg.extended_next_hop == {(1, 1, 2)}
    assert neg.ipv6_next_hop_for(AFI.IPV4, SAFI.UNICAST)
    assert not neg.ipv6_next_hop_for(AFI.IPV4, SAFI.MULTICAST)


def test_not_negotiated_when_one_side_lacks_it() -> None:
    for ours, theirs in [
        ((IPV4_UNICAST_IPV6_NEXT_HOP,), ()),
        ((), (IPV4_UNICAST_IPV6_NEXT_HOP,)),
        # the same NLRI family with another next hop AFI is another tuple
        ((IPV4_UNICAST_IPV6_NEXT_HOP,), (ExtendedNextHopEntry(afi=1, safi=1, next_hop_afi=1),)),
    ]:
        neg = _negotiated(ours, theirs).negotiated
        assert not neg.ipv6_next_hop_for(AFI.IPV4, SAFI.UNICAST), (ours, theirs)


def test_not_usable_without_the_family() -> None:
    """The tuple alone is not enough: IPv4 unicast itself must be negotiated."""
    pair = ConnectionPair(
        config(families=(IPV6_UNICAST,), extended_next_hop=(IPV4_UNICAST_IPV6_NEXT_HOP,)),
        config_b(families=(IPV6_UNICAST,), extended_next_hop=(IPV4_UNICAST_IPV6_NEXT_HOP,)),
    )
    pair.establish(0.0)
    (est,) = of(pair.a_events, Established)
    assert isinstance(est, Established)
    assert not est.negotiated.ipv6_next_hop_for(AFI.IPV4, SAFI.UNICAST)


def test_golden_mp_reach_for_ipv4_with_global_and_link_local() -> None:
    """RFC 8950 §3: AFI 1, SAFI 1, next hop length 32 (global + link-local)."""
    ctx = CodecContext()
    (msg,) = pack_announcements(
        ATTRS,
        [IPv4Network("198.19.0.10/32")],
        ctx,
        ipv6_next_hop=GLOBAL,
        ipv6_link_local_next_hop=LINK_LOCAL,
        ipv4_over_ipv6=True,
    )
    reach = msg.mp_reach
    assert reach is not None and msg.nlri == () and msg.get(NextHop) is None
    value = reach.encode_value(ctx)
    assert value == (
        bytes.fromhex("0001" "01" "20") + GLOBAL.packed + LINK_LOCAL.packed + b"\x00"
        + bytes.fromhex("20" "c613000a")
    )  # fmt: skip
    assert decode_message(msg.encode(ctx), ctx) == msg


def test_link_local_only_is_a_16_octet_next_hop() -> None:
    ctx = CodecContext()
    (msg,) = pack_announcements(
        ATTRS, [IPv4Network("198.19.0.10/32")], ctx, ipv6_next_hop=LINK_LOCAL,
        ipv4_over_ipv6=True,
    )  # fmt: skip
    reach = msg.mp_reach
    assert reach is not None
    assert reach.encode_value(ctx)[3] == 16
    decoded = decode_message(msg.encode(ctx), ctx)
    assert isinstance(decoded, UpdateMessage)
    assert decoded.mp_reach is not None and decoded.mp_reach.next_hop == LINK_LOCAL


@settings(max_examples=60, deadline=None)
@given(
    prefixes=st.lists(bs.ipv4_prefix(), min_size=1, max_size=1500, unique=True),
    global_nh=st.none() | st.just(GLOBAL),
    link_local=link_locals,
    extended=st.booleans(),
)
def test_ipv4_over_ipv6_round_trip(
    prefixes: list[IPv4Network], global_nh: IPv6Address | None, link_local: IPv6Address,
    extended: bool,
) -> None:  # fmt: skip
    """Whatever the prefixes and next hops: every message fits, carries only MP_REACH
    with AFI 1 and our next hops (no NEXT_HOP, no classic NLRI), and decodes back to
    the same prefixes in order; the withdrawals likewise in MP_UNREACH."""
    ctx = CodecContext(extended_message=extended)
    next_hop, second = (global_nh, link_local) if global_nh else (link_local, None)
    msgs = pack_announcements(
        ATTRS, prefixes, ctx, ipv6_next_hop=next_hop, ipv6_link_local_next_hop=second,
        ipv4_over_ipv6=True,
    )  # fmt: skip
    seen: list[object] = []
    for msg in msgs:
        wire = msg.encode(ctx)
        assert len(wire) <= ctx.max_message_size
        back = decode_message(wire, ctx)
        assert back == msg
        assert isinstance(back, UpdateMessage)
        reach = back.mp_reach
        assert reach is not None and reach.afi == AFI.IPV4 and reach.safi == SAFI.UNICAST
        assert (reach.next_hop, reach.link_local_next_hop) == (next_hop, second)
        assert back.nlri == () and back.get(NextHop) is None
        seen += reach.nlri
    assert seen == prefixes
    gone: list[object] = []
    for msg in pack_withdrawals(prefixes, ctx, ipv4_over_ipv6=True):
        wire = msg.encode(ctx)
        assert len(wire) <= ctx.max_message_size
        back = decode_message(wire, ctx)
        assert isinstance(back, UpdateMessage) and back.withdrawn == ()
        unreach = back.get(MpUnreachNlri)
        assert unreach is not None and unreach.afi == AFI.IPV4
        gone += unreach.withdrawn
    assert gone == prefixes


def test_without_the_flag_ipv4_stays_classic() -> None:
    ctx = CodecContext()
    prefixes = [IPv4Network("198.19.0.10/32")]
    (msg,) = pack_announcements(ATTRS, prefixes, ctx, ipv6_next_hop=GLOBAL)
    assert msg.nlri == tuple(prefixes) and msg.get(MpReachNlri) is None
    (gone,) = pack_withdrawals(prefixes, ctx)
    assert gone.withdrawn == tuple(prefixes) and gone.attributes == ()
