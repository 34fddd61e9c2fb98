"""NLRI prefix encoding (RFC 4271 §4.3, RFC 4760 §5): ``<length, prefix>`` tuples."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import overload

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


def decode_ipv4_prefixes(data: bytes) -> Sequence[IPv4Network]:
    """:func:`packed_prefixes` for the IPv4 Withdrawn Routes and NLRI fields."""
    return packed_prefixes(data, AFI.IPV4)  # type: ignore[return-value]  # AFI 1: IPv4 only


def packed_prefixes(
    data: bytes, afi: int, *, subcode: int = UpdateSubcode.INVALID_NETWORK_FIELD
) -> Sequence[Prefix]:
    """:func:`decode_prefixes` checked now, built later: a :class:`PackedPrefixes`
    (or ``()`` for an empty field). Raises what :func:`decode_prefixes` raises."""
    if not data:
        return ()
    if afi not in (AFI.IPV4, AFI.IPV6):
        decode_prefixes(data, afi, subcode=subcode)  # raises: unsupported AFI
    bits = 32 if afi == AFI.IPV4 else 128
    pos, end, count = 0, len(data), 0
    while pos < end:  # lengths only: a few bytecodes per prefix, no object
        plen = data[pos]
        if plen > bits:
            raise RemoteProtocolError(
                NotifCode.UPDATE_MESSAGE_ERROR, subcode, reason=f"prefix length {plen} too long"
            )
        pos += 1 + (plen + 7) // 8
        count += 1
    if pos > end:  # only the last prefix can run past the end
        raise RemoteProtocolError(
            NotifCode.UPDATE_MESSAGE_ERROR, subcode, reason="prefix overruns NLRI field"
        )
    return PackedPrefixes(bytes(data), afi, count)


class PackedPrefixes(Sequence[Prefix]):
    """A received NLRI field, checked, whose networks are built only when read.

    What a peer sends us is mostly counted, not kept (the speaker keeps no Adj-RIB-In
    unless asked): a full table's UPDATE holds ~500 IPv6 prefixes, and building an
    ``IPv6Network`` for each costs ~4 ms of one loop step (the loop's budget is 2 ms),
    while checking the lengths costs ~0.2 ms. ``len()`` and the family (``afi``) are
    free; iterating, indexing or comparing builds the tuple once. It compares and
    hashes as that tuple, so a decoded message equals the one that was encoded."""

    __slots__ = ("_built", "afi", "data", "size")

    def __init__(self, data: bytes, afi: int, size: int) -> None:
        self.data, self.afi, self.size = data, afi, size
        self._built: tuple[Prefix, ...] | None = None

    def built(self) -> tuple[Prefix, ...]:
        if self._built is None:
            self._built = decode_prefixes(self.data, self.afi)
        return self._built

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[Prefix]:
        return iter(self.built())

    @overload
    def __getitem__(self, index: int) -> Prefix: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Prefix, ...]: ...
    def __getitem__(self, index: int | slice) -> Prefix | tuple[Prefix, ...]:
        return self.built()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedPrefixes):
            if self.afi == other.afi and self.data == other.data:
                return True
            return self.built() == other.built()  # bits past a length may differ
        if isinstance(other, tuple):
            return self.built() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.built())

    def __repr__(self) -> str:
        return repr(self.built())


# ---- route keys: a prefix as one int ---------------------------------------------------------
#
# An ``ipaddress`` network costs 436 bytes for an IPv4 /32 and 456 for an IPv6 /128 (each
# carries an instance dict with a ``hosts`` closure); a table of a million routes keyed by
# them spends most of its memory there. A route key is the same prefix as one int: the
# family bit (IPv6) above the address above the 8-bit length,
#
#     key = (version == 6) << 136 | address << 8 | prefixlen
#
# 32 bytes for IPv4, 44 for IPv6; keys sort as :func:`speaker.addresses.network_key`
# orders networks (IPv4 first, then by address, shorter prefixes first), and a key is
# encoded to its NLRI octets (RFC 4271 §4.3) without building a network.

#: A prefix as an int (see above): what Adj-RIB-Out tables are keyed by.
RouteKey = int

#: The family bit of a route key (set: IPv6).
KEY_V6_BIT = 1 << 136
_ADDRESS_SHIFT = 8


def prefix_key(prefix: Prefix) -> RouteKey:
    """The route key of ``prefix``."""
    key = int(prefix.network_address) << _ADDRESS_SHIFT | prefix.prefixlen
    return key | KEY_V6_BIT if prefix.version == 6 else key


def key_of(version: int, address: int, prefixlen: int) -> RouteKey:
    """The route key of the network ``address``/``prefixlen`` (host bits already zero)."""
    key = address << _ADDRESS_SHIFT | prefixlen
    return key | KEY_V6_BIT if version == 6 else key


def key_prefix(key: RouteKey) -> Prefix:
    """The network a route key stands for."""
    plen = key & 0xFF
    if key & KEY_V6_BIT:
        return IPv6Network(((key ^ KEY_V6_BIT) >> _ADDRESS_SHIFT, plen))
    return IPv4Network((key >> _ADDRESS_SHIFT, plen))


def key_is_v6(key: RouteKey) -> bool:
    return bool(key & KEY_V6_BIT)


def key_size(key: RouteKey) -> int:
    """Encoded size of one prefix (as :func:`prefix_size`)."""
    return 1 + ((key & 0xFF) + 7) // 8


def encode_key(key: RouteKey) -> bytes:
    """The NLRI octets of one route key: as :func:`encode_prefix` of its network."""
    plen = key & 0xFF
    nbytes = (plen + 7) // 8
    if key & KEY_V6_BIT:
        address = (key ^ KEY_V6_BIT) >> _ADDRESS_SHIFT
        return bytes((plen,)) + (address >> (128 - 8 * nbytes)).to_bytes(nbytes, "big")
    return bytes((plen,)) + (key >> (_ADDRESS_SHIFT + 32 - 8 * nbytes)).to_bytes(nbytes, "big")


def encode_keys(keys: Iterable[RouteKey]) -> bytes:
    """Encode route keys back to back (as :func:`encode_prefixes`)."""
    return b"".join(map(encode_key, keys))
