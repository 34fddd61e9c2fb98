"""Path attributes (RFC 4271 §4.3 / §5 and extensions) as frozen value objects.

Each class carries ``TYPE`` and ``FLAGS`` (the Optional/Transitive bits it must be
sent with), ``encode_value(ctx)`` and ``decode_value(data, ctx)``.  Value decoders
raise :class:`MalformedAttributeError`; deciding what to do about it (RFC 7606
session reset / treat-as-withdraw / attribute discard) is the job of
:mod:`protocols.bgp.update`.

AS numbers are always held as full 4-octet values; the 2-octet wire encoding with
AS_TRANS (RFC 6793) is chosen by :class:`~protocols.bgp.context.CodecContext`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar

import attrs

from .aspath import As4Path, AsPath, fit_asn
from .communities import LargeCommunity
from .constants import (
    AFI,
    SAFI,
    AttrFlag,
    AttrType,
    Origin,
    UpdateSubcode,
    to_enum,
)
from .context import CodecContext
from .errors import BgpError, LocalProtocolError, MalformedAttributeError, RemoteProtocolError
from .nlri import Prefix, encode_prefixes, packed_prefixes

_WELL_KNOWN = int(AttrFlag.TRANSITIVE)
_OPT_TRANS = int(AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE)
_OPT_NON_TRANS = int(AttrFlag.OPTIONAL)


def _need_len(data: bytes, n: int, what: str) -> None:
    if len(data) != n:
        raise MalformedAttributeError(
            UpdateSubcode.ATTRIBUTE_LENGTH_ERROR, f"{what} length {len(data)} != {n}"
        )


@attrs.frozen(kw_only=True)
class OriginAttribute:
    """RFC 4271 §5.1.1 ORIGIN (well-known mandatory)."""

    TYPE: ClassVar[int] = AttrType.ORIGIN
    FLAGS: ClassVar[int] = _WELL_KNOWN
    value: int

    def encode_value(self, ctx: CodecContext) -> bytes:
        return bytes((self.value,))

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> OriginAttribute:
        _need_len(data, 1, "ORIGIN")
        if data[0] > 2:
            raise MalformedAttributeError(
                UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE, f"undefined ORIGIN {data[0]}"
            )
        return cls(value=Origin(data[0]))


@attrs.frozen(kw_only=True)
class NextHop:
    """RFC 4271 §5.1.3 NEXT_HOP (IPv4)."""

    TYPE: ClassVar[int] = AttrType.NEXT_HOP
    FLAGS: ClassVar[int] = _WELL_KNOWN
    address: IPv4Address

    def encode_value(self, ctx: CodecContext) -> bytes:
        return self.address.packed

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> NextHop:
        _need_len(data, 4, "NEXT_HOP")
        return cls(address=IPv4Address(data))


@attrs.frozen(kw_only=True)
class MultiExitDisc:
    """RFC 4271 §5.1.4 MULTI_EXIT_DISC (optional non-transitive, u32)."""

    TYPE: ClassVar[int] = AttrType.MULTI_EXIT_DISC
    FLAGS: ClassVar[int] = _OPT_NON_TRANS
    value: int

    def encode_value(self, ctx: CodecContext) -> bytes:
        return struct.pack("!I", self.value)

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> MultiExitDisc:
        _need_len(data, 4, "MULTI_EXIT_DISC")
        return cls(value=struct.unpack("!I", data)[0])


@attrs.frozen(kw_only=True)
class LocalPref:
    """RFC 4271 §5.1.5 LOCAL_PREF (well-known, iBGP only, u32)."""

    TYPE: ClassVar[int] = AttrType.LOCAL_PREF
    FLAGS: ClassVar[int] = _WELL_KNOWN
    value: int

    def encode_value(self, ctx: CodecContext) -> bytes:
        return struct.pack("!I", self.value)

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> LocalPref:
        _need_len(data, 4, "LOCAL_PREF")
        return cls(value=struct.unpack("!I", data)[0])


@attrs.frozen(kw_only=True)
class AtomicAggregate:
    """RFC 4271 §5.1.6 ATOMIC_AGGREGATE (well-known discretionary, empty)."""

    TYPE: ClassVar[int] = AttrType.ATOMIC_AGGREGATE
    FLAGS: ClassVar[int] = _WELL_KNOWN

    def encode_value(self, ctx: CodecContext) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> AtomicAggregate:
        _need_len(data, 0, "ATOMIC_AGGREGATE")
        return cls()


@attrs.frozen(kw_only=True)
class Aggregator:
    """RFC 4271 §5.1.7 AGGREGATOR: AS (2 or 4 octets per ``ctx.asn4``) + IPv4 address."""

    TYPE: ClassVar[int] = AttrType.AGGREGATOR
    FLAGS: ClassVar[int] = _OPT_TRANS
    asn: int
    address: IPv4Address

    def encode_value(self, ctx: CodecContext) -> bytes:
        if ctx.asn4:
            return struct.pack("!I", self.asn) + self.address.packed
        return struct.pack("!H", fit_asn(self.asn, ctx)) + self.address.packed

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> Aggregator:
        if ctx.asn4:
            _need_len(data, 8, "AGGREGATOR")
            return cls(asn=struct.unpack_from("!I", data)[0], address=IPv4Address(data[4:]))
        _need_len(data, 6, "AGGREGATOR")
        return cls(asn=struct.unpack_from("!H", data)[0], address=IPv4Address(data[2:]))


@attrs.frozen(kw_only=True)
class As4Aggregator:
    """RFC 6793 §3 AS4_AGGREGATOR: 4-octet AS + IPv4 address."""

    TYPE: ClassVar[int] = AttrType.AS4_AGGREGATOR
    FLAGS: ClassVar[int] = _OPT_TRANS
    asn: int
    address: IPv4Address

    def encode_value(self, ctx: CodecContext) -> bytes:
        return struct.pack("!I", self.asn) + self.address.packed

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> As4Aggregator:
        _need_len(data, 8, "AS4_AGGREGATOR")
        return cls(asn=struct.unpack_from("!I", data)[0], address=IPv4Address(data[4:]))


@attrs.frozen(kw_only=True)
class Communities:
    """RFC 1997 COMMUNITIES: a list of 32-bit values (see :mod:`.communities`)."""

    TYPE: ClassVar[int] = AttrType.COMMUNITIES
    FLAGS: ClassVar[int] = _OPT_TRANS
    values: tuple[int, ...]

    def encode_value(self, ctx: CodecContext) -> bytes:
        return struct.pack(f"!{len(self.values)}I", *self.values)

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> Communities:
        # RFC 7606 §7.8: length must be a non-zero multiple of 4.
        if not data or len(data) % 4:
            raise MalformedAttributeError(
                UpdateSubcode.ATTRIBUTE_LENGTH_ERROR, "COMMUNITIES length not k*4, k>0"
            )
        return cls(values=struct.unpack(f"!{len(data) // 4}I", data))


@attrs.frozen(kw_only=True)
class OriginatorId:
    """RFC 4456 §8 ORIGINATOR_ID (optional non-transitive, 4 octets)."""

    TYPE: ClassVar[int] = AttrType.ORIGINATOR_ID
    FLAGS: ClassVar[int] = _OPT_NON_TRANS
    originator: IPv4Address

    def encode_value(self, ctx: CodecContext) -> bytes:
        return self.originator.packed

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> OriginatorId:
        _need_len(data, 4, "ORIGINATOR_ID")
        return cls(originator=IPv4Address(data))


@attrs.frozen(kw_only=True)
class ClusterList:
    """RFC 4456 §8 CLUSTER_LIST (optional non-transitive, list of 4-octet IDs)."""

    TYPE: ClassVar[int] = AttrType.CLUSTER_LIST
    FLAGS: ClassVar[int] = _OPT_NON_TRANS
    cluster_ids: tuple[IPv4Address, ...]

    def encode_value(self, ctx: CodecContext) -> bytes:
        return b"".join(c.packed for c in self.cluster_ids)

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> ClusterList:
        if not data or len(data) % 4:  # RFC 7606 §7.10
            raise MalformedAttributeError(
                UpdateSubcode.ATTRIBUTE_LENGTH_ERROR, "CLUSTER_LIST length not k*4, k>0"
            )
        return cls(cluster_ids=tuple(IPv4Address(data[i : i + 4]) for i in range(0, len(data), 4)))


@attrs.frozen(kw_only=True)
class LargeCommunities:
    """RFC 8092 LARGE_COMMUNITY: list of 12-octet values."""

    TYPE: ClassVar[int] = AttrType.LARGE_COMMUNITIES
    FLAGS: ClassVar[int] = _OPT_TRANS
    values: tuple[LargeCommunity, ...]

    def encode_value(self, ctx: CodecContext) -> bytes:
        return b"".join(
            struct.pack("!III", v.global_admin, v.local1, v.local2) for v in self.values
        )

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> LargeCommunities:
        if not data or len(data) % 12:  # RFC 8092 §6
            raise MalformedAttributeError(
                UpdateSubcode.ATTRIBUTE_LENGTH_ERROR, "LARGE_COMMUNITY length not k*12, k>0"
            )
        return cls(
            values=tuple(
                LargeCommunity(global_admin=a, local1=b, local2=c)
                for a, b, c in struct.iter_unpack("!III", data)
            )
        )


#: Families whose NLRI are plain prefixes (RFC 4760 §5 with RFC 4271 encoding).
PREFIX_FAMILIES = frozenset(
    (afi, safi) for afi in (AFI.IPV4, AFI.IPV6) for safi in (SAFI.UNICAST, SAFI.MULTICAST)
)


def _prefixes(data: bytes, afi: int) -> Sequence[Prefix]:
    try:
        return packed_prefixes(data, afi)
    except RemoteProtocolError as exc:
        raise MalformedAttributeError(exc.subcode, exc.reason) from None


@attrs.frozen(kw_only=True)
class MpReachNlri:
    """RFC 4760 §3 MP_REACH_NLRI for IPv4/IPv6 unicast/multicast.

    ``next_hop`` is the IPv6 global (or IPv4) next hop; ``link_local_next_hop`` the
    optional second IPv6 address (RFC 2545 §3: 32-octet next hop).  An IPv6
    next hop for AFI 1 is the RFC 8950 extended next hop encoding.
    """

    TYPE: ClassVar[int] = AttrType.MP_REACH_NLRI
    FLAGS: ClassVar[int] = _OPT_NON_TRANS
    afi: int
    safi: int
    next_hop: IPv4Address | IPv6Address
    link_local_next_hop: IPv6Address | None = None
    #: A received one's is a :class:`.nlri.PackedPrefixes` (built when read).
    nlri: Sequence[Prefix] = ()

    def encode_next_hop(self) -> bytes:
        nh = self.next_hop.packed
        if self.link_local_next_hop is not None:
            if not isinstance(self.next_hop, IPv6Address):
                raise LocalProtocolError("link-local next hop requires an IPv6 next hop")
            nh += self.link_local_next_hop.packed
        return nh

    def encode_value(self, ctx: CodecContext) -> bytes:
        nh = self.encode_next_hop()
        return (
            struct.pack("!HBB", self.afi, self.safi, len(nh))
            + nh
            + b"\x00"
            + encode_prefixes(self.nlri)
        )

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> MpReachNlri:
        if len(data) < 5:
            raise MalformedAttributeError(
                UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, "MP_REACH_NLRI too short"
            )
        afi, safi, nhlen = struct.unpack_from("!HBB", data)
        if (afi, safi) not in PREFIX_FAMILIES:
            raise UnsupportedFamilyError(afi, safi)
        if 4 + nhlen + 1 > len(data):
            raise MalformedAttributeError(
                UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, "MP_REACH_NLRI next hop overrun"
            )
        raw = data[4 : 4 + nhlen]
        link_local: IPv6Address | None = None
        next_hop: IPv4Address | IPv6Address
        if nhlen == 4 and afi == AFI.IPV4:
            next_hop = IPv4Address(raw)
        elif nhlen == 16:
            next_hop = IPv6Address(raw)
        elif nhlen == 32:
            next_hop, link_local = IPv6Address(raw[:16]), IPv6Address(raw[16:])
        else:
            raise MalformedAttributeError(
                UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, f"bad next hop length {nhlen}"
            )
        # data[4 + nhlen] is the Reserved octet (RFC 4760 §3): ignored on receipt.
        return cls(
            afi=to_enum(AFI, afi),
            safi=to_enum(SAFI, safi),
            next_hop=next_hop,
            link_local_next_hop=link_local,
            nlri=_prefixes(data[5 + nhlen :], afi),
        )


@attrs.frozen(kw_only=True)
class MpUnreachNlri:
    """RFC 4760 §4 MP_UNREACH_NLRI for IPv4/IPv6 unicast/multicast."""

    TYPE: ClassVar[int] = AttrType.MP_UNREACH_NLRI
    FLAGS: ClassVar[int] = _OPT_NON_TRANS
    afi: int
    safi: int
    withdrawn: Sequence[Prefix] = ()

    def encode_value(self, ctx: CodecContext) -> bytes:
        return struct.pack("!HB", self.afi, self.safi) + encode_prefixes(self.withdrawn)

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> MpUnreachNlri:
        if len(data) < 3:
            raise MalformedAttributeError(
                UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, "MP_UNREACH_NLRI too short"
            )
        afi, safi = struct.unpack_from("!HB", data)
        if (afi, safi) not in PREFIX_FAMILIES:
            raise UnsupportedFamilyError(afi, safi)
        return cls(
            afi=to_enum(AFI, afi), safi=to_enum(SAFI, safi), withdrawn=_prefixes(data[3:], afi)
        )


class UnsupportedFamilyError(BgpError):
    """MP_(UN)REACH_NLRI for an AFI/SAFI whose NLRI this codec cannot parse."""

    def __init__(self, afi: int, safi: int) -> None:
        self.afi, self.safi = afi, safi
        super().__init__(f"unsupported AFI/SAFI {afi}/{safi}")


@attrs.frozen(kw_only=True)
class UnknownAttribute:
    """An attribute not interpreted here, kept verbatim (flags without Extended Length).

    Optional transitive ones are kept with the Partial bit set (RFC 4271 §5, §9);
    optional non-transitive ones are dropped by the UPDATE decoder.
    """

    type_code: int
    flags: int
    value: bytes

    @property
    def TYPE(self) -> int:
        return self.type_code

    @property
    def FLAGS(self) -> int:
        return self.flags & ~int(AttrFlag.EXTENDED_LENGTH)

    def encode_value(self, ctx: CodecContext) -> bytes:
        return self.value


PathAttribute = (
    OriginAttribute
    | AsPath
    | NextHop
    | MultiExitDisc
    | LocalPref
    | AtomicAggregate
    | Aggregator
    | Communities
    | OriginatorId
    | ClusterList
    | MpReachNlri
    | MpUnreachNlri
    | As4Path
    | As4Aggregator
    | LargeCommunities
    | UnknownAttribute
)

#: Attribute type -> value decoder.  Explicit and static.
ATTRIBUTE_DECODERS: dict[int, Callable[[bytes, CodecContext], PathAttribute]] = {
    AttrType.ORIGIN: OriginAttribute.decode_value,
    AttrType.AS_PATH: AsPath.decode_value,
    AttrType.NEXT_HOP: NextHop.decode_value,
    AttrType.MULTI_EXIT_DISC: MultiExitDisc.decode_value,
    AttrType.LOCAL_PREF: LocalPref.decode_value,
    AttrType.ATOMIC_AGGREGATE: AtomicAggregate.decode_value,
    AttrType.AGGREGATOR: Aggregator.decode_value,
    AttrType.COMMUNITIES: Communities.decode_value,
    AttrType.ORIGINATOR_ID: OriginatorId.decode_value,
    AttrType.CLUSTER_LIST: ClusterList.decode_value,
    AttrType.MP_REACH_NLRI: MpReachNlri.decode_value,
    AttrType.MP_UNREACH_NLRI: MpUnreachNlri.decode_value,
    AttrType.AS4_PATH: As4Path.decode_value,
    AttrType.AS4_AGGREGATOR: As4Aggregator.decode_value,
    AttrType.LARGE_COMMUNITIES: LargeCommunities.decode_value,
}

#: Expected Optional|Transitive flag bits of each known attribute (RFC 7606 §3 c).
ATTRIBUTE_FLAGS: dict[int, int] = {
    AttrType.ORIGIN: _WELL_KNOWN,
    AttrType.AS_PATH: _WELL_KNOWN,
    AttrType.NEXT_HOP: _WELL_KNOWN,
    AttrType.MULTI_EXIT_DISC: _OPT_NON_TRANS,
    AttrType.LOCAL_PREF: _WELL_KNOWN,
    AttrType.ATOMIC_AGGREGATE: _WELL_KNOWN,
    AttrType.AGGREGATOR: _OPT_TRANS,
    AttrType.COMMUNITIES: _OPT_TRANS,
    AttrType.ORIGINATOR_ID: _OPT_NON_TRANS,
    AttrType.CLUSTER_LIST: _OPT_NON_TRANS,
    AttrType.MP_REACH_NLRI: _OPT_NON_TRANS,
    AttrType.MP_UNREACH_NLRI: _OPT_NON_TRANS,
    AttrType.AS4_PATH: _OPT_TRANS,
    AttrType.AS4_AGGREGATOR: _OPT_TRANS,
    AttrType.LARGE_COMMUNITIES: _OPT_TRANS,
}


def encode_attribute(attr: PathAttribute, ctx: CodecContext) -> bytes:
    """Encode flags, type, length and value; Extended Length is used iff value > 255."""
    value = attr.encode_value(ctx)
    flags = attr.FLAGS & ~int(AttrFlag.EXTENDED_LENGTH)
    if len(value) > 255:
        if len(value) > 0xFFFF:
            raise LocalProtocolError(f"attribute {attr.TYPE} longer than 65535 octets")
        return struct.pack("!BBH", flags | AttrFlag.EXTENDED_LENGTH, attr.TYPE, len(value)) + value
    return struct.pack("!BBB", flags, attr.TYPE, len(value)) + value
