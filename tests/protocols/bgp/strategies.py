"""Hypothesis strategies for BGP value objects."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from hypothesis import strategies as st

from protocols.bgp import (
    AFI,
    SAFI,
    AddPathCapability,
    AddPathEntry,
    Aggregator,
    AsPath,
    AsPathSegment,
    AsPathSegmentType,
    AtomicAggregate,
    ClusterList,
    Communities,
    EnhancedRouteRefreshCapability,
    ExtendedMessageCapability,
    ExtendedNextHopCapability,
    ExtendedNextHopEntry,
    FourOctetAsCapability,
    FqdnCapability,
    GracefulRestartCapability,
    GracefulRestartFamily,
    KeepaliveMessage,
    LargeCommunities,
    LargeCommunity,
    LlgrFamily,
    LocalPref,
    LongLivedGracefulRestartCapability,
    MpReachNlri,
    MpUnreachNlri,
    MultiExitDisc,
    MultiprotocolCapability,
    NextHop,
    NotificationMessage,
    OpenMessage,
    Origin,
    OriginatorId,
    OriginAttribute,
    PathAttribute,
    Prefix,
    RouteRefreshCapability,
    RouteRefreshMessage,
    SoftwareVersionCapability,
    UnknownAttribute,
    UnknownCapability,
    UpdateMessage,
)
from protocols.bgp.capabilities import CAPABILITY_DECODERS, BfdStrictModeCapability

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
asn = st.integers(1, 0xFFFFFFFF)
ipv4 = st.builds(IPv4Address, u32)
ipv6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))
short_text = st.text(max_size=20).filter(lambda s: len(s.encode()) <= 255)


@st.composite
def ipv4_prefix(draw: st.DrawFn) -> IPv4Network:
    plen = draw(st.integers(0, 32))
    return IPv4Network((draw(u32), plen), strict=False)


@st.composite
def ipv6_prefix(draw: st.DrawFn) -> IPv6Network:
    plen = draw(st.integers(0, 128))
    return IPv6Network((draw(st.integers(0, 2**128 - 1)), plen), strict=False)


capabilities = st.one_of(
    st.builds(MultiprotocolCapability, afi=u16, safi=u8),
    st.builds(RouteRefreshCapability, legacy=st.booleans()),
    st.builds(
        ExtendedNextHopCapability,
        entries=st.lists(
            st.builds(ExtendedNextHopEntry, afi=u16, safi=u16, next_hop_afi=u16), max_size=5
        ).map(tuple),
    ),
    st.builds(ExtendedMessageCapability),
    st.builds(
        GracefulRestartCapability,
        restart_state=st.booleans(),
        notification=st.booleans(),
        restart_time=st.integers(0, 4095),
        families=st.lists(
            st.builds(GracefulRestartFamily, afi=u16, safi=u8, forwarding_preserved=st.booleans()),
            max_size=4,
        ).map(tuple),
    ),
    st.builds(FourOctetAsCapability, asn=u32),
    st.builds(
        AddPathCapability,
        entries=st.lists(
            st.builds(AddPathEntry, afi=u16, safi=u8, send_receive=st.integers(1, 3)), max_size=4
        ).map(tuple),
    ),
    st.builds(EnhancedRouteRefreshCapability),
    st.builds(BfdStrictModeCapability),
    st.builds(
        LongLivedGracefulRestartCapability,
        families=st.lists(
            st.builds(LlgrFamily, afi=u16, safi=u8, flags=u8, stale_time=st.integers(0, 2**24 - 1)),
            max_size=4,
        ).map(tuple),
    ),
    st.builds(FqdnCapability, hostname=short_text, domain=short_text),
    st.builds(SoftwareVersionCapability, version=short_text),
    st.builds(
        UnknownCapability,
        code=u8.filter(lambda c: c not in CAPABILITY_DECODERS),
        value=st.binary(max_size=40),
    ),
)

open_messages = st.builds(
    OpenMessage,
    my_as=u16,
    hold_time=u16,
    bgp_identifier=ipv4,
    capabilities=st.lists(capabilities, max_size=6).map(tuple),
    extended_parameters=st.booleans(),
)


def as_path(*, confed: bool) -> st.SearchStrategy[AsPath]:
    types = [AsPathSegmentType.AS_SEQUENCE, AsPathSegmentType.AS_SET]
    if confed:
        types += [AsPathSegmentType.AS_CONFED_SEQUENCE, AsPathSegmentType.AS_CONFED_SET]
    seg = st.builds(
        AsPathSegment,
        type=st.sampled_from(types),
        asns=st.lists(asn, min_size=1, max_size=12).map(tuple),
    )
    return st.builds(AsPath, segments=st.lists(seg, max_size=4).map(tuple))


@st.composite
def mp_reach(draw: st.DrawFn) -> MpReachNlri:
    afi = draw(st.sampled_from([AFI.IPV4, AFI.IPV6]))
    safi = draw(st.sampled_from([SAFI.UNICAST, SAFI.MULTICAST]))
    prefixes: st.SearchStrategy[Prefix] = ipv4_prefix() if afi == AFI.IPV4 else ipv6_prefix()
    nlri = tuple(draw(st.lists(prefixes, max_size=8)))
    if afi == AFI.IPV4 and draw(st.booleans()):
        return MpReachNlri(afi=afi, safi=safi, next_hop=draw(ipv4), nlri=nlri)
    link_local = draw(st.none() | ipv6)
    return MpReachNlri(
        afi=afi, safi=safi, next_hop=draw(ipv6), link_local_next_hop=link_local, nlri=nlri
    )


@st.composite
def mp_unreach(draw: st.DrawFn) -> MpUnreachNlri:
    afi = draw(st.sampled_from([AFI.IPV4, AFI.IPV6]))
    prefixes = ipv4_prefix() if afi == AFI.IPV4 else ipv6_prefix()
    return MpUnreachNlri(
        afi=afi,
        safi=draw(st.sampled_from([SAFI.UNICAST, SAFI.MULTICAST])),
        withdrawn=tuple(draw(st.lists(prefixes, max_size=8))),
    )


def attributes(*, asn4: bool) -> st.SearchStrategy[PathAttribute]:
    return st.one_of(
        st.builds(OriginAttribute, value=st.sampled_from(list(Origin))),
        as_path(confed=asn4),
        st.builds(NextHop, address=ipv4),
        st.builds(MultiExitDisc, value=u32),
        st.builds(LocalPref, value=u32),
        st.builds(AtomicAggregate),
        st.builds(Aggregator, asn=asn, address=ipv4),
        st.builds(Communities, values=st.lists(u32, min_size=1, max_size=10).map(tuple)),
        st.builds(OriginatorId, originator=ipv4),
        st.builds(ClusterList, cluster_ids=st.lists(ipv4, min_size=1, max_size=5).map(tuple)),
        st.builds(
            LargeCommunities,
            values=st.lists(
                st.builds(LargeCommunity, global_admin=u32, local1=u32, local2=u32),
                min_size=1,
                max_size=5,
            ).map(tuple),
        ),
        mp_reach(),
        mp_unreach(),
        st.builds(
            UnknownAttribute,
            type_code=st.integers(100, 255),
            flags=st.just(0xE0),
            value=st.binary(max_size=300),
        ),
    )


@st.composite
def update_messages(draw: st.DrawFn, *, asn4: bool = True) -> UpdateMessage:
    attrs = draw(st.lists(attributes(asn4=asn4), max_size=8))
    unique: dict[int, PathAttribute] = {}
    for a in attrs:
        unique.setdefault(a.TYPE, a)
    return UpdateMessage(
        withdrawn=tuple(draw(st.lists(ipv4_prefix(), max_size=8))),
        attributes=tuple(unique.values()),
        nlri=tuple(draw(st.lists(ipv4_prefix(), max_size=8))),
    )


notifications = st.builds(NotificationMessage, code=u8, subcode=u8, data=st.binary(max_size=50))
route_refreshes = st.builds(RouteRefreshMessage, afi=u16, safi=u8, subtype=u8)
keepalives = st.builds(KeepaliveMessage)
