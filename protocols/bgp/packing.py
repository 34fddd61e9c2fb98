"""Packing many prefixes into as few UPDATE messages as possible (for Adj-RIB-Out).

IPv4 unicast prefixes go into the NLRI / Withdrawn Routes fields (RFC 4271 §4.3),
or, on a session that negotiated the extended next hop encoding for them (RFC 8950,
``ipv4_over_ipv6``), into MP_REACH_NLRI / MP_UNREACH_NLRI with AFI 1 and an IPv6
next hop; IPv6 prefixes into MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760).  Every produced
message fits ``ctx.max_message_size`` (4096, or 65535 with RFC 8654).
End-of-RIB markers (RFC 4724 §2) are built by :func:`end_of_rib` and recognised
with :attr:`UpdateMessage.end_of_rib`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Network, IPv6Address, IPv6Network
from typing import TypeVar

from .attributes import MpReachNlri, MpUnreachNlri, NextHop, PathAttribute
from .constants import AFI, HEADER_LEN, SAFI, AttrFlag, MessageType
from .context import CodecContext
from .errors import LocalProtocolError
from .header import encode_message
from .nlri import Prefix, RouteKey, encode_key, key_is_v6, prefix_size
from .update import UpdateMessage, encode_path_attributes, end_of_rib

__all__ = [
    "encode_announcement_keys", "encode_withdrawal_keys", "end_of_rib", "pack_announcements",
    "pack_withdrawals",
]  # fmt: skip

_P = TypeVar("_P", IPv4Network, IPv6Network)

#: Header + Withdrawn Routes Length + Total Path Attribute Length.
_UPDATE_OVERHEAD = HEADER_LEN + 4


def _attr_header(value_len: int) -> int:
    return 4 if value_len > 255 else 3


def _chunks(prefixes: Sequence[_P], limit: int, cost: Callable[[int], int]) -> list[list[_P]]:
    """Greedy split: ``cost(nlri_octets)`` is the message size holding that many octets."""
    out: list[list[_P]] = []
    cur: list[_P] = []
    used = 0
    for p in prefixes:
        size = prefix_size(p)
        if cur and cost(used + size) > limit:
            out.append(cur)
            cur, used = [], 0
        if cost(used + size) > limit:
            raise LocalProtocolError("path attributes leave no room for a single prefix")
        cur.append(p)
        used += size
    if cur:
        out.append(cur)
    return out


def _split(prefixes: Iterable[Prefix]) -> tuple[list[IPv4Network], list[IPv6Network]]:
    v4: list[IPv4Network] = []
    v6: list[IPv6Network] = []
    for p in prefixes:
        if isinstance(p, IPv4Network):
            v4.append(p)
        else:
            v6.append(p)
    return v4, v6


def pack_announcements(
    attributes: Sequence[PathAttribute],
    prefixes: Iterable[Prefix],
    ctx: CodecContext,
    *,
    ipv6_next_hop: IPv6Address | None = None,
    ipv6_link_local_next_hop: IPv6Address | None = None,
    safi: int = SAFI.UNICAST,
    ipv4_over_ipv6: bool = False,
) -> list[UpdateMessage]:
    """UPDATEs announcing ``prefixes`` with the same ``attributes``.

    IPv4 prefixes need a :class:`NextHop` in ``attributes``; IPv6 prefixes need
    ``ipv6_next_hop`` (global) and optionally ``ipv6_link_local_next_hop``.  Any
    MP_REACH/MP_UNREACH in ``attributes`` is ignored; NEXT_HOP is left out of the
    IPv6-only messages.  With ``ipv4_over_ipv6`` (RFC 8950: the peer and we both
    sent the Extended Next Hop capability tuple <1, ``safi``, 2>) IPv4 prefixes go
    in MP_REACH_NLRI (AFI 1) with the IPv6 next hops instead, without NEXT_HOP.
    ``ipv6_next_hop`` may itself be a link-local address when the interface has no
    global one (sent alone, as a 16-octet next hop).
    """
    base = [a for a in attributes if not isinstance(a, MpReachNlri | MpUnreachNlri)]
    v4, v6 = _split(prefixes)
    limit = ctx.max_message_size
    out: list[UpdateMessage] = []
    if v4 and ipv4_over_ipv6:
        out += _pack_mp(
            AFI.IPV4, safi, v4, base, ctx,
            next_hop=ipv6_next_hop, link_local=ipv6_link_local_next_hop,
        )  # fmt: skip
    elif v4:
        if not any(isinstance(a, NextHop) for a in base):
            raise LocalProtocolError("IPv4 announcements need a NEXT_HOP attribute")
        fixed = _UPDATE_OVERHEAD + len(encode_path_attributes(base, ctx))
        for chunk in _chunks(v4, limit, lambda n: fixed + n):
            out.append(UpdateMessage(attributes=tuple(base), nlri=tuple(chunk)))
    if v6:
        out += _pack_mp(
            AFI.IPV6, safi, v6, base, ctx,
            next_hop=ipv6_next_hop, link_local=ipv6_link_local_next_hop,
        )  # fmt: skip
    return out


def _pack_mp(
    afi: int,
    safi: int,
    prefixes: Sequence[_P],
    base: Sequence[PathAttribute],
    ctx: CodecContext,
    *,
    next_hop: IPv6Address | None,
    link_local: IPv6Address | None,
) -> list[UpdateMessage]:
    """MP_REACH_NLRI UPDATEs of one family with IPv6 next hops (RFC 2545, RFC 8950)."""
    if next_hop is None:
        family = "IPv6" if afi == AFI.IPV6 else "IPv4 (extended next hop)"
        raise LocalProtocolError(f"{family} announcements need ipv6_next_hop")
    mp_base: tuple[PathAttribute, ...] = tuple(a for a in base if not isinstance(a, NextHop))
    fixed = _UPDATE_OVERHEAD + len(encode_path_attributes(mp_base, ctx))
    nh_len = 16 if link_local is None else 32
    mp_fixed = 5 + nh_len

    def cost(n: int) -> int:
        return fixed + _attr_header(mp_fixed + n) + mp_fixed + n

    out: list[UpdateMessage] = []
    for chunk in _chunks(prefixes, ctx.max_message_size, cost):
        reach = MpReachNlri(
            afi=afi,
            safi=safi,
            next_hop=next_hop,
            link_local_next_hop=link_local,
            nlri=tuple(chunk),
        )
        out.append(UpdateMessage(attributes=(reach, *mp_base)))
    return out


def pack_withdrawals(
    prefixes: Iterable[Prefix],
    ctx: CodecContext,
    *,
    safi: int = SAFI.UNICAST,
    ipv4_over_ipv6: bool = False,
) -> list[UpdateMessage]:
    """UPDATEs withdrawing ``prefixes`` (IPv4 in Withdrawn Routes, IPv6 in MP_UNREACH).

    With ``ipv4_over_ipv6`` (RFC 8950 negotiated for IPv4) IPv4 prefixes go in
    MP_UNREACH_NLRI with AFI 1 too, as they were announced in MP_REACH_NLRI (FRR
    does the same)."""
    v4, v6 = _split(prefixes)
    limit = ctx.max_message_size
    out: list[UpdateMessage] = []
    if not ipv4_over_ipv6:
        for chunk in _chunks(v4, limit, lambda n: _UPDATE_OVERHEAD + n):
            out.append(UpdateMessage(withdrawn=tuple(chunk)))

    if ipv4_over_ipv6:
        out += _unreach(AFI.IPV4, safi, v4, limit)
    out += _unreach(AFI.IPV6, safi, v6, limit)
    return out


def _unreach(afi: int, safi: int, prefixes: Sequence[_P], limit: int) -> list[UpdateMessage]:
    def cost(n: int) -> int:
        return _UPDATE_OVERHEAD + _attr_header(3 + n) + 3 + n

    return [
        UpdateMessage(attributes=(MpUnreachNlri(afi=afi, safi=safi, withdrawn=tuple(chunk)),))
        for chunk in _chunks(prefixes, limit, cost)
    ]


# ---- the same from route keys, straight to the wire ----------------------------------------
#
# An Adj-RIB-Out keyed by route keys (:data:`.nlri.RouteKey`) sends without building a
# network or an :class:`UpdateMessage` per prefix: the messages below are byte for byte
# what :func:`pack_announcements` / :func:`pack_withdrawals` give for the same prefixes
# in the same order, encoded (a Hypothesis property checks it).


def _attribute(flags: int, type_: int, value: bytes) -> bytes:
    """One encoded path attribute, as :func:`.attributes.encode_attribute` makes it."""
    flags &= ~int(AttrFlag.EXTENDED_LENGTH)
    if len(value) > 255:
        return struct.pack("!BBH", flags | AttrFlag.EXTENDED_LENGTH, type_, len(value)) + value
    return struct.pack("!BBB", flags, type_, len(value)) + value


def _key_chunks(keys: Sequence[RouteKey], limit: int, cost: Callable[[int], int]) -> list[bytes]:
    """:func:`_chunks` for route keys, each chunk already encoded."""
    out: list[bytes] = []
    cur: list[bytes] = []
    used = 0
    for key in keys:
        data = encode_key(key)
        size = len(data)
        if cur and cost(used + size) > limit:
            out.append(b"".join(cur))
            cur, used = [], 0
        if cost(used + size) > limit:
            raise LocalProtocolError("path attributes leave no room for a single prefix")
        cur.append(data)
        used += size
    if cur:
        out.append(b"".join(cur))
    return out


def _split_keys(keys: Iterable[RouteKey]) -> tuple[list[RouteKey], list[RouteKey]]:
    v4: list[RouteKey] = []
    v6: list[RouteKey] = []
    for key in keys:
        (v6 if key_is_v6(key) else v4).append(key)
    return v4, v6


def _update(withdrawn: bytes, attributes: bytes, nlri: bytes, ctx: CodecContext) -> bytes:
    body = struct.pack("!H", len(withdrawn)) + withdrawn
    body += struct.pack("!H", len(attributes)) + attributes + nlri
    return encode_message(MessageType.UPDATE, body, ctx)


def encode_announcement_keys(
    attributes: Sequence[PathAttribute],
    keys: Iterable[RouteKey],
    ctx: CodecContext,
    *,
    ipv6_next_hop: IPv6Address | None = None,
    ipv6_link_local_next_hop: IPv6Address | None = None,
    safi: int = SAFI.UNICAST,
    ipv4_over_ipv6: bool = False,
) -> list[bytes]:
    """:func:`pack_announcements` of the keys' prefixes, as encoded UPDATE messages
    (``ipv4_over_ipv6`` as there: RFC 8950, IPv4 keys in MP_REACH_NLRI with AFI 1)."""
    base = [a for a in attributes if not isinstance(a, MpReachNlri | MpUnreachNlri)]
    v4, v6 = _split_keys(keys)
    limit = ctx.max_message_size
    out: list[bytes] = []
    if v4 and ipv4_over_ipv6:
        out += _encode_mp_keys(
            AFI.IPV4, safi, v4, base, ctx,
            next_hop=ipv6_next_hop, link_local=ipv6_link_local_next_hop,
        )  # fmt: skip
    elif v4:
        if not any(isinstance(a, NextHop) for a in base):
            raise LocalProtocolError("IPv4 announcements need a NEXT_HOP attribute")
        encoded = encode_path_attributes(base, ctx)
        fixed = _UPDATE_OVERHEAD + len(encoded)
        for nlri in _key_chunks(v4, limit, lambda n: fixed + n):
            out.append(_update(b"", encoded, nlri, ctx))
    if v6:
        out += _encode_mp_keys(
            AFI.IPV6, safi, v6, base, ctx,
            next_hop=ipv6_next_hop, link_local=ipv6_link_local_next_hop,
        )  # fmt: skip
    return out


def _encode_mp_keys(
    afi: int,
    safi: int,
    keys: Sequence[RouteKey],
    base: Sequence[PathAttribute],
    ctx: CodecContext,
    *,
    next_hop: IPv6Address | None,
    link_local: IPv6Address | None,
) -> list[bytes]:
    """:func:`_pack_mp` from route keys, encoded."""
    if next_hop is None:
        family = "IPv6" if afi == AFI.IPV6 else "IPv4 (extended next hop)"
        raise LocalProtocolError(f"{family} announcements need ipv6_next_hop")
    mp_base = tuple(a for a in base if not isinstance(a, NextHop))
    encoded = encode_path_attributes(mp_base, ctx)
    fixed = _UPDATE_OVERHEAD + len(encoded)
    head = MpReachNlri(afi=afi, safi=safi, next_hop=next_hop, link_local_next_hop=link_local)
    value = head.encode_value(ctx)  # without NLRI
    mp_fixed = len(value)

    def cost(n: int) -> int:
        return fixed + _attr_header(mp_fixed + n) + mp_fixed + n

    return [
        _update(
            b"", _attribute(MpReachNlri.FLAGS, MpReachNlri.TYPE, value + nlri) + encoded, b"", ctx
        )
        for nlri in _key_chunks(keys, ctx.max_message_size, cost)
    ]


def encode_withdrawal_keys(
    keys: Iterable[RouteKey],
    ctx: CodecContext,
    *,
    safi: int = SAFI.UNICAST,
    ipv4_over_ipv6: bool = False,
) -> list[bytes]:
    """:func:`pack_withdrawals` of the keys' prefixes, as encoded UPDATE messages
    (with ``ipv4_over_ipv6``, IPv4 keys in MP_UNREACH_NLRI with AFI 1)."""
    v4, v6 = _split_keys(keys)
    limit = ctx.max_message_size
    out: list[bytes] = []
    if not ipv4_over_ipv6:
        out += [
            _update(w, b"", b"", ctx)
            for w in _key_chunks(v4, limit, lambda n: _UPDATE_OVERHEAD + n)
        ]
    else:
        out += _encode_unreach_keys(AFI.IPV4, safi, v4, limit, ctx)
    out += _encode_unreach_keys(AFI.IPV6, safi, v6, limit, ctx)
    return out


def _encode_unreach_keys(
    afi: int, safi: int, keys: Sequence[RouteKey], limit: int, ctx: CodecContext
) -> list[bytes]:
    def cost(n: int) -> int:
        return _UPDATE_OVERHEAD + _attr_header(3 + n) + 3 + n

    head = struct.pack("!HB", afi, safi)
    return [
        _update(b"", _attribute(MpUnreachNlri.FLAGS, MpUnreachNlri.TYPE, head + nlri), b"", ctx)
        for nlri in _key_chunks(keys, limit, cost)
    ]
