"""Received NLRI fields are checked at once and built only when read (PackedPrefixes)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.bgp import AsPath, Origin, OriginAttribute, PathAttribute, RemoteProtocolError
from protocols.bgp.constants import AFI
from protocols.bgp.context import CodecContext
from protocols.bgp.events import UpdateReceived
from protocols.bgp.nlri import PackedPrefixes, decode_prefixes, encode_prefixes, packed_prefixes
from protocols.bgp.packing import pack_announcements
from protocols.bgp.update import decode_update
from speaker.bgp.rib import AdjRibIn

v6 = st.builds(
    lambda a, n: IPv6Network((a, n), strict=False), st.integers(0, 2**128 - 1), st.integers(0, 128)
)
v4 = st.builds(
    lambda a, n: IPv4Network((a, n), strict=False), st.integers(0, 2**32 - 1), st.integers(0, 32)
)


@given(st.lists(v4) | st.lists(v6))
def test_packed_equals_the_decoded_tuple(prefixes: list[IPv4Network] | list[IPv6Network]) -> None:
    afi = AFI.IPV6 if prefixes and prefixes[0].version == 6 else AFI.IPV4
    data = encode_prefixes(prefixes)
    packed = packed_prefixes(data, afi)
    assert len(packed) == len(prefixes)
    assert packed == tuple(prefixes) and tuple(prefixes) == packed
    assert list(packed) == prefixes and bool(packed) == bool(prefixes)
    if prefixes:
        assert packed[0] == prefixes[0] and hash(packed) == hash(tuple(prefixes))


@pytest.mark.parametrize(
    ("data", "afi", "reason"),
    [
        (b"\x21\x01\x02\x03\x04\x05", AFI.IPV4, "too long"),
        (b"\x81" + bytes(17), AFI.IPV6, "too long"),
        (b"\x18\x01\x02", AFI.IPV4, "overruns"),
        (b"\x20\x01\x02\x03\x04\x40\x01", AFI.IPV6, "overruns"),
    ],
)
def test_bad_fields_fail_at_once_as_decoding_does(data: bytes, afi: int, reason: str) -> None:
    with pytest.raises(RemoteProtocolError, match=reason) as packed:
        packed_prefixes(data, afi)
    with pytest.raises(RemoteProtocolError) as eager:
        decode_prefixes(data, afi)
    assert (packed.value.code, packed.value.subcode) == (eager.value.code, eager.value.subcode)


def test_a_received_full_table_is_counted_without_building_a_network() -> None:
    ctx = CodecContext()
    base = int(IPv6Address("2001:2::"))
    prefixes = [IPv6Network((base + (i << 64), 64)) for i in range(2000)]
    attrs: list[PathAttribute] = [OriginAttribute(value=Origin.IGP), AsPath.sequence(65000)]
    msgs = pack_announcements(attrs, prefixes, ctx, ipv6_next_hop=IPv6Address("2001:2::1"))
    rib = AdjRibIn()
    decoded = [decode_update(m.encode(ctx)[19:], ctx) for m in msgs]
    for d in decoded:
        rib.apply(UpdateReceived(update=d.update, notes=d.notes, suppressed=d.suppressed))
    assert sum(rib.announced.values()) == 2000
    fields = [d.update.mp_reach.nlri for d in decoded if d.update.mp_reach is not None]
    assert len(fields) == len(decoded)
    assert all(isinstance(f, PackedPrefixes) and f._built is None for f in fields)  # never built
    # ... and read as networks when asked (a kept Adj-RIB-In, show):
    assert [p for d in decoded for p in d.update.announced] == prefixes
