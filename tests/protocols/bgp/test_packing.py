"""Update packing: few messages, each within the maximum size; End-of-RIB."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bgp import (
    AFI,
    SAFI,
    AsPath,
    CodecContext,
    Communities,
    LocalProtocolError,
    NextHop,
    Origin,
    OriginAttribute,
    Prefix,
    UpdateMessage,
    decode_message,
    end_of_rib,
    pack_announcements,
    pack_withdrawals,
)
from protocols.bgp.nlri import prefix_size

from . import strategies as bs

ATTRS = (
    OriginAttribute(value=Origin.IGP),
    AsPath.sequence(65001, 65002),
    NextHop(address=IPv4Address("192.0.2.1")),
    Communities(values=(0xFDE90064,)),
)
NH6 = IPv6Address("2001:db8::1")


def _v4(n: int) -> list[IPv4Network]:
    return [IPv4Network(((10 << 24) + (i << 8), 24)) for i in range(n)]


def _v6(n: int) -> list[IPv6Network]:
    return [IPv6Network(((0x20010DB8 << 96) + (i << 64), 64)) for i in range(n)]


@pytest.mark.parametrize("ctx", [CodecContext(), CodecContext(extended_message=True)])
def test_ipv4_announcements_fill_messages(ctx: CodecContext) -> None:
    prefixes = _v4(5000)
    msgs = pack_announcements(ATTRS, prefixes, ctx)
    wires = [m.encode(ctx) for m in msgs]
    assert all(len(w) <= ctx.max_message_size for w in wires)
    # All but the last message are full: the next prefix (4 octets) would not fit.
    assert all(len(w) + 4 > ctx.max_message_size for w in wires[:-1])
    assert [p for m in msgs for p in m.nlri] == prefixes
    assert all(decode_message(w, ctx) == m for w, m in zip(wires, msgs, strict=True))


def test_ipv6_announcements_in_mp_reach() -> None:
    ctx = CodecContext()
    prefixes = _v6(2000)
    msgs = pack_announcements(ATTRS, prefixes, ctx, ipv6_next_hop=NH6)
    wires = [m.encode(ctx) for m in msgs]
    assert all(len(w) <= 4096 for w in wires)
    assert all(len(w) + 9 > 4096 for w in wires[:-1])
    assert [p for m in msgs for p in m.announced] == prefixes
    assert all(m.get(NextHop) is None and m.nlri == () for m in msgs)


def test_withdrawals() -> None:
    ctx = CodecContext()
    prefixes: list[Prefix] = [*_v4(3000), *_v6(1000)]
    msgs = pack_withdrawals(prefixes, ctx)
    assert all(len(m.encode(ctx)) <= 4096 for m in msgs)
    assert [p for m in msgs for p in m.withdrawn_prefixes] == prefixes
    assert len(msgs) == 3 + 3  # 3000*4 / 4073 -> 3 ; 1000*9 / 4066 -> 3


def test_packing_errors() -> None:
    with pytest.raises(LocalProtocolError):
        pack_announcements(ATTRS[:2], _v4(1), CodecContext())  # no NEXT_HOP
    with pytest.raises(LocalProtocolError):
        pack_announcements(ATTRS, _v6(1), CodecContext())  # no IPv6 next hop


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(bs.ipv4_prefix(), bs.ipv6_prefix()), max_size=1500),
    st.booleans(),
    st.booleans(),
)
def test_packing_property(prefixes: list[Prefix], extended: bool, link_local: bool) -> None:
    ctx = CodecContext(extended_message=extended)
    ll = IPv6Address("fe80::1") if link_local else None
    ann = pack_announcements(
        ATTRS,
        prefixes,
        ctx,
        ipv6_next_hop=NH6,
        ipv6_link_local_next_hop=ll,
    )
    wd = pack_withdrawals(prefixes, ctx)
    for m in ann + wd:
        assert len(m.encode(ctx)) <= ctx.max_message_size
    assert sorted(map(str, (p for m in ann for p in m.announced))) == sorted(map(str, prefixes))
    assert sorted(map(str, (p for m in wd for p in m.withdrawn_prefixes))) == sorted(
        map(str, prefixes)
    )
    # Few messages: never more than one partially filled message per family, so the
    # count is within one of the lower bound given by total size.
    v4 = sum(prefix_size(p) for p in prefixes if p.version == 4)
    if v4:
        n4 = sum(1 for m in wd if m.withdrawn)
        assert n4 <= v4 // (ctx.max_message_size - 23 - 4) + 1


def test_end_of_rib() -> None:
    ctx = CodecContext()
    v4 = end_of_rib()
    assert v4.encode(ctx) == bytes.fromhex("ff" * 16 + "0017 02 0000 0000")
    assert decode_message(v4.encode(ctx), ctx) == UpdateMessage()
    assert UpdateMessage().end_of_rib == (AFI.IPV4, SAFI.UNICAST)
    v6 = end_of_rib(AFI.IPV6, SAFI.UNICAST)
    assert v6.encode(ctx) == bytes.fromhex("ff" * 16 + "001d 02 0000 0006 800f03 0002 01")
    decoded = decode_message(v6.encode(ctx), ctx)
    assert isinstance(decoded, UpdateMessage)
    assert decoded.end_of_rib == (AFI.IPV6, SAFI.UNICAST)
    assert pack_withdrawals(_v4(1), ctx)[0].end_of_rib is None
