"""NLRI prefix encoding (RFC 4271 §4.3, RFC 4760 §5): ``<length, prefix>`` tuples."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network

from .constants import AFI, NotifCode, UpdateSubcode
from .errors import RemoteProtocolError

Prefix = IPv4Network | IPv6Network


def prefix_size(prefix: Prefix) -> int:
    """Encoded size of one prefix: 1 length octet plus ceil(len/8) octets."""
    return 1 + (prefix.prefixlen + 7) // 8


def encode_prefix(prefix: Prefix) -> bytes:
    """Encode one prefix; host bits are zero because ``ipaddress`` networks are strict."""
    nbytes = (prefix.prefixlen + 7) // 8
    return bytes((prefix.prefixlen,)) + prefix.network_address.packed[:nbytes]


def encode_prefixes(prefixes: Iterable[Prefix]) -> bytes:
    """Encode a sequence of prefixes back to back."""
    return b"".join(encode_prefix(p) for p in prefixes)


def decode_prefixes(
    data: bytes,
    afi: int,
    *,
    subcode: int = UpdateSubcode.INVALID_NETWORK_FIELD,
) -> tuple[Prefix, ...]:
    """Decode a packed prefix list of ``afi`` (IPv4 or IPv6).

    A prefix length beyond the address size or a prefix running past the end of
    ``data`` is a syntactic NLRI error: RFC 7606 §5.3 requires a session reset,
    reported as UPDATE Message Error / ``subcode`` (Invalid Network Field).
    Bits past the prefix length in the last octet are ignored (RFC 4271 §4.3).
    """
    if afi not in (AFI.IPV4, AFI.IPV6):
        raise RemoteProtocolError(
            NotifCode.UPDATE_MESSAGE_ERROR, subcode, reason=f"unsupported AFI {afi}"
        )
    width = 4 if afi == AFI.IPV4 else 16
    out: list[Prefix] = []
    pos, end = 0, len(data)
    while pos < end:
        plen = data[pos]
        if plen > width * 8:
            raise RemoteProtocolError(
                NotifCode.UPDATE_MESSAGE_ERROR, subcode, reason=f"prefix length {plen} too long"
            )
        nbytes = (plen + 7) // 8
        if pos + 1 + nbytes > end:
            raise RemoteProtocolError(
                NotifCode.UPDATE_MESSAGE_ERROR, subcode, reason="prefix overruns NLRI field"
            )
        raw = data[pos + 1 : pos + 1 + nbytes].ljust(width, b"\x00")
        if width == 4:
            out.append(IPv4Network((raw, plen), strict=False))
        else:
            out.append(IPv6Network((raw, plen), strict=False))
        pos += 1 + nbytes
    return tuple(out)


def decode_ipv4_prefixes(data: bytes) -> tuple[IPv4Network, ...]:
    """:func:`decode_prefixes` for the IPv4 Withdrawn Routes and NLRI fields."""
    return tuple(p for p in decode_prefixes(data, AFI.IPV4) if isinstance(p, IPv4Network))
